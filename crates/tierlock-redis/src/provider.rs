//! [`RedisProvider`]: acquisition (one-shot and waiting), request marks, releases.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tierlock_core::provider::{BoxFuture, ExternalLock, Provider, RequestMark, WaitStrategy};
use tierlock_core::{BoxError, LockName};
use tokio::sync::Notify;

use crate::builder::{RedisProviderBuilder, Settings};
use crate::conn::{Conn, Connector, is_connection_error, is_transient};
use crate::error::RedisError;
use crate::held::RedisLock;
use crate::keys::{KeyNames, key_names};
use crate::marks::{self, MarkSpec, Marks};
use crate::scripts;
use crate::wakeups::Wakeups;

/// How long an idle name's fencing counter is kept: a day. A counter that is gone restarts at
/// the server's time in µs, which is still above every token handed out before.
const FENCE_IDLE_MS: &str = "86400000";

/// The Redis provider: a lock is a key set with `SET NX PX`, renewed by a watchdog, released by
/// a compare-and-delete that wakes waiters over pub/sub. See the [crate documentation](crate).
///
/// Cloning is cheap and shares everything (the connection, the waiters, the marks).
#[derive(Clone)]
pub struct RedisProvider {
    pub(crate) shared: Arc<Shared>,
}

/// What a provider, its held locks, waiters and background tasks share.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) connector: Arc<Connector>,
    pub(crate) marks: Marks,
    /// This provider's id: the prefix of its waiter marks is `"{id}:"`.
    pub(crate) mark_prefix: String,
    wakeups: Wakeups,
    /// Releases started by dropping a lock, per lock key: the next acquisition waits for them.
    releasing: Mutex<HashMap<String, Arc<InFlight>>>,
    /// `host:port`, for messages (never the password).
    addr: String,
    ttl_ms: String,
}

#[derive(Default)]
struct InFlight {
    done: AtomicBool,
    notify: Notify,
}

/// The outcome of one attempt.
enum Attempt {
    Acquired(RedisLock),
    /// Held by someone else; `pttl` is how long the holder's key still lives, if known.
    Held {
        pttl: Option<Duration>,
    },
}

impl RedisProvider {
    /// Starts configuring a provider for the server at `url`: `redis://[[user]:password@]host[:port][/db]`,
    /// `rediss://` is not supported (this build has no TLS), `redis+unix:///path/to/socket`
    /// for a Unix socket.
    pub fn builder(url: impl Into<String>) -> RedisProviderBuilder {
        RedisProviderBuilder::new(url)
    }

    /// A provider with the default settings, not connected yet (`builder(url).build()`).
    ///
    /// # Errors
    ///
    /// [`RedisError::Config`] if the URL cannot be parsed.
    pub fn new(url: impl Into<String>) -> Result<Self, RedisError> {
        Self::builder(url).build()
    }

    pub(crate) fn new_with(client: redis::Client, settings: Settings) -> Self {
        let addr = client.get_connection_info().addr().to_string();
        let id = format!("{:016x}", random_u64());
        let timeout = settings.command_timeout;
        let shared = Shared {
            connector: Arc::new(Connector::new(client.clone(), timeout)),
            wakeups: Wakeups::new(client, timeout, settings.poll_max),
            marks: Marks::default(),
            mark_prefix: format!("{id}:"),
            releasing: Mutex::new(HashMap::new()),
            addr,
            ttl_ms: settings.ttl.as_millis().to_string(),
            settings,
        };
        RedisProvider {
            shared: Arc::new(shared),
        }
    }

    /// The keys that hold lock `name` for this provider (see [`KeyNames`]).
    pub fn key_names(&self, name: &str) -> KeyNames {
        key_names(&self.shared.settings.key_prefix, name)
    }

    /// The prefix of this provider's keys.
    pub fn key_prefix(&self) -> &str {
        &self.shared.settings.key_prefix
    }

    /// The time to live of this provider's keys.
    pub fn ttl(&self) -> Duration {
        self.shared.settings.ttl
    }

