use std::path::PathBuf;
use std::time::Duration;

use super::url::{Params, parse};
use super::*;

fn target(url: &str) -> Target {
    match parse(url) {
        Ok(parsed) => parsed.target,
        Err(err) => panic!("{url}: {err}"),
    }
}

fn params(url: &str) -> Params {
    match parse(url) {
        Ok(parsed) => parsed.params,
        Err(err) => panic!("{url}: {err}"),
    }
}

fn error(url: &str) -> ConnectError {
    match ConnectOptions::new(url) {
        Ok(options) => panic!("{url} was accepted: {options:?}"),
        Err(err) => err,
    }
}

fn pg(url: &str) -> Target {
    Target::Postgres(url.to_owned())
}

fn file(path: &str) -> Target {
    Target::File(PathBuf::from(path))
}

fn sqlite(path: &str) -> Target {
    Target::Sqlite(PathBuf::from(path))
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(err) => panic!("no runtime: {err}"),
    }
}

#[test]
fn paths_and_file_urls() {
    for path in [
        "/srv/locks",
        "./locks",
        "../locks",
        ".",
        "..",
        r".\locks",
        r"..\locks",
        r"C:\locks",
        "C:/locks",
        r"c:\Program Files\app\locks",
        r"\\server\share\locks",
        "/srv/odd?name",
        "/srv/100%25",
    ] {
        assert_eq!(target(path), file(path), "{path}");
    }
    assert_eq!(target(" /srv/locks "), file("/srv/locks"));
    assert_eq!(target("file:///srv/locks"), file("/srv/locks"));
    assert_eq!(target("FILE:/srv/locks"), file("/srv/locks"));
    assert_eq!(target("file://localhost/srv/locks"), file("/srv/locks"));
    assert_eq!(target("file:///srv/my%20locks%3F"), file("/srv/my locks?"));
    assert_eq!(target("file:///C:/locks"), file("C:/locks"));
    assert_eq!(target("file:///srv/locks?"), file("/srv/locks"));
    for bad in [
        "file://fileserver/share/locks",
        "file:locks",
        "file:",
        "file:///srv/%FF",
    ] {
        let err = error(bad).to_string();
        assert!(err.starts_with("file: "), "{bad}: {err}");
    }
    // A bare word is neither a scheme nor a path.
    for bad in ["locks", "hunter2", ""] {
        assert!(matches!(error(bad), ConnectError::NotAUrl), "{bad}");
    }
}

#[test]
fn file_parameters() {
    assert_eq!(
        params("file:///srv/locks?mode=lease&ttl=10s"),
        Params {
            mode: Some(FileMode::Lease),
            ttl: Some(Duration::from_secs(10)),
            ..Params::default()
        }
    );
    assert_eq!(
        params("file:///srv/locks?mode=flock&fencing=false").fencing,
        Some(false)
    );
    assert_eq!(
        params("file:///srv/locks?ttl=1m30s").ttl,
        Some(Duration::from_secs(90))
    );
    assert!(matches!(
        error("file:///srv/locks?mode=flock&ttl=5s"),
        ConnectError::TtlWithFlock
    ));
    assert!(matches!(
        error("file:///srv/locks?mode=nfs"),
        ConnectError::InvalidParameter { name: "mode", .. }
    ));
    assert!(matches!(
        error("file:///srv/locks?fencing=yes"),
        ConnectError::InvalidParameter {
            name: "fencing",
            ..
        }
    ));
    assert!(matches!(
        error("file:///srv/locks?ttl=10s&ttl=5s"),
        ConnectError::DuplicateParameter { name: "ttl" }
    ));
    assert!(matches!(
        error("file:///srv/locks?namespace=a"),
        ConnectError::OptionNotFor {
            option: "namespace",
            provider: ProviderKind::File,
            ..
        }
    ));
    match error("file:///srv/locks?colour=blue") {
        ConnectError::UnknownParameter { provider, name } => {
            assert_eq!((provider, name.as_str()), (ProviderKind::File, "colour"));
        }
        other => panic!("{other}"),
    }
    // The duration's own error is the cause.
    let err = error("file:///srv/locks?ttl=1e3");
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        cause.is_some_and(|cause| cause.contains("unknown unit")),
        "{err:?}"
    );
}

