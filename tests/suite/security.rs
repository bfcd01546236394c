//! What servers see: statistical checks on received bytes; nothing secret in Debug
//! output or error messages.

use crate::common::*;
use privpy::prelude::*;
use privpy::ring::{Ring, Z128};
use privpy::share::share_with;

/// Chi-square statistic of a byte histogram against the uniform distribution.
pub fn chi_square_uniform(bytes: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let expect = bytes.len() as f64 / 256.0;
    counts
        .iter()
        .map(|&c| (c as f64 - expect).powi(2) / expect)
        .sum()
}

/// Chi-square statistic of homogeneity between two byte histograms.
pub fn chi_square_two_sample(a: &[u8], b: &[u8]) -> f64 {
    let (mut ca, mut cb) = ([0f64; 256], [0f64; 256]);
    a.iter().for_each(|&x| ca[x as usize] += 1.0);
    b.iter().for_each(|&x| cb[x as usize] += 1.0);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let mut stat = 0.0;
    for k in 0..256 {
        let tot = ca[k] + cb[k];
        if tot == 0.0 {
            continue;
        }
        let ea = tot * na / (na + nb);
        let eb = tot * nb / (na + nb);
        stat += (ca[k] - ea).powi(2) / ea + (cb[k] - eb).powi(2) / eb;
    }
    stat
}

/// The 0.999 quantile of chi-square with 255 degrees of freedom.
pub const CHI2_255_P001: f64 = 330.52;

fn transcripts(cfg: Config, x: &ArrayD<f64>, y: &ArrayD<f64>) -> Vec<Vec<u8>> {
    let mut c = LocalCluster::new(cfg)
        .with_seed(77)
        .record_transcripts(true);
    let alice = c.client("alice");
    c.upload(&alice, "x", x).unwrap();
    c.upload(&alice, "y", y).unwrap();
    let run = c
        .run(|s| {
            let x = s.input::<Array2<f64>>("x")?;
            let y = s.input::<Array2<f64>>("y")?;
            let z = &x * &y;
            let m = x.dot(&y.t());
            s.output("alice", "z", &(&z * 3.0))?;
            s.output("alice", "m", &m)
        })
        .unwrap();
    Role::ALL
        .iter()
        .map(|&r| run.transcript(r).unwrap().to_vec())
        .collect()
}

#[test]
fn servers_receive_uniform_bytes_whatever_the_secret() {
    for (name, cfg) in presets() {
        let zeros = ArrayD::zeros(vec![64, 40]);
        let big = ArrayD::from_elem(vec![64, 40], cfg.bound() * 0.99);
        let mut g = rng(5);
        let mixed = arr(&[64, 40], &mut g, cfg.bound() * 0.5);
        let t0 = transcripts(cfg, &zeros, &zeros);
        let t1 = transcripts(cfg, &big, &mixed);
        for k in 0..4 {
            assert!(
                t0[k].len() > 10_000,
                "{name}: server {k} received too little to test"
            );
            assert_eq!(
                t0[k].len(),
                t1[k].len(),
                "{name}: sizes depend only on shapes"
            );
            let (u0, u1) = (chi_square_uniform(&t0[k]), chi_square_uniform(&t1[k]));
            assert!(
                u0 < CHI2_255_P001,
                "{name} server {k}, zero inputs: chi2 = {u0}"
            );
            assert!(
                u1 < CHI2_255_P001,
                "{name} server {k}, large inputs: chi2 = {u1}"
            );
            let h = chi_square_two_sample(&t0[k], &t1[k]);
            assert!(
                h < CHI2_255_P001,
                "{name} server {k}: transcripts differ, chi2 = {h}"
            );
        }
    }
}

#[test]
fn the_uniformity_test_detects_unmasked_values() {
    // The same statistic rejects what a server would see without masking: the
    // encodings themselves. This is what makes the test above meaningful.
    let cfg = Config::default();
    let mut bytes = Vec::new();
    let mut g = rng(5);
    let v = values(&mut g, 64 * 40, 1e6);
    Z128::write_le(
        v.iter().map(|&x| cfg.encode_scalar::<Z128>(x).unwrap()),
        &mut bytes,
    );
    assert!(chi_square_uniform(&bytes) > 10.0 * CHI2_255_P001);
}

#[test]
fn client_shares_are_uniform_each_on_its_own() {
    let cfg = Config::default();
    let x = ArrayD::from_elem(vec![5000], 1234.5);
    // A seeded generator: the statistic's 0.1% false-alarm rate must not make CI flaky.
    let [a, b] = share_with(&cfg, &x.view(), &mut rng(11)).unwrap();
    assert!(chi_square_uniform(&a.to_bytes()) < CHI2_255_P001);
    assert!(chi_square_uniform(&b.to_bytes()) < CHI2_255_P001);
}

