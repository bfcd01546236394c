//! The select pass: `if` on a secret becomes an oblivious select.
//!
//! Both branches run, each on copies of the secret variables it assigns; then every
//! assigned variable becomes `select(c, then_value, else_value)` = `f + c·(t − f)`,
//! and so does the `if`'s own value when both branches have one. A missing `else`
//! keeps the old values. Validation has made sure nothing else can escape a branch.

use super::Ctx;
use crate::effects::MUTATING_METHODS;
use crate::scope::{is_compound, path_ident, strip};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::{Block, Expr, ExprIf, Ident, Stmt, parse_quote};

/// The rewritten `if` (its condition and branches already rewritten); `vars` are the
/// secret variables its branches assign, `value` whether both branches have a value.
pub(crate) fn rewrite(cx: &Ctx, i: &ExprIf, vars: &[Ident], value: bool) -> Expr {
    let span = i.if_token.span;
    let krate = cx.krate_at(span);
    let c = cx.fresh("c");
    let cond = &i.cond;
    let then_expr = Expr::Block(syn::ExprBlock {
        attrs: vec![],
        label: None,
        block: i.then_branch.clone(),
    });
    let else_expr = i.else_branch.as_ref().map(|(_, e)| (**e).clone());
    let copies: Vec<TokenStream> = vars
        .iter()
        .map(|v| quote!(#[allow(unused_mut)] let mut #v = ::core::clone::Clone::clone(&#v);))
        .collect();
    let branch = |b: &Expr| -> TokenStream {
        if value {
            quote!({ #(#copies)* let __privpy_value = #b; (__privpy_value, #(#vars,)*) })
        } else {
            quote!({ #(#copies)* #b; (#(#vars,)*) })
        }
    };
    let tv: Vec<Ident> = vars.iter().map(|_| cx.fresh("t")).collect();
    let fv: Vec<Ident> = vars.iter().map(|_| cx.fresh("f")).collect();
    let (t, f) = (cx.fresh("t"), cx.fresh("f"));
    let (tpat, fpat) = if value {
        (quote!((#t, #(#tv,)*)), quote!((#f, #(#fv,)*)))
    } else {
        (quote!((#(#tv,)*)), quote!((#(#fv,)*)))
    };
    let then_code = branch(&then_expr);
    let else_code = match &else_expr {
        Some(e) => {
            let code = branch(e);
            quote!(let #fpat = #code;)
        }
        None => quote!(),
    };
    let assigns = vars.iter().zip(&tv).zip(&fv).map(|((v, t), f)| {
        if else_expr.is_some() {
            quote_spanned!(span=> #v = #krate::__private::select(#c, &#t, &#f);)
        } else {
            quote_spanned!(span=> #v = #krate::__private::select(#c, &#t, &#v);)
        }
    });
    let result = if value {
        quote_spanned!(span=> #krate::__private::select(#c, &#t, &#f))
    } else {
        quote!()
    };
    parse_quote!({
        let #c = &(#cond);
        let #tpat = #then_code;
        #else_code
        #(#assigns)*
        #result
    })
}

/// The value of a block: its tail expression, when it has one.
pub(crate) fn tail_value(b: &Block) -> Option<&Expr> {
    match b.stmts.last() {
        Some(Stmt::Expr(e, None)) if has_value(e) => Some(e),
        _ => None,
    }
}

/// Whether an expression in tail position produces a value (not `()`, as far as
/// the syntax tells).
pub(crate) fn has_value(e: &Expr) -> bool {
    match strip(e) {
        Expr::Block(b) => tail_value(&b.block).is_some(),
        Expr::If(i) => {
            tail_value(&i.then_branch).is_some()
                && i.else_branch.as_ref().is_some_and(|(_, e)| has_value(e))
        }
        Expr::Assign(_)
        | Expr::ForLoop(_)
        | Expr::While(_)
        | Expr::Loop(_)
        | Expr::Return(_)
        | Expr::Break(_)
        | Expr::Continue(_) => false,
        Expr::Binary(b) => !is_compound(&b.op),
        Expr::MethodCall(m) => !MUTATING_METHODS.iter().any(|x| m.method == x),
        Expr::Tuple(t) => !t.elems.is_empty(),
        _ => true,
    }
}

/// The variables an `if` assigns (`x = …`, `x += …`, `x[i] = …`, `x.itemset(…)`),
/// anywhere in its branches except inside closures, each once.
pub(crate) fn assigned_names(i: &ExprIf) -> Vec<Ident> {
    use syn::visit::Visit;
    struct A(Vec<Ident>);
    impl A {
        fn target(&mut self, e: &Expr) {
            let base = match strip(e) {
                Expr::Index(ix) => &ix.expr,
                other => other,
            };
            if let Some(id) = path_ident(base)
                && !self.0.contains(id)
            {
                self.0.push(id.clone());
            }
        }
    }
    impl<'a> Visit<'a> for A {
        fn visit_expr_assign(&mut self, a: &'a syn::ExprAssign) {
            self.target(&a.left);
            syn::visit::visit_expr_assign(self, a);
        }
        fn visit_expr_binary(&mut self, b: &'a syn::ExprBinary) {
            if is_compound(&b.op) {
                self.target(&b.left);
            }
            syn::visit::visit_expr_binary(self, b);
        }
        fn visit_expr_method_call(&mut self, m: &'a syn::ExprMethodCall) {
            if MUTATING_METHODS.iter().any(|x| m.method == x) {
                self.target(&m.receiver);
            }
            syn::visit::visit_expr_method_call(self, m);
        }
        fn visit_expr_closure(&mut self, _: &'a syn::ExprClosure) {}
        fn visit_item(&mut self, _: &'a syn::Item) {}
    }
    let mut a = A(Vec::new());
    a.visit_block(&i.then_branch);
    if let Some((_, e)) = &i.else_branch {
        a.visit_expr(e);
    }
    a.0
}
