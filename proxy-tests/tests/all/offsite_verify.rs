//! The sidecar's own verifications of the off-site repository (SeaweedFS), encrypted, with the
//! identity given to the sidecar for that purpose:
//! - `verify_after`: the uploaded entry is downloaded, decrypted and verified on a scratch
//!   Doltgres (`offsite_verify_total{result="ok"}`);
//! - `verify_interval`: an object damaged in the bucket afterwards is found by the scheduled
//!   verification (`{result="failed"}`, the object named in the log), while clients are served.

use std::time::{Duration, Instant};

use doltgres_sidecar::offsite::config::OffsiteConfig;
use proxy_tests::facts::exec;
use proxy_tests::managed::{ManagedProxy, local_command};
use proxy_tests::offsite::{Credentials, copy, uploaded};
use proxy_tests::process::metric_sum;
use proxy_tests::seaweedfs::SeaweedFs;

const PREFIX: &str = "checked";

/// The sum of `offsite_verify_total` series whose result is `result`.
async fn verifications(m: &ManagedProxy, result: &str) -> f64 {
    let (_, text) = m.proxy.admin_get("/metrics").await;
    let name = "doltgres_sidecar_offsite_verify_total";
    let lines: String = text
        .lines()
        .filter(|l| l.contains(&format!("result=\"{result}\"")))
        .map(|l| format!("{l}\n"))
        .collect();
    metric_sum(&lines, name).unwrap_or(0.0)
}

async fn wait_for(m: &ManagedProxy, result: &str, at_least: f64, within: Duration) {
    let deadline = Instant::now() + within;
    while verifications(m, result).await < at_least {
        assert!(
            Instant::now() < deadline,
            "no off-site verification {result} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_entries_are_verified_and_rot_in_the_bucket_is_found() {
    let store = SeaweedFs::start().await;
    let keys = tempfile::tempdir().unwrap();
    let identity = keys.path().join("identity.txt");
    let (ok, _, err) = local_command(&["keygen", "--out", identity.to_str().unwrap()]);
    assert!(ok, "{err}");
    let recipient = err
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .unwrap()
        .to_string();

    let credentials = Credentials::of(&store);
    let m = ManagedProxy::start(move |c, dir| {
        let copy = c.backup.copy.as_mut().unwrap();
        copy.offsite = Some(OffsiteConfig {
            recipients: vec![recipient],
            identity_file: Some(identity),
            verify_after: true,
            verify_interval: Some(Duration::from_secs(2)),
            ..credentials.section(dir, PREFIX)
        });
    })
    .await;
    let client = m.connect().await;
    exec(
        &client,
        "CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1), (2);",
    )
    .await;
    let id = copy(&m).await;
    uploaded(&m, &id, Duration::from_secs(60)).await;
    wait_for(&m, "ok", 1.0, Duration::from_secs(120)).await;
    assert_eq!(verifications(&m, "failed").await, 0.0);

    // Rot: the largest object's bytes replaced in the bucket.
    let objects = store.keys(&format!("{PREFIX}/objects/")).await;
    let mut largest = (0, String::new());
    for key in &objects {
        let len = store.request("GET", key, &[], None).await.body.len();
        if len > largest.0 {
            largest = (len, key.clone());
        }
    }
    let put = store
        .request("PUT", &largest.1, &[], Some(vec![b'x'; largest.0]))
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    wait_for(&m, "failed", 1.0, Duration::from_secs(120)).await;
    // Clients were served throughout.
    let rows = client.query("SELECT count(*) FROM t", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 2);
}
