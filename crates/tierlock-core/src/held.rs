//! The lifecycle of a held external lock that lives on a *session*: a database connection
//! whose session owns the lock, or a lease that must be renewed. Written once here; the
//! PostgreSQL and SQL Server providers use it, and new providers should too.
//!
//! ```text
//!   acquire ──► Hold::start(session) ──► monitor task owns the session
//!                                          │ every request_poll_interval: check_requested → is_requested()
//!                                          │ after keepalive_interval of silence: keep_alive
//!                                          │ session closed / Broken / no renewal in 9/10 ttl → lost
//!   release ──► Hold::take_back ─── between two round trips ──► the session, to unlock and pool
//!   drop    ──► the task abandons the session in the background (unlock and pool, or close);
//!               Releases lets the provider's next acquisition of the name wait for that
//!   runtime gone ──► the task is dropped with the session: the connection closes, the lock goes
//! ```
//!
//! * **One owner.** The monitor task owns the session for as long as the lock is held; nothing
//!   else touches it, so a probe and a release can never interleave on one connection.
//!   [`Hold::take_back`] asks for the session back; the task answers between two round trips,
//!   never in the middle of one.
//! * **Cached answers.** The task stores the last request check in an atomic flag:
//!   [`Hold::is_requested`] never does I/O, as the manager calls it with a name's entry locked.
//! * **Lost.** The [`LostSignal`] fires, and the task drops the session, when the session
//!   reports itself closed ([`Session::closed`]), when a round trip fails with
//!   [`Fault::Broken`] or takes longer than the round-trip timeout, or (for a lease) when no
//!   renewal succeeded within 9/10 of its ttl. [`Fault::Transient`] failures (an ordinary server
//!   error on an intact session) leave everything as it was.
//! * **Dropped.** Dropping the [`Hold`] does not block: it tells the task to
//!   [`abandon`](Abandon::abandon) the session (unlock and pool the connection, or close it).
//!   With [`Hold::settle_in`], the release in flight is registered in [`Releases`] so that the
//!   provider's next acquisition of the same name waits for it, instead of finding its own lock
//!   still held.
//! * **No runtime.** If the runtime is gone, the task and the session went with it: closing the
//!   connection (or letting the lease expire) is what frees the lock.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::name::LockName;
use crate::provider::{BoxFuture, Latch, LostSignal};

/// What to do with something that holds a lock (or a request mark) when nobody waits for the
/// outcome: release it in the background, or close it.
pub trait Abandon: Send + 'static {
    /// Frees what `self` holds: e.g. unlock and return the connection to the pool, closing the
    /// connection if that fails; or simply close the connection (the server then frees the
    /// lock with the session). Runs on a background task; there is nobody to report to.
    fn abandon(self) -> BoxFuture<'static, ()>;
}

/// The session a held lock lives on, as seen by its monitor task (see the [module
/// documentation](self)). Each method is one round trip; the monitor bounds it with the
/// [`Schedule`]'s round-trip timeout.
pub trait Session: Abandon {
    /// Asks the backend whether another process has requested the lock (see
    /// [`Provider::request`](crate::Provider::request)). Run every request poll interval.
    fn check_requested(&mut self) -> BoxFuture<'_, Result<bool, Fault>>;

    /// A round trip that proves the session alive and keeps idle-connection killers away, or
    /// renews a lease. Run after the keepalive interval without traffic (for a lease: without
    /// a renewal).
    fn keep_alive(&mut self) -> BoxFuture<'_, Result<(), Fault>>;

    /// Resolves when the session is known to be closed (its connection's socket task ended),
    /// so the loss is noticed at once rather than at the next round trip. The default never
    /// resolves.
    fn closed(&self) -> BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
}

/// How a round trip of a [`Session`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The session is gone or out of step (connection broken, protocol error): the lock must be
    /// presumed lost.
    Broken,
    /// An ordinary error on an intact session (e.g. a permission problem): the lock is still
    /// held; the request flag keeps its last value and a lease keeps its deadline.
    Transient,
}

/// When a held lock's monitor task talks to the backend.
///
/// ```
/// use std::time::Duration;
/// use tierlock_core::held::Schedule;
///
/// let schedule = Schedule::new(Duration::from_secs(30))
///     .request_poll_interval(Duration::from_millis(100))
///     .keepalive_interval(Duration::from_secs(120));
/// assert_eq!(schedule.round_trip_timeout(), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    round_trip_timeout: Duration,
    request_poll_interval: Option<Duration>,
    keepalive_interval: Option<Duration>,
    lease_ttl: Option<Duration>,
}

