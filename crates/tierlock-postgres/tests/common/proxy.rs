//! A TCP proxy in front of the test server that makes session start slow: every new connection
//! waits `delay` before it is forwarded (standing for a cold session on a far or busy server),
//! and is counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// The proxy; it runs as long as the test's runtime.
#[derive(Clone)]
pub struct SlowStart {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl SlowStart {
    /// A proxy to the server of `url` (a `postgres://user@host:port/db` URL).
    pub async fn start(url: &str, delay: Duration) -> SlowStart {
        let config: tokio_postgres::Config = url.parse().expect("a valid URL");
        let upstream = match (config.get_hosts().first(), config.get_ports().first()) {
            (Some(tokio_postgres::config::Host::Tcp(host)), Some(port)) => {
                format!("{host}:{port}")
            }
            other => panic!("the test server must be reached over TCP: {other:?}"),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        SlowStart { addr, accepted }
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        let config: tokio_postgres::Config = url.parse().expect("a valid URL");
        let user = config.get_user().unwrap_or("postgres");
        let db = config.get_dbname().unwrap_or(user);
        format!("postgres://{user}@{}/{db}", self.addr)
    }

    /// Connections accepted so far (sessions opened through the proxy).
    pub fn sessions(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}
