//! DestinationRule traffic policies: the checks that refuse a rule (what istiod's validation
//! refuses, and what Envoy would NACK: numbers out of range, unknown enum values, settings that
//! exclude each other), and the warnings for settings that do nothing as written. Each names the
//! field at fault. Pure functions over the object as written.

use std::collections::{BTreeMap, BTreeSet};

use crate::duration::Duration;
use crate::inputs::FieldError;
use crate::istio::{
    self, ClientTlsMode, ConnectionPoolSettings, ConsistentHashLb, H2UpgradePolicy,
    LoadBalancerSettings, LocalityLbSetting, OutlierDetection, SimpleLb, TrafficPolicy,
};

fn invalid(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// Maglev tables must be prime and smaller than this (Envoy's limit).
const MAGLEV_TABLE_SIZE_LIMIT: u64 = 5_000_011;
/// Envoy's upper bound for `minimum_ring_size`.
const RING_SIZE_LIMIT: u64 = 8_388_608;
/// Locality labels istiod refuses in `failoverPriority` when `failover` is set too.
const TOPOLOGY_LABELS: [&str; 3] = [
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
];

/// Checks every traffic policy of a rule: the top-level one and each subset's.
pub fn validate_traffic_policies(rule: &istio::DestinationRule) -> Result<(), FieldError> {
    if let Some(policy) = &rule.traffic_policy {
        validate_traffic_policy(policy, "spec.trafficPolicy")?;
    }
    for (i, subset) in rule.subsets.iter().enumerate() {
        if let Some(policy) = &subset.traffic_policy {
            validate_traffic_policy(policy, &format!("spec.subsets[{i}].trafficPolicy"))?;
        }
    }
    Ok(())
}

fn validate_traffic_policy(policy: &TrafficPolicy, at: &str) -> Result<(), FieldError> {
    validate_policy_parts(
        Parts {
            load_balancer: policy.load_balancer.as_ref(),
            connection_pool: policy.connection_pool.as_ref(),
            outlier_detection: policy.outlier_detection.as_ref(),
            tls: policy.tls.as_ref(),
        },
        at,
    )?;
    let mut ports = BTreeSet::new();
    for (i, settings) in policy.port_level_settings.iter().enumerate() {
        let at = format!("{at}.portLevelSettings[{i}]");
        let number = settings.port.as_ref().map_or(0, |port| port.number);
        if number == 0 || number > u32::from(u16::MAX) {
            return Err(invalid(
                format!("{at}.port.number"),
                "a port number from 1 to 65535 is required",
            ));
        }
        if !ports.insert(number) {
            return Err(invalid(
                format!("{at}.port.number"),
                format!("port {number} has settings already; only one entry per port applies"),
            ));
        }
        let parts = Parts {
            load_balancer: settings.load_balancer.as_ref(),
            connection_pool: settings.connection_pool.as_ref(),
            outlier_detection: settings.outlier_detection.as_ref(),
            tls: settings.tls.as_ref(),
        };
        if parts.is_empty() {
            return Err(invalid(
                &at,
                "a port traffic policy needs at least one of loadBalancer, connectionPool, \
                 outlierDetection or tls",
            ));
        }
        validate_policy_parts(parts, &at)?;
    }
    Ok(())
}

/// The parts a port-level policy shares with a traffic policy.
#[derive(Clone, Copy)]
struct Parts<'a> {
    load_balancer: Option<&'a LoadBalancerSettings>,
    connection_pool: Option<&'a ConnectionPoolSettings>,
    outlier_detection: Option<&'a OutlierDetection>,
    tls: Option<&'a istio::ClientTlsSettings>,
}

impl Parts<'_> {
    fn is_empty(&self) -> bool {
        self.load_balancer.is_none()
            && self.connection_pool.is_none()
            && self.outlier_detection.is_none()
            && self.tls.is_none()
    }
}

