//! Machine-learning programs written with `#[private]`, in the NumPy style of the
//! paper's Figure 4. The same functions run on the cleartext engine, which is how
//! their fidelity is measured.

use crate::prelude::*;

/// Logistic regression by mini-batch SGD: `iterations` steps over consecutive batches
/// of `batch` rows (wrapping around), learning rate `lr`, the paper's model
/// `σ(X·w)` (the sigmoid of [`training_sigmoid`]). Returns the trained weights.
/// `|X·w|` must stay below twice the preset's input bound (`2^32` by default).
#[private(crate = crate)]
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
        let p = training_sigmoid(&xb.dot(&w));
        let grad = xb.t().dot(&(p - yb));
        w = w - grad * (lr / (end - start) as f64);
    }
    w
}

/// Logistic regression by mini-batch SGD streamed from disk: one pass (epoch) over
/// the rows of a [`privpy_core::LargeArray`] `x` (features) with labels `y`
/// (0/1, one column, as many rows), in batches of `batch` rows, starting from
/// `w0`; `on_batch` is called after each batch with the rows done so far (for
/// progress reports). Each batch is read from the servers' files as an in-memory
/// secret: memory holds one batch, whatever the number of rows. The paper's
/// `LargeArray` training (PrivPy §5).
///
/// # Errors
/// [`privpy_core::Error::OverBudget`] when one batch is larger than the memory
/// budget; a shape mismatch between `x`, `y` and `w0`; a storage error.
#[private(crate = crate)]
pub fn logistic_regression_epoch(
    x: &LargeArray,
    y: &LargeArray,
    w0: Priv<Array1<f64>>,
    batch: usize,
    lr: f64,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Priv<Array1<f64>>> {
    let mut w = w0;
    let labels = y.batches(batch)?;
    for (b, l) in x.batches(batch)?.zip(labels) {
        let (rows, xb) = b?;
        let (_, yb) = l?;
        let p = training_sigmoid(&xb.dot(&w));
        let grad = xb.t().dot(&(p - yb.slice(s![.., 0])));
        w = w - grad * (lr / rows.len() as f64);
        on_batch(rows.end);
    }
    Ok(w)
}

/// The sigmoid to the preset's precision, at a fraction of [`Priv::sigmoid`]'s cost
/// where the preset allows it: [`Priv::sigmoid_with_tolerance`] at 64 units in the
/// last place (at least `1e-12`) when that is `1e-7` or finer (default and paper
/// presets: two comparisons and a polynomial per element), [`Priv::sigmoid`] otherwise
/// (fast preset). Requires `|z|` below twice the preset's input bound.
pub fn training_sigmoid<A: PrivType>(z: &Priv<A>) -> Priv<A> {
    match z.config() {
        Some(cfg) if 64.0 * cfg.ulp() <= 1e-7 => {
            z.sigmoid_with_tolerance((64.0 * cfg.ulp()).max(1e-12))
        }
        _ => z.sigmoid(),
    }
}

/// Inference with the feed-forward network 784-625-625-10 (ReLU, then argmax): secret
/// images (one per row of `x`) and a secret model; the secret predicted digits.
#[private(crate = crate)]
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

/// [`mlp_predict`] with its weight matrices prepared ([`Prepared`]: kept across
/// jobs by a server that serves the model, so each batch sends only the images'
/// and activations' masked shares), in chunks of [`MLP_CHUNK`] images.
///
/// # Errors
/// Shapes that do not chain (784-625-625-10 or any other widths), a lost peer.
pub fn mlp_predict_prepared(
    x: &Priv<Array2<f64>>,
    w: [&Prepared; 3],
    b: [&Priv<Array1<f64>>; 3],
) -> Result<Priv<Array1<f64>>> {
    let n = x.shape()[0];
    let mut parts = Vec::new();
    for start in (0..n.max(1)).step_by(MLP_CHUNK) {
        let rows: Priv<Array2<f64>> = x.slice(s![start..(start + MLP_CHUNK).min(n), ..]);
        let h1 = (rows.try_dot(w[0])? + b[0]).relu();
        let h2 = (h1.try_dot(w[1])? + b[1]).relu();
        let scores = h2.try_dot(w[2])? + b[2];
        parts.push(scores.argmax_axis(Axis(1)));
    }
    let refs: Vec<&Priv<Array1<f64>>> = parts.iter().collect();
    concatenate(&refs, Axis(0))?.into_type()
}

/// k-means (Lloyd's algorithm) for `iterations` rounds from the centroids `c0`
/// (`k × d`): the assignment of each row is a secret one-hot (argmin of the squared
/// distances), and each centroid the mean of its rows (an empty cluster keeps 0 rows'
/// mean, 0). Returns the centroids.
#[private(crate = crate)]
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
#[private(crate = crate)]
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
    let x = m(images)?;
    let (w1, b1, w2, b2, w3, b3) = (m("w1")?, v("b1")?, m("w2")?, v("b2")?, m("w3")?, v("b3")?);
    // Chunks of MLP_CHUNK images bound the size of the comparison messages.
    let n = x.shape()[0];
    let mut parts = Vec::new();
    for start in (0..n.max(1)).step_by(MLP_CHUNK) {
        let rows = x.slice(s![start..(start + MLP_CHUNK).min(n), ..]);
        parts.push(mlp_predict(
            rows,
            w1.clone(),
            b1.clone(),
            w2.clone(),
            b2.clone(),
            w3.clone(),
            b3.clone(),
        ));
    }
    let refs: Vec<&Priv<Array1<f64>>> = parts.iter().collect();
    concatenate(&refs, Axis(0))?.into_type()
}

