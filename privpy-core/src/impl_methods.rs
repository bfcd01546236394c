//! The NumPy methods of the paper's Table 8 on [`Priv`], and indexing.
//!
//! Structural methods (slicing, `take`, `repeat`, `tile`, `diag`, `concatenate`, …)
//! are public re-indexings: ndarray computes them on an array of element positions,
//! and every server gathers its share (or its shape) through the result. Nothing is
//! communicated. Indices and conditions are public; results that depend on secrets
//! (`argsort`, `searchsorted`, `any`, …) stay secret.

use crate::data::{Data, map_data};
use crate::derived::Ops;
use crate::engine::BinOp;
use crate::error::{Error, Result, ShapeError};
use crate::priv_array::{Priv, fail};
use crate::types::{PrivType, Public};
use ndarray::{Array1, ArrayD, Axis, IxDyn, SliceArg};

impl<A: PrivType> Priv<A> {
    /// Flat positions `0..n` in this array's shape.
    #[track_caller]
    fn positions(&self) -> ArrayD<usize> {
        ArrayD::from_shape_vec(IxDyn(self.shape()), (0..self.len()).collect())
            .unwrap_or_else(|_| unreachable!("n positions"))
    }

    /// The elements at `idx` (positions into this array), in `idx`'s shape.
    #[track_caller]
    fn gather_positions<B: PrivType>(&self, idx: ArrayD<usize>) -> Priv<B> {
        let flat: Vec<usize> = idx.iter().copied().collect();
        Priv::new(self.data.gather(&flat, idx.shape()), self.eng.clone())
    }

    #[track_caller]
    fn check_axis(&self, axis: Axis) -> Result<()> {
        if axis.index() >= self.ndim() {
            return Err(ShapeError::Axis {
                axis: axis.index(),
                ndim: self.ndim(),
            }
            .into());
        }
        Ok(())
    }

    /// A slice with public ranges, as ndarray's `slice` with `s![..]`.
    ///
    /// # Panics
    /// As ndarray: when a range is out of bounds (a programming error).
    #[track_caller]
    pub fn slice<I>(&self, info: I) -> Priv<ndarray::Array<f64, I::OutDim>>
    where
        I: SliceArg<IxDyn>,
        ndarray::Array<f64, I::OutDim>: PrivType,
    {
        let pos = self.positions();
        let view = pos.slice(info);
        self.gather_positions(view.to_owned().into_dyn())
    }

    /// The element at a public multi-index, as a secret scalar (NumPy's `item`).
    ///
    /// # Panics
    /// Stops the program when the index is out of bounds.
    #[track_caller]
    pub fn item(&self, index: &[usize]) -> Priv<f64> {
        let pos = self.positions();
        match pos.get(IxDyn(index)) {
            Some(&p) => Priv::new(self.data.gather(&[p], &[]), self.eng.clone()),
            None => {
                fail(Error::IndexOutOfBounds {
                    operation: "item",
                    index: index.to_vec(),
                    shape: self.shape().to_vec(),
                });
                self.poisoned()
            }
        }
    }

    /// Assigns a secret scalar at a public multi-index (NumPy's `itemset`, `a[i] = v`).
    ///
    /// # Panics
    /// Stops the program when the index is out of bounds.
    #[track_caller]
    pub fn itemset(&mut self, index: &[usize], value: &Priv<f64>) {
        let pos = self.positions();
        let Some(&p) = pos.get(IxDyn(index)) else {
            return fail(Error::IndexOutOfBounds {
                operation: "itemset",
                index: index.to_vec(),
                shape: self.shape().to_vec(),
            });
        };
        self.put(&[p], &value.clone().into_dyn());
    }

