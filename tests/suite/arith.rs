//! Private arithmetic against the cleartext engine and against exact ring references.

use crate::common::*;
use privpy::prelude::*;
use privpy::ring::{Ring, Z64, Z128, Z256};

/// Opens output `name` of `run` as raw ring elements (the sum of the two shares).
fn ring_output<R: Ring>(run: &RunOutput, alice: &Client, name: &str) -> Vec<R> {
    let [a, b] = run.shares(alice, name).expect("output exists");
    let (a, b) = (R::read_le(&a.to_bytes()), R::read_le(&b.to_bytes()));
    a.into_iter().zip(b).map(|(p, q)| p.wadd(q)).collect()
}

fn signed_distance<R: Ring>(a: R, b: R) -> f64 {
    a.wsub(b).to_f64_signed().abs()
}

/// Element-wise multiplication is within 3 units of `floor(x̃·ỹ / 2^f)`, the product
/// of the encoded inputs, for values from 0 up to the preset's bound.
fn check_mul_error<R: Ring>(cfg: Config) {
    let mut g = rng(5);
    let n = 4000;
    let bound = cfg.bound() * 0.999;
    // Four magnitude bands: tiny, unit, large, at the bound.
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for scale in [1e-3, 1.0, bound.sqrt(), bound] {
        xs.extend(values(&mut g, n / 4, scale));
        ys.extend(values(&mut g, n / 4, scale));
    }
    let (x, y) = (Array1::from(xs.clone()), Array1::from(ys.clone()));
    let mut cluster = LocalCluster::new(cfg).with_seed(3);
    let alice = cluster.client("alice");
    cluster.upload(&alice, "x", &x).unwrap();
    cluster.upload(&alice, "y", &y).unwrap();
    let run = cluster
        .run(|s| {
            let (x, y) = (s.input::<Array1<f64>>("x")?, s.input::<Array1<f64>>("y")?);
            s.output("alice", "z", &(&x * &y))
        })
        .unwrap();
    let z = ring_output::<R>(&run, &alice, "z");
    let f = cfg.frac_bits();
    let mut worst = 0.0f64;
    for k in 0..n {
        let (xt, yt) = (
            cfg.encode_scalar::<R>(xs[k]).unwrap(),
            cfg.encode_scalar::<R>(ys[k]).unwrap(),
        );
        let exact = R::mul_trunc(xt, yt, f);
        worst = worst.max(signed_distance(z[k], exact));
    }
    assert!(
        worst <= 3.0,
        "{:?}: {worst} units from the encoded product",
        cfg.ring()
    );
}

/// A public integer factor is exact (`c·x̃` in the ring, no truncation), for scalars
/// and broadcast vectors; a fractional one stays within one unit of `x̃·c̃ / 2^f`.
fn check_public_factors<R: Ring>(cfg: Config) {
    let mut g = rng(8);
    let n = 600;
    let xs = values(&mut g, n, cfg.bound() / 4096.0);
    let x = Array2::from_shape_vec((n / 3, 3), xs.clone()).unwrap();
    let mut cluster = LocalCluster::new(cfg).with_seed(4);
    let alice = cluster.client("alice");
    cluster.upload(&alice, "x", &x).unwrap();
    let run = cluster
        .run(|s| {
            let x = s.input::<Array2<f64>>("x")?;
            s.output("alice", "two", &(&x * 2.0))?;
            s.output("alice", "ints", &(&x * &array![-3.0, 0.0, 1024.0]))?;
            s.output("alice", "frac", &(&x * 0.375))
        })
        .unwrap();
    let (two, ints, frac) = (
        ring_output::<R>(&run, &alice, "two"),
        ring_output::<R>(&run, &alice, "ints"),
        ring_output::<R>(&run, &alice, "frac"),
    );
    let int = |c: i64| {
        let m = R::from_u64(c.unsigned_abs());
        if c < 0 { m.wneg() } else { m }
    };
    let f = cfg.frac_bits();
    for (k, &v) in xs.iter().enumerate() {
        let xt = cfg.encode_scalar::<R>(v).unwrap();
        assert_eq!(
            two[k],
            xt.wmul(int(2)),
            "{:?}: x·2, element {k}",
            cfg.ring()
        );
        let c = [-3, 0, 1024][k % 3];
        assert_eq!(
            ints[k],
            xt.wmul(int(c)),
            "{:?}: x·{c}, element {k}",
            cfg.ring()
        );
        let exact = R::mul_trunc(xt, cfg.encode_scalar::<R>(0.375).unwrap(), f);
        assert!(
            signed_distance(frac[k], exact) <= 1.0,
            "{:?}: x·0.375, element {k}",
            cfg.ring()
        );
    }
}

