//! Warnings for admitted objects that are valid alone but lead nowhere or collide, which istiod
//! applies all the same and its analyzers (`pkg/config/analysis/analyzers`) report: a
//! VirtualService bound to a Gateway that does not exist, or was not applied (IST0101,
//! ReferencedResourceNotFound),
//! and several Sidecars without a workload selector in one namespace (IST0111,
//! MultipleSidecarsWithoutWorkloadSelectors: istiod applies the oldest and ignores the others,
//! as `model::sidecar` orders them). Messages carry those codes (`validate::coded`). Reads the
//! model as built; changes nothing in it.

use std::collections::{BTreeMap, BTreeSet};

use super::gateway::Gateway;
use super::sidecar::Sidecar;
use super::validate::{Code, coded};
use super::{MESH_GATEWAY, VirtualService};
use crate::inputs::{Kind, ObjectKey};

/// One warning: the object, its field at fault, and what is wrong.
pub(super) type Warning = (ObjectKey, String, String);

/// `sidecars` oldest first, as the model holds them.
pub(super) fn reference_warnings(
    virtual_services: &[VirtualService],
    gateways: &[Gateway],
    sidecars: &[Sidecar],
) -> Vec<Warning> {
    let known: BTreeSet<String> = gateways.iter().map(Gateway::qualified_name).collect();
    let mut warnings = Vec::new();
    for vs in virtual_services {
        for (i, gateway) in vs.gateways.iter().enumerate() {
            if gateway != MESH_GATEWAY && !known.contains(gateway) {
                warnings.push((
                    ObjectKey::new(Kind::VirtualService, &vs.namespace, &vs.name),
                    format!("spec.gateways[{i}]"),
                    coded(
                        Code::ReferencedResourceNotFound,
                        format!(
                            "no Gateway {gateway} is in force (it does not exist or was not \
                             applied); these routes apply to no gateway until one is"
                        ),
                    ),
                ));
            }
        }
    }
    let mut applying: BTreeMap<&str, &str> = BTreeMap::new();
    for sidecar in sidecars.iter().filter(|sidecar| sidecar.selector.is_none()) {
        match applying.get(sidecar.namespace.as_str()) {
            Some(oldest) => warnings.push((
                ObjectKey::new(Kind::Sidecar, &sidecar.namespace, &sidecar.name),
                "spec.workloadSelector".to_string(),
                coded(
                    Code::MultipleSidecarsWithoutWorkloadSelectors,
                    format!(
                        "Sidecar {}/{oldest}, older and also without a workloadSelector, applies \
                         to the namespace's workloads; this one is ignored",
                        sidecar.namespace
                    ),
                ),
            )),
            None => {
                applying.insert(&sidecar.namespace, &sidecar.name);
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use crate::inputs::from_test_yaml;
    use crate::model::{LastGood, build};

    #[test]
    fn missing_gateways_and_second_namespace_sidecars_are_warned_about() {
        let inputs = from_test_yaml(
            "\
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: 10.96.0.1, ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web.example.com]
  gateways: [mesh, missing]
  http: [{route: [{destination: {host: web}}]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: older, creationTimestamp: '2026-01-01T00:00:00Z'}
spec: {egress: [{hosts: ['./*']}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: newer, creationTimestamp: '2026-01-02T00:00:00Z'}
spec: {egress: [{hosts: ['*/*']}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: selecting, creationTimestamp: '2026-01-03T00:00:00Z'}
spec: {workloadSelector: {labels: {app: a}}, egress: [{hosts: ['*/*']}]}
",
        );
        let errors: Vec<String> = build(&inputs, &LastGood::default())
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "test.yaml:6: VirtualService default/web: spec.gateways[1]: warning: [IST0101] no \
                 Gateway default/missing is in force (it does not exist or was not applied); these \
                 routes apply to no gateway until one is",
                "test.yaml:6: VirtualService default/web: spec.gateways[1]: warning: [IST0132] none \
                 of the hosts [\"web.example.com\"] is exposed to this VirtualService's namespace \
                 by a server of Gateway default/missing, which serves none of these routes",
                "test.yaml:19: Sidecar default/newer: spec.workloadSelector: warning: [IST0111] \
                 Sidecar default/older, older and also without a workloadSelector, applies to the \
                 namespace's workloads; this one is ignored",
            ]
        );
    }
}
