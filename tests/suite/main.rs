//! privpy's integration tests: one test binary, one module per topic.

mod arith;
mod broadcasting;
mod comm;
mod common;
mod compare;
mod errors;
mod generated;
mod large;
mod macro_rules;
mod macros;
mod math;
#[cfg(feature = "ml")]
mod ml;
#[cfg(feature = "net")]
mod net;
#[cfg(feature = "net")]
mod netkit;
#[cfg(feature = "ml")]
mod nn;
mod parity;
mod security;
mod ui;