/// Images per step of [`mlp_predict_inputs`].
pub const MLP_CHUNK: usize = 200;

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

/// Absolute error of the sigmoids in inference: far below what changes a prediction,
/// and half the comparisons of the full-precision sigmoid.
pub const INFERENCE_TOLERANCE: f64 = 1e-4;

/// Images per step of [`LeNet5::predict`]: larger batches run in chunks of this
/// many, so that memory stays bounded (the garbled circuits of a chunk's sigmoids
/// travel in one message) whatever the batch size.
pub const INFERENCE_CHUNK: usize = 10;

/// The weights of LeNet-5 as secrets (the tensors of `models/mnist-lenet5.safetensors`).
pub struct LeNet5 {
    /// C1: 25 × 6 (5×5 windows of one channel to 6 maps), and its bias.
    pub c1: Priv<Array2<f64>>,
    /// C1 bias.
    pub c1b: Priv<Array1<f64>>,
    /// C3: 150 × 16, and its bias.
    pub c3: Priv<Array2<f64>>,
    /// C3 bias.
    pub c3b: Priv<Array1<f64>>,
    /// C5: 400 × 120.
    pub c5: Priv<Array2<f64>>,
    /// C5 bias.
    pub c5b: Priv<Array1<f64>>,
    /// F6: 120 × 84.
    pub f6: Priv<Array2<f64>>,
    /// F6 bias.
    pub f6b: Priv<Array1<f64>>,
    /// The RBF prototypes, 10 × 84.
    pub rbf: Priv<Array2<f64>>,
}

impl LeNet5 {
    /// The model from the session's inputs named as in the safetensors file.
    ///
    /// # Errors
    /// A missing input or one of the wrong rank.
    pub fn from_inputs(s: &Session) -> Result<Self> {
        let m = |k: &str| s.input::<Array2<f64>>(k);
        let v = |k: &str| s.input::<Array1<f64>>(k);
        Ok(LeNet5 {
            c1: m("c1")?,
            c1b: v("c1b")?,
            c3: m("c3")?,
            c3b: v("c3b")?,
            c5: m("c5")?,
            c5b: v("c5b")?,
            f6: m("f6")?,
            f6b: v("f6b")?,
            rbf: m("rbf")?,
        })
    }

