//! The PostgreSQL store on a real server: the conformance suite, the change feed between two
//! nodes, schema checks, clear errors, and a server restart under a live store.

use std::sync::Arc;
use std::time::Duration;

use ash_core::{Commit, Expect, NewRun, Store, StoreChange};
use ash_protocol::{EventBody, RunMode, RunStatus, TurnStarted};
use ash_store::{PgError, PgOptions, PostgresStore};
use ash_test_support::postgres::{Cluster, Postgres, psql};
use pretty_assertions::assert_eq;

async fn connect(url: &str) -> PostgresStore {
    PostgresStore::connect(url, PgOptions::default()).await.unwrap()
}

fn started(sequence: u32) -> Commit {
    let mut commit = Commit::new(Expect::Status(RunStatus::Queued));
    commit.events =
        vec![EventBody::TurnStarted(TurnStarted { turn_id: format!("turn_{sequence}"), sequence })];
    commit
}

fn new_run(id: &str) -> NewRun {
    NewRun { run_id: id.into(), continuation_token: format!("ash:{id}"), mode: RunMode::Task }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_passes_the_store_conformance_suite() {
    let Some(pg) = Postgres::shared("the PostgreSQL conformance suite") else { return };
    ash_test_support::store_conformance::run_all(|| {
        let url = pg.fresh_database();
        async move { Arc::new(connect(&url).await) as Arc<dyn Store> }
    })
    .await;
}

/// What one node commits reaches the other's change feed; its own commits do not come back
/// to it.
#[tokio::test(flavor = "multi_thread")]
async fn one_nodes_commits_reach_the_others_change_feed() {
    let Some(pg) = Postgres::shared("the PostgreSQL change feed test") else { return };
    let url = pg.fresh_database();
    let (a, b) = (connect(&url).await, connect(&url).await);
    let mut feed_a = a.changes().unwrap();
    let mut feed_b = b.changes().unwrap();
    // The listeners connect in the background: retry until b hears of one of a's runs. Once
    // listening, a feed first says that anything may have changed (it may have missed some).
    let mut n = 0;
    let heard = 'heard: loop {
        n += 1;
        assert!(n < 40, "b never heard of a's commits");
        a.create_run(new_run(&format!("r{n}")), started(0)).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_millis(500), feed_b.recv()).await {
                Ok(Ok(StoreChange::Any)) => {}
                Ok(Ok(StoreChange::Run(run))) => break 'heard run,
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => break,
            }
        }
    };
    assert!((1..=n).any(|k| heard == format!("r{k}")), "{heard}");
    let n = heard.trim_start_matches('r').parse::<u32>().unwrap();
    a.request_cancel(&format!("r{n}")).await.unwrap();
    assert_eq!(feed_b.recv().await.unwrap(), StoreChange::Run(format!("r{n}")), "a cancel too");
    // a's own commits never reached a's feed.
    loop {
        match feed_a.try_recv() {
            Ok(StoreChange::Any) => {}
            other => {
                assert!(
                    matches!(other, Err(tokio::sync::broadcast::error::TryRecvError::Empty)),
                    "{other:?}"
                );
                break;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schemas_it_cannot_use_are_refused_by_name() {
    let Some(pg) = Postgres::shared("the PostgreSQL schema checks") else { return };
    let newer = pg.fresh_database();
    drop(connect(&newer).await);
    psql(&newer, "UPDATE ash_meta SET value = '99' WHERE key = 'schema_version'");
    let err = PostgresStore::connect(&newer, PgOptions::default()).await.unwrap_err();
    assert!(matches!(err, PgError::TooNew { found: 99, .. }), "{err}");
    assert!(
        err.to_string().contains("schema version 99; this ash reads up to 2: upgrade ash"),
        "{err}"
    );
    let err = PostgresStore::migrate(&newer).await.unwrap_err();
    assert!(matches!(err, PgError::TooNew { found: 99, .. }), "migrate refuses it too: {err}");

    let foreign = pg.fresh_database();
    psql(&foreign, "CREATE TABLE runs (id int)");
    let err = PostgresStore::connect(&foreign, PgOptions::default()).await.unwrap_err();
    assert!(matches!(err, PgError::Foreign { .. }), "{err}");
    assert_eq!(psql(&foreign, "SELECT count(*) FROM pg_tables WHERE tablename = 'ash_meta'"), "0");

    let fresh = pg.fresh_database();
    let migrated = PostgresStore::migrate(&fresh).await.unwrap();
    assert_eq!((migrated.from, migrated.to), (0, ash_store::PG_SCHEMA_VERSION));
    let again = PostgresStore::migrate(&fresh).await.unwrap();
    assert_eq!(
        (again.from, again.to),
        (ash_store::PG_SCHEMA_VERSION, ash_store::PG_SCHEMA_VERSION)
    );
}

/// An unreachable server is named (host, port, database) without the password.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_named_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://ash:hunter2secret@127.0.0.1:{port}/ashdb");
    let options = PgOptions { connect_timeout: Duration::from_secs(2), ..PgOptions::default() };
    let err = PostgresStore::connect(&url, options).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot reach the PostgreSQL store at 127.0.0.1:{port}/ashdb: ")),
        "{text}"
    );
    assert!(!text.contains("hunter2secret"), "{text}");
    let err = PostgresStore::connect("postgres://ash:pw@host:notaport/x", PgOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, PgError::BadUrl(_)), "{err}");
    assert!(!err.to_string().contains("pw@"), "{err}");
}

