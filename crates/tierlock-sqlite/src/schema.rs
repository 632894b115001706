//! The database: opening it, telling whether it is tierlock's, and creating the schema.
//!
//! Schema version 1 (`PRAGMA user_version = 1`, `PRAGMA application_id = 0x746c636b`, "tlck"):
//!
//! * `tierlock_fence`: one row, the last fencing token handed out in this database. Every
//!   acquisition takes the next one, so tokens never go back, whatever happens to lease rows.
//! * `tierlock_leases`: one row per held (or expired, not yet taken over) lease; released
//!   leases are deleted.
//! * `tierlock_waiters`: one row per process waiting for a name (the request signal).
//! * `tierlock_holders`: a view of the leases for people, with readable times.
//!
//! A file is only ever initialised when it is empty (no tables, no application id); anything
//! else that is not tierlock's is refused without being changed.

use std::path::Path;
use std::time::Instant;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::busy;
use crate::error::SqliteError;

/// The schema version this crate writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

/// `PRAGMA application_id` of a tierlock database: "tlck".
pub const APPLICATION_ID: i64 = 0x746c_636b;

/// The tables of schema version 1.
const TABLES: [&str; 3] = ["tierlock_fence", "tierlock_leases", "tierlock_waiters"];

const CREATE: &str = "
CREATE TABLE tierlock_fence (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
);
INSERT INTO tierlock_fence (id, last) VALUES (1, 0);

CREATE TABLE tierlock_leases (
    name        TEXT    NOT NULL PRIMARY KEY,
    token       INTEGER NOT NULL,
    owner       TEXT    NOT NULL,
    host        TEXT    NOT NULL,
    pid         INTEGER NOT NULL,
    ttl_ms      INTEGER NOT NULL,
    clock       TEXT    NOT NULL,
    expires_ns  INTEGER NOT NULL,
    acquired_at REAL    NOT NULL,
    renewed_at  REAL    NOT NULL,
    expires_at  REAL    NOT NULL
) WITHOUT ROWID;

CREATE TABLE tierlock_waiters (
    name        TEXT    NOT NULL,
    waiter      TEXT    NOT NULL,
    host        TEXT    NOT NULL,
    pid         INTEGER NOT NULL,
    clock       TEXT    NOT NULL,
    expires_ns  INTEGER NOT NULL,
    since       REAL    NOT NULL,
    expires_at  REAL    NOT NULL,
    PRIMARY KEY (name, waiter)
) WITHOUT ROWID;

CREATE VIEW tierlock_holders AS
SELECT name, token, host, pid, owner,
       datetime(acquired_at, 'unixepoch', 'subsec') AS acquired,
       datetime(renewed_at, 'unixepoch', 'subsec') AS renewed,
       datetime(expires_at, 'unixepoch', 'subsec') AS expires,
       round(expires_at - unixepoch('subsec'), 3) AS seconds_left,
       (SELECT count(*) FROM tierlock_waiters w
         WHERE w.name = l.name AND w.expires_at > unixepoch('subsec')) AS waiting
  FROM tierlock_leases l;
";

/// How the connection commits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Durability {
    /// `synchronous = FULL` (an fsync per commit) instead of `NORMAL`.
    pub(crate) full: bool,
}

/// Opens `path` read-write, creating it if missing, and makes it a usable tierlock database:
/// WAL mode, the schema (created if the file is empty), an integrity check.
///
/// Waits at most `busy_timeout` for each lock another connection holds.
pub(crate) fn open(
    path: &Path,
    durability: Durability,
    busy_timeout: std::time::Duration,
) -> Result<Connection, SqliteError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|source| {
        match source.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ReadOnly) => SqliteError::ReadOnly {
                path: path.to_path_buf(),
            },
            _ => SqliteError::Open {
                path: path.to_path_buf(),
                source: Box::new(source),
            },
        }
    })?;
    let deadline = Instant::now() + busy_timeout;
    let scope = busy::Scope::new(deadline, None);
    busy::install(&conn)
        .map_err(|source| SqliteError::from_sqlite(path, "open", None, scope.elapsed(), source))?;
    // Some steps here fail with SQLITE_BUSY without calling the busy handler, when another
    // process is setting up the same new file (switching to WAL needs the database to
    // itself; SQLite does not wait for it, to avoid deadlocks): those are retried.
    loop {
        match prepare(&conn, path, durability, &scope) {
            Err(SqliteError::Busy { .. }) if Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(err) => return Err(err),
            Ok(()) => return Ok(conn),
        }
    }
}

