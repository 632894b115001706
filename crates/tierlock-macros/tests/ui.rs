//! Compile errors of `#[locked]`, pinned by `trybuild`: each `tests/ui/*.rs` must fail to compile
//! with exactly the `.stderr` beside it (regenerate with `TRYBUILD=overwrite cargo test -p
//! tierlock-macros --test ui` and review the diff).

#[test]
fn compile_errors() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
