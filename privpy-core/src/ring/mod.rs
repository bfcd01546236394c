//! The rings `Z_{2^l}` that secret shares live in.
//!
//! Every protocol in privpy is generic over [`Ring`]; three implementations are
//! provided: [`Z64`] (`u64`), [`Z128`] (`u128`) and [`Z256`] (crypto-bigint `U256`).
//! Arithmetic wraps modulo `2^l`. The signed reading `I(t)` of an element is its
//! two's-complement value in `[-2^(l-1), 2^(l-1))`.
//!
//! Besides wrapping arithmetic a ring supplies the two kernels the fixed-point
//! protocols need: an exact multiply-accumulate of signed readings into a wide
//! accumulator ([`Ring::mac`]) and the truncation `floor(acc / 2^f) mod 2^l`
//! ([`Ring::trunc`]). The accumulator keeps at least `l + 64` bits, which is all
//! that a truncation by `f <= l/2` bits can see (paper §5, "exact wide accumulation").

mod z128;
mod z256;
mod z64;

pub use crate::kernels::matmul_trunc as matmul_round;
pub use z64::Z64;
pub use z128::Z128;
pub use z256::Z256;

use rand_core::Rng;
use std::fmt::Debug;

/// Which ring a [`crate::Config`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RingKind {
    /// `Z_{2^64}` ([`Z64`]).
    Z64,
    /// `Z_{2^128}` ([`Z128`]).
    Z128,
    /// `Z_{2^256}` ([`Z256`]).
    Z256,
}

impl RingKind {
    /// Bit length `l` of the ring.
    pub fn bits(self) -> u32 {
        match self {
            RingKind::Z64 => 64,
            RingKind::Z128 => 128,
            RingKind::Z256 => 256,
        }
    }

    /// Bytes one ring element takes on the wire.
    pub fn bytes(self) -> usize {
        self.bits() as usize / 8
    }
}

/// An element of `Z_{2^l}` with the operations the protocols need.
///
/// Implementations must make every arithmetic operation wrap modulo `2^l`.
/// `Debug` prints the raw element; never log an element that is a share.
pub trait Ring:
    Copy
    + Send
    + Sync
    + PartialEq
    + Eq
    + Default
    + Debug
    + num_traits::Zero
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::Mul<Output = Self>
    + 'static
{
    /// Bit length `l`.
    const BITS: u32;
    /// Bytes per element on the wire (`l / 8`, little-endian).
    const BYTES: usize;
    /// The ring's [`RingKind`].
    const KIND: RingKind;
    /// Wide accumulator holding at least `l + l/2` bits of a signed sum of products.
    type Acc: Copy + Send + Sync;

    /// `self + o mod 2^l`.
    fn wadd(self, o: Self) -> Self;
    /// `self - o mod 2^l`.
    fn wsub(self, o: Self) -> Self;
    /// `-self mod 2^l`.
    fn wneg(self) -> Self;
    /// `self * o mod 2^l`.
    fn wmul(self, o: Self) -> Self;
    /// The element `v mod 2^l`.
    fn from_u64(v: u64) -> Self;
    /// `self * 2^k mod 2^l`, for `k < l`.
    fn shl(self, k: u32) -> Self;
    /// Whether the signed reading `I(self)` is negative.
    fn is_negative(self) -> bool;
    /// The signed reading `I(self)` as the nearest `f64`.
    fn to_f64_signed(self) -> f64;
    /// Bit `i` (0 = least significant) of the element, for `i < l`.
    fn bit(self, i: u32) -> bool;
    /// Number of 64-bit limbs (`l / 64`).
    const LIMBS: usize;
    /// Limb `i` (0 = least significant), for `i < LIMBS`.
    fn limb(self, i: usize) -> u64;
    /// The element with limbs `limbs` (least significant first; missing limbs are 0).
    fn from_limbs(limbs: &[u64]) -> Self;
    /// `self mod 2^w`, for `w <= l`.
    fn low_bits(self, w: u32) -> Self {
        if w >= Self::BITS {
            return self;
        }
        let mut l = [0u64; 4];
        for (i, x) in l.iter_mut().enumerate().take(Self::LIMBS) {
            let bits = w.saturating_sub(64 * i as u32).min(64);
            let mask = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            *x = self.limb(i) & mask;
        }
        Self::from_limbs(&l[..Self::LIMBS])
    }

    /// The zero accumulator.
    fn acc_zero() -> Self::Acc;
    /// `acc + I(a) * I(b)`, exact modulo the accumulator's width.
    fn mac(acc: Self::Acc, a: Self, b: Self) -> Self::Acc;
    /// `floor(I(acc) / 2^f) mod 2^l` for `f <= l/2` (`I(acc)` the signed sum).
    fn trunc(acc: Self::Acc, f: u32) -> Self;

    /// Appends the little-endian encoding of `xs` to `out`.
    fn write_le(xs: impl Iterator<Item = Self>, out: &mut Vec<u8>);
    /// Decodes little-endian elements; `bytes.len()` must be a multiple of [`Ring::BYTES`].
    fn read_le(bytes: &[u8]) -> Vec<Self>;
    /// Appends the little-endian encoding of the slice `xs` to `out`: the same bytes
    /// as [`Ring::write_le`], in one copy where the ring's layout allows it.
    fn write_slice(xs: &[Self], out: &mut Vec<u8>) {
        Self::write_le(xs.iter().copied(), out)
    }
    /// `xs[i] += y[i]` for the little-endian elements `y` in `bytes`
    /// (`bytes.len() == xs.len() * BYTES`), without decoding into a new vector where
    /// the ring's layout allows it.
    fn add_le(xs: &mut [Self], bytes: &[u8]) {
        for (x, y) in xs.iter_mut().zip(Self::read_le(bytes)) {
            *x = x.wadd(y);
        }
    }
    /// The little-endian elements in `bytes` as a slice, without a copy, where the
    /// ring's layout and the buffer's alignment allow it (`None` otherwise: decode
    /// with [`Ring::read_le`]).
    fn view_le(bytes: &[u8]) -> Option<&[Self]> {
        let _ = bytes;
        None
    }
    /// The elements whose limbs are `words` ([`Ring::LIMBS`] words per element,
    /// least significant first); `words.len()` must be a multiple of `LIMBS`.
    fn from_words(words: Vec<u64>) -> Vec<Self> {
        words
            .chunks_exact(Self::LIMBS)
            .map(Self::from_limbs)
            .collect()
    }
    /// `n` uniformly random elements drawn from `rng`.
    fn random_vec(rng: &mut impl Rng, n: usize) -> Vec<Self>;

    /// `trunc(I(a) * I(b))`: the fixed-point product of two elements.
    #[inline]
    fn mul_trunc(a: Self, b: Self, f: u32) -> Self {
        Self::trunc(Self::mac(Self::acc_zero(), a, b), f)
    }
}

