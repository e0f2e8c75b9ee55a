//! Checks that decide whether an Istio object may be applied: what Envoy would reject (regexes
//! RE2 does not accept, weights that do not add up) and references that lead nowhere (a subset no
//! DestinationRule defines, a destination host that is not a service). Each check names the
//! field at fault. Pure functions over the object and the already admitted part of the model.
//! Besides, the checks of `istioctl analyze` that config alone allows (`analysis`): warnings
//! carrying istiod's message codes.

mod analysis;
mod deprecation;
mod gateway;
mod gateway_binding;
mod gateway_conflicts;
mod http_route_policy;
mod kubernetes;
mod mesh_hosts;
mod re2;
mod service_entry;
mod sidecar;
mod syntax;
mod tls_verification;
mod unreachable;
mod virtual_service;

pub(super) use analysis::{Code, analysis_warnings, coded};
pub use gateway::validate_gateway;
pub(crate) use http_route_policy::validate_retries;
pub use kubernetes::{validate_endpoint_slice, validate_service};
pub use service_entry::{
    service_entry_warnings, unset_address_warning, validate_service_entry, validate_workload_entry,
};
pub use sidecar::{sidecar_warnings, validate_sidecar};
pub(crate) use syntax::UNIX_PREFIX;
pub use virtual_service::{UnknownReferences, validate_virtual_service};

use std::collections::BTreeSet;

use crate::inputs::FieldError;
use crate::istio;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

pub fn validate_destination_rule(rule: &istio::DestinationRule) -> Result<(), FieldError> {
    if rule.host.trim().is_empty() {
        return Err(invalid("spec.host", "host is required"));
    }
    let mut names = BTreeSet::new();
    for (i, subset) in rule.subsets.iter().enumerate() {
        if subset.name.is_empty() {
            return Err(invalid(
                format!("spec.subsets[{i}].name"),
                "subset name is required",
            ));
        }
        if !names.insert(subset.name.as_str()) {
            return Err(invalid(
                format!("spec.subsets[{i}].name"),
                format!("duplicate subset name {:?}", subset.name),
            ));
        }
    }
    super::destination_rule::validate_traffic_policies(rule)
}
