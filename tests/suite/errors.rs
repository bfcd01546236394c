//! Bad input, misuse and failures give clear errors and lose nothing.

use crate::common::*;
use privpy::prelude::*;
use privpy::{EncodeError, Role, ShapeError};
use std::time::Duration;

#[test]
fn nan_inf_and_out_of_range_inputs_are_refused_with_position() {
    for (name, cfg) in presets() {
        let mut c = LocalCluster::new(cfg);
        let alice = c.client("alice");
        let mut x = Array2::<f64>::zeros((3, 4));
        x[[1, 2]] = f64::NAN;
        match c.upload(&alice, "x", &x) {
            Err(Error::Encode {
                name: n,
                source: EncodeError::NaN { index },
            }) => {
                assert_eq!((n.as_str(), index), ("x", vec![1, 2]), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        x[[1, 2]] = f64::NEG_INFINITY;
        assert!(matches!(
            c.upload(&alice, "x", &x),
            Err(Error::Encode {
                source: EncodeError::Infinite { .. },
                ..
            })
        ));
        x[[1, 2]] = 0.0;
        x[[2, 3]] = -cfg.bound();
        let err = c.upload(&alice, "x", &x).unwrap_err();
        assert!(matches!(
            &err,
            Error::Encode { source: EncodeError::OutOfRange { index, .. }, .. } if index == &vec![2, 3]
        ));
        assert!(
            err.to_string().contains("outside the configured range"),
            "{err}"
        );
        // Nothing was stored by the failed uploads: the name is still free.
        x[[2, 3]] = cfg.bound() * 0.5;
        c.upload(&alice, "x", &x).unwrap();
    }
}

#[test]
fn public_operand_out_of_range_stops_the_program_with_an_error() {
    let err = run_on(
        LocalCluster::new(Config::fast()),
        &[("x", ArrayD::zeros(vec![3]))],
        &[],
        |s| {
            let x = s.input::<Array1<f64>>("x")?;
            s.output("alice", "y", &(&x * 1e15))
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err.root(),
            Error::PublicOperand(EncodeError::OutOfRange { .. })
        ),
        "{err:?}"
    );
    assert!(err.location().is_some(), "{err:?}");
    let err = run_on(
        LocalCluster::new(Config::default()),
        &[("x", ArrayD::zeros(vec![3]))],
        &[],
        |s| {
            let x = s.input::<Array1<f64>>("x")?;
            s.output("alice", "y", &(&x / 0.0))
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err.root(),
            Error::PublicOperand(EncodeError::Infinite { .. })
        ),
        "{err:?}"
    );
}

#[test]
fn unknown_and_wrongly_typed_inputs() {
    let inputs = [("x", ArrayD::zeros(vec![2, 2]))];
    let err = run_on(LocalCluster::new(Config::fast()), &inputs, &[], |s| {
        s.input::<Array2<f64>>("nope").map(drop)
    })
    .unwrap_err();
    assert!(matches!(&err, Error::UnknownInput { name } if name == "nope"));
    let err = run_on(LocalCluster::new(Config::fast()), &inputs, &[], |s| {
        s.input::<Array1<f64>>("x").map(drop)
    })
    .unwrap_err();
    assert!(
        matches!(err, Error::Shape(ShapeError::Rank { expected: 1, .. })),
        "{err:?}"
    );
}

#[test]
fn outputs_belong_to_their_client_only() {
    let mut c = LocalCluster::new(Config::default());
    let alice = c.client("alice");
    let bob = c.client("bob");
    c.upload(&alice, "x", Array1::from(vec![1.0, 2.0])).unwrap();
    assert!(matches!(
        c.upload(&bob, "x", Array1::from(vec![3.0])),
        Err(Error::DuplicateInput { owner, .. }) if owner == "alice"
    ));
    let run = c
        .run(|s| {
            let x = s.input::<Array1<f64>>("x")?;
            s.output("alice", "y", &(&x + 1.0))
        })
        .unwrap();
    assert!(matches!(
        run.open::<Array1<f64>>(&bob, "y"),
        Err(Error::NoSuchOutput { .. })
    ));
    assert!(run.shares(&bob, "y").is_none());
    let y: Array1<f64> = run.open(&alice, "y").unwrap();
    assert_eq!(y, Array1::from(vec![2.0, 3.0]));
    // Asking for the wrong rank is an error, not a panic.
    assert!(matches!(
        run.open::<Array2<f64>>(&alice, "y"),
        Err(Error::Shape(_))
    ));
    // A client that was never registered cannot receive outputs.
    let err = c
        .run(|s| s.output("mallory", "y", &s.input::<Array1<f64>>("x")?))
        .unwrap_err();
    assert!(matches!(err, Error::UnknownClient { name } if name == "mallory"));
    let err = c
        .run(|s| {
            let x = s.input::<Array1<f64>>("x")?;
            s.output("alice", "y", &x)?;
            s.output("alice", "y", &x)
        })
        .unwrap_err();
    assert!(matches!(err, Error::DuplicateOutput { .. }));
    // A client handle from another cluster is unknown here.
    let mut other = LocalCluster::new(Config::default());
    let carol = other.client("carol");
    assert!(matches!(
        c.upload(&carol, "z", Array1::from(vec![1.0])),
        Err(Error::UnknownClient { .. })
    ));
}

#[test]
fn a_panicking_program_becomes_an_error() {
    let err = run_on(LocalCluster::new(Config::fast()), &[], &[], |_s| {
        let v: Vec<u8> = Vec::new();
        if v.is_empty() {
            panic!("deliberate failure in the program");
        }
        Ok(())
    })
    .unwrap_err();
    assert!(
        matches!(&err, Error::ProgramPanic { message, .. } if message.contains("deliberate")),
        "{err:?}"
    );
}

#[test]
fn a_server_that_stops_is_named_by_the_others() {
    let mut g = rng(1);
    let inputs = [("x", arr(&[16], &mut g, 1.0))];
    // Whether the failure unwinds or the program runs on (as with panic = "abort"),
    // the lost peer is an ordinary error of the run.
    for unwind in [true, false] {
        let cluster = LocalCluster::new(Config::default()).with_unwinding(unwind);
        let err = run_on(cluster, &inputs, &[], |s| {
            if s.role() == Some(Role::Sa) {
                return Ok(()); // Sa leaves before the multiplication.
            }
            let x = s.input::<Array1<f64>>("x")?;
            let y = &x * &x;
            let z = (&y * &y).relu();
            s.output("alice", "y", &z)
        })
        .unwrap_err();
        assert!(
            matches!(err, Error::PeerLost { peer: Role::Sa, .. }),
            "unwind {unwind}: {err:?}"
        );
    }
}

#[test]
fn a_silent_server_times_out_instead_of_hanging() {
    let mut g = rng(1);
    let inputs = [("x", arr(&[16], &mut g, 1.0))];
    let cluster = LocalCluster::new(Config::fast()).with_timeout(Duration::from_millis(100));
    let err = run_on(cluster, &inputs, &[], |s| {
        let x = s.input::<Array1<f64>>("x")?;
        if s.role() == Some(Role::Sb) {
            std::thread::sleep(Duration::from_millis(600));
        }
        s.output("alice", "y", &(&x * &x))
    })
    .unwrap_err();
    match err {
        Error::PeerLost {
            peer: Role::Sb,
            reason,
        } => assert!(reason.contains("within"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn servers_running_different_programs_are_detected() {
    let mut g = rng(1);
    let inputs = [("x", arr(&[4], &mut g, 1.0))];
    let err = run_on(LocalCluster::new(Config::fast()), &inputs, &[], |s| {
        let x = s.input::<Array1<f64>>("x")?;
        // Sb skips one multiplication: its next message belongs to another operation.
        let y = if s.role() == Some(Role::Sb) {
            x.clone()
        } else {
            &x * &x
        };
        s.output("alice", "y", &(&y * &x))
    })
    .unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("same program"))
            || matches!(&err, Error::PeerLost { .. }),
        "{err:?}"
    );
}

#[test]
fn invalid_shares_are_refused() {
    use privpy::share::{Share, reconstruct};
    let cfg = Config::default();
    let err = Share::from_bytes(privpy::RingKind::Z128, &[2, 2], &[0u8; 63]).unwrap_err();
    assert!(err.to_string().contains("64 bytes"), "{err}");
    let a = Share::from_bytes(privpy::RingKind::Z128, &[2], &[0u8; 32]).unwrap();
    let b = Share::from_bytes(privpy::RingKind::Z64, &[2], &[0u8; 16]).unwrap();
    assert!(matches!(
        reconstruct(&cfg, &a, &b),
        Err(Error::ShareMismatch(_))
    ));
    let c = Share::from_bytes(privpy::RingKind::Z128, &[1], &[0u8; 16]).unwrap();
    assert!(matches!(
        reconstruct(&cfg, &a, &c),
        Err(Error::ShareMismatch(_))
    ));
}

#[test]
fn method_errors_are_variants_a_caller_can_match() {
    let run = |f: fn(&Session) -> Result<()>| {
        run_on(
            LocalCluster::new(Config::fast()),
            &[("x", ArrayD::zeros(vec![5]))],
            &[],
            f,
        )
        .unwrap_err()
    };
    let err = run(|s| {
        let x = s.input::<Array1<f64>>("x")?;
        s.output("alice", "y", &x.item(&[7]))
    });
    assert!(
        matches!(
            err.root(),
            Error::IndexOutOfBounds { operation: "item", index, shape } if index == &[7] && shape == &[5]
        ),
        "{err:?}"
    );
    let err = run(|s| {
        let x = s.input::<Array1<f64>>("x")?;
        s.output("alice", "y", &x.clip(1.0, -1.0))
    });
    assert!(
        matches!(
            err.root(),
            Error::InvalidArgument {
                operation: "clip",
                ..
            }
        ),
        "{err:?}"
    );
    let err = run(|s| {
        let none: Vec<&Priv<Array1<f64>>> = Vec::new();
        s.output("alice", "y", &stack(&none, Axis(0))?)
    });
    assert!(
        matches!(err.root(), Error::EmptyInput { operation: "stack" }),
        "{err:?}"
    );
}
