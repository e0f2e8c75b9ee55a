//! rudder's own serde types for the Istio networking API (`networking.istio.io` v1, v1beta1 and
//! v1alpha3 share one schema). They mirror Istio's field names (camelCase) and accept what istiod
//! accepts: unknown fields are ignored and enums keep values they do not know as `Unknown`.
//! This module only describes shapes; resolving names and validating references is the model's job.
//!
//! Every spec type derives [`schemars::JsonSchema`]: the coverage table's tests
//! (`src/coverage/tests.rs`) compare the fields the types read with the table, and the table with
//! Istio's own CRDs, so a field Istio has cannot go without a status.

mod destination_rule;
mod gateway;
mod service_entry;
mod sidecar;
mod string_match;
mod virtual_service;

pub use destination_rule::*;
pub use gateway::*;
pub use service_entry::*;
pub use sidecar::*;
pub use string_match::*;
pub use virtual_service::*;

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// The API group every Istio networking kind belongs to.
pub const NETWORKING_GROUP: &str = "networking.istio.io";

/// The versions of the networking group rudder reads; they share one schema.
pub const NETWORKING_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];

/// A port named by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PortSelector {
    /// A valid port number.
    #[serde(default)]
    pub number: u32,
}

/// A port a listener or a service exposes: Istio's `Port` (Gateway), `ServicePort`
/// (ServiceEntry) and `SidecarPort` (Sidecar) have the same fields.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Port {
    /// A valid non-negative integer port number.
    pub number: u32,
    /// The protocol exposed on the port: HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, TCP or TLS
    /// (case-insensitive). Empty when not given.
    pub protocol: String,
    /// Label assigned to the port.
    pub name: String,
    /// The port number on the endpoint where the traffic will be received.
    pub target_port: Option<u32>,
}

/// A percentage in 0..=100, as Istio's `Percent` message (`value: 0.1` is 0.1%).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Percent {
    #[serde(default)]
    pub value: f64,
}

/// Selects workloads by labels: Istio's `type.v1beta1.WorkloadSelector` (`matchLabels`), used by
/// DestinationRule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    /// One or more labels that indicate a specific set of pods/VMs on which a policy should be
    /// applied.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// Selects workloads by labels: the networking API's own `WorkloadSelector` (`labels`), used by
/// ServiceEntry and Sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct WorkloadLabels {
    /// One or more labels that indicate a specific set of pods/VMs on which the configuration
    /// should be applied.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Durations are Go duration strings (`10s`, `1.5s`, `250ms`) in every Istio schema.
impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration in Go syntax, such as 10s, 1.5s, 250ms or 1h30m."
        })
    }
}

/// The OpenAPI v3 schema of one of rudder's Istio spec types, made structural as the API server
/// wants CRD schemas (fields of `oneOf` branches become properties), so that tests can compare its
/// field paths with those of Istio's CRDs.
#[cfg(test)]
pub(crate) fn spec_schema<T: schemars::JsonSchema>() -> serde_json::Value {
    schemars::generate::SchemaSettings::openapi3()
        .with(|settings| settings.inline_subschemas = true)
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(kube_core::schema::StructuralSchemaRewriter)
        .with_transform(kube_core::schema::OptionalEnum)
        .with_transform(kube_core::schema::OptionalIntOrString)
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_and_selectors_parse() {
        let port: Port = serde_json::from_value(serde_json::json!({
            "number": 443, "protocol": "HTTPS", "name": "https", "targetPort": 8443, "other": 1
        }))
        .unwrap();
        assert_eq!(
            port,
            Port {
                number: 443,
                protocol: "HTTPS".into(),
                name: "https".into(),
                target_port: Some(8443),
            }
        );
        let selector: WorkloadLabels =
            serde_json::from_value(serde_json::json!({"labels": {"app": "a"}})).unwrap();
        assert_eq!(selector.labels["app"], "a");
    }
}
