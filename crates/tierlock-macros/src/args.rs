//! The attribute's arguments: `#[locked(MANAGER, "NAME", timeout = .., crate = "..")]`.

use syn::parse::{Parse, ParseStream};
use syn::{Expr, LitStr, Path, Token};

use crate::duration;

/// The usage line every argument error ends with.
pub(crate) const USAGE: &str = "usage: #[locked(locks, \"order:{id}\")] or #[locked(self.locks, \"order:{id}\", timeout = \"5s\")]";

/// The parsed arguments of one `#[locked(..)]`.
pub(crate) struct Args {
    /// The expression that gives the manager: `locks`, `self.locks`, `&state.locks`, ...
    pub manager: Expr,
    /// The lock name's format string.
    pub name: LitStr,
    /// `timeout = ..`; `None` waits as long as it takes.
    pub timeout: Option<Timeout>,
    /// `crate = ".."`: the path of the crate the generated code names (`::tierlock` if absent).
    pub krate: Option<Path>,
}

/// How long `lock` may wait.
pub(crate) enum Timeout {
    /// `timeout = "5s"`, parsed at compile time.
    Millis(u64),
    /// `timeout = EXPR`, any expression of type `Duration`.
    Expr(Expr),
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Err(syn::Error::new(
                input.span(),
                format!("#[locked] needs the lock manager and the lock name; {USAGE}"),
            ));
        }
        if input.peek(LitStr) {
            return Err(syn::Error::new(
                input.span(),
                format!(
                    "missing lock manager: the first argument is the expression that gives the \
                 `LockManager` (a parameter such as `locks`, or `self.locks`), the second the \
                 lock name; {USAGE}"
                ),
            ));
        }
        let manager: Expr = input.parse()?;
        if input.is_empty() || (input.peek(Token![,]) && input.peek2(syn::parse::End)) {
            return Err(syn::Error::new_spanned(
                &manager,
                format!("missing lock name after the lock manager; {USAGE}"),
            ));
        }
        input.parse::<Token![,]>()?;
        let name = if input.peek(LitStr) {
            input.parse::<LitStr>()?
        } else {
            return Err(syn::Error::new(
                input.span(),
                format!(
                    "the lock name must be a string literal: a format string over the function's \
                 parameters such as \"order:{{id}}\"; {USAGE}"
                ),
            ));
        };

        let mut timeout = None;
        let mut krate = None;
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            if input.peek(Token![crate]) {
                let key = input.parse::<Token![crate]>()?;
                input.parse::<Token![=]>()?;
                let path: LitStr = input.parse()?;
                if krate.is_some() {
                    return Err(syn::Error::new_spanned(key, "`crate` is given twice"));
                }
                krate = Some(path.parse::<Path>().map_err(|_| {
                    syn::Error::new(
                        path.span(),
                        "`crate` must be a path such as \"::tierlock\" or \"tierlock_core\"",
                    )
                })?);
                continue;
            }
            let key: syn::Ident = input.parse().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "expected an option: `timeout = ..` or `crate = \"..\"`",
                )
            })?;
            if key != "timeout" {
                return Err(syn::Error::new_spanned(
                    &key,
                    format!("unknown option `{key}`: expected `timeout = ..` or `crate = \"..\"`"),
                ));
            }
            input.parse::<Token![=]>()?;
            if timeout.is_some() {
                return Err(syn::Error::new_spanned(&key, "`timeout` is given twice"));
            }
            timeout = Some(if input.peek(LitStr) {
                let text: LitStr = input.parse()?;
                let millis = duration::parse_millis(&text.value()).map_err(|problem| {
                    syn::Error::new(
                        text.span(),
                        format!(
                            "invalid timeout {:?}: {problem}; write a number and a unit \
                             (ms, s, m, h) such as \"5s\", \"250ms\", \"1m30s\", or \"0\" \
                             for a single attempt",
                            text.value()
                        ),
                    )
                })?;
                Timeout::Millis(millis)
            } else {
                Timeout::Expr(input.parse()?)
            });
        }
        Ok(Args {
            manager,
            name,
            timeout,
            krate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{Args, Timeout};
    use quote::ToTokens;

    fn parse(tokens: &str) -> syn::Result<Args> {
        syn::parse_str(tokens)
    }

    fn error(tokens: &str) -> String {
        match parse(tokens) {
            Ok(_) => panic!("{tokens} parsed"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn manager_and_name() {
        let args = parse(r#"locks, "order:{id}""#).unwrap();
        assert_eq!(args.manager.to_token_stream().to_string(), "locks");
        assert_eq!(args.name.value(), "order:{id}");
        assert!(args.timeout.is_none() && args.krate.is_none());
    }

    #[test]
    fn any_manager_expression() {
        for manager in [
            "self.locks",
            "&state.locks",
            "self.locks.clone()",
            "state.inner().locks",
            "&*LOCKS",
        ] {
            let args = parse(&format!(r#"{manager}, "n","#)).unwrap();
            let expected: syn::Expr = syn::parse_str(manager).unwrap();
            assert_eq!(
                args.manager.to_token_stream().to_string(),
                expected.to_token_stream().to_string()
            );
        }
    }

    #[test]
    fn timeouts() {
        let args = parse(r#"locks, "n", timeout = "1m30s""#).unwrap();
        assert!(matches!(args.timeout, Some(Timeout::Millis(90_000))));
        let args = parse(r#"locks, "n", timeout = Duration::from_secs(5),"#).unwrap();
        let Some(Timeout::Expr(expr)) = args.timeout else {
            panic!("not an expression")
        };
        assert_eq!(
            expr.to_token_stream().to_string(),
            "Duration :: from_secs (5)"
        );
        assert!(error(r#"locks, "n", timeout = "5x""#).starts_with(
            "invalid timeout \"5x\": unknown unit \"x\"; write a number and a unit (ms, s, m, h)"
        ));
        assert_eq!(
            error(r#"locks, "n", timeout = "1s", timeout = "2s""#),
            "`timeout` is given twice"
        );
    }

    #[test]
    fn crate_path() {
        let args = parse(r#"locks, "n", crate = "tierlock_core""#).unwrap();
        assert_eq!(
            args.krate.unwrap().to_token_stream().to_string(),
            "tierlock_core"
        );
        let args = parse(r#"locks, "n", timeout = "1s", crate = "::my::tierlock""#).unwrap();
        assert_eq!(
            args.krate.unwrap().to_token_stream().to_string(),
            ":: my :: tierlock"
        );
        assert!(error(r#"locks, "n", crate = "not a path""#).starts_with("`crate` must be a path"));
    }

    #[test]
    fn missing_or_misplaced_arguments() {
        assert!(error("").starts_with("#[locked] needs the lock manager and the lock name"));
        assert!(error(r#""order:{id}""#).starts_with("missing lock manager"));
        assert!(error(r#""order:{id}", timeout = "5s""#).starts_with("missing lock manager"));
        assert!(error("locks").starts_with("missing lock name"));
        assert!(error("locks,").starts_with("missing lock name"));
        assert!(error("locks, name").starts_with("the lock name must be a string literal"));
        assert!(error(r#"locks, "n", wait = "5s""#).starts_with("unknown option `wait`"));
        assert!(error(r#"locks, "n", 5"#).starts_with("expected an option"));
    }
}
