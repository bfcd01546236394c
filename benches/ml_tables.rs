//! Reproduces the paper's Tables 4 and 6 (default preset; `-- --preset fast` or
//! `paper` for another): time per instance of one
//! training iteration of logistic regression, k-means and matrix factorization at
//! batch sizes 1, 10, 100, 1000, and private inference time per MNIST image at the
//! same batch sizes (MLP, LeNet-5 with and without batch normalization), with
//! bytes (all servers) and rounds per batch. Time runs inside the session from a
//! common start of the four servers to the end of the last one (uploads excluded);
//! median of three runs below batch 1000, one run at 1000.
//! Written to `target/ml_tables-<preset>.md` too.
//!
//! Uses the shipped slices (Adult, MNIST) and, where available, the full Credit Card
//! and MovieLens sets (`$PRIVPY_DATA` or `../shared/data`), else generated data.
//!
//! `cargo bench --bench ml_tables`; `-- --only training|mlp|lenet` runs one part,
//! `-- --batch B` one batch size.
//!
//! `cargo bench --bench ml_tables -- lr-rrmse [--iterations N] [--batch B] [--lr R]`
//! instead trains logistic regression on the shipped Adult slice (2,000 rows, 124
//! dimensions with the bias) for 2,000 SGD iterations on batches of 10 at learning rate
//! 0.1 (the defaults; 10 passes over the slice), privately with each preset (fast,
//! default, paper) and on the cleartext engine, and reports the RRMSE of the private
//! weights against the cleartext ones (`‖w_p − w_c‖ / ‖w_c‖`) and both models'
//! accuracy on the shipped test slice (1,000 rows), with the time and bytes of each
//! private run. Written to `target/lr_rrmse.md` too. Not part of `cargo test`.

mod common;

use common::{cluster_with, no_setup, timed_run};
use privpy::data::{data_dir, load_creditcard, load_libsvm, load_mnist, shipped};
use privpy::ml::{
    LeNet5, LeNet5Bn, accuracy, kmeans, logistic_regression, matrix_factorization,
    mlp_predict_inputs,
};
use privpy::model::load_safetensors;
use privpy::prelude::*;
use std::fmt::Write as _;
use std::time::Duration;

const BATCHES: [usize; 4] = [1, 10, 100, 1000];

fn measure(runs: usize, f: impl Fn() -> (Duration, u64, u64)) -> (f64, u64, u64) {
    let mut v: Vec<(Duration, u64, u64)> = (0..runs).map(|_| f()).collect();
    v.sort();
    let m = v[v.len() / 2];
    (m.0.as_secs_f64() * 1e3, m.1, m.2)
}

fn row(out: &mut String, what: &str, b: usize, (ms, bytes, rounds): (f64, u64, u64)) {
    let _ = writeln!(
        out,
        "| {what} | {b} | {:.3} | {:.1} | {} |",
        ms / b as f64,
        bytes as f64 / b as f64 / 1e3,
        rounds
    );
}

fn tile_rows(x: &Array2<f64>, n: usize) -> Array2<f64> {
    let idx: Vec<usize> = (0..n).map(|i| i % x.nrows()).collect();
    x.select(Axis(0), &idx)
}

/// The value after `name` on the command line, if any.
fn arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

