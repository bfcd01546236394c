//! Machine-learning programs written with `#[private]`, in the NumPy style of the
//! paper's Figure 4. The same functions run on the cleartext engine, which is how
//! their fidelity is measured.

use crate::prelude::*;

/// Logistic regression by mini-batch SGD: `iterations` steps over consecutive batches
/// of `batch` rows (wrapping around), learning rate `lr`, the paper's model
/// `σ(X·w)` with the default (fast, accurate) sigmoid. Returns the trained weights.
#[private]
pub fn logistic_regression(
    x: Priv<Array2<f64>>,
    y: Priv<Array1<f64>>,
    w0: Priv<Array1<f64>>,
    batch: usize,
    iterations: usize,
    lr: f64,
) -> Priv<Array1<f64>> {
    let n = x.shape()[0];
    let mut w = w0;
    for it in 0..iterations {
        let start = (it * batch) % n;
        let end = (start + batch).min(n);
        let xb = x.slice(s![start..end, ..]);
        let yb = y.slice(s![start..end]);
        let p = xb.dot(&w).sigmoid();
        let grad = xb.t().dot(&(p - yb));
        w = w - grad * (lr / (end - start) as f64);
    }
    w
}

/// Inference with the feed-forward network 784-625-625-10 (ReLU, then argmax): secret
/// images (one per row of `x`) and a secret model; the secret predicted digits.
#[private]
pub fn mlp_predict(
    x: Priv<Array2<f64>>,
    w1: Priv<Array2<f64>>,
    b1: Priv<Array1<f64>>,
    w2: Priv<Array2<f64>>,
    b2: Priv<Array1<f64>>,
    w3: Priv<Array2<f64>>,
    b3: Priv<Array1<f64>>,
) -> Priv<Array1<f64>> {
    let h1 = (x.dot(&w1) + b1).relu();
    let h2 = (h1.dot(&w2) + b2).relu();
    let scores = h2.dot(&w3) + b3;
    scores.argmax_axis(Axis(1))
}

/// k-means (Lloyd's algorithm) for `iterations` rounds from the centroids `c0`
/// (`k × d`): the assignment of each row is a secret one-hot (argmin of the squared
/// distances), and each centroid the mean of its rows (an empty cluster keeps 0 rows'
/// mean, 0). Returns the centroids.
#[private]
pub fn kmeans(x: Priv<Array2<f64>>, c0: Priv<Array2<f64>>, iterations: usize) -> Priv<Array2<f64>> {
    let n = x.shape()[0];
    let k = c0.shape()[0];
    let labels = Array2::from_shape_fn((1, k), |(_, j)| j as f64);
    let mut c = c0;
    for _ in 0..iterations {
        // ||x - c||² up to the per-row constant ||x||²: ||c||² - 2 x·c.
        let cross = x.dot(&c.t());
        let norms = (c * c).sum_axis(Axis(1));
        let d = norms - cross * 2.0;
        let nearest = d.argmin_axis(Axis(1)).reshape((n, 1));
        let onehot = nearest.eq(&labels);
        let counts = onehot.sum_axis(Axis(0)).maximum(1.0);
        let sums = onehot.t().dot(&x);
        c = sums * counts.reciprocal().reshape((k, 1));
    }
    c
}

/// Matrix factorization `R ≈ U Vᵀ` by gradient descent on the observed entries
/// (`mask` is 1 where a rating exists; the mask is secret too), with L2
/// regularization `lambda`. Returns `(U, V)`.
#[private]
pub fn matrix_factorization(
    r: Priv<Array2<f64>>,
    mask: Priv<Array2<f64>>,
    u0: Priv<Array2<f64>>,
    v0: Priv<Array2<f64>>,
    iterations: usize,
    lr: f64,
    lambda: f64,
) -> (Priv<Array2<f64>>, Priv<Array2<f64>>) {
    let mut u = u0;
    let mut v = v0;
    for _ in 0..iterations {
        let e = (u.dot(&v.t()) - r) * mask;
        let gu = e.dot(&v) + u * lambda;
        let gv = e.t().dot(&u) + v * lambda;
        u = u - gu * lr;
        v = v - gv * lr;
    }
    (u, v)
}

/// The secret inputs `names` (row slices of one data set, one per data owner)
/// stacked into one matrix, in order.
///
/// # Errors
/// An unknown input, or slices whose column counts differ.
pub fn rows(s: &Session, names: &[&str]) -> Result<Priv<Array2<f64>>> {
    let parts = names
        .iter()
        .map(|n| s.input::<Array2<f64>>(n))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&Priv<Array2<f64>>> = parts.iter().collect();
    concatenate(&refs, Axis(0))?.into_type()
}

/// [`rows`] for vectors (labels).
///
/// # Errors
/// An unknown input.
pub fn entries(s: &Session, names: &[&str]) -> Result<Priv<Array1<f64>>> {
    let parts = names
        .iter()
        .map(|n| s.input::<Array1<f64>>(n))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&Priv<Array1<f64>>> = parts.iter().collect();
    concatenate(&refs, Axis(0))?.into_type()
}

/// [`mlp_predict`] on the images in input `images` with the weights uploaded as inputs
/// `w1, b1, w2, b2, w3, b3` (the names in `models/mnist-mlp.safetensors`).
///
/// # Errors
/// A missing input or one of the wrong rank.
pub fn mlp_predict_inputs(s: &Session, images: &str) -> Result<Priv<Array1<f64>>> {
    let m = |k: &str| s.input::<Array2<f64>>(k);
    let v = |k: &str| s.input::<Array1<f64>>(k);
    Ok(mlp_predict(
        m(images)?,
        m("w1")?,
        v("b1")?,
        m("w2")?,
        v("b2")?,
        m("w3")?,
        v("b3")?,
    ))
}

/// The share of rows of `x` (with a bias column) that a public model `w` classifies
/// correctly against labels `y` in `{0, 1}`.
pub fn accuracy(x: &Array2<f64>, y: &Array1<f64>, w: &Array1<f64>) -> f64 {
    let z = x.dot(w);
    let hits = z
        .iter()
        .zip(y)
        .filter(|(z, y)| (**z > 0.0) == (**y > 0.5))
        .count();
    hits as f64 / y.len().max(1) as f64
}
