//! Networked deployment of privpy: four servers on four hosts, connected by mutually
//! authenticated TLS 1.3, with clients that upload shares and fetch results.
//!
//! - [`server::start`] runs one server (the `privpy-server` binary wraps it); its
//!   programs come from a [`registry::Registry`].
//! - [`client::Client`] uploads shares, runs programs and opens results.
//! - [`link::NetTransport`] is the engine's [`Transport`] over TLS: the same engine
//!   code runs over it as over the in-process channels of `LocalCluster`. Its
//!   streams travel on long-lived [`mux::Link`]s, one per server pair, shared by all
//!   jobs.
//! - [`store::Store`] keeps `S1`'s and `S2`'s shares across restarts.
//! - [`frame`] and [`wire`] are the byte formats (fuzzed and property-tested).
//! - [`dev::write_dev_cluster`] writes certificates and configuration for a local
//!   cluster on loopback.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod custody;
pub mod dev;
pub mod frame;
pub mod link;
pub mod mux;
pub mod netem;
pub mod registry;
pub mod server;
pub mod store;
pub mod tls;
pub mod wire;

pub use privpy_core::transport::{Message, Role, Transport, TransportError};
