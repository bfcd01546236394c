//! Comparison benchmarks, both protocols (`4pc`: the four-party protocol; `gc`:
//! the paper's garbled circuit): latency (n = 1) and throughput (n = 10^5) per ring.
//! `total` deals or garbles inside the timed loop (everything after the inputs
//! exist); `online` times only what is left after `Session::preprocess_comparisons`
//! ran before the timer. Every time runs from a common start of the four servers to
//! the end of the last. Bytes sent (all servers) and rounds per batch are printed
//! beside each benchmark.
//!
//! `cargo bench --bench compare` (filter: `cargo bench --bench compare -- 4pc`);
//! `PRIVPY_NET=lan` or `wan` runs it over emulated links (the bulk size is 10^4 on
//! the WAN, where 10^5 garbled comparisons take half a minute each).

mod common;

use common::{cluster_with, no_setup, profile, protocols, timed_run};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use privpy::prelude::*;
use std::time::Duration;

fn compare(c: &mut Criterion) {
    let (net, link) = profile();
    let bulk = if link.is_some_and(|l| l.delay.as_millis() >= 10) {
        10_000
    } else {
        100_000
    };
    for n in [1usize, bulk] {
        let mut g = c.benchmark_group(format!("lt/{net}/n={n}"));
        g.throughput(Throughput::Elements(n as u64));
        if n > 1 {
            g.sample_size(10).measurement_time(Duration::from_secs(5));
        }
        for (name, protocol, cfg) in protocols() {
            let x = ArrayD::from_shape_fn(vec![n], |i| (i[0] % 1000) as f64 * 0.001 - 0.5);
            let cluster = cluster_with(cfg, &[("x", x.clone()), ("y", x.mapv(|v| -v))]);
            let op = |s: &Session| {
                let (x, y) = (s.input::<Array1<f64>>("x")?, s.input::<Array1<f64>>("y")?);
                std::hint::black_box(x.lt(&y));
                Ok(())
            };
            let pre = |s: &Session, iters: u64| s.preprocess_comparisons(n * iters as usize);
            for (variant, preprocessed) in [("total", false), ("online", true)] {
                let (_, bytes, rounds) = if preprocessed {
                    timed_run(&cluster, 1, pre, op)
                } else {
                    timed_run(&cluster, 1, no_setup, op)
                };
                eprintln!(
                    "lt/{net}/n={n}/{protocol}-{variant}/{name}: {bytes} bytes in {rounds} rounds per batch ({} bytes/comparison)",
                    bytes / n as u64
                );
                g.bench_function(
                    BenchmarkId::new(format!("{protocol}-{variant}"), name),
                    |b| {
                        b.iter_custom(|iters| {
                            if preprocessed {
                                timed_run(&cluster, iters, pre, op).0
                            } else {
                                timed_run(&cluster, iters, no_setup, op).0
                            }
                        })
                    },
                );
            }
        }
        g.finish();
    }
}

criterion_group!(benches, compare);
criterion_main!(benches);
