//! NumPy broadcasting, with the examples from NumPy's documentation.

use crate::common::*;
use privpy::prelude::*;
use privpy::{Error, ShapeError};

fn check_case(a_shape: &[usize], b_shape: &[usize], expect: &[usize]) {
    let mut g = rng(a_shape.len() as u64 * 10 + b_shape.len() as u64);
    let a = arr(a_shape, &mut g, 4.0);
    let b = arr(b_shape, &mut g, 4.0);
    let program = |s: &Session| {
        let a = s.input::<ArrayD<f64>>("a")?;
        let b = s.input::<ArrayD<f64>>("b")?;
        s.output("alice", "mul", &(&a * &b))?;
        s.output("alice", "add", &(&a + &b))?;
        // Secret with a public operand of the other shape, both ways round.
        s.output("pub", "x", &a)?;
        Ok(())
    };
    for (name, cfg) in presets() {
        let mut cluster = LocalCluster::new(cfg).with_seed(1);
        cluster.client("pub");
        let (p, _) = run_on(
            cluster,
            &[("a", a.clone()), ("b", b.clone())],
            &["mul", "add"],
            program,
        )
        .unwrap();
        assert_eq!(p[0].shape(), expect, "{name}");
        // ndarray's own broadcasting is the reference.
        let want_mul = &a * &b;
        let want_add = &a + &b;
        assert!(max_abs_diff(&p[0], &want_mul) < 1e-3, "{name} mul");
        assert!(max_abs_diff(&p[1], &want_add) < 1e-3, "{name} add");
    }
}

#[test]
fn scalar_times_matrix() {
    check_case(&[], &[3, 4], &[3, 4]);
}

#[test]
fn matrix_plus_row() {
    check_case(&[4, 3], &[3], &[4, 3]);
}

#[test]
fn three_d_times_broadcast_middle_axis() {
    check_case(&[2, 4, 3], &[2, 1, 3], &[2, 4, 3]);
}

#[test]
fn numpy_doc_outer_broadcast() {
    // NumPy docs: A (8,1,6,1) * B (7,1,5) -> (8,7,6,5); and (4,1) + (3,) -> (4,3).
    check_case(&[8, 1, 6, 1], &[7, 1, 5], &[8, 7, 6, 5]);
    check_case(&[4, 1], &[3], &[4, 3]);
}

#[test]
fn secret_with_public_array_both_sides() {
    let mut g = rng(2);
    let a = arr(&[4, 3], &mut g, 4.0);
    let row = Array1::from(vec![1.5, -2.0, 0.25]);
    let col = Array2::from_shape_vec((4, 1), vec![1.0, 2.0, -3.0, 0.5]).unwrap();
    let program = |s: &Session| {
        let a = s.input::<Array2<f64>>("a")?;
        s.output("alice", "r", &(&a * &row + &col))?;
        s.output("alice", "l", &(&row - &a))?;
        s.output("alice", "m", &(&col * &a))
    };
    let (p, q) = private_and_clear(
        Config::default(),
        &[("a", a.clone())],
        &["r", "l", "m"],
        program,
    );
    for k in 0..3 {
        assert!(max_abs_diff(&p[k], &q[k]) < 1e-8);
    }
    let a2 = a.into_dimensionality::<ndarray::Ix2>().unwrap();
    assert!(max_abs_diff(&p[1], &(&row - &a2).into_dyn()) < 1e-8);
}

#[test]
fn incompatible_shapes_are_an_error_naming_both() {
    let mut g = rng(3);
    for (name, cfg) in presets() {
        let err = run_on(
            LocalCluster::new(cfg),
            &[
                ("a", arr(&[4, 3], &mut g, 1.0)),
                ("b", arr(&[4], &mut g, 1.0)),
            ],
            &[],
            |s| {
                let a = s.input::<Array2<f64>>("a")?;
                let b = s.input::<Array1<f64>>("b")?;
                s.output("alice", "c", &(&a * &b))
            },
        )
        .unwrap_err();
        // Located at the operator in this file.
        assert!(
            err.location()
                .is_some_and(|l| l.file().ends_with("broadcasting.rs")),
            "{name}: {err:?}"
        );
        match err.root() {
            Error::Shape(ShapeError::Broadcast { left, right }) => {
                assert_eq!(
                    (left.as_slice(), right.as_slice()),
                    (&[4, 3][..], &[4][..]),
                    "{name}"
                );
            }
            other => panic!("{name}: expected a broadcast error, got {other:?}"),
        }
        assert_eq!(
            err.root().to_string(),
            "operands could not be broadcast together with shapes [4, 3] and [4]"
        );
    }
}

#[test]
fn try_methods_return_the_error_inside_the_program() {
    let mut g = rng(4);
    let (p, _) = run_on(
        LocalCluster::new(Config::fast()),
        &[
            ("a", arr(&[2, 3], &mut g, 1.0)),
            ("b", arr(&[4, 5], &mut g, 1.0)),
        ],
        &["ok"],
        |s| {
            let a = s.input::<Array2<f64>>("a")?;
            let b = s.input::<Array2<f64>>("b")?;
            let handled = match a.try_dot(&b) {
                Err(Error::Shape(ShapeError::Dot {
                    left_inner: 3,
                    right_inner: 4,
                    ..
                })) => 1.0,
                _ => 0.0,
            };
            s.output("alice", "ok", &(a.sum() * 0.0 + handled))
        },
    )
    .unwrap();
    assert!((p[0].sum() - 1.0).abs() < 1e-3);
}
