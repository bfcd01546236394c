//! Comparisons (the four-party protocol and the paper's Protocol 2) and the
//! operations built on them, against the cleartext engine, on every ring.

use crate::common::*;
use privpy::Role::{S1, S2, Sa, Sb};
use privpy::prelude::*;

/// Values with ties, zeros, negatives and both extremes of the preset's range, all
/// exactly representable so that encoded and cleartext comparisons agree.
fn grid(cfg: &Config, n: usize, seed: u64) -> ArrayD<f64> {
    let mut g = rng(seed);
    let big = cfg.bound() * 0.75;
    let mut v: Vec<f64> = values(&mut g, n, 8.0)
        .into_iter()
        .map(|x| (x * 2.0).round() / 2.0)
        .collect();
    v[0] = big;
    v[1] = -big;
    v[2] = 0.0;
    v[3] = 0.5;
    ArrayD::from_shape_vec(vec![n], v).unwrap()
}

/// Every preset with each comparison protocol.
fn protocols() -> Vec<(String, Config)> {
    presets()
        .into_iter()
        .flat_map(|(name, cfg)| {
            [
                (
                    format!("{name}, four-party"),
                    cfg.with_comparison(Comparison::FourParty),
                ),
                (
                    format!("{name}, garbled circuit"),
                    cfg.with_comparison(Comparison::GarbledCircuit),
                ),
            ]
        })
        .collect()
}

#[test]
fn all_predicates_match_cleartext_all_rings() {
    for (name, cfg) in protocols() {
        let x = grid(&cfg, 300, 1);
        let mut y = grid(&cfg, 300, 2);
        y[5] = x[5]; // ties
        y[6] = x[6];
        let names = [
            "lt", "gt", "le", "ge", "eq", "ne", "ltp", "gep", "eqp", "sel",
        ];
        let program = |s: &Session| {
            let x = s.input::<Array1<f64>>("x")?;
            let y = s.input::<Array1<f64>>("y")?;
            s.output("alice", "lt", &x.lt(&y))?;
            s.output("alice", "gt", &x.gt(&y))?;
            s.output("alice", "le", &x.le(&y))?;
            s.output("alice", "ge", &x.ge(&y))?;
            s.output("alice", "eq", &x.eq(&y))?;
            s.output("alice", "ne", &x.ne(&y))?;
            s.output("alice", "ltp", &x.lt(0.5))?;
            s.output("alice", "gep", &x.ge(&Array1::from_elem(300, -1.0)))?;
            s.output("alice", "eqp", &x.eq(0.0))?;
            // The result is usable in arithmetic: a select.
            let c = x.gt(&y);
            s.output("alice", "sel", &select(&c, &x, &y))
        };
        let (p, q) = private_and_clear(cfg, &[("x", x.clone()), ("y", y.clone())], &names, program);
        for (k, n) in names.iter().enumerate() {
            let d = max_abs_diff(&p[k], &q[k]);
            // Selections by a comparison result are exact too.
            assert!(d == 0.0, "{name}: {n} differs by {d}");
        }
        // Spot-check the oracle itself.
        assert_eq!(q[0][0], 0.0);
        assert_eq!(q[4][5], 1.0);
    }
}

/// `select` by a comparison result multiplies by the integer-encoded bit: exact,
/// with no truncation error (selecting between zeros gives zero, extremes survive).
#[test]
fn select_by_a_comparison_is_exact() {
    for (name, cfg) in protocols() {
        let n = 64;
        // Large, but with f64 differences exact, so that the cleartext oracle is.
        let big = (cfg.bound() * 0.75).min(2f64.powi(40));
        let a = ArrayD::from_shape_fn(vec![n], |i| if i[0] % 2 == 0 { big } else { -1.5 });
        let b = ArrayD::from_shape_fn(vec![n], |i| if i[0] % 3 == 0 { -big } else { 0.25 });
        let (p, q) = private_and_clear(
            cfg,
            &[("a", a.clone()), ("b", b.clone())],
            &["zeros", "ab", "ba"],
            |s| {
                let a = s.input::<Array1<f64>>("a")?;
                let b = s.input::<Array1<f64>>("b")?;
                let z = s.zeros(n);
                let c = a.gt(&b);
                s.output("alice", "zeros", &select(&c, &z, &z))?;
                s.output("alice", "ab", &select(&c, &a, &b))?;
                s.output("alice", "ba", &select(&a.le(&b), &a, &b))
            },
        );
        for k in 0..3 {
            assert_eq!(p[k], q[k], "{name}: output {k}");
        }
        assert!(p[0].iter().all(|&v| v == 0.0), "{name}");
    }
}

