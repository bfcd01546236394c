//! # privpy
//!
//! Compute on data nobody may see. Data owners secret-share their arrays to four
//! non-colluding servers (`S1`, `S2` hold shares; `Sa`, `Sb` assist); the servers run
//! an ordinary-looking ndarray-style Rust function on the shares; only the designated
//! client opens the result. The design follows PrivPy (Li, Duan, Xu): real-number
//! arithmetic in fixed point over `Z_{2^l}`, two-round multiplication, NumPy-style
//! arrays with broadcasting.
//!
//! ```
//! use privpy::prelude::*;
//!
//! // Figure 2 of the paper: the logistic function by Euler's method, on secrets.
//! fn logistic(x: &Priv<Array1<f64>>, steps: usize) -> Priv<Array1<f64>> {
//!     let h = x / steps as f64;
//!     let mut y = (x * 0.0) + 0.5;
//!     for _ in 0..steps {
//!         y = &y + &(&h * &(&y * &(1.0 - &y)));
//!     }
//!     y
//! }
//!
//! let mut cluster = LocalCluster::new(Config::default());
//! let alice = cluster.client("alice");
//! cluster.upload(&alice, "x", &array![-2.0, 0.0, 1.5])?;
//! let run = cluster.run(|s| {
//!     let x = s.input::<Array1<f64>>("x")?;
//!     s.output("alice", "y", &logistic(&x, 64))
//! })?;
//! let y: Array1<f64> = run.open(&alice, "y")?;
//! assert!((y[2] - 1.0 / (1.0 + (-1.5f64).exp())).abs() < 0.01);
//! # Ok::<(), privpy::Error>(())
//! ```
//!
//! The same program runs on the cleartext engine ([`LocalCluster::cleartext`]), which is
//! how tests check every private result.
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![forbid(unsafe_code)]

pub use privpy_core::{
    Arg, Broadcast, Client, ClusterStats, CommStats, Config, DotOperand, DotWith, EncodeError,
    Error, LocalCluster, Priv, PrivType, Public, Result, RingKind, Role, RunOutput, Session,
    ShapeArg, ShapeError, broadcast_shape, concatenate, dot, ring, select, share, stack, transport,
};
pub use privpy_macros::private;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Everything a program usually needs: `Priv`, the cluster, the sessions, and
/// ndarray's array types and macros.
pub mod prelude {
    pub use crate::{
        Client, Config, Error, LocalCluster, Priv, Result, Role, RunOutput, Session, concatenate,
        dot, private, select, stack,
    };
    pub use ndarray::{Array, Array1, Array2, ArrayD, Axis, array};
}
