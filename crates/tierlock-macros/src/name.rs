//! The lock name: a format string whose placeholders name parameters of the function.
//!
//! The string follows `format!`'s syntax (`{{`/`}}` escapes, `{id}`, `{id:04}`, `{id:>width$}`),
//! with one rule added: every argument must be *named*, and the name must be a parameter of the
//! function. Positional arguments (`{}`, `{0}`, `.*`) and fields (`{self.id}`, which `format!`
//! does not take either) are rejected with an error that says so.

/// What is wrong with a lock name's format string.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NameProblem {
    /// A placeholder names no parameter.
    Unknown(String),
    /// A placeholder is positional (`{}`, `{0}`, a `.*` precision).
    Positional(String),
    /// A placeholder is an expression rather than a name (`{self.id}`, `{a + b}`).
    NotAName(String),
    /// An unmatched `{` or `}`.
    Unbalanced,
    /// The name is the empty string.
    Empty,
}

/// The names the placeholders of `text` use, each once, in order of first use; or every problem
/// found (the names are checked against `params`).
pub(crate) fn placeholders(text: &str, params: &[String]) -> Result<Vec<String>, Vec<NameProblem>> {
    if text.is_empty() {
        return Err(vec![NameProblem::Empty]);
    }
    let mut names: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    let mut use_name = |name: &str, whole: &str, problems: &mut Vec<NameProblem>| {
        if name.is_empty() || name.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(NameProblem::Positional(whole.to_owned()));
        } else if !is_identifier(name) {
            problems.push(NameProblem::NotAName(whole.to_owned()));
        } else if !params.iter().any(|p| p == name) {
            problems.push(NameProblem::Unknown(whole.to_owned()));
        } else if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    };

    let mut rest = text;
    while let Some(at) = rest.find(['{', '}']) {
        let (open, after) = (rest.as_bytes()[at], &rest[at + 1..]);
        if after.as_bytes().first() == Some(&open) {
            rest = &after[1..]; // `{{` or `}}`
            continue;
        }
        if open == b'}' {
            problems.push(NameProblem::Unbalanced);
            break;
        }
        let Some(close) = after.find('}') else {
            problems.push(NameProblem::Unbalanced);
            break;
        };
        let inner = &after[..close];
        let whole = &rest[at..at + close + 2];
        rest = &after[close + 1..];
        if inner.contains('{') {
            problems.push(NameProblem::Unbalanced);
            break;
        }
        let (argument, spec) = inner.split_once(':').unwrap_or((inner, ""));
        use_name(argument.trim(), whole, &mut problems);
        for name in spec_arguments(spec) {
            use_name(name, whole, &mut problems);
        }
    }
    if problems.is_empty() {
        Ok(names)
    } else {
        Err(problems)
    }
}

/// The arguments a format spec refers to: `width$`/`precision$` names, and `""` for `.*`.
fn spec_arguments(spec: &str) -> Vec<&str> {
    let mut found = Vec::new();
    if spec.contains(".*") {
        found.push("");
    }
    let mut rest = spec;
    while let Some(dollar) = rest.find('$') {
        let before = &rest[..dollar];
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        found.push(&before[start..]);
        rest = &rest[dollar + 1..];
    }
    found
}

/// Whether `s` is a Rust identifier (a parameter name), `r#` raw ones excluded.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
        && s != "_"
}

#[cfg(test)]
mod tests {
    use super::{NameProblem::*, placeholders};

    fn params() -> Vec<String> {
        ["locks", "id", "tenant", "width"]
            .map(String::from)
            .to_vec()
    }

    fn names(text: &str) -> Result<Vec<String>, Vec<super::NameProblem>> {
        placeholders(text, &params())
    }

    #[test]
    fn named_placeholders_and_specs() {
        assert_eq!(names("order"), Ok(vec![]));
        assert_eq!(names("order:{id}"), Ok(vec!["id".to_owned()]));
        assert_eq!(names("order:{id:04}"), Ok(vec!["id".to_owned()]));
        assert_eq!(
            names("{tenant}:{id:x}:{id}"),
            Ok(vec!["tenant".into(), "id".into()])
        );
        assert_eq!(
            names("{id:>width$}"),
            Ok(vec!["id".to_owned(), "width".to_owned()])
        );
        assert_eq!(names("{id:.width$}"), Ok(vec!["id".into(), "width".into()]));
        assert_eq!(names("{id:?}"), Ok(vec!["id".to_owned()]));
    }

    #[test]
    fn escaped_braces_are_text() {
        assert_eq!(names("{{id}}"), Ok(vec![]));
        assert_eq!(names("{{{id}}}"), Ok(vec!["id".to_owned()]));
        assert_eq!(names("a}}b{{c"), Ok(vec![]));
    }

    #[test]
    fn unknown_names() {
        assert_eq!(names("order:{idd}"), Err(vec![Unknown("{idd}".into())]));
        assert_eq!(
            names("{x}:{id}:{y:02}"),
            Err(vec![Unknown("{x}".into()), Unknown("{y:02}".into())])
        );
        assert_eq!(names("{id:>w$}"), Err(vec![Unknown("{id:>w$}".into())]));
        // `self` is not a parameter name here: methods use fields through a parameter.
        assert_eq!(names("{self}"), Err(vec![Unknown("{self}".into())]));
    }

    #[test]
    fn positional_and_expressions() {
        assert_eq!(names("order:{}"), Err(vec![Positional("{}".into())]));
        assert_eq!(names("order:{0}"), Err(vec![Positional("{0}".into())]));
        assert_eq!(names("{id:.*}"), Err(vec![Positional("{id:.*}".into())]));
        assert_eq!(names("{:?}"), Err(vec![Positional("{:?}".into())]));
        assert_eq!(names("{self.id}"), Err(vec![NotAName("{self.id}".into())]));
        assert_eq!(names("{id + 1}"), Err(vec![NotAName("{id + 1}".into())]));
    }

    #[test]
    fn unbalanced_and_empty() {
        assert_eq!(names("order:{id"), Err(vec![Unbalanced]));
        assert_eq!(names("order:id}"), Err(vec![Unbalanced]));
        assert_eq!(names("{a{id}"), Err(vec![Unbalanced]));
        assert_eq!(names(""), Err(vec![Empty]));
    }
}
