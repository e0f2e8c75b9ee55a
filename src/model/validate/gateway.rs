//! Gateway validation, after istiod's `ValidateGateway`: at least one server; each with hosts in
//! `[namespace/]host` form, a named port with a known protocol, an IP `bind`, TLS settings where
//! the protocol needs them (HTTPS, TLS) and none where it cannot use them, and the certificates
//! its TLS mode needs; port names unique within the Gateway. Besides istiod, rudder refuses what
//! it cannot carry out rather than half-applying it: Unix domain socket binds, ISTIO_MUTUAL and
//! OPTIONAL_MUTUAL (no Istio CA), several certificates per server, and a minimum TLS version
//! above the maximum (Envoy would reject the listener).

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::invalid;
use super::syntax::{UNIX_PREFIX, is_dns1123_label, validate_port, validate_wildcard_domain};
use crate::inputs::FieldError;
use crate::istio::{self, ServerTlsMode, TlsProtocol};
use crate::model::Protocol;
use crate::model::gateway::server_protocol;

pub fn validate_gateway(gateway: &istio::Gateway) -> Result<(), FieldError> {
    if gateway.servers.is_empty() {
        return Err(invalid(
            "spec.servers",
            "a gateway needs at least one server",
        ));
    }
    let mut port_names = BTreeSet::new();
    for (i, server) in gateway.servers.iter().enumerate() {
        let at = format!("spec.servers[{i}]");
        validate_server(server, &at)?;
        if !port_names.insert(server.port.name.as_str()) {
            return Err(invalid(
                format!("{at}.port.name"),
                format!(
                    "port names in servers must be unique: duplicate name {}",
                    server.port.name
                ),
            ));
        }
    }
    Ok(())
}

fn validate_server(server: &istio::Server, at: &str) -> Result<(), FieldError> {
    if server.hosts.is_empty() {
        return Err(invalid(
            format!("{at}.hosts"),
            "server config must contain at least one host",
        ));
    }
    for (j, host) in server.hosts.iter().enumerate() {
        validate_server_host(host)
            .map_err(|message| invalid(format!("{at}.hosts[{j}]"), message))?;
    }
    let port = &server.port;
    let Some(protocol) = server_protocol(&port.protocol) else {
        return Err(invalid(
            format!("{at}.port.protocol"),
            format!(
                "invalid protocol {:?}, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, HTTPS, TLS, MONGO, REDIS, MYSQL, TCP",
                port.protocol
            ),
        ));
    };
    validate_port(port.number, &format!("{at}.port.number"))?;
    if port.name.is_empty() {
        return Err(invalid(format!("{at}.port.name"), "port name must be set"));
    }
    let bind = server.bind.as_deref().unwrap_or_default();
    if bind.starts_with(UNIX_PREFIX) {
        return Err(invalid(
            format!("{at}.bind"),
            "Unix domain socket binds are not supported by rudder",
        ));
    }
    if !bind.is_empty() && bind.parse::<IpAddr>().is_err() {
        return Err(invalid(
            format!("{at}.bind"),
            format!("{bind:?} is not a valid IP"),
        ));
    }
    let tls_protocol = matches!(protocol, Protocol::Https | Protocol::Tls);
    match &server.tls {
        None if tls_protocol => Err(invalid(
            format!("{at}.tls"),
            "server must have TLS settings for HTTPS/TLS protocols",
        )),
        None => Ok(()),
        Some(tls) => {
            if !tls_protocol {
                let redirect_only = protocol.is_http()
                    && tls.mode.is_none_or(|mode| {
                        matches!(
                            mode,
                            ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
                        )
                    })
                    && tls.server_certificate.is_none()
                    && tls.private_key.is_none()
                    && tls.ca_certificates.is_none();
                if !redirect_only {
                    let message = if protocol.is_http() {
                        "server cannot have TLS settings for plain text HTTP ports"
                    } else {
                        "server cannot have TLS settings for non HTTPS/TLS ports"
                    };
                    return Err(invalid(format!("{at}.tls"), message));
                }
                return Ok(());
            }
            validate_tls(tls, &format!("{at}.tls"))
        }
    }
}

