//! Arithmetic benchmarks: element-wise multiplication (n = 1 and n = 10^6) and the
//! (128×784)·(784×625) matrix product, on each ring, all four servers in this process.
//!
//! Time runs inside one session (`iter_custom`) from a common start of the four
//! servers to the end of the last one, so thread start and seed agreement are not
//! counted. Bytes sent (all servers) and rounds per
//! operation are printed beside each benchmark.
//!
//! Also one server's matrix-product kernel alone with 1 and 2 kernel threads, at
//! (128×784)·(784×625) and (512×784)·(784×625).
//!
//! `cargo bench --bench arith`

mod common;

use common::{cluster_with, presets, timed_run};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use privpy::prelude::*;
use std::cell::RefCell;
use std::time::Duration;

/// Two secret operands.
type Pair<A> = (Priv<A>, Priv<A>);

thread_local! {
    /// Each server's operands, loaded once per session before the clock starts, so
    /// that the timed loop is the operation alone (loading an input copies it).
    static VECTORS: RefCell<Option<Pair<Array1<f64>>>> = const { RefCell::new(None) };
    static MATRICES: RefCell<Option<Pair<Array2<f64>>>> = const { RefCell::new(None) };
}

fn elementwise(c: &mut Criterion) {
    for n in [1usize, 1_000_000] {
        let mut g = c.benchmark_group(format!("mul/n={n}"));
        g.throughput(Throughput::Elements(n as u64));
        if n > 1 {
            g.sample_size(10).measurement_time(Duration::from_secs(8));
        }
        for (name, cfg) in presets() {
            let x = ArrayD::from_shape_fn(vec![n], |i| (i[0] % 1000) as f64 * 0.001 - 0.5);
            let cluster = cluster_with(cfg, &[("x", x.clone()), ("y", x)]);
            let setup = |s: &Session, _: u64| {
                let (x, y) = (s.input::<Array1<f64>>("x")?, s.input::<Array1<f64>>("y")?);
                VECTORS.with(|v| *v.borrow_mut() = Some((x, y)));
                Ok(())
            };
            let op = |_: &Session| {
                VECTORS.with(|v| {
                    if let Some((x, y)) = v.borrow().as_ref() {
                        std::hint::black_box(x * y);
                    }
                });
                Ok(())
            };
            let mut counted = false;
            g.bench_function(BenchmarkId::from_parameter(name), |b| {
                // Counted here, so that a filtered run does only what it selects.
                if !std::mem::replace(&mut counted, true) {
                    let (_, bytes, rounds) = timed_run(&cluster, 1, setup, op);
                    eprintln!(
                    "mul/n={n}/{name}: {bytes} bytes sent in {rounds} rounds per operation ({} bytes/element)",
                        bytes / n as u64
                    );
                }
                b.iter_custom(|iters| timed_run(&cluster, iters, setup, op).0)
            });
        }
        g.finish();
    }
}

fn matmul(c: &mut Criterion) {
    let (m, k, n) = (128, 784, 625);
    let mut g = c.benchmark_group("matmul/128x784x625");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for (name, cfg) in presets() {
        let a = ArrayD::from_shape_fn(vec![m, k], |i| ((i[0] * 7 + i[1]) % 100) as f64 * 0.01);
        let b = ArrayD::from_shape_fn(vec![k, n], |i| {
            ((i[0] + 3 * i[1]) % 100) as f64 * 0.01 - 0.5
        });
        let cluster = cluster_with(cfg, &[("a", a), ("b", b)]);
        let setup = |s: &Session, _: u64| {
            let (a, b) = (s.input::<Array2<f64>>("a")?, s.input::<Array2<f64>>("b")?);
            MATRICES.with(|m| *m.borrow_mut() = Some((a, b)));
            Ok(())
        };
        let op = |_: &Session| {
            MATRICES.with(|m| {
                if let Some((a, b)) = m.borrow().as_ref() {
                    std::hint::black_box(a.dot(b));
                }
            });
            Ok(())
        };
        let mut counted = false;
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            if !std::mem::replace(&mut counted, true) {
                let (_, bytes, rounds) = timed_run(&cluster, 1, setup, op);
                eprintln!("matmul/{name}: {bytes} bytes sent in {rounds} rounds per product");
            }
            b.iter_custom(|iters| timed_run(&cluster, iters, setup, op).0)
        });
    }
    g.finish();
}

/// One server's local matrix-product kernel alone (no protocol), on full-range ring
/// elements, with 1 and 2 kernel threads (`privpy::set_kernel_threads`): the
/// speed-up a server gets from the cores of its own host.
fn kernel_threads(c: &mut Criterion) {
    use privpy::ring::{Ring, Z64, Z128, matmul_round};
    fn run<R: Ring>(c: &mut Criterion, name: &str, f: u32, m: usize) {
        let (k, n) = (784, 625);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            // splitmix64
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let a = Array2::from_shape_fn((m, k), |_| R::from_limbs(&[next(), next()]));
        let b = Array2::from_shape_fn((k, n), |_| R::from_limbs(&[next(), next()]));
        let mut g = c.benchmark_group(format!("kernel/matmul-{m}x784x625/{name}"));
        g.sample_size(20);
        for threads in [1, 2] {
            g.bench_function(BenchmarkId::new("threads", threads), |bch| {
                privpy::set_kernel_threads(threads);
                bch.iter(|| std::hint::black_box(matmul_round(a.view(), b.view(), f)));
            });
        }
        privpy::set_kernel_threads(1);
        g.finish();
    }
    // The MLP's first layer at batch 128, and at batch 512 (packing B is then a
    // smaller share of the work).
    for m in [128, 512] {
        run::<Z64>(c, "Z64", 16, m);
        run::<Z128>(c, "Z128", 32, m);
    }
}

criterion_group!(benches, elementwise, matmul, kernel_threads);
criterion_main!(benches);
