//! Garbling against the plaintext oracle, gate counts, and the evaluator's view.

use super::*;
use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};

/// Splits `n` `l`-bit values into `l` bit-wires (LSB first).
fn bits(vals: &[u128], l: usize) -> Vec<Vec<bool>> {
    (0..l)
        .map(|i| vals.iter().map(|v| (v >> i) & 1 == 1).collect())
        .collect()
}

fn garble_eval(
    l: usize,
    a: &[u128],
    b: &[u128],
    eq: bool,
    rng: &mut ChaCha12Rng,
) -> (Vec<bool>, Vec<Label>, Vec<Label>) {
    let n = a.len();
    let hash = FixedKeyAes::new();
    let delta = ((rng.next_u64() as u128) << 64 | rng.next_u64() as u128) | 1;
    let zero = |rng: &mut ChaCha12Rng| -> Vec<Vec<Label>> {
        (0..l)
            .map(|_| {
                (0..n)
                    .map(|_| (rng.next_u64() as u128) << 64 | rng.next_u64() as u128)
                    .collect()
            })
            .collect()
    };
    let (wa, wb) = (zero(rng), zero(rng));
    let mut g = Garbler::new(&hash, delta, 9);
    let out0 = if eq {
        equal_zero(&mut g, &wa, &wb)
    } else {
        msb_of_sum(&mut g, &wa, &wb)
    };
    // The evaluator gets one label per input wire.
    let active = |w: &[Vec<Label>], v: &[u128]| -> Vec<Vec<Label>> {
        (0..l)
            .map(|i| {
                (0..n)
                    .map(|k| w[i][k] ^ if (v[k] >> i) & 1 == 1 { delta } else { 0 })
                    .collect()
            })
            .collect()
    };
    let (la, lb) = (active(&wa, a), active(&wb, b));
    let mut e = Evaluator::new(&hash, 9, &g.tables);
    let out = if eq {
        equal_zero(&mut e, &la, &lb)
    } else {
        msb_of_sum(&mut e, &la, &lb)
    };
    let decoded = (0..n).map(|k| (out[k] ^ out0[k]) & 1 == 1).collect();
    let mut view = g.tables.clone();
    view.extend(la.into_iter().flatten());
    view.extend(lb.into_iter().flatten());
    (decoded, view, out)
}

#[test]
fn msb_of_sum_exhaustive_4_bits_and_random_64_128_256() {
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    // Every pair of 4-bit inputs.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for x in 0..16u128 {
        for y in 0..16u128 {
            a.push(x);
            b.push(y);
        }
    }
    let (got, _, _) = garble_eval(4, &a, &b, false, &mut rng);
    let plain = msb_of_sum(&mut Plain, &bits(&a, 4), &bits(&b, 4));
    for k in 0..a.len() {
        let want = ((a[k] + b[k]) >> 3) & 1 == 1;
        assert_eq!(got[k], want, "{} + {}", a[k], b[k]);
        assert_eq!(plain[k], want);
    }
    // Random 64- and 128-bit values (the 256-bit ring uses the same circuit on l = 256).
    for l in [64usize, 128] {
        let a: Vec<u128> = (0..200)
            .map(|_| rng.next_u64() as u128 | ((rng.next_u64() as u128) << 64))
            .collect();
        let b: Vec<u128> = (0..200)
            .map(|_| rng.next_u64() as u128 | ((rng.next_u64() as u128) << 64))
            .collect();
        let mask = if l == 128 {
            u128::MAX
        } else {
            (1u128 << l) - 1
        };
        let a: Vec<u128> = a.iter().map(|v| v & mask).collect();
        let b: Vec<u128> = b.iter().map(|v| v & mask).collect();
        let (got, _, _) = garble_eval(l, &a, &b, false, &mut rng);
        for k in 0..a.len() {
            let s = a[k].wrapping_add(b[k]) & mask;
            assert_eq!(got[k], (s >> (l - 1)) & 1 == 1);
        }
    }
}

#[test]
fn equality_exhaustive_4_bits() {
    let mut rng = ChaCha12Rng::seed_from_u64(2);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for x in 0..16u128 {
        for y in 0..16u128 {
            a.push(x);
            b.push(y);
        }
    }
    let (got, _, _) = garble_eval(4, &a, &b, true, &mut rng);
    for k in 0..a.len() {
        assert_eq!(got[k], a[k] == b[k]);
    }
}

#[test]
fn gate_counts_are_l_minus_1() {
    for l in [64usize, 128, 256] {
        let w = vec![(); l];
        let mut c = Counter::default();
        msb_of_sum(&mut c, &w, &w);
        assert_eq!(c.and_gates, l - 1, "less-than, l = {l}");
        let mut c = Counter::default();
        equal_zero(&mut c, &w, &w);
        assert_eq!(c.and_gates, l - 1, "equality, l = {l}");
    }
}

/// The evaluator's view (tables and its active labels) has the same byte
/// distribution whatever the inputs: all-zero inputs vs all-ones inputs.
#[test]
fn evaluator_view_does_not_depend_on_inputs() {
    let n = 400;
    let l = 64;
    let mut rng = ChaCha12Rng::seed_from_u64(3);
    let zeros = vec![0u128; n];
    let ones = vec![(1u128 << 64) - 1; n];
    let (_, v0, out0) = garble_eval(l, &zeros, &zeros, false, &mut rng);
    let (_, v1, out1) = garble_eval(l, &ones, &ones, false, &mut rng);
    let hist = |v: &[Label]| {
        let mut h = [0f64; 256];
        for x in v {
            for b in x.to_le_bytes() {
                h[b as usize] += 1.0;
            }
        }
        h
    };
    let (h0, h1) = (hist(&v0), hist(&v1));
    let total: f64 = h0.iter().sum();
    let mut chi = 0.0;
    for k in 0..256 {
        let e = (h0[k] + h1[k]) / 2.0;
        chi += (h0[k] - e).powi(2) / e + (h1[k] - e).powi(2) / e;
    }
    assert!(total > 100_000.0);
    assert!(chi < 330.52, "chi2 = {chi}");
    // The colour bits the evaluator ends with are balanced either way.
    for out in [out0, out1] {
        let ones = out.iter().filter(|x| *x & 1 == 1).count();
        assert!((120..280).contains(&ones), "{ones} of {n}");
    }
}
