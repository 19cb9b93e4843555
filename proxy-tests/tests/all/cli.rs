//! The CLI against a running sidecar's admin API: status, backup, quiesce/resume, backups list;
//! and the binary's own commands: check-config, completions, man, --version, and the JSON log.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use doltgres_sidecar::config::Config;
use doltgres_sidecar::config::backup::SyncConfig;
use doltgres_sidecar::config::secrets::MASK;
use doltgres_sidecar::logging::LogFormat;
use proxy_tests::facts::exec;
use proxy_tests::process::SidecarProcess;
use proxy_tests::{TestProxy, TestServer, install};

fn cli(proxy: &TestProxy, args: &[&str]) -> Output {
    Command::new(install::sidecar_binary())
        .args(args)
        .args(["--admin-url", &proxy.admin_url])
        .env_remove("DOLTGRES_SIDECAR_ADMIN_TOKEN")
        .output()
        .expect("cannot run the sidecar binary")
}

/// What a failed command said on stderr; it must have failed.
fn stderr_of_failure(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_drives_a_running_sidecar() {
    let server = TestServer::doltgres().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/{{database}}", dir.path().display());
    let proxy = TestProxy::start_with(&server.addr(), |c| {
        c.backup.password = Some(server.password.clone());
        c.backup.sync = Some(SyncConfig {
            name: "bk".into(),
            url: Some(url),
        });
    })
    .await;
    let client = server.connect_at(&proxy.addr).await;
    exec(
        &client,
        "CREATE TABLE t (i INT PRIMARY KEY); INSERT INTO t VALUES (1)",
    )
    .await;

    let text = tokio::task::block_in_place(|| stdout(&cli(&proxy, &["status"])));
    assert!(
        text.contains("1 session(s) · commits 1 · rollbacks 0 · write commits 1"),
        "{text}"
    );
    assert!(text.contains("idle"), "{text}");

    let text =
        tokio::task::block_in_place(|| stdout(&cli(&proxy, &["backup", "--action", "sync"])));
    assert!(text.contains("sync (operator): ok"), "{text}");
    assert!(
        dir.path().join("postgres").exists(),
        "the backup was written"
    );

    // Without --action: what is configured (sync here).
    let text = tokio::task::block_in_place(|| stdout(&cli(&proxy, &["backup"])));
    assert!(text.contains("sync (operator): ok"), "{text}");

    // An action that is not configured is a clear failure with a non-zero exit, said as a
    // sentence with what to set (no HTTP status); so is a copy, which needs server control.
    let out = tokio::task::block_in_place(|| cli(&proxy, &["backup", "--action", "push"]));
    let error = stderr_of_failure(&out);
    assert!(
        error.starts_with("error: push is not configured: set backup.push.remote"),
        "{error}"
    );
    let out = tokio::task::block_in_place(|| cli(&proxy, &["backup", "--action", "copy"]));
    let error = stderr_of_failure(&out);
    assert!(
        error.contains("does not control it") && error.contains("--control managed"),
        "{error}"
    );
    assert!(
        !error.contains("409") && !error.contains("not configured"),
        "{error}"
    );

    let text = tokio::task::block_in_place(|| stdout(&cli(&proxy, &["quiesce", "--ttl", "20s"])));
    assert!(text.contains("holds every session"), "{text}");
    let held = tokio::spawn(async move {
        client
            .simple_query("SELECT count(*) FROM t")
            .await
            .map(|_| ())
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!held.is_finished());
    let text = tokio::task::block_in_place(|| stdout(&cli(&proxy, &["resume"])));
    assert!(text.contains("resumed"), "{text}");
    held.await.unwrap().unwrap();

    let json = tokio::task::block_in_place(|| stdout(&cli(&proxy, &["backups", "list", "--json"])));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let actions: Vec<&str> = v["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["hold", "sync", "sync"], "{v}");
    let text = tokio::task::block_in_place(|| stdout(&cli(&proxy, &["backups", "list"])));
    assert!(text.lines().count() == 3, "{text}");
}

/// The binary with `args`, in an environment without the sidecar's own variables (and without
/// `RUST_LOG` and `DOLTGRES_PASSWORD`), so only what a test passes counts.
fn sidecar(args: &[&str]) -> Output {
    let mut command = Command::new(install::sidecar_binary());
    command.args(args).env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| n.starts_with("DOLTGRES_SIDECAR_") || n == "DOLTGRES_PASSWORD")
        {
            command.env_remove(name);
        }
    }
    command.output().expect("cannot run the sidecar binary")
}

fn private_file(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn check_config_prints_the_resolved_config_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    private_file(&token_file, "token-Secret-1-of-24-chars\n");
    let config = dir.path().join("sidecar.toml");
    private_file(
        &config,
        &format!(
            "admin_token_file = \"{}\"\nadmin_listen = \"0.0.0.0:9187\"\nauth = \"proxy\"\n\
             auth_file = \"users.txt\"\nlog_format = \"json\"\n\n[auth_passwords]\n\
             alice = \"alice-Secret-2\"\n\n[server]\npassword = \"server-Secret-3\"\n\n\
             [backup.sync]\nname = \"nightly\"\n",
            token_file.display()
        ),
    );
    let out = sidecar(&[
        "check-config",
        "--config",
        config.to_str().unwrap(),
        "--upstream",
        "db.internal:5433",
        "--backup-password",
        "backup-Secret-4",
        "--log-level",
        "warn,doltgres_sidecar=debug",
    ]);
    let text = stdout(&out);
    for secret in [
        "token-Secret-1",
        "alice-Secret-2",
        "server-Secret-3",
        "backup-Secret-4",
    ] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
    let shown = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // The file, its secret file and the flags, resolved as run resolves them.
    assert_eq!(shown.upstream, "db.internal:5433");
    assert_eq!(shown.admin_listen, "0.0.0.0:9187");
    assert_eq!(shown.admin_token.as_deref(), Some(MASK));
    assert_eq!(
        shown.admin_token_file.as_deref(),
        Some(token_file.as_path())
    );
    assert_eq!(shown.backup.password.as_deref(), Some(MASK));
    assert_eq!(shown.server.password.as_deref(), Some(MASK));
    assert_eq!(shown.auth_passwords.0["alice"], MASK);
    assert_eq!(shown.backup.sync.as_ref().unwrap().name, "nightly");
    assert_eq!(shown.log_format, LogFormat::Json);
    assert_eq!(shown.log_level, "warn,doltgres_sidecar=debug");
}

#[test]
fn check_config_reports_an_invalid_config_as_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidecar.toml");
    private_file(&config, "[backup.sync]\nname = \"nightly\"\n");
    for args in [
        &["--config", config.to_str().unwrap()][..],
        &["--listen", "nowhere"],
        &["--log-level", "doltgres_sidecar=loud"],
    ] {
        let checked = sidecar(&[&["check-config"][..], args].concat());
        let run = sidecar(&[&["run"][..], args].concat());
        assert!(!checked.status.success(), "{args:?} passed the check");
        assert!(checked.stdout.is_empty(), "{args:?} printed a config");
        let error = String::from_utf8_lossy(&checked.stderr).to_string();
        assert!(error.contains("invalid setting"), "{args:?}: {error}");
        assert_eq!(error, String::from_utf8_lossy(&run.stderr), "{args:?}");
        assert!(!run.status.success(), "{args:?} ran");
    }
}

