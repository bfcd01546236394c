//! A generator of random well-typed `#[private]` functions, and an interpreter of
//! what they mean (NumPy broadcasting; `if` on a secret is `f + c·(t − f)`).
//!
//! Each program has the parameters `s, t` (secret scalars), `x, y` (secret vectors
//! of length 4), `m` (a secret 3×4 matrix), `p` (a public scalar) and `w` (a public
//! vector). Its body is a few statements, each introducing one variable:
//! expressions of every rank mixing secrets and public values (`+ - *`, `/` by a
//! public number or a positive secret, unary `-`, `relu abs sum dot`, element reads,
//! comparisons used as 0/1 values), value `if`s on secrets, assignment `if`s
//! (nested, `else` or not, compound assignments, element assignments), `&&`/`||`/`!`
//! conditions, loops the optimizer vectorizes (element-wise and reductions), loops
//! it must leave alone (carried dependencies, branches inside), and inner blocks
//! that shadow an outer name. The return value sums every variable.
//!
//! Magnitudes are tracked so that no intermediate exceeds 1e4 (well inside the
//! default preset's range); comparison thresholds are non-round numbers and the
//! inputs continuous, so no comparison is decided by rounding.
//!
//! `PRIVPY_REGENERATE=1 cargo test --release --test suite generated` rewrites
//! `programs.rs` from this file.

use ndarray::{ArrayD, IxDyn, Zip};
use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::HashMap;
use std::fmt::Write as _;

/// The seed of the checked-in corpus.
pub const SEED: u64 = 0x5EED_0012;
/// The number of programs in the checked-in corpus.
pub const COUNT: usize = 300;

const LEN: usize = 4;
const ROWS: usize = 3;
const CAP: f64 = 1e4;

