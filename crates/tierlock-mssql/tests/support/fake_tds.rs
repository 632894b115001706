//! A tiny fake SQL Server for tests: speaks just enough TDS (pre-login without TLS, login, RPC
//! `sp_executesql` requests, one-row `int`/`bigint` results, server errors; see `fake_wire.rs`)
//! for the provider's statements, and keeps session applocks in memory the way the
//! documentation describes them (see `fake_locks.rs`): locks belong to a session and vanish with
//! it, `Exclusive` conflicts with everything held by other sessions, `Shared` only with
//! `Exclusive`, waiting requests are queued and granted in arrival order, waits end with `1`
//! (granted after waiting) or `-1`, and a session whose client goes away while it waits leaves
//! the queue at once (SQL Server notices the closed connection through the read it keeps posted
//! for attention signals, and ends the session). The fencing counter table lives in memory too
//! (see `fake_exec.rs`).
//!
//! [`FakeServer::babelfish`] starts it in the mode of Babelfish for PostgreSQL 4.2 (Aurora's SQL
//! Server compatibility), with the deviations measured there: `SERVERPROPERTY('Babelfish')` is
//! 1; `@LockTimeout = 0` on a held lock returns `-999`; every refused request leaks state in its
//! session and the 5th refusal in one session brings the whole server down (every session is
//! closed, every lock dropped); resources are cut at 255 bytes of UTF-8; a wait never returns
//! `1`; releasing a lock that is not held raises an error.
//!
//! Test hooks: [`FakeServer::delay_session_start`] makes logins slow (cold sessions), and
//! [`FakeServer::logins`] counts them.
//!
//! It does not stand in for a real server's behaviour in general; it lets the provider's own
//! code (pool, statement bounds, cancellation, monitor, request marks) run over a real driver.

#![allow(dead_code)]

#[path = "fake_exec.rs"]
mod exec;
#[path = "fake_locks.rs"]
mod locks;
#[path = "fake_wire.rs"]
mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub use locks::Held;
pub use wire::Value;

/// One statement as received: its SQL and the values of `@P1`, `@P2`, …
#[derive(Debug, Clone)]
pub struct Statement {
    pub spid: i32,
    pub sql: String,
    pub params: Vec<Value>,
}

#[derive(Default)]
struct Inner {
    table: Mutex<locks::Table>,
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
    /// Babelfish mode (see the module documentation).
    babelfish: bool,
    /// How long a login takes before the server answers it.
    start_delay: Mutex<Duration>,
    /// Refused `sp_getapplock` requests per session.
    refusals: Mutex<HashMap<i32, u32>>,
    /// Times the whole server went down (Babelfish's 5th refusal).
    crashes: AtomicUsize,
}

/// The fake server; dropping it does not stop it (it lives as long as the runtime).
#[derive(Clone)]
pub struct FakeServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl FakeServer {
    /// Listens on an ephemeral loopback port, as SQL Server.
    pub async fn start() -> FakeServer {
        FakeServer::listen(false).await
    }

    /// Listens on an ephemeral loopback port, as Babelfish for PostgreSQL 4.2.
    pub async fn babelfish() -> FakeServer {
        FakeServer::listen(true).await
    }

    async fn listen(babelfish: bool) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Inner {
            next_spid: AtomicI32::new(51),
            babelfish,
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

    /// Locks held right now.
    pub fn locks(&self) -> Vec<Held> {
        self.inner.table.lock().locks()
    }

    /// Requests queued right now, in arrival order.
    pub fn waiters(&self) -> Vec<Held> {
        self.inner.table.lock().waiting()
    }

    pub fn statements(&self) -> Vec<Statement> {
        self.inner.log.lock().clone()
    }

    /// Logins so far: one per session ever opened.
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

    /// Drops every lock on `resource` behind its holders' backs (their release then finds it
    /// not held).
    pub fn forget(&self, resource: &str) {
        self.inner.table.lock().forget(resource);
        self.inner.changed.notify_waiters();
    }

    /// While set, requests are read but never answered.
    pub fn stall(&self, on: bool) {
        self.inner.stall.store(on, Ordering::SeqCst);
    }

    /// Logins of sessions opened from now on take `delay` (zero: answered at once).
    pub fn delay_session_start(&self, delay: Duration) {
        *self.inner.start_delay.lock() = delay;
    }

    /// The next `sp_getapplock` of an exclusive lock returns `code` without touching any lock.
    pub fn force_next_code(&self, code: i32) {
        *self.inner.forced_code.lock() = Some(code);
    }

    /// Refused `sp_getapplock` requests of session `spid` so far.
    pub fn refusals(&self, spid: i32) -> u32 {
        self.inner.refusals.lock().get(&spid).copied().unwrap_or(0)
    }

    /// Times the server went down (Babelfish mode, 5th refusal in one session).
    pub fn crashes(&self) -> usize {
        self.inner.crashes.load(Ordering::SeqCst)
    }

    /// The fencing counters, once the table exists: resource → last token.
    pub fn fences(&self) -> Option<HashMap<String, i64>> {
        self.inner.table.lock().fences.clone()
    }

    /// Sets one fencing counter (creating the table), as a DBA editing it by hand would.
    pub fn set_fence(&self, resource: &str, token: i64) {
        let mut table = self.inner.table.lock();
        table
            .fences
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

impl Inner {
    /// Records a refused request of `spid`; in Babelfish mode the 5th one in a session brings
    /// the server down. True if it did.
    fn refused(&self, spid: i32) -> bool {
        let count = {
            let mut refusals = self.refusals.lock();
            let count = refusals.entry(spid).or_insert(0);
            *count += 1;
            *count
        };
        if !(self.babelfish && count >= 5) {
            return false;
        }
        self.crashes.fetch_add(1, Ordering::SeqCst);
        self.table.lock().clear();
        for kill in self.sessions.lock().values() {
            kill.notify_one();
        }
        self.changed.notify_waiters();
        true
    }
}

async fn session(stream: TcpStream, spid: i32, inner: Arc<Inner>) {
    let kill = Arc::new(Notify::new());
    inner.sessions.lock().insert(spid, Arc::clone(&kill));
    let (mut rd, mut wr) = stream.into_split();
    let _ = serve(&mut rd, &mut wr, spid, &inner, &kill).await;
    inner.sessions.lock().remove(&spid);
    inner.table.lock().end_session(spid);
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
    wire::read_message(rd).await?; // PRELOGIN
    wire::write_message(wr, &wire::prelogin_response()).await?;
    wire::read_message(rd).await?; // LOGIN7
    let delay = *inner.start_delay.lock();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    inner.logins.fetch_add(1, Ordering::SeqCst);
    wire::write_message(wr, &wire::done(0)).await?;
    loop {
        let payload = tokio::select! {
            message = wire::read_message(rd) => message?,
            () = kill.notified() => return Ok(()),
        };
        let (sql, params) = wire::parse_rpc(&payload);
        inner.log.lock().push(Statement {
            spid,
            sql: sql.clone(),
            params: params.clone(),
        });
        if inner.stall.load(Ordering::SeqCst) {
            return hang_up_when_gone(rd, kill).await;
        }
        let reply = tokio::select! {
            reply = exec::execute(inner, spid, &sql, &params) => reply,
            _ = hang_up_when_gone(rd, kill) => return Ok(()),
        };
        match reply {
            // The session's server process died with the request.
            None => return Ok(()),
            Some(reply) => wire::write_message(wr, &wire::encode(&reply)).await?,
        }
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
