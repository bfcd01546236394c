//! Parsing: the attribute's arguments and a typed view of the annotated item.

use syn::parse::{Parse, ParseStream};
use syn::{ImplItemFn, ItemFn, ItemImpl};

/// `#[private(optimize = …, crate = …)]`.
pub(crate) struct Args {
    /// Whether the optimizer runs (default `true`).
    pub(crate) optimize: bool,
    /// The path of the privpy crate in generated code (default `::privpy`).
    pub(crate) krate: syn::Path,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            optimize: true,
            krate: syn::parse_quote!(::privpy),
        }
    }
}

impl Args {
    /// Parses the attribute's arguments.
    pub(crate) fn parse(attr: proc_macro2::TokenStream) -> syn::Result<Args> {
        let mut args = Args::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("optimize") {
                let v: syn::LitBool = meta.value()?.parse()?;
                args.optimize = v.value;
                Ok(())
            } else if meta.path.is_ident("crate") {
                let value = meta.value()?;
                let parsed = if value.peek(syn::LitStr) {
                    value.parse::<syn::LitStr>().and_then(|l| l.parse())
                } else {
                    value.parse()
                };
                args.krate = parsed.map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "`crate` takes the path of the privpy crate, for example `crate = ::my_privpy`",
                    )
                })?;
                Ok(())
            } else {
                Err(meta.error(
                    "unknown argument: #[private] accepts `optimize = true | false` and `crate = path::to::privpy`",
                ))
            }
        });
        syn::parse::Parser::parse2(parser, attr)?;
        Ok(args)
    }
}

/// The annotated item: a function, or an `impl` block whose methods are each a
/// private function.
pub(crate) enum Item {
    Fn(ItemFn),
    Impl(ItemImpl),
}

impl Parse for Item {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(syn::Attribute::parse_outer)?;
        let ahead = input.fork();
        ahead.parse::<syn::Visibility>()?;
        let is_impl = ahead.peek(syn::Token![impl])
            || (ahead.peek(syn::Token![unsafe]) && ahead.peek2(syn::Token![impl]));
        if is_impl {
            let mut i: ItemImpl = input.parse()?;
            i.attrs = attrs;
            Ok(Item::Impl(i))
        } else {
            let mut f: ItemFn = input.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "#[private] applies to a function or to an `impl` block",
                )
            })?;
            f.attrs = attrs;
            Ok(Item::Fn(f))
        }
    }
}

/// One function to check and rewrite: its signature and body.
pub(crate) struct Function<'i> {
    pub(crate) attrs: &'i mut Vec<syn::Attribute>,
    pub(crate) sig: &'i syn::Signature,
    pub(crate) block: &'i mut syn::Block,
}

impl Item {
    /// The functions of the item (the methods of an `impl` block).
    pub(crate) fn functions(&mut self) -> Vec<Function<'_>> {
        match self {
            Item::Fn(f) => vec![Function {
                attrs: &mut f.attrs,
                sig: &f.sig,
                block: &mut f.block,
            }],
            Item::Impl(i) => i
                .items
                .iter_mut()
                .filter_map(|it| match it {
                    syn::ImplItem::Fn(ImplItemFn {
                        attrs, sig, block, ..
                    }) => Some(Function { attrs, sig, block }),
                    _ => None,
                })
                .collect(),
        }
    }
}

impl quote::ToTokens for Item {
    fn to_tokens(&self, tokens: &mut proc_macro2::TokenStream) {
        match self {
            Item::Fn(f) => f.to_tokens(tokens),
            Item::Impl(i) => i.to_tokens(tokens),
        }
    }
}