    /// The secret predicted digit of each image (one 28×28 image per row of `x`):
    /// zero-padding to 32×32, C1, S2, C3, S4, C5 (5×5 convolutions as a public
    /// re-indexing, im2col, and one secret matrix product each; sigmoid), F6 (sigmoid),
    /// and the nearest RBF prototype: the argmin of [`LeNet5::scores`].
    ///
    /// # Errors
    /// Only on internal shape inconsistencies; a wrong image width stops the program
    /// with an out-of-bounds error from the re-indexing.
    pub fn predict(&self, x: &Priv<Array2<f64>>) -> Result<Priv<Array1<f64>>> {
        Ok(self.scores(x)?.argmin_axis(Axis(1)))
    }

    /// The network's output layer before the decision: for each image (row of `x`) and
    /// digit `c`, `‖p_c‖² − 2·f6·p_c`, the squared distance from the F6 activations to
    /// the RBF prototype `p_c` less the per-image constant `‖f6‖²` (images × 10; the
    /// smallest wins). The "logits" to compare with a cleartext run.
    ///
    /// # Errors
    /// As [`LeNet5::predict`].
    pub fn scores(&self, x: &Priv<Array2<f64>>) -> Result<Priv<Array2<f64>>> {
        self.forward(x, None)
    }

    /// The scores, with the per-channel affine maps of batch normalization (C1, C3,
    /// C5, F6) replacing the layers' biases when `bn` is given.
    fn forward(
        &self,
        x: &Priv<Array2<f64>>,
        bn: Option<&[Affine; 4]>,
    ) -> Result<Priv<Array2<f64>>> {
        let b = x.shape()[0];
        if b > INFERENCE_CHUNK {
            // Bounded memory: the comparisons of a chunk travel in one message.
            let mut parts = Vec::new();
            for start in (0..b).step_by(INFERENCE_CHUNK) {
                let end = (start + INFERENCE_CHUNK).min(b);
                parts.push(self.forward(&x.slice(s![start..end, ..]), bn)?);
            }
            let refs: Vec<&Priv<Array2<f64>>> = parts.iter().collect();
            return concatenate(&refs, Axis(0))?.into_type();
        }
        let bn = |k: usize| bn.map(|a| &a[k]);
        // Zero-pad: positions into [x, 0].
        let zero = x.item(&[0, 0]) * 0.0;
        let flat = concatenate(&[&x.flatten(), &zero.reshape(1)], Axis(0))?;
        let pad: Vec<usize> = (0..b * 1024)
            .map(|p| {
                let (n, i, j) = (p / 1024, p % 1024 / 32, p % 32);
                if (2..30).contains(&i) && (2..30).contains(&j) {
                    n * 784 + (i - 2) * 28 + (j - 2)
                } else {
                    b * 784
                }
            })
            .collect();
        let img = flat.into_type::<Array1<f64>>()?.take(&pad, Axis(0));
        let a1 = conv(&img, (b, 1, 32, 32), &self.c1, &self.c1b, bn(0));
        let p1 = pool(&a1, (b, 6, 28, 28));
        let a3 = conv(&p1, (b, 6, 14, 14), &self.c3, &self.c3b, bn(1));
        let p3 = pool(&a3, (b, 16, 10, 10));
        let a5 = conv(&p3, (b, 16, 5, 5), &self.c5, &self.c5b, bn(2)).reshape((b, 120));
        let f6 =
            affine(&a5, &self.f6, &self.f6b, bn(3)).sigmoid_with_tolerance(INFERENCE_TOLERANCE);
        // ||f6 − p||² up to the per-image constant ||f6||²: ||p||² − 2 f6·p.
        let norms = (&self.rbf * &self.rbf).sum_axis(Axis(1));
        Ok(norms - f6.dot(&self.rbf.t()) * 2.0)
    }
}

/// `ε` of batch normalization, `γ·(z − μ)/√(σ² + ε) + β`: PyTorch's default.
pub const BN_EPS: f64 = 1e-5;

