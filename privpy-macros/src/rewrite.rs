//! The rewrite pass: operators on secrets, selects for `if` on secrets, indexing, and
//! every diagnostic. Diagnostics are collected and reported together.

use crate::analyze::{pat_idents, secret_in, secret_params};
use crate::optimize;
use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use std::collections::HashSet;
use syn::visit_mut::{self, VisitMut};
use syn::{BinOp, Block, Expr, Ident, Signature, Stmt, UnOp, parse_quote};

pub(crate) fn function(sig: &Signature, block: &mut Block, optimize: bool) -> syn::Result<()> {
    let mut cx = Cx {
        secrets: secret_params(sig),
        errors: None,
        reported: 0,
        branch: Vec::new(),
        optimize,
        tmp: 0,
    };
    cx.visit_block_mut(block);
    match cx.errors {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A branch on a secret that is being rewritten: the secret's name (for messages) and
/// the names declared inside the branch.
struct Branch {
    secret: String,
    locals: HashSet<String>,
}

pub(crate) struct Cx {
    pub(crate) secrets: HashSet<String>,
    errors: Option<syn::Error>,
    /// How many diagnostics so far (to avoid a second one for the same mistake).
    reported: usize,
    branch: Vec<Branch>,
    pub(crate) optimize: bool,
    tmp: usize,
}

impl Cx {
    fn error(&mut self, at: impl ToTokens, msg: String) {
        self.reported += 1;
        let e = syn::Error::new_spanned(at, msg);
        match &mut self.errors {
            Some(all) => all.combine(e),
            None => self.errors = Some(e),
        }
    }

    pub(crate) fn secret(&self, e: &Expr) -> Option<Ident> {
        secret_in(e, &self.secrets)
    }

    fn in_branch(&self) -> Option<String> {
        self.branch.last().map(|b| b.secret.clone())
    }

    fn fresh(&mut self, what: &str) -> Ident {
        self.tmp += 1;
        quote::format_ident!("__privpy_{}{}", what, self.tmp)
    }

    /// `&x` for a secret name (or field of one), so arithmetic does not move it.
    pub(crate) fn borrowed(&self, e: &Expr) -> TokenStream {
        let inner = strip(e);
        match inner {
            Expr::Path(p)
                if p.path
                    .get_ident()
                    .is_some_and(|i| self.secrets.contains(&i.to_string())) =>
            {
                quote!(&#inner)
            }
            Expr::Field(_) if self.secret(inner).is_some() => quote!(&(#inner)),
            _ => quote!((#e)),
        }
    }

    fn binary(&mut self, e: &mut Expr) {
        if self.optimize
            && let Some(new) = optimize::sum_of_products(self, e)
        {
            *e = new;
        }
        let Expr::Binary(b) = e else {
            visit_mut::visit_expr_mut(self, e);
            return;
        };
        self.visit_expr_mut(&mut b.left);
        self.visit_expr_mut(&mut b.right);
        let (ls, rs) = (self.secret(&b.left), self.secret(&b.right));
        if ls.is_none() && rs.is_none() {
            return;
        }
        let (l, r) = (&b.left, &b.right);
        let (bl, br) = (self.borrowed(l), self.borrowed(r));
        let cmp = |m: &str, flipped: &str| -> Expr {
            let (m, f) = (
                quote::format_ident!("{}", m),
                quote::format_ident!("{}", flipped),
            );
            if ls.is_some() {
                parse_quote!((#bl).#m(&(#r)))
            } else {
                parse_quote!((#br).#f(&(#l)))
            }
        };
        let new: Option<Expr> = match b.op {
            BinOp::Lt(_) => Some(cmp("lt", "gt")),
            BinOp::Gt(_) => Some(cmp("gt", "lt")),
            BinOp::Le(_) => Some(cmp("le", "ge")),
            BinOp::Ge(_) => Some(cmp("ge", "le")),
            BinOp::Eq(_) => Some(cmp("eq", "eq")),
            BinOp::Ne(_) => Some(cmp("ne", "ne")),
            BinOp::And(_) => Some(parse_quote!((#bl * #br))),
            BinOp::Or(_) => {
                let (a, c) = (self.fresh("a"), self.fresh("b"));
                Some(parse_quote!({
                    let #a = ::core::clone::Clone::clone(&#bl);
                    let #c = ::core::clone::Clone::clone(&#br);
                    &#a + &#c - &(&#a * &#c)
                }))
            }
            BinOp::Add(_) => Some(parse_quote!(#bl + #br)),
            BinOp::Sub(_) => Some(parse_quote!(#bl - #br)),
            BinOp::Mul(_) => Some(parse_quote!(#bl * #br)),
            BinOp::Div(_) => Some(parse_quote!(#bl / #br)),
            BinOp::AddAssign(_)
            | BinOp::SubAssign(_)
            | BinOp::MulAssign(_)
            | BinOp::DivAssign(_) => {
                let op = match b.op {
                    BinOp::AddAssign(_) => quote!(+),
                    BinOp::SubAssign(_) => quote!(-),
                    BinOp::MulAssign(_) => quote!(*),
                    _ => quote!(/),
                };
                let target = (**l).clone();
                self.check_assign_target(&target, rs.is_some());
                Some(parse_quote!(#l = #bl #op #br))
            }
            _ => None,
        };
        if let Some(n) = new {
            *e = n;
        }
    }

    /// An assignment inside a branch on a secret must target a secret (or a name
    /// declared inside the branch): both branches run.
    fn check_assign_target(&mut self, target: &Expr, rhs_secret: bool) {
        let Expr::Path(p) = strip(target) else { return };
        let Some(id) = p.path.get_ident() else { return };
        let name = id.to_string();
        if let Some(secret) = self.in_branch() {
            let local = self.branch.iter().any(|b| b.locals.contains(&name));
            if !local && !self.secrets.contains(&name) {
                self.error(
                    target,
                    format!(
                        "`{name}` is public, but it is assigned inside a branch on the secret `{secret}`: \
                         both branches run, so the result must be a secret select; declare `{name}` as a \
                         secret (for example `let mut {name} = s.constant(0.0)?;`) or compute it outside the `if`"
                    ),
                );
            }
        } else if rhs_secret {
            self.secrets.insert(name);
        }
    }

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

    fn if_expr(&mut self, e: &mut Expr) {
        let Expr::If(i) = e else { return };
        self.visit_expr_mut(&mut i.cond);
        let Some(secret) = self.secret(&i.cond) else {
            self.visit_block_mut(&mut i.then_branch);
            if let Some((_, els)) = &mut i.else_branch {
                self.visit_expr_mut(els);
            }
            return;
        };
        let sname = secret.to_string();
        let before = self.reported;
        self.branch.push(Branch {
            secret: sname.clone(),
            locals: HashSet::new(),
        });
        self.visit_block_mut(&mut i.then_branch);
        self.branch.pop();
        if let Some((_, els)) = &mut i.else_branch {
            self.branch.push(Branch {
                secret: sname.clone(),
                locals: HashSet::new(),
            });
            self.visit_expr_mut(els);
            self.branch.pop();
        }
        let cond = &i.cond;
        let c = self.fresh("c");
        let then_tail = tail(&i.then_branch);
        let else_expr = i.else_branch.as_ref().map(|(_, e)| (**e).clone());
        let else_has_value = else_expr.as_ref().is_some_and(expr_has_value);
        if then_tail.is_some() && else_has_value {
            // Value form: both branches are evaluated, then selected.
            let (t, f) = (self.fresh("t"), self.fresh("f"));
            let tb = &i.then_branch;
            let eb = else_expr.unwrap_or_else(|| parse_quote!({}));
            *e = parse_quote!({
                let #c = #cond;
                let #t = #tb;
                let #f = #eb;
                ::privpy::__private::select(&#c, &#t, &#f)
            });
            return;
        }
        // Assignment form: each branch runs on copies; every assigned secret is selected.
        let mut vars: Vec<Ident> = Vec::new();
        assigned(
            &Expr::Block(syn::ExprBlock {
                attrs: vec![],
                label: None,
                block: i.then_branch.clone(),
            }),
            &mut vars,
        );
        if let Some(els) = &else_expr {
            assigned(els, &mut vars);
        }
        let mut seen = HashSet::new();
        vars.retain(|v| seen.insert(v.to_string()) && self.secrets.contains(&v.to_string()));
        if vars.is_empty() {
            if self.reported > before {
                return; // the branch's own error explains it
            }
            self.error(
                i.if_token,
                format!(
                    "this `if` on the secret `{sname}` has no effect that can be made oblivious: its branches must \
                     either both produce a value (`if c {{ a }} else {{ b }}`) or assign secret variables"
                ),
            );
            return;
        }
        let branch_code = |stmts: TokenStream| -> TokenStream {
            let copies = vars
                .iter()
                .map(|v| quote!(let mut #v = ::core::clone::Clone::clone(&#v);));
            let vs = vars.iter();
            quote!({ #(#copies)* #stmts (#(#vs,)*) })
        };
        let then_stmts = block_as_stmts(&i.then_branch);
        let else_stmts = match &else_expr {
            Some(Expr::Block(b)) => block_as_stmts(&b.block),
            Some(other) => quote!(#other;),
            None => quote!(),
        };
        let (tv, fv): (Vec<Ident>, Vec<Ident>) = vars
            .iter()
            .map(|_| (self.fresh("t"), self.fresh("f")))
            .unzip();
        let tcode = branch_code(then_stmts);
        let fcode = branch_code(else_stmts);
        let assigns = vars
            .iter()
            .zip(tv.iter().zip(&fv))
            .map(|(v, (t, f))| quote!(#v = ::privpy::__private::select(&#c, &#t, &#f);));
        *e = parse_quote!({
            let #c = #cond;
            let (#(#tv,)*) = #tcode;
            let (#(#fv,)*) = #fcode;
            #(#assigns)*
        });
    }
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip(&p.expr),
        Expr::Group(g) => strip(&g.expr),
        _ => e,
    }
}

fn tail(b: &Block) -> Option<&Expr> {
    match b.stmts.last() {
        Some(Stmt::Expr(e, None))
            if !matches!(
                e,
                Expr::Assign(_) | Expr::If(_) | Expr::Block(_) | Expr::ForLoop(_)
            ) =>
        {
            Some(e)
        }
        Some(Stmt::Expr(e @ (Expr::If(_) | Expr::Block(_)), None)) if expr_has_value(e) => Some(e),
        _ => None,
    }
}

fn expr_has_value(e: &Expr) -> bool {
    match e {
        Expr::Block(b) => tail(&b.block).is_some(),
        Expr::If(i) => {
            tail(&i.then_branch).is_some()
                && i.else_branch
                    .as_ref()
                    .is_some_and(|(_, e)| expr_has_value(e))
        }
        _ => true,
    }
}

fn block_as_stmts(b: &Block) -> TokenStream {
    let mut out = TokenStream::new();
    for s in &b.stmts {
        match s {
            Stmt::Expr(e, None) => out.extend(quote!(#e;)),
            other => out.extend(other.to_token_stream()),
        }
    }
    out
}

/// Names assigned (`x = …`, `x += …`) anywhere in `e`, outside closures.
fn assigned(e: &Expr, out: &mut Vec<Ident>) {
    struct A<'o>(&'o mut Vec<Ident>);
    impl<'a> syn::visit::Visit<'a> for A<'_> {
        fn visit_expr_assign(&mut self, a: &'a syn::ExprAssign) {
            if let Expr::Path(p) = strip(&a.left)
                && let Some(i) = p.path.get_ident()
            {
                self.0.push(i.clone());
            }
            syn::visit::visit_expr_assign(self, a);
        }
        fn visit_expr_method_call(&mut self, m: &'a syn::ExprMethodCall) {
            // `z.itemset(..)` from `z[i] = v` assigns `z`.
            if (m.method == "itemset" || m.method == "put")
                && let Expr::Path(p) = strip(&m.receiver)
                && let Some(i) = p.path.get_ident()
            {
                self.0.push(i.clone());
            }
            syn::visit::visit_expr_method_call(self, m);
        }
        fn visit_expr_closure(&mut self, _: &'a syn::ExprClosure) {}
    }
    syn::visit::Visit::visit_expr(&mut A(out), e);
}

impl VisitMut for Cx {
    fn visit_local_mut(&mut self, l: &mut syn::Local) {
        if let Some(init) = &mut l.init {
            self.visit_expr_mut(&mut init.expr);
        }
        let secret = l
            .init
            .as_ref()
            .is_some_and(|i| self.secret(&i.expr).is_some());
        let mut ids = Vec::new();
        pat_idents(&l.pat, &mut ids);
        for id in ids {
            let n = id.to_string();
            if let Some(b) = self.branch.last_mut() {
                b.locals.insert(n.clone());
            }
            if secret {
                self.secrets.insert(n);
            } else {
                self.secrets.remove(&n);
            }
        }
    }

    fn visit_stmt_mut(&mut self, s: &mut Stmt) {
        if let Some(secret) = self.in_branch() {
            let effect = match s {
                Stmt::Macro(m) => Some(m.mac.to_token_stream()),
                Stmt::Expr(e @ (Expr::Call(_) | Expr::MethodCall(_) | Expr::Macro(_)), Some(_)) => {
                    Some(e.to_token_stream())
                }
                _ => None,
            };
            if let Some(tokens) = effect {
                self.error(
                    tokens,
                    format!(
                        "a call with a side effect inside a branch on the secret `{secret}`: both branches run \
                         whatever the condition, so the effect would always happen; move it out of the `if`, or \
                         `.reveal()` the condition if disclosing it is acceptable"
                    ),
                );
                return;
            }
        }
        visit_mut::visit_stmt_mut(self, s);
    }

    fn visit_expr_closure_mut(&mut self, _: &mut syn::ExprClosure) {}

    fn visit_macro_mut(&mut self, m: &mut syn::Macro) {
        // `s![..]` ranges (ndarray slicing) must be public.
        if m.path.segments.last().is_some_and(|s| s.ident == "s") {
            let tokens: Expr = parse_quote!(#m);
            if let Some(secret) = self.secret(&tokens) {
                self.error(
                    &*m,
                    format!(
                        "slicing with the secret `{secret}`: which elements are taken would reveal it; use public \
                         ranges, and select obliviously (multiply by a comparison) where the range depends on a secret"
                    ),
                );
            }
        }
    }

    fn visit_item_mut(&mut self, _: &mut syn::Item) {}

    fn visit_expr_mut(&mut self, e: &mut Expr) {
        match e {
            Expr::If(_) => self.if_expr(e),
            Expr::Binary(_) => self.binary(e),
            Expr::While(w) => {
                if let Some(s) = self.secret(&w.cond) {
                    self.error(
                        &w.cond,
                        format!(
                            "`while` condition depends on the secret `{s}`: the number of iterations would reveal it; \
                             loop a public number of times and select with `if` inside, or `.reveal()` the condition \
                             if disclosing it is acceptable"
                        ),
                    );
                }
                visit_mut::visit_expr_while_mut(self, w);
            }
            Expr::ForLoop(f) => {
                if let Some(s) = self.secret(&f.expr) {
                    self.error(
                        &f.expr,
                        format!(
                            "the loop bound depends on the secret `{s}`: the number of iterations would reveal it; \
                             use a public bound (for example the array's `.len()`)"
                        ),
                    );
                    return;
                }
                if self.optimize
                    && let Some(new) = optimize::vectorize_loop(self, f)
                {
                    *e = new;
                    visit_mut::visit_expr_mut(self, e);
                    return;
                }
                visit_mut::visit_expr_for_loop_mut(self, f);
            }
            Expr::Match(m) => {
                if let Some(s) = self.secret(&m.expr) {
                    self.error(
                        &m.expr,
                        format!(
                            "`match` on the secret `{s}`: the arm taken would reveal it; compare explicitly \
                             (`x == 1.0`) and select with `if`, or `.reveal()` it if disclosing it is acceptable"
                        ),
                    );
                }
                visit_mut::visit_expr_match_mut(self, m);
            }
            Expr::Return(_) | Expr::Break(_) | Expr::Continue(_) | Expr::Try(_) => {
                if let Some(s) = self.in_branch() {
                    let what = match e {
                        Expr::Return(_) => "`return`",
                        Expr::Break(_) => "`break`",
                        Expr::Continue(_) => "`continue`",
                        _ => "`?`",
                    };
                    self.error(
                        &*e,
                        format!(
                            "{what} inside a branch on the secret `{s}`: whether it happens would reveal the \
                             condition; restructure so both branches only compute values or assign variables, \
                             and return after the `if`"
                        ),
                    );
                    return;
                }
                visit_mut::visit_expr_mut(self, e);
            }
            Expr::Cast(c) => {
                if let Some(s) = self.secret(&c.expr) {
                    self.error(
                        &*c,
                        format!(
                            "cannot convert the secret `{s}` to a plain number: nobody may see it; call \
                             `.reveal()` first if disclosing it is acceptable"
                        ),
                    );
                    return;
                }
                visit_mut::visit_expr_cast_mut(self, c);
            }
            Expr::Index(ix) => {
                if let Some(s) = self.secret(&ix.index) {
                    self.error(
                        &ix.index,
                        format!(
                            "indexing with the secret `{s}`: which element is read would reveal it; select \
                             obliviously instead (compare with every index and multiply), or `.reveal()` it"
                        ),
                    );
                    return;
                }
                visit_mut::visit_expr_index_mut(self, ix);
                if self.secret(&ix.expr).is_some() {
                    let base = &ix.expr;
                    let args = Self::index_args(&ix.index);
                    *e = parse_quote!((#base).item(#args));
                }
            }
            Expr::Assign(a) => {
                self.visit_expr_mut(&mut a.right);
                if let Expr::Index(ix) = strip(&a.left).clone() {
                    if let Some(s) = self.secret(&ix.index) {
                        self.error(&ix.index, format!("indexing with the secret `{s}`: which element is written would reveal it"));
                        return;
                    }
                    if self.secret(&ix.expr).is_some() {
                        let base = &ix.expr;
                        let args = Self::index_args(&ix.index);
                        let v = self.borrowed(&a.right);
                        let tmp = self.fresh("v");
                        // The value first: it may read the array being written.
                        *e = parse_quote!({
                            let #tmp = #v;
                            ::privpy::__private::itemset(&mut #base, #args, #tmp)
                        });
                        return;
                    }
                }
                let rhs_secret = self.secret(&a.right).is_some();
                let left = (*a.left).clone();
                self.check_assign_target(&left, rhs_secret);
            }
            Expr::Unary(u) => {
                self.visit_expr_mut(&mut u.expr);
                if self.secret(&u.expr).is_some() {
                    let inner = self.borrowed(&u.expr);
                    match u.op {
                        UnOp::Not(_) => *e = parse_quote!((1.0 - #inner)),
                        UnOp::Neg(_) => *e = parse_quote!((-#inner)),
                        _ => {}
                    }
                }
            }
            _ => visit_mut::visit_expr_mut(self, e),
        }
    }
}
