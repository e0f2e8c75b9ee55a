//! Who is on the other end of an ADS stream, and which credentials that identity may be sent:
//! istiod's authenticators and its Secret authorization, for stock Envoy.
//!
//! Authentication, in istiod's order: the SPIFFE id of a verified client certificate (mutual
//! TLS), else a Kubernetes service account token (`authorization: Bearer TOKEN` on the stream)
//! checked by a [`TokenReviewer`]. Only TLS connections authenticate: on a plaintext port a
//! token could have been read off the wire, so whatever the client sends, it is unauthenticated
//! (and gets no Secret). A client certificate without a SPIFFE id is refused, not treated as
//! unauthenticated: it was issued for something that is not a workload.
//!
//! Authorization for Secrets ([`SecretAccess`]): a verified identity gets the CA bundles of its
//! namespace, and its certificates and keys only if one of the [`SecretReaders`] says it may
//! read Secrets there (Kubernetes RBAC through SubjectAccessReview, or the operator's list of
//! `--credential-reader`s). The identity's namespace is the proxy's (checked in
//! [`super::node::identify`]), so it never reaches another namespace's Secrets.
//!
//! Owns the decisions only; talking to the API server is behind the traits
//! (`crate::kube_auth` implements them). Does no logging: the stream logs what it decided.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::Status;

use super::spiffe::SpiffeId;
use crate::proxy::SecretAccess;

/// How long a token review or an authorization check may take before the stream is refused
/// (token) or gets no keys (authorization).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// A Kubernetes service account: what a token proves and what RBAC authorizes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ServiceAccount {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for ServiceAccount {
    type Err = String;

    /// `NAMESPACE/NAME`.
    fn from_str(text: &str) -> Result<ServiceAccount, String> {
        match text.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(ServiceAccount {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!("{text:?} is not NAMESPACE/SERVICE_ACCOUNT")),
        }
    }
}

impl From<&SpiffeId> for ServiceAccount {
    fn from(identity: &SpiffeId) -> ServiceAccount {
        ServiceAccount {
            namespace: identity.namespace.clone(),
            name: identity.service_account.clone(),
        }
    }
}

/// Checks a bearer token and says whose it is (Kubernetes TokenReview).
pub trait TokenReviewer: Send + Sync + 'static {
    /// The service account the token belongs to, or why it is refused.
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<ServiceAccount, String>>;
}

/// Says whether a service account may read the Secrets of its own namespace.
pub trait SecretReaders: Send + Sync + 'static {
    fn may_read<'a>(&'a self, account: &'a ServiceAccount) -> BoxFuture<'a, bool>;
}

/// The service accounts named on the command line (`--credential-reader NAMESPACE/NAME`): the
/// rule where no API server can be asked (config from files).
#[derive(Debug, Clone, Default)]
pub struct NamedReaders(pub BTreeSet<ServiceAccount>);

impl SecretReaders for NamedReaders {
    fn may_read<'a>(&'a self, account: &'a ServiceAccount) -> BoxFuture<'a, bool> {
        Box::pin(std::future::ready(self.0.contains(account)))
    }
}

/// What a connection offers to prove who it is.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The connection is TLS: only then does anything it offers count.
    pub tls: bool,
    /// It presented a client certificate (verified by the handshake); the SPIFFE id it carries.
    pub certificate: Option<Option<SpiffeId>>,
    /// The bearer token of the stream's `authorization` header.
    pub token: Option<String>,
}

/// How an identity was proven, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Certificate,
    Token,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Certificate => "certificate",
            Method::Token => "token",
        }
    }
}

/// An identity proven on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub identity: SpiffeId,
    pub method: Method,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "authentication failed: the client certificate carries no SPIFFE identity \
         (a URI SAN spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT)"
    )]
    NoSpiffeId,
    #[error("authentication failed: the service account token was refused: {0}")]
    Token(String),
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Status {
        Status::unauthenticated(error.to_string())
    }
}

/// How the xDS server authenticates streams and authorizes Secrets. The default authenticates
/// client certificates only and lets no identity read keys.
#[derive(Clone, Default)]
pub struct XdsAuth {
    /// Checks service account tokens; `None`: tokens are not accepted.
    pub tokens: Option<Arc<dyn TokenReviewer>>,
    /// An identity may read its namespace's Secrets if any of these says so.
    pub readers: Vec<Arc<dyn SecretReaders>>,
    /// The trust domain of identities proven by a token (meshConfig.trustDomain).
    pub trust_domain: String,
}

impl fmt::Debug for XdsAuth {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("XdsAuth")
            .field("tokens", &self.tokens.is_some())
            .field("readers", &self.readers.len())
            .field("trust_domain", &self.trust_domain)
            .finish()
    }
}

/// Compared by identity, like the other hooks of `XdsOptions`.
impl PartialEq for XdsAuth {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: &Arc<dyn SecretReaders>, b: &Arc<dyn SecretReaders>| Arc::ptr_eq(a, b);
        self.trust_domain == other.trust_domain
            && match (&self.tokens, &other.tokens) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
            && self.readers.len() == other.readers.len()
            && self
                .readers
                .iter()
                .zip(&other.readers)
                .all(|(a, b)| same(a, b))
    }
}

impl Eq for XdsAuth {}

