//! Istio's dashboards and alerts work against rudder: every metric the queries of Istio's Control
//! Plane dashboard read is one rudder exports, with the labels the queries group and filter by,
//! unless it comes from another exporter or belongs to a feature rudder does not have yet (the
//! exceptions below, each with its reason). The dashboard is read from the Istio release
//! scripts/istiod builds (`manifests/addons/dashboards/pilot-dashboard.gen.json` in the
//! `istio.io/istio` module hack/istiod/go.mod pins, fetched from the Go module proxy when the test
//! runs, not committed). istiod's metrics that alerts are commonly written on are checked from a
//! committed list ([`ALERTED`]).
//!
//! The labels that Prometheus adds when it scrapes a pod (`app`, `pod`, `container`) are checked
//! against the Deployment in manifests/rudder.yaml.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use support::istio_module::istio_module;

/// Dashboard metrics rudder does not export, and why.
const NOT_EXPORTED: &[(&str, &str)] = &[
    (
        "container_cpu_usage_seconds_total",
        "the kubelet's (cAdvisor) metric, for the pod the Deployment names",
    ),
    (
        "container_memory_working_set_bytes",
        "the kubelet's (cAdvisor) metric, for the pod the Deployment names",
    ),
    (
        "envoy_cluster_upstream_cx_active",
        "Envoy's own metric, scraped from the proxies",
    ),
    (
        "galley_validation_passed",
        "rudder serves no validating webhook yet (issue 22)",
    ),
    (
        "galley_validation_failed",
        "rudder serves no validating webhook yet (issue 22)",
    ),
    (
        "sidecar_injection_success_total",
        "rudder injects no sidecars yet (issue 22)",
    ),
    (
        "sidecar_injection_failure_total",
        "rudder injects no sidecars yet (issue 22)",
    ),
    (
        "go_memstats_alloc_bytes_total",
        "counting every allocation would cost on every allocation (README, Metrics)",
    ),
    (
        "go_memstats_mallocs_total",
        "counting every allocation would cost on every allocation (README, Metrics)",
    ),
    (
        "go_memstats_stack_inuse_bytes",
        "thread stacks are mapped, not allocated; their use is not known (README, Metrics)",
    ),
];

/// istiod metrics alerts are written on beyond the dashboard's: the xDS and config health
/// metrics of `pkg/xds/monitoring.go`, `pilot/pkg/bootstrap/monitoring.go` and
/// `pkg/version/stats.go` in the pinned Istio module that have a meaning in rudder.
const ALERTED: &[&str] = &[
    "istio_build",
    "istiod_uptime_seconds",
    "pilot_info",
    "pilot_k8s_cfg_events",
    "pilot_k8s_reg_events",
    "pilot_proxy_convergence_time",
    "pilot_services",
    "pilot_virt_services",
    "pilot_total_xds_internal_errors",
    "pilot_total_xds_rejects",
    "pilot_xds",
    "pilot_xds_cds_reject",
    "pilot_xds_eds_reject",
    "pilot_xds_lds_reject",
    "pilot_xds_rds_reject",
    "pilot_xds_expired_nonce",
    "pilot_xds_push_time",
    "pilot_xds_pushes",
    "pilot_xds_send_time",
    "pilot_xds_write_timeout",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
];

/// Labels Prometheus's pod scrape adds from the pod, not the exporter.
const POD_LABELS: &[&str] = &["app", "pod", "container"];

/// Every PromQL expression of a Grafana dashboard.
fn expressions(dashboard: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dashboard];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(fields) => {
                for (key, field) in fields {
                    match (key.as_str(), field) {
                        ("expr", Value::String(expr)) => found.push(expr.clone()),
                        _ => stack.push(field),
                    }
                }
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    found
}

