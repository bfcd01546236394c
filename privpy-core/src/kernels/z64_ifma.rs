//! The `Z64` matrix product on AVX-512 IFMA, exact and bit-identical to the portable
//! kernel (rounded to nearest, as [`super::rounding`] says).
//!
//! Protocol 1 needs `trunc(Σ_k I(a_ik) · I(b_kj))`: bits `f .. f+64` of the exact
//! signed sum, so the sum modulo `2^(64+f)` (at most `2^96`, since `f <= 32`).
//! The portable kernel forms it in a 128-bit accumulator, one scalar
//! multiply-accumulate at a time. Here it is formed from 52-bit limbs in the IFMA
//! instructions (`vpmadd52luq`/`vpmadd52huq`: eight lanes of "add the low or high
//! 52 bits of a 52×52-bit product"), with no rounding anywhere:
//!
//! * **Signed to unsigned.** With `a' = a XOR 2^63` (the unsigned reading of
//!   `I(a) + 2^63`), `I(a) = a' − 2^63`, so
//!   `Σ I(a)I(b) = Σ a'b' − 2^63 (Σ_k a'_ik + Σ_k b'_kj) + k·2^126`.
//!   The two sums are one row sum of `A'` and one column sum of `B'`, and the last
//!   term vanishes modulo `2^96`.
//! * **Limbs.** `a' = a1·2^52 + a0` with `a0 < 2^52`, `a1 < 2^12`. Then
//!   `a'b' = a0b0 + (a1b0 + a0b1)·2^52 + a1b1·2^104`; the last term vanishes
//!   modulo `2^96`, the middle one is needed modulo `2^44` only (the low 52 bits of
//!   each product suffice), and `a0b0` is kept whole as its low and high 52-bit
//!   halves.
//! * **No overflow.** Each lane adds values below `2^52`; the `k` dimension is cut
//!   into chunks of at most [`KC`] = 2048, so a lane stays below `2^63`, and each
//!   chunk is folded into a 128-bit total.
//!
//! B is packed in panels of 16 columns, read in order; a tile of 4 rows × 16
//! columns keeps its 24 accumulators in registers over a chunk. The CPU feature is detected at run time; without it the caller uses the
//! portable kernel. Tests compare both on random full-range operands.

use crate::ring::Ring;

/// Longest run of `k` accumulated in 64-bit lanes before folding (`KC · 2^52 < 2^63`).
const KC: usize = 2048;
/// Rows of a tile.
const TR: usize = 4;
/// Columns of a tile (two vectors of eight lanes).
const TC: usize = 16;
const M52: u64 = (1 << 52) - 1;

/// Whether this CPU runs the IFMA kernel.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512ifma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `round(Σ_k I(a_ik) I(b_kj) / 2^f)` for row-major `a` (`m×k`) and `b` (`k×n`), as
/// the portable kernel computes it. Callers check [`available`] first; `f <= 32`.
pub(crate) fn matmul_trunc<R: Ring>(
    a: &[R],
    b: &[R],
    m: usize,
    k: usize,
    n: usize,
    f: u32,
) -> Vec<R> {
    matmul_trunc_with(a, b, m, k, n, f, available())
}

/// [`matmul_trunc`] with the tile kernel chosen by `simd` (`false`: the same limb
/// arithmetic in scalar code, so that tests check it on every machine).
///
/// `R` is `Z64` (its one limb is read); the row and column sums are kept modulo
/// `2^64`, more than the `2^33` that `f <= 32` needs.
pub(crate) fn matmul_trunc_with<R: Ring>(
    a: &[R],
    b: &[R],
    m: usize,
    k: usize,
    n: usize,
    f: u32,
    simd: bool,
) -> Vec<R> {
    debug_assert!(R::LIMBS == 1 && f <= 32 && a.len() == m * k && b.len() == k * n);
    SCRATCH.with(|cell| {
        let mut scratch = cell.take();
        let out = product(a, b, (m, k, n), f, simd, &mut scratch);
        // Keep the buffers for the next product unless they are very large.
        if scratch.iter().map(Vec::capacity).sum::<usize>() <= MAX_SCRATCH_WORDS {
            cell.replace(scratch);
        }
        out
    })
}

/// Most words of limb buffers a thread keeps between products (256 MiB).
const MAX_SCRATCH_WORDS: usize = 1 << 25;

