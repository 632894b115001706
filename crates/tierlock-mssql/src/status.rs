//! [`MssqlProvider::held_locks`]: the applocks held right now in the database, read from
//! `sys.dm_tran_locks` (what `tierlock status --url mssql:…` prints).

use std::collections::BTreeMap;

use tierlock_core::HeldLock;

use crate::error::MssqlError;
use crate::names::REQUEST_SUFFIX;
use crate::naming::Naming;
use crate::provider::MssqlProvider;

/// Every applock request in the current database, granted or waiting.
pub(crate) const APPLOCKS: &str = "SELECT resource_description, request_session_id, request_mode, \
     request_status FROM sys.dm_tran_locks \
     WHERE resource_type = N'APPLICATION' AND resource_database_id = DB_ID();";

/// How many characters of a resource `sys.dm_tran_locks` shows.
const SHOWN_CHARS: usize = 32;

impl MssqlProvider {
    /// The applocks held exclusively right now in this provider's database, by any session,
    /// sorted by key: one query on `sys.dm_tran_locks` (`resource_type = 'APPLICATION'`),
    /// on a connection of its own that goes to the pool afterwards. Takes no lock.
    ///
    /// What SQL Server can tell:
    ///
    /// * **key**: the view's `resource_description`, `<principal>:[<resource>]:(<hash>)`. SQL
    ///   Server shows only the first 32 characters of the resource there (the hash tells
    ///   resources that share them apart).
    /// * **name**: the resource without this provider's namespace when it is shown whole
    ///   (shorter than 32 characters), the provider uses tierlock's own
    ///   [naming](crate::Naming::Tierlock) and the resource starts with the namespace; else
    ///   the shown part is a **name hint**.
    /// * **holder**: `session N` (the `session_id` for `KILL`).
    /// * **waiters**: sessions waiting in `sp_getapplock` for the same resource.
    /// * no fencing token (the counter table is keyed by the full resource, which the view
    ///   does not show) and no expiry (a session lock lasts as long as its session).
    ///
    /// Every exclusive applock of the database is listed, whatever took it; tierlock's request
    /// marks (shared locks on `…#tierlock-request` resources) are left out. Reading the view
    /// needs the `VIEW SERVER STATE` permission (`VIEW SERVER PERFORMANCE STATE` on SQL Server
    /// 2022); Babelfish does not have the view.
    ///
    /// ```no_run
    /// use tierlock_mssql::MssqlProvider;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tierlock_mssql::MssqlError> {
    /// let provider = MssqlProvider::new("server=tcp:db.internal,1433;user id=ops;password=…")?;
    /// for held in provider.held_locks().await? {
    ///     println!("{} held by {:?}, {:?} waiting", held.label(), held.holder, held.waiters);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`MssqlError::Connect`] if no connection can be opened, [`MssqlError::Status`] if the
    /// query fails (a missing permission), [`MssqlError::StatusTimeout`] if it gets no answer
    /// within the command timeout.
    pub async fn held_locks(&self) -> Result<Vec<HeldLock>, MssqlError> {
        let mut conn = self.shared.open().await?;
        let after = self.shared.options.command_timeout;
        let run = async {
            let stream = conn.client.query(APPLOCKS, &[]).await?;
            stream.into_first_result().await
        };
        let rows = match tokio::time::timeout(after, run).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(source)) => {
                return Err(MssqlError::Status {
                    source: Box::new(source),
                });
            }
            Err(_) => return Err(MssqlError::StatusTimeout { after }),
        };
        let mut requests = Vec::with_capacity(rows.len());
        for row in &rows {
            let text = |index| {
                row.try_get::<&str, _>(index)
                    .map(|value| value.unwrap_or_default().to_owned())
                    .map_err(|source| MssqlError::Status {
                        source: Box::new(source),
                    })
            };
            let session = row
                .try_get::<i32, _>(1)
                .map_err(|source| MssqlError::Status {
                    source: Box::new(source),
                })?
                .unwrap_or_default();
            requests.push(Request {
                description: text(0)?,
                session,
                mode: text(2)?,
                status: text(3)?,
            });
        }
        self.shared.put(conn);
        let namespace = (self.naming() == Naming::Tierlock).then(|| self.namespace());
        Ok(summarize(&requests, namespace))
    }
}