#[test]
fn postgres_urls_lose_only_tierlocks_parameters() {
    let url = "postgres://app:secret@db:5432/app";
    assert_eq!(target(url), pg(url));
    assert_eq!(target(" POSTGRESQL://db/app "), pg("postgresql://db/app"));
    assert_eq!(
        target("postgres://db/app?sslmode=require"),
        pg("postgres://db/app?sslmode=require")
    );
    let parsed = parse(
        "postgres://db/app?namespace=billing&application_name=x&fencing=true&sslmode=require",
    )
    .unwrap();
    assert_eq!(
        parsed.target,
        pg("postgres://db/app?application_name=x&sslmode=require")
    );
    assert_eq!(
        parsed.params,
        Params {
            namespace: Some("billing".to_owned()),
            fencing: Some(true),
            ..Params::default()
        }
    );
    assert_eq!(
        target("postgres://db/app?namespace=a%2Fb"),
        pg("postgres://db/app")
    );
    assert_eq!(
        params("postgres://db/app?namespace=a%2Fb")
            .namespace
            .as_deref(),
        Some("a/b")
    );
    // The query starts after the credentials, as tokio-postgres reads it: a password may hold
    // `?` and `sslmode=require` (it then means nothing).
    assert_eq!(
        target("postgres://u:pa?ss@db/app?namespace=n"),
        pg("postgres://u:pa?ss@db/app")
    );
    assert_eq!(
        target("postgres://u:sslmode=require@db/app"),
        pg("postgres://u:sslmode=require@db/app")
    );
    assert_eq!(
        target("postgres://db/app?sslmode=prefer"),
        pg("postgres://db/app?sslmode=prefer")
    );
    for (url, option) in [
        ("postgres://db/app?ttl=5s", "ttl"),
        ("postgres://db/app?mode=lease", "mode"),
    ] {
        assert!(
            matches!(error(url), ConnectError::OptionNotFor { option: o, .. } if o == option),
            "{url}"
        );
    }
}

/// What the drivers make of the URLs tierlock hands them: tokio-postgres refuses a parameter it
/// does not know, so tierlock's must be gone.
#[cfg(feature = "postgres")]
#[test]
fn tokio_postgres_accepts_the_stripped_url() {
    let Target::Postgres(url) =
        target("postgres://u:p@db/app?namespace=n&fencing=true&application_name=x")
    else {
        panic!("not postgres")
    };
    tierlock_postgres::PostgresProvider::builder(url)
        .build()
        .unwrap();
    let unknown = tierlock_postgres::PostgresProvider::builder("postgres://db/app?namespace=n")
        .build()
        .unwrap_err();
    assert!(format!("{unknown:?}").contains("namespace"), "{unknown:?}");
}

#[test]
fn sql_server_forms() {
    let jdbc = "jdbc:sqlserver://db:1433;databaseName=app;user=u;password=p";
    assert_eq!(target(jdbc), Target::Mssql(jdbc.to_owned()));
    assert_eq!(
        target("JDBC:SQLServer://db:1433;user=u"),
        Target::Mssql("jdbc:sqlserver://db:1433;user=u".to_owned())
    );
    assert_eq!(
        target("mssql:server=tcp:db,1433;user id=u;password=p?x"),
        Target::Mssql("server=tcp:db,1433;user id=u;password=p?x".to_owned())
    );
    assert_eq!(format!("{:?}", target(jdbc)), "Mssql(..)");
}

