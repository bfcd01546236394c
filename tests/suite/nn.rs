//! Networks declared with `privpy::nn`, weights in PyTorch's names and layouts: private
//! and cleartext logits against an independent reference written here in PyTorch's
//! semantics (loops over the raw state dict, no folding), the loader's checks, and the
//! model trained and exported by PyTorch itself (`models/torch/`).

use privpy::data::{load_mnist, shipped};
use privpy::ml::torch_mnist_cnn;
use privpy::model::load_safetensors;
use privpy::nn::{Layer, ModelError, Sequential, WrongShape};
use privpy::prelude::*;
use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::BTreeMap;

type StateDict = BTreeMap<String, ArrayD<f64>>;

fn uniform(rng: &mut ChaCha12Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn random(rng: &mut ChaCha12Rng, shape: &[usize], lo: f64, hi: f64) -> ArrayD<f64> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || uniform(rng, lo, hi))
}

use ndarray::IxDyn;

/// A state dict of random tensors of the shapes the model expects (batch-norm
/// variances positive), plus a `num_batches_tracked` per batch norm, as PyTorch has.
fn random_state_dict(model: &privpy::nn::Model, seed: u64) -> StateDict {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let mut sd = StateDict::new();
    for (name, shape) in model.expected_tensors() {
        let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
        let a = if name.ends_with("running_var") {
            random(&mut rng, &shape, 0.2, 2.0)
        } else if name.ends_with("running_mean") || shape.len() == 1 {
            random(&mut rng, &shape, -0.5, 0.5)
        } else {
            let r = 1.5 / (fan_in as f64).sqrt();
            random(&mut rng, &shape, -r, r)
        };
        sd.insert(name, a);
    }
    for l in model.layers() {
        if let Layer::BatchNorm { name, .. } = l {
            sd.insert(
                format!("{name}.num_batches_tracked"),
                ArrayD::from_elem(IxDyn(&[]), 7.0),
            );
        }
    }
    sd
}

