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