/// An expression with its rank (0 scalar, 1 vector, 2 matrix) and a bound on its
/// magnitude.
#[derive(Clone, Debug)]
pub enum E {
    /// A secret variable.
    Var(String),
    /// A literal.
    Lit(f64),
    /// The public scalar `p`.
    P,
    /// The public vector `w`.
    W,
    /// `v[i]` of a secret vector, `m[[r, c]]` of a secret matrix.
    Elem(String, Vec<usize>),
    /// `v[i]` with the loop variable (`off` = 1 for `v[i - 1]`).
    ElemI(String, usize),
    /// `a op b` with `op` in `+ - *`.
    Bin(char, Box<E>, Box<E>),
    /// `a / lit`.
    DivLit(Box<E>, f64),
    /// `a / (d * d + 1.0)` with `d` a secret parameter.
    DivSecret(Box<E>, String),
    /// `-a`.
    Neg(Box<E>),
    /// `a.relu()`, `a.abs()`, `a.sum()`.
    Method(&'static str, Box<E>),
    /// `a.dot(&b)`.
    Dot(Box<E>, Box<E>),
    /// A condition used as a 0/1 value.
    Cond(Box<C>),
}

/// A condition on secrets.
#[derive(Clone, Debug)]
pub enum C {
    /// `a > lit` or `a < lit`.
    Cmp(Box<E>, char, f64),
    /// `a && b`.
    And(Box<C>, Box<C>),
    /// `a || b`.
    Or(Box<C>, Box<C>),
    /// `!a`.
    Not(Box<C>),
}

/// A statement.
#[derive(Clone, Debug)]
pub enum S {
    /// `let v = e;`
    Let(String, E),
    /// `let mut v = e;`
    LetMut(String, E),
    /// `v = e;`
    Assign(String, E),
    /// `v += e;` / `v -= e;`
    Compound(String, char, E),
    /// `v[i] = e;` (`None`: the loop variable).
    ElemSet(String, Option<usize>, E),
    /// `if c { … } else { … }` on a secret.
    If(C, Vec<S>, Option<Vec<S>>),
    /// `let v = if c { a } else { b };`
    LetIf(String, C, E, E),
    /// `for i in a..b { … }`.
    For(usize, usize, Vec<S>),
    /// `let v = { let name = e; name op f };`: an inner block shadowing `name`.
    Block(String, String, E, E),
}

/// A generated program: its body and the rank it returns.
#[derive(Clone, Debug)]
pub struct Program {
    /// The statements.
    pub body: Vec<S>,
    /// The returned expression.
    pub ret: E,
    /// Rank of the result.
    pub rank: usize,
}

#[derive(Clone)]
struct VarInfo {
    name: String,
    rank: usize,
    bound: f64,
}

struct Gen {
    rng: ChaCha12Rng,
    vars: Vec<VarInfo>,
    next: usize,
}

/// `e`, cloned when it is a bare variable (so a binding never moves a secret).
fn own(e: E) -> E {
    match e {
        E::Var(_) => E::Method("clone", Box::new(e)),
        other => other,
    }
}

fn params() -> Vec<VarInfo> {
    let v = |n: &str, r| VarInfo {
        name: n.into(),
        rank: r,
        bound: 4.0,
    };
    vec![v("s", 0), v("t", 0), v("x", 1), v("y", 1), v("m", 2)]
}

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.rng.next_u64() % 100 < percent
    }
    fn lit(&mut self) -> f64 {
        let v = [0.5, 1.5, 2.0, 0.25, 3.0, 0.75, 1.25][self.below(7)];
        if self.chance(30) { -v } else { v }
    }
    fn threshold(&mut self) -> f64 {
        [0.37, -0.61, 1.13, -1.41, 0.07, 2.29][self.below(6)]
    }
    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("v{}", self.next)
    }
    fn var_of(&mut self, rank: usize) -> Option<VarInfo> {
        let c: Vec<VarInfo> = self
            .vars
            .iter()
            .filter(|v| v.rank == rank && v.bound <= CAP / 10.0)
            .cloned()
            .collect();
        (!c.is_empty()).then(|| c[self.below(c.len())].clone())
    }

    /// A secret expression of exactly `rank`, and its bound.
    fn expr(&mut self, rank: usize, depth: usize) -> (E, f64) {
        if depth == 0 || self.chance(25) {
            return self.leaf(rank);
        }
        match self.below(9) {
            0..=2 => {
                // a op b with the other side of any lower rank, or public.
                let op = ['+', '-', '*'][self.below(3)];
                let (a, ba) = self.expr(rank, depth - 1);
                let (b, bb) = if self.chance(35) {
                    self.public(rank)
                } else {
                    let r = self.below(rank + 1);
                    self.expr(r, depth - 1)
                };
                let (a, b) = if self.chance(50) { (a, b) } else { (b, a) };
                if op == '*' && ba * bb > CAP {
                    return (E::Bin('+', Box::new(a), Box::new(b)), ba + bb);
                }
                let bound = if op == '*' { ba * bb } else { ba + bb };
                (E::Bin(op, Box::new(a), Box::new(b)), bound)
            }
            3 => {
                let (a, ba) = self.expr(rank, depth - 1);
                if self.chance(50) {
                    let l = [2.0, -4.0, 0.5, 8.0][self.below(4)];
                    (E::DivLit(Box::new(a), l), ba / l.abs())
                } else {
                    let d = ["s", "t", "x", "y"][self.below(if rank >= 1 { 4 } else { 2 })];
                    (E::DivSecret(Box::new(a), d.into()), ba)
                }
            }
            4 => {
                let (a, b) = self.expr(rank, depth - 1);
                (E::Neg(Box::new(a)), b)
            }
            5 => {
                let (a, b) = self.expr(rank, depth - 1);
                let m = if self.chance(50) { "relu" } else { "abs" };
                (E::Method(m, Box::new(a)), b)
            }
            6 if rank == 0 => {
                let r = 1 + self.below(2);
                let (a, b) = self.expr(r, depth - 1);
                (E::Method("sum", Box::new(a)), b * (LEN * ROWS) as f64)
            }
            7 if rank == 0 => {
                // vector·vector (a matrix·vector product would have another length).
                let (a, ba) = self.expr(1, depth - 1);
                let (b, bb) = self.expr(1, depth - 1);
                if ba * bb * LEN as f64 > CAP {
                    return self.leaf(rank);
                }
                (E::Dot(Box::new(a), Box::new(b)), ba * bb * LEN as f64)
            }
            _ => {
                let c = self.cond(rank, depth - 1, true);
                (E::Cond(Box::new(c)), 1.0)
            }
        }
    }

    fn leaf(&mut self, rank: usize) -> (E, f64) {
        if rank == 0 && self.chance(30) {
            let (name, idx) = if self.chance(70) {
                (["x", "y"][self.below(2)].to_string(), vec![self.below(LEN)])
            } else {
                ("m".to_string(), vec![self.below(ROWS), self.below(LEN)])
            };
            return (E::Elem(name, idx), 4.0);
        }
        match self.var_of(rank) {
            Some(v) => (E::Var(v.name), v.bound),
            None => unreachable!("the parameters have every rank"),
        }
    }

    fn public(&mut self, rank: usize) -> (E, f64) {
        match self.below(3) {
            0 if rank >= 1 => (E::W, 2.0),
            1 => (E::P, 2.0),
            _ => {
                let l = self.lit();
                (E::Lit(l), l.abs())
            }
        }
    }

    /// A condition of at most `rank` (exactly `rank` when `exact`).
    fn cond(&mut self, rank: usize, depth: usize, exact: bool) -> C {
        if depth > 0 && self.chance(30) {
            let a = self.cond(rank, depth - 1, exact);
            return match self.below(3) {
                0 => C::And(Box::new(a), Box::new(self.cond(rank, depth - 1, false))),
                1 => C::Or(Box::new(self.cond(rank, depth - 1, false)), Box::new(a)),
                _ => C::Not(Box::new(a)),
            };
        }
        let r = if exact { rank } else { self.below(rank + 1) };
        let (e, _) = self.expr(r, depth.min(1));
        let op = if self.chance(50) { '>' } else { '<' };
        C::Cmp(Box::new(e), op, self.threshold())
    }

    fn declare(&mut self, name: &str, rank: usize, bound: f64) {
        self.vars.push(VarInfo {
            name: name.into(),
            rank,
            bound,
        });
    }

    /// An expression for a loop body over `i`: element reads `v[i]` of secret
    /// vectors, secret scalars, public numbers.
    fn loop_expr(&mut self, depth: usize) -> (E, f64) {
        if depth == 0 || self.chance(30) {
            return match self.below(4) {
                0 | 1 => {
                    let v = ["x", "y"][self.below(2)];
                    (E::ElemI(v.into(), 0), 4.0)
                }
                2 => {
                    let s = ["s", "t"][self.below(2)];
                    (E::Var(s.into()), 4.0)
                }
                _ => {
                    let l = self.lit();
                    (E::Lit(l), l.abs())
                }
            };
        }
        let op = ['+', '-', '*'][self.below(3)];
        let (a, ba) = self.loop_expr(depth - 1);
        let (b, bb) = self.loop_expr(depth - 1);
        if self.chance(15) {
            // a comparison of an element (secret) used as a 0/1 factor
            let v = ["x", "y"][self.below(2)];
            let a = E::Bin('+', Box::new(E::ElemI(v.into(), 0)), Box::new(a));
            return (
                E::Bin(
                    '*',
                    Box::new(E::Cond(Box::new(C::Cmp(
                        Box::new(a),
                        '>',
                        self.threshold(),
                    )))),
                    Box::new(b),
                ),
                bb,
            );
        }
        if op == '*' && ba * bb > CAP {
            return (E::Bin('+', Box::new(a), Box::new(b)), ba + bb);
        }
        let bound = if op == '*' { ba * bb } else { ba + bb };
        (E::Bin(op, Box::new(a), Box::new(b)), bound)
    }

    /// Assignments to `v` (rank `r`) inside a branch on a condition of rank ≤ `r`.
    fn branch_body(&mut self, v: &str, r: usize, depth: usize) -> Vec<S> {
        let mut out = Vec::new();
        let (e, _) = self.expr(r, 1);
        out.push(if self.chance(30) {
            S::Compound(v.into(), if self.chance(50) { '+' } else { '-' }, e)
        } else {
            S::Assign(v.into(), own(e))
        });
        if depth > 0 && self.chance(30) {
            let c = self.cond(r.min(1), 1, false);
            let inner = self.branch_body(v, r, depth - 1);
            out.push(S::If(c, inner, None));
        }
        out
    }

    fn statement(&mut self) -> Vec<S> {
        let name = self.fresh();
        match self.below(14) {
            12 | 13 => {
                // a sum of products of names of mixed ranks: the optimizer's factor
                // extraction (common name) or expression vectorization (all names)
                let pick = |g: &mut Gen| {
                    let r = g.below(3);
                    g.var_of(r).unwrap_or_else(|| unreachable!("parameters"))
                };
                let common = self.chance(50).then(|| pick(self));
                let mut terms = Vec::new();
                let (mut rank, mut bound) = (0, 0.0);
                for _ in 0..2 + self.below(3) {
                    let a = common.clone().unwrap_or_else(|| pick(self));
                    let b = pick(self);
                    rank = rank.max(a.rank).max(b.rank);
                    bound += a.bound * b.bound;
                    let (a, b) = (E::Var(a.name), E::Var(b.name));
                    terms.push(if self.chance(50) {
                        E::Bin('*', Box::new(a), Box::new(b))
                    } else {
                        E::Bin('*', Box::new(b), Box::new(a))
                    });
                }
                let mut e = terms.remove(0);
                for t in terms {
                    e = E::Bin('+', Box::new(e), Box::new(t));
                }
                self.declare(&name, rank, bound);
                vec![S::Let(name, e)]
            }
            0..=2 => {
                let r = self.below(3);
                let (e, b) = self.expr(r, 2);
                self.declare(&name, r, b);
                vec![S::Let(name, own(e))]
            }
            3 | 4 => {
                let cr = self.below(3);
                let c = self.cond(cr, 1, true);
                let r = self.below(3);
                let (a, ba) = self.expr(r, 1);
                let (b, bb) = if self.chance(25) {
                    self.public(r)
                } else {
                    self.expr(r, 1)
                };
                self.declare(&name, r.max(cr), ba.max(bb));
                vec![S::LetIf(name, c, own(a), own(b))]
            }
            5 | 6 => {
                // assignment form: the condition's rank may not exceed the variable's.
                let r = self.below(3);
                let (init, b0) = self.expr(r, 1);
                let c = self.cond(r, 1, false);
                let then = self.branch_body(&name, r, 1);
                let els = self.chance(50).then(|| self.branch_body(&name, r, 0));
                self.declare(&name, r, (b0 * 4.0).clamp(CAP / 10.0, CAP));
                vec![S::LetMut(name.clone(), own(init)), S::If(c, then, els)]
            }
            7 => {
                // element assignments in branches
                let src = ["x", "y"][self.below(2)];
                let c = self.cond(1, 1, false);
                let (e1, _) = self.expr(0, 1);
                let then = vec![S::ElemSet(name.clone(), Some(self.below(LEN)), e1)];
                let els = if self.chance(50) {
                    let (e2, _) = self.expr(0, 1);
                    Some(vec![S::ElemSet(name.clone(), Some(self.below(LEN)), e2)])
                } else {
                    None
                };
                self.declare(&name, 1, CAP / 10.0);
                vec![
                    S::LetMut(
                        name.clone(),
                        E::Method("clone", Box::new(E::Var(src.into()))),
                    ),
                    S::If(c, then, els),
                ]
            }
            8 => {
                // element-wise loop (vectorized) or with a carried dependency
                let src = ["x", "y"][self.below(2)];
                let (e, b) = self.loop_expr(2);
                let carried = self.chance(40);
                let body = if !carried {
                    vec![S::ElemSet(name.clone(), None, e)]
                } else {
                    vec![S::ElemSet(
                        name.clone(),
                        None,
                        E::Bin(
                            '+',
                            Box::new(E::Bin(
                                '*',
                                Box::new(E::ElemI(name.clone(), 1)),
                                Box::new(E::Lit(0.5)),
                            )),
                            Box::new(e),
                        ),
                    )]
                };
                let start = if carried { 1 } else { self.below(2) };
                self.declare(&name, 1, (b * 2.0 + 8.0).min(CAP));
                vec![
                    S::LetMut(
                        name.clone(),
                        E::Method("clone", Box::new(E::Var(src.into()))),
                    ),
                    S::For(start, LEN - self.below(2), body),
                ]
            }
            9 => {
                // reduction loop
                let (init, _) = self.expr(0, 0);
                let (e, b) = self.loop_expr(1);
                let st = if self.chance(50) {
                    S::Compound(name.clone(), '+', e)
                } else {
                    S::Assign(
                        name.clone(),
                        E::Bin('+', Box::new(E::Var(name.clone())), Box::new(e)),
                    )
                };
                self.declare(&name, 0, (b * LEN as f64 + 4.0).min(CAP));
                vec![S::LetMut(name, own(init)), S::For(0, LEN, vec![st])]
            }
            10 => {
                // a branch inside a loop: left as a loop of selects
                let src = ["x", "y"][self.below(2)];
                let (e, b) = self.loop_expr(1);
                let c = C::Cmp(
                    Box::new(E::ElemI(["x", "y"][self.below(2)].into(), 0)),
                    '>',
                    self.threshold(),
                );
                self.declare(&name, 1, b.max(4.0));
                vec![
                    S::LetMut(
                        name.clone(),
                        E::Method("clone", Box::new(E::Var(src.into()))),
                    ),
                    S::For(
                        0,
                        LEN,
                        vec![S::If(c, vec![S::ElemSet(name.clone(), None, e)], None)],
                    ),
                ]
            }
            _ => {
                // an inner block that shadows an outer name with another rank
                let r = self.below(3);
                let shadow = match self.var_of(r) {
                    Some(v) => v.name,
                    None => ["s", "x", "m"][r].into(),
                };
                let (e, b) = self.expr(r, 1);
                let (f, bf) = self.expr(r, 1);
                self.declare(&name, r, b + bf);
                vec![S::Block(name, shadow, own(e), f)]
            }
        }
    }

    fn program(&mut self) -> Program {
        self.vars = params();
        let n = 2 + self.below(3);
        let mut body = Vec::new();
        let first = self.vars.len();
        for _ in 0..n {
            body.extend(self.statement());
        }
        let locals: Vec<VarInfo> = self.vars[first..].to_vec();
        let rank = locals.iter().map(|v| v.rank).max().unwrap_or(0);
        let mut ret = E::Var(locals[0].name.clone());
        for v in &locals[1..] {
            ret = E::Bin('+', Box::new(ret), Box::new(E::Var(v.name.clone())));
        }
        Program { body, ret, rank }
    }
}

