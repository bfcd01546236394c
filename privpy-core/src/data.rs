//! What one party holds for a secret value: a cleartext array (cleartext engine), a
//! share in one of the rings (`S1`, `S2`), or only the shape (`Sa`, `Sb`).

use crate::error::ShapeError;
use crate::ring::{Z64, Z128, Z256};
use ndarray::{ArrayD, Axis, IxDyn};

/// The element type the assistants hold: nothing, so an array of it is only a shape.
/// Arrays of a zero-sized type allocate nothing, and ndarray's own shape logic
/// (reshape, transpose, broadcasting, reductions) then applies to them unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Nothing;

impl std::ops::Add for Nothing {
    type Output = Nothing;
    fn add(self, _: Nothing) -> Nothing {
        Nothing
    }
}

impl num_traits::Zero for Nothing {
    fn zero() -> Nothing {
        Nothing
    }
    fn is_zero(&self) -> bool {
        true
    }
}

/// One party's view of a secret array.
#[derive(Clone)]
pub(crate) enum Data {
    Clear(ArrayD<f64>),
    Z64(ArrayD<Z64>),
    Z128(ArrayD<Z128>),
    Z256(ArrayD<Z256>),
    Shape(ArrayD<Nothing>),
}

/// Applies a shape-only array operation to whatever a party holds.
macro_rules! map_data {
    ($d:expr, $a:ident => $e:expr) => {
        match $d {
            Data::Clear($a) => Data::Clear($e),
            Data::Z64($a) => Data::Z64($e),
            Data::Z128($a) => Data::Z128($e),
            Data::Z256($a) => Data::Z256($e),
            Data::Shape($a) => Data::Shape($e),
        }
    };
}
pub(crate) use map_data;

macro_rules! with_data {
    ($d:expr, $a:ident => $e:expr) => {
        match $d {
            Data::Clear($a) => $e,
            Data::Z64($a) => $e,
            Data::Z128($a) => $e,
            Data::Z256($a) => $e,
            Data::Shape($a) => $e,
        }
    };
}

impl Data {
    /// A shape-only value.
    pub(crate) fn shape_only(shape: &[usize]) -> Data {
        Data::Shape(ArrayD::from_elem(IxDyn(shape), Nothing))
    }

    pub(crate) fn shape(&self) -> &[usize] {
        with_data!(self, a => a.shape())
    }

    pub(crate) fn reshape(&self, to: &[usize]) -> Result<Data, ShapeError> {
        let len = self.shape().iter().product::<usize>();
        if to.iter().product::<usize>() != len {
            return Err(ShapeError::Reshape {
                from: self.shape().to_vec(),
                from_len: len,
                to: to.to_vec(),
            });
        }
        Ok(map_data!(self, a => a
            .to_shape(IxDyn(to))
            .unwrap_or_else(|_| unreachable!("length checked"))
            .into_owned()))
    }

    /// `self` with shape `to`, borrowed (no copy) when it already has it.
    pub(crate) fn reshaped(&self, to: &[usize]) -> Result<std::borrow::Cow<'_, Data>, ShapeError> {
        if self.shape() == to {
            Ok(std::borrow::Cow::Borrowed(self))
        } else {
            self.reshape(to).map(std::borrow::Cow::Owned)
        }
    }

    /// [`Data::reshape`], consuming `self` (no copy when the shape is already `to`).
    pub(crate) fn into_shape(self, to: &[usize]) -> Result<Data, ShapeError> {
        if self.shape() == to {
            Ok(self)
        } else {
            self.reshape(to)
        }
    }

    pub(crate) fn reversed_axes(&self) -> Data {
        map_data!(self, a => a.clone().reversed_axes())
    }

    pub(crate) fn permuted_axes(&self, axes: &[usize]) -> Data {
        map_data!(self, a => a.clone().permuted_axes(IxDyn(axes)))
    }

    pub(crate) fn sum_axis(&self, axis: usize) -> Result<Data, ShapeError> {
        let ndim = self.shape().len();
        if axis >= ndim {
            return Err(ShapeError::Axis { axis, ndim });
        }
        Ok(map_data!(self, a => a.sum_axis(Axis(axis))))
    }

    /// `out[k] = flat(self)[idx[k]]` (row-major), shaped `shape`: a public re-indexing.
    pub(crate) fn gather(&self, idx: &[usize], shape: &[usize]) -> Data {
        map_data!(self, a => {
            let a = a.as_standard_layout();
            let flat = a.as_slice().unwrap_or_else(|| unreachable!("standard layout"));
            ArrayD::from_shape_vec(IxDyn(shape), idx.iter().map(|&i| flat[i]).collect())
                .unwrap_or_else(|_| unreachable!("one index per output element"))
        })
    }

    /// The parts stacked along a new leading axis (all parts have one shape).
    pub(crate) fn stack(parts: &[&Data]) -> Data {
        let n = parts[0].shape().iter().product::<usize>();
        let mut shape = vec![parts.len()];
        shape.extend_from_slice(parts[0].shape());
        let joined = Data::concat_flat(parts);
        let idx: Vec<usize> = (0..n * parts.len()).collect();
        joined.gather(&idx, &shape)
    }

    /// All parts flattened and concatenated into one vector.
    pub(crate) fn concat_flat(parts: &[&Data]) -> Data {
        macro_rules! cat {
            ($v:ident) => {{
                let mut out = Vec::new();
                for p in parts {
                    match p {
                        Data::$v(a) => out.extend(a.iter().copied()),
                        _ => unreachable!("parts of one engine"),
                    }
                }
                let n = out.len();
                Data::$v(
                    ArrayD::from_shape_vec(IxDyn(&[n]), out)
                        .unwrap_or_else(|_| unreachable!("1-D")),
                )
            }};
        }
        match parts[0] {
            Data::Clear(_) => cat!(Clear),
            Data::Z64(_) => cat!(Z64),
            Data::Z128(_) => cat!(Z128),
            Data::Z256(_) => cat!(Z256),
            Data::Shape(_) => {
                let n = parts
                    .iter()
                    .map(|p| p.shape().iter().product::<usize>())
                    .sum::<usize>();
                Data::shape_only(&[n])
            }
        }
    }

    /// Part `k` along the leading axis.
    pub(crate) fn index0(&self, k: usize) -> Data {
        map_data!(self, a => a.index_axis(Axis(0), k).to_owned())
    }

    pub(crate) fn sum_all(&self) -> Data {
        map_data!(self, a => ArrayD::from_elem(IxDyn(&[]), a.sum()))
    }
}

/// Typed access to a [`Data`] variant; implemented by every element type a party holds.
pub(crate) trait Held: Sized + Clone + 'static {
    fn wrap(a: ArrayD<Self>) -> Data;
    fn get(d: &Data) -> &ArrayD<Self>;
}

macro_rules! held {
    ($t:ty, $v:ident) => {
        impl Held for $t {
            fn wrap(a: ArrayD<$t>) -> Data {
                Data::$v(a)
            }
            fn get(d: &Data) -> &ArrayD<$t> {
                match d {
                    Data::$v(a) => a,
                    _ => unreachable!(concat!(
                        "engine received a value that is not ",
                        stringify!($t)
                    )),
                }
            }
        }
    };
}
held!(f64, Clear);
held!(Z64, Z64);
held!(Z128, Z128);
held!(Z256, Z256);