impl XdsAuth {
    /// Who the connection proves it is: `Ok(None)` for an unauthenticated one.
    pub async fn authenticate(&self, offered: &Credentials) -> Result<Option<Verified>, AuthError> {
        if !offered.tls {
            return Ok(None);
        }
        match &offered.certificate {
            Some(Some(identity)) => {
                return Ok(Some(Verified {
                    identity: identity.clone(),
                    method: Method::Certificate,
                }));
            }
            Some(None) => return Err(AuthError::NoSpiffeId),
            None => {}
        }
        let (Some(token), Some(reviewer)) = (&offered.token, &self.tokens) else {
            return Ok(None);
        };
        let reviewed = tokio::time::timeout(CHECK_TIMEOUT, reviewer.review(token))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {CHECK_TIMEOUT:?}")))
            .map_err(AuthError::Token)?;
        Ok(Some(Verified {
            identity: SpiffeId {
                trust_domain: self.trust_domain.clone(),
                namespace: reviewed.namespace,
                service_account: reviewed.name,
            },
            method: Method::Token,
        }))
    }

    /// The Secrets a proxy proven to be `verified` may be sent.
    pub async fn secret_access(&self, verified: Option<&Verified>) -> SecretAccess {
        let Some(verified) = verified else {
            return SecretAccess::None;
        };
        let account = ServiceAccount::from(&verified.identity);
        for readers in &self.readers {
            let allowed = tokio::time::timeout(CHECK_TIMEOUT, readers.may_read(&account)).await;
            if allowed == Ok(true) {
                return SecretAccess::All;
            }
        }
        SecretAccess::CaOnly
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spiffe(namespace: &str, service_account: &str) -> SpiffeId {
        SpiffeId {
            trust_domain: "cluster.local".into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        }
    }

    struct Tokens;

    impl TokenReviewer for Tokens {
        fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<ServiceAccount, String>> {
            Box::pin(std::future::ready(
                token
                    .strip_prefix("good:")
                    .ok_or_else(|| "not authenticated".to_string())
                    .and_then(str::parse),
            ))
        }
    }

    fn auth() -> XdsAuth {
        let readers = NamedReaders(["gw/ingress".parse().unwrap()].into());
        XdsAuth {
            tokens: Some(Arc::new(Tokens)),
            readers: vec![Arc::new(readers)],
            trust_domain: "cluster.local".into(),
        }
    }

    fn offered(tls: bool, certificate: Option<Option<SpiffeId>>, token: &str) -> Credentials {
        Credentials {
            tls,
            certificate,
            token: (!token.is_empty()).then(|| token.to_string()),
        }
    }

    #[tokio::test]
    async fn plaintext_is_unauthenticated_whatever_it_offers() {
        let certificate = Some(Some(spiffe("gw", "ingress")));
        let plaintext = offered(false, certificate, "good:gw/ingress");
        assert_eq!(auth().authenticate(&plaintext).await, Ok(None));
    }

    #[tokio::test]
    async fn certificates_need_a_spiffe_id_and_win_over_tokens() {
        let with_id = offered(true, Some(Some(spiffe("gw", "ingress"))), "good:a/b");
        let verified = auth().authenticate(&with_id).await.unwrap().unwrap();
        assert_eq!(
            (verified.identity, verified.method),
            (spiffe("gw", "ingress"), Method::Certificate)
        );
        let dns_only = offered(true, Some(None), "good:gw/ingress");
        assert_eq!(
            auth().authenticate(&dns_only).await,
            Err(AuthError::NoSpiffeId)
        );
    }

    #[tokio::test]
    async fn tokens_are_reviewed_on_tls_only() {
        let verified = auth()
            .authenticate(&offered(true, None, "good:gw/ingress"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (verified.identity, verified.method),
            (spiffe("gw", "ingress"), Method::Token)
        );
        let refused = auth().authenticate(&offered(true, None, "bad")).await;
        assert!(matches!(refused, Err(AuthError::Token(_))), "{refused:?}");
        let without_reviewer = XdsAuth::default()
            .authenticate(&offered(true, None, "good:gw/ingress"))
            .await;
        assert_eq!(without_reviewer, Ok(None));
    }

    #[tokio::test]
    async fn keys_go_to_named_readers_only() {
        let verified = |namespace, service_account| Verified {
            identity: spiffe(namespace, service_account),
            method: Method::Certificate,
        };
        let auth = auth();
        assert_eq!(auth.secret_access(None).await, SecretAccess::None);
        let reader = verified("gw", "ingress");
        assert_eq!(auth.secret_access(Some(&reader)).await, SecretAccess::All);
        let other = verified("gw", "default");
        assert_eq!(auth.secret_access(Some(&other)).await, SecretAccess::CaOnly);
        let elsewhere = verified("other", "ingress");
        assert_eq!(
            auth.secret_access(Some(&elsewhere)).await,
            SecretAccess::CaOnly
        );
    }

    #[test]
    fn service_accounts_parse_as_namespace_slash_name() {
        let account: ServiceAccount = "istio-system/ingress".parse().unwrap();
        assert_eq!(account.to_string(), "istio-system/ingress");
        for bad in ["", "a", "a/", "/b", "a/b/c"] {
            assert!(bad.parse::<ServiceAccount>().is_err(), "{bad}");
        }
    }
}