/// istiod's `validateNamespaceSlashWildcardHostname` for gateways: `host`, or `namespace/host`
/// with the namespace `.`, `*` or a namespace name; the host `*` or a (wildcard) domain.
fn validate_server_host(entry: &str) -> Result<(), String> {
    let host = match entry.split_once('/') {
        None => entry,
        Some((namespace, host)) => {
            if namespace.is_empty() || host.is_empty() {
                return Err(format!(
                    "{entry:?}: config namespace and dnsName in host entry cannot be empty"
                ));
            }
            if !matches!(namespace, "." | "*") && !is_dns1123_label(namespace) {
                return Err(format!("{namespace:?} is not ., * or a namespace name"));
            }
            host
        }
    };
    if host == "*" {
        return Ok(());
    }
    validate_wildcard_domain(host)
}

/// istiod's `validateTLSOptions`, with what rudder cannot serve refused.
fn validate_tls(tls: &istio::ServerTlsSettings, at: &str) -> Result<(), FieldError> {
    let mode = tls.mode.unwrap_or(ServerTlsMode::Passthrough);
    let field = |name: &str| format!("{at}.{name}");
    match mode {
        ServerTlsMode::Unknown => {
            return Err(invalid(
                field("mode"),
                "mode is not PASSTHROUGH, SIMPLE, MUTUAL or AUTO_PASSTHROUGH",
            ));
        }
        ServerTlsMode::IstioMutual => {
            return Err(invalid(
                field("mode"),
                "ISTIO_MUTUAL is not supported by rudder (it needs Istio's CA)",
            ));
        }
        ServerTlsMode::OptionalMutual => {
            return Err(invalid(
                field("mode"),
                "OPTIONAL_MUTUAL is not supported by rudder",
            ));
        }
        _ => {}
    }
    if !tls.credential_names.is_empty() || !tls.tls_certificates.is_empty() {
        return Err(invalid(
            field(if tls.credential_names.is_empty() {
                "tlsCertificates"
            } else {
                "credentialNames"
            }),
            "several certificates per server are not supported by rudder; use credentialName or serverCertificate",
        ));
    }
    for (name, version) in [
        ("minProtocolVersion", tls.min_protocol_version),
        ("maxProtocolVersion", tls.max_protocol_version),
    ] {
        if version == Some(TlsProtocol::Unknown) {
            return Err(invalid(
                field(name),
                "not TLS_AUTO, TLSV1_0, TLSV1_1, TLSV1_2 or TLSV1_3",
            ));
        }
    }
    let rank = |version: Option<TlsProtocol>| match version {
        Some(TlsProtocol::TlsV1_0) => Some(0),
        Some(TlsProtocol::TlsV1_1) => Some(1),
        Some(TlsProtocol::TlsV1_2) => Some(2),
        Some(TlsProtocol::TlsV1_3) => Some(3),
        _ => None,
    };
    if let (Some(min), Some(max)) = (
        rank(tls.min_protocol_version),
        rank(tls.max_protocol_version),
    ) && min > max
    {
        return Err(invalid(
            field("minProtocolVersion"),
            "minProtocolVersion is above maxProtocolVersion",
        ));
    }
    let terminating = matches!(mode, ServerTlsMode::Simple | ServerTlsMode::Mutual);
    if !terminating || tls.credential_name.is_some() {
        return Ok(());
    }
    let mode_name = if mode == ServerTlsMode::Simple {
        "SIMPLE"
    } else {
        "MUTUAL"
    };
    if tls.server_certificate.is_none() {
        return Err(invalid(
            field("serverCertificate"),
            format!("{mode_name} TLS requires a server certificate (or a credentialName)"),
        ));
    }
    if tls.private_key.is_none() {
        return Err(invalid(
            field("privateKey"),
            format!("{mode_name} TLS requires a private key"),
        ));
    }
    if mode == ServerTlsMode::Mutual && tls.ca_certificates.is_none() {
        return Err(invalid(
            field("caCertificates"),
            "MUTUAL TLS requires a client CA bundle",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(yaml: &str) -> Option<String> {
        let gateway: istio::Gateway = serde_saphyr::from_str(yaml).expect("parses");
        validate_gateway(&gateway)
            .err()
            .map(|e| format!("{}: {}", e.field, e.message))
    }

    const HTTPS: &str = "- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [a.com]\n";

    #[test]
    fn accepts_the_reference_shapes() {
        let yaml = "servers:\n\
            - port: {number: 80, name: http, protocol: HTTP}\n  hosts: [./a.com, '*/b.com', ns1/*.c.com, '*']\n  tls: {httpsRedirect: true}\n\
            - port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [a.com]\n  tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem, minProtocolVersion: TLSV1_2}\n\
            - port: {number: 8443, name: mutual, protocol: HTTPS}\n  hosts: [a.com]\n  tls: {mode: MUTUAL, credentialName: a-cert}\n\
            - port: {number: 9443, name: tls, protocol: TLS}\n  hosts: ['*.a.com']\n  tls: {mode: PASSTHROUGH}\n\
            - port: {number: 27017, name: mongo, protocol: MONGO}\n  bind: 10.0.0.1\n  hosts: ['*']\n";
        assert_eq!(error(yaml), None);
    }

    #[test]
    fn reports_the_field_at_fault() {
        let cases = [
            ("servers: []\n".to_string(), "spec.servers"),
            (
                "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: []\n".to_string(),
                "spec.servers[0].hosts",
            ),
            (
                "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [Bad_NS/a.com]\n".to_string(),
                "spec.servers[0].hosts[0]",
            ),
            (
                "servers:\n- port: {number: 80, name: http, protocol: SPDY}\n  hosts: [a.com]\n".to_string(),
                "spec.servers[0].port.protocol",
            ),
            (
                "servers:\n- port: {number: 80, protocol: HTTP}\n  hosts: [a.com]\n".to_string(),
                "spec.servers[0].port.name",
            ),
            (
                "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  bind: localhost\n  hosts: [a.com]\n".to_string(),
                "spec.servers[0].bind",
            ),
            (format!("servers:\n{HTTPS}"), "spec.servers[0].tls"),
            (
                format!("servers:\n{HTTPS}  tls: {{mode: SIMPLE}}\n"),
                "spec.servers[0].tls.serverCertificate",
            ),
            (
                format!("servers:\n{HTTPS}  tls: {{mode: MUTUAL, serverCertificate: /c, privateKey: /k}}\n"),
                "spec.servers[0].tls.caCertificates",
            ),
            (
                format!("servers:\n{HTTPS}  tls: {{mode: ISTIO_MUTUAL}}\n"),
                "spec.servers[0].tls.mode",
            ),
            (
                format!("servers:\n{HTTPS}  tls: {{mode: SIMPLE, credentialName: a, minProtocolVersion: TLSV1_3, maxProtocolVersion: TLSV1_2}}\n"),
                "spec.servers[0].tls.minProtocolVersion",
            ),
            (
                "servers:\n- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [a.com]\n  tls: {mode: SIMPLE, serverCertificate: /c, privateKey: /k}\n".to_string(),
                "spec.servers[0].tls",
            ),
            (
                format!("servers:\n{HTTPS}  tls: {{mode: PASSTHROUGH}}\n{HTTPS}  tls: {{mode: PASSTHROUGH}}\n"),
                "spec.servers[1].port.name",
            ),
        ];
        for (yaml, field) in cases {
            let message = error(&yaml).unwrap_or_else(|| panic!("{yaml} is refused"));
            assert!(
                message.starts_with(&format!("{field}: ")),
                "{yaml}: {message}"
            );
        }
    }
}