/// One row of `sys.dm_tran_locks`.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) description: String,
    pub(crate) session: i32,
    pub(crate) mode: String,
    pub(crate) status: String,
}

/// The held locks among `requests`: granted exclusive ones, with the waiting exclusive
/// requests on the same resource counted. `namespace` is set when names can be read back.
pub(crate) fn summarize(requests: &[Request], namespace: Option<&str>) -> Vec<HeldLock> {
    let granted = |r: &Request| matches!(r.status.as_str(), "GRANT" | "GRANTED");
    let mut held: BTreeMap<&str, HeldLock> = BTreeMap::new();
    for request in requests.iter().filter(|r| r.mode == "X" && granted(r)) {
        let shown = shown_resource(&request.description);
        if shown.ends_with(REQUEST_SUFFIX) {
            continue;
        }
        let mut lock = HeldLock::new(request.description.clone())
            .with_holder(format!("session {}", request.session));
        let whole = shown.chars().count() < SHOWN_CHARS;
        match namespace.and_then(|ns| shown.strip_prefix(ns)) {
            Some(name) if whole && !name.is_empty() => lock = lock.with_name(name),
            _ if !shown.is_empty() => lock = lock.with_name_hint(shown),
            _ => {}
        }
        held.insert(&request.description, lock);
    }
    for request in requests.iter().filter(|r| r.mode == "X" && !granted(r)) {
        if let Some(lock) = held.get_mut(request.description.as_str()) {
            let waiters = lock.waiters.unwrap_or(0) + 1;
            *lock = lock.clone().with_waiters(waiters);
        }
    }
    held.into_values()
        .map(|lock| {
            if lock.waiters.is_none() {
                lock.with_waiters(0)
            } else {
                lock
            }
        })
        .collect()
}

/// The resource part of `0:[resource]:(hash)` (the brackets are optional).
fn shown_resource(description: &str) -> &str {
    let rest = description
        .split_once(':')
        .map_or(description, |(_, rest)| rest);
    let rest = rest.rfind(":(").map_or(rest, |at| &rest[..at]);
    rest.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(description: &str, session: i32, mode: &str, status: &str) -> Request {
        Request {
            description: description.to_owned(),
            session,
            mode: mode.to_owned(),
            status: status.to_owned(),
        }
    }

    #[test]
    fn summary_of_the_view() {
        let long = format!("0:[app:{}]:(1234abcd)", "x".repeat(28));
        let rows = [
            request("0:[app:job]:(8f29b1ce)", 51, "X", "GRANT"),
            request("0:[app:job]:(8f29b1ce)", 52, "X", "WAIT"),
            request("0:[app:job]:(8f29b1ce)", 53, "X", "WAIT"),
            request("0:[app:job#tierlock-request]:(00aa11bb)", 52, "S", "GRANT"),
            request(&long, 54, "X", "GRANT"),
            request("0:[other]:(0badf00d)", 55, "X", "GRANT"),
            request("0:[shared-only]:(0badf00e)", 56, "S", "GRANT"),
        ];
        let held = summarize(&rows, Some("app:"));
        assert_eq!(held.len(), 3, "{held:#?}");
        assert_eq!(held[0].name.as_deref(), Some("job"));
        assert_eq!(held[0].holder.as_deref(), Some("session 51"));
        assert_eq!(held[0].waiters, Some(2));
        assert_eq!(held[1].name, None, "32 characters shown: maybe cut");
        assert_eq!(
            held[1].name_hint.as_deref(),
            Some(format!("app:{}", "x".repeat(28)).as_str())
        );
        assert_eq!(held[2].name, None, "another namespace");
        assert_eq!(held[2].name_hint.as_deref(), Some("other"));
        assert_eq!(held[2].waiters, Some(0));
        // Without a readable naming, only hints.
        assert!(summarize(&rows, None).iter().all(|h| h.name.is_none()));
        assert_eq!(shown_resource("0:plain:(1)"), "plain");
    }
}
