//! A small mesh for end-to-end tests: a config directory in a temporary folder, rudder serving
//! it in-process on 127.0.0.1:0, and one real Envoy sidecar attached with a bootstrap that holds
//! nothing but node identity and ADS, state of the world or delta. The sidecar runs with
//! `INTERCEPTION_MODE: NONE`, so its outbound listeners bind on 127.0.0.1 and requests go to them
//! directly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rudder::bootstrap::AdsApiType;
use rudder::serve::{KubeConnection, KubernetesOptions, ServeOptions, Server};
use rudder::source::kube::NamespaceFilter;
use rudder::xds::XdsOptions;
use serde_json::json;

use super::envoy_process::EnvoyProcess;
use super::upstream::Echo;

pub const NAMESPACE: &str = "bookinfo";
pub const NODE_ID: &str = "sidecar~127.0.0.1~client.bookinfo~bookinfo.svc.cluster.local";

/// One endpoint of a service: the Pod behind it.
pub struct Backend {
    pub pod: String,
    pub ip: String,
    pub version: String,
}

impl Backend {
    pub fn new(pod: &str, ip: &str, version: &str) -> Backend {
        Backend {
            pod: pod.to_string(),
            ip: ip.to_string(),
            version: version.to_string(),
        }
    }
}

/// A Service on `port` (named `http`), its Pods and one EndpointSlice, as YAML.
pub fn service_yaml(name: &str, cluster_ip: &str, port: u16, backends: &[Backend]) -> String {
    let mut docs = vec![format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
         spec:\n  clusterIP: {cluster_ip}\n  ports: [{{name: http, port: {port}}}]\n"
    )];
    for backend in backends {
        docs.push(format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: {NAMESPACE}\n  \
             labels: {{app: {name}, version: {version}}}\nstatus: {{podIP: {ip}}}\n",
            pod = backend.pod,
            version = backend.version,
            ip = backend.ip,
        ));
    }
    docs.push(endpoint_slice_yaml(name, port, backends));
    docs.join("---\n")
}

/// The EndpointSlice of a service, every backend ready.
pub fn endpoint_slice_yaml(name: &str, port: u16, backends: &[Backend]) -> String {
    let endpoints: String = backends
        .iter()
        .map(|b| {
            format!(
                "- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n  targetRef: {{kind: Pod, name: {pod}, namespace: {NAMESPACE}}}\n",
                ip = b.ip,
                pod = b.pod
            )
        })
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-slice\n  namespace: {NAMESPACE}\n  \
         labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints:\n{endpoints}"
    )
}

pub struct Mesh {
    pub api_type: AdsApiType,
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub envoy: EnvoyProcess,
    pub port: u16,
    client: reqwest::Client,
}

/// What a request through the sidecar came back with.
#[derive(Debug)]
pub enum Reply {
    Upstream(Echo),
    Status(u16),
    Failed(String),
}

impl Reply {
    pub fn upstream(&self) -> Option<&str> {
        match self {
            Reply::Upstream(echo) => Some(&echo.upstream),
            _ => None,
        }
    }
}

