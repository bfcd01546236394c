//! The peers' workloads (`../shared/peers/README.md`), one per invocation, for
//! side-by-side runs with MP-SPDZ and CrypTen interleaved workload by workload.
//!
//! ```sh
//! cargo bench --bench peers -- --workload mul --n 1000000 [--reps 5] [--preset fast]
//! ```
//!
//! Workloads: `mul` (element-wise product of two secret vectors of `n`), `lt` (`n`
//! comparisons), `matmul` ((128×784)·(784×625)), `nn` (784-625-625-10 ReLU network
//! with secret weights on `n` secret images, ending in a secret argmax per image),
//! `nn-prepared` (the same with the weights prepared once before the clock,
//! [`privpy::Prepared`]: what a query costs a service that keeps its model prepared),
//! `lr` (one SGD step of logistic regression on a secret 1000×124 batch:
//! `w − lr/B·Xᵀ(σ(X·w) − y)`, the sigmoid to the preset's precision). The operands are
//! loaded before the clock, which runs from a common start of the four servers to the
//! end of the last one. Prints one JSON line: the times of every repetition, their
//! median, bytes sent by all servers and rounds per operation, and the largest error
//! of the result against the cleartext engine.

mod common;

use common::{cluster_with, timed_run};
use privpy::Prepared;
use privpy::ml::{mlp_predict, training_sigmoid};
use privpy::prelude::*;
use std::cell::RefCell;

thread_local! {
    /// Each server's operands, loaded before the clock starts.
    static OPERANDS: RefCell<Vec<Priv<ArrayD<f64>>>> = const { RefCell::new(Vec::new()) };
    /// `matmul`'s operands as matrices, made before the clock (cloning a secret
    /// copies its shares: that is the harness's cost, not the product's).
    static MATRICES: RefCell<Vec<Priv<Array2<f64>>>> = const { RefCell::new(Vec::new()) };
    /// The prepared weight matrices of `nn-prepared`.
    static PREPARED: RefCell<Vec<Prepared>> = const { RefCell::new(Vec::new()) };
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
}