/// PyTorch's semantics on one sample, straight from the raw state dict.
fn reference(
    model: &privpy::nn::Model,
    sd: &StateDict,
    norm: Option<(&[f64], &[f64])>,
    x: &[f64],
) -> Vec<f64> {
    let mut shape = model.input_shape().to_vec();
    let mut v = x.to_vec();
    if let Some((mean, std)) = norm {
        let per = v.len() / shape[0];
        for (i, e) in v.iter_mut().enumerate() {
            let c = i / per;
            let (m, s) = (
                mean[if mean.len() == 1 { 0 } else { c }],
                std[if std.len() == 1 { 0 } else { c }],
            );
            *e = (*e - m) / s;
        }
    }
    let t = |n: &str| &sd[n];
    for layer in model.layers() {
        match layer {
            Layer::Linear {
                name,
                outputs,
                bias,
            } => {
                let w = t(&format!("{name}.weight"));
                let inputs = v.len();
                v = (0..*outputs)
                    .map(|o| {
                        let b = if *bias {
                            t(&format!("{name}.bias"))[[o]]
                        } else {
                            0.0
                        };
                        b + (0..inputs).map(|i| w[[o, i]] * v[i]).sum::<f64>()
                    })
                    .collect();
                shape = vec![*outputs];
            }
            Layer::Conv2d {
                name,
                outputs,
                kernel: k,
                stride: st,
                padding: p,
                bias,
            } => {
                let (c, h, wd) = (shape[0], shape[1], shape[2]);
                let (ho, wo) = ((h + 2 * p - k) / st + 1, (wd + 2 * p - k) / st + 1);
                let w = t(&format!("{name}.weight"));
                let mut out = vec![0.0; outputs * ho * wo];
                for o in 0..*outputs {
                    for i in 0..ho {
                        for j in 0..wo {
                            let mut acc = if *bias {
                                t(&format!("{name}.bias"))[[o]]
                            } else {
                                0.0
                            };
                            for ch in 0..c {
                                for di in 0..*k {
                                    for dj in 0..*k {
                                        let r = (i * st + di) as isize - *p as isize;
                                        let q = (j * st + dj) as isize - *p as isize;
                                        if r >= 0 && q >= 0 && (r as usize) < h && (q as usize) < wd
                                        {
                                            acc += w[[o, ch, di, dj]]
                                                * v[(ch * h + r as usize) * wd + q as usize];
                                        }
                                    }
                                }
                            }
                            out[(o * ho + i) * wo + j] = acc;
                        }
                    }
                }
                v = out;
                shape = vec![*outputs, ho, wo];
            }
            Layer::BatchNorm { name, eps } => {
                let per = v.len() / shape[0];
                for (i, e) in v.iter_mut().enumerate() {
                    let c = i / per;
                    let g = |s: &str| t(&format!("{name}.{s}"))[[c]];
                    *e = (*e - g("running_mean")) / (g("running_var") + eps).sqrt() * g("weight")
                        + g("bias");
                }
            }
            Layer::Relu => v.iter_mut().for_each(|e| *e = e.max(0.0)),
            Layer::Sigmoid => v.iter_mut().for_each(|e| *e = 1.0 / (1.0 + (-*e).exp())),
            Layer::MaxPool {
                kernel: k,
                stride: st,
            }
            | Layer::AvgPool {
                kernel: k,
                stride: st,
            }
            | Layer::SumPool {
                kernel: k,
                stride: st,
            } => {
                let (c, h, wd) = (shape[0], shape[1], shape[2]);
                let (ho, wo) = ((h - k) / st + 1, (wd - k) / st + 1);
                let mut out = Vec::new();
                for ch in 0..c {
                    for i in 0..ho {
                        for j in 0..wo {
                            let win: Vec<f64> = (0..k * k)
                                .map(|d| v[(ch * h + i * st + d / k) * wd + j * st + d % k])
                                .collect();
                            out.push(match layer {
                                Layer::MaxPool { .. } => {
                                    win.iter().cloned().fold(f64::MIN, f64::max)
                                }
                                Layer::AvgPool { .. } => win.iter().sum::<f64>() / (k * k) as f64,
                                _ => win.iter().sum::<f64>(),
                            });
                        }
                    }
                }
                v = out;
                shape = vec![c, ho, wo];
            }
            Layer::Flatten => shape = vec![v.len()],
            Layer::Rbf { name, classes } => {
                let p = t(&format!("{name}.weight"));
                let xx: f64 = v.iter().map(|e| e * e).sum();
                v = (0..*classes)
                    .map(|c| {
                        xx - (0..v.len())
                            .map(|i| (v[i] - p[[c, i]]).powi(2))
                            .sum::<f64>()
                    })
                    .collect();
                shape = vec![*classes];
            }
            other => panic!("no reference for {other:?}"),
        }
    }
    v
}

fn reference_batch(
    model: &privpy::nn::Model,
    sd: &StateDict,
    norm: Option<(&[f64], &[f64])>,
    x: &Array2<f64>,
) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = x
        .rows()
        .into_iter()
        .map(|r| reference(model, sd, norm, &r.to_vec()))
        .collect();
    Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j])
}

fn private_logits(
    model: &privpy::nn::Model,
    w: &privpy::nn::Weights,
    x: &Array2<f64>,
    config: Config,
) -> Array2<f64> {
    let mut cluster = LocalCluster::new(config);
    let owner = cluster.client("owner");
    let user = cluster.client("user");
    w.upload(&mut cluster, &owner, "net").unwrap();
    cluster.upload(&user, "x", x).unwrap();
    let run = cluster
        .run(|s| {
            let net = model.secret_weights(s, "net")?;
            let x = s.input::<Array2<f64>>("x")?;
            s.output("user", "logits", &model.logits(&net, &x)?)
        })
        .unwrap();
    run.open(&user, "logits").unwrap()
}

fn max_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    assert_eq!(a.dim(), b.dim());
    (a - b).iter().fold(0.0f64, |m, d| m.max(d.abs()))
}

const MEAN: [f64; 2] = [0.5, -0.2];
const STD: [f64; 2] = [2.0, 0.5];

/// Every layer kind: folded and standalone batch norms, a normalization folded into a
/// padded, strided convolution, all three poolings, sigmoid, ReLU, RBF.
fn every_layer() -> privpy::nn::Model {
    Sequential::new(&[2, 9, 9])
        .normalize(&MEAN, &STD)
        .conv2d("c1", 3, 3)
        .padding(1)
        .batch_norm("bn1")
        .relu()
        .max_pool(2)
        .batch_norm("bn2")
        .conv2d("c2", 4, 3)
        .padding(1)
        .stride(2)
        .no_bias()
        .sigmoid()
        .avg_pool(2)
        .stride(1)
        .sum_pool(1)
        .flatten()
        .linear("fc", 5)
        .batch_norm("bn3")
        .eps(1e-3)
        .sigmoid()
        .rbf("out", 3)
        .build()
        .unwrap()
}

