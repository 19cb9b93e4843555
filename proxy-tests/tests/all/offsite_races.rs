//! An upload and a retention running at once on one prefix (two processes, as during an
//! upgrade hand-over), against a real object store (SeaweedFS):
//! - an object an upload found in place and that is deleted before the upload's manifest names
//!   it is found missing after the manifest is written, and sent again: the entry downloads
//!   whole, every object checked;
//! - retention leaves an object no entry names while it is younger than `prune_grace` (an
//!   upload elsewhere may be about to name it), and the next pass that drops an entry deletes
//!   it once the grace is over; manifests and objects go in batches (`DeleteObjects`).

use std::time::Duration;

use doltgres_sidecar::catalog::Entry;
use doltgres_sidecar::offsite::config::OffsiteConfig;
use doltgres_sidecar::offsite::store::Store;
use doltgres_sidecar::offsite::{download, object_key, objects_of, prune, upload};
use proxy_tests::facts::exec;
use proxy_tests::managed::ManagedProxy;
use proxy_tests::offsite::copy;
use proxy_tests::seaweedfs::{BUCKET, SeaweedFs};

const PREFIX: &str = "raced";

/// The repository on `s3`, with parts of `part_size` bytes.
fn store_of(s3: &SeaweedFs, part_size: u64) -> Store {
    let mut section = OffsiteConfig::from_url(&format!("s3://{BUCKET}/{PREFIX}"));
    section.endpoint = Some(s3.endpoint.clone());
    section.access_key_id = Some(s3.access_key.clone());
    section.allow_http = Some(true);
    section.part_size = part_size;
    let secret = s3.secret_key.clone();
    let settings = section
        .resolve_with(&|name| (name == "AWS_SECRET_ACCESS_KEY").then(|| secret.clone()))
        .unwrap();
    Store::open(&settings).unwrap()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_deleted_under_an_upload_is_sent_again_and_fresh_objects_outlive_retention() {
    let s3 = SeaweedFs::start().await;
    let m = ManagedProxy::start(|_, _| {}).await;
    let client = m.connect().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int primary key, v text);
             INSERT INTO t SELECT generate_series(1, 20000), 'first';",
        )
        .await
        .unwrap();
    let first = m.catalog().entry(&copy(&m).await).unwrap();
    exec(&client, "UPDATE t SET v = 'second' WHERE id <= 10").await;
    let second = m.catalog().entry(&copy(&m).await).unwrap();
    let store = store_of(&s3, OffsiteConfig::from_url("").part_size);

    let (s, e) = (store.clone(), first.clone());
    let record = tokio::task::spawn_blocking(move || upload::upload(&s, &e, None, &mut |_| {}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.repaired, 0);

    // The second upload: right after it found a shared object in place, "another process"
    // deletes it.
    let shared: Vec<String> = objects_of(&first.manifest)
        .into_iter()
        .map(|(sha, _)| sha)
        .collect();
    let order = objects_of(&second.manifest);
    let (victim_index, victim) = order
        .iter()
        .enumerate()
        .find(|(_, (sha, _))| shared.contains(sha))
        .map(|(i, (sha, _))| (i, object_key(&store.prefix, sha, false)))
        .expect("the entries share no object");
    let (s, e, key) = (store.clone(), second.clone(), victim.clone());
    let record = tokio::task::spawn_blocking(move || {
        let mut calls = 0;
        upload::upload(&s, &e, None, &mut |_| {
            if calls == victim_index {
                s.delete(&key).unwrap();
            }
            calls += 1;
        })
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(record.repaired, 1, "{record:?}");
    assert!(record.bytes_deduplicated > 0);
    assert!(
        fetches(&store, &second).await,
        "the second entry is not whole"
    );

    // Retention with a grace of an hour: the first entry's manifest goes, its own objects
    // (written seconds ago) stay; with no grace they go, and the second entry stays whole.
    let objects_before = store.list(&format!("{PREFIX}/objects/")).unwrap().len();
    let s = store.clone();
    let pruned = tokio::task::spawn_blocking(move || {
        prune::prune(&s, 1, None, Duration::from_secs(3600), now())
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(pruned.entries, std::slice::from_ref(&first.id));
    assert_eq!(pruned.objects, 0);
    assert_eq!(
        store.list(&format!("{PREFIX}/objects/")).unwrap().len(),
        objects_before
    );
    let own: Vec<String> = objects_of(&first.manifest)
        .into_iter()
        .filter(|(sha, _)| !order.iter().any(|(s, _)| s == sha))
        .map(|(sha, _)| object_key(&store.prefix, &sha, false))
        .collect();
    assert!(!own.is_empty(), "the first entry had no object of its own");
    // The next pass that drops an entry (a third upload) takes them, the grace being over.
    exec(&client, "UPDATE t SET v = 'third' WHERE id <= 10").await;
    let third = m.catalog().entry(&copy(&m).await).unwrap();
    let (s, e) = (store.clone(), third.clone());
    tokio::task::spawn_blocking(move || upload::upload(&s, &e, None, &mut |_| {}))
        .await
        .unwrap()
        .unwrap();
    let s = store.clone();
    let pruned =
        tokio::task::spawn_blocking(move || prune::prune(&s, 1, None, Duration::ZERO, now()))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(pruned.entries, std::slice::from_ref(&second.id));
    let left = store.list(&format!("{PREFIX}/objects/")).unwrap();
    assert!(own.iter().all(|k| !left.contains(k)), "{left:?}");
    let named: Vec<String> = objects_of(&third.manifest)
        .into_iter()
        .map(|(sha, _)| object_key(&store.prefix, &sha, false))
        .collect();
    assert!(
        left.iter().all(|k| named.contains(k)),
        "objects no entry names are left: {left:?}"
    );
    assert!(
        fetches(&store, &third).await,
        "retention broke the newest entry"
    );
}

/// Whether `entry` downloads whole from the repository (every object checked).
async fn fetches(store: &Store, entry: &Entry) -> bool {
    let (s, id) = (store.clone(), entry.id.clone());
    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("e");
    tokio::task::spawn_blocking(move || {
        let listed = download::find(&s, &id)?;
        download::fetch(&s, &listed, None, &into, &mut |_| {})
    })
    .await
    .unwrap()
    .is_ok()
}

/// Objects larger than a part go up in parts (S3's multipart upload) and come back in ranges,
/// byte for byte: one larger than three parts, and one exactly two parts long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_go_up_in_parts_and_come_back_in_ranges() {
    let s3 = SeaweedFs::start().await;
    let store = store_of(&s3, 5 << 20);
    for len in [(17 << 20) + 12_345, 10 << 20, 100] {
        let bytes: Vec<u8> = (0..len as u64)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut &file, &bytes).unwrap();
        std::io::Seek::rewind(&mut &file).unwrap();
        let key = format!("{PREFIX}/big-{len}");
        let (s, k) = (store.clone(), key.clone());
        tokio::task::spawn_blocking(move || s.put_file(&k, &file))
            .await
            .unwrap()
            .unwrap();
        let (s, k) = (store.clone(), key.clone());
        let back = tokio::task::spawn_blocking(move || s.get(&k))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            back == bytes,
            "{len} bytes came back as {} different ones",
            back.len()
        );
        // A multipart object's ETag ends in `-PARTS`.
        let head = s3
            .request("HEAD", &key, &[], None)
            .await
            .text()
            .to_lowercase();
        let etag = head
            .lines()
            .find_map(|l| l.strip_prefix("etag: "))
            .unwrap_or_default()
            .trim()
            .trim_matches('"')
            .to_string();
        let parts = etag.rsplit_once('-').map(|(_, n)| n.to_string());
        let expected = match len {
            100 => None,
            len => Some((len as u64).div_ceil(5 << 20).to_string()),
        };
        assert_eq!(parts, expected, "{len} bytes: ETag {etag:?}");
    }
    // No upload left unfinished in the bucket.
    let uploads = s3.request("GET", "?uploads", &[], None).await.text();
    assert!(!uploads.contains("<Upload>"), "{uploads}");
}

/// A streamed object whose producer fails at the end (the file no longer matching its
/// checksum) leaves nothing: no object, and no multipart upload behind, small or large.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_whose_source_fails_at_the_end_leaves_nothing() {
    let s3 = SeaweedFs::start().await;
    let store = store_of(&s3, 5 << 20);
    for len in [100usize, 12 << 20] {
        let key = format!("{PREFIX}/failing-{len}");
        let (s, k) = (store.clone(), key.clone());
        let result = tokio::task::spawn_blocking(move || {
            s.put_streamed(&k, len as u64, &mut |to| {
                to.write_all(&vec![7u8; len]).map_err(|e| e.to_string())?;
                Err("changed since it was copied".into())
            })
        })
        .await
        .unwrap();
        assert_eq!(result.unwrap_err(), "changed since it was copied");
        let head = s3.request("HEAD", &key, &[], None).await;
        assert_eq!(head.status, 404, "{len} bytes: an object was left");
    }
    let uploads = s3.request("GET", "?uploads", &[], None).await.text();
    assert!(!uploads.contains("<Upload>"), "{uploads}");
}
