//! [`RedisProvider::held_locks`]: the lock keys under the provider's prefix, found with `SCAN`
//! (what `tierlock status --url redis://…` prints).

use std::future::Future;

use tierlock_core::HeldLock;

use crate::error::RedisError;
use crate::provider::RedisProvider;

/// Keys asked for per `SCAN` round trip.
const SCAN_COUNT: u64 = 500;

impl RedisProvider {
    /// The locks held right now under this provider's [key prefix](Self::key_prefix), by any
    /// process, sorted by key: `SCAN MATCH <prefix>{*}:lock` over the whole key space, then per
    /// key its `PTTL`, its name's fencing counter and the number of live waiter marks. Takes
    /// no lock and changes nothing. `SCAN` walks every key of the database in batches without
    /// blocking the server, so the listing costs time in proportion to the database's size.
    ///
    /// * **key**: the lock key, e.g. `tierlock:{n:job:nightly}:lock`.
    /// * **name**: exact for names kept readable in their keys (`{n:NAME}`, see
    ///   [`KeyNames`](crate::KeyNames)); `None` for hashed ones (`{h:HEX}`).
    /// * **expires_in**: the key's remaining time to live (the holder's watchdog renews it).
    /// * **fencing_token**: the name's counter, i.e. the holder's token.
    /// * **waiters**: waiter marks that have not expired (processes waiting for the name).
    /// * **holder**: not shown: the key holds a random owner token, which identifies no
    ///   process (and is what a release compares with, so it is not printed).
    ///
    /// A provider on prefix `tierlock:` does not list the keys of a namespaced prefix
    /// (`tierlock:billing:`): list each prefix with its own provider.
    ///
    /// ```no_run
    /// use tierlock_redis::RedisProvider;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tierlock_redis::RedisError> {
    /// let provider = RedisProvider::builder("redis://cache.internal:6379/0")
    ///     .key_prefix("tierlock:billing:")
    ///     .connect()
    ///     .await?;
    /// for held in provider.held_locks().await? {
    ///     println!("{} expires in {:?}", held.label(), held.expires_in);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`RedisError::Status`] if the connection breaks or the server refuses a command,
    /// [`RedisError::StatusTimeout`] if a round trip takes longer than the command timeout.
    pub async fn held_locks(&self) -> Result<Vec<HeldLock>, RedisError> {
        let shared = &self.shared;
        let timeout = shared.settings.command_timeout;
        let prefix = &shared.settings.key_prefix;
        let conn = bounded(timeout, "connect", shared.connector.get()).await?;
        let mut connection = conn.conn.clone();
        let result = async {
            let pattern = format!("{}{{*}}:lock", glob_escape(prefix));
            let mut keys = Vec::new();
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT);
                let scan = scan.query_async::<(u64, Vec<String>)>(&mut connection);
                let (next, found) = bounded(timeout, "SCAN", scan).await?;
                keys.extend(found);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            // SCAN may return a key more than once.
            keys.sort();
            keys.dedup();
            let time = redis::cmd("TIME");
            let time = time.query_async::<(u64, u64)>(&mut connection);
            let (secs, micros) = bounded(timeout, "TIME", time).await?;
            let now_ms = secs * 1000 + micros / 1000;

            let mut held = Vec::with_capacity(keys.len());
            for key in keys {
                let Some(base) = key.strip_suffix(":lock") else {
                    continue;
                };
                let mut pipe = redis::pipe();
                pipe.cmd("PTTL")
                    .arg(&key)
                    .cmd("GET")
                    .arg(format!("{base}:fence"))
                    .cmd("ZCOUNT")
                    .arg(format!("{base}:wait"))
                    .arg(now_ms)
                    .arg("+inf");
                let query = pipe.query_async::<(i64, Option<String>, u64)>(&mut connection);
                let (pttl, fence, waiters) = bounded(timeout, "PTTL", query).await?;
                // -2: released since the SCAN.
                if pttl == -2 {
                    continue;
                }
                let mut lock = HeldLock::new(key.clone()).with_waiters(waiters);
                if let Ok(left) = u64::try_from(pttl) {
                    lock = lock.with_expires_in(std::time::Duration::from_millis(left));
                }
                if let Some(token) = fence.and_then(|f| f.parse::<u64>().ok()) {
                    lock = lock.with_fencing_token(token);
                }
                if let Some(name) = base
                    .strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.strip_prefix("{n:"))
                    .and_then(|rest| rest.strip_suffix('}'))
                {
                    lock = lock.with_name(name);
                }
                held.push(lock);
            }
            Ok(held)
        }
        .await;
        if let Err(RedisError::Status { source, .. }) = &result {
            shared.connector.failed(&conn, source);
        }
        result
    }
}

/// `future` bounded by `timeout`, its error as a [`RedisError::Status`] of `operation`.
async fn bounded<T>(
    timeout: std::time::Duration,
    operation: &'static str,
    future: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, RedisError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result.map_err(|source| RedisError::Status { operation, source }),
        Err(_) => Err(RedisError::StatusTimeout { after: timeout }),
    }
}

/// `text` with the glob characters of `SCAN MATCH` escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("tierlock:"), "tierlock:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
