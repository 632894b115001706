//! Two `axum-orders` processes on 127.0.0.1 share one lock directory and one ledger; 200
//! concurrent requests over real HTTP connections, half to each, try to pay 20 orders. Each
//! order must be paid exactly once: one line in its ledger file, one `201 Created`.
//!
//! Each instance's `GET /metrics` is scraped afterwards: together they must count 200
//! acquisitions and one re-entry per payment.
//!
//! The control: the same run with `--url memory:` (each process locks only against itself)
//! must show double payments — proof that the check can fail, and that what prevents them in
//! the first run is the lock shared across processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const ORDERS: u64 = 20;
const REQUESTS: u64 = 200;

/// A running `axum-orders`, killed on drop.
struct Service {
    child: Child,
    base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts an instance on a free port (it binds port 0 and prints the address it got).
fn start(locks: &[&str], ledger: &Path) -> Service {
    let mut child = Command::new(env!("CARGO_BIN_EXE_e2e-axum-orders"))
        .args(locks)
        .arg("--ledger")
        .arg(ledger)
        .args(["--listen", "127.0.0.1:0", "--charge-ms", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot start axum-orders");
    let stdout = child.stdout.take().expect("no stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("axum-orders did not say where it listens");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Service { child, base }
}

/// Fires the requests all at once, each order's requests one after another and alternating
/// between the instances (so the first two for an order reach both processes at nearly the
/// same moment); returns `(order, status)` per request.
async fn pay_concurrently(a: &Service, b: &Service) -> Vec<(u64, u16)> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..REQUESTS {
        let order = i / (REQUESTS / ORDERS);
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let url = format!("{base}/orders/{order}/pay");
        let client = client.clone();
        requests.spawn(async move {
            let response = client.post(&url).send().await;
            let status = response.map_or_else(|err| panic!("{url}: {err}"), |r| r.status());
            (order, status.as_u16())
        });
    }
    requests.join_all().await
}

/// Payments per order, from the ledger files.
fn ledger_counts(ledger: &Path) -> BTreeMap<u64, usize> {
    (0..ORDERS)
        .map(|order| {
            let lines = std::fs::read_to_string(ledger.join(format!("order-{order}")))
                .map_or(0, |text| text.lines().count());
            (order, lines)
        })
        .collect()
}

/// The value of every series of `name` whose labels include all of `labels`, summed, from a
/// Prometheus text page.
fn sum_of(page: &str, name: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            series.split('{').next() == Some(name) && labels.iter().all(|l| series.contains(l))
        })
        .map(|(_, value)| value.parse::<f64>().unwrap())
        .sum()
}

/// `GET /metrics` of an instance.
async fn scrape(service: &Service) -> String {
    let response = reqwest::get(format!("{}/metrics", service.base))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.text().await.unwrap()
}

/// Runs the 200 requests against two fresh instances started with `locks`; returns the
/// responses, the ledger's payments per order and both instances' metrics pages.
async fn run(
    locks: &[&str],
    ledger: &Path,
) -> (Vec<(u64, u16)>, BTreeMap<u64, usize>, [String; 2]) {
    let a = start(locks, ledger);
    let b = start(locks, ledger);
    assert_ne!(a.base, b.base);
    let responses = pay_concurrently(&a, &b).await;
    let pages = [scrape(&a).await, scrape(&b).await];
    (responses, ledger_counts(ledger), pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_pay_each_order_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let locks = tmp.path().join("locks");
    let ledger = tmp.path().join("ledger");
    let dir = locks.to_str().unwrap();
    let (responses, payments, pages) = run(&["--dir", dir], &ledger).await;

    assert_eq!(responses.len(), REQUESTS as usize);
    let mut created = BTreeMap::new();
    for (order, status) in &responses {
        assert!(
            *status == 201 || *status == 200,
            "order {order}: status {status}"
        );
        if *status == 201 {
            *created.entry(*order).or_insert(0) += 1;
        }
    }
    let once: BTreeMap<u64, usize> = (0..ORDERS).map(|order| (order, 1)).collect();
    assert_eq!(payments, once, "payments per order in the ledger");
    assert_eq!(created, once, "201 Created per order");

    let total = |labels: &[&str]| -> f64 {
        let labels: Vec<&str> = [r#"provider="file""#]
            .into_iter()
            .chain(labels.iter().copied())
            .collect();
        pages
            .iter()
            .map(|page| sum_of(page, "tierlock_acquisitions_total", &labels))
            .sum()
    };
    assert_eq!(
        total(&[r#"outcome="acquired""#]),
        REQUESTS as f64,
        "{pages:?}"
    );
    assert_eq!(
        total(&[r#"outcome="reentered""#]),
        ORDERS as f64,
        "{pages:?}"
    );
    assert_eq!(
        total(&[r#"outcome="timeout""#]) + total(&[r#"outcome="error""#]),
        0.0
    );
    let external: f64 = pages
        .iter()
        .map(|page| sum_of(page, "tierlock_external_acquisitions_total", &[]))
        .sum();
    assert!(
        external >= 2.0,
        "both instances took the external lock: {external}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_shared_lock_orders_are_paid_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = tmp.path().join("ledger");
    let (_, payments, _) = run(&["--url", "memory:"], &ledger).await;
    let doubles: Vec<_> = payments.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "without a shared lock, {} of {ORDERS} orders were paid more than once",
        doubles.len()
    );
    assert!(
        !doubles.is_empty(),
        "no order was paid twice without a shared lock: the check cannot fail ({payments:?})"
    );
}
