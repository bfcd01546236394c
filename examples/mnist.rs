//! Private MNIST inference: a secret model and secret images.
//!
//! The model owner secret-shares the weights of the 784-625-625-10 network (trained in
//! cleartext by `examples/train_mnist.rs`, stored as safetensors); the image owner
//! secret-shares test images; the four servers compute the predictions without seeing
//! either; only the image owner opens them. The same program also runs on the
//! cleartext engine, and the predictions are compared.
//!
//! `cargo run --release --example mnist [-- --images 300 --batch 50 --fast]`
//! uses the 300 images shipped in `data/`.

use privpy::data::{load_mnist, shipped};
use privpy::ml::mlp_predict_inputs;
use privpy::model::load_safetensors;
use privpy::prelude::*;
use std::time::Instant;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let n_images = arg("--images", 300);
    let batch = arg("--batch", 50).max(1);
    let cfg = if std::env::args().any(|a| a == "--fast") {
        Config::fast()
    } else {
        Config::default()
    };
    let test = load_mnist(
        &shipped("mnist/t10k-300-images-idx3-ubyte"),
        &shipped("mnist/t10k-300-labels-idx1-ubyte"),
        Some(n_images),
    )?;
    let model = load_safetensors(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mnist-mlp.safetensors"),
    )?;
    let n = test.labels.len();
    println!(
        "private inference of a 784-625-625-10 network on {n} MNIST test images, batches of {batch}, {:?}",
        cfg.ring()
    );

    let program = |s: &Session| s.output("imageowner", "digits", &mlp_predict_inputs(s, "images")?);
    let predict =
        |mut cluster: LocalCluster, images: Array2<f64>| -> privpy::Result<(Array1<f64>, u64)> {
            let owner = cluster.client("modelowner");
            let user = cluster.client("imageowner");
            for (name, t) in &model {
                cluster.upload(&owner, name, t)?;
            }
            cluster.upload(&user, "images", &images)?;
            let out = cluster.run(program)?;
            Ok((out.open(&user, "digits")?, out.stats().total_bytes()))
        };

    let (mut correct, mut agree, mut bytes) = (0, 0, 0);
    let start = Instant::now();
    for b0 in (0..n).step_by(batch) {
        let b1 = (b0 + batch).min(n);
        let images = test.images.slice(s![b0..b1, ..]).to_owned();
        let t = Instant::now();
        let (private, by) = predict(LocalCluster::new(cfg), images.clone())?;
        let secs = t.elapsed().as_secs_f64();
        let (clear, _) = predict(LocalCluster::cleartext(), images)?;
        bytes += by;
        for k in 0..b1 - b0 {
            let (p, c, truth) = (private[k] as u8, clear[k] as u8, test.labels[b0 + k]);
            correct += usize::from(p == truth);
            agree += usize::from(p == c);
            if b0 + k < 10 {
                println!(
                    "image {:>3}: predicted {p} (cleartext {c}), true label {truth}",
                    b0 + k
                );
            }
        }
        println!(
            "images {b0}..{b1}: {:.1} ms per image, running accuracy {:.3}",
            secs * 1e3 / (b1 - b0) as f64,
            correct as f64 / b1 as f64
        );
    }
    let total = start.elapsed().as_secs_f64();
    println!(
        "\naccuracy {:.4} ({correct}/{n}); private and cleartext predictions agree on {agree}/{n}; \
         {:.1} ms per image overall (cleartext runs included: {:.1} s); {:.1} MB between servers per image",
        correct as f64 / n as f64,
        total * 1e3 / n as f64,
        total,
        bytes as f64 / n as f64 / 1e6
    );
    Ok(())
}
