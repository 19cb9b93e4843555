//! An encrypted off-site repository on a real object store (SeaweedFS): the sidecar holds only
//! the public key (made by `doltgres-sidecar keygen`), so what it uploads it cannot read back.
//! - every object is `objects/<sha256>.zst.age`, an age file; neither objects nor the listed
//!   entry show a table name or a row's text;
//! - `restore` without the identity fails naming `--identity`; with another identity it fails
//!   saying so; neither leaves a target behind;
//! - with the identity, `restore` brings back every row and `verify` passes on a scratch
//!   Doltgres; `backups list --repo` shows the entry as encrypted without any key;
//! - repository retention still works without a key: a second entry with `keep_last = 1`
//!   removes the first's manifest and the objects only it named.

use std::time::Duration;

use doltgres_sidecar::offsite::config::OffsiteConfig;
use proxy_tests::facts::exec;
use proxy_tests::managed::{ManagedProxy, local_command, local_command_with};
use proxy_tests::offsite::{Credentials, aws_env, copy, local, uploaded};
use proxy_tests::seaweedfs::{BUCKET, SeaweedFs};

const PREFIX: &str = "sealed";

/// `doltgres-sidecar keygen --out FILE`: the public key it prints.
fn keygen(file: &std::path::Path) -> String {
    let (ok, _, err) = local_command(&["keygen", "--out", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let recipient = err
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .unwrap_or_else(|| panic!("no public key said: {err}"))
        .to_string();
    assert!(recipient.starts_with("age1"), "{recipient}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the identity file is private");
    recipient
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_repository_is_readable_only_with_the_identity() {
    let store = SeaweedFs::start().await;
    let keys = tempfile::tempdir().unwrap();
    let identity = keys.path().join("identity.txt");
    let other = keys.path().join("other.txt");
    let recipient = keygen(&identity);
    keygen(&other);

    let credentials = Credentials::of(&store);
    let m = ManagedProxy::start(move |c, dir| {
        let copy = c.backup.copy.as_mut().unwrap();
        copy.offsite = Some(OffsiteConfig {
            recipients: vec![recipient],
            keep_last: 1,
            ..credentials.section(dir, PREFIX)
        });
        c.backup.retry_initial = Duration::from_millis(200);
    })
    .await;
    let client = m.connect().await;
    client
        .batch_execute(
            "CREATE TABLE ledger_of_secrets (id int primary key, v text);
             INSERT INTO ledger_of_secrets VALUES (1, 'attack at dawn'), (2, 'attack at dusk');",
        )
        .await
        .unwrap();
    let first = copy(&m).await;
    uploaded(&m, &first, Duration::from_secs(60)).await;

    let objects = store.keys(&format!("{PREFIX}/objects/")).await;
    assert!(!objects.is_empty());
    for key in &objects {
        assert!(
            key.ends_with(".zst.age"),
            "{key} is not an encrypted object"
        );
        let body = store.request("GET", key, &[], None).await;
        assert_eq!(body.status, 200);
        assert!(
            body.body.starts_with(b"age-encryption.org/v1\n"),
            "{key} is not an age file"
        );
        for secret in [&b"attack at"[..], b"ledger_of_secrets"] {
            assert!(
                !body.body.windows(secret.len()).any(|w| w == secret),
                "{key} shows {:?}",
                String::from_utf8_lossy(secret)
            );
        }
    }
    let listed = store
        .request("GET", &format!("{PREFIX}/entries/{first}.json"), &[], None)
        .await
        .text();
    assert!(listed.contains("\"encryption\": \"age\""), "{listed}");
    assert!(!listed.contains("ledger_of_secrets"), "{listed}");

    let base = tempfile::tempdir().unwrap();
    let target = base.path().join("restored");
    let from = format!("s3://{BUCKET}/{PREFIX}/latest");
    let to = target.to_str().unwrap();
    let (ok, _, err) = local(&store, &["restore", "--from", &from, "--to", to]);
    assert!(!ok);
    assert!(err.contains("--identity"), "{err}");
    assert!(
        !target.exists(),
        "a failed restore left {}",
        target.display()
    );
    let other_arg = other.to_str().unwrap();
    let (ok, _, err) = local(
        &store,
        &[
            "restore",
            "--from",
            &from,
            "--to",
            to,
            "--identity",
            other_arg,
        ],
    );
    assert!(!ok);
    assert!(err.contains("not one it was encrypted to"), "{err}");
    assert!(!target.exists());

    let identity_arg = identity.to_str().unwrap();
    let (ok, out, err) = local(
        &store,
        &[
            "restore",
            "--from",
            &from,
            "--to",
            to,
            "--identity",
            identity_arg,
        ],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(
        m.query_restored(
            &target,
            "postgres",
            "SELECT v FROM ledger_of_secrets ORDER BY id"
        )
        .await,
        ["attack at dawn", "attack at dusk"]
    );
    let (ok, out, err) = local(&store, &["verify", &from, "--identity", identity_arg]);
    assert!(ok && out.contains("verifies"), "{out}{err}");
    let repo = format!("s3://{BUCKET}/{PREFIX}");
    let (ok, out, err) =
        local_command_with(&["backups", "list", "--repo", &repo], &aws_env(&store));
    assert!(
        ok && out.contains(&first) && out.contains("encrypted"),
        "{out}{err}"
    );

    // Retention without a key: the first entry and the objects only it named go.
    exec(
        &client,
        "INSERT INTO ledger_of_secrets VALUES (3, 'retreat')",
    )
    .await;
    let second = copy(&m).await;
    uploaded(&m, &second, Duration::from_secs(60)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let entries = store.keys(&format!("{PREFIX}/entries/")).await;
        if entries == [format!("{PREFIX}/entries/{second}.json")] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retention left {entries:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let target2 = base.path().join("restored2");
    let (ok, out, err) = local(
        &store,
        &[
            "restore",
            "--from",
            &from,
            "--to",
            target2.to_str().unwrap(),
            "--identity",
            identity_arg,
        ],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(
        m.query_restored(
            &target2,
            "postgres",
            "SELECT count(*) FROM ledger_of_secrets"
        )
        .await,
        ["3"]
    );
}
