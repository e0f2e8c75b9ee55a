//! The admin port against careless and hostile clients, with `rudder serve` as a process of its
//! own:
//! - `/debug/*` from a client in a network namespace (a source address that is not loopback):
//!   401 without the `--debug-token-file` token or with a wrong one, 200 with it, and the file
//!   followed when it is replaced; `/ready` and `/metrics` open to it; loopback callers need no
//!   token; `rudder proxy-status --token-file` from a non-loopback address.
//! - Connections that send half a request, or nothing, are closed after `--admin-read-timeout`;
//!   a kept-alive one after `--admin-idle-timeout`, not before.
//! - 20 clients asking for config dumps of a mesh of thousands of services without pause leave
//!   `/ready` under a second, and a config edit still reaches a proxy (the figures are printed;
//!   the hostile bench measures them properly).
//!
//! Uses 10.231.247.0/24 (needs root and iproute2) and 127.0.247.1.

mod support;

#[path = "../benches/support/ads_client.rs"]
mod ads_client;
#[path = "../benches/load/mesh.rs"]
mod mesh;
#[path = "../benches/load/server.rs"]
mod server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rudder::translate::ResourceType;
use support::mesh::{Backend, service_yaml};
use support::netns::TestHost;

const SUBNET: u8 = 247;

/// `rudder serve` of a one-service config directory, its log in a file.
struct Rudder {
    child: Child,
    admin: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rudder {
    /// Starts rudder with its admin server on `admin_address` and `args`; returns once it
    /// serves.
    fn start(admin_address: &str, args: &[&str]) -> Rudder {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("config");
        std::fs::create_dir(&config).expect("a config directory");
        let backends = [Backend::new("web-v1", "127.0.247.2", "v1")];
        std::fs::write(
            config.join("web.yaml"),
            service_yaml("web", "10.96.247.1", 8080, &backends),
        )
        .expect("write the config");
        let log = dir.path().join("rudder.log");
        let child = Command::new(env!("CARGO_BIN_EXE_rudder"))
            .args(["serve", "--config-dir"])
            .arg(&config)
            .args(["--xds-address", "127.0.247.1:0"])
            .args(["--admin-address", admin_address])
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the log file"))
            .spawn()
            .expect("start rudder");
        let mut rudder = Rudder {
            child,
            admin: "0.0.0.0:0".parse().expect("an address"),
            log,
            _dir: dir,
        };
        let line = rudder.wait_for_line("serving", Duration::from_secs(30));
        rudder.admin = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("admin_address="))
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("no admin address in {line:?}"));
        rudder
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first log line containing `text`, waiting up to `limit` for it.
    fn wait_for_line(&mut self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.log().lines().find(|line| line.contains(text)) {
                return line.to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("rudder exited ({status}); its log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "rudder never logged {text:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The admin port on `ip`.
    fn admin_on(&self, ip: &str) -> String {
        format!("{ip}:{}", self.admin.port())
    }
}

impl Drop for Rudder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a GET of `path` (with a bearer token if given) and reads the response: status, body.
fn get(stream: &mut TcpStream, path: &str, token: Option<&str>) -> (u16, String) {
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: rudder\r\n{authorization}\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    read_response(stream)
}

/// One HTTP/1.1 response with a Content-Length: status, body.
fn read_response(stream: &mut TcpStream) -> (u16, String) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    let mut reader = BufReader::new(stream);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line).expect("read the response head");
        assert!(read > 0, "the connection closed mid-response");
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let status = head[0]
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head:?}"));
    let length: usize = head
        .iter()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("a Content-Length: {head:?}"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("read the body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// How long after `since` the server closed `stream`; panics if it is still open after `limit`.
fn closed_after(mut stream: TcpStream, since: Instant, limit: Duration) -> Duration {
    stream
        .set_read_timeout(Some(limit))
        .expect("a read timeout");
    let mut buffer = [0; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return since.elapsed(),
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                return since.elapsed();
            }
            Err(error) => panic!("still open after {:?}: {error}", since.elapsed()),
        }
    }
}

fn write_token(path: &Path, token: &str) {
    // As a Secret volume replaces it: a new file renamed into place.
    let aside = path.with_extension("new");
    std::fs::write(&aside, format!("{token}\n")).expect("write the token");
    std::fs::rename(&aside, path).expect("rename the token into place");
}

#[test]
fn debug_endpoints_answer_loopback_callers_or_a_token() {
    let host = TestHost::create(SUBNET);
    let secrets = tempfile::tempdir().expect("a temporary directory");
    let token_file = secrets.path().join("token");
    write_token(&token_file, "first-token");
    let token_arg = token_file.to_string_lossy().into_owned();
    let mut rudder = Rudder::start("0.0.0.0:0", &["--debug-token-file", &token_arg]);
    let remote = rudder.admin_on(&host.address(1));
    let from_namespace =
        |path: &str, token: Option<&str>| get(&mut host.connect(&remote), path, token);

    assert_eq!(from_namespace("/ready", None).0, 200);
    let (status, metrics) = from_namespace("/metrics", None);
    assert_eq!(status, 200);
    assert!(metrics.contains("pilot_xds"), "{metrics}");

    let dump = "/debug/config_dump?proxyID=sidecar~10.0.0.1~a.default~default.svc.cluster.local";
    for path in [
        "/debug/syncz",
        "/debug/configz",
        "/debug/connections",
        dump,
        "/debug/nothing-here",
    ] {
        let (status, body) = from_namespace(path, None);
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(
            body.lines().count(),
            1,
            "{path}: a one-line reason: {body:?}"
        );
        assert_eq!(
            from_namespace(path, Some("not-the-token")).0,
            401,
            "{path} with a wrong token"
        );
    }
    for path in ["/debug/syncz", "/debug/configz", "/debug/connections", dump] {
        let (status, body) = from_namespace(path, Some("first-token"));
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).expect("JSON");
    }
    let refused = rudder.wait_for_line("debug request refused", Duration::from_secs(5));
    assert!(
        refused.contains(&format!("peer={}:", host.address(2))),
        "the warning names the peer: {refused}"
    );

    // Loopback needs no token.
    let local = rudder.admin_on("127.0.0.1");
    let mut stream = TcpStream::connect(&local).expect("connect over loopback");
    assert_eq!(get(&mut stream, "/debug/syncz", None).0, 200);

    // A replaced token file: the new token works, the old one no longer does.
    write_token(&token_file, "second-token");
    assert_eq!(from_namespace("/debug/syncz", Some("second-token")).0, 200);
    assert_eq!(from_namespace("/debug/syncz", Some("first-token")).0, 401);

    // `rudder proxy-status` from the host's address on the veth: not loopback either.
    let proxy_status = |token: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rudder"));
        command.args([
            "proxy-status",
            "--admin-address",
            &rudder.admin_on(&host.address(1)),
        ]);
        if let Some(token) = token {
            command.arg("--token-file").arg(token);
        }
        command.output().expect("run rudder proxy-status")
    };
    let refused = proxy_status(None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("401"),
        "{stderr}"
    );
    assert!(stderr.contains("--token-file"), "{stderr}");
    let served = proxy_status(Some(&token_file));
    assert!(
        served.status.success(),
        "{}",
        String::from_utf8_lossy(&served.stderr)
    );
    assert!(String::from_utf8_lossy(&served.stdout).starts_with("NAME"));
}

