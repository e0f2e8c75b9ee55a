//! SDS: the Secret resources gateways fetch over ADS for their `credentialName`s, and the
//! resource names both sides of that exchange agree on (istiod's `kubernetes://NAME`, and
//! `kubernetes://NAME-cacert` for the CA that verifies clients).

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
