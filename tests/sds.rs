//! Gateway credentials over SDS, as a proxy sees them on the wire: an in-process ADS client, in
//! both ADS modes, over mutual TLS with SPIFFE client certificates, against `serve_xds` serving
//! a model built from YAML Secrets. A gateway whose identity may read its namespace's Secrets
//! gets those it asks for, a rotated Secret arrives with a new version, a Secret that turns
//! malformed is withdrawn (not served at its old key); an identity not allowed to read Secrets
//! gets the CA bundles only; sidecars and gateways of other namespaces get nothing; a plaintext
//! connection gets nothing whatever node it claims; a client certificate without a SPIFFE id is
//! refused; a wildcard subscription gets nothing; the debug endpoints never show a private key.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::core::v3::{DataSource, Node};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::secret::Type;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use rudder::admin::{AdminState, Readiness, serve_admin};
use rudder::metrics::Metrics;
use rudder::translate::ResourceType;
use rudder::xds::auth::{NamedReaders, XdsAuth};
use rudder::xds::{Registry, Snapshot, TlsFiles, XdsOptions, XdsTls, serve_xds};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::Streaming;

use support::ads::{
    XdsTlsClient, delta_stream, delta_stream_on, snapshot, sotw_stream, sotw_stream_on, tls_client,
};
use support::certs::TestCa;

const GATEWAY: &str = "router~10.0.0.9~ingress-a.gw~gw.svc.cluster.local";
const OTHER_GATEWAY: &str = "router~10.0.0.8~ingress-b.other~other.svc.cluster.local";
const SIDECAR: &str = "sidecar~10.0.0.7~app-a.gw~gw.svc.cluster.local";
const CERTIFICATE: &str = "kubernetes://cred";
const CA: &str = "kubernetes://cred-cacert";
const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

const CA_PEM: &str = include_str!("../testdata/credentials/ca.pem");
const CERT_PEM: &str = include_str!("../testdata/credentials/server.pem");
const KEY_PEM: &str = include_str!("../testdata/credentials/server-key.pem");
const OTHER_KEY_PEM: &str = include_str!("../testdata/credentials/other-key.pem");

/// The Secret `cred` in namespace `gw`, written as `stringData`.
fn credential(chain: &str, key: &str) -> String {
    let block = |pem: &str| -> String { pem.lines().map(|line| format!("    {line}\n")).collect() };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: cred, namespace: gw}}\n\
         type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}  ca.crt: |\n{}",
        block(chain),
        block(key),
        block(CA_PEM)
    )
}

/// rudder's xDS and admin servers, in-process, fed snapshots by the test.
struct Rudder {
    xds: SocketAddr,
    admin: SocketAddr,
    snapshots: watch::Sender<Arc<Snapshot>>,
    /// The CA of rudder's certificate and of the clients' (`None`: plaintext xDS).
    ca: Option<TestCa>,
    _dir: tempfile::TempDir,
    _shutdown: Vec<oneshot::Sender<()>>,
}

impl Rudder {
    /// Serving mutual TLS, with `gw/ingress` allowed to read the Secrets of `gw`.
    async fn start(yaml: &str) -> Rudder {
        Self::start_with(yaml, true).await
    }

    /// Serving plaintext xDS, with the same readers.
    async fn start_plaintext(yaml: &str) -> Rudder {
        Self::start_with(yaml, false).await
    }

