use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PortSelector, WorkloadSelector};
use crate::duration::Duration;

/// `DestinationRule.spec`: policies that apply to traffic for a service after routing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct DestinationRule {
    /// The name of a service from the service registry.
    pub host: String,
    /// Traffic policies to apply (load balancing policy, connection pool sizes, outlier
    /// detection, TLS).
    pub traffic_policy: Option<TrafficPolicy>,
    /// One or more named sets that represent individual versions of a service.
    pub subsets: Vec<Subset>,
    /// A list of namespaces to which this destination rule is exported.
    pub export_to: Vec<String>,
    /// Criteria used to select the specific set of pods/VMs on which this rule applies.
    pub workload_selector: Option<WorkloadSelector>,
}

/// A named set of a service's endpoints, selected by labels.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Subset {
    /// Name of the subset.
    pub name: String,
    /// Labels apply a filter over the endpoints of a service in the service registry.
    pub labels: BTreeMap<String, String>,
    /// Traffic policies that apply to this subset.
    pub traffic_policy: Option<TrafficPolicy>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct TrafficPolicy {
    /// Settings controlling the load balancer algorithms.
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Settings controlling the volume of connections to an upstream service.
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Settings controlling eviction of unhealthy hosts from the load balancing pool.
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS related settings for connections to the upstream service.
    pub tls: Option<ClientTlsSettings>,
    /// Traffic policies specific to individual ports.
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Configuration of tunneling TCP over other transport or application layers.
    pub tunnel: Option<TunnelSettings>,
    /// The upstream PROXY protocol settings.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Specifies a limit on concurrent retries in relation to the number of active requests.
    pub retry_budget: Option<RetryBudget>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct PortTrafficPolicy {
    /// Specifies the number of a port on the destination service on which this policy applies.
    pub port: Option<PortSelector>,
    pub load_balancer: Option<LoadBalancerSettings>,
    pub connection_pool: Option<ConnectionPoolSettings>,
    pub outlier_detection: Option<OutlierDetection>,
    pub tls: Option<ClientTlsSettings>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadBalancerSettings {
    /// A standard load balancing algorithm.
    pub simple: Option<SimpleLb>,
    /// Consistent hashing (ring hash or Maglev) on a header, cookie, source IP or parameter.
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Locality load balancer settings; overrides the mesh-wide settings.
    pub locality_lb_setting: Option<LocalityLbSetting>,
    /// Deprecated: use `warmup`. The slow start window for new endpoints.
    pub warmup_duration_secs: Option<Duration>,
    /// Slow start for new endpoints.
    pub warmup: Option<WarmupConfiguration>,
    /// Zone-aware load balancing (Istio 1.29 and later).
    pub zone_aware_lb_setting: Option<ZoneAwareLbSetting>,
}

/// `LoadBalancerSettings.simple`; values rudder does not know are kept as `Unknown`, as istiod
/// falls back to its default for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    Unspecified,
    LeastConn,
    Random,
    Passthrough,
    RoundRobin,
    LeastRequest,
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsistentHashLb {
    /// Hash based on a specific HTTP header.
    pub http_header_name: Option<String>,
    /// Hash based on HTTP cookie.
    pub http_cookie: Option<HttpCookie>,
    /// Hash based on the source IP address.
    pub use_source_ip: Option<bool>,
    /// Hash based on a specific HTTP query parameter.
    pub http_query_parameter_name: Option<String>,
    /// The ring/modulo hash load balancer.
    pub ring_hash: Option<RingHash>,
    /// The Maglev load balancer.
    pub maglev: Option<MagLev>,
    /// Deprecated: use `ringHash`.
    pub minimum_ring_size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpCookie {
    /// Name of the cookie.
    pub name: String,
    /// Path to set for the cookie.
    pub path: Option<String>,
    /// Lifetime of the cookie; a cookie is generated when it is absent.
    pub ttl: Option<Duration>,
    /// Additional attributes for the generated cookie.
    pub attributes: Vec<CookieAttribute>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct CookieAttribute {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RingHash {
    /// The minimum number of virtual nodes to use for the hash ring.
    pub minimum_ring_size: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct MagLev {
    /// The table size for Maglev hashing (a prime number).
    pub table_size: Option<u64>,
}

/// Locality-weighted load balancing; at most one of `distribute`, `failover` and
/// `failoverPriority` applies.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct LocalityLbSetting {
    /// Explicitly specify loadbalancing weight across different zones and geographical
    /// locations.
    pub distribute: Vec<LocalityDistribute>,
    /// Explicitly specify the region traffic will land on when endpoints in local region
    /// become unhealthy.
    pub failover: Vec<LocalityFailover>,
    /// An ordered list of labels used to sort endpoints for priority based load balancing.
    pub failover_priority: Vec<String>,
    /// Enable locality load balancing.
    pub enabled: Option<bool>,
}

/// Envoy's zone-aware load balancing, as Istio's `LoadBalancerSettings.zoneAwareLbSetting`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ZoneAwareLbSetting {
    /// Enable zone-aware load balancing.
    pub enabled: Option<bool>,
    /// The region traffic fails over to when endpoints in the local region become unhealthy.
    pub failover: Vec<LocalityFailover>,
    /// An ordered list of labels used to sort endpoints for priority based load balancing.
    pub failover_priority: Vec<String>,
    /// The fewest hosts in the local region for zone-aware load balancing to apply.
    pub min_cluster_size: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct LocalityDistribute {
    /// Originating locality, `/` separated, e.g. `region/zone/sub_zone`.
    pub from: String,
    /// Map of upstream localities to traffic distribution weights.
    pub to: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct LocalityFailover {
    /// Originating region.
    pub from: String,
    /// Destination region the traffic will fail over to.
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct WarmupConfiguration {
    /// Duration of the warmup period.
    pub duration: Option<Duration>,
    /// The minimum percentage of traffic an endpoint gets during warmup.
    pub minimum_percent: Option<f64>,
    /// The speed of traffic increase over the warmup duration (1.0 is linear).
    pub aggression: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConnectionPoolSettings {
    /// Settings common to both HTTP and TCP upstream connections.
    pub tcp: Option<TcpSettings>,
    /// HTTP connection pool settings.
    pub http: Option<HttpSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpSettings {
    /// Maximum number of HTTP1/TCP connections to a destination host.
    pub max_connections: Option<i32>,
    /// TCP connection timeout.
    pub connect_timeout: Option<Duration>,
    /// If set then set SO_KEEPALIVE on the socket to enable TCP Keepalives.
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// The maximum duration of a connection.
    pub max_connection_duration: Option<Duration>,
    /// The idle timeout for TCP connections.
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpKeepalive {
    /// Maximum number of keepalive probes to send without response.
    pub probes: Option<u32>,
    /// The time a connection needs to be idle before keep-alive probes start being sent.
    pub time: Option<Duration>,
    /// The time duration between keep-alive probes.
    pub interval: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpSettings {
    /// Maximum number of requests that will be queued while waiting for a connection.
    pub http1_max_pending_requests: Option<i32>,
    /// Maximum number of active requests to a destination.
    pub http2_max_requests: Option<i32>,
    /// Maximum number of requests per connection to a backend.
    pub max_requests_per_connection: Option<i32>,
    /// Maximum number of retries that can be outstanding to all hosts in a cluster.
    pub max_retries: Option<i32>,
    /// The idle timeout for upstream connection pool connections.
    pub idle_timeout: Option<Duration>,
    /// Specify if HTTP/1.1 connections should be upgraded to HTTP/2.
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    /// If set to true, client protocol will be preserved while initiating connection to backend.
    pub use_client_protocol: Option<bool>,
    /// The maximum number of concurrent streams allowed for a peer on one HTTP/2 connection.
    pub max_concurrent_streams: Option<i32>,
    /// HTTP/2 PING frames on upstream connections.
    pub http2_keep_alive: Option<Http2KeepAlive>,
}

/// `ConnectionPoolSettings.http.http2KeepAlive`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Http2KeepAlive {
    /// How often to send an HTTP/2 PING frame.
    pub interval: Option<Duration>,
    /// How long to wait for the answer to a PING before closing the connection.
    pub timeout: Option<Duration>,
}

/// `ConnectionPoolSettings.http.h2UpgradePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum H2UpgradePolicy {
    Default,
    DoNotUpgrade,
    Upgrade,
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct OutlierDetection {
    /// Deprecated: use `consecutive5xxErrors` or `consecutiveGatewayErrors`.
    pub consecutive_errors: Option<i32>,
    /// Whether to distinguish local origin failures from external errors.
    pub split_external_local_origin_errors: Option<bool>,
    /// The number of consecutive locally originated failures before ejection occurs.
    pub consecutive_local_origin_failures: Option<u32>,
    /// Number of gateway errors (502, 503, 504) before a host is ejected.
    pub consecutive_gateway_errors: Option<u32>,
    /// Number of 5xx errors before a host is ejected from the connection pool.
    pub consecutive_5xx_errors: Option<u32>,
    /// Time interval between ejection sweep analysis.
    pub interval: Option<Duration>,
    /// Minimum ejection duration.
    pub base_ejection_time: Option<Duration>,
    /// Maximum percentage of hosts in the load balancing pool that can be ejected.
    pub max_ejection_percent: Option<i32>,
    /// Outlier detection is enabled as long as this percentage of hosts is healthy.
    pub min_health_percent: Option<i32>,
    /// The HTTP response codes counted as errors by outlier detection.
    pub outlier_detection_http_error_codes: Vec<u32>,
}

/// TLS settings for connections to the upstream service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientTlsSettings {
    /// Indicates whether connections to this port should be secured using TLS.
    pub mode: Option<ClientTlsMode>,
    /// Path to the client certificate file; required for `MUTUAL` without `credentialName`.
    pub client_certificate: Option<String>,
    /// Path to the client private key file; required for `MUTUAL` without `credentialName`.
    pub private_key: Option<String>,
    /// Path to the CA certificates used to verify the server certificate.
    pub ca_certificates: Option<String>,
    /// The name of the secret that holds the TLS certs for the client.
    pub credential_name: Option<String>,
    /// A list of alternate names to verify the subject identity in the certificate.
    pub subject_alt_names: Vec<String>,
    /// SNI string to present to the server during TLS handshake.
    pub sni: Option<String>,
    /// Skip verifying the CA signature and SAN of the server certificate.
    pub insecure_skip_verify: Option<bool>,
    /// Path to the certificate revocation list used to verify the server certificate.
    pub ca_crl: Option<String>,
}

/// `ClientTLSSettings.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientTlsMode {
    Disable,
    Simple,
    Mutual,
    IstioMutual,
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct TunnelSettings {
    /// The protocol to use for tunneling: `CONNECT` (default) or `POST`.
    pub protocol: Option<String>,
    /// A host to which the downstream connection is tunneled.
    pub target_host: String,
    /// A port to which the downstream connection is tunneled.
    pub target_port: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyProtocol {
    /// The PROXY protocol version to use.
    pub version: Option<ProxyProtocolVersion>,
}

/// `ProxyProtocol.version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProxyProtocolVersion {
    V1,
    V2,
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RetryBudget {
    /// The limit on concurrent retries as a percentage of active and pending requests.
    pub percent: Option<f64>,
    /// The minimum retry concurrency allowed for the retry budget.
    pub min_retry_concurrency: Option<u32>,
    /// The window of requests the budget is computed over.
    pub budget_interval: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of Istio's DestinationRule reference, in one object.
    const EXAMPLE: &str = r#"
host: my-svc.prod.svc.cluster.local
exportTo: ["*"]
workloadSelector:
  matchLabels:
    app: ratings
trafficPolicy:
  loadBalancer:
    simple: LEAST_REQUEST
    localityLbSetting:
      enabled: true
      distribute:
      - from: us-west/zone1/*
        to:
          "us-west/zone1/*": 80
          "us-west/zone2/*": 20
      failover:
      - from: us-east
        to: eu-west
      failoverPriority:
      - topology.istio.io/network
    warmup:
      duration: 60s
      minimumPercent: 10
      aggression: 1.5
    warmupDurationSecs: 30s
  connectionPool:
    tcp:
      maxConnections: 100
      connectTimeout: 30ms
      tcpKeepalive:
        probes: 5
        time: 7200s
        interval: 75s
      maxConnectionDuration: 1h
      idleTimeout: 1h
    http:
      http1MaxPendingRequests: 10
      http2MaxRequests: 1000
      maxRequestsPerConnection: 10
      maxRetries: 3
      idleTimeout: 30s
      h2UpgradePolicy: UPGRADE
      useClientProtocol: true
      maxConcurrentStreams: 100
  outlierDetection:
    consecutive5xxErrors: 7
    consecutiveGatewayErrors: 5
    consecutiveLocalOriginFailures: 3
    splitExternalLocalOriginErrors: true
    consecutiveErrors: 2
    interval: 5m
    baseEjectionTime: 15m
    maxEjectionPercent: 50
    minHealthPercent: 30
  tls:
    mode: MUTUAL
    clientCertificate: /etc/certs/myclientcert.pem
    privateKey: /etc/certs/client_private_key.pem
    caCertificates: /etc/certs/rootcacerts.pem
    subjectAltNames: [spiffe://cluster.local/ns/default/sa/db]
    sni: my-nginx.mesh-external.svc.cluster.local
    insecureSkipVerify: false
    caCrl: /etc/certs/crl.pem
  portLevelSettings:
  - port:
      number: 80
    loadBalancer:
      simple: ROUND_ROBIN
  - port:
      number: 9080
    loadBalancer:
      consistentHash:
        httpCookie:
          name: user
          path: /
          ttl: 0s
          attributes:
          - name: SameSite
            value: Strict
          - name: Secure
        ringHash:
          minimumRingSize: 1024
    tls:
      mode: SIMPLE
      credentialName: client-credential
  tunnel:
    protocol: CONNECT
    targetHost: 192.168.1.2
    targetPort: 8080
  proxyProtocol:
    version: V2
  retryBudget:
    percent: 25
    minRetryConcurrency: 10
subsets:
- name: testversion
  labels:
    version: v3
  trafficPolicy:
    loadBalancer:
      consistentHash:
        maglev:
          tableSize: 65537
        useSourceIp: true
- name: v1
  labels:
    version: v1
"#;

    #[test]
    fn parses_the_reference_examples() {
        let rule: DestinationRule = serde_saphyr::from_str(EXAMPLE).unwrap();
        assert_eq!(
            rule.workload_selector.as_ref().unwrap().match_labels["app"],
            "ratings"
        );
        let policy = rule.traffic_policy.as_ref().unwrap();
        let lb = policy.load_balancer.as_ref().unwrap();
        assert_eq!(lb.simple, Some(SimpleLb::LeastRequest));
        let locality = lb.locality_lb_setting.as_ref().unwrap();
        assert_eq!(locality.distribute[0].to["us-west/zone1/*"], 80);
        assert_eq!(locality.failover[0].to, "eu-west");
        assert_eq!(lb.warmup.as_ref().unwrap().aggression, Some(1.5));
        assert_eq!(lb.warmup_duration_secs, Some(Duration::from_secs(30)));
        let pool = policy.connection_pool.as_ref().unwrap();
        let tcp = pool.tcp.as_ref().unwrap();
        assert_eq!(tcp.max_connections, Some(100));
        assert_eq!(tcp.connect_timeout, Some(Duration::from_millis(30)));
        assert_eq!(tcp.tcp_keepalive.as_ref().unwrap().probes, Some(5));
        let http = pool.http.as_ref().unwrap();
        assert_eq!(http.h2_upgrade_policy, Some(H2UpgradePolicy::Upgrade));
        assert_eq!(http.max_concurrent_streams, Some(100));
        let outlier = policy.outlier_detection.as_ref().unwrap();
        assert_eq!(outlier.consecutive_5xx_errors, Some(7));
        assert_eq!(outlier.split_external_local_origin_errors, Some(true));
        assert_eq!(outlier.base_ejection_time, Some(Duration::from_secs(900)));
        let tls = policy.tls.as_ref().unwrap();
        assert_eq!(tls.mode, Some(ClientTlsMode::Mutual));
        assert_eq!(tls.insecure_skip_verify, Some(false));
        let hash = policy.port_level_settings[1]
            .load_balancer
            .as_ref()
            .unwrap()
            .consistent_hash
            .as_ref()
            .unwrap();
        let cookie = hash.http_cookie.as_ref().unwrap();
        assert_eq!(cookie.ttl, Some(Duration::default()));
        assert_eq!(cookie.attributes[1].value, None);
        assert_eq!(hash.ring_hash.unwrap().minimum_ring_size, Some(1024));
        assert_eq!(policy.tunnel.as_ref().unwrap().target_port, 8080);
        assert_eq!(
            policy.proxy_protocol.unwrap().version,
            Some(ProxyProtocolVersion::V2)
        );
        assert_eq!(policy.retry_budget.unwrap().percent, Some(25.0));
        let subset_hash = rule.subsets[0]
            .traffic_policy
            .as_ref()
            .and_then(|p| p.load_balancer.as_ref())
            .and_then(|lb| lb.consistent_hash.as_ref())
            .unwrap();
        assert_eq!(subset_hash.maglev.unwrap().table_size, Some(65537));
        assert_eq!(rule.subsets[1].labels["version"], "v1");
    }

    #[test]
    fn unknown_enum_values_and_fields_are_tolerated() {
        let rule: DestinationRule = serde_json::from_value(serde_json::json!({
            "host": "a",
            "newField": 1,
            "trafficPolicy": {
                "loadBalancer": {"simple": "BEST_EFFORT", "newLbField": true},
                "connectionPool": {"http": {"h2UpgradePolicy": "SOMETIMES"}},
                "tls": {"mode": "QUANTUM"},
                "proxyProtocol": {"version": "V3"}
            }
        }))
        .unwrap();
        let policy = rule.traffic_policy.unwrap();
        assert_eq!(
            policy.load_balancer.unwrap().simple,
            Some(SimpleLb::Unknown)
        );
        assert_eq!(
            policy
                .connection_pool
                .unwrap()
                .http
                .unwrap()
                .h2_upgrade_policy,
            Some(H2UpgradePolicy::Unknown)
        );
        assert_eq!(policy.tls.unwrap().mode, Some(ClientTlsMode::Unknown));
        assert_eq!(
            policy.proxy_protocol.unwrap().version,
            Some(ProxyProtocolVersion::Unknown)
        );
    }

    #[test]
    fn wrong_types_are_refused() {
        let error = serde_json::from_value::<DestinationRule>(serde_json::json!({
            "host": "a",
            "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": "many"}}}
        }))
        .unwrap_err();
        assert!(error.to_string().contains("invalid type"), "{error}");
    }
}