/// The parameters of one batch-normalization layer, as secrets: per channel, the
/// layer computes `γ·(z − μ)/√(σ² + ε) + β` with the running statistics of training.
/// Each vector has one entry per channel.
pub struct BatchNorm {
    /// `γ`, the scale (PyTorch's `weight`).
    pub gamma: Priv<Array1<f64>>,
    /// `β`, the shift (PyTorch's `bias`).
    pub beta: Priv<Array1<f64>>,
    /// `μ`, the running mean (`running_mean`).
    pub mean: Priv<Array1<f64>>,
    /// `σ²`, the running variance (`running_var`).
    pub var: Priv<Array1<f64>>,
}

impl BatchNorm {
    /// The layer from the session's inputs `<layer>.weight` (`γ`), `<layer>.bias`
    /// (`β`), `<layer>.running_mean` and `<layer>.running_var`: PyTorch's names in a
    /// `BatchNorm1d`/`BatchNorm2d` state dict (its `num_batches_tracked` is not used).
    ///
    /// # Errors
    /// A missing input, one of the wrong rank, or vectors of different lengths.
    pub fn from_inputs(s: &Session, layer: &str) -> Result<Self> {
        let v = |k: &str| s.input::<Array1<f64>>(&format!("{layer}.{k}"));
        let bn = BatchNorm {
            gamma: v("weight")?,
            beta: v("bias")?,
            mean: v("running_mean")?,
            var: v("running_var")?,
        };
        for t in [&bn.beta, &bn.mean, &bn.var] {
            if t.shape() != bn.gamma.shape() {
                return Err(ShapeError::Broadcast {
                    left: bn.gamma.shape().to_vec(),
                    right: t.shape().to_vec(),
                }
                .into());
            }
        }
        Ok(bn)
    }
}

/// LeNet-5 with a batch-normalization layer between each of C1, C3, C5, F6 and its
/// sigmoid, the model and the images secret (`models/mnist-lenet5-bn.safetensors`,
/// trained by `examples/train_lenet.rs --batch-norm`).
///
/// # Tensors
///
/// The inputs (and the safetensors file) hold the tensors of [`LeNet5`] (`c1` 25×6,
/// `c1b` 6, `c3` 150×16, `c3b` 16, `c5` 400×120, `c5b` 120, `f6` 120×84, `f6b` 84,
/// `rbf` 10×84) and, for each layer in [`LeNet5Bn::BN_LAYERS`] (`bn1` after C1 with 6
/// channels, `bn3` after C3 with 16, `bn5` after C5 with 120, `bn6` after F6 with 84),
/// the vectors `<layer>.weight`, `<layer>.bias`, `<layer>.running_mean`,
/// `<layer>.running_var` (see [`BatchNorm::from_inputs`]). F32 or F64.
///
/// A PyTorch model exports to this layout as follows: the batch-norm tensors of its
/// `state_dict` unchanged, under these layer names; a `Conv2d` weight
/// `(out, in, 5, 5)` as `weight.reshape(out, -1).T` (rows in `(in, di, dj)` order, as
/// the im2col here); a `Linear` weight `(out, in)` as `weight.T` (C5 may be a `Linear`
/// on the flattened `(16, 5, 5)` maps); biases unchanged (zeros when the layer has
/// none, as is usual before batch normalization); `rbf` the 10 prototypes (the
/// predicted digit is the nearest). The image is zero-padded to 32×32 (C1's
/// `padding=2`), pooling is the 2×2 average, the activations are sigmoids, and `ε` is
/// [`BN_EPS`] unless [`LeNet5Bn::eps`] is changed.
///
/// # Computation
///
/// Per channel, the secret scale `γ·rsqrt(σ² + ε)` (one batched [`Priv::rsqrt`] for
/// all four layers) and shift `β + (b − μ)·scale` (`b` the layer's bias) are computed
/// once per program run; each layer then applies the affine map `z·scale + shift` to
/// its product `z = cols·W` before the sigmoid. Where the weight matrix has fewer
/// elements than the batch's products (C1 and C3 always, C5 and F6 from about 400 and
/// 120 images), the scale multiplies the weights instead (`cols·(W·scale)`), which is
/// the same map and fewer secret multiplications. The variance must lie in the range
/// of `rsqrt` (`σ² + ε ≥ 2^-f`: always for the default and paper presets with
/// `ε = 1e-5`; the fast preset needs `σ² ≥ 5.3e-6`), else that channel's scale is 0.
pub struct LeNet5Bn {
    /// The convolutions, F6 and the RBF prototypes.
    pub net: LeNet5,
    /// The batch-normalization layers after C1, C3, C5 and F6, in order.
    pub bn: [BatchNorm; 4],
    /// `ε` (default [`BN_EPS`]).
    pub eps: f64,
}

