//! The rewrite: one walk over a validated function, in lexical scope, that applies
//! the passes at each node. Each pass is a pure function of the node (before its own
//! rewrite, for the analysis) and the scope, in its own file:
//!
//! * [`loops`]: loop vectorization (optimizer);
//! * [`factor`]: common factor extraction (optimizer);
//! * [`products`]: expression vectorization (optimizer);
//! * [`select`]: `if` on a secret becomes an oblivious select;
//! * [`operators`]: operators, comparisons, logic and indexing on secrets.
//!
//! The optimizer passes run first on a node (they see the code as the user wrote
//! it); the node they produce is then rewritten like any other.

pub(crate) mod factor;
pub(crate) mod loops;
pub(crate) mod operators;
pub(crate) mod products;
pub(crate) mod select;

use crate::scope::{Scope, is_compound, strip};
use operators::Operand;
use std::cell::Cell;
use syn::visit_mut::{self, VisitMut};
use syn::{Block, Expr, Ident, Signature, Stmt, parse_quote};

/// What every pass needs besides the node: the path of the privpy crate and fresh
/// names.
pub(crate) struct Ctx {
    pub(crate) krate: syn::Path,
    pub(crate) optimize: bool,
    tmp: Cell<usize>,
}

impl Ctx {
    /// A name no user code can see (`__privpy_<what><n>`).
    pub(crate) fn fresh(&self, what: &str) -> Ident {
        self.tmp.set(self.tmp.get() + 1);
        quote::format_ident!("__privpy_{}{}", what, self.tmp.get())
    }

    /// The privpy path with every token at `span` (the user's expression), so the
    /// generated call reports the user's line to `#[track_caller]`.
    pub(crate) fn krate_at(&self, span: proc_macro2::Span) -> proc_macro2::TokenStream {
        respan(quote::ToTokens::to_token_stream(&self.krate), span)
    }
}

/// `tokens` with every span (inside groups too) set to `span`.
pub(crate) fn respan(
    tokens: proc_macro2::TokenStream,
    span: proc_macro2::Span,
) -> proc_macro2::TokenStream {
    use proc_macro2::TokenTree;
    tokens
        .into_iter()
        .map(|mut t| {
            if let TokenTree::Group(g) = &t {
                let mut ng = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                ng.set_span(span);
                return TokenTree::Group(ng);
            }
            t.set_span(span);
            t
        })
        .collect()
}

/// Rewrites a validated function body.
pub(crate) fn function(sig: &Signature, block: &mut Block, krate: &syn::Path, optimize: bool) {
    let mut r = Rewriter {
        cx: Ctx {
            krate: krate.clone(),
            optimize,
            tmp: Cell::new(0),
        },
        scope: Scope::of_params(sig),
    };
    r.visit_block_mut(block);
}

struct Rewriter {
    cx: Ctx,
    scope: Scope,
}

impl Rewriter {
    fn in_scope(&mut self, scope: Scope, f: impl FnOnce(&mut Self)) {
        let saved = std::mem::replace(&mut self.scope, scope);
        f(self);
        self.scope = saved;
    }

    fn secret_if(&mut self, e: &mut Expr) {
        let Expr::If(i) = e else { return };
        let vars: Vec<Ident> = select::assigned_names(i)
            .into_iter()
            .filter(|v| self.scope.is_secret(&v.to_string()))
            .collect();
        let value = select::tail_value(&i.then_branch).is_some()
            && i.else_branch
                .as_ref()
                .is_some_and(|(_, e)| select::has_value(e));
        self.visit_expr_mut(&mut i.cond);
        self.visit_block_mut(&mut i.then_branch);
        if let Some((_, els)) = &mut i.else_branch {
            self.visit_expr_mut(els);
        }
        *e = select::rewrite(&self.cx, i, &vars, value);
    }

