//! Comparisons on [`Priv`] (paper Protocol 2) and the operations built on them.
//!
//! Every comparison returns a secret 0/1 array (`1.0` for true) of the broadcast
//! shape, usable in arithmetic: `&c * &(&a - &b) + &b` selects `a` where `c` is 1.

use crate::data::Data;
use crate::derived::Ops;
use crate::engine::{BinOp, CmpKind};
use crate::error::{Error, Result, ShapeError};
use crate::priv_array::{Operand, Priv, fail};
use crate::types::{Broadcast, PrivType, Public};
use ndarray::Axis;

/// The right operand of a comparison (or of `maximum`/`minimum`): a secret
/// (`&Priv<_>`) or a public value (`f64`, an array, or a reference to one).
pub trait Arg {
    /// Its cleartext type.
    type Kind: PrivType;
    /// The operand as the engine sees it. `Operand` is crate-private, so no other
    /// crate can implement this trait: it is sealed.
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn operand(&self) -> Operand<'_>;
}

impl<B: PrivType> Arg for &Priv<B> {
    type Kind = B;
    #[allow(private_interfaces)]
    fn operand(&self) -> Operand<'_> {
        Operand::Secret(&self.data, &self.eng)
    }
}

impl<P: Public> Arg for P {
    type Kind = P::Kind;
    #[allow(private_interfaces)]
    fn operand(&self) -> Operand<'_> {
        Operand::Public(self.view_dyn())
    }
}