    /// Replaces the elements at flat positions `indices` by `values` (NumPy's `put`,
    /// with `values` repeated cyclically when shorter).
    ///
    /// # Panics
    /// Stops the program when a position is out of bounds or `values` is empty.
    #[track_caller]
    pub fn put<B: PrivType>(&mut self, indices: &[usize], values: &Priv<B>) {
        let n = self.len();
        let m = values.len();
        if m == 0 || indices.iter().any(|&i| i >= n) {
            return fail(Error::IndexOutOfBounds {
                operation: "put",
                index: indices.to_vec(),
                shape: vec![n],
            });
        }
        let mut map: Vec<usize> = (0..n).collect();
        for (k, &i) in indices.iter().enumerate() {
            map[i] = n + k % m;
        }
        let joined = Data::concat_flat(&[&self.data, &values.data]);
        self.data = joined.gather(&map, self.data.shape());
    }

    /// Sets every element to the secret scalar `value` (NumPy's `fill`).
    #[track_caller]
    pub fn fill(&mut self, value: &Priv<f64>) {
        let n = self.len();
        let joined = Data::concat_flat(&[&self.data, &value.data]);
        self.data = joined.gather(&vec![n; n], self.data.shape());
    }

    /// A copy (NumPy's `copy`): this server's share, duplicated.
    #[track_caller]
    pub fn copy(&self) -> Priv<A> {
        self.clone()
    }

    /// The elements as a vector, row-major (NumPy's `flatten`).
    #[track_caller]
    pub fn flatten(&self) -> Priv<Array1<f64>> {
        Priv::from_result(
            self.data.reshape(&[self.len()]).map_err(Error::from),
            self.eng.clone(),
        )
    }

    /// The same as [`Priv::flatten`] (NumPy's `ravel`).
    #[track_caller]
    pub fn ravel(&self) -> Priv<Array1<f64>> {
        self.flatten()
    }

    /// Without its axes of length 1 (NumPy's `squeeze`).
    #[track_caller]
    pub fn squeeze(&self) -> Priv<ArrayD<f64>> {
        let shape: Vec<usize> = self.shape().iter().copied().filter(|&d| d != 1).collect();
        Priv::from_result(
            self.data.reshape(&shape).map_err(Error::from),
            self.eng.clone(),
        )
    }

    /// Axes `a` and `b` exchanged (NumPy's `swapaxes`).
    ///
    /// # Panics
    /// Stops the program when an axis is out of bounds.
    #[track_caller]
    pub fn swapaxes(&self, a: usize, b: usize) -> Priv<A> {
        let nd = self.ndim();
        if a >= nd || b >= nd {
            fail(
                ShapeError::Axis {
                    axis: a.max(b),
                    ndim: nd,
                }
                .into(),
            );
            return self.clone();
        }
        let mut perm: Vec<usize> = (0..nd).collect();
        perm.swap(a, b);
        self.permuted_axes(&perm)
    }

    /// The elements at public `indices` along `axis` (NumPy's `take`).
    ///
    /// # Panics
    /// Stops the program when the axis or an index is out of bounds.
    #[track_caller]
    pub fn take(&self, indices: &[usize], axis: Axis) -> Priv<A> {
        if let Err(e) = self.check_axis(axis) {
            fail(e);
            return self.clone();
        }
        if indices.iter().any(|&i| i >= self.shape()[axis.index()]) {
            fail(Error::IndexOutOfBounds {
                operation: "take",
                index: indices.to_vec(),
                shape: self.shape().to_vec(),
            });
            return self.clone();
        }
        if self.ndim() == 1 {
            // The positions along the only axis are the indices themselves.
            return Priv::new(
                self.data.gather(indices, &[indices.len()]),
                self.eng.clone(),
            );
        }
        self.gather_positions(self.positions().select(axis, indices))
    }