impl Schedule {
    /// A schedule that bounds each round trip by `round_trip_timeout` (a round trip that takes
    /// longer counts as [`Fault::Broken`]) and otherwise does nothing: no request checks, no
    /// keepalive, no lease.
    pub fn new(round_trip_timeout: Duration) -> Self {
        Schedule {
            round_trip_timeout,
            request_poll_interval: None,
            keepalive_interval: None,
            lease_ttl: None,
        }
    }

    /// Runs [`Session::check_requested`] this often (`None`: never; then
    /// [`Hold::is_requested`] stays false).
    pub fn request_poll_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.request_poll_interval = interval.into();
        self
    }

    /// Runs [`Session::keep_alive`] after this long without a successful round trip (`None`:
    /// never). With a lease, after this long without a renewal, whatever else ran.
    pub fn keepalive_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.keepalive_interval = interval.into();
        self
    }

    /// Makes the session a lease of `ttl`: each successful [`Session::keep_alive`] renews it,
    /// and if none succeeded within 9/10 of `ttl` after the start of the last one (or of the
    /// hold), the lock is lost. Set the keepalive interval to about `ttl / 3`.
    pub fn lease(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self
    }

    /// The bound on one round trip.
    pub fn round_trip_timeout(&self) -> Duration {
        self.round_trip_timeout
    }

    /// How long after the start of its last renewal a lease counts as lost: 9/10 of its ttl,
    /// leaving a tenth for the difference between two hosts' clock rates and for telling the
    /// code that holds the lock.
    pub fn lease_deadline(ttl: Duration) -> Duration {
        ttl / 10 * 9
    }
}

/// A held lock's session, owned by its monitor task (see the [module documentation](self)).
///
/// Dropping it tells the task to abandon the session in the background.
pub struct Hold<S> {
    commands: Option<oneshot::Sender<Command<S>>>,
    requested: Arc<AtomicBool>,
    lost: LostSignal,
    settle: Option<(Arc<Releases>, LockName)>,
}

enum Command<S> {
    /// Hand the session back.
    Release(oneshot::Sender<S>),
    /// Abandon it; drop the ticket when done.
    Abandon(Option<Releasing>),
}

impl<S: Session> Hold<S> {
    /// Hands `session`, which has just been granted the lock, to a new monitor task.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (a provider calls it from `acquire`, which runs on one).
    pub fn start(session: S, schedule: Schedule) -> Self {
        let (commands, inbox) = oneshot::channel();
        let requested = Arc::new(AtomicBool::new(false));
        let lost = LostSignal::new();
        tokio::spawn(monitor(
            session,
            inbox,
            schedule,
            Arc::clone(&requested),
            lost.clone(),
        ));
        Hold {
            commands: Some(commands),
            requested,
            lost,
            settle: None,
        }
    }

    /// Registers a dropped hold's background release in `releases` under `name`, so that
    /// [`Releases::settle`] (called by the provider before acquiring `name`) waits for it.
    #[must_use]
    pub fn settle_in(mut self, releases: &Arc<Releases>, name: LockName) -> Self {
        self.settle = Some((Arc::clone(releases), name));
        self
    }

    /// The last answer of [`Session::check_requested`]: a load, never I/O.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// The signal that fires when the lock is lost.
    pub fn lost_signal(&self) -> &LostSignal {
        &self.lost
    }

    /// Asks the monitor task for the session back, to release the lock on it. The task answers
    /// between two round trips. `None` if the lock was lost (the session is gone).
    ///
    /// If this future is dropped before the answer arrives, the task abandons the session.
    pub async fn take_back(mut self) -> Option<S> {
        let commands = self.commands.take()?;
        let (reply, answer) = oneshot::channel();
        commands.send(Command::Release(reply)).ok()?;
        answer.await.ok()
    }
}

impl<S> Drop for Hold<S> {
    fn drop(&mut self) {
        let Some(commands) = self.commands.take() else {
            return; // Taken back.
        };
        let ticket = self
            .settle
            .take()
            .map(|(releases, name)| releases.begin(name));
        // If the task has ended (the lock was lost), the ticket comes back and is dropped,
        // which finishes it: there is nothing to wait for.
        let _ = commands.send(Command::Abandon(ticket));
    }
}

