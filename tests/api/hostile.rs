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

/// POSTs `body` to `path` with `headers` (the gRPC ones unless overridden) over a connection of
/// its own; the connection stays open while the returned client lives.
async fn open_stream(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (h2::client::SendRequest<Bytes>, h2::client::ResponseFuture) {
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
    (client, response)
}

/// [`open_stream`], read to its end: the HTTP status and the gRPC code.
async fn raw_call(app: &TestApp, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    raw_reply(app, path, headers, body).await.0
}

/// [`raw_call`] with the status message (percent-decoded).
async fn raw_reply(app: &TestApp, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (Answer, String) {
    let (_client, response) = open_stream(app, path, headers, body).await;
    let response = response.await.expect("response");
    let http = response.status().as_u16();
    let code =
        |map: &http::HeaderMap| map.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let message = |map: &http::HeaderMap| {
        let raw = map.get("grpc-message").map(|v| v.as_bytes().to_vec()).unwrap_or_default();
        percent_encoding::percent_decode(&raw).decode_utf8_lossy().into_owned()
    };
    if let Some(grpc) = code(response.headers()) {
        return (Answer { http, grpc: Some(grpc) }, message(response.headers()));
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("data");
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.expect("trailers").unwrap_or_default();
    (Answer { http, grpc: code(&trailers) }, message(&trailers))
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

/// [`raw_call_or_stream`] with the status message.
async fn raw_reply_or_stream(app: &TestApp, path: &str, body: Vec<u8>) -> (Answer, String) {
    match tokio::time::timeout(std::time::Duration::from_millis(500), raw_reply(app, path, &[], body)).await {
        Ok(reply) => reply,
        Err(_) => (Answer { http: 200, grpc: Some(0) }, String::new()),
    }
}

/// Like [`raw_call`], but a stream that opens and keeps going counts as answered OK: the answer
/// is the code in the headers or trailers, or 0 when none came within half a second of the
/// response.
async fn raw_call_or_stream(app: &TestApp, path: &str, body: Vec<u8>) -> Answer {
    raw_reply_or_stream(app, path, body).await.0
}

/// A field of a request message: its number, protobuf type, whether repeated.
struct Field {
    name: String,
    number: u32,
    kind: prost_types::field_descriptor_proto::Type,
    repeated: bool,
}

/// Every RPC of both services with the fields of its request message.
fn methods() -> Vec<(String, Vec<Field>)> {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(creditpool::proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let messages: std::collections::HashMap<String, &prost_types::DescriptorProto> = set
        .file
        .iter()
        .flat_map(|file| file.message_type.iter().map(move |m| (format!(".{}.{}", file.package(), m.name()), m)))
        .collect();
    let mut methods = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let input = messages[method.input_type()];
                let fields = input
                    .field
                    .iter()
                    .map(|f| Field {
                        name: f.name().to_owned(),
                        number: u32::try_from(f.number()).expect("field number"),
                        kind: f.r#type(),
                        repeated: f.label() == prost_types::field_descriptor_proto::Label::Repeated,
                    })
                    .collect();
                methods.push((format!("/{}.{}/{}", file.package(), service.name(), method.name()), fields));
            }
        }
    }
    methods
}

fn varint(mut value: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            bytes.push(byte);
            return bytes;
        }
        bytes.push(byte | 0x80);
    }
}

fn length_delimited(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = varint(u64::from(number) << 3 | 2);
    bytes.extend(varint(payload.len() as u64));
    bytes.extend_from_slice(payload);
    bytes
}

fn varint_field(number: u32, value: u64) -> Vec<u8> {
    let mut bytes = varint(u64::from(number) << 3);
    bytes.extend(varint(value));
    bytes
}

/// What a hostile value is, and its encoding as field `field`.
fn hostile_values(field: &Field) -> Vec<(&'static str, Vec<u8>)> {
    use prost_types::field_descriptor_proto::Type;
    let n = field.number;
    let mut values: Vec<(&'static str, Vec<u8>)> = match field.kind {
        Type::String => vec![
            ("invalid UTF-8", length_delimited(n, &[0x61, 0xff, 0xfe])),
            ("a NUL byte", length_delimited(n, b"a\0b")),
            ("100 KB", length_delimited(n, &vec![b'x'; 100_000])),
            ("SQL", length_delimited(n, b"'; DROP TABLE accounts; --")),
            ("a path", length_delimited(n, b"../../etc/passwd")),
            ("right-to-left and emoji", length_delimited(n, "\u{202e}\u{1f4a5}".as_bytes())),
        ],
        Type::Int64 | Type::Int32 => vec![
            ("i64::MIN", varint_field(n, i64::MIN as u64)),
            ("-1", varint_field(n, u64::MAX)),
            ("i64::MAX", varint_field(n, i64::MAX as u64)),
        ],
        Type::Uint32 | Type::Uint64 => vec![
            ("u32::MAX", varint_field(n, u64::from(u32::MAX))),
            ("a 64-bit value in a 32-bit field", varint_field(n, u64::MAX)),
        ],
        Type::Bool => vec![("a bool of 2", varint_field(n, 2))],
        Type::Enum => {
            vec![("an unknown enum value", varint_field(n, 999)), ("a negative enum value", varint_field(n, u64::MAX))]
        }
        Type::Message => vec![
            ("a garbage submessage", length_delimited(n, &[0xff, 0xff, 0xff])),
            ("an empty submessage", length_delimited(n, &[])),
        ],
        _ => vec![],
    };
    if field.repeated && field.kind == Type::String {
        let many: Vec<u8> = (0..10_000).flat_map(|i| length_delimited(n, format!("id-{i}").as_bytes())).collect();
        values.push(("10,000 entries", many));
    }
    values
}

