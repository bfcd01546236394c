//! The secret analysis: which names are secret, with Rust's lexical scoping.
//!
//! A [`Scope`] is an immutable, persistent list of bindings: declaring a name returns
//! a new scope and leaves the old one untouched, so a block, a closure or a branch
//! simply drops back to the scope it started from, and an inner `let` that shadows a
//! secret never un-marks the outer one.
//!
//! A binding is secret when its type mentions `Priv`, when its initializer is a
//! secret expression, or when the rest of its block assigns it a secret expression
//! (`let mut y; … y = x * 2.0;`: Rust types do not change, so `y` holds a `Priv`).
//! An expression is secret when it mentions a secret binding outside the public
//! accessors (`.reveal()`, `.shape()`, `.len()`, `.ndim()`, `.is_empty()`). A closure
//! that mentions a secret is secret: what it returns may be.

use std::rc::Rc;
use syn::visit::Visit;
use syn::{Block, Expr, FnArg, Ident, Local, Pat, Signature, Stmt, Type};

/// Method calls on secrets whose results are public.
pub(crate) const PUBLIC_ACCESSORS: [&str; 5] = ["reveal", "shape", "len", "ndim", "is_empty"];

/// One binding: its name, whether it is secret, and how many branches on secrets
/// enclose its declaration.
struct Frame {
    name: String,
    secret: bool,
    depth: usize,
    parent: Scope,
}

/// The bindings visible at one point of the function (innermost first).
#[derive(Clone, Default)]
pub(crate) struct Scope(Option<Rc<Frame>>);

impl Scope {
    /// The parameters of `sig`: secret when their type mentions `Priv`.
    pub(crate) fn of_params(sig: &Signature) -> Scope {
        let mut s = Scope::default();
        for arg in &sig.inputs {
            if let FnArg::Typed(pt) = arg {
                s = s.with_pat(&pt.pat, type_is_secret(&pt.ty), 0);
            }
        }
        s
    }

    fn with(&self, name: String, secret: bool, depth: usize) -> Scope {
        Scope(Some(Rc::new(Frame {
            name,
            secret,
            depth,
            parent: self.clone(),
        })))
    }

    /// The scope with every name bound by `pat` declared.
    pub(crate) fn with_pat(&self, pat: &Pat, secret: bool, depth: usize) -> Scope {
        let mut ids = Vec::new();
        pat_idents(pat, &mut ids);
        ids.into_iter()
            .fold(self.clone(), |s, id| s.with(id.to_string(), secret, depth))
    }

    /// The scope after `local`, whose block continues with `rest`.
    pub(crate) fn with_local(&self, local: &Local, rest: &[Stmt], depth: usize) -> Scope {
        let typed = match &local.pat {
            Pat::Type(t) => type_is_secret(&t.ty),
            _ => false,
        };
        let init = local
            .init
            .as_ref()
            .is_some_and(|i| self.secret_in(&i.expr).is_some());
        let secret = typed || init || {
            let mut ids = Vec::new();
            pat_idents(&local.pat, &mut ids);
            let public = self.with_pat(&local.pat, false, depth);
            ids.iter().any(|id| assigned_secret(&public, id, rest))
        };
        self.with_pat(&local.pat, secret, depth)
    }

    /// The scope inside `closure`: its parameters are public unless typed `Priv`.
    pub(crate) fn with_closure(&self, closure: &syn::ExprClosure, depth: usize) -> Scope {
        closure.inputs.iter().fold(self.clone(), |s, p| {
            let secret = matches!(p, Pat::Type(t) if type_is_secret(&t.ty));
            s.with_pat(p, secret, depth)
        })
    }

    fn lookup(&self, name: &str) -> Option<&Frame> {
        let mut cur = self.0.as_deref();
        while let Some(f) = cur {
            if f.name == name {
                return Some(f);
            }
            cur = f.parent.0.as_deref();
        }
        None
    }

    /// Whether `name` is a secret binding here.
    pub(crate) fn is_secret(&self, name: &str) -> bool {
        self.lookup(name).is_some_and(|f| f.secret)
    }

    /// How many branches on secrets enclose the declaration of `name` (`None` for a
    /// name not declared in the function: a static, a constant, a function).
    pub(crate) fn depth_of(&self, name: &str) -> Option<usize> {
        self.lookup(name).map(|f| f.depth)
    }

