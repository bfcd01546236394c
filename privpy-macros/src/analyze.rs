//! Which names are secret.
//!
//! Parameters whose type mentions `Priv` are secret. An expression is secret when it
//! mentions a secret name outside the public accessors (`.reveal()`, `.shape()`,
//! `.len()`, `.ndim()`, `.is_empty()`), which yield public values.

use std::collections::HashSet;
use syn::visit::Visit;
use syn::{Expr, FnArg, Pat, Signature, Type};

/// Method calls on secrets whose results are public.
pub(crate) const PUBLIC_ACCESSORS: [&str; 5] = ["reveal", "shape", "len", "ndim", "is_empty"];

/// The names bound by a pattern.
pub(crate) fn pat_idents(p: &Pat, out: &mut Vec<syn::Ident>) {
    match p {
        Pat::Ident(i) => out.push(i.ident.clone()),
        Pat::Tuple(t) => t.elems.iter().for_each(|e| pat_idents(e, out)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|e| pat_idents(e, out)),
        Pat::Type(t) => pat_idents(&t.pat, out),
        Pat::Reference(r) => pat_idents(&r.pat, out),
        Pat::Slice(s) => s.elems.iter().for_each(|e| pat_idents(e, out)),
        _ => {}
    }
}

fn type_is_secret(t: &Type) -> bool {
    struct Finder(bool);
    impl<'a> Visit<'a> for Finder {
        fn visit_path_segment(&mut self, s: &'a syn::PathSegment) {
            if s.ident == "Priv" {
                self.0 = true;
            }
            syn::visit::visit_path_segment(self, s);
        }
    }
    let mut f = Finder(false);
    f.visit_type(t);
    f.0
}

/// The secret parameters of a signature.
pub(crate) fn secret_params(sig: &Signature) -> HashSet<String> {
    let mut out = HashSet::new();
    for arg in &sig.inputs {
        if let FnArg::Typed(pt) = arg
            && type_is_secret(&pt.ty)
        {
            let mut ids = Vec::new();
            pat_idents(&pt.pat, &mut ids);
            out.extend(ids.into_iter().map(|i| i.to_string()));
        }
    }
    out
}

/// The first secret name an expression depends on, if any.
pub(crate) fn secret_in(e: &Expr, secrets: &HashSet<String>) -> Option<syn::Ident> {
    struct Finder<'s> {
        secrets: &'s HashSet<String>,
        found: Option<syn::Ident>,
    }
    impl<'a> Visit<'a> for Finder<'_> {
        fn visit_expr_method_call(&mut self, m: &'a syn::ExprMethodCall) {
            if PUBLIC_ACCESSORS.iter().any(|a| m.method == a) {
                for a in &m.args {
                    self.visit_expr(a);
                }
                return;
            }
            syn::visit::visit_expr_method_call(self, m);
        }
        fn visit_expr_closure(&mut self, _: &'a syn::ExprClosure) {}
        fn visit_expr_path(&mut self, p: &'a syn::ExprPath) {
            if self.found.is_none()
                && let Some(id) = p.path.get_ident()
                && self.secrets.contains(&id.to_string())
            {
                self.found = Some(id.clone());
            }
        }
        fn visit_macro(&mut self, m: &'a syn::Macro) {
            // Look into the tokens of macros like vec![..] for secret names.
            for t in m.tokens.clone() {
                if let proc_macro2::TokenTree::Ident(id) = t
                    && self.found.is_none()
                    && self.secrets.contains(&id.to_string())
                {
                    self.found = Some(id);
                }
            }
        }
    }
    let mut f = Finder {
        secrets,
        found: None,
    };
    f.visit_expr(e);
    f.found
}
