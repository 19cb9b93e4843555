//! Copy entries replicated to an off-site repository on a real object store (SeaweedFS), and
//! restored from there by the real binary:
//! - after each copy window the entry is uploaded in the background; the second entry sends
//!   only what the first did not (objects are named by their checksum);
//! - `restore --from s3://…/latest` and `s3://…/ENTRY` rebuild each entry's rows, with nothing
//!   but the repository and the AWS variables;
//! - `backups list --repo` lists both entries, oldest first;
//! - `verify s3://…/latest` checks the uploaded entry on a scratch Doltgres; a damaged object
//!   fails it, named;
//! - a missing object fails the restore, naming it, and leaves no target behind;
//! - with `keep_last = 2` in the repository, a third entry takes the first's manifest and the
//!   objects only it named out of the repository, and the others still restore;
//! - a wrong secret key is said at start, in `/readyz` (still ready: clients are served);
//! - with the store down, the entry stays in the local catalog (retention keeps it) and is
//!   uploaded once the store is back.

use std::path::Path;
use std::time::{Duration, Instant};

use doltgres_sidecar::catalog::Catalog;
use doltgres_sidecar::offsite::config::OffsiteConfig;
use proxy_tests::facts::exec;
use proxy_tests::managed::{ManagedProxy, local_command_with};
use proxy_tests::offsite::{aws_env, copy, local, uploaded};
use proxy_tests::seaweedfs::{BUCKET, SeaweedFs};

const PREFIX: &str = "server-a";

/// A managed proxy whose copies go to `store` (the secret key in a file, the rest in the
/// section), keeping `keep_last` entries locally.
async fn managed_with_offsite(store: &SeaweedFs, keep_last: usize) -> ManagedProxy {
    managed_with_secret(store, keep_last, &store.secret_key).await
}

/// [`managed_with_offsite`] with this secret key.
async fn managed_with_secret(store: &SeaweedFs, keep_last: usize, secret: &str) -> ManagedProxy {
    managed_with(store, keep_last, secret, 0).await
}

/// [`managed_with_secret`], keeping `repository_keep_last` entries in the repository.
async fn managed_with(
    store: &SeaweedFs,
    keep_last: usize,
    secret: &str,
    repository_keep_last: usize,
) -> ManagedProxy {
    let (endpoint, key, secret) = (
        store.endpoint.clone(),
        store.access_key.clone(),
        secret.to_string(),
    );
    ManagedProxy::start(move |c, dir| {
        let secret_file = dir.join("s3-secret");
        std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
        let copy = c.backup.copy.as_mut().unwrap();
        copy.keep_last = keep_last;
        copy.offsite = Some(OffsiteConfig {
            url: format!("s3://{BUCKET}/{PREFIX}"),
            endpoint: Some(endpoint),
            region: None,
            access_key_id: Some(key),
            secret_access_key_file: Some(secret_file),
            allow_http: Some(true),
            keep_last: repository_keep_last,
            max_age: None,
            // Unnamed objects go at once (the test's own uploads are the only writer).
            prune_grace: Duration::ZERO,
            ..OffsiteConfig::from_url("")
        });
        c.backup.retry_initial = Duration::from_millis(200);
        c.backup.retry_max = Duration::from_secs(1);
    })
    .await
}

/// `restore --from URL --to target`.
fn restore(store: &SeaweedFs, from: &str, target: &Path) -> (bool, String, String) {
    local(
        store,
        &["restore", "--from", from, "--to", target.to_str().unwrap()],
    )
}

