//! Trains LeNet-5 on the full MNIST training set in cleartext and writes
//! `models/mnist-lenet5.safetensors` for private inference (`privpy::ml::LeNet5`), or,
//! with `--batch-norm`, LeNet-5 with batch normalization and writes
//! `models/mnist-lenet5-bn.safetensors` (`privpy::ml::LeNet5Bn`).
//!
//! The network (LeCun et al. 1998): the 28×28 image zero-padded to 32×32; C1 5×5
//! convolution to 6 maps, sigmoid; S2 2×2 sum pooling (scaled by 1/4); C3 5×5 to 16
//! maps, sigmoid; S4 pooling; C5 5×5 to 120, sigmoid; F6 dot product to 84, sigmoid;
//! RBF output: the squared distance to 10 fixed ±1 prototypes, predicting the nearest.
//! Plain ndarray with im2col; a tool, not part of the library.
//!
//! With `--batch-norm`, a batch-normalization layer sits between each of C1, C3, C5
//! and F6 and its sigmoid: `γ·(z − μ)/√(σ² + ε) + β` per channel (per output column),
//! with the batch's mean and (biased) variance in training and the running averages
//! (momentum 0.1, unbiased variance, `ε = 1e-5`: PyTorch's conventions) for inference
//! and in the saved file. Besides the tensors of the plain model, the file holds for
//! each layer `bn1` (after C1, 6 channels), `bn3` (C3, 16), `bn5` (C5, 120) and `bn6`
//! (F6, 84) the vectors `<layer>.weight` (γ), `<layer>.bias` (β),
//! `<layer>.running_mean` and `<layer>.running_var`, PyTorch's `BatchNorm` names.
//!
//! `cargo run --release --example train_lenet [-- --batch-norm] [-- --epochs N]`
//! (needs `$PRIVPY_DATA` or `../shared/data`). Defaults: 4 epochs at learning rate 2
//! without batch normalization; 3 epochs with it, at rate 1 halved every epoch (about
//! 75 s on two cores; 99.1% on the 10,000 test images).

use ndarray::{Array1, Array2, Array4, Axis};
use privpy::data::{Mnist, data_dir, mnist_test, mnist_train};
use privpy::model::save_safetensors;
use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};

/// (B, C, H, W) → (B·Ho·Wo, C·k·k) patches.
fn im2col(x: &Array4<f32>, k: usize) -> Array2<f32> {
    let (b, c, h, w) = x.dim();
    let (ho, wo) = (h - k + 1, w - k + 1);
    let mut out = Array2::zeros((b * ho * wo, c * k * k));
    for n in 0..b {
        for i in 0..ho {
            for j in 0..wo {
                let mut row = out.row_mut((n * ho + i) * wo + j);
                let mut t = 0;
                for ch in 0..c {
                    for di in 0..k {
                        for dj in 0..k {
                            row[t] = x[[n, ch, i + di, j + dj]];
                            t += 1;
                        }
                    }
                }
            }
        }
    }
    out
}

/// Scatter-adds patch gradients back to (B, C, H, W).
fn col2im(d: &Array2<f32>, (b, c, h, w): (usize, usize, usize, usize), k: usize) -> Array4<f32> {
    let (ho, wo) = (h - k + 1, w - k + 1);
    let mut out = Array4::zeros((b, c, h, w));
    for n in 0..b {
        for i in 0..ho {
            for j in 0..wo {
                let row = d.row((n * ho + i) * wo + j);
                let mut t = 0;
                for ch in 0..c {
                    for di in 0..k {
                        for dj in 0..k {
                            out[[n, ch, i + di, j + dj]] += row[t];
                            t += 1;
                        }
                    }
                }
            }
        }
    }
    out
}

/// (B·Ho·Wo, F) → (B, F, Ho, Wo) and back.
fn to_maps(z: Array2<f32>, b: usize, ho: usize, wo: usize) -> Array4<f32> {
    let f = z.ncols();
    z.into_shape_with_order((b, ho, wo, f))
        .expect("shape")
        .permuted_axes([0, 3, 1, 2])
        .as_standard_layout()
        .to_owned()
}
fn from_maps(d: &Array4<f32>) -> Array2<f32> {
    let (b, f, ho, wo) = d.dim();
    d.view()
        .permuted_axes([0, 2, 3, 1])
        .as_standard_layout()
        .to_owned()
        .into_shape_with_order((b * ho * wo, f))
        .expect("shape")
}

