//! The `Z64` and `Z128` matrix products on AVX-512 IFMA, exact and bit-identical
//! to the portable kernel (rounded to nearest, as [`super::rounding`] says).
//!
//! Protocol 1 needs `round(Σ_k I(a_ik) · I(b_kj) / 2^f)`: bits `f .. f+l` of the
//! exact signed sum (plus `2^(f-1)`), so the sum modulo `2^W` with `W = l + f`
//! (at most 96 for `Z64`, `f <= 32`; at most 192 for `Z128`, `f <= 64`). The
//! portable kernel forms it in the ring's wide accumulator, one scalar
//! multiply-accumulate at a time. Here it is formed from 52-bit limbs in the IFMA
//! instructions (`vpmadd52luq`/`vpmadd52huq`: eight lanes of "add the low or high
//! 52 bits of a 52×52-bit product"), with no rounding anywhere:
//!
//! * **Signed to unsigned.** With `a' = a XOR 2^(l−1)` (the unsigned reading of
//!   `I(a) + 2^(l−1)`), `I(a) = a' − 2^(l−1)`, so
//!   `Σ I(a)I(b) = Σ a'b' − 2^(l−1) (Σ_k a'_ik + Σ_k b'_kj) + k·2^(2l−2)`.
//!   The two sums are one row sum of `A'` and one column sum of `B'`; the last term
//!   vanishes modulo `2^W` (`2l − 2 >= W`).
//! * **Limbs.** `a' = Σ_i a_i 2^(52 i)` with `a_i < 2^52` (two limbs for `Z64`, three
//!   for `Z128`), so `a'b' = Σ_{i,j} a_i b_j 2^(52(i+j))`. Each limb product is the
//!   sum of its low half (weight `52(i+j)`) and its high half (weight
//!   `52(i+j+1)`); halves at weight `W` or more vanish and are never computed.
//!   What remains is added into one accumulator per weight [`Layout::OPS`]: 4
//!   instructions per 8 products for `Z64`, 14 for `Z128`.
//! * **No overflow.** Each instruction adds a value below `2^52`; at most five go
//!   into one accumulator per step of `k`, and `k` is cut into chunks of
//!   [`Layout::KC`] so that a lane stays below `2^64`. Each chunk is folded into a
//!   256-bit total per output element.
//!
//! B is packed once into panels of 16 columns (its limbs, in `k` order); a tile of
//! [`Layout::TR`] rows × 16 columns keeps its accumulators in registers over a chunk.
//! The CPU feature is detected at run time; without it the caller uses the portable
//! kernel. Tests compare both, and this module's scalar twin, on random full-range
//! operands.

use crate::ring::Ring;

/// Columns of a tile (two vectors of eight lanes).
const TC: usize = 16;
const M52: u64 = (1 << 52) - 1;

/// One IFMA step of a tile: add the low (`hi == false`) or high half of
/// `limb_i(a) · limb_j(b)` into accumulator `t` (weight `52 t`).
#[derive(Clone, Copy)]
pub(crate) struct Op {
    i: usize,
    j: usize,
    hi: bool,
    t: usize,
}

const fn op(i: usize, j: usize, hi: bool, t: usize) -> Op {
    Op { i, j, hi, t }
}

/// How a ring's elements are cut into 52-bit limbs and multiplied.
pub(crate) trait Layout {
    /// Limbs per element.
    const NL: usize;
    /// Accumulators per output (weights `0, 52, …, 52 (T−1)`).
    const T: usize;
    /// The limb products kept modulo `2^W`.
    const OPS: &'static [Op];
    /// Longest chunk of `k`: `KC · (most ops into one accumulator) · 2^52 < 2^64`.
    const KC: usize;
    /// Rows of a tile (`TR · 2 · T` accumulator registers).
    const TR: usize;
    /// Ring width `l`.
    const L: u32;
    /// Largest `f` this layout is exact for.
    const MAX_F: u32;
}

