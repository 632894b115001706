//! The lock-holder helper: what a separate OS process does in the multi-process tests.
//!
//! A provider's worker binary builds its provider from its arguments and hands the rest to
//! [`run`]. The driver side is [`multiprocess`](crate::multiprocess). Modes (arguments after
//! the provider):
//!
//! | mode | does | prints |
//! |---|---|---|
//! | `hold NAME TIMEOUT_MS` | takes the lock, holds it until a line or EOF on stdin | `waiting`, then `acquired MS token=T` or `timeout`; `lost token=T` if the provider reports the lock lost meanwhile; then `released` (`released lost` if the release found it lost) |
//! | `serve NAME` | reads commands from stdin until EOF: `lock TIMEOUT_MS` takes the lock, `release` releases it | `ready`, then per command `acquired MS token=T` or `timeout`, and `released` or `released lost` |
//! | `count NAME FILE TASKS ROUNDS` | `TASKS` tasks each add 1 to the number in `FILE` `ROUNDS` times (read, sleep, write) under the lock | `done` |
//! | `setup NAME` | one `try_lock` of the (free) name and its release, on the provider as built | `setup` |
//! | `contend NAME TASKS SECS CRIT_US [bypass]` | tasks take the lock in a loop for `SECS` s, holding it `CRIT_US` µs; `bypass` gives each task its own manager, so every acquisition goes to the provider | `stats sections=N p50_us=… p99_us=… max_us=… external=…` |

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tierlock_core::{LockGuard, LockManager, Provider};
use tokio::io::AsyncBufReadExt;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A driver that went away cannot be told anything; the process ends with it.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn arg<T: std::str::FromStr>(args: &[String], at: usize, what: &str) -> Result<T> {
    args.get(at)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("argument {at} ({what}) missing or malformed").into())
}

/// Runs one worker mode against `provider`; `args` are the mode and its arguments.
///
/// # Errors
///
/// Malformed arguments, lock errors other than the expected timeout, I/O errors.
pub async fn run(provider: Arc<dyn Provider>, args: &[String]) -> Result<()> {
    let mode = args.first().map(String::as_str).unwrap_or("");
    match mode {
        "hold" => {
            hold(
                provider,
                &arg::<String>(args, 1, "NAME")?,
                arg(args, 2, "TIMEOUT_MS")?,
            )
            .await
        }
        "serve" => serve(provider, &arg::<String>(args, 1, "NAME")?).await,
        "setup" => setup(provider, &arg::<String>(args, 1, "NAME")?).await,
        "count" => {
            let name: String = arg(args, 1, "NAME")?;
            let file: PathBuf = arg(args, 2, "FILE")?;
            count(
                provider,
                &name,
                file,
                arg(args, 3, "TASKS")?,
                arg(args, 4, "ROUNDS")?,
            )
            .await
        }
        "contend" => {
            let bypass = args.get(5).is_some_and(|a| a == "bypass");
            contend(
                provider,
                &arg::<String>(args, 1, "NAME")?,
                arg(args, 2, "TASKS")?,
                Duration::from_secs(arg(args, 3, "SECS")?),
                Duration::from_micros(arg(args, 4, "CRIT_US")?),
                bypass,
            )
            .await
        }
        other => Err(format!("unknown worker mode {other:?}").into()),
    }
}

async fn hold(provider: Arc<dyn Provider>, name: &str, timeout_ms: u64) -> Result<()> {
    let locks = LockManager::from_arc(provider);
    say("waiting");
    let start = Instant::now();
    let guard = match locks.lock(name, Duration::from_millis(timeout_ms)).await {
        Ok(guard) => guard,
        Err(tierlock_core::LockError::Timeout { .. }) => {
            say("timeout");
            return Ok(());
        }
        Err(err) => return Err(err.into()),
    };
    say(&acquired(&guard, start));
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut line = String::new();
    tokio::select! {
        read = stdin.read_line(&mut line) => { read?; }
        () = guard.lost() => {
            say(&format!("lost token={}", token(&guard)));
            stdin.read_line(&mut line).await?;
        }
    }
    say(release(guard).await?);
    Ok(())
}

/// One `try_lock` and release: with the process start, what a fresh process pays before it can
/// use the provider (connections, logins, first statements).
async fn setup(provider: Arc<dyn Provider>, name: &str) -> Result<()> {
    let locks = LockManager::from_arc(provider);
    if let Some(guard) = locks.try_lock(name).await? {
        guard.release().await?;
    }
    say("setup");
    Ok(())
}

