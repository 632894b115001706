//! Runs the fencing example (`examples/fencing.rs`) against the server of `TIERLOCK_PG_URL`:
//! the resource accepts the writes of the current holders and rejects the late write of the
//! holder that lost its lock.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/fencing.rs"]
mod example;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_writer_is_rejected() {
    let Some(url) = tierlock_testkit::server_url("TIERLOCK_PG_URL") else {
        return;
    };
    let namespace = format!(
        "fencing-example-test:{}:{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    );
    let outcome = example::run(&url, &namespace).await.unwrap();
    let (token_a, accepted_a) = outcome.a_first;
    let (token_b, accepted_b) = outcome.b;
    assert!(accepted_a, "{outcome:?}");
    assert!(accepted_b, "{outcome:?}");
    assert!(token_b > token_a, "{outcome:?}");
    assert!(!outcome.a_late, "the stale write was accepted: {outcome:?}");
    assert!(outcome.a_told_lost, "{outcome:?}");
    assert_eq!(outcome.body, "final by B");
}
