//! [`HeldLock`]: one lock that a backend reports as held right now, the common answer of every
//! provider's status listing (`tierlock status`, `tierlock::status`).
//!
//! A listing is a snapshot taken from outside the processes that hold the locks: by the time it
//! is printed, a lock may have been released or taken. What a backend can tell differs:
//!
//! * the **key** is always there: the backend's own identifier (a lock file's name, an
//!   advisory lock's 64-bit key, an applock resource, a table row's name, a Redis key);
//! * the **name** only where the mapping keeps it exactly ([`HeldLock::name`]); where it keeps
//!   a readable but lossy part of it (the file provider's 40-character prefix), that part is the
//!   [`name_hint`](HeldLock::name_hint);
//! * the **holder**, **fencing token**, **expiry** and **waiters** where the backend records
//!   them.

use std::fmt;
use std::time::Duration;

/// One lock held right now, as its backend reports it (see the [module](self) documentation).
///
/// Providers make it with [`HeldLock::new`] and the `with_*` setters; it is `#[non_exhaustive]`
/// so that backends can report more later without breaking users.
///
/// ```
/// use std::time::Duration;
/// use tierlock_core::HeldLock;
///
/// let held = HeldLock::new("tierlock:job:nightly")
///     .with_name("job:nightly")
///     .with_holder("pid 4242 on web-1")
///     .with_fencing_token(17)
///     .with_expires_in(Duration::from_secs(8));
/// assert_eq!(held.label(), "job:nightly");
/// assert_eq!(HeldLock::new("0x7f3a").label(), "0x7f3a"); // no name: the raw key
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct HeldLock {
    /// The backend's identifier of the lock: a lock file or lease directory name, an advisory
    /// lock key, an applock resource, a row's name column, a Redis key.
    pub key: String,
    /// The lock's name, exactly as the application asked for it, when the backend's mapping
    /// keeps it (`None` when only a hash or a lossy part of it is stored).
    pub name: Option<String>,
    /// A readable part of the name when the exact name is not known: the file provider keeps
    /// the first 40 characters with unsafe characters replaced by `_`.
    pub name_hint: Option<String>,
    /// Who holds it, as far as the backend knows: a process id and host, a server session.
    pub holder: Option<String>,
    /// The last fencing token issued for the name, when the backend keeps a counter: the
    /// holder's token.
    pub fencing_token: Option<u64>,
    /// How long the lease has left, by the backend's clock, for backends with expiring locks
    /// (SQLite, Redis); `None` for locks that last as long as their holder's session or handle.
    pub expires_in: Option<Duration>,
    /// How many sessions wait for it, where the backend can tell (PostgreSQL, SQL Server).
    pub waiters: Option<u64>,
}

impl HeldLock {
    /// A held lock known only by its backend key.
    pub fn new(key: impl Into<String>) -> Self {
        HeldLock {
            key: key.into(),
            name: None,
            name_hint: None,
            holder: None,
            fencing_token: None,
            expires_in: None,
            waiters: None,
        }
    }

    /// Sets the exact lock name.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the readable, possibly lossy, part of the name.
    #[must_use]
    pub fn with_name_hint(mut self, hint: impl Into<String>) -> Self {
        self.name_hint = Some(hint.into());
        self
    }

    /// Sets who holds it.
    #[must_use]
    pub fn with_holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = Some(holder.into());
        self
    }

    /// Sets the fencing token.
    #[must_use]
    pub fn with_fencing_token(mut self, token: u64) -> Self {
        self.fencing_token = Some(token);
        self
    }

    /// Sets the time the lease has left.
    #[must_use]
    pub fn with_expires_in(mut self, left: Duration) -> Self {
        self.expires_in = Some(left);
        self
    }

    /// Sets the number of waiting sessions.
    #[must_use]
    pub fn with_waiters(mut self, waiters: u64) -> Self {
        self.waiters = Some(waiters);
        self
    }

    /// What to call it in a listing: the name, else the name hint followed by `…`, else the
    /// key.
    pub fn label(&self) -> String {
        match (&self.name, &self.name_hint) {
            (Some(name), _) => name.clone(),
            (None, Some(hint)) => format!("{hint}…"),
            (None, None) => self.key.clone(),
        }
    }
}

impl fmt::Display for HeldLock {
    /// The [`label`](HeldLock::label), then the holder if known.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())?;
        if let Some(holder) = &self.holder {
            write!(f, " (held by {holder})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_display() {
        let held = HeldLock::new("k").with_name_hint("job_nightly");
        assert_eq!(held.label(), "job_nightly…");
        assert_eq!(
            HeldLock::new("k").with_holder("pid 1").to_string(),
            "k (held by pid 1)"
        );
    }
}
