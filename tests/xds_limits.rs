//! Bounds on the xDS port against hostile clients, on the real `rudder serve` binary with small
//! limits set by its flags. The clients speak raw HTTP/2 (the `h2` crate, and frames written by
//! hand where a client must break HTTP/2's own rules), so they send what no gRPC client would:
//! the prefix of an oversize request, requests that do not decode, a stream without a request,
//! streams past a connection's limit, connections that never finish their handshake (plaintext
//! and TLS, and more of them than rudder may open files), streams faster than the rate,
//! subscriptions past the limit. Each refusal reaches the
//! client as the status that names the bound (never OK), and is counted in
//! `rudder_xds_refused_total`; stream refusals are logged with the client's address. Each test
//! has its own rudder on 127.0.246.N (N 1 to 9).

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use prost::Message;
use support::certs::TestCa;
use support::rudder_process::RudderProcess;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tonic::Code;
use tonic::codegen::{Bytes, http};

const SOTW: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";
const CLUSTERS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ENDPOINTS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// The HTTP/2 connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long anything these tests wait for may take; the bounds they set are far shorter.
const LIMIT: Duration = Duration::from_secs(10);

/// rudder serving an empty config on 127.0.246.HOST.
struct Server {
    rudder: RudderProcess,
    xds: SocketAddr,
    admin: SocketAddr,
    host: u8,
    _config: tempfile::TempDir,
}

impl Server {
    fn start(host: u8, flags: &[&str]) -> Server {
        Self::start_with_open_files(host, flags, None)
    }

    /// Like [`Server::start`], with at most `open_files` open files.
    fn start_with_open_files(host: u8, flags: &[&str], open_files: Option<u32>) -> Server {
        let config = tempfile::tempdir().expect("a temporary directory");
        let address = format!("127.0.246.{host}:0");
        let mut args = vec!["--xds-address", &address, "--admin-address", &address];
        args.extend(flags);
        let mut rudder = match open_files {
            Some(limit) => RudderProcess::start_with_open_files(config.path(), &args, limit),
            None => RudderProcess::start(config.path(), &args),
        };
        let (xds, admin) = rudder.addresses();
        Server {
            rudder,
            xds,
            admin,
            host,
            _config: config,
        }
    }

    /// Waits until the metric sample `sample` (name and labels, as rendered) reads `value`.
    async fn expect_metric(&self, sample: &str, value: f64) {
        let url = format!("http://{}/metrics", self.admin);
        let mut last = None;
        let deadline = tokio::time::Instant::now() + LIMIT;
        while tokio::time::Instant::now() < deadline {
            let text = reqwest::get(&url).await.expect("GET /metrics");
            let text = text.text().await.expect("the metrics");
            last = text.lines().find_map(|line| {
                let rest = line.strip_prefix(sample)?.strip_prefix(' ')?;
                rest.parse::<f64>().ok()
            });
            if last == Some(value) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{sample} is {last:?}, not {value}");
    }

    /// The log line of a refused stream whose status says `reason`; it names the client.
    fn expect_refusal_logged(&mut self, reason: &str) {
        let line = self.rudder.wait_for_line(reason, LIMIT);
        let peer = format!("peer=127.0.246.{}:", self.host);
        assert!(line.contains("ending ADS stream"), "{line}");
        assert!(line.contains(&peer), "the log names the client: {line}");
    }

    /// A TCP connection to the xDS port from 127.0.246.HOST, so the log shows whose it is.
    async fn dial(&self) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind(([127, 0, 246, self.host], 0).into())
            .expect("bind the client's address");
        socket.connect(self.xds).await.expect("connect to xDS")
    }

    /// A raw HTTP/2 connection to the xDS port.
    async fn connect(&self) -> h2::client::SendRequest<Bytes> {
        let (client, connection) = h2::client::handshake(self.dial().await)
            .await
            .expect("HTTP/2");
        tokio::spawn(connection);
        client
    }

    fn node(&self) -> Option<Node> {
        Some(Node {
            id: format!(
                "sidecar~127.0.246.{}~app.default~default.svc.cluster.local",
                self.host
            ),
            ..Default::default()
        })
    }
}