#[test]
fn public_integer_factors_are_exact_all_rings() {
    check_public_factors::<Z64>(Config::fast());
    check_public_factors::<Z128>(Config::default());
    check_public_factors::<Z256>(Config::paper());
}

#[test]
fn mul_within_3_units_of_encoded_product_z64() {
    check_mul_error::<Z64>(Config::fast());
}

#[test]
fn mul_within_3_units_of_encoded_product_z128() {
    check_mul_error::<Z128>(Config::default());
}

#[test]
fn mul_within_3_units_of_encoded_product_z256() {
    check_mul_error::<Z256>(Config::paper());
}

/// Rounding is unbiased: over many products, the mean of `z − x̃·ỹ/2^f` (the exact
/// real product of the encoded inputs, in units of the last place) is below 0.1
/// unit. Floor truncation on each of the four servers drifted by about −2 units.
fn check_mul_unbiased<R: Ring>(cfg: Config) {
    let mut g = rng(17);
    let n = 6000;
    let xs = values(&mut g, n, 3.0);
    let ys = values(&mut g, n, 3.0);
    let (x, y) = (Array1::from(xs.clone()), Array1::from(ys.clone()));
    let mut cluster = LocalCluster::new(cfg).with_seed(8);
    let alice = cluster.client("alice");
    cluster.upload(&alice, "x", &x).unwrap();
    cluster.upload(&alice, "y", &y).unwrap();
    let run = cluster
        .run(|s| {
            let (x, y) = (s.input::<Array1<f64>>("x")?, s.input::<Array1<f64>>("y")?);
            s.output("alice", "z", &(&x * &y))?;
            // Public operand (Protocol 3) and matrix product round the same way.
            s.output("alice", "zc", &(&x * 1.7))?;
            let xm = x.try_reshape((n / 6, 6))?;
            let ym = y.try_reshape((6, n / 6))?;
            s.output("alice", "zm", &xm.dot(&ym))
        })
        .unwrap();
    let f = cfg.frac_bits();
    let enc = |v: f64| cfg.encode_scalar::<R>(v).unwrap();
    // z − v/2^f for the exact integer v = Σ I(a)·I(b): (z − floor(v/2^f)) − frac.
    let error = |z: R, pairs: &[(R, R)]| {
        let mut acc = R::acc_zero();
        let mut low = R::zero();
        for &(a, b) in pairs {
            acc = R::mac(acc, a, b);
            low = low.wadd(a.wmul(b));
        }
        let frac = low.low_bits(f).to_f64_signed() / 2f64.powi(f as i32);
        z.wsub(R::trunc(acc, f)).to_f64_signed() - frac
    };
    let z = ring_output::<R>(&run, &alice, "z");
    let zc = ring_output::<R>(&run, &alice, "zc");
    let mean = |e: Vec<f64>| e.iter().sum::<f64>() / e.len() as f64;
    let m1 = mean(
        (0..n)
            .map(|k| error(z[k], &[(enc(xs[k]), enc(ys[k]))]))
            .collect(),
    );
    let m2 = mean(
        (0..n)
            .map(|k| error(zc[k], &[(enc(xs[k]), enc(1.7))]))
            .collect(),
    );
    let zm = ring_output::<R>(&run, &alice, "zm");
    let (rows, cols) = (n / 6, n / 6);
    let sample: Vec<f64> = (0..2000)
        .map(|t| {
            let (i, j) = ((t * 7) % rows, (t * 13) % cols);
            let pairs: Vec<(R, R)> = (0..6)
                .map(|kk| (enc(xs[i * 6 + kk]), enc(ys[kk * cols + j])))
                .collect();
            error(zm[i * cols + j], &pairs)
        })
        .collect();
    let m3 = mean(sample);
    for (what, m) in [("x*y", m1), ("x*c", m2), ("dot", m3)] {
        assert!(
            m.abs() < 0.1,
            "{:?} {what}: mean error {m} units",
            cfg.ring()
        );
    }
}

#[test]
fn rounding_is_unbiased_all_rings() {
    check_mul_unbiased::<Z64>(Config::fast());
    check_mul_unbiased::<Z128>(Config::default());
    check_mul_unbiased::<Z256>(Config::paper());
}

