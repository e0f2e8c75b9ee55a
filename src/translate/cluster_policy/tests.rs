use super::*;
use crate::istio;

fn rule(yaml: &str) -> DestinationRule {
    let spec: istio::DestinationRule = serde_saphyr::from_str(yaml).expect("the rule parses");
    DestinationRule {
        name: "r".into(),
        namespace: "default".into(),
        host: spec.host.clone(),
        traffic_policy: spec.traffic_policy,
        subsets: spec.subsets,
        export_to: crate::model::ExportTo::Public,
    }
}

fn lb(policy: &ClusterPolicy<'_>) -> Option<SimpleLb> {
    policy.load_balancer.and_then(|lb| lb.simple)
}

#[test]
fn subset_over_port_level_over_top_level() {
    let rule = rule(
        "host: a\ntrafficPolicy:\n  loadBalancer: {simple: RANDOM}\n  outlierDetection: {consecutive5xxErrors: 1}\n  portLevelSettings:\n  - port: {number: 80}\n    loadBalancer: {simple: ROUND_ROBIN}\nsubsets:\n- name: v1\n  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}\n- name: v2\n  trafficPolicy:\n    tls: {mode: SIMPLE}\n    portLevelSettings:\n    - port: {number: 81}\n      connectionPool: {tcp: {maxConnections: 1}}\n",
    );
    // The top level applies to other ports.
    let top = cluster_policy(Some(&rule), 8080, "");
    assert_eq!(lb(&top), Some(SimpleLb::Random));
    assert!(top.outlier_detection.is_some());
    // A port-level entry replaces the top level whole: no outlier detection on port 80.
    let port = cluster_policy(Some(&rule), 80, "");
    assert_eq!(lb(&port), Some(SimpleLb::RoundRobin));
    assert!(port.outlier_detection.is_none());
    // A subset's part replaces the merged part; the rest stays.
    let v1 = cluster_policy(Some(&rule), 80, "v1");
    assert_eq!(lb(&v1), Some(SimpleLb::LeastRequest));
    assert!(v1.outlier_detection.is_none());
    let v1_other_port = cluster_policy(Some(&rule), 8080, "v1");
    assert!(v1_other_port.outlier_detection.is_some());
    // A subset's port-level entry replaces all four parts.
    let v2 = cluster_policy(Some(&rule), 81, "v2");
    assert!(v2.tls.is_none());
    assert!(v2.load_balancer.is_none());
    assert!(v2.connection_pool.is_some());
    let v2_other_port = cluster_policy(Some(&rule), 8080, "v2");
    assert!(v2_other_port.tls.is_some());
    assert_eq!(lb(&v2_other_port), Some(SimpleLb::Random));
}

#[test]
fn cluster_names_parse() {
    assert_eq!(
        parse_outbound_cluster_name("outbound|9080|v1|reviews.default.svc.cluster.local"),
        Some((9080, "v1", "reviews.default.svc.cluster.local"))
    );
    assert_eq!(parse_outbound_cluster_name("PassthroughCluster"), None);
}
