//! Upgrade without dropping clients, with the real binary on a real PostgreSQL: a second sidecar
//! process started with `run --upgrade` takes over the running one's listening sockets while
//! pgbench runs through them, the old process lets its sessions finish and exits, and nothing a
//! client did is lost or refused.

use std::time::Duration;

use proxy_tests::facts::exec;
use proxy_tests::pgbench::{self, Login, PgbenchReport};
use proxy_tests::process::SidecarProcess;
use proxy_tests::{TestServer, free_port};

/// How long each pgbench runs; the upgrade happens a third of the way in.
const PGBENCH_SECONDS: u64 = 12;

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("sidecar.toml");
    std::fs::write(
        &file,
        format!(
            "shutdown_timeout = \"40s\"\nhandover_socket = \"{}\"\n",
            dir.join("handover.sock").display()
        ),
    )
    .unwrap();
    file
}

/// The sum of the counters every pgbench transaction bumps once.
async fn sum_of_n(client: &tokio_postgres::Client) -> u64 {
    let n: i64 = client
        .query_one("SELECT sum(n)::bigint FROM acct", &[])
        .await
        .unwrap()
        .get(0);
    n as u64
}

/// POSTs `path` until it succeeds: a successor holds windows off (409, saying so) until its
/// predecessor's process is gone, which it checks every 100 ms. The successful answer's body.
async fn once_windows_run(process: &SidecarProcess, path: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = process.post(path).await;
        if status == 200 {
            return body;
        }
        assert!(body.contains("held off"), "{status} {body}");
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs pgbench in a thread: `args` besides the script, against `addr`.
fn pgbench_in_background(
    server: &TestServer,
    addr: &str,
    script: &str,
    args: &[&str],
) -> std::thread::JoinHandle<PgbenchReport> {
    let (login, addr, script) = (Login::of(server), addr.to_string(), script.to_string());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    std::thread::spawn(move || {
        let mut all: Vec<&str> = vec!["-f", &script];
        all.extend(args.iter().map(String::as_str));
        pgbench::run_as(&login, &addr, &all)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_through_an_upgrade_on_doltgres() {
    pgbench_through_an_upgrade_loses_and_refuses_nothing(TestServer::doltgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_through_an_upgrade_on_postgres() {
    pgbench_through_an_upgrade_loses_and_refuses_nothing(TestServer::postgres().await).await;
}

async fn pgbench_through_an_upgrade_loses_and_refuses_nothing(server: TestServer) {
    let direct = server.connect_direct().await;
    let rows: Vec<String> = (1..=50).map(|id| format!("({id}, 0)")).collect();
    direct
        .batch_execute(&format!(
            "CREATE TABLE acct (id int PRIMARY KEY, n bigint NOT NULL);
             INSERT INTO acct VALUES {};",
            rows.join(", ")
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path());
    let script = pgbench::script(
        dir.path(),
        "bump",
        // Each client its own row (Doltgres fails one of two transactions that write the
        // same row at once).
        "BEGIN;\nUPDATE acct SET n = n + 1 WHERE id = :client_id + :base;\nCOMMIT;\n",
        1,
    );
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["--config".into(), file.display().to_string()];
        v.extend(["--upstream".into(), server.addr()]);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let mut old = SidecarProcess::start_at(&listen, &admin, &args(&[]), |_| {});
    old.ready().await;

    let seconds = PGBENCH_SECONDS.to_string();
    // A connection per transaction: these clients reach whichever process accepts.
    let per_txn = pgbench_in_background(
        &server,
        &listen,
        &script,
        &["-C", "-c", "4", "-j", "2", "-T", &seconds, "-D", "base=1"],
    );
    // Persistent sessions: they stay on the old process, which lets them finish.
    let persistent = pgbench_in_background(
        &server,
        &listen,
        &script,
        &["-c", "2", "-T", &seconds, "-D", "base=11"],
    );

    tokio::time::sleep(Duration::from_secs(PGBENCH_SECONDS / 3)).await;
    let before = old.metric("doltgres_sidecar_commits_total").await.unwrap();
    assert!(
        before > 0.0,
        "the old process served nothing before the upgrade"
    );
    let mut new = SidecarProcess::start_at(&listen, &admin, &args(&["--upgrade"]), |_| {});

    // The old process keeps its persistent sessions until pgbench ends them; meanwhile the
    // successor holds backup windows off, and says why. (Asked with an action this config
    // lacks, so that the old process, while it still answers, runs nothing either.)
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = new.post("/backups?action=sync").await;
        assert_eq!(status, 409, "{body}");
        // (The old process, between its offer and the successor's answer, says it is handing
        // over.)
        if body.contains("held off") && body.contains("previous process") {
            // `status` says so too, and which process answers.
            let (_, status) = new.get("/status").await;
            let status: serde_json::Value = serde_json::from_str(&status).unwrap();
            assert_eq!(status["pid"], new.child.id(), "{status}");
            assert!(
                status["windows_held_off"]
                    .as_str()
                    .is_some_and(|r| r.contains("previous process")),
                "{status}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no hold-off answer while the old process drains: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        new.child.try_wait().unwrap(),
        None,
        "the successor exited during the upgrade"
    );

    let exit = old
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("the old process did not exit after its sessions ended");
    assert!(exit.success(), "the old process exited with {exit}");
    let per_txn = per_txn.join().unwrap();
    let persistent = persistent.join().unwrap();
    for (name, report) in [("-C", &per_txn), ("persistent", &persistent)] {
        assert_eq!(report.failed, 0, "{name} pgbench: {}", report.stdout);
        assert!(report.processed > 0, "{name} pgbench ran nothing");
    }
    let processed = per_txn.processed + persistent.processed;
    eprintln!(
        "upgrade under load: {} transactions on new connections, {} on persistent ones, 0 failed",
        per_txn.processed, persistent.processed
    );

    // Nothing acknowledged is lost: every transaction pgbench counted is in the table.
    let n = sum_of_n(&direct).await;
    assert_eq!(n, processed, "rows against pgbench's count");

    // Counts continue: the successor's counter holds the old process's commits too (pgbench
    // also commits one statement per run, reading the server's settings).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let commits = new.metric("doltgres_sidecar_commits_total").await.unwrap() as u64;
        if commits >= processed {
            assert!(
                commits <= processed + 10,
                "{commits} commits for {processed}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the successor counts {commits} commits, pgbench {processed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // With the old process gone (the successor checks every 100 ms), windows run in the
    // successor again.
    once_windows_run(&new, "/quiesce?ttl=5s").await;
    let (status, body) = new.post("/resume").await;
    assert_eq!(status, 200, "{body}");
    // And the successor serves new clients alone.
    let after = pgbench::run(
        &server,
        &listen,
        &["-f", &script, "-C", "-t", "20", "-D", "base=21"],
    );
    assert_eq!(after.failed, 0);
    assert_eq!(new.child.try_wait().unwrap(), None);

    // It can be upgraded in turn: its socket is where the config says.
    let mut third = SidecarProcess::start_at(&listen, &admin, &args(&["--upgrade"]), |_| {});
    let exit = new
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("the second process did not hand over");
    assert!(exit.success());
    let last = pgbench::run(
        &server,
        &listen,
        &["-f", &script, "-C", "-t", "20", "-D", "base=31"],
    );
    assert_eq!(last.failed, 0);
    assert_eq!(third.child.try_wait().unwrap(), None);
    third.ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upgrade_leaves_the_running_process_serving() {
    let server = TestServer::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path());
    let file = file.display().to_string();
    let upstream = server.addr();
    let binary = proxy_tests::install::sidecar_binary();

    // Nobody to take over from: a clear error, no listener bound.
    let out = std::process::Command::new(binary)
        .args([
            "run",
            "--upgrade",
            "--config",
            &file,
            "--upstream",
            &upstream,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no running doltgres-sidecar answers"),
        "{stderr}"
    );

    let mut old = SidecarProcess::start(&["--config", &file, "--upstream", &upstream]);
    old.ready().await;
    let client = server.connect_at(&old.listen).await;
    client.batch_execute("SELECT 1").await.unwrap();

    // A successor whose config listens elsewhere is refused by itself after the offer; the
    // running process goes on accepting.
    let out = std::process::Command::new(binary)
        .args([
            "run",
            "--upgrade",
            "--config",
            &file,
            "--upstream",
            &upstream,
        ])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin-listen", old.admin.trim_start_matches("http://")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("an upgrade keeps the addresses"),
        "{stderr}"
    );
    client.batch_execute("SELECT 1").await.unwrap();
    let fresh = server.connect_at(&old.listen).await;
    fresh.batch_execute("SELECT 1").await.unwrap();
    let (status, body) = old.post("/quiesce?ttl=5s").await;
    assert_eq!(
        status, 200,
        "windows still run in the running process: {body}"
    );
    old.post("/resume").await;
    assert_eq!(old.child.try_wait().unwrap(), None);
}

/// The pid Doltgres records in its data directory (`pid:port:uuid`).
fn doltgres_pid(server_dir: &std::path::Path) -> i32 {
    let info = std::fs::read_to_string(server_dir.join("data/.dolt/sql-server.info")).unwrap();
    info.split(':').next().unwrap().trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_doltgres_is_handed_over_with_the_listeners() {
    use proxy_tests::managed::{PASSWORD, USER};
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("doltgres");
    let file = dir.path().join("sidecar.toml");
    std::fs::write(
        &file,
        format!(
            "shutdown_timeout = \"40s\"\nhandover_socket = \"{}\"\n\n\
             [server]\ncontrol = \"managed\"\nbinary = \"{}\"\ndir = \"{}\"\npassword = \"{PASSWORD}\"\n\n\
             [backup]\non_shutdown = true\n\n[backup.copy]\ncatalog = \"{}\"\n",
            dir.path().join("handover.sock").display(),
            proxy_tests::install::doltgres_binary().display(),
            server_dir.display(),
            dir.path().join("backups").display()
        ),
    )
    .unwrap();
    let config = file.display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let mut old = SidecarProcess::start_at(&listen, &admin, &["--config", &config], |_| {});
    old.ready().await;
    let login = Login {
        user: USER.into(),
        password: PASSWORD.into(),
        database: "postgres".into(),
    };
    let (host, port) = listen.rsplit_once(':').unwrap();
    let mut pg = tokio_postgres::Config::new();
    pg.host(host)
        .port(port.parse().unwrap())
        .user(USER)
        .password(PASSWORD)
        .dbname("postgres");
    let client = proxy_tests::server_connect(&pg).await.unwrap();
    let rows: Vec<String> = (1..=50).map(|id| format!("({id}, 0)")).collect();
    exec(&client, &format!(
            "CREATE TABLE acct (id int PRIMARY KEY, n bigint NOT NULL); INSERT INTO acct VALUES {};",
            rows.join(", ")
        )).await;
    let server_pid = doltgres_pid(&server_dir);
    let script = pgbench::script(
        dir.path(),
        "bump",
        "BEGIN;\nUPDATE acct SET n = n + 1 WHERE id = :client_id + :base;\nCOMMIT;\n",
        1,
    );
    let run = |args: &'static [&'static str]| {
        let (login, listen, script) = (login.clone(), listen.clone(), script.clone());
        std::thread::spawn(move || {
            let mut all = vec!["-f", &script];
            all.extend_from_slice(args);
            pgbench::run_as(&login, &listen, &all)
        })
    };
    let per_txn = run(&["-C", "-c", "3", "-T", "10", "-D", "base=1"]);
    let persistent = run(&["-c", "2", "-T", "10", "-D", "base=11"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let new =
        SidecarProcess::start_at(&listen, &admin, &["--config", &config, "--upgrade"], |_| {});

    let per_txn = per_txn.join().unwrap();
    let persistent = persistent.join().unwrap();
    assert_eq!(per_txn.failed + persistent.failed, 0);
    // The last session on the old process.
    drop(client);
    let exit = old
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("the old process did not exit");
    assert!(exit.success(), "the old process exited with {exit}");
    let catalog = doltgres_sidecar::catalog::Catalog {
        dir: dir.path().join("backups"),
    };
    assert!(
        catalog.entries().is_empty(),
        "the old process ran a final backup after handing over"
    );
    let processed = per_txn.processed + persistent.processed;
    // The server outlived the process that started it: the successor adopted it.
    assert_eq!(doltgres_pid(&server_dir), server_pid);
    assert!(doltgres_sidecar::control::managed::alive(server_pid));
    let through_copy = proxy_tests::server_connect(&pg).await.unwrap();
    let n = sum_of_n(&through_copy).await;
    assert_eq!(n, processed, "rows against pgbench's count");

    // A copy window in the successor stops the adopted server (not its child) and starts its
    // own, and the data is all there.
    let body = once_windows_run(&new, "/backups?action=copy").await;
    assert!(body.contains("\"result\":\"ok\""), "{body}");
    assert!(!doltgres_sidecar::control::managed::alive(server_pid));
    let restarted = doltgres_pid(&server_dir);
    assert_ne!(restarted, server_pid);
    let client = proxy_tests::server_connect(&pg).await.unwrap();
    let n = sum_of_n(&client).await;
    assert_eq!(n, processed);
    // A session open through the copy window carries on.
    through_copy.batch_execute("SELECT 1").await.unwrap();
    // The successor stops its server when it stops.
    drop(client);
    drop(through_copy);
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(new);
    assert!(!doltgres_sidecar::control::managed::alive(restarted));
}
