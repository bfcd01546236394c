//! The programs the stock `privpy-server` carries: the examples' computations,
//! registered under names so that clients can run them on a networked cluster.
//!
//! | name | inputs (shape) | arguments (default) | outputs for the caller |
//! |---|---|---|---|
//! | `stats` | `x` (n) | | `sum`, `mean`, `var`, `max` |
//! | `logistic_regression` | `x` (n × d), `y` (n) | `batch` (100), `iterations` (60), `lr` (0.5) | `w` (d) |
//! | `kmeans` | `x` (n × d), `c0` (k × d) | `iterations` (5) | `centroids` (k × d) |
//! | `matrix_factorization` | `r`, `mask` (m × n), `u0` (m × k), `v0` (n × k) | `iterations` (20), `lr` (0.01), `lambda` (0.05) | `u`, `v` |
//! | `mlp_predict` | `images` (b × 784), `w1` (784 × 625), `b1`, `w2` (625 × 625), `b2`, `w3` (625 × 10), `b3` (`w1`–`w3` prepared once per upload and kept across jobs) | | `digits` (b) |
//! | `lenet5_predict` | `images` (b × 784), `c1` (25 × 6), `c1b`, `c3` (150 × 16), `c3b`, `c5` (400 × 120), `c5b`, `f6` (120 × 84), `f6b`, `rbf` (10 × 84) | | `digits` (b) |
//!
//! Every input may be bound to several uploads (for example, row slices of two data
//! owners), which the servers stack by rows. Each program caps a job's inputs
//! ([`Program::max_elements`]): 20 million elements in all for `stats` and
//! `logistic_regression`, 10 million for `kmeans`, `matrix_factorization` and
//! `mlp_predict`, 5 million for `lenet5_predict`. A server binary of your own registers
//! its own functions the same way (see `examples/custom_server.rs`).

use privpy_ml::prelude::*;
use privpy_ml::programs as ml;
use privpy_net::registry::{Job, Program, Registry};

/// Version of the stock programs; every server of a cluster must carry the same.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn at_least_one(job: &Job, name: &str) -> Result<usize> {
    match job.count(name) {
        0 => Err(Error::InvalidArgument {
            operation: "program argument",
            reason: format!("argument {name} must be at least 1"),
        }),
        n => Ok(n),
    }
}

/// Admission check: argument `name` is at least `min`.
fn at_least_arg(
    args: &[(String, f64)],
    name: &str,
    min: f64,
    why: &str,
) -> std::result::Result<(), String> {
    let v = args
        .iter()
        .find(|(n, _)| n == name)
        .map_or(f64::NAN, |(_, v)| *v);
    if v.round() >= min {
        Ok(())
    } else {
        Err(format!("{name} = {v} must be at least {min}: {why}"))
    }
}

/// Admission check: argument `name` is at most `max` (bounds a job's running time).
fn at_most_arg(args: &[(String, f64)], name: &str, max: f64) -> std::result::Result<(), String> {
    let v = args
        .iter()
        .find(|(n, _)| n == name)
        .map_or(f64::NAN, |(_, v)| *v);
    if v.round() <= max {
        Ok(())
    } else {
        Err(format!("{name} = {v} exceeds this program's cap of {max}"))
    }
}

/// The most iterations a stock program runs in one job.
pub const MAX_ITERATIONS: f64 = 100_000.0;

/// The first dimension of parameter `name` (1 for a scalar).
fn rows(shapes: &[(String, Vec<usize>)], name: &str) -> usize {
    shapes
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, s)| s.first().copied())
        .unwrap_or(1)
}

