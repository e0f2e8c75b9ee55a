//! Checks on the Kubernetes objects rudder reads from files, which no API server has validated:
//! port numbers out of range, duplicate Service ports, cluster IPs and endpoint addresses that
//! are not IPs, and unknown address types, which the model would otherwise drop or misread
//! without a word. The API server refuses the same objects (`IsValidPortNum`, the Service and
//! EndpointSlice validation of `pkg/apis/core` and `pkg/apis/discovery`), so objects read from a
//! cluster always pass. Only what rudder reads is checked.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::invalid;
use crate::inputs::FieldError;

fn validate_port_number(number: i32, field: impl FnOnce() -> String) -> Result<(), FieldError> {
    if (1..=i32::from(u16::MAX)).contains(&number) {
        Ok(())
    } else {
        Err(invalid(
            field(),
            format!("port {number} is not a port number from 1 to 65535"),
        ))
    }
}

pub fn validate_service(service: &Service) -> Result<(), FieldError> {
    let Some(spec) = &service.spec else {
        return Ok(());
    };
    let cluster_ips = spec
        .cluster_ip
        .iter()
        .map(|ip| ("spec.clusterIP".to_string(), ip));
    let listed = spec.cluster_ips.iter().flatten().enumerate();
    let cluster_ips =
        cluster_ips.chain(listed.map(|(i, ip)| (format!("spec.clusterIPs[{i}]"), ip)));
    for (field, ip) in cluster_ips {
        // Empty: allocated by the API server; `None`: a headless Service.
        if !ip.is_empty() && ip != "None" && ip.parse::<IpAddr>().is_err() {
            return Err(invalid(
                field,
                format!("{ip:?} is not an IP address or None"),
            ));
        }
    }
    // The API server keys ports by number and protocol, and by name.
    let mut numbers = BTreeMap::new();
    let mut names = BTreeMap::new();
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        validate_port_number(port.port, || format!("spec.ports[{i}].port"))?;
        if let Some(IntOrString::Int(target)) = port.target_port {
            validate_port_number(target, || format!("spec.ports[{i}].targetPort"))?;
        }
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if let Some(first) = numbers.insert((port.port, protocol), i) {
            return Err(invalid(
                format!("spec.ports[{i}]"),
                format!(
                    "port {} {protocol} is spec.ports[{first}] already",
                    port.port
                ),
            ));
        }
        let name = port.name.as_deref().unwrap_or_default();
        if let Some(first) = names.insert(name, i) {
            return Err(invalid(
                format!("spec.ports[{i}].name"),
                format!("port name {name:?} is spec.ports[{first}]'s already"),
            ));
        }
    }
    Ok(())
}

pub fn validate_endpoint_slice(slice: &EndpointSlice) -> Result<(), FieldError> {
    let family = match slice.address_type.as_str() {
        "IPv4" => Some(IpAddr::is_ipv4 as fn(&IpAddr) -> bool),
        "IPv6" => Some(IpAddr::is_ipv6 as fn(&IpAddr) -> bool),
        "FQDN" => None,
        other => {
            return Err(invalid(
                "addressType",
                format!("unknown address type {other:?} (expected IPv4, IPv6 or FQDN)"),
            ));
        }
    };
    if let Some(family) = family {
        for (i, endpoint) in slice.endpoints.iter().flatten().enumerate() {
            for (j, address) in endpoint.addresses.iter().enumerate() {
                if !address.parse::<IpAddr>().is_ok_and(|ip| family(&ip)) {
                    return Err(invalid(
                        format!("endpoints[{i}].addresses[{j}]"),
                        format!("{address:?} is not an {} address", slice.address_type),
                    ));
                }
            }
        }
    }
    for (i, port) in slice.ports.iter().flatten().enumerate() {
        if let Some(number) = port.port {
            validate_port_number(number, || format!("ports[{i}].port"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_numbers_out_of_range_name_the_field() {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80}, {"port": 80, "targetPort": 70000}]}
        }))
        .unwrap();
        let error = validate_service(&service).unwrap_err();
        assert_eq!(error.field, "spec.ports[1].targetPort");
        assert_eq!(
            error.message,
            "port 70000 is not a port number from 1 to 65535"
        );

        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1"},
            "addressType": "IPv4",
            "endpoints": [],
            "ports": [{"name": "http", "port": 0}]
        }))
        .unwrap();
        assert_eq!(
            validate_endpoint_slice(&slice).unwrap_err().field,
            "ports[0].port"
        );
    }

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "web"}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn cluster_ips_and_duplicate_ports_are_refused_as_the_api_server_refuses_them() {
        let good = service(serde_json::json!({
            "clusterIP": "None",
            "clusterIPs": ["10.0.0.1", "fd00::1"],
            "ports": [{"name": "a", "port": 53}, {"name": "b", "port": 53, "protocol": "UDP"}]
        }));
        assert_eq!(validate_service(&good), Ok(()));
        let refused = |spec| {
            let error = validate_service(&service(spec)).unwrap_err();
            format!("{}: {}", error.field, error.message)
        };
        assert_eq!(
            refused(serde_json::json!({"clusterIP": "10.96.0.999"})),
            "spec.clusterIP: \"10.96.0.999\" is not an IP address or None"
        );
        assert_eq!(
            refused(
                serde_json::json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]})
            ),
            "spec.ports[1]: port 80 TCP is spec.ports[0] already"
        );
        assert_eq!(
            refused(
                serde_json::json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]})
            ),
            "spec.ports[1].name: port name \"a\" is spec.ports[0]'s already"
        );
    }

    #[test]
    fn endpoint_addresses_must_be_of_the_slice_address_type() {
        let slice = |address_type: &str, address: &str| -> EndpointSlice {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web-1"},
                "addressType": address_type,
                "endpoints": [{"addresses": [address]}],
            }))
            .unwrap()
        };
        assert_eq!(validate_endpoint_slice(&slice("IPv4", "10.0.0.1")), Ok(()));
        assert_eq!(
            validate_endpoint_slice(&slice("FQDN", "db.example.com")),
            Ok(())
        );
        let error = validate_endpoint_slice(&slice("IPv6", "10.0.0.1")).unwrap_err();
        assert_eq!(error.field, "endpoints[0].addresses[0]");
        assert_eq!(error.message, "\"10.0.0.1\" is not an IPv6 address");
        let error = validate_endpoint_slice(&slice("IPv5", "10.0.0.1")).unwrap_err();
        assert_eq!(error.field, "addressType");
    }
}
