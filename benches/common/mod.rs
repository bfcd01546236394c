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

/// The network profile benchmarks run under: `PRIVPY_NET=lan` or `wan` emulates
/// that link between every pair of servers (`privpy::transport::LinkProfile`);
/// unset or `none`, they are connected directly.
pub fn profile() -> (String, Option<privpy::transport::LinkProfile>) {
    let name = std::env::var("PRIVPY_NET").unwrap_or_else(|_| "none".into());
    match privpy::transport::LinkProfile::named(&name) {
        Ok(p) => (name, p),
        Err(e) => panic!("PRIVPY_NET: {e}"),
    }
}

/// A seeded cluster with `inputs` uploaded by client "alice", on the links of
/// [`profile`].
pub fn cluster_with(cfg: Config, inputs: &[(&str, ArrayD<f64>)]) -> LocalCluster {
    let mut c = LocalCluster::new(cfg).with_seed(1).with_link(profile().1);
    let alice = c.client("alice");
    for (n, v) in inputs {
        c.upload(&alice, n, v).expect("upload");
    }
    c
}

/// Runs `setup` once and then `op` `iters` times inside one four-party session.
/// Returns the time of the `op` loop from a common start of the four servers (a
/// barrier after `setup`) to the end of the last one, and the bytes (all servers)
/// and rounds of one `op`.
pub fn timed_run<S, F>(cluster: &LocalCluster, iters: u64, setup: S, op: F) -> (Duration, u64, u64)
where
    S: Fn(&Session, u64) -> Result<()> + Sync,
    F: Fn(&Session) -> Result<()> + Sync,
{
    let start = std::sync::Barrier::new(4);
    let span = Mutex::new((None::<Instant>, None::<Instant>));
    let counted = Mutex::new((0u64, 0u64));
    cluster
        .run(|s| {
            setup(s, iters)?;
            let before = s.stats();
            start.wait();
            let t = Instant::now();
            for _ in 0..iters {
                op(s)?;
            }
            let end = Instant::now();
            let d = s.stats().since(&before);
            let mut c = counted.lock().expect("no poisoning");
            c.0 += d.total_bytes_sent();
            c.1 = c.1.max(d.rounds);
            let mut sp = span.lock().expect("no poisoning");
            sp.0 = Some(sp.0.map_or(t, |x| x.min(t)));
            sp.1 = Some(sp.1.map_or(end, |x| x.max(end)));
            Ok(())
        })
        .expect("benchmark program runs");
    let (bytes, rounds) = *counted.lock().expect("no poisoning");
    let t = match *span.lock().expect("no poisoning") {
        (Some(a), Some(b)) => b - a,
        _ => Duration::ZERO,
    };
    (t, bytes / iters.max(1), rounds / iters.max(1))
}

/// The preset with each comparison protocol: `(preset name, protocol name, config)`.
pub fn protocols() -> Vec<(&'static str, &'static str, Config)> {
    presets()
        .into_iter()
        .flat_map(|(name, cfg)| {
            [
                (name, "4pc", cfg.with_comparison(Comparison::FourParty)),
                (name, "gc", cfg.with_comparison(Comparison::GarbledCircuit)),
            ]
        })
        .collect()
}

/// No setup.
pub fn no_setup(_: &Session, _: u64) -> Result<()> {
    Ok(())
}