    async fn start_with(yaml: &str, tls: bool) -> Rudder {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca = tls.then(|| {
            let ca = TestCa::new(dir.path());
            ca.issue_server("rudder", &["rudder.test"]);
            ca
        });
        let options = XdsOptions {
            tls: ca.as_ref().map(|ca| {
                XdsTls::load(TlsFiles {
                    certificate: ca.path("rudder.pem"),
                    private_key: ca.path("rudder-key.pem"),
                    client_ca: Some(ca.path("ca.pem")),
                })
                .expect("rudder's certificates load")
            }),
            auth: XdsAuth {
                readers: vec![Arc::new(NamedReaders(
                    ["gw/ingress".parse().unwrap()].into(),
                ))],
                ..XdsAuth::default()
            },
            ..XdsOptions::default()
        };
        let (snapshots, receiver) = watch::channel(snapshot(yaml, 1));
        let registry = Registry::default();
        let metrics = Arc::new(Metrics::new());
        let xds = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addresses = (xds.local_addr().unwrap(), admin.local_addr().unwrap());
        let (stop_xds, xds_stopped) = oneshot::channel::<()>();
        let (stop_admin, admin_stopped) = oneshot::channel::<()>();
        tokio::spawn(serve_xds(
            xds,
            receiver.clone(),
            metrics.clone(),
            registry.clone(),
            options,
            async move {
                let _ = xds_stopped.await;
            },
        ));
        let state = AdminState {
            snapshots: receiver,
            metrics,
            registry,
            readiness: Readiness::default(),
        };
        tokio::spawn(serve_admin(
            admin,
            state,
            rudder::admin::AdminOptions::default(),
            async move {
                let _ = admin_stopped.await;
            },
        ));
        Rudder {
            xds: addresses.0,
            admin: addresses.1,
            snapshots,
            ca,
            _dir: dir,
            _shutdown: vec![stop_xds, stop_admin],
        }
    }

    /// How a client presenting a certificate for `identity` (a URI SAN, or only a DNS name
    /// when `None`) reaches this rudder's TLS port.
    fn client_tls(&self, identity: Option<&str>) -> XdsTlsClient {
        let ca = self.ca.as_ref().expect("rudder serves TLS");
        let name = identity
            .unwrap_or("dns-only")
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        if !ca.path(&format!("{name}.pem")).exists() {
            match identity {
                Some(uri) => ca.issue_client_with_uri(&name, uri),
                None => ca.issue_client(&name),
            }
        }
        XdsTlsClient {
            ca: ca.path("ca.pem"),
            server_name: "rudder.test".into(),
            certificate: Some((
                ca.path(&format!("{name}.pem")),
                ca.path(&format!("{name}-key.pem")),
            )),
        }
    }

    fn publish(&self, yaml: &str) {
        let generation = self.snapshots.borrow().generation + 1;
        self.snapshots.send_replace(snapshot(yaml, generation));
    }

    /// A proxy `node_id` connecting with the SPIFFE id of its node's namespace and service
    /// account `ingress` (or over plaintext, if rudder serves that).
    async fn connect(&self, node_id: &str, delta: bool) -> Client {
        let namespace = node_id
            .rsplit('~')
            .next()
            .and_then(|domain| domain.split('.').next())
            .expect("a node id");
        let identity = format!("spiffe://cluster.local/ns/{namespace}/sa/ingress");
        self.connect_as(node_id, delta, Some(&identity))
            .await
            .expect("the stream opens")
    }

    /// A proxy `node_id` presenting a certificate for `identity` (see [`Rudder::client_tls`]).
    async fn connect_as(
        &self,
        node_id: &str,
        delta: bool,
        identity: Option<&str>,
    ) -> Result<Client, tonic::Status> {
        let node = Some(Node {
            id: node_id.to_string(),
            ..Default::default()
        });
        if self.ca.is_some() {
            let mut client = tls_client(self.xds, &self.client_tls(identity), None).await;
            return Ok(if delta {
                let (requests, responses) = delta_stream_on(&mut client).await?;
                Client::Delta {
                    requests,
                    responses,
                    node,
                }
            } else {
                let (requests, responses) = sotw_stream_on(&mut client).await?;
                Client::Sotw {
                    requests,
                    responses,
                    node,
                    names: Vec::new(),
                }
            });
        }
        Ok(if delta {
            let (requests, responses) = delta_stream(self.xds).await;
            Client::Delta {
                requests,
                responses,
                node,
            }
        } else {
            let (requests, responses) = sotw_stream(self.xds).await;
            Client::Sotw {
                requests,
                responses,
                node,
                names: Vec::new(),
            }
        })
    }

    /// A GET on the admin server: (status, body).
    async fn admin_get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://{}{path}", self.admin))
            .await
            .expect("admin answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("a body"))
    }
}

/// What one SDS response said: the Secrets it carried by name, with the version it carried them
/// at (the response version for SotW, each resource's for delta), and the names it withdrew.
#[derive(Debug, Default)]
struct Update {
    secrets: BTreeMap<String, (String, Secret)>,
    removed: Vec<String>,
}

