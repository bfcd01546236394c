//! Derived real functions: error bounds on dense grids, for the default and paper
//! presets (and looser ones for the fast preset).

use crate::common::*;
use privpy::prelude::*;

/// Per preset: (relative tolerance, absolute tolerance in units of 2^-f).
fn tol(name: &str) -> (f64, f64) {
    match name {
        "fast/Z64" => (2e-3, 64.0),
        "default/Z128" => (1e-8, 64.0),
        _ => (1e-12, 64.0),
    }
}

/// Rounds to the preset's grid, so the reference sees the value the servers see.
fn on_grid(cfg: &Config, x: f64) -> f64 {
    (x / cfg.ulp()).round() * cfg.ulp()
}

fn check(
    name: &str,
    cfg: &Config,
    what: &str,
    xs: &Array1<f64>,
    got: &ArrayD<f64>,
    want: impl Fn(f64) -> f64,
    relative: bool,
) {
    let (rel, abs_ulps) = tol(name);
    let mut worst: f64 = 0.0;
    for (x, g) in xs.iter().zip(got.iter()) {
        let w = want(*x);
        let allowed = if relative { rel * w.abs() } else { rel } + abs_ulps * cfg.ulp();
        let err = (g - w).abs();
        worst = worst.max(err / allowed);
        assert!(
            err <= allowed,
            "{name} {what}({x:e}) = {g:e}, want {w:e} (error {err:e} > {allowed:e})"
        );
    }
    assert!(worst.is_finite());
}

fn run(
    cfg: Config,
    xs: &Array1<f64>,
    program: impl Fn(&Priv<Array1<f64>>) -> Priv<Array1<f64>> + Sync,
) -> ArrayD<f64> {
    run_on(
        LocalCluster::new(cfg).with_seed(3),
        &[("x", xs.clone().into_dyn())],
        &["y"],
        |s| {
            let x = s.input::<Array1<f64>>("x")?;
            s.output("alice", "y", &program(&x))
        },
    )
    .unwrap()
    .0
    .remove(0)
}

/// Log-spaced magnitudes `2^lo .. 2^hi`, both signs when asked, on the preset's grid.
fn log_grid(cfg: &Config, lo: f64, hi: f64, n: usize, signed: bool) -> Array1<f64> {
    let mut v: Vec<f64> = (0..n)
        .map(|i| on_grid(cfg, 2f64.powf(lo + (hi - lo) * i as f64 / (n - 1) as f64)))
        .collect();
    if signed {
        let neg: Vec<f64> = v.iter().map(|x| -x).collect();
        v.extend(neg);
    }
    Array1::from(v)
}

fn lin_grid(cfg: &Config, lo: f64, hi: f64, n: usize) -> Array1<f64> {
    Array1::linspace(lo, hi, n).mapv(|x| on_grid(cfg, x))
}

#[test]
fn reciprocal_and_division_hold_their_bounds() {
    for (name, cfg) in presets() {
        let b = cfg.bound().log2();
        // Where 1/x has at least 8 significant bits: |x| ≤ 2^(f/2 - 4)… and ≥ 2^-(f/2).
        let f = cfg.frac_bits() as f64;
        let xs = log_grid(
            &cfg,
            -(f / 2.0).min(b - 1.0),
            (f / 2.0 - 4.0).min(b - 1.0),
            120,
            true,
        );
        let got = run(cfg, &xs, |x| x.reciprocal());
        check(name, &cfg, "1/x", &xs, &got, |x| 1.0 / x, true);
        // Beyond, the absolute error stays within a few units.
        let big = log_grid(&cfg, f / 2.0 - 4.0, b - 1.0, 40, false);
        let got = run(cfg, &big, |x| x.reciprocal());
        for (x, g) in big.iter().zip(got.iter()) {
            assert!(
                (g - 1.0 / x).abs() <= 64.0 * cfg.ulp() + 1e-9 / x,
                "{name}: 1/{x} = {g}"
            );
        }
        // Below the range: 0, as documented.
        let zero = run(cfg, &Array1::from(vec![0.0, cfg.ulp()]), |x| x.reciprocal());
        assert!(
            zero[0].abs() <= 4.0 * cfg.ulp(),
            "{name}: 1/0 gives 0 within 4 units: {}",
            zero[0]
        );
    }
}

#[test]
fn division_in_every_mix() {
    let cfg = Config::default();
    let a = Array1::from(vec![3.0, -7.5, 0.25, 100.0]);
    let b = Array1::from(vec![2.0, 0.5, -4.0, 1000.0]);
    let (p, q) = private_and_clear(
        cfg,
        &[("a", a.into_dyn()), ("b", b.into_dyn())],
        &["ss", "ps", "sp", "pw"],
        |s| {
            let a = s.input::<Array1<f64>>("a")?;
            let b = s.input::<Array1<f64>>("b")?;
            s.output("alice", "ss", &(&a / &b))?;
            s.output("alice", "ps", &(1.5 / &b))?;
            s.output("alice", "sp", &(&a / 8.0))?;
            let w = (&a.powi(3) - &a.powi(-2)) + a.powi(0);
            s.output("alice", "pw", &w)
        },
    );
    for k in 0..4 {
        let d = max_abs_diff(&p[k], &q[k]);
        let scale = q[k].iter().fold(1.0f64, |m, v| m.max(v.abs()));
        assert!(d <= 1e-8 * scale, "output {k}: {d}");
    }
}

