//! A client of a networked cluster: two data owners and a model owner train logistic
//! regression on UCI Adult over TLS, and the result is checked against cleartext.
//!
//! Start a local cluster first (it writes certificates and configuration into
//! `target/dev-cluster`, then runs the four servers):
//!
//! ```text
//! cargo run --release --bin privpy-server -- dev           # terminal 1
//! cargo run --release --example net_client                 # terminal 2
//! ```
//!
//! `-- --cluster DIR` points at another configuration directory (one with
//! `alice.toml` and `bob.toml`, as `privpy-server dev` or `privpy-server certs` write).

use privpy::data::{load_libsvm, shipped};
use privpy::ml::{accuracy, logistic_regression};
use privpy::net::client::Client;
use privpy::net::config::ClientConfig;
use privpy::prelude::*;
use std::path::PathBuf;
use std::time::Instant;

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .iter()
        .position(|a| a == "--cluster")
        .and_then(|k| args.get(k + 1))
        .map_or_else(|| PathBuf::from("target/dev-cluster"), PathBuf::from);
    let cfg = |name: &str| ClientConfig::from_file(&dir.join(format!("{name}.toml")));
    let mut alice = Client::connect(&cfg("alice")?)?;
    let mut bob = Client::connect(&cfg("bob")?)?;
    println!(
        "connected to S1 and S2 as alice and bob; number format {:?}",
        alice.config()
    );

    // A warm-up: statistics of a secret vector.
    alice.upload("readings", array![3.5, -1.25, 8.0, 2.75], &[])?;
    let t = Instant::now();
    let job = alice.run("stats", &[("x", &["readings"])])?;
    let mean: f64 = alice.fetch(&job, "mean")?;
    let max: f64 = alice.fetch(&job, "max")?;
    println!(
        "stats: mean {mean:.6} (cleartext 3.25), max {max:.6} (8.0) in {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    // Logistic regression: bob shares his rows with alice's jobs; alice trains.
    let train = load_libsvm(&shipped("adult/a9a-first-2000"), 123, Some(1000))?;
    let test = load_libsvm(&shipped("adult/a9a.t-first-1000"), 123, None)?;
    let half = train.y.len() / 2;
    alice.upload("x_alice", train.x.slice(s![..half, ..]).to_owned(), &[])?;
    alice.upload("y_alice", train.y.slice(s![..half]).to_owned(), &[])?;
    bob.upload(
        "x_bob",
        train.x.slice(s![half.., ..]).to_owned(),
        &["alice"],
    )?;
    bob.upload("y_bob", train.y.slice(s![half..]).to_owned(), &["alice"])?;
    let (batch, iterations, lr) = (100, 30, 0.5);
    let t = Instant::now();
    let job = alice.run_with(
        "logistic_regression",
        &[
            ("x", &["x_alice", "bob/x_bob"]),
            ("y", &["y_alice", "bob/y_bob"]),
        ],
        &[
            ("batch", batch as f64),
            ("iterations", iterations as f64),
            ("lr", lr),
        ],
    )?;
    let secs = t.elapsed().as_secs_f64();
    let w: Array1<f64> = alice.fetch(&job, "w")?;

    // The same training on the cleartext engine.
    let mut clear = LocalCluster::cleartext();
    let c = clear.client("alice");
    clear.upload(&c, "x", train.x.clone())?;
    clear.upload(&c, "y", train.y.clone())?;
    let w_clear: Array1<f64> = clear
        .run(|s| {
            let (x, y) = (s.input("x")?, s.input("y")?);
            let w = logistic_regression(x, y, s.zeros(124), batch, iterations, lr);
            s.output("alice", "w", &w)
        })?
        .open(&c, "w")?;
    let diff = (&w - &w_clear).mapv(|d| d * d).sum().sqrt() / w_clear.mapv(|d| d * d).sum().sqrt();
    let bytes: u64 = job.stats.iter().map(|s| s.total_bytes_sent()).sum();
    let rounds = job.stats.iter().map(|s| s.rounds).max().unwrap_or(0);
    println!(
        "logistic regression on {} rows ({iterations} iterations of {batch}): {:.2} s, {:.1} MB between servers, {rounds} rounds",
        train.y.len(),
        secs,
        bytes as f64 / 1e6
    );
    println!(
        "test accuracy: private {:.4}, cleartext {:.4}; relative distance of the weights {diff:.2e}",
        accuracy(&test.x, &test.y, &w),
        accuracy(&test.x, &test.y, &w_clear)
    );
    Ok(())
}
