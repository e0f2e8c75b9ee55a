//! The checks of `istioctl analyze` that need nothing but the config itself (no Pods,
//! Deployments or Kubernetes Services, which `istioctl analyze --use-kube=false` skips too),
//! reported as warnings that carry istiod's message code (`[IST0109] ...`) so that they can be
//! compared with istioctl's. This module owns the codes and feeds the check families from the
//! admitted objects; each family has a module of its own:
//!
//! - `mesh_hosts`: VirtualServices bound to `mesh` that define the same host (IST0109),
//! - `gateway_binding`: VirtualService hosts no server of their Gateway exposes (IST0132),
//! - `gateway_conflicts`: Gateways with one selector exposing one host on one port (IST0145),
//! - `tls_verification`: DestinationRule TLS without CA certificates (IST0128, IST0129),
//! - `deprecation`: deprecated fields istiod still reads or ignores (IST0002).
//!
//! Codes of checks that live elsewhere, because validation already makes them: IST0101
//! (references leading nowhere: `model::references`, `virtual_service`), IST0111
//! (`model::references`), IST0112 (a destination without port to a service with several:
//! `virtual_service`), IST0130 and IST0131 (`unreachable`), IST0134 (`service_entry`).
//!
//! Warnings only: the objects apply all the same. Reads the objects it is given; no I/O.

use std::fmt::Display;

use crate::inputs::{IstioObject, Kind, Metadata, Object, ObjectKey};
use crate::istio;
use crate::model::references::Warning;

/// The `istioctl analyze` messages rudder gives, by istiod's name (`pkg/config/analysis/msg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    Deprecated,
    ReferencedResourceNotFound,
    ConflictingMeshGatewayVirtualServiceHosts,
    MultipleSidecarsWithoutWorkloadSelectors,
    VirtualServiceDestinationPortSelectorRequired,
    NoServerCertificateVerificationDestinationLevel,
    NoServerCertificateVerificationPortLevel,
    VirtualServiceUnreachableRule,
    VirtualServiceIneffectiveMatch,
    VirtualServiceHostNotFoundInGateway,
    ServiceEntryAddressesRequired,
    ConflictingGateways,
}

impl Code {
    pub(crate) fn id(self) -> &'static str {
        match self {
            Code::Deprecated => "IST0002",
            Code::ReferencedResourceNotFound => "IST0101",
            Code::ConflictingMeshGatewayVirtualServiceHosts => "IST0109",
            Code::MultipleSidecarsWithoutWorkloadSelectors => "IST0111",
            Code::VirtualServiceDestinationPortSelectorRequired => "IST0112",
            Code::NoServerCertificateVerificationDestinationLevel => "IST0128",
            Code::NoServerCertificateVerificationPortLevel => "IST0129",
            Code::VirtualServiceUnreachableRule => "IST0130",
            Code::VirtualServiceIneffectiveMatch => "IST0131",
            Code::VirtualServiceHostNotFoundInGateway => "IST0132",
            Code::ServiceEntryAddressesRequired => "IST0134",
            Code::ConflictingGateways => "IST0145",
        }
    }
}

/// `message` with its code in front, as `[IST0109] message` (istioctl prints
/// `Error [IST0109] (VirtualService ns/name) message`).
pub(crate) fn coded(code: Code, message: impl Display) -> String {
    format!("[{}] {message}", code.id())
}

/// One object of a kind the checks read: its namespace (`default` when none is written), name
/// and spec.
pub(super) struct Named<'a, Spec> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub spec: &'a Spec,
}

impl<'a, Spec> Named<'a, Spec> {
    fn of(object: &'a IstioObject<Spec>) -> Self {
        let Metadata {
            name, namespace, ..
        } = &object.metadata;
        Named {
            namespace: namespace.as_deref().unwrap_or("default"),
            name,
            spec: &object.spec,
        }
    }

    /// `namespace/name`, as istioctl names objects in its messages.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn key(&self, kind: Kind) -> ObjectKey {
        ObjectKey::new(kind, self.namespace, self.name)
    }
}

