//! Paper Protocol 2 (§4.3): comparison by a garbled circuit between the assistants.
//!
//! Input: shares `z1` (on `S1`) and `z2` (on `S2`) of `z = x - y`. Output: shares of
//! the bit `[z < 0]` (less-than) or `[z == 0]` (equality), as fixed-point 0 or 1, so
//! the result mixes with arithmetic (`c * (a - b) + b`).
//!
//! The circuit computes the sign bit of `a + b mod 2^l` for `a = z1`, `b = z2`
//! (l − 1 AND gates), or whether `a == -b` (l − 1 AND gates). Messages, one per link,
//! for a whole array of `n` comparisons:
//!
//! 1. **Round 1.**
//!    - `S1 → Sb`: the active labels of `a`'s bits, `W⁰ ⊕ aᵢ·Δ`. The zero-labels `W⁰`
//!      come from an AES-CTR stream `S1` shares with `Sa`, and `Δ` from a key that
//!      `Sa`, `S1` and `S2` share (not `Sb`). This is the helper-assisted oblivious
//!      transfer: `S1` knows its own share, so it can hand the evaluator exactly one
//!      label per wire; `Sa` never sees `a`. To `Sb` each label is a uniformly random
//!      string (it knows neither `W⁰` nor `Δ`).
//!    - `S2 → Sb`: the same for `b` (or `-b` for equality), from the stream `S2`
//!      shares with `Sa`.
//!    - `Sa → Sb`: the garbled tables (two labels per AND gate). They depend on no
//!      input, only on `Δ`, the zero-labels and fixed-key AES.
//!    - `Sa → S1`, `Sa → S2`: the colour `p` of the output wire's zero-label, one bit
//!      per comparison. A uniformly random bit, independent of the inputs.
//! 2. **Round 2.** `Sb` evaluates and gets the output label's colour `d = c ⊕ p`. As
//!    `p` is hidden from it, `d` is a uniformly random bit to `Sb`. It arithmetic-shares
//!    `d`: `d1` is drawn from the PRG it shares with `S1`, and `Sb → S2: d̃ − d1` (masked
//!    by `d1`, unknown to `S2`). Then `S1` holds `d1`, `S2` holds `d̃ − d1`, and where
//!    `p = 1` they flip the shared bit (`S1: 1̃ − d1`, `S2: −(d̃ − d1)`).
//!
//! So `Sa` receives nothing; `Sb` receives one label per input wire and the tables (a
//! standard evaluator's view, which hides the inputs); `S1` and `S2` receive a random
//! bit and a masked ring element. Unlike the paper, the assistants do not first
//! receive re-randomized shares: the primaries turn their shares into labels
//! themselves. That saves a round (2 instead of 3) and means `Sa` holds no input at all.
//!
//! Correctness needs `|x̃ − ỹ| < 2^(l−1)`, which the configured input bound guarantees
//! for any two in-range values.

use super::{Party, RingData, from_vec};
use crate::data::Data;
use crate::engine::CmpKind;
use crate::error::{Error, Result};
use crate::gc::{Evaluator, Garbler, Gc, Label, LabelPrg, equal_zero, msb_of_sum};
use crate::prg::Purpose;
use crate::transport::Role::{S1, S2, Sa, Sb};
use ndarray::ArrayD;

/// Comparisons garbled ahead of their inputs: `Sa` garbled `total` instances of
/// `kind` under operation number `op`; `Sb` keeps the tables, `S1` and `S2` the
/// output colours. Instances are used in order.
pub(crate) struct Pool {
    kind: CmpKind,
    op: u64,
    total: usize,
    used: usize,
    /// `Sb`: the tables as received (see [`Party::garble`] for the layout).
    tables: Vec<u8>,
    /// `S1`, `S2`: the output colours, one bit per instance.
    colours: Vec<u8>,
}

/// Instances per circuit pass: the wires of one pass stay in the L2 cache.
const GC_CHUNK: usize = 512;

/// Label stream purposes.
const INPUT_LABELS: u8 = 1;
const DELTA: u8 = 2;