/// The metrics one PromQL expression selects, each with the label names its matchers and
/// `by (...)` use. Functions and keywords are not metrics; range and grouping parts are skipped.
fn selected_metrics(expr: &str) -> BTreeMap<String, BTreeSet<String>> {
    const NOT_METRICS: &[&str] = &[
        "sum",
        "by",
        "without",
        "rate",
        "irate",
        "increase",
        "max",
        "min",
        "avg",
        "count",
        "histogram_quantile",
        "topk",
        "bottomk",
        "label_replace",
        "delta",
        "abs",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "and",
        "or",
        "unless",
    ];
    let mut metrics: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut grouping: BTreeSet<String> = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut last_metric: Option<String> = None;
    let mut after_by = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            after_by = word == "by" || word == "without";
            if !NOT_METRICS.contains(&word.as_str()) {
                metrics.entry(word.clone()).or_default();
                last_metric = Some(word);
            } else {
                last_metric = None;
            }
            continue;
        }
        match c {
            '{' => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == '}')
                    .map_or(chars.len(), |n| i + n);
                let matchers: String = chars[i + 1..end].iter().collect();
                if let Some(metric) = &last_metric {
                    let labels = metrics.entry(metric.clone()).or_default();
                    for matcher in matchers.split(',').filter(|m| !m.trim().is_empty()) {
                        let name: String = matcher
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        labels.insert(name);
                    }
                }
                i = end + 1;
            }
            '[' => {
                i = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .map_or(chars.len(), |n| i + n + 1);
            }
            '(' if after_by => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == ')')
                    .map_or(chars.len(), |n| i + n);
                let names: String = chars[i + 1..end].iter().collect();
                grouping.extend(names.split(',').map(|n| n.trim().to_string()));
                after_by = false;
                i = end + 1;
            }
            '"' => {
                i = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '"')
                    .map_or(chars.len(), |n| i + n + 2);
            }
            _ => {
                if !c.is_whitespace() {
                    last_metric = None;
                }
                i += 1;
            }
        }
    }
    // `by (...)` groups by labels of every metric of the expression.
    for labels in metrics.values_mut() {
        labels.extend(grouping.iter().filter(|label| !label.is_empty()).cloned());
    }
    metrics
}

/// The metric families rudder's /metrics renders once it has recorded one of everything it
/// records with labels (series of labelled metrics appear with their first sample), each with
/// the label names its series carry.
fn exported() -> BTreeMap<String, BTreeSet<String>> {
    use rudder::translate::ResourceType;
    let metrics = rudder::metrics::Metrics::new();
    metrics.kube_events("VirtualService", "add", 1);
    metrics.kube_events("Service", "add", 1);
    metrics.pushed(ResourceType::Cluster, 1_000);
    metrics.observe_push_time(ResourceType::Cluster, std::time::Duration::from_millis(1));
    metrics.rejected(
        ResourceType::Cluster,
        "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local",
    );
    metrics.rejected(
        ResourceType::Endpoint,
        "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local",
    );
    metrics.rejected(
        ResourceType::Listener,
        "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local",
    );
    metrics.rejected(
        ResourceType::Route,
        "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local",
    );
    let text = metrics.render();
    let mut families: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            families.entry(name.to_string()).or_default();
        } else if !line.starts_with('#') && !line.is_empty() {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let series = &line[..name_end];
            let labels = match line[name_end..].strip_prefix('{') {
                Some(rest) => rest[..rest.find('}').unwrap_or(rest.len())]
                    .split(',')
                    .filter_map(|pair| pair.split_once('=').map(|(name, _)| name.to_string()))
                    .collect(),
                None => BTreeSet::new(),
            };
            families
                .entry(series.to_string())
                .or_default()
                .extend(labels);
        }
    }
    families
}

