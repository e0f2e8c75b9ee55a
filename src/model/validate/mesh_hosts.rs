//! VirtualServices bound to the `mesh` gateway that define the same host for the same
//! namespaces (IST0109, istiod's `ConflictingMeshGatewayHostsAnalyzer`): sidecars then apply
//! the routes of only one of them to the host (`model::virtual_service` orders them as istiod
//! does), which istioctl calls undefined behavior. Hosts are compared as the
//! analyzer compares them: short names as services of the VirtualService's namespace, a
//! VirtualService exported to some namespaces against others exported to the same namespace or
//! to all (wildcards matching there), a public one against other public ones with the same host.
//! Reads the objects as written; no I/O.

use std::collections::{BTreeMap, BTreeSet};

use super::analysis::{Code, Config, coded};
use crate::inputs::Kind;
use crate::model::build::resolve_host;
use crate::model::references::Warning;
use crate::model::virtual_service::hosts_match;
use crate::model::{DEFAULT_DNS_DOMAIN, MESH_GATEWAY};

/// A short host in `namespace` as a service name under the default DNS domain, which istioctl's
/// `ConvertHostToFQDN` assumes.
pub(super) fn fqdn(host: &str, namespace: &str) -> String {
    resolve_host(host, namespace, DEFAULT_DNS_DOMAIN)
}

/// The scope of all namespaces, as istiod writes it.
const EVERYWHERE: &str = "*";

/// One warning for each VirtualService that shares a host with another, naming them all.
pub(super) fn conflicting_mesh_hosts(config: &Config<'_>) -> Vec<Warning> {
    // (scope, host) -> the VirtualServices (by index) defining the host for that scope.
    let mut by_host: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (index, vs) in config.virtual_services.iter().enumerate() {
        let spec = vs.spec;
        if !spec.gateways.is_empty() && !spec.gateways.iter().any(|g| g == MESH_GATEWAY) {
            continue;
        }
        let scopes: BTreeSet<&str> =
            if spec.export_to.is_empty() || spec.export_to.iter().any(|e| e == EVERYWHERE) {
                BTreeSet::from([EVERYWHERE])
            } else {
                spec.export_to
                    .iter()
                    .map(|e| if e == "." { vs.namespace } else { e.as_str() })
                    .collect()
            };
        for scope in scopes {
            for host in &spec.hosts {
                by_host
                    .entry((scope.to_string(), fqdn(host, vs.namespace)))
                    .or_default()
                    .push(index);
            }
        }
    }
    // Public hosts with wildcards, the only ones a scoped host without wildcard can match
    // besides itself (kept apart so that a build stays near linear in VirtualServices).
    let public_wildcards: Vec<(&str, &Vec<usize>)> = by_host
        .iter()
        .filter(|((scope, host), _)| scope == EVERYWHERE && host.starts_with('*'))
        .map(|((_, host), defining)| (host.as_str(), defining))
        .collect();
    let mut reported = BTreeSet::new();
    let mut warnings = Vec::new();
    for ((scope, host), defining) in &by_host {
        let mut defining = defining.clone();
        if scope != EVERYWHERE {
            // Public VirtualServices are seen in this scope too.
            if host.starts_with('*') {
                for ((other_scope, other_host), others) in &by_host {
                    if other_scope == EVERYWHERE && hosts_match(host, other_host) {
                        defining.extend(others);
                    }
                }
            } else {
                if let Some(others) = by_host.get(&(EVERYWHERE.to_string(), host.clone())) {
                    defining.extend(others);
                }
                for (other_host, others) in &public_wildcards {
                    if hosts_match(host, other_host) {
                        defining.extend(*others);
                    }
                }
            }
        }
        if defining.len() < 2 {
            continue;
        }
        let mut names: Vec<String> = defining
            .iter()
            .map(|&index| config.virtual_services[index].full_name())
            .collect();
        names.sort();
        let names = names.join(",");
        for &index in &defining {
            if !reported.insert(index) {
                continue;
            }
            warnings.push((
                config.virtual_services[index].key(Kind::VirtualService),
                "spec.hosts".to_string(),
                coded(
                    Code::ConflictingMeshGatewayVirtualServiceHosts,
                    format!(
                        "the VirtualServices {names} bound to the mesh gateway define the same \
                         host {scope}/{host}; sidecars apply only the first of them in istiod's \
                         order to it (merge them into one VirtualService)"
                    ),
                ),
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::super::analysis::tests::findings;

    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\n";

    #[test]
    fn mesh_virtual_services_sharing_a_host_in_a_scope_conflict() {
        let yaml = format!(
            "{VS}metadata: {{name: a, namespace: foo}}\nspec: {{hosts: [web], http: [{{route: [{{destination: {{host: web}}}}]}}]}}\n---\n\
             {VS}metadata: {{name: b, namespace: foo}}\nspec: {{hosts: [web.foo.svc.cluster.local], http: [{{route: [{{destination: {{host: web}}}}]}}]}}\n---\n\
             {VS}metadata: {{name: c, namespace: bar}}\nspec: {{hosts: [web], http: [{{route: [{{destination: {{host: web}}}}]}}]}}\n---\n\
             {VS}metadata: {{name: d, namespace: bar}}\nspec: {{hosts: [web], gateways: [gw], http: [{{route: [{{destination: {{host: web}}}}]}}]}}\n"
        );
        let conflicts: Vec<(String, String)> = findings(&yaml)
            .into_iter()
            .filter(|(code, _)| code == "IST0109")
            .collect();
        assert_eq!(
            conflicts,
            [
                ("IST0109".into(), "VirtualService foo/a".into()),
                ("IST0109".into(), "VirtualService foo/b".into()),
            ]
        );
        // A private wildcard host meets a public host it covers.
        let yaml = format!(
            "{VS}metadata: {{name: c, namespace: bar}}\nspec: {{hosts: [web], http: [{{route: [{{destination: {{host: web}}}}]}}]}}\n---\n\
             {VS}metadata: {{name: e, namespace: bar}}\nspec: {{hosts: ['*.bar.svc.cluster.local'], exportTo: [.], http: [{{route: [{{destination: {{host: web}}}}]}}]}}\n"
        );
        assert_eq!(
            findings(&yaml),
            [
                ("IST0109".into(), "VirtualService bar/c".into()),
                ("IST0109".into(), "VirtualService bar/e".into()),
            ]
        );
    }
}
