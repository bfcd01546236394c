//! The `#[private]` attribute of privpy.
//!
//! `#[private]` on a function (or on an `impl` block, for each of its methods) turns
//! ordinary ndarray-style code on `Priv<…>` values into private code:
//!
//! * comparisons of secrets (`< > <= >= == !=`) become secret comparisons, and
//!   `&&`, `||`, `!` on their results become arithmetic;
//! * `if` on a secret condition becomes an oblivious select, for value branches and
//!   for branches that assign variables (nested too);
//! * secrets are borrowed by arithmetic, so `x * y + x * w` leaves `x` usable;
//! * `v[i]` with a public `i` reads or assigns one element;
//! * control flow that would depend on a secret is a compile error naming it;
//! * the optimizer (paper §6.2) vectorizes element-wise loops, extracts common
//!   factors and turns sums of products into one batched multiplication;
//!   `#[private(optimize = false)]` turns it off.
//!
//! Stages, each in its own file: `analyze` (which names are secret), `rewrite`
//! (operators, selects and every diagnostic), `optimize` (the three rewrites).
#![deny(missing_docs)]

mod analyze;
mod optimize;
mod rewrite;

use proc_macro::TokenStream;
use quote::ToTokens;

/// Marks a function (or every method of an `impl` block) as a privpy program; see
/// the crate documentation. Arguments: `optimize = true | false` (default `true`).
#[proc_macro_attribute]
pub fn private(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(ts) => ts.into(),
        Err((stub, e)) => {
            // The item with an unreachable body plus the errors: the user sees
            // privpy's messages and no cascade from code that cannot type-check.
            let mut out = stub;
            out.extend(e.to_compile_error());
            out.into()
        }
    }
}

/// The item with every rejected body replaced by `unreachable!()`.
fn stubbed(mut f: syn::ItemFn) -> proc_macro2::TokenStream {
    f.block = Box::new(syn::parse_quote!({
        ::core::unreachable!("rejected by #[private]")
    }));
    f.attrs.push(syn::parse_quote!(#[allow(unused)]));
    f.into_token_stream()
}

type Failed = (proc_macro2::TokenStream, syn::Error);

fn expand(
    attr: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> Result<proc_macro2::TokenStream, Failed> {
    let optimize = match parse_args(attr) {
        Ok(o) => o,
        Err(e) => {
            let stub = match syn::parse2::<syn::ItemFn>(item.clone()) {
                Ok(f) => stubbed(f),
                Err(_) => item,
            };
            return Err((stub, e));
        }
    };
    if let Ok(mut f) = syn::parse2::<syn::ItemFn>(item.clone()) {
        let orig = f.clone();
        return match rewrite::function(&f.sig, &mut f.block, optimize) {
            Ok(()) => Ok(f.into_token_stream()),
            Err(e) => Err((stubbed(orig), e)),
        };
    }
    let mut imp = match syn::parse2::<syn::ItemImpl>(item.clone()) {
        Ok(i) => i,
        Err(_) => {
            let e = syn::Error::new_spanned(
                &item,
                "#[private] applies to a function or to an `impl` block",
            );
            return Err((item, e));
        }
    };
    let mut errors: Option<syn::Error> = None;
    for it in &mut imp.items {
        if let syn::ImplItem::Fn(m) = it
            && let Err(e) = rewrite::function(&m.sig, &mut m.block, optimize)
        {
            m.block = syn::parse_quote!({ ::core::unreachable!("rejected by #[private]") });
            match &mut errors {
                Some(all) => all.combine(e),
                None => errors = Some(e),
            }
        }
    }
    match errors {
        Some(e) => Err((imp.into_token_stream(), e)),
        None => Ok(imp.into_token_stream()),
    }
}

fn parse_args(attr: proc_macro2::TokenStream) -> syn::Result<bool> {
    let mut optimize = true;
    if attr.is_empty() {
        return Ok(optimize);
    }
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("optimize") {
            let v: syn::LitBool = meta.value()?.parse()?;
            optimize = v.value;
            Ok(())
        } else {
            Err(meta.error(
                "unknown argument: #[private] accepts `optimize = true` or `optimize = false`",
            ))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(optimize)
}
