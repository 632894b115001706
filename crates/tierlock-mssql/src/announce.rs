//! Waits announced with [`Provider::request`](tierlock_core::Provider::request).
//!
//! The request mark is not taken by `request` on a session of its own (which would cost a
//! second session per waiter, and would show the mark to the holder before the wait exists):
//! `request` only records that a wait for the name is coming, and the wait that follows takes
//! the mark, waits and withdraws the mark in one batch on one session
//! ([`MARKED_WAIT_SQL`](crate::sql::MARKED_WAIT_SQL)). The record lasts as long as the
//! [`RequestMark`](tierlock_core::provider::RequestMark) that holds the [`Announcement`].

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// Names with announced waits, and how many.
#[derive(Debug, Default)]
pub(crate) struct Announced {
    waits: Mutex<HashMap<String, usize>>,
}

impl Announced {
    /// Records a coming wait for `name` until the returned value is dropped.
    pub(crate) fn announce(self: &Arc<Self>, name: &str) -> Announcement {
        *self.waits.lock().entry(name.to_owned()).or_insert(0) += 1;
        Announcement {
            announced: Arc::clone(self),
            name: name.to_owned(),
        }
    }

    /// Whether a wait for `name` was announced and is not over.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.waits.lock().contains_key(name)
    }
}

/// One announced wait; dropping it ends the announcement.
#[derive(Debug)]
pub(crate) struct Announcement {
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