#[test]
fn every_layer_matches_pytorch_semantics_privately_and_in_the_clear() {
    let model = every_layer();
    assert!(model.normalization_folded());
    assert_eq!(model.shapes().last().unwrap(), &vec![3]);
    let sd = random_state_dict(&model, 1);
    let w = model.prepare(&sd).unwrap();
    let mut rng = ChaCha12Rng::seed_from_u64(2);
    let x = random(&mut rng, &[6, 162], 0.0, 1.0)
        .into_dimensionality()
        .unwrap();
    let want = reference_batch(&model, &sd, Some((&MEAN, &STD)), &x);
    // The preparation (folds, layouts) is exact in f64.
    let clear = model.clear_logits(&w, &x).unwrap();
    assert!(
        max_diff(&clear, &want) < 1e-9,
        "cleartext {clear} vs reference {want}"
    );
    // Private: fixed point plus the sigmoid's tolerance (1e-4 per sigmoid, amplified
    // by the RBF's products of magnitude < 10).
    for config in [Config::default(), Config::fast()] {
        let got = private_logits(&model, &w, &x, config);
        let d = max_diff(&got, &want);
        assert!(d < 5e-3, "private logits off by {d}: {got} vs {want}");
    }
}

#[test]
fn unfoldable_normalization_and_flat_inputs() {
    // Normalization before a pooling layer is applied publicly; per-feature
    // normalization of a flat input folds into the first linear layer; a batch norm
    // after ReLU stays standalone; large batches run in chunks.
    let pooled = Sequential::new(&[2, 6, 6])
        .normalize(&MEAN, &STD)
        .sum_pool(2)
        .flatten()
        .linear("fc", 4)
        .build()
        .unwrap();
    assert!(!pooled.normalization_folded());
    let mean: Vec<f64> = (0..12).map(|i| i as f64 * 0.1 - 0.5).collect();
    let std: Vec<f64> = (0..12).map(|i| 0.5 + i as f64 * 0.1).collect();
    let flat = Sequential::new(&[12])
        .normalize(&mean, &std)
        .linear("fc1", 8)
        .relu()
        .batch_norm("bn")
        .linear("fc2", 3)
        .build()
        .unwrap()
        .with_batch_chunk(4);
    assert!(flat.normalization_folded());
    let mut rng = ChaCha12Rng::seed_from_u64(3);
    for (model, norm, cols) in [
        (&pooled, (&MEAN[..], &STD[..]), 72),
        (&flat, (&mean[..], &std[..]), 12),
    ] {
        let sd = random_state_dict(model, 4);
        let w = model.prepare(&sd).unwrap();
        let x: Array2<f64> = random(&mut rng, &[10, cols], -1.0, 1.0)
            .into_dimensionality()
            .unwrap();
        let want = reference_batch(model, &sd, Some(norm), &x);
        assert!(max_diff(&model.clear_logits(&w, &x).unwrap(), &want) < 1e-9);
        let got = private_logits(model, &w, &x, Config::default());
        let d = max_diff(&got, &want);
        assert!(d < 1e-4, "private logits off by {d}");
        let report = model.check(&w, &x, Config::fast()).unwrap();
        assert_eq!(report.samples, 10);
        assert!(report.max_logit_diff < 1e-2, "{report}");
        assert!(report.bytes > 0 && report.rounds > 0);
    }
}

