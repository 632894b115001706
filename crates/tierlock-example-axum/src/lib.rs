//! `axum-orders`: an axum service that pays orders under tierlock locks.
//!
//! `POST /orders/{id}/pay` pays order `id` at most once, however many requests arrive at however
//! many instances of the service: the handler holds the lock `"order:{id}"` while it checks the
//! order's ledger and charges it, and the code that records the payment, deeper in the call
//! tree, takes the same lock again — a re-entry, granted at once to the task that holds it.
//! `GET /orders/{id}` shows the payment, if any.
//!
//! The [`LockManager`] lives in axum's `State`: made once at start-up (by `tierlock::connect`
//! in [`server`]), cloned into each request. Instances exclude each other through its provider:
//! a lock directory shared by the processes by default, or any database `--url`.
//!
//! The ledger is a directory of files, one per paid order (`order-{id}`), one line per payment:
//! it lives outside the processes, so a double payment is visible to anyone who looks, and the
//! end-to-end test (`tests/tests/axum_two_processes.rs` at the workspace's root) looks.
//!
//! One owner per request: tierlock's re-entrancy follows the tokio task, and a server that
//! serves several requests in one task (HTTP/2 multiplexes a connection's streams in one task)
//! would let them re-enter each other's locks. [`router`] wraps every request in
//! [`tierlock::scope`] so each is an owner of its own, whatever the protocol.
//!
//! Metrics: built with tierlock's `metrics` feature, the manager reports acquisitions by
//! outcome, waits, hand-offs and the rest through the `metrics` facade; [`server`] installs
//! `metrics-exporter-prometheus`'s recorder before it connects, and `GET /metrics` renders it.

#![forbid(unsafe_code)]

pub mod server;

use std::path::PathBuf;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tierlock::{LockError, LockManager};
use tokio::io::AsyncWriteExt;

/// How long a request waits for an order's lock before it answers 503.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The lock manager, one per process.
    pub locks: LockManager,
    /// The ledger directory: one file per paid order.
    pub ledger: PathBuf,
    /// How long the (simulated) payment gateway takes to charge an order.
    pub charge_time: Duration,
    /// The Prometheus recorder's handle, if one is installed: `GET /metrics` renders it.
    pub metrics: Option<PrometheusHandle>,
}

/// The service's routes, one owner per request.
///
/// ```no_run
/// use std::time::Duration;
/// use tierlock_example_axum::{AppState, router};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // The recorder first: the manager registers its metrics with the one installed then.
/// let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
/// let state = AppState {
///     locks: tierlock::connect("./locks").await?,
///     ledger: "./ledger".into(),
///     charge_time: Duration::from_millis(20),
///     metrics: Some(metrics),
/// };
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, router(state)).await?;
/// # Ok(())
/// # }
/// ```
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/orders/{id}/pay", post(pay))
        .route("/orders/{id}", get(show))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn(one_owner_per_request))
        .with_state(state)
}

/// Runs the request as a fresh tierlock owner (see the crate documentation).
async fn one_owner_per_request(request: Request, next: Next) -> Response {
    tierlock::scope(next.run(request)).await
}

/// `GET /metrics`: the process's metrics (tierlock's among them) in Prometheus' text format; 404
/// when no recorder is installed.
async fn metrics(State(app): State<AppState>) -> Response {
    match &app.metrics {
        Some(handle) => handle.render().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The answer to a payment or a look-up.
#[derive(Debug, Serialize)]
pub struct Receipt {
    /// The order.
    pub order: u64,
    /// `paid` (by this request), `already_paid` or `unpaid`.
    pub status: &'static str,
    /// The payment's id, `{pid}-{nanos}` of the process that made it.
    pub payment: Option<String>,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The order's lock was not acquired (503 for a timeout, 500 otherwise).
    #[error("order lock: {0}")]
    Lock(#[from] LockError),
    /// The ledger could not be read or written (500).
    #[error("ledger: {0}")]
    Ledger(#[from] std::io::Error),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match self {
            AppError::Lock(LockError::Timeout { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, self.to_string()).into_response()
    }
}

fn lock_name(id: u64) -> String {
    format!("order:{id}")
}

/// `POST /orders/{id}/pay`: 201 with the new payment, or 200 if the order was paid already.
async fn pay(
    State(app): State<AppState>,
    Path(id): Path<u64>,
) -> Result<(StatusCode, Json<Receipt>), AppError> {
    let _order = app.locks.lock(&lock_name(id), LOCK_TIMEOUT).await?;
    if let Some(payment) = payment_of(&app, id).await? {
        let receipt = Receipt {
            order: id,
            status: "already_paid",
            payment: Some(payment),
        };
        return Ok((StatusCode::OK, Json(receipt)));
    }
    let payment = charge(&app, id).await?;
    let receipt = Receipt {
        order: id,
        status: "paid",
        payment: Some(payment),
    };
    Ok((StatusCode::CREATED, Json(receipt)))
}

/// `GET /orders/{id}`: the order's payment, if any (no lock: a read of the ledger).
async fn show(State(app): State<AppState>, Path(id): Path<u64>) -> Result<Json<Receipt>, AppError> {
    let payment = payment_of(&app, id).await?;
    let status = if payment.is_some() { "paid" } else { "unpaid" };
    Ok(Json(Receipt {
        order: id,
        status,
        payment,
    }))
}

/// Charges order `id` and records the payment. Callable on its own, so it takes the order's
/// lock itself; called from [`pay`], which holds it, that is a re-entry and returns at once —
/// with a zero timeout, so a lock that did not re-enter would fail the request.
async fn charge(app: &AppState, id: u64) -> Result<String, AppError> {
    let _order = app.locks.lock(&lock_name(id), Duration::ZERO).await?;
    // The payment gateway's round trip: the window in which a second, unlocked request for the
    // same order would also see it unpaid.
    tokio::time::sleep(app.charge_time).await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let payment = format!("{}-{nanos}", std::process::id());
    record(app, id, &payment).await?;
    Ok(payment)
}

/// Appends the payment to the order's ledger file.
async fn record(app: &AppState, id: u64, payment: &str) -> std::io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(app.ledger.join(format!("order-{id}")))
        .await?;
    file.write_all(format!("{payment}\n").as_bytes()).await?;
    file.sync_data().await
}

/// The first payment recorded for order `id`, if any.
async fn payment_of(app: &AppState, id: u64) -> std::io::Result<Option<String>> {
    match tokio::fs::read_to_string(app.ledger.join(format!("order-{id}"))).await {
        Ok(text) => Ok(text.lines().next().map(str::to_owned)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}
