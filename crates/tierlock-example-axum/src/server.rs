//! `axum-orders`: the order service of this crate, as a process (the binary's `main` is
//! [`main`] here; the workspace's end-to-end tests build it into a binary of their own).
//!
//! ```text
//! axum-orders [--dir DIR | --url URL] [--ledger DIR] [--listen ADDR] [--charge-ms N]
//! ```
//!
//! * `--dir DIR`: the lock directory shared by the instances (default `./locks`);
//! * `--url URL`: any form `tierlock::connect` takes instead (`postgres://…`, `redis://…`,
//!   `sqlite:/path/to.db`, `file:///dir?mode=lease`; `memory:` locks this process only);
//! * `--ledger DIR`: where payments are recorded, shared by the instances (default
//!   `./ledger`);
//! * `--listen ADDR`: the address to serve on (default `127.0.0.1:3000`; port 0 picks a free
//!   one);
//! * `--charge-ms N`: how long the simulated payment gateway takes (default 20).
//!
//! `GET /metrics` serves the locks' metrics in Prometheus' text format.
//!
//! Once listening it prints `listening on http://ADDR` on stdout (the address actually bound).
//! Ctrl-C or SIGTERM stops it after the requests in flight.
//!
//! ```text
//! cargo run -p tierlock-example-axum --bin axum-orders -- --listen 127.0.0.1:3000 &
//! cargo run -p tierlock-example-axum --bin axum-orders -- --listen 127.0.0.1:3001 &
//! curl -X POST localhost:3000/orders/7/pay    # 201 {"order":7,"status":"paid",…}
//! curl -X POST localhost:3001/orders/7/pay    # 200 {"order":7,"status":"already_paid",…}
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::{AppState, router};
use metrics_exporter_prometheus::PrometheusBuilder;
use tierlock::ConnectOptions;

/// The command line.
#[derive(Debug)]
struct Args {
    locks: ConnectOptions,
    ledger: PathBuf,
    listen: String,
    charge_time: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut locks = ConnectOptions::file("./locks");
    let mut ledger = PathBuf::from("./ledger");
    let mut listen = "127.0.0.1:3000".to_owned();
    let mut charge_time = Duration::from_millis(20);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => locks = ConnectOptions::file(value()?),
            "--url" => locks = value()?.parse().map_err(|err| format!("--url: {err}"))?,
            "--ledger" => ledger = PathBuf::from(value()?),
            "--listen" => listen = value()?,
            "--charge-ms" => {
                let ms = value()?
                    .parse()
                    .map_err(|err| format!("--charge-ms: {err}"))?;
                charge_time = Duration::from_millis(ms);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        locks,
        ledger,
        listen,
        charge_time,
    })
}

/// Parses the process's arguments and serves until Ctrl-C or SIGTERM; the exit code is a
/// failure (with a message on stderr) if the arguments, the locks' URL or the listener fail.
#[tokio::main]
pub async fn main() -> ExitCode {
    match serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("axum-orders: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> Result<(), String> {
    let args = parse_args()?;
    // Before the manager is created: it registers its metrics with the recorder installed then.
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|err| format!("metrics recorder: {err}"))?;
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        // Without the exporter's own HTTP listener, its histograms' upkeep is the caller's.
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let locks = args.locks.connect().await.map_err(|err| chain(&err))?;
    std::fs::create_dir_all(&args.ledger)
        .map_err(|err| format!("ledger {}: {err}", args.ledger.display()))?;
    let state = AppState {
        locks,
        ledger: args.ledger,
        charge_time: args.charge_time,
        metrics: Some(metrics),
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", args.listen))?;
    let addr = listener.local_addr().map_err(|err| err.to_string())?;
    // The line a supervisor (or the test) reads to find the port.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{addr}")
        .and_then(|()| stdout.flush())
        .map_err(|err| err.to_string())?;
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|err| err.to_string())
}

/// Ctrl-C or SIGTERM.
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// An error and its causes, `outer: inner`.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
