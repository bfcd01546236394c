//! Networked deployment of privpy: four servers on four hosts, connected by mutually
//! authenticated TLS 1.3, with clients that upload shares and fetch results.
//!
//! Today this crate provides the sans-IO frame codec ([`frame`]) that the socket
//! transport will use; the in-process transport in `privpy-core` carries the same
//! [`Message`]s. The TLS transport, the server binary and the client library are to come.
#![deny(missing_docs)]

pub mod frame;

pub use privpy_core::transport::{Message, Role, Transport, TransportError};
