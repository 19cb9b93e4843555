//! Facts about Doltgres v1.2.0 files (background writes, locks, auth data) and its SIGTERM
//! behaviour with sessions open, that the sidecar depends on, each pinned by one test against the
//! real server. If a test here fails after a Doltgres upgrade, the behaviour changed: update
//! `docs/doltgres-notes.md` and check the part of the sidecar that relied on it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use proxy_tests::TestServer;
use proxy_tests::facts::exec;
use proxy_tests::facts::{connect_to, raw, value};
use proxy_tests::raw::{RawClient, briefs, frontend};

/// The test bed's layout: `<tmp>/data` (data dir), `<tmp>/work` (the server's working directory),
/// `<tmp>/root` (`DOLT_ROOT_PATH`).
fn sibling(server: &TestServer, name: &str) -> PathBuf {
    server.data_dir.parent().unwrap().join(name)
}

/// Every regular file under `dirs` with its size, mtime and contents.
fn snapshot(dirs: &[PathBuf]) -> BTreeMap<PathBuf, (u64, SystemTime, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (u64, SystemTime, Vec<u8>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                walk(&entry.path(), out);
            } else if kind.is_file() {
                let meta = entry.metadata().unwrap();
                let contents = fs::read(entry.path()).unwrap();
                out.insert(
                    entry.path(),
                    (meta.len(), meta.modified().unwrap(), contents),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    for dir in dirs {
        walk(dir, &mut out);
    }
    out
}

/// Whether another process holds an flock on `path` (tried without blocking, released at once).
fn flock_held(path: &Path) -> bool {
    let file = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_lock) => false,
        Err((_, Errno::EWOULDBLOCK)) => true,
        Err((_, e)) => panic!("flock {}: {e}", path.display()),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Files: background writes, locks, auth data

/// The files under `dirs` that differ between two snapshots (added, removed or rewritten).
fn changed_files(
    before: &BTreeMap<PathBuf, (u64, SystemTime, Vec<u8>)>,
    after: &BTreeMap<PathBuf, (u64, SystemTime, Vec<u8>)>,
) -> Vec<PathBuf> {
    let paths: BTreeSet<&PathBuf> = before.keys().chain(after.keys()).collect();
    paths
        .into_iter()
        .filter(|p| before.get(*p) != after.get(*p))
        .cloned()
        .collect()
}

/// A table with a secondary index and some rows, written through `client`.
async fn load_indexed_table(client: &tokio_postgres::Client) {
    exec(
        client,
        "CREATE TABLE big (id INT PRIMARY KEY, k INT); CREATE INDEX big_k ON big (k)",
    )
    .await;
    exec(client, "INSERT INTO big SELECT generate_series(1, 5000), 7").await;
    exec(client, "UPDATE big SET k = 8 WHERE id < 100").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_server_with_one_database_writes_no_files() {
    let server = TestServer::doltgres().await;
    let client = server.connect_direct().await;
    load_indexed_table(&client).await;
    value(&client, "SELECT dolt_commit('-Am', 'load')").await;
    let dirs = [
        server.data_dir.clone(),
        sibling(&server, "work"),
        sibling(&server, "root"),
    ];
    let before = snapshot(&dirs);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = snapshot(&dirs);
    assert_eq!(changed_files(&before, &after), Vec::<PathBuf>::new());
    // With a single database the statistics live in memory only.
    assert!(
        !after
            .keys()
            .any(|p| p.to_string_lossy().contains("/.dolt/stats/"))
    );
    let stats = value(&client, "SELECT dolt_stats_info()").await;
    assert!(stats.contains(r#""backing":"memory""#), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_store_of_a_created_database_is_written_after_the_client_is_answered() {
    let (server, client) = TestServer::doltgres_seeded("CREATE DATABASE second").await;
    // The database created while running hosts the statistics store.
    let stats_dir = server.data_dir.join("second/.dolt/stats");
    assert!(stats_dir.join(".dolt/noms/LOCK").exists());
    let info = value(&client, "SELECT dolt_stats_info()").await;
    assert!(info.contains(r#""backing":"second""#), "{info}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let second = connect_to(&server, "second").await;
    load_indexed_table(&second).await;
    // Every statement has been answered; nothing is running. Files still change.
    let dirs = [
        server.data_dir.clone(),
        sibling(&server, "work"),
        sibling(&server, "root"),
    ];
    let before = snapshot(&dirs);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = snapshot(&dirs);
    let changed = changed_files(&before, &after);
    assert!(
        !changed.is_empty(),
        "the statistics store was not written in the background"
    );
    let outside: Vec<&PathBuf> = changed
        .iter()
        .filter(|p| !p.starts_with(&stats_dir))
        .collect();
    assert!(
        outside.is_empty(),
        "changed outside the stats store: {outside:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_database_holds_an_flock_on_noms_lock_while_running() {
    let (mut server, client) = TestServer::doltgres_seeded("CREATE DATABASE second").await;
    drop(client);
    let locks = [
        server.data_dir.join("postgres/.dolt/noms/LOCK"),
        server.data_dir.join("second/.dolt/noms/LOCK"),
    ];
    let info = server.data_dir.join(".dolt/sql-server.info");
    for lock in &locks {
        assert!(flock_held(lock), "{} not locked", lock.display());
    }
    let contents = fs::read_to_string(&info).unwrap();
    let fields: Vec<&str> = contents.split(':').collect();
    assert_eq!(fields.len(), 3, "pid:port:uuid, got {contents:?}");
    assert_eq!(fields[1], server.port.to_string());

    server.stop();
    for lock in &locks {
        assert!(lock.exists(), "{} removed at exit", lock.display());
        assert!(!flock_held(lock), "{} still locked", lock.display());
    }
    assert!(!info.exists(), "sql-server.info is removed at exit");
    let leftovers: Vec<_> = fs::read_dir(server.data_dir.join(".dolt"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    server.start().await;
    assert!(flock_held(&locks[0]));
    assert!(info.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_data_lives_in_the_working_directory() {
    let mut server = TestServer::doltgres().await;
    let auth = sibling(&server, "work").join("auth.db");
    let initial = fs::read(&auth).expect("auth.db is written at first start");
    let client = server
        .seeded("CREATE USER alice WITH PASSWORD 'secret'")
        .await;
    let after = fs::read(&auth).unwrap();
    assert_ne!(initial, after, "CREATE USER rewrites auth.db");
    let all = snapshot(&[
        server.data_dir.clone(),
        sibling(&server, "work"),
        sibling(&server, "root"),
    ]);
    let auth_files: Vec<&PathBuf> = all
        .keys()
        .filter(|p| {
            let p = p.to_string_lossy();
            p.contains(".doltcfg") || p.ends_with("auth.db") || p.ends_with("privileges.db")
        })
        .collect();
    assert_eq!(auth_files, [&auth]);

    // The user survives a restart (it is read back from auth.db).
    drop(client);
    server.stop();
    server.start().await;
    let mut config = server.config_at(&server.addr());
    config.user("alice").password("secret");
    let (alice, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("alice logs in after a restart");
    tokio::spawn(connection);
    assert_eq!(value(&alice, "SELECT 1").await, "1");
    // Oddly, a plain user may not call current_user.
    let err = alice.simple_query("SELECT current_user").await.unwrap_err();
    let err = err.as_db_error().expect("a server error");
    assert_eq!(err.message(), "permission denied for routine current_user");
}

// ---------------------------------------------------------------------------------------------
// 2. SIGTERM with sessions open

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sessions_with_a_bare_eof() {
    let server = TestServer::doltgres().await;
    let idle = raw(&server).await;
    let mut in_txn = raw(&server).await;
    in_txn.simple("BEGIN").await;
    let mut running = raw(&server).await;
    running.send(&frontend::query("SELECT pg_sleep(5)")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let watch = |mut session: RawClient| {
        tokio::spawn(async move {
            let closed = session.until_end().await;
            (closed, Instant::now())
        })
    };
    let watchers = [watch(idle), watch(in_txn), watch(running)];
    let signalled = Instant::now();
    let mut server = server;
    let server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .unwrap();
    let exited = signalled.elapsed();

    for (name, watcher) in ["idle", "in transaction", "running pg_sleep"]
        .iter()
        .zip(watchers)
    {
        let (closed, at) = watcher.await.unwrap();
        assert!(
            closed.messages.is_empty(),
            "{name}: {:?}",
            briefs(&closed.messages)
        );
        assert!(closed.trailing.is_empty(), "{name}: {:?}", closed.trailing);
        assert!(closed.end.is_ok(), "{name}: {:?}", closed.end);
        let after = at.duration_since(signalled);
        assert!(
            after < Duration::from_secs(2),
            "{name} closed {after:?} after SIGTERM"
        );
    }
    // The process itself exits only once the running pg_sleep has finished.
    assert!(
        exited >= Duration::from_millis(3500),
        "exited after {exited:?}"
    );
    drop(server);
}

/// Doltgres is a Go program: when the read end of its stdout/stderr pipe is closed, its next log
/// line (a new connection logs one at `log_level: info`) kills it with SIGPIPE. So a managed
/// server whose sidecar exits must keep a reader: the upgrade hand-over passes the pipes' read
/// ends to the successor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_output_pipe_kills_the_server_at_its_next_log_line() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let mut server = TestServer::doltgres().await;
    server.stop();
    let run = || {
        server
            .doltgres_command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ready = |child: &mut std::process::Child| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(server.addr()).is_err() {
            assert!(child.try_wait().unwrap().is_none(), "doltgres exited");
            assert!(Instant::now() < deadline, "doltgres did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // With a reader, connections come and go and the server runs on.
    let mut child = run();
    let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || std::io::copy(&mut pipe, &mut std::io::sink()))
    };
    let readers = (drain(Box::new(out)), drain(Box::new(err)));
    ready(&mut child);
    for _ in 0..3 {
        server.seeded("SELECT 1").await;
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "doltgres exited with a reader"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    child.wait().unwrap();
    let _ = (readers.0.join(), readers.1.join());

    // Without one, the next connection's log line ends it.
    let mut child = run();
    ready(&mut child);
    drop(child.stdout.take());
    drop(child.stderr.take());
    let _ = server
        .config_at(&server.addr())
        .connect(tokio_postgres::NoTls)
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "doltgres survived a closed output pipe"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.signal(),
        Some(nix::sys::signal::Signal::SIGPIPE as i32),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_socket_setting_and_on_127_0_0_1_no_unix_socket_is_opened() {
    // Managed mode relies on this: its config.yaml names no socket, so a long server directory
    // (whose socket path would pass Linux's 108-byte limit) cannot stop the server.
    let dir = tempfile::tempdir().unwrap();
    for sub in ["data", "work", "root"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let port = proxy_tests::free_port();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "log_level: info\nlistener:\n  host: 127.0.0.1\n  port: {port}\ndata_dir: {}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut server = std::process::Command::new(proxy_tests::install::doltgres_binary())
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path().join("work"))
        .env("DOLT_ROOT_PATH", dir.path().join("root"))
        .env("HOME", dir.path().join("root"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let sockets = std::fs::read_to_string("/proc/net/unix").unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(up, "the server did not listen");
    let name = format!(".s.PGSQL.{port}");
    assert!(
        !sockets.lines().any(|line| line.ends_with(&name)),
        "a unix socket {name} was opened"
    );
}
