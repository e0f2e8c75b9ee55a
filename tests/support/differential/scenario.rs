//! One differential scenario as written under `testdata/differential/<name>/`: the Istio YAML both
//! control planes serve (every `*.yaml` but `scenario.yaml`), and `scenario.yaml`, which says which
//! proxies attach (node identities), the mesh config, the loopback upstreams behind the services'
//! endpoints and the requests sent through each proxy. Only reads and checks those files; running
//! them is `run`'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::allowlist::Variant;

/// `scenario.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario shows, and which of Istio's samples or tasks it comes from.
    pub description: String,
    /// Shared fragments from `testdata/differential/_common/`: `NAME.yaml` joins the config and
    /// `NAME.upstreams.yaml` (if any) the upstreams; the scenario's own upstreams of the same
    /// name replace those.
    #[serde(default)]
    pub include: Vec<String>,
    /// Mesh config lines added to `enableAutoMtls: false` (see `run::MESH_BASE`).
    #[serde(default)]
    pub mesh: String,
    /// The variants of the suite that run it: `file` (tests/differential.rs, the default) and
    /// `kube` (tests/differential_kube.rs; see `kube` for what it converts). A scenario only for
    /// `kube` may hold Kubernetes objects (Services, EndpointSlices, Pods with `status.podIP`).
    #[serde(default = "file_only")]
    pub variants: Vec<Variant>,
    pub proxies: Vec<ProxySpec>,
    #[serde(default)]
    pub upstreams: Vec<UpstreamSpec>,
    #[serde(default)]
    pub probes: Vec<Probe>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyKind {
    Sidecar,
    Router,
}

/// A stock Envoy attached to each control plane in turn, with this node identity.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    /// How probes and differences name it.
    pub name: String,
    pub kind: ProxyKind,
    pub namespace: String,
    /// The Pod name in the node id (`TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local`).
    pub pod: String,
    #[serde(default = "default_ip")]
    pub ip: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `NONE` (listeners bind, probes reach them) or `REDIRECT` (config only).
    #[serde(default = "default_interception")]
    pub interception: String,
}

fn file_only() -> Vec<Variant> {
    vec![Variant::File]
}

fn default_ip() -> String {
    "127.0.0.1".to_string()
}

fn default_interception() -> String {
    "NONE".to_string()
}

/// An upstream behind a service endpoint: it answers with its name (see tests/support/upstream).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    pub name: String,
    /// A loopback IP:PORT, as the ServiceEntry's endpoint says.
    pub address: String,
    /// `tcp`: a plain TCP server that answers with its name; else HTTP.
    #[serde(default)]
    pub tcp: bool,
    /// Answer every request with this status (HTTP).
    #[serde(default)]
    pub status: Option<u16>,
    /// Answer every request after this many milliseconds (HTTP).
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

/// A request sent through a proxy the same way under both control planes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub name: String,
    /// The proxy it goes through (default: the first).
    #[serde(default)]
    pub proxy: Option<String>,
    /// Where the proxy listens: 127.0.0.1:PORT unless `address` says IP:PORT.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub address: Option<String>,
    /// The Host header (HTTP).
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    /// Sent this many times; the set of upstreams that answered is compared (for weights).
    #[serde(default = "one")]
    pub repeat: u32,
    /// A plain TCP exchange instead of HTTP: sends this text, compares the answer.
    #[serde(default)]
    pub tcp: Option<String>,
    /// Waits this long before reading upstream counts (mirrored requests arrive late).
    #[serde(default)]
    pub settle_ms: u64,
}

fn default_path() -> String {
    "/".to_string()
}

fn default_method() -> String {
    "GET".to_string()
}

fn one() -> u32 {
    1
}

/// A scenario directory, read and checked.
pub struct ScenarioDir {
    pub name: String,
    pub dir: PathBuf,
    pub scenario: Scenario,
    /// The Istio YAML files (not `scenario.yaml`).
    pub config_files: Vec<PathBuf>,
}

/// Where scenarios live.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/differential")
}

/// The names of every scenario directory, sorted.
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root())
        .expect("testdata/differential exists")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join("scenario.yaml").is_file())
        .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

impl ScenarioDir {
    pub fn load(name: &str) -> Result<ScenarioDir, String> {
        let dir = root().join(name);
        let text = std::fs::read_to_string(dir.join("scenario.yaml"))
            .map_err(|error| format!("{name}/scenario.yaml: {error}"))?;
        let scenario: Scenario = serde_saphyr::from_str(&text)
            .map_err(|error| format!("{name}/scenario.yaml: {error}"))?;
        let mut config_files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|error| format!("{name}: {error}"))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                path.extension().is_some_and(|ext| ext == "yaml")
                    && path.file_name().is_some_and(|file| file != "scenario.yaml")
            })
            .collect();
        config_files.sort();
        let mut scenario = scenario;
        for include in scenario.include.clone() {
            let common = root().join("_common");
            let config = common.join(format!("{include}.yaml"));
            if !config.is_file() {
                return Err(format!("{name}: no _common/{include}.yaml"));
            }
            config_files.push(config);
            let upstreams = common.join(format!("{include}.upstreams.yaml"));
            if let Ok(text) = std::fs::read_to_string(&upstreams) {
                let shared: Vec<UpstreamSpec> = serde_saphyr::from_str(&text)
                    .map_err(|error| format!("{}: {error}", upstreams.display()))?;
                for upstream in shared {
                    if !scenario
                        .upstreams
                        .iter()
                        .any(|own| own.name == upstream.name)
                    {
                        scenario.upstreams.push(upstream);
                    }
                }
            }
        }
        let proxy_names: Vec<&str> = scenario.proxies.iter().map(|p| p.name.as_str()).collect();
        if proxy_names.is_empty() {
            return Err(format!("{name}/scenario.yaml: no proxies"));
        }
        for probe in &scenario.probes {
            if let Some(proxy) = &probe.proxy
                && !proxy_names.contains(&proxy.as_str())
            {
                return Err(format!(
                    "{name}/scenario.yaml: probe {} names no proxy {proxy}",
                    probe.name
                ));
            }
            if probe.port.is_none() && probe.address.is_none() {
                return Err(format!(
                    "{name}/scenario.yaml: probe {} has neither port nor address",
                    probe.name
                ));
            }
        }
        Ok(ScenarioDir {
            name: name.to_string(),
            dir,
            scenario,
            config_files,
        })
    }

    /// The proxy a probe goes through.
    pub fn proxy_of<'a>(&'a self, probe: &'a Probe) -> &'a str {
        probe
            .proxy
            .as_deref()
            .unwrap_or(self.scenario.proxies[0].name.as_str())
    }
}
