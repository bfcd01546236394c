//! The operators pass: operators on secrets become privpy operations.
//!
//! * `+ - * /` borrow their secret operands (`x * y` becomes `&x * &y`), so a secret
//!   used in an expression stays usable; `x op= e` becomes `x = &x op e`;
//! * comparisons become secret comparisons (`x < y` becomes `x.lt(&y)`);
//! * `&&`, `||`, `!` on secret 0/1 values become arithmetic (validation has made sure
//!   both operands of `&&` / `||` are free of side effects);
//! * `v[i]` with a public `i` reads one element, `z[i] = e` writes one.

use super::Ctx;
use crate::scope::{Scope, path_ident, strip};
use proc_macro2::Span;
use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::{BinOp, Expr, Ident, UnOp, parse_quote_spanned};

/// An operand as the rewrite uses it: `orig` is the operand before its own rewrite
/// (for the analysis), `new` after.
pub(crate) struct Operand<'e> {
    pub(crate) orig: &'e Expr,
    pub(crate) new: &'e Expr,
}

/// `&x` for a secret name, `&(x.f)` for a field of a secret, else the expression.
pub(crate) fn borrowed(cx: &Ctx, scope: &Scope, span: Span, o: &Operand) -> TokenStream {
    let krate = cx.krate_at(span);
    let new = strip(o.new);
    if scope.is_secret_name(o.orig) {
        return quote_spanned!(span=> #krate::__private::by_ref(&#new));
    }
    if matches!(strip(o.orig), Expr::Field(_)) && scope.secret_in(o.orig).is_some() {
        return quote_spanned!(span=> &(#new));
    }
    quote_spanned!(span=> (#new))
}

/// A binary operator with at least one secret operand; `None` leaves it as is.
pub(crate) fn binary(
    cx: &Ctx,
    scope: &Scope,
    op: &BinOp,
    l: &Operand,
    r: &Operand,
    l_secret: bool,
) -> Option<Expr> {
    let span = syn::spanned::Spanned::span(op);
    let (bl, br) = (borrowed(cx, scope, span, l), borrowed(cx, scope, span, r));
    let rn = r.new;
    let ln = l.new;
    let cmp = |m: &str, flipped: &str| -> Expr {
        let (m, f) = (
            quote::format_ident!("{}", m),
            quote::format_ident!("{}", flipped),
        );
        if l_secret {
            let m = Ident::new(&m.to_string(), span);
            parse_quote_spanned!(span=> (#bl).#m(&(#rn)))
        } else {
            let f = Ident::new(&f.to_string(), span);
            parse_quote_spanned!(span=> (#br).#f(&(#ln)))
        }
    };
    Some(match op {
        BinOp::Lt(_) => cmp("lt", "gt"),
        BinOp::Gt(_) => cmp("gt", "lt"),
        BinOp::Le(_) => cmp("le", "ge"),
        BinOp::Ge(_) => cmp("ge", "le"),
        BinOp::Eq(_) => cmp("eq", "eq"),
        BinOp::Ne(_) => cmp("ne", "ne"),
        BinOp::And(_) => parse_quote_spanned!(span=> (#bl * #br)),
        BinOp::Or(_) => {
            let krate = cx.krate_at(span);
            parse_quote_spanned!(span=> #krate::__private::or(&#bl, &#br))
        }
        BinOp::Add(_) => parse_quote_spanned!(span=> #bl + #br),
        BinOp::Sub(_) => parse_quote_spanned!(span=> #bl - #br),
        BinOp::Mul(_) => parse_quote_spanned!(span=> #bl * #br),
        BinOp::Div(_) => parse_quote_spanned!(span=> #bl / #br),
        BinOp::AddAssign(_) | BinOp::SubAssign(_) | BinOp::MulAssign(_) | BinOp::DivAssign(_) => {
            let sym = match op {
                BinOp::AddAssign(_) => quote_spanned!(span=> +),
                BinOp::SubAssign(_) => quote_spanned!(span=> -),
                BinOp::MulAssign(_) => quote_spanned!(span=> *),
                _ => quote_spanned!(span=> /),
            };
            let target = ln;
            parse_quote_spanned!(span=> #target = #bl #sym #br)
        }
        _ => return None,
    })
}

/// `!c` and `-x` on a secret.
pub(crate) fn unary(cx: &Ctx, scope: &Scope, op: &UnOp, o: &Operand) -> Option<Expr> {
    let span = syn::spanned::Spanned::span(op);
    let inner = borrowed(cx, scope, span, o);
    match op {
        UnOp::Not(_) => Some(parse_quote_spanned!(span=> (1.0 - #inner))),
        UnOp::Neg(_) => Some(parse_quote_spanned!(span=> (-#inner))),
        _ => None,
    }
}

/// `&[i as usize, …]` for an index expression (`i`, `[i, j]` or `(i, j)`).
fn index_args(idx: &Expr) -> TokenStream {
    match strip(idx) {
        Expr::Array(a) => {
            let el = a.elems.iter();
            quote!(&[#((#el) as usize),*])
        }
        Expr::Tuple(t) => {
            let el = t.elems.iter();
            quote!(&[#((#el) as usize),*])
        }
        other => quote!(&[(#other) as usize]),
    }
}

/// `v[i]` on a secret `v`: one element.
pub(crate) fn index(span: Span, base: &Expr, idx: &Expr) -> Expr {
    let args = index_args(idx);
    parse_quote_spanned!(span=> (#base).item(#args))
}

/// `z[i] = value` on a secret `z` (the value computed first: it may read `z`).
pub(crate) fn itemset(
    cx: &Ctx,
    scope: &Scope,
    span: Span,
    base: &Expr,
    idx: &Expr,
    value: &Operand,
) -> Expr {
    let krate = cx.krate_at(span);
    let args = index_args(idx);
    let v = if scope.is_secret_name(value.orig) {
        borrowed(cx, scope, span, value)
    } else {
        value.new.to_token_stream()
    };
    let tmp = cx.fresh("v");
    let base = path_ident(base)
        .map(|i| i.to_token_stream())
        .unwrap_or_else(|| base.to_token_stream());
    parse_quote_spanned!(span=> {
        let #tmp = #v;
        #krate::__private::itemset(&mut #base, #args, #tmp)
    })
}