    /// The slices along `axis` where the public `condition` is true (NumPy's `compress`).
    ///
    /// # Panics
    /// Stops the program when the axis is out of bounds or `condition` is longer than it.
    #[track_caller]
    pub fn compress(&self, condition: &[bool], axis: Axis) -> Priv<A> {
        if let Err(e) = self.check_axis(axis) {
            fail(e);
            return self.clone();
        }
        if condition.len() > self.shape()[axis.index()] {
            fail(Error::InvalidArgument {
                operation: "compress",
                reason: "the condition is longer than the axis".into(),
            });
            return self.clone();
        }
        let keep: Vec<usize> = condition
            .iter()
            .enumerate()
            .filter(|(_, c)| **c)
            .map(|(i, _)| i)
            .collect();
        self.take(&keep, axis)
    }

    /// Each element repeated `reps` times along `axis`, or in the flattened array when
    /// `axis` is `None` (NumPy's `repeat`).
    ///
    /// # Panics
    /// Stops the program when the axis is out of bounds.
    #[track_caller]
    pub fn repeat(&self, reps: usize, axis: Option<Axis>) -> Priv<ArrayD<f64>> {
        match axis {
            None => {
                let idx: Vec<usize> = (0..self.len())
                    .flat_map(|i| std::iter::repeat_n(i, reps))
                    .collect();
                let n = idx.len();
                self.gather_positions(
                    ArrayD::from_shape_vec(IxDyn(&[n]), idx).unwrap_or_else(|_| unreachable!()),
                )
            }
            Some(ax) => {
                if let Err(e) = self.check_axis(ax) {
                    fail(e);
                    return self.poisoned();
                }
                let sel: Vec<usize> = (0..self.shape()[ax.index()])
                    .flat_map(|i| std::iter::repeat_n(i, reps))
                    .collect();
                self.gather_positions(self.positions().select(ax, &sel))
            }
        }
    }

    /// The array repeated `reps[k]` times along each axis (NumPy's `tile`; a shorter
    /// `reps` applies to the last axes, a longer one adds leading axes).
    #[track_caller]
    pub fn tile(&self, reps: &[usize]) -> Priv<ArrayD<f64>> {
        let nd = self.ndim().max(reps.len());
        let mut shape = vec![1; nd - self.ndim()];
        shape.extend_from_slice(self.shape());
        let mut r = vec![1; nd - reps.len()];
        r.extend_from_slice(reps);
        let mut pos = self
            .positions()
            .into_shape_with_order(IxDyn(&shape))
            .unwrap_or_else(|_| unreachable!());
        for (ax, &k) in r.iter().enumerate() {
            let sel: Vec<usize> = (0..k).flat_map(|_| 0..shape[ax]).collect();
            pos = pos.select(Axis(ax), &sel);
        }
        self.gather_positions(pos)
    }

    /// The array in a new shape, its elements repeated cyclically to fill it
    /// (NumPy's `resize`).
    ///
    /// # Panics
    /// Stops the program when the array is empty and the new shape is not.
    #[track_caller]
    pub fn resize(&self, shape: &[usize]) -> Priv<ArrayD<f64>> {
        let n = self.len();
        let m: usize = shape.iter().product();
        if n == 0 && m > 0 {
            fail(Error::EmptyInput {
                operation: "resize",
            });
            return self.poisoned();
        }
        let idx: Vec<usize> = (0..m).map(|i| i % n.max(1)).collect();
        self.gather_positions(
            ArrayD::from_shape_vec(IxDyn(shape), idx).unwrap_or_else(|_| unreachable!()),
        )
    }

    /// The diagonal of a 2-D array (NumPy's `diag` of a matrix).
    ///
    /// # Panics
    /// Stops the program unless the array is 2-D.
    #[track_caller]
    pub fn diag(&self) -> Priv<Array1<f64>> {
        if self.ndim() != 2 {
            fail(
                ShapeError::Rank {
                    expected: 2,
                    actual: self.shape().to_vec(),
                }
                .into(),
            );
            return self.poisoned();
        }
        let pos = self.positions();
        let d: Vec<usize> = (0..self.shape()[0].min(self.shape()[1]))
            .map(|i| pos[[i, i]])
            .collect();
        let n = d.len();
        self.gather_positions(
            ArrayD::from_shape_vec(IxDyn(&[n]), d).unwrap_or_else(|_| unreachable!()),
        )
    }

