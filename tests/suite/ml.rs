//! Data loaders (valid and malformed files) and private training fidelity.

use privpy::data::{DataError, load_libsvm, load_mnist, shipped};
use privpy::ml::{accuracy, entries, logistic_regression, rows};
use privpy::prelude::*;
use std::path::PathBuf;

fn temp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("privpy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn shipped_slices_load_with_the_published_properties() {
    let m = load_mnist(
        &shipped("mnist/t10k-300-images-idx3-ubyte"),
        &shipped("mnist/t10k-300-labels-idx1-ubyte"),
        None,
    )
    .unwrap();
    assert_eq!(m.images.dim(), (300, 784));
    // The first test labels of MNIST, as its README records them.
    assert_eq!(
        m.labels.slice(s![..10]).to_vec(),
        vec![7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    );
    assert!(m.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
    let a = load_libsvm(&shipped("adult/a9a-first-2000"), 123, None).unwrap();
    assert_eq!(a.x.dim(), (2000, 124));
    assert!(a.x.column(123).iter().all(|&b| b == 1.0), "bias column");
    assert!(a.y.iter().all(|&y| y == 0.0 || y == 1.0));
    let limited = load_libsvm(&shipped("adult/a9a.t-first-1000"), 123, Some(10)).unwrap();
    assert_eq!(limited.y.len(), 10);
}

#[test]
fn malformed_files_are_clear_errors() {
    let lab = shipped("mnist/t10k-300-labels-idx1-ubyte");
    let img = std::fs::read(shipped("mnist/t10k-300-images-idx3-ubyte")).unwrap();
    // Truncated images.
    let p = temp("trunc-images", &img[..1000]);
    let e = load_mnist(&p, &lab, None).unwrap_err();
    assert!(
        matches!(e, DataError::Format { .. }) && e.to_string().contains("300 images need"),
        "{e}"
    );
    // Wrong magic.
    let mut bad = img.clone();
    bad[3] = 0x01;
    let e = load_mnist(&temp("bad-magic", &bad), &lab, None).unwrap_err();
    assert!(e.to_string().contains("magic"), "{e}");
    // Header shorter than 16 bytes.
    let e = load_mnist(&temp("tiny", &img[..6]), &lab, None).unwrap_err();
    assert!(e.to_string().contains("header"), "{e}");
    // A missing file names the path.
    let e = load_mnist(&PathBuf::from("/nonexistent/x"), &lab, None).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }) && e.to_string().contains("/nonexistent/x"));
    // LIBSVM: a bad label, a bad pair, an index out of range, a non-number, naming the line.
    for (text, needle) in [
        ("+1 3:1\n2 4:1\n", "line 2"),
        ("-1 3:1 7\n", "not index:value"),
        ("-1 124:1\n", "outside 1..=123"),
        ("-1 3:abc\n", "not a finite number"),
        ("-1 3:NaN\n", "not a finite number"),
    ] {
        let e = load_libsvm(&temp("bad.svm", text.as_bytes()), 123, None).unwrap_err();
        assert!(e.to_string().contains(needle), "{text:?}: {e}");
    }
}

#[test]
fn private_logistic_regression_matches_cleartext() {
    let train = load_libsvm(&shipped("adult/a9a-first-2000"), 123, Some(600)).unwrap();
    let test = load_libsvm(&shipped("adult/a9a.t-first-1000"), 123, None).unwrap();
    let program = |s: &Session| {
        let (x, y) = (rows(s, &["xa", "xb"])?, entries(s, &["ya", "yb"])?);
        s.output(
            "carol",
            "w",
            &logistic_regression(x, y, s.zeros(124), 100, 12, 0.5),
        )
    };
    let run = |mut c: LocalCluster| -> Array1<f64> {
        let (a, b, carol) = (c.client("alice"), c.client("bob"), c.client("carol"));
        c.upload(&a, "xa", train.x.slice(s![..300, ..]).to_owned())
            .unwrap();
        c.upload(&a, "ya", train.y.slice(s![..300]).to_owned())
            .unwrap();
        c.upload(&b, "xb", train.x.slice(s![300.., ..]).to_owned())
            .unwrap();
        c.upload(&b, "yb", train.y.slice(s![300..]).to_owned())
            .unwrap();
        c.run(program).unwrap().open(&carol, "w").unwrap()
    };
    let wc = run(LocalCluster::cleartext());
    for cfg in [Config::default(), Config::fast()] {
        let wp = run(LocalCluster::new(cfg).with_seed(1));
        let rrmse = (&wp - &wc).mapv(|d| d * d).sum().sqrt() / wc.mapv(|d| d * d).sum().sqrt();
        let tol = if cfg == Config::fast() { 1e-2 } else { 1e-6 };
        assert!(rrmse < tol, "{cfg:?}: RRMSE {rrmse}");
        let (ap, ac) = (
            accuracy(&test.x, &test.y, &wp),
            accuracy(&test.x, &test.y, &wc),
        );
        assert!((ap - ac).abs() <= 0.002, "{cfg:?}: accuracy {ap} vs {ac}");
        assert!(ac > 0.75, "the model learned something: {ac}");
    }
}