#[test]
fn completions_and_manual_pages_cover_every_command() {
    let commands = ["run", "check-config", "status", "quiesce", "restore", "man"];
    let bash = stdout(&sidecar(&["completions", "bash"]));
    assert!(bash.contains("complete "), "{bash}");
    for command in commands {
        assert!(bash.contains(command), "bash completion lacks {command}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = stdout(&sidecar(&["completions", shell]));
        assert!(script.contains("check-config"), "{shell}: {script}");
    }
    assert!(!sidecar(&["completions", "tcsh"]).status.success());

    // The whole manual in one page: every command with its options.
    let page = stdout(&sidecar(&["man"]));
    assert!(page.contains(".TH doltgres-sidecar 1"), "{page}");
    assert_eq!(page.matches(".TH ").count(), 1, "one page");
    assert!(page.contains(".SH SUBCOMMANDS"), "{page}");
    for command in commands {
        let roff = command.replace('-', "\\-");
        assert!(
            page.contains(&format!(".SH \"doltgres\\-sidecar {roff}\"")),
            "the manual lacks {command}"
        );
    }
    for option in [
        "\\-\\-backup\\-copy\\-catalog",
        "\\-\\-if\\-empty",
        "\\-\\-ttl",
    ] {
        assert!(page.contains(option), "the manual lacks {option}");
    }
    assert!(
        !page.contains("sidecar\\-help"),
        "clap's help command has no page"
    );

    // One page per command, and every page named is written.
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    stdout(&sidecar(&["man", "--dir", pages.to_str().unwrap()]));
    for name in [
        "doltgres-sidecar",
        "doltgres-sidecar-run",
        "doltgres-sidecar-backups-list",
    ] {
        let page = std::fs::read_to_string(pages.join(format!("{name}.1")))
            .unwrap_or_else(|e| panic!("{name}.1: {e}"));
        assert!(page.contains(&format!(".TH {name} 1")), "{name}.1: {page}");
    }
    let mut named = doltgres_sidecar::manual::references(page.as_bytes());
    for written in std::fs::read_dir(&pages).unwrap() {
        named.extend(doltgres_sidecar::manual::references(
            &std::fs::read(written.unwrap().path()).unwrap(),
        ));
    }
    assert!(named.len() > 10, "{named:?}");
    for name in named {
        assert!(
            pages.join(&name).exists(),
            "{name} is named but not written"
        );
    }
    let run = std::fs::read_to_string(pages.join("doltgres-sidecar-run.1")).unwrap();
    assert!(run.contains("log\\-format"), "{run}");
}

/// `--help` says what each command takes: check-config takes the configuration (no --upgrade),
/// restore and verify name `latest`, backup says what it runs without --action.
#[test]
fn help_says_what_each_command_takes() {
    let check = stdout(&sidecar(&["check-config", "--help"]));
    assert!(!check.contains("--upgrade"), "{check}");
    assert!(check.contains("--config") && check.contains("--backup-copy-catalog"));
    let run = stdout(&sidecar(&["run", "--help"]));
    assert!(run.contains("--upgrade"), "{run}");
    for command in ["restore", "verify"] {
        let help = stdout(&sidecar(&[command, "--help"]));
        assert!(
            help.contains("`latest` (the newest copy)"),
            "{command}: {help}"
        );
        assert!(help.contains("--admin-url"), "{command}: {help}");
    }
    let backup = stdout(&sidecar(&["backup", "--help"]));
    assert!(backup.contains("Without --action"), "{backup}");
}

/// An error and its cause are each said once.
#[test]
fn errors_say_each_cause_once() {
    let out = sidecar(&["check-config", "--config", "/no/such/sidecar.toml"]);
    let error = stderr_of_failure(&out);
    assert_eq!(
        error.matches("No such file or directory").count(),
        1,
        "{error}"
    );
    assert!(
        error.starts_with("error: cannot read config file /no/such/sidecar.toml: "),
        "{error}"
    );
}

#[test]
fn version_names_the_commit_built_from() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo)
        .output()
        .expect("git rev-parse");
    assert!(head.status.success(), "not a git work tree");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let version = stdout(&sidecar(&["--version"]));
    let expected = format!(
        "doltgres-sidecar {} (commit {head}",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        version.starts_with(&expected),
        "{version:?} does not start with {expected:?} (build the binary again after a commit)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_carry_the_session_span() {
    let server = TestServer::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidecar.toml");
    private_file(
        &config,
        "log_format = \"json\"\nlog_level = \"info,doltgres_sidecar=debug\"\n",
    );
    let log_path = dir.path().join("sidecar.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut sidecar = SidecarProcess::start_with(
        &[
            "--config",
            config.to_str().unwrap(),
            "--upstream",
            &server.addr(),
        ],
        |c| {
            c.env_remove("RUST_LOG").stderr(log).stdout(Stdio::null());
        },
    );
    sidecar.ready().await;
    let client = server.connect_at(&sidecar.listen).await;
    client.simple_query("SELECT 1").await.unwrap();
    drop(client);
    tokio::task::block_in_place(|| drop(sidecar));

    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{text}"));
            assert!(value.is_object(), "not an object: {line}");
            value
        })
        .collect();
    assert!(lines.len() > 3, "{text}");
    // The startup line, at info; the session's lines at debug (log_level, not RUST_LOG).
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "starting"),
        "{text}"
    );
    let session = lines
        .iter()
        .find(|l| l["fields"]["message"] == "session starting")
        .unwrap_or_else(|| panic!("no session line:\n{text}"));
    assert_eq!(session["level"], "DEBUG", "{session}");
    assert_eq!(session["span"]["name"], "session", "{session}");
    assert_eq!(session["span"]["id"], 1, "{session}");
    let peer = session["span"]["peer"].as_str().unwrap_or_default();
    assert!(peer.starts_with("127.0.0.1:"), "{session}");
    assert_eq!(session["spans"][0]["peer"], peer, "{session}");
    // Every line inside that session carries its span.
    let in_session: Vec<_> = lines
        .iter()
        .filter(|l| l["span"]["name"] == "session")
        .collect();
    assert!(
        in_session
            .iter()
            .all(|l| l["span"]["peer"] == peer && l["span"]["id"] == 1)
    );
}