fn validate_policy_parts(parts: Parts<'_>, at: &str) -> Result<(), FieldError> {
    if let Some(lb) = parts.load_balancer {
        validate_load_balancer(lb, &format!("{at}.loadBalancer"))?;
    }
    if let Some(pool) = parts.connection_pool {
        validate_connection_pool(pool, &format!("{at}.connectionPool"))?;
    }
    if let Some(outlier) = parts.outlier_detection {
        validate_outlier_detection(outlier, &format!("{at}.outlierDetection"))?;
    }
    if let Some(tls) = parts.tls {
        validate_tls(tls, &format!("{at}.tls"))?;
    }
    Ok(())
}

/// istiod's duration rule: at least 1ms, in whole milliseconds.
fn validate_duration(duration: Duration, at: &str) -> Result<(), FieldError> {
    if duration.0 < std::time::Duration::from_millis(1) {
        return Err(invalid(at, "duration must be at least 1ms"));
    }
    if !duration.0.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(invalid(
            at,
            "only durations to millisecond precision are supported",
        ));
    }
    Ok(())
}

fn validate_percent(value: Option<i32>, at: &str) -> Result<(), FieldError> {
    match value {
        Some(value) if !(0..=100).contains(&value) => Err(invalid(
            at,
            format!("{value} is not a percentage from 0 to 100"),
        )),
        _ => Ok(()),
    }
}

fn validate_non_negative(value: Option<i32>, at: &str) -> Result<(), FieldError> {
    match value {
        Some(value) if value < 0 => Err(invalid(at, format!("{value} cannot be negative"))),
        _ => Ok(()),
    }
}

fn validate_load_balancer(lb: &LoadBalancerSettings, at: &str) -> Result<(), FieldError> {
    if lb.simple == Some(SimpleLb::Unknown) {
        return Err(invalid(
            format!("{at}.simple"),
            "unknown load balancer; expected one of ROUND_ROBIN, LEAST_REQUEST, LEAST_CONN, \
             RANDOM, PASSTHROUGH",
        ));
    }
    let simple = lb.simple.filter(|simple| *simple != SimpleLb::Unspecified);
    if let Some(hash) = &lb.consistent_hash {
        if simple.is_some() {
            return Err(invalid(
                at,
                "simple and consistentHash exclude each other; set only one",
            ));
        }
        validate_consistent_hash(hash, &format!("{at}.consistentHash"))?;
    }
    if let Some(locality) = &lb.locality_lb_setting {
        validate_locality_lb_setting(locality, &format!("{at}.localityLbSetting"))?;
    }
    if let Some(window) = lb.warmup_duration_secs {
        validate_duration(window, &format!("{at}.warmupDurationSecs"))?;
    }
    if let Some(warmup) = &lb.warmup {
        let at = format!("{at}.warmup");
        match warmup.duration {
            None => return Err(invalid(format!("{at}.duration"), "duration is required")),
            Some(duration) => validate_duration(duration, &format!("{at}.duration"))?,
        }
        if let Some(minimum) = warmup.minimum_percent
            && !(0.0..=100.0).contains(&minimum)
        {
            return Err(invalid(
                format!("{at}.minimumPercent"),
                format!("{minimum} is not a percentage from 0 to 100"),
            ));
        }
        if let Some(aggression) = warmup.aggression
            && !(aggression >= 1.0 && aggression.is_finite())
        {
            return Err(invalid(
                format!("{at}.aggression"),
                format!("aggression must be 1 or more, not {aggression}"),
            ));
        }
    }
    Ok(())
}

