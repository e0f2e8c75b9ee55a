//! DestinationRule traffic policies on sidecar clusters and on the routes to them, as istiod
//! applies them (`cluster_traffic_policy.go`, `cluster_tls.go`, `cluster_builder.go` and the hash
//! policies of `route.go`):
//!
//! - The policy of `outbound|PORT|SUBSET|HOST` merges subset over port-level over top-level
//!   settings like istiod's `MergeSubsetTrafficPolicy`: a matching `portLevelSettings` entry
//!   replaces the top-level policy whole (no inheritance), and a subset's part replaces the
//!   merged part (all four parts when the subset has a matching port-level entry).
//! - `connectionPool` sets circuit-breaker thresholds (everything else stays at the maximum),
//!   `connect_timeout`, TCP keepalive, and the common HTTP protocol options; `h2UpgradePolicy`
//!   and `useClientProtocol` choose the upstream HTTP version.
//! - `outlierDetection` maps field by field, success-rate ejection off, and sets the panic
//!   threshold from `minHealthPercent`; every other outbound cluster has it at 0 (off), as
//!   istiod does.
//! - `loadBalancer` picks the policy (LEAST_REQUEST by default), slow start from `warmup` or
//!   `warmupDurationSecs`, RING_HASH or MAGLEV for `consistentHash` (and the routes' `hash_policy`),
//!   ORIGINAL_DST for PASSTHROUGH, and locality-weighted balancing when `distribute` or a failover
//!   that can happen is set (the weights and priorities themselves are in EDS, see `locality`).
//! - `tls` SIMPLE and MUTUAL become an `UpstreamTlsContext` that reads the certificate files
//!   directly (istiod hands the same files to its agent, which serves them over SDS); without
//!   `caCertificates` the system CA bundle is trusted, as istio-agent does. ISTIO_MUTUAL and
//!   `credentialName` are reported as not supported and leave the cluster plaintext.

use envoy_types::pb::envoy::config::cluster::v3::circuit_breakers::Thresholds;
use envoy_types::pb::envoy::config::cluster::v3::cluster::common_lb_config::{
    LocalityConfigSpecifier, LocalityWeightedLbConfig,
};
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, CommonLbConfig, DiscoveryType, LbConfig, LbPolicy, LeastRequestLbConfig,
    MaglevLbConfig, RingHashLbConfig, RoundRobinLbConfig, SlowStartConfig,
};
use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection as EnvoyOutlierDetection, UpstreamConnectionOptions,
};
use envoy_types::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, Http2ProtocolOptions, HttpProtocolOptions as CommonOptions,
    RuntimeDouble, TcpKeepalive,
};
use envoy_types::pb::envoy::config::route::v3::Route;
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::{
    ConnectionProperties, Cookie, CookieAttribute, Header, PolicySpecifier, QueryParameter,
};
use envoy_types::pb::envoy::config::route::v3::route_action::{ClusterSpecifier, HashPolicy};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    ExplicitHttpConfig, UpstreamProtocolOptions, UseDownstreamHttpConfig, explicit_http_config,
};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::{UInt32Value, UInt64Value};

mod tls;

use super::{any, proto_duration};
use crate::istio::{
    ClientTlsSettings, ConnectionPoolSettings, ConsistentHashLb, H2UpgradePolicy,
    LoadBalancerSettings, LocalityLbSetting, OutlierDetection, PortTrafficPolicy, SimpleLb,
    TrafficPolicy,
};
use crate::mesh_config::MeshConfig;
use crate::model::{DestinationRule, Protocol};
use crate::translate::scope::ProxyView;
use tls::apply_tls;

pub(super) const HTTP_PROTOCOL_OPTIONS: &str =
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// What istio-agent trusts when `caCertificates` is empty ("system"): the distribution's CA
/// bundle, at its path on Debian and Ubuntu (Istio's proxy image).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Envoy's default ring size, which istiod writes out when neither `ringHash` nor `maglev` is set.
const DEFAULT_MINIMUM_RING_SIZE: u64 = 1024;
/// istiod's slow start defaults for `warmup`.
const DEFAULT_WARMUP_AGGRESSION: f64 = 1.0;
const DEFAULT_WARMUP_MINIMUM_PERCENT: f64 = 10.0;
/// istiod sets a runtime key no one can set, so the aggression is the configured value.
const UNSETTABLE_RUNTIME_KEY: &str = "(";

