//! Where an attack happens: the config directory ([`super::config`]), `rudder serve` on it
//! ([`super::rudder`]), the `reviews` upstreams, a real Envoy sidecar attached over delta ADS,
//! requests sent through that Envoy without pause, and the rule edit whose time to reach the
//! Envoy the harness measures. Every scene has a slot: its own loopback addresses
//! `127.0.248.(8*SLOT+1..4)` (rudder, Envoy, v1, v2) and attacker addresses
//! `127.0.249.(8*SLOT..8*SLOT+7)`, so quick runs can run side by side.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rudder::bootstrap::{AdsApiType, ClientCertificate, XdsClientTls};
use serde_json::json;
use tokio::task::JoinHandle;

use super::config::{self, Addresses, NAMESPACE, TRAFFIC_PORT};
use super::flags::Bounds;
use super::rudder::{Launch, Rudder};
use crate::certs::TestCa;
use crate::envoy_process::EnvoyProcess;
use crate::upstream::{Echo, Upstream};

pub const XDS_PORT: u16 = 19249;
pub const ADMIN_PORT: u16 = 19250;
/// How long rudder may take to be ready and the Envoy to route through it.
const START_LIMIT: Duration = Duration::from_secs(120);
/// Pause between two requests of the steady traffic.
const TRAFFIC_PAUSE: Duration = Duration::from_millis(5);

/// A scene's addresses: `127.0.248.(8*slot + n)`.
#[derive(Debug, Clone, Copy)]
pub struct Slot(pub u8);

impl Slot {
    fn ip(self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 248, self.0 * 8 + n)
    }

    /// The attacker's `n`th address (of 8): `127.0.249.(8*slot + n % 8)`.
    pub fn attacker(self, n: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 249, self.0 * 8 + (n % 8) as u8))
    }

    pub fn xds(self) -> SocketAddr {
        SocketAddr::new(self.ip(1).into(), XDS_PORT)
    }

    pub fn admin(self) -> SocketAddr {
        SocketAddr::new(self.ip(1).into(), ADMIN_PORT)
    }

    fn addresses(self) -> Addresses {
        Addresses {
            envoy: self.ip(2),
            v1: self.ip(3),
            v2: self.ip(4),
        }
    }

    /// The Envoy's node id.
    pub fn node_id(self) -> String {
        format!(
            "sidecar~{}~client.{NAMESPACE}~{NAMESPACE}.svc.cluster.local",
            self.ip(2)
        )
    }
}

/// What a scene is made of.
#[derive(Debug, Clone)]
pub struct SceneSpec {
    pub slot: Slot,
    pub services: usize,
    pub binary: PathBuf,
    pub bounds: Bounds,
    pub cgroup: bool,
    pub nofile: Option<u64>,
    /// Serve xDS over mutual TLS ([`SceneTls`]) instead of plaintext.
    pub tls: bool,
}

/// The DNS name of rudder's xDS certificate.
pub const TLS_SERVER_NAME: &str = "rudder.hostile.svc";
/// The Envoy's identity, of its own namespace.
const ENVOY_SPIFFE: &str = "spiffe://cluster.local/ns/hostile/sa/client";

/// Mutual TLS on the xDS port: a CA, rudder's certificate, the Envoy's client certificate
/// (`envoy`), and two a thief could get signed by the same CA: `thief-dns` with only a DNS
/// SAN, `thief-spiffe` with a SPIFFE identity of `istio-system` (service account `attacker`).
pub struct SceneTls {
    pub ca: TestCa,
}

impl SceneTls {
    fn create(dir: &std::path::Path) -> std::io::Result<SceneTls> {
        std::fs::create_dir(dir)?;
        let ca = TestCa::new(dir);
        ca.issue_server("rudder", &[TLS_SERVER_NAME]);
        ca.issue_client_with_uri("envoy", ENVOY_SPIFFE);
        ca.issue_client_with_dns("thief-dns", "thief.example.com");
        ca.issue_client_with_uri(
            "thief-spiffe",
            "spiffe://cluster.local/ns/istio-system/sa/attacker",
        );
        Ok(SceneTls { ca })
    }

