//! The console on the proxy's port (`doltgres_sidecar` database), against real servers and real
//! clients: psql, tokio-postgres (simple and extended protocol) and psycopg 3 (text and binary
//! results). Each command's values are held to the admin HTTP API's answer for the same state;
//! logins are refused as PostgreSQL refuses them (a wrong password or an unknown user `28P01`,
//! a user who may not use the console `28000`); a stats user's control command is `42501`; a
//! console session is untouched by a copy window that restarts the server; `SHUTDOWN` stops the
//! proxy as a signal does.

use std::time::{Duration, Instant};

use doltgres_sidecar::auth::AuthMode;
use doltgres_sidecar::auth::verifier::ScramVerifier;
use doltgres_sidecar::tls::ClientTlsMode;
use proxy_tests::certs::TestCerts;
use proxy_tests::facts::exec;
use proxy_tests::install;
use proxy_tests::managed::{self, ManagedProxy};
use proxy_tests::raw::{self, Login, RawClient};
use proxy_tests::{TestProxy, server_connect};
use serde_json::Value as Json;
use tokio_postgres::SimpleQueryMessage;

const CONSOLE: &str = "doltgres_sidecar";

/// A client config for the console at `addr` as `user`.
fn console_config(addr: &str, user: &str, password: &str) -> tokio_postgres::Config {
    proxy_tests::client_config(addr, user, password, CONSOLE)
}

async fn console(addr: &str, user: &str, password: &str) -> tokio_postgres::Client {
    server_connect(&console_config(addr, user, password))
        .await
        .unwrap_or_else(|e| panic!("console login as {user} failed: {e}"))
}

/// The rows of a simple query, each as column name → text (`None` for NULL).
async fn simple(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<(String, Option<String>)>> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                row.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_string(), row.get(i).map(str::to_string)))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The value of column `name` in a simple-query row.
fn field<'a>(row: &'a [(String, Option<String>)], name: &str) -> Option<&'a str> {
    row.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no column {name} in {row:?}"))
        .1
        .as_deref()
}

/// `(SQLSTATE, message)` of a failed query or login.
fn refusal(e: &tokio_postgres::Error) -> (String, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e}"));
    (db.code().code().to_string(), db.message().to_string())
}

async fn login_refusal(addr: &str, user: &str, password: &str) -> (String, String) {
    match server_connect(&console_config(addr, user, password)).await {
        Ok(_) => panic!("the console let {user} in"),
        Err(e) => refusal(&e),
    }
}