/// istiod's mesh-wide default (`localityLbSetting: {enabled: true}`), which applies to rules
/// that do not set their own when no mesh config is at hand.
static MESH_LOCALITY_LB_SETTING: LocalityLbSetting = LocalityLbSetting {
    distribute: Vec::new(),
    failover: Vec::new(),
    failover_priority: Vec::new(),
    enabled: Some(true),
};

/// The parts of a traffic policy that apply to one cluster, once merged.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct ClusterPolicy<'m> {
    pub load_balancer: Option<&'m LoadBalancerSettings>,
    pub connection_pool: Option<&'m ConnectionPoolSettings>,
    pub outlier_detection: Option<&'m OutlierDetection>,
    pub tls: Option<&'m ClientTlsSettings>,
    /// The mesh config whose defaults fill in what the rule leaves out (see [`Self::with_mesh`]).
    pub mesh: Option<&'m MeshConfig>,
}

impl<'m> ClusterPolicy<'m> {
    fn of(policy: &'m TrafficPolicy) -> Self {
        ClusterPolicy {
            load_balancer: policy.load_balancer.as_ref(),
            connection_pool: policy.connection_pool.as_ref(),
            outlier_detection: policy.outlier_detection.as_ref(),
            tls: policy.tls.as_ref(),
            mesh: None,
        }
    }

    fn of_port(policy: &'m PortTrafficPolicy) -> Self {
        ClusterPolicy {
            load_balancer: policy.load_balancer.as_ref(),
            connection_pool: policy.connection_pool.as_ref(),
            outlier_detection: policy.outlier_detection.as_ref(),
            tls: policy.tls.as_ref(),
            mesh: None,
        }
    }

    /// The policy with the mesh config's defaults for what the rule leaves out, as istiod's
    /// `applyDefaultTrafficPolicy` fills them in once port-level settings are resolved:
    /// `defaultTrafficPolicy`'s connection pool and outlier detection (each replaced whole by the
    /// rule's), and the mesh's `localityLbSetting`, `tcpKeepalive` and `h2UpgradePolicy`.
    pub fn with_mesh(mut self, mesh: &'m MeshConfig) -> Self {
        let baseline = &mesh.default_traffic_policy;
        self.connection_pool = self.connection_pool.or(baseline.connection_pool.as_ref());
        self.outlier_detection = self
            .outlier_detection
            .or(baseline.outlier_detection.as_ref());
        self.mesh = Some(mesh);
        self
    }

    /// The locality load-balancing setting in force: the rule's, unless it turns locality
    /// load balancing off, else the mesh's (istiod's `GetEffectiveLbSetting`).
    pub fn locality_lb_setting(&self) -> Option<&'m LocalityLbSetting> {
        let setting = match self
            .load_balancer
            .and_then(|lb| lb.locality_lb_setting.as_ref())
        {
            Some(setting) => setting,
            None => match self.mesh {
                Some(mesh) => mesh.locality_lb_setting.as_ref()?,
                None => &MESH_LOCALITY_LB_SETTING,
            },
        };
        (setting.enabled != Some(false)).then_some(setting)
    }

    pub fn consistent_hash(&self) -> Option<&'m ConsistentHashLb> {
        self.load_balancer
            .and_then(|lb| lb.consistent_hash.as_ref())
    }
}

/// istiod's `GetPortLevelTrafficPolicy`: the port's entry if there is one (and whether there was),
/// else the policy itself.
fn port_level(policy: Option<&TrafficPolicy>, port: u16) -> (Option<ClusterPolicy<'_>>, bool) {
    let Some(policy) = policy else {
        return (None, false);
    };
    let entry = policy
        .port_level_settings
        .iter()
        .find(|entry| entry.port.as_ref().map(|p| p.number) == Some(u32::from(port)));
    match entry {
        Some(entry) => (Some(ClusterPolicy::of_port(entry)), true),
        None => (Some(ClusterPolicy::of(policy)), false),
    }
}

