//! Gateways that select the same workloads and expose the same host (as written) on the same
//! port and bind address (IST0145, istiod's `ConflictingGatewayAnalyzer`): the gateway proxy
//! gets two servers for one host and which one applies is not defined. Selectors are compared as
//! written; the analyzer also compares selectors that are subsets of each other through the Pods
//! both select, which config files alone do not have (`istioctl analyze --use-kube=false` skips
//! this analyzer for that reason). Reads the objects as written; no I/O.

use std::collections::{BTreeMap, BTreeSet};

use super::analysis::{Code, Config, coded};
use crate::inputs::Kind;
use crate::istio;
use crate::model::references::Warning;

/// The hosts of a Gateway's server on one port, with their bind address (empty for none).
type HostBinds<'a> = BTreeMap<&'a str, &'a str>;

pub(super) fn conflicting_gateways(config: &Config<'_>) -> Vec<Warning> {
    let selectors: Vec<String> = config
        .gateways
        .iter()
        .map(|gateway| selector(&gateway.spec.selector))
        .collect();
    // (selector, port) -> gateway (by index) -> its hosts there. As in the analyzer, a gateway
    // with several servers on one port counts with its last one.
    let mut by_port: BTreeMap<(&str, u32), BTreeMap<usize, HostBinds<'_>>> = BTreeMap::new();
    for (index, gateway) in config.gateways.iter().enumerate() {
        for server in &gateway.spec.servers {
            by_port
                .entry((&selectors[index], server.port.number))
                .or_default()
                .insert(index, host_binds(server));
        }
    }
    let mut warnings = Vec::new();
    for (index, gateway) in config.gateways.iter().enumerate() {
        for (i, server) in gateway.spec.servers.iter().enumerate() {
            let Some(others) = by_port.get(&(selectors[index].as_str(), server.port.number)) else {
                continue;
            };
            let bind = server.bind.as_deref().unwrap_or_default();
            let conflicting: BTreeSet<String> = others
                .iter()
                .filter(|(other, binds)| {
                    **other != index
                        && server
                            .hosts
                            .iter()
                            .any(|host| binds.get(host.as_str()) == Some(&bind))
                })
                .map(|(other, _)| config.gateways[*other].full_name())
                .collect();
            if conflicting.is_empty() {
                continue;
            }
            warnings.push((
                gateway.key(Kind::Gateway),
                format!("spec.servers[{i}]"),
                coded(
                    Code::ConflictingGateways,
                    format!(
                        "conflicts with Gateways {} (workload selector {}, port {}, hosts {}): \
                         which server the gateway proxy applies is not defined",
                        conflicting.into_iter().collect::<Vec<_>>().join(","),
                        selectors[index],
                        server.port.number,
                        server.hosts.join(",")
                    ),
                ),
            ));
        }
    }
    warnings
}

/// A label selector as Kubernetes writes it: `key=value` pairs by key, comma separated.
fn selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn host_binds(server: &istio::Server) -> HostBinds<'_> {
    let bind = server.bind.as_deref().unwrap_or_default();
    server
        .hosts
        .iter()
        .map(|host| (host.as_str(), bind))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::analysis::tests::findings;

    fn gateway(name: &str, selector: &str, port: u32, hosts: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\n\
             spec:\n  selector: {{{selector}}}\n  servers:\n  - port: {{number: {port}, name: p, protocol: HTTP}}\n    hosts: [{hosts}]\n---\n"
        )
    }

    #[test]
    fn one_host_on_one_port_of_one_selector_conflicts() {
        let yaml = [
            gateway("alpha", "istio: ingressgateway", 80, "foo.bar, a.b"),
            gateway("beta", "istio: ingressgateway", 80, "foo.bar"),
            gateway("other-port", "istio: ingressgateway", 81, "foo.bar"),
            gateway("other-selector", "istio: egressgateway", 80, "foo.bar"),
            gateway("other-host", "istio: ingressgateway", 80, "'*.bar'"),
        ]
        .concat();
        assert_eq!(
            findings(&yaml),
            [
                ("IST0145".into(), "Gateway default/alpha".into()),
                ("IST0145".into(), "Gateway default/beta".into()),
            ]
        );
    }
}
