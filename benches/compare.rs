//! Comparison (Protocol 2) benchmarks: latency (n = 1) and throughput (n = 10^5) per
//! ring, garbling online vs from a preprocessed pool (online cost only; the pool is
//! garbled before the timer starts). Bytes sent (all servers) and rounds per
//! comparison batch are printed beside each benchmark.
//!
//! `cargo bench --bench compare`

mod common;

use common::{cluster_with, no_setup, presets, timed_run};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use privpy::prelude::*;
use std::time::Duration;

fn compare(c: &mut Criterion) {
    for n in [1usize, 100_000] {
        let mut g = c.benchmark_group(format!("lt/n={n}"));
        g.throughput(Throughput::Elements(n as u64));
        if n > 1 {
            g.sample_size(10).measurement_time(Duration::from_secs(8));
        }
        for (name, cfg) in presets() {
            let x = ArrayD::from_shape_fn(vec![n], |i| (i[0] % 1000) as f64 * 0.001 - 0.5);
            let cluster = cluster_with(cfg, &[("x", x.clone()), ("y", x.mapv(|v| -v))]);
            let op = |s: &Session| {
                let (x, y) = (s.input::<Array1<f64>>("x")?, s.input::<Array1<f64>>("y")?);
                std::hint::black_box(x.lt(&y));
                Ok(())
            };
            let pre = |s: &Session, iters: u64| s.preprocess_comparisons(n * iters as usize);
            for (variant, preprocessed) in [("online", false), ("preprocessed", true)] {
                let (_, bytes, rounds) = if preprocessed {
                    timed_run(&cluster, 1, pre, op)
                } else {
                    timed_run(&cluster, 1, no_setup, op)
                };
                eprintln!(
                    "lt/n={n}/{name}/{variant}: {bytes} bytes in {rounds} rounds per batch ({} bytes/comparison)",
                    bytes / n as u64
                );
                g.bench_function(BenchmarkId::new(variant, name), |b| {
                    b.iter_custom(|iters| {
                        if preprocessed {
                            timed_run(&cluster, iters, pre, op).0
                        } else {
                            timed_run(&cluster, iters, no_setup, op).0
                        }
                    })
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, compare);
criterion_main!(benches);
