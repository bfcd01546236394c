//! Comparison, four-party: the assistants deal, the primaries finish.
//!
//! [`crate::Comparison::FourParty`]. Input: shares `z1` (on `S1`) and `z2` (on `S2`)
//! of `z`, reduced to `w` bits (`w = l`, or fewer when the caller guarantees
//! `|z̃| < 2^(w−1)`). Output: arithmetic shares in `Z_{2^l}` of `[z < 0]`
//! (bit `w − 1` of `z mod 2^w`) or `[z == 0]`, as the integer 1 or the
//! fixed-point 1.
//!
//! The construction is the classic "mask, open, compare bitwise" (the bit
//! extraction of ABY3, Mohassel–Rindal 2018, §5.3, and the edaBits of Escudero et
//! al. 2020), with the correlated randomness dealt by an assistant as in the
//! four-party protocols Trident (Chaudhari et al. 2020) and Fantastic Four
//! (Dalskov et al. 2021), and almost all of it expanded from pairwise seeds so that
//! only corrections travel:
//!
//! - `Sa` (the dealer) shares an AES-CTR key with `S1` and another with `S2`
//!   (derived from the session's pairwise seeds). From them each primary `Sj`
//!   expands, with no message: an arithmetic mask share `Rj ∈ Z_{2^w}`, boolean
//!   mask bits for every AND gate and for the conversion bit `ρ`, and (`S1` only)
//!   its boolean shares of the bits of `r = R1 + R2 mod 2^w` and of every AND
//!   triple's product, and its arithmetic share of `ρ` in `Z_{2^l}`. `Sa` expands
//!   both streams, so it knows every mask. It sends `S2` one message, the
//!   **deal**: `S2`'s shares of `r`'s bits, of the triples' products and of `ρ`,
//!   each as `value ⊕ S1's share` (or `value − S1's share`).
//! - **Round 1.** `Sj → S(3−j)`: `mj = zj + Rj mod 2^w`. Both get
//!   `c = m1 + m2 = z + r mod 2^w`.
//! - Now `z = c − r mod 2^w` with `c` public to the primaries and `r`'s bits
//!   boolean-shared. Less-than: `msb(z) = c_{w−1} ⊕ r_{w−1} ⊕ [c' < r']` for the low
//!   `w − 1` bits `c'`, `r'`; equality: `[c == r] = ∧ᵢ ¬(cᵢ ⊕ rᵢ)`. Each bit gives a
//!   leaf `gᵢ = rᵢ ∧ ¬cᵢ` ("r is greater here"), `eᵢ = ¬(rᵢ ⊕ cᵢ)` ("equal here"),
//!   both local because `c` is public. A balanced tree joins segments, high `H` over
//!   low `L`: `G = G_H ⊕ (E_H ∧ G_L)`, `E = E_H ∧ E_L` (`G_H` and `E_H ∧ G_L` never
//!   both hold, so `⊕` is `∨`).
//! - **Rounds 2 … d.** One round per tree level: every AND of the level at once, by
//!   Beaver's method on bits. For the join of `H` and `L`, each primary sends
//!   `E_H ⊕ a`, `G_L ⊕ b`, `E_L ⊕ b'` (its shares), both open them, and each computes
//!   its shares of `E_H ∧ G_L` and `E_H ∧ E_L` from the triples `(a, b, ab)`,
//!   `(a, b', ab')`. Everything is bit-sliced: bit `k` of a 64-bit word is instance
//!   `k`, so one word operation serves 64 comparisons.
//! - **Root round.** The root is `out = A ⊕ (X ∧ Y)` with `A = c_{w−1} ⊕ r_{w−1} ⊕ G_H`,
//!   `X = E_H`, `Y = G_L` (equality: `A = 0`, `X = E_H`, `Y = E_L`): one more AND by
//!   Beaver's method, opening `X ⊕ α` and `Y ⊕ β`. Each primary now holds a boolean
//!   share of `out`.
//! - **Conversion round.** The primaries open `e = out ⊕ ρ`, with `ρ` a mask bit
//!   whose arithmetic shares in `Z_{2^l}` `Sa` dealt. Then `out = e + (1 − 2e)·ρ`,
//!   linear in `ρ`'s shares with public coefficients: arithmetic shares of `[z < 0]`.
//!   (An earlier version merged these two rounds by dealing the seven monomials of
//!   `(A, X, Y)`'s masks in `Z_{2^l}`: one round fewer, but seven ring elements per
//!   comparison dealt and expanded instead of one, which was most of the deal and
//!   much of the work in `Z_{2^128}`.)
//!
//! For `l = 64`: 8 rounds, and each primary sends 8 bytes plus 181 bits (about 31
//! bytes) per comparison online; the deal is about 32 bytes per comparison.
//!
//! **What each server sees** (semi-honest, no two servers colluding):
//! - `Sa` and `Sb` receive nothing. (`Sb` is idle; `Sa` only sends the deal.)
//! - `S2` receives the deal: each entry is a value masked by `S1`'s share of it,
//!   which comes from a stream `S2` does not know, so the deal is uniformly random
//!   to `S2` (bits uniform; ring elements uniform). The conversion round's opened
//!   `e = out ⊕ ρ` is uniform too: `ρ` is a fresh bit known only to `Sa`. In round 1 it receives
//!   `m1 = z1 + R1`, uniform because `R1` is. In later rounds it receives `S1`'s
//!   shares of masked bits, `x1 ⊕ a1` with `a1` from `S1`'s stream: uniform. The
//!   values it can compute (`c`, the opened `x ⊕ a`) are uniform too: `c` is masked
//!   by `r`, which is uniform and unknown to both primaries, and each opened bit by a
//!   fresh mask bit known only to `Sa`.
//! - `S1` receives `m2 = z2 + R2` and `S2`'s masked shares: uniform for the same
//!   reasons. It receives no deal.
//! - Every mask is used for one opening only; the mask `a` of `E_H` serves both ANDs
//!   of one join, through one opening.
//!
//! The code is sans-IO: [`deal`] is the dealer's whole part, [`Primary`] is a
//! primary's state machine (`start` returns the first message, `step` takes the
//! other primary's message and returns the next one or the result), and
//! [`Party::compare4`] only moves bytes.

