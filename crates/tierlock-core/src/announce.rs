//! Waits announced with [`Provider::request`](crate::Provider::request), for providers whose
//! wait takes its own request mark.
//!
//! A provider that marks a wait on the server (a shared lock the holder can see) should not take
//! the mark in `request` on a session of its own: that costs a second session per waiter, and it
//! shows the mark to the holder before the wait exists, so the holder hands the lock back while
//! nobody is queued to take it. Such a provider's `request` only records that a wait for the
//! name is coming ([`Announced::announce`], no I/O), hands the [`Announcement`] to
//! [`RequestMark::new`](crate::RequestMark::new), and its next acquisition of the name sees the
//! record ([`Announced::contains`]) and takes the mark and waits in one round trip on one
//! session. The record lasts as long as the request mark. The PostgreSQL and SQL Server
//! providers work this way.
//!
//! ```
//! use std::sync::Arc;
//! use tierlock_core::announce::Announced;
//! use tierlock_core::RequestMark;
//!
//! let announced = Arc::new(Announced::default());
//! // In `Provider::request`:
//! let mark = RequestMark::new(announced.announce("job"));
//! // In the acquisition that follows: mark the wait in the same statement.
//! assert!(announced.contains("job"));
//! drop(mark); // the manager drops it when the wait is over
//! assert!(!announced.contains("job"));
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// Names with announced waits, and how many; shared by a provider and its announcements.
#[derive(Debug, Default)]
pub struct Announced {
    waits: Mutex<HashMap<String, usize>>,
}

impl Announced {
    /// Records a coming wait for `name` until the returned value is dropped.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use tierlock_core::announce::Announced;
    /// let announced = Arc::new(Announced::default());
    /// let first = announced.announce("job");
    /// let second = announced.announce("job");
    /// drop(first);
    /// assert!(announced.contains("job")); // one is still coming
    /// drop(second);
    /// assert!(!announced.contains("job"));
    /// ```
    pub fn announce(self: &Arc<Self>, name: &str) -> Announcement {
        *self.waits.lock().entry(name.to_owned()).or_insert(0) += 1;
        Announcement {
            announced: Arc::clone(self),
            name: name.to_owned(),
        }
    }

    /// Whether a wait for `name` was announced and is not over.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use tierlock_core::announce::Announced;
    /// let announced = Arc::new(Announced::default());
    /// let _coming = announced.announce("job");
    /// assert!(announced.contains("job"));
    /// assert!(!announced.contains("other"));
    /// ```
    pub fn contains(&self, name: &str) -> bool {
        self.waits.lock().contains_key(name)
    }
}

/// One announced wait; dropping it ends the announcement.
#[derive(Debug)]
pub struct Announcement {
    announced: Arc<Announced>,
    name: String,
}

impl Drop for Announcement {
    fn drop(&mut self) {
        let mut waits = self.announced.waits.lock();
        if let Some(count) = waits.get_mut(&self.name) {
            *count -= 1;
            if *count == 0 {
                waits.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_count_and_end_when_dropped() {
        let announced = Arc::new(Announced::default());
        assert!(!announced.contains("a"));
        let first = announced.announce("a");
        let second = announced.announce("a");
        assert!(announced.contains("a"));
        assert!(!announced.contains("b"));
        drop(first);
        assert!(announced.contains("a"));
        drop(second);
        assert!(!announced.contains("a"));
        assert!(announced.waits.lock().is_empty());
    }
}