fn validate_consistent_hash(hash: &ConsistentHashLb, at: &str) -> Result<(), FieldError> {
    let keys = [
        ("httpHeaderName", hash.http_header_name.is_some()),
        ("httpCookie", hash.http_cookie.is_some()),
        ("useSourceIp", hash.use_source_ip.is_some()),
        (
            "httpQueryParameterName",
            hash.http_query_parameter_name.is_some(),
        ),
    ];
    let set: Vec<&str> = keys
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
    match set.as_slice() {
        [] => {
            return Err(invalid(
                at,
                "one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName is \
                 required",
            ));
        }
        [_] => {}
        several => {
            return Err(invalid(
                at,
                format!(
                    "{} exclude each other; set only one hash key",
                    several.join(" and ")
                ),
            ));
        }
    }
    if hash.http_header_name.as_deref() == Some("") {
        return Err(invalid(format!("{at}.httpHeaderName"), "empty header name"));
    }
    if hash.http_query_parameter_name.as_deref() == Some("") {
        return Err(invalid(
            format!("{at}.httpQueryParameterName"),
            "empty query parameter name",
        ));
    }
    if let Some(cookie) = &hash.http_cookie {
        if cookie.name.is_empty() {
            return Err(invalid(
                format!("{at}.httpCookie.name"),
                "a cookie name is required",
            ));
        }
        for (i, attribute) in cookie.attributes.iter().enumerate() {
            if attribute.name.is_empty() {
                return Err(invalid(
                    format!("{at}.httpCookie.attributes[{i}].name"),
                    "an attribute name is required",
                ));
            }
        }
    }
    if hash.ring_hash.is_some() && hash.maglev.is_some() {
        return Err(invalid(
            at,
            "ringHash and maglev exclude each other; set only one",
        ));
    }
    if hash.minimum_ring_size.is_some_and(|size| size != 0)
        && (hash.ring_hash.is_some() || hash.maglev.is_some())
    {
        return Err(invalid(
            format!("{at}.minimumRingSize"),
            "the deprecated minimumRingSize cannot be combined with ringHash or maglev",
        ));
    }
    let ring_size = hash
        .ring_hash
        .and_then(|ring| ring.minimum_ring_size)
        .map(|size| (size, format!("{at}.ringHash.minimumRingSize")))
        .or_else(|| {
            hash.minimum_ring_size
                .map(|size| (size, format!("{at}.minimumRingSize")))
        });
    if let Some((size, field)) = ring_size
        && size > RING_SIZE_LIMIT
    {
        return Err(invalid(
            field,
            format!("{size} is more than Envoy's limit of {RING_SIZE_LIMIT}"),
        ));
    }
    if let Some(maglev) = hash.maglev {
        let field = format!("{at}.maglev.tableSize");
        match maglev.table_size.unwrap_or(0) {
            0 => return Err(invalid(field, "tableSize must be set for maglev")),
            size if size >= MAGLEV_TABLE_SIZE_LIMIT => {
                return Err(invalid(
                    field,
                    format!("tableSize must be less than {MAGLEV_TABLE_SIZE_LIMIT}"),
                ));
            }
            size if !is_prime(size) => {
                return Err(invalid(field, format!("tableSize {size} is not prime")));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Envoy's primality test for Maglev table sizes.
fn is_prime(x: u64) -> bool {
    if x != 0 && x < 4 {
        return true;
    }
    if x.is_multiple_of(2) {
        return false;
    }
    let mut factor = 3;
    while factor * factor <= x {
        if x.is_multiple_of(factor) {
            return false;
        }
        factor += 2;
    }
    true
}

pub(crate) fn validate_locality_lb_setting(
    setting: &LocalityLbSetting,
    at: &str,
) -> Result<(), FieldError> {
    if !setting.distribute.is_empty() && !setting.failover.is_empty() {
        return Err(invalid(
            at,
            "distribute and failover exclude each other; set only one",
        ));
    }
    if !setting.failover.is_empty() {
        for (i, label) in setting.failover_priority.iter().enumerate() {
            if TOPOLOGY_LABELS.contains(&label.as_str()) {
                return Err(invalid(
                    format!("{at}.failoverPriority[{i}]"),
                    format!("the topology label {label} cannot be used together with failover"),
                ));
            }
        }
    }
    for (i, label) in setting.failover_priority.iter().enumerate() {
        let name = label.split('=').next().unwrap_or_default();
        if name.is_empty() {
            return Err(invalid(
                format!("{at}.failoverPriority[{i}]"),
                "a label name is required",
            ));
        }
    }
    let mut sources = Vec::new();
    for (i, distribute) in setting.distribute.iter().enumerate() {
        let at = format!("{at}.distribute[{i}]");
        sources.push(distribute.from.as_str());
        let mut total: u64 = 0;
        for (locality, weight) in &distribute.to {
            if !(1..=100).contains(weight) {
                return Err(invalid(
                    format!("{at}.to"),
                    format!("weight {weight} of {locality:?} is not from 1 to 100"),
                ));
            }
            total += u64::from(*weight);
        }
        if total != 100 {
            return Err(invalid(
                format!("{at}.to"),
                format!("locality weights add up to {total}, not 100"),
            ));
        }
        let targets: Vec<&str> = distribute.to.keys().map(String::as_str).collect();
        validate_localities(&targets, &format!("{at}.to"))?;
    }
    validate_localities(&sources, &format!("{at}.distribute"))?;
    for (i, failover) in setting.failover.iter().enumerate() {
        let at = format!("{at}.failover[{i}]");
        if failover.from.is_empty() || failover.to.is_empty() {
            return Err(invalid(&at, "from and to regions are required"));
        }
        if failover.from == failover.to {
            return Err(invalid(&at, "from and to must be different regions"));
        }
        if failover.from.contains('/') || failover.to.contains('/') {
            return Err(invalid(&at, "failover names regions only (no `/`)"));
        }
        if failover.from.contains('*') || failover.to.contains('*') {
            return Err(invalid(&at, "failover regions cannot contain `*`"));
        }
    }
    Ok(())
}

/// istiod's rules for a list of localities: `region[/zone[/subzone]]`, no empty parts, at most one
/// `*` and only at the end, and none covered by one listed before it (a broader one may follow
/// narrower ones, as a fallback).
fn validate_localities(localities: &[&str], at: &str) -> Result<(), FieldError> {
    // region -> zone -> subzones, with `*` for "all of them".
    let mut seen: BTreeMap<&str, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    let all = || BTreeSet::from(["*"]);
    for locality in localities {
        let overlap = || {
            invalid(
                at,
                format!("locality {locality:?} overlaps with one listed before it"),
            )
        };
        let stars = locality.matches('*').count();
        if stars > 1 || (stars == 1 && !locality.ends_with('*')) {
            return Err(invalid(
                at,
                format!("locality {locality:?}: at most one `*`, and only at the end"),
            ));
        }
        if seen.contains_key("*") {
            return Err(overlap());
        }
        let parts: Vec<&str> = locality.splitn(3, '/').collect();
        if parts.iter().any(|part| part.is_empty()) {
            return Err(invalid(
                at,
                format!("locality {locality:?} has an empty region, zone or subzone"),
            ));
        }
        match parts[..] {
            [region] => {
                if seen.contains_key(region) {
                    return Err(overlap());
                }
                seen.insert(region, BTreeMap::from([("*", all())]));
            }
            [region, zone] => {
                let zones = seen.entry(region).or_default();
                if zones.contains_key("*") || zones.contains_key(zone) {
                    return Err(overlap());
                }
                zones.insert(zone, all());
            }
            [region, zone, subzone] => {
                let zones = seen.entry(region).or_default();
                if zones.contains_key("*") {
                    return Err(overlap());
                }
                let subzones = zones.entry(zone).or_default();
                if subzones.contains("*") || !subzones.insert(subzone) {
                    return Err(overlap());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

pub(crate) fn validate_connection_pool(
    pool: &ConnectionPoolSettings,
    at: &str,
) -> Result<(), FieldError> {
    if let Some(http) = &pool.http {
        let at = format!("{at}.http");
        let numbers = [
            ("http1MaxPendingRequests", http.http1_max_pending_requests),
            ("http2MaxRequests", http.http2_max_requests),
            ("maxRequestsPerConnection", http.max_requests_per_connection),
            ("maxRetries", http.max_retries),
            ("maxConcurrentStreams", http.max_concurrent_streams),
        ];
        for (name, value) in numbers {
            validate_non_negative(value, &format!("{at}.{name}"))?;
        }
        if let Some(idle) = http.idle_timeout {
            validate_duration(idle, &format!("{at}.idleTimeout"))?;
        }
        match http.h2_upgrade_policy {
            Some(H2UpgradePolicy::Unknown) => {
                return Err(invalid(
                    format!("{at}.h2UpgradePolicy"),
                    "unknown policy; expected one of DEFAULT, DO_NOT_UPGRADE, UPGRADE",
                ));
            }
            Some(H2UpgradePolicy::Upgrade) if http.use_client_protocol == Some(true) => {
                return Err(invalid(
                    format!("{at}.useClientProtocol"),
                    "useClientProtocol cannot be true when h2UpgradePolicy is UPGRADE",
                ));
            }
            _ => {}
        }
    }
    if let Some(tcp) = &pool.tcp {
        let at = format!("{at}.tcp");
        validate_non_negative(tcp.max_connections, &format!("{at}.maxConnections"))?;
        if let Some(timeout) = tcp.connect_timeout {
            validate_duration(timeout, &format!("{at}.connectTimeout"))?;
        }
        if let Some(duration) = tcp.max_connection_duration {
            validate_duration(duration, &format!("{at}.maxConnectionDuration"))?;
        }
        // 0s turns the idle timeout off.
        if let Some(idle) = tcp.idle_timeout.filter(|idle| !idle.is_zero()) {
            validate_duration(idle, &format!("{at}.idleTimeout"))?;
        }
        if let Some(keepalive) = &tcp.tcp_keepalive {
            let durations = [("time", keepalive.time), ("interval", keepalive.interval)];
            for (name, duration) in durations {
                if let Some(duration) = duration {
                    let field = format!("{at}.tcpKeepalive.{name}");
                    validate_duration(duration, &field)?;
                    if duration.0.as_secs() > u64::from(u32::MAX) {
                        return Err(invalid(field, "too long for Envoy (seconds in 32 bits)"));
                    }
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn validate_outlier_detection(
    outlier: &OutlierDetection,
    at: &str,
) -> Result<(), FieldError> {
    if let Some(interval) = outlier.interval {
        validate_duration(interval, &format!("{at}.interval"))?;
    }
    if let Some(ejection) = outlier.base_ejection_time {
        validate_duration(ejection, &format!("{at}.baseEjectionTime"))?;
    }
    validate_percent(
        outlier.max_ejection_percent,
        &format!("{at}.maxEjectionPercent"),
    )?;
    validate_percent(
        outlier.min_health_percent,
        &format!("{at}.minHealthPercent"),
    )?;
    if outlier
        .consecutive_local_origin_failures
        .is_some_and(|n| n > 0)
        && outlier.split_external_local_origin_errors != Some(true)
    {
        return Err(invalid(
            format!("{at}.consecutiveLocalOriginFailures"),
            "needs splitExternalLocalOriginErrors: true",
        ));
    }
    Ok(())
}

fn validate_tls(tls: &istio::ClientTlsSettings, at: &str) -> Result<(), FieldError> {
    let mode = tls.mode.unwrap_or(ClientTlsMode::Disable);
    if mode == ClientTlsMode::Unknown {
        return Err(invalid(
            format!("{at}.mode"),
            "unknown mode; expected one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL",
        ));
    }
    let set = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
    if tls.insecure_skip_verify == Some(true) {
        let conflicting = match mode {
            ClientTlsMode::Simple => {
                set(&tls.ca_certificates)
                    || set(&tls.credential_name)
                    || !tls.subject_alt_names.is_empty()
            }
            ClientTlsMode::Mutual => set(&tls.ca_certificates) || !tls.subject_alt_names.is_empty(),
            _ => false,
        };
        if conflicting {
            return Err(invalid(
                format!("{at}.insecureSkipVerify"),
                "insecureSkipVerify skips the checks that caCertificates, credentialName and \
                 subjectAltNames ask for; set one or the other",
            ));
        }
    }
    let files = matches!(mode, ClientTlsMode::Simple | ClientTlsMode::Mutual);
    if files && set(&tls.credential_name) {
        let conflicting = set(&tls.client_certificate)
            || set(&tls.private_key)
            || set(&tls.ca_certificates)
            || set(&tls.ca_crl);
        if conflicting {
            return Err(invalid(
                format!("{at}.credentialName"),
                "credentialName excludes clientCertificate, privateKey, caCertificates and caCrl",
            ));
        }
        return Ok(());
    }
    if mode == ClientTlsMode::Mutual {
        if !set(&tls.client_certificate) {
            return Err(invalid(
                format!("{at}.clientCertificate"),
                "a client certificate is required for MUTUAL",
            ));
        }
        if !set(&tls.private_key) {
            return Err(invalid(
                format!("{at}.privateKey"),
                "a private key is required for MUTUAL",
            ));
        }
    }
    Ok(())
}

/// Settings of a valid rule that do nothing as written; each is reported as a warning and the
/// rest of the rule applies. (Fields rudder does not carry out at all are warned about from the
/// coverage table, see [`crate::coverage`].)
pub fn destination_rule_warnings(rule: &istio::DestinationRule) -> Vec<FieldError> {
    let mut warnings = Vec::new();
    if let Some(policy) = &rule.traffic_policy {
        policy_warnings(policy, "spec.trafficPolicy", &mut warnings);
    }
    for (i, subset) in rule.subsets.iter().enumerate() {
        if let Some(policy) = &subset.traffic_policy {
            let at = format!("spec.subsets[{i}].trafficPolicy");
            policy_warnings(policy, &at, &mut warnings);
        }
    }
    warnings
}

fn policy_warnings(policy: &TrafficPolicy, at: &str, warnings: &mut Vec<FieldError>) {
    parts_warnings(
        policy.load_balancer.as_ref(),
        policy.outlier_detection.as_ref(),
        at,
        warnings,
    );
    for (i, settings) in policy.port_level_settings.iter().enumerate() {
        parts_warnings(
            settings.load_balancer.as_ref(),
            settings.outlier_detection.as_ref(),
            &format!("{at}.portLevelSettings[{i}]"),
            warnings,
        );
    }
}

/// A failover needs outlier detection to tell which endpoints are unhealthy.
fn parts_warnings(
    load_balancer: Option<&LoadBalancerSettings>,
    outlier_detection: Option<&OutlierDetection>,
    at: &str,
    warnings: &mut Vec<FieldError>,
) {
    let Some(locality) = load_balancer.and_then(|lb| lb.locality_lb_setting.as_ref()) else {
        return;
    };
    let fails_over = !locality.failover.is_empty() || !locality.failover_priority.is_empty();
    if fails_over && outlier_detection.is_none() && locality.distribute.is_empty() {
        warnings.push(invalid(
            format!("{at}.loadBalancer.localityLbSetting"),
            "failover needs outlierDetection to tell unhealthy endpoints; without it, it has \
             no effect",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> istio::DestinationRule {
        serde_saphyr::from_str(yaml).expect("the rule parses")
    }

    fn error(yaml: &str) -> String {
        let error = validate_traffic_policies(&rule(yaml)).expect_err("the rule is refused");
        error.to_string()
    }

    #[test]
    fn a_full_valid_policy_passes() {
        let valid = rule(
            "host: a\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:\n      httpCookie: {name: user, ttl: 0s}\n      maglev: {tableSize: 65537}\n    localityLbSetting:\n      distribute:\n      - from: us-west/zone1/*\n        to: {\"us-west/zone1/*\": 80, \"us-west/zone2/*\": 20}\n  connectionPool:\n    tcp: {maxConnections: 1, connectTimeout: 30ms, idleTimeout: 0s}\n    http: {http1MaxPendingRequests: 1, h2UpgradePolicy: UPGRADE}\n  outlierDetection: {consecutive5xxErrors: 1, interval: 1s, minHealthPercent: 0}\n  tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}\n  portLevelSettings:\n  - port: {number: 80}\n    loadBalancer: {simple: ROUND_ROBIN}\n",
        );
        assert_eq!(validate_traffic_policies(&valid), Ok(()));
        assert!(destination_rule_warnings(&valid).is_empty());
    }

    #[test]
    fn bad_policies_name_the_field() {
        let cases = [
            (
                "host: a\ntrafficPolicy: {loadBalancer: {simple: FASTEST}}",
                "spec.trafficPolicy.loadBalancer.simple: unknown load balancer",
            ),
            (
                "host: a\ntrafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}}",
                "spec.trafficPolicy.loadBalancer: simple and consistentHash exclude each other",
            ),
            (
                "host: a\ntrafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x, useSourceIp: true}}}",
                "spec.trafficPolicy.loadBalancer.consistentHash: httpHeaderName and useSourceIp exclude",
            ),
            (
                "host: a\ntrafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 1000}}}}",
                "maglev.tableSize: tableSize 1000 is not prime",
            ),
            (
                "host: a\ntrafficPolicy: {connectionPool: {http: {http2MaxRequests: -1}}}",
                "spec.trafficPolicy.connectionPool.http.http2MaxRequests: -1 cannot be negative",
            ),
            (
                "host: a\ntrafficPolicy: {connectionPool: {tcp: {connectTimeout: 0s}}}",
                "connectionPool.tcp.connectTimeout: duration must be at least 1ms",
            ),
            (
                "host: a\ntrafficPolicy: {outlierDetection: {maxEjectionPercent: 120}}",
                "outlierDetection.maxEjectionPercent: 120 is not a percentage",
            ),
            (
                "host: a\ntrafficPolicy: {outlierDetection: {consecutiveLocalOriginFailures: 2}}",
                "needs splitExternalLocalOriginErrors",
            ),
            (
                "host: a\ntrafficPolicy: {tls: {mode: MUTUAL, privateKey: /k.pem}}",
                "spec.trafficPolicy.tls.clientCertificate: a client certificate is required",
            ),
            (
                "host: a\ntrafficPolicy: {tls: {mode: TLS13}}",
                "spec.trafficPolicy.tls.mode: unknown mode",
            ),
            (
                "host: a\ntrafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true, subjectAltNames: [a]}}",
                "tls.insecureSkipVerify",
            ),
            (
                "host: a\ntrafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: a/*, to: {b/*: 60, c/*: 30}}]}}}",
                "localityLbSetting.distribute[0].to: locality weights add up to 90, not 100",
            ),
            (
                "host: a\ntrafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: a/*, to: {b/*: 100}}], failover: [{from: a, to: b}]}}}",
                "distribute and failover exclude each other",
            ),
            (
                "host: a\ntrafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: '*', to: {b: 50, b/z: 50}}]}}}",
                "locality \"b/z\" overlaps with one listed before it",
            ),
            (
                "host: a\ntrafficPolicy: {loadBalancer: {localityLbSetting: {failover: [{from: us, to: us}]}}}",
                "failover[0]: from and to must be different regions",
            ),
            (
                "host: a\ntrafficPolicy: {portLevelSettings: [{port: {number: 80}, tls: {mode: SIMPLE}}, {port: {number: 80}, tls: {mode: SIMPLE}}]}",
                "spec.trafficPolicy.portLevelSettings[1].port.number: port 80 has settings already",
            ),
            (
                "host: a\nsubsets:\n- name: v1\n  trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}}",
                "spec.subsets[0].trafficPolicy.connectionPool.http.useClientProtocol",
            ),
            (
                "host: a\ntrafficPolicy: {loadBalancer: {warmup: {duration: 10s, aggression: 0.5}}}",
                "loadBalancer.warmup.aggression: aggression must be 1 or more",
            ),
        ];
        for (yaml, expected) in cases {
            let error = error(yaml);
            assert!(error.contains(expected), "{yaml}\ngave: {error}");
        }
    }

    #[test]
    fn a_failover_without_outlier_detection_is_a_warning() {
        let warned = rule(
            "host: a\ntrafficPolicy:\n  tls: {mode: ISTIO_MUTUAL}\n  tunnel: {targetHost: h, targetPort: 1}\n  loadBalancer: {localityLbSetting: {failover: [{from: a, to: b}]}}\nsubsets:\n- name: v1\n  trafficPolicy: {tls: {mode: SIMPLE, credentialName: cred}}\n",
        );
        assert_eq!(validate_traffic_policies(&warned), Ok(()));
        let fields: Vec<String> = destination_rule_warnings(&warned)
            .into_iter()
            .map(|warning| warning.field)
            .collect();
        assert_eq!(
            fields,
            ["spec.trafficPolicy.loadBalancer.localityLbSetting"]
        );
    }
}
