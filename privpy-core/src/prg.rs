//! Pairwise pseudo-random generators (paper §4.1, "shared randomness").
//!
//! Two servers that agreed on a 32-byte seed at session start can draw the same
//! random ring elements without a message. Every draw is addressed by
//! `(op counter, purpose)`: the words are AES-128 in counter mode under a key
//! derived from the seed, with counter blocks `op ‖ purpose ‖ index`, so draws
//! never overlap and their order does not matter.
//!
//! AES-CTR rather than ChaCha12: on this project's 2-core machine (AES-NI) it
//! fills 2·10^6 words in 2.6 ms against ChaCha12's 6.3 ms. Both are PRFs under
//! standard assumptions (AES as a pseudo-random permutation, with at most 2^64
//! blocks per key, far below the birthday bound's concern for a session). Draws
//! take exactly one 64-bit word per `Z64` element (two for `Z128`, four for
//! `Z256`), nothing more.

use crate::gc::LabelPrg;
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

/// Elements drawn per chunk when a stream is applied in place (even, so that
/// every chunk starts on an AES block).
pub(crate) const CHUNK: usize = 1 << 11;

/// Tag of the AES key for ring draws (see [`PairPrg::derive_key`]; tags 1 and 2
/// key the label generators).
const DRAW_KEY_TAG: u64 = 3;

/// A generator shared by two servers.
pub(crate) struct PairPrg {
    seed: [u8; 32],
    aes: LabelPrg,
}

impl PairPrg {
    pub(crate) fn new(seed: [u8; 32]) -> Self {
        let aes = LabelPrg::new(derive(&seed, DRAW_KEY_TAG));
        PairPrg { seed, aes }
    }

    /// A 16-byte key for an AES-based generator, derived from the seed under `tag`
    /// (streams no operation counter reaches).
    pub(crate) fn derive_key(&self, tag: u64) -> [u8; 16] {
        derive(&self.seed, tag)
    }

    /// `n` ring elements for `(op, purpose)`. Large draws are expanded by the
    /// [`crate::kernel_threads`] threads, each from its own counter offset: the
    /// stream is the same whatever the number of threads.
    pub(crate) fn draw<R: Ring>(&self, op: u64, purpose: Purpose, n: usize) -> Vec<R> {
        let mut words = vec![0u64; n * R::LIMBS];
        let threads = parallel_parts(words.len());
        if threads <= 1 {
            self.aes.fill_words(op, purpose as u8, &mut words);
        } else {
            // Parts of an even number of words: each starts on an AES block.
            let per = words.len().div_ceil(threads).next_multiple_of(2);
            std::thread::scope(|s| {
                for (k, part) in words.chunks_mut(per).enumerate() {
                    s.spawn(move || self.aes.fill_words_at(op, purpose as u8, k * per / 2, part));
                }
            });
        }
        R::from_words(words)
    }

    /// `xs[i] = f(xs[i], r[i])` with `r` the elements [`PairPrg::draw`] gives for
    /// `(op, purpose, xs.len())`, drawn a chunk at a time (no full-length buffer).
    pub(crate) fn apply<R: Ring>(
        &self,
        op: u64,
        purpose: Purpose,
        xs: &mut [R],
        f: impl Fn(R, R) -> R + Sync,
    ) {
        let threads = parallel_parts(xs.len() * R::LIMBS);
        if threads > 1 {
            // Whole chunks per thread, so that each part starts where the sequential
            // loop would have: the same elements, whatever the number of threads.
            let per = xs.len().div_ceil(threads).next_multiple_of(CHUNK);
            let f = &f;
            std::thread::scope(|s| {
                for (k, part) in xs.chunks_mut(per).enumerate() {
                    s.spawn(move || self.apply_from(op, purpose, k * per, part, f));
                }
            });
            return;
        }
        self.apply_from(op, purpose, 0, xs, &f);
    }