/// Logistic regression: private weights against cleartext after many iterations,
/// per preset (see the module documentation).
fn lr_rrmse() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let iterations = arg("--iterations").unwrap_or(2000);
    let batch = arg("--batch").unwrap_or(10).max(1);
    let lr = arg("--lr").unwrap_or(0.1);
    let train = load_libsvm(&shipped("adult/a9a-first-2000"), 123, None)?;
    let test = load_libsvm(&shipped("adult/a9a.t-first-1000"), 123, None)?;
    let run = |mut c: LocalCluster| -> privpy::Result<(Array1<f64>, f64, u64)> {
        let owner = c.client("owner");
        c.upload(&owner, "x", &train.x)?;
        c.upload(&owner, "y", &train.y)?;
        let t = std::time::Instant::now();
        let out = c.run(|s| {
            let w = logistic_regression(
                s.input("x")?,
                s.input("y")?,
                s.zeros(train.x.ncols()),
                batch,
                iterations,
                lr,
            );
            s.output("owner", "w", &w)
        })?;
        let secs = t.elapsed().as_secs_f64();
        Ok((out.open(&owner, "w")?, secs, out.stats().total_bytes()))
    };
    let (wc, _, _) = run(LocalCluster::cleartext())?;
    let acc_c = accuracy(&test.x, &test.y, &wc);
    let mut out = format!(
        "# Logistic regression: private vs cleartext weights after {iterations} iterations\n\n\
         Adult slice ({} rows, {} dimensions with the bias), batches of {batch}, learning \
         rate {lr}, weights from 0; accuracy on {} test rows. RRMSE = ‖w_private − \
         w_cleartext‖ / ‖w_cleartext‖ (the cleartext engine computes in f64: about 1e-16 \
         is the floor). Time: the private run, uploads excluded.\n\n\
         | preset | ring, f | RRMSE | accuracy (private) | accuracy (cleartext) | time (s) | MB between servers |\n\
         |---|---|---|---|---|---|---|\n",
        train.y.len(),
        train.x.ncols(),
        test.y.len(),
    );
    for (name, cfg) in [
        ("fast", Config::fast()),
        ("default", Config::default()),
        ("paper", Config::paper()),
    ] {
        let (wp, secs, bytes) = run(LocalCluster::new(cfg).with_seed(1))?;
        let rrmse = (&wp - &wc).mapv(|d| d * d).sum().sqrt() / wc.mapv(|d| d * d).sum().sqrt();
        let line = format!(
            "| {name} | {:?}, {} | {rrmse:.2e} | {:.4} | {acc_c:.4} | {secs:.1} | {:.1} |",
            cfg.ring(),
            cfg.frac_bits(),
            accuracy(&test.x, &test.y, &wp),
            bytes as f64 / 1e6
        );
        eprintln!("{line}");
        let _ = writeln!(out, "{line}");
    }
    println!("{out}");
    let _ = std::fs::create_dir_all("target");
    if let Err(e) = std::fs::write("target/lr_rrmse.md", &out) {
        eprintln!("could not write target/lr_rrmse.md: {e}");
    }
    Ok(())
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "lr-rrmse") {
        return lr_rrmse();
    }
    let preset: String = arg("--preset").unwrap_or_else(|| "default".into());
    let cfg = match preset.as_str() {
        "fast" => Config::fast(),
        "paper" => Config::paper(),
        "default" => Config::default(),
        other => return Err(format!("unknown preset {other:?} (fast, default or paper)").into()),
    };
    let mut out = format!(
        "# Tables 4 and 6: machine learning, {preset} preset ({:?}, f = {})\n\n",
        cfg.ring(),
        cfg.frac_bits()
    );
    let _ = writeln!(
        out,
        "| task | batch | ms per instance | kB per instance | rounds per batch |\n|---|---|---|---|---|"
    );
    let only: Option<String> = arg("--only");
    if let Some(o) = only
        .as_deref()
        .filter(|o| !["training", "mlp", "lenet"].contains(o))
    {
        return Err(format!("unknown --only {o:?} (training, mlp or lenet)").into());
    }
    let part = |p: &str| only.as_deref().is_none_or(|o| o == p);
    let batches: Vec<usize> = match arg::<usize>("--batch") {
        Some(b) => vec![b.max(1)],
        None => BATCHES.to_vec(),
    };
    let adult = load_libsvm(&shipped("adult/a9a-first-2000"), 123, None)?;
    let cc = data_dir()
        .map(|d| d.join("creditcard/creditcard.csv.gz"))
        .filter(|p| p.exists())
        .map(|p| load_creditcard(&p, Some(2000)))
        .transpose()?;
    for &b in batches.iter().filter(|_| part("training")) {
        let runs = if b >= 1000 { 1 } else { 3 };
        // One logistic-regression SGD step on a batch of b Adult rows.
        let x = tile_rows(&adult.x, b).into_dyn();
        let y = Array1::from_shape_fn(b, |i| adult.y[i % adult.y.len()]).into_dyn();
        let c = cluster_with(cfg, &[("x", x), ("y", y), ("w", ArrayD::zeros(vec![124]))]);
        let r = measure(runs, || {
            timed_run(&c, 1, no_setup, |s| {
                std::hint::black_box(logistic_regression(
                    s.input("x")?,
                    s.input("y")?,
                    s.input("w")?,
                    b,
                    1,
                    0.5,
                ));
                Ok(())
            })
        });
        row(&mut out, "logistic regression (Adult, 124 dims)", b, r);
        // One k-means iteration (k = 5) on b rows.
        let (name, data) = match &cc {
            Some(c) => (
                "k-means (Credit Card, 29 dims)",
                c.x.slice(s![.., ..29]).to_owned(),
            ),
            None => (
                "k-means (Adult, 123 dims)",
                adult.x.slice(s![.., ..123]).to_owned(),
            ),
        };
        let x = tile_rows(&data, b.max(5)).into_dyn();
        let c = cluster_with(cfg, &[("x", x)]);
        let r = measure(runs, || {
            timed_run(&c, 1, no_setup, |s| {
                let x = s.input::<Array2<f64>>("x")?;
                let c0 = x.slice(s![..5, ..]);
                std::hint::black_box(kmeans(x, c0, 1));
                Ok(())
            })
        });
        row(&mut out, name, b, r);
        // One matrix-factorization step (rank 5) on b users × 1,682 items.
        let items = 1682;
        let rr = ArrayD::from_shape_fn(vec![b, items], |i| {
            if (i[0] * 31 + i[1] * 17) % 16 == 0 {
                ((i[0] + i[1]) % 5 + 1) as f64
            } else {
                0.0
            }
        });
        let mask = rr.mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
        let c = cluster_with(
            cfg,
            &[
                ("r", rr),
                ("m", mask),
                ("u", ArrayD::from_elem(vec![b, 5], 0.8)),
                ("v", ArrayD::from_elem(vec![items, 5], 0.8)),
            ],
        );
        let r = measure(runs, || {
            timed_run(&c, 1, no_setup, |s| {
                std::hint::black_box(matrix_factorization(
                    s.input("r")?,
                    s.input("m")?,
                    s.input("u")?,
                    s.input("v")?,
                    1,
                    0.001,
                    0.01,
                ));
                Ok(())
            })
        });
        row(&mut out, "matrix factorization (users x 1,682 items)", b, r);
    }
    // Private inference per image (Table 6).
    let test = load_mnist(
        &shipped("mnist/t10k-300-images-idx3-ubyte"),
        &shipped("mnist/t10k-300-labels-idx1-ubyte"),
        None,
    )?;
    let model = load_safetensors(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mnist-mlp.safetensors"),
    )?;
    for &b in batches.iter().filter(|_| part("mlp")) {
        let mut inputs: Vec<(&str, ArrayD<f64>)> =
            model.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        inputs.push(("x", tile_rows(&test.images, b).into_dyn()));
        let c = cluster_with(cfg, &inputs);
        let r = measure(if b >= 1000 { 1 } else { 3 }, || {
            timed_run(&c, 1, no_setup, |s| {
                std::hint::black_box(mlp_predict_inputs(s, "x")?);
                Ok(())
            })
        });
        row(
            &mut out,
            "MNIST inference, 784-625-625-10 (per image)",
            b,
            r,
        );
    }
    // LeNet-5, without and with batch normalization (~6,500 sigmoids per image; the
    // network runs in chunks of `INFERENCE_CHUNK` images).
    for (file, name, bn) in [
        ("models/mnist-lenet5.safetensors", "LeNet-5", false),
        ("models/mnist-lenet5-bn.safetensors", "LeNet-5-BN", true),
    ] {
        let lenet = load_safetensors(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file))?;
        for &b in batches.iter().filter(|_| part("lenet")) {
            let mut inputs: Vec<(&str, ArrayD<f64>)> =
                lenet.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            inputs.push(("x", tile_rows(&test.images, b).into_dyn()));
            let c = cluster_with(cfg, &inputs);
            let r = measure(1, || {
                timed_run(&c, 1, no_setup, |s| {
                    let x = s.input("x")?;
                    std::hint::black_box(if bn {
                        LeNet5Bn::from_inputs(s)?.predict(&x)?
                    } else {
                        LeNet5::from_inputs(s)?.predict(&x)?
                    });
                    Ok(())
                })
            });
            row(
                &mut out,
                &format!("MNIST inference, {name} (per image)"),
                b,
                r,
            );
        }
    }
    println!("{out}");
    let _ = std::fs::create_dir_all("target");
    if let Err(e) = std::fs::write(format!("target/ml_tables-{preset}.md"), &out) {
        eprintln!("could not write target/ml_tables.md: {e}");
    }
    Ok(())
}
