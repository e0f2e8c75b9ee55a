use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Port;

/// `Gateway.spec`: a load balancer at the edge of the mesh, made of the proxies its selector
/// picks.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Gateway {
    /// A list of server specifications.
    pub servers: Vec<Server>,
    /// Labels that select the pods/VMs on which this gateway configuration is applied.
    pub selector: BTreeMap<String, String>,
}

/// One port the gateway listens on, with the hosts it exposes there.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Server {
    /// The Port on which the proxy should listen for incoming connections.
    pub port: Port,
    /// The ip or the Unix domain socket to which the listener should be bound to.
    pub bind: Option<String>,
    /// One or more hosts exposed by this gateway (`namespace/host` allowed).
    pub hosts: Vec<String>,
    /// Set of TLS related options that govern the server's behavior.
    pub tls: Option<ServerTlsSettings>,
    /// The loopback IP endpoint or Unix domain socket to which traffic should be forwarded to
    /// by default.
    pub default_endpoint: Option<String>,
    /// An optional name of the server, when set must be unique across all servers.
    pub name: Option<String>,
}

/// TLS settings of a gateway server or a Sidecar ingress listener.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerTlsSettings {
    /// If set to true, the load balancer will send a 301 redirect for all HTTP connections.
    pub https_redirect: bool,
    /// Indicates whether connections to this port should be secured using TLS.
    pub mode: Option<ServerTlsMode>,
    /// Path to the file holding the server-side TLS certificate.
    pub server_certificate: Option<String>,
    /// Path to the file holding the server's private key.
    pub private_key: Option<String>,
    /// Path to the CA certificates used to verify client certificates.
    pub ca_certificates: Option<String>,
    /// Path to the certificate revocation list used to verify client certificates.
    pub ca_crl: Option<String>,
    /// The name of the secret that holds the TLS certs including the CA certificates.
    pub credential_name: Option<String>,
    /// Like `credentialName`, for several certificates (e.g. RSA and ECDSA).
    pub credential_names: Vec<String>,
    /// Like `serverCertificate` and `privateKey`, for several certificates.
    pub tls_certificates: Vec<TlsCertificate>,
    /// For mutual TLS, the name of the secret or configmap that holds CA certificates.
    pub ca_cert_credential_name: Option<String>,
    /// A list of alternate names to verify the subject identity of client certificates.
    pub subject_alt_names: Vec<String>,
    /// Base64-encoded SHA-256 hashes of the SPKIs of authorized client certificates.
    pub verify_certificate_spki: Vec<String>,
    /// Hex-encoded SHA-256 hashes of the authorized client certificates.
    pub verify_certificate_hash: Vec<String>,
    /// Minimum TLS protocol version.
    pub min_protocol_version: Option<TlsProtocol>,
    /// Maximum TLS protocol version.
    pub max_protocol_version: Option<TlsProtocol>,
    /// If specified, only support the specified cipher list.
    pub cipher_suites: Vec<String>,
    /// Accept client certificates that fail verification.
    pub insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsCertificate {
    pub server_certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificates: Option<String>,
}

/// `ServerTLSSettings.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTlsMode {
    Passthrough,
    Simple,
    Mutual,
    AutoPassthrough,
    IstioMutual,
    OptionalMutual,
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

/// `ServerTLSSettings.minProtocolVersion` and `maxProtocolVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TlsProtocol {
    #[serde(rename = "TLS_AUTO")]
    TlsAuto,
    #[serde(rename = "TLSV1_0")]
    TlsV1_0,
    #[serde(rename = "TLSV1_1")]
    TlsV1_1,
    #[serde(rename = "TLSV1_2")]
    TlsV1_2,
    #[serde(rename = "TLSV1_3")]
    TlsV1_3,
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of Istio's Gateway reference, in one object.
    const EXAMPLE: &str = r#"
selector:
  app: my-gateway-controller
servers:
- port:
    number: 80
    name: http
    protocol: HTTP
  hosts:
  - uk.bookinfo.com
  - eu.bookinfo.com
  tls:
    httpsRedirect: true
- port:
    number: 443
    name: https-443
    protocol: HTTPS
  hosts:
  - uk.bookinfo.com
  - eu.bookinfo.com
  tls:
    mode: SIMPLE
    serverCertificate: /etc/certs/servercert.pem
    privateKey: /etc/certs/privatekey.pem
- port:
    number: 9443
    name: https-9443
    protocol: HTTPS
  hosts:
  - "bookinfo-namespace/*.bookinfo.com"
  tls:
    mode: SIMPLE
    credentialName: bookinfo-secret
    minProtocolVersion: TLSV1_2
    maxProtocolVersion: TLSV1_3
    cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384]
- port:
    number: 9080
    name: http-wildcard
    protocol: HTTP
  hosts:
  - "ns1/*"
  - "ns2/foo.bar.com"
- port:
    number: 2379
    name: mongo
    protocol: MONGO
    targetPort: 12379
  bind: 0.0.0.0
  hosts:
  - "*"
  name: mongo-server
  defaultEndpoint: 127.0.0.1:2379
- port:
    number: 8443
    name: https-mutual
    protocol: HTTPS
  hosts: ["*"]
  tls:
    mode: MUTUAL
    credentialNames: [rsa-cert, ecdsa-cert]
    subjectAltNames: [client.example.com]
    caCrl: /etc/certs/crl.pem
    tlsCertificates:
    - serverCertificate: /etc/a.pem
      privateKey: /etc/a.key
"#;

    #[test]
    fn parses_the_reference_examples() {
        let gateway: Gateway = serde_saphyr::from_str(EXAMPLE).unwrap();
        assert_eq!(gateway.selector["app"], "my-gateway-controller");
        assert_eq!(gateway.servers.len(), 6);
        assert!(gateway.servers[0].tls.as_ref().unwrap().https_redirect);
        let tls = gateway.servers[2].tls.as_ref().unwrap();
        assert_eq!(tls.mode, Some(ServerTlsMode::Simple));
        assert_eq!(tls.credential_name.as_deref(), Some("bookinfo-secret"));
        assert_eq!(tls.min_protocol_version, Some(TlsProtocol::TlsV1_2));
        assert_eq!(tls.max_protocol_version, Some(TlsProtocol::TlsV1_3));
        let mongo = &gateway.servers[4];
        assert_eq!(mongo.port.target_port, Some(12379));
        assert_eq!(mongo.port.protocol, "MONGO");
        assert_eq!(mongo.bind.as_deref(), Some("0.0.0.0"));
        assert_eq!(mongo.default_endpoint.as_deref(), Some("127.0.0.1:2379"));
        let mutual = gateway.servers[5].tls.as_ref().unwrap();
        assert_eq!(mutual.credential_names, ["rsa-cert", "ecdsa-cert"]);
        assert_eq!(mutual.tls_certificates.len(), 1);
    }

    #[test]
    fn unknown_enum_values_and_fields_are_tolerated() {
        let gateway: Gateway = serde_json::from_value(serde_json::json!({
            "servers": [{
                "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                "hosts": ["*"],
                "newField": "x",
                "tls": {"mode": "NEW_MODE", "minProtocolVersion": "TLSV1_4"}
            }]
        }))
        .unwrap();
        let tls = gateway.servers[0].tls.as_ref().unwrap();
        assert_eq!(tls.mode, Some(ServerTlsMode::Unknown));
        assert_eq!(tls.min_protocol_version, Some(TlsProtocol::Unknown));
    }
}
