//! What the fake server does with each statement the provider sends, recognised by its text.
//!
//! The fencing counter table starts missing (the `MERGE` fails with error 208 "Invalid object
//! name" until the `CREATE TABLE` ran), its rows survive sessions, and a `MERGE` from a session
//! that does not hold the resource's exclusive applock is refused (error 50000), so a provider
//! that advanced the counter outside the lock would fail the tests.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Inner;
use super::locks::{Held, Outcome};
use super::wire::{Cell, Col, Reply, Val, Value, ints};

/// The answer to one statement; `None` if the server went down with it.
pub async fn execute(inner: &Inner, spid: i32, sql: &str, params: &[Value]) -> Option<Reply> {
    let text = |i: usize| match params.get(i) {
        Some(Value::Str(s)) => s.clone(),
        other => panic!("parameter {i} of {sql:?} is not a string: {other:?}"),
    };
    let int = |i: usize| match params.get(i) {
        Some(Value::Int(v)) => *v,
        other => panic!("parameter {i} of {sql:?} is not an int: {other:?}"),
    };
    let reply = if sql.contains("SERVERPROPERTY('Babelfish')") {
        assert!(
            sql.contains("@@VERSION LIKE N'Babelfish for PostgreSQL%'"),
            "{sql}"
        );
        ints(&[i32::from(inner.babelfish)])
    } else if sql.contains("@LockMode = 'Shared'") && sql.contains("@LockMode = 'Exclusive'") {
        // The marked wait: the mark, the wait, then the mark's release, in one batch.
        let mark = get_applock(inner, spid, &text(2), false, int(3)).await?;
        let forced = inner.forced_code.lock().take();
        let code = match forced {
            Some(code) => code,
            None => get_applock(inner, spid, &text(0), true, int(1)).await?,
        };
        if mark >= 0 {
            assert!(release(inner, spid, &text(2)), "the mark was not held");
        }
        ints(&[code, spid, mark])
    } else if sql.contains("sp_getapplock") {
        let exclusive = sql.contains("@LockMode = 'Exclusive'");
        let forced = exclusive.then(|| inner.forced_code.lock().take()).flatten();
        let code = match forced {
            Some(code) => code,
            None => get_applock(inner, spid, &text(0), exclusive, int(1)).await?,
        };
        if sql.contains("@@SPID") {
            ints(&[code, spid])
        } else {
            ints(&[code])
        }
    } else if sql.starts_with("MERGE") {
        merge(inner, spid, sql, &text(0))
    } else if sql.contains("CREATE TABLE") {
        create(inner, sql)
    } else if sql.contains("sp_releaseapplock") {
        let resource = text(0);
        if release(inner, spid, &resource) {
            ints(&[0])
        } else {
            not_held(inner, &resource)
        }
    } else if sql.contains("APPLOCK_TEST") {
        assert!(sql.contains("'Exclusive', 'Session'"), "{sql}");
        let want = Held {
            resource: cut(inner, &text(0)),
            spid,
            exclusive: true,
        };
        ints(&[i32::from(inner.table.lock().grantable(&want))])
    } else if sql.contains("sys.dm_tran_locks") {
        assert!(sql.contains("resource_type = N'APPLICATION'"), "{sql}");
        applocks(inner)
    } else if sql.trim() == "SELECT 1;" {
        ints(&[1])
    } else {
        panic!("the fake server does not know {sql:?}")
    };
    Some(reply)
}

/// The resource as the server keys it: Babelfish cuts it at 255 bytes of UTF-8.
fn cut(inner: &Inner, resource: &str) -> String {
    if !inner.babelfish || resource.len() <= 255 {
        return resource.to_owned();
    }
    let mut end = 255;
    while !resource.is_char_boundary(end) {
        end -= 1;
    }
    resource[..end].to_owned()
}

/// `sp_releaseapplock` of a lock the session does not hold: SQL Server raises error 1223 (and
/// returns -999, which the driver never shows once an error came); Babelfish raises an error of
/// its own numbering with the same message.
fn not_held(inner: &Inner, resource: &str) -> Reply {
    let number = if inner.babelfish { 33_557_097 } else { 1223 };
    Reply::Error(
        number,
        16,
        format!(
            "Cannot release the application lock (Database Principal: 'public', Resource: \
             '{resource}') because it is not currently held."
        ),
    )
}

fn release(inner: &Inner, spid: i32, resource: &str) -> bool {
    let released = inner.table.lock().release(spid, &cut(inner, resource));
    inner.changed.notify_waiters();
    released
}

