//! The gadget trait and its backends.

use super::{FixedKeyAes, Label, double};

/// Builds circuits from XOR, NOT and AND on batched wires.
pub(crate) trait Gc {
    /// One wire of the circuit, for every instance of the batch.
    type Wire: Clone;
    fn xor(&mut self, a: &Self::Wire, b: &Self::Wire) -> Self::Wire;
    fn not(&mut self, a: &Self::Wire) -> Self::Wire;
    fn and(&mut self, a: &Self::Wire, b: &Self::Wire) -> Self::Wire;
}

/// The plaintext oracle: wires are bits.
#[cfg(test)]
pub(crate) struct Plain;

#[cfg(test)]
impl Gc for Plain {
    type Wire = Vec<bool>;
    fn xor(&mut self, a: &Vec<bool>, b: &Vec<bool>) -> Vec<bool> {
        a.iter().zip(b).map(|(x, y)| x ^ y).collect()
    }
    fn not(&mut self, a: &Vec<bool>) -> Vec<bool> {
        a.iter().map(|x| !x).collect()
    }
    fn and(&mut self, a: &Vec<bool>, b: &Vec<bool>) -> Vec<bool> {
        a.iter().zip(b).map(|(x, y)| x & y).collect()
    }
}

/// Counts AND gates (XOR and NOT are free).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Counter {
    pub(crate) and_gates: usize,
}

#[cfg(test)]
impl Gc for Counter {
    type Wire = ();
    fn xor(&mut self, _: &(), _: &()) {}
    fn not(&mut self, _: &()) {}
    fn and(&mut self, _: &(), _: &()) {
        self.and_gates += 1;
    }
}

/// Tweak of half `h` of AND gate `gate` for instance `k` of operation `op`:
/// unique across the session, as the hash's security requires.
#[inline]
fn tweak(op: u64, gate: u32, k: usize, h: u32) -> u128 {
    ((op as u128) << 64) | ((gate as u128) << 32) | ((k as u128) << 1) | h as u128
}

/// Instances hashed per AES call: 4 blocks each for the garbler, 2 for the evaluator.
const CHUNK: usize = 64;

/// The garbler: wires are zero-labels; `delta` is the free-XOR offset (odd, so a
/// label's colour bit flips with its value). Tables go to `tables`, two per AND gate,
/// gate-major (`2·(gate·n + instance)`).
pub(crate) struct Garbler<'a> {
    pub(crate) hash: &'a FixedKeyAes,
    pub(crate) delta: Label,
    pub(crate) op: u64,
    /// Index of the first instance within the garbled batch (for the tweaks).
    pub(crate) first: usize,
    pub(crate) gate: u32,
    pub(crate) tables: Vec<Label>,
    /// Hash scratch, reused by every gate (never zeroed per gate).
    scratch: Vec<Label>,
}

impl<'a> Garbler<'a> {
    pub(crate) fn new(hash: &'a FixedKeyAes, delta: Label, op: u64) -> Self {
        Garbler {
            hash,
            delta: delta | 1,
            op,
            first: 0,
            gate: 0,
            tables: Vec::new(),
            scratch: Vec::new(),
        }
    }
}