#[test]
fn comparison_broadcasts_like_arithmetic() {
    let cfg = Config::default();
    let mut g = rng(3);
    let a = arr(&[4, 3], &mut g, 4.0).mapv(|v| v.round());
    let b = arr(&[3], &mut g, 4.0).mapv(|v| v.round());
    let (p, q) = private_and_clear(cfg, &[("a", a), ("b", b)], &["c"], |s| {
        let a = s.input::<Array2<f64>>("a")?;
        let b = s.input::<Array1<f64>>("b")?;
        s.output("alice", "c", &a.le(&b))
    });
    assert_eq!(p[0].shape(), &[4, 3]);
    assert_eq!(p[0], q[0]);
}

/// NumPy's semantics computed directly in f64 (selections are exact there too).
fn expected(m: &Array2<f64>, o: &Array2<f64>) -> Vec<ArrayD<f64>> {
    let first_arg = |v: &[f64], better: &dyn Fn(f64, f64) -> bool| {
        (0..v.len()).fold(0, |b, i| if better(v[i], v[b]) { i } else { b }) as f64
    };
    let flat: Vec<f64> = m.iter().copied().collect();
    let sorted = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    };
    let mut sort_rows = m.clone();
    for mut r in sort_rows.rows_mut() {
        let v = sorted(&r.to_vec());
        r.assign(&Array1::from(v));
    }
    let mut sort_cols = m.clone();
    for mut c in sort_cols.columns_mut() {
        let v = sorted(&c.to_vec());
        c.assign(&Array1::from(v));
    }
    let (h, w) = m.dim();
    let pool = Array2::from_shape_fn(((h - 2) / 2 + 1, w - 1), |(i, j)| {
        [
            m[[2 * i, j]],
            m[[2 * i, j + 1]],
            m[[2 * i + 1, j]],
            m[[2 * i + 1, j + 1]],
        ]
        .into_iter()
        .fold(f64::MIN, f64::max)
    });
    let d = |a: Array2<f64>| a.into_dyn();
    let s = |v: f64| ArrayD::from_elem(vec![], v);
    vec![
        d(m.mapv(|v| v.max(0.0))),
        d(m.mapv(f64::abs)),
        d(m.mapv(|v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            }
        })),
        d(ndarray::Zip::from(m).and(o).map_collect(|&a, &b| a.max(b))),
        d(m.mapv(|v| v.min(2.0))),
        d(m.mapv(|v| v.clamp(-2.5, 3.0))),
        s(flat.iter().copied().fold(f64::MIN, f64::max)),
        s(flat.iter().copied().fold(f64::MAX, f64::min)),
        s(first_arg(&flat, &|a, b| a > b)),
        s(first_arg(&flat, &|a, b| a < b)),
        m.map_axis(Axis(0), |c| c.iter().copied().fold(f64::MIN, f64::max))
            .into_dyn(),
        m.map_axis(Axis(1), |r| first_arg(&r.to_vec(), &|a, b| a < b))
            .into_dyn(),
        d(sort_rows),
        ArrayD::zeros(vec![30]), // argsort: checked as a sorting permutation
        d(sort_cols),
        d(pool),
    ]
}

