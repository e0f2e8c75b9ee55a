//! TLS credentials that gateway servers name with `credentialName`: the certificate chain, private
//! key and optional CA bundle of a Kubernetes Secret, by namespace and name. Owns reading them out
//! of Secrets (the keys istiod reads, in its order) and checking them as far as Envoy will;
//! knows nothing of Envoy's resources or of which proxy may receive them (`translate::sds`).
//!
//! A Secret is read as istiod's credentials controller reads it, whatever its `type`: `cert` and
//! `key` (the generic form) if both are non-empty, else `tls.crt` and `tls.key`; its CA is
//! `cacert`, else `ca.crt`. The CA of credential `NAME` comes from the Secret `NAME-cacert` when
//! that Secret exists, else from `NAME` itself. Secrets that are no credential at all (no TLS key
//! names, as an Opaque Secret holding some API `key`) are left alone, not reported.
//!
//! An invalid Secret provides no credential, and unlike other objects it does not fall back to
//! its last valid version: a Secret is replaced to rotate or revoke a key, and serving the
//! replaced key on (perhaps it leaked) is worse than the gateway server that uses it going dark
//! until the Secret is fixed. istiod, too, serves only the Secret as it is now.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::Secret;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::inputs::{FieldError, Inputs, Kind, Object, ObjectKey};

/// One Secret's TLS material. `ca_certificate` is the CA of the `NAME-cacert` companion Secret
/// when there is one, else the Secret's own (`cacert` / `ca.crt`), as istiod looks them up.
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

/// What istiod appends to a Secret's name for the Secret holding its CA.
pub const CA_SECRET_SUFFIX: &str = "-cacert";

/// The Secret data keys istiod reads, and so the only ones rudder keeps.
pub const GENERIC_CERTIFICATE: &str = "cert";
pub const GENERIC_KEY: &str = "key";
pub const GENERIC_CA: &str = "cacert";
pub const TLS_CERTIFICATE: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const TLS_CA: &str = "ca.crt";
pub const SECRET_DATA_KEYS: [&str; 6] = [
    GENERIC_CERTIFICATE,
    GENERIC_KEY,
    GENERIC_CA,
    TLS_CERTIFICATE,
    TLS_KEY,
    TLS_CA,
];

/// Secret types that never hold gateway credentials and that istiod does not even watch.
const IGNORED_TYPES: [&str; 2] = ["kubernetes.io/service-account-token", "helm.sh/release.v1"];

/// What one Secret provides.
#[derive(PartialEq, Eq)]
enum Material {
    /// A certificate chain and its key, with the Secret's own CA if it has one.
    Certificate {
        chain: String,
        key: String,
        ca: Option<String>,
    },
    /// Only a CA (a `NAME-cacert` companion).
    Ca(String),
}

/// One data value and where it was written, for error messages.
struct Value<'a> {
    field: String,
    bytes: &'a [u8],
}

/// The Secret's data as the API server would store it: `stringData` written over `data`.
struct Data<'a> {
    values: BTreeMap<&'a str, Value<'a>>,
}

impl<'a> Data<'a> {
    fn of(secret: &'a Secret) -> Data<'a> {
        let mut values = BTreeMap::new();
        for (key, bytes) in secret.data.iter().flatten() {
            let field = format!("data.{key}");
            values.insert(
                key.as_str(),
                Value {
                    field,
                    bytes: &bytes.0,
                },
            );
        }
        for (key, text) in secret.string_data.iter().flatten() {
            let field = format!("stringData.{key}");
            let bytes = text.as_bytes();
            values.insert(key.as_str(), Value { field, bytes });
        }
        Data { values }
    }

    fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// The value of `key` if it is set and not empty.
    fn non_empty(&self, key: &str) -> Option<&Value<'a>> {
        self.values.get(key).filter(|value| !value.bytes.is_empty())
    }

    /// The field a missing `key` would be written at.
    fn field(&self, key: &str) -> String {
        self.values
            .get(key)
            .map_or_else(|| format!("data.{key}"), |value| value.field.clone())
    }
}

/// [`validate_secret`] for a Secret among the inputs (other kinds pass).
pub fn validate_object(object: &Object) -> Result<(), FieldError> {
    match object {
        Object::Secret(secret) => {
            validate_secret(secret.metadata.name.as_deref().unwrap_or_default(), secret)
        }
        _ => Ok(()),
    }
}

