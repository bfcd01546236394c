//! The ring kernels against a 512-bit reference built on crypto-bigint.
use super::*;
use crypto_bigint::U512;
use rand_chacha::ChaCha12Rng;
use rand_core::SeedableRng;

/// Sign-extends a ring element into `U512` through its little-endian bytes.
fn wide<R: Ring>(x: R) -> U512 {
    let mut b = Vec::new();
    R::write_le(std::iter::once(x), &mut b);
    b.resize(64, if x.is_negative() { 0xff } else { 0 });
    U512::from_le_slice(&b)
}

fn narrow<R: Ring>(v: U512) -> R {
    let b = v.to_le_bytes();
    R::read_le(&b.as_slice()[..R::BYTES])[0]
}

/// Interesting elements: 0, ±1, the extremes, and random ones.
fn samples<R: Ring>(rng: &mut ChaCha12Rng) -> Vec<R> {
    let one = R::from_u64(1);
    let min = one.shl(R::BITS - 1);
    let mut v = vec![
        R::zero(),
        one,
        one.wneg(),
        min,
        min.wsub(one),
        min.wadd(one),
    ];
    v.extend(R::random_vec(rng, 60));
    // Small signed values, as fixed-point encodings of modest reals are.
    v.extend(R::random_vec(rng, 30).into_iter().map(|x| {
        let small = R::from_u64(x.to_f64_signed().abs() as u64 >> 20);
        if x.is_negative() { small.wneg() } else { small }
    }));
    v
}

fn check_ring<R: Ring>(fs: &[u32]) {
    let mut rng = ChaCha12Rng::seed_from_u64(7);
    let xs = samples::<R>(&mut rng);
    for &f in fs {
        // Dot products of length 3 over all sample triples exercise the accumulator.
        for w in xs.windows(3) {
            for &y in &xs {
                let mut acc = R::acc_zero();
                let mut reference = U512::ZERO;
                for &x in w {
                    acc = R::mac(acc, x, y);
                    reference = reference.wrapping_add(&wide(x).wrapping_mul(&wide(y)));
                }
                let expect: R = narrow(reference.wrapping_shr(f));
                assert_eq!(R::trunc(acc, f), expect, "ring {} f={f}", R::BITS);
            }
        }
    }
}

#[test]
fn z64_mac_trunc_matches_reference() {
    check_ring::<Z64>(&[0, 1, 16, 32]);
}

#[test]
fn z128_mac_trunc_matches_reference() {
    check_ring::<Z128>(&[0, 1, 32, 63, 64]);
}

#[test]
fn z256_mac_trunc_matches_reference() {
    check_ring::<Z256>(&[0, 1, 64, 100, 128]);
}

fn roundtrip<R: Ring>() {
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    let xs = R::random_vec(&mut rng, 37);
    let mut b = Vec::new();
    R::write_le(xs.iter().copied(), &mut b);
    assert_eq!(b.len(), 37 * R::BYTES);
    assert_eq!(R::read_le(&b), xs);
}

#[test]
fn wire_roundtrip_all_rings() {
    roundtrip::<Z64>();
    roundtrip::<Z128>();
    roundtrip::<Z256>();
}

#[test]
fn signed_reading() {
    assert_eq!(Z64(u64::MAX).to_f64_signed(), -1.0);
    assert_eq!(Z128(5).wneg().to_f64_signed(), -5.0);
    let x = Z256::from_u64(3).shl(200).wneg();
    assert_eq!(x.to_f64_signed(), -3.0 * 2f64.powi(200));
    assert!(x.is_negative());
}