    fn serve_args(&self) -> Vec<String> {
        let path = |file: &str| self.ca.path(file).display().to_string();
        vec![
            "--xds-tls-cert".to_string(),
            path("rudder.pem"),
            "--xds-tls-key".to_string(),
            path("rudder-key.pem"),
            "--xds-tls-client-ca".to_string(),
            path("ca.pem"),
        ]
    }

    fn envoy(&self) -> XdsClientTls {
        let path = |file: &str| self.ca.path(file).display().to_string();
        XdsClientTls {
            ca_file: path("ca.pem"),
            client_certificate: Some(ClientCertificate {
                certificate_file: path("envoy.pem"),
                private_key_file: path("envoy-key.pem"),
            }),
            server_name: Some(TLS_SERVER_NAME.to_string()),
        }
    }
}

pub struct Scene {
    pub slot: Slot,
    pub xds: SocketAddr,
    pub admin: SocketAddr,
    pub rudder: Rudder,
    /// Attached for the scene's whole life.
    _envoy: EnvoyProcess,
    pub traffic: Traffic,
    pub tls: Option<SceneTls>,
    dir: tempfile::TempDir,
    client: reqwest::Client,
    _upstreams: [Upstream; 2],
}

impl Scene {
    pub async fn start(spec: &SceneSpec) -> Result<Scene, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
        let config_dir = dir.path().join("config");
        std::fs::create_dir(&config_dir).map_err(|e| e.to_string())?;
        let addresses = spec.slot.addresses();
        config::write_all(&config_dir, spec.services, addresses)
            .map_err(|e| format!("write the config: {e}"))?;
        let upstreams = [
            Upstream::start("reviews-v1", &format!("{}:{TRAFFIC_PORT}", addresses.v1)).await,
            Upstream::start("reviews-v2", &format!("{}:{TRAFFIC_PORT}", addresses.v2)).await,
        ];
        let tls = if spec.tls {
            let made = SceneTls::create(&dir.path().join("tls"));
            Some(made.map_err(|e| format!("TLS material: {e}"))?)
        } else {
            None
        };
        let mut args = spec.bounds.args();
        args.extend(tls.iter().flat_map(SceneTls::serve_args));
        let launch = Launch {
            binary: spec.binary.clone(),
            config_dir,
            xds: spec.slot.xds(),
            admin: spec.slot.admin(),
            args,
            cgroup: spec.cgroup,
            nofile: spec.nofile,
            log: dir.path().join("rudder.log"),
        };
        let mut rudder = Rudder::start(&launch).map_err(|e| format!("start rudder: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        while !ready(&client, launch.admin).await {
            if started.elapsed() > START_LIMIT || rudder.exit() != super::rudder::Exit::Running {
                return Err(format!(
                    "rudder was not ready within {START_LIMIT:?} ({:?}); its log ends:\n{}",
                    rudder.exit(),
                    tail(&rudder.log_text(), 20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let metadata = json!({
            "NAMESPACE": NAMESPACE,
            "INTERCEPTION_MODE": "NONE",
            "LABELS": {"app": "client"},
        });
        let envoy = EnvoyProcess::start_with_tls(
            &spec.slot.node_id(),
            metadata,
            &launch.xds.to_string(),
            AdsApiType::DeltaGrpc,
            tls.as_ref().map(SceneTls::envoy),
        );
        let listener = SocketAddr::new(addresses.envoy.into(), TRAFFIC_PORT);
        let mut routed = false;
        while !routed && started.elapsed() < START_LIMIT {
            routed = upstream_of(&client, listener, false).await.as_deref() == Some("reviews-v1");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !routed {
            return Err(format!(
                "Envoy never routed reviews to v1; its log ends:\n{}",
                tail(&envoy.log(), 20)
            ));
        }
        Ok(Scene {
            slot: spec.slot,
            xds: launch.xds,
            admin: launch.admin,
            rudder,
            _envoy: envoy,
            traffic: Traffic::start(listener),
            tls,
            dir,
            client,
            _upstreams: upstreams,
        })
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    fn listener(&self) -> SocketAddr {
        SocketAddr::new(self.slot.addresses().envoy.into(), TRAFFIC_PORT)
    }

    /// What times the rule edits; it owns the rule's state, so it can run beside the attack.
    pub fn editor(&self) -> Editor {
        Editor {
            config_dir: self.config_dir(),
            listener: self.listener(),
            client: self.client.clone(),
            default_subset: "v1",
            rudder: self.rudder.pid,
        }
    }

    /// `GET /ready` on the admin port over a new connection, as a kubelet probes: how long it
    /// took to answer 200, or why not.
    pub async fn ready_time(&self, limit: Duration) -> Result<Duration, String> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let response = client
            .get(format!("http://{}/ready", self.admin))
            .timeout(limit)
            .send()
            .await
            .map_err(|e| format!("{e}"))?;
        if response.status().is_success() {
            Ok(started.elapsed())
        } else {
            Err(format!("status {}", response.status()))
        }
    }
}

/// Edits the rule everyone but jason follows and times its arrival at the Envoy.
pub struct Editor {
    config_dir: PathBuf,
    listener: SocketAddr,
    client: reqwest::Client,
    default_subset: &'static str,
    /// rudder's pid: an edit stops waiting once rudder is gone.
    rudder: u32,
}

impl Editor {
    /// Moves everyone but jason to the other subset and waits until the Envoy routes a request
    /// there: how long that took, or `None` if not within `limit` (or rudder died).
    pub async fn edit(&mut self, limit: Duration) -> Option<Duration> {
        let next = if self.default_subset == "v1" {
            "v2"
        } else {
            "v1"
        };
        let expected = format!("reviews-{next}");
        let started = Instant::now();
        if let Err(error) = config::write_virtual_service(&self.config_dir, next) {
            eprintln!("hostile: the edit was not written: {error}");
            return None;
        }
        self.default_subset = next;
        while started.elapsed() < limit && Rudder::alive(self.rudder) {
            let answer = upstream_of(&self.client, self.listener, false).await;
            if answer.as_deref() == Some(expected.as_str()) {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

async fn ready(client: &reqwest::Client, admin: SocketAddr) -> bool {
    client
        .get(format!("http://{admin}/ready"))
        .send()
        .await
        .is_ok_and(|response| response.status().is_success())
}

/// Which upstream answered a request for `reviews` through the Envoy listener, as jason or
/// not; `None` if the request failed.
async fn upstream_of(
    client: &reqwest::Client,
    listener: SocketAddr,
    jason: bool,
) -> Option<String> {
    match get(client, listener, jason).await {
        Ok(echo) => Some(echo.upstream),
        Err(_) => None,
    }
}

async fn get(client: &reqwest::Client, listener: SocketAddr, jason: bool) -> Result<Echo, String> {
    let mut request = client
        .get(format!("http://{listener}/"))
        .header("host", "reviews");
    if jason {
        request = request.header("end-user", "jason");
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    response.json::<Echo>().await.map_err(|e| e.to_string())
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Requests for `reviews` through the Envoy, jason's and others' in turn, one at a time, until
/// stopped; it counts what failed.
pub struct Traffic {
    counts: Arc<Counts>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Counts {
    stop: AtomicBool,
    answered: AtomicU64,
    failed: AtomicU64,
    first_failures: Mutex<Vec<String>>,
}

impl Traffic {
    fn start(listener: SocketAddr) -> Traffic {
        let counts = Arc::new(Counts::default());
        let task = {
            let counts = counts.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .expect("an HTTP client");
                let mut jason = false;
                while !counts.stop.load(Ordering::SeqCst) {
                    match get(&client, listener, jason).await {
                        Ok(_) => {
                            counts.answered.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(error) => {
                            counts.failed.fetch_add(1, Ordering::SeqCst);
                            let mut failures = counts
                                .first_failures
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner);
                            if failures.len() < 5 {
                                failures.push(error);
                            }
                        }
                    }
                    jason = !jason;
                    tokio::time::sleep(TRAFFIC_PAUSE).await;
                }
            })
        };
        Traffic { counts, task }
    }

    /// (answered, failed) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.answered.load(Ordering::SeqCst),
            self.counts.failed.load(Ordering::SeqCst),
        )
    }

    pub fn first_failures(&self) -> Vec<String> {
        self.counts
            .first_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub async fn stop(&mut self) {
        self.counts.stop.store(true, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.task.abort();
    }
}