impl LeNet5Bn {
    /// The names of the batch-normalization layers in the inputs, after C1, C3, C5, F6.
    pub const BN_LAYERS: [&'static str; 4] = ["bn1", "bn3", "bn5", "bn6"];

    /// The model from the session's inputs named as in the safetensors file (see the
    /// type's documentation), with `ε` = [`BN_EPS`].
    ///
    /// # Errors
    /// A missing input, one of the wrong rank, or a batch-norm layer whose length is
    /// not its layer's number of channels.
    pub fn from_inputs(s: &Session) -> Result<Self> {
        let net = LeNet5::from_inputs(s)?;
        let bn = [
            BatchNorm::from_inputs(s, Self::BN_LAYERS[0])?,
            BatchNorm::from_inputs(s, Self::BN_LAYERS[1])?,
            BatchNorm::from_inputs(s, Self::BN_LAYERS[2])?,
            BatchNorm::from_inputs(s, Self::BN_LAYERS[3])?,
        ];
        for (layer, bias) in bn.iter().zip([&net.c1b, &net.c3b, &net.c5b, &net.f6b]) {
            if layer.gamma.shape() != bias.shape() {
                return Err(ShapeError::Broadcast {
                    left: bias.shape().to_vec(),
                    right: layer.gamma.shape().to_vec(),
                }
                .into());
            }
        }
        Ok(LeNet5Bn {
            net,
            bn,
            eps: BN_EPS,
        })
    }

    /// The secret predicted digit of each image (one 28×28 image per row of `x`), as
    /// [`LeNet5::predict`] with batch normalization before each sigmoid.
    ///
    /// # Errors
    /// As [`LeNet5::predict`].
    pub fn predict(&self, x: &Priv<Array2<f64>>) -> Result<Priv<Array1<f64>>> {
        Ok(self.scores(x)?.argmin_axis(Axis(1)))
    }

    /// The scores before the decision (images × 10; the smallest wins), as
    /// [`LeNet5::scores`].
    ///
    /// # Errors
    /// As [`LeNet5::predict`].
    pub fn scores(&self, x: &Priv<Array2<f64>>) -> Result<Priv<Array2<f64>>> {
        self.net.forward(x, Some(&self.affine_maps()?))
    }

    /// Per layer, the secret `scale = γ·rsqrt(σ² + ε)` and `shift = β + (b − μ)·scale`,
    /// computed for the four layers at once.
    fn affine_maps(&self) -> Result<[Affine; 4]> {
        let cat = |f: fn(&BatchNorm) -> &Priv<Array1<f64>>| -> Result<Priv<Array1<f64>>> {
            let parts: Vec<&Priv<Array1<f64>>> = self.bn.iter().map(f).collect();
            concatenate(&parts, Axis(0))?.into_type()
        };
        let n = &self.net;
        let bias: Priv<Array1<f64>> =
            concatenate(&[&n.c1b, &n.c3b, &n.c5b, &n.f6b], Axis(0))?.into_type()?;
        let scale = cat(|b| &b.gamma)? * (cat(|b| &b.var)? + self.eps).rsqrt();
        let shift = cat(|b| &b.beta)? + (bias - cat(|b| &b.mean)?) * &scale;
        let mut start = 0;
        Ok(self.bn.each_ref().map(|layer| {
            let end = start + layer.gamma.len();
            let a = Affine {
                scale: scale.slice(s![start..end]),
                shift: shift.slice(s![start..end]),
            };
            start = end;
            a
        }))
    }
}

/// A per-channel affine map `z ↦ z·scale + shift` (batch normalization at inference,
/// the layer's bias folded into `shift`).
struct Affine {
    scale: Priv<Array1<f64>>,
    shift: Priv<Array1<f64>>,
}

/// `x·w + bias`, or with an affine map `(x·w)·scale + shift`, computed as
/// `x·(w·scale) + shift` when `w` has no more elements than the product (fewer
/// secret multiplications, the same map).
fn affine(
    x: &Priv<Array2<f64>>,
    w: &Priv<Array2<f64>>,
    bias: &Priv<Array1<f64>>,
    bn: Option<&Affine>,
) -> Priv<Array2<f64>> {
    match bn {
        None => x.dot(w) + bias,
        Some(a) if w.len() <= x.shape()[0] * w.shape()[1] => x.dot(&(w * &a.scale)) + &a.shift,
        Some(a) => x.dot(w) * &a.scale + &a.shift,
    }
}

/// A 5×5 convolution with sigmoid of a flat `(b, c, h, w)` secret: im2col by public
/// positions, one matrix product with `w` (`c·25 × f`), bias (or batch
/// normalization's affine map, see [`affine`]); flat `(b, f, h−4, w−4)`.
fn conv(
    x: &Priv<Array1<f64>>,
    (b, c, h, w): (usize, usize, usize, usize),
    wt: &Priv<Array2<f64>>,
    bias: &Priv<Array1<f64>>,
    bn: Option<&Affine>,
) -> Priv<Array1<f64>> {
    let k = 5;
    let (ho, wo) = (h - k + 1, w - k + 1);
    let idx = crate::nn::im2col_indices((b, c, h, w), k, 1, 0);
    let cols = x.take(&idx, Axis(0)).reshape((b * ho * wo, c * k * k));
    let f = wt.shape()[1];
    let z = affine(&cols, wt, bias, bn).sigmoid_with_tolerance(INFERENCE_TOLERANCE);
    // (b, ho, wo, f) → (b, f, ho, wo), flat.
    z.reshape([b, ho, wo, f])
        .permuted_axes(&[0, 3, 1, 2])
        .flatten()
}

/// 2×2 sum pooling (scaled by 1/4) of a flat `(b, c, h, w)` secret.
fn pool(x: &Priv<Array1<f64>>, (b, c, h, w): (usize, usize, usize, usize)) -> Priv<Array1<f64>> {
    let (ho, wo) = (h / 2, w / 2);
    let mut idx = Vec::with_capacity(b * c * ho * wo * 4);
    for m in 0..b * c {
        for i in 0..ho {
            for j in 0..wo {
                for (di, dj) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    idx.push((m * h + 2 * i + di) * w + 2 * j + dj);
                }
            }
        }
    }
    x.take(&idx, Axis(0))
        .reshape((b * c * ho * wo, 4))
        .sum_axis(Axis(1))
        * 0.25
}

/// The CNN that `models/torch/train_mnist_cnn.py` trains with PyTorch and exports to
/// `models/mnist-torch-cnn.safetensors` (98.9% on MNIST's test set), declared with the
/// module names of its `state_dict`: MNIST's normalization, `conv1` (6 maps, 5×5,
/// padding 2), `bn1`, ReLU, 2×2 max pooling, `conv2` (16 maps, 5×5), ReLU, 2×2 average
/// pooling, `fc1` (400 → 120), `bn3`, sigmoid, `fc2` (120 → 10). Inputs are 28×28
/// images scaled to `[0, 1]`, one per row.
pub fn torch_mnist_cnn() -> crate::nn::Sequential {
    crate::nn::Sequential::new(&[1, 28, 28])
        .normalize(&[0.1307], &[0.3081])
        .conv2d("conv1", 6, 5)
        .padding(2)
        .batch_norm("bn1")
        .relu()
        .max_pool(2)
        .conv2d("conv2", 16, 5)
        .relu()
        .avg_pool(2)
        .flatten()
        .linear("fc1", 120)
        .batch_norm("bn3")
        .sigmoid()
        .linear("fc2", 10)
}
