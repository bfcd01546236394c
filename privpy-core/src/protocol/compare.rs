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
use crate::gc::{Evaluator, Garbler, Gc, Label, equal_zero, msb_of_sum};
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
    /// `Sb`: the tables, gate-major (`2·(gate·total + instance)`).
    tables: Vec<Label>,
    /// `S1`, `S2`: the output colours, one bit per instance.
    colours: Vec<u8>,
}

/// Label stream purposes.
const INPUT_LABELS: u8 = 1;
const DELTA: u8 = 2;

fn labels_to_bytes(ls: &[Label]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ls.len() * 16);
    for l in ls {
        out.extend_from_slice(&l.to_le_bytes());
    }
    out
}

fn bytes_to_labels(b: &[u8]) -> Vec<Label> {
    b.chunks_exact(16)
        .map(|c| {
            let mut a = [0u8; 16];
            a.copy_from_slice(c);
            u128::from_le_bytes(a)
        })
        .collect()
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

/// Splits `n` values into `l` bit-wires (LSB first) of batch size `n`.
fn wires_from_labels(flat: Vec<Label>, l: usize, n: usize) -> Vec<Vec<Label>> {
    let mut it = flat.into_iter();
    (0..l).map(|_| it.by_ref().take(n).collect()).collect()
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
        vals: impl Iterator<Item = R>,
        n: usize,
    ) -> Vec<Label> {
        let l = R::BITS as usize;
        let delta = self.delta(op);
        let prg = self.label_prg(Sa);
        // Bit i of instance j of the garbled batch has zero-label number i·total + j.
        let mut w = if first == 0 && total == n {
            prg.labels(op, INPUT_LABELS, n * l)
        } else {
            (0..l)
                .flat_map(|i| prg.labels_at(op, INPUT_LABELS, i * total + first, n))
                .collect()
        };
        let vals: Vec<R> = vals.collect();
        for i in 0..l {
            for (k, v) in vals.iter().enumerate() {
                if v.bit(i as u32) {
                    w[i * n + k] ^= delta;
                }
            }
        }
        w
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
                let (tables, p) = self.garble(op, kind, n);
                self.send_bytes(Sb, labels_to_bytes(&tables))?;
                self.send_bytes(S1, p.clone())?;
                self.send_bytes(S2, p)?;
            }
            Sb => pool.tables = bytes_to_labels(&self.recv_bytes(Sa, n * (l - 1) * 32)?),
            S1 | S2 => pool.colours = self.recv_bytes(Sa, n.div_ceil(8))?,
        }
        self.pools.borrow_mut().push(pool);
        Ok(())
    }

    /// Garbles `n` instances for operation `op`: the tables and the output colours.
    fn garble(&self, op: u64, kind: CmpKind, n: usize) -> (Vec<Label>, Vec<u8>) {
        let l = R::BITS as usize;
        let delta = self.delta(op);
        let wa = self.label_prg(S1).labels(op, INPUT_LABELS, n * l);
        let wb = self.label_prg(S2).labels(op, INPUT_LABELS, n * l);
        let (wa, wb) = (wires_from_labels(wa, l, n), wires_from_labels(wb, l, n));
        let mut g = Garbler::new(&self.hash, delta, op);
        let out0 = circuit(&mut g, kind, &wa, &wb);
        (g.tables, pack_bits(out0.iter().map(|w| w & 1 == 1), n))
    }

    /// Takes `n` preprocessed instances of `kind`, if a pool has them:
    /// `(pool op, first instance, pool size, tables or colours)`.
    fn take_pool(&self, kind: CmpKind, n: usize) -> Option<(u64, usize, usize, Vec<Label>, Vec<u8>)> {
        let mut pools = self.pools.borrow_mut();
        let pool = pools.iter_mut().find(|p| p.kind == kind && p.total - p.used >= n)?;
        let first = pool.used;
        pool.used += n;
        let l = R::BITS as usize;
        let tables = if pool.tables.is_empty() {
            Vec::new()
        } else {
            (0..l - 1)
                .flat_map(|g| pool.tables[2 * (g * pool.total + first)..2 * (g * pool.total + first + n)].iter().copied())
                .collect()
        };
        let colours = if pool.colours.is_empty() {
            Vec::new()
        } else {
            pack_bits((first..first + n).map(|k| unpack_bit(&pool.colours, k)), n)
        };
        Some((pool.op, first, pool.total, tables, colours))
    }

    /// Protocol 2 on a whole array: shares of `[z < 0]` or `[z == 0]`. Uses
    /// preprocessed instances when a pool has enough (then `Sa` is idle and the
    /// online messages are the labels and the masked result), and garbles online
    /// otherwise.
    pub(crate) fn compare_zero(&self, z: &Data, kind: CmpKind, bit: bool) -> Result<Data> {
        let op = self.next_op();
        let shape = z.shape().to_vec();
        let n: usize = shape.iter().product();
        let l = R::BITS as usize;
        let (batch, pre_tables, pre_colours) = match self.take_pool(kind, n) {
            Some((pop, first, total, t, c)) => ((pop, first, total), Some(t), Some(c)),
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
                let labels = if self.role == S2 && kind == CmpKind::Zero {
                    self.active_labels(batch, zs.iter().map(|v| v.wneg()), n)
                } else {
                    self.active_labels(batch, zs.iter().copied(), n)
                };
                self.send_bytes(Sb, labels_to_bytes(&labels))?;
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
                if pre_tables.is_none() {
                    let (tables, p) = self.garble(op, kind, n);
                    self.send_bytes(Sb, labels_to_bytes(&tables))?;
                    self.send_bytes(S1, p.clone())?;
                    self.send_bytes(S2, p)?;
                }
                Ok(Data::shape_only(&shape))
            }
            Sb => {
                let la = bytes_to_labels(&self.recv_bytes(S1, n * l * 16)?);
                let lb = bytes_to_labels(&self.recv_bytes(S2, n * l * 16)?);
                let tables = match pre_tables {
                    Some(t) => t,
                    None => bytes_to_labels(&self.recv_bytes(Sa, n * (l - 1) * 32)?),
                };
                let (la, lb) = (wires_from_labels(la, l, n), wires_from_labels(lb, l, n));
                let mut e = Evaluator::new(&self.hash, batch.0, &tables);
                e.first = batch.1;
                let out = circuit(&mut e, kind, &la, &lb);
                if e.pos != tables.len() {
                    return Err(Error::Protocol {
                        peer: Sa,
                        reason: "garbled tables of the wrong size".into(),
                    });
                }
                let d1 = self.draw(S1, op, Purpose::Reshare, &shape);
                let masked: ArrayD<R> = from_vec(
                    &shape,
                    out.iter()
                        .zip(d1.iter())
                        .map(|(w, &r)| if w & 1 == 1 { one.wsub(r) } else { r.wneg() })
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