#[test]
fn private_mnist_predictions_equal_cleartext() {
    use privpy::ml::mlp_predict_inputs;
    use privpy::model::load_safetensors;
    let test = load_mnist(
        &shipped("mnist/t10k-300-images-idx3-ubyte"),
        &shipped("mnist/t10k-300-labels-idx1-ubyte"),
        Some(12),
    )
    .unwrap();
    let model = load_safetensors(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mnist-mlp.safetensors"),
    )
    .unwrap();
    assert_eq!(model["w1"].shape(), &[784, 625]);
    assert_eq!(model["b3"].shape(), &[10]);
    let predict = |mut c: LocalCluster| -> Array1<f64> {
        let (owner, user) = (c.client("owner"), c.client("user"));
        for (k, t) in &model {
            c.upload(&owner, k, t).unwrap();
        }
        c.upload(&user, "x", &test.images).unwrap();
        c.run(|s| s.output("user", "d", &mlp_predict_inputs(s, "x")?))
            .unwrap()
            .open(&user, "d")
            .unwrap()
    };
    let clear = predict(LocalCluster::cleartext());
    for cfg in [Config::fast(), Config::default()] {
        assert_eq!(
            predict(LocalCluster::new(cfg).with_seed(1)),
            clear,
            "{cfg:?}"
        );
    }
    let hits = clear
        .iter()
        .zip(test.labels.iter())
        .filter(|(p, l)| **p as u8 == **l)
        .count();
    assert!(
        hits >= 11,
        "the shipped model classifies the shipped images: {hits}/12"
    );
}

#[test]
fn creditcard_and_movielens_loaders_validate() {
    use privpy::data::{load_creditcard, load_movielens};
    let mut header = String::from("\"Time\"");
    for k in 1..=28 {
        header.push_str(&format!(",\"V{k}\""));
    }
    header.push_str(",\"Amount\",\"Class\"\n");
    let row = |class: &str| {
        let mut r = String::from("0");
        for k in 1..=28 {
            r.push_str(&format!(",{}", k as f64 * 0.1));
        }
        r.push_str(&format!(",12.5,\"{class}\"\n"));
        r
    };
    let ok = format!("{header}{}{}", row("0"), row("1"));
    let c = load_creditcard(&temp("cc.csv", ok.as_bytes()), None).unwrap();
    assert_eq!(c.x.dim(), (2, 30));
    assert_eq!(c.y.to_vec(), vec![0.0, 1.0]);
    assert_eq!(c.x[[0, 28]], 12.5);
    let e = load_creditcard(
        &temp("cc-bad.csv", format!("{header}{}", row("2")).as_bytes()),
        None,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("line 2") && e.to_string().contains("class"),
        "{e}"
    );
    let e = load_creditcard(&temp("cc-hdr.csv", b"a,b\n"), None).unwrap_err();
    assert!(e.to_string().contains("header"), "{e}");

    let r = load_movielens(&temp(
        "u.data",
        b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
    ))
    .unwrap();
    assert_eq!(
        (r.users, r.items, r.triples[0]),
        (196, 302, (195, 241, 3.0))
    );
    let r1m = load_movielens(&temp(
        "ratings.dat",
        b"1::1193::5::978300760\n2::661::3::978302109\n",
    ))
    .unwrap();
    assert_eq!((r1m.users, r1m.items), (2, 1193));
    let (dense, mask) = r1m.dense();
    assert_eq!((dense[[0, 1192]], mask.sum()), (5.0, 2.0));
    for (text, needle) in [
        (&b"1\t2\t6\t0\n"[..], "rating"),
        (b"0\t2\t3\t0\n", "positive id"),
        (b"1\t2\t3\n", "fields"),
    ] {
        let e = load_movielens(&temp("bad.data", text)).unwrap_err();
        assert!(e.to_string().contains(needle), "{e}");
    }
}

