//! Differential testing of the `#[private]` rewrite: 300 random well-typed programs
//! (`generator.rs`, seed fixed, checked in as `programs.rs`), each compiled
//! optimized and with `optimize = false`, run on the four-party engine and on the
//! cleartext engine, and compared with what the program means (the generator's
//! interpreter).
//!
//! Tolerances: the cleartext runs (optimized or not) are within 1e-9·(1 + |v|) of
//! the interpreter (only the order of floating-point operations differs); the
//! four-party runs (default preset, 2^-32 resolution, intermediates below 1e4) are
//! within 1e-5 + 1e-6·|v|.

mod generator;
#[rustfmt::skip]
mod programs;

use crate::common::*;
use privpy::prelude::*;

#[test]
fn generated_programs_are_up_to_date() {
    let src = generator::source(generator::SEED, generator::COUNT);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/suite/generated/programs.rs"
    );
    if std::env::var_os("PRIVPY_REGENERATE").is_some() {
        std::fs::write(path, &src).expect("write programs.rs");
    }
    let checked_in = std::fs::read_to_string(path).expect("read programs.rs");
    assert!(
        checked_in == src,
        "programs.rs is not the generator's output; run with PRIVPY_REGENERATE=1"
    );
    assert_eq!(programs::PROGRAMS.len(), generator::COUNT);
}

/// The public scalar `p`, the public vector `w`, and the secret inputs.
type Parameters = (f64, Array1<f64>, Vec<(&'static str, ArrayD<f64>)>);

fn parameters() -> Parameters {
    let mut g = rng(0x1207);
    let inputs = vec![
        ("s", arr(&[], &mut g, 2.5)),
        ("t", arr(&[], &mut g, 2.5)),
        ("x", arr(&[4], &mut g, 2.5)),
        ("y", arr(&[4], &mut g, 2.5)),
        ("m", arr(&[3, 4], &mut g, 2.5)),
    ];
    // `values` puts 0, 1, -1 first; shift so no input sits on a round number.
    let inputs = inputs
        .into_iter()
        .map(|(n, v)| (n, v.mapv(|e| e * 0.93 + 0.0123)))
        .collect();
    (1.37, array![0.81, -1.22, 0.44, 1.9], inputs)
}

/// Every program's output (optimized or not) on `cluster`.
fn run_all(cluster: LocalCluster, optimized: bool) -> Vec<ArrayD<f64>> {
    let (p, w, inputs) = parameters();
    let names: Vec<String> = (0..programs::PROGRAMS.len())
        .map(|k| format!("g{k}"))
        .collect();
    let outputs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (out, _) = run_on(cluster, &inputs, &outputs, |s| {
        let scalar = |n: &str| -> Result<Priv<f64>> { s.input::<ArrayD<f64>>(n)?.into_type() };
        for (k, (opt, plain)) in programs::PROGRAMS.iter().enumerate() {
            let f = if optimized { opt } else { plain };
            let r = f(
                scalar("s")?,
                scalar("t")?,
                s.input("x")?,
                s.input("y")?,
                s.input("m")?,
                p,
                &w,
            );
            s.output("alice", &names[k], &r)?;
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("run failed: {e}"));
    out
}

#[test]
fn generated_programs_agree_optimized_unoptimized_and_cleartext() {
    let (p, w, inputs) = parameters();
    let mut env = generator::Env::new();
    for (n, v) in &inputs {
        env.insert(n.to_string(), v.clone());
    }
    env.insert("p".into(), ArrayD::from_elem(ndarray::IxDyn(&[]), p));
    env.insert("w".into(), w.clone().into_dyn());
    let progs = generator::programs(generator::SEED, generator::COUNT);
    let runs = [
        (
            "cleartext, optimized",
            run_all(LocalCluster::cleartext(), true),
        ),
        (
            "cleartext, unoptimized",
            run_all(LocalCluster::cleartext(), false),
        ),
        (
            "private, optimized",
            run_all(LocalCluster::new(Config::default()).with_seed(5), true),
        ),
        (
            "private, unoptimized",
            run_all(LocalCluster::new(Config::default()).with_seed(6), false),
        ),
    ];
    let mut failures = Vec::new();
    for (k, prog) in progs.iter().enumerate() {
        let want = generator::meaning(prog, &env);
        for (name, out) in &runs {
            let got = &out[k];
            let private = name.starts_with("private");
            let ok = got.shape() == want.shape()
                && got.iter().zip(want.iter()).all(|(g, v)| {
                    let tol = if private {
                        1e-5 + 1e-6 * v.abs()
                    } else {
                        1e-9 * (1.0 + v.abs())
                    };
                    (g - v).abs() <= tol
                });
            if !ok {
                failures.push(format!("g{k} ({name}): got {got}, want {want}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
