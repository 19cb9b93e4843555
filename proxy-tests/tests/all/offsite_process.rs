//! The real binary uploading to an object store behind a slow link (toxiproxy at 200 KB/s in
//! front of SeaweedFS): the upload runs with traffic flowing, a `kill -9` of the sidecar in the
//! middle of it leaves no entry listed in the repository, and the restarted sidecar finishes the
//! upload at start without sending again the objects already there.

use std::path::Path;
use std::time::{Duration, Instant};

use doltgres_sidecar::catalog::Catalog;
use doltgres_sidecar::offsite::upload;
use proxy_tests::install;
use proxy_tests::managed::PASSWORD;
use proxy_tests::process::SidecarProcess;
use proxy_tests::process::connect_when_serving as connect;
use proxy_tests::seaweedfs::{BUCKET, SeaweedFs};
use proxy_tests::toxiproxy::Toxiproxy;
use serde_json::json;

const PREFIX: &str = "killed";

fn config(dir: &Path, store: &SeaweedFs, endpoint: &str) -> std::path::PathBuf {
    let secret = dir.join("s3-secret");
    std::fs::write(&secret, &store.secret_key).unwrap();
    let config = dir.join("sidecar.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ncontrol = \"managed\"\nbinary = \"{}\"\ndir = \"{}\"\npassword = \"{PASSWORD}\"\n\n\
             [backup]\non_shutdown = false\nretry_initial = \"200ms\"\nretry_max = \"1s\"\n\n\
             [backup.copy]\ncatalog = \"{}\"\n\n\
             [backup.copy.offsite]\nurl = \"s3://{BUCKET}/{PREFIX}\"\nendpoint = \"http://{endpoint}\"\n\
             access_key_id = \"{}\"\nsecret_access_key_file = \"{}\"\nallow_http = true\n",
            install::doltgres_binary().display(),
            dir.join("doltgres").display(),
            dir.join("backups").display(),
            store.access_key,
            secret.display(),
        ),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_upload_lists_nothing_and_the_restart_resumes_it() {
    let store = SeaweedFs::start().await;
    let s3 = store.endpoint.trim_start_matches("http://").to_string();
    let link = Toxiproxy::start(&s3).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &store, &link.listen);
    let mut sidecar = SidecarProcess::start(&["--config".as_ref(), config.as_os_str()]);
    let client = connect(&sidecar.listen).await;
    client
        .batch_execute(
            "CREATE TABLE filler (id int primary key, pad text);
             INSERT INTO filler SELECT generate_series(1, 100000), '';
             UPDATE filler SET pad = md5(id::text) || md5((id + 1)::text);",
        )
        .await
        .unwrap();
    // About 2.5 MB to send at 200 KB/s.
    link.add("slow", "bandwidth", "upstream", json!({"rate": 200}))
        .await;
    let (code, body) = sidecar.post("/backups?action=copy").await;
    assert_eq!(code, 200, "{body}");

    // Uploading: traffic flows.
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.keys(&format!("{PREFIX}/objects/")).await.is_empty() {
        assert!(Instant::now() < deadline, "nothing reached the store");
        tokio::time::timeout(
            Duration::from_secs(5),
            client.simple_query("SELECT count(*) FROM filler"),
        )
        .await
        .expect("a query waited on the upload")
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sidecar.kill_9();
    let sent_before = store.keys(&format!("{PREFIX}/objects/")).await.len();
    assert!(
        store.keys(&format!("{PREFIX}/entries/")).await.is_empty(),
        "an entry is listed although its upload was cut off"
    );
    drop(client);

    // Restarted, on a fast link: the entry goes up at start, without what is already there.
    link.remove("slow").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _sidecar = SidecarProcess::start(&["--config".as_ref(), config.as_os_str()]);
    let catalog = Catalog {
        dir: dir.path().join("backups"),
    };
    let entry = catalog.latest().expect("the copy is in the local catalog");
    let deadline = Instant::now() + Duration::from_secs(120);
    let record = loop {
        if let Some(record) = upload::recorded(&entry) {
            break record;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted sidecar did not upload {}",
            entry.id
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        record.sent + sent_before <= record.objects && sent_before > 0,
        "{sent_before} objects were there before the restart; the restart sent {} of {}",
        record.sent,
        record.objects
    );
    assert_eq!(
        store.keys(&format!("{PREFIX}/entries/")).await,
        [format!("{PREFIX}/entries/{}.json", entry.id)]
    );
}
