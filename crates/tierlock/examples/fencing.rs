//! Fencing tokens: a resource that rejects writes from a holder that has lost its lock.
//!
//! ```text
//! eval "$(scripts/pg-start)"
//! cargo run -p tierlock --features postgres --example fencing
//! scripts/pg-start stop
//! ```
//!
//! Two "processes" (two lock managers, each on a provider of its own) edit one document under
//! the lock `doc:<id>`. Process A takes the lock and is then paused (a long GC pause, a stopped
//! VM, a network partition) for long enough that it loses the lock: here its database session is
//! terminated, as a server restart or a dead network would. Process B takes the lock and writes.
//! Then A wakes up and, unaware, writes too. The document table only accepts a write whose
//! fencing token is larger than the last one that wrote, so A's late write is rejected.
//!
//! The table (`docs/fencing.md` explains the pattern):
//!
//! ```sql
//! CREATE TABLE fencing_example_documents (
//!     id         text   PRIMARY KEY,
//!     body       text   NOT NULL,
//!     last_token bigint NOT NULL DEFAULT 0   -- the token of the last accepted write
//! );
//! UPDATE fencing_example_documents SET body = $2, last_token = $3
//!  WHERE id = $1 AND last_token < $3;        -- 0 rows: a newer holder wrote already
//! ```

use std::error::Error;
use std::time::Duration;

use tierlock::{LockManager, PostgresProvider, postgres_lock_key};
use tokio_postgres::{Client, NoTls};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// The protected resource: documents that remember the token of their last write.
#[derive(Debug)]
pub struct Documents {
    client: Client,
}

impl Documents {
    /// Connects the storage side (any client: the resource knows nothing about tierlock).
    pub async fn connect(url: &str) -> Result<Documents> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS fencing_example_documents (
                     id text PRIMARY KEY, body text NOT NULL, last_token bigint NOT NULL DEFAULT 0)",
            )
            .await?;
        Ok(Documents { client })
    }

    /// Creates the document `id` if it does not exist.
    pub async fn create(&self, id: &str) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO fencing_example_documents (id, body) VALUES ($1, '') \
                 ON CONFLICT (id) DO NOTHING",
                &[&id],
            )
            .await?;
        Ok(())
    }

    /// Writes `body` with the writer's fencing `token`: accepted (`true`) only if no write
    /// with the same or a larger token came first.
    pub async fn write(&self, id: &str, body: &str, token: u64) -> Result<bool> {
        let token = i64::try_from(token)?;
        let written = self
            .client
            .execute(
                "UPDATE fencing_example_documents SET body = $2, last_token = $3 \
                 WHERE id = $1 AND last_token < $3",
                &[&id, &body, &token],
            )
            .await?;
        Ok(written == 1)
    }

    /// The document's body.
    pub async fn read(&self, id: &str) -> Result<String> {
        let row = self
            .client
            .query_one(
                "SELECT body FROM fencing_example_documents WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(row.get(0))
    }
}

/// What happened, for the test that runs this example.
#[derive(Debug)]
pub struct Outcome {
    /// A's token and whether its first write was accepted.
    pub a_first: (u64, bool),
    /// B's token and whether its write was accepted.
    pub b: (u64, bool),
    /// Whether A's late write, after it lost the lock, was accepted.
    pub a_late: bool,
    /// Whether A's `release()` reported the lock lost.
    pub a_told_lost: bool,
    /// The document at the end.
    pub body: String,
}

/// The story of the module documentation, in `namespace` on the server at `url`.
pub async fn run(url: &str, namespace: &str) -> Result<Outcome> {
    let provider = || {
        PostgresProvider::builder(url)
            .namespace(namespace)
            .fencing(true) // one upsert per external acquisition; see docs/fencing.md
            .build()
    };
    let process_a = LockManager::new(provider()?);
    let process_b = LockManager::new(provider()?);
    let documents = Documents::connect(url).await?;
    let id = format!("{namespace}:report");
    let lock = format!("doc:{id}");
    documents.create(&id).await?;

    // A takes the lock and writes with its token.
    let guard_a = process_a.lock(&lock, Duration::from_secs(10)).await?;
    let token_a = guard_a
        .fencing_token()
        .ok_or("fencing is on: A has a token")?;
    let a_first = documents.write(&id, "draft by A", token_a).await?;

    // A is paused, and meanwhile loses the lock: its session ends.
    terminate_holder(url, namespace, &lock).await?;
    tokio::time::timeout(Duration::from_secs(10), guard_a.lost()).await?;

    // B takes the lock (a larger token) and writes.
    let guard_b = process_b.lock(&lock, Duration::from_secs(10)).await?;
    let token_b = guard_b
        .fencing_token()
        .ok_or("fencing is on: B has a token")?;
    let b = documents.write(&id, "final by B", token_b).await?;

    // A wakes up and writes without looking at `guard_a.is_lost()`: the resource refuses.
    let a_late = documents.write(&id, "late by A", token_a).await?;

    guard_b.release().await?;
    // A's release reports what happened to it.
    let released = guard_a.release().await;
    let a_told_lost = matches!(released, Err(tierlock::LockError::Lost { .. }));
    Ok(Outcome {
        a_first: (token_a, a_first),
        b: (token_b, b),
        a_late,
        a_told_lost,
        body: documents.read(&id).await?,
    })
}

/// Ends the session holding `lock`, as a server restart or a broken network would.
async fn terminate_holder(url: &str, namespace: &str, lock: &str) -> Result<()> {
    let (admin, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    let bits = postgres_lock_key(namespace, lock) as u64;
    let (classid, objid) = ((bits >> 32) as u32, bits as u32);
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
             AND classid = $1 AND objid = $2 AND objsubid = 1 AND granted",
            &[&classid, &objid],
        )
        .await?;
    Ok(())
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<()> {
    let url = std::env::var("TIERLOCK_PG_URL")
        .map_err(|_| "set TIERLOCK_PG_URL (eval \"$(scripts/pg-start)\")")?;
    let namespace = format!("fencing-example:{}", std::process::id());
    let outcome = run(&url, &namespace).await?;
    println!("A wrote with token {:?}", outcome.a_first);
    println!("B wrote with token {:?}", outcome.b);
    println!("A's late write accepted: {}", outcome.a_late);
    println!(
        "A's release said the lock was lost: {}",
        outcome.a_told_lost
    );
    println!("the document says: {:?}", outcome.body);
    Ok(())
}