/// Whether `what` in `field` of `path` must be refused: INVALID_ARGUMENT naming the field. The
/// rest are values the field accepts, which must get the answer the plausible request gets.
fn refused(field: &str, what: &str) -> bool {
    match what {
        // Undecodable: the request as a whole is not a message of its type.
        "invalid UTF-8" | "a garbage submessage" => true,
        // Ids, keys, periods, labels and tokens: 1..=128 bytes of `[A-Za-z0-9._:@-]`.
        "a NUL byte" | "100 KB" | "SQL" | "a path" | "right-to-left and emoji" => {
            field != "name" || matches!(what, "a NUL byte" | "100 KB")
        }
        // Amounts are 1..=10^12; cursors are never negative, and a notification cursor past the
        // last published event is a client's mistake (an entry cursor past the end is just the
        // end of the journal).
        "i64::MIN" | "-1" => true,
        "i64::MAX" => field != "after_entry_id",
        // Page sizes are at most 1,000, holds live at most the configured TTL.
        "u32::MAX" | "a 64-bit value in a 32-bit field" => true,
        // Protobuf reads any non-zero varint as true.
        "a bool of 2" => false,
        "an unknown enum value" | "a negative enum value" => true,
        // An empty billing anchor is day 0; empty thresholds are all zero, an empty timestamp is
        // the epoch, both valid.
        "an empty submessage" => field == "billing_anchor",
        "10,000 entries" => true,
        other => panic!("no rule for {other}"),
    }
}