/// Comparisons. Each costs one garbled-circuit evaluation per element, all elements
/// batched: two rounds in all.
#[allow(clippy::should_implement_trait)]
impl<A: PrivType> Priv<A> {
    #[track_caller]
    fn ops(&self) -> Ops<'_> {
        Ops { eng: &self.eng }
    }

    /// `[z < 0]` or `[z == 0]` for `z = self - rhs` (or `rhs - self`), as
    /// integer-encoded bits.
    #[track_caller]
    fn cmp_data(&self, rhs: Operand<'_>, rhs_minus_self: bool, kind: CmpKind) -> Result<Data> {
        let z = self.binop(BinOp::Sub, rhs, rhs_minus_self)?;
        self.eng.compare(&z, kind, true)
    }

    #[track_caller]
    fn cmp<T: Arg>(&self, rhs: T, swap: bool, kind: CmpKind, negate: bool) -> Priv<A::Output>
    where
        A: Broadcast<T::Kind>,
    {
        let bits = match self.cmp_data(rhs.operand(), swap, kind) {
            Ok(bits) => bits,
            Err(e) => {
                fail(e);
                return self.poisoned();
            }
        };
        let bits = if negate {
            self.eng.bit_not(&bits)
        } else {
            bits
        };
        Priv::from_bits(bits, self.eng.clone())
    }

    /// `self < rhs`, element-wise with broadcasting.
    ///
    /// # Panics
    /// Stops the program on incompatible shapes (see [`Priv`]).
    #[track_caller]
    pub fn lt<T: Arg>(&self, rhs: T) -> Priv<A::Output>
    where
        A: Broadcast<T::Kind>,
    {
        self.cmp(rhs, false, CmpKind::Negative, false)
    }

    /// `self > rhs`.
    ///
    /// # Panics
    /// As [`Priv::lt`].
    #[track_caller]
    pub fn gt<T: Arg>(&self, rhs: T) -> Priv<A::Output>
    where
        A: Broadcast<T::Kind>,
    {
        self.cmp(rhs, true, CmpKind::Negative, false)
    }

    /// `self <= rhs`.
    ///
    /// # Panics
    /// As [`Priv::lt`].
    #[track_caller]
    pub fn le<T: Arg>(&self, rhs: T) -> Priv<A::Output>
    where
        A: Broadcast<T::Kind>,
    {
        self.cmp(rhs, true, CmpKind::Negative, true)
    }

    /// `self >= rhs`.
    ///
    /// # Panics
    /// As [`Priv::lt`].
    #[track_caller]
    pub fn ge<T: Arg>(&self, rhs: T) -> Priv<A::Output>
    where
        A: Broadcast<T::Kind>,
    {
        self.cmp(rhs, false, CmpKind::Negative, true)
    }

    /// `self == rhs` (on the fixed-point encodings).
    ///
    /// # Panics
    /// As [`Priv::lt`].
    #[track_caller]
    pub fn eq<T: Arg>(&self, rhs: T) -> Priv<A::Output>
    where
        A: Broadcast<T::Kind>,
    {
        self.cmp(rhs, false, CmpKind::Zero, false)
    }

    /// `self != rhs`.
    ///
    /// # Panics
    /// As [`Priv::lt`].
    #[track_caller]
    pub fn ne<T: Arg>(&self, rhs: T) -> Priv<A::Output>
    where
        A: Broadcast<T::Kind>,
    {
        self.cmp(rhs, false, CmpKind::Zero, true)
    }

    /// `max(x, 0)`: one comparison and one (exact) multiplication.
    #[track_caller]
    pub fn relu(&self) -> Priv<A> {
        let r = (|| {
            let ops = self.ops();
            let c = ops.negative_bit(&self.eng.neg(&self.data))?;
            ops.select(&c, &self.data)
        })();
        Priv::from_result(r, self.eng.clone())
    }

    /// `|x|`: one comparison and one multiplication.
    #[track_caller]
    pub fn abs(&self) -> Priv<A> {
        let r = (|| {
            let ops = self.ops();
            // x − 2·[x < 0]·x, the product exact and the doubling exact.
            let neg = ops.negative_bit(&self.data)?;
            let twice = ops.scalar(BinOp::Mul, &ops.select(&neg, &self.data)?, 2.0, false)?;
            ops.bin(BinOp::Sub, &self.data, &twice)
        })();
        Priv::from_result(r, self.eng.clone())
    }

    /// `-1`, `0` or `1` by the sign of `x`: two comparisons, batched into one.
    #[track_caller]
    pub fn sign(&self) -> Priv<A> {
        let r = (|| {
            let ops = self.ops();
            let neg = self.eng.neg(&self.data);
            let both = Data::stack(&[&self.data, &neg]);
            let c = self.eng.compare(&both, CmpKind::Negative, false)?;
            // c[0] = [x < 0], c[1] = [x > 0].
            ops.bin(BinOp::Sub, &c.index0(1), &c.index0(0))
        })();
        Priv::from_result(r, self.eng.clone())
    }

    /// Element-wise maximum with broadcasting (NumPy's `maximum`).
    ///
    /// # Panics
    /// Stops the program on incompatible shapes.
    #[track_caller]
    pub fn maximum<T: Arg>(&self, other: T) -> Priv<A::Output>
    where
        A: Broadcast<T::Kind>,
    {
        self.select_with(other, true)
    }

    /// Element-wise minimum with broadcasting (NumPy's `minimum`).
    ///
    /// # Panics
    /// Stops the program on incompatible shapes.
    #[track_caller]
    pub fn minimum<T: Arg>(&self, other: T) -> Priv<A::Output>
    where
        A: Broadcast<T::Kind>,
    {
        self.select_with(other, false)
    }

    #[track_caller]
    fn select_with<T: Arg>(&self, other: T, max: bool) -> Priv<A::Output>
    where
        A: Broadcast<T::Kind>,
    {
        let r = (|| {
            let ops = self.ops();
            // c = [self > other] as a bit; d = other - self; c·d exact.
            let d = self.binop(BinOp::Sub, other.operand(), true)?;
            let c = ops.negative_bit(&d)?;
            let cd = ops.select(&c, &d)?;
            if max {
                // other - c·(other - self)
                let o = ops.bin(BinOp::Add, &self.data, &d)?;
                ops.bin(BinOp::Sub, &o, &cd)
            } else {
                // self + c·(other - self)
                ops.bin(BinOp::Add, &self.data, &cd)
            }
        })();
        Priv::from_result(r, self.eng.clone())
    }

    /// Limits values to `[lo, hi]` (NumPy's `clip`).
    ///
    /// # Panics
    /// Stops the program when `lo > hi`.
    #[track_caller]
    pub fn clip(&self, lo: f64, hi: f64) -> Priv<A> {
        if lo > hi {
            fail(Error::InvalidArgument {
                operation: "clip",
                reason: format!("lower bound {lo} above upper bound {hi}"),
            });
            return self.clone();
        }
        Priv::from_result(self.ops().clip(&self.data, lo, hi), self.eng.clone())
    }

    /// The array as `(rows, n)` with `axis` last, and the shape of the other axes.
    #[track_caller]
    fn rows_along(&self, axis: usize) -> Result<(Data, Vec<usize>)> {
        let nd = self.ndim();
        if axis >= nd {
            return Err(ShapeError::Axis { axis, ndim: nd }.into());
        }
        let mut perm: Vec<usize> = (0..nd).filter(|&k| k != axis).collect();
        let rest: Vec<usize> = perm.iter().map(|&k| self.shape()[k]).collect();
        perm.push(axis);
        let n = self.shape()[axis];
        if n == 0 {
            return Err(Error::EmptyInput {
                operation: "reduction along an axis",
            });
        }
        let rows = rest.iter().product::<usize>();
        Ok((self.data.permuted_axes(&perm).reshape(&[rows, n])?, rest))
    }

    #[track_caller]
    fn reduce_axis(&self, axis: usize, max: bool, index: bool) -> Result<Data> {
        let (x, rest) = self.rows_along(axis)?;
        let (v, i) = self.ops().reduce(&x, max, index)?;
        let d = if index { i.unwrap_or(v) } else { v };
        Ok(d.reshape(&rest)?)
    }

    #[track_caller]
    fn flat(&self) -> Result<Priv<ndarray::Array1<f64>>> {
        self.try_reshape(self.len())
    }

    /// The largest element (a tree of `⌈log2 n⌉` comparison layers).
    ///
    /// # Panics
    /// Stops the program on an empty array.
    #[track_caller]
    pub fn max(&self) -> Priv<f64> {
        let r = self.flat().and_then(|f| f.reduce_axis(0, true, false));
        Priv::from_result(r, self.eng.clone())
    }

    /// The smallest element.
    ///
    /// # Panics
    /// Stops the program on an empty array.
    #[track_caller]
    pub fn min(&self) -> Priv<f64> {
        let r = self.flat().and_then(|f| f.reduce_axis(0, false, false));
        Priv::from_result(r, self.eng.clone())
    }

    /// The (secret) flat index of the largest element; the first one on ties.
    ///
    /// # Panics
    /// Stops the program on an empty array.
    #[track_caller]
    pub fn argmax(&self) -> Priv<f64> {
        let r = self.flat().and_then(|f| f.reduce_axis(0, true, true));
        Priv::from_result(r, self.eng.clone())
    }

    /// The (secret) flat index of the smallest element; the first one on ties.
    ///
    /// # Panics
    /// Stops the program on an empty array.
    #[track_caller]
    pub fn argmin(&self) -> Priv<f64> {
        let r = self.flat().and_then(|f| f.reduce_axis(0, false, true));
        Priv::from_result(r, self.eng.clone())
    }

    /// Maximum along `axis`.
    ///
    /// # Panics
    /// Stops the program when `axis >= ndim` or the axis is empty.
    #[track_caller]
    pub fn max_axis(&self, axis: Axis) -> Priv<A::Smaller> {
        Priv::from_result(
            self.reduce_axis(axis.index(), true, false),
            self.eng.clone(),
        )
    }

    /// Minimum along `axis`.
    ///
    /// # Panics
    /// As [`Priv::max_axis`].
    #[track_caller]
    pub fn min_axis(&self, axis: Axis) -> Priv<A::Smaller> {
        Priv::from_result(
            self.reduce_axis(axis.index(), false, false),
            self.eng.clone(),
        )
    }

    /// Secret indices of the maxima along `axis` (first on ties).
    ///
    /// # Panics
    /// As [`Priv::max_axis`].
    #[track_caller]
    pub fn argmax_axis(&self, axis: Axis) -> Priv<A::Smaller> {
        Priv::from_result(self.reduce_axis(axis.index(), true, true), self.eng.clone())
    }

    /// Secret indices of the minima along `axis` (first on ties).
    ///
    /// # Panics
    /// As [`Priv::max_axis`].
    #[track_caller]
    pub fn argmin_axis(&self, axis: Axis) -> Priv<A::Smaller> {
        Priv::from_result(
            self.reduce_axis(axis.index(), false, true),
            self.eng.clone(),
        )
    }

    #[track_caller]
    fn sort_impl(&self, axis: usize, index: bool) -> Result<Data> {
        let (x, rest) = self.rows_along(axis)?;
        let (v, i) = self.ops().sort(&x, index)?;
        let d = if index { i.unwrap_or(v) } else { v };
        // Back to the original axis order.
        let n = self.shape()[axis];
        let mut with_last = rest.clone();
        with_last.push(n);
        let d = d.reshape(&with_last)?;
        let nd = self.ndim();
        let mut inv = vec![0; nd];
        let mut k = 0;
        for (pos, slot) in inv.iter_mut().enumerate() {
            *slot = if pos == axis {
                nd - 1
            } else {
                k += 1;
                k - 1
            };
        }
        Ok(d.permuted_axes(&inv).reshape(self.shape())?)
    }

    /// Sorted ascending along `axis` (a bitonic network: `O(log² n)` layers of one
    /// batched comparison and one multiplication each).
    ///
    /// # Panics
    /// As [`Priv::max_axis`].
    #[track_caller]
    pub fn sort_axis(&self, axis: Axis) -> Priv<A> {
        Priv::from_result(self.sort_impl(axis.index(), false), self.eng.clone())
    }

    /// Secret indices that sort along `axis` (as NumPy's `argsort`; not stable on ties).
    ///
    /// # Panics
    /// As [`Priv::max_axis`].
    #[track_caller]
    pub fn argsort_axis(&self, axis: Axis) -> Priv<A> {
        Priv::from_result(self.sort_impl(axis.index(), true), self.eng.clone())
    }

    /// Sorted ascending along the last axis (NumPy's default).
    ///
    /// # Panics
    /// Stops the program on a scalar or an empty axis.
    #[track_caller]
    pub fn sort(&self) -> Priv<A> {
        self.sort_axis(Axis(self.ndim().saturating_sub(1)))
    }

    /// Sorting indices along the last axis.
    ///
    /// # Panics
    /// As [`Priv::sort`].
    #[track_caller]
    pub fn argsort(&self) -> Priv<A> {
        self.argsort_axis(Axis(self.ndim().saturating_sub(1)))
    }

    /// 2-D max pooling over the last two axes, with a `(rows, cols)` window and stride.
    ///
    /// # Panics
    /// Stops the program when the array has fewer than two axes, the window is empty
    /// or larger than the array, or a stride is zero.
    #[track_caller]
    pub fn max_pool2d(&self, window: (usize, usize), stride: (usize, usize)) -> Priv<A> {
        Priv::from_result(self.pool_impl(window, stride), self.eng.clone())
    }

    #[track_caller]
    fn pool_impl(&self, (kh, kw): (usize, usize), (sh, sw): (usize, usize)) -> Result<Data> {
        let nd = self.ndim();
        let bad = |reason: String| {
            Err(Error::InvalidArgument {
                operation: "max_pool2d",
                reason,
            })
        };
        if nd < 2 {
            return bad(format!(
                "needs at least 2 axes, got shape {:?}",
                self.shape()
            ));
        }
        let (h, w) = (self.shape()[nd - 2], self.shape()[nd - 1]);
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 || kh > h || kw > w {
            return bad(format!(
                "window ({kh}, {kw}) with stride ({sh}, {sw}) does not fit {h}x{w}"
            ));
        }
        let (ho, wo) = ((h - kh) / sh + 1, (w - kw) / sw + 1);
        let outer: usize = self.shape()[..nd - 2].iter().product();
        let mut idx = Vec::with_capacity(outer * ho * wo * kh * kw);
        for b in 0..outer {
            for i in 0..ho {
                for j in 0..wo {
                    for di in 0..kh {
                        for dj in 0..kw {
                            idx.push(b * h * w + (i * sh + di) * w + (j * sw + dj));
                        }
                    }
                }
            }
        }
        let windows = self.data.gather(&idx, &[outer * ho * wo, kh * kw]);
        let (v, _) = self.ops().reduce(&windows, true, false)?;
        let mut shape = self.shape()[..nd - 2].to_vec();
        shape.extend([ho, wo]);
        Ok(v.reshape(&shape)?)
    }
}
