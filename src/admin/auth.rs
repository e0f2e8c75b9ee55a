//! Who may read `/debug/*`: istiod's rule (`allowAuthenticatedOrLocalhost`). A request from a
//! loopback address is answered; any other must carry `Authorization: Bearer TOKEN`, and the
//! token must be the one in `--debug-token-file`, or one a [`TokenVerifier`] (a Kubernetes
//! TokenReview) proves to belong to a service account of the system namespace
//! (`--root-namespace`, `istio-system` by default), as istiod lets only its own namespace's
//! identities see every debug endpoint.
//!
//! Owns the decision and the token file (re-read when it changes, compared in constant time).
//! Must not do HTTP: the admin server turns a [`Decision`] into a status and a log line.

use std::fmt;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use futures::future::BoxFuture;
use subtle::ConstantTimeEq;

/// A caller's identity as a [`TokenVerifier`] proved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub namespace: String,
    pub service_account: String,
}

impl fmt::Display for Identity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.namespace, self.service_account)
    }
}

/// Why a verifier did not accept a token (invalid, expired, or the verifier is unreachable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VerifyError(pub String);

/// Proves whose a bearer token is: a Kubernetes ServiceAccount token checked with a TokenReview,
/// as istiod authenticates its callers.
pub trait TokenVerifier: Send + Sync + 'static {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Identity, VerifyError>>;
}

/// Why a static token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("debug token file {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("debug token file {}: empty", path.display())]
    Empty { path: PathBuf },
}

/// Who asked, once allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A loopback address: rudder's own host or Pod (`rudder proxy-status`, `kubectl exec`,
    /// `kubectl port-forward`).
    Local,
    /// The holder of `--debug-token-file`'s token.
    StaticToken,
    /// A verified identity of the system namespace.
    Verified(Identity),
}

/// What to answer a debug request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed(Caller),
    /// 401: no token, or one nothing accepts.
    Unauthenticated(&'static str),
    /// 403: a verified identity that may not read debug endpoints.
    Forbidden(String),
}

/// The debug endpoints' access check; cheap to share behind an `Arc`.
pub struct DebugAuth {
    token: Option<TokenFile>,
    verifier: Option<Arc<dyn TokenVerifier>>,
    /// Verified identities of this namespace may read every debug endpoint.
    system_namespace: String,
}

impl fmt::Debug for DebugAuth {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("DebugAuth")
            .field("token_file", &self.token.as_ref().map(|token| &token.path))
            .field("verifier", &self.verifier.is_some())
            .field("system_namespace", &self.system_namespace)
            .finish()
    }
}

impl DebugAuth {
    /// Loopback callers only, until a token file or a verifier is added.
    pub fn new(system_namespace: impl Into<String>) -> DebugAuth {
        DebugAuth {
            token: None,
            verifier: None,
            system_namespace: system_namespace.into(),
        }
    }

    /// Also accepts the token in `path` (surrounding whitespace trimmed). The file must hold one
    /// now; later it is re-read whenever its modification time, size or inode change.
    pub fn with_token_file(mut self, path: PathBuf) -> Result<DebugAuth, TokenFileError> {
        self.token = Some(TokenFile::load(path)?);
        Ok(self)
    }

    /// Also accepts tokens `verifier` proves to belong to the system namespace.
    pub fn with_verifier(mut self, verifier: Arc<dyn TokenVerifier>) -> DebugAuth {
        self.verifier = Some(verifier);
        self
    }

