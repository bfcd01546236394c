//! `#[private]` on programs that used to be miscompiled or rejected: each class of
//! issue 12 that must compile, checked against plain Rust on the cleartext engine
//! (exactly) and on the four-party engine (default preset, within 1e-6), optimized
//! and not where the optimizer is involved.

use crate::common::*;
use privpy::prelude::*;
use privpy::{EncodeError, ShapeError};

/// The tolerance between the four-party run and plain Rust: a few multiplications
/// and selects at 2^-32 resolution, a reciprocal (Newton, ~1e-9) and no scaling.
const TOL: f64 = 1e-6;

fn inputs() -> Vec<(&'static str, ArrayD<f64>)> {
    let mut g = rng(1207);
    let q = |a: ArrayD<f64>| a.mapv(|v| (v * 8.0).round() / 8.0 + 0.0625);
    vec![
        ("x", q(arr(&[5], &mut g, 4.0))),
        ("y", q(arr(&[5], &mut g, 4.0))),
        ("m", q(arr(&[3, 5], &mut g, 2.0))),
        ("s", q(arr(&[], &mut g, 3.0))),
        ("t", q(arr(&[], &mut g, 3.0))),
    ]
}

fn input(name: &str) -> ArrayD<f64> {
    inputs()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no input {name}"))
}

/// Runs `program` on the cleartext engine and privately; checks both against
/// `want` (exact and within [`TOL`]).
fn check(name: &str, want: ArrayD<f64>, program: impl Fn(&Session) -> Result<()> + Sync) {
    let (private, clear) = private_and_clear(Config::default(), &inputs(), &["out"], &program);
    let exact = max_abs_diff(&clear[0], &want);
    assert!(
        exact < 1e-9,
        "{name}: cleartext differs from plain Rust by {exact}"
    );
    let d = max_abs_diff(&private[0], &want);
    assert!(d < TOL, "{name}: private differs from plain Rust by {d}");
}

fn scalar(s: &Session, name: &str) -> Result<Priv<f64>> {
    s.input::<ArrayD<f64>>(name)?.into_type()
}

// Element assignment inside a branch on a secret (was "has no effect").
#[private]
fn element_in_branch(x: Priv<Array1<f64>>, s: Priv<f64>) -> Priv<Array1<f64>> {
    let mut z = x.clone();
    if s > 0.0 {
        z[1] = x[2] * 2.0;
        z[3] = s;
    } else {
        z[0] = x[4] - 1.0;
    }
    z
}

#[test]
fn element_assignment_in_a_secret_branch_becomes_a_select() {
    let (x, s) = (input("x"), input("s").sum());
    let mut want = x.clone();
    if s > 0.0 {
        want[1] = x[2] * 2.0;
        want[3] = s;
    } else {
        want[0] = x[4] - 1.0;
    }
    check("element_in_branch", want, |se| {
        let out = element_in_branch(se.input("x")?, scalar(se, "s")?);
        se.output("alice", "out", &out)
    });
    // And with the other sign of the condition.
    check("element_in_branch(-s)", x.clone(), |se| {
        let mut out = element_in_branch(se.input("x")?, scalar(se, "s")? * -1.0);
        let x: Priv<Array1<f64>> = se.input("x")?;
        if s > 0.0 {
            // The else branch ran: undo it to compare with `x`.
            out.itemset(&[0], &x.item(&[0]));
        } else {
            out.itemset(&[1], &x.item(&[1]));
            out.itemset(&[3], &x.item(&[3]));
        }
        se.output("alice", "out", &out)
    });
}

// Shadowing inside an inner block does not un-mark the outer secret.
#[private]
fn shadowed(x: Priv<Array1<f64>>) -> Priv<Array1<f64>> {
    let y = x * 2.0;
    {
        let y = 3.0;
        let _unused = y + 1.0;
    }
    let w = |y: f64| y * 0.5;
    let half = w(4.0);
    if y > 1.0 { y * half } else { x }
}

#[test]
fn shadowing_in_an_inner_scope_keeps_the_outer_secret() {
    let x = input("x");
    let want = x.mapv(|v| if v * 2.0 > 1.0 { v * 2.0 * 2.0 } else { v });
    check("shadowed", want, |s| {
        s.output("alice", "out", &shadowed(s.input("x")?))
    });
}

// `/` between secrets and public values, owned and borrowed, in every position.
#[private]
fn divisions(
    x: Priv<Array1<f64>>,
    y: Priv<Array1<f64>>,
    w: Array1<f64>,
    s: Priv<f64>,
) -> Priv<Array1<f64>> {
    let d = y.abs() + 1.0;
    let a = x / (y.abs() + 1.0); // &Priv / Priv
    let b = (x + 0.0) / d; // Priv / &Priv
    let c = x / &w; // &Priv / &Array
    let e = (x * 1.0) / w.clone(); // Priv / Array
    let f = 2.0 / (d * 1.0); // f64 / Priv
    let g = &w / &d; // &Array / &Priv
    let h = w.clone() / (d * 1.0); // Array / Priv
    let k = x / (s * s + 1.0); // vector / scalar secret
    a + b + c + e + f + g + h + k
}

