use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;
use crate::inputs::{Decoded, decode};
use crate::istio::{self, spec_schema as type_schema};

/// Every field path of an OpenAPI schema, written as the table writes them.
fn schema_paths(schema: &Value, at: &str, out: &mut BTreeSet<String>) {
    let properties = schema.get("properties").and_then(Value::as_object);
    for (name, property) in properties.into_iter().flatten() {
        let values = property.get("additionalProperties");
        let (path, inner) = if property.get("type").and_then(Value::as_str) == Some("array") {
            (format!("{at}.{name}[]"), property.get("items"))
        } else if let Some(values) = values.filter(|v| v.get("properties").is_some()) {
            (format!("{at}.{name}{{}}"), Some(values))
        } else {
            (format!("{at}.{name}"), Some(property))
        };
        if let Some(inner) = inner {
            schema_paths(inner, &path, out);
        }
        out.insert(path);
    }
}

fn table_paths(fields: &[Field], at: &str, out: &mut BTreeSet<String>) {
    for field in fields {
        let path = format!("{at}.{}", field.name);
        table_paths(field.fields, &path, out);
        assert!(out.insert(path.clone()), "{path} is listed twice");
    }
}

fn schema_of(kind: Kind) -> Value {
    match kind {
        Kind::VirtualService => type_schema::<istio::VirtualService>(),
        Kind::DestinationRule => type_schema::<istio::DestinationRule>(),
        Kind::ServiceEntry => type_schema::<istio::ServiceEntry>(),
        Kind::WorkloadEntry => type_schema::<istio::WorkloadEntry>(),
        Kind::Sidecar => type_schema::<istio::Sidecar>(),
        Kind::Gateway => type_schema::<istio::Gateway>(),
        other => panic!("{other} has no Istio schema"),
    }
}

/// The table's paths for `kind`.
fn table_paths_of(fields: &[Field]) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    table_paths(fields, "spec", &mut paths);
    paths
}

#[test]
fn every_field_rudder_reads_has_a_status() {
    let kinds: Vec<Kind> = table::KINDS.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(kinds.len(), 6, "the six Istio networking kinds");
    for (kind, fields) in table::KINDS {
        let mut from_schema = BTreeSet::new();
        schema_paths(&schema_of(*kind), "spec", &mut from_schema);
        let from_table = table_paths_of(fields);
        let missing: Vec<&String> = from_schema.difference(&from_table).collect();
        let unknown: Vec<&String> = from_table.difference(&from_schema).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "{kind}: fields without a status in src/coverage/table.rs: {missing:?}; \
             listed but not in the type: {unknown:?}"
        );
    }
}

/// Istio's CRDs of the version rudder is compared with: the file `$RUDDER_ISTIO_CRDS` names
/// (scripts/test fetches it first), or what `scripts/istio-crds --path` fetches (Go and the Go
/// module proxy the first time, then cached).
fn istio_crds_file() -> PathBuf {
    if let Some(path) = std::env::var_os("RUDDER_ISTIO_CRDS") {
        return PathBuf::from(path);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new(root.join("scripts/istio-crds"))
        .arg("--path")
        .output()
        .expect("run scripts/istio-crds");
    assert!(
        output.status.success(),
        "scripts/istio-crds --path failed (set RUDDER_ISTIO_CRDS to a copy of Istio's CRDs):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

#[test]
fn every_field_of_istios_crds_has_a_status() {
    let path = istio_crds_file();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let crds: Vec<Value> = serde_saphyr::from_multiple(&text).expect("Istio's CRDs are YAML");
    for (kind, fields) in table::KINDS {
        let crd = crds
            .iter()
            .find(|crd| {
                crd["spec"]["group"] == istio::NETWORKING_GROUP
                    && crd["spec"]["names"]["kind"] == kind.name()
            })
            .unwrap_or_else(|| panic!("{}: no CRD of {kind}", path.display()));
        let from_table = table_paths_of(fields);
        let versions = crd["spec"]["versions"].as_array().expect("versions");
        assert!(!versions.is_empty(), "{kind}: no versions");
        // Every version Istio serves has one schema; each is checked all the same.
        for version in versions {
            let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
            let mut from_istio = BTreeSet::new();
            schema_paths(spec, "spec", &mut from_istio);
            let missing: Vec<&String> = from_istio.difference(&from_table).collect();
            let unknown: Vec<&String> = from_table.difference(&from_istio).collect();
            assert!(
                missing.is_empty() && unknown.is_empty(),
                "{kind} {}: fields of Istio's CRD ({}) without a status in \
                 src/coverage/table.rs: {missing:?}; listed but not in Istio's CRD: {unknown:?}",
                version["name"],
                path.display()
            );
        }
    }
}

#[test]
fn the_coverage_document_is_generated_from_the_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DOCUMENT_PATH);
    let generated = document();
    if std::env::var_os("RUDDER_UPDATE_COVERAGE").is_some() {
        std::fs::write(&path, &generated).expect("write docs/coverage.md");
        return;
    }
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        kept == generated,
        "docs/coverage.md differs from the table; regenerate it with \
         RUDDER_UPDATE_COVERAGE=1 cargo test --lib coverage"
    );
}