#[test]
fn the_loader_lists_every_mismatch_before_sharing() {
    let model = every_layer();
    let mut sd = random_state_dict(&model, 5);
    sd.remove("c1.bias");
    sd.remove("bn2.running_var");
    sd.insert("extra.weight".into(), ArrayD::zeros(IxDyn(&[2])));
    sd.insert("bn9.num_batches_tracked".into(), ArrayD::zeros(IxDyn(&[])));
    // fc: (out, in) = (5, 4) expected; a transposed one is caught by its shape.
    let fc = sd["fc.weight"].clone().reversed_axes();
    sd.insert("fc.weight".into(), fc);
    match model.prepare(&sd) {
        Err(ModelError::StateDict {
            missing,
            unexpected,
            wrong_shapes,
        }) => {
            assert_eq!(
                missing,
                vec!["c1.bias".to_string(), "bn2.running_var".to_string()]
            );
            assert_eq!(
                unexpected,
                vec![
                    "bn9.num_batches_tracked".to_string(),
                    "extra.weight".to_string()
                ]
            );
            assert_eq!(
                wrong_shapes,
                vec![WrongShape {
                    tensor: "fc.weight".into(),
                    layer: "linear \"fc\"".into(),
                    expected: vec![5, 4],
                    actual: vec![4, 5],
                }]
            );
        }
        other => panic!("expected a state-dict mismatch, got {other:?}"),
    }
    // Values the model cannot use.
    let mut sd = random_state_dict(&model, 6);
    sd.get_mut("c2.weight").unwrap()[[0, 1, 2, 0]] = f64::NAN;
    assert!(
        matches!(model.prepare(&sd), Err(ModelError::BadValue { tensor, .. }) if tensor == "c2.weight")
    );
    let mut sd = random_state_dict(&model, 6);
    sd.get_mut("bn2.running_var").unwrap()[[1]] = -1.0;
    assert!(
        matches!(model.prepare(&sd), Err(ModelError::BadValue { tensor, .. }) if tensor == "bn2.running_var")
    );
    // A file that is not safetensors.
    let p = std::env::temp_dir().join(format!("privpy-nn-{}.safetensors", std::process::id()));
    std::fs::write(&p, b"not a safetensors file").unwrap();
    assert!(matches!(
        model.load_safetensors(&p),
        Err(ModelError::File(_))
    ));
    let _ = std::fs::remove_file(&p);
}

#[test]
fn declarations_that_cannot_work_are_refused() {
    let decl = |r: Result<privpy::nn::Model, ModelError>| match r {
        Err(ModelError::Declaration { index, .. }) => index,
        other => panic!("expected a declaration error, got {other:?}"),
    };
    // Linear on an unflattened activation.
    assert_eq!(
        decl(Sequential::new(&[1, 4, 4]).relu().linear("fc", 2).build()),
        1
    );
    // Convolution on a flat input; a window larger than its input.
    assert_eq!(decl(Sequential::new(&[16]).conv2d("c", 2, 3).build()), 0);
    assert_eq!(
        decl(Sequential::new(&[1, 4, 4]).conv2d("c", 2, 5).build()),
        0
    );
    assert_eq!(
        decl(
            Sequential::new(&[1, 4, 4])
                .max_pool(2)
                .stride(0)
                .flatten()
                .build()
        ),
        0
    );
    // Modifiers after the wrong layer.
    assert_eq!(
        decl(Sequential::new(&[1, 4, 4]).relu().padding(1).build()),
        0
    );
    assert_eq!(
        decl(
            Sequential::new(&[4])
                .linear("a", 2)
                .relu()
                .eps(1e-3)
                .build()
        ),
        1
    );
    // Names, normalization, input shapes, empty models.
    assert_eq!(
        decl(Sequential::new(&[4]).linear("a", 2).linear("a", 2).build()),
        1
    );
    assert_eq!(
        decl(
            Sequential::new(&[2, 4, 4])
                .normalize(&[0.0; 3], &[1.0])
                .flatten()
                .build()
        ),
        0
    );
    assert_eq!(
        decl(
            Sequential::new(&[4])
                .normalize(&[0.0], &[0.0])
                .relu()
                .build()
        ),
        0
    );
    assert_eq!(
        decl(
            Sequential::new(&[4])
                .relu()
                .normalize(&[0.0], &[1.0])
                .build()
        ),
        1
    );
    assert_eq!(decl(Sequential::new(&[2, 2]).relu().build()), 0);
    assert_eq!(decl(Sequential::new(&[4]).build()), 0);
}