/// The policy of the cluster for `port` and `subset` (empty for the whole service) of the rule's
/// host, merged as istiod's `MergeSubsetTrafficPolicy` does.
pub(super) fn cluster_policy<'m>(
    rule: Option<&'m DestinationRule>,
    port: u16,
    subset: &str,
) -> ClusterPolicy<'m> {
    let Some(rule) = rule else {
        return ClusterPolicy::default();
    };
    let (original, _) = port_level(rule.traffic_policy.as_ref(), port);
    let subset_policy = rule
        .subset(subset)
        .filter(|_| !subset.is_empty())
        .and_then(|subset| subset.traffic_policy.as_ref());
    let (from_subset, has_port_level) = port_level(subset_policy, port);
    let Some(from_subset) = from_subset else {
        return original.unwrap_or_default();
    };
    let Some(mut merged) = original else {
        return from_subset;
    };
    if from_subset.connection_pool.is_some() || has_port_level {
        merged.connection_pool = from_subset.connection_pool;
    }
    if from_subset.outlier_detection.is_some() || has_port_level {
        merged.outlier_detection = from_subset.outlier_detection;
    }
    if from_subset.load_balancer.is_some() || has_port_level {
        merged.load_balancer = from_subset.load_balancer;
    }
    if from_subset.tls.is_some() || has_port_level {
        merged.tls = from_subset.tls;
    }
    merged
}

/// `outbound|PORT|SUBSET|HOST` split into port, subset and host.
pub(super) fn parse_outbound_cluster_name(name: &str) -> Option<(u16, &str, &str)> {
    let mut parts = name.splitn(4, '|');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("outbound"), Some(port), Some(subset), Some(host)) => {
            Some((port.parse().ok()?, subset, host))
        }
        _ => None,
    }
}

/// The merged policy of an outbound cluster, by name.
pub(super) fn policy_of_cluster<'m>(model: &'m ProxyView, cluster_name: &str) -> ClusterPolicy<'m> {
    match parse_outbound_cluster_name(cluster_name) {
        Some((port, subset, host)) => cluster_policy(
            model.destination_rules.get(host).map(AsRef::as_ref),
            port,
            subset,
        ),
        None => ClusterPolicy::default(),
    }
}

/// A cluster being built, with its HTTP protocol options kept apart until the end (istiod's
/// `clusterWrapper`).
pub(super) struct ClusterBuilder {
    pub cluster: Cluster,
    pub http_options: Option<HttpProtocolOptions>,
}

impl ClusterBuilder {
    /// The cluster, with its HTTP protocol options packed in; options that do not choose an
    /// upstream protocol get explicit HTTP/1.1, which Envoy requires.
    pub fn build(mut self) -> Cluster {
        if let Some(mut options) = self.http_options {
            if options.upstream_protocol_options.is_none() {
                options.upstream_protocol_options = Some(explicit(
                    explicit_http_config::ProtocolConfig::HttpProtocolOptions(
                        Http1ProtocolOptions::default(),
                    ),
                ));
            }
            self.cluster
                .typed_extension_protocol_options
                .insert(HTTP_PROTOCOL_OPTIONS.to_string(), any(&options));
        }
        self.cluster
    }

    fn is_http2(&self) -> bool {
        matches!(
            self.http_options
                .as_ref()
                .and_then(|o| o.upstream_protocol_options.as_ref()),
            Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(
                        explicit_http_config::ProtocolConfig::Http2ProtocolOptions(_)
                    ),
                }
            ))
        )
    }

    /// Makes the upstream HTTP/2 (istiod's `setH2Options`).
    pub fn set_http2(&mut self) {
        if self.is_http2() {
            return;
        }
        let options = self.http_options.get_or_insert_default();
        options.upstream_protocol_options = Some(explicit(
            explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                Http2ProtocolOptions::default(),
            ),
        ));
    }

    /// Speaks upstream what the client spoke downstream (istiod's `setUseDownstreamProtocol`).
    pub(super) fn use_downstream_protocol(&mut self) {
        let options = self.http_options.get_or_insert_default();
        let http1 = match &options.upstream_protocol_options {
            Some(UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
                protocol_config: Some(explicit_http_config::ProtocolConfig::HttpProtocolOptions(h1)),
            })) => h1.clone(),
            _ => Http1ProtocolOptions::default(),
        };
        options.upstream_protocol_options = Some(
            UpstreamProtocolOptions::UseDownstreamProtocolConfig(UseDownstreamHttpConfig {
                http_protocol_options: Some(http1),
                http2_protocol_options: Some(Http2ProtocolOptions::default()),
                ..Default::default()
            }),
        );
    }
}

fn explicit(config: explicit_http_config::ProtocolConfig) -> UpstreamProtocolOptions {
    UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
        protocol_config: Some(config),
    })
}