fn object(yaml: &str) -> Object {
    let value: Value = serde_saphyr::from_str(yaml).expect("YAML");
    match decode(value, "default").expect("decodes") {
        Decoded::Object(_, object) => object.expect("valid object"),
        Decoded::Skipped { .. } => panic!("skipped"),
    }
}

fn warnings(yaml: &str) -> Vec<String> {
    unsupported_settings(&object(yaml))
        .into_iter()
        .map(|warning| warning.to_string())
        .collect()
}

#[test]
fn unsupported_fields_are_named_by_their_concrete_path() {
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\n\
              spec:\n  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n  \
              - fault: {delay: {fixedDelay: 1s}, abort: {httpStatus: 503}}\n    \
              route: [{destination: {host: a}}]\n  tcp:\n  - match: [{sourceSubnet: 10.0.0.0/8}]\n    \
              route: [{destination: {host: a}}]\n";
    assert_eq!(
        warnings(vs),
        ["spec.tcp[0].match[0].sourceSubnet: not supported by rudder yet; ignored",]
    );
}

#[test]
fn partly_supported_fields_warn_only_for_the_unsupported_part() {
    let dr = |policy: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: a}}\n\
             spec:\n  host: a\n{policy}"
        )
    };
    let fields = |yaml: &str| -> Vec<String> {
        unsupported_settings(&object(yaml))
            .into_iter()
            .map(|warning| warning.field)
            .collect()
    };
    assert!(
        fields(&dr(
            "  exportTo: ['*']\n  trafficPolicy: {tls: {mode: SIMPLE}}\n"
        ))
        .is_empty()
    );
    assert_eq!(
        fields(&dr(
            "  exportTo: [.]\n  workloadSelector: {matchLabels: {app: a}}\n  trafficPolicy:\n    \
             tls: {mode: ISTIO_MUTUAL}\n    tunnel: {targetHost: h, targetPort: 1}\n    \
             outlierDetection: {consecutiveErrors: 5}\n  subsets:\n  - name: v1\n    \
             trafficPolicy:\n      portLevelSettings:\n      - port: {number: 80}\n        \
             tls: {mode: SIMPLE, credentialName: c}\n"
        )),
        [
            "spec.trafficPolicy.outlierDetection.consecutiveErrors",
            "spec.trafficPolicy.tls.mode",
            "spec.trafficPolicy.tunnel",
            "spec.subsets[0].trafficPolicy.portLevelSettings[0].tls.credentialName",
            "spec.workloadSelector",
        ]
    );
}

#[test]
fn gateway_fields_without_effect_warn() {
    let gateway = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\n\
                   spec:\n  selector: {istio: ingressgateway}\n  servers:\n  \
                   - port: {number: 80, name: http, protocol: HTTP, targetPort: 8080}\n    hosts: ['*']\n    \
                   defaultEndpoint: 127.0.0.1:8080\n";
    assert_eq!(
        warnings(gateway),
        [
            "spec.servers[0].port.targetPort: istiod ignores it on Gateways: the gateway Service's targetPort applies",
            "spec.servers[0].defaultEndpoint: not supported by rudder yet; ignored",
        ]
    );
}

#[test]
fn the_document_lists_shared_groups_once() {
    let section = document();
    assert!(section.contains(
        "| `spec.subsets[].trafficPolicy` | supported; its fields as under `spec.trafficPolicy` |"
    ));
    assert!(section.contains("| `spec.inboundConnectionPool.tcp.maxConnections` | not yet |"));
    assert!(section.contains("| `spec.tcp[].match[].sourceSubnet` | not yet |"));
}

#[test]
fn fields_of_newer_istio_releases_are_read_and_reported() {
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\n\
              spec:\n  host: a\n  trafficPolicy:\n    connectionPool:\n      http:\n        \
              http2KeepAlive: {interval: 10s, timeout: 2s}\n    outlierDetection:\n      \
              consecutive5xxErrors: 3\n      outlierDetectionHttpErrorCodes: [503]\n";
    assert_eq!(
        warnings(dr),
        [
            "spec.trafficPolicy.connectionPool.http.http2KeepAlive: not supported by rudder yet; ignored",
            "spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes: not supported by rudder yet; ignored",
        ]
    );
}
