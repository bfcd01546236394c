//! The optimizer (paper §6.2). Each rewrite fires only on a pattern where it is
//! provably equivalent, and otherwise leaves the code as written.
//!
//! * **Loop vectorization**: `for i in a..b { z[i] = E; s = s + F; }` where every use
//!   of `i` is an index `v[i]` into a secret vector, no statement reads a variable the
//!   loop writes (no loop-carried dependency, no aliasing), and each `E`/`F` uses at
//!   least one `v[i]`: becomes one array operation per statement on `v[a..b]`.
//! * **Common factor extraction**: `x*y1 + x*y2 + … + x*yn` with the same secret name
//!   `x` in every term becomes `x * (y1 + … + yn)`: one multiplication instead of `n`.
//! * **Expression vectorization**: `x1*y1 + … + xn*yn` with secret names on both sides
//!   becomes one batched multiplication of the stacked operands and a sum.

use crate::rewrite::Cx;
use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{BinOp, Expr, ExprForLoop, Ident, Pat, RangeLimits, Stmt, parse_quote};

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip(&p.expr),
        Expr::Group(g) => strip(&g.expr),
        _ => e,
    }
}

fn path_ident(e: &Expr) -> Option<&Ident> {
    match strip(e) {
        Expr::Path(p) => p.path.get_ident(),
        _ => None,
    }
}

fn is_secret_name(cx: &Cx, e: &Expr) -> bool {
    path_ident(e).is_some_and(|i| cx.secrets.contains(&i.to_string()))
}

