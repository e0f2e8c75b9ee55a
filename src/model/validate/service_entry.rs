//! ServiceEntry and WorkloadEntry checks, after istiod's `ValidateServiceEntry` and
//! `ValidateWorkloadEntry`: hosts, addresses, ports, how endpoints fit the resolution, and what
//! Envoy would refuse (a host name where EDS needs an IP, a `unix://` socket in a DNS entry or
//! with ports). Each error names
//! the field at fault. Only the object itself is looked at.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::analysis::{Code, coded};
use super::invalid;
use super::syntax::{
    UNIX_PREFIX, is_dns1123_label, is_known_protocol, validate_dns1123_labels, validate_labels,
    validate_port, validate_subnet, validate_wildcard_domain,
};
use super::virtual_service::validate_export_to;
use crate::inputs::{FieldError, IstioObject};
use crate::istio::{Location, Resolution, ServiceEntry, WorkloadEntry};

pub fn validate_service_entry(entry: &IstioObject<ServiceEntry>) -> Result<(), FieldError> {
    let spec = &entry.spec;
    let namespace = entry.metadata.namespace.as_deref().unwrap_or("default");
    if spec.location == Some(Location::Unknown) {
        return Err(invalid(
            "spec.location",
            "location must be MESH_EXTERNAL or MESH_INTERNAL",
        ));
    }
    let resolution = spec.resolution.unwrap_or(Resolution::None);
    if resolution == Resolution::Unknown {
        return Err(invalid(
            "spec.resolution",
            "resolution must be NONE, STATIC, DNS or DNS_ROUND_ROBIN",
        ));
    }
    if spec.workload_selector.is_some() && !spec.endpoints.is_empty() {
        return Err(invalid(
            "spec.workloadSelector",
            "only one of workloadSelector or endpoints may be set",
        ));
    }
    if let Some(selector) = &spec.workload_selector {
        validate_labels(&selector.labels, "spec.workloadSelector.labels")?;
    }
    validate_hosts(spec)?;
    validate_addresses(spec, resolution)?;
    let port_names = validate_ports(spec)?;
    match resolution {
        Resolution::None => {
            if !spec.endpoints.is_empty() {
                return Err(invalid(
                    "spec.endpoints",
                    "no endpoints may be given with resolution NONE",
                ));
            }
        }
        Resolution::Static => {
            for (i, endpoint) in spec.endpoints.iter().enumerate() {
                let at = format!("spec.endpoints[{i}]");
                if endpoint.address.starts_with(UNIX_PREFIX) {
                    validate_unix_endpoint(endpoint, &at)?;
                    if spec.ports.len() != 1 {
                        return Err(invalid(
                            "spec.ports",
                            "exactly 1 service port required for unix endpoints",
                        ));
                    }
                } else if endpoint.address.parse::<IpAddr>().is_err() {
                    return Err(invalid(
                        format!("{at}.address"),
                        format!(
                            "{:?} is not an IP address (resolution STATIC needs IPs; use DNS for names)",
                            endpoint.address
                        ),
                    ));
                }
                validate_endpoint_ports(endpoint, &port_names, &at)?;
                validate_labels(&endpoint.labels, &format!("{at}.labels"))?;
            }
        }
        Resolution::Dns | Resolution::DnsRoundRobin => {
            if spec.endpoints.is_empty() && spec.workload_selector.is_none() {
                for (i, host) in spec.hosts.iter().enumerate() {
                    if validate_fqdn(host).is_err() {
                        return Err(invalid(
                            format!("spec.hosts[{i}]"),
                            format!(
                                "{host:?} is not a fully qualified domain name; with DNS resolution and no endpoints the hosts themselves are resolved"
                            ),
                        ));
                    }
                }
            }
            if resolution == Resolution::DnsRoundRobin && spec.endpoints.len() > 1 {
                return Err(invalid(
                    "spec.endpoints",
                    "resolution DNS_ROUND_ROBIN takes at most one endpoint",
                ));
            }
            for (i, endpoint) in spec.endpoints.iter().enumerate() {
                let at = format!("spec.endpoints[{i}]");
                validate_workload_address(&endpoint.address, &format!("{at}.address"))?;
                validate_endpoint_ports(endpoint, &port_names, &at)?;
                validate_labels(&endpoint.labels, &format!("{at}.labels"))?;
            }
        }
        Resolution::Unknown => {}
    }
    if resolution != Resolution::None && spec.hosts.len() > 1 {
        let tells_hosts_apart = spec.ports.iter().all(|port| {
            matches!(
                port.protocol.to_ascii_uppercase().as_str(),
                "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" | "HTTP_PROXY" | "HTTPS" | "TLS"
            )
        });
        if !tells_hosts_apart {
            return Err(invalid(
                "spec.hosts",
                "several hosts need HTTP or TLS ports (or resolution NONE): plain TCP cannot tell them apart",
            ));
        }
    }
    validate_export_to(&spec.export_to, namespace, true)
}

