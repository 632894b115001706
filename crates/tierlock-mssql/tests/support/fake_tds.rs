//! A tiny fake SQL Server for tests: speaks just enough TDS (pre-login without TLS, login, RPC
//! `sp_executesql` requests, one-row `int`/`bigint` results, server errors) for the provider's
//! statements, and keeps session applocks in memory the way the documentation describes them:
//! locks belong to a session and vanish with it, `Exclusive` conflicts with everything held by
//! other sessions, `Shared` only with `Exclusive`, waits end with `1` (granted after waiting) or
//! `-1`. The fencing counter table lives in memory too: it starts missing (the `MERGE` fails
//! with error 208 "Invalid object name" until the `CREATE TABLE` ran), its rows survive sessions,
//! and a `MERGE` from a session that does not hold the resource's exclusive applock is refused
//! (error 50000), so a provider that advanced the counter outside the lock would fail the tests.
//!
//! It does not stand in for a real server's behaviour in general; it lets the provider's own
//! code (pool, statement bounds, cancellation, monitor, request marks) run over a real driver.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// A lock held by a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub resource: String,
    pub spid: i32,
    pub exclusive: bool,
}

/// One statement as received: its SQL and the values of `@P1`, `@P2`, …
#[derive(Debug, Clone)]
pub struct Statement {
    pub spid: i32,
    pub sql: String,
    pub params: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i32),
}

#[derive(Default)]
struct Inner {
    locks: Mutex<Vec<Held>>,
    /// The fencing counter table: `None` until created.
    fences: Mutex<Option<HashMap<String, i64>>>,
    /// The next fencing statement fails with this server error `(number, message)`.
    fence_error: Mutex<Option<(u32, String)>>,
    /// `CREATE TABLE` is refused (error 262, permission denied).
    deny_create: AtomicBool,
    /// `CREATE TABLE` finds that another session created the table a moment before (it then
    /// exists, and the statement fails with error 2714).
    create_races: AtomicBool,
    changed: Notify,
    sessions: Mutex<HashMap<i32, Arc<Notify>>>,
    log: Mutex<Vec<Statement>>,
    logins: AtomicUsize,
    next_spid: AtomicI32,
    stall: AtomicBool,
    forced_code: Mutex<Option<i32>>,
}

/// The fake server; dropping it does not stop it (it lives as long as the runtime).
#[derive(Clone)]
pub struct FakeServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl FakeServer {
    /// Listens on an ephemeral loopback port.
    pub async fn start() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Inner {
            next_spid: AtomicI32::new(51),
            ..Inner::default()
        });
        let server = Arc::clone(&inner);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let spid = server.next_spid.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(session(stream, spid, Arc::clone(&server)));
            }
        });
        FakeServer { addr, inner }
    }

    /// An ADO.NET connection string for this server (no TLS: the fake does not do it).
    pub fn connection_string(&self) -> String {
        format!(
            "server=tcp:127.0.0.1,{};user id=u;password=p;encrypt=DANGER_PLAINTEXT",
            self.addr.port()
        )
    }

    pub fn locks(&self) -> Vec<Held> {
        self.inner.locks.lock().clone()
    }

    pub fn statements(&self) -> Vec<Statement> {
        self.inner.log.lock().clone()
    }

    pub fn logins(&self) -> usize {
        self.inner.logins.load(Ordering::SeqCst)
    }

    /// Sessions whose connection is open.
    pub fn open_sessions(&self) -> Vec<i32> {
        let mut spids: Vec<i32> = self.inner.sessions.lock().keys().copied().collect();
        spids.sort_unstable();
        spids
    }

    /// Ends a session as `KILL` does: closes its connection and frees its locks.
    pub fn kill(&self, spid: i32) {
        if let Some(kill) = self.inner.sessions.lock().get(&spid) {
            kill.notify_one();
        }
    }

    /// While set, requests are read but never answered.
    pub fn stall(&self, on: bool) {
        self.inner.stall.store(on, Ordering::SeqCst);
    }

    /// The next `sp_getapplock` returns `code` without touching any lock.
    pub fn force_next_code(&self, code: i32) {
        *self.inner.forced_code.lock() = Some(code);
    }

    /// The fencing counters, once the table exists: resource → last token.
    pub fn fences(&self) -> Option<HashMap<String, i64>> {
        self.inner.fences.lock().clone()
    }

    /// Sets one fencing counter (creating the table), as a DBA editing it by hand would.
    pub fn set_fence(&self, resource: &str, token: i64) {
        let mut fences = self.inner.fences.lock();
        fences
            .get_or_insert_with(HashMap::new)
            .insert(resource.to_owned(), token);
    }

    /// The next fencing statement (`MERGE` or `CREATE TABLE`) fails with server error `number`.
    pub fn fail_next_fence(&self, number: u32, message: &str) {
        *self.inner.fence_error.lock() = Some((number, message.to_owned()));
    }

    /// While set, `CREATE TABLE` fails as for a login without the permission (error 262).
    pub fn deny_create(&self, deny: bool) {
        self.inner.deny_create.store(deny, Ordering::SeqCst);
    }

    /// While set, `CREATE TABLE` loses a race with another session: the table exists
    /// afterwards, and the statement fails with error 2714.
    pub fn create_races(&self, on: bool) {
        self.inner.create_races.store(on, Ordering::SeqCst);
    }
}

