//! Validation: every check on a `#[private]` function, before anything is rewritten.
//! All diagnostics are collected (`syn::Error::combine`) and reported in one compile.
//!
//! Control flow may not depend on a secret (`while`, `match`, loop bounds, indexing,
//! slicing, conversions to plain numbers). Inside a branch on a secret both branches
//! run whatever the condition, so only what can be made oblivious is allowed: pure
//! privpy operations (see [`crate::effects`]), assignments to secret variables and to
//! elements of secret arrays (they become selects), and names declared in the branch.
//! The operands of `&&` / `||` on secrets are both evaluated, so they must be free of
//! side effects.

use crate::effects::{MUTATING_METHODS, first_effect, pure_call, pure_macro, pure_method};
use crate::passes::select::{assigned_names, has_value, tail_value};
use crate::scope::{Scope, is_compound, path_ident, strip};
use quote::ToTokens;
use syn::visit::Visit;
use syn::{Block, Expr, Ident, Signature, Stmt};

/// The rule a diagnostic enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// `while` on a secret.
    SecretWhile,
    /// `match` on a secret.
    SecretMatch,
    /// `if let` on a secret.
    SecretIfLet,
    /// A loop bound that depends on a secret.
    SecretLoopBound,
    /// Indexing with a secret.
    SecretIndex,
    /// Slicing with a secret.
    SecretSlice,
    /// `as`, `.into()`, `from()` on a secret.
    SecretConversion,
    /// A secret inside the arguments of a macro #[private] cannot read.
    OpaqueMacro,
    /// `return`, `break`, `continue`, `?` inside a branch on a secret.
    ExitInBranch,
    /// A call, method call or macro with a possible side effect inside a branch.
    EffectInBranch,
    /// `.reveal()` inside a branch on a secret.
    RevealInBranch,
    /// A public variable assigned inside a branch on a secret.
    PublicAssignedInBranch,
    /// Something other than a variable or a secret element assigned in a branch.
    NotAssignable,
    /// A side effect in an operand of `&&` / `||` on secrets.
    EffectInShortCircuit,
    /// An `if` on a secret with neither a value nor an assignment.
    NoEffect,
}

/// Every diagnostic for one function, with the rule it enforces.
pub(crate) fn diagnostics(sig: &Signature, block: &Block) -> Vec<(Rule, syn::Error)> {
    let mut v = Validator {
        scope: Scope::of_params(sig),
        branches: Vec::new(),
        loops: 0,
        errors: Vec::new(),
        count: 0,
    };
    v.visit_block(block);
    v.errors
}

/// Every diagnostic for one function, combined; `Ok` when there is none.
pub(crate) fn check(sig: &Signature, block: &Block) -> syn::Result<()> {
    let mut all: Option<syn::Error> = None;
    for (_, e) in diagnostics(sig, block) {
        match &mut all {
            Some(a) => a.combine(e),
            None => all = Some(e),
        }
    }
    all.map_or(Ok(()), Err)
}

struct Validator {
    scope: Scope,
    /// The secrets of the enclosing branches on secrets, innermost last.
    branches: Vec<Ident>,
    /// Loops entered since the innermost branch on a secret began.
    loops: usize,
    errors: Vec<(Rule, syn::Error)>,
    count: usize,
}

impl Validator {
    fn error(&mut self, rule: Rule, at: impl ToTokens, msg: String) {
        self.count += 1;
        self.errors.push((rule, syn::Error::new_spanned(at, msg)));
    }

    fn branch(&self) -> Option<Ident> {
        self.branches.last().cloned()
    }

    fn depth(&self) -> usize {
        self.branches.len()
    }

    fn in_scope(&mut self, scope: Scope, f: impl FnOnce(&mut Self)) {
        let saved = std::mem::replace(&mut self.scope, scope);
        f(self);
        self.scope = saved;
    }

    fn in_branch(&mut self, secret: &Ident, f: impl FnOnce(&mut Self)) {
        self.branches.push(secret.clone());
        let loops = std::mem::replace(&mut self.loops, 0);
        let saved = self.scope.clone();
        f(self);
        self.scope = saved;
        self.loops = loops;
        self.branches.pop();
    }