use super::{Party, RingData, from_vec};
use crate::data::Data;
use crate::engine::CmpKind;
use crate::error::{Error, Result};
use crate::gc::LabelPrg;
use crate::ring::Ring;
use crate::transport::Role::{S1, S2, Sa, Sb};

/// One named stream per kind of material (AES-CTR purposes under the keys `Sa`
/// shares with `S1` and with `S2`; the garbled circuits use purposes 1 and 2).
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
enum Stream {
    /// The arithmetic mask share `Rj` (both primaries).
    MaskArith = 16,
    /// `S1`'s boolean shares of `r`'s bits.
    RBits = 17,
    /// The mask bits of every AND gate's inputs (both primaries).
    AndMasks = 18,
    /// `S1`'s shares of the AND triples' products.
    AndProducts = 19,
    /// The root AND's mask bits `α, β` and the conversion bit `ρ` (both primaries).
    LastMasks = 20,
    /// `S1`'s arithmetic shares of `ρ` in `Z_{2^l}`.
    RhoArith = 21,
    /// `S1`'s share of the root AND's product `αβ`.
    LastProduct = 22,
}

// ---------------------------------------------------------------- bit planes

/// `count` planes of `n` bits: bit `k` of plane `p` (instance `k`) is bit `k % 64`
/// of word `p · words + k / 64`. Bits past `n` in the last word are unspecified.
#[derive(Clone, Default)]
pub(crate) struct Planes {
    n: usize,
    words: usize,
    data: Vec<u64>,
}

impl Planes {
    fn zeros(count: usize, n: usize) -> Planes {
        let words = n.div_ceil(64);
        Planes {
            n,
            words,
            data: crate::pool::take_words(count * words),
        }
    }

    fn count(&self) -> usize {
        self.data.len().checked_div(self.words).unwrap_or(0)
    }

    fn plane(&self, p: usize) -> &[u64] {
        &self.data[p * self.words..(p + 1) * self.words]
    }

    fn plane_mut(&mut self, p: usize) -> &mut [u64] {
        &mut self.data[p * self.words..(p + 1) * self.words]
    }

    fn push(&mut self, plane: &[u64]) {
        self.data.extend_from_slice(plane);
    }

    /// Bits `pos..pos + bits` (at most 64) of plane `p`.
    fn get(&self, p: usize, pos: usize, bits: u32) -> u64 {
        let pl = self.plane(p);
        let (w, off) = (pos / 64, (pos % 64) as u32);
        let mut v = pl[w] >> off;
        if off > 0 && off + bits > 64 && w + 1 < pl.len() {
            v |= pl[w + 1] << (64 - off);
        }
        if bits == 64 {
            v
        } else {
            v & ((1u64 << bits) - 1)
        }
    }

    /// Instances `first..first + m` of every plane.
    fn slice(&self, first: usize, m: usize) -> Planes {
        let mut out = Planes::zeros(self.count(), m);
        for p in 0..self.count() {
            for (k, o) in out.plane_mut(p).iter_mut().enumerate() {
                let bits = (m - 64 * k).min(64) as u32;
                *o = self.get(p, first + 64 * k, bits);
            }
        }
        out
    }

    /// The wire form: `n` bits per plane, planes in order, packed.
    fn to_bytes(&self) -> Vec<u8> {
        if self.n.is_multiple_of(64) {
            return bytemuck::cast_slice(&self.data).to_vec();
        }
        let mut w = BitWriter::default();
        for p in 0..self.count() {
            for k in 0..self.words {
                let bits = (self.n - 64 * k).min(64) as u32;
                w.push(self.get(p, 64 * k, bits), bits);
            }
        }
        w.finish(self.count() * self.n)
    }

    fn wire_len(count: usize, n: usize) -> usize {
        (count * n).div_ceil(8)
    }

    /// Parses the wire form (`b` holds at least [`Planes::wire_len`] bytes).
    fn from_bytes(b: &[u8], count: usize, n: usize) -> Planes {
        let mut out = Planes::zeros(count, n);
        if n.is_multiple_of(64) {
            let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut out.data);
            let len = dst.len().min(b.len());
            dst[..len].copy_from_slice(&b[..len]);
            return out;
        }
        let words = out.words;
        let mut pos = 0;
        for w in out.data.chunks_exact_mut(words) {
            for (k, x) in w.iter_mut().enumerate() {
                let bits = (n - 64 * k).min(64) as u32;
                *x = read_bits(b, pos, bits);
                pos += bits as usize;
            }
        }
        out
    }

    /// `count` planes of `n` bits from an AES-CTR stream.
    fn expand(prg: &LabelPrg, op: u64, s: Stream, count: usize, n: usize) -> Planes {
        let words = n.div_ceil(64);
        let mut data = crate::pool::take_words(count * words);
        prg.fill_words(op, s as u8, &mut data);
        Planes { n, words, data }
    }
}

/// Large planes go back to the thread's pool: the next comparison's planes reuse
/// their pages instead of faulting in fresh ones.
impl Drop for Planes {
    fn drop(&mut self) {
        crate::pool::give_words(std::mem::take(&mut self.data));
    }
}

// Masks, shares and masked bits: `Debug` shows sizes only, never contents.
impl std::fmt::Debug for Planes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Planes({} x {} bits)", self.count(), self.n)
    }
}

