//! Push and sync to a Dolt remote server over `http://` (Dolt's `remotesrv`, a real process on its
//! own port: what a remote on another machine looks like to Doltgres), restore and verify from it
//! through the real binary, and the ways such a remote fails:
//! - down: the window fails naming the remote, clients are not held, and once the remote is back
//!   the next window succeeds;
//! - refusing writes (a read-only remote): the window fails with the remote's reason;
//! - slow (toxiproxy adding latency): windows still succeed, and a push's transfer runs after
//!   traffic resumes;
//! - silent (toxiproxy passing no data): a push's transfer hangs with traffic flowing, until
//!   `backup.action_timeout` fails it.

use std::time::Duration;

use doltgres_sidecar::config::backup::{PushConfig, SyncConfig};
use proxy_tests::facts::exec;
use proxy_tests::install;
use proxy_tests::managed::{ManagedProxy, local_command};
use proxy_tests::remote_server::RemoteServer;
use proxy_tests::toxiproxy::Toxiproxy;
use serde_json::{Value, json};

/// A managed proxy whose push remote and sync backup are repositories on `base`
/// (`http://host:port`), `push-{database}` and `sync-{database}`.
async fn managed_with_remote(
    base: String,
    adjust: impl FnOnce(&mut doltgres_sidecar::config::Config),
) -> ManagedProxy {
    ManagedProxy::start(move |c, _| {
        c.backup.push = Some(PushConfig {
            remote: "offsite".into(),
            url: Some(format!("{base}/push-{{database}}")),
            branches: vec!["main".into()],
            commit_working_set: true,
        });
        c.backup.sync = Some(SyncConfig {
            name: "offsite".into(),
            url: Some(format!("{base}/sync-{{database}}")),
        });
        adjust(c);
    })
    .await
}

async fn insert(m: &ManagedProxy, sql: &str) {
    m.connect().await.batch_execute(sql).await.unwrap();
}

/// `restore --from url --to target --database database` with the pinned Doltgres; panics with
/// the command's output if it fails.
fn restore(url: &str, target: &std::path::Path, database: &str) {
    let doltgres = install::doltgres_binary().to_str().unwrap();
    let to = target.to_str().unwrap();
    let args = [
        "restore",
        "--from",
        url,
        "--to",
        to,
        "--database",
        database,
        "--doltgres",
        doltgres,
    ];
    let (ok, out, err) = local_command(&args);
    assert!(ok, "restore {url}: {out}\n{err}");
}