    fn binary(&mut self, e: &mut Expr) {
        if self.cx.optimize
            && let Some(new) = factor::extract(&self.scope, e)
                .or_else(|| products::vectorize(&self.cx, &self.scope, e))
        {
            *e = new;
        }
        let Expr::Binary(b) = e else {
            return visit_mut::visit_expr_mut(self, e);
        };
        if is_compound(&b.op)
            && let Expr::Index(ix) = strip(&b.left)
            && self.scope.is_secret_name(&ix.expr)
        {
            // `z[i] op= v` is `z[i] = z[i] op v`.
            let (left, right) = (&b.left, &b.right);
            let op = compound_op(&b.op);
            *e = parse_quote!(#left = #left #op (#right));
            return self.visit_expr_mut(e);
        }
        let (l0, r0) = ((*b.left).clone(), (*b.right).clone());
        let ls = self.scope.secret_in(&l0).is_some();
        let rs = self.scope.secret_in(&r0).is_some();
        if is_compound(&b.op) {
            // The target is a place, not a value: only its index is rewritten.
            if let Expr::Index(ix) = &mut *b.left {
                self.visit_expr_mut(&mut ix.index);
            }
        } else {
            self.visit_expr_mut(&mut b.left);
        }
        self.visit_expr_mut(&mut b.right);
        if !ls && !rs {
            return;
        }
        let (l, r) = (
            Operand {
                orig: &l0,
                new: &b.left,
            },
            Operand {
                orig: &r0,
                new: &b.right,
            },
        );
        if let Some(new) = operators::binary(&self.cx, &self.scope, &b.op, &l, &r, ls) {
            *e = new;
        }
    }

    fn assign(&mut self, e: &mut Expr) {
        let Expr::Assign(a) = e else { return };
        let right0 = (*a.right).clone();
        self.visit_expr_mut(&mut a.right);
        match strip(&a.left).clone() {
            Expr::Index(mut ix) if self.scope.is_secret_name(&ix.expr) => {
                self.visit_expr_mut(&mut ix.index);
                let value = Operand {
                    orig: &right0,
                    new: &a.right,
                };
                let span = syn::spanned::Spanned::span(&*a.left);
                *e = operators::itemset(&self.cx, &self.scope, span, &ix.expr, &ix.index, &value);
            }
            Expr::Path(_) => {}
            _ => self.visit_expr_mut(&mut a.left),
        }
    }
}

fn compound_op(op: &syn::BinOp) -> proc_macro2::TokenStream {
    use syn::BinOp::*;
    match op {
        AddAssign(_) => quote::quote!(+),
        SubAssign(_) => quote::quote!(-),
        MulAssign(_) => quote::quote!(*),
        _ => quote::quote!(/),
    }
}

impl VisitMut for Rewriter {
    fn visit_block_mut(&mut self, b: &mut Block) {
        let saved = self.scope.clone();
        for k in 0..b.stmts.len() {
            if let Stmt::Local(l) = &b.stmts[k] {
                let next = self.scope.with_local(l, &b.stmts[k + 1..], 0);
                if let Stmt::Local(l) = &mut b.stmts[k] {
                    visit_mut::visit_local_mut(self, l);
                }
                self.scope = next;
            } else {
                self.visit_stmt_mut(&mut b.stmts[k]);
            }
        }
        self.scope = saved;
    }

    fn visit_item_mut(&mut self, _: &mut syn::Item) {}

    fn visit_macro_mut(&mut self, _: &mut syn::Macro) {}

    fn visit_arm_mut(&mut self, a: &mut syn::Arm) {
        let scope = self.scope.with_pat(&a.pat, false, 0);
        self.in_scope(scope, |r| {
            if let syn::Pat::Guard(g) = &mut a.pat {
                r.visit_expr_mut(&mut g.guard);
            }
            r.visit_expr_mut(&mut a.body);
        });
    }

    fn visit_expr_mut(&mut self, e: &mut Expr) {
        match e {
            Expr::If(i) => {
                if self.scope.secret_in(&i.cond).is_some() {
                    return self.secret_if(e);
                }
                self.visit_expr_mut(&mut i.cond);
                let scope = match strip(&i.cond) {
                    Expr::Let(l) => self.scope.with_pat(&l.pat, false, 0),
                    _ => self.scope.clone(),
                };
                self.in_scope(scope, |r| r.visit_block_mut(&mut i.then_branch));
                if let Some((_, els)) = &mut i.else_branch {
                    self.visit_expr_mut(els);
                }
            }
            Expr::Binary(_) => self.binary(e),
            Expr::Assign(_) => self.assign(e),
            Expr::Index(ix) => {
                let secret =
                    self.scope.is_secret_name(&ix.expr) || self.scope.secret_in(&ix.expr).is_some();
                visit_mut::visit_expr_index_mut(self, ix);
                if secret {
                    let span = syn::spanned::Spanned::span(&*ix.expr);
                    *e = operators::index(span, &ix.expr, &ix.index);
                }
            }
            Expr::Unary(u) => {
                let orig = (*u.expr).clone();
                self.visit_expr_mut(&mut u.expr);
                if self.scope.secret_in(&orig).is_some() {
                    let o = Operand {
                        orig: &orig,
                        new: &u.expr,
                    };
                    if let Some(new) = operators::unary(&self.cx, &self.scope, &u.op, &o) {
                        *e = new;
                    }
                }
            }
            Expr::ForLoop(f) => {
                if self.cx.optimize
                    && let Some(new) = loops::vectorize(&self.cx, &self.scope, f)
                {
                    *e = new;
                    return self.visit_expr_mut(e);
                }
                self.visit_expr_mut(&mut f.expr);
                let scope = self.scope.with_pat(&f.pat, false, 0);
                self.in_scope(scope, |r| r.visit_block_mut(&mut f.body));
            }
            Expr::While(w) => {
                self.visit_expr_mut(&mut w.cond);
                let scope = match strip(&w.cond) {
                    Expr::Let(l) => self.scope.with_pat(&l.pat, false, 0),
                    _ => self.scope.clone(),
                };
                self.in_scope(scope, |r| r.visit_block_mut(&mut w.body));
            }
            Expr::Closure(c) => {
                let scope = self.scope.with_closure(c, 0);
                self.in_scope(scope, |r| r.visit_expr_mut(&mut c.body));
            }
            _ => visit_mut::visit_expr_mut(self, e),
        }
    }
}