impl<R> std::fmt::Debug for Material<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Material({} instances)", self.n)
    }
}

impl<R> std::fmt::Debug for Deal<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Deal({} ring elements, ..)", self.rho.len())
    }
}

impl<R> std::fmt::Debug for Step<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Send(b) => write!(f, "Send({} bytes)", b.len()),
            Step::Done(v) => write!(f, "Done({} shares)", v.len()),
        }
    }
}

#[derive(Default)]
struct BitWriter {
    out: Vec<u64>,
    acc: u64,
    used: u32,
}

impl BitWriter {
    /// Appends the low `bits` bits of `v` (higher bits of `v` must be zero).
    fn push(&mut self, v: u64, bits: u32) {
        if bits == 0 {
            return;
        }
        self.acc |= v << self.used;
        let total = self.used + bits;
        if total >= 64 {
            self.out.push(self.acc);
            self.acc = if self.used == 0 {
                0
            } else {
                v >> (64 - self.used)
            };
            self.used = total - 64;
        } else {
            self.used = total;
        }
    }

    fn finish(mut self, total_bits: usize) -> Vec<u8> {
        if self.used > 0 {
            self.out.push(self.acc);
        }
        let mut bytes: Vec<u8> = bytemuck::cast_slice(&self.out).to_vec();
        bytes.truncate(total_bits.div_ceil(8));
        bytes
    }
}

/// Bits `pos..pos + bits` (at most 64) of a packed little-endian bit string
/// (missing bytes read as zero).
fn read_bits(b: &[u8], pos: usize, bits: u32) -> u64 {
    let byte = pos / 8;
    let mut buf = [0u8; 16];
    let end = (byte + 16).min(b.len());
    if byte < end {
        buf[..end - byte].copy_from_slice(&b[byte..end]);
    }
    let v = (u128::from_le_bytes(buf) >> (pos % 8)) as u64;
    if bits == 64 {
        v
    } else {
        v & ((1u64 << bits) - 1)
    }
}

/// Transposes a 64×64 bit matrix in place: bit `c` of row `r` ends up as bit `r` of
/// row `c`.
fn transpose64(a: &mut [u64; 64]) {
    let mut j = 32;
    let mut m: u64 = 0x0000_0000_FFFF_FFFF;
    while j != 0 {
        let mut k = 0;
        while k < 64 {
            let t = ((a[k] >> j) ^ a[k + j]) & m;
            a[k] ^= t << j;
            a[k + j] ^= t;
            k = (k + j + 1) & !j;
        }
        j >>= 1;
        m ^= m << j;
    }
}

/// The low `w` bits of each value as `w` planes.
fn to_planes<R: Ring>(vals: &[R], w: usize) -> Planes {
    let n = vals.len();
    let mut out = Planes::zeros(w, n);
    let mut block = [0u64; 64];
    for (b, chunk) in vals.chunks(64).enumerate() {
        for limb in 0..w.div_ceil(64) {
            for (k, v) in chunk.iter().enumerate() {
                block[k] = v.limb(limb);
            }
            block[chunk.len()..].fill(0);
            transpose64(&mut block);
            for (bit, &word) in block.iter().enumerate().take(w - 64 * limb) {
                out.plane_mut(64 * limb + bit)[b] = word;
            }
        }
    }
    out
}

/// The inverse of [`to_planes`]: values from `w` planes.
#[cfg(test)]
fn from_planes<R: Ring>(p: &Planes, w: usize) -> Vec<R> {
    let n = p.n;
    let mut out = vec![R::zero(); n];
    let mut limbs = vec![[0u64; 4]; n];
    let mut block = [0u64; 64];
    for b in 0..p.words {
        for limb in 0..w.div_ceil(64) {
            block.fill(0);
            for (bit, x) in block.iter_mut().enumerate().take(w - 64 * limb) {
                *x = p.plane(64 * limb + bit)[b];
            }
            transpose64(&mut block);
            for (l, &x) in limbs[64 * b..].iter_mut().zip(block.iter()) {
                l[limb] = x;
            }
        }
    }
    for (o, l) in out.iter_mut().zip(&limbs) {
        *o = R::from_limbs(&l[..R::LIMBS]);
    }
    out
}

