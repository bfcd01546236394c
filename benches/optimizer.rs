//! Reproduces the paper's Figures 7 and 8: the optimizer's gains, optimized vs
//! `#[private(optimize = false)]`, in one run. Default preset; time is the median of
//! three runs measured on S1 inside the session; rounds and bytes (all servers) beside.
//! The tables are also written to `target/optimizer.md`.
//!
//! `cargo bench --bench optimizer`

mod common;

use common::{cluster_with, no_setup, timed_run};
use privpy::prelude::*;
use std::fmt::Write as _;
use std::time::Duration;

macro_rules! loops {
    ($opt:ident, $plain:ident, ($x:ident, $y:ident, $n:ident) $body:tt) => {
        #[private]
        fn $opt($x: Priv<Array1<f64>>, $y: Priv<Array1<f64>>, $n: usize) -> Priv<Array1<f64>> $body
        #[private(optimize = false)]
        fn $plain($x: Priv<Array1<f64>>, $y: Priv<Array1<f64>>, $n: usize) -> Priv<Array1<f64>> $body
    };
}

loops!(mul_opt, mul_plain, (x, y, n) {
    let mut z = x.clone();
    for i in 0..n {
        z[i] = x[i] * y[i];
    }
    z
});

loops!(cmp_opt, cmp_plain, (x, y, n) {
    let mut z = x.clone();
    for i in 0..n {
        z[i] = x[i] > y[i];
    }
    z
});

macro_rules! sums {
    ($n:literal, $fo:ident, $fp:ident, $vo:ident, $vp:ident, $y0:ident $(, $y:ident)*) => {
        #[allow(clippy::too_many_arguments)]
        #[private]
        fn $fo(x: Priv<f64>, $y0: Priv<f64> $(, $y: Priv<f64>)*) -> Priv<f64> { x * $y0 $(+ x * $y)* }
        #[allow(clippy::too_many_arguments)]
        #[private(optimize = false)]
        fn $fp(x: Priv<f64>, $y0: Priv<f64> $(, $y: Priv<f64>)*) -> Priv<f64> { x * $y0 $(+ x * $y)* }
        #[allow(clippy::too_many_arguments)]
        #[private]
        fn $vo(x: Priv<f64>, $y0: Priv<f64> $(, $y: Priv<f64>)*) -> Priv<f64> { $y0 * $y0 $(+ x * $y)* }
        #[allow(clippy::too_many_arguments)]
        #[private(optimize = false)]
        fn $vp(x: Priv<f64>, $y0: Priv<f64> $(, $y: Priv<f64>)*) -> Priv<f64> { $y0 * $y0 $(+ x * $y)* }
    };
}

sums!(2, f2o, f2p, v2o, v2p, a, b);
sums!(4, f4o, f4p, v4o, v4p, a, b, c, d);
sums!(6, f6o, f6p, v6o, v6p, a, b, c, d, e, f);
sums!(8, f8o, f8p, v8o, v8p, a, b, c, d, e, f, g, h);
sums!(10, f10o, f10p, v10o, v10p, a, b, c, d, e, f, g, h, i, j);

fn median3(f: impl Fn() -> (Duration, u64, u64)) -> (f64, u64, u64) {
    let mut v: Vec<(Duration, u64, u64)> = (0..3).map(|_| f()).collect();
    v.sort();
    (v[1].0.as_secs_f64() * 1e3, v[1].1, v[1].2)
}

fn run(x: &ArrayD<f64>, op: impl Fn(&Session) -> Result<()> + Sync) -> (f64, u64, u64) {
    median3(|| {
        let cluster = cluster_with(
            Config::default(),
            &[("x", x.clone()), ("y", x.mapv(|v| 1.0 - v))],
        );
        timed_run(&cluster, 1, no_setup, &op)
    })
}

fn scalars(s: &Session, n: usize) -> Result<Vec<Priv<f64>>> {
    let x = s.input::<Array1<f64>>("x")?;
    Ok((0..n).map(|i| x.item(&[i])).collect())
}

fn main() {
    let mut out = String::from("# Optimizer gains (paper Figures 7 and 8), default preset\n");
    let _ = writeln!(out, "\n## Figure 7: loop vectorization\n");
    let _ = writeln!(
        out,
        "| operation | n | scalar loop ms (rounds, bytes) | vectorized ms (rounds, bytes) | speed-up |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for n in [100usize, 1000] {
        let x = ArrayD::from_shape_fn(vec![n], |i| (i[0] % 17) as f64 * 0.25 - 2.0);
        type L = fn(Priv<Array1<f64>>, Priv<Array1<f64>>, usize) -> Priv<Array1<f64>>;
        let cases: [(&str, L, L); 2] = [
            ("multiplication", mul_plain, mul_opt),
            ("comparison", cmp_plain, cmp_opt),
        ];
        for (name, plain, opt) in cases {
            let go = |f: L| {
                move |s: &Session| {
                    let (x, y) = (s.input("x")?, s.input("y")?);
                    std::hint::black_box(f(x, y, n));
                    Ok(())
                }
            };
            let p = run(&x, go(plain));
            let o = run(&x, go(opt));
            let _ = writeln!(
                out,
                "| {name} | {n} | {:.2} ({}, {}) | {:.2} ({}, {}) | {:.1}x |",
                p.0,
                p.2,
                p.1,
                o.0,
                o.2,
                o.1,
                p.0 / o.0
            );
        }
    }
    let _ = writeln!(
        out,
        "\n## Figure 8: common factor extraction and expression vectorization\n"
    );
    let _ = writeln!(
        out,
        "| rewrite | terms | plain ms (rounds) | optimized ms (rounds) | speed-up |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    let x = ArrayD::from_shape_fn(vec![11], |i| i[0] as f64 * 0.5 - 2.0);
    macro_rules! row {
        ($label:expr, $n:expr, $p:ident, $o:ident, $($k:literal),*) => {{
            let p = run(&x, |s: &Session| { let v = scalars(s, 11)?; std::hint::black_box($p(v[10].clone() $(, v[$k].clone())*)); Ok(()) });
            let o = run(&x, |s: &Session| { let v = scalars(s, 11)?; std::hint::black_box($o(v[10].clone() $(, v[$k].clone())*)); Ok(()) });
            let _ = writeln!(out, "| {} | {} | {:.3} ({}) | {:.3} ({}) | {:.1}x |", $label, $n, p.0, p.2, o.0, o.2, p.0 / o.0);
        }};
    }
    row!("common factor", 2, f2p, f2o, 0, 1);
    row!("common factor", 4, f4p, f4o, 0, 1, 2, 3);
    row!("common factor", 6, f6p, f6o, 0, 1, 2, 3, 4, 5);
    row!("common factor", 8, f8p, f8o, 0, 1, 2, 3, 4, 5, 6, 7);
    row!(
        "common factor",
        10,
        f10p,
        f10o,
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        9
    );
    row!("expression vectorization", 2, v2p, v2o, 0, 1);
    row!("expression vectorization", 4, v4p, v4o, 0, 1, 2, 3);
    row!("expression vectorization", 6, v6p, v6o, 0, 1, 2, 3, 4, 5);
    row!(
        "expression vectorization",
        8,
        v8p,
        v8o,
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        7
    );
    row!(
        "expression vectorization",
        10,
        v10p,
        v10o,
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        9
    );
    println!("{out}");
    let _ = std::fs::create_dir_all("target");
    if let Err(e) = std::fs::write("target/optimizer.md", &out) {
        eprintln!("could not write target/optimizer.md: {e}");
    }
}
