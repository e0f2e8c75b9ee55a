//! What `rudder serve` tells a person at startup: what it loaded (objects per kind, config
//! errors) and where proxies connect, with a `rudder bootstrap` command that attaches a stock
//! Envoy. Pure text from the first build and the bound addresses; logging it is `serve`'s job.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::diagnostic::ConfigError;
use crate::inputs::{Inputs, Kind};
use crate::model::Model;

/// `N Kind` for each kind the sources hold, in [`Kind`] order, comma-separated (`none` when
/// empty). Objects whose content was refused count too: they are loaded, and reported.
pub fn object_counts(inputs: &Inputs) -> String {
    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    for key in inputs.entries.keys() {
        *counts.entry(key.kind).or_default() += 1;
    }
    if counts.is_empty() {
        return "none".to_string();
    }
    counts
        .iter()
        .map(|(kind, count)| format!("{count} {kind}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many of `errors` are errors and how many warnings.
pub fn error_counts(errors: &[ConfigError]) -> (usize, usize) {
    let warnings = errors.iter().filter(|error| error.is_warning()).count();
    (errors.len() - warnings, warnings)
}

/// The address a proxy on this host connects to for a server bound to `bound`: loopback when
/// it listens on every interface.
pub fn local_address(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), bound.port())
        }
        _ => bound,
    }
}

/// A command that attaches a stock Envoy on this host to the xDS server bound to `xds`: the
/// node of the first Pod in `model` (by IP), else a placeholder, with `INTERCEPTION_MODE: NONE`
/// so that Envoy binds its listeners without iptables rules.
pub fn attach_command(model: &Model, xds: SocketAddr, tls: bool) -> String {
    let node = match model.workloads.iter().next() {
        Some((ip, workload)) => format!(
            "sidecar~{ip}~{}.{}~{}.svc.{}",
            workload.name, workload.namespace, workload.namespace, model.dns_domain
        ),
        None => format!(
            "sidecar~POD_IP~POD.NAMESPACE~NAMESPACE.svc.{}",
            model.dns_domain
        ),
    };
    let tls = if tls { " --xds-tls-ca CA_FILE" } else { "" };
    format!(
        "rudder bootstrap --node-id '{node}' --xds-address {}{tls} \
         --metadata '{{\"INTERCEPTION_MODE\":\"NONE\"}}' > envoy.yaml && envoy -c envoy.yaml",
        local_address(xds)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LastGood, build};
    use crate::source::file::load_dirs;

    fn bookinfo() -> (Inputs, crate::model::Built) {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bookinfo");
        let inputs = load_dirs(&[example]).inputs();
        let built = build(&inputs, &LastGood::default());
        (inputs, built)
    }

    #[test]
    fn counts_are_per_kind_in_kind_order() {
        let (inputs, built) = bookinfo();
        assert_eq!(
            object_counts(&inputs),
            "1 Namespace, 4 Service, 6 Pod, 4 EndpointSlice, 1 DestinationRule, 2 VirtualService"
        );
        assert_eq!(error_counts(&built.errors), (0, 0));
        assert_eq!(object_counts(&Inputs::default()), "none");
    }

    #[test]
    fn the_attach_command_names_the_first_pod_and_a_local_address() {
        let (_, built) = bookinfo();
        let any = "0.0.0.0:15010".parse().unwrap();
        assert_eq!(
            attach_command(&built.model, any, false),
            "rudder bootstrap --node-id 'sidecar~127.0.10.1~productpage-v1.bookinfo~bookinfo.svc.cluster.local' \
             --xds-address 127.0.0.1:15010 --metadata '{\"INTERCEPTION_MODE\":\"NONE\"}' \
             > envoy.yaml && envoy -c envoy.yaml"
        );
        let bound = "10.1.2.3:15012".parse().unwrap();
        let empty = Model {
            dns_domain: "cluster.local".to_string(),
            ..Model::default()
        };
        let command = attach_command(&empty, bound, true);
        assert!(
            command.contains("'sidecar~POD_IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local'"),
            "{command}"
        );
        assert!(
            command.contains("--xds-address 10.1.2.3:15012 --xds-tls-ca CA_FILE"),
            "{command}"
        );
    }

    #[test]
    fn every_interface_is_reached_over_loopback() {
        assert_eq!(
            local_address("[::]:15010".parse().unwrap()),
            "[::1]:15010".parse().unwrap()
        );
        assert_eq!(
            local_address("127.0.3.4:1".parse().unwrap()),
            "127.0.3.4:1".parse().unwrap()
        );
    }
}