/// `Z64`: limbs of 52 and 12 bits; `W <= 96`.
pub(crate) struct Z64Limbs;
impl Layout for Z64Limbs {
    const NL: usize = 2;
    const T: usize = 2;
    const OPS: &'static [Op] = &[
        op(0, 0, false, 0),
        op(0, 0, true, 1),
        op(0, 1, false, 1),
        op(1, 0, false, 1),
    ];
    const KC: usize = 1024;
    const TR: usize = 6;
    const L: u32 = 64;
    const MAX_F: u32 = 32;
}

/// `Z128`: limbs of 52, 52 and 24 bits; `W <= 192`.
pub(crate) struct Z128Limbs;
impl Layout for Z128Limbs {
    const NL: usize = 3;
    const T: usize = 4;
    const OPS: &'static [Op] = &[
        op(0, 0, false, 0),
        op(0, 0, true, 1),
        op(0, 1, false, 1),
        op(1, 0, false, 1),
        op(0, 1, true, 2),
        op(1, 0, true, 2),
        op(0, 2, false, 2),
        op(1, 1, false, 2),
        op(2, 0, false, 2),
        op(0, 2, true, 3),
        op(1, 1, true, 3),
        op(2, 0, true, 3),
        op(1, 2, false, 3),
        op(2, 1, false, 3),
    ];
    const KC: usize = 512;
    const TR: usize = 2;
    const L: u32 = 128;
    const MAX_F: u32 = 64;
}

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

/// `round(Σ_k I(a_ik) I(b_kj) / 2^f)` for row-major `a` (`m×k`) and `b` (`k×n`),
/// as the portable kernel computes it, or `None` for a ring or `f` this module does
/// not cover (then the caller uses the portable kernel).
pub(crate) fn matmul_round<R: Ring>(
    a: &[R],
    b: &[R],
    (m, k, n): (usize, usize, usize),
    f: u32,
    simd: bool,
) -> Option<Vec<R>> {
    match R::BITS {
        64 if f <= Z64Limbs::MAX_F => Some(with_scratch::<R, Z64Limbs>(a, b, (m, k, n), f, simd)),
        128 if f <= Z128Limbs::MAX_F => {
            Some(with_scratch::<R, Z128Limbs>(a, b, (m, k, n), f, simd))
        }
        _ => None,
    }
}

/// Most words of one set of limb buffers kept between products (256 MiB).
const MAX_SCRATCH_WORDS: usize = 1 << 25;
/// Most sets kept: one per server of an in-process cluster, and some to spare.
const MAX_SCRATCH_SETS: usize = 8;

/// Limb buffers of finished products (A's limbs, B's panels), for any thread: a
/// product reuses them instead of faulting in fresh pages, also on the fresh
/// threads of the next session of a [`crate::LocalCluster`].
static SCRATCH: std::sync::Mutex<Vec<[Vec<u64>; 2]>> = std::sync::Mutex::new(Vec::new());

fn with_scratch<R: Ring, L: Layout>(
    a: &[R],
    b: &[R],
    dims: (usize, usize, usize),
    f: u32,
    simd: bool,
) -> Vec<R> {
    let mut scratch = take_scratch();
    let out = product::<R, L>(a, b, dims, f, simd, &mut scratch);
    give_scratch(scratch);
    out
}

fn scratch_pool() -> std::sync::MutexGuard<'static, Vec<[Vec<u64>; 2]>> {
    match SCRATCH.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn take_scratch() -> [Vec<u64>; 2] {
    scratch_pool().pop().unwrap_or_default()
}

fn give_scratch(scratch: [Vec<u64>; 2]) {
    if scratch.iter().map(Vec::capacity).sum::<usize>() <= MAX_SCRATCH_WORDS {
        let mut pool = scratch_pool();
        if pool.len() < MAX_SCRATCH_SETS {
            pool.push(scratch);
        }
    }
}

/// `x XOR 2^(l−1)` as an unsigned integer.
#[inline]
fn offset<R: Ring>(x: R) -> u128 {
    let mut v = 0u128;
    for i in 0..R::LIMBS {
        v |= u128::from(x.limb(i)) << (64 * i);
    }
    v ^ (1u128 << (R::BITS - 1))
}

/// A 256-bit wrapping integer (four 64-bit limbs, least significant first).
#[derive(Clone, Copy, Default)]
struct U256([u64; 4]);

