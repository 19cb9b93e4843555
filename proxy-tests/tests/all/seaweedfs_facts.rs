//! What the test bed's object store (SeaweedFS, `weed mini`) does with the S3 requests off-site
//! backups rely on, pinned against the real server:
//! - only requests signed with its key are served: unsigned ones and ones signed with a wrong
//!   secret are refused with 403;
//! - an object written is read back byte for byte and listed under its prefix;
//! - a conditional create (`If-None-Match: *`) of a key that exists is refused with 412, and
//!   leaves the object as it was: what makes writing a manifest "only if nobody did" possible;
//! - objects survive a `kill -9` of the server and its start on the same directory.

use proxy_tests::seaweedfs::SeaweedFs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seaweedfs_serves_signed_requests_creates_conditionally_and_keeps_objects_over_a_crash() {
    let mut store = SeaweedFs::start().await;

    // Only its key.
    let unsigned = store.request_as("", "", "GET", "", &[], None).await;
    assert_eq!(unsigned.status, 403, "unsigned: {}", unsigned.text());
    let wrong = store
        .request_as(&store.access_key, "not-the-secret", "GET", "", &[], None)
        .await;
    assert_eq!(wrong.status, 403, "wrong secret: {}", wrong.text());

    // Written, read back, listed.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let put = store
        .request("PUT", "server-a/files/blob", &[], Some(body.clone()))
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let get = store.request("GET", "server-a/files/blob", &[], None).await;
    assert_eq!(get.status, 200);
    assert!(
        get.body == body,
        "read back {} bytes, not the {} written",
        get.body.len(),
        body.len()
    );
    let list = store
        .request("GET", "?list-type=2&prefix=server-a%2F", &[], None)
        .await;
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(
        list.text().contains("<Key>server-a/files/blob</Key>"),
        "{}",
        list.text()
    );

    // A conditional create of a key that exists is refused and changes nothing.
    let manifest = b"first".to_vec();
    let create = [("If-None-Match", "*")];
    let first = store
        .request("PUT", "server-a/manifest", &create, Some(manifest.clone()))
        .await;
    assert_eq!(first.status, 200, "{}", first.text());
    let second = store
        .request(
            "PUT",
            "server-a/manifest",
            &create,
            Some(b"second".to_vec()),
        )
        .await;
    assert_eq!(second.status, 412, "{}", second.text());
    let kept = store.request("GET", "server-a/manifest", &[], None).await;
    assert_eq!(kept.body, manifest);

    // Kept over a crash.
    store.kill();
    store.restart().await;
    let after = store.request("GET", "server-a/files/blob", &[], None).await;
    assert_eq!(after.status, 200, "{}", after.text());
    assert!(after.body == body, "the object changed over the restart");
}