fn xor_into(a: &mut [u64], b: &[u64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

fn xor(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// Ring elements from an AES-CTR stream.
fn expand_ring<R: Ring>(prg: &LabelPrg, op: u64, s: Stream, count: usize) -> Vec<R> {
    // Written straight into the elements' words: no intermediate byte buffer.
    let mut words = vec![0u64; count * R::LIMBS];
    prg.fill_words(op, s as u8, &mut words);
    R::from_words(words)
}

// ---------------------------------------------------------------- the circuit

/// One node of a tree level: a segment carried over, or the join of two.
#[derive(Clone, Copy, Debug)]
enum Node {
    Pass(usize),
    /// `H = nodes[h]` over `L = nodes[l]`; mask planes `a` (for `E_H`), `b` (for
    /// `G_L`, less-than only), `bp` (for `E_L`, when the join's `E` is needed), and
    /// product planes `ab`, `abp`.
    Join {
        h: usize,
        l: usize,
        a: usize,
        b: Option<(usize, usize)>,
        bp: Option<(usize, usize)>,
    },
}

/// The shape of the computation for `(kind, w)`: tree levels and material sizes.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    kind: CmpKind,
    w: usize,
    levels: Vec<Vec<Node>>,
    masks: usize,
    products: usize,
}

impl Plan {
    pub(crate) fn new(kind: CmpKind, w: usize) -> Plan {
        let leaves = match kind {
            CmpKind::Negative => w - 1,
            CmpKind::Zero => w,
        };
        let (mut masks, mut products) = (0, 0);
        let mut levels = Vec::new();
        let mut count = leaves;
        while count > 2 {
            let mut nodes = Vec::new();
            for j in 0..count / 2 {
                let a = masks;
                masks += 1;
                let mut pair = || {
                    let p = (masks, products);
                    masks += 1;
                    products += 1;
                    p
                };
                // The lowest segment's E is never needed for less-than.
                let (b, bp) = match kind {
                    CmpKind::Negative => (Some(pair()), if j > 0 { Some(pair()) } else { None }),
                    CmpKind::Zero => (None, Some(pair())),
                };
                nodes.push(Node::Join {
                    h: 2 * j + 1,
                    l: 2 * j,
                    a,
                    b,
                    bp,
                });
            }
            if count % 2 == 1 {
                nodes.push(Node::Pass(count - 1));
            }
            count = nodes.len();
            levels.push(nodes);
        }
        Plan {
            kind,
            w,
            levels,
            masks,
            products,
        }
    }

    /// Opened planes per level.
    fn openings(&self, level: usize) -> usize {
        self.levels[level]
            .iter()
            .map(|n| match n {
                Node::Pass(_) => 0,
                Node::Join { b, bp, .. } => 1 + b.is_some() as usize + bp.is_some() as usize,
            })
            .sum()
    }

    /// Online rounds: the opening of `c`, one per level, the root, the conversion.
    #[cfg(test)]
    pub(crate) fn rounds(&self) -> usize {
        self.levels.len() + 3
    }
}

/// What one primary holds for `n` instances, before any input exists.
#[derive(Clone, Default)]
pub(crate) struct Material<R> {
    n: usize,
    /// `Rj`, the arithmetic share of `r mod 2^w`.
    mask: Vec<R>,
    /// This primary's boolean shares of `r`'s `w` bits.
    rbits: Planes,
    and_masks: Planes,
    products: Planes,
    /// `α`, `β` (the root AND's masks) and `ρ` (the conversion bit).
    last_masks: Planes,
    /// This primary's share of the root AND's `αβ`.
    last_product: Planes,
    /// This primary's arithmetic share of `ρ` in `Z_{2^l}`.
    rho: Vec<R>,
}

impl<R: Ring> Material<R> {
    /// Instances `first..first + m`.
    pub(crate) fn slice(&self, first: usize, m: usize) -> Material<R> {
        Material {
            n: m,
            mask: self.mask[first..first + m].to_vec(),
            rbits: self.rbits.slice(first, m),
            and_masks: self.and_masks.slice(first, m),
            products: self.products.slice(first, m),
            last_masks: self.last_masks.slice(first, m),
            last_product: self.last_product.slice(first, m),
            rho: self.rho[first..first + m].to_vec(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.n
    }
}

/// The dealer's message to `S2`: its shares of what cannot come from its stream.
#[derive(Clone)]
pub(crate) struct Deal<R> {
    rbits: Planes,
    products: Planes,
    last_product: Planes,
    rho: Vec<R>,
}

impl<R: Ring> Deal<R> {
    fn wire_len(plan: &Plan, n: usize) -> usize {
        Planes::wire_len(plan.w, n)
            + Planes::wire_len(plan.products, n)
            + Planes::wire_len(1, n)
            + n * R::BYTES
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.rbits.to_bytes();
        out.extend_from_slice(&self.products.to_bytes());
        out.extend_from_slice(&self.last_product.to_bytes());
        R::write_slice(&self.rho, &mut out);
        out
    }

    fn from_bytes(b: &[u8], plan: &Plan, n: usize) -> Deal<R> {
        let l1 = Planes::wire_len(plan.w, n);
        let l2 = l1 + Planes::wire_len(plan.products, n);
        let l3 = l2 + Planes::wire_len(1, n);
        Deal {
            rbits: Planes::from_bytes(&b[..l1], plan.w, n),
            products: Planes::from_bytes(&b[l1..l2], plan.products, n),
            last_product: Planes::from_bytes(&b[l2..l3], 1, n),
            rho: R::read_le(&b[l3..]),
        }
    }
}

/// A primary's material from its stream with `Sa` (and, for `S2`, the deal).
pub(crate) fn expand<R: Ring>(
    plan: &Plan,
    n: usize,
    prg: &LabelPrg,
    op: u64,
    deal: Option<Deal<R>>,
) -> Material<R> {
    let mask = expand_ring::<R>(prg, op, Stream::MaskArith, n)
        .into_iter()
        .map(|x| x.low_bits(plan.w as u32))
        .collect();
    let and_masks = Planes::expand(prg, op, Stream::AndMasks, plan.masks, n);
    let last_masks = Planes::expand(prg, op, Stream::LastMasks, 3, n);
    let (rbits, products, last_product, rho) = match deal {
        Some(d) => (d.rbits, d.products, d.last_product, d.rho),
        None => (
            Planes::expand(prg, op, Stream::RBits, plan.w, n),
            Planes::expand(prg, op, Stream::AndProducts, plan.products, n),
            Planes::expand(prg, op, Stream::LastProduct, 1, n),
            expand_ring::<R>(prg, op, Stream::RhoArith, n),
        ),
    };
    Material {
        n,
        mask,
        rbits,
        and_masks,
        products,
        last_masks,
        last_product,
        rho,
    }
}

/// The dealer's part (`Sa`): from the streams it shares with `S1` (`p1`) and `S2`
/// (`p2`), the deal for `S2`.
pub(crate) fn deal<R: Ring>(
    plan: &Plan,
    n: usize,
    p1: &LabelPrg,
    p2: &LabelPrg,
    op: u64,
) -> Deal<R> {
    let m1 = expand::<R>(plan, n, p1, op, None);
    let w = plan.w as u32;
    let r2 = expand_ring::<R>(p2, op, Stream::MaskArith, n);
    // r = R1 + R2 mod 2^w, and S2's bit shares are r's bits ⊕ S1's.
    let r: Vec<R> = m1
        .mask
        .iter()
        .zip(&r2)
        .map(|(a, b)| a.wadd(b.low_bits(w)).low_bits(w))
        .collect();
    let mut rbits = to_planes(&r, plan.w);
    for p in 0..plan.w {
        xor_into(rbits.plane_mut(p), m1.rbits.plane(p));
    }
    let masks2 = Planes::expand(p2, op, Stream::AndMasks, plan.masks, n);
    let mut products = Planes::zeros(plan.products, n);
    let mask = |i: usize| xor(m1.and_masks.plane(i), masks2.plane(i));
    for level in &plan.levels {
        for node in level {
            if let Node::Join { a, b, bp, .. } = *node {
                let ma = mask(a);
                for (y, p) in [b, bp].into_iter().flatten() {
                    let my = mask(y);
                    let prod: Vec<u64> = ma.iter().zip(&my).map(|(x, y)| x & y).collect();
                    let out = products.plane_mut(p);
                    for ((o, x), s1) in out.iter_mut().zip(&prod).zip(m1.products.plane(p)) {
                        *o = x ^ s1;
                    }
                }
            }
        }
    }
    let lm2 = Planes::expand(p2, op, Stream::LastMasks, 3, n);
    let last = |p: usize| xor(m1.last_masks.plane(p), lm2.plane(p));
    let (alpha, beta, rho_bits) = (last(0), last(1), last(2));
    let mut last_product = Planes::zeros(1, n);
    for (((o, a), b), s1) in last_product
        .plane_mut(0)
        .iter_mut()
        .zip(&alpha)
        .zip(&beta)
        .zip(m1.last_product.plane(0))
    {
        *o = (a & b) ^ s1;
    }
    let one = R::from_u64(1);
    let rho = m1
        .rho
        .iter()
        .enumerate()
        .map(|(i, s1)| {
            let bit = (rho_bits[i / 64] >> (i % 64)) & 1 == 1;
            (if bit { one } else { R::zero() }).wsub(*s1)
        })
        .collect();
    Deal {
        rbits,
        products,
        last_product,
        rho,
    }
}

/// A segment of the tree: shares of "r is greater" (`g`) and "equal" (`e`).
#[derive(Clone, Default)]
struct Seg {
    g: Option<Vec<u64>>,
    e: Option<Vec<u64>>,
}

/// What [`Primary::step`] produced.
pub(crate) enum Step<R> {
    /// Send these bytes to the other primary and call `step` with its answer.
    Send(Vec<u8>),
    /// This primary's shares of the results.
    Done(Vec<R>),
}

/// One primary's side of a batch of comparisons (a state machine).
pub(crate) struct Primary<'p, R: Ring> {
    plan: &'p Plan,
    first: bool,
    mat: Material<R>,
    /// 0: waiting for the masked values; `1 + i`: level `i`; `levels + 1`: the
    /// root AND; `levels + 2`: the conversion.
    stage: usize,
    /// Round 1's message (this primary's masked values), then its last opening.
    sent: Vec<u8>,
    opened: Planes,
    c: Option<Planes>,
    segs: Vec<Seg>,
    top_r: Vec<u64>,
    one: R,
}

impl<'p, R: Ring> Primary<'p, R> {
    /// `first`: this is `S1` (it adds the public constants).
    pub(crate) fn new(plan: &'p Plan, first: bool, mat: Material<R>, one: R) -> Self {
        Primary {
            plan,
            first,
            mat,
            stage: 0,
            sent: Vec::new(),
            opened: Planes::default(),
            c: None,
            segs: Vec::new(),
            top_r: Vec::new(),
            one,
        }
    }

    /// Round 1: `zj + Rj mod 2^w`.
    pub(crate) fn start(&mut self, z: &[R]) -> Vec<u8> {
        let w = self.plan.w as u32;
        let mut out = Vec::with_capacity(z.len() * R::BYTES);
        R::write_le(
            z.iter()
                .zip(&self.mat.mask)
                .map(|(a, b)| a.wadd(*b).low_bits(w)),
            &mut out,
        );
        self.sent = out.clone();
        out
    }

    /// Supplies the rest of the material after [`Primary::start`] (which needs only
    /// the mask shares).
    pub(crate) fn complete(&mut self, mat: Material<R>) {
        self.mat = mat;
    }

    /// Bytes expected from the other primary at the current stage.
    pub(crate) fn expected_len(&self) -> usize {
        let n = self.mat.n;
        let levels = self.plan.levels.len();
        match self.stage {
            0 => n * R::BYTES,
            s if s <= levels => Planes::wire_len(self.plan.openings(s - 1), n),
            s if s == levels + 1 => Planes::wire_len(2, n),
            _ => Planes::wire_len(1, n),
        }
    }

    fn open(&mut self, planes: Planes) -> Step<R> {
        let b = planes.to_bytes();
        self.opened = planes;
        Step::Send(b)
    }

    /// Takes the other primary's message for the current stage.
    pub(crate) fn step(&mut self, theirs: &[u8]) -> Step<R> {
        let n = self.mat.n;
        let levels = self.plan.levels.len();
        let stage = self.stage;
        self.stage += 1;
        if stage == 0 {
            let w = self.plan.w as u32;
            let a = R::read_le(&self.sent);
            let b = R::read_le(theirs);
            let c: Vec<R> = a
                .iter()
                .zip(&b)
                .map(|(x, y)| x.wadd(*y).low_bits(w))
                .collect();
            let cp = to_planes(&c, self.plan.w);
            self.leaves(&cp);
            self.c = Some(cp);
            return self.next_opening();
        }
        let other = Planes::from_bytes(theirs, self.opening_count(stage - 1), n);
        let mut public = std::mem::take(&mut self.opened);
        xor_into(&mut public.data, &other.data);
        if stage <= levels {
            self.join(stage - 1, &public);
            self.next_opening()
        } else if stage == levels + 1 {
            let out = self.root(&public);
            let mut e = Planes::zeros(0, n);
            e.push(&xor(&out, self.mat.last_masks.plane(2)));
            self.open(e)
        } else {
            Step::Done(self.finish(&public))
        }
    }

    fn opening_count(&self, level: usize) -> usize {
        let levels = self.plan.levels.len();
        if level < levels {
            self.plan.openings(level)
        } else if level == levels {
            2
        } else {
            1
        }
    }

    /// The leaves from `c`'s planes: `gᵢ = rᵢ ∧ ¬cᵢ`, `eᵢ = rᵢ ⊕ ¬cᵢ` (`S1` adds `¬cᵢ`).
    fn leaves(&mut self, c: &Planes) {
        let w = self.plan.w;
        let count = match self.plan.kind {
            CmpKind::Negative => w - 1,
            CmpKind::Zero => w,
        };
        let words = c.words;
        self.segs = (0..count)
            .map(|i| {
                let (ci, ri) = (c.plane(i), self.mat.rbits.plane(i));
                let e: Vec<u64> = if self.first {
                    ri.iter().zip(ci).map(|(r, c)| r ^ !c).collect()
                } else {
                    ri.to_vec()
                };
                let g = match self.plan.kind {
                    CmpKind::Negative => Some(ri.iter().zip(ci).map(|(r, c)| r & !c).collect()),
                    CmpKind::Zero => None,
                };
                Seg { g, e: Some(e) }
            })
            .collect();
        debug_assert!(
            self.segs
                .iter()
                .all(|s| s.e.as_ref().map(Vec::len) == Some(words))
        );
        if self.plan.kind == CmpKind::Negative {
            self.top_r = self.mat.rbits.plane(w - 1).to_vec();
        }
    }

    /// The masked shares to open for the next level, or for the last layer.
    fn next_opening(&mut self) -> Step<R> {
        let level = self.stage - 1;
        let n = self.mat.n;
        let mut out = Planes::zeros(0, n);
        if level < self.plan.levels.len() {
            let m = &self.mat.and_masks;
            for node in &self.plan.levels[level] {
                if let Node::Join { h, l, a, b, bp } = *node {
                    out.push(&xor(e_of(&self.segs[h]), m.plane(a)));
                    if let Some((b, _)) = b {
                        out.push(&xor(g_of(&self.segs[l]), m.plane(b)));
                    }
                    if let Some((bp, _)) = bp {
                        out.push(&xor(e_of(&self.segs[l]), m.plane(bp)));
                    }
                }
            }
        } else {
            let (_, x, y) = self.last_inputs();
            let m = &self.mat.last_masks;
            out.push(&xor(&x, m.plane(0)));
            out.push(&xor(&y, m.plane(1)));
        }
        self.open(out)
    }

    /// Shares of `A`, `X`, `Y` of the root `A ⊕ (X ∧ Y)`.
    fn last_inputs(&self) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
        let words = self.mat.n.div_ceil(64);
        let zero = vec![0u64; words];
        match self.plan.kind {
            CmpKind::Negative => {
                let c = match &self.c {
                    Some(c) => c.plane(self.plan.w - 1),
                    None => unreachable!("c is opened first"),
                };
                // A = c_{w-1} ⊕ r_{w-1} ⊕ G_H (S1 adds the public c).
                let mut a = self.top_r.clone();
                if self.first {
                    xor_into(&mut a, c);
                }
                if self.segs.len() == 2 {
                    xor_into(&mut a, g_of(&self.segs[1]));
                    (
                        a,
                        e_of(&self.segs[1]).to_vec(),
                        g_of(&self.segs[0]).to_vec(),
                    )
                } else {
                    xor_into(&mut a, g_of(&self.segs[0]));
                    (a, zero.clone(), zero)
                }
            }
            CmpKind::Zero => (
                zero,
                e_of(&self.segs[1]).to_vec(),
                e_of(&self.segs[0]).to_vec(),
            ),
        }
    }

    /// This primary's share of `x ∧ y` from the opened `d = x ⊕ a`, `f = y ⊕ b` and
    /// its shares of `a`, `b`, `ab`.
    fn and_share(&self, d: &[u64], f: &[u64], a: &[u64], b: &[u64], ab: &[u64]) -> Vec<u64> {
        let first = if self.first { u64::MAX } else { 0 };
        (0..d.len())
            .map(|k| (first & d[k] & f[k]) ^ (d[k] & b[k]) ^ (f[k] & a[k]) ^ ab[k])
            .collect()
    }

    fn join(&mut self, level: usize, public: &Planes) {
        let m = &self.mat.and_masks;
        let pr = &self.mat.products;
        let mut next = Vec::with_capacity(self.plan.levels[level].len());
        let mut o = 0;
        for node in &self.plan.levels[level] {
            match *node {
                Node::Pass(i) => next.push(std::mem::take(&mut self.segs[i])),
                Node::Join { h, a, b, bp, .. } => {
                    let d = public.plane(o);
                    o += 1;
                    let mut seg = Seg::default();
                    if let Some((bi, p)) = b {
                        let f = public.plane(o);
                        o += 1;
                        let mut g = self.and_share(d, f, m.plane(a), m.plane(bi), pr.plane(p));
                        xor_into(&mut g, g_of(&self.segs[h]));
                        seg.g = Some(g);
                    }
                    if let Some((bi, p)) = bp {
                        let f = public.plane(o);
                        o += 1;
                        seg.e = Some(self.and_share(d, f, m.plane(a), m.plane(bi), pr.plane(p)));
                    }
                    next.push(seg);
                }
            }
        }
        self.segs = next;
    }

    /// This primary's boolean share of the root `A ⊕ (X ∧ Y)` from the opened
    /// `X ⊕ α`, `Y ⊕ β`.
    fn root(&self, public: &Planes) -> Vec<u64> {
        let (a, _, _) = self.last_inputs();
        let m = &self.mat.last_masks;
        let mut out = self.and_share(
            public.plane(0),
            public.plane(1),
            m.plane(0),
            m.plane(1),
            self.mat.last_product.plane(0),
        );
        xor_into(&mut out, &a);
        out
    }

    /// The conversion: from the opened `e = out ⊕ ρ`, this primary's arithmetic
    /// share of `out = e + (1 − 2e)·ρ`, times `one`.
    fn finish(&self, public: &Planes) -> Vec<R> {
        let e = public.plane(0);
        let (one, minus_one) = (self.one, self.one.wneg());
        self.mat
            .rho
            .iter()
            .enumerate()
            .map(|(i, rho)| {
                let set = (e[i / 64] >> (i % 64)) & 1 == 1;
                let scaled = rho.wmul(one);
                match (set, self.first) {
                    // e = 1: out = 1 − ρ.
                    (true, true) => one.wsub(scaled),
                    (true, false) => rho.wmul(minus_one),
                    (false, _) => scaled,
                }
            })
            .collect()
    }
}

fn e_of(s: &Seg) -> &[u64] {
    match &s.e {
        Some(e) => e,
        None => unreachable!("the plan only asks for E where it was computed"),
    }
}

fn g_of(s: &Seg) -> &[u64] {
    match &s.g {
        Some(g) => g,
        None => unreachable!("the plan only asks for G where it was computed"),
    }
}

/// Material dealt ahead (`Session::preprocess_comparisons`), used in order.
pub(crate) struct Pool4<R> {
    kind: CmpKind,
    used: usize,
    mat: Material<R>,
}

impl<R: RingData> Party<R> {
    fn pair_prg(&self, peer: crate::transport::Role) -> &LabelPrg {
        match &self.labels[peer.index()] {
            Some(p) => p,
            None => unreachable!("label keys are derived at setup"),
        }
    }

    /// This primary's material for `n` instances under `op` (`S2` receives the deal).
    fn material4(&self, plan: &Plan, n: usize, op: u64) -> Result<Material<R>> {
        let prg = self.pair_prg(Sa);
        let deal = if self.role == S2 {
            let b = self.recv_bytes(Sa, Deal::<R>::wire_len(plan, n))?;
            Some(Deal::from_bytes(&b, plan, n))
        } else {
            None
        };
        Ok(expand(plan, n, prg, op, deal))
    }

    /// Offline: `Sa` deals `n` full-width instances of `kind`; `S1` and `S2` expand
    /// and keep them.
    pub(crate) fn deal_pool4(&self, kind: CmpKind, n: usize) -> Result<()> {
        let op = self.next_op();
        let plan = Plan::new(kind, R::BITS as usize);
        match self.role {
            Sa => {
                let d = deal::<R>(&plan, n, self.pair_prg(S1), self.pair_prg(S2), op);
                self.send_bytes(S2, d.to_bytes())?;
            }
            Sb => {}
            S1 | S2 => {
                let mat = self.material4(&plan, n, op)?;
                self.pools4.borrow_mut().push(Pool4 { kind, used: 0, mat });
            }
        }
        self.pool4_counts.borrow_mut().push((kind, n, 0));
        Ok(())
    }

    /// `n` preprocessed full-width instances of `kind`, if a pool has them.
    fn take_pool4(&self, kind: CmpKind, n: usize) -> Option<Material<R>> {
        let mut pools = self.pools4.borrow_mut();
        let pool = pools
            .iter_mut()
            .find(|p| p.kind == kind && p.mat.len() - p.used >= n)?;
        let m = pool.mat.slice(pool.used, n);
        pool.used += n;
        Some(m)
    }

    /// Whether the servers take `n` instances of `kind` from a pool: every server
    /// (the dealer too) keeps the pools' sizes and use in the same order.
    pub(crate) fn pool4_has(&self, kind: CmpKind, n: usize) -> bool {
        self.pool4_counts
            .borrow()
            .iter()
            .any(|&(k, total, used)| k == kind && total - used >= n)
    }

    fn pool4_use(&self, kind: CmpKind, n: usize) {
        if let Some(p) = self
            .pool4_counts
            .borrow_mut()
            .iter_mut()
            .find(|(k, total, used)| *k == kind && *total - *used >= n)
        {
            p.2 += n;
        }
    }

    /// The four-party comparison on a whole array (see the module docs).
    pub(crate) fn compare4(&self, z: &Data, kind: CmpKind, bit: bool, w: usize) -> Result<Data> {
        let op = self.next_op();
        let shape = z.shape().to_vec();
        let n: usize = shape.iter().product();
        if n == 0 {
            return Ok(match self.role {
                S1 | S2 => R::wrap(from_vec(&shape, Vec::new())),
                Sa | Sb => Data::shape_only(&shape),
            });
        }
        let plan = Plan::new(kind, w);
        let full = w == R::BITS as usize;
        let pooled = full && self.pool4_has(kind, n);
        if pooled {
            self.pool4_use(kind, n);
        }
        let one = if bit {
            R::from_u64(1)
        } else {
            R::from_u64(1).shl(self.cfg.frac_bits())
        };
        match self.role {
            Sa => {
                if !pooled {
                    let d = deal::<R>(&plan, n, self.pair_prg(S1), self.pair_prg(S2), op);
                    self.send_bytes(S2, d.to_bytes())?;
                }
                Ok(Data::shape_only(&shape))
            }
            Sb => Ok(Data::shape_only(&shape)),
            S1 | S2 => {
                let zs: Vec<R> = R::get(z).iter().copied().collect();
                let other = if self.role == S1 { S2 } else { S1 };
                let first = self.role == S1;
                let mut p = if pooled {
                    let Some(mat) = self.take_pool4(kind, n) else {
                        return Err(Error::Protocol {
                            peer: Sa,
                            reason: "preprocessed comparisons ran out".into(),
                        });
                    };
                    Primary::new(&plan, first, mat, one)
                } else {
                    let mask = expand_ring::<R>(self.pair_prg(Sa), op, Stream::MaskArith, n)
                        .into_iter()
                        .map(|x| x.low_bits(w as u32))
                        .collect();
                    let mat = Material {
                        n,
                        mask,
                        ..Material::default()
                    };
                    Primary::new(&plan, first, mat, one)
                };
                // Round 1 goes out before S2 takes the deal, so the deal adds no round.
                self.send_bytes(other, p.start(&zs))?;
                if !pooled {
                    p.complete(self.material4(&plan, n, op)?);
                }
                loop {
                    let theirs = self.recv_bytes(other, p.expected_len())?;
                    match p.step(&theirs) {
                        Step::Send(b) => self.send_bytes(other, b)?,
                        Step::Done(out) => return Ok(R::wrap(from_vec(&shape, out))),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Z64, Z128};

    /// The whole protocol between two in-memory primaries and a dealer.
    fn run<R: Ring>(kind: CmpKind, w: usize, z: &[R]) -> Vec<R> {
        let n = z.len();
        let plan = Plan::new(kind, w);
        let p1 = LabelPrg::new([1; 16]);
        let p2 = LabelPrg::new([2; 16]);
        let op = 9;
        let d = deal::<R>(&plan, n, &p1, &p2, op);
        let d = Deal::from_bytes(&d.to_bytes(), &plan, n);
        let m1 = expand::<R>(&plan, n, &p1, op, None);
        let m2 = expand::<R>(&plan, n, &p2, op, Some(d));
        // Split z into shares.
        let s1: Vec<R> = (0..n)
            .map(|k| R::from_u64(0x9e37_79b9_7f4a_7c15 ^ k as u64))
            .collect();
        let s2: Vec<R> = z.iter().zip(&s1).map(|(a, b)| a.wsub(*b)).collect();
        let one = R::from_u64(1);
        let mut a = Primary::new(&plan, true, m1, one);
        let mut b = Primary::new(&plan, false, m2, one);
        let mut ma = a.start(&s1);
        let mut mb = b.start(&s2);
        let mut rounds = 1;
        loop {
            assert_eq!(ma.len(), b.expected_len());
            assert_eq!(mb.len(), a.expected_len());
            match (a.step(&mb), b.step(&ma)) {
                (Step::Send(x), Step::Send(y)) => {
                    ma = x;
                    mb = y;
                    rounds += 1;
                }
                (Step::Done(x), Step::Done(y)) => {
                    assert_eq!(rounds, plan.rounds());
                    return x.iter().zip(&y).map(|(p, q)| p.wadd(*q)).collect();
                }
                _ => panic!("the primaries disagree on the number of rounds"),
            }
        }
    }

    #[test]
    fn transpose_is_an_involution_and_correct() {
        let vals: Vec<Z128> = (0..200u64)
            .map(|k| Z128::from_limbs(&[k.wrapping_mul(0x9e37_79b9_7f4a_7c15), !k << 3]))
            .collect();
        let p = to_planes(&vals, 128);
        for (k, v) in vals.iter().enumerate() {
            for bit in 0..128 {
                assert_eq!(p.get(bit, k, 1) == 1, v.bit(bit as u32));
            }
        }
        assert_eq!(from_planes::<Z128>(&p, 128), vals);
        let q = Planes::from_bytes(&p.to_bytes(), 128, 200);
        assert_eq!(from_planes::<Z128>(&q, 128), vals);
        let s = p.slice(67, 70);
        assert_eq!(from_planes::<Z128>(&s, 128), vals[67..137].to_vec());
        // Debug shows sizes, never mask or share bits.
        let shown = format!("{p:?} {:?}", Step::<Z128>::Done(vals.clone()));
        assert!(!shown.contains(&vals[1].limb(0).to_string()), "{shown}");
        assert_eq!(shown, "Planes(128 x 200 bits) Done(200 shares)");
    }

    #[test]
    fn less_than_and_equality_are_exact_for_every_width() {
        for w in [2usize, 3, 4, 5, 7, 8, 13, 33, 64] {
            let m = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
            let half = 1u64 << (w - 1);
            let mut z: Vec<u64> = vec![0, 1, m, half, half - 1, half + 1, m - 1];
            z.extend((0..300u64).map(|k| k.wrapping_mul(0xd1b5_4a32_d192_ed03) & m));
            let zr: Vec<Z64> = z.iter().map(|&v| Z64(v)).collect();
            let lt = run(CmpKind::Negative, w, &zr);
            let eq = run(CmpKind::Zero, w, &zr);
            for (k, &v) in z.iter().enumerate() {
                assert_eq!(lt[k], Z64(u64::from(v & half != 0)), "w={w} z={v:#x}");
                assert_eq!(eq[k], Z64(u64::from(v == 0)), "w={w} z={v:#x}");
            }
        }
    }

    #[test]
    fn wide_rings_and_high_garbage_bits() {
        // Z128, narrow width: bits above w are ignored.
        let z: Vec<Z128> = (0..130u128)
            .map(|k| Z128((k * 0x1234_5678_9abc_def1_u128) << 40 | k))
            .collect();
        for w in [65usize, 128] {
            let lt = run(CmpKind::Negative, w, &z);
            for (k, v) in z.iter().enumerate() {
                assert_eq!(lt[k], Z128(u128::from(v.bit(w as u32 - 1))), "w={w}");
            }
        }
    }
}