/// Runs psql against the console (without blocking the in-process proxy's runtime); returns
/// (success, stdout, stderr).
async fn psql(
    addr: &str,
    user: &str,
    password: &str,
    sql: &str,
    sslmode: &str,
) -> (bool, String, String) {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = tokio::process::Command::new(install::postgres_bindir().join("psql"))
        .args(["-h", host, "-p", port, "-U", user, "-d", CONSOLE])
        .args(["-X", "-A", "-F", "|", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", sslmode)
        .env("PGCONNECT_TIMEOUT", "30")
        .output()
        .await
        .expect("cannot run psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `proxy-tests/drivers/python/console.py` (psycopg 3) with these commands; one JSON
/// answer per command.
async fn psycopg(addr: &str, user: &str, password: &str, commands: &[&str]) -> Vec<Json> {
    let python = &install::driver_program("python").argv[0];
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("drivers/python/console.py");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = tokio::process::Command::new(python)
        .arg(script)
        .args([host, port, user, password, CONSOLE])
        .args(commands)
        .output()
        .await
        .expect("cannot run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "console.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A userlist with these users' passwords.
fn userlist(dir: &std::path::Path, users: &[(&str, &str)]) -> std::path::PathBuf {
    let path = dir.join("userlist.txt");
    let text: String = users
        .iter()
        .map(|(user, password)| format!("\"{user}\" \"{}\"\n", ScramVerifier::generate(password)))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// Logins, roles, errors and TLS, with verifiers from an auth file: the console needs no server
/// for any of them (the proxy's upstream is a closed port).
#[tokio::test]
async fn logins_roles_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::create(dir.path());
    let file = userlist(
        dir.path(),
        &[
            ("boss", "boss-Pw-1"),
            ("watcher", "watch-Pw-1"),
            ("plain", "plain-Pw-1"),
        ],
    );
    let closed = format!("127.0.0.1:{}", proxy_tests::free_port());
    let proxy = TestProxy::start_with(&closed, |c| {
        c.auth_file = Some(file.clone());
        c.admin_users = vec!["boss".into()];
        c.stats_users = vec!["watcher".into()];
        c.tls = ClientTlsMode::Allow;
        c.tls_cert = Some(certs.cert.clone());
        c.tls_key = Some(certs.key.clone());
    })
    .await;
    assert_eq!(proxy.shared.config().auth_mode(), AuthMode::Passthrough);
    let addr = proxy.addr.clone();

    // As PostgreSQL: a wrong password and an unknown user look alike.
    let wrong = login_refusal(&addr, "boss", "nope").await;
    assert_eq!(
        wrong,
        (
            "28P01".into(),
            "password authentication failed for user \"boss\"".into()
        )
    );
    let unknown = login_refusal(&addr, "nobody", "nope").await;
    assert_eq!(
        unknown,
        (
            "28P01".into(),
            "password authentication failed for user \"nobody\"".into()
        )
    );
    let (code, message) = login_refusal(&addr, "plain", "plain-Pw-1").await;
    assert_eq!(code, "28000");
    assert!(message.contains("may not use the console"), "{message}");

    // A stats user reads, and is refused every control command with 42501.
    let watcher = console(&addr, "watcher", "watch-Pw-1").await;
    let version = simple(&watcher, "SHOW VERSION").await;
    assert_eq!(
        field(&version[0], "version"),
        Some(format!("doltgres-sidecar {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    for command in [
        "BACKUP",
        "PAUSE 5s",
        "RESUME",
        "RELOAD",
        "VERIFY latest",
        "SHUTDOWN",
    ] {
        let e = watcher.simple_query(command).await.unwrap_err();
        let (code, message) = refusal(&e);
        assert_eq!(code, "42501", "{command}: {message}");
        // The extended protocol too.
        let e = watcher.query(command, &[]).await.unwrap_err();
        assert_eq!(refusal(&e).0, "42501", "{command}");
    }
    assert!(!proxy.shared.shutdown.is_cancelled());

    // Unknown commands: 42601, naming how to list them; the session goes on.
    let boss = console(&addr, "boss", "boss-Pw-1").await;
    for bad in ["SELECT 1", "SHOW POOLS", "BACKUP later", "VERIFY"] {
        let e = boss.simple_query(bad).await.unwrap_err();
        let (code, message) = refusal(&e);
        assert_eq!(code, "42601", "{bad}: {message}");
        let e = boss.query(bad, &[]).await.unwrap_err();
        assert_eq!(refusal(&e).0, "42601", "{bad}");
    }
    let help = simple(&boss, "show help;").await;
    assert!(help.len() >= 14, "{help:?}");
    assert_eq!(field(&help[0], "command"), Some("SHOW HELP"));
    // Several commands in one simple query are answered in turn; after a failing one, no more.
    let messages = boss
        .simple_query("SHOW VERSION; SHOW VERSION")
        .await
        .unwrap();
    let rows = messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(rows, 2);
    let e = boss
        .simple_query("SHOW VERSION; BOGUS; SHOW VERSION")
        .await
        .unwrap_err();
    assert_eq!(refusal(&e).0, "42601");
    // Control commands whose preconditions fail answer as the admin API does (409 → 55000).
    let e = boss.simple_query("RESUME").await.unwrap_err();
    assert_eq!(refusal(&e), ("55000".into(), "no window is held".into()));
    let (status, body) = proxy.admin_post("/resume").await;
    assert_eq!(status, 409, "{body}");
    let e = boss.simple_query("VERIFY latest").await.unwrap_err();
    assert_eq!(refusal(&e).0, "55000");
    // A bad duration is 22023 here and 400 there.
    let e = boss.simple_query("PAUSE 5days").await.unwrap_err();
    assert_eq!(refusal(&e).0, "22023");
    let (status, _) = proxy.admin_post("/quiesce?ttl=5days").await;
    assert_eq!(status, 400);

    // Bad protocol input: an oversized length ends the session with a FATAL 08P01 (and no
    // ReadyForQuery after it), and the proxy serves on.
    let login = Login {
        user: "boss",
        password: "boss-Pw-1",
        database: CONSOLE,
    };
    let mut raw = RawClient::login_as(&addr, &login, &[]).await;
    let parameters: Vec<(String, String)> =
        raw.startup.iter().filter_map(|m| m.parameter()).collect();
    assert!(
        parameters
            .iter()
            .any(|(k, v)| k == "server_version" && v.contains("doltgres-sidecar")),
        "{parameters:?}"
    );
    assert!(raw.key.is_some(), "no BackendKeyData");
    let answer = raw.simple("SHOW VERSION").await;
    assert_eq!(
        raw::briefs(&answer).first().map(String::as_str),
        Some("T"),
        "{answer:?}"
    );
    // A length of 2 GiB - 1: more than any message may be.
    raw.send(&[b'Q', 0x7f, 0xff, 0xff, 0xff]).await;
    let ending = raw.until_closed().await;
    let fatal = ending
        .iter()
        .find(|m| m.tag == b'E')
        .expect("no error before the close");
    assert_eq!(
        fatal.sqlstate().as_deref(),
        Some("08P01"),
        "{:?}",
        fatal.text()
    );
    assert_eq!(fatal.field('S').as_deref(), Some("FATAL"));
    assert!(
        ending.iter().all(|m| m.tag != b'Z'),
        "{:?}",
        raw::briefs(&ending)
    );
    let boss = console(&addr, "boss", "boss-Pw-1").await;
    assert_eq!(simple(&boss, "SHOW VERSION").await.len(), 1);

    // psql, in plain text and over TLS.
    for sslmode in ["disable", "require"] {
        let (ok, out, err) = psql(&addr, "watcher", "watch-Pw-1", "SHOW STATS", sslmode).await;
        assert!(ok, "psql ({sslmode}) failed: {err}");
        let mut lines = out.lines();
        assert_eq!(
            lines.next(),
            Some(
                "sessions|commits|rollbacks|write_commits|write_commits_since_backup|bytes_upstream|bytes_downstream"
            ),
            "{out}"
        );
        assert_eq!(lines.next(), Some("0|0|0|0|0|0|0"), "{out}");
        let (ok, _, err) = psql(&addr, "watcher", "watch-Pw-1", "BACKUP", sslmode).await;
        assert!(
            !ok && err.contains("permission denied: BACKUP needs a user in admin_users"),
            "{err}"
        );
    }
    proxy.stop().await;

    // Without console users every login is refused, with 28000 and what to set.
    let proxy = TestProxy::start(&closed).await;
    let (code, message) = login_refusal(&proxy.addr, "boss", "boss-Pw-1").await;
    assert_eq!(code, "28000");
    assert!(
        message.contains("set admin_users or stats_users"),
        "{message}"
    );
    proxy.stop().await;
}

/// Every command's values against the admin API's on a managed Doltgres (the relay in
/// passthrough mode, console verifiers from the server's `pg_authid`), a console session through
/// a copy window, and `SHUTDOWN`.
#[tokio::test]
async fn commands_match_the_admin_api_on_doltgres() {
    let managed = ManagedProxy::start(|c, _| {
        c.auth = Some(AuthMode::Passthrough);
        c.admin_users = vec![managed::USER.into()];
        c.stats_users = vec!["watcher".into()];
    })
    .await;
    let proxy = &managed.proxy;
    let addr = managed.addr().to_string();
    // A relay session with a write, and a user for the stats role.
    let mut relay_config = managed.config_at("postgres");
    relay_config.application_name("relay-app");
    let relay = std::sync::Arc::new(server_connect(&relay_config).await.unwrap());
    exec(
        &relay,
        "CREATE TABLE items (id int PRIMARY KEY, name text); \
             INSERT INTO items VALUES (1, 'one'); \
             CREATE USER watcher WITH PASSWORD 'watch-Pw-1'; \
             CREATE USER plain WITH PASSWORD 'plain-Pw-1'",
    )
    .await;
    let admin = console(&addr, managed::USER, managed::PASSWORD).await;

    // SHOW STATS: the simple and the extended protocol give /status's counters.
    let status = proxy.status().await;
    let counters = &status["counters"];
    let stats = simple(&admin, "SHOW STATS").await;
    assert_eq!(stats.len(), 1);
    for name in [
        "commits",
        "rollbacks",
        "write_commits",
        "write_commits_since_backup",
        "bytes_upstream",
        "bytes_downstream",
    ] {
        assert_eq!(
            field(&stats[0], name),
            Some(counters[name].to_string().as_str()),
            "{name}"
        );
    }
    assert!(
        counters["write_commits"].as_u64().unwrap() >= 1,
        "{counters}"
    );
    let row = admin.query_one("SHOW STATS", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>("sessions"), 1);
    assert_eq!(
        row.get::<_, i64>("write_commits") as u64,
        counters["write_commits"].as_u64().unwrap()
    );

    let version = simple(&admin, "SHOW VERSION").await;
    assert_eq!(
        field(&version[0], "version"),
        Some(format!("doltgres-sidecar {}", status["version"].as_str().unwrap()).as_str())
    );

    // SHOW SESSIONS: the relay session, with the server pid /status gives.
    let sessions = simple(&admin, "SHOW SESSIONS").await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let session = &status["sessions"][0];
    assert_eq!(field(&sessions[0], "application_name"), Some("relay-app"));
    assert_eq!(field(&sessions[0], "user"), Some(managed::USER));
    assert_eq!(field(&sessions[0], "database"), Some("postgres"));
    assert_eq!(field(&sessions[0], "state"), Some("idle"));
    assert_eq!(
        field(&sessions[0], "server_pid"),
        Some(session["backend_pid"].to_string().as_str())
    );
    assert_eq!(field(&sessions[0], "client"), session["peer"].as_str());
    let typed = admin.query_one("SHOW SESSIONS", &[]).await.unwrap();
    let started: std::time::SystemTime = typed.get("started");
    let started_unix = started
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(started_unix, session["started_unix"].as_u64().unwrap());

    // BACKUP copy through the extended protocol: the window's record, as GET /backups has it.
    let record = admin.query_one("BACKUP copy", &[]).await.unwrap();
    assert_eq!(record.get::<_, &str>("result"), "ok");
    assert_eq!(record.get::<_, &str>("action"), "copy");
    assert_eq!(record.get::<_, &str>("trigger"), "operator");
    let (code, body) = proxy.admin_get("/backups").await;
    assert_eq!(code, 200);
    let backups: Json = serde_json::from_str(&body).unwrap();
    let window = &backups["windows"][0];
    assert_eq!(record.get::<_, i64>("id"), window["id"].as_i64().unwrap());
    assert_eq!(
        record.get::<_, i64>("stall_ms"),
        window["stall_ms"].as_i64().unwrap()
    );
    let windows = simple(&admin, "SHOW WINDOWS").await;
    assert_eq!(windows.len(), backups["windows"].as_array().unwrap().len());
    assert_eq!(
        field(&windows[0], "id"),
        Some(window["id"].to_string().as_str())
    );
    let copies = simple(&admin, "SHOW BACKUPS").await;
    let copy = &backups["copies"][0];
    assert_eq!(copies.len(), 1);
    assert_eq!(field(&copies[0], "id"), copy["id"].as_str());
    assert_eq!(
        field(&copies[0], "bytes"),
        Some(copy["bytes"].to_string().as_str())
    );
    assert_eq!(field(&copies[0], "databases"), Some("postgres"));
    assert_eq!(field(&copies[0], "verify"), None, "not verified yet");
    assert_eq!(
        field(&copies[0], "offsite_uploaded"),
        None,
        "no off-site repository"
    );

    // VERIFY latest runs the verification and records it; SHOW BACKUPS then shows it.
    let verified = simple(&admin, "VERIFY latest").await;
    assert_eq!(field(&verified[0], "entry"), copy["id"].as_str());
    assert_eq!(field(&verified[0], "verify"), Some("ok"), "{verified:?}");
    let copies = simple(&admin, "SHOW BACKUPS").await;
    assert_eq!(field(&copies[0], "verify"), Some("ok"));
    let (_, body) = proxy.admin_get("/backups").await;
    let backups: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(backups["copies"][0]["verify"], "ok");
    let e = admin
        .simple_query("VERIFY no-such-entry")
        .await
        .unwrap_err();
    assert_eq!(refusal(&e).0, "22023");

    // SHOW SERVER: the managed server, its pid and the copy's restart.
    let status = proxy.status().await;
    let server = simple(&admin, "SHOW SERVER").await;
    assert_eq!(field(&server[0], "control"), Some("managed"));
    assert_eq!(field(&server[0], "available"), Some("t"));
    assert_eq!(
        field(&server[0], "server_pid"),
        Some(status["server_pid"].to_string().as_str())
    );
    assert_eq!(
        status["server_restarts"],
        serde_json::json!({"copy": 1, "crash": 0})
    );
    assert_eq!(field(&server[0], "restarts_copy"), Some("1"));
    assert_eq!(field(&server[0], "catalog"), status["catalog"].as_str());
    assert_eq!(
        field(&server[0], "sidecar_pid"),
        Some(std::process::id().to_string().as_str())
    );

    // SHOW CONFIG: the running configuration, its secrets masked.
    let config = simple(&admin, "SHOW CONFIG").await;
    let setting = |key: &str| {
        config
            .iter()
            .find(|row| field(row, "key") == Some(key))
            .and_then(|row| field(row, "value").map(str::to_string))
    };
    assert_eq!(setting("admin_users").as_deref(), Some("[\"postgres\"]"));
    assert_eq!(setting("console_database").as_deref(), Some(CONSOLE));
    assert_eq!(setting("server.control").as_deref(), Some("managed"));
    assert_eq!(setting("server.password").as_deref(), Some("********"));
    assert!(
        config
            .iter()
            .all(|row| field(row, "value") != Some(managed::PASSWORD)),
        "a secret shown: {config:?}"
    );

    // PAUSE holds every session as POST /quiesce does; RESUME ends it. (A new relay session:
    // the copy window ended the first, as passthrough sessions end at a server restart.)
    let relay = std::sync::Arc::new(server_connect(&relay_config).await.unwrap());
    let held = admin.query_one("PAUSE 30s", &[]).await.unwrap();
    assert_eq!(held.get::<_, f64>("ttl_seconds"), 30.0);
    let hold_id = held.get::<_, i64>("window_id");
    // The relay session's next request waits for the hold: SHOW SESSIONS says since when, as
    // /status does.
    let waiting = tokio::spawn({
        let relay = relay.clone();
        async move { relay.simple_query("SELECT 1").await.map(|_| ()) }
    });
    let mut held_since = None;
    for _ in 0..500 {
        let sessions = simple(&admin, "SHOW SESSIONS").await;
        if let Some(since) = field(&sessions[0], "held_since") {
            held_since = Some(since.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held_since = held_since.expect("SHOW SESSIONS never showed the session held");
    let status = proxy.status().await;
    let since_unix = status["sessions"][0]["held_since_unix"].as_f64().unwrap();
    let typed = admin.query_one("SHOW SESSIONS", &[]).await.unwrap();
    let since: std::time::SystemTime = typed.get("held_since");
    let since = since
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (since - since_unix).abs() < 1e-3,
        "{since} vs {since_unix} ({held_since})"
    );
    assert!(
        !waiting.is_finished(),
        "the held request ran during the hold"
    );
    let e = admin.simple_query("PAUSE").await.unwrap_err();
    assert_eq!(
        refusal(&e),
        ("55000".into(), "another window is open".into())
    );
    let (status_code, _) = proxy.admin_post("/quiesce").await;
    assert_eq!(status_code, 409);
    let resumed = simple(&admin, "RESUME").await;
    assert_eq!(
        field(&resumed[0], "resumed"),
        Some(hold_id.to_string().as_str())
    );
    waiting
        .await
        .unwrap()
        .expect("the held request failed after RESUME");
    let sessions = simple(&admin, "SHOW SESSIONS").await;
    assert_eq!(field(&sessions[0], "held_since"), None);

    // RELOAD answers as POST /reload (this proxy was not started by `run`: nothing to reload).
    let e = admin.simple_query("RELOAD").await.unwrap_err();
    let (code, message) = refusal(&e);
    assert_eq!(code, "55000");
    let (status_code, body) = proxy.admin_post("/reload").await;
    assert_eq!(status_code, 409);
    assert_eq!(
        serde_json::from_str::<Json>(&body).unwrap()["error"],
        message
    );

    // Logins with the server's own verifiers.
    assert_eq!(
        login_refusal(&addr, managed::USER, "wrong").await.0,
        "28P01"
    );
    assert_eq!(login_refusal(&addr, "nobody", "wrong").await.0, "28P01");
    assert_eq!(login_refusal(&addr, "plain", "plain-Pw-1").await.0, "28000");

    // psycopg 3: text and binary results agree, values as typed columns.
    let answers = psycopg(
        &addr,
        managed::USER,
        managed::PASSWORD,
        &["SHOW STATS", "SHOW BACKUPS", "SHOW VERSION"],
    )
    .await;
    let stats = &answers[0];
    let columns: Vec<(&str, i64)> = stats["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap(), c[1].as_i64().unwrap()))
        .collect();
    assert_eq!(columns[0], ("sessions", 20), "int8: {stats}");
    let counters = proxy.status().await["counters"].clone();
    assert_eq!(
        stats["rows"][0][1],
        serde_json::json!([counters["commits"], "int"])
    );
    let backups_row = &answers[1]["rows"][0];
    assert_eq!(backups_row[0][0], copy["id"]);
    assert_eq!(backups_row[1][1], "datetime", "timestamptz: {backups_row}");
    assert!(
        (backups_row[1][0].as_f64().unwrap() - copy["created_unix"].as_f64().unwrap()).abs() < 1e-3,
        "{backups_row} vs {copy}"
    );
    let watcher = psycopg(&addr, "watcher", "watch-Pw-1", &["SHOW VERSION", "BACKUP"]).await;
    assert!(
        watcher[0]["rows"][0][0][0]
            .as_str()
            .unwrap()
            .starts_with("doltgres-sidecar")
    );
    assert_eq!(watcher[1]["sqlstate"], "42501");

    // psql as the admin.
    let (ok, out, err) = psql(
        &addr,
        managed::USER,
        managed::PASSWORD,
        "SHOW SERVER",
        "disable",
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.lines().nth(1).unwrap().starts_with("managed|"), "{out}");

    // A console session through a copy window that restarts the server: every command
    // answered, none delayed by the window's hold.
    let restarts_before = proxy.status().await["server_restarts"]["copy"]
        .as_u64()
        .unwrap();
    let window = tokio::spawn({
        let url = format!("{}/backups?action=copy", proxy.admin_url);
        async move { proxy_tests::http::request("POST", url, None).await.0 }
    });
    let mut answered = 0;
    let mut slowest = Duration::ZERO;
    while !window.is_finished() {
        let began = Instant::now();
        let stats = simple(&admin, "SHOW STATS").await;
        slowest = slowest.max(began.elapsed());
        assert_eq!(stats.len(), 1);
        answered += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(window.await.unwrap(), 200);
    let status = proxy.status().await;
    assert_eq!(
        status["server_restarts"]["copy"].as_u64().unwrap(),
        restarts_before + 1
    );
    assert!(answered >= 3, "only {answered} answers during the window");
    // The relay's clients are held up to the whole window; the console is never held. (A bound
    // far above any scheduling delay, far below a held request's hold_timeout.)
    assert!(
        slowest < Duration::from_secs(10),
        "a console answer took {slowest:?}"
    );
    assert_eq!(simple(&admin, "SHOW SERVER").await.len(), 1);
    drop(relay);

    // SHUTDOWN: the proxy shuts down as on SIGTERM; the console session ends.
    let done = admin.simple_query("SHUTDOWN").await.unwrap();
    assert!(
        matches!(done.last(), Some(SimpleQueryMessage::CommandComplete(0))),
        "{done:?}"
    );
    assert!(proxy.shared.shutdown.is_cancelled());
    let after = tokio::time::timeout(Duration::from_secs(30), admin.simple_query("SHOW STATS"))
        .await
        .expect("the console session stayed open after SHUTDOWN");
    assert!(after.is_err(), "{after:?}");
    managed.proxy.stop().await;
}