#[test]
fn division_exists_for_every_owned_and_borrowed_combination() {
    let (x, y, s) = (input("x"), input("y"), input("s").sum());
    let w = ArrayD::from_shape_vec(vec![5], vec![2.0, -4.0, 0.5, 8.0, 1.0]).expect("shape");
    let d = y.mapv(|v| v.abs() + 1.0);
    let want =
        &x / &d * 2.0 + &x / &w * 2.0 + d.mapv(|v| 2.0 / v) + &w / &d * 2.0 + &x / (s * s + 1.0);
    let w1 = w.clone().into_dimensionality::<Ix1>().expect("1-D");
    let (private, clear) = private_and_clear(Config::default(), &inputs(), &["out"], |se| {
        let out = divisions(se.input("x")?, se.input("y")?, w1.clone(), scalar(se, "s")?);
        se.output("alice", "out", &out)
    });
    // Three reciprocals (Newton) of values in [1, 5].
    assert!(max_abs_diff(&clear[0], &want) < 1e-9);
    assert!(max_abs_diff(&private[0], &want) < TOL);
}

use ndarray::Ix1;

// Mixed ranks in one sum, with and without the optimizer.
macro_rules! both_ways {
    ($opt:ident, $plain:ident, ($($p:ident : $t:ty),*) -> $r:ty $body:block) => {
        #[private]
        fn $opt($($p: $t),*) -> $r $body
        #[private(optimize = false)]
        fn $plain($($p: $t),*) -> $r $body
    };
}

both_ways!(ranks_opt, ranks_plain, (s: Priv<f64>, t: Priv<f64>, x: Priv<Array1<f64>>, m: Priv<Array2<f64>>) -> Priv<Array2<f64>> {
    // expression vectorization over scalar, vector and matrix products
    let a = s * t + x * x + m * m;
    // common factor with terms of three ranks
    let b = s * t + s * x + s * m;
    a + b
});

#[test]
fn optimizer_keeps_mixed_ranks_well_typed_and_equal() {
    let (s, t, x, m) = (input("s").sum(), input("t").sum(), input("x"), input("m"));
    let want = m.mapv(|v| v * v + s * v) + x.mapv(|v| v * v + s * v) + (s * t) * 2.0;
    for (name, opt) in [("optimized", true), ("unoptimized", false)] {
        check(name, want.clone(), move |se| {
            let args = (
                scalar(se, "s")?,
                scalar(se, "t")?,
                se.input("x")?,
                se.input("m")?,
            );
            let out = if opt {
                ranks_opt(args.0, args.1, args.2, args.3)
            } else {
                ranks_plain(args.0, args.1, args.2, args.3)
            };
            se.output("alice", "out", &out)
        });
    }
}

// A closure that captures a secret, used as a condition.
#[private]
fn closure_condition(x: Priv<Array1<f64>>, y: Priv<Array1<f64>>) -> Priv<Array1<f64>> {
    let above = |t: f64| x > t;
    if above(0.5) { x * 3.0 } else { y }
}

#[test]
fn a_closure_capturing_a_secret_works_as_a_condition() {
    let (x, y) = (input("x"), input("y"));
    let mut want = y.clone();
    want.zip_mut_with(&x, |w, &v| {
        if v > 0.5 {
            *w = v * 3.0
        }
    });
    check("closure_condition", want, |s| {
        s.output(
            "alice",
            "out",
            &closure_condition(s.input("x")?, s.input("y")?),
        )
    });
}

// A branch with both a value and assignments: the assignment is selected too.
#[private]
fn value_and_assignment(x: Priv<Array1<f64>>, y: Priv<Array1<f64>>) -> Priv<Array1<f64>> {
    let mut acc = y.clone();
    let r = if x > 0.0 {
        acc += x;
        x * 3.0
    } else {
        acc -= 1.0;
        x * 4.0
    };
    r + acc * 10.0
}

#[test]
fn assignments_in_value_branches_are_selected() {
    let (x, y) = (input("x"), input("y"));
    let want = ndarray::Zip::from(&x).and(&y).map_collect(|&x, &y| {
        if x > 0.0 {
            x * 3.0 + (y + x) * 10.0
        } else {
            x * 4.0 + (y - 1.0) * 10.0
        }
    });
    check("value_and_assignment", want, |s| {
        s.output(
            "alice",
            "out",
            &value_and_assignment(s.input("x")?, s.input("y")?),
        )
    });
}