impl U256 {
    /// `self += v · 2^shift` (mod 2^256).
    fn add_shifted(&mut self, v: u128, shift: u32) {
        let (word, bits) = ((shift / 64) as usize, shift % 64);
        // v·2^bits spans at most three words.
        let lo = v << bits;
        let hi = if bits == 0 { 0 } else { v >> (128 - bits) };
        let parts = [lo as u64, (lo >> 64) as u64, hi as u64];
        let mut carry = 0u64;
        for (k, &p) in parts.iter().enumerate() {
            if word + k >= 4 {
                break;
            }
            let (s1, c1) = self.0[word + k].overflowing_add(p);
            let (s2, c2) = s1.overflowing_add(carry);
            self.0[word + k] = s2;
            carry = u64::from(c1) + u64::from(c2);
        }
        for w in self.0.iter_mut().skip(word + 3) {
            let (s, c) = w.overflowing_add(carry);
            *w = s;
            carry = u64::from(c);
        }
    }

    /// `self −= v · 2^shift` (mod 2^256).
    fn sub_shifted(&mut self, v: u128, shift: u32) {
        let mut neg = U256::default();
        neg.add_shifted(v, shift);
        // self + (2^256 − neg) = self + !neg + 1.
        let mut carry = 1u64;
        for (w, n) in self.0.iter_mut().zip(neg.0) {
            let (s1, c1) = w.overflowing_add(!n);
            let (s2, c2) = s1.overflowing_add(carry);
            *w = s2;
            carry = u64::from(c1) + u64::from(c2);
        }
    }

    /// Word `i` of `self >> f`.
    fn word_after_shift(&self, f: u32, i: usize) -> u64 {
        let (w, b) = ((f / 64) as usize + i, f % 64);
        let lo = self.0.get(w).copied().unwrap_or(0);
        let hi = self.0.get(w + 1).copied().unwrap_or(0);
        if b == 0 {
            lo
        } else {
            (lo >> b) | (hi << (64 - b))
        }
    }
}

fn product<R: Ring, L: Layout>(
    a: &[R],
    b: &[R],
    (m, k, n): (usize, usize, usize),
    f: u32,
    simd: bool,
    [al, bp]: &mut [Vec<u64>; 2],
) -> Vec<R> {
    debug_assert!(R::BITS == L::L && f <= L::MAX_F && a.len() == m * k && b.len() == k * n);
    let col_sum = pack_into::<R, L>(b, k, n, bp);
    compute::<R, L>(a, (m, k, n), f, simd, al, bp, &col_sum)
}

/// B's limbs in panels of 16 columns, into `bp`: for each k, NL groups of 16 words
/// (zero past column n). Returns the column sums of B'. B is read in its own order;
/// every packed word is written.
fn pack_into<R: Ring, L: Layout>(b: &[R], k: usize, n: usize, bp: &mut Vec<u64>) -> Vec<u128> {
    let nl = L::NL;
    let panels = n.div_ceil(TC);
    let per_k = nl * TC;
    let len = panels * k * per_k;
    if bp.len() < len {
        bp.resize(len, 0);
    }
    let mut col_sum = vec![0u128; panels * TC];
    // Panels are disjoint slices of `bp` and of `col_sum`: packed by the kernel
    // threads, a group of whole panels each.
    // Panel by panel, row by row: each step reads 16 consecutive elements of B
    // and writes one contiguous group of `nl · 16` words.
    let pack = |first_panel: usize, bp: &mut [u64], sums: &mut [u128]| {
        for (p, sums) in sums.chunks_mut(TC).enumerate() {
            let c0 = (first_panel + p) * TC;
            let cols = n.saturating_sub(c0).min(TC);
            for kk in 0..k {
                let at = (p * k + kk) * per_k;
                let dst = &mut bp[at..at + per_k];
                let row = &b[kk * n + c0..kk * n + c0 + cols];
                for (c, (&x, s)) in row.iter().zip(sums.iter_mut()).enumerate() {
                    let v = offset(x);
                    for i in 0..nl {
                        dst[i * TC + c] = ((v >> (52 * i)) as u64) & M52;
                    }
                    *s = s.wrapping_add(v);
                }
                for c in cols..TC {
                    for i in 0..nl {
                        dst[i * TC + c] = 0;
                    }
                }
            }
        }
    };
    let threads = super::kernel_threads().min(panels).max(1);
    if threads == 1 {
        pack(0, &mut bp[..len], &mut col_sum);
    } else {
        let per = panels.div_ceil(threads);
        std::thread::scope(|sc| {
            let chunks = bp[..len].chunks_mut(per * k * per_k);
            let mut parts = chunks.zip(col_sum.chunks_mut(per * TC)).enumerate();
            // This thread packs the first group itself: one spawn fewer.
            let mine = parts.next();
            for (t, (bchunk, schunk)) in parts {
                let pack = &pack;
                sc.spawn(move || pack(t * per, bchunk, schunk));
            }
            if let Some((t, (bchunk, schunk))) = mine {
                pack(t * per, bchunk, schunk);
            }
        });
    }
    col_sum
}

