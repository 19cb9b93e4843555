//! `auth = "proxy"` against real servers: the proxy runs SCRAM-SHA-256 with the client and logs
//! in upstream as the same user with the client's ClientKey. Verifiers come from an auth file or
//! from the server's `pg_authid` (the auth query). A wrong password or an unknown user gets
//! PostgreSQL's `28P01` before anything reaches the server as that user; channel binding works
//! over client TLS; cleartext, MD5 and trust upstreams work with configured passwords.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use doltgres_sidecar::auth::AuthMode;
use doltgres_sidecar::auth::verifier::ScramVerifier;
use doltgres_sidecar::config::Config;
use doltgres_sidecar::tls::ClientTlsMode;
use postgres_protocol::message::frontend as pg_frontend;
use proxy_tests::certs::TestCerts;
use proxy_tests::facts::value;
use proxy_tests::facts::{exec, psql};
use proxy_tests::managed::ManagedProxy;
use proxy_tests::raw::{Login, RawClient};
use proxy_tests::{Kind, TestProxy, TestServer, both_servers};

const CAROL_PW: &str = "carol-Pw-1";

/// Creates a superuser (Doltgres lets only superusers call `current_user`).
async fn create_superuser(server: &TestServer, user: &str, password: &str) {
    server
        .connect_direct()
        .await
        .batch_execute(&format!(
            "CREATE USER {user} WITH SUPERUSER PASSWORD '{password}'"
        ))
        .await
        .unwrap();
}

/// The verifier the server holds for `user`, read straight from `pg_authid`.
async fn server_verifier(server: &TestServer, user: &str) -> String {
    let client = server.connect_direct().await;
    value(
        &client,
        &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{user}'"),
    )
    .await
}

