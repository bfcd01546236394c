//! Reproduces the paper's Figure 5: time and relative error of division (`1/x`) and of
//! the sigmoid per iteration count (1..=50), for several `x`, on the default preset.
//! Every `x` of a row is computed in one batched run; time is the median of three
//! runs, measured on S1 inside the session. Bytes (all servers) and rounds per run are
//! printed beside it. The table is also written to `target/figure5.md`.
//!
//! `cargo bench --bench figure5`

mod common;

use common::{cluster_with, no_setup, timed_run};
use privpy::prelude::*;
use std::fmt::Write as _;
use std::time::Duration;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn table(
    title: &str,
    xs: &[f64],
    exact: impl Fn(f64) -> f64,
    run: impl Fn(&Priv<Array1<f64>>, usize) -> Priv<Array1<f64>> + Sync + Copy,
    iterations: impl Iterator<Item = usize>,
    out: &mut String,
) {
    let cfg = Config::default();
    let x = Array1::from(xs.to_vec()).into_dyn();
    let _ = writeln!(out, "\n### {title} (default preset: Z_2^128, f = 32)\n");
    let mut head = String::from("| iterations | time (ms) | bytes | rounds |");
    for v in xs {
        let _ = write!(head, " rel. error x={v} |");
    }
    let _ = writeln!(out, "{head}");
    let _ = writeln!(out, "|{}", "---|".repeat(4 + xs.len()));
    for it in iterations {
        let mut times = Vec::new();
        let mut meta = (0, 0);
        for _ in 0..3 {
            let cluster = cluster_with(cfg, &[("x", x.clone())]);
            let (t, b, r) = timed_run(&cluster, 1, no_setup, |s| {
                let x = s.input::<Array1<f64>>("x")?;
                std::hint::black_box(run(&x, it));
                Ok(())
            });
            times.push(t);
            meta = (b, r);
        }
        // The values themselves, from one more run.
        let mut c = cluster_with(cfg, &[("x", x.clone())]);
        let alice = c.client("alice");
        let res = c
            .run(|s| {
                let x = s.input::<Array1<f64>>("x")?;
                s.output("alice", "y", &run(&x, it))
            })
            .expect("runs");
        let y: Array1<f64> = res.open(&alice, "y").expect("opens");
        let mut row = format!(
            "| {it} | {:.2} | {} | {} |",
            median(times).as_secs_f64() * 1e3,
            meta.0,
            meta.1
        );
        for (k, &v) in xs.iter().enumerate() {
            let e = exact(v);
            let _ = write!(row, " {:.1e} |", ((y[k] - e) / e).abs());
        }
        let _ = writeln!(out, "{row}");
    }
}

fn main() {
    let mut out = String::from("# Figure 5: iterations vs time and relative error\n");
    let xs = [0.5, 3.0, 100.0, 10000.0];
    table(
        "1/x by Newton's method (start from the binary exponent)",
        &xs,
        |v| 1.0 / v,
        |x, it| x.reciprocal_with(it),
        1..=50,
        &mut out,
    );
    let ss = [-4.0, -1.0, 0.5, 3.0];
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    table(
        "sigmoid by the paper's Euler method",
        &ss,
        sig,
        |x, it| x.sigmoid_euler(it),
        1..=50,
        &mut out,
    );
    table(
        "sigmoid, the default method (no iteration parameter; shown once)",
        &ss,
        sig,
        |x, _| x.sigmoid(),
        1..=1,
        &mut out,
    );
    println!("{out}");
    let _ = std::fs::create_dir_all("target");
    if let Err(e) = std::fs::write("target/figure5.md", &out) {
        eprintln!("could not write target/figure5.md: {e}");
    }
}