#[test]
fn no_secret_or_share_in_debug_output_or_errors() {
    let secret = 98765.4321;
    let mut c = LocalCluster::new(Config::default()).with_seed(1);
    let alice = c.client("alice");
    c.upload(&alice, "x", Array1::from(vec![secret; 3]))
        .unwrap();
    let debug_in_program = std::sync::Mutex::new(Vec::new());
    let run = c
        .run(|s| {
            let x = s.input::<Array1<f64>>("x")?;
            let y = &x * &x;
            debug_in_program
                .lock()
                .unwrap()
                .push(format!("{x:?} {y:?} {s:?}"));
            s.output("alice", "y", &y)
        })
        .unwrap();
    let [s1, s2] = run.shares(&alice, "y").unwrap();
    let mut texts = debug_in_program.into_inner().unwrap();
    texts.push(format!("{run:?} {c:?} {s1:?} {s2:?}"));
    let err = c
        .run(|s| {
            let x = s.input::<Array1<f64>>("x")?;
            s.output("alice", "z", &(&x * &Array1::from(vec![1.0, 2.0])))
        })
        .unwrap_err();
    texts.push(format!("{err} {err:?}"));
    // Every share element, in every notation a log line might use.
    let mut needles = vec!["98765".to_string(), "9.8765".to_string()];
    for sh in [&s1, &s2] {
        for e in Z128::read_le(&sh.to_bytes()) {
            needles.push(e.0.to_string());
            needles.push(format!("{:x}", e.0));
            needles.push(format!("{:?}", e));
        }
    }
    for t in &texts {
        assert!(
            t.contains("shape"),
            "debug output should still be useful: {t}"
        );
        for n in &needles {
            assert!(!t.contains(n.as_str()), "{n} leaked into: {t}");
        }
    }
}

/// Prepared weights (`Priv::prepare`): what each server receives over one preparation
/// and three products is uniform and independent of the secrets, and the three
/// masked copies of the same input an assistant receives are masked afresh each time
/// (their XOR is uniform too; a reused mask would make it zero).
#[test]
fn prepared_weights_are_masked_once_and_inputs_afresh() {
    let transcripts = |cfg: Config, w: &ArrayD<f64>, x: &ArrayD<f64>| -> Vec<Vec<u8>> {
        let mut c = LocalCluster::new(cfg)
            .with_seed(78)
            .record_transcripts(true);
        let alice = c.client("alice");
        c.upload(&alice, "w", w).unwrap();
        c.upload(&alice, "x", x).unwrap();
        let run = c
            .run(|s| {
                let w = s.input::<Array2<f64>>("w")?.prepare()?;
                let x = s.input::<Array2<f64>>("x")?;
                let y = x.dot(&w) + x.dot(&w) + x.dot(&w);
                s.output("alice", "y", &y)
            })
            .unwrap();
        Role::ALL
            .iter()
            .map(|&r| run.transcript(r).unwrap().to_vec())
            .collect()
    };
    for (name, cfg) in presets() {
        let bytes = match cfg.ring() {
            privpy::RingKind::Z64 => 8,
            privpy::RingKind::Z128 => 16,
            _ => 32,
        };
        let zeros = ArrayD::zeros(vec![40, 64]);
        let mut g = rng(6);
        let w = arr(&[40, 64], &mut g, cfg.bound() * 0.5);
        let x = ArrayD::from_elem(vec![64, 40], cfg.bound() * 0.99);
        let t0 = transcripts(cfg, &zeros, &zeros.clone().reversed_axes());
        let t1 = transcripts(cfg, &w, &x);
        for k in 0..4 {
            assert_eq!(
                t0[k].len(),
                t1[k].len(),
                "{name}: sizes depend only on shapes"
            );
            for t in [&t0[k], &t1[k]] {
                let u = chi_square_uniform(t);
                assert!(u < CHI2_255_P001, "{name} server {k}: chi2 = {u}");
            }
            let h = chi_square_two_sample(&t0[k], &t1[k]);
            assert!(
                h < CHI2_255_P001,
                "{name} server {k}: transcripts differ, chi2 = {h}"
            );
        }
        // Sa receives w2' once (40×64), then x1' per product (64×40 each), in order.
        let sa = &t1[Role::Sa.index()];
        let (wl, xl) = (40 * 64 * bytes, 64 * 40 * bytes);
        assert_eq!(
            sa.len(),
            wl + 3 * xl,
            "{name}: Sa receives the weights once"
        );
        let q = |i: usize| &sa[wl + i * xl..wl + (i + 1) * xl];
        for (i, j) in [(0, 1), (1, 2), (0, 2)] {
            let xor: Vec<u8> = q(i).iter().zip(q(j)).map(|(a, b)| a ^ b).collect();
            let u = chi_square_uniform(&xor);
            assert!(
                u < CHI2_255_P001,
                "{name}: products {i} and {j} share a mask, chi2 = {u}"
            );
        }
    }
}