fn pool(x: &Array4<f32>) -> Array4<f32> {
    let (b, c, h, w) = x.dim();
    Array4::from_shape_fn((b, c, h / 2, w / 2), |(n, ch, i, j)| {
        0.25 * (x[[n, ch, 2 * i, 2 * j]]
            + x[[n, ch, 2 * i + 1, 2 * j]]
            + x[[n, ch, 2 * i, 2 * j + 1]]
            + x[[n, ch, 2 * i + 1, 2 * j + 1]])
    })
}
fn unpool(d: &Array4<f32>) -> Array4<f32> {
    let (b, c, h, w) = d.dim();
    Array4::from_shape_fn((b, c, 2 * h, 2 * w), |(n, ch, i, j)| {
        0.25 * d[[n, ch, i / 2, j / 2]]
    })
}

fn sig(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

fn init(rng: &mut ChaCha12Rng, fan_in: usize, fan_out: usize) -> Array2<f32> {
    let s = (3.0 / fan_in as f32).sqrt();
    Array2::from_shape_fn((fan_in, fan_out), |_| {
        (rng.next_u32() as f32 / u32::MAX as f32 * 2.0 - 1.0) * s
    })
}

/// The ±1 prototypes of the RBF layer (fixed, like LeCun's stylized digit bitmaps).
pub fn prototypes() -> Array2<f32> {
    let mut rng = ChaCha12Rng::seed_from_u64(84);
    Array2::from_shape_fn(
        (10, 84),
        |_| if rng.next_u32() & 1 == 1 { 1.0 } else { -1.0 },
    )
}

fn pad(images: &Array2<f64>, rows: &[usize]) -> Array4<f32> {
    Array4::from_shape_fn((rows.len(), 1, 32, 32), |(n, _, i, j)| {
        if (2..30).contains(&i) && (2..30).contains(&j) {
            images[[rows[n], (i - 2) * 28 + (j - 2)]] as f32
        } else {
            0.0
        }
    })
}

/// Batch normalization of the columns (channels) of a `(rows, C)` matrix.
struct BatchNorm {
    gamma: Array1<f32>,
    beta: Array1<f32>,
    mean: Array1<f32>,
    var: Array1<f32>,
    /// From the last training forward pass: the normalized input and `1/√(σ² + ε)`.
    cache: Option<(Array2<f32>, Array1<f32>)>,
}

const BN_EPS: f32 = 1e-5;
const BN_MOMENTUM: f32 = 0.1;
/// The first epoch's learning rate with batch normalization (halved every epoch).
const BN_LR: f32 = 1.0;

impl BatchNorm {
    fn new(c: usize) -> Self {
        BatchNorm {
            gamma: Array1::ones(c),
            beta: Array1::zeros(c),
            mean: Array1::zeros(c),
            var: Array1::ones(c),
            cache: None,
        }
    }

    /// Training: normalizes with the batch statistics and updates the running ones.
    fn train(&mut self, z: Array2<f32>) -> Array2<f32> {
        let n = z.nrows() as f32;
        let mu = z.mean_axis(Axis(0)).expect("rows");
        let zc = z - &mu;
        let var = (&zc * &zc).mean_axis(Axis(0)).expect("rows");
        let inv_std = var.mapv(|v| 1.0 / (v + BN_EPS).sqrt());
        let xhat = zc * &inv_std;
        let unbiased = n / (n - 1.0).max(1.0);
        self.mean = &self.mean * (1.0 - BN_MOMENTUM) + &(mu * BN_MOMENTUM);
        self.var = &self.var * (1.0 - BN_MOMENTUM) + &(var * (unbiased * BN_MOMENTUM));
        let y = &xhat * &self.gamma + &self.beta;
        self.cache = Some((xhat, inv_std));
        y
    }

    /// Inference: the running statistics.
    fn eval(&self, z: Array2<f32>) -> Array2<f32> {
        let scale = &self.gamma / &self.var.mapv(|v| (v + BN_EPS).sqrt());
        let shift = &self.beta - &(&self.mean * &scale);
        z * &scale + &shift
    }

    /// The gradient with respect to the input from that of the output, after the
    /// last training pass; takes an SGD step on γ and β.
    fn backward(&mut self, dy: Array2<f32>, lr: f32) -> Array2<f32> {
        let (xhat, inv_std) = self.cache.take().expect("a training pass first");
        let n = dy.nrows() as f32;
        let dgamma = (&dy * &xhat).sum_axis(Axis(0));
        let dbeta = dy.sum_axis(Axis(0));
        let dxhat = dy * &self.gamma;
        let s1 = dxhat.sum_axis(Axis(0));
        let s2 = (&dxhat * &xhat).sum_axis(Axis(0));
        let dz = (dxhat * n - &s1 - &(xhat * &s2)) * &(inv_std / n);
        self.gamma = &self.gamma - &(dgamma * lr);
        self.beta = &self.beta - &(dbeta * lr);
        dz
    }
}

struct Net {
    w: Vec<Array2<f32>>,
    b: Vec<Array1<f32>>,
    /// Empty, or one layer after each of C1, C3, C5, F6.
    bn: Vec<BatchNorm>,
}

impl Net {
    /// The pre-activations `z` of layer `k` (0: C1, 1: C3, 2: C5, 3: F6), normalized
    /// if the network has batch normalization.
    fn norm(&mut self, k: usize, z: Array2<f32>, train: bool) -> Array2<f32> {
        match self.bn.get_mut(k) {
            None => z,
            Some(bn) if train => bn.train(z),
            Some(bn) => bn.eval(z),
        }
    }

    /// The gradient with respect to the pre-activations of layer `k` from that with
    /// respect to its normalized values (the same without batch normalization).
    fn denorm(&mut self, k: usize, d: Array2<f32>, lr: f32) -> Array2<f32> {
        match self.bn.get_mut(k) {
            None => d,
            Some(bn) => bn.backward(d, lr),
        }
    }

    /// Forward pass: the F6 activations and the intermediates for backpropagation.
    /// `train` selects batch statistics (and updates the running ones) over the
    /// running statistics, with batch normalization.
    #[allow(clippy::type_complexity)]
    fn forward(
        &mut self,
        x: &Array4<f32>,
        train: bool,
    ) -> (Array2<f32>, Vec<Array2<f32>>, Vec<Array4<f32>>) {
        let b = x.dim().0;
        let c1 = im2col(x, 5);
        let z1 = self.norm(0, c1.dot(&self.w[0]) + &self.b[0], train);
        let a1 = to_maps(z1, b, 28, 28).mapv(sig);
        let p1 = pool(&a1);
        let c3 = im2col(&p1, 5);
        let z3 = self.norm(1, c3.dot(&self.w[1]) + &self.b[1], train);
        let a3 = to_maps(z3, b, 10, 10).mapv(sig);
        let p3 = pool(&a3);
        let c5 = im2col(&p3, 5);
        let a5 = self
            .norm(2, c5.dot(&self.w[2]) + &self.b[2], train)
            .mapv(sig);
        let f6 = self
            .norm(3, a5.dot(&self.w[3]) + &self.b[3], train)
            .mapv(sig);
        (f6, vec![c1, c3, c5, a5], vec![a1, p1, a3, p3])
    }

    /// The share of `set` classified correctly (the nearest prototype), in inference
    /// mode, 1,000 images at a time.
    fn accuracy(&mut self, set: &Mnist, protos: &Array2<f32>) -> f64 {
        let targets = protos.mapv(|p| p * 0.5 + 0.5);
        let n = set.labels.len();
        let mut hits = 0;
        for start in (0..n).step_by(1000) {
            let rows: Vec<usize> = (start..(start + 1000).min(n)).collect();
            let (f6, _, _) = self.forward(&pad(&set.images, &rows), false);
            for (r, &row) in rows.iter().enumerate() {
                let dist = |c: usize| {
                    (0..84)
                        .map(|k| (f6[[r, k]] - targets[[c, k]]).powi(2))
                        .sum::<f32>()
                };
                let best = (0..10)
                    .map(|c| (c, dist(c)))
                    .fold((0, f32::MAX), |a, b| if b.1 < a.1 { b } else { a });
                hits += usize::from(best.0 == set.labels[row] as usize);
            }
        }
        hits as f64 / n.max(1) as f64
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let batch_norm = args.iter().any(|a| a == "--batch-norm");
    let epochs = args
        .iter()
        .position(|a| a == "--epochs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(if batch_norm { 3 } else { 4 });
    let d = data_dir().ok_or("needs PRIVPY_DATA or ../shared/data")?;
    let train = mnist_train(&d, None)?;
    let test = mnist_test(&d, Some(2000))?;
    let mut rng = ChaCha12Rng::seed_from_u64(5);
    let protos = prototypes();
    let mut net = Net {
        w: vec![
            init(&mut rng, 25, 6),
            init(&mut rng, 150, 16),
            init(&mut rng, 400, 120),
            init(&mut rng, 120, 84),
        ],
        b: vec![
            Array1::zeros(6),
            Array1::zeros(16),
            Array1::zeros(120),
            Array1::zeros(84),
        ],
        bn: if batch_norm {
            [6, 16, 120, 84].map(BatchNorm::new).into()
        } else {
            Vec::new()
        },
    };
    let batch = 32;
    let started = std::time::Instant::now();
    let n = train.labels.len();
    let bar = indicatif::ProgressBar::new((n * epochs) as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "training [{bar:40}] {pos}/{len} images {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for epoch in 0..epochs {
        // With batch normalization, the rate halves every epoch.
        let lr = if batch_norm {
            BN_LR * 0.5f32.powi(epoch as i32)
        } else {
            2.0f32
        };
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.next_u64() as usize % (i + 1));
        }
        for chunk in order.chunks(batch) {
            let x = pad(&train.images, chunk);
            let bsz = chunk.len();
            let (f6, cols, maps) = net.forward(&x, true);
            // RBF loss: ||f6 − p_y||² / B.
            let target = Array2::from_shape_fn((bsz, 84), |(r, k)| {
                protos[[train.labels[chunk[r]] as usize, k]] * 0.5 + 0.5
            });
            let df6 = (&f6 - &target) * (2.0 / bsz as f32) * &f6.mapv(|s| s * (1.0 - s));
            let df6 = net.denorm(3, df6, lr);
            let a5 = &cols[3];
            let da5 = df6.dot(&net.w[3].t()) * a5.mapv(|s| s * (1.0 - s));
            let da5 = net.denorm(2, da5, lr);
            let dcols5 = da5.dot(&net.w[2].t());
            let dp3 = col2im(&dcols5, (bsz, 16, 5, 5), 5);
            let da3 = unpool(&dp3) * maps[2].mapv(|s| s * (1.0 - s));
            let dz3 = net.denorm(1, from_maps(&da3), lr);
            let dcols3 = dz3.dot(&net.w[1].t());
            let dp1 = col2im(&dcols3, (bsz, 6, 14, 14), 5);
            let da1 = unpool(&dp1) * maps[0].mapv(|s| s * (1.0 - s));
            let dz1 = net.denorm(0, from_maps(&da1), lr);
            let grads = [
                (cols[0].t().dot(&dz1), dz1.sum_axis(Axis(0))),
                (cols[1].t().dot(&dz3), dz3.sum_axis(Axis(0))),
                (cols[2].t().dot(&da5), da5.sum_axis(Axis(0))),
                (a5.t().dot(&df6), df6.sum_axis(Axis(0))),
            ];
            for (k, (gw, gb)) in grads.into_iter().enumerate() {
                net.w[k] = &net.w[k] - &(gw * lr);
                net.b[k] = &net.b[k] - &(gb * lr);
            }
            bar.inc(bsz as u64);
        }
        bar.println(format!(
            "epoch {}: test accuracy {:.4} (first {} test images), {:.0} s",
            epoch + 1,
            net.accuracy(&test, &protos),
            test.labels.len(),
            started.elapsed().as_secs_f64()
        ));
    }
    bar.finish_and_clear();
    let full = mnist_test(&d, None)?;
    println!(
        "test accuracy {:.4} (all {} test images)",
        net.accuracy(&full, &protos),
        full.labels.len()
    );
    for (layer, bn) in ["bn1", "bn3", "bn5", "bn6"].iter().zip(&net.bn) {
        let (lo, hi) = bn
            .var
            .iter()
            .fold((f32::MAX, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        println!("{layer}: running variances in [{lo:.3e}, {hi:.3e}]");
    }
    let m = |a: &Array2<f32>| a.mapv(|v| v as f64).into_dyn();
    let v = |a: &Array1<f32>| a.mapv(|v| v as f64).into_dyn();
    let rbf = protos.mapv(|p| p as f64 * 0.5 + 0.5).into_dyn();
    let mut tensors: Vec<(String, ndarray::ArrayD<f64>)> = vec![
        ("c1".into(), m(&net.w[0])),
        ("c1b".into(), v(&net.b[0])),
        ("c3".into(), m(&net.w[1])),
        ("c3b".into(), v(&net.b[1])),
        ("c5".into(), m(&net.w[2])),
        ("c5b".into(), v(&net.b[2])),
        ("f6".into(), m(&net.w[3])),
        ("f6b".into(), v(&net.b[3])),
        ("rbf".into(), rbf),
    ];
    for (layer, bn) in ["bn1", "bn3", "bn5", "bn6"].iter().zip(&net.bn) {
        for (what, t) in [
            ("weight", &bn.gamma),
            ("bias", &bn.beta),
            ("running_mean", &bn.mean),
            ("running_var", &bn.var),
        ] {
            tensors.push((format!("{layer}.{what}"), v(t)));
        }
    }
    let path = if batch_norm {
        "models/mnist-lenet5-bn.safetensors"
    } else {
        "models/mnist-lenet5.safetensors"
    };
    std::fs::create_dir_all("models")?;
    let named: Vec<(&str, ndarray::ArrayD<f64>)> = tensors
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    save_safetensors(std::path::Path::new(path), &named)?;
    println!("wrote {path}");
    Ok(())
}