#[test]
fn slow_and_idle_connections_are_closed() {
    let read_timeout = Duration::from_secs(1);
    let idle_timeout = Duration::from_secs(3);
    let rudder = Rudder::start(
        "127.0.247.1:0",
        &["--admin-read-timeout", "1s", "--admin-idle-timeout", "3s"],
    );
    let admin = rudder.admin;
    let limit = Duration::from_secs(15);

    let half = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(admin).expect("connect");
        let sent = Instant::now();
        stream
            .write_all(b"GET /ready HTTP/1.1\r\nHost: rudder\r\n")
            .expect("send half a request");
        closed_after(stream, sent, limit)
    });
    let silent = std::thread::spawn(move || {
        let stream = TcpStream::connect(admin).expect("connect");
        closed_after(stream, Instant::now(), limit)
    });
    let kept = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(admin).expect("connect");
        assert_eq!(get(&mut stream, "/ready", None).0, 200);
        let answered = Instant::now();
        // A second request on the same connection, after more than the read timeout.
        std::thread::sleep(read_timeout + Duration::from_millis(500));
        assert_eq!(get(&mut stream, "/ready", None).0, 200);
        let answered_again = Instant::now();
        (
            answered_again - answered,
            closed_after(stream, answered_again, limit),
        )
    });
    let half = half.join().expect("the half-request client");
    let silent = silent.join().expect("the silent client");
    let (second_after, idle) = kept.join().expect("the kept-alive client");
    println!(
        "closed: half a request after {half:?}, a silent connection after {silent:?}, \
         an idle kept-alive one after {idle:?} (read timeout {read_timeout:?}, idle timeout {idle_timeout:?})"
    );
    for (what, closed) in [("half a request", half), ("a silent connection", silent)] {
        assert!(
            closed >= read_timeout - Duration::from_millis(100) && closed < idle_timeout,
            "{what} closed after {closed:?}"
        );
    }
    assert!(second_after > read_timeout, "{second_after:?}");
    assert!(
        idle >= idle_timeout - Duration::from_millis(100) && idle < limit,
        "an idle kept-alive connection closed after {idle:?}"
    );

    // And a plain request still works.
    let mut stream = TcpStream::connect(admin).expect("connect");
    assert_eq!(get(&mut stream, "/ready", None).0, 200);
}

