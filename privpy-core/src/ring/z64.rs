use super::{Ring, RingKind, ring_ops};
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
            let mut b = [0u8; 64 / 8];
            b.copy_from_slice(c);
            x.0 = x.0.wrapping_add(u64::from_le_bytes(b));
        }
    }
    fn read_le(bytes: &[u8]) -> Vec<Self> {
        if cfg!(target_endian = "little") {
            let mut v = vec![Z64::default(); bytes.len() / Self::BYTES];
            let n = v.len() * Self::BYTES;
            bytemuck::cast_slice_mut::<Self, u8>(&mut v).copy_from_slice(&bytes[..n]);
            return v;
        }
        bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                Z64(u64::from_le_bytes(b))
            })
            .collect()
    }
    fn from_words(words: Vec<u64>) -> Vec<Self> {
        words.into_iter().map(Z64).collect()
    }
    fn random_vec(rng: &mut impl Rng, n: usize) -> Vec<Self> {
        let mut v = vec![0u64; n];
        rng.fill_bytes(bytemuck::cast_slice_mut(&mut v));
        v.into_iter().map(Z64).collect()
    }
}