/// The product of `a` with B packed by [`pack_into`] (`bp`, `col_sum`).
fn compute<R: Ring, L: Layout>(
    a: &[R],
    (m, k, n): (usize, usize, usize),
    f: u32,
    simd: bool,
    al: &mut Vec<u64>,
    bp: &[u64],
    col_sum: &[u128],
) -> Vec<R> {
    let mut out = Vec::with_capacity(m * n);
    out.resize(m * n, R::zero());
    let ctx = Ctx {
        a,
        bp,
        col_sum,
        dims: (m, k, n),
        f,
        simd,
    };
    // Rows split among the kernel threads in whole tiles; each thread extracts the
    // limbs of its own rows of A and writes its own rows of `out`, so the result
    // does not depend on the number of threads.
    let threads = super::kernel_threads().min(m.div_ceil(L::TR)).max(1);
    if threads == 1 || n == 0 {
        rows_of::<R, L>(&ctx, 0, &mut out, al);
    } else {
        let per = m.div_ceil(L::TR).div_ceil(threads) * L::TR;
        std::thread::scope(|sc| {
            let mut parts = out.chunks_mut(per * n).enumerate();
            // This thread computes the first rows itself (with the caller's
            // scratch): one spawn fewer.
            let mine = parts.next();
            for (t, chunk) in parts {
                let ctx = &ctx;
                sc.spawn(move || {
                    let mut scratch = take_scratch();
                    rows_of::<R, L>(ctx, t * per, chunk, &mut scratch[0]);
                    give_scratch(scratch);
                });
            }
            if let Some((t, chunk)) = mine {
                rows_of::<R, L>(&ctx, t * per, chunk, al);
            }
        });
    }
    out
}

/// A right operand packed once for many products ([`pack`]): its limb panels and
/// column sums, for one ring.
pub(crate) struct PackedB {
    bp: Vec<u64>,
    col_sum: Vec<u128>,
    k: usize,
    n: usize,
    bits: u32,
}

/// `b` (`k×n`, row-major) packed for [`matmul_round_packed`], or `None` where this
/// module does not run (no IFMA, or a ring other than `Z64`, `Z128`).
pub(crate) fn pack<R: Ring>(b: &[R], k: usize, n: usize) -> Option<PackedB> {
    if !available() || b.len() != k * n {
        return None;
    }
    let mut bp = Vec::new();
    let col_sum = match R::BITS {
        64 => pack_into::<R, Z64Limbs>(b, k, n, &mut bp),
        128 => pack_into::<R, Z128Limbs>(b, k, n, &mut bp),
        _ => return None,
    };
    Some(PackedB {
        bp,
        col_sum,
        k,
        n,
        bits: R::BITS,
    })
}