/// The objects the checks read, each kind in the order given (the model's: by key).
#[derive(Default)]
pub(super) struct Config<'a> {
    pub virtual_services: Vec<Named<'a, istio::VirtualService>>,
    pub gateways: Vec<Named<'a, istio::Gateway>>,
    pub destination_rules: Vec<Named<'a, istio::DestinationRule>>,
    pub sidecars: Vec<Named<'a, istio::Sidecar>>,
}

impl<'a> Config<'a> {
    fn of(objects: impl IntoIterator<Item = &'a Object>) -> Self {
        let mut config = Config::default();
        for object in objects {
            match object {
                Object::VirtualService(vs) => config.virtual_services.push(Named::of(vs)),
                Object::Gateway(gateway) => config.gateways.push(Named::of(gateway)),
                Object::DestinationRule(rule) => config.destination_rules.push(Named::of(rule)),
                Object::Sidecar(sidecar) => config.sidecars.push(Named::of(sidecar)),
                _ => {}
            }
        }
        config
    }
}

/// The warnings of every check family over `objects` (admitted objects of any kind).
pub fn analysis_warnings<'a>(objects: impl IntoIterator<Item = &'a Object>) -> Vec<Warning> {
    let config = Config::of(objects);
    let mut warnings = super::mesh_hosts::conflicting_mesh_hosts(&config);
    warnings.extend(super::gateway_binding::hosts_not_in_gateways(&config));
    warnings.extend(super::gateway_conflicts::conflicting_gateways(&config));
    warnings.extend(super::tls_verification::missing_ca_certificates(&config));
    warnings.extend(super::deprecation::deprecated_fields(&config));
    warnings
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::inputs::from_test_yaml;

    /// Every warning of the checks over `yaml`'s objects.
    pub fn warnings(yaml: &str) -> Vec<Warning> {
        let inputs = from_test_yaml(yaml);
        let objects: Vec<&Object> = inputs
            .entries
            .values()
            .filter_map(|entry| entry.object.as_ref().ok())
            .collect();
        analysis_warnings(objects)
    }

    /// `(code, object)` of every warning with a code, sorted.
    pub fn findings(yaml: &str) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = warnings(yaml)
            .into_iter()
            .filter_map(|(key, _, message)| {
                let (code, _) = message.strip_prefix('[')?.split_once(']')?;
                Some((code.to_string(), key.to_string()))
            })
            .collect();
        found.sort();
        found
    }

    #[test]
    fn destinations_without_a_port_to_a_service_with_several_are_reported() {
        let inputs = from_test_yaml(
            "\
apiVersion: v1
kind: Service
metadata: {name: two}
spec: {clusterIP: 10.96.0.2, ports: [{name: http, port: 80}, {name: admin, port: 9000}]}
---
apiVersion: v1
kind: Service
metadata: {name: one}
spec: {clusterIP: 10.96.0.1, ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web.example.com]
  http:
  - route: [{destination: {host: two}, weight: 50}, {destination: {host: two, port: {number: 80}}, weight: 50}]
    mirror: {host: one}
",
        );
        let errors: Vec<String> = crate::model::build(&inputs, &crate::model::LastGood::default())
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "test.yaml:11: VirtualService default/web: spec.http[0].route[0].destination.port: \
                 warning: [IST0112] service two.default.svc.cluster.local exposes several ports \
                 (80, 9000) and this destination names none"
            ]
        );
    }

    #[test]
    fn messages_carry_their_code_in_front() {
        assert_eq!(
            coded(Code::ConflictingGateways, "two gateways"),
            "[IST0145] two gateways"
        );
        // Short hosts are read as istioctl's `ConvertHostToFQDN` reads them.
        let fqdn = |host| super::super::mesh_hosts::fqdn(host, "bar");
        assert_eq!(fqdn("reviews"), "reviews.bar.svc.cluster.local");
        assert_eq!(fqdn("*.example.com"), "*.example.com");
        assert_eq!(fqdn("a.b"), "a.b");
    }
}