/// Applies a merged policy to an outbound cluster of a `protocol` port, in istiod's order.
pub(super) fn apply_traffic_policy(
    builder: &mut ClusterBuilder,
    policy: &ClusterPolicy<'_>,
    protocol: Protocol,
) {
    let mesh_upgrades = policy.mesh.is_some_and(|mesh| mesh.h2_upgrade);
    if should_upgrade_to_http2(policy.connection_pool, mesh_upgrades, protocol) {
        builder.set_http2();
    }
    if let Some(pool) = policy.connection_pool {
        apply_connection_pool(builder, pool);
        // istiod sets keepalive only on clusters with a connection pool: the mesh's first, then
        // the rule's attribute by attribute.
        set_keepalive(
            &mut builder.cluster,
            policy.mesh.and_then(|mesh| mesh.tcp_keepalive.as_ref()),
        );
        set_keepalive(
            &mut builder.cluster,
            pool.tcp.as_ref().and_then(|tcp| tcp.tcp_keepalive.as_ref()),
        );
    }
    apply_outlier_detection(&mut builder.cluster, policy.outlier_detection);
    apply_load_balancer(&mut builder.cluster, policy);
    apply_tls(
        builder,
        policy.tls,
        policy.mesh.map(|mesh| &mesh.tls_defaults),
    );
    if is_original_dst(&builder.cluster) {
        builder.cluster.lb_policy = LbPolicy::ClusterProvided as i32;
    }
}

fn is_original_dst(cluster: &Cluster) -> bool {
    cluster.cluster_discovery_type
        == Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        ))
}

/// istiod's `shouldH2Upgrade`: never with `useClientProtocol`; the rule's UPGRADE or
/// DO_NOT_UPGRADE decides; else the mesh's `h2UpgradePolicy`, for HTTP ports only (a sniffed
/// port keeps the client's protocol).
fn should_upgrade_to_http2(
    pool: Option<&ConnectionPoolSettings>,
    mesh_upgrades: bool,
    protocol: Protocol,
) -> bool {
    if let Some(http) = pool.and_then(|pool| pool.http.as_ref()) {
        if http.use_client_protocol == Some(true) {
            return false;
        }
        match http.h2_upgrade_policy {
            Some(H2UpgradePolicy::Upgrade) => return true,
            Some(H2UpgradePolicy::DoNotUpgrade) => return false,
            _ => {}
        }
    }
    mesh_upgrades && protocol.is_http()
}

/// The mesh config's baseline connection pool (an empty one when there is none) and TCP
/// keepalive, for a cluster no DestinationRule applies to (`PassthroughCluster`).
pub(super) fn apply_mesh_connection_pool(builder: &mut ClusterBuilder, mesh: &MeshConfig) {
    let empty = ConnectionPoolSettings::default();
    let pool = mesh
        .default_traffic_policy
        .connection_pool
        .as_ref()
        .unwrap_or(&empty);
    apply_connection_pool(builder, pool);
    set_keepalive(&mut builder.cluster, mesh.tcp_keepalive.as_ref());
    set_keepalive(
        &mut builder.cluster,
        pool.tcp.as_ref().and_then(|tcp| tcp.tcp_keepalive.as_ref()),
    );
}

/// istiod's `setKeepAliveSettings`: SO_KEEPALIVE on, and each attribute given replaces what is
/// there.
fn set_keepalive(cluster: &mut Cluster, keepalive: Option<&crate::istio::TcpKeepalive>) {
    let Some(keepalive) = keepalive else {
        return;
    };
    let seconds = |duration: crate::duration::Duration| UInt32Value {
        value: u32::try_from(duration.0.as_secs()).unwrap_or(u32::MAX),
    };
    let tcp = cluster
        .upstream_connection_options
        .get_or_insert_with(UpstreamConnectionOptions::default)
        .tcp_keepalive
        .get_or_insert_with(TcpKeepalive::default);
    if let Some(probes) = keepalive.probes.filter(|probes| *probes > 0) {
        tcp.keepalive_probes = Some(UInt32Value { value: probes });
    }
    if let Some(time) = keepalive.time {
        tcp.keepalive_time = Some(seconds(time));
    }
    if let Some(interval) = keepalive.interval {
        tcp.keepalive_interval = Some(seconds(interval));
    }
}

fn positive(value: Option<i32>) -> Option<UInt32Value> {
    value
        .and_then(|value| u32::try_from(value).ok())
        .filter(|value| *value > 0)
        .map(|value| UInt32Value { value })
}

