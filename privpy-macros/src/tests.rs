//! The misuse corpus: generated programs with exactly one mistake each, inserted at
//! a random place among valid statements. Each must be rejected with the rule the
//! mistake breaks and a message naming the secret involved; the same programs
//! without the mistake must pass validation.

use crate::validate::{Rule, diagnostics};

/// A small deterministic generator (xorshift64*), enough to pick templates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const SIGNATURE: &str = "fn f(x: Priv<Array1<f64>>, s: Priv<f64>, n: usize, mut w: Array1<f64>, \
                         log: &mut Vec<u8>, out: &mut Out) -> Priv<f64>";

/// Valid statements (each may declare one secret `a{k}`, always used at the end).
fn valid(rng: &mut Rng, k: usize) -> (String, Option<String>) {
    let a = format!("a{k}");
    match rng.below(6) {
        0 => (format!("let {a} = x * 2.0 + s;"), Some(a)),
        1 => (
            format!("let mut {a} = s.clone(); if s > 0.5 {{ {a} = s * 2.0; }}"),
            Some(a),
        ),
        2 => (
            format!("let {a} = if x > 0.0 {{ x }} else {{ x * 0.5 }};"),
            Some(a),
        ),
        3 => (
            format!("let mut {a} = x.clone(); for i in 0..n {{ {a}[i] = x[i] * 2.0; }}"),
            Some(a),
        ),
        4 => ("for i in 0..n { log.push(i as u8); }".into(), None),
        _ => (
            format!("let {a} = {{ let x = 1.0; x + 2.0 }} + s;"),
            Some(a),
        ),
    }
}

/// One mistake using the secret `v`, the rule it breaks, and the secret the message
/// must name.
fn mistake(rng: &mut Rng, v: &str) -> (String, Rule, String) {
    let c = format!("{v}.sum() > 0.25");
    let branch = |body: &str| {
        format!("let mut yy = s.clone(); if {c} {{ yy = s * 3.0; {body} }} let _u = yy;")
    };
    let (code, rule) = match rng.below(14) {
        0 => (format!("while {c} {{ }}"), Rule::SecretWhile),
        1 => (format!("match {v} {{ _ => {{}} }}"), Rule::SecretMatch),
        2 => (format!("for _ in 0..{v} {{ }}"), Rule::SecretLoopBound),
        3 => (format!("let _e = w[{v}];"), Rule::SecretIndex),
        4 => (
            format!("let _e = x.slice(s![..(n + {v})]);"),
            Rule::SecretSlice,
        ),
        5 => {
            let conv = rng.pick(&["{v} as f64", "{v}.into()", "f64::from({v})"]);
            (
                format!("let _e: f64 = {};", conv.replace("{v}", v)),
                Rule::SecretConversion,
            )
        }
        6 => {
            let exit = rng.pick(&["return yy;", "let _q = Some(1.0)?;"]);
            (branch(exit), Rule::ExitInBranch)
        }
        7 => {
            let effect = rng.pick(&[
                "log.push(1);",
                "println!(\"hi\");",
                "let _ = helper(&s);",
                "log.clear()",
            ]);
            (branch(effect), Rule::EffectInBranch)
        }
        8 => (branch("let _r = s.reveal();"), Rule::RevealInBranch),
        9 => {
            let assign = rng.pick(&["count = 1.0;", "count += 1.0;", "count -= 2.0;"]);
            (
                format!("let mut count = 0.0; {} let _c = count;", branch(assign)),
                Rule::PublicAssignedInBranch,
            )
        }
        10 => {
            let assign = rng.pick(&[
                "out.total = 1.0;",
                "w[0] = 1.0;",
                "*out = Out { total: 1.0 };",
            ]);
            (branch(assign), Rule::NotAssignable)
        }
        11 => {
            let op = rng.pick(&["&&", "||"]);
            let rhs = rng.pick(&[
                "bump(log) > 0.0",
                "panic!(\"no\")",
                "{ log.push(1); s > 0.0 }",
            ]);
            (
                format!("let _l = {c} {op} {rhs};"),
                Rule::EffectInShortCircuit,
            )
        }
        12 => (format!("if {c} {{ let _z = 1.0; }}"), Rule::NoEffect),
        _ => (
            format!("if let Some(_) = Some({v}) {{ }}"),
            Rule::SecretIfLet,
        ),
    };
    (code, rule, v.to_string())
}