/// [`matmul_round`] with B from [`pack`]: bit-identical, without packing B again.
/// `None` when `packed` is for another ring or shape, or `f` is out of range.
pub(crate) fn matmul_round_packed<R: Ring>(
    a: &[R],
    m: usize,
    packed: &PackedB,
    f: u32,
) -> Option<Vec<R>> {
    let (k, n) = (packed.k, packed.n);
    if packed.bits != R::BITS || a.len() != m * k || !available() {
        return None;
    }
    let run = |al: &mut Vec<u64>| match R::BITS {
        64 if f <= Z64Limbs::MAX_F => Some(compute::<R, Z64Limbs>(
            a,
            (m, k, n),
            f,
            true,
            al,
            &packed.bp,
            &packed.col_sum,
        )),
        128 if f <= Z128Limbs::MAX_F => Some(compute::<R, Z128Limbs>(
            a,
            (m, k, n),
            f,
            true,
            al,
            &packed.bp,
            &packed.col_sum,
        )),
        _ => None,
    };
    let mut scratch = take_scratch();
    let out = run(&mut scratch[0]);
    give_scratch(scratch);
    out
}

/// What every thread of one product reads.
struct Ctx<'a, R> {
    a: &'a [R],
    bp: &'a [u64],
    col_sum: &'a [u128],
    dims: (usize, usize, usize),
    f: u32,
    simd: bool,
}

/// Output rows `first .. first + out.len() / n` of the product, into `out`; `al`
/// is scratch for those rows' limbs.
fn rows_of<R: Ring, L: Layout>(ctx: &Ctx<'_, R>, first: usize, out: &mut [R], al: &mut Vec<u64>) {
    let (_, k, n) = ctx.dims;
    let f = ctx.f;
    let per_k = L::NL * TC;
    let rows_here = out.len() / n.max(1);
    let nl = L::NL;
    // These rows' limbs: limb i of element (r, kk) at i·rows·k + (r − first)·k + kk
    // (a plane per limb). Row sums of A'.
    let plane = rows_here * k;
    al.clear();
    al.resize(nl * plane, 0);
    let mut row_sum = vec![0u128; rows_here];
    for (r, sum) in row_sum.iter_mut().enumerate() {
        let row = &ctx.a[(first + r) * k..(first + r + 1) * k];
        for (kk, &x) in row.iter().enumerate() {
            let v = offset(x);
            for i in 0..nl {
                al[i * plane + r * k + kk] = ((v >> (52 * i)) as u64) & M52;
            }
            *sum = sum.wrapping_add(v);
        }
    }
    let al = &al[..];
    let top = L::L - 1;
    let mut tile = vec![[0u64; TC]; L::TR * L::T];
    for c0 in (0..n).step_by(TC) {
        let cols = (n - c0).min(TC);
        let panel = &ctx.bp[(c0 / TC) * k * per_k..][..k * per_k];
        // The tile's operands: rows from `r0`, the chunk of `k` from `k0`.
        let chunk = |r0: usize, k0: usize| Panel {
            al,
            plane,
            lda: k,
            r0: r0 - first,
            panel,
            k0,
            k1: (k0 + L::KC).min(k),
        };
        for r0 in (first..first + rows_here).step_by(L::TR) {
            let rows = (first + rows_here - r0).min(L::TR);
            if L::L == 64 {
                // `W = 64 + f <= 96`: the sum modulo 2^128 is enough, in plain
                // wrapping `u128` arithmetic.
                let mut total = [[0u128; TC]; 8];
                debug_assert!(rows <= total.len());
                for k0 in (0..k).step_by(L::KC) {
                    run_tile::<L>(&chunk(r0, k0), rows, ctx.simd, &mut tile);
                    for (r, tot) in total.iter_mut().enumerate().take(rows) {
                        for t in 0..L::T {
                            let acc = &tile[r * L::T + t];
                            for (tot, &a) in tot.iter_mut().zip(acc) {
                                *tot = tot.wrapping_add(u128::from(a) << (52 * t));
                            }
                        }
                    }
                }
                let half = if f > 0 { 1u128 << (f - 1) } else { 0 };
                for (r, tot) in total.iter().enumerate().take(rows) {
                    let i = r0 + r;
                    for (c, &s) in tot.iter().take(cols).enumerate() {
                        let sums = row_sum[i - first].wrapping_add(ctx.col_sum[c0 + c]);
                        let s = s.wrapping_sub(sums << top).wrapping_add(half);
                        out[(i - first) * n + c0 + c] = R::from_limbs(&[(s >> f) as u64]);
                    }
                }
                continue;
            }
            let mut total = vec![[U256::default(); TC]; rows];
            for k0 in (0..k).step_by(L::KC) {
                run_tile::<L>(&chunk(r0, k0), rows, ctx.simd, &mut tile);
                for (r, tot) in total.iter_mut().enumerate() {
                    for t in 0..L::T {
                        let acc = &tile[r * L::T + t];
                        for (c, tot) in tot.iter_mut().enumerate() {
                            tot.add_shifted(u128::from(acc[c]), 52 * t as u32);
                        }
                    }
                }
            }
            for (r, tot) in total.iter().enumerate() {
                let i = r0 + r;
                for (c, s) in tot.iter().take(cols).enumerate() {
                    let mut s = *s;
                    s.sub_shifted(row_sum[i - first].wrapping_add(ctx.col_sum[c0 + c]), top);
                    if f > 0 {
                        s.add_shifted(1, f - 1);
                    }
                    let words = [s.word_after_shift(f, 0), s.word_after_shift(f, 1)];
                    out[(i - first) * n + c0 + c] = R::from_limbs(&words[..R::LIMBS]);
                }
            }
        }
    }
}

