//! [`RedisProviderBuilder`]: configuration of a [`RedisProvider`].

use std::fmt;
use std::time::Duration;

use crate::error::RedisError;
use crate::provider::RedisProvider;

/// Settings that the provider, its held locks and its waiters share.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) key_prefix: String,
    pub(crate) ttl: Duration,
    pub(crate) poll_initial: Duration,
    pub(crate) poll_max: Duration,
    pub(crate) request_poll_interval: Duration,
    pub(crate) command_timeout: Duration,
}

/// Configures a [`RedisProvider`]; made by [`RedisProvider::builder`].
///
/// ```no_run
/// use std::time::Duration;
/// use tierlock_redis::RedisProvider;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tierlock_redis::RedisError> {
/// let provider = RedisProvider::builder("redis://:secret@cache.internal:6379/0")
///     .key_prefix("billing:locks:")
///     .ttl(Duration::from_secs(30))
///     .connect()
///     .await?;
/// let locks = tierlock_core::LockManager::new(provider);
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct RedisProviderBuilder {
    url: String,
    settings: Settings,
}

impl fmt::Debug for RedisProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: leave it out.
        f.debug_struct("RedisProviderBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RedisProviderBuilder {
    /// The default time to live of a lock's key, 10 s: a crashed holder blocks the name for at
    /// most that long, while a live holder renews every 3.3 s and rides out a server or network
    /// stall of about 6 s before it counts the lock as lost.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

    pub(crate) fn new(url: impl Into<String>) -> Self {
        RedisProviderBuilder {
            url: url.into(),
            settings: Settings {
                key_prefix: "tierlock:".to_owned(),
                ttl: Self::DEFAULT_TTL,
                poll_initial: Duration::from_millis(50),
                poll_max: Duration::from_secs(1),
                request_poll_interval: Duration::from_millis(50),
                command_timeout: Duration::from_secs(2),
            },
        }
    }

    /// The prefix of every key and channel (default `"tierlock:"`), used as is: only providers
    /// with the same prefix on the same database exclude each other, so applications or test
    /// runs sharing a server can stay apart. See [`key_names`](crate::key_names).
    ///
    /// ```
    /// use tierlock_redis::RedisProvider;
    ///
    /// let provider = RedisProvider::builder("redis://cache.internal:6379/0")
    ///     .key_prefix("billing:locks:")
    ///     .build()?; // no connection yet
    /// assert_eq!(provider.key_prefix(), "billing:locks:");
    /// assert!(provider.key_names("nightly").lock.starts_with("billing:locks:"));
    /// # Ok::<(), tierlock_redis::RedisError>(())
    /// ```
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.key_prefix = prefix.into();
        self
    }

    /// How long a lock's key lives without renewal (default [`DEFAULT_TTL`](Self::DEFAULT_TTL),
    /// at least 100 ms). The holder renews it every `ttl / 3` and counts the lock as lost if it
    /// could not renew within `9/10` of it; a holder that dies blocks the name for up to `ttl`.
    /// Waiters' marks live as long without refresh.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_redis::RedisProvider;
    ///
    /// let provider = RedisProvider::builder("redis://cache.internal:6379/0")
    ///     .ttl(Duration::from_secs(30)) // rides out longer server stalls
    ///     .build()?;
    /// assert_eq!(provider.ttl(), Duration::from_secs(30));
    /// # Ok::<(), tierlock_redis::RedisError>(())
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = ttl;
        self
    }

    /// The fallback poll of a waiting acquisition (default 50 ms growing to 1 s): waiters are
    /// woken by the release's pub/sub message, and in case that is lost (pub/sub is
    /// fire-and-forget) they try again after `initial`, doubling up to `max`, and never later
    /// than the moment the holder's key expires.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_redis::RedisProvider;
    ///
    /// let provider = RedisProvider::builder("redis://cache.internal:6379/0")
    ///     .poll(Duration::from_millis(20), Duration::from_millis(500))
    ///     .build()?;
    /// # Ok::<(), tierlock_redis::RedisError>(())
    /// ```
    pub fn poll(mut self, initial: Duration, max: Duration) -> Self {
        self.settings.poll_initial = initial;
        self.settings.poll_max = max;
        self
    }

    /// How often a held lock that has local waiters checks whether another process waits for
    /// it (default 50 ms): one read-only script per check, made only while this process has
    /// tasks queued behind the lock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_redis::RedisProvider;
    ///
    /// let provider = RedisProvider::builder("redis://cache.internal:6379/0")
    ///     .request_poll_interval(Duration::from_millis(200)) // fewer scripts while contended
    ///     .build()?;
    /// # Ok::<(), tierlock_redis::RedisError>(())
    /// ```
    pub fn request_poll_interval(mut self, interval: Duration) -> Self {
        self.settings.request_poll_interval = interval;
        self
    }

    /// How long any single command may take before it counts as failed (default 2 s). A
    /// waiting acquisition never waits past its own deadline; a one-shot attempt, a release and
    /// a waiter's mark are bounded by this. Renewals are bounded by the lease itself.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_redis::RedisProvider;
    ///
    /// let provider = RedisProvider::builder("redis://cache.internal:6379/0")
    ///     .command_timeout(Duration::from_millis(500))
    ///     .build()?;
    /// # Ok::<(), tierlock_redis::RedisError>(())
    /// ```
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.settings.command_timeout = timeout;
        self
    }

    /// Makes the provider without connecting (the first lock operation connects).
    ///
    /// # Errors
    ///
    /// [`RedisError::Config`] if the URL cannot be parsed, [`RedisError::Option`] for an option
    /// out of range.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tierlock_redis::{RedisError, RedisProvider};
    ///
    /// let provider = RedisProvider::builder("redis://cache.internal:6379/0").build()?; // no I/O
    /// let short = RedisProvider::builder("redis://cache.internal:6379/0")
    ///     .ttl(Duration::from_millis(10))
    ///     .build();
    /// assert!(matches!(short, Err(RedisError::Option { option: "ttl", .. })));
    /// # Ok::<(), RedisError>(())
    /// ```
    pub fn build(self) -> Result<RedisProvider, RedisError> {
        let s = &self.settings;
        let option = |option, reason| Err(RedisError::Option { option, reason });
        if s.ttl < Duration::from_millis(100) {
            return option("ttl", "must be at least 100 ms");
        }
        if s.ttl > Duration::from_secs(24 * 3600) {
            return option("ttl", "must be at most a day");
        }
        if s.poll_initial.is_zero() || s.poll_max < s.poll_initial {
            return option("poll", "initial must be positive and at most max");
        }
        if s.request_poll_interval.is_zero() {
            return option("request_poll_interval", "must be positive");
        }
        if s.command_timeout.is_zero() {
            return option("command_timeout", "must be positive");
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|source| RedisError::Config { source })?;
        Ok(RedisProvider::new_with(client, self.settings))
    }

    /// Makes the provider and checks the server with a `PING`, so a wrong address or password
    /// fails here rather than at the first lock.
    ///
    /// # Errors
    ///
    /// Those of [`build`](Self::build), and [`RedisError::Connect`].
    ///
    /// ```no_run
    /// use tierlock_redis::RedisProvider;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tierlock_redis::RedisError> {
    /// // A wrong address or password fails here, not at the first lock.
    /// let provider = RedisProvider::builder("redis://:secret@cache.internal:6379/0")
    ///     .connect()
    ///     .await?;
    /// let locks = tierlock_core::LockManager::new(provider);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(self) -> Result<RedisProvider, RedisError> {
        let provider = self.build()?;
        provider.ping().await?;
        Ok(provider)
    }
}