/// The credentials of the `admitted` Secrets, knowing from `inputs` which Secrets exist at all.
pub fn of_inputs<'a>(inputs: &Inputs, admitted: impl Iterator<Item = &'a Object>) -> Credentials {
    let present = inputs
        .entries
        .range(ObjectKey::new(Kind::Secret, "", "")..)
        .take_while(|(key, _)| key.kind == Kind::Secret)
        .map(|(key, _)| (key.namespace.as_str(), key.name.as_str()));
    let admitted = admitted.filter_map(|object| match object {
        Object::Secret(secret) => Some(&**secret),
        _ => None,
    });
    credentials(present, admitted)
}

/// Checks a Secret as gateways would use it: `Ok` for a valid credential or CA companion, and
/// for Secrets that are none of rudder's business; an error naming the field at fault otherwise.
pub fn validate_secret(name: &str, secret: &Secret) -> Result<(), FieldError> {
    read(name, secret).map(drop)
}

/// What a Secret provides, if anything; `name` is the Secret's name.
fn read(name: &str, secret: &Secret) -> Result<Option<Material>, FieldError> {
    if secret
        .type_
        .as_deref()
        .is_some_and(|ty| IGNORED_TYPES.contains(&ty))
    {
        return Ok(None);
    }
    let data = Data::of(secret);
    let is_tls_type = secret.type_.as_deref() == Some("kubernetes.io/tls");
    let pair = [
        (GENERIC_CERTIFICATE, GENERIC_KEY),
        (TLS_CERTIFICATE, TLS_KEY),
    ]
    .into_iter()
    .find_map(|(cert, key)| Some((data.non_empty(cert)?, data.non_empty(key)?)));
    if let Some((chain, key)) = pair {
        let chain = certificates(chain)?;
        let key = private_key(key, &chain)?;
        let ca = own_ca(&data)?;
        return Ok(Some(Material::Certificate { chain, key, ca }));
    }
    // Not a usable pair: a Secret that meant to hold one is reported, as istiod reports it when
    // a gateway asks.
    let generic = data.has(GENERIC_CERTIFICATE) && data.has(GENERIC_KEY);
    if generic || is_tls_type || data.has(TLS_CERTIFICATE) || data.has(TLS_KEY) {
        let (cert, key) = if generic {
            (GENERIC_CERTIFICATE, GENERIC_KEY)
        } else {
            (TLS_CERTIFICATE, TLS_KEY)
        };
        let missing = [cert, key]
            .into_iter()
            .find(|key| data.non_empty(key).is_none())
            .unwrap_or(key);
        return Err(FieldError {
            field: data.field(missing),
            message: format!(
                "a TLS Secret needs non-empty {cert:?} and {key:?} (or {GENERIC_CERTIFICATE:?} \
                 and {GENERIC_KEY:?}); {missing:?} is missing or empty, so no gateway gets this \
                 credential"
            ),
        });
    }
    // A CA on its own matters only as the companion of a credential.
    if name.ends_with(CA_SECRET_SUFFIX) {
        return match own_ca(&data)? {
            Some(ca) => Ok(Some(Material::Ca(ca))),
            None if data.has(GENERIC_CA) || data.has(TLS_CA) => Err(FieldError {
                field: data.field(if data.has(GENERIC_CA) {
                    GENERIC_CA
                } else {
                    TLS_CA
                }),
                message: "the CA of a -cacert Secret is empty".into(),
            }),
            None => Ok(None),
        };
    }
    Ok(None)
}

/// The Secret's own CA: `cacert`, else `ca.crt`, checked.
fn own_ca(data: &Data<'_>) -> Result<Option<String>, FieldError> {
    [GENERIC_CA, TLS_CA]
        .into_iter()
        .find_map(|key| data.non_empty(key))
        .map(certificates)
        .transpose()
}

/// PEM text holding at least one certificate, each of them well-formed DER, as Envoy loads
/// chains and CA bundles.
fn certificates(value: &Value<'_>) -> Result<String, FieldError> {
    let error = |message: String| FieldError {
        field: value.field.clone(),
        message,
    };
    let text = pem_text(value)?;
    let mut count = 0;
    for certificate in CertificateDer::pem_slice_iter(value.bytes) {
        let certificate =
            certificate.map_err(|problem| error(format!("not a PEM certificate: {problem}")))?;
        if !is_der_sequence(&certificate) {
            return Err(error(format!(
                "certificate {} of the PEM is not a DER certificate",
                count + 1
            )));
        }
        count += 1;
    }
    if count == 0 {
        return Err(error(
            "holds no PEM CERTIFICATE block; Envoy would reject it".into(),
        ));
    }
    Ok(text)
}