/// One tile's operands: rows `r0..` of A's limbs (limb plane `i` at `i · plane`),
/// one packed panel of B, and the chunk `k0..k1`.
struct Panel<'a> {
    al: &'a [u64],
    plane: usize,
    lda: usize,
    r0: usize,
    panel: &'a [u64],
    k0: usize,
    k1: usize,
}

/// Fills `out[r · T + t]` with accumulator `t` of tile row `r`, for `rows` rows.
fn run_tile<L: Layout>(p: &Panel<'_>, rows: usize, simd: bool, out: &mut [[u64; TC]]) {
    // Every index the kernel reads or writes is in bounds: checked once here.
    assert!((1..=L::TR).contains(&rows) && p.k0 < p.k1 && p.k1 <= p.lda);
    assert!(p.r0 + rows <= p.plane / p.lda.max(1) && p.al.len() >= L::NL * p.plane);
    assert!(p.panel.len() >= p.k1 * L::NL * TC && out.len() >= L::TR * L::T);
    #[cfg(target_arch = "x86_64")]
    {
        if simd && available() {
            // SAFETY: the CPU has AVX-512F and IFMA (checked just above), and the
            // asserts bound every address the kernel reads and writes.
            unsafe {
                match rows {
                    1 => x86::tile::<L, 1>(p, out),
                    2 => x86::tile::<L, 2>(p, out),
                    3 => x86::tile::<L, 3>(p, out),
                    4 => x86::tile::<L, 4>(p, out),
                    5 => x86::tile::<L, 5>(p, out),
                    _ => x86::tile::<L, 6>(p, out),
                }
            }
            return;
        }
    }
    // The same sums in scalar code.
    for acc in out.iter_mut() {
        *acc = [0; TC];
    }
    for r in 0..rows {
        for kk in p.k0..p.k1 {
            let x = |i: usize| p.al[i * p.plane + (p.r0 + r) * p.lda + kk];
            #[allow(clippy::needless_range_loop)] // c indexes the panel and the output alike
            for c in 0..TC {
                let y = |j: usize| p.panel[kk * L::NL * TC + j * TC + c];
                for o in L::OPS {
                    let w = u128::from(x(o.i)) * u128::from(y(o.j));
                    let half = if o.hi {
                        (w >> 52) as u64
                    } else {
                        w as u64 & M52
                    };
                    let acc = &mut out[r * L::T + o.t][c];
                    *acc = acc.wrapping_add(half);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Layout, Panel, TC};
    // The straight-line steps below must match `Z64Limbs::OPS` and `Z128Limbs::OPS`
    // (the scalar twin uses the tables; tests compare the two).
    use std::arch::x86_64::*;

    /// The register tile: `R` rows × 16 columns, `T` accumulators per vector.
    /// `R` must not exceed `L::TR` (the caller's match guarantees the bounds).
    ///
    /// # Safety
    /// The CPU must support AVX-512F and AVX-512 IFMA, and `p` and `out` must
    /// satisfy the bounds asserted in [`super::run_tile`].
    #[target_feature(enable = "avx512f,avx512ifma")]
    pub(super) unsafe fn tile<L: Layout, const R: usize>(p: &Panel<'_>, out: &mut [[u64; TC]]) {
        if R > L::TR {
            return;
        }
        let z = _mm512_setzero_si512();
        // acc[r][t][v]: row r, weight t, vector v (columns 8v..8v+8).
        let mut acc = [[[z; 2]; 4]; R];
        let (al, panel) = (p.al.as_ptr(), p.panel.as_ptr());
        for kk in p.k0..p.k1 {
            let at = kk * L::NL * TC;
            // SAFETY (all pointer reads below): `at + NL·16 <= k1 · NL · 16` and
            // `i · plane + (r0 + r) · lda + kk < NL · plane`, asserted by the caller.
            let mut y = [[z; 2]; 3];
            for (j, yj) in y.iter_mut().enumerate().take(L::NL) {
                for (v, yv) in yj.iter_mut().enumerate() {
                    *yv = unsafe { _mm512_loadu_si512(panel.add(at + j * TC + 8 * v).cast()) };
                }
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let mut x = [z; 3];
                for (i, xi) in x.iter_mut().enumerate().take(L::NL) {
                    let idx = i * p.plane + (p.r0 + r) * p.lda + kk;
                    *xi = _mm512_set1_epi64(unsafe { *al.add(idx) } as i64);
                }
                // Straight-line code per layout (a loop over `L::OPS` is not
                // unrolled and keeps the accumulators in memory).
                for v in 0..2 {
                    if L::T == 2 {
                        step64(&x, &y, v, acc_r);
                    } else {
                        step128(&x, &y, v, acc_r);
                    }
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (t, acc_t) in acc_r.iter().enumerate().take(L::T) {
                for (v, a) in acc_t.iter().enumerate() {
                    // SAFETY: 8 in-bounds u64 of `out[r · T + t]` (r < TR).
                    unsafe {
                        _mm512_storeu_si512(out[r * L::T + t][8 * v..].as_mut_ptr().cast(), *a);
                    }
                }
            }
        }
    }

    macro_rules! madd {
        ($acc:expr, lo, $x:expr, $y:expr) => {
            $acc = _mm512_madd52lo_epu64($acc, $x, $y)
        };
        ($acc:expr, hi, $x:expr, $y:expr) => {
            $acc = _mm512_madd52hi_epu64($acc, $x, $y)
        };
    }

    /// [`super::Z64Limbs::OPS`] on vector `v`.
    #[target_feature(enable = "avx512f,avx512ifma")]
    #[inline]
    fn step64(x: &[__m512i; 3], y: &[[__m512i; 2]; 3], v: usize, a: &mut [[__m512i; 2]; 4]) {
        madd!(a[0][v], lo, x[0], y[0][v]);
        madd!(a[1][v], hi, x[0], y[0][v]);
        madd!(a[1][v], lo, x[0], y[1][v]);
        madd!(a[1][v], lo, x[1], y[0][v]);
    }

    /// [`super::Z128Limbs::OPS`] on vector `v`.
    #[target_feature(enable = "avx512f,avx512ifma")]
    #[inline]
    fn step128(x: &[__m512i; 3], y: &[[__m512i; 2]; 3], v: usize, a: &mut [[__m512i; 2]; 4]) {
        madd!(a[0][v], lo, x[0], y[0][v]);
        madd!(a[1][v], hi, x[0], y[0][v]);
        madd!(a[1][v], lo, x[0], y[1][v]);
        madd!(a[1][v], lo, x[1], y[0][v]);
        madd!(a[2][v], hi, x[0], y[1][v]);
        madd!(a[2][v], hi, x[1], y[0][v]);
        madd!(a[2][v], lo, x[0], y[2][v]);
        madd!(a[2][v], lo, x[1], y[1][v]);
        madd!(a[2][v], lo, x[2], y[0][v]);
        madd!(a[3][v], hi, x[0], y[2][v]);
        madd!(a[3][v], hi, x[1], y[1][v]);
        madd!(a[3][v], hi, x[2], y[0][v]);
        madd!(a[3][v], lo, x[1], y[2][v]);
        madd!(a[3][v], lo, x[2], y[1][v]);
    }
}