/// Opens a gRPC call to `path`: where to send its request body, and its response to come.
async fn open(
    client: &mut h2::client::SendRequest<Bytes>,
    path: &str,
) -> (h2::SendStream<Bytes>, h2::client::ResponseFuture) {
    let request = http::Request::post(format!("http://rudder{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("a request");
    let ready = client.clone().ready().await.expect("a stream allowed");
    *client = ready;
    let (response, body) = client.send_request(request, false).expect("a stream");
    (body, response)
}

/// `message` as gRPC frames it: uncompressed, its length, itself.
fn framed(message: &[u8]) -> Bytes {
    let mut framed = vec![0];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(message);
    framed.into()
}

/// The response's headers.
async fn answer(response: h2::client::ResponseFuture) -> http::Response<h2::RecvStream> {
    timeout(LIMIT, response)
        .await
        .expect("an answer in time")
        .expect("a response")
}

/// How the call ended: the gRPC status of its trailers (or of a trailers-only answer), after
/// whatever messages came before; and how many data bytes those were.
async fn status(response: http::Response<h2::RecvStream>) -> (tonic::Status, usize) {
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return (status, 0);
    }
    let mut body = response.into_body();
    let mut received = 0;
    while let Some(data) = timeout(LIMIT, body.data()).await.expect("the call ends") {
        let data = data.expect("data");
        received += data.len();
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.expect("trailers").expect("trailers");
    let status = tonic::Status::from_header_map(&trailers).expect("a grpc-status");
    (status, received)
}

/// The status a call ends with, which must be `code` with a message containing `text`.
async fn expect_status(response: h2::client::ResponseFuture, code: Code, text: &str) {
    let (status, _) = status(answer(response).await).await;
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(text), "{status:?}");
}

#[tokio::test]
async fn an_oversize_request_is_refused_from_its_prefix() {
    let mut server = Server::start(1, &["--xds-max-message-size", "1024"]);
    let mut client = server.connect().await;
    // The prefix of a 64 MiB request, and none of the request.
    let (mut body, response) = open(&mut client, SOTW).await;
    let mut prefix = vec![0];
    prefix.extend_from_slice(&(64u32 << 20).to_be_bytes());
    body.send_data(prefix.into(), false).expect("send");
    let limit =
        "request of 67108864 bytes is over the limit of 1024 bytes (--xds-max-message-size)";
    expect_status(response, Code::ResourceExhausted, limit).await;
    server.expect_refusal_logged("--xds-max-message-size");
    server
        .expect_metric("rudder_xds_refused_total{reason=\"message_size\"}", 1.0)
        .await;

    // A request under the limit is served.
    let (mut body, response) = open(&mut client, SOTW).await;
    let cds = DiscoveryRequest {
        node: server.node(),
        type_url: CLUSTERS.to_string(),
        ..Default::default()
    };
    body.send_data(framed(&cds.encode_to_vec()), false)
        .expect("send");
    let mut served = answer(response).await.into_body();
    let first = timeout(LIMIT, served.data()).await.expect("a response");
    assert!(first.is_some_and(|data| data.is_ok()), "a CDS response");
}

#[tokio::test]
async fn requests_that_do_not_decode_get_invalid_argument() {
    let mut server = Server::start(2, &[]);
    let mut client = server.connect().await;
    // Node metadata nested 200 deep: past protobuf's recursion limit.
    let mut value = Value {
        kind: Some(Kind::StringValue("deep".to_string())),
    };
    for _ in 0..200 {
        let nested = Struct {
            fields: [("x".to_string(), value)].into(),
        };
        value = Value {
            kind: Some(Kind::StructValue(nested)),
        };
    }
    let mut node = server.node().expect("a node");
    node.metadata = Some(Struct {
        fields: [("m".to_string(), value)].into(),
    });
    let deep = DiscoveryRequest {
        node: Some(node),
        type_url: CLUSTERS.to_string(),
        ..Default::default()
    };
    // Field 4 holding bytes that are not UTF-8: `type_url` in SotW, an unsubscribed name in delta.
    let not_utf8 = vec![0x22, 2, 0xff, 0xfe];
    let cases = [
        (SOTW, deep.encode_to_vec(), "recursion limit"),
        (SOTW, not_utf8.clone(), "UTF-8"),
        (DELTA, not_utf8, "UTF-8"),
    ];
    for (path, request, reason) in cases {
        let (mut body, response) = open(&mut client, path).await;
        body.send_data(framed(&request), false).expect("send");
        expect_status(response, Code::InvalidArgument, reason).await;
    }
    server.expect_refusal_logged("recursion limit");
    server
        .expect_metric("rudder_xds_refused_total{reason=\"bad_request\"}", 3.0)
        .await;
}

#[tokio::test]
async fn a_stream_without_a_request_ends_at_the_first_request_timeout() {
    let mut server = Server::start(3, &["--xds-first-request-timeout", "2s"]);
    let mut client = server.connect().await;
    let (_body, response) = open(&mut client, DELTA).await;
    let response = answer(response).await;
    // Open and unidentified: not a proxy (`pilot_xds`), but counted.
    server
        .expect_metric("rudder_xds_unidentified_streams", 1.0)
        .await;
    server.expect_metric("pilot_xds", 0.0).await;
    let (status, _) = status(response).await;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    let timeout = "no request within 2s of opening the stream (--xds-first-request-timeout)";
    assert_eq!(status.message(), timeout);
    server.expect_refusal_logged("--xds-first-request-timeout");
    server
        .expect_metric("rudder_xds_unidentified_streams", 0.0)
        .await;
    server
        .expect_metric(
            "rudder_xds_refused_total{reason=\"first_request_timeout\"}",
            1.0,
        )
        .await;
}

/// Appends an HTTP/2 frame.
fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The HEADERS block of an ADS call, in HPACK literals (no indexing, no Huffman coding).
fn ads_headers() -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", SOTW),
        (":authority", "rudder"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0);
        for text in [name, value] {
            block.push(u8::try_from(text.len()).unwrap());
            block.extend_from_slice(text.as_bytes());
        }
    }
    block
}