/// istiod's thresholds: every limit at the maximum unless the rule sets it.
pub(super) fn default_thresholds() -> Thresholds {
    let max = Some(UInt32Value { value: u32::MAX });
    Thresholds {
        max_connections: max,
        max_pending_requests: max,
        max_requests: max,
        max_retries: max,
        // istiod leaves the remaining-capacity gauges off (DISABLE_TRACK_REMAINING_CB_METRICS).
        ..Default::default()
    }
}

fn apply_connection_pool(builder: &mut ClusterBuilder, pool: &ConnectionPoolSettings) {
    let mut thresholds = default_thresholds();
    let mut idle_timeout = None;
    let mut max_requests_per_connection = None;
    let mut max_concurrent_streams = None;
    let mut max_connection_duration = None;
    if let Some(http) = &pool.http {
        // Envoy applies max_requests to HTTP/2 and max_pending_requests to HTTP/1.1.
        if let Some(limit) = positive(http.http2_max_requests) {
            thresholds.max_requests = Some(limit);
        }
        if let Some(limit) = positive(http.http1_max_pending_requests) {
            thresholds.max_pending_requests = Some(limit);
        }
        if let Some(limit) = positive(http.max_retries) {
            thresholds.max_retries = Some(limit);
        }
        idle_timeout = http.idle_timeout;
        max_requests_per_connection = positive(http.max_requests_per_connection);
        max_concurrent_streams = positive(http.max_concurrent_streams);
    }
    let cluster = &mut builder.cluster;
    if let Some(tcp) = &pool.tcp {
        if let Some(timeout) = tcp.connect_timeout {
            cluster.connect_timeout = Some(proto_duration(timeout.0));
        }
        if let Some(limit) = positive(tcp.max_connections) {
            thresholds.max_connections = Some(limit);
        }
        max_connection_duration = tcp.max_connection_duration;
        if idle_timeout.is_none() {
            idle_timeout = tcp.idle_timeout;
        }
    }
    cluster.circuit_breakers = Some(CircuitBreakers {
        thresholds: vec![thresholds],
        ..Default::default()
    });
    let common_needed = idle_timeout.is_some()
        || max_requests_per_connection.is_some()
        || max_concurrent_streams.is_some()
        || max_connection_duration.is_some();
    if common_needed {
        let is_http2 = builder.is_http2();
        let options = builder.http_options.get_or_insert_default();
        let common = options
            .common_http_protocol_options
            .get_or_insert_with(CommonOptions::default);
        if let Some(idle) = idle_timeout {
            common.idle_timeout = Some(proto_duration(idle.0));
        }
        if let Some(limit) = max_requests_per_connection {
            common.max_requests_per_connection = Some(limit);
        }
        if let Some(duration) = max_connection_duration {
            common.max_connection_duration = Some(proto_duration(duration.0));
        }
        if let (true, Some(streams)) = (is_http2, max_concurrent_streams)
            && let Some(UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
                protocol_config:
                    Some(explicit_http_config::ProtocolConfig::Http2ProtocolOptions(h2)),
            })) = &mut options.upstream_protocol_options
        {
            h2.max_concurrent_streams = Some(streams);
        }
    }
    if pool
        .http
        .as_ref()
        .is_some_and(|http| http.use_client_protocol == Some(true))
    {
        builder.use_downstream_protocol();
    }
}