/// The server restarts under a live store: calls fail while it is down and work again after,
/// without reconnecting by hand, and the change feed reports that anything may have changed.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_outlives_a_server_restart() {
    let Some(cluster) = Cluster::start("the PostgreSQL restart test") else { return };
    let store = connect(&cluster.url()).await;
    let mut feed = store.changes().unwrap();
    store.create_run(new_run("r1"), started(0)).await.unwrap();
    // Let the listener connect before the restart.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.stop();
    assert!(store.run("r1").await.is_err(), "the server is down");
    cluster.start_again();
    let mut read = None;
    for _ in 0..50 {
        if let Ok(run) = store.run("r1").await {
            read = run;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(read.map(|r| r.event_count), Some(1), "the run is read again after the restart");
    let change = tokio::time::timeout(Duration::from_secs(20), feed.recv()).await;
    assert_eq!(change.unwrap().unwrap(), StoreChange::Any);
}

/// A database serves one agent: a node of another agent is refused by name.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_serves_one_agent() {
    let Some(pg) = Postgres::shared("the PostgreSQL agent binding test") else { return };
    let url = pg.fresh_database();
    let store = connect(&url).await;
    store.bind_agent(&url, "weather").await.unwrap();
    store.bind_agent(&url, "weather").await.unwrap();
    let err = store.bind_agent(&url, "coder").await.unwrap_err();
    assert!(matches!(&err, PgError::OtherAgent { serves, .. } if serves == "weather"), "{err}");
}

/// TLS to PostgreSQL, verified: with the server's certificate authority in `sslrootcert` the
/// connection is encrypted (the server says so); without it, `require` refuses the unknown
/// certificate by name; `verify-full` is read as libpq users write it.
#[tokio::test(flavor = "multi_thread")]
async fn tls_is_verified_against_the_given_authority() {
    let Some(cluster) = Cluster::start_with_tls("the PostgreSQL TLS test") else { return };
    let ca = cluster.ca_file();
    let url = format!("{}?sslmode=require&sslrootcert={}", cluster.url(), ca.display());
    let store = connect(&url).await;
    store.create_run(new_run("r1"), started(0)).await.unwrap();
    let encrypted = psql(
        &cluster.url(),
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name = 'ash'",
    );
    assert_ne!(encrypted, "0", "ash's connections use TLS");
    let full = format!("{}?sslmode=verify-full&sslrootcert={}", cluster.url(), ca.display());
    drop(connect(&full).await);
    let err =
        PostgresStore::connect(&format!("{}?sslmode=require", cluster.url()), PgOptions::default())
            .await
            .unwrap_err();
    assert!(matches!(err, PgError::Unreachable { .. }), "{err}");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    // Over the Unix socket TLS has no host name to verify: plain, or refused if required.
    drop(connect(&cluster.socket_url()).await);
    let err = PostgresStore::connect(
        &format!("{}?sslmode=require", cluster.socket_url()),
        PgOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PgError::Tls(_)), "{err}");
    let untrusted = PostgresStore::connect(&cluster.url(), PgOptions::default()).await.unwrap_err();
    assert!(
        untrusted.to_string().contains("add `sslrootcert=FILE`"),
        "prefer says what to do: {untrusted}"
    );
    let missing = format!("{}?sslrootcert=/nonexistent/ca.pem", cluster.url());
    let err = PostgresStore::connect(&missing, PgOptions::default()).await.unwrap_err();
    assert!(
        err.to_string().starts_with(
            "cannot set up TLS to PostgreSQL: cannot read sslrootcert /nonexistent/ca.pem"
        ),
        "{err}"
    );
}
