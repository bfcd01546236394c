//! NumPy broadcasting of shapes, and element-wise maps over broadcast operands.

use crate::error::ShapeError;
use ndarray::{ArrayD, IxDyn, Zip};

/// The shape two operands broadcast to, by NumPy's rules: align trailing axes;
/// two lengths are compatible when equal or when one of them is 1.
///
/// # Errors
/// [`ShapeError::Broadcast`] naming both shapes when they are incompatible.
pub fn broadcast_shape(left: &[usize], right: &[usize]) -> Result<Vec<usize>, ShapeError> {
    let n = left.len().max(right.len());
    let mut out = vec![0; n];
    for (k, o) in out.iter_mut().enumerate() {
        let l = dim_from_end(left, n - 1 - k);
        let r = dim_from_end(right, n - 1 - k);
        *o = match (l, r) {
            (a, b) if a == b => a,
            (1, b) => b,
            (a, 1) => a,
            _ => {
                return Err(ShapeError::Broadcast {
                    left: left.to_vec(),
                    right: right.to_vec(),
                });
            }
        };
    }
    Ok(out)
}

fn dim_from_end(shape: &[usize], k: usize) -> usize {
    if k < shape.len() {
        shape[shape.len() - 1 - k]
    } else {
        1
    }
}

/// `f(a, b)` element-wise over `a` and `b` broadcast to `shape` (already checked).
pub(crate) fn zip_map<T: Copy, U: Copy, V>(
    a: &ArrayD<T>,
    b: &ArrayD<U>,
    shape: &[usize],
    f: impl Fn(T, U) -> V,
) -> ArrayD<V> {
    let sh = IxDyn(shape);
    match (a.broadcast(sh.clone()), b.broadcast(sh)) {
        (Some(av), Some(bv)) => Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)),
        _ => unreachable!("zip_map called with unchecked shapes"),
    }
}

/// `a` broadcast to `shape` (already checked) as an owned array.
pub(crate) fn broadcast_to<T: Clone>(a: &ArrayD<T>, shape: &[usize]) -> ArrayD<T> {
    if a.shape() == shape {
        return a.clone();
    }
    match a.broadcast(IxDyn(shape)) {
        Some(v) => v.to_owned(),
        None => unreachable!("broadcast_to called with unchecked shapes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_rules() {
        assert_eq!(broadcast_shape(&[4, 3], &[3]).unwrap(), vec![4, 3]);
        assert_eq!(
            broadcast_shape(&[2, 4, 3], &[2, 1, 3]).unwrap(),
            vec![2, 4, 3]
        );
        assert_eq!(broadcast_shape(&[], &[5, 2]).unwrap(), vec![5, 2]);
        assert_eq!(
            broadcast_shape(&[8, 1, 6, 1], &[7, 1, 5]).unwrap(),
            vec![8, 7, 6, 5]
        );
        let e = broadcast_shape(&[4, 3], &[4]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "operands could not be broadcast together with shapes [4, 3] and [4]"
        );
    }
}