/// As istiod's: an entry needs an address unless it names its network (it is then reached
/// through that network's gateway, which [`unset_address_warning`] says rudder does not do).
pub fn validate_workload_entry(entry: &WorkloadEntry) -> Result<(), FieldError> {
    if entry.address.is_empty() {
        if entry.network.as_deref().unwrap_or_default().is_empty() {
            return Err(invalid("spec.address", "address is required"));
        }
    } else if entry.address.starts_with(UNIX_PREFIX) {
        validate_unix_endpoint(entry, "spec")?;
    } else {
        validate_workload_address(&entry.address, "spec.address")?;
    }
    for (name, port) in &entry.ports {
        let at = format!("spec.ports.{name}");
        if !is_dns1123_label(name) {
            return Err(invalid(at, format!("{name:?} is not a valid port name")));
        }
        validate_port(*port, &at)?;
    }
    validate_labels(&entry.labels, "spec.labels")
}

/// The warnings istiod's validation gives a valid ServiceEntry (the entry still applies): a
/// workload selector without labels, a selector with resolution NONE, a partial wildcard host,
/// and TCP ports without addresses (rudder, like istiod without IP auto-allocation, then has no
/// address to tell this service's TCP traffic apart by; istioctl analyze's IST0134, whose
/// analyzer reads the protocol in any case).
pub fn service_entry_warnings(spec: &ServiceEntry) -> Vec<FieldError> {
    let mut warnings = Vec::new();
    if let Some(selector) = &spec.workload_selector {
        if selector.labels.is_empty() {
            warnings.push(invalid(
                "spec.workloadSelector",
                "service entry: workload selector specified without labels, will be applied to all \
                 services in namespace",
            ));
        }
        if spec.resolution.unwrap_or(Resolution::None) == Resolution::None {
            warnings.push(invalid(
                "spec.workloadSelector",
                "workloadSelector should not be set when resolution mode is NONE",
            ));
        }
    }
    for (i, host) in spec.hosts.iter().enumerate() {
        if host.contains('*') && host.len() != 1 && !host.starts_with("*.") {
            warnings.push(invalid(
                format!("spec.hosts[{i}]"),
                format!("partial wildcard {host:?} not allowed"),
            ));
        }
    }
    if spec.addresses.is_empty() {
        for (i, port) in spec.ports.iter().enumerate() {
            if port.protocol.is_empty() || port.protocol.eq_ignore_ascii_case("TCP") {
                warnings.push(invalid(
                    format!("spec.ports[{i}]"),
                    coded(
                        Code::ServiceEntryAddressesRequired,
                        "addresses are required for ports serving TCP (or unset) protocol when \
                         IP Autoallocation is not enabled",
                    ),
                ));
            }
        }
    }
    warnings
}

/// The warning istiod's validation gives an entry with a network and no address, with what it
/// means here: rudder serves a single network and has no network gateways, so such an entry
/// (which istiod reaches through its network's gateway) adds no endpoint.
pub fn unset_address_warning(entry: &WorkloadEntry) -> Option<FieldError> {
    let network = entry
        .network
        .as_deref()
        .filter(|network| !network.is_empty())?;
    entry.address.is_empty().then(|| {
        invalid(
            "spec.address",
            format!(
                "address is unset with network {network:?}: rudder does not route through \
                 network gateways, so this entry adds no endpoint"
            ),
        )
    })
}

fn validate_hosts(spec: &ServiceEntry) -> Result<(), FieldError> {
    if spec.hosts.is_empty() {
        return Err(invalid("spec.hosts", "at least one host is required"));
    }
    let mut seen = BTreeSet::new();
    for (i, host) in spec.hosts.iter().enumerate() {
        let at = format!("spec.hosts[{i}]");
        if host == "*" {
            return Err(invalid(at, "the host * (everything) is not allowed"));
        }
        validate_wildcard_domain(host).map_err(|message| invalid(&at, message))?;
        if !seen.insert(host.as_str()) {
            return Err(invalid(at, format!("duplicate host {host:?}")));
        }
    }
    Ok(())
}

fn validate_addresses(spec: &ServiceEntry, resolution: Resolution) -> Result<(), FieldError> {
    for (i, address) in spec.addresses.iter().enumerate() {
        let at = format!("spec.addresses[{i}]");
        validate_subnet(address).map_err(|message| invalid(&at, message))?;
        if address.contains('/') && !matches!(resolution, Resolution::None | Resolution::Static) {
            return Err(invalid(
                at,
                "CIDR blocks are allowed only with resolution NONE or STATIC",
            ));
        }
    }
    Ok(())
}