impl Gc for Garbler<'_> {
    type Wire = Vec<Label>;
    fn xor(&mut self, a: &Vec<Label>, b: &Vec<Label>) -> Vec<Label> {
        a.iter().zip(b).map(|(x, y)| x ^ y).collect()
    }
    /// NOT is free: the zero-label of `!a` is the one-label of `a`.
    fn not(&mut self, a: &Vec<Label>) -> Vec<Label> {
        a.iter().map(|x| x ^ self.delta).collect()
    }
    /// Half-gates (Zahur, Rosulek, Evans 2015): a generator half and an evaluator half,
    /// four hashes per gate, batched [`CHUNK`] instances per AES call.
    fn and(&mut self, a: &Vec<Label>, b: &Vec<Label>) -> Vec<Label> {
        let (op, gate, d, first) = (self.op, self.gate, self.delta, self.first);
        self.gate += 1;
        let n = a.len();
        let mut out = Vec::with_capacity(n);
        self.tables.reserve(2 * n);
        let mut h = std::mem::take(&mut self.scratch);
        if h.len() < 4 * n.min(CHUNK) {
            h.resize(4 * n.min(CHUNK), 0);
        }
        let dd = double(d);
        for c0 in (0..n).step_by(CHUNK) {
            let m = (n - c0).min(CHUNK);
            let hs = &mut h[..4 * m];
            for k in 0..m {
                // H(W, t) keys: 2W ⊕ t, and 2(W ⊕ Δ) = 2W ⊕ 2Δ.
                let t0 = tweak(op, gate, first + c0 + k, 0);
                let (da, db) = (double(a[c0 + k]) ^ t0, double(b[c0 + k]) ^ t0 ^ 1);
                hs[4 * k] = da;
                hs[4 * k + 1] = da ^ dd;
                hs[4 * k + 2] = db;
                hs[4 * k + 3] = db ^ dd;
            }
            self.hash.mmo_in_place(hs);
            for k in 0..m {
                let (ha0, ha1, hb0, hb1) = (hs[4 * k], hs[4 * k + 1], hs[4 * k + 2], hs[4 * k + 3]);
                let (ak, bk) = (a[c0 + k], b[c0 + k]);
                let pa = (ak & 1).wrapping_neg();
                let pb = (bk & 1).wrapping_neg();
                let tg = ha0 ^ ha1 ^ (pb & d);
                let wg = ha0 ^ (pa & tg);
                let te = hb0 ^ hb1 ^ ak;
                let we = hb0 ^ (pb & (te ^ ak));
                self.tables.push(tg);
                self.tables.push(te);
                out.push(wg ^ we);
            }
        }
        self.scratch = h;
        out
    }
}

/// The evaluator: wires are the active labels; tables are consumed in garbling order.
pub(crate) struct Evaluator<'a> {
    pub(crate) hash: &'a FixedKeyAes,
    pub(crate) op: u64,
    /// Index of the first instance within the garbled batch (for the tweaks).
    pub(crate) first: usize,
    pub(crate) gate: u32,
    pub(crate) tables: &'a [Label],
    pub(crate) pos: usize,
    /// Hash scratch, reused by every gate (never zeroed per gate).
    scratch: Vec<Label>,
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(hash: &'a FixedKeyAes, op: u64, tables: &'a [Label]) -> Self {
        Evaluator {
            hash,
            op,
            first: 0,
            gate: 0,
            tables,
            pos: 0,
            scratch: Vec::new(),
        }
    }
}

impl Gc for Evaluator<'_> {
    type Wire = Vec<Label>;
    fn xor(&mut self, a: &Vec<Label>, b: &Vec<Label>) -> Vec<Label> {
        a.iter().zip(b).map(|(x, y)| x ^ y).collect()
    }
    fn not(&mut self, a: &Vec<Label>) -> Vec<Label> {
        a.clone()
    }
    fn and(&mut self, a: &Vec<Label>, b: &Vec<Label>) -> Vec<Label> {
        let (op, gate, first) = (self.op, self.gate, self.first);
        self.gate += 1;
        let n = a.len();
        let t = &self.tables[self.pos..self.pos + 2 * n];
        self.pos += 2 * n;
        let mut out = Vec::with_capacity(n);
        let mut h = std::mem::take(&mut self.scratch);
        if h.len() < 2 * n.min(CHUNK) {
            h.resize(2 * n.min(CHUNK), 0);
        }
        for c0 in (0..n).step_by(CHUNK) {
            let m = (n - c0).min(CHUNK);
            let hs = &mut h[..2 * m];
            for k in 0..m {
                let t0 = tweak(op, gate, first + c0 + k, 0);
                hs[2 * k] = double(a[c0 + k]) ^ t0;
                hs[2 * k + 1] = double(b[c0 + k]) ^ t0 ^ 1;
            }
            self.hash.mmo_in_place(hs);
            for k in 0..m {
                let i = c0 + k;
                let sa = (a[i] & 1).wrapping_neg();
                let sb = (b[i] & 1).wrapping_neg();
                let wg = hs[2 * k] ^ (sa & t[2 * i]);
                let we = hs[2 * k + 1] ^ (sb & (t[2 * i + 1] ^ a[i]));
                out.push(wg ^ we);
            }
        }
        self.scratch = h;
        out
    }
}
