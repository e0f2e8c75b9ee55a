use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConnectionPoolSettings, Destination, Port, ServerTlsSettings, WorkloadLabels};

/// `Sidecar.spec`: what the proxies of some workloads listen for and can reach.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Sidecar {
    /// Selects the workloads this Sidecar applies to; without it, every workload in the
    /// namespace without a more specific Sidecar.
    pub workload_selector: Option<WorkloadLabels>,
    /// Inbound traffic to the attached workload.
    pub ingress: Vec<IngressListener>,
    /// Outbound traffic from the attached workload to other services.
    pub egress: Vec<EgressListener>,
    /// Configuration for the outbound traffic policy.
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    /// Settings controlling the volume of connections Envoy will accept from the network.
    pub inbound_connection_pool: Option<ConnectionPoolSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct IngressListener {
    /// The port associated with the listener.
    pub port: Port,
    /// The IP (IPv4 or IPv6) to which the listener should be bound.
    pub bind: Option<String>,
    /// How traffic to the listener is expected to be captured (or not).
    pub capture_mode: Option<CaptureMode>,
    /// The IP endpoint or Unix domain socket to which traffic should be forwarded to.
    pub default_endpoint: Option<String>,
    /// TLS termination for requests from outside the mesh.
    pub tls: Option<ServerTlsSettings>,
    /// Settings controlling the volume of connections Envoy will accept from the network.
    pub connection_pool: Option<ConnectionPoolSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct EgressListener {
    /// The port associated with the listener; without it, all ports of the hosts.
    pub port: Option<Port>,
    /// The IP or the Unix domain socket to which the listener should be bound to.
    pub bind: Option<String>,
    /// How traffic to the listener is expected to be captured (or not).
    pub capture_mode: Option<CaptureMode>,
    /// Service hosts exposed by the listener in `namespace/dnsName` format.
    pub hosts: Vec<String>,
}

/// `IstioIngressListener.captureMode` and `IstioEgressListener.captureMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaptureMode {
    Default,
    Iptables,
    None,
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct OutboundTrafficPolicy {
    /// `REGISTRY_ONLY` or `ALLOW_ANY`.
    pub mode: Option<OutboundTrafficPolicyMode>,
    /// Where to send traffic to unknown destinations under `ALLOW_ANY`.
    pub egress_proxy: Option<Destination>,
}

/// `OutboundTrafficPolicy.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundTrafficPolicyMode {
    RegistryOnly,
    AllowAny,
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of Istio's Sidecar reference, in one object.
    const EXAMPLE: &str = r#"
workloadSelector:
  labels:
    app: ratings
ingress:
- port:
    number: 9080
    protocol: HTTP
    name: somename
  defaultEndpoint: unix:///var/run/someuds.sock
  connectionPool:
    http:
      http1MaxPendingRequests: 1024
- port:
    number: 8443
    protocol: HTTPS
    name: external
  bind: 172.16.1.32
  captureMode: NONE
  defaultEndpoint: 127.0.0.1:8080
  tls:
    mode: SIMPLE
    privateKey: "/etc/istio/ratings/tls.key"
    serverCertificate: "/etc/istio/ratings/tls.crt"
egress:
- port:
    number: 9080
    protocol: HTTP
    name: egresshttp
  hosts:
  - "prod-us1/*"
- bind: 127.0.0.1
  captureMode: NONE
  port:
    number: 3306
    protocol: MYSQL
    name: egressmysql
  hosts:
  - "*/mysql.foo.com"
- hosts:
  - "istio-system/*"
  - "./*"
outboundTrafficPolicy:
  mode: ALLOW_ANY
  egressProxy:
    host: foo.bar.com
    subset: v1
    port:
      number: 443
inboundConnectionPool:
  http:
    http1MaxPendingRequests: 100
    http2MaxRequests: 1000
"#;

    #[test]
    fn parses_the_reference_examples() {
        let sidecar: Sidecar = serde_saphyr::from_str(EXAMPLE).unwrap();
        assert_eq!(sidecar.workload_selector.unwrap().labels["app"], "ratings");
        assert_eq!(sidecar.ingress[1].capture_mode, Some(CaptureMode::None));
        assert_eq!(
            sidecar.ingress[1]
                .tls
                .as_ref()
                .unwrap()
                .private_key
                .as_deref(),
            Some("/etc/istio/ratings/tls.key")
        );
        assert_eq!(sidecar.egress[1].port.as_ref().unwrap().number, 3306);
        assert_eq!(sidecar.egress[2].port, None);
        assert_eq!(sidecar.egress[2].hosts, ["istio-system/*", "./*"]);
        let policy = sidecar.outbound_traffic_policy.unwrap();
        assert_eq!(policy.mode, Some(OutboundTrafficPolicyMode::AllowAny));
        assert_eq!(policy.egress_proxy.unwrap().host, "foo.bar.com");
        let pool = sidecar.inbound_connection_pool.unwrap();
        assert_eq!(pool.http.unwrap().http2_max_requests, Some(1000));
    }

    #[test]
    fn unknown_enum_values_and_fields_are_tolerated() {
        let sidecar: Sidecar = serde_json::from_value(serde_json::json!({
            "egress": [{"hosts": ["./*"], "captureMode": "EBPF", "newField": 1}],
            "outboundTrafficPolicy": {"mode": "SOMETIMES"}
        }))
        .unwrap();
        assert_eq!(sidecar.egress[0].capture_mode, Some(CaptureMode::Unknown));
        assert_eq!(
            sidecar.outbound_traffic_policy.unwrap().mode,
            Some(OutboundTrafficPolicyMode::Unknown)
        );
    }
}