/// The next frame: its type, flags, stream and payload.
async fn read_frame(tcp: &mut (impl AsyncRead + Unpin)) -> (u8, u8, u32, Vec<u8>) {
    let mut header = [0; 9];
    tcp.read_exact(&mut header).await.expect("a frame");
    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
    let mut payload = vec![0; len];
    tcp.read_exact(&mut payload)
        .await
        .expect("a frame's payload");
    (header[3], header[4], stream, payload)
}

#[tokio::test]
async fn streams_past_the_connection_limit_are_refused_by_http2() {
    const HEADERS: u8 = 1;
    const RST_STREAM: u8 = 3;
    const SETTINGS: u8 = 4;
    const GOAWAY: u8 = 7;
    const END_HEADERS: u8 = 4;
    const ACK: u8 = 1;
    const MAX_CONCURRENT_STREAMS: u16 = 3;
    const REFUSED_STREAM: u32 = 7;

    let server = Server::start(4, &["--xds-max-streams-per-connection", "4"]);
    let mut tcp = server.dial().await;
    // Ten streams at once, ignoring the server's limit, as an attacker would.
    let mut out = PREFACE.to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    let streams: Vec<u32> = (0..10).map(|i| 1 + 2 * i).collect();
    for stream in &streams {
        frame(&mut out, HEADERS, END_HEADERS, *stream, &ads_headers());
    }
    tcp.write_all(&out).await.expect("send");

    let mut limit = None;
    let mut refused = BTreeSet::new();
    while refused.len() < 6 {
        let (kind, flags, stream, payload) = timeout(LIMIT, read_frame(&mut tcp))
            .await
            .expect("the server answers every stream");
        match kind {
            SETTINGS if flags & ACK == 0 => {
                for setting in payload.chunks(6) {
                    if u16::from_be_bytes([setting[0], setting[1]]) == MAX_CONCURRENT_STREAMS {
                        let value = [setting[2], setting[3], setting[4], setting[5]];
                        limit = Some(u32::from_be_bytes(value));
                    }
                }
            }
            RST_STREAM => {
                let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                assert_eq!(code, REFUSED_STREAM, "stream {stream}");
                refused.insert(stream);
            }
            GOAWAY => panic!("the connection went away: {payload:?}"),
            _ => {}
        }
    }
    assert_eq!(limit, Some(4), "the server announces its limit");
    assert_eq!(refused, streams[4..].iter().copied().collect());
}

