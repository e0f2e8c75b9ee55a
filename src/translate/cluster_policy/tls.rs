//! DestinationRule `tls` on an outbound cluster: SIMPLE and MUTUAL as an `UpstreamTlsContext`
//! that reads the certificate files itself (istiod hands the same files to istio-agent, which
//! serves them over SDS); without `caCertificates` the system CA bundle is trusted, as
//! istio-agent does. Other modes leave the cluster plaintext.

use envoy_types::pb::envoy::config::core::v3::{
    DataSource, TransportSocket, UpstreamHttpProtocolOptions, data_source, transport_socket,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::tls_parameters::TlsProtocol;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, TlsCertificate, TlsParameters,
    UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};

use super::{ClusterBuilder, SYSTEM_CA_BUNDLE};
use crate::istio::{ClientTlsMode, ClientTlsSettings};
use crate::mesh_config::TlsDefaults;
use crate::translate::any;

const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";

fn file(path: &str) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|value| !value.is_empty())
}

/// SIMPLE and MUTUAL with certificate files; other modes leave the cluster plaintext (DISABLE by
/// asking, ISTIO_MUTUAL and `credentialName` because rudder cannot serve them; both are reported
/// when the rule is read).
/// The mesh config's `tlsDefaults` give the curves and cipher suites (istiod's `applyTLSDefaults`).
pub(super) fn apply_tls(
    builder: &mut ClusterBuilder,
    tls: Option<&ClientTlsSettings>,
    defaults: Option<&TlsDefaults>,
) {
    let Some(tls) = tls else {
        return;
    };
    let mutual = match tls.mode {
        Some(ClientTlsMode::Simple) => false,
        Some(ClientTlsMode::Mutual) => true,
        _ => return,
    };
    if non_empty(&tls.credential_name).is_some() {
        return;
    }
    let insecure = tls.insecure_skip_verify == Some(true);
    let sni = non_empty(&tls.sni).unwrap_or_default().to_string();
    // Without an SNI, the request's host is sent, and checked against the certificate unless
    // names to check are given or checks are off (istiod's `setAutoSniAndAutoSanValidation`).
    let auto_sni = sni.is_empty();
    let auto_san_validation = auto_sni && tls.subject_alt_names.is_empty() && !insecure;
    if auto_sni || auto_san_validation {
        let options = builder.http_options.get_or_insert_default();
        let upstream = options
            .upstream_http_protocol_options
            .get_or_insert_with(UpstreamHttpProtocolOptions::default);
        upstream.auto_sni |= auto_sni;
        upstream.auto_san_validation |= auto_san_validation;
    }
    let mut common = CommonTlsContext {
        tls_params: Some(TlsParameters {
            tls_minimum_protocol_version: TlsProtocol::TlSv12 as i32,
            tls_maximum_protocol_version: TlsProtocol::TlSv13 as i32,
            ecdh_curves: defaults.map(|d| d.ecdh_curves.clone()).unwrap_or_default(),
            cipher_suites: defaults
                .map(|d| d.cipher_suites.clone())
                .unwrap_or_default(),
            ..Default::default()
        }),
        ..Default::default()
    };
    if mutual {
        common.tls_certificates.push(TlsCertificate {
            certificate_chain: non_empty(&tls.client_certificate).map(file),
            private_key: non_empty(&tls.private_key).map(file),
            ..Default::default()
        });
    }
    let validation = if insecure {
        CertificateValidationContext::default()
    } else {
        #[allow(deprecated)]
        CertificateValidationContext {
            trusted_ca: Some(file(
                non_empty(&tls.ca_certificates).unwrap_or(SYSTEM_CA_BUNDLE),
            )),
            match_subject_alt_names: tls
                .subject_alt_names
                .iter()
                .map(|name| StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(name.clone())),
                    ..Default::default()
                })
                .collect(),
            crl: non_empty(&tls.ca_crl).map(file),
            ..Default::default()
        }
    };
    common.validation_context_type = Some(ValidationContextType::ValidationContext(validation));
    if builder.is_http2() {
        common.alpn_protocols = vec!["h2".to_string()];
    }
    let context = UpstreamTlsContext {
        common_tls_context: Some(common),
        sni,
        ..Default::default()
    };
    builder.cluster.transport_socket = Some(TransportSocket {
        name: TLS_TRANSPORT_SOCKET.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(&context))),
    });
}