/// Writes an auth file in the userlist format.
fn userlist(dir: &std::path::Path, entries: &[(&str, &str)]) -> std::path::PathBuf {
    let path = dir.join("userlist.txt");
    let text: String = entries
        .iter()
        .map(|(user, secret)| format!("\"{user}\" \"{secret}\"\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// A proxy with `auth = "proxy"` and verifiers from the server (the default auth query).
async fn query_proxy(server: &TestServer, adjust: impl FnOnce(&mut Config)) -> TestProxy {
    let password = server.password.clone();
    TestProxy::start_with(&server.addr(), |c| {
        c.auth = Some(AuthMode::Proxy);
        c.backup.password = Some(password);
        adjust(c);
    })
    .await
}

/// Client config for `user` at `addr`.
fn config_as(
    server: &TestServer,
    addr: &str,
    user: &str,
    password: &str,
) -> tokio_postgres::Config {
    let mut config = server.config_at(addr);
    config.user(user).password(password);
    config
}

/// Logs in and returns the error; panics if the login succeeds.
async fn login_error(config: &tokio_postgres::Config) -> tokio_postgres::Error {
    match proxy_tests::server_connect(config).await {
        Ok(_) => panic!("the login was expected to fail"),
        Err(e) => e,
    }
}

/// `(SQLSTATE, message)` of a server error.
fn code_and_message(e: &tokio_postgres::Error) -> (String, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e}"));
    (db.code().code().to_string(), db.message().to_string())
}

fn password_failed(user: &str) -> (String, String) {
    (
        "28P01".into(),
        format!("password authentication failed for user \"{user}\""),
    )
}

/// What `current_user` says for `user` on this server.
fn current_user(kind: Kind, user: &str) -> String {
    match kind {
        Kind::Postgres => user.to_string(),
        Kind::Doltgres => format!("{user}@127.0.0.1"),
    }
}

/// A TCP relay between the proxy and the server that counts the connections made through it.
struct CountingRelay {
    addr: String,
    connections: Arc<AtomicUsize>,
}

impl CountingRelay {
    async fn start(upstream: String) -> CountingRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        CountingRelay { addr, connections }
    }

    fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Starts a SCRAM exchange as `user` and returns the mechanisms offered and the
/// server-first-message (salt and iteration count), then hangs up.
async fn server_first(addr: &str, user: &str) -> (Vec<String>, String) {
    let mut c = RawClient::connect(addr).await;
    let mut out = BytesMut::new();
    pg_frontend::startup_message([("user", user), ("database", "postgres")], &mut out).unwrap();
    c.send(&out).await;
    let sasl = c.read().await.expect("an authentication request");
    assert_eq!(sasl.auth_code(), Some(10), "{sasl:?}");
    let mechanisms = sasl.body[4..]
        .split(|b| *b == 0)
        .filter(|m| !m.is_empty())
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    let mut out = BytesMut::new();
    pg_frontend::sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=probe-nonce", &mut out).unwrap();
    c.send(&out).await;
    let next = c.read().await.expect("SASL continue");
    assert_eq!(next.auth_code(), Some(11), "{next:?}");
    let first = String::from_utf8_lossy(&next.body[4..]).into_owned();
    (mechanisms, first.split_once(',').unwrap().1.to_string())
}

async fn logs_in_as_the_user_through_the_auth_query(server: TestServer) {
    create_superuser(&server, "carol", CAROL_PW).await;
    let proxy = query_proxy(&server, |_| {}).await;
    for (user, password) in [
        ("carol", CAROL_PW),
        (server.user.as_str(), server.password.as_str()),
    ] {
        let client = proxy_tests::server_connect(&config_as(&server, &proxy.addr, user, password))
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert_eq!(
            value(&client, "SELECT current_user").await,
            current_user(server.kind, user)
        );
        exec(
            &client,
            &format!("CREATE TABLE t_{user} (i INT PRIMARY KEY); INSERT INTO t_{user} VALUES (1)"),
        )
        .await;
    }
    // After the proxy's login the relay goes on as in passthrough: commits are counted, the
    // server's BackendKeyData reaches the client with the proxy's secret.
    let (commits, _, _) = proxy.counters().await;
    assert!(commits >= 2, "{commits}");
    let login = Login {
        user: "carol",
        password: CAROL_PW,
        database: &server.database,
    };
    let mut raw = RawClient::login_as(&proxy.addr, &login, &[]).await;
    let codes: Vec<u32> = raw.startup.iter().filter_map(|m| m.auth_code()).collect();
    assert_eq!(codes, [10, 11, 12, 0]);
    let (pid, _secret) = raw.key.clone().expect("BackendKeyData");
    let status = proxy.status().await;
    let session = status["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["user"] == "carol")
        .cloned()
        .expect("the session is listed");
    assert_eq!(
        session["backend_pid"].as_u64(),
        Some(pid as u64),
        "{session}"
    );
    let answer = raw.simple("SELECT 1").await;
    assert_eq!(answer.last().unwrap().ready_status(), Some('I'));
    // A database that does not exist is refused by the server after authentication, in its
    // own words, as it would be directly.
    let mut config = config_as(&server, &proxy.addr, "carol", CAROL_PW);
    config.dbname("no_such_db");
    let through = code_and_message(&login_error(&config).await);
    config = config_as(&server, &server.addr(), "carol", CAROL_PW);
    config.dbname("no_such_db");
    let direct = code_and_message(&login_error(&config).await);
    assert_eq!(through, direct);
}
both_servers!(logs_in_as_the_user_through_the_auth_query);

async fn wrong_passwords_and_unknown_users_never_reach_the_server(server: TestServer) {
    create_superuser(&server, "carol", CAROL_PW).await;
    let dir = tempfile::tempdir().unwrap();
    let file = userlist(
        dir.path(),
        &[("carol", &server_verifier(&server, "carol").await)],
    );
    let relay = CountingRelay::start(server.addr()).await;
    let proxy = TestProxy::start_with(&relay.addr, |c| {
        c.auth = Some(AuthMode::Proxy);
        c.auth_file = Some(file);
    })
    .await;
    for (user, password) in [("carol", "wrong"), ("carol", ""), ("nobody", "x")] {
        let err = login_error(&config_as(&server, &proxy.addr, user, password)).await;
        assert_eq!(code_and_message(&err), password_failed(user), "{user}");
    }
    assert_eq!(relay.count(), 0, "nothing reached the server");
    let client = proxy_tests::server_connect(&config_as(&server, &proxy.addr, "carol", CAROL_PW))
        .await
        .unwrap();
    assert_eq!(
        value(&client, "SELECT current_user").await,
        current_user(server.kind, "carol")
    );
    assert_eq!(relay.count(), 1, "one login upstream, as carol");
}
both_servers!(wrong_passwords_and_unknown_users_never_reach_the_server);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_get_a_stable_mock_salt() {
    let server = TestServer::postgres().await;
    create_superuser(&server, "carol", CAROL_PW).await;
    let proxy = query_proxy(&server, |_| {}).await;
    let carol = ScramVerifier::parse(&server_verifier(&server, "carol").await).unwrap();
    let (mechanisms, first) = server_first(&proxy.addr, "carol").await;
    assert_eq!(
        mechanisms,
        ["SCRAM-SHA-256"],
        "no channel binding without TLS"
    );
    let (_, direct) = server_first(&server.addr(), "carol").await;
    assert_eq!(
        first, direct,
        "a known user sees the server's own salt and iterations"
    );
    assert!(first.contains(&format!(
        "s={},i={}",
        base64_of(&carol.salt),
        carol.iterations
    )));
    // An unknown user sees the same shape: a salt of the same length, stable for that name,
    // another for another name, and the default iteration count.
    let (_, nobody) = server_first(&proxy.addr, "nobody").await;
    let (_, again) = server_first(&proxy.addr, "nobody").await;
    let (_, other) = server_first(&proxy.addr, "somebody").await;
    assert_eq!(nobody, again);
    assert_ne!(nobody, other);
    assert!(nobody.ends_with(",i=4096"), "{nobody}");
    assert_eq!(nobody.len(), first.len(), "{nobody} vs {first}");
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn plain_passwords_in_the_auth_file_log_in(server: TestServer) {
    create_superuser(&server, "carol", CAROL_PW).await;
    let dir = tempfile::tempdir().unwrap();
    // The proxy derives a verifier with a salt of its own; upstream, the server's salt differs,
    // so the login there uses the password.
    let file = userlist(dir.path(), &[("carol", CAROL_PW)]);
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.auth = Some(AuthMode::Proxy);
        c.auth_file = Some(file);
    })
    .await;
    let client = proxy_tests::server_connect(&config_as(&server, &proxy.addr, "carol", CAROL_PW))
        .await
        .unwrap();
    assert_eq!(
        value(&client, "SELECT current_user").await,
        current_user(server.kind, "carol")
    );
    let err = login_error(&config_as(&server, &proxy.addr, "carol", "nope")).await;
    assert_eq!(code_and_message(&err), password_failed("carol"));
}
both_servers!(plain_passwords_in_the_auth_file_log_in);

async fn a_changed_password_refreshes_the_cached_verifier(server: TestServer) {
    create_superuser(&server, "carol", "first-pw").await;
    let proxy = query_proxy(&server, |c| c.auth_cache_ttl = Duration::from_secs(3600)).await;
    let login = |password: &str| config_as(&server, &proxy.addr, "carol", password);
    proxy_tests::server_connect(&login("first-pw"))
        .await
        .unwrap();
    server
        .connect_direct()
        .await
        .batch_execute("ALTER USER carol WITH PASSWORD 'second-pw'")
        .await
        .unwrap();
    // The cached verifier is the old one: the new password does not match it ...
    let err = login_error(&login("second-pw")).await;
    assert_eq!(code_and_message(&err), password_failed("carol"));
    // ... and the old password, which does, fails upstream, whose salt changed: refused, and
    // the cache entry is dropped ...
    let err = login_error(&login("first-pw")).await;
    assert_eq!(code_and_message(&err), password_failed("carol"));
    // ... so the next login reads the new verifier.
    let client = proxy_tests::server_connect(&login("second-pw"))
        .await
        .unwrap();
    assert_eq!(
        value(&client, "SELECT current_user").await,
        current_user(server.kind, "carol")
    );
}
both_servers!(a_changed_password_refreshes_the_cached_verifier);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_cleartext_and_md5_upstreams_use_configured_passwords() {
    let server = TestServer::postgres_with_hba(&[
        "host all trusty 127.0.0.1/32 trust",
        "host all clear 127.0.0.1/32 password",
        "host all nopw 127.0.0.1/32 password",
        "host all md5user 127.0.0.1/32 md5",
    ])
    .await;
    server
        .connect_direct()
        .await
        .batch_execute(
            "CREATE ROLE trusty LOGIN PASSWORD 'trusty-pw'; \
             CREATE ROLE clear LOGIN PASSWORD 'clear-pw'; \
             CREATE ROLE nopw LOGIN PASSWORD 'nopw-pw'; \
             SET password_encryption = 'md5'; \
             CREATE ROLE md5user LOGIN PASSWORD 'md5-pw'",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nopw = ScramVerifier::generate("nopw-pw").to_string();
    let md5user = ScramVerifier::generate("md5-pw").to_string();
    let file = userlist(
        dir.path(),
        &[
            ("trusty", "trusty-pw"),
            ("clear", "clear-pw"),
            ("nopw", &nopw),
            ("md5user", &md5user),
        ],
    );
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.auth = Some(AuthMode::Proxy);
        c.auth_file = Some(file);
        c.auth_passwords.0.insert("md5user".into(), "md5-pw".into());
    })
    .await;
    for (user, password) in [
        ("trusty", "trusty-pw"),
        ("clear", "clear-pw"),
        ("md5user", "md5-pw"),
    ] {
        let client = proxy_tests::server_connect(&config_as(&server, &proxy.addr, user, password))
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert_eq!(value(&client, "SELECT current_user").await, user);
    }
    // The client's password checks out, but the server asks for a cleartext password and none
    // is configured: a clear error, not a password failure.
    let err = login_error(&config_as(&server, &proxy.addr, "nopw", "nopw-pw")).await;
    assert_eq!(
        code_and_message(&err),
        (
            "28000".into(),
            "the upstream server asks for a cleartext password and auth_passwords has none for \
             user \"nopw\""
                .into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_binding_require_works_over_client_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::create(dir.path());
    let server = TestServer::doltgres().await;
    create_superuser(&server, "carol", CAROL_PW).await;
    let tls_proxy = query_proxy(&server, |c| {
        c.tls = ClientTlsMode::Allow;
        c.tls_cert = Some(certs.cert.clone());
        c.tls_key = Some(certs.key.clone());
    })
    .await;
    let port = |proxy: &TestProxy| proxy.addr.rsplit_once(':').unwrap().1.to_string();
    let conninfo = |proxy: &TestProxy, extra: &str| {
        format!(
            "host=localhost port={} user=carol password={CAROL_PW} dbname=postgres {extra}",
            port(proxy)
        )
    };
    let (mechanisms, _) = server_first(&tls_proxy.addr, "carol").await;
    assert_eq!(
        mechanisms,
        ["SCRAM-SHA-256"],
        "plain text: no channel binding offered"
    );
    // libpq insists on SCRAM-SHA-256-PLUS with channel_binding=require, and checks the binding.
    let (ok, out, err) = tokio::task::block_in_place(|| {
        psql(
            &conninfo(
                &tls_proxy,
                &format!(
                    "sslmode=verify-full sslrootcert={} channel_binding=require",
                    certs.ca.display()
                ),
            ),
            "SELECT current_user",
        )
    });
    assert!(ok, "{err}");
    assert_eq!(out, "carol@127.0.0.1");
    // A wrong password over the bound exchange still fails the same way.
    let (ok, _, err) = tokio::task::block_in_place(|| {
        psql(
            &conninfo(&tls_proxy, "sslmode=require channel_binding=require")
                .replace(CAROL_PW, "wrong"),
            "SELECT 1",
        )
    });
    assert!(!ok);
    assert!(
        err.contains("password authentication failed for user \"carol\""),
        "{err}"
    );
    // Without TLS there is nothing to bind to: libpq refuses on its side.
    let (ok, _, err) = tokio::task::block_in_place(|| {
        psql(
            &conninfo(&tls_proxy, "sslmode=disable channel_binding=require"),
            "SELECT 1",
        )
    });
    assert!(!ok);
    assert!(err.contains("channel binding"), "{err}");
    // channel_binding=prefer over TLS works as well, and plain SCRAM without TLS.
    for extra in ["sslmode=require", "sslmode=disable"] {
        let (ok, out, err) =
            tokio::task::block_in_place(|| psql(&conninfo(&tls_proxy, extra), "SELECT 'x'"));
        assert!(ok, "{extra}: {err}");
        assert_eq!(out, "x");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_mode_authenticates_in_the_proxy() {
    let managed = ManagedProxy::start(|_, _| {}).await;
    assert_eq!(managed.proxy.shared.config().auth_mode(), AuthMode::Proxy);
    let client = managed.connect().await;
    exec(
        &client,
        "CREATE USER carol WITH SUPERUSER PASSWORD 'carol-Pw-1'",
    )
    .await;
    let mut config = managed.config_at("postgres");
    config.user("carol").password(CAROL_PW);
    let carol = proxy_tests::server_connect(&config).await.unwrap();
    assert_eq!(
        value(&carol, "SELECT current_user").await,
        "carol@127.0.0.1"
    );
    config.password("wrong");
    let err = login_error(&config).await;
    assert_eq!(code_and_message(&err), password_failed("carol"));
    managed.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_query_reconnects_after_a_server_restart() {
    let mut server = TestServer::postgres().await;
    create_superuser(&server, "carol", CAROL_PW).await;
    let proxy = query_proxy(&server, |c| c.auth_cache_ttl = Duration::from_millis(1)).await;
    let login = config_as(&server, &proxy.addr, "carol", CAROL_PW);
    proxy_tests::server_connect(&login).await.unwrap();
    // The auth query's kept connection dies with the server; the next lookup makes a new one.
    server.stop();
    server.start().await;
    let client = proxy_tests::server_connect(&login).await.unwrap();
    assert_eq!(value(&client, "SELECT current_user").await, "carol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_startup_without_a_user_is_refused_as_postgresql_does() {
    use proxy_tests::startup_probe::{Case, End, probe, startup_message};
    let server = TestServer::postgres().await;
    let proxy = query_proxy(&server, |_| {}).await;
    let case = Case::new(
        "no user",
        &[&startup_message(3 << 16, &[("database", "postgres")])],
    );
    let wait = Duration::from_secs(5);
    let direct_addr = server.addr();
    let (direct, proxied) = tokio::join!(
        probe(&direct_addr, &case, wait),
        probe(&proxy.addr, &case, wait)
    );
    let fields = |bytes: &[u8]| {
        let mut buf = BytesMut::from(bytes);
        let msg = proxy_tests::raw::take_message(&mut buf).expect("an ErrorResponse");
        (msg.field('V'), msg.sqlstate(), msg.text())
    };
    assert_eq!(fields(&proxied.bytes), fields(&direct.bytes));
    assert_eq!(
        fields(&proxied.bytes).2.as_deref(),
        Some("no PostgreSQL user name specified in startup packet")
    );
    assert_eq!((direct.end, proxied.end), (End::Eof, End::Eof));
}
