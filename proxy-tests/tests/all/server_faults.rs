//! A server that breaks the protocol behind the sidecar (the fault server in
//! `proxy_tests::fault_server`): garbage, an unknown message type, a length word far over
//! `max_message_len` or below 4, a message cut off by the server's close, the same faults during
//! login, and a large valid answer. Each test says exactly what the client sees, and checks that
//! the sidecar lets go of the session and its upstream connection, while a session held open
//! across the fault and a new one both work.
//!
//! What the sidecar does: a length word it cannot frame ends the session with FATAL `08P01` after
//! every whole message before it; a server that closes ends it with FATAL `08006` when the client
//! stream is at a message boundary (in the middle of a row it can only close, as the server did),
//! and in silence during login (as PostgreSQL's own close there); a well-framed message of an
//! unknown type is relayed like any other, so the client's driver judges it as it would directly.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::StreamExt;
use proxy_tests::TestProxy;
use proxy_tests::fault_server::{
    Fault, FaultServer, GARBAGE, LOGIN_FAULT_PARAM, ROWS_BEFORE_FAULT, UNKNOWN_BODY, UNKNOWN_TAG,
    fault_query, login_fault,
};
use proxy_tests::raw::{Closed, Login, Msg, RawClient, briefs, take_message};
use tokio::io::AsyncReadExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

/// How long any one step may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

const LOGIN: Login<'static> = Login {
    user: "fault",
    password: "",
    database: "fault",
};

/// Runs `f`, failing the test if it has not finished within [`DEADLINE`].
async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {DEADLINE:?}"))
}

/// The fault server and the sidecar in front of it.
struct Bed {
    faults: FaultServer,
    proxy: TestProxy,
}