#[test]
fn sqlite_paths_and_ttl() {
    assert_eq!(
        target("sqlite:/var/lib/app/locks.db"),
        sqlite("/var/lib/app/locks.db")
    );
    assert_eq!(target("SQLite:locks.db"), sqlite("locks.db"));
    assert_eq!(target("sqlite:///tmp/x.db"), sqlite("/tmp/x.db"));
    assert_eq!(target("sqlite:./a b.db"), sqlite("./a b.db"));
    assert_eq!(target("sqlite:///C:/app/x.db"), sqlite("C:/app/x.db"));
    assert_eq!(
        params("sqlite:/var/lib/app/locks.db?ttl=5s").ttl,
        Some(Duration::from_secs(5))
    );
    assert_eq!(target("sqlite:/a.db?ttl=5s"), sqlite("/a.db"));
    for bad in [
        "sqlite:",
        "sqlite://",
        "sqlite://host/x.db",
        "sqlite:?ttl=5s",
    ] {
        let err = error(bad).to_string();
        assert!(err.contains("sqlite:/path/to.db"), "{bad}: {err}");
    }
    assert!(matches!(
        error("sqlite:/a.db?namespace=x"),
        ConnectError::OptionNotFor {
            option: "namespace",
            ..
        }
    ));
    assert!(matches!(
        error("sqlite:/a.db?fencing=false"),
        ConnectError::OptionNotFor {
            option: "fencing=false",
            ..
        }
    ));
    assert!(matches!(
        error("sqlite:/a.db?journal_mode=wal"),
        ConnectError::UnknownParameter { .. }
    ));
    assert_eq!(format!("{:?}", target("sqlite:/a.db")), "Sqlite(\"/a.db\")");
}

#[test]
fn redis_urls_keep_the_drivers_parameters() {
    let url = "redis://:secret@cache:6379/0";
    assert_eq!(target(url), Target::Redis(url.to_owned()));
    assert_eq!(
        target("REDIS://cache/1"),
        Target::Redis("redis://cache/1".to_owned())
    );
    let unix = "redis+unix:///run/redis.sock?db=2&pass=secret";
    assert_eq!(target(unix), Target::Redis(unix.to_owned()));
    let parsed =
        parse("rediss://cache/0?namespace=billing&protocol=resp3&ttl=30s#insecure").unwrap();
    assert_eq!(
        parsed.target,
        Target::Redis("rediss://cache/0?protocol=resp3#insecure".to_owned())
    );
    assert_eq!(
        parsed.params,
        Params {
            namespace: Some("billing".to_owned()),
            ttl: Some(Duration::from_secs(30)),
            ..Params::default()
        }
    );
    assert_eq!(format!("{:?}", target(url)), "Redis(..)");
    assert_eq!(open::redis_key_prefix(""), "tierlock:");
    assert_eq!(open::redis_key_prefix("billing"), "tierlock:billing:");
    assert!(matches!(
        error("redis://cache/0?fencing=false"),
        ConnectError::OptionNotFor { .. }
    ));
}

#[test]
fn memory() {
    assert_eq!(target("memory:"), Target::Memory);
    assert_eq!(target("MEMORY:"), Target::Memory);
    assert!(matches!(
        error("memory:x"),
        ConnectError::InvalidPath { .. }
    ));
    assert!(matches!(
        error("memory:?ttl=5s"),
        ConnectError::OptionNotFor { .. }
    ));
    assert!(matches!(
        error("memory:?x=1"),
        ConnectError::UnknownParameter { .. }
    ));
    let locks = block_on(connect("memory:")).unwrap();
    assert_eq!(locks.provider().kind(), "memory");
}

