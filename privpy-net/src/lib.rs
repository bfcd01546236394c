//! Networked deployment of privpy: four servers on four hosts, connected by mutually
//! authenticated TLS 1.3, with clients that upload shares and fetch results.
//!
//! This crate currently re-exports the transport abstraction it will implement
//! ([`privpy_core::transport::Transport`]); the in-process transport in
//! `privpy-core` carries the same messages the TLS transport will.
#![deny(missing_docs)]

pub use privpy_core::transport::{Message, Role, Transport, TransportError};