impl<S> fmt::Debug for Hold<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hold")
            .field("requested", &self.requested.load(Ordering::Acquire))
            .field("lost", &self.lost.is_lost())
            .finish_non_exhaustive()
    }
}

enum Step<S> {
    Command(Option<Command<S>>),
    Lost,
    CheckRequested,
    KeepAlive,
}

async fn monitor<S: Session>(
    mut session: S,
    mut inbox: oneshot::Receiver<Command<S>>,
    schedule: Schedule,
    requested: Arc<AtomicBool>,
    lost: LostSignal,
) {
    let mut closed = session.closed();
    let start = Instant::now();
    let mut poll = schedule.request_poll_interval.map(|period| {
        let mut poll = tokio::time::interval_at(start + period, period);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        poll
    });
    let is_lease = schedule.lease_ttl.is_some();
    // The start of the last successful keepalive (a lease's renewal), or of the hold.
    let mut renewed = start;
    // The last successful round trip that counts as traffic (for a lease: renewals only).
    let mut quiet_since = start;
    // After a transient keepalive failure: when to try again.
    let mut retry_at = None;
    let limit = schedule.round_trip_timeout;
    loop {
        let keepalive_at = schedule
            .keepalive_interval
            .map(|every| retry_at.unwrap_or(quiet_since + every));
        let expires_at = schedule
            .lease_ttl
            .map(|ttl| renewed + Schedule::lease_deadline(ttl));
        let step = tokio::select! {
            biased;
            command = &mut inbox => Step::Command(command.ok()),
            () = &mut closed => Step::Lost,
            () = until(expires_at) => Step::Lost,
            () = tick(&mut poll) => Step::CheckRequested,
            () = until(keepalive_at) => Step::KeepAlive,
        };
        let outcome = match step {
            Step::Command(Some(Command::Release(reply))) => {
                if let Err(session) = reply.send(session) {
                    // The release future was dropped meanwhile.
                    session.abandon().await;
                }
                return;
            }
            Step::Command(Some(Command::Abandon(ticket))) => {
                session.abandon().await;
                drop(ticket);
                return;
            }
            Step::Command(None) => {
                session.abandon().await;
                return;
            }
            Step::Lost => Err(Fault::Broken),
            Step::CheckRequested => {
                let began = Instant::now();
                let answer = bounded(limit, session.check_requested()).await;
                answer.map(|answer| {
                    requested.store(answer, Ordering::Release);
                    if !is_lease {
                        quiet_since = began;
                    }
                })
            }
            Step::KeepAlive => {
                let began = Instant::now();
                let alive = bounded(limit, session.keep_alive()).await;
                match alive {
                    Ok(()) => {
                        (renewed, quiet_since, retry_at) = (began, began, None);
                    }
                    Err(_) => {
                        retry_at = schedule
                            .keepalive_interval
                            .map(|every| Instant::now() + every);
                    }
                }
                alive
            }
        };
        if outcome == Err(Fault::Broken) {
            drop(session);
            lost.trigger();
            return;
        }
    }
}

/// A round trip, with a timeout counting as [`Fault::Broken`].
async fn bounded<T>(
    limit: Duration,
    round_trip: impl Future<Output = Result<T, Fault>>,
) -> Result<T, Fault> {
    tokio::time::timeout(limit, round_trip)
        .await
        .unwrap_or(Err(Fault::Broken))
}

