//! Sidecar validation, after istiod's `ValidateSidecar`: the workload selector's labels, egress
//! hosts in `namespace/host` form, egress ports (unique per bind address, a known protocol), at
//! most one catch-all listener and it last, binds that are IP addresses, the outbound policy
//! mode; ingress ports unique and bound to IP addresses, `defaultEndpoint` one of the loopback or
//! wildcard forms (or `unix://`). Besides istiod, rudder refuses what it cannot carry out rather
//! than half-applying it: Unix domain socket egress listeners (port 0, `unix://` binds).

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::invalid;
use super::syntax::{
    UNIX_PREFIX, is_dns1123_label, is_known_protocol, validate_labels, validate_port,
    validate_wildcard_domain,
};
use crate::inputs::FieldError;
use crate::istio::{self, CaptureMode, OutboundTrafficPolicyMode};
use crate::model::sidecar::ingress_endpoint;

/// istiod's validation warning for a valid Sidecar: a workload selector without labels, which
/// selects every workload of the namespace.
pub fn sidecar_warnings(sidecar: &istio::Sidecar) -> Vec<FieldError> {
    sidecar
        .workload_selector
        .as_ref()
        .filter(|selector| selector.labels.is_empty())
        .map(|_| {
            invalid(
                "spec.workloadSelector",
                "sidecar: workload selector specified without labels, will be applied to all \
                 services in namespace",
            )
        })
        .into_iter()
        .collect()
}

