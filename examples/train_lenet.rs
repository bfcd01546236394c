//! Trains LeNet-5 on the full MNIST training set in cleartext and writes
//! `models/mnist-lenet5.safetensors` for private inference (`privpy::ml::lenet5_predict`).
//!
//! The network (LeCun et al. 1998): the 28×28 image zero-padded to 32×32; C1 5×5
//! convolution to 6 maps, sigmoid; S2 2×2 sum pooling (scaled by 1/4); C3 5×5 to 16
//! maps, sigmoid; S4 pooling; C5 5×5 to 120, sigmoid; F6 dot product to 84, sigmoid;
//! RBF output: the squared distance to 10 fixed ±1 prototypes, predicting the nearest.
//! Plain ndarray with im2col; a tool, not part of the library.
//!
//! `cargo run --release --example train_lenet` (needs `$PRIVPY_DATA` or `../shared/data`)

use ndarray::{Array1, Array2, Array4, Axis};
use privpy::data::{data_dir, mnist_test, mnist_train};
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

struct Net {
    w: Vec<Array2<f32>>,
    b: Vec<Array1<f32>>,
}

impl Net {
    /// Forward pass: the F6 activations and the intermediates for backpropagation.
    #[allow(clippy::type_complexity)]
    fn forward(&self, x: &Array4<f32>) -> (Array2<f32>, Vec<Array2<f32>>, Vec<Array4<f32>>) {
        let b = x.dim().0;
        let c1 = im2col(x, 5);
        let a1 = to_maps(c1.dot(&self.w[0]) + &self.b[0], b, 28, 28).mapv(sig);
        let p1 = pool(&a1);
        let c3 = im2col(&p1, 5);
        let a3 = to_maps(c3.dot(&self.w[1]) + &self.b[1], b, 10, 10).mapv(sig);
        let p3 = pool(&a3);
        let c5 = im2col(&p3, 5);
        let a5 = (c5.dot(&self.w[2]) + &self.b[2]).mapv(sig);
        let f6 = (a5.dot(&self.w[3]) + &self.b[3]).mapv(sig);
        (f6, vec![c1, c3, c5, a5], vec![a1, p1, a3, p3])
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    };
    let (batch, epochs, lr) = (32, 4, 2.0f32);
    let n = train.labels.len();
    for epoch in 0..epochs {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.next_u64() as usize % (i + 1));
        }
        for chunk in order.chunks(batch) {
            let x = pad(&train.images, chunk);
            let bsz = chunk.len();
            let (f6, cols, maps) = net.forward(&x);
            // RBF loss: ||f6 − p_y||² / B.
            let target = Array2::from_shape_fn((bsz, 84), |(r, k)| {
                protos[[train.labels[chunk[r]] as usize, k]] * 0.5 + 0.5
            });
            let df6 = (&f6 - &target) * (2.0 / bsz as f32) * &f6.mapv(|s| s * (1.0 - s));
            let a5 = &cols[3];
            let da5 = df6.dot(&net.w[3].t()) * a5.mapv(|s| s * (1.0 - s));
            let dcols5 = da5.dot(&net.w[2].t());
            let dp3 = col2im(&dcols5, (bsz, 16, 5, 5), 5);
            let da3 = unpool(&dp3) * maps[2].mapv(|s| s * (1.0 - s));
            let dz3 = from_maps(&da3);
            let dcols3 = dz3.dot(&net.w[1].t());
            let dp1 = col2im(&dcols3, (bsz, 6, 14, 14), 5);
            let da1 = unpool(&dp1) * maps[0].mapv(|s| s * (1.0 - s));
            let dz1 = from_maps(&da1);
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
        }
        let rows: Vec<usize> = (0..test.labels.len()).collect();
        let (f6, _, _) = net.forward(&pad(&test.images, &rows));
        let hits = (0..rows.len())
            .filter(|&r| {
                let best = (0..10)
                    .map(|c| {
                        (
                            c,
                            (0..84)
                                .map(|k| (f6[[r, k]] - (protos[[c, k]] * 0.5 + 0.5)).powi(2))
                                .sum::<f32>(),
                        )
                    })
                    .fold((0, f32::MAX), |a, b| if b.1 < a.1 { b } else { a });
                best.0 == test.labels[r] as usize
            })
            .count();
        println!(
            "epoch {}: test accuracy {:.4} (first {} test images)",
            epoch + 1,
            hits as f64 / rows.len() as f64,
            rows.len()
        );
    }
    let m = |a: &Array2<f32>| a.mapv(|v| v as f64).into_dyn();
    let v = |a: &Array1<f32>| a.mapv(|v| v as f64).into_dyn();
    let rbf = protos.mapv(|p| p as f64 * 0.5 + 0.5).into_dyn();
    std::fs::create_dir_all("models")?;
    save_safetensors(
        std::path::Path::new("models/mnist-lenet5.safetensors"),
        &[
            ("c1", m(&net.w[0])),
            ("c1b", v(&net.b[0])),
            ("c3", m(&net.w[1])),
            ("c3b", v(&net.b[1])),
            ("c5", m(&net.w[2])),
            ("c5b", v(&net.b[2])),
            ("f6", m(&net.w[3])),
            ("f6b", v(&net.b[3])),
            ("rbf", rbf),
        ],
    )?;
    println!("wrote models/mnist-lenet5.safetensors");
    Ok(())
}