/// `E` with every `v[i]` replaced by the vector slice `v[a..b]`; `None` when `E` uses
/// `i` any other way or contains anything but arithmetic, literals and names.
fn vectorized(
    cx: &Cx,
    e: &Expr,
    i: &Ident,
    range: &(TokenStream, TokenStream),
    used: &mut bool,
) -> Option<Expr> {
    let (a, b) = range;
    match strip(e) {
        Expr::Index(ix) => {
            let base = path_ident(&ix.expr)?;
            if !cx.secrets.contains(&base.to_string()) || path_ident(&ix.index) != Some(i) {
                return None;
            }
            *used = true;
            Some(parse_quote!(::privpy::__private::range(&#base, (#a) as usize, (#b) as usize)))
        }
        Expr::Binary(bin)
            if matches!(
                bin.op,
                BinOp::Add(_)
                    | BinOp::Sub(_)
                    | BinOp::Mul(_)
                    | BinOp::Div(_)
                    | BinOp::Lt(_)
                    | BinOp::Gt(_)
                    | BinOp::Le(_)
                    | BinOp::Ge(_)
            ) =>
        {
            let l = vectorized(cx, &bin.left, i, range, used)?;
            let r = vectorized(cx, &bin.right, i, range, used)?;
            let op = bin.op;
            Some(parse_quote!((#l) #op (#r)))
        }
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => {
            let x = vectorized(cx, &u.expr, i, range, used)?;
            Some(parse_quote!(-(#x)))
        }
        Expr::Lit(_) => Some(e.clone()),
        Expr::Path(p) if p.path.get_ident() != Some(i) => Some(e.clone()),
        _ => None,
    }
}

fn mentions(e: &Expr, name: &str) -> bool {
    e.to_token_stream()
        .into_iter()
        .any(|t| matches!(t, proc_macro2::TokenTree::Ident(ref id) if id == name))
        || format!("{}", e.to_token_stream())
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .any(|w| w == name)
}

/// Loop vectorization; `None` leaves the loop as written.
pub(crate) fn vectorize_loop(cx: &Cx, f: &ExprForLoop) -> Option<Expr> {
    let Pat::Ident(pi) = &*f.pat else { return None };
    let i = &pi.ident;
    let Expr::Range(r) = strip(&f.expr) else {
        return None;
    };
    let (Some(start), Some(end)) = (&r.start, &r.end) else {
        return None;
    };
    if matches!(r.limits, RangeLimits::Closed(_)) || f.label.is_some() {
        return None;
    }
    let range = (start.to_token_stream(), end.to_token_stream());
    enum Step {
        Elem(Ident, Expr),
        Reduce(Ident, Expr),
    }
    let mut steps = Vec::new();
    for st in &f.body.stmts {
        let Stmt::Expr(ex, _) = st else { return None };
        match strip(ex) {
            Expr::Assign(a) => match strip(&a.left) {
                Expr::Index(ix) => {
                    let z = path_ident(&ix.expr)?;
                    if !cx.secrets.contains(&z.to_string()) || path_ident(&ix.index) != Some(i) {
                        return None;
                    }
                    steps.push(Step::Elem(z.clone(), (*a.right).clone()));
                }
                Expr::Path(_) => {
                    let s = path_ident(&a.left)?;
                    let Expr::Binary(b) = strip(&a.right) else {
                        return None;
                    };
                    if !matches!(b.op, BinOp::Add(_)) || !cx.secrets.contains(&s.to_string()) {
                        return None;
                    }
                    let term = if path_ident(&b.left) == Some(s) {
                        (*b.right).clone()
                    } else if path_ident(&b.right) == Some(s) {
                        (*b.left).clone()
                    } else {
                        return None;
                    };
                    steps.push(Step::Reduce(s.clone(), term));
                }
                _ => return None,
            },
            Expr::Binary(b) if matches!(b.op, BinOp::AddAssign(_)) => {
                let s = path_ident(&b.left)?;
                if !cx.secrets.contains(&s.to_string()) {
                    return None;
                }
                steps.push(Step::Reduce(s.clone(), (*b.right).clone()));
            }
            _ => return None,
        }
    }
    if steps.is_empty() {
        return None;
    }
    // No statement may read what the loop writes.
    let written: Vec<String> = steps
        .iter()
        .map(|s| match s {
            Step::Elem(z, _) | Step::Reduce(z, _) => z.to_string(),
        })
        .collect();
    let mut out = TokenStream::new();
    for step in &steps {
        let (Step::Elem(_, e) | Step::Reduce(_, e)) = step;
        if written.iter().any(|w| mentions(e, w)) {
            return None;
        }
        let mut used = false;
        let v = vectorized(cx, e, i, &range, &mut used)?;
        if !used {
            return None;
        }
        let (a, b) = &range;
        match step {
            Step::Elem(z, _) => out.extend(quote!({
                let __privpy_v = #v;
                ::privpy::__private::put_range(&mut #z, (#a) as usize, (#b) as usize, &__privpy_v);
            })),
            Step::Reduce(s, _) => out.extend(quote!(#s = &#s + &(#v).sum();)),
        }
    }
    Some(parse_quote!({ #out }))
}

/// The terms of a `+` chain.
fn add_terms<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match strip(e) {
        Expr::Binary(b) if matches!(b.op, BinOp::Add(_)) => {
            add_terms(&b.left, out);
            add_terms(&b.right, out);
        }
        other => out.push(other),
    }
}

/// Common factor extraction, then expression vectorization; `None` leaves `e` as is.
pub(crate) fn sum_of_products(cx: &Cx, e: &Expr) -> Option<Expr> {
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
    if prods.len() < 2 {
        return None;
    }
    let key = |x: &Expr| x.to_token_stream().to_string();
    for cand in [prods[0].0, prods[0].1] {
        if !is_secret_name(cx, cand) {
            continue;
        }
        let k = key(cand);
        let rest: Option<Vec<&Expr>> = prods
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
            .collect();
        if let Some(rest) = rest {
            return Some(parse_quote!((#cand) * (#((#rest))+*)));
        }
    }
    if prods
        .iter()
        .all(|(a, b)| is_secret_name(cx, a) && is_secret_name(cx, b))
    {
        let (l, r): (Vec<&Expr>, Vec<&Expr>) = prods.into_iter().unzip();
        return Some(parse_quote!(::privpy::__private::sum_of_products(&[#(&#l),*], &[#(&#r),*])));
    }
    None
}
