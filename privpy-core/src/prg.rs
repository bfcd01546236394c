//! Pairwise pseudo-random generators (paper §4.1, "shared randomness").
//!
//! Two servers that agreed on a 32-byte seed at session start can draw the same
//! random ring elements without a message. Every draw is addressed by
//! `(op counter, purpose)`: the ChaCha12 stream number is `op · 16 + purpose`,
//! so draws never overlap and their order does not matter.

use crate::ring::Ring;
use rand_chacha::ChaCha12Rng;
use rand_core::SeedableRng;

/// What a draw is for; distinct purposes in one operation get disjoint streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Purpose {
    /// Re-randomization of the left operand (`rx`).
    MaskX = 0,
    /// Re-randomization of the right operand (`ry`).
    MaskY = 1,
    /// Re-sharing of an assistant's product (`za1`, `zb2`).
    Reshare = 2,
    /// Re-randomization before a local multiplication by a public value.
    Rerandomize = 3,
}

/// A generator shared by two servers.
#[derive(Clone)]
pub(crate) struct PairPrg {
    seed: [u8; 32],
}

impl PairPrg {
    pub(crate) fn new(seed: [u8; 32]) -> Self {
        PairPrg { seed }
    }

    /// A ChaCha12 generator positioned at the stream for `(op, purpose)`.
    pub(crate) fn stream(&self, op: u64, purpose: Purpose) -> ChaCha12Rng {
        let mut rng = ChaCha12Rng::from_seed(self.seed);
        rng.set_stream(op.wrapping_mul(16) | purpose as u64);
        rng
    }

    /// A 16-byte key for an AES-based generator, derived from the seed under `tag`
    /// (streams no operation counter reaches).
    pub(crate) fn derive_key(&self, tag: u64) -> [u8; 16] {
        use rand_core::Rng;
        let mut rng = ChaCha12Rng::from_seed(self.seed);
        rng.set_stream(u64::MAX - tag);
        let mut k = [0u8; 16];
        rng.fill_bytes(&mut k);
        k
    }

    /// `n` ring elements for `(op, purpose)`.
    pub(crate) fn draw<R: Ring>(&self, op: u64, purpose: Purpose, n: usize) -> Vec<R> {
        R::random_vec(&mut self.stream(op, purpose), n)
    }
}

impl std::fmt::Debug for PairPrg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairPrg(..)")
    }
}