    /// Whether `e` is a plain name bound to a secret.
    pub(crate) fn is_secret_name(&self, e: &Expr) -> bool {
        path_ident(e).is_some_and(|i| self.is_secret(&i.to_string()))
    }

    /// The first secret name `e` depends on, if any.
    pub(crate) fn secret_in(&self, e: &Expr) -> Option<Ident> {
        let mut f = Finder {
            scope: self.clone(),
            found: None,
        };
        f.visit_expr(e);
        f.found
    }

    /// The first secret name in the tokens of a macro call (arguments are parsed as
    /// expressions where possible, so `s![..n]` with `n = x.len()` is public).
    pub(crate) fn secret_in_tokens(&self, tokens: &proc_macro2::TokenStream) -> Option<Ident> {
        if let Some(exprs) = macro_args(tokens) {
            return exprs.iter().find_map(|e| self.secret_in(e));
        }
        let mut found = None;
        scan_idents(tokens, &mut |id| {
            if found.is_none() && self.is_secret(&id.to_string()) {
                found = Some(id.clone());
            }
        });
        found
    }
}

/// The arguments of a macro call, split at top-level `,` and `;` and parsed as
/// expressions; `None` when they are not all expressions.
pub(crate) fn macro_args(tokens: &proc_macro2::TokenStream) -> Option<Vec<Expr>> {
    use proc_macro2::TokenTree;
    let mut out = Vec::new();
    let mut cur = proc_macro2::TokenStream::new();
    let mut flush = |cur: &mut proc_macro2::TokenStream| -> Option<()> {
        if !cur.is_empty() {
            out.push(syn::parse2::<Expr>(std::mem::take(cur)).ok()?);
        }
        Some(())
    };
    for t in tokens.clone() {
        match &t {
            TokenTree::Punct(p) if p.as_char() == ',' || p.as_char() == ';' => flush(&mut cur)?,
            _ => cur.extend([t]),
        }
    }
    flush(&mut cur)?;
    Some(out)
}

/// Calls `f` on every identifier in `tokens`, inside groups too.
fn scan_idents(tokens: &proc_macro2::TokenStream, f: &mut impl FnMut(&Ident)) {
    for t in tokens.clone() {
        match t {
            proc_macro2::TokenTree::Ident(id) => f(&id),
            proc_macro2::TokenTree::Group(g) => scan_idents(&g.stream(), f),
            _ => {}
        }
    }
}

/// Whether `rest` assigns `name` (as bound in `scope`) a secret expression.
fn assigned_secret(scope: &Scope, name: &Ident, rest: &[Stmt]) -> bool {
    struct A<'s> {
        scope: &'s Scope,
        name: &'s Ident,
        found: bool,
    }
    impl<'a> Visit<'a> for A<'_> {
        fn visit_expr_assign(&mut self, a: &'a syn::ExprAssign) {
            if path_ident(&a.left) == Some(self.name) && self.scope.secret_in(&a.right).is_some() {
                self.found = true;
            }
            syn::visit::visit_expr_assign(self, a);
        }
        fn visit_expr_binary(&mut self, b: &'a syn::ExprBinary) {
            if is_compound(&b.op)
                && path_ident(&b.left) == Some(self.name)
                && self.scope.secret_in(&b.right).is_some()
            {
                self.found = true;
            }
            syn::visit::visit_expr_binary(self, b);
        }
        fn visit_item(&mut self, _: &'a syn::Item) {}
    }
    let mut a = A {
        scope,
        name,
        found: false,
    };
    rest.iter().for_each(|s| a.visit_stmt(s));
    a.found
}

/// Walks an expression with the scope its blocks and closures create.
struct Finder {
    scope: Scope,
    found: Option<Ident>,
}

