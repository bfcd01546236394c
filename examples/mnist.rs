//! Private MNIST inference: a secret model and secret images.
//!
//! The model owner secret-shares the weights of LeNet-5 (default; trained in cleartext
//! by `examples/train_lenet.rs`), of LeNet-5 with batch normalization (`--model
//! lenet5-bn`; `train_lenet.rs --batch-norm`; the batch-norm parameters are secret
//! too) or of the 784-625-625-10 network (`--model mlp`; `examples/train_mnist.rs`),
//! stored as safetensors; the image owner secret-shares test images; the four servers
//! compute the predictions without seeing either; only the image owner opens them. The
//! same program also runs on the cleartext engine, and the predictions are compared.
//!
//! `--model torch-cnn` runs a CNN trained by PyTorch (`models/torch/train_mnist_cnn.py`)
//! from its `state_dict` (`models/mnist-torch-cnn.safetensors`, or `--weights PATH` for
//! a state dict of your own with the same layers), declared with `privpy::nn`; it first
//! prints [`privpy::nn::Model::check`]'s report on a few images.
//!
//! `cargo run --release --example mnist [-- --model lenet5|lenet5-bn|mlp|torch-cnn --images N --batch B --fast --weights PATH]`
//! uses the 300 images shipped in `data/`. Defaults: LeNet-5 (with or without batch
//! normalization) on 100 images in batches of 20, the MLP on 300 images in batches of
//! 50, both with the default preset (`--fast` for Z64 with 16 fractional bits).

use privpy::data::{load_mnist, shipped};
use privpy::ml::{LeNet5, LeNet5Bn, mlp_predict_inputs, torch_mnist_cnn};
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
    let args: Vec<String> = std::env::args().collect();
    let model_arg = args
        .windows(2)
        .find(|w| w[0] == "--model")
        .map_or("lenet5", |w| w[1].as_str());
    if model_arg == "torch-cnn" {
        return torch_cnn(&args);
    }
    let (lenet, bn) = match model_arg {
        "lenet5" => (true, false),
        "lenet5-bn" => (true, true),
        "mlp" => (false, false),
        other => {
            return Err(
                format!("unknown --model {other:?}: lenet5, lenet5-bn, mlp or torch-cnn").into(),
            );
        }
    };
    let n_images = arg("--images", if lenet { 100 } else { 300 });
    let batch = arg("--batch", if lenet { 20 } else { 50 }).max(1);
    let fast = args.iter().any(|a| a == "--fast");
    let cfg = if fast {
        Config::fast()
    } else {
        Config::default()
    };
    let test = load_mnist(
        &shipped("mnist/t10k-300-images-idx3-ubyte"),
        &shipped("mnist/t10k-300-labels-idx1-ubyte"),
        Some(n_images),
    )?;
    let file = match (lenet, bn) {
        (true, false) => "models/mnist-lenet5.safetensors",
        (true, true) => "models/mnist-lenet5-bn.safetensors",
        (false, _) => "models/mnist-mlp.safetensors",
    };
    let model = load_safetensors(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file))?;
    let n = test.labels.len();
    let net = match (lenet, bn) {
        (true, false) => "LeNet-5",
        (true, true) => "LeNet-5 with batch normalization",
        (false, _) => "a 784-625-625-10 network",
    };
    println!(
        "private inference of {net} on {n} MNIST test images, batches of {batch}, {:?} with {} fractional bits",
        cfg.ring(),
        cfg.frac_bits()
    );

    let program = |s: &Session| {
        let digits = match (lenet, bn) {
            (true, false) => LeNet5::from_inputs(s)?.predict(&s.input("images")?)?,
            (true, true) => LeNet5Bn::from_inputs(s)?.predict(&s.input("images")?)?,
            (false, _) => mlp_predict_inputs(s, "images")?,
        };
        s.output("imageowner", "digits", &digits)
    };
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

    let (mut correct, mut agree, mut bytes, mut private_secs) = (0, 0, 0, 0.0);
    for b0 in (0..n).step_by(batch) {
        let b1 = (b0 + batch).min(n);
        let images = test.images.slice(s![b0..b1, ..]).to_owned();
        let t = Instant::now();
        let (private, by) = predict(LocalCluster::new(cfg), images.clone())?;
        let secs = t.elapsed().as_secs_f64();
        private_secs += secs;
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
    println!(
        "\naccuracy {:.4} ({correct}/{n}); private and cleartext predictions agree on {agree}/{n}; \
         {:.1} ms per image (private runs, sharing included); {:.1} MB between servers per image",
        correct as f64 / n as f64,
        private_secs * 1e3 / n as f64,
        bytes as f64 / n as f64 / 1e6
    );
    Ok(())
}

/// `--model torch-cnn`: a PyTorch state dict, declared with `privpy::nn`.
fn torch_cnn(args: &[String]) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let n_images = arg("--images", 100);
    let batch = arg("--batch", 20).max(1);
    let cfg = if args.iter().any(|a| a == "--fast") {
        Config::fast()
    } else {
        Config::default()
    };
    let path = args.windows(2).find(|w| w[0] == "--weights").map_or_else(
        || {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("models/mnist-torch-cnn.safetensors")
        },
        |w| w[1].clone().into(),
    );
    let model = torch_mnist_cnn().build()?;
    // Checked against the declaration before anything is shared.
    let weights = model.load_safetensors(&path)?;
    let test = load_mnist(
        &shipped("mnist/t10k-300-images-idx3-ubyte"),
        &shipped("mnist/t10k-300-labels-idx1-ubyte"),
        Some(n_images),
    )?;
    let n = test.labels.len();
    println!(
        "private inference of the PyTorch CNN in {} on {n} MNIST test images, batches of {batch}, {:?} with {} fractional bits",
        path.display(),
        cfg.ring(),
        cfg.frac_bits()
    );
    let probe = test.images.slice(s![..n.min(4), ..]).to_owned();
    println!("check: {}", model.check(&weights, &probe, cfg)?);
    let (mut correct, mut agree, mut bytes, mut secs) = (0, 0, 0, 0.0);
    for b0 in (0..n).step_by(batch) {
        let b1 = (b0 + batch).min(n);
        let images = test.images.slice(s![b0..b1, ..]).to_owned();
        let mut cluster = LocalCluster::new(cfg);
        let owner = cluster.client("modelowner");
        let user = cluster.client("imageowner");
        weights.upload(&mut cluster, &owner, "cnn")?;
        cluster.upload(&user, "images", &images)?;
        let t = Instant::now();
        let run = cluster.run(|s| {
            let net = model.secret_weights(s, "cnn")?;
            s.output(
                "imageowner",
                "digits",
                &model.predict(&net, &s.input("images")?)?,
            )
        })?;
        secs += t.elapsed().as_secs_f64();
        bytes += run.stats().total_bytes();
        let private: Array1<f64> = run.open(&user, "digits")?;
        let clear = model.clear_logits(&weights, &images)?;
        for k in 0..b1 - b0 {
            let row = clear.row(k);
            let c = (0..row.len()).fold(0, |best, j| if row[j] > row[best] { j } else { best });
            let (p, truth) = (private[k] as usize, test.labels[b0 + k] as usize);
            correct += usize::from(p == truth);
            agree += usize::from(p == c);
        }
    }
    println!(
        "accuracy {:.4} ({correct}/{n}); private and cleartext predictions agree on {agree}/{n}; \
         {:.1} ms per image; {:.1} MB between servers per image",
        correct as f64 / n as f64,
        secs * 1e3 / n as f64,
        bytes as f64 / n as f64 / 1e6
    );
    Ok(())
}