#[test]
fn exp_and_ln_hold_their_bounds() {
    for (name, cfg) in presets() {
        let b = cfg.bound().log2();
        let hi = ((b - 2.0) * std::f64::consts::LN_2).min(40.0);
        let xs = lin_grid(&cfg, -hi, hi, 201);
        let got = run(cfg, &xs, |x| x.exp());
        check(name, &cfg, "exp", &xs, &got, f64::exp, true);
        // Saturation above the range, as documented.
        let sat = run(cfg, &Array1::from(vec![b * 2.0]), |x| x.exp());
        assert!(
            (sat[0] / 2f64.powf(b - 1.0) - 1.0).abs() < 0.01,
            "{name}: exp saturates at 2^(B-1)"
        );

        let f = cfg.frac_bits() as f64;
        let ys = log_grid(&cfg, -(f / 2.0).min(40.0), b - 1.0, 150, false);
        let got = run(cfg, &ys, |x| x.ln());
        check(name, &cfg, "ln", &ys, &got, f64::ln, false);
    }
}

#[test]
fn sqrt_and_rsqrt_hold_their_bounds() {
    for (name, cfg) in presets() {
        let b = cfg.bound().log2();
        let f = cfg.frac_bits() as f64;
        let xs = log_grid(&cfg, -(f / 2.0).min(40.0), b - 1.0, 150, false);
        let got = run(cfg, &xs, |x| x.sqrt());
        check(name, &cfg, "sqrt", &xs, &got, f64::sqrt, true);
        let small = log_grid(
            &cfg,
            -(f / 2.0).min(40.0),
            (f / 2.0).min(b - 1.0),
            100,
            false,
        );
        let got = run(cfg, &small, |x| x.rsqrt());
        check(name, &cfg, "rsqrt", &small, &got, |x| 1.0 / x.sqrt(), true);
        let zero = run(cfg, &Array1::from(vec![0.0]), |x| x.sqrt());
        assert!(
            zero[0].abs() <= 4.0 * cfg.ulp(),
            "{name}: sqrt(0) is 0 within 4 units: {}",
            zero[0]
        );
    }
}

#[test]
fn sigmoid_tanh_softmax_hold_their_bounds() {
    for (name, cfg) in presets() {
        let xs = lin_grid(&cfg, -40.0, 40.0, 321);
        let got = run(cfg, &xs, |x| x.sigmoid());
        check(
            name,
            &cfg,
            "sigmoid",
            &xs,
            &got,
            |x| 1.0 / (1.0 + (-x).exp()),
            false,
        );
        let got = run(cfg, &xs, |x| x.tanh());
        check(name, &cfg, "tanh", &xs, &got, f64::tanh, false);
    }
    // The cheaper sigmoid holds its tolerance (plus its rounding) on every preset,
    // up to the edge of the input range (its comparisons use circuits on
    // bound + f + 2 bits only).
    for (name, cfg) in presets() {
        let mut xs = lin_grid(&cfg, -20.0, 20.0, 161).to_vec();
        let edge = cfg.bound() * (1.0 - 1e-6);
        xs.extend([edge, -edge, edge / 3.0, -edge / 3.0, 1e-9, -1e-9]);
        let xs = Array1::from(xs).mapv(|x| on_grid(&cfg, x));
        for tol in [1e-3, 1e-4, 1e-6] {
            if tol < 64.0 * cfg.ulp() {
                continue;
            }
            let got = run(cfg, &xs, |x| x.sigmoid_with_tolerance(tol));
            for (x, g) in xs.iter().zip(got.iter()) {
                let w = 1.0 / (1.0 + (-x).exp());
                assert!(
                    (g - w).abs() <= tol + 64.0 * cfg.ulp(),
                    "{name}, tol {tol}: sigmoid({x}) = {g}, want {w}"
                );
            }
        }
    }
    // With garbled-circuit comparisons (the costly part), the cheap sigmoid saves most.
    let cfg = Config::default().with_comparison(Comparison::GarbledCircuit);
    let xs = lin_grid(&cfg, -20.0, 20.0, 161);
    let bytes = |f: fn(&Priv<Array1<f64>>) -> Priv<Array1<f64>>| {
        let (_, run) = run_on(
            LocalCluster::new(cfg).with_seed(1),
            &[("x", xs.clone().into_dyn())],
            &["y"],
            |s| s.output("alice", "y", &f(&s.input::<Array1<f64>>("x")?)),
        )
        .unwrap();
        run.stats().total_bytes()
    };
    let (full, cheap) = (
        bytes(|x| x.sigmoid()),
        bytes(|x| x.sigmoid_with_tolerance(1e-4)),
    );
    // Two full-width comparisons and 15 multiplications vs one comparison per bit:
    // 16x fewer bytes measured.
    assert!(cheap * 12 < full, "tolerance 1e-4: {cheap} bytes vs {full}");
    // The paper's Euler method converges like 1/iterations.
    let cfg = Config::default();
    let xs = lin_grid(&cfg, -6.0, 6.0, 49);
    let e100 = run(cfg, &xs, |x| x.sigmoid_euler(100));
    let e400 = run(cfg, &xs, |x| x.sigmoid_euler(400));
    let err = |g: &ArrayD<f64>| {
        g.iter()
            .zip(xs.iter())
            .map(|(g, x)| (g - 1.0 / (1.0 + (-x).exp())).abs())
            .fold(0.0, f64::max)
    };
    assert!(
        err(&e100) < 0.01 && err(&e400) < err(&e100) / 2.0,
        "{} {}",
        err(&e100),
        err(&e400)
    );
    // Softmax, private vs cleartext, including large logits.
    let mut g = rng(4);
    let logits = arr(&[5, 7], &mut g, 30.0);
    for (name, cfg) in presets() {
        let (p, q) = private_and_clear(cfg, &[("z", logits.clone())], &["s0", "s1"], |s| {
            let z = s.input::<Array2<f64>>("z")?;
            s.output("alice", "s0", &z.softmax(Axis(0)))?;
            s.output("alice", "s1", &z.softmax(Axis(1)))
        });
        let t = tol(name).0.max(1e-9) * 10.0;
        assert!(max_abs_diff(&p[0], &q[0]) < t, "{name}: softmax axis 0");
        assert!(max_abs_diff(&p[1], &q[1]) < t, "{name}: softmax axis 1");
    }
}

