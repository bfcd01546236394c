//! Expression vectorization (paper §6.2): `x1*y1 + … + xn*yn` with secret names on
//! both sides of every product becomes one batched multiplication: the operands are
//! stacked when their shapes agree (one round for the whole sum), term by term
//! otherwise. The builder's types follow the original sum term by term, so scalar,
//! vector and matrix secrets mix as they do in the original expression. Anything
//! else is left as written.

use super::Ctx;
use super::factor::products;
use crate::scope::Scope;
use syn::Expr;

/// The vectorized sum; `None` leaves `e` as is.
pub(crate) fn vectorize(cx: &Ctx, scope: &Scope, e: &Expr) -> Option<Expr> {
    let prods = products(e)?;
    if !prods
        .iter()
        .all(|(a, b)| scope.is_secret_name(a) && scope.is_secret_name(b))
    {
        return None;
    }
    let span = syn::spanned::Spanned::span(e);
    let krate = cx.krate_at(span);
    let (a0, b0) = prods[0];
    let rest = prods[1..]
        .iter()
        .map(|(a, b)| quote::quote_spanned!(span=> .then(&#a, &#b)));
    Some(syn::parse_quote_spanned!(span=>
        #krate::__private::Products::first(&#a0, &#b0) #(#rest)* .finish()
    ))
}