/// A result column value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val {
    Int(i32),
    BigInt(i64),
}

/// What a statement answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Row(Vec<Val>),
    /// No result set (DDL).
    Done,
    /// A server error: number, class (severity), message.
    Error(u32, u8, String),
}

fn ints(values: &[i32]) -> Reply {
    Reply::Row(values.iter().map(|v| Val::Int(*v)).collect())
}

async fn session(stream: TcpStream, spid: i32, inner: Arc<Inner>) {
    let kill = Arc::new(Notify::new());
    inner.sessions.lock().insert(spid, Arc::clone(&kill));
    let (mut rd, mut wr) = stream.into_split();
    let _ = serve(&mut rd, &mut wr, spid, &inner, &kill).await;
    inner.sessions.lock().remove(&spid);
    inner.locks.lock().retain(|held| held.spid != spid);
    inner.changed.notify_waiters();
}

/// Runs one session until the client goes away or it is killed.
async fn serve(
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    spid: i32,
    inner: &Inner,
    kill: &Notify,
) -> std::io::Result<()> {
    read_message(rd).await?; // PRELOGIN
    write_message(wr, &prelogin_response()).await?;
    read_message(rd).await?; // LOGIN7
    inner.logins.fetch_add(1, Ordering::SeqCst);
    write_message(wr, &done(0)).await?;
    loop {
        let payload = tokio::select! {
            message = read_message(rd) => message?,
            () = kill.notified() => return Ok(()),
        };
        let (sql, params) = parse_rpc(&payload);
        inner.log.lock().push(Statement {
            spid,
            sql: sql.clone(),
            params: params.clone(),
        });
        if inner.stall.load(Ordering::SeqCst) {
            return hang_up_when_gone(rd, kill).await;
        }
        let reply = tokio::select! {
            reply = execute(inner, spid, &sql, &params) => reply,
            _ = hang_up_when_gone(rd, kill) => return Ok(()),
        };
        write_message(wr, &encode(&reply)).await?;
    }
}

/// Resolves when the client closes the connection or the session is killed.
async fn hang_up_when_gone(rd: &mut OwnedReadHalf, kill: &Notify) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    tokio::select! {
        _ = async { while rd.read(&mut byte).await? > 0 {} std::io::Result::Ok(()) } => Ok(()),
        () = kill.notified() => Ok(()),
    }
}

