//! The TLS context of a gateway server that terminates TLS, shaped as istiod's
//! `BuildListenerTLSContext`: ALPN `h2`, `http/1.1`; a client certificate required for MUTUAL;
//! `minProtocolVersion`, `maxProtocolVersion` and `cipherSuites` as TLS parameters.
//! - `credentialName`: the certificate over SDS (`kubernetes://NAME`), and for MUTUAL a combined
//!   validation context whose CA comes over SDS (`kubernetes://NAME-cacert`) and whose own part
//!   checks subject alt names, SPKI and hashes.
//! - Files: istiod hands file paths to its agent's SDS server; stock Envoy has none, so rudder
//!   names the files in the context itself (`filename` data sources Envoy reads and watches).
//!
//! Decides nothing about whether the server can be served (validation and `credential_problem`
//! do that).

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::{
    CombinedCertificateValidationContext, ValidationContextType,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::subject_alt_name_matcher::SanType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::tls_parameters::TlsProtocol as EnvoyTlsProtocol;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig,
    SubjectAltNameMatcher, TlsCertificate, TlsParameters,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::BoolValue;

use crate::istio::{ServerTlsMode, ServerTlsSettings, TlsProtocol};
use crate::mesh_config::{MinTlsVersion, TlsDefaults};
use crate::model::gateway::is_known_cipher_suite;
use crate::translate::ads_config_source;
use crate::translate::sds::{ca_resource_name, certificate_resource_name};

/// What istiod offers in ALPN on gateway TLS listeners.
const ALPN_HTTP: [&str; 2] = ["h2", "http/1.1"];

/// `defaults` is the mesh config's `tlsDefaults`, which the server's own settings override.
pub(super) fn downstream_tls_context(
    tls: &ServerTlsSettings,
    defaults: &TlsDefaults,
) -> DownstreamTlsContext {
    let mutual = tls.mode == Some(ServerTlsMode::Mutual);
    let mut common = CommonTlsContext {
        alpn_protocols: ALPN_HTTP.iter().map(ToString::to_string).collect(),
        tls_params: tls_parameters(tls, defaults),
        ..Default::default()
    };
    let client_checks = CertificateValidationContext {
        match_typed_subject_alt_names: subject_alt_name_matchers(&tls.subject_alt_names),
        verify_certificate_spki: tls.verify_certificate_spki.clone(),
        verify_certificate_hash: tls.verify_certificate_hash.clone(),
        ..Default::default()
    };
    match &tls.credential_name {
        Some(name) => {
            common.tls_certificate_sds_secret_configs = vec![sds(certificate_resource_name(name))];
            if mutual {
                common.validation_context_type =
                    Some(ValidationContextType::CombinedValidationContext(
                        CombinedCertificateValidationContext {
                            default_validation_context: Some(client_checks),
                            validation_context_sds_secret_config: Some(sds(ca_resource_name(name))),
                            ..Default::default()
                        },
                    ));
            } else if !tls.subject_alt_names.is_empty() {
                common.validation_context_type =
                    Some(ValidationContextType::ValidationContext(client_checks));
            }
        }
        None => {
            common.tls_certificates = vec![TlsCertificate {
                certificate_chain: tls.server_certificate.as_deref().map(file),
                private_key: tls.private_key.as_deref().map(file),
                ..Default::default()
            }];
            if mutual {
                common.validation_context_type = Some(ValidationContextType::ValidationContext(
                    CertificateValidationContext {
                        trusted_ca: tls.ca_certificates.as_deref().map(file),
                        crl: tls.ca_crl.as_deref().map(file),
                        ..client_checks
                    },
                ));
            }
        }
    }
    DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: Some(BoolValue { value: mutual }),
        ..Default::default()
    }
}

fn sds(name: String) -> SdsSecretConfig {
    SdsSecretConfig {
        name,
        sds_config: Some(ads_config_source()),
    }
}

fn file(path: &str) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    }
}

/// Each name as a DNS or a URI SAN, exactly.
fn subject_alt_name_matchers(names: &[String]) -> Vec<SubjectAltNameMatcher> {
    names
        .iter()
        .flat_map(|name| {
            [SanType::Dns, SanType::Uri].map(|san_type| SubjectAltNameMatcher {
                san_type: san_type as i32,
                matcher: Some(StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(name.clone())),
                    ..Default::default()
                }),
                ..Default::default()
            })
        })
        .collect()
}

/// istiod's `applyDownstreamTLSDefaults`, then `applyServerTLSSettings`: the mesh's defaults,
/// then what the server sets (known cipher suites once each, in order) over them.
fn tls_parameters(tls: &ServerTlsSettings, defaults: &TlsDefaults) -> Option<TlsParameters> {
    let version = |protocol: Option<TlsProtocol>| match protocol {
        Some(TlsProtocol::TlsV1_0) => EnvoyTlsProtocol::TlSv10,
        Some(TlsProtocol::TlsV1_1) => EnvoyTlsProtocol::TlSv11,
        Some(TlsProtocol::TlsV1_2) => EnvoyTlsProtocol::TlSv12,
        Some(TlsProtocol::TlsV1_3) => EnvoyTlsProtocol::TlSv13,
        _ => EnvoyTlsProtocol::TlsAuto,
    };
    let mut cipher_suites: Vec<String> = Vec::new();
    for suite in &tls.cipher_suites {
        if is_known_cipher_suite(suite) && !cipher_suites.contains(suite) {
            cipher_suites.push(suite.clone());
        }
    }
    let mesh_minimum = match defaults.min_protocol_version {
        MinTlsVersion::TlsAuto => EnvoyTlsProtocol::TlsAuto,
        MinTlsVersion::TlsV1_2 => EnvoyTlsProtocol::TlSv12,
        MinTlsVersion::TlsV1_3 => EnvoyTlsProtocol::TlSv13,
    };
    let minimum = match version(tls.min_protocol_version) {
        EnvoyTlsProtocol::TlsAuto => mesh_minimum,
        set => set,
    };
    if cipher_suites.is_empty() {
        cipher_suites.clone_from(&defaults.cipher_suites);
    }
    let parameters = TlsParameters {
        tls_minimum_protocol_version: minimum as i32,
        tls_maximum_protocol_version: version(tls.max_protocol_version) as i32,
        cipher_suites,
        ecdh_curves: defaults.ecdh_curves.clone(),
        ..Default::default()
    };
    (parameters != TlsParameters::default()).then_some(parameters)
}
