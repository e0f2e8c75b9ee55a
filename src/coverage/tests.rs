use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::*;
use crate::crd::spec_schema;
use crate::inputs::{Decoded, decode};
use crate::istio;

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
        Kind::VirtualService => spec_schema::<istio::VirtualService>(),
        Kind::DestinationRule => spec_schema::<istio::DestinationRule>(),
        Kind::ServiceEntry => spec_schema::<istio::ServiceEntry>(),
        Kind::WorkloadEntry => spec_schema::<istio::WorkloadEntry>(),
        Kind::Sidecar => spec_schema::<istio::Sidecar>(),
        Kind::Gateway => spec_schema::<istio::Gateway>(),
        other => panic!("{other} has no Istio schema"),
    }
}

#[test]
fn every_field_of_every_istio_kind_has_a_status() {
    let kinds: Vec<Kind> = table::KINDS.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(kinds.len(), 6, "the six Istio networking kinds");
    for (kind, fields) in table::KINDS {
        let mut from_schema = BTreeSet::new();
        schema_paths(&schema_of(*kind), "spec", &mut from_schema);
        let mut from_table = BTreeSet::new();
        table_paths(fields, "spec", &mut from_table);
        let missing: Vec<&String> = from_schema.difference(&from_table).collect();
        let unknown: Vec<&String> = from_table.difference(&from_schema).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "{kind}: fields without a status in src/coverage/table.rs: {missing:?}; \
             listed but not in the type: {unknown:?}"
        );
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
