//! `tierlock status`: the locks held right now on a directory or server, by any process, as a
//! table or as JSON (`--json`). The listing itself is `tierlock::ConnectOptions::held_locks`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tierlock::{ConnectOptions, HeldLock};

use crate::{ProviderArgs, chain, fail};

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    provider: ProviderArgs,

    /// The namespace whose locks to list on a --url server (PostgreSQL, SQL Server, Redis).
    #[arg(long, value_name = "NS", conflicts_with = "dir")]
    namespace: Option<String>,

    /// Print a JSON array of objects (key, name, name_hint, holder, fencing_token,
    /// expires_in_ms, waiters; null where the backend cannot tell) instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: StatusArgs) -> ExitCode {
    let mut options = match (&args.provider.dir, &args.provider.url) {
        (Some(dir), _) => ConnectOptions::file(dir),
        (None, Some(url)) => match url.parse::<ConnectOptions>() {
            Ok(options) => options,
            Err(err) => return fail(&chain(&err)),
        },
        (None, None) => return fail("no provider given (use --dir or --url)"),
    };
    if let Some(namespace) = &args.namespace {
        options = options.namespace(namespace);
    }
    let held = match options.held_locks().await {
        Ok(held) => held,
        Err(err) => return fail(&chain(&err)),
    };
    let out = if args.json { json(&held) } else { table(&held) };
    print!("{out}");
    ExitCode::SUCCESS
}

fn json(held: &[HeldLock]) -> String {
    let rows: Vec<serde_json::Value> = held
        .iter()
        .map(|lock| {
            serde_json::json!({
                "key": lock.key,
                "name": lock.name,
                "name_hint": lock.name_hint,
                "holder": lock.holder,
                "fencing_token": lock.fencing_token,
                "expires_in_ms": lock.expires_in.map(|left| u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
                "waiters": lock.waiters,
            })
        })
        .collect();
    let mut text = serde_json::Value::Array(rows).to_string();
    text.push('\n');
    text
}

fn table(held: &[HeldLock]) -> String {
    if held.is_empty() {
        return "no locks held\n".to_owned();
    }
    let dash = || "-".to_owned();
    let mut rows = vec![[
        "NAME".to_owned(),
        "HOLDER".to_owned(),
        "TOKEN".to_owned(),
        "EXPIRES".to_owned(),
        "WAITERS".to_owned(),
        "KEY".to_owned(),
    ]];
    for lock in held {
        let name = match (&lock.name, &lock.name_hint) {
            (Some(name), _) => name.clone(),
            (None, Some(hint)) => format!("{hint}…"),
            (None, None) => dash(),
        };
        rows.push([
            name,
            lock.holder.clone().unwrap_or_else(dash),
            lock.fencing_token.map_or_else(dash, |t| t.to_string()),
            lock.expires_in.map_or_else(dash, expires),
            lock.waiters.map_or_else(dash, |w| w.to_string()),
            lock.key.clone(),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn expires(left: Duration) -> String {
    format!("in {:.1}s", left.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_json() {
        let held = [
            HeldLock::new("nightly-aaaa.lock")
                .with_name("nightly")
                .with_holder("pid 7")
                .with_fencing_token(3)
                .with_waiters(1),
            HeldLock::new("k2")
                .with_name_hint("job_x")
                .with_expires_in(Duration::from_millis(1500)),
        ];
        let text = table(&held);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("NAME"), "{text}");
        assert!(lines[1].starts_with("nightly "), "{text}");
        assert!(lines[1].ends_with("nightly-aaaa.lock"), "{text}");
        assert!(
            lines[2].contains("job_x…") && lines[2].contains("in 1.5s"),
            "{text}"
        );
        assert_eq!(table(&[]), "no locks held\n");

        let value: serde_json::Value = serde_json::from_str(&json(&held)).unwrap();
        assert_eq!(value[0]["name"], "nightly");
        assert_eq!(value[0]["fencing_token"], 3);
        assert_eq!(value[1]["name"], serde_json::Value::Null);
        assert_eq!(value[1]["expires_in_ms"], 1500);
        assert_eq!(json(&[]), "[]\n");
    }
}