/// The stock registry.
///
/// A grant (an upload's `readers`) lets the grantee run these programs on the
/// input and learn their outputs: aggregates of it (sums, means, a trained model,
/// centroids), never the input itself. Arguments that would copy an input to an
/// output are refused before the job starts: no program runs zero iterations,
/// `stats` needs at least two values, a logistic-regression batch at least two rows,
/// and k-means at least two points per centroid. An aggregate of few rows still
/// says much about them: grant inputs of many rows.
pub fn stock() -> Registry {
    let mut r = Registry::new();
    r.register(
        Program::new("stats", VERSION, |s: &Session, job: &Job| {
            let x = s.input::<Array1<f64>>("x")?;
            s.output(job.client(), "sum", &x.sum())?;
            s.output(job.client(), "mean", &x.mean())?;
            s.output(job.client(), "var", &x.var())?;
            s.output(job.client(), "max", &x.max())
        })
        .max_elements(20_000_000)
        .input("x", [None])
        .check(|shapes, _| {
            if rows(shapes, "x") < 2 {
                return Err("statistics of fewer than two values would reveal them".into());
            }
            Ok(())
        }),
    );
    r.register(
        Program::new(
            "logistic_regression_large",
            VERSION,
            |s: &Session, job: &Job| {
                // Streamed from the store a batch at a time: no input size cap.
                let x = s.large_input("x")?;
                let y = s.large_input("y")?;
                let batch = at_least_one(job, "batch")?;
                let mut w = s.zeros(x.ncols());
                for _ in 0..job.count("epochs") {
                    w = ml::logistic_regression_epoch(
                        &x,
                        &y,
                        w,
                        batch,
                        job.arg("lr"),
                        &mut |_| {},
                    )?;
                }
                s.output(job.client(), "w", &w)
            },
        )
        .input("x", [None, None])
        .input("y", [None, Some(1)])
        .arg("batch", 1000.0)
        .arg("epochs", 1.0)
        .arg("lr", 0.5)
        .check(|shapes, args| {
            if rows(shapes, "x") != rows(shapes, "y") {
                return Err(format!(
                    "x has {} rows and y {}: one label per row",
                    rows(shapes, "x"),
                    rows(shapes, "y")
                ));
            }
            at_least_arg(args, "epochs", 1.0, "no training returns nothing useful")?;
            at_most_arg(args, "epochs", MAX_ITERATIONS)?;
            at_least_arg(
                args,
                "batch",
                2.0,
                "a gradient of one row is a scaled copy of it",
            )
        }),
    );
    r.register(
        Program::new("logistic_regression", VERSION, |s: &Session, job: &Job| {
            let x = s.input::<Array2<f64>>("x")?;
            let y = s.input::<Array1<f64>>("y")?;
            let d = x.shape()[1];
            let batch = at_least_one(job, "batch")?;
            let iterations = job.count("iterations");
            let w = ml::logistic_regression(x, y, s.zeros(d), batch, iterations, job.arg("lr"));
            s.output(job.client(), "w", &w)
        })
        .max_elements(20_000_000)
        .input("x", [None, None])
        .input("y", [None])
        .arg("batch", 100.0)
        .arg("iterations", 60.0)
        .arg("lr", 0.5)
        .check(|_, args| {
            at_least_arg(
                args,
                "iterations",
                1.0,
                "no training returns nothing useful",
            )?;
            at_most_arg(args, "iterations", MAX_ITERATIONS)?;
            at_least_arg(
                args,
                "batch",
                2.0,
                "a gradient of one row is a scaled copy of it",
            )
        }),
    );
    r.register(
        Program::new("kmeans", VERSION, |s: &Session, job: &Job| {
            let x = s.input::<Array2<f64>>("x")?;
            let c0 = s.input::<Array2<f64>>("c0")?;
            let c = ml::kmeans(x, c0, job.count("iterations"));
            s.output(job.client(), "centroids", &c)
        })
        .max_elements(10_000_000)
        .input("x", [None, None])
        .input("c0", [None, None])
        .arg("iterations", 5.0)
        .check(|shapes, args| {
            at_least_arg(args, "iterations", 1.0, "zero iterations return c0 as it is")?;
            at_most_arg(args, "iterations", MAX_ITERATIONS)?;
            if rows(shapes, "x") < 2 * rows(shapes, "c0") {
                return Err(
                    "k-means needs at least two points per centroid (with fewer, centroids can be points)"
                        .into(),
                );
            }
            Ok(())
        }),
    );
    r.register(
        Program::new("matrix_factorization", VERSION, |s: &Session, job: &Job| {
            let m = |k: &str| s.input::<Array2<f64>>(k);
            let (u, v) = ml::matrix_factorization(
                m("r")?,
                m("mask")?,
                m("u0")?,
                m("v0")?,
                job.count("iterations"),
                job.arg("lr"),
                job.arg("lambda"),
            );
            s.output(job.client(), "u", &u)?;
            s.output(job.client(), "v", &v)
        })
        .max_elements(10_000_000)
        .input("r", [None, None])
        .input("mask", [None, None])
        .input("u0", [None, None])
        .input("v0", [None, None])
        .arg("iterations", 20.0)
        .arg("lr", 0.01)
        .arg("lambda", 0.05)
        .check(|_, args| {
            at_least_arg(
                args,
                "iterations",
                1.0,
                "zero iterations return u0 and v0 as they are",
            )?;
            at_most_arg(args, "iterations", MAX_ITERATIONS)
        }),
    );
    r.register(
        Program::new("mlp_predict", VERSION, |s: &Session, job: &Job| {
            // The weight matrices prepared once per upload and kept by the servers.
            let x = s.input::<Array2<f64>>("images")?;
            let w = [
                job.prepared(s, "w1")?,
                job.prepared(s, "w2")?,
                job.prepared(s, "w3")?,
            ];
            let b = [
                s.input::<Array1<f64>>("b1")?,
                s.input::<Array1<f64>>("b2")?,
                s.input::<Array1<f64>>("b3")?,
            ];
            let digits =
                ml::mlp_predict_prepared(&x, [&w[0], &w[1], &w[2]], [&b[0], &b[1], &b[2]])?;
            s.output(job.client(), "digits", &digits)
        })
        .prepared("w1")
        .prepared("w2")
        .prepared("w3")
        .max_elements(10_000_000)
        .row_wise("images")
        .input("images", [None, Some(784)])
        .input("w1", [Some(784), Some(625)])
        .input("b1", [Some(625)])
        .input("w2", [Some(625), Some(625)])
        .input("b2", [Some(625)])
        .input("w3", [Some(625), Some(10)])
        .input("b3", [Some(10)]),
    );
    r.register(
        Program::new("lenet5_predict", VERSION, |s: &Session, job: &Job| {
            let x = s.input::<Array2<f64>>("images")?;
            let digits = ml::LeNet5::from_inputs(s)?.predict(&x)?;
            s.output(job.client(), "digits", &digits)
        })
        .max_elements(5_000_000)
        .row_wise("images")
        .input("images", [None, Some(784)])
        .input("c1", [Some(25), Some(6)])
        .input("c1b", [Some(6)])
        .input("c3", [Some(150), Some(16)])
        .input("c3b", [Some(16)])
        .input("c5", [Some(400), Some(120)])
        .input("c5b", [Some(120)])
        .input("f6", [Some(120), Some(84)])
        .input("f6b", [Some(84)])
        .input("rbf", [Some(10), Some(84)]),
    );
    r
}

