//! Request marks: how a waiting process tells the holder that it wants the lock.
//!
//! A waiter adds a member `PROVIDER_ID:SEQ` to the name's `wait` sorted set, scored by its
//! expiry (server time + `ttl`), refreshes it every `ttl / 3` and removes it when it stops
//! waiting. A waiter that dies stops refreshing, and its mark is ignored once it expires.
//!
//! Marks of *this* provider are also counted in memory ([`LocalCount`]), and the scripts skip
//! members with this provider's id: a holder learns of waiters of its own provider (another
//! `LockManager` on the same provider object) from the count, at once and without I/O, and
//! never mistakes its own last mark — whose removal is still on its way to the server after the
//! acquisition it was for — for another process's request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tierlock_core::RequestMark;

use crate::conn::Connector;
use crate::scripts;

type Counts = Mutex<HashMap<String, Arc<AtomicUsize>>>;

/// This provider's marks, counted per lock key.
#[derive(Default)]
pub(crate) struct Marks {
    counts: Arc<Counts>,
    next: AtomicU64,
}

/// A share in the count of this provider's waiters for one name; the entry goes when the last
/// share does.
pub(crate) struct LocalCount {
    counts: Arc<Counts>,
    key: String,
    count: Arc<AtomicUsize>,
}

impl Marks {
    /// A share in the count for the lock key `key`.
    pub(crate) fn count(&self, key: &str) -> LocalCount {
        let count = Arc::clone(self.counts.lock().entry(key.to_owned()).or_default());
        LocalCount {
            counts: Arc::clone(&self.counts),
            key: key.to_owned(),
            count,
        }
    }

    /// How many of this provider's waiters wait for the lock key `key` now.
    pub(crate) fn waiting(&self, key: &str) -> usize {
        self.counts
            .lock()
            .get(key)
            .map_or(0, |count| count.load(Ordering::Acquire))
    }

    /// A fresh member for the `wait` set.
    pub(crate) fn member(&self, provider_id: &str) -> String {
        format!(
            "{provider_id}:{}",
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl LocalCount {
    pub(crate) fn get(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

impl Drop for LocalCount {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        // New shares are only made under this lock: the map's and ours are the last two.
        if Arc::strong_count(&self.count) == 2 {
            counts.remove(&self.key);
        }
    }
}

/// What a [`RequestMark`] of this provider keeps alive.
struct Mark {
    count: LocalCount,
    member: String,
    waiters_key: String,
    connector: Arc<Connector>,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Mark {
    fn drop(&mut self) {
        self.count.count.fetch_sub(1, Ordering::AcqRel);
        if let Some(refresher) = &self.refresher {
            refresher.abort();
        }
        // Without a runtime the mark just expires (after `ttl`).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let connector = Arc::clone(&self.connector);
            let key = std::mem::take(&mut self.waiters_key);
            let member = std::mem::take(&mut self.member);
            runtime.spawn(async move {
                let Ok(mut conn) = connector.get().await else {
                    return;
                };
                let removed: redis::RedisResult<i64> = redis::cmd("ZREM")
                    .arg(&key)
                    .arg(&member)
                    .query_async(&mut conn.conn)
                    .await;
                if let Err(err) = removed {
                    connector.failed(&conn, &err);
                }
            });
        }
    }
}

/// Where and how to place a mark.
pub(crate) struct MarkSpec<'a> {
    pub(crate) connector: &'a Arc<Connector>,
    pub(crate) lock_key: &'a str,
    pub(crate) waiters_key: &'a str,
    pub(crate) member: String,
    pub(crate) ttl: Duration,
    pub(crate) timeout: Duration,
}

/// Places a mark and starts refreshing it every `ttl / 3`. The count goes up at once; a failure
/// to write the mark is not an error (the refresher tries again: a mark only speeds up a
/// hand-over, it is not needed for exclusion). Cancel-safe: dropped midway, the count goes down
/// again and the mark is removed.
pub(crate) async fn place(marks: &Marks, spec: MarkSpec<'_>) -> RequestMark {
    let count = marks.count(spec.lock_key);
    count.count.fetch_add(1, Ordering::AcqRel);
    let mut mark = Mark {
        count,
        member: spec.member,
        waiters_key: spec.waiters_key.to_owned(),
        connector: Arc::clone(spec.connector),
        refresher: None,
    };
    let ttl_ms = spec.ttl.as_millis().to_string();
    let first = write(&mark.connector, &mark.waiters_key, &mark.member, &ttl_ms);
    let _ = tokio::time::timeout(spec.timeout, first).await;
    let every = spec.ttl / 3;
    let (connector, key, member) = (
        Arc::clone(&mark.connector),
        mark.waiters_key.clone(),
        mark.member.clone(),
    );
    mark.refresher = Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let _ = tokio::time::timeout(every, write(&connector, &key, &member, &ttl_ms)).await;
        }
    }));
    RequestMark::new(mark)
}

/// Adds or refreshes `member` in the `wait` set `key`; errors are dropped (see [`place`]).
async fn write(connector: &Connector, key: &str, member: &str, ttl_ms: &str) {
    let Ok(mut conn) = connector.get().await else {
        return;
    };
    let written: redis::RedisResult<i64> = scripts::MARK
        .key(key)
        .arg(member)
        .arg(ttl_ms)
        .invoke_async(&mut conn.conn)
        .await;
    if let Err(err) = written {
        connector.failed(&conn, &err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_go_with_their_last_share() {
        let marks = Marks::default();
        let a = marks.count("k");
        let b = marks.count("k");
        a.count.fetch_add(1, Ordering::AcqRel);
        assert_eq!(marks.waiting("k"), 1);
        assert_eq!(b.get(), 1, "shares see one count");
        drop(a);
        assert_eq!(marks.counts.lock().len(), 1);
        drop(b);
        assert!(marks.counts.lock().is_empty(), "an unused count stayed");
        assert_eq!(marks.waiting("k"), 0);
        let members: std::collections::HashSet<String> =
            (0..100).map(|_| marks.member("p")).collect();
        assert_eq!(members.len(), 100);
        assert!(members.iter().all(|m| m.starts_with("p:")));
    }
}