#[test]
fn derived_operations_are_exact_all_rings() {
    let names = [
        "relu",
        "abs",
        "sign",
        "max2",
        "min2",
        "clip",
        "max",
        "min",
        "argmax",
        "argmin",
        "maxax0",
        "argminax1",
        "sort",
        "argsort",
        "sortax0",
        "pool",
    ];
    for (name, cfg) in protocols() {
        let mut g = rng(9);
        // Small integers (many ties) and both ends of the range.
        let mut m = arr(&[6, 5], &mut g, 6.0)
            .mapv(|v| v.round())
            .into_dimensionality()
            .unwrap();
        m[[2, 3]] = cfg.bound() * 0.75;
        m[[4, 1]] = -cfg.bound() * 0.75;
        let other: Array2<f64> = arr(&[6, 5], &mut g, 6.0)
            .mapv(|v| v.round())
            .into_dimensionality()
            .unwrap();
        let program = |s: &Session| {
            let x = s.input::<Array2<f64>>("m")?;
            let o = s.input::<Array2<f64>>("o")?;
            let out = |n: &str, v: Priv<ArrayD<f64>>| s.output("alice", n, &v);
            out("relu", x.relu().into_dyn())?;
            out("abs", x.abs().into_dyn())?;
            out("sign", x.sign().into_dyn())?;
            out("max2", x.maximum(&o).into_dyn())?;
            out("min2", x.minimum(2.0).into_dyn())?;
            out("clip", x.clip(-2.5, 3.0).into_dyn())?;
            out("max", x.max().into_dyn())?;
            out("min", x.min().into_dyn())?;
            out("argmax", x.argmax().into_dyn())?;
            out("argmin", x.argmin().into_dyn())?;
            out("maxax0", x.max_axis(Axis(0)).into_dyn())?;
            out("argminax1", x.argmin_axis(Axis(1)).into_dyn())?;
            out("sort", x.sort().into_dyn())?;
            out("argsort", o.reshape(30).argsort().into_dyn())?;
            out("sortax0", x.sort_axis(Axis(0)).into_dyn())?;
            out("pool", x.max_pool2d((2, 2), (2, 1)).into_dyn())
        };
        let inputs = [("m", m.clone().into_dyn()), ("o", other.clone().into_dyn())];
        let (p, _) = run_on(
            LocalCluster::new(cfg).with_seed(2),
            &inputs,
            &names,
            program,
        )
        .unwrap();
        let want = expected(&m, &other);
        for (k, n) in names.iter().enumerate() {
            if *n != "argsort" {
                assert_eq!(p[k], want[k], "{name}: {n}");
            }
        }
        // argsort: the secret permutation sorts the data.
        let flat: Vec<f64> = other.iter().copied().collect();
        let perm: Vec<usize> = p[13].iter().map(|&i| i as usize).collect();
        let mut seen = perm.clone();
        seen.sort();
        assert_eq!(
            seen,
            (0..30).collect::<Vec<_>>(),
            "{name}: argsort is a permutation"
        );
        for w in perm.windows(2) {
            assert!(flat[w[0]] <= flat[w[1]], "{name}: argsort order");
        }
    }
}

/// The same programs on the cleartext engine agree with the direct computation where
/// f64 arithmetic is exact (moderate magnitudes).
#[test]
fn derived_operations_on_the_cleartext_engine() {
    let mut g = rng(10);
    let m: Array2<f64> = arr(&[6, 5], &mut g, 6.0)
        .mapv(|v| v.round())
        .into_dimensionality()
        .unwrap();
    let o: Array2<f64> = arr(&[6, 5], &mut g, 6.0)
        .mapv(|v| v.round())
        .into_dimensionality()
        .unwrap();
    let (q, _) = run_on(
        LocalCluster::cleartext(),
        &[("m", m.clone().into_dyn()), ("o", o.clone().into_dyn())],
        &["max2", "sort", "argmin", "pool"],
        |s| {
            let x = s.input::<Array2<f64>>("m")?;
            let o = s.input::<Array2<f64>>("o")?;
            s.output("alice", "max2", &x.maximum(&o))?;
            s.output("alice", "sort", &x.sort())?;
            s.output("alice", "argmin", &x.argmin())?;
            s.output("alice", "pool", &x.max_pool2d((2, 2), (2, 1)))
        },
    )
    .unwrap();
    let want = expected(&m, &o);
    assert_eq!(q[0], want[3]);
    assert_eq!(q[1], want[12]);
    assert_eq!(q[2], want[9]);
    assert_eq!(q[3], want[15]);
}

