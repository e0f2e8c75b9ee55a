//! Graceful shutdown of the real `rudder` binary: on SIGTERM it ends every ADS stream (Envoy is
//! told to reconnect), closes its ports and exits 0 well within its shutdown grace, and the Envoy
//! it served keeps its config and keeps routing traffic with rudder gone.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use rudder::bootstrap::AdsApiType;
use serde_json::json;
use support::envoy_process::EnvoyProcess;
use support::in_both_modes;
use support::mesh::{Backend, NAMESPACE, NODE_ID, service_yaml, wait_until};
use support::rudder_process::RudderProcess;
use support::upstream::{Echo, Upstream};

/// rudder's `--shutdown-grace` in these tests; it must exit before.
const GRACE: Duration = Duration::from_secs(5);

in_both_modes!(sigterm_ends_streams_and_exits_zero_while_envoy_keeps_serving);

/// `rudder serve` of `config_dir` on loopback, with `--shutdown-grace` `grace`.
fn start_rudder(config_dir: &std::path::Path, grace: Duration) -> RudderProcess {
    let grace = format!("{}ms", grace.as_millis());
    let args = [
        "--xds-address",
        "127.0.0.1:0",
        "--admin-address",
        "127.0.0.1:0",
        "--shutdown-grace",
        &grace,
    ];
    RudderProcess::start(config_dir, &args)
}

/// A GET of `web` through the sidecar's listener on `port`: the upstream that answered.
async fn upstream_behind(client: &reqwest::Client, port: u16) -> Option<String> {
    let response = client
        .get(format!("http://127.0.0.1:{port}/"))
        .header("host", "web")
        .send()
        .await
        .ok()?;
    Some(response.json::<Echo>().await.ok()?.upstream)
}

async fn sigterm_ends_streams_and_exits_zero_while_envoy_keeps_serving(api_type: AdsApiType) {
    let net: u8 = match api_type {
        AdsApiType::Grpc => 244,
        AdsApiType::DeltaGrpc => 245,
    };
    let port = 19000 + u16::from(net);
    let ip = format!("127.0.{net}.1");
    let _upstream = Upstream::start("web-v1", &format!("{ip}:{port}")).await;
    let config = tempfile::tempdir().expect("a temporary directory");
    let backends = [Backend::new("web-v1", &ip, "v1")];
    let service = service_yaml("web", &format!("10.96.{net}.1"), port, &backends);
    std::fs::write(config.path().join("web.yaml"), service).expect("write the config");

    let mut rudder = start_rudder(config.path(), GRACE);
    let (xds_address, _) = rudder.addresses();
    let metadata = json!({"NAMESPACE": NAMESPACE, "INTERCEPTION_MODE": "NONE"});
    let envoy = EnvoyProcess::start(NODE_ID, metadata, xds_address, api_type);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client");
    let routed = wait_until(Duration::from_secs(20), || async {
        upstream_behind(&client, port).await.as_deref() == Some("web-v1")
    })
    .await;
    assert!(
        routed.is_some(),
        "Envoy never routed; its log:\n{}",
        envoy.log()
    );
    rudder.wait_for_line("proxy connected", Duration::from_secs(5));

    let (status, exit_time) = rudder.terminate(GRACE);
    println!("rudder exited {exit_time:?} after SIGTERM");
    assert!(status.success(), "rudder exits 0 on SIGTERM: {status}");
    rudder.wait_for_line("shutting down", Duration::from_secs(1));
    assert!(
        nothing_listens(xds_address),
        "the xDS port is closed once rudder is gone"
    );

    // Envoy saw its stream end (not a hang until a keepalive times out) and kept its config.
    let disconnected = wait_until(Duration::from_secs(2), || async {
        let url = format!(
            "http://{}/stats?filter=^control_plane.connected_state$",
            envoy.admin
        );
        match reqwest::get(url).await {
            Ok(response) => response
                .text()
                .await
                .is_ok_and(|stats| stats.contains("connected_state: 0")),
            Err(_) => false,
        }
    })
    .await;
    assert!(disconnected.is_some(), "Envoy notices rudder is gone");
    for _ in 0..20 {
        assert_eq!(
            upstream_behind(&client, port).await.as_deref(),
            Some("web-v1"),
            "Envoy keeps routing without rudder; its log:\n{}",
            envoy.log()
        );
    }
}

#[test]
fn a_client_silent_after_its_preface_is_cut_off_after_the_grace() {
    let config = tempfile::tempdir().expect("a temporary directory");
    let grace = Duration::from_millis(500);
    let mut rudder = start_rudder(config.path(), grace);
    let (xds_address, _) = rudder.addresses();
    // Sent the HTTP/2 preface, then nothing (not even its SETTINGS, nor the answer to the
    // GOAWAY's ping): its connection cannot close gracefully. (One that never sent the preface
    // is still in its handshake, which shutdown ends at once.)
    let mut silent = std::net::TcpStream::connect(xds_address).expect("connect to xDS");
    silent
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .expect("send the preface");
    let _never_spoke = std::net::TcpStream::connect(xds_address).expect("connect to xDS");
    std::thread::sleep(Duration::from_millis(100));
    // The grace, then at most a second for the runtime's leftovers, and slack for a busy machine.
    let (status, exit_time) = rudder.terminate(grace + Duration::from_secs(3));
    println!("with a silent client, rudder exited {exit_time:?} after SIGTERM");
    assert!(status.success(), "rudder exits 0 on SIGTERM: {status}");
    assert!(exit_time >= grace, "the grace is given: {exit_time:?}");
    rudder.wait_for_line("after the shutdown grace", Duration::from_secs(1));
}

/// Whether a TCP connection to `address` fails.
fn nothing_listens(address: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err()
}
