//! Live reload against a real server: a renewed certificate served to new TLS clients without a
//! restart (from the file watch, SIGHUP and `POST /reload`) while an open TLS session keeps
//! working; live keys taking effect (the admin token, the connection limit); and reloads that
//! must change nothing (a syntax error, a mismatched key, a changed key that needs a restart).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use doltgres_sidecar::tls::ClientTlsMode;
use nix::sys::signal::{Signal, kill};
use proxy_tests::certs::TestCerts;
use proxy_tests::http;
use proxy_tests::process::SidecarProcess;
use proxy_tests::{TestProxy, TestServer, install};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

/// A TLS client configuration that trusts only `ca`.
fn trusting(ca: &Path) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Connects over TLS to `addr`, trusting only `ca`: succeeds only if the certificate served
/// now was signed by it.
async fn connect_tls(
    server: &TestServer,
    addr: &str,
    ca: &Path,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = server.config_at(addr);
    config.ssl_mode(SslMode::Require);
    let (client, connection) = config.connect(MakeRustlsConnect::new(trusting(ca))).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Waits (up to 15 s) until a client trusting only `ca` gets in.
async fn until_served(server: &TestServer, addr: &str, ca: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match connect_tls(server, addr, ca).await {
            Ok(client) => {
                client.simple_query("SELECT 1").await.unwrap();
                return;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "the renewed certificate was not served: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn still_works(client: &tokio_postgres::Client) {
    let rows = client.simple_query("SELECT 42").await.unwrap();
    assert!(!rows.is_empty());
}

/// Overwrites the served certificate and key in place with `new`'s.
fn renew(served: &TestCerts, new: &TestCerts) {
    std::fs::copy(&new.cert, &served.cert).unwrap();
    std::fs::copy(&new.key, &served.key).unwrap();
}

fn changed(body: &str) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    value["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

/// A config file for a sidecar process in front of `server`, serving `certs`.
fn config_text(server: &TestServer, certs: &TestCerts, extra: &str) -> String {
    format!(
        "upstream = \"{}\"\ntls = \"require\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
         tls_reload_interval = \"1h\"\n{extra}",
        server.addr(),
        certs.cert.display(),
        certs.key.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_on_disk_is_served_to_new_clients() {
    let server = TestServer::postgres().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let served = TestCerts::create(dir_a.path());
    let renewed = TestCerts::create(dir_b.path());
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.tls = ClientTlsMode::Require;
        c.tls_cert = Some(served.cert.clone());
        c.tls_key = Some(served.key.clone());
        c.tls_reload_interval = Duration::from_millis(100);
    })
    .await;
    let open = connect_tls(&server, &proxy.addr, &served.ca).await.unwrap();
    still_works(&open).await;
    assert!(
        connect_tls(&server, &proxy.addr, &renewed.ca)
            .await
            .is_err()
    );

    // The certificate first, its key later: in between the pair does not match, and the old one
    // stays in use.
    std::fs::copy(&renewed.cert, &served.cert).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let old = connect_tls(&server, &proxy.addr, &served.ca).await;
    assert!(old.is_ok(), "the old certificate must stay served: {old:?}");
    std::fs::copy(&renewed.key, &served.key).unwrap();
    until_served(&server, &proxy.addr, &renewed.ca).await;
    assert!(
        connect_tls(&server, &proxy.addr, &served.ca).await.is_err(),
        "new clients get the renewed certificate"
    );
    still_works(&open).await;
    still_works(&old.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_post_reload_apply_a_renewed_certificate_and_live_keys() {
    let server = TestServer::postgres().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let served = TestCerts::create(dirs[0].path());
    let second = TestCerts::create(dirs[1].path());
    let third = TestCerts::create(dirs[2].path());
    let file = dirs[0].path().join("sidecar.toml");
    let write = |extra: &str| std::fs::write(&file, config_text(&server, &served, extra)).unwrap();
    write("admin_token = \"one\"\nmax_client_connections = 10\n");
    let mut sidecar = SidecarProcess::start(&["--config", file.to_str().unwrap()]);
    sidecar.ready().await;
    let open = connect_tls(&server, &sidecar.listen, &served.ca)
        .await
        .unwrap();
    still_works(&open).await;

    // SIGHUP re-reads the renewed files.
    renew(&served, &second);
    kill(sidecar.pid(), Signal::SIGHUP).unwrap();
    until_served(&server, &sidecar.listen, &second.ca).await;
    assert!(
        connect_tls(&server, &sidecar.listen, &served.ca)
            .await
            .is_err()
    );
    still_works(&open).await;

    // POST /reload: another renewal and a new admin token at once.
    renew(&served, &third);
    write("admin_token = \"two\"\nmax_client_connections = 10\n");
    let (code, body) =
        http::request("POST", format!("{}/reload", sidecar.admin), Some("one")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(changed(&body), ["admin_token", "tls_cert (file changed)"]);
    assert!(!body.contains("two"), "no secret in the answer: {body}");
    let client = connect_tls(&server, &sidecar.listen, &third.ca)
        .await
        .expect("the certificate renewed before POST /reload is served");
    still_works(&client).await;
    drop(client);
    let status = format!("{}/status", sidecar.admin);
    assert_eq!(
        http::request("GET", status.clone(), Some("one")).await.0,
        401
    );
    assert_eq!(
        http::request("GET", status.clone(), Some("two")).await.0,
        200
    );
    still_works(&open).await;

    // The connection limit lowered under the open session: new clients are refused.
    write("admin_token = \"two\"\nmax_client_connections = 1\n");
    let (code, body) =
        http::request("POST", format!("{}/reload", sidecar.admin), Some("two")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(changed(&body), ["max_client_connections"]);
    // Sessions of the clients dropped above may still be closing: wait for the count.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sidecar.metric("doltgres_sidecar_sessions").await != Some(1.0) {
        assert!(Instant::now() < deadline, "sessions did not close");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = connect_tls(&server, &sidecar.listen, &third.ca)
        .await
        .expect_err("over the lowered limit");
    assert_eq!(err.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{err}");
    still_works(&open).await;

    // The CLI: nothing changed since.
    let out = tokio::task::spawn_blocking({
        let admin = sidecar.admin.clone();
        move || {
            std::process::Command::new(install::sidecar_binary())
                .args(["reload", "--admin-url", &admin, "--token", "two"])
                .env_remove("DOLTGRES_SIDECAR_ADMIN_TOKEN")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.trim(), "configuration reloaded: nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_changes_nothing_and_traffic_flows() {
    let server = TestServer::postgres().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let served = TestCerts::create(dir_a.path());
    let other = TestCerts::create(dir_b.path());
    let file = dir_a.path().join("sidecar.toml");
    let good = config_text(
        &server,
        &served,
        "admin_token = \"one\"\nhold_timeout = \"7s\"\n",
    );
    std::fs::write(&file, &good).unwrap();
    let mut sidecar = SidecarProcess::start(&["--config", file.to_str().unwrap()]);
    sidecar.ready().await;
    let open = connect_tls(&server, &sidecar.listen, &served.ca)
        .await
        .unwrap();
    let reload = format!("{}/reload", sidecar.admin);
    let status = format!("{}/status", sidecar.admin);
    let unchanged = || async {
        assert_eq!(
            http::request("GET", status.clone(), Some("one")).await.0,
            200
        );
        let client = connect_tls(&server, &sidecar.listen, &served.ca)
            .await
            .expect("the running certificate is still served");
        still_works(&client).await;
        still_works(&open).await;
    };

    // A syntax error, with a new token in it.
    std::fs::write(
        &file,
        format!("{good}admin_token = \"two\"\nthis is not toml\n"),
    )
    .unwrap();
    let (code, body) = http::request("POST", reload.clone(), Some("one")).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid config file"), "{body}");
    assert!(body.contains("nothing changed"), "{body}");
    unchanged().await;
    // SIGHUP with the same file: logged, and the process runs on.
    kill(sidecar.pid(), Signal::SIGHUP).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        sidecar.child.try_wait().unwrap().is_none(),
        "the sidecar exited"
    );
    unchanged().await;

    // A certificate that does not match its key (renewed half-way), with a live change beside it.
    std::fs::write(&file, good.replace("\"7s\"", "\"9s\"")).unwrap();
    std::fs::copy(&other.cert, &served.cert).unwrap();
    let (code, body) = http::request("POST", reload.clone(), Some("one")).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("nothing changed"), "{body}");
    // The old certificate is still the one served (the file on disk is not).
    let client = connect_tls(&server, &sidecar.listen, &served.ca).await;
    assert!(client.is_ok(), "{client:?}");
    assert_eq!(
        http::request("GET", status.clone(), Some("one")).await.0,
        200
    );

    // Keys that need a restart, beside a live one: refused as a whole, each named.
    std::fs::copy(&other.key, &served.key).unwrap();
    std::fs::write(
        &file,
        format!(
            "{}worker_threads = 2\n",
            good.replace(&server.addr(), "127.0.0.1:1")
                .replace("\"one\"", "\"two\"")
        ),
    )
    .unwrap();
    let (code, body) = http::request("POST", reload.clone(), Some("one")).await;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("upstream, worker_threads"), "{body}");
    assert!(body.contains("restart"), "{body}");
    assert_eq!(
        http::request("GET", status.clone(), Some("one")).await.0,
        200
    );
    assert_eq!(
        http::request("GET", status.clone(), Some("two")).await.0,
        401
    );
    // The old certificate is still served although a usable new pair is on disk: the refused
    // reload loaded nothing (and the file watch is off for this test).
    let client = connect_tls(&server, &sidecar.listen, &served.ca).await;
    assert!(client.is_ok(), "{client:?}");
    still_works(&client.unwrap()).await;
    still_works(&open).await;

    // Back to a valid file: the renewed pair and the live key apply.
    std::fs::write(&file, good.replace("\"7s\"", "\"9s\"")).unwrap();
    let (code, body) = http::request("POST", reload, Some("one")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(changed(&body), ["hold_timeout", "tls_cert (file changed)"]);
    until_served(&server, &sidecar.listen, &other.ca).await;
    still_works(&open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_without_a_config_source_says_so() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let (code, body) = proxy.admin_post("/reload").await;
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("no configuration source"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_changes_on_reload() {
    let server = TestServer::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sidecar.toml");
    let log = dir.path().join("stderr.log");
    let write = |extra: &str| {
        std::fs::write(&file, format!("upstream = \"{}\"\n{extra}", server.addr())).unwrap()
    };
    write("log_level = \"warn\"\nhold_timeout = \"30s\"\n");
    let stderr = std::fs::File::create(&log).unwrap();
    let mut sidecar = SidecarProcess::start_with(&["--config", file.to_str().unwrap()], |c| {
        c.env_remove("RUST_LOG").stderr(stderr);
    });
    sidecar.ready().await;
    let reload = |sidecar: &SidecarProcess| {
        let url = format!("{}/reload", sidecar.admin);
        async move {
            let (code, body) = http::request("POST", url, None).await;
            assert_eq!(code, 200, "{body}");
            changed(&body)
        }
    };
    let logged = || std::fs::read_to_string(&log).unwrap();

    // At warn, a reload's info lines are not logged.
    write("log_level = \"warn\"\nhold_timeout = \"31s\"\n");
    assert_eq!(reload(&sidecar).await, ["hold_timeout"]);
    assert!(!logged().contains("configuration reloaded"), "{}", logged());

    // The new level applies before the reload logs what it changed.
    write("log_level = \"info\"\nhold_timeout = \"31s\"\n");
    assert_eq!(reload(&sidecar).await, ["log_level"]);
    let text = logged();
    assert!(
        text.contains("configuration reloaded: changed") && text.contains("log_level"),
        "{text}"
    );
    let lines = text.lines().count();

    // And back: the next reload is silent again.
    write("log_level = \"warn\"\nhold_timeout = \"32s\"\n");
    let mut keys = reload(&sidecar).await;
    keys.sort();
    assert_eq!(keys, ["hold_timeout", "log_level"]);
    let text = logged();
    assert_eq!(text.lines().count(), lines, "{text}");
}
