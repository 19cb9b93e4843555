//! Nothing secret reaches the log, at any level: the real binary runs at `RUST_LOG=trace` in
//! managed mode with its superuser password and admin token read from files, authenticates
//! clients itself (`auth = "proxy"`, managed mode's default: SCRAM with the client, the auth
//! query, the login upstream with the ClientKey), refuses a wrong password, serves a query with
//! a parameter, runs a copy window through the CLI (and refuses a wrong token), and its whole log
//! must contain neither the password, the token, the parameter, the user's SCRAM keys nor a
//! SCRAM message.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use doltgres_sidecar::auth::scram;
use doltgres_sidecar::auth::verifier::ScramVerifier;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use proxy_tests::facts::exec;
use proxy_tests::install;
use proxy_tests::process::SidecarProcess;

const PASSWORD: &str = "pw-Secret-4411";
const TOKEN: &str = "tok-Secret-5522";
const PARAMETER: &str = "param-Secret-6633";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_hold_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let private = |name: &str, content: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    };
    let password_file = private("password", &format!("{PASSWORD}\n"));
    let token_file = private("token", &format!("{TOKEN}\n"));
    let config = private(
        "sidecar.toml",
        &format!(
            "admin_token_file = \"{}\"\n\n[server]\ncontrol = \"managed\"\nbinary = \"{}\"\n\
             dir = \"{}\"\npassword_file = \"{}\"\n\n[backup.copy]\ncatalog = \"{}\"\n",
            token_file.display(),
            install::doltgres_binary().display(),
            dir.path().join("doltgres").display(),
            password_file.display(),
            dir.path().join("backups").display()
        ),
    );
    let log_path = dir.path().join("sidecar.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut sidecar = SidecarProcess::start_with(&["--config".as_ref(), config.as_os_str()], |c| {
        c.env("RUST_LOG", "trace")
            .env_remove("DOLTGRES_PASSWORD")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
    });
    let child = &mut sidecar.child;

    let (host, port) = sidecar.listen.rsplit_once(':').unwrap();
    let mut pg = tokio_postgres::Config::new();
    pg.host(host)
        .port(port.parse().unwrap())
        .user("postgres")
        .password(PASSWORD)
        .dbname("postgres");
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = loop {
        match proxy_tests::server_connect(&pg).await {
            Ok(client) => break client,
            Err(e) if Instant::now() > deadline => panic!("sidecar never served: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    exec(&client, "CREATE TABLE t (v text)").await;
    let row = client
        .query_one("SELECT $1::text", &[&PARAMETER])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), PARAMETER);
    let verifier: String = client
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    drop(client);
    let mut wrong = pg.clone();
    wrong.password("wrong-Secret-7744");
    let refused = proxy_tests::server_connect(&wrong).await.err().unwrap();
    assert_eq!(
        refused.as_db_error().map(|e| e.code().code()),
        Some("28P01"),
        "{refused}"
    );
    // The keys of the superuser's SCRAM verifier, and the ClientKey the proxy recovered from its
    // proofs, in every encoding a log line might use.
    let verifier = ScramVerifier::parse(&verifier).expect("a SCRAM verifier");
    let salted = scram::salted_password(PASSWORD, &verifier.salt, verifier.iterations);
    let client_key = *scram::client_key(&salted);
    let keys: Vec<String> = [client_key, verifier.stored_key, verifier.server_key]
        .iter()
        .flat_map(|key| {
            [
                base64::engine::general_purpose::STANDARD.encode(key),
                key.iter().map(|b| format!("{b:02x}")).collect(),
                format!("{key:?}"),
            ]
        })
        .collect();

    let url = sidecar.admin.clone();
    let cli = |token: &str| {
        Command::new(install::sidecar_binary())
            .args([
                "backup",
                "--action",
                "copy",
                "--admin-url",
                &url,
                "--token",
                token,
            ])
            .env("RUST_LOG", "trace")
            .output()
            .unwrap()
    };
    let refused = cli("wrong-token");
    assert!(!refused.status.success());
    let copied = cli(TOKEN);
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "sidecar did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&log_path).unwrap();
    let cli_output = [refused, copied]
        .iter()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .collect::<String>();
    assert!(
        text.contains("TRACE") || text.contains("DEBUG"),
        "not a trace log:\n{text}"
    );
    assert!(text.contains("window done"), "the copy ran:\n{text}");
    assert!(
        text.contains("client authenticated by the proxy"),
        "the proxy authenticated the client itself:\n{text}"
    );
    assert!(
        text.contains("password authentication failed"),
        "the proxy refused the wrong password itself:\n{text}"
    );
    for key in &keys {
        assert!(!text.contains(key.as_str()), "a SCRAM key is in the log");
    }
    for (what, secret) in [
        ("password", PASSWORD),
        ("wrong password", "wrong-Secret-7744"),
        ("token", TOKEN),
        ("parameter", PARAMETER),
    ] {
        assert!(!text.contains(secret), "the {what} is in the sidecar's log");
        assert!(
            !cli_output.contains(secret),
            "the {what} is in the CLI's output"
        );
    }
    for fragment in ["n,,n=", "c=biws", ",p=", ",s=", ",i=4096"] {
        assert!(
            !text.contains(fragment),
            "a SCRAM message ({fragment}) is in the log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_credentials_and_config_lines_are_not_shown() {
    // A push remote whose URL carries a password fails (nothing listens there): the error in
    // GET /backups, in the CLI's output and in the log shows the URL with the password masked.
    // Then the config file gets a syntax error on a line holding the admin token: neither a
    // SIGHUP's log line nor check-config shows that line.
    const URL_SECRET: &str = "url-Secret-8855";
    const TOKEN_IN_LINE: &str = "line-Secret-9966";
    let server = proxy_tests::TestServer::doltgres().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidecar.toml");
    let good = format!(
        "upstream = \"{}\"\n\n[backup]\npassword = \"{}\"\n\n[backup.push]\nremote = \"offsite\"\n\
         url = \"https://bob:{URL_SECRET}@127.0.0.1:1/org/{{database}}\"\n",
        server.addr(),
        server.password
    );
    std::fs::write(&config, &good).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let log_path = dir.path().join("sidecar.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut sidecar = proxy_tests::process::SidecarProcess::start_with(
        &[std::ffi::OsStr::new("--config"), config.as_os_str()],
        |c| {
            c.env("RUST_LOG", "debug")
                .stdout(log.try_clone().unwrap())
                .stderr(log);
        },
    );
    sidecar.ready().await;
    let pushed = Command::new(install::sidecar_binary())
        .args(["backup", "--action", "push", "--admin-url", &sidecar.admin])
        .output()
        .unwrap();
    assert!(!pushed.status.success(), "the push cannot succeed");
    let (code, listed) = sidecar.get("/backups").await;
    assert_eq!(code, 200);
    assert!(listed.contains("bob:********@127.0.0.1"), "{listed}");
    // SIGHUP with a line that does not parse, holding a secret.
    std::fs::write(
        &config,
        format!("{good}\nadmin_token = \"{TOKEN_IN_LINE}\n"),
    )
    .unwrap();
    kill(sidecar.pid(), Signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log_path)
        .unwrap()
        .contains("reload failed")
    {
        assert!(Instant::now() < deadline, "the reload did not fail");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let checked = Command::new(install::sidecar_binary())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!checked.status.success());
    let checked_text = String::from_utf8_lossy(&checked.stderr).into_owned();
    assert!(checked_text.contains("line"), "{checked_text}");
    drop(sidecar);
    let text = std::fs::read_to_string(&log_path).unwrap();
    let pushed_text = format!(
        "{}{}",
        String::from_utf8_lossy(&pushed.stdout),
        String::from_utf8_lossy(&pushed.stderr)
    );
    for (what, shown) in [
        ("GET /backups", &listed),
        ("the log", &text),
        ("backup's output", &pushed_text),
        ("check-config's output", &checked_text),
    ] {
        assert!(
            !shown.contains(URL_SECRET),
            "the URL's password is in {what}"
        );
        assert!(
            !shown.contains(TOKEN_IN_LINE),
            "the config line is in {what}"
        );
    }
}
