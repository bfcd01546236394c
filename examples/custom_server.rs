//! A server binary of your own: register your `#[private]` functions under names and
//! serve them. Build the same binary for all four hosts (every server must carry the
//! same program versions; a mismatch is refused when a job starts).
//!
//! ```text
//! cargo run --release --bin privpy-server -- certs --dir my-cluster --hosts 127.0.0.1,127.0.0.1,127.0.0.1,127.0.0.1
//! cargo run --release --example custom_server -- --role s1 --config my-cluster/cluster.toml   # and s2, sa, sb
//! ```

use privpy::net::config::ClusterConfig;
use privpy::net::registry::{Job, Program, Registry};
use privpy::net::server;
use privpy::prelude::*;

/// Weighted score `w · x` clipped at zero, for every row: secret rows, secret weights.
#[private]
fn score(x: Priv<Array2<f64>>, w: Priv<Array1<f64>>) -> Priv<Array1<f64>> {
    x.dot(&w).relu()
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        let k = args.iter().position(|a| a == flag)?;
        args.get(k + 1).cloned()
    };
    let (Some(role), Some(config)) = (get("--role"), get("--config")) else {
        return Err("usage: custom_server --role s1|s2|sa|sb --config cluster.toml".into());
    };
    let role = Role::ALL
        .into_iter()
        .find(|r| r.name() == role)
        .ok_or("--role is one of s1, s2, sa, sb")?;

    let mut programs = Registry::new();
    programs.register(
        Program::new("score", "1.0", |s: &Session, job: &Job| {
            let out = score(s.input("x")?, s.input("w")?);
            s.output(job.client(), "score", &out)
        })
        .input("x", [None, None])
        .input("w", [None]),
    );

    let cluster = ClusterConfig::from_file(config.as_ref())?;
    server::start(role, cluster, programs)?.wait_for_signal();
    Ok(())
}
