//! Disaster recovery from the off-site repository alone. Under a write load that records when
//! each commit was acknowledged, copy windows (every 40 write commits) upload to SeaweedFS; then
//! the sidecar stops and its whole directory goes (the server's files and the local catalog). A
//! fresh directory is restored from `s3://…/latest` with `restore --if-empty` (as the compose
//! `restore` service and the Kubernetes init container run it) and a fresh sidecar starts on it:
//! every commit acknowledged before the newest uploaded entry was made is there, the ledger has
//! no gap, and nothing is there that was never acknowledged. The recovery point (commits and
//! seconds after that entry) and the recovery time (restore start to first answer) are printed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use doltgres_sidecar::config::backup::Action;
use doltgres_sidecar::offsite::config::OffsiteConfig;
use proxy_tests::install;
use proxy_tests::ledger::{self, Append};
use proxy_tests::managed::{ManagedProxy, local_command_with};
use proxy_tests::seaweedfs::{BUCKET, SeaweedFs};

const PREFIX: &str = "dr";
const WRITERS: u64 = 3;
const LOAD: Duration = Duration::from_secs(20);

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The repository on `store`, its secret key in a file in `secrets`.
fn offsite(store: &SeaweedFs, secrets: &std::path::Path) -> OffsiteConfig {
    let file = secrets.join("s3-secret");
    std::fs::write(&file, &store.secret_key).unwrap();
    OffsiteConfig {
        url: format!("s3://{BUCKET}/{PREFIX}"),
        endpoint: Some(store.endpoint.clone()),
        region: None,
        access_key_id: Some(store.access_key.clone()),
        secret_access_key_file: Some(file),
        allow_http: Some(true),
        keep_last: 0,
        max_age: None,
        ..OffsiteConfig::from_url("")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_losing_the_server_and_its_catalog_the_repository_alone_restores_every_acknowledged_commit()
 {
    let store = SeaweedFs::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let repository = offsite(&store, secrets.path());
    let m = ManagedProxy::start({
        let repository = repository.clone();
        move |c, _| {
            c.backup.copy.as_mut().unwrap().offsite = Some(repository);
            c.backup.copy.as_mut().unwrap().keep_last = 2;
            c.backup.every_write_commits = 40;
            c.backup.actions = vec![Action::Copy];
            c.backup.retry_initial = Duration::from_millis(200);
        }
    })
    .await;
    ledger::create(&m.connect().await).await;

    // The load: each writer appends on a fresh connection, and notes when each append was
    // acknowledged.
    let acks: Arc<Mutex<Vec<f64>>> = Arc::default();
    let until = Instant::now() + LOAD;
    let mut writers = Vec::new();
    for id in 0..WRITERS {
        let (config, acks) = (m.config_at("postgres"), acks.clone());
        writers.push(tokio::spawn(async move {
            while Instant::now() < until {
                match ledger::append_once(&config, id).await {
                    Append::Committed => acks.lock().unwrap().push(unix_now()),
                    Append::Conflict => {}
                    other => panic!("writer {id}: {other:?}"),
                }
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let acks = acks.lock().unwrap().clone();
    let last_ack = acks.iter().cloned().fold(0.0, f64::max);

    // The machine is lost: the sidecar stops, its directory (server files, catalog) goes.
    let dir = m.dir.path().to_path_buf();
    m.proxy.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
    drop(m.dir);

    // A new machine: only the binary, the repository and its credentials.
    let new_machine = tempfile::tempdir().unwrap();
    let server_dir = new_machine.path().join("doltgres");
    let env = [
        ("AWS_ENDPOINT_URL", store.endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", store.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", store.secret_key.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let repo = format!("s3://{BUCKET}/{PREFIX}");
    let started = Instant::now();
    let (ok, out, err) = local_command_with(
        &[
            "restore",
            "--from",
            &format!("{repo}/latest"),
            "--to",
            server_dir.to_str().unwrap(),
            "--if-empty",
            "--doltgres",
            install::doltgres_binary().to_str().unwrap(),
        ],
        &env,
    );
    assert!(ok, "{out}\n{err}");
    let restored_dir = server_dir.clone();
    let fresh = ManagedProxy::start(move |c, _| {
        c.server.control.managed_mut().unwrap().dir = restored_dir;
    })
    .await;
    let client = fresh.connect().await;
    let rows = client
        .query("SELECT seq FROM ledger ORDER BY seq", &[])
        .await
        .unwrap();
    let recovery_time = started.elapsed();
    let seqs: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();

    // The entry it came from, read back from the repository.
    let settings = repository.resolve().unwrap();
    let entry = tokio::task::spawn_blocking(move || {
        let store = doltgres_sidecar::offsite::store::Store::open(&settings).unwrap();
        let id = doltgres_sidecar::offsite::download::list(&store)
            .unwrap()
            .pop()
            .unwrap();
        let key = doltgres_sidecar::offsite::entry_key(&store.prefix, &id);
        let bytes = store.get(&key).unwrap().unwrap();
        serde_json::from_slice::<doltgres_sidecar::catalog::manifest::Manifest>(&bytes).unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.contains(&entry.id),
        "restored {out}, the newest is {}",
        entry.id
    );

    // No gap, nothing never acknowledged, everything acknowledged before the entry was made.
    let expected: Vec<i32> = (0..seqs.len() as i32).collect();
    assert_eq!(seqs, expected, "the restored ledger has a gap");
    let restored = seqs.len() as u64 - 1;
    assert!(
        restored <= acks.len() as u64,
        "{restored} appends restored, {} acknowledged",
        acks.len()
    );
    let before = acks.iter().filter(|t| **t < entry.created_unix).count() as u64;
    assert!(
        before <= restored,
        "{before} appends were acknowledged before the entry was made, {restored} restored"
    );
    assert!(restored > 0, "the newest uploaded entry holds no append");
    eprintln!(
        "recovery: {} appends acknowledged, {restored} restored from entry {} \
         (recovery point: {} commits, {:.1} s after it); recovery time {:.1} s (restore start to first answer)",
        acks.len(),
        entry.id,
        acks.len() as u64 - restored,
        (last_ack - entry.created_unix).max(0.0),
        recovery_time.as_secs_f64()
    );
    fresh.proxy.stop().await;
}
