//! Real multi-process tests of the server providers: separate OS processes on one PostgreSQL
//! (`TIERLOCK_PG_URL`) or SQL Server (`TIERLOCK_MSSQL_URL`); each test prints that it was skipped
//! when its server is not configured. The `*_fencing` modules run the fencing-token scenarios
//! with the providers' `.fencing(true)` (worker kinds `postgres-fencing`, `mssql-fencing`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use tierlock_testkit::{multiprocess, server_url};

fn worker() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tierlock-worker"))
}

/// The provider arguments for `kind` in a namespace of its own, or `None` (skipped).
fn provider(kind: &str, var: &str, test: &str) -> Option<Vec<String>> {
    let url = server_url(var)?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let namespace = format!("tierlock-mp:{test}:{}:{nanos}", std::process::id());
    Some(vec![kind.to_owned(), url, namespace])
}

macro_rules! scenarios {
    ($module:ident, $kind:literal, $var:literal) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn four_processes_count_to_8000() {
                let Some(provider) = provider($kind, $var, "count") else {
                    return;
                };
                let scratch = tempfile::tempdir().unwrap();
                multiprocess::mutual_exclusion(worker(), &provider, scratch.path()).await;
            }

            #[tokio::test]
            async fn a_killed_holder_frees_the_lock() {
                let Some(provider) = provider($kind, $var, "kill") else {
                    return;
                };
                let took = multiprocess::killed_holder_is_released(worker(), &provider).await;
                eprintln!("the waiter got the lock {took:?} after the holder was killed");
            }

            #[tokio::test]
            async fn a_busy_process_hands_the_lock_over() {
                let Some(provider) = provider($kind, $var, "busy") else {
                    return;
                };
                let took = multiprocess::busy_process_hands_over(worker(), &provider).await;
                eprintln!("the asking process waited {took:?}");
            }
        }
    };
}

macro_rules! fencing_scenarios {
    ($module:ident, $kind:literal, $var:literal) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn tokens_strictly_increase_across_processes() {
                let Some(provider) = provider($kind, $var, "tokens") else {
                    return;
                };
                multiprocess::tokens_increase_across_processes(worker(), &provider, &provider, 200)
                    .await;
            }

            #[tokio::test]
            async fn tokens_strictly_increase_across_a_killed_holder() {
                let Some(provider) = provider($kind, $var, "kill-token") else {
                    return;
                };
                let tokens =
                    multiprocess::tokens_increase_across_a_killed_holder(worker(), &provider).await;
                eprintln!("tokens before and after the kill: {tokens:?}");
            }

            #[tokio::test]
            async fn four_processes_count_to_8000() {
                let Some(provider) = provider($kind, $var, "count-fencing") else {
                    return;
                };
                let scratch = tempfile::tempdir().unwrap();
                multiprocess::mutual_exclusion(worker(), &provider, scratch.path()).await;
            }
        }
    };
}

scenarios!(postgres, "postgres", "TIERLOCK_PG_URL");
scenarios!(mssql, "mssql", "TIERLOCK_MSSQL_URL");
fencing_scenarios!(postgres_fencing, "postgres-fencing", "TIERLOCK_PG_URL");
fencing_scenarios!(mssql_fencing, "mssql-fencing", "TIERLOCK_MSSQL_URL");