/// Deterministic values in `[lo, hi)`.
fn values(seed: u64, shape: &[usize], lo: f64, hi: f64) -> ArrayD<f64> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    ArrayD::from_shape_simple_fn(shape.to_vec(), || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        lo + (hi - lo) * (state >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// The workload on the secrets `v` (in the order of its inputs).
fn compute(workload: &str, v: &[Priv<ArrayD<f64>>]) -> Result<Priv<ArrayD<f64>>> {
    if workload == "nn-prepared" {
        return PREPARED.with(|p| -> Result<Priv<ArrayD<f64>>> {
            let p = p.borrow();
            let b = |i: usize| v[i].clone().into_type::<Array1<f64>>();
            let x: Priv<Array2<f64>> = v[0].clone().into_type()?;
            let h1 = (x.try_dot(&p[0])? + b(2)?).relu();
            let h2 = (h1.try_dot(&p[1])? + b(4)?).relu();
            Ok((h2.try_dot(&p[2])? + b(6)?).argmax_axis(Axis(1)).into_dyn())
        });
    }
    Ok(match workload {
        "mul" => &v[0] * &v[1],
        "lt" => v[0].lt(&v[1]),
        "matmul" => MATRICES.with(|m| {
            let m = m.borrow();
            m[0].dot(&m[1]).into_dyn()
        }),
        "nn" => {
            let m = |i: usize| v[i].clone().into_type::<Array2<f64>>();
            let b = |i: usize| v[i].clone().into_type::<Array1<f64>>();
            mlp_predict(m(0)?, m(1)?, b(2)?, m(3)?, b(4)?, m(5)?, b(6)?).into_dyn()
        }
        "lr" => {
            let x: Priv<Array2<f64>> = v[0].clone().into_type()?;
            let y: Priv<Array1<f64>> = v[1].clone().into_type()?;
            let w: Priv<Array1<f64>> = v[2].clone().into_type()?;
            let p = training_sigmoid(&x.dot(&w));
            let grad = x.t().dot(&(p - y));
            (w - grad * (0.5 / x.shape()[0] as f64)).into_dyn()
        }
        other => {
            return Err(Error::InvalidArgument {
                operation: "peers bench",
                reason: format!("unknown workload {other:?}: mul, lt, matmul, nn or lr"),
            });
        }
    })
}

fn inputs(workload: &str, n: usize) -> Vec<(String, ArrayD<f64>)> {
    let named = |v: Vec<ArrayD<f64>>| -> Vec<(String, ArrayD<f64>)> {
        v.into_iter()
            .enumerate()
            .map(|(i, a)| (format!("v{i}"), a))
            .collect()
    };
    match workload {
        "mul" | "lt" => named(vec![values(1, &[n], -1.0, 1.0), values(2, &[n], -1.0, 1.0)]),
        "matmul" => named(vec![
            values(3, &[128, 784], -1.0, 1.0),
            values(4, &[784, 625], -1.0, 1.0),
        ]),
        "nn" | "nn-prepared" => {
            let dims = [784, 625, 625, 10];
            let mut v = vec![values(5, &[n, 784], 0.0, 1.0)];
            for i in 0..3 {
                let r = (6.0 / dims[i] as f64).sqrt();
                v.push(values(6 + i as u64, &[dims[i], dims[i + 1]], -r, r));
                v.push(values(9 + i as u64, &[dims[i + 1]], -0.01, 0.01));
            }
            // mlp_predict's order: x, w1, b1, w2, b2, w3, b3.
            named(v)
        }
        "lr" => {
            let y = values(13, &[1000], 0.0, 1.0).mapv(|u| f64::from(u8::from(u < 0.5)));
            named(vec![
                values(12, &[1000, 124], -1.0, 1.0),
                y,
                values(14, &[124], -0.2, 0.2),
            ])
        }
        _ => Vec::new(),
    }
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let workload = arg("--workload").unwrap_or_else(|| "mul".into());
    let n: usize = arg("--n").map_or(Ok(1), |s| s.parse())?;
    let reps: usize = arg("--reps").map_or(Ok(5), |s| s.parse())?;
    let preset = arg("--preset").unwrap_or_else(|| "fast".into());
    let cfg = match preset.as_str() {
        "fast" => Config::fast(),
        "default" => Config::default(),
        "paper" => Config::paper(),
        other => return Err(format!("unknown preset {other:?}").into()),
    };
    let ins = inputs(&workload, n);
    if ins.is_empty() {
        return Err(format!(
            "unknown workload {workload:?}: mul, lt, matmul, nn, nn-prepared or lr"
        )
        .into());
    }
    let refs: Vec<(&str, ArrayD<f64>)> = ins.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let count = ins.len();
    let prepared = workload == "nn-prepared";
    let load = |s: &Session| -> Result<Vec<Priv<ArrayD<f64>>>> {
        let v: Vec<Priv<ArrayD<f64>>> = (0..count)
            .map(|i| s.input::<ArrayD<f64>>(&format!("v{i}")))
            .collect::<Result<_>>()?;
        if prepared {
            let p = [1, 3, 5]
                .iter()
                .map(|&i| v[i].clone().into_type::<Array2<f64>>()?.prepare())
                .collect::<Result<Vec<_>>>()?;
            PREPARED.with(|cell| *cell.borrow_mut() = p);
        }
        if workload == "matmul" {
            let m = v
                .iter()
                .map(|x| x.clone().into_type::<Array2<f64>>())
                .collect::<Result<Vec<_>>>()?;
            MATRICES.with(|cell| *cell.borrow_mut() = m);
        }
        Ok(v)
    };
    // Accuracy: the private result against the cleartext engine's.
    let result = |cluster: LocalCluster| -> Result<ArrayD<f64>> {
        let mut cluster = cluster;
        let alice = cluster.client("alice");
        for (k, v) in &refs {
            cluster.upload(&alice, k, v)?;
        }
        let run = cluster.run(|s| s.output("alice", "r", &compute(&workload, &load(s)?)?))?;
        run.open(&alice, "r")
    };
    let private = result(LocalCluster::new(cfg).with_seed(2))?;
    let clear = result(LocalCluster::cleartext())?;
    let max_err = (&private - &clear)
        .iter()
        .fold(0.0f64, |m, d| m.max(d.abs()));

    let cluster = cluster_with(cfg, &refs);
    let setup = |s: &Session, _: u64| {
        let v = load(s)?;
        OPERANDS.with(|o| *o.borrow_mut() = v);
        Ok(())
    };
    let op = |_: &Session| {
        OPERANDS.with(|o| -> Result<()> {
            std::hint::black_box(compute(&workload, &o.borrow())?);
            Ok(())
        })
    };
    // One warm-up, then the timed repetitions.
    let (_, bytes, rounds) = timed_run(&cluster, 1, setup, op);
    let mut times: Vec<f64> = (0..reps.max(1))
        .map(|_| timed_run(&cluster, 1, setup, op).0.as_secs_f64() * 1e3)
        .collect();
    let listed = times
        .iter()
        .map(|t| format!("{t:.3}"))
        .collect::<Vec<_>>()
        .join(", ");
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{{\"system\": \"privpy\", \"workload\": \"{workload}\", \"n\": {n}, \"preset\": \"{preset}\", \
         \"times_ms\": [{listed}], \"median_ms\": {median:.3}, \"bytes_all_servers\": {bytes}, \
         \"rounds\": {rounds}, \"max_abs_err\": {max_err:.3e}}}"
    );
    Ok(())
}
