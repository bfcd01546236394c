//! The two circuits of Protocol 2.

use super::Gc;

/// The most significant bit of `a + b mod 2^l` for `l`-bit inputs given LSB first:
/// the sign of the two's-complement sum. A ripple carry with one AND gate per bit,
/// `c_{i+1} = c_i ⊕ ((a_i ⊕ c_i) ∧ (b_i ⊕ c_i))`, for bits `0..l-1`: exactly `l - 1`
/// AND gates.
pub(crate) fn msb_of_sum<G: Gc>(g: &mut G, a: &[G::Wire], b: &[G::Wire]) -> G::Wire {
    let l = a.len();
    debug_assert_eq!(l, b.len());
    // c_1 = a_0 ∧ b_0 (the carry into bit 0 is zero).
    let mut c = g.and(&a[0], &b[0]);
    for i in 1..l - 1 {
        let x = g.xor(&a[i], &c);
        let y = g.xor(&b[i], &c);
        let t = g.and(&x, &y);
        c = g.xor(&c, &t);
    }
    let s = g.xor(&a[l - 1], &b[l - 1]);
    g.xor(&s, &c)
}

/// Whether `a == nb` bit for bit (`nb = -b`, so this is `a + b == 0`): the AND of all
/// `l` XNORs, as a balanced tree of exactly `l - 1` AND gates (depth `log2 l`).
pub(crate) fn equal_zero<G: Gc>(g: &mut G, a: &[G::Wire], nb: &[G::Wire]) -> G::Wire {
    let mut layer: Vec<G::Wire> = a
        .iter()
        .zip(nb)
        .map(|(x, y)| {
            let d = g.xor(x, y);
            g.not(&d)
        })
        .collect();
    while layer.len() > 1 {
        let mut next = Vec::with_capacity(layer.len().div_ceil(2));
        let mut it = layer.chunks(2);
        for pair in &mut it {
            next.push(if pair.len() == 2 {
                g.and(&pair[0], &pair[1])
            } else {
                pair[0].clone()
            });
        }
        layer = next;
    }
    layer
        .pop()
        .unwrap_or_else(|| unreachable!("circuits have at least one input bit"))
}
