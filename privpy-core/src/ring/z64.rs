use super::{Ring, RingKind, pod_ring_io, ring_ops};
use rand_core::Rng;

/// An element of `Z_{2^64}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(transparent)]
pub struct Z64(pub u64);

ring_ops!(Z64);

impl Ring for Z64 {
    const BITS: u32 = 64;
    const BYTES: usize = 8;
    const KIND: RingKind = RingKind::Z64;
    /// 128 bits: enough for `l + f` with `f <= 32`.
    type Acc = u128;

    #[inline]
    fn wadd(self, o: Self) -> Self {
        Z64(self.0.wrapping_add(o.0))
    }
    #[inline]
    fn wsub(self, o: Self) -> Self {
        Z64(self.0.wrapping_sub(o.0))
    }
    #[inline]
    fn wneg(self) -> Self {
        Z64(self.0.wrapping_neg())
    }
    #[inline]
    fn wmul(self, o: Self) -> Self {
        Z64(self.0.wrapping_mul(o.0))
    }
    #[inline]
    fn from_u64(v: u64) -> Self {
        Z64(v)
    }
    #[inline]
    fn shl(self, k: u32) -> Self {
        Z64(self.0 << k)
    }
    #[inline]
    fn is_negative(self) -> bool {
        (self.0 as i64) < 0
    }
    #[inline]
    fn to_f64_signed(self) -> f64 {
        self.0 as i64 as f64
    }
    #[inline]
    fn bit(self, i: u32) -> bool {
        (self.0 >> i) & 1 == 1
    }
    const LIMBS: usize = 1;
    #[inline]
    fn limb(self, _i: usize) -> u64 {
        self.0
    }
    #[inline]
    fn from_limbs(l: &[u64]) -> Self {
        Z64(l.first().copied().unwrap_or(0))
    }
    #[inline]
    fn low_bits(self, w: u32) -> Self {
        if w >= 64 {
            self
        } else {
            Z64(self.0 & ((1u64 << w) - 1))
        }
    }
    #[inline]
    fn acc_zero() -> u128 {
        0
    }
    #[inline]
    fn mac(acc: u128, a: Self, b: Self) -> u128 {
        acc.wrapping_add(((a.0 as i64 as i128) * (b.0 as i64 as i128)) as u128)
    }
    #[inline]
    fn trunc(acc: u128, f: u32) -> Self {
        // Bits f..f+64 of the two's-complement sum: exact while f + 64 <= 128.
        Z64((acc >> f) as u64)
    }
    pod_ring_io!(Z64, u64);
    fn from_words(words: Vec<u64>) -> Vec<Self> {
        words.into_iter().map(Z64).collect()
    }
    fn random_vec(rng: &mut impl Rng, n: usize) -> Vec<Self> {
        let mut v = vec![0u64; n];
        rng.fill_bytes(bytemuck::cast_slice_mut(&mut v));
        v.into_iter().map(Z64).collect()
    }
}