    /// The sum of the diagonal (NumPy's `trace`).
    ///
    /// # Panics
    /// As [`Priv::diag`].
    #[track_caller]
    pub fn trace(&self) -> Priv<f64> {
        self.diag().sum()
    }

    /// `other` appended along `axis` (NumPy's `append` with an axis).
    ///
    /// # Panics
    /// Stops the program when the shapes differ off `axis`.
    #[track_caller]
    pub fn append(&self, other: &Priv<A>, axis: Axis) -> Priv<A> {
        Priv::from_result(
            concat_data(&[&self.data, &other.data], axis),
            self.eng.clone(),
        )
    }

    /// Cumulative sum along `axis` (local).
    ///
    /// # Panics
    /// Stops the program when the axis is out of bounds.
    #[track_caller]
    pub fn cumsum(&self, axis: Axis) -> Priv<A> {
        if let Err(e) = self.check_axis(axis) {
            fail(e);
            return self.clone();
        }
        // Ring elements have `+` but not `+=`.
        #[allow(clippy::assign_op_pattern)]
        let d = map_data!(&self.data, a => {
            let mut a = a.clone();
            a.accumulate_axis_inplace(axis, |&prev, cur| *cur = *cur + prev);
            a
        });
        Priv::new(d, self.eng.clone())
    }

    /// Cumulative product along `axis`: a parallel prefix (`⌈log2 n⌉` rounds of one
    /// batched multiplication).
    ///
    /// # Panics
    /// Stops the program when the axis is out of bounds.
    #[track_caller]
    pub fn cumprod(&self, axis: Axis) -> Priv<A> {
        if let Err(e) = self.check_axis(axis) {
            fail(e);
            return self.clone();
        }
        let r = (|| {
            let ops = Ops { eng: &self.eng };
            let ax = axis.index();
            let n = self.shape()[ax];
            let pos = self.positions();
            let one = ops.affine(&self.data.gather(&[0], &[1]), 0.0, 1.0)?;
            let mut cur = self.data.clone();
            let mut s = 1;
            while s < n {
                // shifted[i] = cur[i - s] along the axis, or 1.
                let total = self.len();
                let shifted_idx: Vec<usize> = pos
                    .indexed_iter()
                    .map(|(ix, &p)| {
                        let i = ix[ax];
                        if i >= s {
                            p - s * pos.strides()[ax] as usize
                        } else {
                            total
                        }
                    })
                    .collect();
                let shifted = Data::concat_flat(&[&cur, &one]).gather(&shifted_idx, self.shape());
                cur = ops.mul(&cur, &shifted)?;
                s *= 2;
            }
            Ok(cur)
        })();
        Priv::from_result(r, self.eng.clone())
    }

    /// Product of all elements: a tree of multiplications (`⌈log2 n⌉` rounds).
    #[track_caller]
    pub fn prod(&self) -> Priv<f64> {
        let r = (|| {
            let ops = Ops { eng: &self.eng };
            let mut cur = self.data.reshape(&[self.len()])?;
            let mut m = self.len();
            if m == 0 {
                return ops.affine(&self.data.sum_all(), 0.0, 1.0);
            }
            while m > 1 {
                let h = m / 2;
                let a = cur.gather(&(0..h).collect::<Vec<_>>(), &[h]);
                let b = cur.gather(&(h..2 * h).collect::<Vec<_>>(), &[h]);
                let p = ops.mul(&a, &b)?;
                cur = if m % 2 == 1 {
                    Data::concat_flat(&[&p, &cur.gather(&[m - 1], &[1])])
                } else {
                    p
                };
                m = h + m % 2;
            }
            Ok(cur.reshape(&[])?)
        })();
        Priv::from_result(r, self.eng.clone())
    }