/// The Deployment's name, its pod template's labels and its first container's name.
fn deployment() -> (String, BTreeMap<String, String>, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/rudder.yaml");
    let text = std::fs::read_to_string(&path).expect("manifests/rudder.yaml");
    for document in text.split("\n---") {
        let object: Value = match serde_saphyr::from_str(document) {
            Ok(object) => object,
            Err(_) => continue,
        };
        if object["kind"] != "Deployment" {
            continue;
        }
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let template = &object["spec"]["template"];
        let labels = template["metadata"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_string()))
            .collect();
        let container = template["spec"]["containers"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        return (name, labels, container);
    }
    panic!("no Deployment in {}", path.display());
}

#[test]
fn the_control_plane_dashboard_reads_only_what_rudder_exports() {
    let path = istio_module().join("manifests/addons/dashboards/pilot-dashboard.gen.json");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display())),
    )
    .expect("the dashboard is JSON");
    let exported = exported();
    let exceptions: BTreeMap<&str, &str> = NOT_EXPORTED.iter().copied().collect();
    let (deployment_name, pod_labels, container) = deployment();

    let mut missing = Vec::new();
    let mut read = BTreeSet::new();
    let exprs = expressions(&dashboard);
    assert!(
        exprs.len() >= 10,
        "{} has only {} queries",
        path.display(),
        exprs.len()
    );
    for expr in &exprs {
        for (metric, labels) in selected_metrics(expr) {
            read.insert(metric.clone());
            if exceptions.contains_key(metric.as_str()) {
                continue;
            }
            let Some(series_labels) = exported.get(&metric) else {
                missing.push(format!("{metric} (in `{expr}`)"));
                continue;
            };
            for label in labels.iter().filter(|label| label.as_str() != "le") {
                if POD_LABELS.contains(&label.as_str()) {
                    continue;
                }
                if !series_labels.contains(label) {
                    missing.push(format!("{metric} has no label {label} (in `{expr}`)"));
                }
            }
        }
        // What Prometheus adds from the pod must match rudder's pod.
        if expr.contains("app=\"istiod\"") {
            assert_eq!(
                pod_labels.get("app").map(String::as_str),
                Some("istiod"),
                "`{expr}` selects pods labelled app=istiod"
            );
        }
        if expr.contains("container=\"discovery\"") {
            assert_eq!(
                container, "discovery",
                "`{expr}` selects the container `discovery`"
            );
        }
        if expr.contains("pod=~\"istiod-.*\"") {
            // A Deployment's pods are named DEPLOYMENT-HASH-ID.
            assert!(
                deployment_name.starts_with("istiod-") || deployment_name == "istiod",
                "`{expr}` selects pods named istiod-*, not {deployment_name}-*"
            );
        }
    }
    assert!(missing.is_empty(), "not exported:\n{}", missing.join("\n"));
    let stale: Vec<_> = exceptions
        .keys()
        .filter(|name| !read.contains(**name))
        .collect();
    assert!(
        stale.is_empty(),
        "exceptions the dashboard no longer reads: {stale:?}"
    );
}

#[test]
fn istiod_metrics_alerts_use_are_exported() {
    let exported = exported();
    let missing: Vec<_> = ALERTED
        .iter()
        .filter(|name| {
            !exported.contains_key(**name) && !exported.contains_key(&format!("{name}_bucket"))
        })
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}");
}

#[test]
fn promql_metrics_and_labels_are_read() {
    let metrics = selected_metrics(
        r#"sum by (type,event) (rate(pilot_k8s_cfg_events{component="pilot"}[$__rate_interval]))"#,
    );
    assert_eq!(
        metrics,
        BTreeMap::from([(
            "pilot_k8s_cfg_events".to_string(),
            BTreeSet::from([
                "component".to_string(),
                "event".to_string(),
                "type".to_string()
            ])
        )])
    );
    let metrics = selected_metrics(r#"sum(rate(pilot_xds_push_time_bucket{}[1m])) by (le)"#);
    assert_eq!(
        metrics.keys().collect::<Vec<_>>(),
        vec!["pilot_xds_push_time_bucket"]
    );
}