/// A PEM private key that Envoy can load and that belongs to the chain's first certificate
/// (Envoy rejects a Secret whose key does not match its certificate).
fn private_key(value: &Value<'_>, chain: &str) -> Result<String, FieldError> {
    let error = |message: &str| FieldError {
        field: value.field.clone(),
        message: message.to_string(),
    };
    let text = pem_text(value)?;
    let key = PrivateKeyDer::from_pem_slice(value.bytes)
        .map_err(|_| error("holds no PEM PRIVATE KEY block"))?;
    let signing_key = any_supported_type(&key).map_err(|_| {
        error(
            "not a private key rudder can check (RSA of 2048 bits or more, ECDSA P-256 or \
             P-384, Ed25519)",
        )
    })?;
    let chain = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| error("the certificate chain does not parse"))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(text),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(error(
            "does not belong to the first certificate of the chain; Envoy would reject the pair",
        )),
        // A key whose public half cannot be derived: Envoy will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(text),
        Err(_) => Err(error(
            "the chain's first certificate is not a valid X.509 certificate",
        )),
    }
}

fn pem_text(value: &Value<'_>) -> Result<String, FieldError> {
    String::from_utf8(value.bytes.to_vec()).map_err(|_| FieldError {
        field: value.field.clone(),
        message: "not PEM text (not UTF-8)".into(),
    })
}

/// Whether `der` is exactly one DER SEQUENCE, as every certificate is: enough to catch base64
/// that decodes to something else, short of parsing X.509.
fn is_der_sequence(der: &[u8]) -> bool {
    let [0x30, first, rest @ ..] = der else {
        return false;
    };
    let (length, body) = match first {
        0..=0x7f => (usize::from(*first), rest),
        0x81..=0x84 => {
            let octets = usize::from(first - 0x80);
            if rest.len() < octets {
                return false;
            }
            let (length, body) = rest.split_at(octets);
            let length = length
                .iter()
                .fold(0usize, |total, byte| (total << 8) | usize::from(*byte));
            (length, body)
        }
        _ => return false,
    };
    length == body.len()
}

/// The credentials the admitted Secrets provide. `present` names every Secret the inputs hold,
/// admitted or not: a `NAME-cacert` companion that exists but was rejected gives `NAME` no CA at
/// all, rather than letting `NAME`'s own CA (which the companion is there to replace) apply.
pub fn credentials<'a>(
    present: impl IntoIterator<Item = (&'a str, &'a str)>,
    admitted: impl IntoIterator<Item = &'a Secret>,
) -> Credentials {
    let present: BTreeSet<(&str, &str)> = present.into_iter().collect();
    let mut certificates = BTreeMap::new();
    let mut companions = BTreeMap::new();
    for secret in admitted {
        let namespace = secret.metadata.namespace.as_deref().unwrap_or("default");
        let Some(name) = secret.metadata.name.as_deref() else {
            continue;
        };
        let key = (namespace.to_string(), name.to_string());
        match read(name, secret) {
            // A `-cacert` name is the CA resource of another credential in SDS: it cannot be a
            // certificate credential of its own.
            Ok(Some(Material::Certificate {
                chain,
                key: private,
                ca,
            })) if !name.ends_with(CA_SECRET_SUFFIX) => {
                certificates.insert(key, (chain, private, ca));
            }
            Ok(Some(Material::Certificate { ca: Some(ca), .. } | Material::Ca(ca))) => {
                companions.insert(key, ca);
            }
            _ => {}
        }
    }
    certificates
        .into_iter()
        .map(|((namespace, name), (chain, private_key, own_ca))| {
            let companion = format!("{name}{CA_SECRET_SUFFIX}");
            let ca_certificate = if present.contains(&(namespace.as_str(), companion.as_str())) {
                companions.get(&(namespace.clone(), companion)).cloned()
            } else {
                own_ca
            };
            let credential = Credential {
                certificate_chain: chain,
                private_key,
                ca_certificate,
            };
            ((namespace, name), credential)
        })
        .collect()
}

#[cfg(test)]
mod tests;