    /// Sends a `PING`.
    pub(crate) async fn ping(&self) -> Result<(), RedisError> {
        let shared = &self.shared;
        let connect = |source| RedisError::Connect {
            addr: shared.addr.clone(),
            source,
        };
        let timeout = shared.settings.command_timeout;
        let ping = async {
            let mut conn = shared.connector.get().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn.conn)
                .await
        };
        match tokio::time::timeout(timeout, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(connect(source)),
            Err(_) => Err(connect(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer to PING within {timeout:?}"),
            )))),
        }
    }

    async fn acquire_inner(
        &self,
        name: &LockName,
        deadline: Option<Instant>,
    ) -> Result<Option<RedisLock>, RedisError> {
        let shared = &self.shared;
        let keys = self.key_names(name.as_str());
        shared.wait_for_release(&keys.lock).await;
        let now = Instant::now();
        if deadline.is_some_and(|d| d <= now) {
            // A one-shot attempt does not take a lock others are waiting for: another manager
            // on this provider, or another process (checked by the script).
            if shared.marks.waiting(&keys.lock) > 0 {
                return Ok(None);
            }
            let bound = now + shared.settings.command_timeout;
            return Ok(match self.attempt(name, &keys, true, bound, false).await? {
                Attempt::Acquired(lock) => Some(lock),
                Attempt::Held { .. } => None,
            });
        }
        self.wait(name, &keys, deadline).await
    }

    /// Waits for the lock until `deadline`: an attempt, then a nap that a release message
    /// (or the holder's key expiring, or the fallback poll) ends, and again.
    async fn wait(
        &self,
        name: &LockName,
        keys: &KeyNames,
        deadline: Option<Instant>,
    ) -> Result<Option<RedisLock>, RedisError> {
        let settings = &self.shared.settings;
        let subscribe = self.shared.wakeups.subscribe(&keys.channel);
        let subscription = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline.into(), subscribe).await {
                Ok((subscription, _)) => subscription,
                Err(_) => return Ok(None),
            },
            None => subscribe.await.0,
        };
        let mut pause = settings.poll_initial;
        loop {
            let seen = subscription.version();
            let now = Instant::now();
            let short = now + settings.command_timeout;
            let (bound, at_deadline) = match deadline {
                Some(d) if d < short => (d, true),
                _ => (short, false),
            };
            let mut nap = jitter(pause);
            let last_error = match self.attempt(name, keys, false, bound, at_deadline).await {
                Ok(Attempt::Acquired(lock)) => return Ok(Some(lock)),
                Ok(Attempt::Held { pttl }) => {
                    if let Some(pttl) = pttl {
                        // Look again the moment the holder's key expires.
                        nap = nap.min(pttl + Duration::from_millis(1));
                    }
                    None
                }
                Err(err) if err_is_transient(&err) => Some(err),
                Err(err) => return Err(err),
            };
            let mut wake = Instant::now() + nap;
            if let Some(deadline) = deadline {
                if Instant::now() >= deadline {
                    return last_error.map_or(Ok(None), Err);
                }
                wake = wake.min(deadline);
            }
            tokio::select! {
                () = subscription.changed(seen) => pause = settings.poll_initial,
                () = tokio::time::sleep_until(wake.into()) => {
                    pause = pause.saturating_mul(2).min(settings.poll_max);
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return last_error.map_or(Ok(None), Err);
            }
        }
    }

    /// One attempt: the acquire script, bounded by `bound` (`at_deadline`: the bound is the
    /// caller's deadline, not the command timeout, so running into it says nothing about the
    /// connection). If the connection turns out broken (killed by the server, an idle timeout),
    /// the script runs once more on a new one with the same token, which it recognises if the
    /// first run did set the key. If the future is dropped, or fails, after the script may have
    /// reached the server, a compare-and-delete on the same connection follows it, so a key set
    /// at the last moment does not stay behind for its `ttl`.
    async fn attempt(
        &self,
        name: &LockName,
        keys: &KeyNames,
        yield_to_waiters: bool,
        bound: Instant,
        at_deadline: bool,
    ) -> Result<Attempt, RedisError> {
        let shared = &self.shared;
        let owner = format!("{:016x}{:016x}", random_u64(), random_u64());
        let mut pending = PendingAcquire {
            shared,
            name,
            keys,
            owner: &owner,
            conn: None,
        };
        let started = Instant::now();
        let mut retried = false;
        let (acquired, value) = loop {
            let ran = self
                .run_acquire(&mut pending, yield_to_waiters, bound, at_deadline)
                .await;
            match ran {
                Ok(reply) => break reply,
                Err(Some(source)) if !retried && is_connection_error(&source) => retried = true,
                Err(Some(source)) => {
                    return Err(RedisError::Command {
                        name: name.to_string(),
                        operation: "acquire",
                        source,
                    });
                }
                Err(None) => {
                    return Err(RedisError::CommandTimeout {
                        name: name.to_string(),
                        operation: "acquire",
                        after: shared.settings.command_timeout,
                    });
                }
            }
        };
        pending.conn = None;
        drop(pending);
        if acquired != 1 {
            let pttl = u64::try_from(value).ok().map(Duration::from_millis);
            return Ok(Attempt::Held { pttl });
        }
        let fence = u64::try_from(value).unwrap_or(0);
        Ok(Attempt::Acquired(RedisLock::start(
            Arc::clone(shared),
            name.clone(),
            keys.clone(),
            owner,
            fence,
            started,
        )))
    }

    /// Runs the acquire script once for `pending` (arming it with the connection used);
    /// `Err(None)` when `bound` passed.
    async fn run_acquire(
        &self,
        pending: &mut PendingAcquire<'_>,
        yield_to_waiters: bool,
        bound: Instant,
        at_deadline: bool,
    ) -> Result<(i64, i64), Option<redis::RedisError>> {
        let shared = &self.shared;
        let keys = pending.keys;
        let conn = match tokio::time::timeout_at(bound.into(), shared.connector.get()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(source)) => return Err(Some(source)),
            Err(_) => return Err(None),
        };
        pending.conn = Some(conn.clone());
        let mut connection = conn.conn.clone();
        let mut invocation = scripts::ACQUIRE.key(&keys.lock);
        invocation
            .key(&keys.fence)
            .key(&keys.waiters)
            .arg(pending.owner)
            .arg(&shared.ttl_ms)
            .arg(if yield_to_waiters { "1" } else { "0" })
            .arg(&shared.mark_prefix)
            .arg(FENCE_IDLE_MS);
        let reply = invocation.invoke_async::<(i64, i64)>(&mut connection);
        match tokio::time::timeout_at(bound.into(), reply).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(source)) => {
                shared.connector.failed(&conn, &source);
                Err(Some(source))
            }
            Err(_) => {
                if !at_deadline {
                    shared.connector.broken(&conn);
                }
                Err(None)
            }
        }
    }
}