async fn notes(m: &ManagedProxy, dir: &Path) -> Vec<String> {
    m.query_restored(dir, "postgres", "SELECT v FROM notes ORDER BY id")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_go_off_site_deduplicated_and_restore_from_there() {
    let store = SeaweedFs::start().await;
    let m = managed_with_offsite(&store, 10).await;
    let client = m.connect().await;
    client
        .batch_execute(
            "CREATE TABLE notes (id int primary key, v text);
             INSERT INTO notes VALUES (1, 'one'), (2, 'two');
             CREATE TABLE filler (id int primary key, pad text);
             INSERT INTO filler SELECT generate_series(1, 100000), '';
             UPDATE filler SET pad = md5(id::text) || md5((id + 1)::text);",
        )
        .await
        .unwrap();
    let first_id = copy(&m).await;
    let first = uploaded(&m, &first_id, Duration::from_secs(120)).await;
    exec(&client, "INSERT INTO notes VALUES (3, 'three')").await;
    let second_id = copy(&m).await;
    let second = uploaded(&m, &second_id, Duration::from_secs(120)).await;
    eprintln!("first entry: {first:?}\nsecond entry: {second:?}");
    assert_eq!(
        first.sent, first.objects,
        "a fresh repository lacks every object"
    );
    assert!(
        second.sent < second.objects && second.bytes_deduplicated > 0,
        "the second entry sent objects the first had sent: {second:?}"
    );
    // The second sent what changed: the journal's last (partial) 1 MiB segment, the index's,
    // and small files — whatever the database's size.
    let bound = 2 * (1 << 20) + (256 << 10);
    assert!(
        second.bytes_sent_raw <= bound && first.bytes_sent_raw >= 3 * second.bytes_sent_raw,
        "the second entry (one row changed) sent {} bytes uncompressed (bound {bound}), the first {}",
        second.bytes_sent_raw,
        first.bytes_sent_raw
    );
    // Both listed in the repository, each with its manifest.
    let list = store
        .request(
            "GET",
            &format!("?list-type=2&prefix={PREFIX}%2Fentries%2F"),
            &[],
            None,
        )
        .await;
    for id in [&first_id, &second_id] {
        assert!(
            list.text().contains(&format!("{PREFIX}/entries/{id}.json")),
            "{}",
            list.text()
        );
    }
    let (_, metrics) = m.proxy.admin_get("/metrics").await;
    assert!(
        metrics.contains("doltgres_sidecar_offsite_pending_entries 0"),
        "{metrics}"
    );

    // Restored from the repository alone: the newest, and the first by its id.
    let base = tempfile::tempdir().unwrap();
    let latest = base.path().join("latest");
    let repo = format!("s3://{BUCKET}/{PREFIX}");
    let (ok, out, err) = restore(&store, &format!("{repo}/latest"), &latest);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains(&second_id), "{out}");
    assert_eq!(notes(&m, &latest).await, ["one", "two", "three"]);
    let older = base.path().join("older");
    let (ok, out, err) = restore(&store, &format!("{repo}/{first_id}"), &older);
    assert!(ok, "{out}\n{err}");
    assert_eq!(notes(&m, &older).await, ["one", "two"]);
    // Nothing of the downloads is left beside the targets.
    let mut left: Vec<String> = std::fs::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["latest", "older"]);

    // Listed from the repository alone.
    let (ok, out, err) =
        local_command_with(&["backups", "list", "--repo", &repo], &aws_env(&store));
    assert!(ok, "{out}\n{err}");
    let first_line = out.lines().position(|l| l.starts_with(first_id.as_str()));
    let second_line = out.lines().position(|l| l.starts_with(second_id.as_str()));
    assert!(first_line.is_some() && first_line < second_line, "{out}");

    // Verified from the repository alone, on a scratch Doltgres.
    let (ok, out, err) = local(&store, &["verify", &format!("{repo}/latest")]);
    assert!(ok && out.contains("verifies"), "{out}\n{err}");

    // A damaged object: verify names it.
    let entry = m.catalog().entry(&second_id).unwrap();
    let objects = doltgres_sidecar::offsite::objects_of(&entry.manifest);
    let (damaged, _) = objects.last().unwrap().clone();
    let key = format!("{PREFIX}/objects/{damaged}.zst");
    let put = store
        .request("PUT", &key, &[], Some(b"not zstd at all".to_vec()))
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let (ok, _, err) = local(&store, &["verify", &format!("{repo}/latest")]);
    assert!(!ok && err.contains(&key), "{err}");

    // An object gone from the repository: the restore fails naming it, and leaves nothing.
    let (sha, _) = objects[0].clone();
    let deleted = store
        .request("DELETE", &format!("{PREFIX}/objects/{sha}.zst"), &[], None)
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let broken = base.path().join("broken");
    let (ok, _, err) = restore(&store, &format!("{repo}/latest"), &broken);
    assert!(
        !ok && err.contains(&sha) && err.contains("missing"),
        "{err}"
    );
    assert!(
        !broken.exists(),
        "a failed restore left {}",
        broken.display()
    );
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_store_down_the_entry_stays_local_until_it_is_uploaded() {
    let mut store = SeaweedFs::start().await;
    let m = managed_with_offsite(&store, 1).await;
    let client = m.connect().await;
    exec(
        &client,
        "CREATE TABLE notes (id int primary key, v text); INSERT INTO notes VALUES (1, 'one')",
    )
    .await;
    let first_id = copy(&m).await;
    uploaded(&m, &first_id, Duration::from_secs(120)).await;
    store.kill();
    exec(&client, "INSERT INTO notes VALUES (2, 'two')").await;
    let second_id = copy(&m).await;
    exec(&client, "INSERT INTO notes VALUES (3, 'three')").await;
    let third_id = copy(&m).await;
    // keep_last = 1, but neither unuploaded entry is deleted; the uploaded first one is.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids: Vec<String> = Catalog::open(&m.catalog_dir())
        .unwrap()
        .entries()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, [second_id.clone(), third_id.clone()]);
    let (_, metrics) = m.proxy.admin_get("/metrics").await;
    assert!(
        metrics.contains("doltgres_sidecar_offsite_pending_entries 2"),
        "{metrics}"
    );
    // Back: both go up, oldest first.
    store.restart().await;
    uploaded(&m, &second_id, Duration::from_secs(60)).await;
    uploaded(&m, &third_id, Duration::from_secs(60)).await;
    let restored = tempfile::tempdir().unwrap();
    let target = restored.path().join("r");
    let (ok, out, err) = restore(&store, &format!("s3://{BUCKET}/{PREFIX}/latest"), &target);
    assert!(ok, "{out}\n{err}");
    assert_eq!(notes(&m, &target).await, ["one", "two", "three"]);
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_said_at_start_in_readyz_and_the_entries_stay_local() {
    let store = SeaweedFs::start().await;
    let m = managed_with_secret(&store, 1, "not-the-secret").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let (code, body) = m.proxy.admin_get("/readyz").await;
        assert_eq!(code, 200, "{body}");
        if body.contains("off-site") {
            break body;
        }
        assert!(Instant::now() < deadline, "/readyz never said: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(body.contains("403"), "{body}");
    m.connect()
        .await
        .batch_execute("CREATE TABLE t (i int primary key)")
        .await
        .unwrap();
    let first = copy(&m).await;
    let second = copy(&m).await;
    let ids: Vec<String> = m.catalog().entries().into_iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        [first, second],
        "keep_last = 1 deleted an entry not uploaded"
    );
    m.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repository_keeps_its_last_entries_and_only_the_objects_they_name() {
    let store = SeaweedFs::start().await;
    let m = managed_with(&store, 10, &store.secret_key, 2).await;
    let client = m.connect().await;
    exec(&client, "CREATE TABLE notes (id int primary key, v text)").await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        exec(
            &client,
            &format!("INSERT INTO notes VALUES ({n}, 'note {n}')"),
        )
        .await;
        let id = copy(&m).await;
        uploaded(&m, &id, Duration::from_secs(120)).await;
        ids.push(id);
    }
    // The first entry leaves the repository (the local catalog keeps its own ten).
    let expected: Vec<String> = ids[1..]
        .iter()
        .map(|id| format!("{PREFIX}/entries/{id}.json"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.keys(&format!("{PREFIX}/entries/")).await != expected {
        assert!(
            Instant::now() < deadline,
            "the repository kept {:?}",
            store.keys(&format!("{PREFIX}/entries/")).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Exactly the objects the two remaining entries name.
    let mut named: Vec<String> = ids[1..]
        .iter()
        .flat_map(|id| {
            doltgres_sidecar::offsite::objects_of(&m.catalog().entry(id).unwrap().manifest)
        })
        .map(|(sha, _)| format!("{PREFIX}/objects/{sha}.zst"))
        .collect();
    named.sort();
    named.dedup();
    let only_first: Vec<String> =
        doltgres_sidecar::offsite::objects_of(&m.catalog().entry(&ids[0]).unwrap().manifest)
            .into_iter()
            .map(|(sha, _)| format!("{PREFIX}/objects/{sha}.zst"))
            .filter(|k| !named.contains(k))
            .collect();
    assert!(
        !only_first.is_empty(),
        "the first entry had no object of its own"
    );
    assert_eq!(store.keys(&format!("{PREFIX}/objects/")).await, named);
    // The older of the two still restores whole.
    let target = m.dir.path().join("restored");
    let (ok, out, err) = restore(
        &store,
        &format!("s3://{BUCKET}/{PREFIX}/{}", ids[1]),
        &target,
    );
    assert!(ok, "{out}\n{err}");
    assert_eq!(notes(&m, &target).await, ["note 1", "note 2"]);
    m.proxy.stop().await;
}
