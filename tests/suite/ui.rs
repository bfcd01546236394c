//! Compile-time rejection: each case in `tests/ui/` is one mistake, with its reviewed
//! `.stderr`. Regenerate after a toolchain upgrade with `TRYBUILD=overwrite`.

#[test]
fn rejected_patterns() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
