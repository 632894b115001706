//! The name → key mapping is a cross-process, cross-version contract: these pairs were computed
//! independently (`printf '%s' 'tierlock:lock:0::job:nightly' | sha256sum`, first 16 hex digits
//! read as a signed big-endian 64-bit integer) and must never change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tierlock_postgres::{PostgresProvider, lock_key, request_key};

#[test]
fn lock_keys_are_pinned() {
    let pinned: [(&str, &str, i64); 6] = [
        ("", "tenant:42:migrate", -5_095_805_855_783_082_054),
        ("", "job:nightly", 1_849_135_777_244_968_689),
        ("staging", "job:nightly", -4_194_659_424_815_352_357),
        ("", "ünïcødé 🔒", 5_281_582_612_821_028_269),
        ("a:b", "c", -8_491_329_944_680_007_515),
        ("a", "b:c", 8_682_659_570_945_769_337),
    ];
    for (namespace, name, key) in pinned {
        assert_eq!(lock_key(namespace, name), key, "{namespace:?} {name:?}");
    }
    assert_eq!(lock_key("", &"x".repeat(1024)), -2_327_905_197_784_511_239);
}

#[test]
fn request_keys_are_pinned() {
    assert_eq!(request_key("", "job:nightly"), 8_630_310_914_768_462_250);
    assert_eq!(
        request_key("staging", "job:nightly"),
        -5_974_416_419_777_739_237
    );
}

#[test]
fn provider_uses_its_namespace() {
    let provider = PostgresProvider::builder("postgres://nobody@127.0.0.1:1/none")
        .namespace("staging")
        .build()
        .unwrap();
    assert_eq!(provider.lock_key("job:nightly"), -4_194_659_424_815_352_357);
    assert_eq!(
        provider.request_key("job:nightly"),
        -5_974_416_419_777_739_237
    );
    let default = PostgresProvider::builder("host=127.0.0.1 port=1")
        .build()
        .unwrap();
    assert_eq!(default.namespace(), "");
    assert_eq!(default.lock_key("job:nightly"), 1_849_135_777_244_968_689);
}

#[test]
fn bad_connection_strings_are_config_errors() {
    let err = PostgresProvider::builder("postgres://a@b:notaport/c")
        .build()
        .unwrap_err();
    assert!(
        matches!(err, tierlock_postgres::PostgresError::Config { .. }),
        "{err:?}"
    );
}