fn synthetic_clusters() -> Array2<f64> {
    let centers = [
        [0.0, 0.0, 5.0],
        [6.0, 0.0, 0.0],
        [0.0, 6.0, 0.0],
        [6.0, 6.0, 6.0],
        [-6.0, 3.0, -3.0],
    ];
    Array2::from_shape_fn((100, 3), |(i, j)| {
        centers[i % 5][j] + ((i * 7 + j * 3) % 11) as f64 * 0.05
    })
}

#[test]
fn private_kmeans_matches_cleartext() {
    use privpy::ml::kmeans;
    let x = synthetic_clusters();
    let run = |mut c: LocalCluster| -> Array2<f64> {
        let (a, b, m) = (c.client("alice"), c.client("bob"), c.client("owner"));
        c.upload(&a, "xa", x.slice(s![..50, ..]).to_owned())
            .unwrap();
        c.upload(&b, "xb", x.slice(s![50.., ..]).to_owned())
            .unwrap();
        c.run(|s| {
            let x = rows(s, &["xa", "xb"])?;
            let c0 = x.slice(s![..5, ..]);
            s.output("owner", "c", &kmeans(x, c0, 4))
        })
        .unwrap()
        .open(&m, "c")
        .unwrap()
    };
    let clear = run(LocalCluster::cleartext());
    let private = run(LocalCluster::new(Config::default()).with_seed(1));
    let d = (&private - &clear)
        .mapv(f64::abs)
        .fold(0.0f64, |a, &b| a.max(b));
    assert!(d < 1e-6, "centroids differ by {d}");
    // The five true centres are found.
    for row in clear.rows() {
        assert!(row.iter().all(|v| v.abs() < 7.0));
    }
}

#[test]
fn private_matrix_factorization_matches_cleartext_on_a_low_rank_matrix() {
    use privpy::ml::matrix_factorization;
    // MovieLens may not be redistributed: a generated rank-5 matrix with 60% observed.
    let (m, n, k) = (24, 30, 5);
    let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 3 + j * 5) % 7) as f64 * 0.2 + 0.3);
    let b = Array2::from_shape_fn((n, k), |(i, j)| ((i * 5 + j * 2) % 6) as f64 * 0.2 + 0.2);
    let r_full = a.dot(&b.t());
    let mask = Array2::from_shape_fn(
        (m, n),
        |(i, j)| if (i * 7 + j * 3) % 5 < 3 { 1.0 } else { 0.0 },
    );
    let r = &r_full * &mask;
    let u0 = Array2::from_shape_fn((m, k), |(i, j)| 0.3 + ((i + j) % 3) as f64 * 0.1);
    let v0 = Array2::from_shape_fn((n, k), |(i, j)| 0.3 + ((i * 2 + j) % 3) as f64 * 0.1);
    let run = |mut c: LocalCluster| -> (Array2<f64>, Array2<f64>) {
        let (ua, ub, o) = (c.client("users_a"), c.client("users_b"), c.client("owner"));
        c.upload(&ua, "ra", r.slice(s![..12, ..]).to_owned())
            .unwrap();
        c.upload(&ua, "ma", mask.slice(s![..12, ..]).to_owned())
            .unwrap();
        c.upload(&ub, "rb", r.slice(s![12.., ..]).to_owned())
            .unwrap();
        c.upload(&ub, "mb", mask.slice(s![12.., ..]).to_owned())
            .unwrap();
        c.upload(&o, "u0", &u0).unwrap();
        c.upload(&o, "v0", &v0).unwrap();
        let out = c
            .run(|s| {
                let (u, v) = matrix_factorization(
                    rows(s, &["ra", "rb"])?,
                    rows(s, &["ma", "mb"])?,
                    s.input("u0")?,
                    s.input("v0")?,
                    30,
                    0.02,
                    0.001,
                );
                s.output("owner", "u", &u)?;
                s.output("owner", "v", &v)
            })
            .unwrap();
        (out.open(&o, "u").unwrap(), out.open(&o, "v").unwrap())
    };
    let (uc, vc) = run(LocalCluster::cleartext());
    let (up, vp) = run(LocalCluster::new(Config::default()).with_seed(1));
    let rrmse = |p: &Array2<f64>, c: &Array2<f64>| {
        (p - c).mapv(|d| d * d).sum().sqrt() / c.mapv(|d| d * d).sum().sqrt()
    };
    assert!(rrmse(&up, &uc) < 1e-6 && rrmse(&vp, &vc) < 1e-6);
    let err = |u: &Array2<f64>, v: &Array2<f64>| {
        ((u.dot(&v.t()) - &r_full) * &mask).mapv(|d| d * d).sum()
    };
    assert!(
        err(&uc, &vc) < 0.5 * err(&u0, &v0),
        "training reduced the error"
    );
}

