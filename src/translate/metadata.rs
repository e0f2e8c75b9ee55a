//! Istio's filter metadata (the `istio` key) on routes and outbound clusters, as istiod writes it:
//! the config an object came from (`config: /apis/GROUP/VERSION/namespaces/NS/KIND/NAME`), and on
//! clusters the service they stand for, the subset and whether the service is mesh-external.
//! Envoy ignores it; tooling reads it (`istioctl proxy-config` shows the VirtualService of a
//! route and the DestinationRule of a cluster from it, telemetry the service of a cluster).
//!
//! This module only shapes the metadata; which object gets which is the caller's.

use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};

use crate::model::{DestinationRule, Registry, Service, VirtualService};

const ISTIO: &str = "istio";
/// istiod names the config by its group, its served version and its kind in kebab case.
const NETWORKING_API: &str = "/apis/networking.istio.io/v1";

fn string(value: impl Into<String>) -> Value {
    Value {
        kind: Some(Kind::StringValue(value.into())),
    }
}

fn metadata(fields: impl IntoIterator<Item = (&'static str, Value)>) -> Metadata {
    let fields = fields
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect();
    Metadata {
        filter_metadata: [(ISTIO.to_string(), Struct { fields })].into(),
        ..Default::default()
    }
}

fn config_path(kind: &str, namespace: &str, name: &str) -> String {
    format!("{NETWORKING_API}/namespaces/{namespace}/{kind}/{name}")
}

/// A VirtualService's route: the VirtualService (the root one for routes merged from delegates,
/// as in istiod).
pub(super) fn route_metadata(vs: &VirtualService) -> Metadata {
    metadata([(
        "config",
        string(config_path("virtual-service", &vs.namespace, &vs.name)),
    )])
}

/// An outbound cluster: its service (`services`, one entry), `external` for a mesh-external
/// service's default cluster, and the DestinationRule (`config`) and `subset` when there is one,
/// with `alpn_override: "false"` when its policy originates TLS (`originates_tls`: SIMPLE or
/// MUTUAL).
pub(super) fn cluster_metadata(
    service: &Service,
    subset: &str,
    rule: Option<&DestinationRule>,
    originates_tls: bool,
) -> Metadata {
    // istiod names a ServiceEntry's service by its host.
    let name = match service.registry {
        Registry::Kubernetes => &service.name,
        Registry::ServiceEntry => &service.hostname,
    };
    let service_entry = Struct {
        fields: [
            ("host", string(&service.hostname)),
            ("name", string(name)),
            ("namespace", string(&service.namespace)),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect(),
    };
    let mut fields = vec![(
        "services",
        Value {
            kind: Some(Kind::ListValue(ListValue {
                values: vec![Value {
                    kind: Some(Kind::StructValue(service_entry)),
                }],
            })),
        },
    )];
    // istiod marks only the service's default cluster; subset clusters are built afresh.
    if service.mesh_external && subset.is_empty() {
        fields.push((
            "external",
            Value {
                kind: Some(Kind::BoolValue(true)),
            },
        ));
    }
    if let Some(rule) = rule {
        fields.push((
            "config",
            string(config_path("destination-rule", &rule.namespace, &rule.name)),
        ));
        if !subset.is_empty() {
            fields.push(("subset", string(subset)));
        }
        if originates_tls {
            fields.push(("alpn_override", string("false")));
        }
    }
    metadata(fields)
}
