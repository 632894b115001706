//! Parsing of lock URLs: which provider, the text its driver gets, and tierlock's own query
//! parameters. Pure string work; no message ever holds the input.

use std::path::PathBuf;
use std::time::Duration;

use super::{ConnectError, FileMode, ProviderKind, Target};
use crate::duration::parse_duration;

/// A parsed lock URL.
pub(super) struct Parsed {
    pub(super) target: Target,
    pub(super) params: Params,
}

/// tierlock's query parameters.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Params {
    pub(super) namespace: Option<String>,
    pub(super) ttl: Option<Duration>,
    pub(super) mode: Option<FileMode>,
    pub(super) fencing: Option<bool>,
}

/// Tells what `input` names: a path, or `scheme:…`.
pub(super) fn parse(input: &str) -> Result<Parsed, ConnectError> {
    let text = input.trim();
    if is_path(text) {
        return Ok(plain(Target::File(PathBuf::from(text))));
    }
    let (scheme, rest) = text.split_once(':').ok_or(ConnectError::NotAUrl)?;
    let valid_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return Err(ConnectError::NotAUrl);
    }
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "file" => file(rest),
        "postgres" | "postgresql" if rest.starts_with("//") => postgres(&scheme, rest),
        "jdbc" => match rest.split_once("://") {
            Some((sub, tail)) if sub.eq_ignore_ascii_case("sqlserver") => {
                Ok(plain(Target::Mssql(format!("jdbc:sqlserver://{tail}"))))
            }
            _ => Err(ConnectError::UnknownScheme {
                scheme: "jdbc".to_owned(),
            }),
        },
        "mssql" if !rest.starts_with("//") && !rest.trim().is_empty() => {
            Ok(plain(Target::Mssql(rest.trim().to_owned())))
        }
        "sqlserver" | "mssql" => Err(ConnectError::SqlServerScheme),
        "sqlite" => sqlite(rest),
        "redis" | "rediss" | "redis+unix" if rest.starts_with("//") => redis(&scheme, rest),
        "memory" => memory(rest),
        _ => Err(ConnectError::UnknownScheme { scheme }),
    }
}

fn plain(target: Target) -> Parsed {
    Parsed {
        target,
        params: Params::default(),
    }
}

/// An absolute path (`/srv/locks`, `\\server\share`, `C:\locks`, `C:/locks`) or a relative one
/// written as such (`.`, `./locks`, `..\locks`). A Windows drive letter is a path, never a
/// one-letter scheme.
fn is_path(text: &str) -> bool {
    let bytes = text.as_bytes();
    let drive = bytes.len() >= 3
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && matches!(bytes[2], b'/' | b'\\');
    drive
        || text.starts_with(['/', '\\'])
        || matches!(text, "." | "..")
        || ["./", ".\\", "../", "..\\"]
            .iter()
            .any(|prefix| text.starts_with(prefix))
}

/// `file:///abs`, `file:/abs`, `file://localhost/abs`, `file:///C:/locks`; `?mode=…&ttl=…`.
fn file(rest: &str) -> Result<Parsed, ConnectError> {
    const FORM: &str = "file:";
    let (path, query) = split_query(rest);
    let path = match path.strip_prefix("//") {
        Some(after) => {
            let host_end = after.find('/').unwrap_or(after.len());
            let (host, path) = after.split_at(host_end);
            if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
                return Err(ConnectError::InvalidPath {
                    form: FORM,
                    problem: "URLs with a host are not supported: mount the share and give its \
                              local path, file:///mnt/share/locks",
                });
            }
            path
        }
        None => path,
    };
    if !path.starts_with('/') {
        return Err(ConnectError::InvalidPath {
            form: FORM,
            problem: "needs an absolute path, file:///srv/locks (write a relative one as ./locks)",
        });
    }
    let path = decode_path(FORM, path)?;
    let params = own_params(query, ProviderKind::File, &mut Vec::new())?;
    Ok(Parsed {
        target: Target::File(windows_drive(path)),
        params,
    })
}

/// `sqlite:/abs.db`, `sqlite:rel.db`, `sqlite:///abs.db` (a host is refused: SQLite files are
/// local); `?ttl=…`.
fn sqlite(rest: &str) -> Result<Parsed, ConnectError> {
    const FORM: &str = "sqlite:";
    let bad = ConnectError::InvalidPath {
        form: FORM,
        problem: "needs the path of a database file on this host: sqlite:/path/to.db or \
                  sqlite:///path/to.db",
    };
    let (path, query) = split_query(rest);
    let path = match path.strip_prefix("//") {
        Some(after) if after.starts_with('/') => after,
        Some(_) => return Err(bad),
        None => path,
    };
    if path.is_empty() {
        return Err(bad);
    }
    let path = decode_path(FORM, path)?;
    let params = own_params(query, ProviderKind::Sqlite, &mut Vec::new())?;
    Ok(Parsed {
        target: Target::Sqlite(windows_drive(path)),
        params,
    })
}

/// `memory:`, nothing after it.
fn memory(rest: &str) -> Result<Parsed, ConnectError> {
    let (path, query) = split_query(rest);
    if !path.is_empty() {
        return Err(ConnectError::InvalidPath {
            form: "memory:",
            problem: "takes no path (write memory:)",
        });
    }
    let params = own_params(query, ProviderKind::Memory, &mut Vec::new())?;
    Ok(Parsed {
        target: Target::Memory,
        params,
    })
}