/// One ADS stream from a proxy's side, subscribed to SDS only.
enum Client {
    Sotw {
        requests: mpsc::Sender<DiscoveryRequest>,
        responses: Streaming<DiscoveryResponse>,
        node: Option<Node>,
        names: Vec<String>,
    },
    Delta {
        requests: mpsc::Sender<DeltaDiscoveryRequest>,
        responses: Streaming<DeltaDiscoveryResponse>,
        node: Option<Node>,
    },
}

fn decode_secret(any: &Any) -> Secret {
    assert_eq!(any.type_url, ResourceType::Secret.type_url());
    Secret::decode(any.value.as_slice()).expect("a Secret")
}

impl Client {
    /// Asks for the Secrets `names`, as a gateway does when its listeners refer to them.
    async fn subscribe(&mut self, subscribe: &[&str]) {
        let type_url = ResourceType::Secret.type_url().to_string();
        match self {
            Client::Sotw {
                requests,
                node,
                names,
                ..
            } => {
                *names = subscribe.iter().map(|name| name.to_string()).collect();
                let request = DiscoveryRequest {
                    node: node.take(),
                    type_url,
                    resource_names: names.clone(),
                    ..Default::default()
                };
                requests.send(request).await.expect("the stream is open");
            }
            Client::Delta { requests, node, .. } => {
                let request = DeltaDiscoveryRequest {
                    node: node.take(),
                    type_url,
                    resource_names_subscribe: subscribe.iter().map(|n| n.to_string()).collect(),
                    ..Default::default()
                };
                requests.send(request).await.expect("the stream is open");
            }
        }
    }

    /// The next SDS response, ACKed.
    async fn recv(&mut self) -> Update {
        match self {
            Client::Sotw {
                requests,
                responses,
                names,
                ..
            } => {
                let response = next(responses).await;
                let version = response.version_info.clone();
                let secrets = response
                    .resources
                    .iter()
                    .map(decode_secret)
                    .map(|secret| (secret.name.clone(), (version.clone(), secret)))
                    .collect();
                let ack = DiscoveryRequest {
                    type_url: response.type_url,
                    version_info: response.version_info,
                    response_nonce: response.nonce,
                    resource_names: names.clone(),
                    ..Default::default()
                };
                requests.send(ack).await.expect("the stream is open");
                Update {
                    secrets,
                    removed: Vec::new(),
                }
            }
            Client::Delta {
                requests,
                responses,
                ..
            } => {
                let response = next(responses).await;
                let secrets = response
                    .resources
                    .iter()
                    .map(|resource| {
                        let secret = decode_secret(resource.resource.as_ref().expect("a body"));
                        (resource.name.clone(), (resource.version.clone(), secret))
                    })
                    .collect();
                let ack = DeltaDiscoveryRequest {
                    type_url: response.type_url,
                    response_nonce: response.nonce,
                    ..Default::default()
                };
                requests.send(ack).await.expect("the stream is open");
                Update {
                    secrets,
                    removed: response.removed_resources,
                }
            }
        }
    }

    /// The status the stream ends with.
    async fn failure(&mut self) -> tonic::Status {
        let outcome = match self {
            Client::Sotw { responses, .. } => tokio::time::timeout(WAIT, responses.message())
                .await
                .map(|message| message.map(|_| ())),
            Client::Delta { responses, .. } => tokio::time::timeout(WAIT, responses.message())
                .await
                .map(|message| message.map(|_| ())),
        };
        match outcome {
            Ok(Err(status)) => status,
            other => panic!("the stream should have failed: {other:?}"),
        }
    }

    /// Asserts that nothing arrives for a while.
    async fn assert_quiet(&mut self) {
        let arrived = match self {
            Client::Sotw { responses, .. } => tokio::time::timeout(QUIET, responses.message())
                .await
                .is_ok(),
            Client::Delta { responses, .. } => tokio::time::timeout(QUIET, responses.message())
                .await
                .is_ok(),
        };
        assert!(!arrived, "a response arrived when none was due");
    }
}

async fn next<M>(responses: &mut Streaming<M>) -> M {
    tokio::time::timeout(WAIT, responses.message())
        .await
        .expect("a response in time")
        .expect("the stream is healthy")
        .expect("the stream is open")
}

