//! privpy's integration tests: one test binary, one module per topic.

mod arith;
mod broadcasting;
mod comm;
mod common;
mod compare;
mod errors;
mod generated;
mod macro_rules;
mod macros;
mod math;
mod ml;
#[cfg(feature = "net")]
mod net;
mod nn;
mod parity;
mod security;
mod ui;