/// Matrix product: each output element is within 3 units of
/// `floor(Σ x̃ᵢₖ·ỹₖⱼ / 2^f)` — one truncation per element on each of the four servers.
fn check_matmul_error<R: Ring>(cfg: Config) {
    let mut g = rng(9);
    let (m, k, n) = (9, 31, 7);
    let scale = (cfg.bound() / k as f64).sqrt() * 0.9;
    let a = arr(&[m, k], &mut g, scale);
    let b = arr(&[k, n], &mut g, scale);
    let mut cluster = LocalCluster::new(cfg).with_seed(4);
    let alice = cluster.client("alice");
    cluster.upload(&alice, "a", &a).unwrap();
    cluster.upload(&alice, "b", &b).unwrap();
    let run = cluster
        .run(|s| {
            let (a, b) = (s.input::<Array2<f64>>("a")?, s.input::<Array2<f64>>("b")?);
            s.output("alice", "c", &a.dot(&b))?;
            // The same products with b prepared once (Priv::prepare), twice, and
            // with a vector on the left.
            let w = b.prepare()?;
            s.output("alice", "p1", &a.dot(&w))?;
            s.output("alice", "p2", &a.dot(&w))?;
            s.output("alice", "v", &a.slice(s![2, ..]).dot(&w))
        })
        .unwrap();
    let enc = |v: f64| cfg.encode_scalar::<R>(v).unwrap();
    for name in ["c", "p1", "p2", "v"] {
        let c = ring_output::<R>(&run, &alice, name);
        let rows: Vec<usize> = if name == "v" {
            vec![2]
        } else {
            (0..m).collect()
        };
        assert_eq!(c.len(), rows.len() * n, "{name}");
        for (r, &i) in rows.iter().enumerate() {
            for j in 0..n {
                let mut acc = R::acc_zero();
                for kk in 0..k {
                    acc = R::mac(acc, enc(a[[i, kk]]), enc(b[[kk, j]]));
                }
                let exact = R::trunc(acc, cfg.frac_bits());
                let d = signed_distance(c[r * n + j], exact);
                assert!(d <= 3.0, "{:?} {name} ({i},{j}): {d} units", cfg.ring());
            }
        }
    }
}