thread_local! {
    /// The limb buffers of the last product on this thread (A's two limbs, B's
    /// panels): reused, so that a product does not fault in fresh pages each time.
    static SCRATCH: std::cell::Cell<[Vec<u64>; 3]> = const { std::cell::Cell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

fn product<R: Ring>(
    a: &[R],
    b: &[R],
    (m, k, n): (usize, usize, usize),
    f: u32,
    simd: bool,
    [a0, a1, bp]: &mut [Vec<u64>; 3],
) -> Vec<R> {
    // Limbs of A' (row-major, m×k).
    a0.clear();
    a1.clear();
    let mut row_sum = vec![0u64; m];
    for (i, row) in a.chunks_exact(k.max(1)).take(m).enumerate() {
        for &x in row {
            let x = x.limb(0) ^ (1 << 63);
            a0.push(x & M52);
            a1.push(x >> 52);
            row_sum[i] = row_sum[i].wrapping_add(x);
        }
    }
    // Limbs of B', packed in panels of 16 columns: for each k, the 16 low limbs
    // then the 16 high limbs (zero past column n), so a tile streams its panel.
    // B is read in its own order (row by row); every packed word is written.
    let panels = n.div_ceil(TC);
    let len = panels * k * 2 * TC;
    if bp.len() < len {
        bp.resize(len, 0);
    }
    let mut col_sum = vec![0u64; panels * TC];
    for kk in 0..k {
        let row = &b[kk * n..][..n];
        for (j, s) in col_sum.iter_mut().enumerate() {
            let x = row.get(j).map_or(0, |x| x.limb(0) ^ (1 << 63));
            let at = ((j / TC) * k + kk) * 2 * TC + j % TC;
            bp[at] = x & M52;
            bp[at + TC] = x >> 52;
            *s = s.wrapping_add(x);
        }
    }
    // k·2^126 from the offsets, plus 2^(f-1) to round to nearest (`super::rounding`).
    let kterm = ((k as u128) << 126).wrapping_add(if f == 0 { 0 } else { 1 << (f - 1) });
    let mut out = vec![R::zero(); m * n];
    let mut tile = [[0u64; TC]; 3 * TR];
    for c0 in (0..n).step_by(TC) {
        let cols = (n - c0).min(TC);
        let panel = &bp[(c0 / TC) * k * 2 * TC..][..k * 2 * TC];
        for r0 in (0..m).step_by(TR) {
            let rows = (m - r0).min(TR);
            let mut total = [[0u128; TC]; TR];
            for k0 in (0..k).step_by(KC) {
                let p = Panel {
                    a0,
                    a1,
                    lda: k,
                    r0,
                    panel,
                    k0,
                    k1: (k0 + KC).min(k),
                };
                run_tile(&p, rows, simd, &mut tile);
                for (r, t) in total.iter_mut().enumerate().take(rows) {
                    let (lo, hi, mid) = (&tile[r], &tile[TR + r], &tile[2 * TR + r]);
                    for (c, t) in t.iter_mut().enumerate() {
                        *t = t
                            .wrapping_add(u128::from(lo[c]))
                            .wrapping_add(u128::from(hi[c]) << 52)
                            .wrapping_add(u128::from(mid[c]) << 52);
                    }
                }
            }
            for (r, t) in total.iter().enumerate().take(rows) {
                let i = r0 + r;
                let o = &mut out[i * n + c0..][..cols];
                for (c, o) in o.iter_mut().enumerate() {
                    let sums = u128::from(row_sum[i].wrapping_add(col_sum[c0 + c]));
                    let s = t[c].wrapping_sub(sums << 63).wrapping_add(kterm);
                    *o = R::from_limbs(&[(s >> f) as u64]);
                }
            }
        }
    }
    out
}

/// One tile's operands: rows `r0..` of A's limbs, one packed panel of B (per k,
/// 16 low limbs then 16 high limbs), and the chunk `k0..k1`.
struct Panel<'a> {
    a0: &'a [u64],
    a1: &'a [u64],
    lda: usize,
    r0: usize,
    panel: &'a [u64],
    k0: usize,
    k1: usize,
}

/// Fills `out` (rows 0..TR: low halves of `a0·b0`; TR..2TR: high halves; 2TR..3TR:
/// the cross terms modulo 2^52) for `rows` rows of the tile.
fn run_tile(p: &Panel<'_>, rows: usize, simd: bool, out: &mut [[u64; TC]; 3 * TR]) {
    // Every index the kernel reads is in bounds: checked once here.
    assert!((1..=TR).contains(&rows) && p.k1 <= p.lda && p.k0 < p.k1);
    assert!(p.a0.len() >= (p.r0 + rows) * p.lda && p.a1.len() == p.a0.len());
    assert!(p.panel.len() >= p.k1 * 2 * TC);
    #[cfg(target_arch = "x86_64")]
    {
        if simd && available() {
            // SAFETY: the CPU has AVX-512F and IFMA (checked just above), and the
            // asserts bound every address the kernel reads.
            unsafe {
                match rows {
                    1 => x86::tile::<1>(p, out),
                    2 => x86::tile::<2>(p, out),
                    3 => x86::tile::<3>(p, out),
                    _ => x86::tile::<4>(p, out),
                }
            }
            return;
        }
    }
    // The same sums in scalar code.
    for row in out.iter_mut() {
        *row = [0; TC];
    }
    for r in 0..rows {
        for kk in p.k0..p.k1 {
            let (x0, x1) = (p.a0[(p.r0 + r) * p.lda + kk], p.a1[(p.r0 + r) * p.lda + kk]);
            let (y0s, y1s) = p.panel[kk * 2 * TC..][..2 * TC].split_at(TC);
            for (c, (&y0, &y1)) in y0s.iter().zip(y1s).enumerate() {
                let w = u128::from(x0) * u128::from(y0);
                out[r][c] += (w as u64) & M52;
                out[TR + r][c] += (w >> 52) as u64;
                let cross = x1.wrapping_mul(y0).wrapping_add(x0.wrapping_mul(y1)) & M52;
                out[2 * TR + r][c] = out[2 * TR + r][c].wrapping_add(cross);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Panel, TC, TR};
    use std::arch::x86_64::*;

    /// The register tile: `R` rows × 16 columns, three accumulators per vector.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and AVX-512 IFMA, and `p` must satisfy the
    /// bounds asserted in [`super::run_tile`].
    #[target_feature(enable = "avx512f,avx512ifma")]
    pub(super) unsafe fn tile<const R: usize>(p: &Panel<'_>, out: &mut [[u64; TC]; 3 * TR]) {
        let z = _mm512_setzero_si512();
        let mut lo = [[z; 2]; R];
        let mut hi = [[z; 2]; R];
        let mut mid = [[z; 2]; R];
        let (a0, a1) = (p.a0.as_ptr(), p.a1.as_ptr());
        let b = p.panel.as_ptr();
        for kk in p.k0..p.k1 {
            let at = kk * 2 * TC;
            // SAFETY (all pointer reads below): `at + 32 <= k1 * 32` and
            // `(r0 + r) * lda + kk < (r0 + rows) * lda`, asserted by the caller.
            let (y0, y1) = unsafe {
                (
                    [
                        _mm512_loadu_si512(b.add(at).cast()),
                        _mm512_loadu_si512(b.add(at + 8).cast()),
                    ],
                    [
                        _mm512_loadu_si512(b.add(at + 16).cast()),
                        _mm512_loadu_si512(b.add(at + 24).cast()),
                    ],
                )
            };
            for r in 0..R {
                let ai = (p.r0 + r) * p.lda + kk;
                let (x0, x1) = unsafe {
                    (
                        _mm512_set1_epi64(*a0.add(ai) as i64),
                        _mm512_set1_epi64(*a1.add(ai) as i64),
                    )
                };
                for c in 0..2 {
                    lo[r][c] = _mm512_madd52lo_epu64(lo[r][c], x0, y0[c]);
                    hi[r][c] = _mm512_madd52hi_epu64(hi[r][c], x0, y0[c]);
                    mid[r][c] = _mm512_madd52lo_epu64(mid[r][c], x1, y0[c]);
                    mid[r][c] = _mm512_madd52lo_epu64(mid[r][c], x0, y1[c]);
                }
            }
        }
        for r in 0..R {
            for c in 0..2 {
                // SAFETY: each destination is 8 in-bounds u64 of `out`.
                unsafe {
                    _mm512_storeu_si512(out[r][8 * c..].as_mut_ptr().cast(), lo[r][c]);
                    _mm512_storeu_si512(out[TR + r][8 * c..].as_mut_ptr().cast(), hi[r][c]);
                    _mm512_storeu_si512(out[2 * TR + r][8 * c..].as_mut_ptr().cast(), mid[r][c]);
                }
            }
        }
    }
}