/// The stock models: name, program, and the program's weight parameters (each
/// bound to the owner's stored input of the same name).
pub const STOCK_MODELS: [(&str, &str, &[&str]); 2] = [
    (
        "mnist-mlp",
        "mlp_predict",
        &["w1", "b1", "w2", "b2", "w3", "b3"],
    ),
    (
        "mnist-lenet5",
        "lenet5_predict",
        &["c1", "c1b", "c3", "c3b", "c5", "c5b", "f6", "f6b", "rbf"],
    ),
];

/// `[[models]]` tables deploying the stock models with `owner`'s weights (what
/// `privpy-server dev` appends to its `cluster.toml`). The owner uploads the
/// tensors of `models/mnist-mlp.safetensors` and `models/mnist-lenet5.safetensors`
/// under their own names.
pub fn stock_model_config(owner: &str) -> String {
    let mut t = String::new();
    for (name, program, weights) in STOCK_MODELS {
        let w: Vec<String> = weights.iter().map(|w| format!("{w} = {w:?}")).collect();
        t.push_str(&format!(
            "\n[[models]]\nname = {name:?}\nprogram = {program:?}\ninput = \"images\"\nowner = {owner:?}\nweights = {{ {} }}\n",
            w.join(", ")
        ));
    }
    t
}