/// A prepared matrix is only the right operand of a product with a secret; the
/// cleartext engine runs the same programs.
#[test]
fn prepared_operands_are_checked() {
    let a = array![[1.0, 2.0], [3.0, -4.0]];
    for mut cluster in [LocalCluster::new(Config::fast()), LocalCluster::cleartext()] {
        let alice = cluster.client("alice");
        cluster.upload(&alice, "a", &a).unwrap();
        let run = cluster
            .run(|s| {
                let x = s.input::<Array2<f64>>("a")?;
                let w = x.prepare()?;
                assert_eq!(w.shape(), &[2, 2]);
                assert!(matches!(
                    x.slice(s![0..1, 0..1]).try_dot(&w),
                    Err(privpy::Error::Shape(_))
                ));
                s.output("alice", "y", &x.dot(&w))
            })
            .unwrap();
        let y: Array2<f64> = run.open(&alice, "y").unwrap();
        assert!((&y - &a.dot(&a)).iter().all(|d| d.abs() < 1e-3), "{y}");
        // On the left, it stops the program with an error.
        let r = cluster.run(|s| {
            let x = s.input::<Array2<f64>>("a")?;
            let w = x.prepare()?;
            s.output("alice", "z", &privpy::dot(&w, &x))
        });
        let err = r.expect_err("a prepared left operand is refused");
        assert!(
            matches!(
                err.root(),
                Error::InvalidArgument {
                    operation: "dot",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

#[test]
fn matmul_within_3_units_all_rings() {
    check_matmul_error::<Z64>(Config::fast());
    check_matmul_error::<Z128>(Config::default());
    check_matmul_error::<Z256>(Config::paper());
}

/// Tolerance for values of magnitude ~10 after a few operations.
fn tolerance(cfg: &Config) -> f64 {
    (cfg.ulp() * 2e4).max(1e-11)
}

/// Every operation of the front end, private vs cleartext, on every preset.
#[test]
fn composite_program_matches_cleartext_all_rings() {
    let mut g = rng(21);
    let x = arr(&[4, 3], &mut g, 3.0);
    let y = arr(&[3], &mut g, 3.0);
    let w = arr(&[3, 2], &mut g, 3.0);
    let s0 = arr(&[], &mut g, 3.0);
    let c = arr(&[3, 2], &mut g, 3.0)
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap();
    let inputs = [("x", x), ("y", y), ("w", w), ("s", s0)];
    let names = [
        "bcast", "xw", "xc", "cx", "sum0", "mean", "mean1", "resh", "negdiv", "pubsub", "yy", "xy",
        "yw", "scalar", "total", "perm", "cpub",
    ];
    let program = |s: &Session| {
        let x = s.input::<Array2<f64>>("x")?;
        let y = s.input::<Array1<f64>>("y")?;
        let w = s.input::<Array2<f64>>("w")?;
        let sc = s.input::<f64>("s")?;
        let out = |n: &str, v: Priv<ArrayD<f64>>| s.output("alice", n, &v);
        out("bcast", (&x * &y + 2.5 - &x).into_dyn())?;
        out("xw", x.dot(&w).into_dyn())?;
        out("xc", x.dot(&c).into_dyn())?;
        out("cx", dot(&c.t().to_owned(), &x.t()).into_dyn())?;
        out("sum0", x.sum_axis(Axis(0)).into_dyn())?;
        out("mean", x.mean().into_dyn())?;
        out("mean1", x.mean_axis(Axis(1)).into_dyn())?;
        out("resh", (x.t().reshape(12) * &sc).into_dyn())?;
        out("negdiv", (-&x / 4.0).into_dyn())?;
        out(
            "pubsub",
            (1.0 - &y + &c.column(0).to_owned() * 0.0).into_dyn(),
        )?;
        out("yy", y.dot(&y).into_dyn())?;
        out("xy", x.dot(&y).into_dyn())?;
        out("yw", y.dot(&w).into_dyn())?;
        out("scalar", (&sc * &sc - 3.0 * &sc).into_dyn())?;
        out("total", (x.sum() + y.sum()).into_dyn())?;
        out("perm", x.clone().into_dyn().permuted_axes(&[1, 0]))?;
        out("cpub", (s.constant(&c)? * &w).into_dyn())
    };
    for (name, cfg) in presets() {
        let (p, q) = private_and_clear(cfg, &inputs, &names, program);
        for (k, n) in names.iter().enumerate() {
            let d = max_abs_diff(&p[k], &q[k]);
            assert!(d <= tolerance(&cfg), "{name}: output {n} differs by {d}");
        }
    }
}

/// One step of logistic-regression SGD, written as NumPy code would be, with a
/// polynomial sigmoid (comparisons are not needed for it).
#[test]
fn logistic_regression_step_matches_cleartext() {
    let mut g = rng(33);
    let (n, d) = (64, 12);
    let x = arr(&[n, d], &mut g, 1.0);
    let y = arr(&[n], &mut g, 1.0).mapv(|v| if v > 0.0 { 1.0 } else { 0.0 });
    let w = arr(&[d], &mut g, 0.1);
    let program = |s: &Session| {
        let x = s.input::<Array2<f64>>("x")?;
        let y = s.input::<Array1<f64>>("y")?;
        let w = s.input::<Array1<f64>>("w")?;
        let z = x.dot(&w);
        let p = 0.5 + &z * 0.25 - &z * &z * &z / 48.0;
        let grad = x.t().dot(&(p - &y)) / n as f64;
        s.output("alice", "w", &(w - grad * 0.5))
    };
    let inputs = [("x", x), ("y", y), ("w", w)];
    for (name, cfg) in presets() {
        let (p, q) = private_and_clear(cfg, &inputs, &["w"], program);
        let dd = max_abs_diff(&p[0], &q[0]);
        assert!(dd <= tolerance(&cfg), "{name}: {dd}");
    }
}

/// The paper's Figure 2 logistic function (Euler's method), private vs cleartext
/// and vs the true sigmoid.
#[test]
fn euler_logistic_matches_cleartext_and_sigmoid() {
    let x = ArrayD::from_shape_vec(vec![7], vec![-6.0, -2.0, -0.5, 0.0, 0.5, 2.0, 6.0]).unwrap();
    let program = |s: &Session| {
        let x = s.input::<Array1<f64>>("x")?;
        let steps = 100;
        let h = &x / steps as f64;
        let mut y = s.constant(&Array1::from_elem(x.len(), 0.5))?;
        for _ in 0..steps {
            y = &y + &h * &y * (1.0 - &y);
        }
        s.output("alice", "y", &y)
    };
    let (p, q) = private_and_clear(Config::default(), &[("x", x.clone())], &["y"], program);
    assert!(max_abs_diff(&p[0], &q[0]) < 1e-7);
    let sigmoid = x.mapv(|v| 1.0 / (1.0 + (-v).exp()));
    assert!(max_abs_diff(&p[0], &sigmoid) < 0.01);
}

/// A matrix prepared in one session serves products in later sessions on the same
/// servers (`Prepared::share`, `Session::attach`): the results equal the
/// cleartext products (tolerance 1e-3, fast preset), the later session sends no
/// element of the weights, and a share attached on another role is refused.
#[test]
fn prepared_matrices_serve_later_sessions() {
    use privpy::PreparedShare;
    use std::collections::HashMap;
    use std::sync::Mutex;
    let mut g = rng(12);
    let w = arr(&[40, 30], &mut g, 8.0);
    let x1 = arr(&[3, 40], &mut g, 8.0);
    let x2 = arr(&[5, 40], &mut g, 8.0);
    for (cfg, mut cluster) in [
        (Some(Config::fast()), LocalCluster::new(Config::fast())),
        (None, LocalCluster::cleartext()),
    ] {
        let alice = cluster.client("alice");
        cluster.upload(&alice, "w", &w).unwrap();
        cluster.upload(&alice, "x1", &x1).unwrap();
        let kept: Mutex<HashMap<Option<Role>, PreparedShare>> = Mutex::new(HashMap::new());
        let first = cluster
            .run(|s| {
                let p = s.input::<Array2<f64>>("w")?.prepare()?;
                kept.lock().unwrap().insert(s.role(), p.share());
                s.output("alice", "y", &s.input::<Array2<f64>>("x1")?.dot(&p))
            })
            .unwrap();
        let mut cluster2 = match cfg {
            Some(c) => LocalCluster::new(c),
            None => LocalCluster::cleartext(),
        };
        let alice2 = cluster2.client("alice");
        cluster2.upload(&alice2, "x2", &x2).unwrap();
        let second = cluster2
            .run(|s| {
                let share = kept.lock().unwrap()[&s.role()].clone();
                assert_eq!(share.shape(), &[40, 30]);
                let p = s.attach(&share)?;
                s.output("alice", "y", &s.input::<Array2<f64>>("x2")?.dot(&p))
            })
            .unwrap();
        let y1: Array2<f64> = first.open(&alice, "y").unwrap();
        let y2: Array2<f64> = second.open(&alice2, "y").unwrap();
        let ex = |a: &ArrayD<f64>, b: &Array2<f64>| -> f64 {
            let a2 = a.clone().into_dimensionality::<ndarray::Ix2>().unwrap();
            (&a2.dot(&w.clone().into_dimensionality::<ndarray::Ix2>().unwrap()) - b)
                .iter()
                .fold(0.0f64, |m, d| m.max(d.abs()))
        };
        assert!(ex(&x1, &y1) < 1e-3, "first session: {}", ex(&x1, &y1));
        assert!(ex(&x2, &y2) < 1e-3, "later session: {}", ex(&x2, &y2));
        if cfg.is_some() {
            // The same product with w prepared in the session moves 2|w| more ring
            // elements than with w attached: the weights do not travel again.
            let mut cluster4 = LocalCluster::new(Config::fast());
            let alice4 = cluster4.client("alice");
            cluster4.upload(&alice4, "x2", &x2).unwrap();
            cluster4.upload(&alice4, "w", &w).unwrap();
            let fresh = cluster4
                .run(|s| {
                    let p = s.input::<Array2<f64>>("w")?.prepare()?;
                    s.output("alice", "y", &s.input::<Array2<f64>>("x2")?.dot(&p))
                })
                .unwrap();
            assert_eq!(
                fresh.stats().total_bytes() - second.stats().total_bytes(),
                2 * 40 * 30 * 8,
                "attached: only x's and z's shares move"
            );
            // A share attached to another role's session is refused.
            let cluster3 = LocalCluster::new(Config::fast());
            let r = cluster3.run(|s| {
                let other = match s.role() {
                    Some(Role::S1) => Some(Role::S2),
                    _ => Some(Role::S1),
                };
                let share = kept.lock().unwrap()[&other].clone();
                s.attach(&share).map(|_| ())
            });
            let err = r.expect_err("another role's share is refused");
            assert!(
                matches!(
                    err.root(),
                    Error::InvalidArgument {
                        operation: "attach",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }
}