/// Appends labels to a message, little-endian.
fn put_labels(out: &mut Vec<u8>, ls: &[Label]) {
    for l in ls {
        out.extend_from_slice(&l.to_le_bytes());
    }
}

/// Labels `from..to` of a message.
fn get_labels(b: &[u8], from: usize, to: usize) -> Vec<Label> {
    let mut out = Vec::with_capacity(to - from);
    extend_labels(&mut out, b, from, to);
    out
}

/// Appends labels `from..to` of a message to `out`.
fn extend_labels(out: &mut Vec<Label>, b: &[u8], from: usize, to: usize) {
    out.extend(b[16 * from..16 * to].chunks_exact(16).map(|c| {
        let mut a = [0u8; 16];
        a.copy_from_slice(c);
        u128::from_le_bytes(a)
    }));
}

fn pack_bits(bits: impl Iterator<Item = bool>, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n.div_ceil(8)];
    for (k, b) in bits.enumerate() {
        out[k / 8] |= (b as u8) << (k % 8);
    }
    out
}

fn unpack_bit(bytes: &[u8], k: usize) -> bool {
    (bytes[k / 8] >> (k % 8)) & 1 == 1
}

impl<R: RingData> Party<R> {
    fn label_prg(&self, peer: crate::transport::Role) -> &crate::gc::LabelPrg {
        match &self.labels[peer.index()] {
            Some(p) => p,
            None => unreachable!("label keys are derived at setup"),
        }
    }

    fn delta(&self, op: u64) -> Label {
        match &self.delta_prg {
            Some(p) => p.labels(op, DELTA, 1)[0] | 1,
            None => unreachable!("only Sa, S1 and S2 garble or send labels"),
        }
    }

    /// Active labels for the bits of `vals` (wire-major: bit `i` of instance `k` at
    /// `i·n + k`), from the zero-labels shared with `Sa`. `(op, first, total)` names
    /// the garbled batch: instances `first..first + n` of `total` garbled under `op`.
    fn active_labels(
        &self,
        (op, first, total): (u64, usize, usize),
        vals: &ArrayD<R>,
        negate: bool,
        n: usize,
        l: usize,
    ) -> Vec<u8> {
        let delta = self.delta(op);
        let prg = self.label_prg(Sa);
        let vals: Vec<R> = if negate {
            vals.iter().map(|v| v.wneg()).collect()
        } else {
            vals.iter().copied().collect()
        };
        let mut out = crate::pool::take(16 * n * l);
        let mut buf = vec![0u128; n.min(GC_CHUNK)];
        // Bit i of instance j of the garbled batch has zero-label number i·total + j.
        for i in 0..l {
            for c0 in (0..n).step_by(GC_CHUNK) {
                let m = (n - c0).min(GC_CHUNK);
                let w = &mut buf[..m];
                prg.fill_at(op, INPUT_LABELS, i * total + first + c0, w);
                for (k, wk) in w.iter_mut().enumerate() {
                    if vals[c0 + k].bit(i as u32) {
                        *wk ^= delta;
                    }
                }
                put_labels(&mut out, w);
            }
        }
        out
    }

    /// The offline phase: `Sa` garbles `n` instances now and sends the tables to `Sb`
    /// and the output colours to `S1` and `S2`. Nothing here depends on any input.
    pub(crate) fn garble_pool(&self, kind: CmpKind, n: usize) -> Result<()> {
        let op = self.next_op();
        let l = R::BITS as usize;
        let mut pool = Pool {
            kind,
            op,
            total: n,
            used: 0,
            tables: Vec::new(),
            colours: Vec::new(),
        };
        match self.role {
            Sa => {
                let (tables, p) = self.garble(op, kind, n, l);
                self.send_bytes(Sb, tables)?;
                self.send_bytes(S1, p.clone())?;
                self.send_bytes(S2, p)?;
            }
            Sb => pool.tables = self.recv_bytes(Sa, n * (l - 1) * 32)?,
            S1 | S2 => pool.colours = self.recv_bytes(Sa, n.div_ceil(8))?,
        }
        self.pools.borrow_mut().push(pool);
        Ok(())
    }