/// A waiting acquisition that gave up because of the deadline returns `Ok(None)`; one whose
/// last attempt failed for a transient reason returns that error. Other errors end it at once.
fn err_is_transient(err: &RedisError) -> bool {
    match err {
        RedisError::Command { source, .. } => is_transient(source),
        RedisError::CommandTimeout { .. } => true,
        _ => false,
    }
}

/// Armed while an acquire script may have set the key: dropped armed, it releases the key.
struct PendingAcquire<'a> {
    shared: &'a Arc<Shared>,
    name: &'a LockName,
    keys: &'a KeyNames,
    owner: &'a str,
    conn: Option<Conn>,
}

impl Drop for PendingAcquire<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared
                .release_in_background(self.name, self.keys, self.owner, Some(conn));
        }
    }
}

impl Shared {
    pub(crate) fn ttl_ms(&self) -> &str {
        &self.ttl_ms
    }

    /// The compare-and-delete of `owner`'s key, on `conn` if given (to follow a command sent on
    /// it), else on the current connection. `Ok(false)` if the key did not hold `owner`.
    ///
    /// If the connection turns out broken, the script runs once more on a new one; a key that
    /// is gone by then counts as released (the first run may have deleted it before the
    /// connection broke; had it expired instead, the watchdog would normally have said so).
    pub(crate) async fn release(
        &self,
        name: &LockName,
        keys: &KeyNames,
        owner: &str,
        mut conn: Option<Conn>,
    ) -> Result<bool, RedisError> {
        let timeout = self.settings.command_timeout;
        let command = |source| RedisError::Command {
            name: name.to_string(),
            operation: "release",
            source,
        };
        let run = async {
            let mut retried = false;
            loop {
                let conn = match conn.take() {
                    Some(conn) => conn,
                    None => self.connector.get().await.map_err(command)?,
                };
                let mut connection = conn.conn.clone();
                let released = scripts::RELEASE
                    .key(&keys.lock)
                    .arg(owner)
                    .arg(&keys.channel)
                    .invoke_async::<i64>(&mut connection)
                    .await;
                match released {
                    Ok(1) => return Ok(true),
                    Ok(0) if retried => return Ok(true),
                    Ok(_) => return Ok(false),
                    Err(source) => {
                        self.connector.failed(&conn, &source);
                        if retried || !is_connection_error(&source) {
                            return Err(command(source));
                        }
                        retried = true;
                    }
                }
            }
        };
        tokio::time::timeout(timeout, run)
            .await
            .unwrap_or_else(|_| {
                Err(RedisError::CommandTimeout {
                    name: name.to_string(),
                    operation: "release",
                    after: timeout,
                })
            })
    }