/// The port names, once every port is valid.
fn validate_ports(spec: &ServiceEntry) -> Result<BTreeSet<&str>, FieldError> {
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        validate_port(port.number, &format!("{at}.number"))?;
        if !numbers.insert(port.number) {
            return Err(invalid(
                format!("{at}.number"),
                format!("port {} is already defined", port.number),
            ));
        }
        if !is_dns1123_label(&port.name) {
            return Err(invalid(
                format!("{at}.name"),
                format!(
                    "{:?} is not a valid port name (a DNS-1123 label is required)",
                    port.name
                ),
            ));
        }
        if !names.insert(port.name.as_str()) {
            return Err(invalid(
                format!("{at}.name"),
                format!("port name {:?} is already defined", port.name),
            ));
        }
        // Empty means "detect".
        if !port.protocol.is_empty() && !is_known_protocol(&port.protocol) {
            return Err(invalid(
                format!("{at}.protocol"),
                format!("unrecognized protocol {:?}", port.protocol),
            ));
        }
        if let Some(target) = port.target_port.filter(|target| *target != 0) {
            validate_port(target, &format!("{at}.targetPort"))?;
        }
    }
    Ok(names)
}

/// An endpoint's `ports` must name the entry's ports.
fn validate_endpoint_ports(
    endpoint: &WorkloadEntry,
    port_names: &BTreeSet<&str>,
    at: &str,
) -> Result<(), FieldError> {
    for (name, port) in &endpoint.ports {
        let at = format!("{at}.ports.{name}");
        if !port_names.contains(name.as_str()) {
            return Err(invalid(
                at,
                format!("port {name:?} is not defined by the ServiceEntry's ports"),
            ));
        }
        validate_port(*port, &at)?;
    }
    Ok(())
}

/// An IP address or a fully qualified name; `unix://` sockets are refused.
fn validate_workload_address(address: &str, at: &str) -> Result<(), FieldError> {
    if address.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    reject_unix_socket(address, at)?;
    validate_fqdn(address).map_err(|_| {
        invalid(
            at,
            format!("{address:?} is not an IP address or a fully qualified domain name"),
        )
    })
}

/// `unix://` sockets are for STATIC entries and WorkloadEntries only: a DNS cluster has no use
/// for a path.
fn reject_unix_socket(address: &str, at: &str) -> Result<(), FieldError> {
    if address.starts_with(UNIX_PREFIX) {
        return Err(invalid(
            at,
            format!(
                "{address:?}: unix domain socket endpoints need resolution STATIC (or a \
                 WorkloadEntry)"
            ),
        ));
    }
    Ok(())
}

/// istiod's checks of a `unix://` endpoint (`ValidateUnixAddress`): an absolute path to a file,
/// or an abstract socket name (`@name`); no ports, the path being the whole address.
fn validate_unix_endpoint(entry: &WorkloadEntry, at: &str) -> Result<(), FieldError> {
    let path = entry.address.trim_start_matches(UNIX_PREFIX);
    let address_at = format!("{at}.address");
    if path.is_empty() {
        return Err(invalid(address_at, "unix address must not be empty"));
    }
    if !path.starts_with('@') && (!path.starts_with('/') || path.ends_with('/')) {
        return Err(invalid(
            address_at,
            format!("{path} is not an absolute path to a file"),
        ));
    }
    if !entry.ports.is_empty() {
        return Err(invalid(
            format!("{at}.ports"),
            format!("unix endpoint {} must not include ports", entry.address),
        ));
    }
    Ok(())
}

