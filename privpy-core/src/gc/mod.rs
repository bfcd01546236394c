//! Garbled circuits (paper §4.3): free-XOR, half-gates with two ciphertexts per AND
//! gate, point-and-permute, and a fixed-key AES-128 hash running on hardware AES.
//!
//! Circuits are written once against the [`Gc`] trait and run on four backends: the
//! plaintext oracle ([`Plain`]), the garbler ([`Garbler`]), the evaluator
//! ([`Evaluator`]) and a gate counter ([`Counter`]). A wire is a *batch*: one value per
//! comparison instance, so every AND gate of a circuit layer is garbled for all
//! instances with one batched AES call.

mod backend;
mod circuits;
mod hash;

#[cfg(test)]
pub(crate) use backend::{Counter, Plain};
pub(crate) use backend::{Evaluator, Garbler, Gc};
pub(crate) use circuits::{equal_zero, msb_of_sum};
pub(crate) use hash::{FixedKeyAes, LabelPrg, double};

/// A wire label: 128 bits. Its least significant bit is the point-and-permute colour.
pub(crate) type Label = u128;

#[cfg(test)]
mod tests;