    /// Releases `owner`'s key without waiting: on a task of the current runtime, which the
    /// next acquisition of the name through this provider waits for, or — outside any runtime
    /// — synchronously on a connection of its own. Errors are dropped: the key expires anyway.
    pub(crate) fn release_in_background(
        self: &Arc<Self>,
        name: &LockName,
        keys: &KeyNames,
        owner: &str,
        conn: Option<Conn>,
    ) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.release_blocking(keys, owner);
            return;
        };
        let flight = Arc::new(InFlight::default());
        self.releasing
            .lock()
            .insert(keys.lock.clone(), Arc::clone(&flight));
        let (shared, name, keys, owner) = (
            Arc::clone(self),
            name.clone(),
            keys.clone(),
            owner.to_owned(),
        );
        runtime.spawn(async move {
            let _ = shared.release(&name, &keys, &owner, conn).await;
            let mut releasing = shared.releasing.lock();
            if releasing
                .get(&keys.lock)
                .is_some_and(|f| Arc::ptr_eq(f, &flight))
            {
                releasing.remove(&keys.lock);
            }
            flight.done.store(true, Ordering::Release);
            flight.notify.notify_waiters();
        });
    }

    /// The compare-and-delete over a short-lived synchronous connection (no runtime).
    fn release_blocking(&self, keys: &KeyNames, owner: &str) {
        let timeout = self.settings.command_timeout;
        let Ok(mut conn) = self.connector.client().get_connection_with_timeout(timeout) else {
            return;
        };
        let _ = conn.set_read_timeout(Some(timeout));
        let _ = conn.set_write_timeout(Some(timeout));
        let _: redis::RedisResult<i64> = scripts::RELEASE
            .key(&keys.lock)
            .arg(owner)
            .arg(&keys.channel)
            .invoke(&mut conn);
    }

    /// Waits (up to the command timeout) for a release of `lock_key` started by a drop.
    async fn wait_for_release(&self, lock_key: &str) {
        let Some(flight) = self.releasing.lock().get(lock_key).cloned() else {
            return;
        };
        let done = async {
            loop {
                let notified = flight.notify.notified();
                if flight.done.load(Ordering::Acquire) {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(self.settings.command_timeout, done).await;
    }
}

impl Provider for RedisProvider {
    fn kind(&self) -> &'static str {
        "redis"
    }

    /// Native: `acquire` waits by itself, woken by pub/sub.
    fn wait_strategy(&self) -> WaitStrategy {
        WaitStrategy::Native
    }

    fn acquire<'a>(
        &'a self,
        name: &'a LockName,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<Option<Box<dyn ExternalLock>>, BoxError>> {
        Box::pin(async move {
            match self.acquire_inner(name, deadline).await {
                Ok(lock) => Ok(lock.map(|lock| Box::new(lock) as Box<dyn ExternalLock>)),
                Err(err) => Err(Box::new(err) as BoxError),
            }
        })
    }

    fn request<'a>(
        &'a self,
        name: &'a LockName,
    ) -> BoxFuture<'a, Result<Option<RequestMark>, BoxError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let keys = self.key_names(name.as_str());
            let spec = MarkSpec {
                connector: &shared.connector,
                lock_key: &keys.lock,
                waiters_key: &keys.waiters,
                member: shared.marks.member(&shared.mark_prefix),
                ttl: shared.settings.ttl,
                timeout: shared.settings.command_timeout,
            };
            Ok(Some(marks::place(&shared.marks, spec).await))
        })
    }
}

impl fmt::Debug for RedisProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.shared;
        // The address only: the URL may hold a password.
        f.debug_struct("RedisProvider")
            .field("addr", &shared.addr)
            .field("key_prefix", &shared.settings.key_prefix)
            .field("ttl", &shared.settings.ttl)
            .finish_non_exhaustive()
    }
}

/// A random 64-bit number, different in every call and every process (for owner tokens and
/// provider ids; not for cryptography).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::AtomicU64;
    static CALLS: AtomicU64 = AtomicU64::new(0);
    // `RandomState` is seeded from the operating system's random source per process.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    hasher.finish()
}

/// `pause` ± 25 %.
fn jitter(pause: Duration) -> Duration {
    let quarter = pause / 4;
    let nanos = u64::try_from(quarter.as_nanos()).unwrap_or(u64::MAX).max(1);
    pause - quarter + Duration::from_nanos(random_u64() % (2 * nanos))
}
