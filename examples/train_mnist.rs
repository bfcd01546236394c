//! Trains the 784-625-625-10 network on the full MNIST training set in cleartext
//! (plain ndarray, SGD with softmax cross-entropy) and writes
//! `models/mnist-mlp.safetensors`, which the `mnist` example and the tests use.
//! A tool, not part of the library.
//!
//! `cargo run --release --example train_mnist` (needs `$PRIVPY_DATA` or `../shared/data`)

use ndarray::{Array1, Array2, Axis};
use privpy::data::{data_dir, mnist_test, mnist_train};
use privpy::model::save_safetensors;
use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};

fn init(rng: &mut ChaCha12Rng, fan_in: usize, fan_out: usize) -> Array2<f32> {
    let scale = (2.0 / fan_in as f32).sqrt();
    Array2::from_shape_fn((fan_in, fan_out), |_| {
        // Sum of uniforms: close enough to a normal for He initialisation.
        let u: f32 = (0..4)
            .map(|_| rng.next_u32() as f32 / u32::MAX as f32 - 0.5)
            .sum();
        u * scale * 1.7
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let d = data_dir().ok_or("needs PRIVPY_DATA or ../shared/data")?;
    let train = mnist_train(&d, None)?;
    let test = mnist_test(&d, None)?;
    let x = train.images.mapv(|v| v as f32);
    let mut rng = ChaCha12Rng::seed_from_u64(2026);
    let sizes = [784, 625, 625, 10];
    let mut w: Vec<Array2<f32>> = (0..3)
        .map(|k| init(&mut rng, sizes[k], sizes[k + 1]))
        .collect();
    let mut b: Vec<Array1<f32>> = (0..3).map(|k| Array1::zeros(sizes[k + 1])).collect();
    let (batch, epochs, lr) = (64, 3, 0.05f32);
    let n = x.nrows();
    let bar = indicatif::ProgressBar::new((n * epochs) as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "training [{bar:40}] {pos}/{len} images {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for epoch in 0..epochs {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.next_u64() as usize % (i + 1));
        }
        for chunk in order.chunks(batch) {
            let xb = x.select(Axis(0), chunk);
            // Forward.
            let z1 = xb.dot(&w[0]) + &b[0];
            let a1 = z1.mapv(|v| v.max(0.0));
            let z2 = a1.dot(&w[1]) + &b[1];
            let a2 = z2.mapv(|v| v.max(0.0));
            let z3 = a2.dot(&w[2]) + &b[2];
            // Softmax cross-entropy gradient.
            let mut d3 = z3.clone();
            for (mut row, &i) in d3.rows_mut().into_iter().zip(chunk) {
                let m = row.fold(f32::MIN, |a, &v| a.max(v));
                row.mapv_inplace(|v| (v - m).exp());
                let s = row.sum();
                row.mapv_inplace(|v| v / s);
                row[train.labels[i] as usize] -= 1.0;
            }
            d3 /= chunk.len() as f32;
            let d2 = d3.dot(&w[2].t()) * z2.mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
            let d1 = d2.dot(&w[1].t()) * z1.mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
            for (k, (a, dz)) in [(&xb, &d1), (&a1, &d2), (&a2, &d3)].into_iter().enumerate() {
                w[k] = &w[k] - &(a.t().dot(dz) * lr);
                b[k] = &b[k] - &(dz.sum_axis(Axis(0)) * lr);
            }
            bar.inc(chunk.len() as u64);
        }
        // Test accuracy.
        let xt = test.images.mapv(|v| v as f32);
        let h = (xt.dot(&w[0]) + &b[0]).mapv(|v| v.max(0.0));
        let h = (h.dot(&w[1]) + &b[1]).mapv(|v| v.max(0.0));
        let out = h.dot(&w[2]) + &b[2];
        let hits = out
            .rows()
            .into_iter()
            .zip(test.labels.iter())
            .filter(|(r, l)| {
                r.iter()
                    .enumerate()
                    .fold(0, |bi, (i, &v)| if v > r[bi] { i } else { bi })
                    == **l as usize
            })
            .count();
        bar.println(format!(
            "epoch {}: test accuracy {:.4}",
            epoch + 1,
            hits as f64 / xt.nrows() as f64
        ));
    }
    bar.finish_and_clear();
    std::fs::create_dir_all("models")?;
    let t = |a: &Array2<f32>| a.mapv(|v| v as f64).into_dyn();
    let v = |a: &Array1<f32>| a.mapv(|v| v as f64).into_dyn();
    save_safetensors(
        std::path::Path::new("models/mnist-mlp.safetensors"),
        &[
            ("w1", t(&w[0])),
            ("b1", v(&b[0])),
            ("w2", t(&w[1])),
            ("b2", v(&b[1])),
            ("w3", t(&w[2])),
            ("b3", v(&b[2])),
        ],
    )?;
    println!("wrote models/mnist-mlp.safetensors");
    Ok(())
}
