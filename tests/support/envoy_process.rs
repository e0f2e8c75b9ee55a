//! A real Envoy process started from a bootstrap that holds only node identity and ADS to rudder.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rudder::bootstrap::{AdsApiType, BootstrapOptions, XdsClientTls, bootstrap_json};
use serde_json::Value;

use super::envoy::envoy_binary;

/// A running Envoy; killed when dropped. Its log is kept in a file and printed on request.
pub struct EnvoyProcess {
    child: Child,
    pub admin: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl EnvoyProcess {
    /// Starts Envoy as the proxy `node_id` with `metadata`, talking ADS (`api_type`: state of the
    /// world or delta) to `xds_address`.
    pub fn start(
        node_id: &str,
        metadata: Value,
        xds_address: std::net::SocketAddr,
        api_type: AdsApiType,
    ) -> EnvoyProcess {
        Self::start_with_tls(node_id, metadata, &xds_address.to_string(), api_type, None)
    }

    /// Like [`EnvoyProcess::start`], with `args` added to Envoy's command line (e.g. a
    /// component's log level, for the load bench, which reads when Envoy applied each response).
    pub fn start_with_args(
        node_id: &str,
        metadata: Value,
        xds_address: std::net::SocketAddr,
        api_type: AdsApiType,
        args: &[&str],
    ) -> EnvoyProcess {
        let bootstrap = bootstrap(node_id, metadata, &xds_address.to_string(), api_type, None);
        Self::launch("envoy.json", &bootstrap, args)
    }

    /// Like [`EnvoyProcess::start`], reaching rudder at `xds_address` (HOST:PORT) over TLS as
    /// `xds_tls` says (plaintext if `None`).
    pub fn start_with_tls(
        node_id: &str,
        metadata: Value,
        xds_address: &str,
        api_type: AdsApiType,
        xds_tls: Option<XdsClientTls>,
    ) -> EnvoyProcess {
        let bootstrap = bootstrap(node_id, metadata, xds_address, api_type, xds_tls);
        Self::start_from_bootstrap("envoy.json", &bootstrap)
    }

    /// Starts Envoy with a bootstrap as text (e.g. what `rudder bootstrap` printed); `file_name`
    /// ends in `.json` or `.yaml`, which tells Envoy how to read it. Its admin address must be
    /// 127.0.0.1:0 (chosen by Envoy, and read back), so that Envoys run side by side.
    pub fn start_from_bootstrap(file_name: &str, bootstrap: &str) -> EnvoyProcess {
        Self::launch(file_name, bootstrap, &[])
    }

    fn launch(file_name: &str, bootstrap: &str, args: &[&str]) -> EnvoyProcess {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join(file_name);
        std::fs::write(&config, bootstrap).expect("write the bootstrap");
        let admin_path = dir.path().join("admin-address");
        let log = dir.path().join("envoy.log");
        let child = Command::new(envoy_binary())
            .arg("-c")
            .arg(&config)
            .args([
                "--use-dynamic-base-id",
                "--log-level",
                "info",
                "--concurrency",
                "1",
            ])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--log-path")
            .arg(&log)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start envoy");
        let deadline = Instant::now() + Duration::from_secs(20);
        let admin = loop {
            if let Ok(address) = std::fs::read_to_string(&admin_path)
                && !address.trim().is_empty()
            {
                break address.trim().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "envoy did not start its admin interface"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        EnvoyProcess {
            child,
            admin,
            log,
            _dir: dir,
        }
    }

    /// Envoy's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Envoy's `/config_dump` once `complete` says it holds `what` (within 30 s).
    pub async fn config_dump_when(&self, what: &str, complete: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let dump: Value = reqwest::get(format!("http://{}/config_dump", self.admin))
                .await
                .expect("Envoy's admin answers")
                .json()
                .await
                .expect("JSON");
            if complete(&dump) {
                return dump;
            }
            assert!(
                Instant::now() < deadline,
                "Envoy never got {what}; its log:\n{}\nits config dump: {dump:#}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A bootstrap that holds only node identity and ADS to `xds_address`, as text.
fn bootstrap(
    node_id: &str,
    metadata: Value,
    xds_address: &str,
    api_type: AdsApiType,
    xds_tls: Option<XdsClientTls>,
) -> String {
    bootstrap_json(&BootstrapOptions {
        node_id: node_id.to_string(),
        xds_address: xds_address.to_string(),
        metadata,
        admin_address: "127.0.0.1:0".parse().expect("an address"),
        api_type,
        xds_tls,
        access_log_service: None,
    })
    .expect("a bootstrap")
    .to_string()
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
