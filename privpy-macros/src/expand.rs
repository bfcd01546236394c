//! The pipeline: validate every function of the item (collecting every diagnostic),
//! then rewrite each, then emit. On error the item is emitted with each rejected body
//! replaced by `unreachable!()`, beside the `compile_error!`s: the user sees
//! privpy's messages and no cascade of errors from code that cannot type-check.

use crate::parse::{Args, Function, Item};
use crate::{passes, validate};
use proc_macro2::TokenStream;
use quote::ToTokens;

/// Expands `#[private(attr)] item`.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = Args::parse(attr);
    let mut parsed = match syn::parse2::<Item>(item.clone()) {
        Ok(i) => i,
        Err(e) => {
            let mut out = item;
            out.extend(e.to_compile_error());
            return out;
        }
    };
    let args = match args {
        Ok(a) => a,
        Err(e) => {
            for f in parsed.functions() {
                stub(f);
            }
            let mut out = parsed.into_token_stream();
            out.extend(e.to_compile_error());
            return out;
        }
    };
    let mut errors: Option<syn::Error> = None;
    for f in parsed.functions() {
        match validate::check(f.sig, f.block) {
            Ok(()) => passes::function(f.sig, f.block, &args.krate, args.optimize),
            Err(e) => {
                stub(f);
                match &mut errors {
                    Some(all) => all.combine(e),
                    None => errors = Some(e),
                }
            }
        }
    }
    let mut out = parsed.into_token_stream();
    if let Some(e) = errors {
        out.extend(e.to_compile_error());
    }
    out
}

/// Replaces a rejected body by `unreachable!()`.
fn stub(f: Function<'_>) {
    *f.block = syn::parse_quote!({ ::core::unreachable!("rejected by #[private]") });
    f.attrs.push(syn::parse_quote!(#[allow(unused)]));
}