fn program(stmts: &[String], used: &[String]) -> syn::ItemFn {
    let ret = if used.is_empty() {
        "s".to_string()
    } else {
        used.iter()
            .map(|u| format!("{u}.sum()"))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let src = format!("{SIGNATURE} {{ {} {ret} }}", stmts.join(" "));
    syn::parse_str(&src).unwrap_or_else(|e| panic!("generated program does not parse: {e}\n{src}"))
}

#[test]
fn every_generated_misuse_is_rejected_with_its_rule_naming_the_secret() {
    let mut rng = Rng(0x5EED_0012);
    let mut seen = std::collections::HashSet::new();
    for case in 0..400 {
        let mut stmts = Vec::new();
        // Each secret with the index of the first statement that may use it.
        let mut secrets = vec![("x".to_string(), 0), ("s".to_string(), 0)];
        for k in 0..rng.below(4) {
            let (st, a) = valid(&mut rng, k);
            stmts.push(st);
            secrets.extend(a.map(|a| (a, k + 1)));
        }
        // The valid program alone passes.
        let used: Vec<String> = secrets[2..].iter().map(|(n, _)| n.clone()).collect();
        let ok = program(&stmts, &used);
        let d = diagnostics(&ok.sig, &ok.block);
        assert!(
            d.is_empty(),
            "case {case}: valid program rejected: {:?}",
            d[0].1.to_string()
        );
        // With one mistake, placed anywhere, it is rejected by exactly that rule.
        let (v, from) = secrets[rng.below(secrets.len())].clone();
        let (code, rule, name) = mistake(&mut rng, &v);
        let at = from + rng.below(stmts.len() + 1 - from);
        stmts.insert(at, code.clone());
        let bad = program(&stmts, &used);
        let d = diagnostics(&bad.sig, &bad.block);
        assert!(
            !d.is_empty(),
            "case {case}: accepted: {code} in {}",
            quote::ToTokens::to_token_stream(&bad)
        );
        for (r, e) in &d {
            assert_eq!(*r, rule, "case {case}: {code}: {e}");
            let msg = e.to_string();
            let names = msg.contains(&format!("`{name}`"));
            assert!(
                names,
                "case {case}: {code}: message does not name `{name}`: {msg}"
            );
        }
        seen.insert(format!("{rule:?}"));
    }
    assert_eq!(seen.len(), 14, "every rule is exercised: {seen:?}");
}

#[test]
fn rejected_functions_expand_to_a_stub_and_the_errors() {
    let item: proc_macro2::TokenStream =
        syn::parse_str("fn f(x: Priv<f64>) -> Priv<f64> { while x > 0.0 {} let v = x as f64; x }")
            .unwrap_or_else(|e| panic!("{e}"));
    let out = crate::expand::expand(proc_macro2::TokenStream::new(), item).to_string();
    assert_eq!(out.matches("compile_error").count(), 2, "{out}");
    assert!(out.contains("unreachable"), "{out}");
}

#[test]
fn the_crate_argument_names_the_generated_paths() {
    let item: proc_macro2::TokenStream =
        syn::parse_str("fn f(x: Priv<f64>) -> Priv<f64> { if x > 0.0 { x } else { 0.0 } }")
            .unwrap_or_else(|e| panic!("{e}"));
    let attr: proc_macro2::TokenStream =
        syn::parse_str("crate = ::renamed").unwrap_or_else(|e| panic!("{e}"));
    let out = crate::expand::expand(attr, item).to_string();
    assert!(out.contains(":: renamed :: __private :: select"), "{out}");
    assert!(!out.contains(":: privpy ::"), "{out}");
}
