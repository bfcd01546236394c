//! What is side-effect free: the operations allowed where both ways of a secret
//! decision run (inside a branch on a secret, and in the operands of `&&` / `||` on
//! secrets).
//!
//! The rule: only privpy's pure operations (arithmetic, comparisons, the array
//! methods of `Priv` that return a new value, element reads), literals, names,
//! constructors and the pure macros `s!` and `array!` are free of side effects. Any
//! other call, method call or macro may have an effect, and so may `return`,
//! `break`, `continue`, `?`, `.await` and loops.

use syn::Expr;

/// Methods that return a new value and change nothing (privpy's `Priv` methods, and
/// the same names on public ndarray values).
const PURE_METHODS: &[&str] = &[
    "abs",
    "all",
    "any",
    "argmax",
    "argmax_axis",
    "argmin",
    "argmin_axis",
    "argpartition",
    "argsort",
    "argsort_axis",
    "clip",
    "clone",
    "compress",
    "cumprod",
    "cumsum",
    "diag",
    "dot",
    "eq",
    "exp",
    "flatten",
    "ge",
    "gt",
    "is_empty",
    "item",
    "le",
    "len",
    "ln",
    "lt",
    "max",
    "max_axis",
    "max_pool2d",
    "maximum",
    "mean",
    "mean_axis",
    "min",
    "min_axis",
    "minimum",
    "ndim",
    "ne",
    "outer",
    "partition",
    "permuted_axes",
    "powi",
    "prod",
    "ptp",
    "ravel",
    "reciprocal",
    "reciprocal_with",
    "relu",
    "repeat",
    "reshape",
    "resize",
    "rsqrt",
    "searchsorted",
    "shape",
    "sigmoid",
    "sigmoid_euler",
    "sigmoid_with_tolerance",
    "sign",
    "slice",
    "softmax",
    "sort",
    "sort_axis",
    "sqrt",
    "squeeze",
    "std",
    "std_axis",
    "sum",
    "sum_axis",
    "swapaxes",
    "t",
    "take",
    "tanh",
    "tile",
    "trace",
    "transpose",
    "var",
    "var_axis",
    "view",
    "into_dyn",
    "to_owned",
];

/// Methods that change their receiver only: allowed in a branch on a secret when
/// the receiver is a secret variable (the change becomes a select).
pub(crate) const MUTATING_METHODS: &[&str] = &["itemset", "put", "fill"];

/// Free functions that are pure (privpy's and ndarray's constructors).
const PURE_FUNCTIONS: &[&str] = &[
    "dot",
    "select",
    "zeros",
    "ones",
    "from_elem",
    "eye",
    "linspace",
    "range",
    "max",
    "min",
    "abs",
    "sqrt",
    "exp",
    "ln",
    "powi",
];

/// Macros whose expansion is pure when their arguments are.
const PURE_MACROS: &[&str] = &["s", "array"];

/// Whether `name` is a pure method.
pub(crate) fn pure_method(name: &syn::Ident) -> bool {
    PURE_METHODS.iter().any(|m| name == m)
}

/// Whether a call of `callee` is pure: a pure function, or a constructor (a path
/// whose last segment starts with an upper-case letter: `Some`, `Point`).
pub(crate) fn pure_call(callee: &Expr) -> bool {
    let Expr::Path(p) = crate::scope::strip(callee) else {
        return false;
    };
    let Some(last) = p.path.segments.last() else {
        return false;
    };
    let name = last.ident.to_string();
    name.starts_with(|c: char| c.is_ascii_uppercase()) || PURE_FUNCTIONS.contains(&name.as_str())
}

/// Whether a macro is one of the pure ones.
pub(crate) fn pure_macro(m: &syn::Macro) -> bool {
    m.path
        .segments
        .last()
        .is_some_and(|s| PURE_MACROS.iter().any(|p| s.ident == p))
}

/// The first thing in `e` that may have a side effect or leave the expression
/// (with a short description), if any. Assignments count as effects.
pub(crate) fn first_effect(e: &Expr) -> Option<(proc_macro2::TokenStream, String)> {
    use quote::ToTokens;
    use syn::visit::Visit;
    struct F(Option<(proc_macro2::TokenStream, String)>);
    impl F {
        fn found(&mut self, t: impl ToTokens, what: String) {
            if self.0.is_none() {
                self.0 = Some((t.into_token_stream(), what));
            }
        }
    }
    impl<'a> Visit<'a> for F {
        fn visit_expr(&mut self, e: &'a Expr) {
            match e {
                Expr::Call(c) if !pure_call(&c.func) => {
                    self.found(e, format!("the call `{}`", c.func.to_token_stream()))
                }
                Expr::MethodCall(m) if !pure_method(&m.method) => {
                    self.found(e, format!("the method call `.{}()`", m.method))
                }
                Expr::Macro(m) if !pure_macro(&m.mac) => {
                    self.found(e, format!("the macro `{}!`", m.mac.path.to_token_stream()))
                }
                Expr::Macro(m) => match crate::scope::macro_args(&m.mac.tokens) {
                    Some(args) => args.iter().for_each(|a| self.visit_expr(a)),
                    None => self.found(e, "a macro whose arguments are not expressions".into()),
                },
                Expr::Assign(_) => self.found(e, "an assignment".into()),
                Expr::Binary(b) if crate::scope::is_compound(&b.op) => {
                    self.found(e, "an assignment".into())
                }
                Expr::Return(_) => self.found(e, "`return`".into()),
                Expr::Break(_) => self.found(e, "`break`".into()),
                Expr::Continue(_) => self.found(e, "`continue`".into()),
                Expr::Try(_) => self.found(e, "`?`".into()),
                Expr::Await(_) => self.found(e, "`.await`".into()),
                Expr::Yield(_) => self.found(e, "`yield`".into()),
                Expr::Loop(_) | Expr::While(_) | Expr::ForLoop(_) => self.found(e, "a loop".into()),
                Expr::Closure(_) => {}
                _ => syn::visit::visit_expr(self, e),
            }
        }
        fn visit_stmt_macro(&mut self, m: &'a syn::StmtMacro) {
            self.found(
                &m.mac,
                format!(
                    "the macro `{}!`",
                    quote::ToTokens::to_token_stream(&m.mac.path)
                ),
            );
        }
        fn visit_item(&mut self, _: &'a syn::Item) {}
    }
    let mut f = F(None);
    f.visit_expr(e);
    f.0
}
