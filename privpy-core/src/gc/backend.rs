//! The gadget trait and its backends.

use super::{FixedKeyAes, Label};

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

/// The garbler: wires are zero-labels; `delta` is the free-XOR offset (odd, so a
/// label's colour bit flips with its value). Tables go to `tables`, two per AND gate.
pub(crate) struct Garbler<'a> {
    pub(crate) hash: &'a FixedKeyAes,
    pub(crate) delta: Label,
    pub(crate) op: u64,
    pub(crate) gate: u32,
    pub(crate) tables: Vec<Label>,
    buf: [Vec<Label>; 4],
}

impl<'a> Garbler<'a> {
    pub(crate) fn new(hash: &'a FixedKeyAes, delta: Label, op: u64) -> Self {
        Garbler {
            hash,
            delta: delta | 1,
            op,
            gate: 0,
            tables: Vec::new(),
            buf: Default::default(),
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
    /// Half-gates (Zahur, Rosulek, Evans 2015): a generator half and an evaluator half.
    fn and(&mut self, a: &Vec<Label>, b: &Vec<Label>) -> Vec<Label> {
        let (op, gate, d) = (self.op, self.gate, self.delta);
        self.gate += 1;
        let a1: Vec<Label> = a.iter().map(|x| x ^ d).collect();
        let b1: Vec<Label> = b.iter().map(|x| x ^ d).collect();
        let [ha0, ha1, hb0, hb1] = &mut self.buf;
        self.hash.hash_many(a, |k| tweak(op, gate, k, 0), ha0);
        self.hash.hash_many(&a1, |k| tweak(op, gate, k, 0), ha1);
        self.hash.hash_many(b, |k| tweak(op, gate, k, 1), hb0);
        self.hash.hash_many(&b1, |k| tweak(op, gate, k, 1), hb1);
        let mut out = Vec::with_capacity(a.len());
        self.tables.reserve(2 * a.len());
        for k in 0..a.len() {
            let pa = a[k] & 1;
            let pb = b[k] & 1;
            let tg = ha0[k] ^ ha1[k] ^ (pb.wrapping_neg() & d);
            let wg = ha0[k] ^ (pa.wrapping_neg() & tg);
            let te = hb0[k] ^ hb1[k] ^ a[k];
            let we = hb0[k] ^ (pb.wrapping_neg() & (te ^ a[k]));
            self.tables.push(tg);
            self.tables.push(te);
            out.push(wg ^ we);
        }
        out
    }
}

/// The evaluator: wires are the active labels; tables are consumed in garbling order.
pub(crate) struct Evaluator<'a> {
    pub(crate) hash: &'a FixedKeyAes,
    pub(crate) op: u64,
    /// Index of the first instance within the garbled batch (preprocessed pools).
    pub(crate) first: usize,
    pub(crate) gate: u32,
    pub(crate) tables: &'a [Label],
    pub(crate) pos: usize,
    buf: [Vec<Label>; 2],
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
            buf: Default::default(),
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
        let [ha, hb] = &mut self.buf;
        self.hash.hash_many(a, |k| tweak(op, gate, first + k, 0), ha);
        self.hash.hash_many(b, |k| tweak(op, gate, first + k, 1), hb);
        let t = &self.tables[self.pos..self.pos + 2 * a.len()];
        self.pos += 2 * a.len();
        (0..a.len())
            .map(|k| {
                let sa = a[k] & 1;
                let sb = b[k] & 1;
                let wg = ha[k] ^ (sa.wrapping_neg() & t[2 * k]);
                let we = hb[k] ^ (sb.wrapping_neg() & (t[2 * k + 1] ^ a[k]));
                wg ^ we
            })
            .collect()
    }
}