/// The programs of the corpus with `seed`.
pub fn programs(seed: u64, count: usize) -> Vec<Program> {
    let mut g = Gen {
        rng: ChaCha12Rng::seed_from_u64(seed),
        vars: Vec::new(),
        next: 0,
    };
    (0..count)
        .map(|_| {
            g.next = 0;
            g.program()
        })
        .collect()
}

// ---------------------------------------------------------------- printing

fn fmt_lit(v: f64) -> String {
    format!("{v:?}")
}

fn print_e(e: &E) -> String {
    match e {
        E::Var(n) => n.clone(),
        E::Lit(v) => {
            if *v < 0.0 {
                format!("({})", fmt_lit(*v))
            } else {
                fmt_lit(*v)
            }
        }
        E::P => "p".into(),
        E::W => "w".into(),
        E::Elem(n, idx) if idx.len() == 1 => format!("{n}[{}]", idx[0]),
        E::Elem(n, idx) => format!("{n}[[{}, {}]]", idx[0], idx[1]),
        E::ElemI(n, 0) => format!("{n}[i]"),
        E::ElemI(n, k) => format!("{n}[i - {k}]"),
        E::Bin(op, a, b) => format!("({} {op} {})", print_e(a), print_e(b)),
        E::DivLit(a, l) => format!("({} / {})", print_e(a), print_e(&E::Lit(*l))),
        E::DivSecret(a, d) => format!("({} / ({d} * {d} + 1.0))", print_e(a)),
        E::Neg(a) => format!("(-{})", print_e(a)),
        E::Method(m, a) => format!("{}.{m}()", print_e(a)),
        E::Dot(a, b) => format!("{}.dot(&{})", print_e(a), print_e(b)),
        E::Cond(c) => format!("({})", print_c(c)),
    }
}

