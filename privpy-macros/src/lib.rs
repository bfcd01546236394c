//! The `#[private]` attribute of privpy.
//!
//! `#[private]` on a function (or on an `impl` block, for each of its methods) turns
//! ordinary ndarray-style code on `Priv<…>` values into private code:
//!
//! * comparisons of secrets (`< > <= >= == !=`) become secret comparisons, and
//!   `&&`, `||`, `!` on their results become arithmetic;
//! * `if` on a secret condition becomes an oblivious select, for value branches and
//!   for branches that assign variables or elements (nested too);
//! * secrets are borrowed by arithmetic, so `x * y + x * w` leaves `x` usable;
//! * `v[i]` with a public `i` reads or assigns one element;
//! * control flow that would depend on a secret, and side effects where both ways
//!   of a secret decision run, are compile errors naming the secret;
//! * the optimizer (paper §6.2) vectorizes element-wise loops, extracts common
//!   factors and turns sums of products into one batched multiplication.
//!
//! Arguments: `optimize = false` turns the optimizer off; `crate = path` names the
//! privpy crate when it is renamed in `Cargo.toml` (default `::privpy`).
//!
//! The pipeline, one stage per file: `parse` (arguments and a typed view of the
//! item) → `scope` (the secret analysis: immutable and lexically scoped) →
//! `validate` (every diagnostic, collected) → `passes` (loop vectorization,
//! factor extraction, expression vectorization, select, operators; one file each) →
//! `expand` (emit).
#![deny(missing_docs)]

mod effects;
mod expand;
mod parse;
mod passes;
mod scope;
mod validate;

#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

/// Marks a function (or every method of an `impl` block) as a privpy program; see
/// the crate documentation. Arguments: `optimize = true | false` (default `true`),
/// `crate = path` (default `::privpy`).
#[proc_macro_attribute]
pub fn private(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(attr.into(), item.into()).into()
}
