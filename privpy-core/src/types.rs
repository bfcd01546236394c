//! Which cleartext types a [`crate::Priv`] can stand for, and how they combine.

use crate::data::Data;
use crate::error::ShapeError;
use ndarray::{
    Array, Array1, Array2, ArrayD, ArrayView, ArrayViewD, Dimension, Ix0, Ix1, Ix2, IxDyn,
};

mod sealed {
    pub trait Sealed {}
}

/// A cleartext type a secret can stand for: `f64` (a secret scalar), `Array1<f64>`,
/// `Array2<f64>` or `ArrayD<f64>`.
pub trait PrivType: sealed::Sealed + Sized + 'static {
    /// The type left after reducing one axis (`Array2 → Array1 → f64`).
    type Smaller: PrivType;
    /// The number of dimensions, `None` for `ArrayD`.
    const NDIM: Option<usize>;
    /// Converts a dynamic-dimensional array of the right rank into `Self`.
    ///
    /// # Errors
    /// [`ShapeError::Rank`] when the rank differs.
    fn from_dyn(a: ArrayD<f64>) -> Result<Self, ShapeError>;
}

impl sealed::Sealed for f64 {}
impl PrivType for f64 {
    type Smaller = f64;
    const NDIM: Option<usize> = Some(0);
    fn from_dyn(a: ArrayD<f64>) -> Result<Self, ShapeError> {
        let shape = a.shape().to_vec();
        a.into_dimensionality::<Ix0>()
            .map(|a| a.into_scalar())
            .map_err(|_| ShapeError::Rank {
                expected: 0,
                actual: shape,
            })
    }
}

macro_rules! array_type {
    ($t:ty, $ix:ty, $smaller:ty, $n:expr) => {
        impl sealed::Sealed for $t {}
        impl PrivType for $t {
            type Smaller = $smaller;
            const NDIM: Option<usize> = $n;
            fn from_dyn(a: ArrayD<f64>) -> Result<Self, ShapeError> {
                let shape = a.shape().to_vec();
                a.into_dimensionality::<$ix>()
                    .map_err(|_| ShapeError::Rank {
                        expected: $n.unwrap_or(0),
                        actual: shape,
                    })
            }
        }
    };
}
array_type!(Array1<f64>, Ix1, f64, Some(1));
array_type!(Array2<f64>, Ix2, Array1<f64>, Some(2));
array_type!(ArrayD<f64>, IxDyn, ArrayD<f64>, None::<usize>);

/// The type of `a op b` under NumPy broadcasting: the higher rank wins, and a
/// dynamic-dimensional operand makes the result dynamic-dimensional.
pub trait Broadcast<B: PrivType>: PrivType {
    /// The result type.
    type Output: PrivType;
}

macro_rules! broadcast_table {
    ($($a:ty, $b:ty => $o:ty;)*) => { $(impl Broadcast<$b> for $a { type Output = $o; })* };
}
broadcast_table! {
    f64, f64 => f64;
    f64, Array1<f64> => Array1<f64>;
    f64, Array2<f64> => Array2<f64>;
    f64, ArrayD<f64> => ArrayD<f64>;
    Array1<f64>, f64 => Array1<f64>;
    Array1<f64>, Array1<f64> => Array1<f64>;
    Array1<f64>, Array2<f64> => Array2<f64>;
    Array1<f64>, ArrayD<f64> => ArrayD<f64>;
    Array2<f64>, f64 => Array2<f64>;
    Array2<f64>, Array1<f64> => Array2<f64>;
    Array2<f64>, Array2<f64> => Array2<f64>;
    Array2<f64>, ArrayD<f64> => ArrayD<f64>;
    ArrayD<f64>, f64 => ArrayD<f64>;
    ArrayD<f64>, Array1<f64> => ArrayD<f64>;
    ArrayD<f64>, Array2<f64> => ArrayD<f64>;
    ArrayD<f64>, ArrayD<f64> => ArrayD<f64>;
}

/// The type of `a.dot(b)`, as in ndarray: vector·vector is a scalar,
/// matrix·vector and vector·matrix are vectors, matrix·matrix is a matrix.
pub trait DotWith<B: PrivType>: PrivType {
    /// The result type.
    type Output: PrivType;
}
impl DotWith<Array1<f64>> for Array1<f64> {
    type Output = f64;
}
impl DotWith<Array1<f64>> for Array2<f64> {
    type Output = Array1<f64>;
}
impl DotWith<Array2<f64>> for Array1<f64> {
    type Output = Array1<f64>;
}
impl DotWith<Array2<f64>> for Array2<f64> {
    type Output = Array2<f64>;
}

/// A public (cleartext) operand: `f64`, an owned array or a view of `f64`, or a
/// reference to one.
pub trait Public {
    /// The [`PrivType`] the operand has.
    type Kind: PrivType;
    /// The operand as a dynamic-dimensional view.
    fn view_dyn(&self) -> ArrayViewD<'_, f64>;
}

impl Public for f64 {
    type Kind = f64;
    fn view_dyn(&self) -> ArrayViewD<'_, f64> {
        ArrayViewD::from_shape(IxDyn(&[]), std::slice::from_ref(self))
            .unwrap_or_else(|_| unreachable!("one element, zero dimensions"))
    }
}

impl<D: Dimension> Public for Array<f64, D>
where
    Array<f64, D>: PrivType,
{
    type Kind = Array<f64, D>;
    fn view_dyn(&self) -> ArrayViewD<'_, f64> {
        self.view().into_dyn()
    }
}

impl<D: Dimension> Public for ArrayView<'_, f64, D>
where
    Array<f64, D>: PrivType,
{
    type Kind = Array<f64, D>;
    fn view_dyn(&self) -> ArrayViewD<'_, f64> {
        self.view().into_dyn()
    }
}

impl<T: Public + ?Sized> Public for &T {
    type Kind = T::Kind;
    fn view_dyn(&self) -> ArrayViewD<'_, f64> {
        (**self).view_dyn()
    }
}

/// A shape argument for `reshape`: `n` gives a vector, `(r, c)` a matrix,
/// a slice or `Vec` of lengths a dynamic-dimensional array.
pub trait ShapeArg {
    /// The result type.
    type Output: PrivType;
    /// The lengths.
    fn dims(&self) -> Vec<usize>;
}

impl ShapeArg for usize {
    type Output = Array1<f64>;
    fn dims(&self) -> Vec<usize> {
        vec![*self]
    }
}

impl ShapeArg for (usize, usize) {
    type Output = Array2<f64>;
    fn dims(&self) -> Vec<usize> {
        vec![self.0, self.1]
    }
}

impl ShapeArg for &[usize] {
    type Output = ArrayD<f64>;
    fn dims(&self) -> Vec<usize> {
        self.to_vec()
    }
}

impl<const N: usize> ShapeArg for [usize; N] {
    type Output = ArrayD<f64>;
    fn dims(&self) -> Vec<usize> {
        self.to_vec()
    }
}

impl ShapeArg for Vec<usize> {
    type Output = ArrayD<f64>;
    fn dims(&self) -> Vec<usize> {
        self.clone()
    }
}

/// Checks that a value of dynamic shape fits the static rank of `A`.
pub(crate) fn check_rank<A: PrivType>(d: &Data) -> Result<(), ShapeError> {
    match A::NDIM {
        Some(n) if n != d.shape().len() => Err(ShapeError::Rank {
            expected: n,
            actual: d.shape().to_vec(),
        }),
        _ => Ok(()),
    }
}