fn apply_outlier_detection(cluster: &mut Cluster, outlier: Option<&OutlierDetection>) {
    let Some(outlier) = outlier else {
        return;
    };
    let value = |value: u32| Some(UInt32Value { value });
    // A threshold of 0 turns its enforcement off; any other enforces always.
    let enforcing = |threshold: u32| value(if threshold > 0 { 100 } else { 0 });
    let mut out = EnvoyOutlierDetection {
        enforcing_success_rate: value(0),
        ..Default::default()
    };
    if let Some(errors) = outlier.consecutive_5xx_errors {
        out.consecutive_5xx = value(errors);
        out.enforcing_consecutive_5xx = enforcing(errors);
    }
    if let Some(errors) = outlier.consecutive_gateway_errors {
        out.consecutive_gateway_failure = value(errors);
        out.enforcing_consecutive_gateway_failure = enforcing(errors);
    }
    out.interval = outlier.interval.map(|d| proto_duration(d.0));
    out.base_ejection_time = outlier.base_ejection_time.map(|d| proto_duration(d.0));
    if let Some(percent) = positive(outlier.max_ejection_percent) {
        out.max_ejection_percent = Some(percent);
    }
    if outlier.split_external_local_origin_errors == Some(true) {
        out.split_external_local_origin_errors = true;
        if let Some(failures) = outlier.consecutive_local_origin_failures.filter(|n| *n > 0) {
            out.consecutive_local_origin_failure = value(failures);
            out.enforcing_consecutive_local_origin_failure = value(100);
        }
        out.enforcing_local_origin_success_rate = value(0);
    }
    cluster.outlier_detection = Some(out);
    // istiod turns the panic threshold off (0) unless minHealthPercent says otherwise: with few
    // endpoints per service, panic mode would send traffic to ejected ones.
    let threshold = outlier.min_health_percent.unwrap_or(0);
    if threshold >= 0 {
        common_lb_config(cluster).healthy_panic_threshold = Some(Percent {
            value: f64::from(threshold),
        });
    }
}

fn common_lb_config(cluster: &mut Cluster) -> &mut CommonLbConfig {
    cluster.common_lb_config.get_or_insert_default()
}

fn apply_load_balancer(cluster: &mut Cluster, policy: &ClusterPolicy<'_>) {
    // Panic mode off unless outlier detection's minHealthPercent set it: istiod sends unhealthy
    // endpoints too (PILOT_AUTO_SEND_UNHEALTHY_ENDPOINTS), and panic mode would balance over
    // them once too few are healthy.
    let common = common_lb_config(cluster);
    if common.healthy_panic_threshold.is_none() {
        common.healthy_panic_threshold = Some(Percent { value: 0.0 });
    }
    if let Some(setting) = policy.locality_lb_setting() {
        // Failover needs outlier detection, or Envoy never learns that hosts are unhealthy.
        let failover = cluster.outlier_detection.is_some()
            && (!setting.failover.is_empty() || !setting.failover_priority.is_empty());
        if failover || !setting.distribute.is_empty() {
            common_lb_config(cluster).locality_config_specifier = Some(
                LocalityConfigSpecifier::LocalityWeightedLbConfig(LocalityWeightedLbConfig {}),
            );
        }
    }
    if is_original_dst(cluster) {
        cluster.lb_policy = LbPolicy::ClusterProvided as i32;
        return;
    }
    let lb = policy.load_balancer;
    match lb.and_then(|lb| lb.simple) {
        Some(SimpleLb::RoundRobin) => {
            cluster.lb_policy = LbPolicy::RoundRobin as i32;
            cluster.lb_config = slow_start(lb).map(|slow_start_config| {
                LbConfig::RoundRobinLbConfig(RoundRobinLbConfig {
                    slow_start_config: Some(slow_start_config),
                })
            });
        }
        Some(SimpleLb::Random) => cluster.lb_policy = LbPolicy::Random as i32,
        Some(SimpleLb::Passthrough) => {
            cluster.lb_policy = LbPolicy::ClusterProvided as i32;
            cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(
                DiscoveryType::OriginalDst as i32,
            ));
            cluster.eds_cluster_config = None;
            cluster.load_assignment = None;
        }
        // LEAST_CONN, LEAST_REQUEST and the default.
        _ => {
            cluster.lb_policy = LbPolicy::LeastRequest as i32;
            cluster.lb_config = slow_start(lb).map(|slow_start_config| {
                LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
                    slow_start_config: Some(slow_start_config),
                    ..Default::default()
                })
            });
        }
    }
    if let Some(hash) = policy.consistent_hash() {
        apply_consistent_hash_lb(cluster, hash);
    }
}

/// Slow start for ROUND_ROBIN and LEAST_REQUEST: `warmup`, else the deprecated
/// `warmupDurationSecs`.
fn slow_start(lb: Option<&LoadBalancerSettings>) -> Option<SlowStartConfig> {
    let lb = lb?;
    if let Some(warmup) = &lb.warmup {
        return Some(SlowStartConfig {
            slow_start_window: warmup.duration.map(|d| proto_duration(d.0)),
            aggression: Some(RuntimeDouble {
                default_value: warmup.aggression.unwrap_or(DEFAULT_WARMUP_AGGRESSION),
                runtime_key: UNSETTABLE_RUNTIME_KEY.to_string(),
            }),
            min_weight_percent: Some(Percent {
                value: warmup
                    .minimum_percent
                    .unwrap_or(DEFAULT_WARMUP_MINIMUM_PERCENT),
            }),
        });
    }
    lb.warmup_duration_secs.map(|window| SlowStartConfig {
        slow_start_window: Some(proto_duration(window.0)),
        ..Default::default()
    })
}

