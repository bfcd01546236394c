//! The `#[private]` attribute of privpy.
//!
//! Today the attribute marks a function as a privpy program and leaves its body
//! unchanged: the function is written directly against `Priv<A>` values, whose
//! operators already run the private protocols. Secret-aware rewriting (comparisons
//! and `if` on secrets, the optimizer, compile-time rejection of control flow on
//! secrets) comes with the macro front end.
#![deny(missing_docs)]

use proc_macro::TokenStream;

/// Marks a function as a privpy program. The function is emitted unchanged; an
/// attribute argument is refused, since none is defined yet.
#[proc_macro_attribute]
pub fn private(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return "compile_error!(\"#[private] takes no arguments yet\");"
            .parse()
            .unwrap_or_default();
    }
    item
}