fn print_c(c: &C) -> String {
    match c {
        C::Cmp(e, op, l) => format!("{} {op} {}", print_e(e), print_e(&E::Lit(*l))),
        C::And(a, b) => format!("({}) && ({})", print_c(a), print_c(b)),
        C::Or(a, b) => format!("({}) || ({})", print_c(a), print_c(b)),
        C::Not(a) => format!("!({})", print_c(a)),
    }
}

fn print_s(s: &S, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    let block = |stmts: &[S], out: &mut String| {
        for st in stmts {
            print_s(st, indent + 4, out);
        }
    };
    match s {
        S::Let(n, e) => writeln!(out, "{pad}let {n} = {};", print_e(e)),
        S::LetMut(n, e) => writeln!(out, "{pad}let mut {n} = {};", print_e(e)),
        S::Assign(n, e) => writeln!(out, "{pad}{n} = {};", print_e(e)),
        S::Compound(n, op, e) => writeln!(out, "{pad}{n} {op}= {};", print_e(e)),
        S::ElemSet(n, Some(i), e) => writeln!(out, "{pad}{n}[{i}] = {};", print_e(e)),
        S::ElemSet(n, None, e) => writeln!(out, "{pad}{n}[i] = {};", print_e(e)),
        S::If(c, t, f) => {
            writeln!(out, "{pad}if {} {{", print_c(c)).ok();
            block(t, out);
            if let Some(f) = f {
                writeln!(out, "{pad}}} else {{").ok();
                block(f, out);
            }
            writeln!(out, "{pad}}}")
        }
        S::LetIf(n, c, a, b) => writeln!(
            out,
            "{pad}let {n} = if {} {{ {} }} else {{ {} }};",
            print_c(c),
            print_e(a),
            print_e(b)
        ),
        S::For(a, b, body) => {
            writeln!(out, "{pad}for i in {a}..{b} {{").ok();
            block(body, out);
            writeln!(out, "{pad}}}")
        }
        S::Block(n, shadow, e, f) => writeln!(
            out,
            "{pad}let {n} = {{\n{pad}    let {shadow} = {};\n{pad}    {shadow} + {}\n{pad}}};",
            print_e(e),
            print_e(f)
        ),
    }
    .ok();
}