    /// [`PairPrg::apply`] for the elements from index `first` (a multiple of
    /// [`CHUNK`]) on, on this thread.
    fn apply_from<R: Ring>(
        &self,
        op: u64,
        purpose: Purpose,
        first: usize,
        xs: &mut [R],
        f: &(impl Fn(R, R) -> R + Sync),
    ) {
        let mut words = Vec::new();
        // On the heap: up to 64 KiB for Z256, no more than the data needs.
        #[allow(clippy::useless_vec)]
        let mut r = vec![R::zero(); CHUNK.min(xs.len())];
        for (c, chunk) in xs.chunks_mut(CHUNK).enumerate() {
            let r = &mut r[..chunk.len()];
            self.fill_at(op, purpose, first + c * CHUNK, &mut words, r);
            for (x, &r) in chunk.iter_mut().zip(r.iter()) {
                *x = f(*x, r);
            }
        }
    }

    /// Elements `first .. first + out.len()` of the draw for `(op, purpose)` (the
    /// same elements [`PairPrg::draw`] gives at those indices), into `out`; `first`
    /// must be even. `words` is scratch space.
    pub(crate) fn fill_at<R: Ring>(
        &self,
        op: u64,
        purpose: Purpose,
        first: usize,
        words: &mut Vec<u64>,
        out: &mut [R],
    ) {
        debug_assert!(first.is_multiple_of(2));
        let w = out.len() * R::LIMBS;
        words.resize(w, 0);
        self.aes
            .fill_words_at(op, purpose as u8, first * R::LIMBS / 2, &mut words[..w]);
        for (o, l) in out.iter_mut().zip(words.chunks_exact(R::LIMBS)) {
            *o = R::from_limbs(l);
        }
    }
}

/// Threads for expanding `words` words: [`crate::kernel_threads`] for large draws
/// (at least 2^16 words per thread), else one.
fn parallel_parts(words: usize) -> usize {
    crate::kernel_threads().min(words >> 16).max(1)
}

/// A 16-byte key derived from `seed` under `tag`: ChaCha12 stream `2^64 - 1 - tag`.
fn derive(seed: &[u8; 32], tag: u64) -> [u8; 16] {
    use rand_core::Rng;
    let mut rng = ChaCha12Rng::from_seed(*seed);
    rng.set_stream(u64::MAX - tag);
    let mut k = [0u8; 16];
    rng.fill_bytes(&mut k);
    k
}

impl std::fmt::Debug for PairPrg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairPrg(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Z64, Z128, Z256};

    fn check<R: Ring>() {
        let p = PairPrg::new([9; 32]);
        for n in [0, 1, 3, CHUNK + 5] {
            let r: Vec<R> = p.draw(7, Purpose::Reshare, n);
            let mut xs = vec![R::from_u64(5); n];
            p.apply(7, Purpose::Reshare, &mut xs, |x, r| x.wsub(r));
            let want: Vec<R> = r.iter().map(|&r| R::from_u64(5).wsub(r)).collect();
            assert_eq!(xs, want, "apply matches draw, n={n}");
        }
        // Distinct (op, purpose) give distinct streams; another seed another one.
        let a: Vec<R> = p.draw(7, Purpose::MaskX, 4);
        assert_ne!(a, p.draw::<R>(7, Purpose::MaskY, 4));
        assert_ne!(a, p.draw::<R>(8, Purpose::MaskX, 4));
        assert_ne!(a, PairPrg::new([8; 32]).draw::<R>(7, Purpose::MaskX, 4));
    }

    #[test]
    fn apply_is_draw_in_place() {
        check::<Z64>();
        check::<Z128>();
        check::<Z256>();
    }

    /// Draws and applications expanded by several threads give the same elements
    /// as one thread.
    #[test]
    fn streams_do_not_depend_on_kernel_threads() {
        let p = PairPrg::new([3; 32]);
        let n = 5 * CHUNK * 16 + 7;
        let before = crate::kernel_threads();
        crate::set_kernel_threads(1);
        let want: Vec<Z128> = p.draw(2, Purpose::MaskY, n);
        let mut want_xs = vec![Z128::from_u64(9); n];
        p.apply(2, Purpose::MaskY, &mut want_xs, |x, r| x.wadd(r));
        for t in [2, 3, 8] {
            crate::set_kernel_threads(t);
            assert_eq!(p.draw::<Z128>(2, Purpose::MaskY, n), want, "{t} threads");
            let mut xs = vec![Z128::from_u64(9); n];
            p.apply(2, Purpose::MaskY, &mut xs, |x, r| x.wadd(r));
            assert_eq!(xs, want_xs, "{t} threads");
        }
        crate::set_kernel_threads(before);
    }
}