pub fn validate_sidecar(sidecar: &istio::Sidecar) -> Result<(), FieldError> {
    if sidecar.ingress.is_empty()
        && sidecar.egress.is_empty()
        && sidecar.outbound_traffic_policy.is_none()
        && sidecar.inbound_connection_pool.is_none()
    {
        return Err(invalid(
            "spec",
            "empty configuration provided (no ingress, egress, outboundTrafficPolicy or \
             inboundConnectionPool)",
        ));
    }
    if let Some(selector) = &sidecar.workload_selector {
        validate_labels(&selector.labels, "spec.workloadSelector.labels")?;
    }
    if let Some(policy) = &sidecar.outbound_traffic_policy
        && policy.mode == Some(OutboundTrafficPolicyMode::Unknown)
    {
        return Err(invalid(
            "spec.outboundTrafficPolicy.mode",
            "mode is not REGISTRY_ONLY or ALLOW_ANY",
        ));
    }
    if let Some(policy) = &sidecar.outbound_traffic_policy
        && policy.egress_proxy.is_some()
    {
        // As istiod's validation: unset means REGISTRY_ONLY.
        if policy.mode != Some(OutboundTrafficPolicyMode::AllowAny) {
            return Err(invalid(
                "spec.outboundTrafficPolicy.egressProxy",
                "egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
            ));
        }
        if policy
            .egress_proxy
            .as_ref()
            .is_some_and(|d| d.port.is_none())
        {
            return Err(invalid(
                "spec.outboundTrafficPolicy.egressProxy.port",
                "egress_proxy port must be non-nil",
            ));
        }
    }
    let mut ingress_ports = BTreeSet::new();
    for (i, listener) in sidecar.ingress.iter().enumerate() {
        let at = format!("spec.ingress[{i}]");
        validate_ingress_listener(listener, &at)?;
        if !ingress_ports.insert(listener.port.number) {
            return Err(invalid(
                format!("{at}.port.number"),
                format!(
                    "port {} is already used by another ingress listener",
                    listener.port.number
                ),
            ));
        }
    }
    let mut catch_all = None;
    let mut ports = BTreeSet::new();
    for (i, listener) in sidecar.egress.iter().enumerate() {
        let at = format!("spec.egress[{i}]");
        if let Some(first) = catch_all {
            return Err(invalid(
                at,
                format!(
                    "only the last egress listener may have no port (spec.egress[{first}] has none)"
                ),
            ));
        }
        validate_egress_listener(listener, &at)?;
        match &listener.port {
            None => catch_all = Some(i),
            Some(port) => {
                let bind = listener.bind.as_deref().unwrap_or_default();
                if !ports.insert((port.number, bind)) {
                    return Err(invalid(
                        format!("{at}.port.number"),
                        format!(
                            "port {} is already used by another egress listener",
                            port.number
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// istiod's `validateSidecarIngressPortAndBind` and its `defaultEndpoint` checks.
fn validate_ingress_listener(
    listener: &istio::IngressListener,
    at: &str,
) -> Result<(), FieldError> {
    let port = &listener.port;
    if port.number == 0 {
        return Err(invalid(
            format!("{at}.port.number"),
            "Unix domain sockets are not supported for sidecar ingress",
        ));
    }
    validate_port(port.number, &format!("{at}.port.number"))?;
    // An ingress port without a protocol is sniffed.
    validate_port_name_and_protocol(port, at, port.protocol.is_empty())?;
    let bind = listener.bind.as_deref().unwrap_or_default();
    if !bind.is_empty() && bind.parse::<IpAddr>().is_err() {
        return Err(invalid(
            format!("{at}.bind"),
            format!("{bind:?} is not an IP address"),
        ));
    }
    if listener.capture_mode == Some(CaptureMode::Unknown) {
        return Err(invalid(
            format!("{at}.captureMode"),
            "captureMode is not DEFAULT, IPTABLES or NONE",
        ));
    }
    let endpoint = listener.default_endpoint.as_deref();
    if ingress_endpoint(endpoint, 1).is_none() {
        let endpoint = endpoint.unwrap_or_default();
        let message = if endpoint.starts_with(UNIX_PREFIX) {
            "a unix:// endpoint needs a path".to_string()
        } else {
            format!(
                "{endpoint:?} is not 127.0.0.1:PORT, 0.0.0.0:PORT, [::1]:PORT, [::]:PORT, :PORT or unix://PATH"
            )
        };
        return Err(invalid(format!("{at}.defaultEndpoint"), message));
    }
    Ok(())
}

fn validate_port_name_and_protocol(
    port: &istio::Port,
    at: &str,
    protocol_optional: bool,
) -> Result<(), FieldError> {
    if !port.name.is_empty() && !is_dns1123_label(&port.name) {
        return Err(invalid(
            format!("{at}.port.name"),
            format!("{:?} is not a valid port name", port.name),
        ));
    }
    if !protocol_optional && !is_known_protocol(&port.protocol) {
        return Err(invalid(
            format!("{at}.port.protocol"),
            format!("unrecognized protocol {:?}", port.protocol),
        ));
    }
    Ok(())
}

fn validate_egress_listener(listener: &istio::EgressListener, at: &str) -> Result<(), FieldError> {
    if listener.hosts.is_empty() {
        return Err(invalid(
            format!("{at}.hosts"),
            "an egress listener needs at least one host",
        ));
    }
    for (j, host) in listener.hosts.iter().enumerate() {
        validate_egress_host(host)
            .map_err(|message| invalid(format!("{at}.hosts[{j}]"), message))?;
    }
    if listener.capture_mode == Some(CaptureMode::Unknown) {
        return Err(invalid(
            format!("{at}.captureMode"),
            "captureMode is not DEFAULT, IPTABLES or NONE",
        ));
    }
    let bind = listener.bind.as_deref().unwrap_or_default();
    if bind.starts_with(UNIX_PREFIX) {
        let message = if listener.capture_mode == Some(CaptureMode::None) {
            "a Unix domain socket cannot be captured: captureMode NONE needs an IP bind"
        } else {
            "Unix domain socket egress listeners are not supported by rudder"
        };
        return Err(invalid(format!("{at}.bind"), message));
    }
    if !bind.is_empty() && bind.parse::<IpAddr>().is_err() {
        return Err(invalid(
            format!("{at}.bind"),
            format!("{bind:?} is not an IP address"),
        ));
    }
    let Some(port) = &listener.port else {
        if !bind.is_empty() || listener.capture_mode.is_some() {
            return Err(invalid(
                at,
                "the catch-all egress listener (no port) takes no bind and no captureMode",
            ));
        }
        return Ok(());
    };
    if port.number == 0 {
        return Err(invalid(
            format!("{at}.port.number"),
            "port 0 is for Unix domain sockets, which rudder does not support",
        ));
    }
    validate_port(port.number, &format!("{at}.port.number"))?;
    validate_port_name_and_protocol(port, at, false)
}

/// istiod's `validateNamespaceSlashWildcardHostname`: `namespace/host` where the namespace is
/// `.`, `*`, `~` or a namespace name, and the host `*` or a (wildcard) domain.
fn validate_egress_host(entry: &str) -> Result<(), String> {
    let Some((namespace, host)) = entry.split_once('/') else {
        return Err(format!(
            "{entry:?} is not namespace/host (use */{entry} for any namespace)"
        ));
    };
    if namespace.is_empty() {
        return Err(format!("{entry:?} has an empty namespace"));
    }
    if !matches!(namespace, "." | "*" | "~") && !is_dns1123_label(namespace) {
        return Err(format!("{namespace:?} is not ., *, ~ or a namespace name"));
    }
    if host != "*" {
        validate_wildcard_domain(host)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(yaml: &str) -> Option<String> {
        let sidecar: istio::Sidecar = serde_saphyr::from_str(yaml).expect("parses");
        validate_sidecar(&sidecar)
            .err()
            .map(|e| format!("{}: {}", e.field, e.message))
    }

    #[test]
    fn accepts_the_reference_shapes() {
        let yaml = "egress:\n- port: {number: 9080, protocol: HTTP, name: web}\n  hosts: [prod/*]\n\
                    - port: {number: 3306, protocol: MYSQL}\n  bind: 127.0.0.1\n  captureMode: NONE\n  hosts: ['*/mysql.foo.com']\n\
                    - hosts: [istio-system/*, ./*, ~/*, '*/*.example.com']\n\
                    outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n\
                    ingress:\n- port: {number: 9080, protocol: HTTP, name: web}\n  defaultEndpoint: 127.0.0.1:8080\n\
                    - port: {number: 9443, protocol: TCP}\n  bind: 10.0.0.5\n  captureMode: NONE\n  defaultEndpoint: unix:///run/app.sock\n\
                    - port: {number: 9000}\n  defaultEndpoint: '[::]:9000'\n- port: {number: 9001}\n";
        assert_eq!(error(yaml), None);
    }

    #[test]
    fn reports_the_field_at_fault() {
        let cases = [
            ("egress:\n- hosts: [reviews]\n", "spec.egress[0].hosts[0]"),
            (
                "egress:\n- hosts: ['Bad_NS/*']\n",
                "spec.egress[0].hosts[0]",
            ),
            ("egress:\n- hosts: []\n", "spec.egress[0].hosts"),
            (
                "egress:\n- hosts: [./*]\n- hosts: ['*/*']\n",
                "spec.egress[1]",
            ),
            (
                "egress:\n- port: {number: 80, protocol: HTTP}\n  hosts: [./*]\n- port: {number: 80, protocol: TCP}\n  hosts: [./*]\n",
                "spec.egress[1].port.number",
            ),
            (
                "egress:\n- port: {number: 80, protocol: HTTP}\n  bind: localhost\n  hosts: [./*]\n",
                "spec.egress[0].bind",
            ),
            (
                "egress:\n- port: {number: 0, protocol: HTTP}\n  bind: unix:///run/s.sock\n  captureMode: NONE\n  hosts: [./*]\n",
                "spec.egress[0].bind",
            ),
            (
                "egress:\n- port: {number: 80, protocol: SPDY}\n  hosts: [./*]\n",
                "spec.egress[0].port.protocol",
            ),
            (
                "egress:\n- bind: 127.0.0.1\n  hosts: [./*]\n",
                "spec.egress[0]",
            ),
            (
                "outboundTrafficPolicy: {mode: SOMETIMES}\n",
                "spec.outboundTrafficPolicy.mode",
            ),
            (
                "outboundTrafficPolicy: {egressProxy: {host: proxy.example.com, port: {number: 3128}}}\n",
                "spec.outboundTrafficPolicy.egressProxy",
            ),
            (
                "outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: proxy.example.com}}\n",
                "spec.outboundTrafficPolicy.egressProxy.port",
            ),
            (
                "ingress:\n- port: {number: 0, protocol: HTTP}\n",
                "spec.ingress[0].port.number",
            ),
            (
                "ingress:\n- port: {number: 80, protocol: HTTP}\n- port: {number: 80, protocol: TCP}\n",
                "spec.ingress[1].port.number",
            ),
            (
                "ingress:\n- port: {number: 80, protocol: SPDY}\n",
                "spec.ingress[0].port.protocol",
            ),
            (
                "ingress:\n- port: {number: 80}\n  bind: unix:///run/s.sock\n",
                "spec.ingress[0].bind",
            ),
            (
                "ingress:\n- port: {number: 80}\n  captureMode: SOMETIMES\n",
                "spec.ingress[0].captureMode",
            ),
            (
                "ingress:\n- port: {number: 80}\n  defaultEndpoint: 10.1.2.3:8080\n",
                "spec.ingress[0].defaultEndpoint",
            ),
            (
                "ingress:\n- port: {number: 80}\n  defaultEndpoint: 'unix://'\n",
                "spec.ingress[0].defaultEndpoint",
            ),
        ];
        for (yaml, field) in cases {
            let message = error(yaml).unwrap_or_else(|| panic!("{yaml} is refused"));
            assert!(
                message.starts_with(&format!("{field}: ")),
                "{yaml}: {message}"
            );
        }
    }
}