async fn execute(inner: &Inner, spid: i32, sql: &str, params: &[Value]) -> Reply {
    let text = |i: usize| match params.get(i) {
        Some(Value::Str(s)) => s.clone(),
        other => panic!("parameter {i} of {sql:?} is not a string: {other:?}"),
    };
    let int = |i: usize| match params.get(i) {
        Some(Value::Int(v)) => *v,
        other => panic!("parameter {i} of {sql:?} is not an int: {other:?}"),
    };
    if sql.contains("sp_getapplock") {
        let forced = inner.forced_code.lock().take();
        let code = match forced {
            Some(code) => code,
            None => {
                let exclusive = sql.contains("@LockMode = 'Exclusive'");
                get_applock(inner, spid, &text(0), exclusive, int(1)).await
            }
        };
        if sql.contains("@@SPID") {
            ints(&[code, spid])
        } else {
            ints(&[code])
        }
    } else if sql.starts_with("MERGE") {
        assert!(sql.contains("WITH (HOLDLOCK)"), "{sql}");
        assert!(
            sql.contains("OUTPUT CAST(inserted.token AS bigint)"),
            "{sql}"
        );
        let resource = text(0);
        if let Some((number, message)) = inner.fence_error.lock().take() {
            return Reply::Error(number, 16, message);
        }
        let holds = inner
            .locks
            .lock()
            .iter()
            .any(|h| h.spid == spid && h.resource == resource && h.exclusive);
        if !holds {
            return Reply::Error(50000, 16, format!("{resource} advanced without its lock"));
        }
        let mut fences = inner.fences.lock();
        let Some(table) = fences.as_mut() else {
            return Reply::Error(208, 16, "Invalid object name 'dbo.tierlock_fence'.".into());
        };
        let token = table.entry(resource).or_insert(0);
        *token += 1;
        Reply::Row(vec![Val::BigInt(*token)])
    } else if sql.contains("CREATE TABLE") {
        assert!(sql.starts_with("IF OBJECT_ID(N'"), "{sql}");
        if let Some((number, message)) = inner.fence_error.lock().take() {
            return Reply::Error(number, 16, message);
        }
        if inner.deny_create.load(Ordering::SeqCst) {
            return Reply::Error(262, 14, "CREATE TABLE permission denied".into());
        }
        inner.fences.lock().get_or_insert_with(HashMap::new);
        if inner.create_races.load(Ordering::SeqCst) {
            return Reply::Error(
                2714,
                16,
                "There is already an object named 'tierlock_fence'.".into(),
            );
        }
        Reply::Done
    } else if sql.contains("sp_releaseapplock") {
        let resource = text(0);
        let mut locks = inner.locks.lock();
        let code = match locks
            .iter()
            .position(|h| h.spid == spid && h.resource == resource)
        {
            Some(at) => {
                locks.remove(at);
                0
            }
            None => -999,
        };
        drop(locks);
        inner.changed.notify_waiters();
        ints(&[code])
    } else if sql.contains("APPLOCK_TEST") {
        assert!(sql.contains("'Exclusive', 'Session'"), "{sql}");
        ints(&[i32::from(grantable(inner, spid, &text(0), true))])
    } else if sql.trim() == "SELECT 1;" {
        ints(&[1])
    } else {
        panic!("the fake server does not know {sql:?}")
    }
}

fn grantable(inner: &Inner, spid: i32, resource: &str, exclusive: bool) -> bool {
    inner
        .locks
        .lock()
        .iter()
        .filter(|h| h.resource == resource && h.spid != spid)
        .all(|h| !exclusive && !h.exclusive)
}

async fn get_applock(inner: &Inner, spid: i32, resource: &str, exclusive: bool, ms: i32) -> i32 {
    let deadline =
        u64::try_from(ms).map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
    let mut waited = false;
    loop {
        let changed = inner.changed.notified();
        {
            let mut locks = inner.locks.lock();
            let free = locks
                .iter()
                .filter(|h| h.resource == resource && h.spid != spid)
                .all(|h| !exclusive && !h.exclusive);
            if free {
                locks.push(Held {
                    resource: resource.to_owned(),
                    spid,
                    exclusive,
                });
                return i32::from(waited);
            }
        }
        waited = true;
        match deadline {
            Ok(deadline) => {
                if tokio::time::timeout_at(deadline, changed).await.is_err() {
                    return -1;
                }
            }
            Err(_) => changed.await,
        }
    }
}

// ---- the wire ----

async fn read_message(rd: &mut OwnedReadHalf) -> std::io::Result<Vec<u8>> {
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 8];
        rd.read_exact(&mut header).await?;
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let mut body = vec![0u8; len.saturating_sub(8)];
        rd.read_exact(&mut body).await?;
        payload.extend_from_slice(&body);
        if header[1] & 0x01 != 0 {
            return Ok(payload);
        }
    }
}

async fn write_message(wr: &mut OwnedWriteHalf, payload: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(payload.len() + 8).expect("small responses");
    let mut packet = vec![0x04, 0x01];
    packet.extend_from_slice(&len.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 1, 0]);
    packet.extend_from_slice(payload);
    wr.write_all(&packet).await
}

fn prelogin_response() -> Vec<u8> {
    // VERSION at offset 11 (6 bytes), ENCRYPTION at 17 (1 byte: 2 = not supported), terminator.
    let mut out = vec![
        0x00, 0x00, 0x0B, 0x00, 0x06, 0x01, 0x00, 0x11, 0x00, 0x01, 0xFF,
    ];
    out.extend_from_slice(&[0x10, 0x00, 0x07, 0xD0, 0x00, 0x00]);
    out.push(0x02);
    out
}

