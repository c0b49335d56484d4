//! Requests no well-behaved client sends, over raw HTTP/2: each gets a precise answer — never
//! INTERNAL or UNKNOWN — and changes nothing.

use bytes::Bytes;
use rstest::rstest;

use crate::helpers::{Backend, TestApp, spawn_app};

/// What came back: the HTTP status and the gRPC status code (headers or trailers), if any.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    http: u16,
    grpc: Option<i32>,
}

/// One message in gRPC's length-prefixed framing (uncompressed).
fn frame(message: &[u8]) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

/// POSTs `body` to `path` with `headers` (the gRPC ones unless overridden) over one HTTP/2 stream.
async fn raw_call(app: &TestApp, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let tcp = tokio::net::TcpStream::connect(app.address).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let mut request = http::Request::builder().method("POST").uri(format!("http://{}{path}", app.address));
    for (name, value) in [("content-type", "application/grpc"), ("te", "trailers")] {
        if !headers.iter().any(|(given, _)| given.eq_ignore_ascii_case(name)) {
            request = request.header(name, value);
        }
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (response, mut send) = client.send_request(request.body(()).expect("request"), false).expect("send");
    send.send_data(Bytes::from(body), true).expect("body");
    let response = response.await.expect("response");
    let http = response.status().as_u16();
    let code =
        |map: &http::HeaderMap| map.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    if let Some(grpc) = code(response.headers()) {
        return Answer { http, grpc: Some(grpc) };
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("data");
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.expect("trailers");
    Answer { http, grpc: trailers.as_ref().and_then(code) }
}

const INVALID_ARGUMENT: Option<i32> = Some(3);

/// (what is wrong, path, extra headers, body, the answer it must get)
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>, Answer);

#[rstest]
#[tokio::test]
async fn malformed_bodies_and_headers_get_precise_codes_and_change_nothing(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    let before = app.snapshot().await;
    let consume = "/creditpool.v1.CreditService/Consume";
    let create = "/creditpool.v1.AdminService/CreateAccount";
    // A valid CreateAccount: idempotency_key "k", account_id "a".
    let valid_create = [0x0a, 0x01, b'k', 0x12, 0x01, b'a'];
    let cases: Vec<Case> = vec![
        (
            "invalid UTF-8 in a string",
            consume,
            vec![],
            frame(&[0x0a, 0x02, 0xff, 0xfe]),
            Answer { http: 200, grpc: INVALID_ARGUMENT },
        ),
        ("a truncated varint", consume, vec![], frame(&[0x20]), Answer { http: 200, grpc: INVALID_ARGUMENT }),
        (
            "a length past the end",
            create,
            vec![],
            frame(&[0x0a, 0x05, b'a']),
            Answer { http: 200, grpc: INVALID_ARGUMENT },
        ),
        ("an invalid wire type", create, vec![], frame(&[0x0f, 0x01]), Answer { http: 200, grpc: INVALID_ARGUMENT }),
        ("a field number of zero", create, vec![], frame(&[0x02, 0x00]), Answer { http: 200, grpc: INVALID_ARGUMENT }),
        (
            "a JSON content type",
            create,
            vec![("content-type", "application/json")],
            frame(&valid_create),
            Answer { http: 415, grpc: None },
        ),
        (
            "two messages on a call that takes one",
            create,
            vec![],
            [frame(&valid_create), frame(&valid_create)].concat(),
            Answer { http: 200, grpc: INVALID_ARGUMENT },
        ),
        ("no message at all", create, vec![], vec![], Answer { http: 200, grpc: INVALID_ARGUMENT }),
        (
            "a message cut short of its length prefix",
            create,
            vec![],
            frame(&valid_create)[..8].to_vec(),
            Answer { http: 200, grpc: INVALID_ARGUMENT },
        ),
        ("half a length prefix", create, vec![], vec![0, 0, 0], Answer { http: 200, grpc: INVALID_ARGUMENT }),
        (
            "a compressed flag without grpc-encoding",
            create,
            vec![],
            [&[1_u8][..], &frame(&valid_create)[1..]].concat(),
            Answer { http: 200, grpc: INVALID_ARGUMENT },
        ),
        (
            "a compression the server does not speak",
            create,
            vec![("grpc-encoding", "snappy")],
            [&[1_u8][..], &frame(&valid_create)[1..]].concat(),
            Answer { http: 200, grpc: Some(12) },
        ),
        (
            "an ill-formed grpc-timeout",
            create,
            vec![("grpc-timeout", "soon")],
            frame(&valid_create),
            Answer { http: 200, grpc: INVALID_ARGUMENT },
        ),
    ];

    let mut wrong = Vec::new();
    for (case, path, headers, body, expected) in cases {
        let answer = raw_call(&app, path, &headers, body).await;
        if answer != expected {
            wrong.push((case, answer, expected));
        }
    }

    let unchanged = app.snapshot().await;
    // The control: the same framing with one valid message and the gRPC headers is served.
    let control = raw_call(&app, create, &[], frame(&valid_create)).await;

    assert!(wrong.is_empty(), "(case, got, expected): {wrong:#?}");
    assert_eq!(unchanged, before, "no hostile request changed anything");
    assert_eq!(control, Answer { http: 200, grpc: Some(0) });
    assert_eq!(app.account("a").await.account_id, "a");
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_peer_that_stays_silent_is_disconnected_and_a_quiet_client_that_answers_pings_is_not() {
    use tokio::io::AsyncReadExt as _;

    let app = crate::helpers::spawn_app_with(Backend::Sqlite, |config| {
        config.http2_keepalive_interval_ms = 100;
        config.http2_keepalive_timeout_ms = 100;
        config.idle_connection_timeout_ms = 500;
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(app.address).await.expect("connect");
    let started = std::time::Instant::now();
    // The server writes its HTTP/2 settings, then closes: read until the end of the stream.
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), silent.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "a peer that never sent the HTTP/2 preface is still connected after 10 s");
    assert!(started.elapsed() >= std::time::Duration::from_millis(400), "cut before its idle limit");

    // The app's own channel sat idle all this time, answering pings: it still serves.
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    app.create_account("after-the-quiet").await;
    app.assert_ledger_clean().await;
}
