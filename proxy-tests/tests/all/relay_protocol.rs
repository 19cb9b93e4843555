//! The rest of the protocol through the proxy: COPY both ways (large enough to stream), notices,
//! LISTEN/NOTIFY, FunctionCall, ParameterStatus, NegotiateProtocolVersion and rows larger than
//! the read buffer.

use bytes::{BufMut, BytesMut};
use futures_util::{SinkExt, StreamExt, pin_mut};
use proxy_tests::raw::RawClient;
use proxy_tests::{Kind, TestProxy, TestServer, both_servers};

both_servers!(copy_from_stdin_streams_through);
async fn copy_from_stdin_streams_through(server: TestServer) {
    let proxy = TestProxy::start(&server.addr()).await;
    let c = server.connect_at(&proxy.addr).await;
    c.batch_execute("CREATE TABLE big (id INT PRIMARY KEY, payload TEXT NOT NULL)")
        .await
        .unwrap();
    // ~4 MB through psql's \copy (simple-protocol COPY FROM STDIN): many read buffers' worth.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.tsv");
    let payload = "p".repeat(1000);
    let data: String = (0..4000).map(|id| format!("{id}\t{payload}\n")).collect();
    std::fs::write(&file, data).unwrap();
    let out = std::process::Command::new("psql")
        .arg(server.conninfo_at(&proxy.addr))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!(
            "\\copy big (id, payload) FROM '{}'",
            file.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "COPY 4000");
    let direct = server.connect_direct().await;
    let row = direct
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 4000);
    let (_, rollbacks, writes) = proxy.counters().await;
    assert_eq!(
        (rollbacks, writes),
        (0, 2),
        "CREATE and COPY FROM are write commits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_over_the_extended_protocol() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let c = server.connect_at(&proxy.addr).await;
    c.batch_execute("CREATE TABLE big (id INT PRIMARY KEY, payload TEXT NOT NULL)")
        .await
        .unwrap();
    let sink = c
        .copy_in("COPY big (id, payload) FROM STDIN")
        .await
        .unwrap();
    pin_mut!(sink);
    let payload = "p".repeat(1000);
    let mut chunk = BytesMut::new();
    for id in 0..4000 {
        chunk.put_slice(format!("{id}\t{payload}\n").as_bytes());
        if chunk.len() > 64 * 1024 {
            sink.send(chunk.split().freeze()).await.unwrap();
        }
    }
    sink.send(chunk.freeze()).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 4000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doltgres_copy_in_over_the_extended_protocol_fails_alike() {
    // tokio-postgres sends COPY FROM STDIN through Parse/Bind/Execute. Against Doltgres the copy
    // fails with an unexpected message; the proxy must not change the outcome.
    let server = TestServer::doltgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let mut outcomes = Vec::new();
    for (i, addr) in [server.addr(), proxy.addr.clone()].into_iter().enumerate() {
        let c = server.connect_at(&addr).await;
        c.batch_execute(&format!("CREATE TABLE big{i} (id INT PRIMARY KEY)"))
            .await
            .unwrap();
        let outcome = async {
            let sink = c.copy_in(&format!("COPY big{i} (id) FROM STDIN")).await?;
            pin_mut!(sink);
            sink.send(bytes::Bytes::from_static(b"1\n2\n")).await?;
            sink.finish().await
        }
        .await;
        outcomes.push(format!("{outcome:?}"));
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert!(outcomes[0].contains("UnexpectedMessage"), "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_stdout_streams_through() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let c = server.connect_at(&proxy.addr).await;
    let stream = c
        .copy_out("COPY (SELECT g, repeat('x', 500) FROM generate_series(1, 20000) g) TO STDOUT")
        .await
        .unwrap();
    pin_mut!(stream);
    let (mut lines, mut bytes) = (0, 0);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    assert_eq!(lines, 20000);
    assert!(bytes > 10_000_000);
    let (commits, _, writes) = proxy.counters().await;
    assert_eq!((commits, writes), (1, 0), "COPY TO is a read");
}

both_servers!(rows_larger_than_the_read_buffer);
async fn rows_larger_than_the_read_buffer(server: TestServer) {
    let proxy = TestProxy::start_with(&server.addr(), |c| c.read_buffer_size = 4096).await;
    let c = server.connect_at(&proxy.addr).await;
    let row = c
        .query_one("SELECT repeat('y', 3000000)", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0).len(), 3_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_notifications_and_parameter_status_reach_the_client() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let mut listener = RawClient::login(&proxy.addr, &server).await;
    let msgs = listener.simple("LISTEN ch").await;
    assert!(
        msgs.iter()
            .any(|m| m.command_tag().as_deref() == Some("LISTEN"))
    );

    let notifier = server.connect_at(&proxy.addr).await;
    notifier.batch_execute("NOTIFY ch, 'hello'").await.unwrap();
    let note = listener.read().await.expect("notification");
    assert_eq!(note.tag, b'A', "{note:?}");
    assert!(note.body.ends_with(b"ch\0hello\0"), "{note:?}");

    let msgs = listener
        .simple("DO $$ BEGIN RAISE NOTICE 'from the server'; END $$")
        .await;
    let notice = msgs.iter().find(|m| m.tag == b'N').expect("notice");
    assert_eq!(notice.text().as_deref(), Some("from the server"));

    let msgs = listener
        .simple("SET application_name = 'through-proxy'")
        .await;
    let status = msgs
        .iter()
        .find_map(|m| m.parameter())
        .expect("ParameterStatus");
    assert_eq!(
        status,
        ("application_name".to_string(), "through-proxy".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_call_is_relayed() {
    let server = TestServer::postgres().await;
    let proxy = TestProxy::start(&server.addr()).await;
    let mut c = RawClient::login(&proxy.addr, &server).await;
    // FunctionCall: int4pl (OID 177) with two binary int4 arguments, binary result.
    let mut body = BytesMut::new();
    body.put_u32(177);
    body.put_u16(1);
    body.put_u16(1);
    body.put_u16(2);
    for arg in [40i32, 2] {
        body.put_i32(4);
        body.put_i32(arg);
    }
    body.put_u16(1);
    let mut msg = BytesMut::new();
    msg.put_u8(b'F');
    msg.put_u32(body.len() as u32 + 4);
    msg.put_slice(&body);
    c.send(&msg).await;
    let msgs = c.until_ready().await;
    let result = msgs
        .iter()
        .find(|m| m.tag == b'V')
        .expect("FunctionCallResponse");
    assert_eq!(&result.body[..], &[0, 0, 0, 4, 0, 0, 0, 42]);
}

both_servers!(protocol_negotiation_is_relayed);
async fn protocol_negotiation_is_relayed(server: TestServer) {
    let proxy = TestProxy::start(&server.addr()).await;
    let through =
        RawClient::login_with(&proxy.addr, &server, &[("_pq_.unknown_option", "1")]).await;
    let direct =
        RawClient::login_with(&server.addr(), &server, &[("_pq_.unknown_option", "1")]).await;
    let tags = |c: &RawClient| c.startup.iter().map(|m| m.tag).collect::<Vec<u8>>();
    // Whatever the server answers (PostgreSQL: NegotiateProtocolVersion), the client sees the same.
    assert_eq!(tags(&through), tags(&direct));
    if server.kind == Kind::Postgres {
        let v = through
            .startup
            .iter()
            .find(|m| m.tag == b'v')
            .expect("NegotiateProtocolVersion");
        assert!(v.body.ends_with(b"_pq_.unknown_option\0"), "{v:?}");
    }
}