#[test]
fn garbled_comparison_costs_two_rounds_and_the_stated_bytes() {
    for (name, cfg) in presets() {
        let cfg = cfg.with_comparison(Comparison::GarbledCircuit);
        let n = 257u64;
        let l = cfg.ring().bits() as u64;
        let bytes = cfg.ring().bytes() as u64;
        let mut c = LocalCluster::new(cfg).with_seed(1);
        let alice = c.client("alice");
        c.upload(&alice, "x", grid(&cfg, n as usize, 4)).unwrap();
        let run = c
            .run(|s| {
                let x = s.input::<Array1<f64>>("x")?;
                s.output("alice", "c", &x.lt(1.0))
            })
            .unwrap();
        let st = run.stats();
        assert_eq!(st.rounds(), 2, "{name}");
        assert_eq!(st.link_bytes(S1, Sb), n * l * 16, "{name}: a-labels");
        assert_eq!(st.link_bytes(S2, Sb), n * l * 16, "{name}: b-labels");
        assert_eq!(
            st.link_bytes(Sa, Sb),
            n * (l - 1) * 32,
            "{name}: tables, 2 per AND gate"
        );
        assert_eq!(
            st.link_bytes(Sa, S1),
            n.div_ceil(8),
            "{name}: output colours"
        );
        assert_eq!(st.link_bytes(Sb, S2), n * bytes, "{name}: masked result");
        assert_eq!(
            st.servers[Sa.index()].bytes_received.iter().sum::<u64>(),
            0,
            "{name}: Sa receives nothing"
        );
        assert_eq!(
            st.total_messages(),
            6,
            "{name}: one message per link per round"
        );
    }
}

/// The four-party protocol's cost, derived here independently of the protocol
/// code: round 1 opens `l` bits per comparison; a tree over the `l − 1` low bits
/// joins pairs level by level (the lowest pair opens 2 bits, the others 3); the root
/// AND opens 2 bits and the conversion 1; the dealer sends `S2` its shares of `r`'s
/// bits, one bit per AND gate of the tree, one for the root AND and one ring element.
#[test]
fn four_party_comparison_costs_the_stated_rounds_and_bytes() {
    for (name, cfg) in presets() {
        let n = 257u64;
        let l = cfg.ring().bits() as u64;
        let bytes = cfg.ring().bytes() as u64;
        let mut c = LocalCluster::new(cfg).with_seed(1);
        let alice = c.client("alice");
        c.upload(&alice, "x", grid(&cfg, n as usize, 4)).unwrap();
        let run = c
            .run(|s| {
                let x = s.input::<Array1<f64>>("x")?;
                s.output("alice", "c", &x.lt(1.0))
            })
            .unwrap();
        let (mut count, mut levels, mut online, mut ands) = (l - 1, 0u64, n * bytes, 0u64);
        while count > 2 {
            let pairs = count / 2;
            online += (n * (2 + 3 * (pairs - 1))).div_ceil(8);
            ands += 1 + 2 * (pairs - 1);
            count = pairs + count % 2;
            levels += 1;
        }
        online += (2 * n).div_ceil(8) + n.div_ceil(8);
        let st = run.stats();
        assert_eq!(st.rounds(), levels + 3, "{name}");
        assert_eq!(
            st.rounds(),
            ((l - 1) as f64).log2().ceil() as u64 + 2,
            "{name}: 2 + ceil(log2(l - 1)) rounds"
        );
        assert_eq!(st.link_bytes(S1, S2), online, "{name}: S1 online");
        assert_eq!(st.link_bytes(S2, S1), online, "{name}: S2 online");
        let deal = (n * l).div_ceil(8) + (n * ands).div_ceil(8) + n.div_ceil(8) + n * bytes;
        assert_eq!(st.link_bytes(Sa, S2), deal, "{name}: the deal");
        for r in [Sa, Sb] {
            assert_eq!(
                st.servers[r.index()].bytes_received.iter().sum::<u64>(),
                0,
                "{name}: {r} receives nothing"
            );
        }
        assert_eq!(
            st.link_bytes(Sa, S1),
            0,
            "{name}: S1's material is all from seeds"
        );
        assert_eq!(
            st.servers[Sb.index()].bytes_sent.iter().sum::<u64>(),
            0,
            "{name}: Sb is idle"
        );
        assert_eq!(
            st.total_messages(),
            2 * (levels + 3) + 1,
            "{name}: one message per link per round, one deal"
        );
        if l == 64 {
            assert!(online <= 32 * n, "{name}: {} bytes online", online / n);
            assert!(deal <= 33 * n, "{name}: {} bytes dealt", deal / n);
        }
    }
}

