//! Algorithms built on comparison and multiplication, on whole arrays: tree
//! reductions (max/min/argmax/argmin), a sorting network (sort/argsort) and
//! pooling. Every layer of a network is one batched comparison and one batched
//! multiplication, whatever the number of elements.

use crate::broadcast::broadcast_shape;
use crate::data::Data;
use crate::engine::{BinOp, CmpKind, Engine};
use crate::error::Result;
use ndarray::{ArrayD, IxDyn};
use std::rc::Rc;

/// Data-level arithmetic for the algorithms below.
pub(crate) struct Ops<'a> {
    pub(crate) eng: &'a Rc<dyn Engine>,
}

impl Ops<'_> {
    pub(crate) fn bin(&self, op: BinOp, a: &Data, b: &Data) -> Result<Data> {
        let out = broadcast_shape(a.shape(), b.shape())?;
        self.eng.binary(op, a, b, &out)
    }

    pub(crate) fn one_minus(&self, a: &Data) -> Result<Data> {
        let one = ArrayD::from_elem(IxDyn(&[]), 1.0);
        self.eng
            .binary_public(BinOp::Sub, a, &one.view(), true, a.shape())
    }

    /// `a op c` (or `c op a` when `public_left`) for a public scalar `c`.
    pub(crate) fn scalar(&self, op: BinOp, a: &Data, c: f64, public_left: bool) -> Result<Data> {
        let c = ArrayD::from_elem(IxDyn(&[]), c);
        self.eng
            .binary_public(op, a, &c.view(), public_left, a.shape())
    }

    /// Clamps to `[lo, hi]`: `x + [x < lo]·(lo − x)`, then the same against `hi`.
    pub(crate) fn clip(&self, x: &Data, lo: f64, hi: f64) -> Result<Data> {
        let below = self.scalar(BinOp::Sub, x, lo, false)?;
        let c = self.negative_bit(&below)?;
        let up = self.scalar(BinOp::Sub, x, lo, true)?;
        let x1 = self.bin(BinOp::Add, x, &self.select(&c, &up)?)?;
        let above = self.scalar(BinOp::Sub, &x1, hi, true)?;
        let c2 = self.negative_bit(&above)?;
        let down = self.scalar(BinOp::Sub, &x1, hi, true)?;
        self.bin(BinOp::Add, &x1, &self.select(&c2, &down)?)
    }

    fn constant(&self, a: ArrayD<f64>) -> Result<Data> {
        self.eng.constant(&a.view())
    }

    /// The bit `[z < 0]`, integer-encoded for exact selection with [`Ops::select`].
    pub(crate) fn negative_bit(&self, z: &Data) -> Result<Data> {
        self.eng.compare(z, CmpKind::Negative, true)
    }

    /// [`Ops::negative_bit`] for `|z̃| < 2^(bits-1)` (ring units), with a circuit on
    /// the low `bits` bits only.
    pub(crate) fn negative_bit_within(&self, z: &Data, bits: u32) -> Result<Data> {
        self.eng.compare_within(z, CmpKind::Negative, true, bits)
    }

    /// `c · d` for a bit `c`: exact, no truncation.
    pub(crate) fn select(&self, c: &Data, d: &Data) -> Result<Data> {
        self.bin(BinOp::MulInt, c, d)
    }

    /// `[a > b]` (as a bit) for same-shaped `a`, `b`, and `b - a`.
    fn greater(&self, a: &Data, b: &Data) -> Result<(Data, Data)> {
        let diff = self.bin(BinOp::Sub, b, a)?;
        Ok((self.negative_bit(&diff)?, diff))
    }

    /// `c * diff` for the value difference and, when present, the index difference,
    /// in one exact multiplication.
    fn times(&self, c: &Data, diff: &Data, idiff: Option<&Data>) -> Result<(Data, Option<Data>)> {
        match idiff {
            None => Ok((self.select(c, diff)?, None)),
            Some(i) => {
                let both = self.select(c, &Data::stack(&[diff, i]))?;
                Ok((both.index0(0), Some(both.index0(1))))
            }
        }
    }

    /// When indices are tracked: the indices at positions `a` and `b` (shaped `sh`)
    /// and their difference `b − a`, for a select that moves them with the values.
    fn index_pair(
        &self,
        idx: Option<&Data>,
        a: &[usize],
        b: &[usize],
        sh: &[usize],
    ) -> Result<Option<(Data, Data, Data)>> {
        let Some(i) = idx else { return Ok(None) };
        let (ia, ib) = (i.gather(a, sh), i.gather(b, sh));
        let d = self.bin(BinOp::Sub, &ib, &ia)?;
        Ok(Some((ia, ib, d)))
    }

    /// Column indices `0..n` of a `(rows, n)` array, as a secret.
    fn column_indices(&self, rows: usize, n: usize) -> Result<Data> {
        self.constant(ArrayD::from_shape_fn(IxDyn(&[rows, n]), |i| i[1] as f64))
    }

    /// Reduces a `(rows, n)` array along its last axis by a tree of comparisons:
    /// adjacent pairs each layer, so ties go to the lower index (NumPy's first
    /// occurrence). `⌈log2 n⌉` layers. Returns the `(rows,)` values and, if asked,
    /// their indices.
    pub(crate) fn reduce(
        &self,
        x: &Data,
        want_max: bool,
        with_index: bool,
    ) -> Result<(Data, Option<Data>)> {
        let (rows, n) = (x.shape()[0], x.shape()[1]);
        let mut vals = x.clone();
        let mut idx = if with_index {
            Some(self.column_indices(rows, n)?)
        } else {
            None
        };
        let mut m = n;
        while m > 1 {
            let pairs = m / 2;
            let odd = m % 2 == 1;
            let left: Vec<usize> = (0..rows)
                .flat_map(|r| (0..pairs).map(move |j| r * m + 2 * j))
                .collect();
            let right: Vec<usize> = left.iter().map(|i| i + 1).collect();
            let sh = [rows, pairs];
            let (l, r) = (vals.gather(&left, &sh), vals.gather(&right, &sh));
            // Take the right element only when it wins strictly, so ties keep the lower
            // index: c = [l < r] for max, [r < l] for min; result l + c·(r − l).
            let diff = self.bin(BinOp::Sub, &r, &l)?;
            let z = if want_max {
                self.bin(BinOp::Sub, &l, &r)?
            } else {
                diff.clone()
            };
            let c = self.negative_bit(&z)?;
            let tracked = self.index_pair(idx.as_ref(), &left, &right, &sh)?;
            let (prod, iprod) = self.times(&c, &diff, tracked.as_ref().map(|t| &t.2))?;
            let sel = self.bin(BinOp::Add, &l, &prod)?;
            let isel = match (tracked, iprod) {
                (Some((il, _, _)), Some(p)) => Some(self.bin(BinOp::Add, &il, &p)?),
                _ => None,
            };
            let next = pairs + usize::from(odd);
            let regroup = |chosen: &Data, all: &Data| -> Data {
                if !odd {
                    return chosen.clone();
                }
                let carry: Vec<usize> = (0..rows).map(|r| r * m + m - 1).collect();
                let c = all.gather(&carry, &[rows]);
                let joined = Data::concat_flat(&[chosen, &c]);
                let order: Vec<usize> = (0..rows)
                    .flat_map(|r| {
                        (0..next).map(move |j| {
                            if j < pairs {
                                r * pairs + j
                            } else {
                                rows * pairs + r
                            }
                        })
                    })
                    .collect();
                joined.gather(&order, &[rows, next])
            };
            let new_vals = regroup(&sel, &vals);
            idx = match (isel, &idx) {
                (Some(s), Some(all)) => Some(regroup(&s, all)),
                _ => None,
            };
            vals = new_vals;
            m = next;
        }
        let flat: Vec<usize> = (0..rows).collect();
        Ok((
            vals.gather(&flat, &[rows]),
            idx.map(|i| i.gather(&flat, &[rows])),
        ))
    }

    /// Sorts each row of a `(rows, n)` array ascending with a sorting network; with
    /// `with_index`, returns the permutation too (argsort). Not stable on ties.
    pub(crate) fn sort(&self, x: &Data, with_index: bool) -> Result<(Data, Option<Data>)> {
        let (rows, n) = (x.shape()[0], x.shape()[1]);
        let mut vals = x.clone();
        let mut idx = if with_index {
            Some(self.column_indices(rows, n)?)
        } else {
            None
        };
        for layer in sorting_network(n) {
            let t = layer.len();
            let ps: Vec<usize> = (0..rows)
                .flat_map(|r| layer.iter().map(move |&(p, _)| r * n + p))
                .collect();
            let qs: Vec<usize> = (0..rows)
                .flat_map(|r| layer.iter().map(move |&(_, q)| r * n + q))
                .collect();
            let sh = [rows, t];
            let (a, b) = (vals.gather(&ps, &sh), vals.gather(&qs, &sh));
            let (c, diff) = self.greater(&a, &b)?;
            let tracked = self.index_pair(idx.as_ref(), &ps, &qs, &sh)?;
            // min = a + c·(b − a) goes to p, max = b − c·(b − a) to q.
            let (prod, iprod) = self.times(&c, &diff, tracked.as_ref().map(|t| &t.2))?;
            let lo = self.bin(BinOp::Add, &a, &prod)?;
            let hi = self.bin(BinOp::Sub, &b, &prod)?;
            let mut place: Vec<usize> = (0..rows * n).collect();
            let base = rows * n;
            for r in 0..rows {
                for (k, &(p, q)) in layer.iter().enumerate() {
                    place[r * n + p] = base + r * t + k;
                    place[r * n + q] = base + rows * t + r * t + k;
                }
            }
            vals = Data::concat_flat(&[&vals, &lo, &hi]).gather(&place, &[rows, n]);
            if let (Some(all), Some((ia, ib, _)), Some(ip)) = (&idx, tracked, iprod) {
                let ilo = self.bin(BinOp::Add, &ia, &ip)?;
                let ihi = self.bin(BinOp::Sub, &ib, &ip)?;
                idx = Some(Data::concat_flat(&[all, &ilo, &ihi]).gather(&place, &[rows, n]));
            }
        }
        Ok((vals, idx))
    }
}