    /// Garbles `n` instances of `l`-bit circuits for operation `op`: the tables
    /// (chunk-major, then gate-major within a chunk of [`GC_CHUNK`] instances) and
    /// the output colours.
    fn garble(&self, op: u64, kind: CmpKind, n: usize, l: usize) -> (Vec<u8>, Vec<u8>) {
        let delta = self.delta(op);
        let (pa, pb) = (self.label_prg(S1), self.label_prg(S2));
        let mut tables = crate::pool::take(32 * n * (l - 1));
        let mut colours = Vec::with_capacity(n);
        for cs in (0..n).step_by(GC_CHUNK) {
            let m = (n - cs).min(GC_CHUNK);
            let wires = |p: &LabelPrg| -> Vec<Vec<Label>> {
                (0..l)
                    .map(|i| p.labels_at(op, INPUT_LABELS, i * n + cs, m))
                    .collect()
            };
            let (wa, wb) = (wires(pa), wires(pb));
            let mut g = Garbler::new(&self.hash, delta, op);
            g.first = cs;
            let out0 = circuit(&mut g, kind, &wa, &wb);
            put_labels(&mut tables, &g.tables);
            colours.extend(out0.iter().map(|w| w & 1 == 1));
        }
        (tables, pack_bits(colours.into_iter(), n))
    }

    /// Evaluates instances `first..first + n` of a batch of `total` garbled under `op`,
    /// given the batch's tables and the active labels of the range (wire-major).
    /// Returns the output colours.
    fn evaluate(
        &self,
        (op, first, total): (u64, usize, usize),
        (kind, l): (CmpKind, usize),
        tables: &[u8],
        la: &[u8],
        lb: &[u8],
        n: usize,
    ) -> Result<Vec<bool>> {
        if tables.len() != 32 * (l - 1) * total {
            return Err(Error::Protocol {
                peer: Sa,
                reason: "garbled tables of the wrong size".into(),
            });
        }
        let mut out = Vec::with_capacity(n);
        let mut c = first / GC_CHUNK * GC_CHUNK;
        while c < first + n {
            let mc = (total - c).min(GC_CHUNK);
            let (s0, s1) = (first.max(c), (first + n).min(c + mc));
            let base = 2 * (l - 1) * c;
            let mut seg: Vec<Label> = Vec::with_capacity(2 * (l - 1) * (s1 - s0));
            for g in 0..l - 1 {
                extend_labels(
                    &mut seg,
                    tables,
                    base + 2 * (g * mc + s0 - c),
                    base + 2 * (g * mc + s1 - c),
                );
            }
            let wire = |w: &[u8], i: usize| get_labels(w, i * n + s0 - first, i * n + s1 - first);
            let wa: Vec<Vec<Label>> = (0..l).map(|i| wire(la, i)).collect();
            let wb: Vec<Vec<Label>> = (0..l).map(|i| wire(lb, i)).collect();
            let mut e = Evaluator::new(&self.hash, op, &seg);
            e.first = s0;
            let o = circuit(&mut e, kind, &wa, &wb);
            out.extend(o.iter().map(|w| w & 1 == 1));
            c += GC_CHUNK;
        }
        Ok(out)
    }

    /// Whether a garbled pool has `n` unused instances of `kind`.
    pub(crate) fn gc_pool_has(&self, kind: CmpKind, n: usize) -> bool {
        self.pools
            .borrow()
            .iter()
            .any(|p| p.kind == kind && p.total - p.used >= n)
    }

    /// Takes `n` preprocessed instances of `kind`, if a pool has them:
    /// `(pool index, pool op, first instance, pool size, colours of the range)`.
    fn take_pool(&self, kind: CmpKind, n: usize) -> Option<(usize, u64, usize, usize, Vec<u8>)> {
        let mut pools = self.pools.borrow_mut();
        let (idx, pool) = pools
            .iter_mut()
            .enumerate()
            .find(|(_, p)| p.kind == kind && p.total - p.used >= n)?;
        let first = pool.used;
        pool.used += n;
        let colours = if pool.colours.is_empty() {
            Vec::new()
        } else {
            pack_bits((first..first + n).map(|k| unpack_bit(&pool.colours, k)), n)
        };
        Some((idx, pool.op, first, pool.total, colours))
    }