fn done(rows: u64) -> Vec<u8> {
    done_with(if rows > 0 { 0x10 } else { 0 }, rows)
}

/// DONE with `status` (0x10: count valid, 0x02: error).
fn done_with(status: u16, rows: u64) -> Vec<u8> {
    let mut out = vec![0xFD];
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&0xC1u16.to_le_bytes());
    out.extend_from_slice(&rows.to_le_bytes());
    out
}

fn encode(reply: &Reply) -> Vec<u8> {
    match reply {
        Reply::Row(row) => result(row),
        Reply::Done => done(0),
        Reply::Error(number, class, message) => {
            let mut out = error_token(*number, *class, message);
            out.extend_from_slice(&done_with(0x02, 0));
            out
        }
    }
}

/// COLMETADATA for `row.len()` unnamed `int` (INT4) or `bigint` (INT8) columns, one ROW, DONE.
fn result(row: &[Val]) -> Vec<u8> {
    let mut out = vec![0x81];
    out.extend_from_slice(&u16::try_from(row.len()).expect("few columns").to_le_bytes());
    for value in row {
        out.extend_from_slice(&0u32.to_le_bytes()); // user type
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.push(match value {
            Val::Int(_) => 0x38,    // INT4
            Val::BigInt(_) => 0x7F, // INT8
        });
        out.push(0); // empty column name
    }
    out.push(0xD1);
    for value in row {
        match value {
            Val::Int(v) => out.extend_from_slice(&v.to_le_bytes()),
            Val::BigInt(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
    out.extend_from_slice(&done(1));
    out
}

/// An ERROR token (TDS 7.2+): number, state, class, message, server, procedure, line.
fn error_token(number: u32, class: u8, message: &str) -> Vec<u8> {
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let mut body = Vec::new();
    body.extend_from_slice(&number.to_le_bytes());
    body.push(1); // state
    body.push(class);
    let units = u16::try_from(message.encode_utf16().count()).expect("a short message");
    body.extend_from_slice(&units.to_le_bytes());
    body.extend_from_slice(&utf16(message));
    body.push(4);
    body.extend_from_slice(&utf16("fake"));
    body.push(0); // no procedure
    body.extend_from_slice(&1u32.to_le_bytes()); // line
    let mut out = vec![0xAA];
    out.extend_from_slice(
        &u16::try_from(body.len())
            .expect("a short token")
            .to_le_bytes(),
    );
    out.extend_from_slice(&body);
    out
}

/// Decodes an `sp_executesql` RPC: returns the statement and the values of `@P1…`.
fn parse_rpc(payload: &[u8]) -> (String, Vec<Value>) {
    let mut r = Reader(payload);
    let headers = r.u32() as usize;
    r.skip(headers - 4);
    assert_eq!(r.u16(), 0xFFFF, "the provider only sends sp_executesql");
    assert_eq!(r.u16(), 10, "sp_executesql");
    r.u16(); // option flags
    let mut values = Vec::new();
    while !r.0.is_empty() {
        let name_len = usize::from(r.u8());
        r.skip(name_len * 2);
        r.u8(); // status
        values.push(r.value());
    }
    let sql = match values.first() {
        Some(Value::Str(sql)) => sql.clone(),
        other => panic!("no statement: {other:?}"),
    };
    // values[1] is the parameter declaration list.
    (sql, values.into_iter().skip(2).collect())
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
    fn skip(&mut self, n: usize) {
        self.take(n);
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        let b = self.take(2);
        u16::from_le_bytes([b[0], b[1]])
    }
    fn u32(&mut self) -> u32 {
        let b = self.take(4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn value(&mut self) -> Value {
        match self.u8() {
            0xE7 => {
                assert_ne!(self.u16(), 0xFFFF, "no nvarchar(max) expected");
                self.skip(5); // collation
                let len = usize::from(self.u16());
                let units: Vec<u16> = self
                    .take(len)
                    .chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                Value::Str(String::from_utf16(&units).expect("valid UTF-16"))
            }
            0x26 => {
                self.u8(); // max length
                match self.u8() {
                    4 => {
                        let b = self.take(4);
                        Value::Int(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    }
                    other => panic!("unexpected int length {other}"),
                }
            }
            other => panic!("unexpected parameter type {other:#x}"),
        }
    }
}