#[test]
fn wrong_inputs_and_foreign_weights_are_errors() {
    let a = Sequential::new(&[4]).linear("fc", 3).build().unwrap();
    let b = Sequential::new(&[4]).linear("fc", 2).build().unwrap();
    let wa = a.prepare(&random_state_dict(&a, 7)).unwrap();
    // Five columns for a four-value sample.
    let x5 = Array2::<f64>::zeros((2, 5));
    assert!(matches!(
        a.clear_logits(&wa, &x5),
        Err(ModelError::Input { expected: 4, .. })
    ));
    assert!(matches!(
        a.check(&wa, &x5, Config::fast()),
        Err(Error::InvalidArgument { .. })
    ));
    // Weights prepared for `a`, loaded as `b`'s.
    let mut cluster = LocalCluster::new(Config::fast());
    let owner = cluster.client("owner");
    wa.upload(&mut cluster, &owner, "net").unwrap();
    cluster
        .upload(&owner, "x", Array2::<f64>::zeros((2, 4)))
        .unwrap();
    let r = cluster.run(|s| {
        let net = b.secret_weights(s, "net")?;
        let x = s.input::<Array2<f64>>("x")?;
        s.output("owner", "y", &b.logits(&net, &x)?)
    });
    assert!(
        matches!(r, Err(Error::InvalidArgument { .. })),
        "{:?}",
        r.err()
    );
    // The right weights, a wrong input width inside the program.
    let r = cluster.run(|s| {
        let net = a.secret_weights(s, "net")?;
        let x = s.input::<Array2<f64>>("x")?;
        s.output("owner", "y", &a.logits(&net, &x.slice(s![.., 0..3]))?)
    });
    assert!(
        matches!(r, Err(Error::InvalidArgument { .. })),
        "{:?}",
        r.err()
    );
}

/// The CNN trained and exported by PyTorch (`models/torch/train_mnist_cnn.py`): its
/// `state_dict` loads unchanged, and on the shipped test images the cleartext logits
/// equal PyTorch's own (double precision) and the private predictions equal PyTorch's.
#[test]
fn a_pytorch_state_dict_predicts_as_pytorch_does() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = torch_mnist_cnn().build().unwrap();
    let weights = model
        .load_safetensors(&root.join("models/mnist-torch-cnn.safetensors"))
        .unwrap();
    let torch =
        load_safetensors(&root.join("models/mnist-torch-cnn-reference.safetensors")).unwrap();
    let n = 60;
    let want = torch["logits"]
        .slice(s![..n, ..])
        .to_owned()
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap();
    let test = load_mnist(
        &shipped("mnist/t10k-300-images-idx3-ubyte"),
        &shipped("mnist/t10k-300-labels-idx1-ubyte"),
        Some(n),
    )
    .unwrap();
    let clear = model.clear_logits(&weights, &test.images).unwrap();
    // f32 weights read exactly; PyTorch normalized the images in f32 (error ~1e-7).
    assert!(
        max_diff(&clear, &want) < 1e-4,
        "cleartext vs PyTorch: {}",
        max_diff(&clear, &want)
    );
    let argmax = |a: &Array2<f64>| -> Vec<usize> {
        a.rows()
            .into_iter()
            .map(|r| (0..r.len()).fold(0, |b, j| if r[j] > r[b] { j } else { b }))
            .collect()
    };
    let private = private_logits(
        &model.with_batch_chunk(20),
        &weights,
        &test.images,
        Config::default(),
    );
    let d = max_diff(&private, &want);
    // Fixed point with 32 fractional bits, and one sigmoid layer to 1e-4.
    assert!(d < 5e-3, "private vs PyTorch logits: {d}");
    assert_eq!(
        argmax(&private),
        argmax(&want),
        "private and PyTorch predictions"
    );
    let correct = argmax(&private)
        .iter()
        .zip(&test.labels)
        .filter(|(p, l)| **p == **l as usize)
        .count();
    assert!(correct >= 58, "{correct}/{n} correct");
}

/// Prepared weights are the owner's secret in the clear: `Debug` shows names and
/// shapes, never values.
#[test]
fn weights_debug_shows_no_values() {
    let model = Sequential::new(&[2]).linear("fc", 1).build().unwrap();
    let mut sd = StateDict::new();
    sd.insert(
        "fc.weight".into(),
        ArrayD::from_elem(IxDyn(&[1, 2]), 0.123456),
    );
    sd.insert("fc.bias".into(), ArrayD::from_elem(IxDyn(&[1]), 0.987654));
    let w = model.prepare(&sd).unwrap();
    let text = format!("{w:?}");
    assert!(text.contains("0.w") && text.contains("[2, 1]"), "{text}");
    assert!(!text.contains("0.123") && !text.contains("0.987"), "{text}");
}