/// The plausible request of an RPC: ids "member-a" (an existing account) and lists of it, keys
/// `key`, amounts 1, role EDITOR, a period that parses, empty thresholds, and no field that
/// excludes another, so the hostile field is the one that is wrong.
fn plausible(path: &str, fields: &[Field], key: &str) -> Vec<u8> {
    use prost_types::field_descriptor_proto::Type;
    let method = path.rsplit('/').next().unwrap_or_default();
    let mut body = Vec::new();
    for field in fields {
        match (field.kind, field.name.as_str()) {
            (Type::String, _) if field.repeated => body.extend(length_delimited(field.number, b"member-a")),
            _ if field.repeated => {}
            (Type::Enum, "role") => body.extend(varint_field(field.number, 3)),
            // A journal is a workspace's or an account's; a report a time range or a period.
            (_, "account_id") if matches!(method, "ListJournalEntries" | "ExportJournal") => {}
            (_, "contract_period") if method == "GetUsageReport" => {}
            (Type::Message, "thresholds") => body.extend(length_delimited(field.number, &[])),
            (Type::String, "idempotency_key" | "reservation_key") => {
                body.extend(length_delimited(field.number, key.as_bytes()));
            }
            (Type::String, "page_token") => {}
            (Type::String, "period") => body.extend(length_delimited(field.number, b"2031-01")),
            (Type::String, _) => body.extend(length_delimited(field.number, b"member-a")),
            (Type::Int64 | Type::Int32, _) => body.extend(varint_field(field.number, 1)),
            _ => {}
        }
    }
    body
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_every_hostile_field_with_its_exact_code(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    let mut wrong = Vec::new();
    let (mut cases, mut refusals) = (0, 0);
    let mut refused_keys = std::collections::HashSet::new();
    let mut fresh = 0;
    let mut key = || {
        fresh += 1;
        format!("hostile-{fresh}")
    };
    for (path, fields) in methods() {
        // What the plausible request gets once whatever it creates exists: a valid hostile value
        // must get the same.
        raw_call_or_stream(&app, &path, frame(&plausible(&path, &fields, &key()))).await;
        let (control, control_message) =
            raw_reply_or_stream(&app, &path, frame(&plausible(&path, &fields, &key()))).await;
        for field in &fields {
            for (what, value) in hostile_values(field) {
                cases += 1;
                // The hostile field comes last, so it overrides the plausible value (last wins).
                let case_key = key();
                let body = [plausible(&path, &fields, &case_key), value].concat();
                let (answer, message) = raw_reply_or_stream(&app, &path, frame(&body)).await;
                let must_refuse = refused(&field.name, what);
                refusals += usize::from(must_refuse);
                if must_refuse {
                    refused_keys.insert(case_key);
                }
                let right = match must_refuse {
                    true => answer.grpc == Some(3) && message.contains(&field.name),
                    false => answer.grpc == control.grpc,
                };
                if !right || answer.http != 200 {
                    let expected = if must_refuse {
                        format!("INVALID_ARGUMENT naming {}", field.name)
                    } else {
                        format!("{:?} ({control_message})", control.grpc)
                    };
                    wrong.push(format!(
                        "{path} {} = {what}: got {answer:?} ({message}), expected {expected}",
                        field.name
                    ));
                }
            }
        }
    }

    // A refused request took no effect: no answer is recorded under its key.
    let recorded: Vec<String> = sqlx::query_scalar("SELECT idempotency_key FROM idempotency_records")
        .fetch_all(&app.db)
        .await
        .expect("records");
    for record in recorded {
        let key = record.rsplit('/').next().unwrap_or_default();
        if refused_keys.contains(key) {
            wrong.push(format!("{record}: refused, yet recorded"));
        }
    }

    println!("{cases} hostile requests on {backend:?} ({refusals} to refuse), {} wrong", wrong.len());
    assert!(cases > 300, "the table covers every field of every RPC: {cases}");
    assert!(wrong.is_empty(), "{} wrong: {wrong:#?}", wrong.len());
    app.assert_ledger_clean().await;
}

/// A random protobuf-ish body: fields of random numbers and wire types, with random, truncated
/// or oversized contents.
fn random_body(rng: &mut rand::rngs::StdRng) -> Vec<u8> {
    use rand::Rng as _;
    let mut body = Vec::new();
    for _ in 0..rng.random_range(0..8) {
        let number: u32 = rng.random_range(0..12);
        match rng.random_range(0..6) {
            0 => body.extend(varint_field(number, rng.random())),
            1 => {
                let payload: Vec<u8> = (0..rng.random_range(0..40)).map(|_| rng.random()).collect();
                body.extend(length_delimited(number, &payload));
            }
            2 => body.extend(length_delimited(number, b"member-a")),
            // A length past the end, a fixed-width value, or raw noise.
            3 => body.extend([u8::try_from(number << 3 | 2).unwrap_or(2), 0x7f, 1, 2]),
            4 => {
                body.push(u8::try_from(number << 3 | 1).unwrap_or(1));
                body.extend(rng.random::<u64>().to_le_bytes());
            }
            _ => body.extend((0..rng.random_range(1..6)).map(|_| rng.random::<u8>())),
        }
    }
    body
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_request_bodies_never_get_internal_or_unknown_and_change_nothing_they_should_not(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    use rand::{Rng as _, SeedableRng as _};
    let cases: usize = std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let app = spawn_app(backend).await;
    app.hot_path_example().await;
    let paths: Vec<String> = methods().into_iter().map(|(path, _)| path).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let mut wrong = Vec::new();
    for _ in 0..cases {
        let path = &paths[rng.random_range(0..paths.len())];
        let body = random_body(&mut rng);
        let answer = raw_call_or_stream(&app, path, frame(&body)).await;
        if answer.http != 200 || matches!(answer.grpc, None | Some(2 | 13)) {
            wrong.push(format!("{path} {body:02x?}: {answer:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    app.assert_ledger_clean().await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_their_streams_hold_no_database_connection_and_hold_no_one_back(
    #[values(Backend::Postgres, Backend::Sqlite)] backend: Backend,
) {
    let app = crate::helpers::spawn_app_with(backend, |config| config.database_max_connections = 4).await;
    app.hot_path_example().await;
    // Enough history that an export outgrows the stream's flow-control window and its buffer.
    app.buy("owner", 1_000_000).await;
    let app = std::sync::Arc::new(app);
    for wave in 0..10 {
        let history = (0..150).map(|i| {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move { app.consume(&format!("history-{wave}-{i}"), "owner", "", 1).await.map(|_| ()) })
        });
        assert!(crate::helpers::join_all(history).await.iter().all(Result::is_ok), "personal consumes");
    }
    let export = frame(&length_delimited(2, b"owner"));
    let watch = frame(&[]);
    let mut stalled = Vec::new();
    for _ in 0..10 {
        stalled.push(open_stream(&app, "/creditpool.v1.AdminService/ExportJournal", &[], export.clone()).await);
        stalled.push(open_stream(&app, "/creditpool.v1.AdminService/WatchNotifications", &[], watch.clone()).await);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // Twenty stalled streams, four connections: everyone else is served at once.
    let started = std::time::Instant::now();
    for i in 0..50 {
        app.consume(&format!("after-{i}"), "member-a", "team", 1).await.expect("served beside stalled streams");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    drop(stalled);
    app.assert_ledger_clean().await;
}