#[test]
fn private_lenet5_predictions_equal_cleartext() {
    use privpy::ml::LeNet5;
    use privpy::model::load_safetensors;
    let test = load_mnist(
        &shipped("mnist/t10k-300-images-idx3-ubyte"),
        &shipped("mnist/t10k-300-labels-idx1-ubyte"),
        Some(3),
    )
    .unwrap();
    let model = load_safetensors(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mnist-lenet5.safetensors"),
    )
    .unwrap();
    assert_eq!(model["c3"].shape(), &[150, 16]);
    let predict = |mut c: LocalCluster| -> Array1<f64> {
        let (owner, user) = (c.client("owner"), c.client("user"));
        for (k, t) in &model {
            c.upload(&owner, k, t).unwrap();
        }
        c.upload(&user, "x", &test.images).unwrap();
        c.run(|s| {
            s.output(
                "user",
                "d",
                &LeNet5::from_inputs(s)?.predict(&s.input("x")?)?,
            )
        })
        .unwrap()
        .open(&user, "d")
        .unwrap()
    };
    let clear = predict(LocalCluster::cleartext());
    assert_eq!(
        clear.mapv(|v| v as u8),
        test.labels,
        "the shipped LeNet-5 classifies these images"
    );
    for cfg in [Config::fast(), Config::default()] {
        assert_eq!(
            predict(LocalCluster::new(cfg).with_seed(1)),
            clear,
            "{cfg:?}"
        );
    }
}

