//! Fixed-key AES: the circular-correlation-robust hash of the half-gates paper,
//! `H(W, t) = π(K) ⊕ K` with `K = 2W ⊕ t` (doubling in GF(2^128)), and an AES-CTR
//! generator for wire labels.

use super::Label;
use aes::Aes128;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};

/// The public permutation π: AES-128 under a fixed, published key.
pub(crate) struct FixedKeyAes {
    cipher: Aes128,
}

/// The fixed key (the first 16 bytes of the SHA-256 of "privpy fixed-key AES").
const FIXED_KEY: [u8; 16] = [
    0x61, 0x3c, 0x9e, 0x2d, 0x7b, 0x05, 0xf1, 0x48, 0xc2, 0x9a, 0x33, 0xd4, 0x6e, 0x10, 0xb7, 0x5f,
];

/// Doubling in GF(2^128) with the polynomial x^128 + x^7 + x^2 + x + 1.
#[inline]
pub(crate) fn double(w: Label) -> Label {
    (w << 1) ^ (if w >> 127 == 1 { 0x87 } else { 0 })
}

fn encrypt_in_place(cipher: &Aes128, xs: &mut [u128]) {
    let bytes: &mut [[u8; 16]] = bytemuck::cast_slice_mut(xs);
    cipher.encrypt_blocks(aes::Block::cast_slice_from_core_mut(bytes));
}

impl FixedKeyAes {
    pub(crate) fn new() -> Self {
        FixedKeyAes {
            cipher: Aes128::new(&Array::from(FIXED_KEY)),
        }
    }

    /// `ks[k] = π(ks[k]) ⊕ ks[k]` for keys `K = 2W ⊕ tweak` prepared by the caller
    /// (see [`double`]), at most 256 per call: one batched AES call.
    pub(crate) fn mmo_in_place(&self, ks: &mut [Label]) {
        // 32 blocks per AES call: enough to fill the pipeline, and a small copy to
        // zero-initialise (a gate of a few instances does not clear 4 KiB).
        for chunk in ks.chunks_mut(32) {
            let mut keys = [0u128; 32];
            let keys = &mut keys[..chunk.len()];
            keys.copy_from_slice(chunk);
            encrypt_in_place(&self.cipher, chunk);
            for (w, k) in chunk.iter_mut().zip(keys.iter()) {
                *w ^= k;
            }
        }
    }
}

/// AES-CTR under a key two or three servers share: wire labels addressed by
/// `(operation, purpose, index)`, so each side derives the same labels with no message.
pub(crate) struct LabelPrg {
    cipher: Aes128,
}

impl LabelPrg {
    pub(crate) fn new(key: [u8; 16]) -> Self {
        LabelPrg {
            cipher: Aes128::new(&Array::from(key)),
        }
    }

    /// `n` pseudo-random labels for `(op, purpose)`.
    pub(crate) fn labels(&self, op: u64, purpose: u8, n: usize) -> Vec<Label> {
        self.labels_at(op, purpose, 0, n)
    }

    /// Fills `out` with labels `start..start + out.len()` of the stream for `(op, purpose)`.
    pub(crate) fn fill_at(&self, op: u64, purpose: u8, start: usize, out: &mut [Label]) {
        let base = ((op as u128) << 64) | ((purpose as u128) << 56);
        for (k, o) in out.iter_mut().enumerate() {
            *o = base | (start + k) as u128;
        }
        encrypt_in_place(&self.cipher, out);
    }

    /// Fills `out` with the stream for `(op, purpose)` from its start, read as
    /// little-endian 64-bit words (two per block).
    pub(crate) fn fill_words(&self, op: u64, purpose: u8, out: &mut [u64]) {
        self.fill_words_at(op, purpose, 0, out)
    }

    /// Fills `out` with words `2·block ..` of the stream for `(op, purpose)`
    /// (`block` counts 16-byte blocks, two words each).
    pub(crate) fn fill_words_at(&self, op: u64, purpose: u8, block: usize, out: &mut [u64]) {
        let base = ((op as u128) << 64) | ((purpose as u128) << 56);
        let even = out.len() / 2 * 2;
        {
            let blocks: &mut [[u8; 16]] = bytemuck::cast_slice_mut(&mut out[..even]);
            for (k, b) in blocks.iter_mut().enumerate() {
                *b = (base | (block + k) as u128).to_le_bytes();
            }
            self.cipher
                .encrypt_blocks(aes::Block::cast_slice_from_core_mut(blocks));
        }
        if even < out.len() {
            let mut last = [base | (block + even / 2) as u128];
            encrypt_in_place(&self.cipher, &mut last);
            out[even] = last[0] as u64;
        }
    }

    /// Labels `start..start + n` of the stream for `(op, purpose)`.
    pub(crate) fn labels_at(&self, op: u64, purpose: u8, start: usize, n: usize) -> Vec<Label> {
        let base = ((op as u128) << 64) | ((purpose as u128) << 56);
        let mut v: Vec<u128> = (start as u128..(start + n) as u128)
            .map(|k| base | k)
            .collect();
        encrypt_in_place(&self.cipher, &mut v);
        v
    }
}
