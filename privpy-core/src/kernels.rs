//! Local compute kernels on ring arrays.

use crate::ring::Ring;
use ndarray::{Array2, ArrayView2};

/// Threads a server's large local kernels use (see [`set_kernel_threads`]).
static KERNEL_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// Sets how many threads this process's large local kernels (matrix products)
/// use, at least 1. The default is 1: right when several servers share a host (a
/// `LocalCluster`, `privpy-server dev`); `privpy-server` sets it from
/// `kernel_threads` in `cluster.toml`, by default the host's cores. Results do not
/// depend on it (each thread computes whole output rows).
pub fn set_kernel_threads(n: usize) {
    KERNEL_THREADS.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
}

/// The number of kernel threads ([`set_kernel_threads`]).
pub fn kernel_threads() -> usize {
    KERNEL_THREADS.load(std::sync::atomic::Ordering::Relaxed)
}

// The one module with `unsafe`: SIMD intrinsics behind run-time feature detection.
#[allow(unsafe_code)]
pub(crate) mod ifma;

/// The accumulator holding `2^(f-1)` (zero for `f = 0`): starting a sum there makes
/// the truncation `floor((v + 2^(f-1)) / 2^f)`, rounding to nearest instead of
/// down, so that the four servers' truncation errors have mean zero instead of
/// −0.5 unit each (the −1.5 to −2 unit drift of floor truncation).
pub(crate) fn rounding<R: Ring>(f: u32) -> R::Acc {
    if f == 0 {
        R::acc_zero()
    } else {
        R::mac(R::acc_zero(), R::from_u64(1).shl(f - 1), R::from_u64(1))
    }
}

/// `I(a)·I(b) / 2^f` rounded to nearest (ties up), mod `2^l`; `half` is
/// [`rounding`]`(f)`.
#[inline]
pub(crate) fn mul_round<R: Ring>(a: R, b: R, f: u32, half: R::Acc) -> R {
    R::trunc(R::mac(half, a, b), f)
}

/// `round(I(A) · I(B) / 2^f)` mod `2^l`: the matrix product of signed readings,
/// accumulated exactly and rounded to nearest (ties up) once per output element,
/// for `f <= l/2`. This is each server's local step of Protocol 1 for a matrix
/// product (paper §5).
///
/// ```
/// use privpy_core::ring::{Z64, matmul_round};
/// use ndarray::array;
/// let a = array![[Z64(3 << 16)], [Z64((-2i64 << 16) as u64)]];
/// let b = array![[Z64(1 << 15)]]; // 0.5 with 16 fractional bits
/// let c = matmul_round(a.view(), b.view(), 16);
/// assert_eq!(c, array![[Z64(3 << 15)], [Z64((-1i64 << 16) as u64)]]);
/// ```
///
/// On `Z64` and `Z128` with a CPU with AVX-512 IFMA, the product runs on 52-bit
/// multiply-accumulate lanes (`privpy-core/src/kernels/ifma.rs`, bit-identical to
/// the portable loop), split among [`kernel_threads`] threads; elsewhere in the
/// portable wide-accumulator loop.
pub fn matmul_trunc<R: Ring>(a: ArrayView2<'_, R>, b: ArrayView2<'_, R>, f: u32) -> Array2<R> {
    let (m, k) = a.dim();
    let n = b.ncols();
    debug_assert_eq!(b.nrows(), k);
    if ifma::available() {
        let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
        let (Some(av), Some(bv)) = (a.as_slice(), b.as_slice()) else {
            unreachable!("standard layout is contiguous")
        };
        if let Some(out) = ifma::matmul_round(av, bv, (m, k, n), f, true) {
            return Array2::from_shape_vec((m, n), out)
                .unwrap_or_else(|_| unreachable!("m*n elements"));
        }
    }
    matmul_trunc_portable(a, b, f)
}

/// A right operand of matrix products packed once for the IFMA kernel (a prepared
/// weight matrix): later products skip re-packing it.
pub(crate) struct PackedRight(ifma::PackedB);