#[test]
fn full_mnist_test_set_loads_from_the_data_directory() {
    use privpy::data::{data_dir, mnist_test};
    let Some(dir) = data_dir().filter(|d| d.join("mnist/t10k-images-idx3-ubyte.gz").exists())
    else {
        eprintln!("no data directory (PRIVPY_DATA or ../shared/data): skipped");
        return;
    };
    let m = mnist_test(&dir, None).unwrap();
    assert_eq!(m.images.dim(), (10_000, 784));
    assert_eq!(
        m.labels.slice(s![..10]).to_vec(),
        vec![7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    );
    let counts = (0..10)
        .map(|d| m.labels.iter().filter(|&&l| l == d).count())
        .collect::<Vec<_>>();
    assert_eq!(
        counts,
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
}

#[test]
fn private_lenet5_bn_matches_cleartext_and_the_folded_network() {
    use privpy::ml::{BN_EPS, LeNet5, LeNet5Bn};
    use privpy::model::load_safetensors;
    let test = load_mnist(
        &shipped("mnist/t10k-300-images-idx3-ubyte"),
        &shipped("mnist/t10k-300-labels-idx1-ubyte"),
        Some(3),
    )
    .unwrap();
    let model = load_safetensors(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/mnist-lenet5-bn.safetensors"),
    )
    .unwrap();
    for (layer, c) in LeNet5Bn::BN_LAYERS.iter().zip([6, 16, 120, 84]) {
        for t in ["weight", "bias", "running_mean", "running_var"] {
            assert_eq!(model[&format!("{layer}.{t}")].shape(), &[c], "{layer}.{t}");
        }
    }
    let run =
        |mut c: LocalCluster, model: &std::collections::BTreeMap<String, ArrayD<f64>>, bn: bool| {
            let (owner, user) = (c.client("owner"), c.client("user"));
            for (k, t) in model {
                c.upload(&owner, k, t).unwrap();
            }
            c.upload(&user, "x", &test.images).unwrap();
            let out = c
                .run(|s| {
                    let x = s.input("x")?;
                    let scores = if bn {
                        LeNet5Bn::from_inputs(s)?.scores(&x)?
                    } else {
                        LeNet5::from_inputs(s)?.scores(&x)?
                    };
                    s.output("user", "d", &scores.argmin_axis(Axis(1)))?;
                    s.output("user", "scores", &scores)
                })
                .unwrap();
            let d: Array1<f64> = out.open(&user, "d").unwrap();
            let scores: Array2<f64> = out.open(&user, "scores").unwrap();
            (d, scores)
        };
    let max_diff =
        |a: &Array2<f64>, b: &Array2<f64>| (a - b).mapv(f64::abs).fold(0.0f64, |m, &v| m.max(v));
    let (clear, clear_scores) = run(LocalCluster::cleartext(), &model, true);
    assert_eq!(
        clear.mapv(|v| v as u8),
        test.labels,
        "the shipped LeNet-5-BN classifies these images"
    );
    // Plain f64 reference for the batch normalization: folded into the weights and
    // biases of a plain LeNet-5 (W·scale, (b − μ)·scale + β).
    let mut folded = model.clone();
    for (layer, (w, b)) in
        LeNet5Bn::BN_LAYERS
            .iter()
            .zip([("c1", "c1b"), ("c3", "c3b"), ("c5", "c5b"), ("f6", "f6b")])
    {
        let t = |k: &str| model[&format!("{layer}.{k}")].clone();
        let scale = t("weight") / t("running_var").mapv(|v| (v + BN_EPS).sqrt());
        let shift = (&model[b] - &t("running_mean")) * &scale + t("bias");
        folded.insert(w.into(), &model[w] * &scale);
        folded.insert(b.into(), shift);
    }
    let (folded_digits, folded_scores) = run(LocalCluster::cleartext(), &folded, false);
    assert_eq!(folded_digits, clear);
    let d = max_diff(&folded_scores, &clear_scores);
    assert!(d < 1e-9, "batch normalization as folded weights: {d}");
    // Private: the same digits, and scores (of magnitude up to ~50) within an absolute
    // 0.05 (fast preset: rsqrt to 2e-3 relative, 16 fractional bits) or 2e-3 (default
    // preset: the sigmoids' 1e-4 dominates). Measured: 5.0e-3 and 1.6e-4.
    for (cfg, tol) in [(Config::fast(), 0.05), (Config::default(), 2e-3)] {
        let (digits, scores) = run(LocalCluster::new(cfg).with_seed(1), &model, true);
        assert_eq!(digits, clear, "{cfg:?}");
        let d = max_diff(&scores, &clear_scores);
        eprintln!("{cfg:?}: LeNet-5-BN scores differ from cleartext by at most {d:.2e}");
        assert!(d < tol, "{cfg:?}: scores differ by {d}");
    }
}

#[test]
fn safetensors_loads_a_pytorch_batch_norm_state_dict() {
    use privpy::model::load_safetensors;
    // A hand-written file as PyTorch's `save_file(bn.state_dict())` writes it: F32
    // vectors and the I64 scalar `num_batches_tracked`.
    let header = r#"{"bn1.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"bn1.num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[8,16]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&1.5f32.to_le_bytes());
    bytes.extend_from_slice(&(-2.0f32).to_le_bytes());
    bytes.extend_from_slice(&1875i64.to_le_bytes());
    let m = load_safetensors(&temp("bn.safetensors", &bytes)).unwrap();
    assert_eq!(
        m["bn1.weight"].iter().copied().collect::<Vec<_>>(),
        vec![1.5, -2.0]
    );
    assert_eq!(m["bn1.num_batches_tracked"].shape(), &[] as &[usize]);
    assert_eq!(m["bn1.num_batches_tracked"].sum(), 1875.0);
    // Other dtypes are refused with the tensor's name.
    let header = r#"{"x":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&7i32.to_le_bytes());
    let e = load_safetensors(&temp("i32.safetensors", &bytes)).unwrap_err();
    assert!(
        e.to_string().contains("\"x\"") && e.to_string().contains("I32"),
        "{e}"
    );
}