impl Mesh {
    /// Writes `files` into a fresh config directory, starts rudder and Envoy (speaking ADS as
    /// `api_type` says), and waits until Envoy's listener on `port` answers.
    pub async fn start(api_type: AdsApiType, port: u16, files: &[(&str, String)]) -> Mesh {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).expect("write a config file");
        }
        let config_dirs = vec![dir.path().to_path_buf()];
        Self::launch(
            api_type,
            port,
            dir,
            config_dirs,
            None,
            XdsOptions::default(),
            None,
        )
        .await
    }

    /// Like [`Mesh::start`], with a mesh config file (`mesh_config_path()`, outside the config
    /// directory, which is `config/` under `dir`), followed as it changes.
    pub async fn start_with_mesh_config(port: u16, files: &[(&str, String)], mesh: &str) -> Mesh {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("config");
        std::fs::create_dir(&config).expect("a config directory");
        for (name, contents) in files {
            std::fs::write(config.join(name), contents).expect("write a config file");
        }
        let mesh_file = dir.path().join("mesh.yaml");
        std::fs::write(&mesh_file, mesh).expect("write the mesh config");
        Self::launch(
            AdsApiType::default(),
            port,
            dir,
            vec![config],
            None,
            XdsOptions::default(),
            Some(mesh_file),
        )
        .await
    }

    /// The mesh config file of [`Mesh::start_with_mesh_config`].
    pub fn mesh_config_path(&self) -> PathBuf {
        self.dir.path().join("mesh.yaml")
    }

    /// Like [`Mesh::start`], with the xDS server run with `xds` (e.g. with a test hook).
    pub async fn start_with(
        api_type: AdsApiType,
        port: u16,
        files: &[(&str, String)],
        xds: XdsOptions,
    ) -> Mesh {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).expect("write a config file");
        }
        let config_dirs = vec![dir.path().to_path_buf()];
        Self::launch(api_type, port, dir, config_dirs, None, xds, None).await
    }

    /// Starts rudder watching the API server of `kubeconfig` (no config directory), and Envoy.
    pub async fn start_kubernetes(port: u16, kubeconfig: &Path) -> Mesh {
        let kubernetes = KubernetesOptions {
            connection: KubeConnection::Kubeconfig(kubeconfig.to_path_buf()),
            namespaces: NamespaceFilter::default(),
            lease_namespace: "istio-system".to_string(),
            control_plane_namespace: "istio-system".to_string(),
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        Self::launch(
            AdsApiType::default(),
            port,
            dir,
            Vec::new(),
            Some(kubernetes),
            XdsOptions::default(),
            None,
        )
        .await
    }

    async fn launch(
        api_type: AdsApiType,
        port: u16,
        dir: tempfile::TempDir,
        config_dirs: Vec<PathBuf>,
        kubernetes: Option<KubernetesOptions>,
        xds: XdsOptions,
        mesh_config_file: Option<PathBuf>,
    ) -> Mesh {
        let server = Server::start(ServeOptions {
            kubernetes,
            xds,
            mesh_config_file,
            ..local_serve_options(config_dirs)
        })
        .await
        .expect("rudder starts");
        let metadata = json!({
            "NAMESPACE": NAMESPACE,
            "INTERCEPTION_MODE": "NONE",
            "LABELS": {"app": "client"},
        });
        let envoy = EnvoyProcess::start(NODE_ID, metadata, server.xds_address(), api_type);
        let mesh = Mesh {
            api_type,
            dir,
            server,
            envoy,
            port,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client"),
        };
        let listening = mesh
            .wait_until(Duration::from_secs(20), || async {
                !matches!(
                    mesh.get("anything.invalid", "/", &[]).await,
                    Reply::Failed(_)
                )
            })
            .await;
        assert!(
            listening.is_some(),
            "Envoy ({api_type:?}) never served port {port}; its log:\n{}",
            mesh.envoy.log()
        );
        mesh
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces a config file the way editors and `kubectl cp` do: write aside, then rename.
    pub fn write(&self, name: &str, contents: &str) {
        replace_file(self.dir.path(), name, contents);
    }

    /// A GET through the sidecar with `Host: host`.
    pub async fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        get_through(&self.client, self.port, host, path, headers).await
    }

    /// Which upstream answers `host`, or a description of what came back instead.
    pub async fn upstream_of(&self, host: &str, headers: &[(&str, &str)]) -> String {
        match self.get(host, "/", headers).await {
            Reply::Upstream(echo) => echo.upstream,
            other => format!("{other:?}"),
        }
    }

    /// Polls `condition` every 10 ms until it holds; returns how long that took, or `None`.
    pub async fn wait_until<F, Fut>(&self, limit: Duration, condition: F) -> Option<Duration>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        wait_until(limit, condition).await
    }

    /// rudder's admin endpoint `path`, as text.
    pub async fn admin(&self, path: &str) -> String {
        let url = format!("http://{}{path}", self.server.admin_address());
        self.client
            .get(url)
            .send()
            .await
            .expect("admin answers")
            .text()
            .await
            .expect("admin body")
    }
}