    /// Peak to peak: `max − min` (NumPy's `ptp`).
    #[track_caller]
    pub fn ptp(&self) -> Priv<f64> {
        &self.max() - &self.min()
    }

    /// Variance of all elements (`ddof = 0`): `mean((x − mean)²)`.
    #[track_caller]
    pub fn var(&self) -> Priv<f64> {
        let d = self.clone().into_dyn() - &self.mean();
        (&d * &d).mean()
    }

    /// Standard deviation of all elements (`ddof = 0`).
    #[track_caller]
    pub fn std(&self) -> Priv<f64> {
        self.var().sqrt()
    }

    /// Variance along `axis` (`ddof = 0`).
    ///
    /// # Panics
    /// Stops the program when the axis is out of bounds or empty.
    #[track_caller]
    pub fn var_axis(&self, axis: Axis) -> Priv<ArrayD<f64>> {
        let m = self.mean_axis(axis).into_dyn();
        let mut kept = self.shape().to_vec();
        kept[axis.index()] = 1;
        let d = self.clone().into_dyn() - m.reshape(kept);
        (&d * &d).into_dyn().mean_axis(axis)
    }

    /// Standard deviation along `axis` (`ddof = 0`).
    ///
    /// # Panics
    /// As [`Priv::var_axis`].
    #[track_caller]
    pub fn std_axis(&self, axis: Axis) -> Priv<ArrayD<f64>> {
        self.var_axis(axis).sqrt()
    }

    /// Outer product of the flattened arrays (NumPy's `outer`).
    #[track_caller]
    pub fn outer<B: PrivType>(&self, other: &Priv<B>) -> Priv<ndarray::Array2<f64>> {
        let a = self.reshape((self.len(), 1));
        let b = other.reshape((1, other.len()));
        &a * &b
    }

    /// 1 when every element is nonzero, else 0 (secret; NumPy's `all`).
    #[track_caller]
    pub fn all(&self) -> Priv<f64> {
        self.clone().into_dyn().ne(0.0_f64).min()
    }

    /// 1 when some element is nonzero, else 0 (secret; NumPy's `any`).
    #[track_caller]
    pub fn any(&self) -> Priv<f64> {
        self.clone().into_dyn().ne(0.0_f64).max()
    }

    /// The array sorted along the last axis: every element ends where a full sort
    /// puts it, which satisfies NumPy's `partition(kth)` for every `kth`.
    #[track_caller]
    pub fn partition(&self, _kth: usize) -> Priv<A> {
        self.sort()
    }

    /// Secret indices of a full sort along the last axis, which satisfy NumPy's
    /// `argpartition(kth)` for every `kth`.
    #[track_caller]
    pub fn argpartition(&self, _kth: usize) -> Priv<A> {
        self.argsort()
    }

    /// For a sorted 1-D secret array, the secret positions where `values` would be
    /// inserted to keep it sorted (NumPy's `searchsorted`, side "left"): for each value,
    /// the number of elements below it. One batched comparison of every pair.
    #[track_caller]
    pub fn searchsorted<P: Public>(&self, values: P) -> Priv<ArrayD<f64>> {
        let v = values.view_dyn().to_owned();
        let n = self.len();
        let m = v.len();
        let r = (|| {
            let a = self.data.reshape(&[1, n])?;
            let vv = v
                .into_shape_with_order(IxDyn(&[m, 1]))
                .unwrap_or_else(|_| unreachable!());
            // [a_j - v_i < 0] = [a_j < v_i], (m, n); summed over j.
            let z = self
                .eng
                .binary_public(BinOp::Sub, &a, &vv.view(), false, &[m, n])?;
            let below = self
                .eng
                .compare(&z, crate::engine::CmpKind::Negative, false)?;
            Ok(below.sum_axis(1)?)
        })();
        Priv::from_result(r, self.eng.clone())
    }
}