/// The source of the generated module.
pub fn source(seed: u64, count: usize) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "//! GENERATED by `generator.rs` (seed {seed:#x}, {count} programs); do not edit.\n\
         //! `PRIVPY_REGENERATE=1 cargo test --release --test suite generated` rewrites it.\n\
         #![allow(unused_variables, unused_parens, clippy::all)]\n\n\
         use privpy::prelude::*;\n\n\
         /// A generated program: secrets `s, t, x, y, m`, public `p, w`.\n\
         pub type Program = fn(\n    Priv<f64>,\n    Priv<f64>,\n    Priv<Array1<f64>>,\n    Priv<Array1<f64>>,\n    \
         Priv<Array2<f64>>,\n    f64,\n    &Array1<f64>,\n) -> Priv<ArrayD<f64>>;\n\n\
         macro_rules! program {{
    ($opt:ident, $plain:ident, [$s:ident, $t:ident, $x:ident, $y:ident, $m:ident, $p:ident, $w:ident], $ret:ty, $body:block) => {{
        pub fn $opt($s: Priv<f64>, $t: Priv<f64>, $x: Priv<Array1<f64>>, $y: Priv<Array1<f64>>, $m: Priv<Array2<f64>>, $p: f64, $w: &Array1<f64>) -> Priv<ArrayD<f64>> {{
            #[private]
            fn f($s: Priv<f64>, $t: Priv<f64>, $x: Priv<Array1<f64>>, $y: Priv<Array1<f64>>, $m: Priv<Array2<f64>>, $p: f64, $w: &Array1<f64>) -> $ret $body
            f($s, $t, $x, $y, $m, $p, $w).into_dyn()
        }}
        pub fn $plain($s: Priv<f64>, $t: Priv<f64>, $x: Priv<Array1<f64>>, $y: Priv<Array1<f64>>, $m: Priv<Array2<f64>>, $p: f64, $w: &Array1<f64>) -> Priv<ArrayD<f64>> {{
            #[private(optimize = false)]
            fn f($s: Priv<f64>, $t: Priv<f64>, $x: Priv<Array1<f64>>, $y: Priv<Array1<f64>>, $m: Priv<Array2<f64>>, $p: f64, $w: &Array1<f64>) -> $ret $body
            f($s, $t, $x, $y, $m, $p, $w).into_dyn()
        }}
    }};
}}
"
    )
    .ok();
    let progs = programs(seed, count);
    for (k, p) in progs.iter().enumerate() {
        let ret = ["Priv<f64>", "Priv<Array1<f64>>", "Priv<Array2<f64>>"][p.rank];
        writeln!(
            out,
            "program!(g{k}_opt, g{k}_plain, [s, t, x, y, m, p, w], {ret}, {{"
        )
        .ok();
        for s in &p.body {
            print_s(s, 4, &mut out);
        }
        writeln!(out, "    {}\n}});\n", print_e(&p.ret)).ok();
    }
    writeln!(
        out,
        "/// Every program: (optimized, unoptimized).\npub const PROGRAMS: [(Program, Program); {count}] = ["
    )
    .ok();
    for k in 0..count {
        writeln!(out, "    (g{k}_opt, g{k}_plain),").ok();
    }
    writeln!(out, "];").ok();
    out
}