/// The bytes of `source`, which must be inline; `what` names it for the failure message.
fn inline_bytes(source: &Option<DataSource>, what: &str) -> Vec<u8> {
    match source.as_ref().and_then(|source| source.specifier.clone()) {
        Some(Specifier::InlineBytes(bytes)) => bytes,
        other => panic!("an inline {what}, not {other:?}"),
    }
}

fn private_key(secret: &Secret) -> Vec<u8> {
    let Some(Type::TlsCertificate(tls)) = &secret.r#type else {
        panic!("{} is not a certificate", secret.name);
    };
    inline_bytes(&tls.private_key, "key")
}

fn chain(secret: &Secret) -> Vec<u8> {
    let Some(Type::TlsCertificate(tls)) = &secret.r#type else {
        panic!("{} is not a certificate", secret.name);
    };
    inline_bytes(&tls.certificate_chain, "chain")
}

fn trusted_ca(secret: &Secret) -> Vec<u8> {
    let Some(Type::ValidationContext(context)) = &secret.r#type else {
        panic!("{} is not a validation context", secret.name);
    };
    inline_bytes(&context.trusted_ca, "CA")
}

/// Runs an async test body once per ADS mode.
macro_rules! in_both_modes {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn sotw() {
                super::$body(false).await;
            }
            #[tokio::test]
            async fn delta() {
                super::$body(true).await;
            }
        }
    };
}

in_both_modes!(a_gateway_gets_its_credentials_and_their_rotations, gateway);
async fn gateway(delta: bool) {
    let rudder = Rudder::start(&credential(CERT_PEM, KEY_PEM)).await;
    let mut gateway = rudder.connect(GATEWAY, delta).await;
    gateway.subscribe(&[CERTIFICATE, CA]).await;
    let first = gateway.recv().await;
    assert_eq!(
        first.secrets.keys().collect::<Vec<_>>(),
        [CERTIFICATE, CA],
        "{first:?}"
    );
    let (version, certificate) = &first.secrets[CERTIFICATE];
    assert_eq!(private_key(certificate), KEY_PEM.as_bytes());
    assert_eq!(chain(certificate), CERT_PEM.as_bytes());
    assert_eq!(trusted_ca(&first.secrets[CA].1), CA_PEM.as_bytes());
    gateway.assert_quiet().await;

    // Rotated: the chain now carries the CA after the leaf. It reaches the gateway with a new
    // version, without reconnecting.
    let rotated_chain = format!("{CERT_PEM}{CA_PEM}");
    rudder.publish(&credential(&rotated_chain, KEY_PEM));
    let rotated = gateway.recv().await;
    let (new_version, certificate) = &rotated.secrets[CERTIFICATE];
    assert_ne!(new_version, version);
    assert_eq!(chain(certificate), rotated_chain.as_bytes());
    if delta {
        // Delta sends only what changed: the CA did not.
        assert!(!rotated.secrets.contains_key(CA), "{rotated:?}");
    }

    // Replaced by a key that is not the certificate's: reported, and rudder serves the
    // credential no more, not even at its previous key. (Envoy keeps a Secret it has until no
    // listener uses it: the gateway's listeners leave out the server that named it.)
    rudder.publish(&credential(CERT_PEM, OTHER_KEY_PEM));
    let withdrawn = gateway.recv().await;
    assert!(
        !withdrawn.secrets.contains_key(CERTIFICATE),
        "{withdrawn:?}"
    );
    if delta {
        assert!(withdrawn.removed.contains(&CERTIFICATE.to_string()));
    }
    assert!(
        rudder.snapshots.borrow().errors.iter().any(|error| error
            .to_string()
            .contains("Secret gw/cred: stringData.tls.key")),
        "{:?}",
        rudder.snapshots.borrow().errors
    );
}

in_both_modes!(only_gateways_of_the_namespace_get_credentials, strangers);
async fn strangers(delta: bool) {
    let rudder = Rudder::start(&credential(CERT_PEM, KEY_PEM)).await;
    for node in [SIDECAR, OTHER_GATEWAY] {
        let mut proxy = rudder.connect(node, delta).await;
        proxy.subscribe(&[CERTIFICATE, CA]).await;
        // The answer, if any, holds nothing: SotW answers with an empty set, delta with the
        // names that do not exist.
        let answer = proxy.recv().await;
        assert!(answer.secrets.is_empty(), "{node} got {answer:?}");
        proxy.assert_quiet().await;
    }
}