#[test]
fn rejected_forms_never_echo_the_url() {
    let cases = [
        ("sqlserver://u:hunter2@db/app", "jdbc:sqlserver://"),
        ("mssql://u:hunter2@db/app", "jdbc:sqlserver://"),
        ("mssql:", "jdbc:sqlserver://"),
        ("mysql://u:hunter2@db/app", "unknown scheme \"mysql\""),
        (
            "jdbc:postgresql://db/app?password=hunter2",
            "unknown scheme \"jdbc\"",
        ),
        ("postgres:hunter2", "unknown scheme \"postgres\""),
        ("redis:hunter2@cache", "unknown scheme \"redis\""),
        ("u:hunter2@db", "unknown scheme \"u\""),
        ("hunter2", "not a lock URL"),
        ("", "not a lock URL"),
        (
            "postgres://u:hunter2@db/app?ttl=5s",
            "ttl is not for PostgreSQL",
        ),
        (
            "postgres://u:hunter2@db/app?namespace=a&namespace=b",
            "given twice",
        ),
        (
            "postgres://u:hunter2@db/app?fencing=hunter2",
            "true or false",
        ),
        ("redis://:hunter2@cache/0?ttl=forever", "`ttl`"),
        (
            "redis://:hunter2@cache/0?mode=lease",
            "mode is not for Redis",
        ),
    ];
    for (url, expected) in cases {
        let err = error(url);
        let message = chain(&err);
        assert!(message.contains(expected), "{url}: {message}");
        assert!(!message.contains("hunter2"), "{url}: {message}");
        assert!(!format!("{err:?}").contains("hunter2"), "{url}: {err:?}");
    }
}

