//! Workload identities for tests that need rudder to send Secrets: rudder serving xDS over
//! mutual TLS from a test CA, and SPIFFE client certificates for the proxies that connect, as
//! Envoy's bootstrap or an in-process client reads them. rudder sends credentials only to a
//! proxy whose identity it verified and that may read its namespace's Secrets; the tests' rudder
//! lets [`GATEWAY_SERVICE_ACCOUNT`] of any namespace they use read them.

use rudder::bootstrap::{ClientCertificate, XdsClientTls};
use rudder::xds::auth::{NamedReaders, ServiceAccount, XdsAuth};
use rudder::xds::{TlsFiles, XdsOptions, XdsTls};
use std::sync::Arc;

use super::ads::XdsTlsClient;
use super::certs::TestCa;

/// The service account of Istio's ingress gateway Deployment.
pub const GATEWAY_SERVICE_ACCOUNT: &str = "istio-ingressgateway-service-account";

/// The name rudder's xDS certificate carries.
pub const SERVER_NAME: &str = "rudder.test";

/// The namespaces whose gateway service account may read Secrets in the tests.
const READER_NAMESPACES: [&str; 3] = ["istio-system", "gw", "bookinfo"];

/// A CA for rudder's xDS port and the proxies' client certificates.
pub struct MeshCa {
    ca: TestCa,
    _dir: tempfile::TempDir,
}

impl Default for MeshCa {
    fn default() -> Self {
        Self::new()
    }
}

impl MeshCa {
    pub fn new() -> MeshCa {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca = TestCa::new(dir.path());
        ca.issue_server("rudder", &[SERVER_NAME]);
        MeshCa { ca, _dir: dir }
    }

    /// `xds` serving mutual TLS with this CA, the gateways' service accounts allowed to read
    /// Secrets.
    pub fn serve(&self, xds: XdsOptions) -> XdsOptions {
        let tls = XdsTls::load(TlsFiles {
            certificate: self.ca.path("rudder.pem"),
            private_key: self.ca.path("rudder-key.pem"),
            client_ca: Some(self.ca.path("ca.pem")),
        })
        .expect("rudder's certificates load");
        let readers: std::collections::BTreeSet<ServiceAccount> = READER_NAMESPACES
            .iter()
            .map(|namespace| ServiceAccount {
                namespace: namespace.to_string(),
                name: GATEWAY_SERVICE_ACCOUNT.to_string(),
            })
            .collect();
        XdsOptions {
            tls: Some(tls),
            auth: XdsAuth {
                readers: vec![Arc::new(NamedReaders(readers))],
                ..xds.auth.clone()
            },
            ..xds
        }
    }

    /// Issues (once) the certificate of `namespace/service_account`; its file name.
    fn issue(&self, namespace: &str, service_account: &str) -> String {
        let name = format!("{namespace}.{service_account}");
        if !self.ca.path(&format!("{name}.pem")).exists() {
            let uri = format!("spiffe://cluster.local/ns/{namespace}/sa/{service_account}");
            self.ca.issue_client_with_uri(&name, &uri);
        }
        name
    }

    /// How a stock Envoy of `namespace/service_account` reaches rudder.
    pub fn envoy_tls(&self, namespace: &str, service_account: &str) -> XdsClientTls {
        let name = self.issue(namespace, service_account);
        let path = |file: String| self.ca.path(&file).display().to_string();
        XdsClientTls {
            ca_file: path("ca.pem".to_string()),
            client_certificate: Some(ClientCertificate {
                certificate_file: path(format!("{name}.pem")),
                private_key_file: path(format!("{name}-key.pem")),
            }),
            server_name: Some(SERVER_NAME.to_string()),
        }
    }

    /// How an in-process ADS client of `namespace/service_account` reaches rudder.
    pub fn client_tls(&self, namespace: &str, service_account: &str) -> XdsTlsClient {
        let name = self.issue(namespace, service_account);
        XdsTlsClient {
            ca: self.ca.path("ca.pem"),
            server_name: SERVER_NAME.to_string(),
            certificate: Some((
                self.ca.path(&format!("{name}.pem")),
                self.ca.path(&format!("{name}-key.pem")),
            )),
        }
    }

    /// A file of the CA's directory (`ca.pem`, `rudder.pem`, `NAMESPACE.SA.pem`, ...).
    pub fn path(&self, file: &str) -> std::path::PathBuf {
        self.ca.path(file)
    }
}
