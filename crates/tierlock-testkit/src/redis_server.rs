//! A private `redis-server` for tests that stop, restart or freeze their server (`DEBUG SLEEP`),
//! which must not disturb the tests sharing `TIERLOCK_REDIS_URL`.
//!
//! The server listens on 127.0.0.1 on a free port, keeps nothing on disk (a restart loses every
//! key) and is killed when the [`RedisServer`] is dropped. It needs `redis-server` on `PATH` (or
//! in `TIERLOCK_REDIS_SERVER`), which `scripts/test` installs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` process of the calling test's own.
#[derive(Debug)]
pub struct RedisServer {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

fn binary() -> String {
    std::env::var("TIERLOCK_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

/// The major version of `redis-server`, if it runs at all.
fn major_version() -> Option<u32> {
    let out = Command::new(binary()).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().find_map(|w| w.strip_prefix("v="))?;
    version.split('.').next()?.parse().ok()
}

impl RedisServer {
    /// Whether `redis-server` can be run here.
    pub fn available() -> bool {
        major_version().is_some()
    }

    /// A private server for a test that runs with the Redis tests: `None` (the test is skipped,
    /// and says so) when `TIERLOCK_REDIS_URL` is unset or `redis-server` cannot be run here —
    /// unless [`REQUIRE_SERVERS_VAR`](crate::REQUIRE_SERVERS_VAR) demands the Redis tests, which
    /// then fail instead.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start), and if the Redis tests are required but there is no
    /// `redis-server`.
    pub fn for_test() -> Option<RedisServer> {
        crate::server_url("TIERLOCK_REDIS_URL")?;
        if !Self::available() {
            assert!(
                !crate::required("TIERLOCK_REDIS_URL"),
                "redis-server cannot be run here, but the Redis tests are required"
            );
            eprintln!("skipped: redis-server cannot be run here");
            return None;
        }
        Some(Self::start())
    }

    /// Starts a server on a free port and waits until it answers `PING`.
    ///
    /// # Panics
    ///
    /// If `redis-server` cannot be run or does not answer within 10 s.
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port");
        let dir =
            std::env::temp_dir().join(format!("tierlock-redis-test.{}.{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cannot create the server's directory");
        let mut server = RedisServer {
            dir,
            port,
            child: None,
        };
        server.launch();
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server with SIGKILL (connections break, every key is lost).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).expect("cannot create log");
        let mut command = Command::new(binary());
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null());
        if major_version().is_some_and(|v| v >= 7) {
            command.args(["--enable-debug-command", "local"]);
        }
        let child = command.spawn().expect("cannot run redis-server");
        self.child = Some(child);
        let start = Instant::now();
        while !self.answers() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server on port {} did not start (see {})",
                self.port,
                self.dir.join("server.log").display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one command and returns the first line of the reply (`+OK`, `:1`, `-ERR …`), for
    /// tests that need no client library: `server.command(&["DEBUG", "SLEEP", "2"])`. Waits up
    /// to a minute for the reply.
    ///
    /// # Errors
    ///
    /// If the server cannot be reached or does not answer.
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes())?;
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n") {
            stream.read_exact(&mut byte)?;
            reply.push(byte[0]);
        }
        reply.truncate(reply.len() - 2);
        Ok(String::from_utf8_lossy(&reply).into_owned())
    }

    /// Whether the server answers `PING` now.
    pub fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
