//! TLS to clients (psql with sslmode=require and verify-full against a CA made here) and to the
//! upstream (PostgreSQL and Doltgres configured with certificates).

use doltgres_sidecar::tls::{ClientTlsMode, UpstreamTlsMode};
use proxy_tests::certs::TestCerts;
use proxy_tests::facts::{exec, psql, psql_answer, psql_refused};
use proxy_tests::{TestProxy, TestServer};
use tokio_postgres::error::SqlState;

/// A proxy offering TLS to clients with the test certificate.
async fn tls_proxy(server: &TestServer, certs: &TestCerts, mode: ClientTlsMode) -> TestProxy {
    TestProxy::start_with(&server.addr(), |c| {
        c.tls = mode;
        c.tls_cert = Some(certs.cert.clone());
        c.tls_key = Some(certs.key.clone());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_connect_with_sslmode_require_and_verify_full() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::create(dir.path());
    let server = TestServer::postgres().await;
    let proxy = tls_proxy(&server, &certs, ClientTlsMode::Require).await;
    let port = proxy.addr.rsplit_once(':').unwrap().1;
    let base = format!(
        "user={} password={} dbname={} port={port}",
        server.user, server.password, server.database
    );

    let over_tls = format!("{base} host=127.0.0.1 sslmode=require");
    assert_eq!(psql_answer(&over_tls, "SELECT 'over tls'"), "over tls");

    let conninfo = format!(
        "{base} host=localhost sslmode=verify-full sslrootcert={}",
        certs.ca.display()
    );
    let out = tokio::task::block_in_place(|| psql_answer(&conninfo, "SELECT 'verified'"));
    assert_eq!(out, "verified");

    // A certificate from a CA the client does not trust fails verification on the client.
    let dir2 = tempfile::tempdir().unwrap();
    let other_ca = TestCerts::create(dir2.path());
    let conninfo = format!(
        "{base} host=localhost sslmode=verify-full sslrootcert={}",
        other_ca.ca.display()
    );
    let err = psql_refused(&conninfo, "SELECT 1");
    // libpq words this as "certificate verify failed" or, with OpenSSL 3 and ECDSA, "SSL error: EVP lib".
    assert!(
        err.contains("SSL error") || err.contains("certificate verify failed"),
        "{err}"
    );

    // tls = require refuses plain text with 28000.
    let plain = format!("{base} host=127.0.0.1 sslmode=disable");
    let err = psql_refused(&plain, "SELECT 1");
    assert!(err.contains("TLS is required"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_mode_serves_both() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::create(dir.path());
    let server = TestServer::doltgres().await;
    let proxy = tls_proxy(&server, &certs, ClientTlsMode::Allow).await;
    for mode in ["disable", "require"] {
        let conninfo = format!("{} sslmode={mode}", server.conninfo_at(&proxy.addr));
        let out = tokio::task::block_in_place(|| psql_answer(&conninfo, "SELECT 7"));
        assert_eq!(out, "7", "sslmode={mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_tls_answers_n() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let conninfo = server.conninfo_at(&proxy.addr);
    assert_eq!(
        psql_answer(&format!("{conninfo} sslmode=prefer"), "SELECT 1"),
        "1"
    );
    let err = psql_refused(&format!("{conninfo} sslmode=require"), "SELECT 1");
    assert!(err.contains("server does not support SSL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_postgresql_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::create(dir.path());
    let server = TestServer::postgres_with(Some(&certs)).await;
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.upstream_tls = UpstreamTlsMode::VerifyFull;
        c.upstream_tls_ca = Some(certs.ca.clone());
    })
    .await;
    let client = server.connect_at(&proxy.addr).await;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(
        row.get::<_, bool>(0),
        "the upstream connection must be encrypted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_without_tls_is_refused_when_required() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.upstream_tls = UpstreamTlsMode::Require
    })
    .await;
    let err = server.connect_error_at(&proxy.addr).await;
    assert_eq!(err.code(), Some(&SqlState::CONNECTION_FAILURE), "{err}");
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("does not offer TLS"),
        "{err}"
    );

    // prefer falls back to plain text.
    let proxy =
        TestProxy::start_with(&server.addr(), |c| c.upstream_tls = UpstreamTlsMode::Prefer).await;
    let client = server.connect_at(&proxy.addr).await;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_doltgres_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::create(dir.path());
    let server = TestServer::doltgres_with(Some(&certs)).await;
    // Doltgres offers TLS: psql straight to it with verify-full succeeds.
    let direct = format!(
        "{} host=localhost sslmode=verify-full sslrootcert={}",
        server.conninfo_at(&server.addr()),
        certs.ca.display()
    );
    let (ok, _, err) = psql(&direct, "SELECT 1");
    assert!(ok, "direct TLS to Doltgres: {err}");

    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.upstream_tls = UpstreamTlsMode::VerifyFull;
        c.upstream_tls_ca = Some(certs.ca.clone());
        c.upstream_tls_server_name = Some("localhost".into());
    })
    .await;
    let client = server.connect_at(&proxy.addr).await;
    exec(
        &client,
        "CREATE TABLE t (i INT PRIMARY KEY); INSERT INTO t VALUES (1)",
    )
    .await;
    let row = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);

    // With a CA that did not sign the server's certificate the handshake fails: the upstream
    // connection really is TLS and really is verified.
    let dir2 = tempfile::tempdir().unwrap();
    let other = TestCerts::create(dir2.path());
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.upstream_tls = UpstreamTlsMode::VerifyFull;
        c.upstream_tls_ca = Some(other.ca.clone());
    })
    .await;
    let err = server.connect_error_at(&proxy.addr).await;
    assert_eq!(err.code(), Some(&SqlState::CONNECTION_FAILURE), "{err}");
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("TLS handshake"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_actions_use_the_upstream_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TestCerts::create(dir.path());
    let server = TestServer::doltgres_with(Some(&certs)).await;
    let backups = tempfile::tempdir().unwrap();
    let url = format!("file://{}/{{database}}", backups.path().display());
    let with_ca = |ca: std::path::PathBuf| {
        let url = url.clone();
        let password = server.password.clone();
        move |c: &mut doltgres_sidecar::config::Config| {
            c.upstream_tls = UpstreamTlsMode::VerifyFull;
            c.upstream_tls_ca = Some(ca);
            c.upstream_tls_server_name = Some("localhost".into());
            c.backup.password = Some(password);
            c.backup.sync = Some(doltgres_sidecar::config::backup::SyncConfig {
                name: "bk".into(),
                url: Some(url),
            });
        }
    };
    let proxy = TestProxy::start_with(&server.addr(), with_ca(certs.ca.clone())).await;
    let (code, body) = proxy.admin_post("/backups?action=sync").await;
    assert_eq!(code, 200, "{body}");
    assert!(backups.path().join("postgres").exists());

    // A CA that did not sign the server's certificate makes the action's own connection fail:
    // it really goes through TLS and verifies.
    let dir2 = tempfile::tempdir().unwrap();
    let other = TestCerts::create(dir2.path());
    let proxy = TestProxy::start_with(&server.addr(), with_ca(other.ca.clone())).await;
    let (code, body) = proxy.admin_post("/backups?action=sync").await;
    assert_eq!(code, 502, "{body}");
    assert!(
        body.contains("TLS") || body.contains("certificate"),
        "{body}"
    );
}