// ---------------------------------------------------------------- meaning

/// The value of every name.
pub type Env = HashMap<String, ArrayD<f64>>;

fn broadcast2(a: &ArrayD<f64>, b: &ArrayD<f64>, f: impl Fn(f64, f64) -> f64) -> ArrayD<f64> {
    let (sa, sb) = (a.shape(), b.shape());
    let n = sa.len().max(sb.len());
    let dim = |s: &[usize], k: usize| {
        let off = n - s.len();
        if k < off { 1 } else { s[k - off] }
    };
    let shape: Vec<usize> = (0..n).map(|k| dim(sa, k).max(dim(sb, k))).collect();
    let a2 = a.broadcast(IxDyn(&shape)).expect("broadcastable");
    let b2 = b.broadcast(IxDyn(&shape)).expect("broadcastable");
    Zip::from(&a2).and(&b2).map_collect(|&x, &y| f(x, y))
}

fn scalar(v: f64) -> ArrayD<f64> {
    ArrayD::from_elem(IxDyn(&[]), v)
}

fn eval(e: &E, env: &Env, i: usize) -> ArrayD<f64> {
    let get = |n: &str| env.get(n).cloned().unwrap_or_else(|| panic!("unbound {n}"));
    match e {
        E::Var(n) => get(n),
        E::Lit(v) => scalar(*v),
        E::P => get("p"),
        E::W => get("w"),
        E::Elem(n, idx) => scalar(get(n)[IxDyn(idx)]),
        E::ElemI(n, k) => scalar(get(n)[IxDyn(&[i - k])]),
        E::Bin(op, a, b) => {
            let (a, b) = (eval(a, env, i), eval(b, env, i));
            match op {
                '+' => broadcast2(&a, &b, |x, y| x + y),
                '-' => broadcast2(&a, &b, |x, y| x - y),
                _ => broadcast2(&a, &b, |x, y| x * y),
            }
        }
        E::DivLit(a, l) => eval(a, env, i).mapv(|v| v / l),
        E::DivSecret(a, d) => {
            let den = get(d).mapv(|v| v * v + 1.0);
            broadcast2(&eval(a, env, i), &den, |x, y| x / y)
        }
        E::Neg(a) => eval(a, env, i).mapv(|v| -v),
        E::Method(m, a) => {
            let a = eval(a, env, i);
            match *m {
                "relu" => a.mapv(|v| v.max(0.0)),
                "abs" => a.mapv(f64::abs),
                "sum" => scalar(a.sum()),
                _ => a,
            }
        }
        E::Dot(a, b) => {
            let (a, b) = (eval(a, env, i), eval(b, env, i));
            let b = b.into_dimensionality::<ndarray::Ix1>().expect("vector");
            match a.ndim() {
                1 => scalar(
                    a.into_dimensionality::<ndarray::Ix1>()
                        .expect("1-D")
                        .dot(&b),
                ),
                _ => a
                    .into_dimensionality::<ndarray::Ix2>()
                    .expect("2-D")
                    .dot(&b)
                    .into_dyn(),
            }
        }
        E::Cond(c) => eval_c(c, env, i),
    }
}