    /// An assignment target inside a branch on `secret`.
    fn check_target(&mut self, target: &Expr, secret: &Ident) {
        match strip(target) {
            Expr::Path(_) if path_ident(target).is_some() => {
                let Some(id) = path_ident(target) else { return };
                let name = id.to_string();
                match self.scope.depth_of(&name) {
                    Some(d) if d >= self.depth() || self.scope.is_secret(&name) => {}
                    Some(_) => self.error(
                        Rule::PublicAssignedInBranch,
                        target,
                        format!(
                            "`{name}` is public, but it is assigned inside a branch on the secret `{secret}`: \
                             both branches run, so the result must be a secret select; declare `{name}` as a \
                             secret (for example `let mut {name}: Priv<f64> = …;`) or compute it outside the `if`"
                        ),
                    ),
                    None => self.error(
                        Rule::NotAssignable,
                        target,
                        format!(
                            "`{name}` is not a local variable, but it is assigned inside a branch on the secret \
                             `{secret}`: both branches run, so only local secret variables can be assigned; \
                             assign a local variable and store it after the `if`"
                        ),
                    ),
                }
            }
            Expr::Index(ix) => {
                let assignable = path_ident(&ix.expr).is_some_and(|b| {
                    let n = b.to_string();
                    self.scope.is_secret(&n)
                        || self.scope.depth_of(&n).is_some_and(|d| d >= self.depth())
                });
                if !assignable {
                    self.error(
                        Rule::NotAssignable,
                        target,
                        format!(
                            "an element of `{}`, which is not a secret variable, is assigned inside a branch on \
                             the secret `{secret}`: both branches run, so only elements of secret arrays can be \
                             assigned (they become selects); make the array a secret or assign it outside the `if`",
                            ix.expr.to_token_stream()
                        ),
                    );
                }
            }
            other => self.error(
                Rule::NotAssignable,
                other,
                format!(
                    "`{}` is assigned inside a branch on the secret `{secret}`: both branches run, so only \
                     variables and elements of secret arrays can be assigned (they become selects); assign a \
                     local variable and store it after the `if`",
                    other.to_token_stream()
                ),
            ),
        }
    }

    fn check_conversion(&mut self, at: impl ToTokens, value: &Expr) {
        if let Some(s) = self.scope.secret_in(value) {
            self.error(
                Rule::SecretConversion,
                at,
                format!(
                    "cannot convert the secret `{s}` to a plain value: nobody may see it; keep it a `Priv` \
                     or call `.reveal()` first if disclosing it is acceptable"
                ),
            );
        }
    }

    fn check_short_circuit(&mut self, b: &syn::ExprBinary) {
        let op = if matches!(b.op, syn::BinOp::And(_)) {
            "&&"
        } else {
            "||"
        };
        let Some(s) = self
            .scope
            .secret_in(&b.left)
            .or_else(|| self.scope.secret_in(&b.right))
        else {
            return;
        };
        for side in [&b.left, &b.right] {
            if let Some((tokens, what)) = first_effect(side) {
                self.error(
                    Rule::EffectInShortCircuit,
                    tokens,
                    format!(
                        "{what} in an operand of `{op}` on the secret `{s}`: on secrets `{op}` is arithmetic, \
                         both operands are always evaluated, so they must be free of side effects; compute \
                         the value before the condition"
                    ),
                );
            }
        }
    }

    fn side_effect(&mut self, at: impl ToTokens, what: &str, secret: &Ident) {
        self.error(
            Rule::EffectInBranch,
            at,
            format!(
                "{what} inside a branch on the secret `{secret}`: both branches run whatever the condition, so \
                 the effect would always happen; only pure privpy operations and assignments to secret \
                 variables are allowed there; move it out of the `if`, or `.reveal()` the condition if \
                 disclosing it is acceptable"
            ),
        );
    }

    fn check_macro(&mut self, m: &syn::Macro) {
        let name = m.path.to_token_stream().to_string().replace(' ', "");
        if m.path.segments.last().is_some_and(|s| s.ident == "s")
            && let Some(s) = self.scope.secret_in_tokens(&m.tokens)
        {
            self.error(
                Rule::SecretSlice,
                m,
                format!(
                    "slicing with the secret `{s}`: which elements are taken would reveal it; use public \
                     ranges, and select obliviously (multiply by a comparison) where the range depends on a secret"
                ),
            );
            return;
        }
        if let Some(secret) = self.branch()
            && !pure_macro(m)
        {
            self.side_effect(m, &format!("the macro `{name}!`"), &secret);
            return;
        }
        match crate::scope::macro_args(&m.tokens) {
            Some(args) => args.iter().for_each(|a| self.visit_expr(a)),
            None => {
                if let Some(s) = self.scope.secret_in_tokens(&m.tokens) {
                    self.error(
                        Rule::OpaqueMacro,
                        m,
                        format!(
                            "the secret `{s}` is used inside the macro `{name}!`, whose arguments #[private] \
                             cannot read; compute the value in a `let` before the macro and pass that"
                        ),
                    );
                }
            }
        }
    }

