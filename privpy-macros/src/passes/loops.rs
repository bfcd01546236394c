//! Loop vectorization (paper §6.2).
//!
//! `for i in a..b { z[i] = E; s = s + F; }` where every use of `i` is an index
//! `v[i]` into a secret vector, no statement reads a variable the loop writes (no
//! loop-carried dependency, no aliasing), the bounds read nothing the loop writes,
//! and each `E`/`F` uses at least one `v[i]`: becomes one array operation per
//! statement on `v[a..b]` (a reduction becomes a sum), guarded by `a < b`.
//! Anything else is left as written.

use super::Ctx;
use crate::scope::{Scope, path_ident, strip};
use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{BinOp, Expr, ExprForLoop, Ident, Pat, RangeLimits, Stmt, parse_quote};

/// `E` with every `v[i]` replaced by the slice `v[a..b]`; `None` when `E` uses `i`
/// any other way or contains anything but arithmetic, comparisons, literals and names.
fn vectorized(
    cx: &Ctx,
    scope: &Scope,
    e: &Expr,
    i: &Ident,
    range: &(TokenStream, TokenStream),
    used: &mut bool,
) -> Option<Expr> {
    let (a, b) = range;
    let krate = &cx.krate;
    match strip(e) {
        Expr::Index(ix) => {
            let base = path_ident(&ix.expr)?;
            if !scope.is_secret(&base.to_string()) || path_ident(&ix.index) != Some(i) {
                return None;
            }
            *used = true;
            Some(parse_quote!(#krate::__private::range(&#base, (#a) as usize, (#b) as usize)))
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
            let l = vectorized(cx, scope, &bin.left, i, range, used)?;
            let r = vectorized(cx, scope, &bin.right, i, range, used)?;
            let op = bin.op;
            Some(parse_quote!((#l) #op (#r)))
        }
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => {
            let x = vectorized(cx, scope, &u.expr, i, range, used)?;
            Some(parse_quote!(-(#x)))
        }
        Expr::Lit(_) => Some(e.clone()),
        // A name other than the loop variable: the same scalar in every iteration.
        Expr::Path(p) if p.path.get_ident().is_some_and(|id| id != i) => Some(e.clone()),
        _ => None,
    }
}

/// Whether `e` mentions the identifier `name` anywhere (macros included).
fn mentions(e: &impl ToTokens, name: &str) -> bool {
    fn walk(ts: TokenStream, name: &str) -> bool {
        ts.into_iter().any(|t| match t {
            proc_macro2::TokenTree::Ident(id) => id == name,
            proc_macro2::TokenTree::Group(g) => walk(g.stream(), name),
            _ => false,
        })
    }
    walk(e.to_token_stream(), name)
}

enum Step {
    Elem(Ident, Expr),
    Reduce(Ident, Expr),
}

/// One statement of the loop body as a vectorizable step.
fn step(scope: &Scope, st: &Stmt, i: &Ident) -> Option<Step> {
    let Stmt::Expr(ex, _) = st else { return None };
    match strip(ex) {
        Expr::Assign(a) => match strip(&a.left) {
            Expr::Index(ix) => {
                let z = path_ident(&ix.expr)?;
                if !scope.is_secret(&z.to_string()) || path_ident(&ix.index) != Some(i) {
                    return None;
                }
                Some(Step::Elem(z.clone(), (*a.right).clone()))
            }
            Expr::Path(_) => {
                let s = path_ident(&a.left)?;
                let Expr::Binary(b) = strip(&a.right) else {
                    return None;
                };
                if !matches!(b.op, BinOp::Add(_)) || !scope.is_secret(&s.to_string()) {
                    return None;
                }
                let term = if path_ident(&b.left) == Some(s) {
                    (*b.right).clone()
                } else if path_ident(&b.right) == Some(s) {
                    (*b.left).clone()
                } else {
                    return None;
                };
                Some(Step::Reduce(s.clone(), term))
            }
            _ => None,
        },
        Expr::Binary(b) if matches!(b.op, BinOp::AddAssign(_)) => {
            let s = path_ident(&b.left)?;
            if !scope.is_secret(&s.to_string()) {
                return None;
            }
            Some(Step::Reduce(s.clone(), (*b.right).clone()))
        }
        _ => None,
    }
}

/// The vectorized loop; `None` leaves it as written.
pub(crate) fn vectorize(cx: &Ctx, scope: &Scope, f: &ExprForLoop) -> Option<Expr> {
    let krate = &cx.krate;
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
    let steps = f
        .body
        .stmts
        .iter()
        .map(|st| step(scope, st, i))
        .collect::<Option<Vec<_>>>()?;
    if steps.is_empty() {
        return None;
    }
    let written: Vec<String> = steps
        .iter()
        .map(|s| match s {
            Step::Elem(z, _) | Step::Reduce(z, _) => z.to_string(),
        })
        .collect();
    if written
        .iter()
        .any(|w| mentions(&**start, w) || mentions(&**end, w))
    {
        return None;
    }
    let (a, b) = (cx.fresh("a"), cx.fresh("b"));
    let range = (a.to_token_stream(), b.to_token_stream());
    let mut out = TokenStream::new();
    for step in &steps {
        let (Step::Elem(_, e) | Step::Reduce(_, e)) = step;
        if written.iter().any(|w| mentions(e, w)) {
            return None;
        }
        let mut used = false;
        let v = vectorized(cx, scope, e, i, &range, &mut used)?;
        if !used {
            return None;
        }
        let tmp = cx.fresh("v");
        match step {
            Step::Elem(z, _) => out.extend(quote!({
                let #tmp = #v;
                #krate::__private::put_range(&mut #z, #a, #b, &#tmp);
            })),
            Step::Reduce(s, _) => out.extend(quote!({
                let #tmp = #v;
                #s = &#s + &#tmp.sum();
            })),
        }
    }
    Some(parse_quote!({
        let (#a, #b): (usize, usize) = ((#start) as usize, (#end) as usize);
        if #a < #b { #out }
    }))
}