/// Services in the flooded mesh: config dumps of it take seconds of CPU in a debug build.
const SERVICES: usize = 2000;
const FLOODERS: usize = 20;

/// How long `/ready` takes to answer.
async fn ready_latency(client: &reqwest::Client, admin: SocketAddr) -> Duration {
    let started = Instant::now();
    let response = client
        .get(format!("http://{admin}/ready"))
        .send()
        .await
        .expect("/ready answers");
    assert_eq!(response.status(), 200);
    started.elapsed()
}

/// Adds service `index` and waits until the ADS client gets clusters beyond `clusters`: how long
/// that took, and how many clusters it now has.
async fn push_time(
    dir: &Path,
    index: usize,
    received: &ads_client::Received,
    clusters: usize,
) -> (Duration, usize) {
    let started = Instant::now();
    mesh::write_service(dir, index, mesh::ServiceShape::new(1)).expect("write a service");
    let arrived = support::mesh::wait_until(Duration::from_secs(60), || async {
        received.last(ResourceType::Cluster) > clusters
    })
    .await;
    assert!(arrived.is_some(), "the new service never reached the proxy");
    (started.elapsed(), received.last(ResourceType::Cluster))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_config_dumps_leaves_ready_and_pushes_alone() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for index in 0..SERVICES {
        mesh::write_service(dir.path(), index, mesh::ServiceShape::new(1)).expect("write");
    }
    let server = server::ServerProcess::start_rudder(dir.path(), &[]);
    let admin = server.admin.expect("rudder's admin address");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client");

    let received = Arc::new(ads_client::Received::default());
    let node = ads_client::node("10.250.0.1", "probe", &[]);
    let proxy_id = node.id.clone();
    tokio::spawn(ads_client::run(
        ads_client::connect(server.xds).await,
        node,
        false,
        received.clone(),
    ));
    let served = support::mesh::wait_until(Duration::from_secs(120), || async {
        received.last(ResourceType::Cluster) > SERVICES
    })
    .await;
    assert!(served.is_some(), "the proxy never got its clusters");
    let clusters = received.last(ResourceType::Cluster);

    let mut quiet_ready = Duration::ZERO;
    for _ in 0..10 {
        quiet_ready = quiet_ready.max(ready_latency(&client, admin).await);
    }
    let (quiet_push, clusters) = push_time(dir.path(), SERVICES, &received, clusters).await;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let busy = Arc::new(AtomicUsize::new(0));
    let dump = format!("http://{admin}/debug/config_dump?proxyID={proxy_id}");
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|_| {
            let (stop, answered, busy, dump) =
                (stop.clone(), answered.clone(), busy.clone(), dump.clone());
            let client = client.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let response = client.get(&dump).send().await.expect("a dump answer");
                    match response.status().as_u16() {
                        200 => answered.fetch_add(1, Ordering::Relaxed),
                        503 => {
                            assert!(response.headers().contains_key("retry-after"));
                            busy.fetch_add(1, Ordering::Relaxed)
                        }
                        other => panic!("config_dump answered {other}"),
                    };
                    let _ = response.bytes().await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut flood_ready = Duration::ZERO;
    let sampling = Instant::now();
    while sampling.elapsed() < Duration::from_secs(5) {
        flood_ready = flood_ready.max(ready_latency(&client, admin).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (flood_push, _) = push_time(dir.path(), SERVICES + 1, &received, clusters).await;
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.await.expect("a flooder");
    }
    println!(
        "{SERVICES} services, {FLOODERS} clients asking for config dumps: /ready worst {flood_ready:?} \
         (quiet: {quiet_ready:?}); a new service reached the proxy in {flood_push:?} (quiet: \
         {quiet_push:?}); dumps answered {}, refused busy {}",
        answered.load(Ordering::Relaxed),
        busy.load(Ordering::Relaxed)
    );
    assert!(flood_ready < Duration::from_secs(1), "{flood_ready:?}");
    assert!(answered.load(Ordering::Relaxed) > 0);
    assert!(busy.load(Ordering::Relaxed) > 0, "the bound refused some");
}