/// Whether the server closes `connection` (end of stream or reset) in time.
async fn closed(mut connection: impl AsyncRead + Unpin) -> bool {
    let mut buf = [0; 64];
    matches!(
        timeout(LIMIT, connection.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn connections_without_a_handshake_in_time_are_closed() {
    let flags = [
        "--xds-handshake-timeout",
        "500ms",
        "--xds-max-streams-per-second",
        "0",
    ];
    let mut server = Server::start(5, &flags);
    // The limits in force are logged at start; a rate of 0 is istiod's automatic one.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let rate = (15 + 5 * cpus).min(100);
    let limits = server.rudder.wait_for_line("xDS limits", LIMIT);
    assert!(
        limits.contains(&format!("max_streams_per_second={rate}/s")),
        "{limits}"
    );
    server.rudder.wait_for_line("open file limit", LIMIT);
    let silent = server.dial().await;
    let mut partial = server.dial().await;
    partial.write_all(&PREFACE[..10]).await.expect("send");
    assert!(closed(silent).await, "a silent connection is closed");
    assert!(closed(partial).await, "a partial preface is closed");
    server
        .expect_metric(
            "rudder_xds_refused_total{reason=\"handshake_timeout\"}",
            2.0,
        )
        .await;
    // One that sends its preface in time is served.
    let mut client = server.connect().await;
    let (_body, response) = open(&mut client, SOTW).await;
    assert_eq!(answer(response).await.status(), http::StatusCode::OK);
}

#[tokio::test]
async fn silent_connections_past_the_open_file_limit_are_shed_and_logged() {
    const OPEN_FILES: u32 = 128;
    let flags = ["--xds-handshake-timeout", "1s"];
    let mut server = Server::start_with_open_files(9, &flags, Some(OPEN_FILES));
    // More silent connections than rudder may hold files: it cannot accept them all.
    let mut silent = Vec::new();
    for _ in 0..OPEN_FILES + 50 {
        silent.push(server.dial().await);
    }
    let line = server
        .rudder
        .wait_for_line("accepting xDS connections fails", LIMIT);
    assert!(
        line.contains("failed="),
        "the warning counts the failures: {line}"
    );
    // Each is closed at the handshake timeout, making room for the next; all are closed.
    for connection in silent {
        assert!(closed(connection).await, "a silent connection is closed");
    }
    // Served again, on both ports.
    let mut client = server.connect().await;
    let (_body, response) = open(&mut client, SOTW).await;
    assert_eq!(answer(response).await.status(), http::StatusCode::OK);
    server
        .expect_metric(
            "rudder_xds_refused_total{reason=\"handshake_timeout\"}",
            f64::from(OPEN_FILES + 50),
        )
        .await;
}

#[tokio::test]
async fn tls_connections_without_tls_and_the_preface_in_time_are_closed() {
    let certificates = tempfile::tempdir().expect("a temporary directory");
    let ca = TestCa::new(certificates.path());
    ca.issue_server("rudder", &["rudder.test"]);
    let (cert, key) = (ca.path("rudder.pem"), ca.path("rudder-key.pem"));
    let server = Server::start(
        6,
        &[
            "--xds-handshake-timeout",
            "500ms",
            "--xds-tls-cert",
            cert.to_str().expect("a UTF-8 path"),
            "--xds-tls-key",
            key.to_str().expect("a UTF-8 path"),
        ],
    );
    let silent = server.dial().await;
    assert!(closed(silent).await, "a connection without TLS is closed");
    // TLS done, but no HTTP/2 preface inside it.
    let tcp = server.dial().await;
    let name = rustls::pki_types::ServerName::try_from("rudder.test").expect("a name");
    let tls = ca.connector().connect(name, tcp).await.expect("TLS");
    assert!(
        closed(tls).await,
        "a TLS connection without the preface is closed"
    );
    server
        .expect_metric(
            "rudder_xds_refused_total{reason=\"handshake_timeout\"}",
            2.0,
        )
        .await;
}

#[tokio::test]
async fn new_streams_past_the_rate_are_refused() {
    // One stream every 5 s: of three opened at once, one has its turn at once, and the others'
    // turns are past the second a stream may wait. (Which one goes first is the server's
    // scheduling.)
    let mut server = Server::start(7, &["--xds-max-streams-per-second", "0.2"]);
    let mut client = server.connect().await;
    let cds = DiscoveryRequest {
        node: server.node(),
        type_url: CLUSTERS.to_string(),
        ..Default::default()
    };
    let mut calls = Vec::new();
    for _ in 0..3 {
        let (mut body, response) = open(&mut client, SOTW).await;
        body.send_data(framed(&cds.encode_to_vec()), false)
            .expect("send");
        calls.push((body, response));
    }
    let (mut served, mut refused) = (0, 0);
    let exceeded = "request rate limit exceeded (--xds-max-streams-per-second)";
    for (_body, response) in calls {
        let mut response = answer(response).await.into_body();
        let first = timeout(LIMIT, response.data()).await.expect("an answer");
        if first.is_some_and(|data| data.is_ok()) {
            served += 1;
            continue;
        }
        let trailers = response
            .trailers()
            .await
            .expect("trailers")
            .expect("trailers");
        let status = tonic::Status::from_header_map(&trailers).expect("a grpc-status");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(status.message(), exceeded);
        refused += 1;
    }
    assert_eq!((served, refused), (1, 2));
    server.expect_refusal_logged("request rate limit exceeded");
    server
        .expect_metric("rudder_xds_refused_total{reason=\"rate_limit\"}", 2.0)
        .await;
}

#[tokio::test]
async fn subscriptions_past_the_limit_are_refused() {
    let mut server = Server::start(8, &["--xds-max-subscribed-names", "3"]);
    let mut client = server.connect().await;
    let over = "subscribe to 4 names, over the limit of 3 (--xds-max-subscribed-names)";

    // State of the world: three EDS names are served, four are not.
    let (mut body, response) = open(&mut client, SOTW).await;
    let eds = |names: &[&str]| DiscoveryRequest {
        node: server.node(),
        type_url: ENDPOINTS.to_string(),
        resource_names: names.iter().map(ToString::to_string).collect(),
        ..Default::default()
    };
    for names in [&["a", "b", "c"][..], &["a", "b", "c", "d"]] {
        body.send_data(framed(&eds(names).encode_to_vec()), false)
            .expect("send");
    }
    let (status, received) = status(answer(response).await).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains(over), "{status:?}");
    assert!(received > 0, "the first request was answered");

    // Delta: subscriptions add up across requests.
    let (mut body, response) = open(&mut client, DELTA).await;
    for names in [["a", "b"], ["c", "d"]] {
        let subscribe = DeltaDiscoveryRequest {
            node: server.node(),
            type_url: ENDPOINTS.to_string(),
            resource_names_subscribe: names.iter().map(ToString::to_string).collect(),
            ..Default::default()
        };
        body.send_data(framed(&subscribe.encode_to_vec()), false)
            .expect("send");
    }
    expect_status(response, Code::ResourceExhausted, over).await;
    server.expect_refusal_logged("--xds-max-subscribed-names");
    server
        .expect_metric("rudder_xds_refused_total{reason=\"subscriptions\"}", 2.0)
        .await;
}

#[test]
fn bad_limits_stop_serve_naming_the_flag() {
    for (flag, value, complaint) in [
        ("--xds-max-streams-per-second", "fast", "is not a rate"),
        ("--xds-max-streams-per-second=-1", "", "is not a rate"),
        ("--xds-first-request-timeout", "0s", "must be more than 0"),
        (
            "--xds-max-subscribed-names",
            "0",
            "is not a positive whole number",
        ),
        ("--xds-max-streams-per-connection", "0", "0"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_rudder"))
            .args(["serve", "--config-dir", ".", flag])
            .args((!value.is_empty()).then_some(value))
            .output()
            .expect("run rudder");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag.split('=').next().unwrap_or(flag)) && stderr.contains(complaint),
            "{flag} {value}: {stderr}"
        );
    }
}