    /// Protocol 2 on a whole array: shares of `[z < 0]` or `[z == 0]`, with circuits
    /// on the low `l` bits of the shares (`l = R::BITS` in general; fewer when the
    /// caller guarantees `|z̃| < 2^(l−1)`: bit `l − 1` of `(a + b) mod 2^l` is then the
    /// sign). Uses preprocessed (full-width) instances when a pool has enough (then
    /// `Sa` is idle and the online messages are the labels and the masked result),
    /// and garbles online otherwise.
    pub(crate) fn compare_zero(
        &self,
        z: &Data,
        kind: CmpKind,
        bit: bool,
        l: usize,
    ) -> Result<Data> {
        let op = self.next_op();
        let shape = z.shape().to_vec();
        let n: usize = shape.iter().product();
        let full = l == R::BITS as usize;
        let taken = if full { self.take_pool(kind, n) } else { None };
        let (batch, pool, pre_colours) = match taken {
            Some((idx, pop, first, total, c)) => ((pop, first, total), Some(idx), Some(c)),
            None => ((op, 0, n), None, None),
        };
        let one = if bit {
            R::from_u64(1)
        } else {
            R::from_u64(1).shl(self.cfg.frac_bits())
        };
        match self.role {
            S1 | S2 => {
                let zs = R::get(z);
                let negate = self.role == S2 && kind == CmpKind::Zero;
                self.send_bytes(Sb, self.active_labels(batch, zs, negate, n, l))?;
                let p = match pre_colours {
                    Some(c) => c,
                    None => self.recv_bytes(Sa, n.div_ceil(8))?,
                };
                let d = if self.role == S1 {
                    self.draw(Sb, op, Purpose::Reshare, &shape)
                } else {
                    self.recv(Sb, &shape)?
                };
                let out: Vec<R> = d
                    .iter()
                    .enumerate()
                    .map(|(k, &dk)| match (unpack_bit(&p, k), self.role == S1) {
                        (false, _) => dk,
                        (true, true) => one.wsub(dk),
                        (true, false) => dk.wneg(),
                    })
                    .collect();
                Ok(R::wrap(from_vec(&shape, out)))
            }
            Sa => {
                if pool.is_none() {
                    let (tables, p) = self.garble(op, kind, n, l);
                    self.send_bytes(Sb, tables)?;
                    self.send_bytes(S1, p.clone())?;
                    self.send_bytes(S2, p)?;
                }
                Ok(Data::shape_only(&shape))
            }
            Sb => {
                let la = self.recv_bytes(S1, n * l * 16)?;
                let lb = self.recv_bytes(S2, n * l * 16)?;
                let out = match pool {
                    Some(idx) => {
                        let pools = self.pools.borrow();
                        self.evaluate(batch, (kind, l), &pools[idx].tables, &la, &lb, n)?
                    }
                    None => {
                        let tables = self.recv_bytes(Sa, n * (l - 1) * 32)?;
                        let out = self.evaluate(batch, (kind, l), &tables, &la, &lb, n)?;
                        crate::pool::give(tables);
                        out
                    }
                };
                crate::pool::give(la);
                crate::pool::give(lb);
                let d1 = self.draw(S1, op, Purpose::Reshare, &shape);
                let masked: ArrayD<R> = from_vec(
                    &shape,
                    out.iter()
                        .zip(d1.iter())
                        .map(|(&d, &r)| if d { one.wsub(r) } else { r.wneg() })
                        .collect(),
                );
                self.send(S2, &masked)?;
                Ok(Data::shape_only(&shape))
            }
        }
    }
}

fn circuit<G: Gc>(g: &mut G, kind: CmpKind, a: &[G::Wire], b: &[G::Wire]) -> G::Wire {
    match kind {
        CmpKind::Negative => msb_of_sum(g, a, b),
        CmpKind::Zero => equal_zero(g, a, b),
    }
}