fn eval_c(c: &C, env: &Env, i: usize) -> ArrayD<f64> {
    match c {
        C::Cmp(e, op, l) => eval(e, env, i).mapv(|v| {
            let t = if *op == '>' { v > *l } else { v < *l };
            if t { 1.0 } else { 0.0 }
        }),
        C::And(a, b) => broadcast2(&eval_c(a, env, i), &eval_c(b, env, i), |x, y| x * y),
        C::Or(a, b) => broadcast2(&eval_c(a, env, i), &eval_c(b, env, i), |x, y| x + y - x * y),
        C::Not(a) => eval_c(a, env, i).mapv(|v| 1.0 - v),
    }
}

/// `f + c·(t − f)`.
fn select(c: &ArrayD<f64>, t: &ArrayD<f64>, f: &ArrayD<f64>) -> ArrayD<f64> {
    let d = broadcast2(t, f, |a, b| a - b);
    let cd = broadcast2(c, &d, |a, b| a * b);
    broadcast2(f, &cd, |a, b| a + b)
}

fn assigned(stmts: &[S], out: &mut Vec<String>) {
    for s in stmts {
        match s {
            S::Assign(n, _) | S::Compound(n, _, _) | S::ElemSet(n, _, _) if !out.contains(n) => {
                out.push(n.clone())
            }
            S::If(_, t, f) => {
                assigned(t, out);
                if let Some(f) = f {
                    assigned(f, out);
                }
            }
            S::For(_, _, b) => assigned(b, out),
            _ => {}
        }
    }
}

