//! Real functions on [`Priv`]: reciprocal and division, exp, ln, sqrt, rsqrt,
//! sigmoid, tanh, softmax, integer powers.
//!
//! Parameters follow the configuration: with `f` fractional bits and inputs bounded
//! by `2^B` (see [`crate::Config`]),
//!
//! | function | valid input | outside it | rounds (default preset) |
//! |---|---|---|---|
//! | `reciprocal` | `2^-B ≤ |x| < 2^B` | `0` (within 4 ulp) for smaller `|x|` | 6 + 4·iterations |
//! | `exp` | `x ∈ [-f·ln2, (B-1)·ln2]` | saturates at the ends | ~36 |
//! | `ln` | `x ∈ [2^-f, 2^B)` | meaningless for `x ≤ 0` (not checked) | ~46 |
//! | `rsqrt`, `sqrt` | `x ∈ [2^-f, 2^B)` | `0` (within 4 ulp) for smaller `x` | 6 + 6·iterations |
//! | `sigmoid`, `tanh` | all `x` | — | ~50 |
//!
//! (`B` is the preset's bound exponent: 31 default, 20 fast, 63 paper; `f` its
//! fractional bits, capped at 125 for the paper preset's lookup tables.)
//!
//! **Wrap failure of the normalizing functions.** A multiplication fails (a wrong
//! sign reading, paper Theorem 2) with probability `|ṽ|/2^l` per operand, `ṽ` the
//! operand's encoding. `reciprocal` (and division), `rsqrt`, `sqrt` and `ln`
//! multiply `x` by a secret power of two `2^(G−e)` that grows as `x` shrinks, so their
//! failure probability per element is not the table's per-operand figure but about
//! `2^(G+f−l) / |x|` (twice that for `reciprocal`, which applies the scale twice),
//! with `G = max(0, B+1−f)` guard bits for `reciprocal` and `max(0, B−f)` for the
//! others:
//!
//! | preset | `reciprocal`, `/` | `rsqrt`, `sqrt`, `ln` | at most the table's figure for |
//! |---|---|---|---|
//! | fast (`l = 64`) | `2^-42 / |x|` (`2^-22` at `|x| = 2^-20`) | `2^-44 / x` (`2^-28` at `x = 2^-16`) | `|x| ≥ 2^-14` / all valid `x` |
//! | default (`l = 128`) | `2^-95 / |x|` (`2^-64` at `2^-31`) | `2^-96 / x` (`2^-64` at `2^-32`) | `|x| ≥ 2^-30` / `x ≥ 2^-31` |
//! | paper (`l = 256`) | `2^-127 / |x|` (`2^-64` at `2^-63`) | `2^-128 / x` (`2^-3` at `2^-125`) | `|x| ≥ 2^-62` / `x ≥ 2^-63` |
//!
//! `exp` multiplies by at most `2^(B−1)` and the sigmoids by less, within the table.
//!
//! Error bounds the tests hold on dense grids (`tests/suite/math.rs`), as relative
//! error for reciprocal, exp, sqrt, rsqrt and absolute error for ln, sigmoid, tanh,
//! each plus 64 units in the last place: `1e-8` for the default preset, `1e-12` for the
//! paper preset (the polynomial coefficients are `f64`, so ~1e-15 is the floor), and
//! `2e-3` for the fast preset. The cleartext engine computes the exact `f64` function.

use crate::data::Data;
use crate::derived::Ops;
use crate::engine::BinOp;
use crate::error::Result;
use crate::priv_array::Priv;
use crate::types::PrivType;
use ndarray::Axis;

/// Newton iterations for a start within a factor 4/3: `(1/3)^(2^k) < 2^-(f+2)`.
#[track_caller]
fn newton_iters(f: u32) -> usize {
    let mut k = 0;
    while 2f64.powi(k as i32) * 1.585 < (f + 2) as f64 {
        k += 1;
    }
    k.max(1)
}