in_both_modes!(plaintext_gets_no_secret_whatever_node_it_claims, plaintext);
async fn plaintext(delta: bool) {
    let rudder = Rudder::start_plaintext(&credential(CERT_PEM, KEY_PEM)).await;
    let mut gateway = rudder.connect_as(GATEWAY, delta, None).await.unwrap();
    gateway.subscribe(&[CERTIFICATE, CA]).await;
    let answer = gateway.recv().await;
    assert!(answer.secrets.is_empty(), "plaintext got {answer:?}");
    gateway.assert_quiet().await;
}

in_both_modes!(
    an_identity_not_allowed_to_read_secrets_gets_ca_only,
    ca_only
);
async fn ca_only(delta: bool) {
    let rudder = Rudder::start(&credential(CERT_PEM, KEY_PEM)).await;
    let identity = Some("spiffe://cluster.local/ns/gw/sa/default");
    let mut gateway = rudder.connect_as(GATEWAY, delta, identity).await.unwrap();
    gateway.subscribe(&[CERTIFICATE, CA]).await;
    let answer = gateway.recv().await;
    assert_eq!(
        answer.secrets.keys().collect::<Vec<_>>(),
        [CA],
        "{answer:?}"
    );
}

in_both_modes!(a_certificate_without_spiffe_id_is_refused, dns_only);
async fn dns_only(delta: bool) {
    let rudder = Rudder::start(&credential(CERT_PEM, KEY_PEM)).await;
    let mut gateway = rudder.connect_as(GATEWAY, delta, None).await.unwrap();
    gateway.subscribe(&[CERTIFICATE, CA]).await;
    let status = gateway.failure().await;
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("SPIFFE"), "{status:?}");
}

in_both_modes!(
    a_certificate_of_another_namespace_is_refused,
    other_namespace
);
async fn other_namespace(delta: bool) {
    let rudder = Rudder::start(&credential(CERT_PEM, KEY_PEM)).await;
    let identity = Some("spiffe://cluster.local/ns/other/sa/ingress");
    let mut gateway = rudder.connect_as(GATEWAY, delta, identity).await.unwrap();
    gateway.subscribe(&[CERTIFICATE, CA]).await;
    let status = gateway.failure().await;
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn a_wildcard_subscription_gets_no_secret() {
    let rudder = Rudder::start(&credential(CERT_PEM, KEY_PEM)).await;
    let mut gateway = rudder.connect(GATEWAY, true).await;
    gateway.subscribe(&["*"]).await;
    let answer = gateway.recv().await;
    assert!(answer.secrets.is_empty(), "a wildcard got {answer:?}");
}

#[tokio::test]
async fn debug_endpoints_show_no_private_key() {
    let rudder = Rudder::start(&credential(CERT_PEM, KEY_PEM)).await;
    // Dumped as connected, with the Secrets its identity may read.
    let mut gateway = rudder.connect(GATEWAY, false).await;
    gateway.subscribe(&[CERTIFICATE]).await;
    gateway.recv().await;
    let (status, dump) = rudder
        .admin_get(&format!("/debug/envoy_config_dump?proxyID={GATEWAY}"))
        .await;
    assert_eq!(status, 200);
    let dump: serde_json::Value = serde_json::from_str(&dump).expect("JSON");
    let secrets = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|config| config["@type"] == "type.googleapis.com/envoy.admin.v3.SecretsConfigDump")
        .expect("a secrets dump");
    let certificate = secrets["dynamic_active_secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|secret| secret["name"] == CERTIFICATE)
        .expect("the certificate");
    assert_eq!(
        certificate["secret"]["tls_certificate"]["private_key"]["inline_string"],
        "[redacted]"
    );
    let key_base64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(KEY_PEM)
    };
    for path in [
        format!("/debug/config_dump?proxyID={GATEWAY}"),
        format!("/debug/envoy_config_dump?proxyID={GATEWAY}"),
        "/debug/configz".to_string(),
        "/debug/inputz".to_string(),
        "/debug/syncz".to_string(),
    ] {
        let (status, body) = rudder.admin_get(&path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!body.contains("PRIVATE KEY"), "{path}: {body}");
        assert!(!body.contains(&key_base64[..40]), "{path} holds the key");
    }
}