#[test]
fn debug_never_shows_a_connection_string() {
    for url in [
        "postgres://u:hunter2@db/app?sslmode=require&namespace=n",
        "postgresql://u@db/app?password=hunter2",
        "jdbc:sqlserver://db:1433;user=u;password=hunter2",
        "mssql:server=tcp:db,1433;user id=u;password=hunter2",
        "redis://:hunter2@cache:6379/0?namespace=n",
        "redis+unix:///run/redis.sock?pass=hunter2",
    ] {
        let options = ConnectOptions::new(url).unwrap();
        let debug = format!("{options:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.starts_with("ConnectOptions { target: "), "{debug}");
    }
    let debug = format!("{:?}", ConnectOptions::new("sqlite:/a.db?ttl=5s").unwrap());
    assert_eq!(
        debug,
        "ConnectOptions { target: Sqlite(\"/a.db\"), namespace: None, ttl: Some(5s), mode: None, \
         fencing: None }"
    );
}

/// Every message of the chain, as the CLI prints it.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Drivers that fail to connect or to parse name no password either.
#[test]
fn driver_errors_never_echo_the_password() {
    let urls = [
        "postgres://locker:hunter2@127.0.0.1:1/app",
        "postgres://locker:hunter2@127.0.0.1:1/app?sslmode=bogus",
        "postgres://locker:hunter2@127.0.0.1:1/app?unknown_option=1",
        "postgres://locker:hunter2@[::1/app",
        "redis://locker:hunter2@127.0.0.1:1/0",
        "redis://locker:hunter2@127.0.0.1:1/notadb",
        "redis://locker:hunter2@127.0.0.1:1/0?protocol=hunter3",
        "mssql:server=tcp:127.0.0.1,notaport;user id=locker;password=hunter2",
        "jdbc:sqlserver://127.0.0.1:1;user=locker;password=hunter2;encrypt=hunter2",
    ];
    for url in urls {
        // Nothing listens on port 1; SQL Server connects on first use, so its cases are
        // connection strings tiberius refuses.
        let Err(err) = block_on(connect(url)) else {
            panic!("{url} connected")
        };
        let message = chain(&err);
        assert!(!message.contains("hunter2"), "{url}: {message}");
        assert!(!format!("{err:?}").contains("hunter2"), "{url}: {err:?}");
    }
}

#[test]
fn setters_override_and_are_checked_at_connect() {
    let options = ConnectOptions::new("sqlite:/a.db?ttl=5s")
        .unwrap()
        .ttl(Duration::from_secs(2));
    assert_eq!(options.ttl, Some(Duration::from_secs(2)));

    let err = block_on(
        ConnectOptions::new("sqlite:/nonexistent/x.db")
            .unwrap()
            .namespace("ns")
            .connect(),
    )
    .unwrap_err();
    assert!(matches!(err, ConnectError::OptionNotFor { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "namespace is not for SQLite (use another database file)"
    );

    let err = block_on(
        ConnectOptions::new("postgres://db/app")
            .unwrap()
            .ttl(Duration::from_secs(1))
            .connect(),
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("ttl is not for PostgreSQL"),
        "{err}"
    );

    let err = block_on(
        ConnectOptions::file("/nonexistent")
            .file_lock_mode(FileMode::Flock)
            .ttl(Duration::from_secs(1))
            .connect(),
    )
    .unwrap_err();
    assert!(matches!(err, ConnectError::TtlWithFlock), "{err}");

    let err = block_on(
        ConnectOptions::new("redis://cache/0")
            .unwrap()
            .file_lock_mode(FileMode::Lease)
            .connect(),
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("mode is not for Redis"),
        "{err}"
    );
}

#[cfg(feature = "file")]
#[test]
fn file_connects_in_the_mode_asked_for() {
    use tierlock_file::{FileLockMode, FileProvider};

    let dir = std::env::temp_dir().join(format!("tierlock-connect-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mode_of = |locks: &LockManager| {
        let provider: &dyn std::any::Any = &**locks.provider();
        provider
            .downcast_ref::<FileProvider>()
            .map(FileProvider::mode)
    };
    let url = format!("file://{}?ttl=2s", dir.join("lease").display());
    let locks = block_on(connect(&url)).unwrap();
    assert_eq!(
        mode_of(&locks),
        Some(FileLockMode::Lease {
            ttl: Duration::from_secs(2)
        })
    );
    let locks = block_on(
        ConnectOptions::file(dir.join("flock"))
            .file_lock_mode(FileMode::Flock)
            .fencing(false)
            .connect(),
    )
    .unwrap();
    assert_eq!(mode_of(&locks), Some(FileLockMode::Flock));
    let guard = block_on(locks.lock("x", Duration::ZERO)).unwrap();
    assert_eq!(guard.fencing_token(), None);
    drop(guard);
    // A directory recorded in flock mode refuses a lease: the provider's error is the cause.
    let err = block_on(
        ConnectOptions::file(dir.join("flock"))
            .file_lock_mode(FileMode::Lease)
            .connect(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::Provider {
                provider: ProviderKind::File,
                ..
            }
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(not(feature = "postgres"))]
#[test]
fn postgres_left_out_names_its_feature() {
    let err = block_on(connect("postgres://db/app")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "this build of tierlock has no PostgreSQL support (cargo feature `postgres`)"
    );
}

#[cfg(all(feature = "postgres", not(feature = "postgres-rustls")))]
#[test]
fn postgres_tls_left_out_names_its_feature() {
    let err = block_on(connect("postgres://db/app?sslmode=require")).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::FeatureDisabled {
                feature: "postgres-rustls",
                ..
            }
        ),
        "{err}"
    );
}

#[cfg(not(feature = "mssql"))]
#[test]
fn mssql_left_out_names_its_feature() {
    let err = block_on(connect("mssql:server=tcp:db,1433")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "this build of tierlock has no SQL Server support (cargo feature `mssql`)"
    );
}

#[cfg(not(feature = "sqlite"))]
#[test]
fn sqlite_left_out_names_its_feature() {
    let err = block_on(connect("sqlite:/tmp/x.db")).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::FeatureDisabled {
                feature: "sqlite",
                ..
            }
        ),
        "{err}"
    );
}

#[cfg(not(feature = "redis"))]
#[test]
fn redis_left_out_names_its_feature() {
    let err = block_on(connect("redis://cache/0")).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::FeatureDisabled {
                feature: "redis",
                ..
            }
        ),
        "{err}"
    );
}

#[cfg(not(feature = "file"))]
#[test]
fn file_left_out_names_its_feature() {
    let err = block_on(connect("/srv/locks")).unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::FeatureDisabled {
                feature: "file",
                ..
            }
        ),
        "{err}"
    );
}

#[cfg(feature = "mssql")]
#[test]
fn mssql_is_built_without_connecting() {
    let locks = block_on(
        ConnectOptions::new("mssql:server=tcp:db.invalid,1433;user id=u;password=hunter2")
            .unwrap()
            .namespace("ns")
            .fencing(true)
            .connect(),
    )
    .unwrap();
    assert_eq!(locks.provider().kind(), "mssql");
    let debug = format!("{locks:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
}