/// `np.where(cond, a, b)` for a secret 0/1 `cond`: `b + cond·(a − b)`, one
/// multiplication, same shape (broadcast) whatever the condition.
#[track_caller]
pub fn select<C, T, F>(
    cond: &Priv<C>,
    if_true: &Priv<T>,
    if_false: &Priv<F>,
) -> Priv<<C as crate::types::Broadcast<<T as crate::types::Broadcast<F>>::Output>>::Output>
where
    C: PrivType + crate::types::Broadcast<<T as crate::types::Broadcast<F>>::Output>,
    T: PrivType + crate::types::Broadcast<F>,
    F: PrivType,
{
    let d = if_true - if_false;
    let ops = Ops { eng: &cond.eng };
    // A comparison result carries its integer-encoded bit: the product with it is
    // exact (no truncation), so the selection is exact.
    let cd = match &cond.bits {
        Some(bits) => match ops.bin(crate::engine::BinOp::MulInt, bits, &d.data) {
            Ok(cd) => cd,
            Err(e) => {
                fail(e);
                return cond.poisoned();
            }
        },
        None => (cond * &d).data,
    };
    let r = ops.add(&if_false.data, &cd);
    Priv::from_result(r, cond.eng.clone())
}

/// Concatenation along `axis` of values of one shape off that axis.
#[track_caller]
fn concat_data(parts: &[&Data], axis: Axis) -> Result<Data> {
    let mut offset = 0;
    let mut pos_parts = Vec::with_capacity(parts.len());
    for p in parts {
        let n: usize = p.shape().iter().product();
        pos_parts.push(
            ArrayD::from_shape_vec(IxDyn(p.shape()), (offset..offset + n).collect())
                .unwrap_or_else(|_| unreachable!()),
        );
        offset += n;
    }
    let views: Vec<_> = pos_parts.iter().map(|a| a.view()).collect();
    let pos = ndarray::concatenate(axis, &views).map_err(|_| {
        Error::Shape(ShapeError::Broadcast {
            left: parts[0].shape().to_vec(),
            right: parts.last().map(|p| p.shape().to_vec()).unwrap_or_default(),
        })
    })?;
    let flat: Vec<usize> = pos.iter().copied().collect();
    Ok(Data::concat_flat(parts).gather(&flat, pos.shape()))
}

/// Joins secrets along an existing axis (NumPy's `concatenate`).
///
/// # Errors
/// When the list is empty or the shapes differ off `axis`.
#[track_caller]
pub fn concatenate<A: PrivType>(parts: &[&Priv<A>], axis: Axis) -> Result<Priv<ArrayD<f64>>> {
    let first = parts.first().ok_or(Error::EmptyInput {
        operation: "concatenate",
    })?;
    let data: Vec<&Data> = parts.iter().map(|p| &p.data).collect();
    Ok(Priv::new(concat_data(&data, axis)?, first.eng.clone()))
}

/// Joins secrets of one shape along a new axis (NumPy's `stack`).
///
/// # Errors
/// When the list is empty, the shapes differ, or `axis` is beyond the new rank.
#[track_caller]
pub fn stack<A: PrivType>(parts: &[&Priv<A>], axis: Axis) -> Result<Priv<ArrayD<f64>>> {
    let first = parts
        .first()
        .ok_or(Error::EmptyInput { operation: "stack" })?;
    let nd = first.ndim();
    if axis.index() > nd {
        return Err(ShapeError::Axis {
            axis: axis.index(),
            ndim: nd + 1,
        }
        .into());
    }
    let mut expanded = Vec::with_capacity(parts.len());
    for p in parts {
        if p.shape() != first.shape() {
            return Err(ShapeError::Broadcast {
                left: first.shape().to_vec(),
                right: p.shape().to_vec(),
            }
            .into());
        }
        let mut s = p.shape().to_vec();
        s.insert(axis.index(), 1);
        expanded.push(p.data.reshape(&s)?);
    }
    let refs: Vec<&Data> = expanded.iter().collect();
    Ok(Priv::new(concat_data(&refs, axis)?, first.eng.clone()))
}
