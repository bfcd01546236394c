//! # privpy-server
//!
//! The `privpy-server` binary (one server of a cluster; `dev` for a loopback cluster;
//! `certs` for a four-host deployment; `netem` for an emulated link) and the registry
//! of stock programs it carries ([`programs`]). A server binary of your own registers
//! its own programs with [`privpy_net::registry::Registry`] and starts with
//! [`privpy_net::server::start`] (see `examples/custom_server.rs`).
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod programs;
