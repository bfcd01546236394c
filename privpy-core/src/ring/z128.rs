use super::{Ring, RingKind, pod_ring_io, ring_ops};
use rand_core::Rng;

/// An element of `Z_{2^128}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(transparent)]
pub struct Z128(pub u128);

ring_ops!(Z128);

/// A 192-bit accumulator: `lo` holds bits 0..128, `hi` bits 128..192.
#[derive(Clone, Copy, Debug, Default)]
pub struct Acc192 {
    lo: u128,
    hi: u64,
}

impl Ring for Z128 {
    const BITS: u32 = 128;
    const BYTES: usize = 16;
    const KIND: RingKind = RingKind::Z128;
    /// 192 bits: enough for `l + f` with `f <= 64`.
    type Acc = Acc192;

    #[inline]
    fn wadd(self, o: Self) -> Self {
        Z128(self.0.wrapping_add(o.0))
    }
    #[inline]
    fn wsub(self, o: Self) -> Self {
        Z128(self.0.wrapping_sub(o.0))
    }
    #[inline]
    fn wneg(self) -> Self {
        Z128(self.0.wrapping_neg())
    }
    #[inline]
    fn wmul(self, o: Self) -> Self {
        Z128(self.0.wrapping_mul(o.0))
    }
    #[inline]
    fn from_u64(v: u64) -> Self {
        Z128(v as u128)
    }
    #[inline]
    fn shl(self, k: u32) -> Self {
        Z128(self.0 << k)
    }
    #[inline]
    fn is_negative(self) -> bool {
        (self.0 as i128) < 0
    }
    #[inline]
    fn to_f64_signed(self) -> f64 {
        self.0 as i128 as f64
    }
    #[inline]
    fn bit(self, i: u32) -> bool {
        (self.0 >> i) & 1 == 1
    }
    const LIMBS: usize = 2;
    #[inline]
    fn limb(self, i: usize) -> u64 {
        (self.0 >> (64 * i)) as u64
    }
    #[inline]
    fn from_limbs(l: &[u64]) -> Self {
        let lo = l.first().copied().unwrap_or(0) as u128;
        let hi = l.get(1).copied().unwrap_or(0) as u128;
        Z128(lo | (hi << 64))
    }
    #[inline]
    fn acc_zero() -> Acc192 {
        Acc192::default()
    }
    #[inline]
    fn mac(acc: Acc192, a: Self, b: Self) -> Acc192 {
        let (a0, a1) = (a.0 as u64, (a.0 >> 64) as u64);
        let (b0, b1) = (b.0 as u64, (b.0 >> 64) as u64);
        // Unsigned product modulo 2^192: a0*b0 + (a0*b1 + a1*b0) * 2^64 + a1*b1 * 2^128.
        let p00 = (a0 as u128) * (b0 as u128);
        // A carry out of `mid` lands at bit 192 and is dropped.
        let mid = ((a0 as u128) * (b1 as u128)).wrapping_add((a1 as u128) * (b0 as u128));
        let top = a1.wrapping_mul(b1);
        // Signed correction: I(a)I(b) = ua*ub - 2^128 (ub [a<0] + ua [b<0]) mod 2^256;
        // modulo 2^192 only the low limb of ub (resp. ua) matters.
        let ma = 0u64.wrapping_sub((a.0 >> 127) as u64);
        let mb = 0u64.wrapping_sub((b.0 >> 127) as u64);
        let corr = (b0 & ma).wrapping_add(a0 & mb);
        let (lo1, c1) = acc.lo.overflowing_add(p00);
        let (lo2, c2) = lo1.overflowing_add(mid << 64);
        let hi = acc
            .hi
            .wrapping_add((mid >> 64) as u64)
            .wrapping_add(top)
            .wrapping_add(c1 as u64 + c2 as u64)
            .wrapping_sub(corr);
        Acc192 { lo: lo2, hi }
    }
    #[inline]
    fn trunc(acc: Acc192, f: u32) -> Self {
        if f == 0 {
            Z128(acc.lo)
        } else {
            Z128((acc.lo >> f) | ((acc.hi as u128) << (128 - f)))
        }
    }
    pod_ring_io!(Z128, u128);
    fn random_vec(rng: &mut impl Rng, n: usize) -> Vec<Self> {
        let mut v = vec![0u128; n];
        rng.fill_bytes(bytemuck::cast_slice_mut(&mut v));
        v.into_iter().map(Z128).collect()
    }
}
