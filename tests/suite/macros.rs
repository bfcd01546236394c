//! `#[private]`: every rewrite, checked on the cleartext and four-party engines, with
//! and without the optimizer; each optimization lowers the round count.

use crate::common::*;
use privpy::prelude::*;

// DESIGN §1's example: a secret condition on values becomes an oblivious select.
#[private]
fn relu_layer(
    x: Priv<Array2<f64>>,
    w: Priv<Array2<f64>>,
    b: Priv<Array1<f64>>,
) -> Priv<Array2<f64>> {
    let h = x.dot(&w) + b;
    if h > 0.0 { h } else { 0.0 }
}

// Secrets are not moved by arithmetic; logic on comparisons becomes arithmetic.
#[private]
fn logic(x: Priv<Array1<f64>>, y: Priv<Array1<f64>>) -> Priv<Array1<f64>> {
    let z = x * y + x * 2.0;
    let both = x > 0.0 && y < 1.0;
    let either = x > 0.0 || !(x == y);
    z + both + either * 10.0 + x
}

// Branches that assign variables, nested and chained, with a missing `else`.
#[private]
fn piecewise(x: Priv<Array1<f64>>, lo: f64) -> Priv<Array1<f64>> {
    let mut y = x.clone();
    let mut flag = x.clone() * 0.0;
    if x < lo {
        y = x * 0.0 + lo;
        flag = flag + 1.0;
    } else if x > 10.0 {
        let half = x * 0.5;
        y = half;
        if x > 20.0 {
            flag = flag + 2.0;
        }
    }
    y + flag * 100.0
}

struct Model {
    scale: f64,
}

// Methods in impl blocks, with `self` left alone.
#[private]
impl Model {
    fn apply(&self, x: Priv<Array1<f64>>) -> Priv<Array1<f64>> {
        let big = x >= 1.0;
        if big { x * self.scale } else { x - 1.0 }
    }
}

macro_rules! both_ways {
    ($opt:ident, $plain:ident, ($($p:ident : $t:ty),*) -> $r:ty $body:block) => {
        #[private]
        fn $opt($($p: $t),*) -> $r $body
        #[private(optimize = false)]
        fn $plain($($p: $t),*) -> $r $body
    };
}

both_ways!(loop_opt, loop_plain, (x: Priv<Array1<f64>>, y: Priv<Array1<f64>>, n: usize) -> Priv<Array1<f64>> {
    let mut z = x.clone();
    let mut s = x.sum() * 0.0;
    for i in 0..n {
        z[i] = x[i] * y[i] + 1.0;
        s = s + x[i] * y[i];
    }
    z + s
});

both_ways!(factor_opt, factor_plain, (x: Priv<f64>, a: Priv<f64>, b: Priv<f64>, c: Priv<f64>) -> Priv<f64> {
    x * a + b * x + x * c
});

both_ways!(dot_opt, dot_plain, (a: Priv<f64>, b: Priv<f64>, c: Priv<f64>, d: Priv<f64>) -> Priv<f64> {
    a * b + c * d + b * c + d * a
});

// A loop the optimizer must leave alone: z[i] depends on z[i-1].
both_ways!(carried_opt, carried_plain, (x: Priv<Array1<f64>>, n: usize) -> Priv<Array1<f64>> {
    let mut z = x.clone();
    for i in 1..n {
        z[i] = z[i - 1] * 0.5 + x[i];
    }
    z
});

fn run(cfg: Option<Config>, f: impl Fn(&Session) -> Result<()> + Sync) -> (Vec<ArrayD<f64>>, u64) {
    let mut g = rng(31);
    let x = arr(&[6], &mut g, 25.0).mapv(|v| (v * 4.0).round() / 4.0);
    let y = arr(&[6], &mut g, 3.0).mapv(|v| (v * 4.0).round() / 4.0);
    let m = arr(&[4, 6], &mut g, 2.0);
    let w = arr(&[6, 3], &mut g, 2.0);
    let b = arr(&[3], &mut g, 1.0);
    let inputs = [("x", x), ("y", y), ("m", m), ("w", w), ("b", b)];
    let cluster = match cfg {
        Some(c) => LocalCluster::new(c).with_seed(1),
        None => LocalCluster::cleartext(),
    };
    let (out, run) = run_on(cluster, &inputs, &["out"], f).unwrap();
    (out, run.stats().rounds())
}

type Vecs = (Priv<Array1<f64>>, Priv<Array1<f64>>);
type Program = Box<dyn Fn(&Session) -> Result<()> + Sync>;

fn inputs1(s: &Session) -> Result<Vecs> {
    Ok((s.input("x")?, s.input("y")?))
}