// Pure operands of `&&` / `||` on secrets, including method calls and public calls
// of privpy's pure functions, and a secret passed by reference.
#[private]
fn logic(x: &Priv<Array1<f64>>, y: Priv<Array1<f64>>) -> Priv<Array1<f64>> {
    let both = x > 0.0 && y.abs() < 2.0;
    let either = x.relu() > 1.0 || !(y > 0.0);
    both * 2.0 + either
}

#[test]
fn short_circuit_operators_on_pure_operands() {
    let (x, y) = (input("x"), input("y"));
    let want = ndarray::Zip::from(&x).and(&y).map_collect(|&x, &y| {
        let both = (x > 0.0 && y.abs() < 2.0) as u8 as f64;
        let either = (x.max(0.0) > 1.0 || y <= 0.0) as u8 as f64;
        both * 2.0 + either
    });
    check("logic", want, |s| {
        let x = s.input("x")?;
        s.output("alice", "out", &logic(&x, s.input("y")?))
    });
}

// Nested branches, a mutating method and a secret declared by a later assignment,
// with the renamed-crate argument.
#[private(crate = ::privpy)]
fn nested(x: Priv<Array1<f64>>, s: Priv<f64>) -> Priv<Array1<f64>> {
    let mut z = x.clone();
    let mut k;
    k = s * 1.0;
    if s > 0.0 {
        if s > 1.0 {
            z.itemset(&[0], &s);
            k = k * 2.0;
        } else {
            z[2] = 7.0;
        }
    }
    z + k
}

#[test]
fn nested_secret_branches_with_methods_and_late_bindings() {
    let (x, s) = (input("x"), input("s").sum());
    let mut z = x.clone();
    let mut k = s;
    if s > 0.0 {
        if s > 1.0 {
            z[0] = s;
            k *= 2.0;
        } else {
            z[2] = 7.0;
        }
    }
    let want = z + k;
    check("nested", want, |se| {
        se.output("alice", "out", &nested(se.input("x")?, scalar(se, "s")?))
    });
}

// Errors raised by operators name the user's line, inside `#[private]` too.
#[private]
fn mismatched(x: Priv<Array1<f64>>, m: Priv<Array2<f64>>) -> Priv<Array2<f64>> {
    let y = x * 2.0;
    y + m // LOCATION: shapes (5) and (3, 5) cannot be broadcast
}

#[private]
fn out_of_range(x: Priv<Array1<f64>>) -> Priv<Array1<f64>> {
    let big = 1e30;
    x * big // LOCATION: public operand out of range
}

/// The line of this file holding `marker`.
fn line_of(marker: &str) -> u32 {
    let src = include_str!("macro_rules.rs");
    let k = src
        .lines()
        .position(|l| l.contains(marker) && !l.contains("line_of"))
        .unwrap_or_else(|| panic!("no line with {marker}"));
    k as u32 + 1
}

#[test]
fn operator_errors_name_the_file_and_line_of_the_expression() {
    let m5 = ArrayD::from_elem(ndarray::IxDyn(&[3, 4]), 1.0);
    let mut all = inputs();
    all.push(("m4", m5));
    // Stopped at once by unwinding (the default), or run to the end on placeholders
    // (what `panic = "abort"` builds do): the same error either way.
    let clusters = [true, false].into_iter().flat_map(|unwind| {
        [
            LocalCluster::cleartext().with_unwinding(unwind),
            LocalCluster::new(Config::fast()).with_unwinding(unwind),
        ]
    });
    for cluster in clusters {
        let err = run_on(cluster, &all, &["out"], |s| {
            let z = mismatched(s.input("x")?, s.input("m4")?);
            // The program goes on after the failure when nothing unwinds.
            let w = z.sum() * 2.0 + z.relu().max();
            let _public = w.reveal();
            s.output("alice", "out", &z)
        })
        .err()
        .unwrap_or_else(|| panic!("incompatible shapes were accepted"));
        let Error::Operator { location, source } = &err else {
            panic!("not located: {err:?}");
        };
        assert!(
            matches!(**source, Error::Shape(ShapeError::Broadcast { .. })),
            "{source:?}"
        );
        assert!(location.file().ends_with("macro_rules.rs"), "{location}");
        assert_eq!(location.line(), line_of("LOCATION: shapes"), "{err}");
        assert!(err.to_string().contains("macro_rules.rs:"), "{err}");
    }
    let err = run_on(
        LocalCluster::new(Config::fast()).with_unwinding(false),
        &inputs(),
        &["out"],
        |s| s.output("alice", "out", &out_of_range(s.input("x")?)),
    )
    .err()
    .unwrap_or_else(|| panic!("an out-of-range operand was accepted"));
    assert!(
        matches!(
            err.root(),
            Error::PublicOperand(EncodeError::OutOfRange { .. })
        ),
        "{err:?}"
    );
    assert_eq!(
        err.location().map(|l| l.line()),
        Some(line_of("LOCATION: public operand"))
    );
}