async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn tick(poll: &mut Option<Interval>) {
    match poll {
        Some(poll) => {
            poll.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The names whose dropped hold is being released in the background, so that the provider's
/// next acquisition of such a name waits for that release (see [`Hold::settle_in`]).
#[derive(Default)]
pub struct Releases {
    in_flight: Mutex<HashMap<LockName, Latch>>,
}

impl Releases {
    /// An empty registry, to share between a provider and its holds.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Marks `name` as being released until the returned ticket is dropped.
    pub fn begin(self: &Arc<Self>, name: LockName) -> Releasing {
        let latch = Latch::new();
        self.in_flight.lock().insert(name.clone(), latch.clone());
        Releasing {
            releases: Arc::clone(self),
            name,
            latch,
        }
    }

    /// Waits, up to `limit`, for a background release of `name` in flight, if there is one.
    /// After `limit` the release is presumed stuck and the caller goes ahead.
    pub async fn settle(&self, name: &str, limit: Duration) {
        let latch = {
            let in_flight = self.in_flight.lock();
            if in_flight.is_empty() {
                return;
            }
            in_flight.get(name).cloned()
        };
        if let Some(latch) = latch {
            let _ = tokio::time::timeout(limit, latch.wait()).await;
        }
    }

    /// Number of releases in flight.
    pub fn len(&self) -> usize {
        self.in_flight.lock().len()
    }

    /// Whether no release is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Releases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Releases")
            .field("in_flight", &self.len())
            .finish()
    }
}

/// A release in flight (see [`Releases::begin`]); dropping it marks the release finished.
pub struct Releasing {
    releases: Arc<Releases>,
    name: LockName,
    latch: Latch,
}

impl Drop for Releasing {
    fn drop(&mut self) {
        self.latch.raise();
        let mut in_flight = self.releases.in_flight.lock();
        if in_flight
            .get(&self.name)
            .is_some_and(|latch| latch.same(&self.latch))
        {
            in_flight.remove(&self.name);
        }
    }
}

impl fmt::Debug for Releasing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Releasing")
            .field("name", &self.name)
            .finish()
    }
}

/// Holds a value (a waiter's request mark on a connection of its own, say) and
/// [`abandon`](Abandon::abandon)s it on a background task when dropped; without a runtime it is
/// simply dropped, which closes its connection.
///
/// ```
/// use tierlock_core::held::{Abandon, AbandonOnDrop};
/// use tierlock_core::provider::{BoxFuture, RequestMark};
///
/// struct Marked; // a connection holding a shared lock on the request key, say
///
/// impl Abandon for Marked {
///     fn abandon(self) -> BoxFuture<'static, ()> {
///         Box::pin(async move { /* unlock, return the connection to the pool */ })
///     }
/// }
///
/// let mark = RequestMark::new(AbandonOnDrop::new(Marked));
/// drop(mark); // no runtime here: `Marked` is dropped
/// ```
pub struct AbandonOnDrop<T: Abandon>(Option<T>);

impl<T: Abandon> AbandonOnDrop<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        AbandonOnDrop(Some(value))
    }
}

impl<T: Abandon> Drop for AbandonOnDrop<T> {
    fn drop(&mut self) {
        let Some(value) = self.0.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(value.abandon());
        }
    }
}