#[test]
fn rewritten_functions_match_cleartext_and_plain_rust() {
    let progs: Vec<(&str, Program)> = vec![
        (
            "relu_layer",
            Box::new(|s| {
                let r = relu_layer(s.input("m")?, s.input("w")?, s.input("b")?);
                s.output("alice", "out", &r)
            }),
        ),
        (
            "logic",
            Box::new(|s| {
                let (x, y) = inputs1(s)?;
                s.output("alice", "out", &logic(x, y))
            }),
        ),
        (
            "piecewise",
            Box::new(|s| {
                let (x, _) = inputs1(s)?;
                s.output("alice", "out", &piecewise(x, -5.0))
            }),
        ),
        (
            "method",
            Box::new(|s| {
                let (x, _) = inputs1(s)?;
                s.output("alice", "out", &Model { scale: 3.0 }.apply(x))
            }),
        ),
    ];
    for (name, p) in &progs {
        let (clear, _) = run(None, p);
        for (pn, cfg) in presets() {
            let (private, _) = run(Some(cfg), p);
            let d = max_abs_diff(&private[0], &clear[0]);
            // Selects multiply by a fixed-point 0/1 (a few units of error), and
            // `piecewise` scales a select by 100.
            assert!(d < 2000.0 * cfg.ulp() + 1e-9, "{name} on {pn}: {d}");
        }
    }
    // The cleartext runs equal plain Rust for the same inputs.
    let (x, _) = run(None, |s| {
        s.output("alice", "out", &s.input::<Array1<f64>>("x")?)
    });
    let (pw, _) = run(None, &progs[2].1);
    let want = x[0].mapv(|v| {
        if v < -5.0 {
            -5.0 + 100.0
        } else if v > 10.0 {
            v * 0.5 + if v > 20.0 { 200.0 } else { 0.0 }
        } else {
            v
        }
    });
    assert_eq!(pw[0], want);
    let (relu, _) = run(None, &progs[0].1);
    assert!(relu[0].iter().all(|&v| v >= 0.0));
}

fn compare_opt(
    name: &str,
    opt: impl Fn(&Session) -> Result<()> + Sync,
    plain: impl Fn(&Session) -> Result<()> + Sync,
) {
    let (clear, _) = run(None, &plain);
    let (clear_opt, _) = run(None, &opt);
    assert!(
        max_abs_diff(&clear[0], &clear_opt[0]) < 1e-9,
        "{name}: the rewrite changes the cleartext result"
    );
    let cfg = Config::default();
    let (p_opt, r_opt) = run(Some(cfg), &opt);
    let (p_plain, r_plain) = run(Some(cfg), &plain);
    assert!(
        max_abs_diff(&p_opt[0], &clear[0]) < 1e-6,
        "{name}: optimized vs cleartext"
    );
    assert!(
        max_abs_diff(&p_plain[0], &clear[0]) < 1e-6,
        "{name}: unoptimized vs cleartext"
    );
    assert!(
        r_opt < r_plain,
        "{name}: {r_opt} rounds optimized, {r_plain} without"
    );
}

#[test]
fn loop_vectorization_is_equivalent_and_saves_rounds() {
    compare_opt(
        "loop",
        |s| {
            let (x, y) = inputs1(s)?;
            s.output("alice", "out", &loop_opt(x, y, 5))
        },
        |s| {
            let (x, y) = inputs1(s)?;
            s.output("alice", "out", &loop_plain(x, y, 5))
        },
    );
}

#[test]
fn common_factor_extraction_is_equivalent_and_saves_rounds() {
    let get = |s: &Session| -> Result<Vec<Priv<f64>>> {
        let x = s.input::<Array1<f64>>("x")?;
        Ok((0..4).map(|i| x.item(&[i])).collect())
    };
    compare_opt(
        "factor",
        move |s| {
            let v = get(s)?;
            s.output(
                "alice",
                "out",
                &factor_opt(v[0].clone(), v[1].clone(), v[2].clone(), v[3].clone()),
            )
        },
        move |s| {
            let v = get(s)?;
            s.output(
                "alice",
                "out",
                &factor_plain(v[0].clone(), v[1].clone(), v[2].clone(), v[3].clone()),
            )
        },
    );
}

#[test]
fn expression_vectorization_is_equivalent_and_saves_rounds() {
    let get = |s: &Session| -> Result<Vec<Priv<f64>>> {
        let x = s.input::<Array1<f64>>("x")?;
        Ok((0..4).map(|i| x.item(&[i])).collect())
    };
    compare_opt(
        "dot",
        move |s| {
            let v = get(s)?;
            s.output(
                "alice",
                "out",
                &dot_opt(v[0].clone(), v[1].clone(), v[2].clone(), v[3].clone()),
            )
        },
        move |s| {
            let v = get(s)?;
            s.output(
                "alice",
                "out",
                &dot_plain(v[0].clone(), v[1].clone(), v[2].clone(), v[3].clone()),
            )
        },
    );
}

#[test]
fn loops_with_carried_dependencies_are_left_alone() {
    let (clear, _) = run(None, |s| {
        s.output("alice", "out", &carried_plain(s.input("x")?, 6))
    });
    let (opt, r_opt) = run(Some(Config::default()), |s| {
        s.output("alice", "out", &carried_opt(s.input("x")?, 6))
    });
    let (_, r_plain) = run(Some(Config::default()), |s| {
        s.output("alice", "out", &carried_plain(s.input("x")?, 6))
    });
    assert!(max_abs_diff(&opt[0], &clear[0]) < 1e-6);
    assert_eq!(r_opt, r_plain, "the optimizer did not fire");
}