/// RING_HASH (the default) or MAGLEV. Slow start does not apply to them, so its config goes.
fn apply_consistent_hash_lb(cluster: &mut Cluster, hash: &ConsistentHashLb) {
    cluster.lb_config = None;
    if let Some(maglev) = hash.maglev {
        cluster.lb_policy = LbPolicy::Maglev as i32;
        if let Some(size) = maglev.table_size.filter(|size| *size != 0) {
            cluster.lb_config = Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
                table_size: Some(UInt64Value { value: size }),
            }));
        }
        return;
    }
    cluster.lb_policy = LbPolicy::RingHash as i32;
    let minimum = match hash.ring_hash {
        Some(ring) => ring.minimum_ring_size.filter(|size| *size != 0),
        None => Some(
            hash.minimum_ring_size
                .filter(|size| *size != 0)
                .unwrap_or(DEFAULT_MINIMUM_RING_SIZE),
        ),
    };
    if let Some(size) = minimum {
        cluster.lb_config = Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
            minimum_ring_size: Some(UInt64Value { value: size }),
            ..Default::default()
        }));
    }
}

/// Whether the merged load balancer of `cluster_name` hashes consistently (with a hash key or
/// not: istiod asks only whether the DestinationRule has `consistentHash`).
pub(super) fn hashes_consistently(model: &ProxyView, cluster_name: &str) -> bool {
    policy_of_cluster(model, cluster_name)
        .consistent_hash()
        .is_some()
}

/// The route hash policy for a cluster whose merged load balancer hashes consistently.
fn hash_policy(model: &ProxyView, cluster_name: &str) -> Option<HashPolicy> {
    let hash = policy_of_cluster(model, cluster_name).consistent_hash()?;
    let specifier = if let Some(name) = &hash.http_header_name {
        PolicySpecifier::Header(Header {
            header_name: name.clone(),
            ..Default::default()
        })
    } else if let Some(cookie) = &hash.http_cookie {
        PolicySpecifier::Cookie(Cookie {
            name: cookie.name.clone(),
            ttl: cookie.ttl.map(|ttl| proto_duration(ttl.0)),
            path: cookie.path.clone().unwrap_or_default(),
            attributes: cookie
                .attributes
                .iter()
                .map(|attribute| CookieAttribute {
                    name: attribute.name.clone(),
                    value: attribute.value.clone().unwrap_or_default(),
                })
                .collect(),
        })
    } else if let Some(source_ip) = hash.use_source_ip {
        PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip })
    } else if let Some(name) = &hash.http_query_parameter_name {
        PolicySpecifier::QueryParameter(QueryParameter { name: name.clone() })
    } else {
        return None;
    };
    Some(HashPolicy {
        policy_specifier: Some(specifier),
        ..Default::default()
    })
}

/// Adds the `hash_policy` of consistent hashing to routes, for each destination cluster whose
/// DestinationRule hashes consistently (the merged policy of the cluster's port and subset), as
/// istiod's route generation does. Routes that already carry hash policies are left alone.
///
/// istiod also drops the previous-hosts retry predicate from a VirtualService route to a single
/// hashed cluster (`DefaultConsistentHashPolicy`); RDS does that when it builds the retry policy,
/// asking [`hashes_consistently`].
pub(super) fn add_hash_policies<'r>(
    model: &ProxyView,
    routes: impl IntoIterator<Item = &'r mut Route>,
) {
    for route in routes {
        let Some(Action::Route(action)) = &mut route.action else {
            continue;
        };
        if !action.hash_policy.is_empty() {
            continue;
        }
        let policies: Vec<HashPolicy> = match &action.cluster_specifier {
            Some(ClusterSpecifier::Cluster(cluster)) => {
                hash_policy(model, cluster).into_iter().collect()
            }
            Some(ClusterSpecifier::WeightedClusters(weighted)) => weighted
                .clusters
                .iter()
                .filter_map(|cluster| hash_policy(model, &cluster.name))
                .collect(),
            _ => Vec::new(),
        };
        action.hash_policy = policies;
    }
}

#[cfg(test)]
mod tests;
