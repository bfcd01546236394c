//! Private logistic regression on UCI Adult (LIBSVM a9a: 123 binary features + bias).
//!
//! Two data owners, alice and bob, each secret-share a disjoint slice of the training
//! rows; the four servers train by mini-batch SGD without seeing any row; only the
//! model owner, carol, opens the weights. The same program then runs on the
//! cleartext engine, and the example prints both models' test accuracy and their
//! relative distance.
//!
//! `cargo run --release --example logistic_regression` uses the slice shipped in
//! `data/`; `-- --full` uses the full set from `$PRIVPY_DATA` (or `../shared/data`).

use privpy::data::{data_dir, load_libsvm, shipped};
use privpy::ml::{accuracy, entries, logistic_regression, rows};
use privpy::prelude::*;
use std::time::Instant;

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let full = std::env::args().any(|a| a == "--full");
    let (train_path, test_path) = if full {
        let d = data_dir().ok_or("--full needs PRIVPY_DATA or ../shared/data")?;
        (d.join("adult/a9a.gz"), d.join("adult/a9a.t.gz"))
    } else {
        (
            shipped("adult/a9a-first-2000"),
            shipped("adult/a9a.t-first-1000"),
        )
    };
    let train = load_libsvm(&train_path, 123, if full { Some(32_000) } else { None })?;
    let test = load_libsvm(&test_path, 123, None)?;
    let n = train.y.len();
    let half = n / 2;
    let (batch, lr) = (100, 0.5);
    let iterations = if full { 2000 } else { 3 * n / batch };
    println!(
        "Adult: {n} training rows (alice {half}, bob {}), {} test rows, 124 dimensions",
        n - half,
        test.y.len()
    );
    println!("mini-batch SGD: batch {batch}, {iterations} iterations, learning rate {lr}");

    let program = |s: &Session| {
        let x = rows(s, &["x_alice", "x_bob"])?;
        let y = entries(s, &["y_alice", "y_bob"])?;
        let w = logistic_regression(x, y, s.zeros(124), batch, iterations, lr);
        s.output("carol", "w", &w)
    };
    let run = |mut cluster: LocalCluster| -> privpy::Result<(Array1<f64>, RunOutput)> {
        let (alice, bob, carol) = (
            cluster.client("alice"),
            cluster.client("bob"),
            cluster.client("carol"),
        );
        cluster.upload(&alice, "x_alice", train.x.slice(s![..half, ..]).to_owned())?;
        cluster.upload(&alice, "y_alice", train.y.slice(s![..half]).to_owned())?;
        cluster.upload(&bob, "x_bob", train.x.slice(s![half.., ..]).to_owned())?;
        cluster.upload(&bob, "y_bob", train.y.slice(s![half..]).to_owned())?;
        let out = cluster.run(program)?;
        Ok((out.open(&carol, "w")?, out))
    };

    let t = Instant::now();
    let (w_private, out) = run(LocalCluster::new(Config::default()))?;
    let secs = t.elapsed().as_secs_f64();
    let (w_clear, _) = run(LocalCluster::cleartext())?;
    let rrmse =
        (&w_private - &w_clear).mapv(|d| d * d).sum().sqrt() / w_clear.mapv(|d| d * d).sum().sqrt();
    println!(
        "private training: {:.2} s ({:.3} ms per instance), {} MB between servers, {} rounds",
        secs,
        secs * 1e3 / (iterations * batch) as f64,
        out.stats().total_bytes() / 1_000_000,
        out.stats().rounds()
    );
    println!(
        "test accuracy: private model {:.4}, cleartext model {:.4}",
        accuracy(&test.x, &test.y, &w_private),
        accuracy(&test.x, &test.y, &w_clear)
    );
    println!("weights' relative RMS distance, private vs cleartext: {rrmse:.2e}");
    Ok(())
}