/// A GET through a sidecar whose outbound listener is 127.0.0.1:`port`, with `Host: host`.
pub async fn get_through(
    client: &reqwest::Client,
    port: u16,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .header("host", host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => match response.json::<Echo>().await {
            Ok(echo) => Reply::Upstream(echo),
            Err(error) => Reply::Failed(error.to_string()),
        },
        Ok(response) => Reply::Status(response.status().as_u16()),
        Err(error) => Reply::Failed(error.to_string()),
    }
}

/// Replaces the file `name` in `dir` the way editors and `kubectl cp` do: write aside, then
/// rename, so that a watcher never reads half a file.
pub fn replace_file(dir: &Path, name: &str, contents: &str) {
    let aside = dir.join(format!(".{name}.tmp"));
    std::fs::write(&aside, contents).expect("write a config file");
    std::fs::rename(&aside, dir.join(name)).expect("rename a config file into place");
}

/// Polls `condition` every 10 ms until it holds; returns how long that took, or `None`.
pub async fn wait_until<F, Fut>(limit: Duration, mut condition: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// A DestinationRule with v1 and v2, and a VirtualService sending `end-user: jason` to
/// `jason_subset` and everyone else to `default_subset`. `header_match` is the match for jason.
pub fn reviews_rules_matching(
    jason_subset: &str,
    default_subset: &str,
    header_match: &str,
) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: bookinfo}}
spec:
  host: reviews
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: bookinfo}}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        end-user: {header_match}
    route:
    - destination: {{host: reviews, subset: {jason_subset}}}
  - route:
    - destination: {{host: reviews, subset: {default_subset}}}
"#
    )
}

/// The header match that picks jason exactly.
pub const JASON_EXACT: &str = "{exact: jason}";

/// `rudder serve`'s defaults on these config directories, with xDS and admin on free loopback
/// ports.
pub fn local_serve_options(config_dirs: Vec<PathBuf>) -> ServeOptions {
    ServeOptions {
        config_dirs,
        file_quiet_period: rudder::source::file::DEFAULT_QUIET_PERIOD,
        kubernetes: None,
        debounce: rudder::serve::Debounce::default(),
        xds_address: "127.0.0.1:0".parse().expect("an address"),
        admin_address: "127.0.0.1:0".parse().expect("an address"),
        admin: rudder::admin::AdminOptions::default(),
        xds: XdsOptions::default(),
        root_namespace: rudder::model::DEFAULT_ROOT_NAMESPACE.to_string(),
        dns_domain: rudder::model::DEFAULT_DNS_DOMAIN.to_string(),
        mesh_config_file: None,
    }
}

/// A test's own port (`19000 + N`) and addresses (`127.0.N.x` for workloads, `10.96.N.x` for
/// cluster IPs), so that tests running at once do not meet.
#[derive(Clone, Copy)]
pub struct TestNet(pub u8);

impl TestNet {
    pub fn port(self) -> u16 {
        19000 + u16::from(self.0)
    }

    pub fn ip(self, octet: u8) -> String {
        format!("127.0.{}.{octet}", self.0)
    }

    pub fn cluster_ip(self, octet: u8) -> String {
        format!("10.96.{}.{octet}", self.0)
    }

    pub fn address(self, octet: u8) -> String {
        format!("{}:{}", self.ip(octet), self.port())
    }

    /// A Service on this test's port with one Pod per `(pod, octet, version)`.
    pub fn service(self, name: &str, octet: u8, backends: &[(&str, u8, &str)]) -> String {
        self.service_on(name, octet, self.port(), backends)
    }

    /// A Service on `port` with one Pod per `(pod, octet, version)`.
    pub fn service_on(
        self,
        name: &str,
        octet: u8,
        port: u16,
        backends: &[(&str, u8, &str)],
    ) -> String {
        let backends: Vec<Backend> = backends
            .iter()
            .map(|(pod, ip, version)| Backend::new(pod, &self.ip(*ip), version))
            .collect();
        service_yaml(name, &self.cluster_ip(octet), port, &backends)
    }
}