impl<A: PrivType> Priv<A> {
    #[track_caller]
    fn unary(
        &self,
        clear: impl Fn(f64) -> f64,
        private: impl FnOnce(&Ops<'_>, u32, i32) -> Result<Data>,
    ) -> Priv<A> {
        let d = match (&self.data, self.eng.config()) {
            (Data::Clear(a), _) => Ok(Data::Clear(a.mapv(clear))),
            (_, Some(cfg)) => {
                let b = cfg.bound().log2() as i32;
                // Lookup tables hold 2^-lo: keep them encodable (paper preset: 2^125).
                let f = cfg.frac_bits().min(cfg.public_bound().log2() as u32 - 1);
                private(&Ops { eng: &self.eng }, f, b)
            }
            (_, None) => unreachable!("only the cleartext engine has no configuration"),
        };
        Priv::from_result(d, self.eng.clone())
    }

    /// `1/x`, with the default number of Newton iterations (5 for the default preset,
    /// 4 for fast, 7 for paper).
    ///
    /// Valid for `2^-B ≤ |x| < 2^B` (`B` the preset's bound exponent); smaller `|x|`
    /// gives 0 within 4 units in the last place. Larger `|x|` (only values computed
    /// inside a program can be) gives 0, within `2^-B` plus 4 units in the last place
    /// of `1/x`: it saturates rather
    /// than return an unrelated value. Division by such a value follows. Cost: one batched comparison of `x`
    /// and `-x` against the `2B` powers of two gives the binary exponent `e`; `x` is
    /// scaled exactly to `m ∈ [1, 2)`, Newton runs on `m` from `2/3` (two
    /// multiplications per iteration), and the result is scaled back. Error: within
    /// `1e-8` relative plus 64 ulp (default preset), `1e-12` (paper), `2e-3` (fast).
    ///
    /// Wrap failure: the exact scale grows as `|x|` shrinks, so a wrong result has
    /// probability about `2^(G+f+1−l)/|x|` per element (`G = max(0, B+1−f)`):
    /// `2^-42/|x|` on the fast preset (`2^-22` at `|x| = 2^-20`), `2^-95/|x|` on the
    /// default preset and `2^-127/|x|` on the paper preset. `rsqrt`, `sqrt` and `ln`
    /// scale once, with `G = max(0, B−f)`: `2^-44/x`, `2^-96/x`, `2^-128/x`.
    #[track_caller]
    pub fn reciprocal(&self) -> Priv<A> {
        self.reciprocal_with(usize::MAX)
    }

    /// [`Priv::reciprocal`] with `iterations` Newton steps (0 gives the starting point).
    #[track_caller]
    pub fn reciprocal_with(&self, iterations: usize) -> Priv<A> {
        self.unary(
            |v| 1.0 / v,
            |ops, f, b| {
                let it = if iterations == usize::MAX {
                    newton_iters(f)
                } else {
                    iterations
                };
                ops.reciprocal(&self.data, -b, b, f as i32, it)
            },
        )
    }

    /// `e^x`. Valid for `x ∈ [-f·ln 2, (B-1)·ln 2]` (`[-22.2, 20.1]` for the default
    /// preset); saturates outside. The integer part of `x·log2 e` by one batched
    /// comparison, the fraction by a degree-12 Chebyshev polynomial. Measured relative
    /// error ≤ 1e-8 (default preset) where `e^x > 2^-f/2·1e9`.
    #[track_caller]
    pub fn exp(&self) -> Priv<A> {
        self.unary(f64::exp, |ops, f, b| {
            let y = ops.scalar(BinOp::Mul, &self.data, std::f64::consts::LOG2_E, false)?;
            ops.exp2(&y, -(f as i32), b - 1, 12)
        })
    }

    /// Natural logarithm. Valid for `x ∈ [2^-f, 2^B)`; not defined for `x ≤ 0` (the
    /// result is then meaningless, as no comparison checks it). Binary exponent by one
    /// batched comparison, mantissa by a degree-20 Chebyshev polynomial on `[1, 2]`
    /// (degree 10 for the fast preset). Measured absolute error ≤ 1e-8 (default).
    #[track_caller]
    pub fn ln(&self) -> Priv<A> {
        self.unary(f64::ln, |ops, f, b| {
            let fi = f as i32;
            ops.ln(&self.data, (-fi, b, fi), if f <= 16 { 10 } else { 20 })
        })
    }

    /// `1/√x` for `x ∈ [2^-f, 2^B)` (0 below): Newton's method from a start within
    /// 19% (one batched comparison), 5 iterations for the default preset.
    #[track_caller]
    pub fn rsqrt(&self) -> Priv<A> {
        self.unary(
            |v| 1.0 / v.sqrt(),
            |ops, f, b| {
                let fi = f as i32;
                Ok(ops.rsqrt_sqrt(&self.data, (-fi, b, fi), newton_iters(f))?.0)
            },
        )
    }

    /// `√x = x · (1/√x)` for `x ∈ [0, 2^B)`; `0` for `x < 2^-f`.
    #[track_caller]
    pub fn sqrt(&self) -> Priv<A> {
        self.unary(f64::sqrt, |ops, f, b| {
            let fi = f as i32;
            Ok(ops.rsqrt_sqrt(&self.data, (-fi, b, fi), newton_iters(f))?.1)
        })
    }

    /// The logistic function `1/(1 + e^-x)`, the default fast method: `e^-|x|` (one
    /// batched comparison over `f` thresholds and a polynomial), `1/(1 + e^-|x|)` by
    /// Newton on `[1, 2]` (no comparison), and the symmetry `σ(-x) = 1 - σ(x)`.
    /// Valid for all `x`; measured absolute error ≤ 1e-9 (default preset).
    #[track_caller]
    pub fn sigmoid(&self) -> Priv<A> {
        self.unary(
            |v| 1.0 / (1.0 + (-v).exp()),
            |ops, f, _| ops.sigmoid(&self.data, f),
        )
    }

    /// The sigmoid to an absolute error of about `tol` plus some 60 units in the last
    /// place (the polynomial's rounding: measured 8.6e-4 in all with the fast preset
    /// and `tol = 1e-4`, 5.6e-5 with the default preset), much cheaper than
    /// [`Priv::sigmoid`]: two comparisons per element (the sign, then `|x| > R` with
    /// `σ(R) ≥ 1 − tol/2`) instead of one per bit, and a Chebyshev polynomial of `σ` on
    /// `[0, R]` whose degree is chosen for `tol` (Clenshaw, one multiplication per
    /// degree: 15 for `1e-4`, about 60 for `1e-12`). For inference, `1e-4` is usually
    /// ample. A `tol` below the preset's resolution (or one that would need a degree
    /// above 120) gives [`Priv::sigmoid`].
    ///
    /// Valid for every value the ring represents: both comparisons run on the full
    /// ring width, so an `x` far beyond the input bound (a large `X·w` inside a
    /// training loop, say) still saturates to 0 or 1 instead of giving a wrong value.
    #[track_caller]
    pub fn sigmoid_with_tolerance(&self, tol: f64) -> Priv<A> {
        self.unary(
            |v| 1.0 / (1.0 + (-v).exp()),
            |ops, f, _| {
                let ulp = (-(f as f64)).exp2();
                let poly = if tol >= ulp && tol.is_finite() {
                    sigmoid_poly_coefficients(tol.min(0.25))
                } else {
                    None
                };
                let Some((r, coef)) = poly else {
                    return ops.sigmoid(&self.data, f);
                };
                // Full width: correct whatever |x| is (a narrower circuit would
                // silently misread values beyond the input bound).
                let bits = self.eng.config().map_or(0, |c| c.ring().bits());
                ops.sigmoid_poly(&self.data, r, &coef, bits)
            },
        )
    }

    /// The logistic function by the paper's Euler method: `y' = x·y·(1 - y)`,
    /// `y(0) = 1/2`, `iterations` steps from 0 to 1 (two multiplications each). Its
    /// error falls like `1/iterations` (about 0.004 at 100 steps for `|x| ≤ 6`).
    #[track_caller]
    pub fn sigmoid_euler(&self, iterations: usize) -> Priv<A> {
        self.unary(
            |v| 1.0 / (1.0 + (-v).exp()),
            |ops, _, _| {
                let h = ops.scalar(
                    BinOp::Mul,
                    &self.data,
                    1.0 / iterations.max(1) as f64,
                    false,
                )?;
                let mut y = ops.affine(&self.data, 0.0, 0.5)?;
                for _ in 0..iterations {
                    let one_minus = ops.one_minus(&y)?;
                    let hy = ops.mul(&h, &y)?;
                    y = ops.add(&y, &ops.mul(&hy, &one_minus)?)?;
                }
                Ok(y)
            },
        )
    }

    /// `tanh x = 2σ(2x) − 1`.
    #[track_caller]
    pub fn tanh(&self) -> Priv<A> {
        self.unary(f64::tanh, |ops, f, _| {
            let s = ops.sigmoid(&ops.scalar(BinOp::Mul, &self.data, 2.0, false)?, f)?;
            ops.affine(&s, 2.0, -1.0)
        })
    }

    /// `x^k` for a public integer `k` (square and multiply; a negative `k` takes the
    /// reciprocal first). `k = 0` gives ones.
    #[track_caller]
    pub fn powi(&self, k: i32) -> Priv<A> {
        let base = if k < 0 {
            self.reciprocal()
        } else {
            self.clone()
        };
        let r = (|| {
            let ops = Ops { eng: &self.eng };
            let mut e = k.unsigned_abs();
            let mut acc: Option<Data> = None;
            let mut sq = base.data.clone();
            while e > 0 {
                if e & 1 == 1 {
                    acc = Some(match acc {
                        None => sq.clone(),
                        Some(a) => ops.mul(&a, &sq)?,
                    });
                }
                e >>= 1;
                if e > 0 {
                    sq = ops.mul(&sq, &sq)?;
                }
            }
            match acc {
                Some(a) => Ok(a),
                None => ops.affine(&base.data, 0.0, 1.0),
            }
        })();
        Priv::from_result(r, self.eng.clone())
    }

    /// Softmax along `axis`: `e^(x - max) / Σ e^(x - max)`, stable for any input range.
    ///
    /// # Panics
    /// Stops the program when `axis >= ndim` or the axis is empty.
    #[track_caller]
    pub fn softmax(&self, axis: Axis) -> Priv<A> {
        let ax = axis.index();
        if let Data::Clear(a) = &self.data {
            let m = a
                .map_axis(axis, |r| r.iter().copied().fold(f64::MIN, f64::max))
                .insert_axis(axis);
            let e = (a - &m).mapv(f64::exp);
            let s = e.sum_axis(axis).insert_axis(axis);
            return Priv::new(Data::Clear(e / s), self.eng.clone());
        }
        let r = (|| {
            let cfg = self.eng.config().unwrap_or_default();
            let f = cfg.frac_bits() as i32;
            let ops = Ops { eng: &self.eng };
            let m = self.max_axis(axis).data;
            let mut kept = self.shape().to_vec();
            kept[ax] = 1;
            let z = ops.sub(&self.data, &m.reshape(&kept)?)?;
            let y = ops.scalar(BinOp::Mul, &z, std::f64::consts::LOG2_E, false)?;
            let e = ops.exp2(&y, -f, 1, 12)?;
            let s = e.sum_axis(ax)?;
            let n = self.shape()[ax].max(1);
            let hi = (n as f64).log2().ceil() as i32 + 2;
            let r = ops.reciprocal(&s, -1, hi, f, newton_iters(f as u32))?;
            ops.mul(&e, &r.reshape(&kept)?)
        })();
        Priv::from_result(r, self.eng.clone())
    }
}

/// Highest polynomial degree [`Priv::sigmoid_with_tolerance`] uses.
const MAX_SIGMOID_DEGREE: usize = 120;

/// `R` and the coefficients of a fitted sigmoid polynomial.
type SigmoidPoly = (f64, Vec<f64>);

thread_local! {
    /// Coefficients by tolerance: a training loop asks for the same ones every step.
    static SIGMOID_POLYS: std::cell::RefCell<std::collections::HashMap<u64, Option<SigmoidPoly>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// `R` and the Chebyshev coefficients of `σ` on `[0, R]` for [`Ops::sigmoid_poly`]:
/// `σ(-R) ≤ tol/2`, and the smallest degree whose error on a dense grid is at most
/// `tol/4`; `None` when that degree exceeds [`MAX_SIGMOID_DEGREE`].
#[track_caller]
pub(crate) fn sigmoid_poly_coefficients(tol: f64) -> Option<SigmoidPoly> {
    SIGMOID_POLYS.with(|cache| {
        cache
            .borrow_mut()
            .entry(tol.to_bits())
            .or_insert_with(|| fit_sigmoid(tol))
            .clone()
    })
}

#[track_caller]
fn fit_sigmoid(tol: f64) -> Option<SigmoidPoly> {
    let sigma = |v: f64| 1.0 / (1.0 + (-v).exp());
    let r = (2.0 / tol).ln().max(1.0);
    let grid: Vec<f64> = (0..=2000).map(|k| r * k as f64 / 2000.0).collect();
    // Grow the degree geometrically, then settle on the smallest that suffices.
    let ok = |d: usize| {
        let coef = crate::math::chebyshev(sigma, 0.0, r, d);
        let worst = grid
            .iter()
            .map(|&v| (clenshaw(&coef, 2.0 * v / r - 1.0) - sigma(v)).abs())
            .fold(0.0, f64::max);
        (worst <= tol / 4.0).then_some(coef)
    };
    let mut d = 3;
    while ok(d).is_none() {
        d += 1 + d / 8;
        if d > MAX_SIGMOID_DEGREE {
            return None;
        }
    }
    // Back down while a lower degree still holds the tolerance.
    let mut best = ok(d)?;
    while d > 3 {
        match ok(d - 1) {
            Some(c) => {
                best = c;
                d -= 1;
            }
            None => break,
        }
    }
    Some((r, best))
}

/// `Σ c_k T_k(t)` in `f64`.
#[track_caller]
fn clenshaw(coef: &[f64], t: f64) -> f64 {
    let (mut b1, mut b2) = (0.0, 0.0);
    for &c in coef[1..].iter().rev() {
        let b0 = 2.0 * t * b1 - b2 + c;
        b2 = b1;
        b1 = b0;
    }
    t * b1 - b2 + coef[0]
}

impl Ops<'_> {
    /// σ(x) within about `tol`: `s = [x < 0]`, `a = |x|`, `o = [a > R]`,
    /// `c = a − o·(a − R)` (= min(a, R)), `p = P(c) ≈ σ(c)` (Chebyshev coefficients
    /// `coef` on `[0, R]`),
    /// and `σ(x) = p + s·(1 − 2p)`. Two comparisons (in sequence) per element.
    #[track_caller]
    pub(crate) fn sigmoid_poly(&self, x: &Data, r: f64, coef: &[f64], bits: u32) -> Result<Data> {
        let s = self.negative_bit_within(x, bits)?;
        let sx = self.select(&s, x)?;
        let a = self.sub(x, &self.scalar(BinOp::Mul, &sx, 2.0, false)?)?;
        let over = self.negative_bit_within(&self.affine(&a, -1.0, r)?, bits)?;
        let excess = self.select(&over, &self.affine(&a, 1.0, -r)?)?;
        let c = self.sub(&a, &excess)?;
        let p = self.chebyshev_eval(&c, coef, 0.0, r)?;
        let flip = self.affine(&p, -2.0, 1.0)?;
        self.add(&p, &self.select(&s, &flip)?)
    }

    /// σ(x) = r + [x<0]·(1 − 2r) with r = 1/(1 + e^-|x|).
    #[track_caller]
    pub(crate) fn sigmoid(&self, x: &Data, f: u32) -> Result<Data> {
        self.sigmoid_bits(x, f, 12, newton_iters(f))
    }

    /// The sigmoid with `e^-|x|` resolved down to `2^-bits` (`bits` thresholds), a
    /// degree-`deg` polynomial and `iters` Newton steps.
    #[track_caller]
    pub(crate) fn sigmoid_bits(
        &self,
        x: &Data,
        bits: u32,
        deg: usize,
        iters: usize,
    ) -> Result<Data> {
        let s = self.negative_bit(x)?;
        let sx = self.select(&s, x)?;
        let ax = self.sub(x, &self.scalar(BinOp::Mul, &sx, 2.0, false)?)?;
        let y = self.scalar(BinOp::Mul, &ax, -std::f64::consts::LOG2_E, false)?;
        let u = self.exp2(&y, -(bits as i32), 0, deg)?;
        let d = self.scalar(BinOp::Add, &u, 1.0, false)?;
        let r = self.reciprocal_1_2(&d, iters)?;
        let flip = self.affine(&r, -2.0, 1.0)?;
        self.add(&r, &self.select(&s, &flip)?)
    }
}
