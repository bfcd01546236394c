//! # privpy-core
//!
//! The engine of privpy: rings and fixed-point numbers, secret sharing, the
//! four-party protocols of PrivPy (Li, Duan, Xu), [`Priv<A>`] arrays with
//! NumPy-style operators, and the engines that run a program on four servers
//! ([`LocalCluster`]) or in cleartext ([`LocalCluster::cleartext`]).
//!
//! Most users depend on the `privpy` facade crate and write
//! `use privpy::prelude::*;`.
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)]

#[doc(hidden)]
#[path = "private_support.rs"]
pub mod __private;
mod broadcast;
mod cluster;
mod config;
mod data;
mod derived;
mod engine;
mod error;
mod gc;
mod impl_compare;
mod impl_math;
mod impl_methods;
mod impl_ops;
mod kernels;
mod large;
mod math;
pub mod node;
mod pool;
mod prg;
mod priv_array;
mod protocol;
pub mod ring;
mod session;
pub mod share;
pub mod transport;
mod types;

pub use broadcast::broadcast_shape;
pub use cluster::{Client, LocalCluster, RunOutput};
pub use config::{Comparison, Config, DEFAULT_MEMORY_BUDGET, MIN_MEMORY_BUDGET, Network};
pub use error::{EncodeError, Error, Location, Result, ShapeError};
pub use impl_compare::Arg;
pub use impl_methods::{concatenate, select, stack};
pub use kernels::{kernel_threads, set_kernel_threads};
pub use large::{Batches, LargeArray, LargeOperand, LargeRhs, ShareReader};
pub use priv_array::{DotOperand, Prepared, PreparedShare, Priv, dot};
pub use ring::RingKind;
pub use session::Session;
pub use transport::{ClusterStats, CommStats, Role};
pub use types::{Broadcast, DotWith, PrivType, Public, ShapeArg};
