//! Wake-ups for waiters: one pub/sub connection per provider, shared by all its waiters.
//!
//! A release publishes on the name's channel (see `scripts::RELEASE`). A waiter
//! [`subscribe`](Wakeups::subscribe)s to the channel *before* its first attempt, so a release
//! that follows the attempt cannot be missed while the connection stands. Subscriptions are
//! counted per channel in this process: the first waiter's `SUBSCRIBE` and the last one's
//! `UNSUBSCRIBE` go through one task (the *actor*) in the order they were asked for, so they
//! never overtake each other.
//!
//! Pub/sub is fire-and-forget: a message sent while the connection is down is gone. When the
//! connection breaks, every waiter is woken (to look again at once), waiters fall back to their
//! bounded poll, and the actor reconnects at once and subscribes again to every channel still
//! wanted, then, while that fails, tries again at most once per `retry`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot};

/// The channels this process's waiters listen on: name → (subscribers, channel).
type Channels = Mutex<HashMap<String, (usize, Arc<Channel>)>>;

/// One channel's wake-up signal: a counter of messages (and reconnections) and a notifier.
#[derive(Debug, Default)]
pub(crate) struct Channel {
    version: AtomicU64,
    notify: Notify,
}

impl Channel {
    fn bump(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }
}

enum Cmd {
    Subscribe(String),
    Unsubscribe(String),
    /// Answered once every command before it was handled: whether the connection stands.
    Sync(oneshot::Sender<bool>),
    /// The reader of connection number `.0` found it closed.
    Closed(u64),
}

/// The wake-up service of one provider.
pub(crate) struct Wakeups {
    client: redis::Client,
    timeout: Duration,
    retry: Duration,
    channels: Arc<Channels>,
    actor: Mutex<Option<mpsc::UnboundedSender<Cmd>>>,
}

/// A waiter's subscription to a channel; dropping it unsubscribes (when it was the last one).
pub(crate) struct Subscription {
    name: String,
    channel: Arc<Channel>,
    channels: Arc<Channels>,
    actor: mpsc::UnboundedSender<Cmd>,
}

impl Wakeups {
    /// `timeout` bounds connecting and each (un)subscription; `retry` is the pause between
    /// reconnection attempts.
    pub(crate) fn new(client: redis::Client, timeout: Duration, retry: Duration) -> Self {
        Wakeups {
            client,
            timeout,
            retry,
            channels: Arc::default(),
            actor: Mutex::new(None),
        }
    }

    /// Subscribes to `name`; also returns whether the subscription is known to be active on the
    /// server (if not, the waiter must rely on its poll).
    pub(crate) async fn subscribe(&self, name: &str) -> (Subscription, bool) {
        let actor = self.actor();
        let (reply, answer) = oneshot::channel();
        let channel = {
            let mut channels = self.channels.lock();
            let entry = channels
                .entry(name.to_owned())
                .or_insert_with(|| (0, Arc::default()));
            entry.0 += 1;
            if entry.0 == 1 {
                let _ = actor.send(Cmd::Subscribe(name.to_owned()));
            }
            Arc::clone(&entry.1)
        };
        let _ = actor.send(Cmd::Sync(reply));
        let subscription = Subscription {
            name: name.to_owned(),
            channel,
            channels: Arc::clone(&self.channels),
            actor,
        };
        let active = matches!(
            tokio::time::timeout(self.timeout, answer).await,
            Ok(Ok(true))
        );
        (subscription, active)
    }

    /// The actor's mailbox, starting the actor if it is not running.
    fn actor(&self) -> mpsc::UnboundedSender<Cmd> {
        let mut actor = self.actor.lock();
        if let Some(tx) = actor.as_ref().filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let run = Actor {
            client: self.client.clone(),
            timeout: self.timeout,
            retry: self.retry,
            channels: Arc::clone(&self.channels),
            mailbox: tx.downgrade(),
            conn: None,
            generation: 0,
            last_attempt: None,
        };
        tokio::spawn(run.run(rx));
        *actor = Some(tx.clone());
        tx
    }
}

impl Subscription {
    /// The channel's current version: pass it to [`changed`](Self::changed) after an attempt.
    pub(crate) fn version(&self) -> u64 {
        self.channel.version.load(Ordering::Acquire)
    }