#[test]
fn tree_reduction_takes_ceil_log2_n_comparison_layers() {
    for (protocol, per_cmp) in [(Comparison::GarbledCircuit, 2), (Comparison::FourParty, 8)] {
        for n in [2usize, 5, 16, 33] {
            let cfg = Config::fast().with_comparison(protocol);
            let mut c = LocalCluster::new(cfg).with_seed(1);
            let alice = c.client("alice");
            c.upload(&alice, "x", grid(&cfg, n.max(4), 5)).unwrap();
            let run = c
                .run(|s| {
                    let x = s.input::<Array1<f64>>("x")?;
                    s.output("alice", "m", &x.max())
                })
                .unwrap();
            let layers = (n.max(4) as f64).log2().ceil() as u64;
            // Each layer: one comparison and one multiplication (2 rounds).
            assert_eq!(
                run.stats().rounds(),
                (per_cmp + 2) * layers,
                "{protocol:?}, n = {n}"
            );
        }
    }
}

/// `Comparison::Auto` (the default) runs small batches on the garbled circuit (2
/// rounds) and large ones on the four-party protocol (8 rounds on Z64), with the
/// crossover of the configured network; `with_link` sets the network; results are
/// right either way.
#[test]
fn auto_comparison_follows_batch_size_and_network() {
    use privpy::transport::LinkProfile;
    assert_eq!(Config::fast().comparison(), Comparison::Auto);
    let cases = [
        (Network::Local, None, 63, 2),
        (Network::Local, None, 64, 8),
        (Network::Lan, None, 51, 2),
        (Network::Lan, None, 52, 8),
        (Network::Wan, None, 729, 2),
        (Network::Wan, None, 730, 8),
        // The emulated WAN sets the network itself: 100 comparisons stay on the circuit.
        (Network::Local, Some(LinkProfile::wan()), 100, 2),
    ];
    for (network, link, n, rounds) in cases {
        let cfg = Config::fast().with_network(network);
        let x = grid(&cfg, n, 3);
        let mut c = LocalCluster::new(cfg).with_seed(2).with_link(link);
        let alice = c.client("alice");
        c.upload(&alice, "x", x.clone()).unwrap();
        let run = c
            .run(|s| {
                let x = s.input::<Array1<f64>>("x")?;
                s.output("alice", "p", &x.gt(0.0))
            })
            .unwrap();
        assert_eq!(
            run.stats().rounds(),
            rounds,
            "{network:?} {link:?}, n = {n}"
        );
        let p = run.open::<Array1<f64>>(&alice, "p").unwrap();
        for (k, (&p, &v)) in p.iter().zip(x.iter()).enumerate() {
            assert_eq!(p, f64::from(v > 0.0), "{network:?}, n = {n}, element {k}");
        }
    }
}

