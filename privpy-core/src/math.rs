//! Derived real functions on secrets: reciprocal, exp, ln, rsqrt/sqrt, sigmoid.
//!
//! Two building blocks make them accurate over the whole range of a preset:
//!
//! * **Scale by comparison.** One batched comparison of `x` against the public
//!   powers of two `2^lo, …, 2^(hi-1)` gives a one-hot vector of the binary
//!   exponent `e` (`x ∈ [2^e, 2^(e+1))`). Any public function of `e` is then a local
//!   product of that vector with a public vector: a starting point for Newton's
//!   method that is within a constant factor of the answer, or an exact `2^-e`.
//! * **Chebyshev polynomials** evaluated by Clenshaw's recurrence (numerically stable,
//!   one secret multiplication per degree) for smooth functions on a short interval.

use crate::data::Data;
use crate::derived::Ops;
use crate::engine::BinOp;
use crate::error::Result;
use ndarray::{ArrayD, IxDyn};

/// Chebyshev interpolation coefficients of `g` on `[a, b]`, degree `d`.
pub(crate) fn chebyshev(g: impl Fn(f64) -> f64, a: f64, b: f64, d: usize) -> Vec<f64> {
    let n = d + 1;
    let nodes: Vec<f64> = (0..n)
        .map(|k| (std::f64::consts::PI * (k as f64 + 0.5) / n as f64).cos())
        .collect();
    let vals: Vec<f64> = nodes
        .iter()
        .map(|&t| g(0.5 * (b - a) * t + 0.5 * (a + b)))
        .collect();
    (0..n)
        .map(|j| {
            let s: f64 = (0..n)
                .map(|k| {
                    vals[k] * (std::f64::consts::PI * j as f64 * (k as f64 + 0.5) / n as f64).cos()
                })
                .sum();
            s * if j == 0 { 1.0 } else { 2.0 } / n as f64
        })
        .collect()
}