fn exec(stmts: &[S], env: &mut Env, i: usize) {
    for s in stmts {
        match s {
            S::Let(n, e) | S::LetMut(n, e) => {
                let v = eval(e, env, i);
                env.insert(n.clone(), v);
            }
            S::Assign(n, e) => {
                let v = eval(e, env, i);
                env.insert(n.clone(), v);
            }
            S::Compound(n, op, e) => {
                let (old, v) = (env[n].clone(), eval(e, env, i));
                let new = if *op == '+' {
                    broadcast2(&old, &v, |a, b| a + b)
                } else {
                    broadcast2(&old, &v, |a, b| a - b)
                };
                env.insert(n.clone(), new);
            }
            S::ElemSet(n, k, e) => {
                let v = eval(e, env, i)[IxDyn(&[])];
                let z = env.get_mut(n).expect("bound");
                z[IxDyn(&[k.unwrap_or(i)])] = v;
            }
            S::If(c, t, f) => {
                let c = eval_c(c, env, i);
                let mut vars = Vec::new();
                assigned(t, &mut vars);
                if let Some(f) = f {
                    assigned(f, &mut vars);
                }
                let mut te = env.clone();
                exec(t, &mut te, i);
                let mut fe = env.clone();
                if let Some(f) = f {
                    exec(f, &mut fe, i);
                }
                for v in vars {
                    env.insert(v.clone(), select(&c, &te[&v], &fe[&v]));
                }
            }
            S::LetIf(n, c, a, b) => {
                let v = select(&eval_c(c, env, i), &eval(a, env, i), &eval(b, env, i));
                env.insert(n.clone(), v);
            }
            S::For(a, b, body) => {
                for k in *a..*b {
                    exec(body, env, k);
                }
            }
            S::Block(n, shadow, e, f) => {
                let mut inner = env.clone();
                let v = eval(e, &inner, i);
                inner.insert(shadow.clone(), v);
                let r = broadcast2(&inner[shadow], &eval(f, &inner, i), |a, b| a + b);
                env.insert(n.clone(), r);
            }
        }
    }
}

/// What `p` computes on `env` (which holds the parameters).
pub fn meaning(p: &Program, env: &Env) -> ArrayD<f64> {
    let mut env = env.clone();
    exec(&p.body, &mut env, 0);
    eval(&p.ret, &env, 0)
}
