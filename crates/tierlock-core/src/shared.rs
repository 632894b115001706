//! The state a manager shares with its guards: the table, the manager's tag, the provider and
//! the counters, and the release of one guard with its bookkeeping.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::error::LockError;
use crate::observe::{Observer, Since};
use crate::owner::Owner;
use crate::provider::Provider;
use crate::shards::Key;
use crate::stats::Counters;
use crate::table::{Holder, Outcome, Release, Table};

pub(crate) struct Inner {
    pub(crate) table: Arc<Table>,
    /// Distinguishes this manager's holders in a table shared with other managers.
    pub(crate) tag: u64,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) counters: Counters,
    /// Tracing and metrics (nothing without their features).
    pub(crate) observer: Observer,
}

impl Inner {
    /// `owner` as a holder of this manager's names.
    pub(crate) fn holder(&self, owner: Owner) -> Holder {
        Holder {
            tag: self.tag,
            owner,
        }
    }

    /// A timeout error, counted.
    pub(crate) fn timeout(&self, key: &Key, waited: Duration) -> LockError {
        self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
        LockError::Timeout {
            name: key.name().to_string(),
            waited,
        }
    }

    /// Releases one guard, handed out at `since`; returns the external lock if this boundary
    /// gave it up.
    pub(crate) fn release(&self, key: &Key, holder: &Holder, since: Since) -> Release {
        let release = self.table.release(key, holder);
        self.observer.released(key.name(), &release, since);
        let counter = match release.outcome {
            Outcome::HandedOff => Some(&self.counters.local_handoffs),
            Outcome::HandedBack => Some(&self.counters.handbacks),
            Outcome::Nested | Outcome::Removed | Outcome::NotHeld => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if release.external.is_some() {
            self.counters
                .external_releases
                .fetch_add(1, Ordering::Relaxed);
        }
        release
    }
}
