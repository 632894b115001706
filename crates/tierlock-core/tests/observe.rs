//! The `metrics` and `tracing` features: what a manager records, checked through a recorder and a
//! subscriber that keep everything in memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "metrics")]
mod metrics {
    use std::collections::HashMap;
    use std::time::Duration;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use tierlock_core::{LockError, LockManager, MemoryProvider, scope};
    use tierlock_testkit::CountingProvider;

    /// A manager whose handles are registered with a recorder of its own.
    fn manager_with_recorder(
        make: impl FnOnce() -> LockManager,
    ) -> (LockManager, Series, DebuggingRecorder) {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let locks = ::metrics::with_local_recorder(&recorder, make);
        (locks, Series::new(snapshotter), recorder)
    }

    /// Every series as `name{label=value,…}` → value, accumulated over the snapshots taken so
    /// far (a snapshot of the debugging recorder resets what it reads).
    struct Series {
        snapshotter: Snapshotter,
        seen: HashMap<String, DebugValue>,
    }

    impl Series {
        fn new(snapshotter: Snapshotter) -> Self {
            Series {
                snapshotter,
                seen: HashMap::new(),
            }
        }
    }

    fn read(series: &mut Series) -> &HashMap<String, DebugValue> {
        for (key, _, _, value) in series.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .filter(|l| l.key() != "provider")
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            match (series.seen.get_mut(&name), value) {
                (Some(DebugValue::Counter(n)), DebugValue::Counter(m)) => *n += m,
                (Some(DebugValue::Gauge(n)), DebugValue::Gauge(m)) => *n += m,
                (Some(DebugValue::Histogram(v)), DebugValue::Histogram(w)) => v.extend(w),
                (_, value) => {
                    series.seen.insert(name, value);
                }
            }
        }
        &series.seen
    }

    fn counter(series: &HashMap<String, DebugValue>, name: &str) -> u64 {
        match series.get(name) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn gauge(series: &HashMap<String, DebugValue>, name: &str) -> f64 {
        match series.get(name) {
            Some(DebugValue::Gauge(n)) => n.into_inner(),
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    fn samples(series: &HashMap<String, DebugValue>, name: &str) -> Vec<f64> {
        match series.get(name) {
            Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect(),
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    #[tokio::test]
    async fn outcomes_reentries_timeouts_and_the_held_gauge() -> Result<(), LockError> {
        let (locks, mut snapshotter, _recorder) =
            manager_with_recorder(|| LockManager::new(MemoryProvider::new()));
        let outer = locks.lock("a", Duration::from_secs(5)).await?;
        let inner = locks.lock("a", Duration::from_secs(5)).await?;
        let s = read(&mut snapshotter);
        assert_eq!(
            counter(s, "tierlock_acquisitions_total{outcome=acquired}"),
            1
        );
        assert_eq!(
            counter(s, "tierlock_acquisitions_total{outcome=reentered}"),
            1
        );
        assert_eq!(gauge(s, "tierlock_held_guards{}"), 2.0);

        let other = {
            let locks = locks.clone();
            tokio::spawn(async move { locks.try_lock("a").await.map(|g| g.is_some()) })
        };
        assert!(!other.await.expect("task")?, "another task got a held lock");
        drop(outer);
        drop(inner);
        let s = read(&mut snapshotter);
        assert_eq!(
            counter(s, "tierlock_acquisitions_total{outcome=timeout}"),
            1
        );
        assert_eq!(counter(s, "tierlock_timeouts_total{}"), 1);
        assert_eq!(gauge(s, "tierlock_held_guards{}"), 0.0);
        // One turn ended (the outer guard's drop only lowered the count).
        assert_eq!(samples(s, "tierlock_hold_seconds{}").len(), 1);
        assert_eq!(counter(s, "tierlock_acquisitions_total{outcome=error}"), 0);
        let bad = locks.lock("", Duration::ZERO).await;
        assert!(matches!(bad, Err(LockError::InvalidName { .. })));
        let s = read(&mut snapshotter);
        assert_eq!(counter(s, "tierlock_acquisitions_total{outcome=error}"), 1);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handoffs_waits_and_the_waiting_gauge() -> Result<(), LockError> {
        let (locks, mut snapshotter, _recorder) =
            manager_with_recorder(|| LockManager::new(MemoryProvider::new()));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let locks = locks.clone();
                tokio::spawn(async move {
                    for _ in 0..50 {
                        let guard = locks.lock("hot", Duration::MAX).await?;
                        tokio::task::yield_now().await;
                        drop(guard);
                    }
                    Ok::<_, LockError>(())
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task")?;
        }
        let s = read(&mut snapshotter);
        assert_eq!(
            counter(s, "tierlock_acquisitions_total{outcome=acquired}"),
            400
        );
        let waited = samples(s, "tierlock_wait_seconds{}");
        assert!(!waited.is_empty(), "8 tasks on one name never waited");
        assert!(counter(s, "tierlock_handoffs_total{}") >= waited.len() as u64 / 2);
        assert_eq!(gauge(s, "tierlock_waiting{}"), 0.0);
        assert_eq!(gauge(s, "tierlock_held_guards{}"), 0.0);
        assert_eq!(samples(s, "tierlock_hold_seconds{}").len(), 400);
        Ok(())
    }

    #[tokio::test]
    async fn a_waiter_dropped_while_queued_counts_as_cancelled() -> Result<(), LockError> {
        let (locks, mut snapshotter, _recorder) =
            manager_with_recorder(|| LockManager::new(MemoryProvider::new()));
        let held = scope(locks.lock("a", Duration::MAX)).await?;
        let waiting = scope(locks.lock("a", Duration::MAX));
        let gone = tokio::time::timeout(Duration::from_millis(50), waiting).await;
        assert!(gone.is_err(), "the waiter got a held lock");
        let s = read(&mut snapshotter);
        assert_eq!(
            counter(s, "tierlock_acquisitions_total{outcome=cancelled}"),
            1
        );
        assert_eq!(gauge(s, "tierlock_waiting{}"), 0.0);
        assert_eq!(samples(s, "tierlock_wait_seconds{}").len(), 1);
        drop(held);
        Ok(())
    }

    #[tokio::test]
    async fn external_acquisitions_handbacks_losses_and_provider_errors() -> Result<(), LockError> {
        let provider = CountingProvider::new(MemoryProvider::new());
        let (locks, mut snapshotter, _recorder) =
            manager_with_recorder(|| LockManager::new(provider.clone()));

        drop(locks.lock("a", Duration::from_secs(5)).await?);
        let s = read(&mut snapshotter);
        assert_eq!(counter(s, "tierlock_external_acquisitions_total{}"), 1);
        assert_eq!(samples(s, "tierlock_external_acquire_seconds{}").len(), 1);

        // Another process asks while a local waiter exists: the boundary hands back.
        let first = scope(locks.lock("b", Duration::MAX)).await?;
        let second = tokio::spawn({
            let locks = locks.clone();
            async move { locks.lock("b", Duration::from_secs(30)).await.map(drop) }
        });
        while locks.stats().waiting == 0 {
            tokio::task::yield_now().await;
        }
        provider.set_requested(true);
        drop(first);
        second.await.expect("task")?;
        provider.set_requested(false);
        let s = read(&mut snapshotter);
        assert_eq!(counter(s, "tierlock_handbacks_total{}"), 1);

        // A lock reported lost is counted when its turn ends.
        let guard = locks.lock("c", Duration::from_secs(5)).await?;
        provider.lose_held_locks();
        assert!(matches!(guard.release().await, Err(LockError::Lost { .. })));
        let s = read(&mut snapshotter);
        assert_eq!(counter(s, "tierlock_lost_total{}"), 1);

        provider.set_failing(true);
        let failed = locks.lock("d", Duration::from_secs(5)).await;
        assert!(matches!(failed, Err(LockError::Provider { .. })));
        let s = read(&mut snapshotter);
        assert_eq!(counter(s, "tierlock_provider_errors_total{}"), 1);
        // Stats counts the same events in the same place.
        let stats = locks.stats();
        assert_eq!(stats.provider_errors, 1);
        assert_eq!(stats.handbacks, 1);
        // "a", "b" twice (the waiter took it again after the hand-back), "c".
        assert_eq!(stats.external_acquisitions, 4);
        assert_eq!(counter(s, "tierlock_external_acquisitions_total{}"), 4);
        assert_eq!(counter(s, "tierlock_acquisitions_total{outcome=error}"), 1);
        assert_eq!(gauge(s, "tierlock_waiting{}"), 0.0);
        assert_eq!(gauge(s, "tierlock_held_guards{}"), 0.0);
        Ok(())
    }
}

#[cfg(feature = "tracing")]
mod tracing {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tierlock_core::{LockError, LockManager, MemoryProvider, scope};
    use tierlock_testkit::CountingProvider;
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::fmt::format::FmtSpan;

    /// Everything the subscriber prints, kept for the test to read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("captured").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("captured")).into_owned()
        }
    }

    #[tokio::test]
    async fn a_span_per_acquisition_and_events_at_the_turning_points() -> Result<(), LockError> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(::tracing::Level::TRACE)
            .with_span_events(FmtSpan::CLOSE)
            .with_ansi(false)
            .with_writer(captured.clone())
            .finish();
        let _default = ::tracing::subscriber::set_default(subscriber);

        let provider = CountingProvider::new(MemoryProvider::new());
        let locks = LockManager::new(provider.clone());
        let outer = scope(locks.lock("order:7", Duration::from_secs(5))).await?;
        let busy = locks.try_lock("order:7").await?;
        assert!(busy.is_none());
        drop(outer);
        provider.set_failing(true);
        assert!(locks.lock("order:8", Duration::ZERO).await.is_err());

        let text = captured.text();
        assert!(text.contains("taking the external lock"), "{text}");
        assert!(text.contains("took the external lock"), "{text}");
        assert!(
            text.contains(
                r#"tierlock.acquire{lock="order:7" provider="memory" outcome="acquired" waited_us="#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"tierlock.acquire{lock="order:7" provider="memory" outcome="timeout"}"#
            ),
            "{text}"
        );
        assert!(text.contains("the provider failed"), "{text}");
        assert!(text.contains(r#"outcome="error""#), "{text}");
        Ok(())
    }
}
