//! TLS credentials that gateway servers name with `credentialName`: the certificate chain, private
//! key and optional CA bundle of a Kubernetes Secret, by namespace and name. Owns reading them out
//! of Secrets; knows nothing of Envoy or of which proxy may receive them (that is `translate::sds`).

use std::collections::BTreeMap;
use std::fmt;

/// One Secret's TLS material. `ca_certificate` is the Secret's own CA (`ca.crt`), else that of its
/// `NAME-cacert` companion Secret, as istiod looks them up.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub certificate_chain: String,
    pub private_key: String,
    pub ca_certificate: Option<String>,
}

/// Key material never reaches logs or debug output.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field(
                "certificate_chain",
                &format_args!("<{} bytes>", self.certificate_chain.len()),
            )
            .field("private_key", &format_args!("<redacted>"))
            .field(
                "ca_certificate",
                &self.ca_certificate.as_ref().map(|ca| ca.len()),
            )
            .finish()
    }
}

/// Credentials by (namespace, Secret name).
pub type Credentials = BTreeMap<(String, String), Credential>;