/// The phase of the window step named `name` (its first), if the record has one.
fn phase_of(record: &Value, name: &str) -> Option<String> {
    record["steps"]
        .as_array()?
        .iter()
        .find(|s| s["step"] == name)
        .map(|s| s["phase"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_sync_to_a_remote_server_restore_and_verify_from_it() {
    let remote = RemoteServer::start().await;
    let m = managed_with_remote(format!("http://127.0.0.1:{}", remote.port), |_| {}).await;
    insert(&m, "CREATE TABLE notes (id int primary key, v text); INSERT INTO notes VALUES (1, 'one'), (2, 'two')").await;
    for action in ["push", "sync"] {
        let (code, record) = m.backup(action).await;
        assert_eq!(code, 200, "{action}: {record}");
    }
    // The remote server holds both repositories, in its own directory.
    for name in ["push-postgres", "sync-postgres"] {
        assert!(
            remote.dir().join(name).exists(),
            "{name} not on the remote server"
        );
    }
    let doltgres = install::doltgres_binary().to_str().unwrap().to_string();
    let local = ["--doltgres", doltgres.as_str()];
    for kind in ["push", "sync"] {
        let url = remote.url(&format!("{kind}-postgres"));
        let (ok, out, err) = local_command(&[&["verify", &url][..], &local].concat());
        assert!(ok && out.contains("restores"), "{kind}: {out}\n{err}");
        let target = m.dir.path().join(format!("restored-{kind}"));
        restore(&url, &target, "notesdb");
        let rows = m
            .query_restored(&target, "notesdb", "SELECT v FROM notes ORDER BY id")
            .await;
        assert_eq!(rows, ["one", "two"], "{kind}");
    }
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_server_that_is_down_fails_the_window_and_the_next_succeeds_once_it_is_back() {
    let mut remote = RemoteServer::start().await;
    let m = managed_with_remote(format!("http://127.0.0.1:{}", remote.port), |_| {}).await;
    insert(
        &m,
        "CREATE TABLE t (i int primary key); INSERT INTO t VALUES (1)",
    )
    .await;
    let (code, record) = m.backup("push").await;
    assert_eq!(code, 200, "{record}");
    remote.kill();
    let client = m.connect().await;
    exec(&client, "INSERT INTO t VALUES (2)").await;
    for action in ["push", "sync"] {
        let (code, record) = m.backup(action).await;
        assert_eq!(code, 502, "{action}: {record}");
        let error = record["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("connection refused") || error.contains("Unavailable"),
            "{action}: {error}"
        );
        // Not held: the next statement runs at once.
        tokio::time::timeout(Duration::from_secs(5), client.simple_query("SELECT 1"))
            .await
            .expect("traffic held after a failed window")
            .unwrap();
    }
    remote.restart().await;
    for action in ["push", "sync"] {
        let (code, record) = m.backup(action).await;
        assert_eq!(code, 200, "{action} after the remote is back: {record}");
    }
    let target = m.dir.path().join("restored");
    restore(&remote.url("push-postgres"), &target, "postgres");
    let rows = m
        .query_restored(&target, "postgres", "SELECT i FROM t ORDER BY i")
        .await;
    assert_eq!(rows, ["1", "2"]);
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_remote_server_fails_the_window_with_its_reason() {
    let remote = RemoteServer::start_read_only().await;
    let m = managed_with_remote(format!("http://127.0.0.1:{}", remote.port), |_| {}).await;
    insert(
        &m,
        "CREATE TABLE t (i int primary key); INSERT INTO t VALUES (1)",
    )
    .await;
    for action in ["push", "sync"] {
        let (code, record) = m.backup(action).await;
        assert_eq!(code, 502, "{action}: {record}");
        let error = record["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("PermissionDenied") && error.contains("read-only"),
            "{action}: {record}"
        );
    }
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_remote_server_costs_time_after_traffic_resumes_and_a_silent_one_is_timed_out() {
    let remote = RemoteServer::start().await;
    let toxiproxy = Toxiproxy::start(&format!("127.0.0.1:{}", remote.port)).await;
    let m = managed_with_remote(format!("http://{}", toxiproxy.listen), |c| {
        c.backup.action_timeout = Duration::from_secs(20);
    })
    .await;
    insert(
        &m,
        "CREATE TABLE t (i int primary key); INSERT INTO t VALUES (1)",
    )
    .await;
    let (code, record) = m.backup("push").await;
    assert_eq!(code, 200, "{record}");

    // 50 ms each way on every packet.
    toxiproxy
        .add("latency", "latency", "downstream", json!({"latency": 50}))
        .await;
    insert(&m, "INSERT INTO t VALUES (2)").await;
    for action in ["push", "sync"] {
        let (code, record) = m.backup(action).await;
        assert_eq!(code, 200, "{action}: {record}");
        eprintln!(
            "{action} through 50 ms of latency: stall {} ms, duration {} ms",
            record["stall_ms"], record["duration_ms"]
        );
    }
    let (_, record) = m.backup("push").await;
    assert_eq!(
        phase_of(&record, "push").as_deref(),
        Some("after"),
        "{record}"
    );
    toxiproxy.remove("latency").await;

    // No data at all: the push's transfer (after traffic resumed) waits until action_timeout.
    toxiproxy
        .add("silence", "timeout", "downstream", json!({"timeout": 0}))
        .await;
    insert(&m, "INSERT INTO t VALUES (3)").await;
    let client = m.connect().await;
    let probe = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        tokio::time::timeout(Duration::from_secs(5), client.simple_query("SELECT 1"))
            .await
            .expect("traffic held while the push hangs")
            .unwrap();
    };
    let ((code, record), ()) = tokio::join!(m.backup("push"), probe);
    assert_eq!(code, 502, "{record}");
    let error = record["error"].as_str().unwrap_or_default();
    assert!(error.contains("action_timeout"), "{record}");
    toxiproxy.remove("silence").await;
    m.proxy.stop().await;
}