    /// Decides on a request from `peer` carrying this `Authorization` header value, if any.
    pub async fn decide(&self, peer: IpAddr, authorization: Option<&[u8]>) -> Decision {
        // istiod's isRequestFromLocalhost: all of 127/8 and ::1; an IPv4 client of a dual-stack
        // socket shows as ::ffff:127.x.y.z.
        if peer.to_canonical().is_loopback() {
            return Decision::Allowed(Caller::Local);
        }
        let Some(token) = authorization.and_then(bearer) else {
            return Decision::Unauthenticated(
                "debug endpoints answer loopback callers, or an Authorization: Bearer token",
            );
        };
        if let Some(file) = &self.token
            && file.matches(token)
        {
            return Decision::Allowed(Caller::StaticToken);
        }
        let rejected = Decision::Unauthenticated("the bearer token is not accepted");
        let Some(verifier) = &self.verifier else {
            return rejected;
        };
        let Ok(token) = std::str::from_utf8(token) else {
            return rejected;
        };
        match verifier.verify(token).await {
            Ok(identity) if identity.namespace == self.system_namespace => {
                Decision::Allowed(Caller::Verified(identity))
            }
            Ok(identity) => Decision::Forbidden(format!(
                "{identity} may not read debug endpoints: only identities of namespace {}",
                self.system_namespace
            )),
            // The verifier's reason stays in rudder: like istiod, the caller learns nothing more.
            Err(error) => {
                tracing::debug!(%error, "debug request token not verified");
                rejected
            }
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` value (scheme case-insensitive, RFC 7235).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = token.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// A token kept in a file, re-read when the file is replaced (a Kubernetes Secret volume).
struct TokenFile {
    path: PathBuf,
    loaded: Mutex<LoadedToken>,
}

struct LoadedToken {
    stamp: Option<Stamp>,
    /// `None` while the file is unreadable or empty: then no static token is accepted.
    token: Option<Vec<u8>>,
}

/// What tells that a file changed: modification time, size and inode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: (u64, u64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let metadata = fs::metadata(path).ok()?;
    Some(Stamp {
        modified: metadata.modified().ok(),
        len: metadata.len(),
        inode: (metadata.dev(), metadata.ino()),
    })
}

fn read_token(path: &Path) -> Result<Vec<u8>, TokenFileError> {
    let bytes = fs::read(path).map_err(|source| TokenFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let token = bytes.trim_ascii();
    if token.is_empty() {
        return Err(TokenFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(token.to_vec())
}

impl TokenFile {
    fn load(path: PathBuf) -> Result<TokenFile, TokenFileError> {
        let stamp = stamp(&path);
        let token = read_token(&path)?;
        Ok(TokenFile {
            path,
            loaded: Mutex::new(LoadedToken {
                stamp,
                token: Some(token),
            }),
        })
    }

    /// Whether `candidate` is the file's token as the file is now. A file that became
    /// unreadable or empty accepts nothing (a removed token must stop working), and says so once
    /// per change.
    fn matches(&self, candidate: &[u8]) -> bool {
        let now = stamp(&self.path);
        // Each replacement of `LoadedToken` is whole, so it is consistent even after a panic.
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.stamp != now {
            loaded.stamp = now;
            loaded.token = match read_token(&self.path) {
                Ok(token) => {
                    tracing::info!(path = %self.path.display(), "debug token file changed: using the new token");
                    Some(token)
                }
                Err(error) => {
                    tracing::warn!(%error, "debug token file changed and holds no token: no debug token is accepted");
                    None
                }
            };
        }
        loaded
            .token
            .as_deref()
            .is_some_and(|token| bool::from(token.ct_eq(candidate)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REMOTE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3));

    /// Says every token is `namespace/service_account`; "bad" is refused.
    struct Fake;

    impl TokenVerifier for Fake {
        fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Identity, VerifyError>> {
            Box::pin(async move {
                let (namespace, service_account) = token
                    .split_once('/')
                    .ok_or_else(|| VerifyError("not a token".into()))?;
                Ok(Identity {
                    namespace: namespace.into(),
                    service_account: service_account.into(),
                })
            })
        }
    }

    fn with_token(text: &str) -> (tempfile::TempDir, PathBuf, DebugAuth) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, text).unwrap();
        let auth = DebugAuth::new("istio-system")
            .with_token_file(path.clone())
            .unwrap();
        (dir, path, auth)
    }

    fn decide(auth: &DebugAuth, peer: IpAddr, header: Option<&str>) -> Decision {
        futures::executor::block_on(auth.decide(peer, header.map(str::as_bytes)))
    }

    #[test]
    fn loopback_callers_need_no_token() {
        let auth = DebugAuth::new("istio-system");
        for peer in ["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"] {
            let peer: IpAddr = peer.parse().unwrap();
            assert_eq!(
                decide(&auth, peer, None),
                Decision::Allowed(Caller::Local),
                "{peer}"
            );
        }
        assert!(matches!(
            decide(&auth, "::ffff:10.0.0.1".parse().unwrap(), None),
            Decision::Unauthenticated(_)
        ));
    }

    #[test]
    fn a_remote_caller_needs_the_token() {
        let (_dir, _path, auth) = with_token("s3cret-token\n");
        assert_eq!(
            decide(&auth, REMOTE, Some("Bearer s3cret-token")),
            Decision::Allowed(Caller::StaticToken)
        );
        assert_eq!(
            decide(&auth, REMOTE, Some("bearer   s3cret-token ")),
            Decision::Allowed(Caller::StaticToken)
        );
        for wrong in [
            None,
            Some("Bearer s3cret-tokem"),
            Some("Bearer s3cret-token-longer"),
            Some("Bearer s3cret"),
            Some("Bearer "),
            Some("Basic czNjcmV0LXRva2Vu"),
            Some("s3cret-token"),
        ] {
            assert!(
                matches!(decide(&auth, REMOTE, wrong), Decision::Unauthenticated(_)),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn without_a_token_file_or_verifier_only_loopback_is_answered() {
        let auth = DebugAuth::new("istio-system");
        assert!(matches!(
            decide(&auth, REMOTE, Some("Bearer anything")),
            Decision::Unauthenticated(_)
        ));
    }

    #[test]
    fn the_token_file_is_followed() {
        let (_dir, path, auth) = with_token("first");
        assert!(matches!(
            decide(&auth, REMOTE, Some("Bearer first")),
            Decision::Allowed(_)
        ));
        // Replaced as a Secret volume replaces it: a new file renamed into place.
        let next = path.with_file_name("token.next");
        fs::write(&next, "second-token").unwrap();
        fs::rename(&next, &path).unwrap();
        assert!(matches!(
            decide(&auth, REMOTE, Some("Bearer second-token")),
            Decision::Allowed(_)
        ));
        assert!(matches!(
            decide(&auth, REMOTE, Some("Bearer first")),
            Decision::Unauthenticated(_)
        ));
        // Emptied or removed: nothing is accepted any more.
        fs::remove_file(&path).unwrap();
        assert!(matches!(
            decide(&auth, REMOTE, Some("Bearer second-token")),
            Decision::Unauthenticated(_)
        ));
    }

    #[test]
    fn an_empty_or_missing_token_file_is_refused_at_startup() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        fs::write(&empty, " \n").unwrap();
        assert!(matches!(
            DebugAuth::new("istio-system").with_token_file(empty),
            Err(TokenFileError::Empty { .. })
        ));
        assert!(matches!(
            DebugAuth::new("istio-system").with_token_file(dir.path().join("missing")),
            Err(TokenFileError::Unreadable { .. })
        ));
    }

    #[test]
    fn verified_identities_of_the_system_namespace_are_allowed() {
        let (_dir, _path, auth) = with_token("static");
        let auth = auth.with_verifier(Arc::new(Fake));
        assert_eq!(
            decide(&auth, REMOTE, Some("Bearer istio-system/istioctl")),
            Decision::Allowed(Caller::Verified(Identity {
                namespace: "istio-system".into(),
                service_account: "istioctl".into(),
            }))
        );
        assert_eq!(
            decide(&auth, REMOTE, Some("Bearer shop/web")),
            Decision::Forbidden(
                "shop/web may not read debug endpoints: only identities of namespace istio-system"
                    .into()
            )
        );
        assert!(matches!(
            decide(&auth, REMOTE, Some("Bearer bad")),
            Decision::Unauthenticated(_)
        ));
        // The static token still works beside the verifier.
        assert_eq!(
            decide(&auth, REMOTE, Some("Bearer static")),
            Decision::Allowed(Caller::StaticToken)
        );
    }
}
