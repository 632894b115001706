//! The code `#[locked]` generates around a function.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType};

use crate::args::{Args, Timeout};
use crate::name::{self, NameProblem};

/// Expands `#[locked(args)] item`. On an error, the function is emitted unchanged next to the
/// error, so that the error is the only one the compiler reports.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: ItemFn = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "#[locked] goes on an `async fn` with a body: a free function, a method or a \
                 trait method with a default body",
            );
            return with_item(error, item);
        }
    };
    let result = syn::parse2::<Args>(args).and_then(|args| wrap(&args, &item));
    match result {
        Ok(tokens) => tokens,
        Err(error) => with_item(error, item.into_token_stream()),
    }
}

fn with_item(error: syn::Error, item: TokenStream) -> TokenStream {
    let error = error.to_compile_error();
    quote!(#error #item)
}

/// The function with its body run under the lock.
fn wrap(args: &Args, item: &ItemFn) -> syn::Result<TokenStream> {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = item;
    if sig.asyncness.is_none() {
        let fn_token = &sig.fn_token;
        let ident = &sig.ident;
        return Err(syn::Error::new_spanned(
            quote!(#fn_token #ident),
            "#[locked] works on `async fn` only: it awaits the lock (in blocking code, call \
             `LockManager::lock_blocking` instead)",
        ));
    }
    let ReturnType::Type(_, return_type) = &sig.output else {
        let fn_token = &sig.fn_token;
        let ident = &sig.ident;
        return Err(syn::Error::new_spanned(
            quote!(#fn_token #ident),
            "#[locked] needs a function that returns `Result<T, E>` with \
             `E: From<tierlock::LockError>`: lock errors are returned through it",
        ));
    };

    let krate = match &args.krate {
        Some(path) => path.to_token_stream(),
        None => quote!(::tierlock),
    };
    let name = lock_name(args, sig)?;
    let timeout = match &args.timeout {
        None => quote!(::core::time::Duration::MAX),
        Some(Timeout::Millis(millis)) => quote!(::core::time::Duration::from_millis(#millis)),
        Some(Timeout::Expr(expr)) => expr.to_token_stream(),
    };
    let manager = &args.manager;
    let manager = quote_spanned!(manager.span()=> &(#manager));

    // Locals of the generated code are hygienic (`mixed_site`): the function's body cannot see
    // them and they cannot shadow its parameters.
    let local = |name: &str| Ident::new(name, Span::mixed_site());
    let (name_var, timeout_var, guard, output, error) = (
        local("__tierlock_name"),
        local("__tierlock_timeout"),
        local("__tierlock_guard"),
        local("__tierlock_output"),
        local("__tierlock_error"),
    );
    // The conversion into the function's error type. Its path carries the return type's span,
    // so a missing `From<LockError>` is labelled there; only the path, because a whole call
    // spanned as user code meets clippy's `useless_conversion` when `E` is `LockError` itself.
    let from = quote_spanned!(return_type.span()=> ::core::convert::From::from);
    let converted = quote!(#from(#error));

    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            let #name_var = #name;
            let #timeout_var: ::core::time::Duration = #timeout;
            let #guard = match #krate::LockManager::lock(#manager, &#name_var, #timeout_var).await {
                ::core::result::Result::Ok(#guard) => #guard,
                ::core::result::Result::Err(#error) => {
                    return ::core::result::Result::Err(#converted);
                }
            };
            // The body runs in this task (the same lock owner, so nested locks on the name
            // re-enter) inside a block of its own, so that its `return` and `?` come back here
            // and the lock is released after it; if this future is dropped, so is the guard.
            let #output = async move #block.await;
            match (#output, #guard.release().await) {
                (
                    ::core::result::Result::Ok(_),
                    ::core::result::Result::Err(#error @ #krate::LockError::Lost { .. }),
                ) => ::core::result::Result::Err(#converted),
                (#output, _) => #output,
            }
        }
    })
}

/// The expression of the lock name: the literal itself if it has no placeholder, else a
/// `format!` of it (whose implicit arguments are the parameters).
fn lock_name(args: &Args, sig: &syn::Signature) -> syn::Result<TokenStream> {
    let literal = &args.name;
    let params = parameter_names(sig);
    match name::placeholders(&literal.value(), &params) {
        Ok(used) if used.is_empty() && !literal.value().contains(['{', '}']) => {
            Ok(literal.to_token_stream())
        }
        Ok(_) => Ok(quote!(::std::format!(#literal))),
        Err(problems) => {
            let error = problems
                .into_iter()
                .map(|problem| {
                    syn::Error::new(
                        literal.span(),
                        describe(&problem, &params, sig.receiver().is_some()),
                    )
                })
                .reduce(|mut error, other| {
                    error.combine(other);
                    error
                });
            // `placeholders` reports at least one problem with an error; none would be no error.
            match error {
                Some(error) => Err(error),
                None => Ok(quote!(::std::format!(#literal))),
            }
        }
    }
}

fn describe(problem: &NameProblem, params: &[String], has_self: bool) -> String {
    let known = if params.is_empty() && has_self {
        "the function has no parameter besides `self`".to_owned()
    } else if params.is_empty() {
        "the function has no parameters".to_owned()
    } else {
        let list: Vec<String> = params.iter().map(|p| format!("`{p}`")).collect();
        format!("the function has {}", list.join(", "))
    };
    match problem {
        NameProblem::Unknown(placeholder) => format!(
            "unknown placeholder `{placeholder}` in the lock name: placeholders name parameters \
             of the function, and {known}"
        ),
        NameProblem::Positional(placeholder) => format!(
            "positional placeholder `{placeholder}` in the lock name: name a parameter instead, \
             as in `{{id}}` or `{{id:04}}` ({known})"
        ),
        NameProblem::NotAName(placeholder) => format!(
            "placeholder `{placeholder}` in the lock name is not a parameter name: placeholders \
             name parameters only (for a field, add a parameter or name the lock by hand with \
             `LockManager::lock`); {known}"
        ),
        NameProblem::Unbalanced => {
            "unmatched `{` or `}` in the lock name (write `{{` and `}}` for the characters)"
                .to_owned()
        }
        NameProblem::Empty => "the lock name is empty".to_owned(),
    }
}

/// The names the parameters bind, patterns included (`(a, b): (u32, u32)` binds `a` and `b`).
fn parameter_names(sig: &syn::Signature) -> Vec<String> {
    fn collect(pat: &Pat, out: &mut Vec<String>) {
        match pat {
            Pat::Ident(p) => {
                out.push(p.ident.unraw().to_string());
                if let Some((_, sub)) = &p.subpat {
                    collect(sub, out);
                }
            }
            Pat::Tuple(p) => p.elems.iter().for_each(|p| collect(p, out)),
            Pat::TupleStruct(p) => p.elems.iter().for_each(|p| collect(p, out)),
            Pat::Struct(p) => p.fields.iter().for_each(|f| collect(&f.pat, out)),
            Pat::Slice(p) => p.elems.iter().for_each(|p| collect(p, out)),
            Pat::Reference(p) => collect(&p.pat, out),
            Pat::Paren(p) => collect(&p.pat, out),
            Pat::Type(p) => collect(&p.pat, out),
            _ => {}
        }
    }
    let mut names = Vec::new();
    for input in &sig.inputs {
        if let FnArg::Typed(typed) = input {
            collect(&typed.pat, &mut names);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::expand;
    use quote::{ToTokens, quote};
    use syn::ItemFn;

    fn expanded(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
        expand(args, item).to_string()
    }

    fn error_of(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
        let out = expanded(args, item);
        assert!(out.starts_with(":: core :: compile_error !"), "{out}");
        out
    }

    #[test]
    fn keeps_signature_docs_and_attributes() {
        let item = quote! {
            /// Pays an order.
            #[must_use]
            #[cfg_attr(test, allow(dead_code))]
            pub(crate) async fn pay<'a, T: Clone>(&'a self, id: u64, extra: impl Send + 'a) -> Result<T, E>
            where
                T: Default,
            {
                Ok(T::default())
            }
        };
        let input: ItemFn = syn::parse2(item.clone()).unwrap();
        let output: ItemFn = syn::parse2(expand(
            quote!(self.locks, "order:{id:04}", timeout = "5s"),
            item,
        ))
        .unwrap();
        assert_eq!(
            output.sig.to_token_stream().to_string(),
            input.sig.to_token_stream().to_string()
        );
        assert_eq!(
            output.vis.to_token_stream().to_string(),
            input.vis.to_token_stream().to_string()
        );
        let attrs = |f: &ItemFn| -> Vec<String> {
            f.attrs
                .iter()
                .map(|a| a.to_token_stream().to_string())
                .collect()
        };
        assert_eq!(attrs(&output), attrs(&input));
        let body = output.block.to_token_stream().to_string();
        assert!(
            body.contains(":: tierlock :: LockManager :: lock"),
            "{body}"
        );
        assert!(
            body.contains(":: std :: format ! (\"order:{id:04}\")"),
            "{body}"
        );
        assert!(body.contains("Duration :: from_millis (5000u64)"), "{body}");
        assert!(
            body.contains("async move { Ok (T :: default ()) } . await"),
            "{body}"
        );
    }

    #[test]
    fn plain_names_and_defaults() {
        let out = expanded(
            quote!(locks, "nightly", crate = "tierlock_core"),
            quote!(
                async fn job(locks: &LockManager) -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(out.contains("= \"nightly\" ;"), "{out}");
        assert!(
            out.contains("tierlock_core :: LockManager :: lock"),
            "{out}"
        );
        assert!(out.contains("tierlock_core :: LockError :: Lost"), "{out}");
        assert!(out.contains(":: core :: time :: Duration :: MAX"), "{out}");
        // An escaped brace still needs `format!` to unescape it.
        let out = expanded(
            quote!(locks, "{{x}}"),
            quote!(
                async fn job(locks: &LockManager) -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(out.contains(":: std :: format ! (\"{{x}}\")"), "{out}");
    }

    #[test]
    fn timeout_expression_is_used_as_is() {
        let out = expanded(
            quote!(locks, "n", timeout = self.timeout),
            quote!(
                async fn job(&self, locks: &LockManager) -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(
            out.contains(": :: core :: time :: Duration = self . timeout ;"),
            "{out}"
        );
    }

    #[test]
    fn placeholders_may_name_pattern_bindings() {
        let out = expanded(
            quote!(locks, "{tenant}:{id}"),
            quote!(
                async fn job(locks: &LockManager, (tenant, id): (u32, u32)) -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn errors() {
        let f = quote!(
            async fn pay(locks: &LockManager, id: u64) -> Result<(), E> {
                Ok(())
            }
        );
        let out = error_of(quote!(locks, "order:{idd}"), f.clone());
        assert!(out.contains("unknown placeholder `{idd}`"), "{out}");
        assert!(out.contains("the function has `locks`, `id`"), "{out}");
        // The function itself is still emitted, unchanged.
        assert!(out.contains("async fn pay"), "{out}");

        let out = error_of(quote!(locks, "order:{}"), f.clone());
        assert!(out.contains("positional placeholder `{}`"), "{out}");
        let out = error_of(quote!("order:{id}"), f.clone());
        assert!(out.contains("missing lock manager"), "{out}");
        let out = error_of(quote!(locks, "x", timeout = "5"), f);
        assert!(out.contains("invalid timeout"), "{out}");

        let out = error_of(
            quote!(locks, "x"),
            quote!(
                fn pay(locks: &LockManager) -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(out.contains("works on `async fn` only"), "{out}");
        let out = error_of(
            quote!(locks, "x"),
            quote!(
                async fn pay(locks: &LockManager) {}
            ),
        );
        assert!(
            out.contains("needs a function that returns `Result<T, E>`"),
            "{out}"
        );
        let out = error_of(
            quote!(locks, "x"),
            quote!(
                struct S;
            ),
        );
        assert!(out.contains("goes on an `async fn`"), "{out}");
    }
}
