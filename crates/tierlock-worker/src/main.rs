//! `tierlock-worker PROVIDER… MODE…`: a separate OS process that takes named locks for the
//! multi-process tests (see `tierlock_testkit::worker` for the modes).
//!
//! Providers: `file DIR` (mode chosen from the mount), `file-flock DIR`, `file-lease DIR TTL_MS`,
//! `postgres URL NAMESPACE`, `mssql CONNECTION_STRING NAMESPACE`, `sqlite PATH TTL_MS`,
//! `redis URL KEY_PREFIX`, `redis-ttl URL KEY_PREFIX TTL_MS`, and `postgres-fencing` /
//! `mssql-fencing` with the same arguments as those providers, with fencing tokens on;
//! `postgres-unchecked` is `postgres` without `client_connection_check_interval` (what a
//! server older than PostgreSQL 14 does with a dead waiter).

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use tierlock_core::Provider;

async fn provider(args: &[String]) -> Result<(Arc<dyn Provider>, usize), String> {
    let arg = |at: usize, what: &str| {
        args.get(at)
            .ok_or_else(|| format!("{what} missing"))
            .map(String::as_str)
    };
    match args.first().map(String::as_str) {
        Some("file") => {
            let provider =
                tierlock_file::FileProvider::new(arg(1, "DIR")?).map_err(|e| e.to_string())?;
            Ok((Arc::new(provider), 2))
        }
        Some("file-flock") => {
            let provider = tierlock_file::FileProvider::builder(arg(1, "DIR")?)
                .mode(tierlock_file::FileLockMode::Flock)
                .build()
                .map_err(|e| e.to_string())?;
            Ok((Arc::new(provider), 2))
        }
        Some("file-lease") => {
            let ttl = arg(2, "TTL_MS")?
                .parse()
                .map_err(|e| format!("TTL_MS: {e}"))?;
            let provider = tierlock_file::FileProvider::builder(arg(1, "DIR")?)
                .mode(tierlock_file::FileLockMode::Lease {
                    ttl: std::time::Duration::from_millis(ttl),
                })
                .build()
                .map_err(|e| e.to_string())?;
            Ok((Arc::new(provider), 3))
        }
        Some("sqlite") => {
            let ttl = arg(2, "TTL_MS")?
                .parse()
                .map_err(|e| format!("TTL_MS: {e}"))?;
            let provider = tierlock_sqlite::SqliteProvider::builder(arg(1, "PATH")?)
                .ttl(std::time::Duration::from_millis(ttl))
                .build()
                .map_err(|e| e.to_string())?;
            Ok((Arc::new(provider), 3))
        }
        Some(kind @ ("postgres" | "postgres-fencing" | "postgres-unchecked")) => {
            let check = (kind != "postgres-unchecked").then_some(std::time::Duration::from_secs(1));
            let provider = tierlock_postgres::PostgresProvider::builder(arg(1, "URL")?)
                .namespace(arg(2, "NAMESPACE")?)
                .fencing(kind == "postgres-fencing")
                .client_connection_check_interval(check)
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            Ok((Arc::new(provider), 3))
        }
        Some(kind @ ("mssql" | "mssql-fencing")) => {
            let namespace = arg(2, "NAMESPACE")?;
            let provider = tierlock_mssql::MssqlProvider::builder(arg(1, "CONNECTION_STRING")?)
                .and_then(|builder| {
                    builder
                        .namespace(namespace)
                        .fencing(kind == "mssql-fencing")
                        .build()
                })
                .map_err(|e| e.to_string())?;
            Ok((Arc::new(provider), 3))
        }
        Some(kind @ ("redis" | "redis-ttl")) => {
            let mut builder = tierlock_redis::RedisProvider::builder(arg(1, "URL")?)
                .key_prefix(arg(2, "KEY_PREFIX")?);
            if kind == "redis-ttl" {
                let ttl = arg(3, "TTL_MS")?
                    .parse()
                    .map_err(|e| format!("TTL_MS: {e}"))?;
                builder = builder.ttl(std::time::Duration::from_millis(ttl));
            }
            let provider = builder.connect().await.map_err(|e| e.to_string())?;
            Ok((Arc::new(provider), if kind == "redis" { 3 } else { 4 }))
        }
        other => Err(format!(
            "unknown provider {other:?} (expected: file DIR | file-flock DIR | \
             file-lease DIR TTL_MS | sqlite PATH TTL_MS | \
             postgres[-fencing|-unchecked] URL NAMESPACE | \
             mssql[-fencing] CONNECTION_STRING NAMESPACE | redis URL KEY_PREFIX | \
             redis-ttl URL KEY_PREFIX TTL_MS)"
        )),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tierlock-worker: cannot start a runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let (provider, used) = match runtime.block_on(provider(&args)) {
        Ok(found) => found,
        Err(err) => {
            eprintln!("tierlock-worker: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(tierlock_testkit::worker::run(provider, &args[used..])) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tierlock-worker: {err}");
            ExitCode::from(1)
        }
    }
}