/// `b` packed for [`matmul_trunc_packed`], where the IFMA kernel runs for this ring.
pub(crate) fn pack_right<R: Ring>(b: ArrayView2<'_, R>) -> Option<PackedRight> {
    let (k, n) = b.dim();
    let b = b.as_standard_layout();
    ifma::pack(b.as_slice()?, k, n).map(PackedRight)
}

/// [`matmul_trunc`] with `b` also given packed: bit-identical, without re-packing.
pub(crate) fn matmul_trunc_packed<R: Ring>(
    a: ArrayView2<'_, R>,
    b: ArrayView2<'_, R>,
    packed: Option<&PackedRight>,
    f: u32,
) -> Array2<R> {
    if let Some(p) = packed {
        let m = a.nrows();
        let a = a.as_standard_layout();
        if let Some(out) = a
            .as_slice()
            .and_then(|av| ifma::matmul_round_packed(av, m, &p.0, f))
        {
            return Array2::from_shape_vec((m, b.ncols()), out)
                .unwrap_or_else(|_| unreachable!("m*n elements"));
        }
    }
    matmul_trunc(a, b, f)
}

/// The portable kernel of [`matmul_trunc`], for every ring: loop order i-k-j over
/// blocks of four rows of `A`, so each row of `B` is read once per block and the
/// wide accumulators stay in cache.
pub(crate) fn matmul_trunc_portable<R: Ring>(
    a: ArrayView2<'_, R>,
    b: ArrayView2<'_, R>,
    f: u32,
) -> Array2<R> {
    let (m, k) = a.dim();
    let n = b.ncols();
    let a = a.as_standard_layout();
    let b = b.as_standard_layout();
    let (Some(av), Some(bv)) = (a.as_slice(), b.as_slice()) else {
        unreachable!("standard layout is contiguous")
    };
    const BLOCK: usize = 4;
    let mut out = Vec::with_capacity(m * n);
    let half = rounding::<R>(f);
    let mut acc = vec![half; BLOCK * n];
    for i0 in (0..m).step_by(BLOCK) {
        let rows = (m - i0).min(BLOCK);
        acc.iter_mut().for_each(|c| *c = half);
        for kk in 0..k {
            let brow = &bv[kk * n..(kk + 1) * n];
            for r in 0..rows {
                let aik = av[(i0 + r) * k + kk];
                let accr = &mut acc[r * n..(r + 1) * n];
                for (c, &bj) in accr.iter_mut().zip(brow) {
                    *c = R::mac(*c, aik, bj);
                }
            }
        }
        for r in 0..rows {
            out.extend(acc[r * n..(r + 1) * n].iter().map(|&c| R::trunc(c, f)));
        }
    }
    Array2::from_shape_vec((m, n), out).unwrap_or_else(|_| unreachable!("m*n elements"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Z64, Z128, Z256};
    use rand_chacha::ChaCha12Rng;
    use rand_core::SeedableRng;

    fn check<R: Ring>(f: u32) {
        let mut rng = ChaCha12Rng::seed_from_u64(3);
        for (m, k, n) in [(1, 1, 1), (5, 7, 3), (9, 2, 6)] {
            let a = Array2::from_shape_vec((m, k), R::random_vec(&mut rng, m * k)).unwrap();
            let b = Array2::from_shape_vec((k, n), R::random_vec(&mut rng, k * n)).unwrap();
            let c = matmul_trunc(a.view(), b.view(), f);
            for i in 0..m {
                for j in 0..n {
                    let mut acc = rounding::<R>(f);
                    for kk in 0..k {
                        acc = R::mac(acc, a[[i, kk]], b[[kk, j]]);
                    }
                    assert_eq!(c[[i, j]], R::trunc(acc, f));
                }
            }
            // A transposed (non-standard-layout) operand gives the same product.
            let bt = b.t().to_owned();
            assert_eq!(matmul_trunc(a.view(), bt.t(), f), c);
        }
    }

    /// The IFMA kernel (and its scalar twin) against the portable kernel, on
    /// full-range operands, ragged tiles and a `k` longer than one chunk.
    fn limb_kernel_is_bit_identical<R: Ring>(fs: [u32; 3]) {
        let mut rng = ChaCha12Rng::seed_from_u64(9);
        for (m, k, n) in [
            (1, 1, 1),
            (5, 7, 3),
            (6, 16, 16),
            (13, 33, 37),
            (3, 1100, 18),
        ] {
            let a = Array2::from_shape_vec((m, k), R::random_vec(&mut rng, m * k)).unwrap();
            let b = Array2::from_shape_vec((k, n), R::random_vec(&mut rng, k * n)).unwrap();
            let (av, bv) = (a.as_slice().unwrap(), b.as_slice().unwrap());
            for f in fs {
                let want = matmul_trunc_portable(a.view(), b.view(), f)
                    .into_raw_vec_and_offset()
                    .0;
                for simd in [false, true] {
                    let got = ifma::matmul_round(av, bv, (m, k, n), f, simd).unwrap();
                    assert_eq!(
                        got,
                        want,
                        "{} bits, simd {simd}, {m}x{k}x{n}, f={f}",
                        R::BITS
                    );
                }
                let dispatched = matmul_trunc(a.view(), b.view(), f)
                    .into_raw_vec_and_offset()
                    .0;
                assert_eq!(dispatched, want);
                // B packed once (a prepared operand) gives the same product; so
                // does a packed form for another shape, which is ignored.
                let packed = pack_right(b.view());
                assert_eq!(packed.is_some(), ifma::available());
                let got = matmul_trunc_packed(a.view(), b.view(), packed.as_ref(), f);
                assert_eq!(got.into_raw_vec_and_offset().0, want);
                let other = pack_right(Array2::from_elem((k + 1, n), R::zero()).view());
                let got = matmul_trunc_packed(a.view(), b.view(), other.as_ref(), f);
                assert_eq!(got.into_raw_vec_and_offset().0, want);
            }
        }
        // Extremes: every operand at the ends of the signed range.
        for v in [0u64, 1, u64::MAX, 1 << 63, (1 << 63) - 1] {
            let x = R::from_limbs(&[v, v.rotate_left(7)]);
            let a = Array2::from_elem((2, 1025), x);
            let b = Array2::from_elem((1025, 17), x.wmul(R::from_u64(3)));
            let want = matmul_trunc_portable(a.view(), b.view(), fs[1])
                .into_raw_vec_and_offset()
                .0;
            let (av, bv) = (a.as_slice().unwrap(), b.as_slice().unwrap());
            for simd in [false, true] {
                let got = ifma::matmul_round(av, bv, (2, 1025, 17), fs[1], simd).unwrap();
                assert_eq!(got, want);
            }
        }
    }

    /// The product does not depend on the number of kernel threads.
    #[test]
    fn results_do_not_depend_on_kernel_threads() {
        let mut rng = ChaCha12Rng::seed_from_u64(11);
        let (m, k, n) = (37, 50, 29);
        let a = Array2::from_shape_vec((m, k), Z128::random_vec(&mut rng, m * k)).unwrap();
        let b = Array2::from_shape_vec((k, n), Z128::random_vec(&mut rng, k * n)).unwrap();
        let want = matmul_trunc_portable(a.view(), b.view(), 32);
        let before = kernel_threads();
        for t in [1, 2, 3, 8] {
            set_kernel_threads(t);
            let got = ifma::matmul_round(
                a.as_slice().unwrap(),
                b.as_slice().unwrap(),
                (m, k, n),
                32,
                false,
            );
            assert_eq!(
                got.unwrap(),
                want.clone().into_raw_vec_and_offset().0,
                "{t} threads"
            );
            assert_eq!(matmul_trunc(a.view(), b.view(), 32), want, "{t} threads");
        }
        set_kernel_threads(before);
    }

    #[test]
    fn limb_kernels_are_bit_identical() {
        limb_kernel_is_bit_identical::<Z64>([0, 16, 32]);
        limb_kernel_is_bit_identical::<Z128>([0, 32, 64]);
        // Z256 and larger f are not covered: the caller falls back.
        let z = [Z256::from_u64(1)];
        assert!(ifma::matmul_round(&z, &z, (1, 1, 1), 0, false).is_none());
    }

    #[test]
    fn matmul_matches_scalar_kernel() {
        check::<Z64>(16);
        check::<Z128>(32);
        check::<Z256>(128);
    }
}