impl<T: Abandon> fmt::Debug for AbandonOnDrop<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AbandonOnDrop")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// What a fake session does and what happened to it.
    #[derive(Default)]
    struct State {
        requested: AtomicBool,
        fault: Mutex<Option<Fault>>,
        /// Round trips take this long.
        delay: Mutex<Duration>,
        in_flight: AtomicBool,
        checks: AtomicUsize,
        keepalives: AtomicUsize,
        closed: Latch,
        /// `abandon` waits for this, once raised by the test (if `gated`).
        gate: Latch,
        gated: AtomicBool,
        log: Mutex<Vec<&'static str>>,
    }

    struct Fake(Arc<State>);

    impl Fake {
        fn new() -> (Fake, Arc<State>) {
            let state = Arc::new(State::default());
            (Fake(Arc::clone(&state)), state)
        }

        async fn round_trip(&self) -> Result<(), Fault> {
            self.0.in_flight.store(true, Ordering::SeqCst);
            let delay = *self.0.delay.lock();
            tokio::time::sleep(delay).await;
            self.0.in_flight.store(false, Ordering::SeqCst);
            match *self.0.fault.lock() {
                Some(fault) => Err(fault),
                None => Ok(()),
            }
        }
    }

    impl Abandon for Fake {
        fn abandon(self) -> BoxFuture<'static, ()> {
            Box::pin(async move {
                if self.0.gated.load(Ordering::SeqCst) {
                    self.0.gate.wait().await;
                }
                self.0.log.lock().push("abandoned");
            })
        }
    }

    impl Session for Fake {
        fn check_requested(&mut self) -> BoxFuture<'_, Result<bool, Fault>> {
            Box::pin(async move {
                self.round_trip().await?;
                self.0.checks.fetch_add(1, Ordering::SeqCst);
                Ok(self.0.requested.load(Ordering::SeqCst))
            })
        }

        fn keep_alive(&mut self) -> BoxFuture<'_, Result<(), Fault>> {
            Box::pin(async move {
                self.round_trip().await?;
                self.0.keepalives.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        }

        fn closed(&self) -> BoxFuture<'static, ()> {
            let closed = self.0.closed.clone();
            Box::pin(async move { closed.wait().await })
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            self.0.log.lock().push("dropped");
        }
    }

    const MS: Duration = Duration::from_millis(1);

    fn schedule() -> Schedule {
        Schedule::new(1000 * MS)
            .request_poll_interval(10 * MS)
            .keepalive_interval(100 * MS)
    }

    async fn settle_tasks() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn request_checks_are_cached_and_release_gets_the_session_back() {
        let (fake, state) = Fake::new();
        let hold = Hold::start(fake, schedule());
        tokio::time::sleep(35 * MS).await;
        assert!(!hold.is_requested());
        assert!(state.checks.load(Ordering::SeqCst) >= 3);
        state.requested.store(true, Ordering::SeqCst);
        tokio::time::sleep(15 * MS).await;
        assert!(hold.is_requested());
        // Probes count as traffic: no keepalive was needed.
        tokio::time::sleep(300 * MS).await;
        assert_eq!(state.keepalives.load(Ordering::SeqCst), 0);
        let back = hold.take_back().await.expect("not lost");
        assert!(state.log.lock().is_empty(), "{:?}", state.log.lock());
        drop(back);
        assert_eq!(*state.log.lock(), ["dropped"]);
    }

    #[tokio::test(start_paused = true)]
    async fn release_waits_for_the_round_trip_in_flight() {
        let (fake, state) = Fake::new();
        *state.delay.lock() = 50 * MS;
        let hold = Hold::start(fake, schedule());
        tokio::time::sleep(20 * MS).await;
        assert!(state.in_flight.load(Ordering::SeqCst), "a check is running");
        let back = hold.take_back().await.expect("not lost");
        assert!(!state.in_flight.load(Ordering::SeqCst));
        assert_eq!(state.checks.load(Ordering::SeqCst), 1);
        drop(back);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_hold_is_abandoned_in_the_background_and_settle_waits_for_it() {
        let releases = Releases::new();
        let name = LockName::new("job").unwrap();
        let (fake, state) = Fake::new();
        state.gated.store(true, Ordering::SeqCst);
        let hold = Hold::start(fake, schedule()).settle_in(&releases, name.clone());
        drop(hold);
        assert_eq!(releases.len(), 1, "registered before drop returned");
        // Another name does not wait.
        tokio::time::timeout(MS, releases.settle("other", Duration::MAX))
            .await
            .unwrap();
        let settle = tokio::spawn({
            let releases = Arc::clone(&releases);
            async move { releases.settle("job", 10_000 * MS).await }
        });
        settle_tasks().await;
        assert!(!settle.is_finished());
        state.gate.raise();
        settle.await.unwrap();
        assert!(releases.is_empty());
        assert_eq!(*state.log.lock(), ["abandoned", "dropped"]);
    }

    #[tokio::test(start_paused = true)]
    async fn settle_gives_up_on_a_stuck_release_after_its_limit() {
        let releases = Releases::new();
        let ticket = releases.begin(LockName::new("stuck").unwrap());
        let started = Instant::now();
        releases.settle("stuck", 500 * MS).await;
        assert_eq!(started.elapsed(), 500 * MS);
        drop(ticket);
        assert!(releases.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_session_is_lost_at_once() {
        let (fake, state) = Fake::new();
        let hold = Hold::start(fake, Schedule::new(1000 * MS));
        state.closed.raise();
        tokio::time::timeout(MS, hold.lost_signal().wait())
            .await
            .expect("lost at once");
        assert!(hold.take_back().await.is_none());
        assert_eq!(*state.log.lock(), ["dropped"]);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_faults_keep_the_lock_and_broken_ones_lose_it() {
        let (fake, state) = Fake::new();
        let hold = Hold::start(fake, schedule());
        state.requested.store(true, Ordering::SeqCst);
        tokio::time::sleep(15 * MS).await;
        assert!(hold.is_requested());
        *state.fault.lock() = Some(Fault::Transient);
        state.requested.store(false, Ordering::SeqCst);
        tokio::time::sleep(500 * MS).await;
        assert!(!hold.lost_signal().is_lost());
        assert!(hold.is_requested(), "a failed check keeps the last answer");
        *state.fault.lock() = Some(Fault::Broken);
        tokio::time::timeout(20 * MS, hold.lost_signal().wait())
            .await
            .expect("lost");
        assert_eq!(*state.log.lock(), ["dropped"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_trip_without_answer_loses_the_lock_after_the_timeout() {
        let (fake, state) = Fake::new();
        *state.delay.lock() = Duration::from_secs(3600);
        let started = Instant::now();
        let hold = Hold::start(fake, schedule());
        hold.lost_signal().wait().await;
        assert_eq!(
            started.elapsed(),
            1010 * MS,
            "first check at 10 ms + 1 s bound"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keepalive_runs_after_silence_only() {
        let (fake, state) = Fake::new();
        let hold = Hold::start(fake, Schedule::new(1000 * MS).keepalive_interval(100 * MS));
        tokio::time::sleep(350 * MS).await;
        assert_eq!(state.keepalives.load(Ordering::SeqCst), 3);
        assert_eq!(state.checks.load(Ordering::SeqCst), 0, "polling is off");
        assert!(!hold.is_requested());
        // A failing keepalive is retried after an interval, not in a loop.
        *state.fault.lock() = Some(Fault::Transient);
        tokio::time::sleep(1000 * MS).await;
        assert!(!hold.lost_signal().is_lost());
        assert_eq!(state.keepalives.load(Ordering::SeqCst), 3);
        drop(hold);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_lost_without_a_renewal_within_nine_tenths_of_its_ttl() {
        let ttl = 1000 * MS;
        let lease = Schedule::new(1000 * MS)
            .request_poll_interval(10 * MS)
            .keepalive_interval(ttl / 3)
            .lease(ttl);
        let (fake, state) = Fake::new();
        let hold = Hold::start(fake, lease);
        tokio::time::sleep(5000 * MS).await;
        assert!(!hold.lost_signal().is_lost(), "renewed every ttl/3");
        assert!(state.keepalives.load(Ordering::SeqCst) >= 14);
        // Request checks do not renew a lease.
        let renewed = state.keepalives.load(Ordering::SeqCst);
        *state.fault.lock() = Some(Fault::Transient);
        let failing = Instant::now();
        hold.lost_signal().wait().await;
        let after = failing.elapsed();
        assert!(
            after <= ttl / 10 * 9,
            "lost {after:?} after renewals began failing"
        );
        assert!(after > ttl / 2, "lost too early: {after:?}");
        assert_eq!(state.keepalives.load(Ordering::SeqCst), renewed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_release_dropped_half_way_abandons_the_session() {
        let (fake, state) = Fake::new();
        *state.delay.lock() = 50 * MS;
        let hold = Hold::start(fake, schedule());
        tokio::time::sleep(20 * MS).await;
        // Sent while a check runs; the answer comes after the future is gone.
        let release = tokio::time::timeout(10 * MS, hold.take_back()).await;
        assert!(release.is_err());
        tokio::time::sleep(100 * MS).await;
        assert_eq!(*state.log.lock(), ["abandoned", "dropped"]);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_a_lost_hold_finishes_its_ticket_at_once() {
        let releases = Releases::new();
        let (fake, state) = Fake::new();
        let hold = Hold::start(fake, schedule()).settle_in(&releases, LockName::new("x").unwrap());
        state.closed.raise();
        hold.lost_signal().wait().await;
        settle_tasks().await;
        drop(hold);
        assert!(releases.is_empty());
    }

    #[test]
    fn a_hold_dropped_after_its_runtime_drops_the_session() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (fake, state) = Fake::new();
        let hold = runtime.block_on(async { Hold::start(fake, schedule()) });
        drop(runtime);
        assert_eq!(
            *state.log.lock(),
            ["dropped"],
            "the task went with the runtime"
        );
        drop(hold); // No runtime: must not panic.
    }

    #[test]
    fn abandon_on_drop_spawns_with_a_runtime_and_drops_without() {
        let (fake, state) = Fake::new();
        drop(AbandonOnDrop::new(fake));
        assert_eq!(*state.log.lock(), ["dropped"]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (fake, state) = Fake::new();
        runtime.block_on(async {
            drop(AbandonOnDrop::new(fake));
            settle_tasks().await;
        });
        assert_eq!(*state.log.lock(), ["abandoned", "dropped"]);
    }
}