impl Ops<'_> {
    pub(crate) fn mul(&self, a: &Data, b: &Data) -> Result<Data> {
        self.bin(BinOp::Mul, a, b)
    }

    pub(crate) fn add(&self, a: &Data, b: &Data) -> Result<Data> {
        self.bin(BinOp::Add, a, b)
    }

    pub(crate) fn sub(&self, a: &Data, b: &Data) -> Result<Data> {
        self.bin(BinOp::Sub, a, b)
    }

    /// `a · c + d` for public scalars (local).
    pub(crate) fn affine(&self, a: &Data, c: f64, d: f64) -> Result<Data> {
        let m = self.scalar(BinOp::Mul, a, c, false)?;
        self.scalar(BinOp::Add, &m, d, false)
    }

    /// `Σ_k coef_k T_k(t)` with `t` the affine image of `x ∈ [a, b]` on `[-1, 1]`
    /// (Clenshaw: `d - 1` secret multiplications in sequence).
    pub(crate) fn chebyshev_eval(&self, x: &Data, coef: &[f64], a: f64, b: f64) -> Result<Data> {
        let t = self.affine(x, 2.0 / (b - a), -(a + b) / (b - a))?;
        let d = coef.len() - 1;
        if d == 0 {
            return self.affine(&t, 0.0, coef[0]);
        }
        // b_d = c_d (public), b_{d-1} = 2t·c_d + c_{d-1} (local).
        let mut b2 = self.affine(&t, 0.0, coef[d])?;
        let mut b1 = self.affine(&t, 2.0 * coef[d], coef[d - 1])?;
        for &c in coef[1..d - 1].iter().rev() {
            let tb = self.mul(&t, &b1)?;
            let next = self.sub(&self.affine(&tb, 2.0, c)?, &b2)?;
            b2 = b1;
            b1 = next;
        }
        let tb = self.mul(&t, &b1)?;
        self.scalar(BinOp::Add, &self.sub(&tb, &b2)?, coef[0], false)
    }

    /// For a flat `x` of `n` elements: the `(n, hi - lo)` integer-encoded one-hot of the binary exponent
    /// `e ∈ [lo, hi)` (row `i` has a 1 at `e - lo` where `x_i ∈ [2^e, 2^(e+1))`;
    /// values at or above `2^(hi-1)` fall in the last bucket, values below `2^lo`
    /// (including negatives) in none). One batched comparison.
    pub(crate) fn exponent_onehot(&self, x: &Data, lo: i32, hi: i32) -> Result<Data> {
        let n = x.shape().iter().product::<usize>();
        let k = (hi - lo) as usize;
        let x2 = x.reshape(&[n, 1])?;
        let thr = ArrayD::from_shape_fn(IxDyn(&[1, k]), |i| 2f64.powi(lo + i[1] as i32));
        // below = [x < 2^(lo+j)]; c_j = 1 - below_j is [x >= 2^(lo+j)].
        let z = self
            .eng
            .binary_public(BinOp::Sub, &x2, &thr.view(), false, &[n, k])?;
        let below = self.negative_bit(&z)?;
        self.onehot_from_below(&below, n, k)
    }

    /// From integer bits `below_j = [v < t_j]` for increasing thresholds, the one-hot
    /// `c_j − c_{j+1} = below_{j+1} − below_j` (with `below_k = 1`): local.
    fn onehot_from_below(&self, below: &Data, n: usize, k: usize) -> Result<Data> {
        let idx_next: Vec<usize> = (0..n * k)
            .map(|i| if i % k + 1 < k { i + 1 } else { n * k })
            .collect();
        let one = self.int_one()?;
        let next = Data::concat_flat(&[below, &one]).gather(&idx_next, &[n, k]);
        self.sub(&next, below)
    }

    /// The integer-encoded constant 1 (a shared bit that is set).
    fn int_one(&self) -> Result<Data> {
        let zero = self
            .eng
            .constant(&ArrayD::from_elem(IxDyn(&[1]), 0.0).view())?;
        // [0 - 1 < 0] = 1, as an integer bit, without needing an integer encoder.
        let minus_one = self.scalar(BinOp::Sub, &zero, 1.0, false)?;
        self.negative_bit(&minus_one)
    }

    /// `onehot · table` for an integer-encoded one-hot and a public `(k, m)` table:
    /// `(n, m)`, local and exact (no truncation).
    pub(crate) fn lookup(&self, onehot: &Data, table: ArrayD<f64>) -> Result<Data> {
        self.eng.matmul_public(onehot, &table.view(), false, false)
    }

    /// Normalizes a flat `x` to `m = x · 2^-e ∈ [1, 2)` (`e` its binary exponent in
    /// `[lo, hi)`), and looks up public functions of `e`. With `signed`, negative `x`
    /// work too (then `m = |x|·2^-e` and each looked-up value carries the sign of `x`).
    ///
    /// The scale is applied as `2^(G−e)` then `2^-G` with `G` guard bits, so that it is
    /// exactly representable even where `2^-e` is below the resolution. With
    /// `overflow`, the top bucket (`e = hi − 1`, which holds every `x ≥ 2^(hi−1)`)
    /// gets scale 0, so values beyond the range normalize to 0 instead of to a value
    /// outside `[1, 2)`.
    pub(crate) fn normalize(
        &self,
        x: &Data,
        (lo, hi, f): (i32, i32, i32),
        signed: bool,
        overflow: bool,
        extra: &[&dyn Fn(i32) -> f64],
    ) -> Result<(Data, Vec<Data>)> {
        let n = x.shape().iter().product::<usize>();
        let k = (hi - lo) as usize;
        let g = (hi - f).max(0);
        let cols = 1 + extra.len();
        let table = ArrayD::from_shape_fn(IxDyn(&[k, cols]), |i| {
            let e = lo + i[0] as i32;
            if i[1] == 0 {
                if overflow && e == hi - 1 {
                    0.0
                } else {
                    2f64.powi(g - e)
                }
            } else {
                extra[i[1] - 1](e)
            }
        });
        let t = if signed {
            let both = Data::concat_flat(&[x, &self.eng.neg(x)]);
            let t = self.lookup(&self.exponent_onehot(&both, lo, hi)?, table)?;
            let pos = t.gather(&(0..n * cols).collect::<Vec<_>>(), &[n, cols]);
            let neg = t.gather(&(n * cols..2 * n * cols).collect::<Vec<_>>(), &[n, cols]);
            self.sub(&pos, &neg)?
        } else {
            self.lookup(&self.exponent_onehot(x, lo, hi)?, table)?
        };
        let col = |c: usize| t.gather(&(0..n).map(|i| i * cols + c).collect::<Vec<_>>(), &[n]);
        let scaled = self.mul(x, &col(0))?;
        let m = self.scalar(BinOp::Mul, &scaled, 2f64.powi(-g), false)?;
        // The scale itself, then the extra columns.
        let mut out = vec![col(0)];
        out.extend((1..cols).map(col));
        Ok((m, out))
    }

    /// `1/x` for `|x| ∈ [2^lo, 2^hi)`: normalize to `m ∈ [1, 2)`, Newton on `m` from
    /// `2/3` (no comparison), then rescale exactly. `0` for `|x| < 2^lo`, and `0` for
    /// `|x| ≥ 2^hi` (one more exponent bucket, with scale 0): within `2^-hi` of `1/x`.
    pub(crate) fn reciprocal(
        &self,
        x: &Data,
        lo: i32,
        hi: i32,
        f: i32,
        iters: usize,
    ) -> Result<Data> {
        let shape = x.shape().to_vec();
        let n = shape.iter().product::<usize>();
        let flat = x.reshape(&[n])?;
        // One bucket more: [2^hi, ∞) gets scale 0.
        let hi = hi + 1;
        let g = (hi - f).max(0);
        let (m, cols) = self.normalize(&flat, (lo, hi, f), true, true, &[])?;
        let r = self.reciprocal_1_2(&m, iters)?;
        // 1/x = (1/m) · (±2^(G−e)) · 2^-G.
        let scaled = self.mul(&r, &cols[0])?;
        Ok(self
            .scalar(BinOp::Mul, &scaled, 2f64.powi(-g), false)?
            .reshape(&shape)?)
    }

    /// `1/d` for `d ∈ [1, 2]` by Newton from `y0 = 2/3` (no comparison).
    pub(crate) fn reciprocal_1_2(&self, d: &Data, iters: usize) -> Result<Data> {
        let mut y = self.affine(d, 0.0, 2.0 / 3.0)?;
        for _ in 0..iters {
            let dy = self.mul(d, &y)?;
            y = self.mul(&y, &self.scalar(BinOp::Sub, &dy, 2.0, true)?)?;
        }
        Ok(y)
    }

    /// `2^y` for `y` clamped to `[ylo, yhi]` (integers): the integer part by one batched
    /// comparison against `ylo+1, …, yhi`, the fractional part by a Chebyshev
    /// polynomial of degree `deg` on `[0, 1]`.
    pub(crate) fn exp2(&self, y: &Data, ylo: i32, yhi: i32, deg: usize) -> Result<Data> {
        let shape = y.shape().to_vec();
        let n = shape.iter().product::<usize>();
        let y = self.clip(&y.reshape(&[n])?, ylo as f64, yhi as f64)?;
        let k = (yhi - ylo) as usize;
        // below_j = [y < ylo + j] for j = 0..k-1 (below_0 = 0 after the clip); the
        // one-hot of floor(y) (y = yhi falls in the last bucket, with fraction 1).
        let thr = ArrayD::from_shape_fn(IxDyn(&[1, k]), |i| (ylo + i[1] as i32) as f64);
        let z = self.eng.binary_public(
            BinOp::Sub,
            &y.reshape(&[n, 1])?,
            &thr.view(),
            false,
            &[n, k],
        )?;
        let below = self.negative_bit(&z)?;
        let oh = self.onehot_from_below(&below, n, k)?;
        // One exact lookup gives both 2^floor(y) and floor(y).
        let table = ArrayD::from_shape_fn(IxDyn(&[k, 2]), |i| {
            let e = ylo + i[0] as i32;
            if i[1] == 0 { 2f64.powi(e) } else { e as f64 }
        });
        let t = self.lookup(&oh, table)?;
        let pow_int = t.gather(&(0..n).map(|i| 2 * i).collect::<Vec<_>>(), &[n]);
        let int = t.gather(&(0..n).map(|i| 2 * i + 1).collect::<Vec<_>>(), &[n]);
        let frac = self.sub(&y, &int)?;
        let coef = chebyshev(|r| r.exp2(), 0.0, 1.0, deg);
        let pow_frac = self.chebyshev_eval(&frac, &coef, 0.0, 1.0)?;
        Ok(self.mul(&pow_int, &pow_frac)?.reshape(&shape)?)
    }

    /// `ln x` for `x ∈ [2^lo, 2^hi)`: `x = 2^e·m`, `m ∈ [1, 2)`, `ln x = e·ln 2 + ln m`
    /// with a Chebyshev polynomial of degree `deg` for `ln m`.
    pub(crate) fn ln(&self, x: &Data, (lo, hi, f): (i32, i32, i32), deg: usize) -> Result<Data> {
        let shape = x.shape().to_vec();
        let n = shape.iter().product::<usize>();
        let flat = x.reshape(&[n])?;
        let e_ln2 = |e: i32| e as f64 * std::f64::consts::LN_2;
        let (m, cols) = self.normalize(&flat, (lo, hi, f), false, false, &[&e_ln2])?;
        let coef = chebyshev(f64::ln, 1.0, 2.0, deg);
        let lnm = self.chebyshev_eval(&m, &coef, 1.0, 2.0)?;
        Ok(self.add(&lnm, &cols[1])?.reshape(&shape)?)
    }

    /// `1/√x` and `√x` for `x ∈ [2^lo, 2^hi)`: normalize to `m ∈ [1, 2)`, Newton
    /// `y ← y(3 − m y²)/2` from `1/√1.5` (no comparison), then rescale by the
    /// looked-up `2^(∓e/2)`. `0` below `2^lo`.
    pub(crate) fn rsqrt_sqrt(
        &self,
        x: &Data,
        (lo, hi, f): (i32, i32, i32),
        iters: usize,
    ) -> Result<(Data, Data)> {
        let shape = x.shape().to_vec();
        let n = shape.iter().product::<usize>();
        let flat = x.reshape(&[n])?;
        let g = (hi - f).max(0);
        let inv_half = move |e: i32| 2f64.powf(g as f64 - e as f64 / 2.0);
        let half = |e: i32| 2f64.powf(e as f64 / 2.0);
        let (m, cols) = self.normalize(&flat, (lo, hi, f), false, false, &[&inv_half, &half])?;
        let mut y = self.affine(&m, 0.0, 1.0 / 1.5f64.sqrt())?;
        for _ in 0..iters {
            let my = self.mul(&m, &y)?;
            let my2 = self.mul(&my, &y)?;
            y = self.mul(&y, &self.affine(&my2, -0.5, 1.5)?)?;
        }
        let r = self.scalar(BinOp::Mul, &self.mul(&y, &cols[1])?, 2f64.powi(-g), false)?;
        let sq = self.mul(&self.mul(&m, &y)?, &cols[2])?;
        Ok((r.reshape(&shape)?, sq.reshape(&shape)?))
    }
}