/// Everything after opening: checks, WAL mode, the schema. Every step can be repeated.
fn prepare(
    conn: &Connection,
    path: &Path,
    durability: Durability,
    scope: &busy::Scope,
) -> Result<(), SqliteError> {
    let error = |operation| {
        move |source| SqliteError::from_sqlite(path, operation, None, scope.elapsed(), source)
    };
    // SQLite opens a file it may not write read-only without a word.
    if conn.is_readonly("main").map_err(error("open"))? {
        return Err(SqliteError::ReadOnly {
            path: path.to_path_buf(),
        });
    }
    // Read before anything is written: a foreign or damaged file is left as it is.
    match inspect(conn).map_err(error("read the schema"))? {
        Found::Ours | Found::Empty => {}
        Found::Newer(found) => {
            return Err(SqliteError::SchemaVersion {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Found::Foreign(detail) => {
            return Err(SqliteError::Foreign {
                path: path.to_path_buf(),
                detail,
            });
        }
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(error("set journal_mode=WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(SqliteError::NoWal {
            path: path.to_path_buf(),
            mode,
        });
    }
    let synchronous = if durability.full { "FULL" } else { "NORMAL" };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(error("set synchronous"))?;
    create_if_empty(conn).map_err(error("create the schema"))?;
    check(conn, path)
}

/// What a file holds.
enum Found {
    /// Nothing yet: to be initialised.
    Empty,
    /// tierlock's schema at [`SCHEMA_VERSION`].
    Ours,
    /// tierlock's, from a newer version.
    Newer(i64),
    /// Someone else's.
    Foreign(String),
}

/// Reads the header fields and the schema in one read transaction: one snapshot, even while
/// another process creates the schema.
fn inspect(conn: &Connection) -> rusqlite::Result<Found> {
    conn.execute_batch("BEGIN DEFERRED")?;
    let found = read_schema(conn);
    if conn.execute_batch("COMMIT").is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    found
}

fn read_schema(conn: &Connection) -> rusqlite::Result<Found> {
    let application_id: i64 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )?;
    let objects = stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(match application_id {
        APPLICATION_ID if version == SCHEMA_VERSION => Found::Ours,
        APPLICATION_ID if version > SCHEMA_VERSION => Found::Newer(version),
        APPLICATION_ID => Found::Foreign(format!(
            "tierlock's application id with schema version {version}"
        )),
        0 if objects.is_empty() && version == 0 => Found::Empty,
        0 => {
            let mut shown: Vec<&str> = objects.iter().map(String::as_str).take(5).collect();
            if objects.len() > shown.len() {
                shown.push("…");
            }
            Found::Foreign(if objects.is_empty() {
                format!("user_version {version}")
            } else {
                format!("it has {}", shown.join(", "))
            })
        }
        other => Found::Foreign(format!("application_id {other:#x}")),
    })
}

/// Creates the schema if the file is still empty, in a write transaction, so that of several
/// processes opening a new file at once exactly one creates it.
fn create_if_empty(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let application_id: i64 =
            conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
        if application_id != 0 {
            return Ok(());
        }
        conn.execute_batch(CREATE)?;
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(err)
        }
    }
}

/// The file is tierlock's at this version (checked again: another process may have created
/// it meanwhile), has its tables and the fence row, and passes `PRAGMA quick_check` (fast on a
/// database this small: rows exist only for held leases and waiters).
fn check(conn: &Connection, path: &Path) -> Result<(), SqliteError> {
    let corrupt = |detail: String| SqliteError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let error = |source| {
        SqliteError::from_sqlite(
            path,
            "check the schema",
            None,
            std::time::Duration::ZERO,
            source,
        )
    };
    match inspect(conn).map_err(error)? {
        Found::Ours => {}
        Found::Newer(found) => {
            return Err(SqliteError::SchemaVersion {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Found::Empty | Found::Foreign(_) => {
            return Err(corrupt("the schema was not created".to_owned()));
        }
    }
    for table in TABLES {
        let found: Option<String> = conn
            .query_row(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |row| row.get(0),
            )
            .optional()
            .map_err(error)?;
        if found.is_none() {
            return Err(corrupt(format!("table {table} is missing")));
        }
    }
    let fence: Option<i64> = conn
        .query_row("SELECT last FROM tierlock_fence WHERE id = 1", [], |row| {
            row.get(0)
        })
        .optional()
        .map_err(error)?;
    if fence.is_none() {
        return Err(corrupt("the row of tierlock_fence is missing".to_owned()));
    }
    let verdict: String = conn
        .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
        .map_err(error)?;
    if verdict != "ok" {
        return Err(corrupt(verdict));
    }
    Ok(())
}