/// Implements `std::ops` (wrapping) and `num_traits::Zero` for a ring newtype.
macro_rules! ring_ops {
    ($t:ty) => {
        impl std::ops::Add for $t {
            type Output = $t;
            #[inline]
            fn add(self, o: $t) -> $t {
                $crate::ring::Ring::wadd(self, o)
            }
        }
        impl std::ops::Sub for $t {
            type Output = $t;
            #[inline]
            fn sub(self, o: $t) -> $t {
                $crate::ring::Ring::wsub(self, o)
            }
        }
        impl std::ops::Mul for $t {
            type Output = $t;
            #[inline]
            fn mul(self, o: $t) -> $t {
                $crate::ring::Ring::wmul(self, o)
            }
        }
        impl std::ops::Neg for $t {
            type Output = $t;
            #[inline]
            fn neg(self) -> $t {
                $crate::ring::Ring::wneg(self)
            }
        }
        impl num_traits::Zero for $t {
            #[inline]
            fn zero() -> $t {
                <$t>::default()
            }
            #[inline]
            fn is_zero(&self) -> bool {
                *self == <$t>::default()
            }
        }
    };
}
pub(crate) use ring_ops;

/// The byte-level methods of a ring newtype over one little-endian integer
/// (`Z64`, `Z128`): bulk copies through bytemuck where the platform is
/// little-endian, element by element otherwise. Expands inside `impl Ring`.
macro_rules! pod_ring_io {
    ($t:ident, $w:ty) => {
        fn write_le(xs: impl Iterator<Item = Self>, out: &mut Vec<u8>) {
            for x in xs {
                out.extend_from_slice(&x.0.to_le_bytes());
            }
        }
        fn write_slice(xs: &[Self], out: &mut Vec<u8>) {
            if cfg!(target_endian = "little") {
                out.extend_from_slice(bytemuck::cast_slice(xs));
            } else {
                Self::write_le(xs.iter().copied(), out);
            }
        }
        fn view_le(bytes: &[u8]) -> Option<&[Self]> {
            if cfg!(target_endian = "little") {
                bytemuck::try_cast_slice(bytes).ok()
            } else {
                None
            }
        }
        fn add_le(xs: &mut [Self], bytes: &[u8]) {
            if cfg!(target_endian = "little")
                && let Ok(ys) = bytemuck::try_cast_slice::<u8, Self>(bytes)
            {
                for (x, y) in xs.iter_mut().zip(ys) {
                    x.0 = x.0.wrapping_add(y.0);
                }
                return;
            }
            for (x, c) in xs.iter_mut().zip(bytes.chunks_exact(Self::BYTES)) {
                let mut b = [0u8; std::mem::size_of::<$w>()];
                b.copy_from_slice(c);
                x.0 = x.0.wrapping_add(<$w>::from_le_bytes(b));
            }
        }
        fn read_le(bytes: &[u8]) -> Vec<Self> {
            if cfg!(target_endian = "little") {
                let mut v = vec![$t::default(); bytes.len() / Self::BYTES];
                let n = v.len() * Self::BYTES;
                bytemuck::cast_slice_mut::<Self, u8>(&mut v).copy_from_slice(&bytes[..n]);
                return v;
            }
            bytes
                .chunks_exact(Self::BYTES)
                .map(|c| {
                    let mut b = [0u8; std::mem::size_of::<$w>()];
                    b.copy_from_slice(c);
                    $t(<$w>::from_le_bytes(b))
                })
                .collect()
        }
    };
}
pub(crate) use pod_ring_io;

#[cfg(test)]
mod tests;