/// Takes and releases the lock as told on stdin, one command per line.
async fn serve(provider: Arc<dyn Provider>, name: &str) -> Result<()> {
    let locks = LockManager::from_arc(provider);
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut held = None;
    say("ready");
    while let Some(line) = lines.next_line().await? {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("lock"), Some(ms)) => {
                let timeout = Duration::from_millis(ms.parse()?);
                let start = Instant::now();
                match locks.lock(name, timeout).await {
                    Ok(guard) => {
                        say(&acquired(&guard, start));
                        held = Some(guard);
                    }
                    Err(tierlock_core::LockError::Timeout { .. }) => say("timeout"),
                    Err(err) => return Err(err.into()),
                }
            }
            (Some("release"), None) => {
                let guard = held.take().ok_or("release without a held lock")?;
                say(release(guard).await?);
            }
            _ => return Err(format!("unknown command {line:?}").into()),
        }
    }
    Ok(())
}

fn token(guard: &LockGuard) -> String {
    guard
        .fencing_token()
        .map_or_else(|| "-".to_owned(), |t| t.to_string())
}

fn acquired(guard: &LockGuard, start: Instant) -> String {
    format!(
        "acquired {} token={}",
        start.elapsed().as_millis(),
        token(guard)
    )
}

/// Releases `guard`: `released`, or `released lost` if the lock turned out lost.
async fn release(guard: LockGuard) -> Result<&'static str> {
    match guard.release().await {
        Ok(()) => Ok("released"),
        Err(tierlock_core::LockError::Lost { .. }) => Ok("released lost"),
        Err(err) => Err(err.into()),
    }
}

async fn count(
    provider: Arc<dyn Provider>,
    name: &str,
    file: PathBuf,
    tasks: u32,
    rounds: u32,
) -> Result<()> {
    let locks = LockManager::from_arc(provider);
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (locks, name, file) = (locks.clone(), name.to_owned(), file.clone());
        handles.push(tokio::spawn(async move {
            for _ in 0..rounds {
                let guard = locks.lock(&name, Duration::from_secs(120)).await?;
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                let value: u64 = text.trim().parse().unwrap_or(0);
                tokio::time::sleep(Duration::from_micros(50)).await;
                std::fs::write(&file, format!("{}\n", value + 1))?;
                guard.release().await?;
            }
            Ok::<_, Box<dyn Error + Send + Sync>>(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    say("done");
    Ok(())
}

async fn contend(
    provider: Arc<dyn Provider>,
    name: &str,
    tasks: u32,
    duration: Duration,
    critical: Duration,
    bypass: bool,
) -> Result<()> {
    let shared = LockManager::from_arc(Arc::clone(&provider));
    let end = Instant::now() + duration;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let locks = if bypass {
            LockManager::from_arc(Arc::clone(&provider))
        } else {
            shared.clone()
        };
        let name = name.to_owned();
        handles.push(tokio::spawn(async move {
            let mut waits = Vec::new();
            while Instant::now() < end {
                let start = Instant::now();
                let guard = locks.lock(&name, Duration::from_secs(60)).await?;
                waits.push(start.elapsed());
                spin(critical).await;
                drop(guard);
            }
            Ok::<_, Box<dyn Error + Send + Sync>>((waits, locks.stats().external_acquisitions))
        }));
    }
    let mut waits = Vec::new();
    let mut external = 0;
    for handle in handles {
        let (w, e) = handle.await??;
        waits.extend(w);
        external = if bypass { external + e } else { e };
    }
    waits.sort();
    let pick = |q: f64| {
        waits
            .get(((waits.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0, Duration::as_micros)
    };
    say(&format!(
        "stats sections={} p50_us={} p99_us={} max_us={} external={}",
        waits.len(),
        pick(0.5),
        pick(0.99),
        pick(1.0),
        external
    ));
    Ok(())
}

/// Holds the lock for `critical`: sleeps for long sections, spins (yielding) for short ones,
/// where a timer would round up to a millisecond.
async fn spin(critical: Duration) {
    if critical >= Duration::from_millis(2) {
        tokio::time::sleep(critical).await;
        return;
    }
    let until = Instant::now() + critical;
    while Instant::now() < until {
        tokio::task::yield_now().await;
    }
}