/// `postgres://…`: tierlock's parameters out, the rest as written for tokio-postgres, which
/// refuses parameters it does not know. The query starts where tokio-postgres starts it: at
/// the first `?` after the credentials, which end at the first `@` (so a password may hold
/// `?`).
fn postgres(scheme: &str, rest: &str) -> Result<Parsed, ConnectError> {
    let after_slashes = &rest[2..];
    let credentials_end = after_slashes.find('@').map_or(0, |at| at + 1);
    let (head, query) = match after_slashes[credentials_end..].find('?') {
        Some(q) => {
            let q = credentials_end + q;
            (&after_slashes[..q], Some(&after_slashes[q + 1..]))
        }
        None => (after_slashes, None),
    };
    let mut kept = Vec::new();
    let params = own_params(query, ProviderKind::Postgres, &mut kept)?;
    let url = join(format!("{scheme}://{head}"), &kept, "");
    Ok(Parsed {
        target: Target::Postgres(url),
        params,
    })
}

/// `redis://…`: tierlock's parameters out, the rest (`protocol`, and `db`, `user`, `pass` of
/// `redis+unix`) for the redis crate, which ignores parameters it does not know. The query is
/// between the first `?` and the fragment (`#insecure`), as the `url` crate reads it.
fn redis(scheme: &str, rest: &str) -> Result<Parsed, ConnectError> {
    let (before_fragment, fragment) = match rest.find('#') {
        Some(hash) => rest.split_at(hash),
        None => (rest, ""),
    };
    let (head, query) = split_query(before_fragment);
    let mut kept = Vec::new();
    let params = own_params(query, ProviderKind::Redis, &mut kept)?;
    let url = join(format!("{scheme}:{head}"), &kept, fragment);
    Ok(Parsed {
        target: Target::Redis(url),
        params,
    })
}

/// `head?kept…fragment`, without `?` when nothing is kept.
fn join(mut head: String, kept: &[&str], fragment: &str) -> String {
    if !kept.is_empty() {
        head.push('?');
        head.push_str(&kept.join("&"));
    }
    head.push_str(fragment);
    head
}

/// Splits at the first `?`.
fn split_query(text: &str) -> (&str, Option<&str>) {
    match text.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (text, None),
    }
}

/// Takes tierlock's parameters out of `query`. The others are pushed to `kept` as written for
/// a driver (PostgreSQL, Redis), or refused for providers without one.
fn own_params<'a>(
    query: Option<&'a str>,
    provider: ProviderKind,
    kept: &mut Vec<&'a str>,
) -> Result<Params, ConnectError> {
    let mut params = Params::default();
    let Some(query) = query else {
        return Ok(params);
    };
    let has_driver = matches!(provider, ProviderKind::Postgres | ProviderKind::Redis);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key);
        let value = || decode(raw_value);
        match key.as_deref() {
            Some("namespace") => {
                let namespace = value().ok_or(ConnectError::InvalidParameter {
                    name: "namespace",
                    expected: "UTF-8 text",
                    source: None,
                })?;
                set(&mut params.namespace, "namespace", namespace)?;
            }
            Some("ttl") => {
                let text = value().unwrap_or_default();
                let ttl = parse_duration(&text).map_err(|err| ConnectError::InvalidParameter {
                    name: "ttl",
                    expected: "a duration such as 10s, 500ms, 1m30s",
                    source: Some(err),
                })?;
                set(&mut params.ttl, "ttl", ttl)?;
            }
            Some("mode") => {
                let mode = value().unwrap_or_default().parse::<FileMode>()?;
                set(&mut params.mode, "mode", mode)?;
            }
            Some("fencing") => {
                let on = match value().as_deref() {
                    Some("true") => true,
                    Some("false") => false,
                    _ => {
                        return Err(ConnectError::InvalidParameter {
                            name: "fencing",
                            expected: "true or false",
                            source: None,
                        });
                    }
                };
                set(&mut params.fencing, "fencing", on)?;
            }
            _ if has_driver => kept.push(pair),
            other => {
                return Err(ConnectError::UnknownParameter {
                    provider,
                    name: other.map_or_else(|| raw_key.to_owned(), str::to_owned),
                });
            }
        }
    }
    Ok(params)
}

fn set<T>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), ConnectError> {
    if slot.is_some() {
        return Err(ConnectError::DuplicateParameter { name });
    }
    *slot = Some(value);
    Ok(())
}

/// Percent-decodes `text` (`%2F` → `/`; a `%` not followed by two hex digits stays as is);
/// `None` if the result is not UTF-8.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) => match (hex(hi), hex(lo)) {
                (Some(hi), Some(lo)) => {
                    // Two hex digits make at most 0xff.
                    out.push(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX));
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn decode_path(form: &'static str, path: &str) -> Result<String, ConnectError> {
    decode(path).ok_or(ConnectError::InvalidPath {
        form,
        problem: "path is not UTF-8 once percent-decoded",
    })
}

/// `/C:/locks` (a drive in a URL's path) is `C:/locks`.
fn windows_drive(path: String) -> PathBuf {
    let bytes = path.as_bytes();
    let drive = bytes.len() >= 3
        && bytes[0] == b'/'
        && bytes[1].is_ascii_alphabetic()
        && bytes[2] == b':'
        && (bytes.len() == 3 || matches!(bytes[3], b'/' | b'\\'));
    if drive {
        PathBuf::from(&path[1..])
    } else {
        PathBuf::from(path)
    }
}
