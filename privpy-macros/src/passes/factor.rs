//! Common factor extraction (paper §6.2): `x*y1 + x*y2 + … + x*yn`, with the same
//! secret name `x` in every term (on either side), becomes `x * (y1 + … + yn)`: one
//! multiplication instead of `n`. The result has the type of the original sum
//! (broadcasting is associative in rank) and the same value up to fixed-point
//! rounding. Anything else is left as written.

use crate::scope::{Scope, strip};
use quote::ToTokens;
use syn::{BinOp, Expr, parse_quote};

/// The terms of a `+` chain.
pub(crate) fn add_terms<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match strip(e) {
        Expr::Binary(b) if matches!(b.op, BinOp::Add(_)) => {
            add_terms(&b.left, out);
            add_terms(&b.right, out);
        }
        other => out.push(other),
    }
}

/// The products of a sum of at least two products, as `(left, right)` pairs.
pub(crate) fn products(e: &Expr) -> Option<Vec<(&Expr, &Expr)>> {
    let Expr::Binary(b) = strip(e) else {
        return None;
    };
    if !matches!(b.op, BinOp::Add(_)) {
        return None;
    }
    let mut terms = Vec::new();
    add_terms(e, &mut terms);
    let prods: Vec<(&Expr, &Expr)> = terms
        .iter()
        .map(|t| match strip(t) {
            Expr::Binary(m) if matches!(m.op, BinOp::Mul(_)) => Some((&*m.left, &*m.right)),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (prods.len() >= 2).then_some(prods)
}

/// The factored sum; `None` leaves `e` as is.
pub(crate) fn extract(scope: &Scope, e: &Expr) -> Option<Expr> {
    let prods = products(e)?;
    let key = |x: &Expr| strip(x).to_token_stream().to_string();
    for cand in [prods[0].0, prods[0].1] {
        if !scope.is_secret_name(cand) {
            continue;
        }
        let k = key(cand);
        let rest = prods
            .iter()
            .map(|(a, b)| {
                if key(a) == k {
                    Some(*b)
                } else if key(b) == k {
                    Some(*a)
                } else {
                    None
                }
            })
            .collect::<Option<Vec<&Expr>>>()?;
        let cand = strip(cand);
        return Some(parse_quote!((#cand) * (#((#rest))+*)));
    }
    None
}
