//! Several `ash start` nodes on one PostgreSQL database (the server `.ci/run` starts): one
//! session served by all of them, a node SIGKILLed mid-tool whose run another node finishes
//! with its workspace, a schedule fired once by three nodes, and a database restart mid-run.

use std::path::Path;
use std::time::{Duration, Instant};

use ash_protocol::{Event, EventBody};
use ash_test_support::postgres::{Cluster, Postgres, psql};
use ash_test_support::{FakeModelServer, Reply, Turn};
use pretty_assertions::assert_eq;
use serde_json::json;

use crate::serve::{Server, accepted, agent, indexes, read_events, stream_until, types};

/// `ash start` on the shared database `url`, keeping its local state in `state`.
fn node(dir: &Path, url: &str, state: &Path) -> Server {
    let state = state.to_str().unwrap();
    Server::start_with(dir, Path::new(url), &["--state-dir", state], &[])
}

fn replies(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::MessageCompleted(m) => Some(m.message.clone()),
            _ => None,
        })
        .collect()
}

/// The stream of `run_id` from `server` until one of `until`, reconnecting from the last index
/// read whenever the stream ends early (a node or the database went away under it).
async fn follow(server: &Server, run_id: &str, until: &[&str]) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut events: Vec<Event> = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no {until:?} within 90 s: {:?}", types(&events));
        let url = server.url(&format!("/runs/{run_id}/stream?startIndex={}", events.len()));
        let Ok(response) = reqwest::get(url).await else { continue };
        if response.status() != 200 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let page = read_events(response, until).await;
        let done = page.last().is_some_and(|e| until.contains(&e.body.type_name()));
        events.extend(page);
        if done {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Messages of one session posted to different nodes, its stream read from a third; then the
/// node working a run is SIGKILLed mid-tool and another one finishes it once its lease expired:
/// the finished tool ran once, the interrupted one again, the stream (read from a surviving
/// node throughout) is contiguous, and the file written before the crash is in the workspace
/// of the node that finished.
#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_share_sessions_and_finish_a_killed_nodes_run() {
    let Some(pg) = Postgres::shared("the three-node test") else { return };
    let url = pg.fresh_database();
    let model = FakeModelServer::start().await;
    let fx = agent(&model, "");
    let states: Vec<_> = (0..3).map(|n| fx.join(&format!("node{n}"))).collect();
    let a = node(fx.path(), &url, &states[0]);
    let b = node(fx.path(), &url, &states[1]);
    let c = node(fx.path(), &url, &states[2]);

    model.push(Reply::Turn(Turn::text("one"))).push(Reply::Turn(Turn::text("two")));
    let first = accepted(&a, json!({"message": "first"})).await;
    let events = stream_until(&c, &first.run_id, 0, &["session.waiting"]).await;
    assert_eq!(replies(&events), ["one"]);
    let next =
        accepted(&b, json!({"message": "second", "continuationToken": first.continuation_token}))
            .await;
    assert_eq!(next.run_id, first.run_id);
    let more = stream_until(&c, &first.run_id, events.len() as u64, &["session.waiting"]).await;
    assert_eq!(replies(&more), ["two"]);
    let all = stream_until(&a, &first.run_id, 0, &["session.waiting"]).await;
    assert_eq!(indexes(&all), (0..all.len() as u64).collect::<Vec<_>>());

    model.push(Reply::Turn(
        Turn::empty()
            .then_tool_call(
                "t1",
                "bash",
                r#"{"command":"echo one >> once.log; echo kept > before-crash.txt"}"#,
            )
            .then_tool_call(
                "t2",
                "bash",
                r#"{"command":"echo start >> slow.log; sleep 3; echo end >> slow.log"}"#,
            ),
    ));
    let run = accepted(&a, json!({"message": "work"})).await;
    stream_until(&c, &run.run_id, 0, &["action.result"]).await;
    // Whichever node took the run (the one that accepted it, or another one's sweep) made its
    // workspace: that node dies, a survivor reads the stream across the takeover.
    let mut nodes = vec![Some(a), Some(b), Some(c)];
    let working = (0..3)
        .find(|n| states[*n].join("workspaces").join(&run.run_id).exists())
        .expect("a node made the run's workspace");
    let survivor = nodes[(working + 1) % 3].as_ref().unwrap();
    let reader = {
        let (base, run_id) = (survivor.url(""), run.run_id.clone());
        tokio::spawn(async move {
            let url = format!("{base}/runs/{run_id}/stream?startIndex=0");
            read_events(reqwest::get(url).await.unwrap(), &["session.waiting"]).await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes[working].take().unwrap().sigkill();
    model.push(Reply::Turn(Turn::text("done")));
    let events = reader.await.unwrap();
    assert_eq!(indexes(&events), (0..events.len() as u64).collect::<Vec<_>>(), "contiguous");
    assert_eq!(replies(&events), ["done"]);
    let attempts: Vec<(String, u32)> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::ActionResult(r) => Some((r.call_id.clone(), r.attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [("t1".to_owned(), 1), ("t2".to_owned(), 2)]);
    let finisher = (0..3)
        .filter(|n| *n != working)
        .map(|n| states[n].join("workspaces").join(&run.run_id))
        .find(|ws| ws.exists())
        .expect("a surviving node has the run's workspace");
    assert_eq!(std::fs::read_to_string(finisher.join("before-crash.txt")).unwrap(), "kept\n");
    assert_eq!(std::fs::read_to_string(finisher.join("once.log")).unwrap(), "one\n");
    // The killed attempt's half-written line stayed on the dead node.
    assert_eq!(std::fs::read_to_string(finisher.join("slow.log")).unwrap(), "start\nend\n");
    drop(nodes);
}

/// Three nodes start within the same minute of an every-minute schedule: its latest fire
/// runs once between them.
#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_fires_once_with_three_nodes_up() {
    let Some(pg) = Postgres::shared("the three-node schedule test") else { return };
    let url = pg.fresh_database();
    let model = FakeModelServer::start().await;
    let fx = agent(&model, "//- agent/schedules/tick.md\n---\ncron: \"* * * * *\"\n---\nTick.\n");
    for _ in 0..6 {
        model.push(Reply::Turn(Turn::text("ticked")));
    }
    let nodes: Vec<Server> =
        (0..3).map(|n| node(fx.path(), &url, &fx.join(&format!("node{n}")))).collect();
    // Each node's scheduler looks at once; wait until a run ended, then a little longer.
    let deadline = Instant::now() + Duration::from_secs(30);
    while psql(&url, "SELECT count(*) FROM runs WHERE status = 'completed'") == "0" {
        assert!(Instant::now() < deadline, "the schedule never ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = psql(&url, "SELECT count(*) FROM runs");
    // A minute boundary may pass while the nodes start: then two fires, each once.
    let fires: usize = runs.parse().unwrap();
    assert!(fires == 1 || fires == 2, "{fires} runs");
    assert_eq!(model.requests().len(), fires, "one model call per fire");
    drop(nodes);
}

/// The database restarts while a node runs a tool: the commit after the tool fails, the node
/// reconnects, and the run continues (the interrupted tool runs again) to the end.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_survives_a_database_restart() {
    let Some(cluster) = Cluster::start("the database restart test") else { return };
    let model = FakeModelServer::start().await;
    let fx = agent(&model, "");
    let server = node(fx.path(), &cluster.url(), &fx.join("node"));
    model
        .push(Reply::Turn(Turn::empty().then_tool_call(
            "t1",
            "bash",
            r#"{"command":"sleep 2; echo ok"}"#,
        )))
        .push(Reply::Turn(Turn::text("after the restart")));
    let run = accepted(&server, json!({"message": "go"})).await;
    stream_until(&server, &run.run_id, 0, &["actions.requested"]).await;
    // Down for longer than the tool runs: its result cannot be stored.
    cluster.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.start_again();
    let events = follow(&server, &run.run_id, &["session.waiting"]).await;
    assert_eq!(indexes(&events), (0..events.len() as u64).collect::<Vec<_>>());
    assert_eq!(replies(&events), ["after the restart"]);
}

/// `ash store migrate` says where a store was and where it is now, for SQLite and PostgreSQL,
/// and names an unreachable database without its password.
#[tokio::test(flavor = "multi_thread")]
async fn store_migrate_reports_the_versions() {
    let fx = ash_test_support::Fixture::new("");
    std::fs::write(fx.join("old.db"), b"").unwrap();
    let out = crate::ash(fx.path(), &["store", "migrate", "--store", "old.db", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", crate::stderr(&out));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line, json!({"store": "sqlite old.db", "from": 0, "to": ash_store::SCHEMA_VERSION}));
    let out = crate::ash(fx.path(), &["store", "migrate", "--store", "old.db"]);
    assert_eq!(
        crate::stderr(&out),
        format!(
            "the store sqlite old.db is at schema version {}: nothing to do\n",
            ash_store::SCHEMA_VERSION
        )
    );
    let out = crate::ash(fx.path(), &["store", "migrate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(crate::stderr(&out).contains("name the store"), "{}", crate::stderr(&out));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://ash:s3cretpw@127.0.0.1:{port}/db");
    let out = crate::ash(fx.path(), &["store", "migrate", "--store", &url]);
    assert_eq!(out.status.code(), Some(2));
    let err = crate::stderr(&out);
    assert!(
        err.contains(&format!("cannot reach the PostgreSQL store at 127.0.0.1:{port}/db")),
        "{err}"
    );
    assert!(!err.contains("s3cretpw"), "{err}");

    let Some(pg) = Postgres::shared("`ash store migrate` on PostgreSQL") else { return };
    let url = pg.fresh_database();
    let out = crate::ash(fx.path(), &["store", "migrate", "--store", &url, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", crate::stderr(&out));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (line["from"].clone(), line["to"].clone()),
        (json!(0), json!(ash_store::PG_SCHEMA_VERSION))
    );
}

/// `GET /metrics` of a node on PostgreSQL: the backend, runs by status, leases and the pool.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_show_the_shared_store() {
    let Some(pg) = Postgres::shared("the metrics test") else { return };
    let url = pg.fresh_database();
    let model = FakeModelServer::start().await;
    let fx = agent(&model, "");
    let server = node(fx.path(), &url, &fx.join("node"));
    model.push(Reply::Turn(Turn::text("hi")));
    let run = accepted(&server, json!({"message": "hello"})).await;
    stream_until(&server, &run.run_id, 0, &["session.waiting"]).await;
    let text = reqwest::get(server.url("/metrics")).await.unwrap().text().await.unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    for expected in [
        "ash_store_up{backend=\"postgres\"} 1",
        "ash_store_runs{status=\"waiting\"} 1",
        "ash_store_leases{state=\"held\"} 0",
        "ash_store_leases{state=\"claimable\"} 0",
        "ash_store_pool{state=\"max\"} 16",
        "ash_engine_active_runs 0",
    ] {
        assert!(lines.contains(&expected), "missing {expected} in\n{text}");
    }
}

/// A tampered database (or a compromised node) plants a queued run whose id walks out of the
/// state directory, with a snapshot to restore there: a node refuses to work on it and writes
/// nothing outside its state directory.
#[tokio::test(flavor = "multi_thread")]
async fn a_planted_run_id_never_names_a_directory() {
    let Some(pg) = Postgres::shared("the planted run id test") else { return };
    let url = pg.fresh_database();
    let model = FakeModelServer::start().await;
    let fx = agent(&model, "");
    let state = fx.join("deep/node");
    let server = node(fx.path(), &url, &state);
    let planted = "../../planted";
    psql(
        &url,
        &format!(
            "INSERT INTO runs VALUES ('{planted}', 'ash:planted', 'conversation', 'queued', 1, 0, 1, 0, 0, 0, 0, 0, 0, NULL, NULL, false, 0);
             INSERT INTO journal VALUES ('{planted}', 0, '{{\"type\":\"turn-queued\",\"sequence\":0,\"message\":\"hi\"}}', 1);
             INSERT INTO snapshots VALUES ('{planted}', 'workspace', '{{\"format\":1,\"entries\":{{\"pwned\":{{\"kind\":\"dir\"}}}}}}');"
        ),
    );
    // Several sweeps.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!fx.join("planted").exists(), "a directory was made from the planted id");
    assert!(!fx.join("deep/planted").exists());
    assert!(
        server.log().contains("refusing to work on a run whose id ash could not have made"),
        "{}",
        server.log()
    );
    assert_eq!(
        psql(&url, &format!("SELECT status FROM runs WHERE run_id = '{planted}'")),
        "queued"
    );
}

/// A snapshot tampered with in the database (a path leaving the workspace) is not restored:
/// the next turn fails with `files_unavailable`, naming the path, and nothing is written
/// outside the node's state directory.
#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_snapshot_fails_the_turn_by_name() {
    let Some(pg) = Postgres::shared("the tampered snapshot test") else { return };
    let url = pg.fresh_database();
    let model = FakeModelServer::start().await;
    let fx = agent(&model, "");
    let server = node(fx.path(), &url, &fx.join("node"));
    model
        .push(Reply::Turn(Turn::empty().then_tool_call(
            "t1",
            "bash",
            r#"{"command":"echo hi > note.txt"}"#,
        )))
        .push(Reply::Turn(Turn::text("noted")));
    let run = accepted(&server, json!({"message": "note"})).await;
    let first = stream_until(&server, &run.run_id, 0, &["session.waiting"]).await;
    let manifest = psql(&url, "SELECT manifest FROM snapshots WHERE area = 'workspace'");
    assert!(manifest.contains("note.txt"), "{manifest}");
    psql(
        &url,
        r#"UPDATE snapshots SET manifest = '{"format":1,"entries":{"../escaped":{"kind":"dir"}}}' WHERE area = 'workspace'"#,
    );
    accepted(&server, json!({"message": "again", "continuationToken": run.continuation_token}))
        .await;
    let events = stream_until(&server, &run.run_id, first.len() as u64, &["run.failed"]).await;
    let failed = events.iter().find_map(|e| match &e.body {
        EventBody::TurnFailed(f) => Some((f.code.clone(), f.message.clone())),
        _ => None,
    });
    let (code, message) = failed.expect("turn.failed");
    assert_eq!(code, "files_unavailable");
    assert!(message.contains("`../escaped`"), "{message}");
    assert!(!fx.join("escaped").exists() && !fx.join("node/escaped").exists());
}