impl Bed {
    async fn start() -> Bed {
        Bed::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut doltgres_sidecar::config::Config)) -> Bed {
        let faults = FaultServer::start().await;
        let proxy = TestProxy::start_with(&faults.addr, adjust).await;
        Bed { faults, proxy }
    }

    fn config(&self, application_name: Option<&str>) -> tokio_postgres::Config {
        let (host, port) = self.proxy.addr.rsplit_once(':').unwrap();
        let mut config = tokio_postgres::Config::new();
        config
            .host(host)
            .port(port.parse().unwrap())
            .user(LOGIN.user)
            .dbname(LOGIN.database)
            .connect_timeout(Duration::from_secs(10));
        if let Some(name) = application_name {
            config.application_name(name);
        }
        config
    }

    /// A tokio-postgres session through the sidecar.
    async fn connect(&self) -> Client {
        within("login", proxy_tests::server_connect(&self.config(None)))
            .await
            .expect("login through the sidecar failed")
    }

    /// A raw session through the sidecar, logged in.
    async fn raw(&self) -> RawClient {
        within(
            "raw login",
            RawClient::login_as(&self.proxy.addr, &LOGIN, &[]),
        )
        .await
    }

    /// `doltgres_sidecar_sessions` from `/metrics`.
    async fn sessions_gauge(&self) -> i64 {
        let (code, text) = self.proxy.admin_get("/metrics").await;
        assert_eq!(code, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix("doltgres_sidecar_sessions "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no sessions gauge in {text}"))
    }

    /// Waits until the sidecar has exactly `n` sessions (in `/status` and in the gauge) and the
    /// server exactly `n` connections: nothing is left of the session that met the fault.
    async fn settle(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listed = self.proxy.status().await["sessions"]
                .as_array()
                .unwrap()
                .len();
            let gauge = self.sessions_gauge().await;
            let upstream = self.faults.open_connections();
            if listed == n && gauge == n as i64 && upstream == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} sessions: /status lists {listed}, the gauge says {gauge}, the server \
                 has {upstream} connections open"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The sidecar is up, the session held open across the fault still works, and so does a new
    /// one; afterwards only the bystander is left.
    async fn others_unharmed(&self, bystander: &Client) {
        let (code, _) = self.proxy.admin_get("/healthz").await;
        assert_eq!(code, 200);
        assert_eq!(value(bystander, "SELECT 'still here'").await, "still here");
        let newcomer = self.connect().await;
        assert_eq!(value(&newcomer, "SELECT 'new'").await, "new");
        drop(newcomer);
        self.settle(1).await;
    }

    /// Runs `fault` in a raw session and returns everything until the connection ended.
    async fn raw_fault(&self, fault: Fault) -> Closed {
        let mut victim = self.raw().await;
        victim.query(&fault_query(fault)).await;
        within("the faulty session's end", victim.until_end()).await
    }

    /// Runs `fault` through tokio-postgres and returns the driver's error; its connection is
    /// closed afterwards.
    async fn driver_fault(&self, fault: Fault) -> tokio_postgres::Error {
        let victim = self.connect().await;
        let err = within("the faulty query", victim.simple_query(&fault_query(fault)))
            .await
            .expect_err("the faulty query succeeded");
        closes(&victim).await;
        err
    }

    /// Starts a login through the sidecar with `fault` in the server's login, speaking the
    /// protocol directly.
    async fn raw_login_start(&self, fault: Fault) -> RawClient {
        let mut c = RawClient::connect(&self.proxy.addr).await;
        let name = login_fault(fault);
        let params = [
            ("user", LOGIN.user),
            ("database", LOGIN.database),
            (LOGIN_FAULT_PARAM, name.as_str()),
        ];
        let mut out = BytesMut::new();
        postgres_protocol::message::frontend::startup_message(params, &mut out).unwrap();
        c.send(&out).await;
        c
    }

    /// Logs in with `fault` in the server's login; returns everything until the connection
    /// ended.
    async fn raw_login_fault(&self, fault: Fault) -> Closed {
        let mut c = self.raw_login_start(fault).await;
        within("the faulty login's end", c.until_end()).await
    }

    /// Logs in through tokio-postgres with `fault` in the server's login; returns the error.
    async fn driver_login_fault(&self, fault: Fault) -> tokio_postgres::Error {
        let config = self.config(Some(&login_fault(fault)));
        match within("the faulty login", proxy_tests::server_connect(&config)).await {
            Ok(_) => panic!("a login with {fault:?} succeeded"),
            Err(e) => e,
        }
    }
}

/// The first column of the first row.
async fn value(client: &Client, sql: &str) -> String {
    let messages = within(sql, client.simple_query(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// Waits until tokio-postgres has seen its connection close.
async fn closes(client: &Client) {
    within("the driver's close", async {
        while !client.is_closed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The rows the fault server sends before a fault in a result.
fn result_before_fault() -> Vec<String> {
    let mut out = vec!["T".to_string()];
    out.extend(std::iter::repeat_n("D".to_string(), ROWS_BEFORE_FAULT));
    out
}

/// Asserts the connection ended with the result's rows, then one FATAL with `code` whose text
/// contains `says`, then an orderly close.
fn assert_rows_then_fatal(closed: &Closed, code: &str, says: &str) {
    let mut expected = result_before_fault();
    expected.push(format!("E({code})"));
    assert_eq!(briefs(&closed.messages), expected, "{closed:?}");
    let error = closed.messages.last().unwrap();
    assert_fatal(error, says);
    assert!(closed.end.is_ok(), "{closed:?}");
    assert!(closed.trailing.is_empty(), "{closed:?}");
}

fn assert_fatal(error: &Msg, says: &str) {
    assert_eq!(error.field('S').as_deref(), Some("FATAL"), "{error:?}");
    let text = error.text().unwrap();
    assert!(text.contains(says), "{text:?} does not say {says:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_middle_of_a_result_is_08p01_after_the_rows_before_it() {
    let bed = Bed::start().await;
    let bystander = bed.connect().await;
    assert_eq!(value(&bystander, "SELECT 'before'").await, "before");

    let closed = bed.raw_fault(Fault::Garbage).await;
    // The garbage reads as a message header whose length word is far over the limit.
    let declared = u32::from_be_bytes(GARBAGE[1..5].try_into().unwrap());
    assert!(declared > 1 << 30, "garbage that the default limit catches");
    assert_rows_then_fatal(&closed, "08P01", "invalid message from the upstream server");
    assert_fatal(closed.messages.last().unwrap(), "above the maximum");
    bed.settle(1).await;

    let err = bed.driver_fault(Fault::Garbage).await;
    assert_eq!(err.code(), Some(&SqlState::PROTOCOL_VIOLATION), "{err}");
    bed.settle(1).await;
    bed.others_unharmed(&bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_message_type_is_relayed_and_left_to_the_client_to_judge() {
    let bed = Bed::start().await;
    let bystander = bed.connect().await;

    // The sidecar frames it like any other message and passes it on unchanged; the session
    // goes on, as it would directly.
    let mut raw = bed.raw().await;
    raw.query(&fault_query(Fault::UnknownTag)).await;
    let msgs = within("the answer", raw.until_ready()).await;
    let mut expected = result_before_fault();
    expected.extend([
        (UNKNOWN_TAG as char).to_string(),
        format!("C(SELECT {ROWS_BEFORE_FAULT})"),
        "Z(I)".into(),
    ]);
    assert_eq!(briefs(&msgs), expected);
    let unknown = &msgs[1 + ROWS_BEFORE_FAULT];
    assert_eq!(&unknown.body[..], UNKNOWN_BODY);
    let next = within("the next query", raw.simple("SELECT 'next'")).await;
    assert_eq!(briefs(&next), ["T", "D", "C(SELECT 1)", "Z(I)"]);
    drop(raw);
    bed.settle(1).await;

    // tokio-postgres fails the query with an error of its own (no SQLSTATE) and, as the answer
    // ended with ReadyForQuery, goes on using the connection, as it would directly.
    let driver = bed.connect().await;
    let query = fault_query(Fault::UnknownTag);
    let err = within("the odd answer", driver.simple_query(&query))
        .await
        .expect_err("an unknown message type was accepted");
    assert_eq!(err.code(), None, "{err}");
    assert!(
        format!("{err:?}").contains("unknown message tag"),
        "{err:?}"
    );
    assert_eq!(value(&driver, "SELECT 'on'").await, "on");
    bed.settle(2).await;
    drop(driver);
    bed.settle(1).await;
    bed.others_unharmed(&bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_word_of_0x7fffffff_mid_result_is_08p01_without_waiting_for_the_body() {
    let bed = Bed::start().await;
    let bystander = bed.connect().await;
    // The server sends the header alone and then nothing, keeping its connection open: the
    // error cannot come from a body arriving or from the server closing.
    let oversized = Fault::Header {
        tag: b'D',
        len: 0x7fff_ffff,
    };
    let closed = bed.raw_fault(oversized).await;
    assert_rows_then_fatal(
        &closed,
        "08P01",
        "declares length 2147483647, above the maximum",
    );
    bed.settle(1).await;

    let err = bed.driver_fault(oversized).await;
    assert_eq!(err.code(), Some(&SqlState::PROTOCOL_VIOLATION), "{err}");
    bed.settle(1).await;
    bed.others_unharmed(&bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_a_configured_max_message_len_is_08p01() {
    let bed = Bed::start_with(|c| c.max_message_len = 64 * 1024).await;
    let bystander = bed.connect().await;
    // A NoticeResponse is buffered whole before it is passed on, so its declared length is what
    // the limit bounds; here 1 MiB against 64 KiB.
    let closed = bed
        .raw_fault(Fault::Header {
            tag: b'N',
            len: 1 << 20,
        })
        .await;
    assert_rows_then_fatal(&closed, "08P01", "above the maximum of 65536");
    bed.settle(1).await;
    bed.others_unharmed(&bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_word_below_4_mid_result_is_08p01() {
    let bed = Bed::start().await;
    let bystander = bed.connect().await;
    for len in [0, 3] {
        let short = Fault::Header { tag: b'C', len };
        let closed = bed.raw_fault(short).await;
        let says = format!("declares length {len}, below the minimum of 4");
        assert_rows_then_fatal(&closed, "08P01", &says);
        bed.settle(1).await;
    }
    let err = bed.driver_fault(Fault::Header { tag: b'C', len: 3 }).await;
    assert_eq!(err.code(), Some(&SqlState::PROTOCOL_VIOLATION), "{err}");
    bed.settle(1).await;
    bed.others_unharmed(&bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_cut_off_by_the_servers_close_is_08006_at_a_boundary() {
    let bed = Bed::start().await;
    let bystander = bed.connect().await;
    // The server closes after 8 bytes of its CommandComplete. The sidecar had kept the partial
    // message back (it is not a streamed one), so the client is at a boundary and is told.
    let closed = bed.raw_fault(Fault::Cut).await;
    assert_rows_then_fatal(&closed, "08006", "closed the connection unexpectedly");
    bed.settle(1).await;

    let err = bed.driver_fault(Fault::Cut).await;
    assert_eq!(err.code(), Some(&SqlState::CONNECTION_FAILURE), "{err}");
    bed.settle(1).await;
    bed.others_unharmed(&bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_cut_off_by_the_servers_close_closes_the_client_mid_row() {
    let bed = Bed::start().await;
    let bystander = bed.connect().await;
    // A DataRow streams through as it arrives, so when the server closes in the middle of one
    // the client has part of it: no message can follow, and the client sees the close, as it
    // would directly.
    let closed = bed.raw_fault(Fault::CutInRow).await;
    assert_eq!(
        briefs(&closed.messages),
        result_before_fault(),
        "{closed:?}"
    );
    assert!(closed.end.is_ok(), "{closed:?}");
    let mut partial = vec![b'D'];
    partial.extend_from_slice(&1010u32.to_be_bytes());
    partial.extend_from_slice(&1u16.to_be_bytes());
    partial.extend_from_slice(&1000u32.to_be_bytes());
    partial.extend_from_slice(&[b'y'; 10]);
    assert_eq!(
        &closed.trailing[..],
        &partial[..],
        "the partial row as sent"
    );
    bed.settle(1).await;

    let err = bed.driver_fault(Fault::CutInRow).await;
    assert_eq!(err.code(), None, "{err}");
    bed.settle(1).await;
    bed.others_unharmed(&bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_during_login() {
    let bed = Bed::start().await;
    let bystander = bed.connect().await;
    // What comes before the fault: AuthenticationOk and one ParameterStatus.
    let before = ["R", "S"];
    let framing = [
        (Fault::Garbage, "above the maximum"),
        (
            Fault::Header {
                tag: b'S',
                len: 0x7fff_ffff,
            },
            "declares length 2147483647, above the maximum",
        ),
        (
            Fault::Header { tag: b'S', len: 2 },
            "declares length 2, below the minimum of 4",
        ),
    ];
    for (fault, says) in framing {
        let closed = bed.raw_login_fault(fault).await;
        let mut expected = before.map(String::from).to_vec();
        expected.push("E(08P01)".into());
        assert_eq!(briefs(&closed.messages), expected, "{fault:?}: {closed:?}");
        assert_fatal(closed.messages.last().unwrap(), says);
        assert!(
            closed.end.is_ok() && closed.trailing.is_empty(),
            "{closed:?}"
        );
        bed.settle(1).await;

        let err = bed.driver_login_fault(fault).await;
        assert_eq!(
            err.code(),
            Some(&SqlState::PROTOCOL_VIOLATION),
            "{fault:?}: {err}"
        );
        bed.settle(1).await;
    }

    // A well-framed message of an unknown type during login is relayed too, and the driver
    // refuses it as it would directly; the session ends when the driver hangs up.
    let unknown = Fault::UnknownTag;
    let mut c = bed.raw_login_start(unknown).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(within("login messages", c.read()).await.expect("closed"));
    }
    assert_eq!(briefs(&got), ["R", "S", &(UNKNOWN_TAG as char).to_string()]);
    assert_eq!(&got[2].body[..], UNKNOWN_BODY);
    drop(c);
    bed.settle(1).await;
    let err = bed.driver_login_fault(unknown).await;
    assert_eq!(err.code(), None, "{err}");
    assert!(
        format!("{err:?}").contains("unknown message tag"),
        "{err:?}"
    );
    bed.settle(1).await;

    // The server closing during login, in the middle of a message: the client sees the close
    // alone, as PostgreSQL's own close during login (its authentication timeout, say) looks.
    // The partial message is not passed on.
    let closed = bed.raw_login_fault(Fault::Cut).await;
    assert_eq!(briefs(&closed.messages), before, "{closed:?}");
    assert!(
        closed.end.is_ok() && closed.trailing.is_empty(),
        "{closed:?}"
    );
    bed.settle(1).await;
    let err = bed.driver_login_fault(Fault::Cut).await;
    assert_eq!(err.code(), None, "{err}");
    bed.settle(1).await;

    bed.others_unharmed(&bystander).await;
    assert!(
        bed.faults.accepted() >= 10,
        "every login reached the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_valid_result_flows_while_other_sessions_work() {
    let bed = Bed::start().await;
    let bystander = bed.connect().await;
    let reader = bed.connect().await;
    const ROWS: usize = 300_000;
    const WIDTH: usize = 100;
    let big = async {
        let query = fault_query(Fault::Rows {
            count: ROWS,
            width: WIDTH,
        });
        let stream = reader.simple_query_raw(&query).await.unwrap();
        let mut stream = std::pin::pin!(stream);
        let mut seen = 0;
        while let Some(message) = stream.next().await {
            let message = message.unwrap_or_else(|e| panic!("after {seen} rows: {e}"));
            let SimpleQueryMessage::Row(row) = message else {
                continue;
            };
            seen += 1;
            let expected = format!("{seen:0WIDTH$}");
            assert_eq!(row.get(0), Some(expected.as_str()), "row {seen}");
        }
        seen
    };
    let meanwhile = async {
        for i in 0..50 {
            let sql = format!("SELECT 'meanwhile {i}'");
            assert_eq!(value(&bystander, &sql).await, format!("meanwhile {i}"));
        }
    };
    let (seen, ()) = within("the large result", async { tokio::join!(big, meanwhile) }).await;
    assert_eq!(seen, ROWS);
    assert_eq!(value(&reader, "SELECT 'after'").await, "after");
    bed.settle(2).await;
    drop(reader);
    bed.settle(1).await;
    bed.others_unharmed(&bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_larger_than_the_read_buffer_streams_before_it_is_whole() {
    let bed = Bed::start().await;
    let bystander = bed.connect().await;
    const LEN: usize = 8 << 20;
    let mut victim = bed.raw().await;
    victim.query(&fault_query(Fault::BigRow { len: LEN })).await;
    // The server sends half the row and waits. A sidecar that buffered the row until it was
    // whole would pass nothing of it on; this one streams it through its read buffer.
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    within("the first half of the row", async {
        while received.len() < LEN / 2 {
            let n = victim.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed after {} bytes", received.len());
            received.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    bed.faults.release();
    let mut buf = BytesMut::new();
    let mut msgs = Vec::new();
    within("the rest of the answer", async {
        buf.extend_from_slice(&received);
        loop {
            while let Some(m) = take_message(&mut buf) {
                msgs.push(m);
            }
            if msgs.last().is_some_and(|m| m.tag == b'Z') {
                return;
            }
            let n = victim.stream.read_buf(&mut buf).await.unwrap();
            assert!(n > 0, "closed before ReadyForQuery");
        }
    })
    .await;
    assert_eq!(briefs(&msgs), ["T", "D", "C(SELECT 1)", "Z(I)"]);
    let row = &msgs[1].body;
    assert_eq!(row.len(), 2 + 4 + LEN);
    assert!(
        row[6..].iter().all(|&b| b == b'x'),
        "the row arrived intact"
    );
    assert_eq!(value(&bystander, "SELECT 'unaffected'").await, "unaffected");
    drop(victim);
    bed.settle(1).await;
    bed.others_unharmed(&bystander).await;
}