/// istiod's `ValidateFQDN`: at most 255 characters of DNS-1123 labels (no wildcard).
fn validate_fqdn(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!("{name:?} is not a valid domain name"));
    }
    validate_dns1123_labels(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::Metadata;

    fn check(yaml: &str) -> Result<(), FieldError> {
        let entry = IstioObject {
            metadata: Metadata {
                name: "entry".to_string(),
                namespace: Some("ns".to_string()),
                ..Default::default()
            },
            spec: serde_saphyr::from_str::<ServiceEntry>(yaml).expect("a ServiceEntry spec"),
        };
        validate_service_entry(&entry)
    }

    fn field_of(yaml: &str) -> String {
        check(yaml).expect_err("invalid").field
    }

    const PORTS: &str = "ports: [{number: 80, name: http, protocol: HTTP}]\n";

    #[test]
    fn accepts_the_documented_shapes() {
        for yaml in [
            "hosts: [api.example.com]\nports: [{number: 443, name: https, protocol: TLS}]\nresolution: DNS\n",
            "hosts: ['*.example.com']\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: NONE\n",
            "hosts: [db.internal]\naddresses: [10.0.0.0/16]\nports: [{number: 5432, name: tcp, protocol: TCP}]\nresolution: STATIC\nendpoints: [{address: 10.0.0.1}]\n",
            "hosts: [vm.internal]\nports: [{number: 80, name: http}]\nresolution: STATIC\nworkloadSelector: {labels: {app: vm}}\nexportTo: ['~']\n",
            "hosts: [x.internal]\nports: [{number: 80, name: http}]\nresolution: DNS_ROUND_ROBIN\nendpoints: [{address: backend.example.com, ports: {http: 8080}}]\n",
        ] {
            assert_eq!(check(yaml), Ok(()), "{yaml}");
        }
    }

    #[test]
    fn names_the_field_at_fault() {
        let cases = [
            (format!("hosts: []\n{PORTS}"), "spec.hosts"),
            (format!("hosts: ['*']\n{PORTS}"), "spec.hosts[0]"),
            (format!("hosts: [a.com, 'b.*.com']\n{PORTS}"), "spec.hosts[1]"),
            (
                format!("hosts: [a.com]\naddresses: [300.1.1.1]\n{PORTS}"),
                "spec.addresses[0]",
            ),
            (
                format!("hosts: [a.com]\naddresses: [10.0.0.0/8]\nresolution: DNS\n{PORTS}"),
                "spec.addresses[0]",
            ),
            (
                "hosts: [a.com]\nports: [{number: 70000, name: http}]\n".to_string(),
                "spec.ports[0].number",
            ),
            (
                "hosts: [a.com]\nports: [{number: 80, name: http}, {number: 80, name: web}]\n"
                    .to_string(),
                "spec.ports[1].number",
            ),
            (
                "hosts: [a.com]\nports: [{number: 80, name: http, protocol: SMTP}]\n".to_string(),
                "spec.ports[0].protocol",
            ),
            (
                format!("hosts: [a.com]\nresolution: STATIC\n{PORTS}endpoints: [{{address: b.com}}]\n"),
                "spec.endpoints[0].address",
            ),
            (
                format!(
                    "hosts: [a.com]\nresolution: STATIC\n{PORTS}endpoints: [{{address: 'unix://sock'}}]\n"
                ),
                "spec.endpoints[0].address",
            ),
            (
                format!(
                    "hosts: [a.com]\nresolution: DNS\n{PORTS}endpoints: [{{address: 'unix:///sock'}}]\n"
                ),
                "spec.endpoints[0].address",
            ),
            (
                format!(
                    "hosts: [a.com]\nresolution: STATIC\n{PORTS}endpoints: [{{address: 1.1.1.1, ports: {{grpc: 90}}}}]\n"
                ),
                "spec.endpoints[0].ports.grpc",
            ),
            (
                format!("hosts: ['*.a.com']\nresolution: DNS\n{PORTS}"),
                "spec.hosts[0]",
            ),
            (
                format!("hosts: [a.com]\nresolution: NONE\n{PORTS}endpoints: [{{address: 1.1.1.1}}]\n"),
                "spec.endpoints",
            ),
            (
                format!(
                    "hosts: [a.com]\nresolution: STATIC\n{PORTS}workloadSelector: {{labels: {{app: a}}}}\nendpoints: [{{address: 1.1.1.1}}]\n"
                ),
                "spec.workloadSelector",
            ),
            (
                format!("hosts: [a.com]\nresolution: MAGIC\n{PORTS}"),
                "spec.resolution",
            ),
            (
                "hosts: [a.com, b.com]\nresolution: DNS\nports: [{number: 5432, name: tcp, protocol: TCP}]\n"
                    .to_string(),
                "spec.hosts",
            ),
            (
                format!("hosts: [a.com]\nexportTo: ['~', '.']\n{PORTS}"),
                "spec.exportTo[0]",
            ),
        ];
        for (yaml, field) in cases {
            assert_eq!(field_of(&yaml), field, "{yaml}");
        }
    }

    #[test]
    fn workload_entries_need_an_address_and_valid_ports() {
        let check = |yaml: &str| {
            validate_workload_entry(&serde_saphyr::from_str::<WorkloadEntry>(yaml).unwrap())
        };
        assert_eq!(check("address: 10.0.0.1\nports: {http: 8080}\n"), Ok(()));
        assert_eq!(check("address: vm.example.com\n"), Ok(()));
        assert_eq!(check("labels: {a: b}\n").unwrap_err().field, "spec.address");
        assert_eq!(check("address: 'unix:///var/run/sock'\n"), Ok(()));
        assert_eq!(check("address: 'unix://@abstract'\n"), Ok(()));
        assert_eq!(
            check("address: 'unix:///var/run/'\n").unwrap_err().field,
            "spec.address"
        );
        assert_eq!(
            check("address: 'unix:///var/run/sock'\nports: {http: 80}\n")
                .unwrap_err()
                .field,
            "spec.ports"
        );
        assert_eq!(
            check("address: 10.0.0.1\nports: {http: 0}\n")
                .unwrap_err()
                .field,
            "spec.ports.http"
        );
    }
}
