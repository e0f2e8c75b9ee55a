//! SDS: the Secret resources gateways fetch over ADS for their `credentialName`s, and the
//! resource names both sides of that exchange agree on (istiod's `kubernetes://NAME`, and
//! `kubernetes://NAME-cacert` for the CA that verifies clients). Decides which proxy may have
//! which credential; reading Secrets is `model::credential`'s.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::DataSource;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::secret::Type;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate,
};

use crate::model::Model;
use crate::proxy::{Proxy, ProxyKind, SecretAccess};

/// The prefix istiod gives Secret resources read from Kubernetes Secrets.
const KUBERNETES_SECRET_PREFIX: &str = "kubernetes://";
/// What istiod appends to a credential's resource name for its CA bundle.
const CA_SUFFIX: &str = "-cacert";

/// The SDS resource holding the certificate chain and key of `credential_name`.
pub fn certificate_resource_name(credential_name: &str) -> String {
    format!("{KUBERNETES_SECRET_PREFIX}{credential_name}")
}

/// The SDS resource holding the CA that verifies clients for `credential_name`.
pub fn ca_resource_name(credential_name: &str) -> String {
    format!("{KUBERNETES_SECRET_PREFIX}{credential_name}{CA_SUFFIX}")
}

/// The Secret resources `proxy` may fetch, by resource name: for a gateway (`router`), the
/// credentials of its own namespace that its [`SecretAccess`] allows (istiod's authorization for
/// `kubernetes://` names: same namespace only; CA bundles to any verified identity of the
/// namespace, certificates and keys only to one allowed to read its Secrets; nothing without a
/// verified identity); for sidecars, none. Envoy asks for them by name, and a wildcard
/// subscription gets none of them ([`ResourceType::by_name_only`]), so a gateway gets only those
/// its listeners refer to.
///
/// [`ResourceType::by_name_only`]: crate::translate::ResourceType::by_name_only
pub fn secrets(model: &Model, proxy: &Proxy) -> BTreeMap<String, Secret> {
    if proxy.kind != ProxyKind::Router || proxy.secret_access == SecretAccess::None {
        return BTreeMap::new();
    }
    let keys = proxy.secret_access == SecretAccess::All;
    let namespace = proxy.namespace.clone();
    let own = (namespace.clone(), String::new())..;
    let mut secrets = BTreeMap::new();
    let mut add = |name: String, secret_type: Type| {
        let secret = Secret {
            name: name.clone(),
            r#type: Some(secret_type),
        };
        secrets.insert(name, secret);
    };
    for ((_, name), credential) in model
        .credentials
        .range(own)
        .take_while(|((ns, _), _)| *ns == namespace)
    {
        if keys {
            let tls_certificate = TlsCertificate {
                certificate_chain: Some(inline(&credential.certificate_chain)),
                private_key: Some(inline(&credential.private_key)),
                ..Default::default()
            };
            add(
                certificate_resource_name(name),
                Type::TlsCertificate(tls_certificate),
            );
        }
        if let Some(ca) = &credential.ca_certificate {
            let validation_context = CertificateValidationContext {
                trusted_ca: Some(inline(ca)),
                ..Default::default()
            };
            add(
                ca_resource_name(name),
                Type::ValidationContext(validation_context),
            );
        }
    }
    secrets
}

/// What private keys read as wherever resources are printed (config dumps, golden files), as in
/// Envoy's and istiod's config dumps.
pub const REDACTED: &str = "[redacted]";

/// Replaces a Secret's private key with [`REDACTED`]; certificates are public and stay.
pub fn redact_secret(secret: &mut Secret) {
    if let Some(Type::TlsCertificate(tls)) = &mut secret.r#type {
        for key in [&mut tls.private_key, &mut tls.password] {
            if key.is_some() {
                *key = Some(DataSource {
                    specifier: Some(Specifier::InlineString(REDACTED.into())),
                    ..Default::default()
                });
            }
        }
    }
}

/// PEM inline, as istiod sends it (bytes, not a file path the gateway would have to hold).
fn inline(pem: &str) -> DataSource {
    DataSource {
        specifier: Some(Specifier::InlineBytes(pem.as_bytes().to_vec())),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::credential::Credential;

    fn model() -> Model {
        let credential = |ca: Option<&str>| Credential {
            certificate_chain: "chain".into(),
            private_key: "key".into(),
            ca_certificate: ca.map(str::to_string),
        };
        let mut model = Model::default();
        for (namespace, name, ca) in [
            ("gw", "a", Some("ca")),
            ("gw", "b", None),
            ("gw-other", "c", None),
            ("g", "d", None),
        ] {
            std::sync::Arc::make_mut(&mut model.credentials)
                .insert((namespace.into(), name.into()), credential(ca));
        }
        model
    }

    fn proxy(kind: &str) -> Proxy {
        let id = format!("{kind}~10.0.0.1~pod.gw~gw.svc.cluster.local");
        let mut proxy = Proxy::parse(&id, &json!({"NAMESPACE": "gw"})).unwrap();
        proxy.secret_access = SecretAccess::All;
        proxy
    }

    fn names(secrets: &BTreeMap<String, Secret>) -> Vec<&str> {
        secrets.keys().map(String::as_str).collect()
    }

    #[test]
    fn a_gateway_gets_the_credentials_of_its_namespace_only() {
        let secrets = secrets(&model(), &proxy("router"));
        assert_eq!(
            names(&secrets),
            ["kubernetes://a", "kubernetes://a-cacert", "kubernetes://b"]
        );
        let Some(Type::TlsCertificate(tls)) = &secrets["kubernetes://a"].r#type else {
            panic!("a certificate");
        };
        assert_eq!(tls.private_key, Some(inline("key")));
        let Some(Type::ValidationContext(ca)) = &secrets["kubernetes://a-cacert"].r#type else {
            panic!("a validation context");
        };
        assert_eq!(ca.trusted_ca, Some(inline("ca")));
    }

    #[test]
    fn redacting_keeps_the_certificate_and_hides_the_key() {
        let mut secret = secrets(&model(), &proxy("router"))
            .remove("kubernetes://a")
            .unwrap();
        redact_secret(&mut secret);
        let Some(Type::TlsCertificate(tls)) = &secret.r#type else {
            panic!("a certificate");
        };
        assert_eq!(tls.certificate_chain, Some(inline("chain")));
        let redacted = Some(Specifier::InlineString(REDACTED.into()));
        assert_eq!(tls.private_key.as_ref().unwrap().specifier, redacted);
    }

    #[test]
    fn what_a_gateway_gets_follows_its_secret_access() {
        let mut gateway = proxy("router");
        gateway.secret_access = SecretAccess::CaOnly;
        assert_eq!(
            names(&secrets(&model(), &gateway)),
            ["kubernetes://a-cacert"]
        );
        gateway.secret_access = SecretAccess::None;
        assert!(secrets(&model(), &gateway).is_empty());
    }

    #[test]
    fn sidecars_get_no_secrets() {
        assert!(secrets(&model(), &proxy("sidecar")).is_empty());
    }
}