/// `sigmoid_with_tolerance` on values far beyond the input bound (computed inside
/// the program, as `X·w` can grow in training): it saturates correctly on every
/// preset and protocol instead of misreading the sign.
#[test]
fn cheap_sigmoid_saturates_beyond_the_input_bound() {
    for (name, cfg) in presets() {
        for protocol in [Comparison::FourParty, Comparison::GarbledCircuit] {
            let cfg = cfg.with_comparison(protocol);
            let b = cfg.bound() * 0.5;
            let xs = ndarray::arr1(&[b, -b, 3.0, -b * 0.9]).into_dyn();
            // ×16: up to 8× the input bound.
            let (p, _) = run_on(
                LocalCluster::new(cfg).with_seed(3),
                &[("x", xs.clone())],
                &["y"],
                |s| {
                    let x = s.input::<Array1<f64>>("x")? * 16.0;
                    s.output("alice", "y", &x.sigmoid_with_tolerance(1e-4))
                },
            )
            .unwrap();
            let want = [1.0, 0.0, 1.0 / (1.0 + (-48.0f64).exp()), 0.0];
            for (g, w) in p[0].iter().zip(want) {
                assert!((g - w).abs() < 1e-3, "{name} {protocol:?}: {g} vs {w}");
            }
        }
    }
}

/// `reciprocal` of values computed inside a program beyond the input bound
/// saturates to 0 (within 2^-B of 1/x) instead of returning an unrelated value
/// (−8.6e12 for 1/1e10 before); values inside the range are unaffected.
#[test]
fn reciprocal_beyond_the_bound_saturates() {
    for (name, cfg) in presets() {
        let b = cfg.bound();
        let xs = ndarray::arr1(&[b * 0.5, -b * 0.75, 3.0, -0.25]).into_dyn();
        // ×64: the first two end far beyond the bound, the others stay inside it.
        let (p, _) = run_on(
            LocalCluster::new(cfg).with_seed(4),
            &[("x", xs.clone())],
            &["y"],
            |s| {
                let x = s.input::<Array1<f64>>("x")? * 64.0;
                s.output("alice", "y", &x.reciprocal())
            },
        )
        .unwrap();
        let y = &p[0];
        let floor = 1.0 / b + 4.0 * cfg.ulp();
        assert!(y[0].abs() <= floor, "{name}: 1/(32·bound) = {}", y[0]);
        assert!(y[1].abs() <= floor, "{name}: 1/(-48·bound) = {}", y[1]);
        assert!(
            (y[2] - 1.0 / 192.0).abs() < 1e-3 / 192.0 + 64.0 * cfg.ulp(),
            "{name}: {}",
            y[2]
        );
        assert!(
            (y[3] + 1.0 / 16.0).abs() < 1e-3 / 16.0 + 64.0 * cfg.ulp(),
            "{name}: {}",
            y[3]
        );
    }
}
