//! Helpers shared by the benchmarks (each bench uses a subset).
#![allow(dead_code)]

use privpy::prelude::*;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The three presets, named by ring.
pub fn presets() -> [(&'static str, Config); 3] {
    [
        ("Z64", Config::fast()),
        ("Z128", Config::default()),
        ("Z256", Config::paper()),
    ]
}

/// A seeded cluster with `inputs` uploaded by client "alice".
pub fn cluster_with(cfg: Config, inputs: &[(&str, ArrayD<f64>)]) -> LocalCluster {
    let mut c = LocalCluster::new(cfg).with_seed(1);
    let alice = c.client("alice");
    for (n, v) in inputs {
        c.upload(&alice, n, v).expect("upload");
    }
    c
}

/// Runs `setup` once and then `op` `iters` times inside one four-party session.
/// Returns S1's time for the `op` loop only, and the bytes (all servers) and rounds
/// of one `op`.
pub fn timed_run<S, F>(cluster: &LocalCluster, iters: u64, setup: S, op: F) -> (Duration, u64, u64)
where
    S: Fn(&Session, u64) -> Result<()> + Sync,
    F: Fn(&Session) -> Result<()> + Sync,
{
    let elapsed = Mutex::new(Duration::ZERO);
    let counted = Mutex::new((0u64, 0u64));
    cluster
        .run(|s| {
            setup(s, iters)?;
            let before = s.stats();
            let t = Instant::now();
            for _ in 0..iters {
                op(s)?;
            }
            let spent = t.elapsed();
            let d = s.stats().since(&before);
            let mut c = counted.lock().expect("no poisoning");
            c.0 += d.total_bytes_sent();
            c.1 = c.1.max(d.rounds);
            if s.role() == Some(Role::S1) {
                *elapsed.lock().expect("no poisoning") = spent;
            }
            Ok(())
        })
        .expect("benchmark program runs");
    let (bytes, rounds) = *counted.lock().expect("no poisoning");
    let t = *elapsed.lock().expect("no poisoning");
    (t, bytes / iters.max(1), rounds / iters.max(1))
}

/// No setup.
pub fn no_setup(_: &Session, _: u64) -> Result<()> {
    Ok(())
}