/// `sp_getapplock`: the return code, or `None` if the refusal brought the server down.
async fn get_applock(
    inner: &Inner,
    spid: i32,
    resource: &str,
    exclusive: bool,
    ms: i32,
) -> Option<i32> {
    let want = Held {
        resource: cut(inner, resource),
        spid,
        exclusive,
    };
    let outcome = inner.table.lock().request(want, ms != 0);
    let id = match outcome {
        Outcome::Granted => return Some(0),
        Outcome::Queued(id) => id,
        Outcome::Refused => return refusal(inner, spid, ms),
    };
    // Babelfish never says "granted after waiting".
    let after_wait = if inner.babelfish { 0 } else { 1 };
    let deadline =
        u64::try_from(ms).map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
    loop {
        let changed = inner.changed.notified();
        match inner.table.lock().collect(id) {
            Some(true) => return Some(after_wait),
            Some(false) => {}
            // The session ended (a crash): the request went with it.
            None => return None,
        }
        let timed_out = match deadline {
            Ok(deadline) => tokio::time::timeout_at(deadline, changed).await.is_err(),
            Err(_) => {
                changed.await;
                false
            }
        };
        if timed_out {
            if inner.table.lock().withdraw(id) {
                return Some(after_wait);
            }
            inner.changed.notify_waiters();
            return refusal(inner, spid, ms);
        }
    }
}

/// The code of a refused request (`None` if the refusal brought the server down). Babelfish
/// answers a refused no-wait request with -999.
fn refusal(inner: &Inner, spid: i32, ms: i32) -> Option<i32> {
    if inner.refused(spid) {
        return None;
    }
    Some(if inner.babelfish && ms == 0 { -999 } else { -1 })
}

fn merge(inner: &Inner, spid: i32, sql: &str, resource: &str) -> Reply {
    assert!(sql.contains("WITH (HOLDLOCK)"), "{sql}");
    assert!(
        sql.contains("OUTPUT CAST(inserted.token AS bigint)"),
        "{sql}"
    );
    if let Some((number, message)) = inner.fence_error.lock().take() {
        return Reply::Error(number, 16, message);
    }
    let mut table = inner.table.lock();
    if !table.holds(spid, &cut(inner, resource), true) {
        return Reply::Error(50000, 16, format!("{resource} advanced without its lock"));
    }
    let Some(fences) = table.fences.as_mut() else {
        return Reply::Error(208, 16, "Invalid object name 'dbo.tierlock_fence'.".into());
    };
    let token = fences.entry(resource.to_owned()).or_insert(0);
    *token += 1;
    Reply::Row(vec![Val::BigInt(*token)])
}

fn create(inner: &Inner, sql: &str) -> Reply {
    assert!(sql.starts_with("IF OBJECT_ID(N'"), "{sql}");
    if let Some((number, message)) = inner.fence_error.lock().take() {
        return Reply::Error(number, 16, message);
    }
    if inner.deny_create.load(Ordering::SeqCst) {
        return Reply::Error(262, 14, "CREATE TABLE permission denied".into());
    }
    inner.table.lock().fences.get_or_insert_with(HashMap::new);
    if inner.create_races.load(Ordering::SeqCst) {
        return Reply::Error(
            2714,
            16,
            "There is already an object named 'tierlock_fence'.".into(),
        );
    }
    Reply::Done
}

/// `sys.dm_tran_locks` for the APPLICATION resources: a row per granted lock and per waiting
/// request, described as SQL Server does, `0:[<first 32 characters>]:(<hash>)`.
fn applocks(inner: &Inner) -> Reply {
    let describe = |resource: &str| {
        // FNV-1a: a stand-in for SQL Server's own hash of the whole resource.
        let hash = resource.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        let shown: String = resource.chars().take(32).collect();
        format!("0:[{shown}]:({hash:08x})")
    };
    let table = inner.table.lock();
    let mode = |held: &super::locks::Held| if held.exclusive { "X" } else { "S" };
    let mut rows = Vec::new();
    for (held, status) in table
        .locks()
        .into_iter()
        .map(|h| (h, "GRANT"))
        .chain(table.waiting().into_iter().map(|h| (h, "WAIT")))
    {
        rows.push(vec![
            Cell::Str(describe(&held.resource)),
            Cell::Int(held.spid),
            Cell::Str(mode(&held).to_owned()),
            Cell::Str(status.to_owned()),
        ]);
    }
    Reply::Table(
        vec![
            ("resource_description", Col::NVarChar),
            ("request_session_id", Col::Int),
            ("request_mode", Col::NVarChar),
            ("request_status", Col::NVarChar),
        ],
        rows,
    )
}