#[test]
fn comparison_transcripts_do_not_depend_on_inputs() {
    use crate::security::{CHI2_255_P001, chi_square_two_sample, chi_square_uniform};
    for protocol in [Comparison::GarbledCircuit, Comparison::FourParty] {
        let cfg = Config::fast().with_comparison(protocol);
        let run = |x: ArrayD<f64>| {
            let mut c = LocalCluster::new(cfg).with_seed(5).record_transcripts(true);
            let alice = c.client("alice");
            c.upload(&alice, "x", x).unwrap();
            let out = c
                .run(|s| {
                    let x = s.input::<Array1<f64>>("x")?;
                    s.output("alice", "c", &x.lt(0.0))?;
                    s.output("alice", "e", &x.eq(0.0))
                })
                .unwrap();
            Role::ALL.map(|r| out.transcript(r).unwrap().to_vec())
        };
        let n = 2000;
        let t0 = run(ArrayD::zeros(vec![n]));
        let t1 = run(ArrayD::from_elem(vec![n], -cfg.bound() * 0.75));
        assert!(t0[Sa.index()].is_empty() && t1[Sa.index()].is_empty());
        if protocol == Comparison::GarbledCircuit {
            // Sb: labels and tables; S2: colours and a masked ring element.
            for r in [Sb, S2] {
                let (a, b) = (&t0[r.index()], &t1[r.index()]);
                assert!(chi_square_uniform(a) < CHI2_255_P001, "{r}");
                assert!(chi_square_uniform(b) < CHI2_255_P001, "{r}");
                assert!(chi_square_two_sample(a, b) < CHI2_255_P001, "{r}");
            }
            // S1 receives only the colour bits: about half of them set.
            for t in [&t0, &t1] {
                let ones: u32 = t[S1.index()].iter().map(|b| b.count_ones()).sum();
                assert!((1800..2200).contains(&ones), "{ones} of {}", 2 * n);
            }
        } else {
            // Sb receives nothing; S1 and S2 receive masked values, masked bits
            // and (S2) the deal: uniform bytes, whatever the input.
            assert!(t0[Sb.index()].is_empty() && t1[Sb.index()].is_empty());
            for r in [S1, S2] {
                let (a, b) = (&t0[r.index()], &t1[r.index()]);
                assert!(!a.is_empty(), "{r}");
                assert!(chi_square_uniform(a) < CHI2_255_P001, "{protocol:?} {r}");
                assert!(chi_square_uniform(b) < CHI2_255_P001, "{protocol:?} {r}");
                assert!(
                    chi_square_two_sample(a, b) < CHI2_255_P001,
                    "{protocol:?} {r}"
                );
            }
        }
    }
}

#[test]
fn preprocessed_comparisons_agree_and_leave_sa_idle_online() {
    for (name, cfg) in protocols() {
        let x = grid(&cfg, 300, 7);
        let y = grid(&cfg, 300, 8);
        let names = ["a", "b", "c", "e"];
        let sa_online = std::sync::Mutex::new(None);
        let program = |s: &Session| {
            let x = s.input::<Array1<f64>>("x")?;
            let y = s.input::<Array1<f64>>("y")?;
            s.preprocess_comparisons(700)?;
            s.preprocess_equalities(300)?;
            let before = s.stats();
            let a = x.lt(&y); // 300 from the pool
            let c = y.lt(&x); // 300 more
            let e = x.eq(&y); // the equality pool
            if s.role() == Some(Role::Sa) {
                *sa_online.lock().unwrap() = Some(s.stats().since(&before).total_bytes_sent());
            }
            s.output("alice", "a", &a)?;
            s.output("alice", "c", &c)?;
            s.output("alice", "e", &e)?;
            // 100 left in the pool: the first layers garble online, the rest use it.
            s.output("alice", "b", &x.max_axis(Axis(0)))
        };
        let (p, q) = private_and_clear(cfg, &[("x", x.clone()), ("y", y.clone())], &names, program);
        for k in 0..names.len() {
            assert_eq!(p[k], q[k], "{name}: {}", names[k]);
        }
        assert_eq!(
            *sa_online.lock().unwrap(),
            Some(0),
            "{name}: Sa sends nothing online"
        );
    }
}