    fn secret_if(&mut self, i: &syn::ExprIf, secret: &Ident) {
        let before = self.count;
        let scope = self.scope.clone();
        self.in_branch(secret, |v| v.visit_block(&i.then_branch));
        if let Some((_, els)) = &i.else_branch {
            self.in_branch(secret, |v| v.visit_expr(els));
        }
        if self.count > before {
            return; // the branch's own error explains it
        }
        let value = tail_value(&i.then_branch).is_some()
            && i.else_branch.as_ref().is_some_and(|(_, e)| has_value(e));
        let assigns_secret = assigned_names(i)
            .iter()
            .any(|n| scope.is_secret(&n.to_string()));
        if !value && !assigns_secret {
            self.error(
                Rule::NoEffect,
                i.if_token,
                format!(
                    "this `if` on the secret `{secret}` has no effect that can be made oblivious: its branches \
                     must either both produce a value (`if c {{ a }} else {{ b }}`) or assign secret variables"
                ),
            );
        }
    }
}

impl<'a> Visit<'a> for Validator {
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
                    self.scope = self.scope.with_local(l, &b.stmts[k + 1..], self.depth());
                }
                other => self.visit_stmt(other),
            }
        }
        self.scope = saved;
    }

    fn visit_stmt_macro(&mut self, m: &'a syn::StmtMacro) {
        self.check_macro(&m.mac);
    }

    fn visit_item(&mut self, _: &'a syn::Item) {}

    fn visit_expr(&mut self, e: &'a Expr) {
        let branch = self.branch();
        match e {
            Expr::If(i) => {
                self.visit_expr(&i.cond);
                match self.scope.secret_in(&i.cond) {
                    Some(s) => {
                        if let Expr::Let(l) = strip(&i.cond) {
                            self.error(
                                Rule::SecretIfLet,
                                &l.expr,
                                format!(
                                    "`if let` on the secret `{s}`: whether the pattern matches would reveal \
                                     it; compare explicitly and select with `if`"
                                ),
                            );
                            return;
                        }
                        self.secret_if(i, &s);
                    }
                    None => {
                        let scope = match strip(&i.cond) {
                            Expr::Let(l) => self.scope.with_pat(&l.pat, false, self.depth()),
                            _ => self.scope.clone(),
                        };
                        self.in_scope(scope, |v| v.visit_block(&i.then_branch));
                        if let Some((_, els)) = &i.else_branch {
                            self.visit_expr(els);
                        }
                    }
                }
            }
            Expr::Binary(b) => {
                if matches!(b.op, syn::BinOp::And(_) | syn::BinOp::Or(_)) {
                    self.check_short_circuit(b);
                }
                if is_compound(&b.op)
                    && let Some(s) = &branch
                {
                    self.check_target(&b.left, s);
                }
                syn::visit::visit_expr_binary(self, b);
            }
            Expr::Assign(a) => {
                if let Some(s) = &branch {
                    self.check_target(&a.left, s);
                }
                if let Expr::Index(ix) = strip(&a.left)
                    && let Some(s) = self.scope.secret_in(&ix.index)
                {
                    self.error(
                        Rule::SecretIndex,
                        &ix.index,
                        format!(
                            "indexing with the secret `{s}`: which element is written would reveal it; \
                             select obliviously instead (compare with every index and multiply)"
                        ),
                    );
                    self.visit_expr(&a.right);
                    return;
                }
                syn::visit::visit_expr_assign(self, a);
            }
            Expr::While(w) => {
                if let Some(s) = self.scope.secret_in(&w.cond) {
                    self.error(
                        Rule::SecretWhile,
                        &w.cond,
                        format!(
                            "`while` condition depends on the secret `{s}`: the number of iterations would \
                             reveal it; loop a public number of times and select with `if` inside, or \
                             `.reveal()` the condition if disclosing it is acceptable"
                        ),
                    );
                }
                self.visit_expr(&w.cond);
                let scope = match strip(&w.cond) {
                    Expr::Let(l) => self.scope.with_pat(&l.pat, false, self.depth()),
                    _ => self.scope.clone(),
                };
                self.loops += 1;
                self.in_scope(scope, |v| v.visit_block(&w.body));
                self.loops -= 1;
            }
            Expr::ForLoop(f) => {
                if let Some(s) = self.scope.secret_in(&f.expr) {
                    self.error(
                        Rule::SecretLoopBound,
                        &f.expr,
                        format!(
                            "the loop bound depends on the secret `{s}`: the number of iterations would reveal \
                             it; use a public bound (for example the array's `.len()`)"
                        ),
                    );
                    return;
                }
                self.visit_expr(&f.expr);
                let scope = self.scope.with_pat(&f.pat, false, self.depth());
                self.loops += 1;
                self.in_scope(scope, |v| v.visit_block(&f.body));
                self.loops -= 1;
            }
            Expr::Loop(l) => {
                self.loops += 1;
                self.visit_block(&l.body);
                self.loops -= 1;
            }
            Expr::Match(m) => {
                if let Some(s) = self.scope.secret_in(&m.expr) {
                    self.error(
                        Rule::SecretMatch,
                        &m.expr,
                        format!(
                            "`match` on the secret `{s}`: the arm taken would reveal it; compare explicitly \
                             (`x == 1.0`) and select with `if`, or `.reveal()` it if disclosing it is acceptable"
                        ),
                    );
                }
                syn::visit::visit_expr_match(self, m);
            }
            Expr::Return(_)
            | Expr::Break(_)
            | Expr::Continue(_)
            | Expr::Try(_)
            | Expr::Await(_)
            | Expr::Yield(_)
                if branch.is_some() =>
            {
                let loop_exit = matches!(e, Expr::Break(_) | Expr::Continue(_));
                if loop_exit && self.loops > 0 {
                    return syn::visit::visit_expr(self, e);
                }
                let what = match e {
                    Expr::Return(_) => "`return`",
                    Expr::Break(_) => "`break`",
                    Expr::Continue(_) => "`continue`",
                    Expr::Try(_) => "`?`",
                    Expr::Await(_) => "`.await`",
                    _ => "`yield`",
                };
                let s = branch.unwrap_or_else(|| unreachable!("guarded by the match arm"));
                self.error(
                    Rule::ExitInBranch,
                    e,
                    format!(
                        "{what} inside a branch on the secret `{s}`: whether it happens would reveal the \
                         condition; restructure so both branches only compute values or assign variables, \
                         and return after the `if`"
                    ),
                );
            }
            Expr::Cast(c) => {
                if let Some(s) = self.scope.secret_in(&c.expr) {
                    self.error(
                        Rule::SecretConversion,
                        c,
                        format!(
                            "cannot convert the secret `{s}` to a plain number: nobody may see it; call \
                             `.reveal()` first if disclosing it is acceptable"
                        ),
                    );
                    return;
                }
                syn::visit::visit_expr_cast(self, c);
            }
            Expr::Index(ix) => {
                if let Some(s) = self.scope.secret_in(&ix.index) {
                    self.error(
                        Rule::SecretIndex,
                        &ix.index,
                        format!(
                            "indexing with the secret `{s}`: which element is read would reveal it; select \
                             obliviously instead (compare with every index and multiply), or `.reveal()` it"
                        ),
                    );
                    return;
                }
                syn::visit::visit_expr_index(self, ix);
            }
            Expr::MethodCall(m) => {
                if m.method == "into" || m.method == "try_into" {
                    self.check_conversion(e, &m.receiver);
                }
                if let Some(s) = &branch {
                    if MUTATING_METHODS.iter().any(|x| m.method == x) {
                        let target: Expr = (*m.receiver).clone();
                        self.check_target(&target, s);
                    } else if m.method == "reveal" {
                        self.error(
                            Rule::RevealInBranch,
                            e,
                            format!(
                                "`.reveal()` inside a branch on the secret `{s}`: both branches run, so the \
                                 value would be disclosed whatever the condition; reveal it before the `if`"
                            ),
                        );
                    } else if !pure_method(&m.method) {
                        self.side_effect(e, &format!("the method call `.{}()`", m.method), s);
                    }
                }
                syn::visit::visit_expr_method_call(self, m);
            }
            Expr::Call(c) => {
                if let Expr::Path(p) = strip(&c.func)
                    && p.path.segments.last().is_some_and(|s| {
                        ["from", "try_from", "into", "try_into"]
                            .iter()
                            .any(|f| s.ident == f)
                    })
                {
                    for a in &c.args {
                        self.check_conversion(e, a);
                    }
                }
                if let Some(s) = &branch
                    && !pure_call(&c.func)
                {
                    self.side_effect(e, &format!("the call `{}`", c.func.to_token_stream()), s);
                }
                syn::visit::visit_expr_call(self, c);
            }
            Expr::Macro(m) => self.check_macro(&m.mac),
            Expr::Closure(c) => {
                let scope = self.scope.with_closure(c, self.depth());
                let (branches, loops) = (std::mem::take(&mut self.branches), self.loops);
                self.in_scope(scope, |v| v.visit_expr(&c.body));
                self.branches = branches;
                self.loops = loops;
            }
            _ => syn::visit::visit_expr(self, e),
        }
    }

    fn visit_arm(&mut self, a: &'a syn::Arm) {
        let scope = self.scope.with_pat(&a.pat, false, self.depth());
        self.in_scope(scope, |v| {
            if let syn::Pat::Guard(g) = &a.pat {
                v.visit_expr(&g.guard);
            }
            v.visit_expr(&a.body);
        });
    }
}