/// A bitonic sorting network for any `n`, as layers of disjoint comparators
/// `(p, q)`: after a comparator, position `p` holds the smaller value, `q` the larger.
pub(crate) fn sorting_network(n: usize) -> Vec<Vec<(usize, usize)>> {
    let mut comps = Vec::new();
    bitonic_sort(0, n, true, &mut comps);
    // As-soon-as-possible layering: a comparator goes one layer after the last one
    // that touched either of its positions, so layers are disjoint and ordered.
    let mut ready = vec![0usize; n];
    let mut layers: Vec<Vec<(usize, usize)>> = Vec::new();
    for (p, q) in comps {
        let layer = ready[p].max(ready[q]);
        if layers.len() <= layer {
            layers.push(Vec::new());
        }
        layers[layer].push((p, q));
        ready[p] = layer + 1;
        ready[q] = layer + 1;
    }
    layers
}

fn bitonic_sort(lo: usize, n: usize, up: bool, out: &mut Vec<(usize, usize)>) {
    if n > 1 {
        let m = n / 2;
        bitonic_sort(lo, m, !up, out);
        bitonic_sort(lo + m, n - m, up, out);
        bitonic_merge(lo, n, up, out);
    }
}

fn bitonic_merge(lo: usize, n: usize, up: bool, out: &mut Vec<(usize, usize)>) {
    if n > 1 {
        let m = n.next_power_of_two() / 2;
        for i in lo..lo + n - m {
            out.push(if up { (i, i + m) } else { (i + m, i) });
        }
        bitonic_merge(lo, m, up, out);
        bitonic_merge(lo + m, n - m, up, out);
    }
}

#[cfg(test)]
mod tests {
    use super::sorting_network;
    use rand_chacha::ChaCha12Rng;
    use rand_core::{Rng, SeedableRng};

    #[test]
    fn sorting_network_sorts_every_length_up_to_40() {
        let mut rng = ChaCha12Rng::seed_from_u64(1);
        for n in 1..=40 {
            let net = sorting_network(n);
            for _ in 0..50 {
                let mut v: Vec<u64> = (0..n).map(|_| rng.next_u64() % 7).collect();
                let mut want = v.clone();
                want.sort();
                for layer in &net {
                    let mut seen = std::collections::HashSet::new();
                    for &(p, q) in layer {
                        assert!(seen.insert(p) && seen.insert(q), "layers are disjoint");
                        if v[p] > v[q] {
                            v.swap(p, q);
                        }
                    }
                }
                assert_eq!(v, want, "n = {n}");
            }
            let depth = net.len();
            let lg = (n as f64).log2().ceil() as usize;
            assert!(depth <= lg * (lg + 1) / 2 + 1, "n = {n}: depth {depth}");
        }
    }
}
