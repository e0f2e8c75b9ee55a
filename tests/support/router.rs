//! Gateways end to end: rudder serving a config directory in-process, stock Envoys attached to it
//! as Istio gateways (`router` proxies, which Gateway selectors pick by their labels) or as
//! sidecars, free loopback ports for gateway servers, and the clients that talk to them: curl for
//! HTTP and HTTPS, plain TCP, and rustls to see which certificate a listener presents. Holds no
//! expectations about Istio's behaviour; the tests do.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use rudder::bootstrap::{AdsApiType, XdsClientTls};
use rudder::serve::Server;
use rudder::xds::{TlsFiles, XdsTls};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::envoy_process::EnvoyProcess;
use super::identity::{GATEWAY_SERVICE_ACCOUNT, MeshCa};
use super::mesh::{local_serve_options, replace_file};
use super::upstream::Echo;

/// Where Istio installs its gateways, and where their credentials live.
pub const ISTIO_SYSTEM: &str = "istio-system";

/// rudder serving a config directory of its own, over mutual TLS so that gateways may be sent
/// their credentials (see [`MeshCa`]).
pub struct ControlPlane {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub ca: MeshCa,
}

impl ControlPlane {
    /// Writes `files` into a fresh config directory and starts rudder on it.
    pub async fn start(files: &[(&str, String)]) -> ControlPlane {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).expect("write a config file");
        }
        Self::serve(dir, None).await
    }

    /// Starts rudder on a copy of the files of `source` (e.g. one of `examples/`), plus `files`,
    /// serving xDS with the certificates `tls` names instead of the test CA's.
    pub async fn start_from(
        source: &Path,
        files: &[(&str, String)],
        tls: TlsFiles,
    ) -> ControlPlane {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let entries = std::fs::read_dir(source)
            .unwrap_or_else(|error| panic!("read {}: {error}", source.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if let Some(name) = path.file_name() {
                std::fs::copy(&path, dir.path().join(name)).expect("copy an example file");
            }
        }
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).expect("write a config file");
        }
        let tls = XdsTls::load(tls).expect("the xDS certificates load");
        Self::serve(dir, Some(tls)).await
    }

    async fn serve(dir: tempfile::TempDir, tls: Option<XdsTls>) -> ControlPlane {
        let ca = MeshCa::new();
        let mut options = local_serve_options(vec![dir.path().to_path_buf()]);
        options.xds = ca.serve(options.xds);
        if let Some(tls) = tls {
            options.xds.tls = Some(tls);
        }
        let server = Server::start(options).await.expect("rudder starts");
        ControlPlane { dir, server, ca }
    }

    /// Replaces a config file (write aside, then rename).
    pub fn write(&self, name: &str, contents: &str) {
        replace_file(self.dir.path(), name, contents);
    }

    /// A stock Envoy attached as the gateway Pod `pod` in `istio-system` with IP `ip` and
    /// `labels`, as Istio's gateway deployments are: node id
    /// `router~IP~POD.istio-system~istio-system.svc.cluster.local`.
    pub fn router(
        &self,
        ip: &str,
        pod: &str,
        labels: &[(&str, &str)],
        api_type: AdsApiType,
    ) -> EnvoyProcess {
        let node_id = format!("router~{ip}~{pod}.{ISTIO_SYSTEM}~{ISTIO_SYSTEM}.svc.cluster.local");
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let metadata = json!({"NAMESPACE": ISTIO_SYSTEM, "LABELS": labels});
        let tls = self.ca.envoy_tls(ISTIO_SYSTEM, GATEWAY_SERVICE_ACCOUNT);
        self.envoy(&node_id, metadata, api_type, tls)
    }

    /// A stock Envoy attached as the sidecar of `pod` (label `app: APP`) in `namespace`, without
    /// interception: its outbound listeners bind on 127.0.0.1.
    pub fn sidecar(
        &self,
        ip: &str,
        pod: &str,
        namespace: &str,
        app: &str,
        api_type: AdsApiType,
    ) -> EnvoyProcess {
        let node_id = format!("sidecar~{ip}~{pod}.{namespace}~{namespace}.svc.cluster.local");
        let metadata = json!({
            "NAMESPACE": namespace,
            "INTERCEPTION_MODE": "NONE",
            "LABELS": {"app": app},
        });
        let tls = self.ca.envoy_tls(namespace, "default");
        self.envoy(&node_id, metadata, api_type, tls)
    }

    fn envoy(
        &self,
        node_id: &str,
        metadata: Value,
        api_type: AdsApiType,
        tls: XdsClientTls,
    ) -> EnvoyProcess {
        let address = self.server.xds_address().to_string();
        EnvoyProcess::start_with_tls(node_id, metadata, &address, api_type, Some(tls))
    }

    /// What to print when a gateway does not do what a test expects: the config rudder rejected,
    /// and what `envoy` has and logged.
    pub async fn diagnose(&self, envoy: &EnvoyProcess) -> String {
        let configz = http_text(&format!(
            "http://{}/debug/inputz",
            self.server.admin_address()
        ))
        .await;
        let errors = serde_json::from_str::<Value>(&configz)
            .ok()
            .and_then(|configz| serde_json::to_string_pretty(&configz["errors"]).ok())
            .unwrap_or(configz);
        let listeners = envoy_admin(envoy, "/config_dump?resource=dynamic_listeners").await;
        let log = envoy.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        format!(
            "rudder's config errors:\n{errors}\nEnvoy's listeners:\n{listeners}\nEnvoy's log (last lines):\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

/// `count` distinct ports nothing listens on at `ip` right now, for gateway servers to bind.
pub fn free_ports(ip: &str, count: usize) -> Vec<u16> {
    // All held open until every port is picked, so that none is handed out twice.
    let held: Vec<TcpListener> = (0..count)
        .map(|_| {
            TcpListener::bind((ip, 0))
                .unwrap_or_else(|error| panic!("no free port on {ip}: {error}"))
        })
        .collect();
    held.iter()
        .map(|listener| listener.local_addr().expect("a bound address").port())
        .collect()
}

/// Envoy's admin endpoint `path`, as text.
pub async fn envoy_admin(envoy: &EnvoyProcess, path: &str) -> String {
    http_text(&format!("http://{}{path}", envoy.admin)).await
}

/// The value of one Envoy counter or gauge, by full name (0 when Envoy does not have it yet).
pub async fn envoy_stat(envoy: &EnvoyProcess, name: &str) -> u64 {
    // Filter on the last part only: cluster names hold characters a regex would read.
    let last = name.rsplit('.').next().unwrap_or(name);
    envoy_admin(envoy, &format!("/stats?filter={last}"))
        .await
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

async fn http_text(url: &str) -> String {
    match reqwest::get(url).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(error) => format!("({url}: {error})"),
    }
}

/// One request with the `curl` command line, to `SCHEME://HOST:PORT/PATH` with HOST resolved to
/// a loopback address (`--resolve`), so that the Host header and SNI are HOST.
pub struct Curl {
    url: String,
    args: Vec<String>,
}

/// What curl came back with.
#[derive(Debug)]
pub struct CurlReply {
    /// The HTTP status; `None` when no response came (refused, reset, handshake failed).
    pub status: Option<u16>,
    pub body: String,
    /// The `Location` of a redirect.
    pub redirect: String,
    /// curl's exit code and message when it failed.
    pub error: String,
}

impl CurlReply {
    /// The upstream that answered, when an echoing upstream did.
    pub fn upstream(&self) -> Option<String> {
        serde_json::from_str::<Echo>(&self.body)
            .ok()
            .map(|echo| echo.upstream)
    }
}

impl Curl {
    pub fn new(scheme: &str, host: &str, address: SocketAddr, path: &str) -> Curl {
        let port = address.port();
        Curl {
            url: format!("{scheme}://{host}:{port}{path}"),
            args: vec![
                "--resolve".to_string(),
                format!("{host}:{port}:{}", address.ip()),
            ],
        }
    }

    /// Trusts the CA in `ca_file` (and nothing else).
    pub fn ca(mut self, ca_file: &Path) -> Curl {
        self.args.push("--cacert".to_string());
        self.args.push(ca_file.display().to_string());
        self
    }

    /// Presents a client certificate.
    pub fn client_certificate(mut self, certificate: &Path, key: &Path) -> Curl {
        for (flag, file) in [("--cert", certificate), ("--key", key)] {
            self.args.push(flag.to_string());
            self.args.push(file.display().to_string());
        }
        self
    }

    /// Sends `Host: HOST` instead of the host in the URL (which stays the TLS server name).
    pub fn host_header(mut self, host: &str) -> Curl {
        self.args.push("--header".to_string());
        self.args.push(format!("Host: {host}"));
        self
    }

    pub async fn send(&self) -> CurlReply {
        let output = tokio::process::Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "5"])
            .args(["--write-out", "\n%{http_code}\n%{redirect_url}"])
            .args(&self.args)
            .arg(&self.url)
            .output()
            .await
            .expect("run curl (is it installed?)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut parts = stdout.rsplitn(3, '\n');
        let redirect = parts.next().unwrap_or_default().to_string();
        let code = parts.next().unwrap_or_default();
        let body = parts.next().unwrap_or_default().to_string();
        let error = if output.status.success() {
            String::new()
        } else {
            format!(
                "curl {} exited {:?}: {}",
                self.url,
                output.status.code(),
                String::from_utf8_lossy(&output.stderr).trim()
            )
        };
        CurlReply {
            status: code.parse().ok().filter(|code| *code != 0),
            body,
            redirect,
            error,
        }
    }
}

/// Sends `message` over a plain TCP connection to `address` and reads the answer to the end.
pub async fn tcp_exchange(address: SocketAddr, message: &str) -> Result<String, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream.write_all(message.as_bytes()).await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => Err(format!("{address}: {error}")),
        Err(_) => Err(format!("{address}: no answer within 5s")),
    }
}

/// The certificate (DER) a TLS listener at `address` presents for `server_name`, once the
/// handshake with `connector` succeeded.
pub async fn served_certificate(
    connector: &tokio_rustls::TlsConnector,
    address: SocketAddr,
    server_name: &str,
) -> Result<Vec<u8>, String> {
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|error| error.to_string())?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(address).await?;
        connector.connect(name, tcp).await
    };
    let tls = tokio::time::timeout(Duration::from_secs(5), handshake)
        .await
        .map_err(|_| format!("{address}: no handshake within 5s"))?
        .map_err(|error| format!("{address}: {error}"))?;
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|certificate| certificate.to_vec())
        .ok_or_else(|| format!("{address}: no certificate presented"))
}
