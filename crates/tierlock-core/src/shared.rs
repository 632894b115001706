//! The state a manager shares with its guards: the table, the manager's tag, the provider and
//! the observer (counters, tracing, metrics), and the release of one guard with its bookkeeping.

use std::sync::Arc;
use std::time::Duration;

use crate::error::LockError;
use crate::observe::{Observer, Since};
use crate::owner::Owner;
use crate::provider::Provider;
use crate::shards::Key;
use crate::table::{Claim, Holder, Release, Table};

pub(crate) struct Inner {
    pub(crate) table: Arc<Table>,
    /// Distinguishes this manager's holders in a table shared with other managers.
    pub(crate) tag: u64,
    pub(crate) provider: Arc<dyn Provider>,
    /// The counters of `Stats`, and tracing and metrics with their features.
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
        self.observer.timed_out();
        LockError::Timeout {
            name: key.name().to_string(),
            waited,
        }
    }

    /// Releases one guard of `holder` on `key` (with its claim, if it was counted without the
    /// shard lock), handed out at `since`; returns the external lock if this boundary gave it
    /// up.
    pub(crate) fn release(
        &self,
        key: &Key,
        holder: &Holder,
        claim: Option<&Claim>,
        since: Since,
    ) -> Release {
        let release = self.table.release(key, holder, claim);
        self.observer.released(key.name(), &release, since);
        release
    }
}