    /// Resolves once a message arrived (or the connection was lost) since `seen` was read.
    pub(crate) async fn changed(&self, seen: u64) {
        loop {
            let notified = self.channel.notify.notified();
            if self.version() != seen {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut channels = self.channels.lock();
        if let Some(entry) = channels.get_mut(&self.name) {
            entry.0 -= 1;
            if entry.0 == 0 {
                channels.remove(&self.name);
                let _ = self
                    .actor
                    .send(Cmd::Unsubscribe(std::mem::take(&mut self.name)));
            }
        }
    }
}

struct Actor {
    client: redis::Client,
    timeout: Duration,
    retry: Duration,
    channels: Arc<Channels>,
    mailbox: mpsc::WeakUnboundedSender<Cmd>,
    conn: Option<Conn>,
    /// Counts connections, so a late `Closed` of an old one is ignored.
    generation: u64,
    last_attempt: Option<Instant>,
}

struct Conn {
    sink: redis::aio::PubSubSink,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropping the reader's stream closes the connection.
        self.reader.abort();
    }
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        loop {
            let wanted = self.conn.is_none() && !self.channels.lock().is_empty();
            let retry_at = self
                .last_attempt
                .map_or_else(Instant::now, |t| t + self.retry);
            let cmd = tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => cmd,
                    None => return,
                },
                () = tokio::time::sleep_until(retry_at.into()), if wanted => {
                    self.connect().await;
                    continue;
                }
            };
            match cmd {
                Cmd::Subscribe(name) => self.apply("SUBSCRIBE", name).await,
                Cmd::Unsubscribe(name) => self.apply("UNSUBSCRIBE", name).await,
                Cmd::Sync(reply) => {
                    if self.conn.is_none() && self.may_retry() {
                        self.connect().await;
                    }
                    let _ = reply.send(self.conn.is_some());
                }
                Cmd::Closed(generation) if generation == self.generation => self.disconnect(),
                Cmd::Closed(_) => {}
            }
        }
    }

    fn may_retry(&self) -> bool {
        self.last_attempt.is_none_or(|t| t.elapsed() >= self.retry)
    }

    /// Sends `SUBSCRIBE`/`UNSUBSCRIBE` for `name` if connected (a reconnection subscribes to
    /// whatever is wanted then).
    async fn apply(&mut self, command: &str, name: String) {
        let Some(conn) = &mut self.conn else { return };
        let sent = if command == "SUBSCRIBE" {
            tokio::time::timeout(self.timeout, conn.sink.subscribe(&name)).await
        } else {
            tokio::time::timeout(self.timeout, conn.sink.unsubscribe(&name)).await
        };
        if !matches!(sent, Ok(Ok(()))) {
            self.disconnect();
        }
    }

    async fn connect(&mut self) {
        self.last_attempt = Some(Instant::now());
        let Ok(Ok(pubsub)) =
            tokio::time::timeout(self.timeout, self.client.get_async_pubsub()).await
        else {
            return;
        };
        let (mut sink, mut stream) = pubsub.split();
        let names: Vec<String> = self.channels.lock().keys().cloned().collect();
        if !names.is_empty()
            && !matches!(
                tokio::time::timeout(self.timeout, sink.subscribe(&names)).await,
                Ok(Ok(()))
            )
        {
            return;
        }
        self.generation += 1;
        let generation = self.generation;
        let channels = Arc::clone(&self.channels);
        let mailbox = self.mailbox.clone();
        let reader = tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                let channel = channels
                    .lock()
                    .get(msg.get_channel_name())
                    .map(|entry| Arc::clone(&entry.1));
                if let Some(channel) = channel {
                    channel.bump();
                }
            }
            if let Some(mailbox) = mailbox.upgrade() {
                let _ = mailbox.send(Cmd::Closed(generation));
            }
        });
        self.conn = Some(Conn { sink, reader });
        // Anything published while there was no connection is lost: everyone looks again.
        self.wake_all();
    }

    /// Drops the connection; the next attempt to reconnect is made at once (and then at most
    /// once per `retry` while they fail).
    fn disconnect(&mut self) {
        if self.conn.take().is_some() {
            self.last_attempt = None;
            self.wake_all();
        }
    }

    fn wake_all(&self) {
        for (_, channel) in self.channels.lock().values() {
            channel.bump();
        }
    }
}