impl<'a> Visit<'a> for Finder {
    fn visit_expr_method_call(&mut self, m: &'a syn::ExprMethodCall) {
        if PUBLIC_ACCESSORS.iter().any(|a| m.method == a) {
            m.args.iter().for_each(|a| self.visit_expr(a));
            return;
        }
        syn::visit::visit_expr_method_call(self, m);
    }
    fn visit_expr_closure(&mut self, c: &'a syn::ExprClosure) {
        let saved = self.scope.clone();
        self.scope = self.scope.with_closure(c, 0);
        self.visit_expr(&c.body);
        self.scope = saved;
    }
    fn visit_block(&mut self, b: &'a Block) {
        let saved = self.scope.clone();
        for (k, s) in b.stmts.iter().enumerate() {
            match s {
                Stmt::Local(l) => {
                    if let Some(init) = &l.init {
                        self.visit_expr(&init.expr);
                        if let Some((_, d)) = &init.diverge {
                            self.visit_expr(d);
                        }
                    }
                    self.scope = self.scope.with_local(l, &b.stmts[k + 1..], 0);
                }
                other => self.visit_stmt(other),
            }
        }
        self.scope = saved;
    }
    fn visit_expr_for_loop(&mut self, f: &'a syn::ExprForLoop) {
        self.visit_expr(&f.expr);
        let saved = self.scope.clone();
        self.scope = self.scope.with_pat(&f.pat, false, 0);
        self.visit_block(&f.body);
        self.scope = saved;
    }
    fn visit_arm(&mut self, a: &'a syn::Arm) {
        let saved = self.scope.clone();
        self.scope = self.scope.with_pat(&a.pat, false, 0);
        if let Pat::Guard(g) = &a.pat {
            self.visit_expr(&g.guard);
        }
        self.visit_expr(&a.body);
        self.scope = saved;
    }
    fn visit_expr_path(&mut self, p: &'a syn::ExprPath) {
        if self.found.is_none()
            && let Some(id) = p.path.get_ident()
            && self.scope.is_secret(&id.to_string())
        {
            self.found = Some(id.clone());
        }
    }
    fn visit_macro(&mut self, m: &'a syn::Macro) {
        if self.found.is_none() {
            self.found = self.scope.secret_in_tokens(&m.tokens);
        }
    }
    fn visit_item(&mut self, _: &'a syn::Item) {}
}

/// The names bound by a pattern.
pub(crate) fn pat_idents(p: &Pat, out: &mut Vec<Ident>) {
    match p {
        Pat::Ident(i) => {
            out.push(i.ident.clone());
            if let Some((_, sub)) = &i.subpat {
                pat_idents(sub, out);
            }
        }
        Pat::Tuple(t) => t.elems.iter().for_each(|e| pat_idents(e, out)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|e| pat_idents(e, out)),
        Pat::Struct(s) => s.fields.iter().for_each(|f| pat_idents(&f.pat, out)),
        Pat::Type(t) => pat_idents(&t.pat, out),
        Pat::Reference(r) => pat_idents(&r.pat, out),
        Pat::Slice(s) => s.elems.iter().for_each(|e| pat_idents(e, out)),
        Pat::Or(o) => o.cases.iter().take(1).for_each(|e| pat_idents(e, out)),
        Pat::Paren(p) => pat_idents(&p.pat, out),
        Pat::Guard(g) => pat_idents(&g.pat, out),
        _ => {}
    }
}

/// Whether a type mentions `Priv`.
pub(crate) fn type_is_secret(t: &Type) -> bool {
    struct F(bool);
    impl<'a> Visit<'a> for F {
        fn visit_path_segment(&mut self, s: &'a syn::PathSegment) {
            self.0 |= s.ident == "Priv";
            syn::visit::visit_path_segment(self, s);
        }
    }
    let mut f = F(false);
    f.visit_type(t);
    f.0
}

/// `e` without parentheses and invisible groups.
pub(crate) fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip(&p.expr),
        Expr::Group(g) => strip(&g.expr),
        _ => e,
    }
}

/// The name `e` is, if it is a plain name.
pub(crate) fn path_ident(e: &Expr) -> Option<&Ident> {
    match strip(e) {
        Expr::Path(p) if p.qself.is_none() => p.path.get_ident(),
        _ => None,
    }
}

/// `+= -= *= /=` and the other compound assignments.
pub(crate) fn is_compound(op: &syn::BinOp) -> bool {
    use syn::BinOp::*;
    matches!(
        op,
        AddAssign(_)
            | SubAssign(_)
            | MulAssign(_)
            | DivAssign(_)
            | RemAssign(_)
            | BitXorAssign(_)
            | BitAndAssign(_)
            | BitOrAssign(_)
            | ShlAssign(_)
            | ShrAssign(_)
    )
}
