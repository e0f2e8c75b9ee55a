//! rudder's own serde types for the Istio networking API (`networking.istio.io` v1, v1beta1 and
//! v1alpha3 share one schema). They mirror Istio's field names (camelCase) and accept what istiod
//! accepts: unknown fields are ignored and enums keep values they do not know as `Unknown`.
//! This module only describes shapes; resolving names and validating references is the model's job.

mod destination_rule;
mod virtual_service;

pub use destination_rule::*;
pub use virtual_service::*;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The API group every Istio networking kind belongs to.
pub const NETWORKING_GROUP: &str = "networking.istio.io";

/// The versions of the networking group rudder reads; they share one schema.
pub const NETWORKING_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];

/// One way to match a string: `exact`, `prefix` or `regex` (RE2 syntax).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

/// A port named by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PortSelector {
    #[serde(default)]
    pub number: u32,
}

/// A percentage in 0..=100, as Istio's `Percent` message (`value: 0.1` is 0.1%).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Percent {
    #[serde(default)]
    pub value: f64,
}

/// Selects workloads by labels.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}
