//! Model weights in safetensors files: a model trained anywhere (PyTorch included)
//! loads the same way. The tensor names and layouts each model expects are documented
//! with it (e.g. [`crate::programs::LeNet5Bn`]).

use crate::data::DataError;
use ndarray::{ArrayD, IxDyn};
use std::collections::BTreeMap;
use std::path::Path;

fn bad(path: &Path, reason: String) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        place: "safetensors".into(),
        reason,
    }
}

/// Every tensor of a safetensors file, as `f64` arrays (F32 and F64 tensors, and I64
/// ones such as the `num_batches_tracked` counters in a PyTorch state dict).
///
/// # Errors
/// An unreadable file, a malformed header, or a tensor of another dtype.
pub fn load_safetensors(path: &Path) -> Result<BTreeMap<String, ArrayD<f64>>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(path, e.to_string()))?;
    let mut out = BTreeMap::new();
    for name in st.names() {
        let t = st.tensor(name).map_err(|e| bad(path, e.to_string()))?;
        let values: Vec<f64> = match t.dtype() {
            safetensors::Dtype::F32 => t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            safetensors::Dtype::F64 => t
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            safetensors::Dtype::I64 => t
                .data()
                .chunks_exact(8)
                .map(|c| {
                    i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64
                })
                .collect(),
            other => {
                return Err(bad(
                    path,
                    format!("tensor {name:?} has dtype {other:?}; F32, F64 or I64 expected"),
                ));
            }
        };
        let a = ArrayD::from_shape_vec(IxDyn(t.shape()), values)
            .map_err(|e| bad(path, e.to_string()))?;
        out.insert(name.to_string(), a);
    }
    Ok(out)
}

/// Writes tensors as F32 (little-endian) to a safetensors file.
///
/// # Errors
/// When the file cannot be written.
pub fn save_safetensors(path: &Path, tensors: &[(&str, ArrayD<f64>)]) -> Result<(), DataError> {
    let bufs: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, a)| {
            let bytes = a.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
            (n.to_string(), a.shape().to_vec(), bytes)
        })
        .collect();
    let mut views = Vec::new();
    for (n, shape, b) in &bufs {
        let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
            .map_err(|e| bad(path, e.to_string()))?;
        views.push((n.clone(), v));
    }
    let out = safetensors::serialize(views, None).map_err(|e| bad(path, e.to_string()))?;
    std::fs::write(path, out).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}
