//! The Kubernetes API server as an authority, as istiod uses it: a TokenReview says whose a
//! service account token is, and a SubjectAccessReview whether a service account may list the
//! Secrets of its namespace (istiod's `CredentialsController.Authorize`). Implements the traits
//! of [`crate::xds::auth`]; decides nothing itself.
//!
//! Answers are cached for a minute (istiod's cache time), allowed and refused alike, so a
//! reconnecting fleet costs the API server one review per service account, not one per stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::xds::auth::{SecretReaders, ServiceAccount, TokenReviewer};

/// How long an answer of the API server is reused (istiod's authorization cache time).
const CACHE_TTL: Duration = Duration::from_secs(60);

/// Past this many cached answers, expired ones are dropped before another is added.
const CACHE_PRUNE_AT: usize = 10_000;

/// The audience istiod's tokens are made for (`TOKEN_AUDIENCES`' default).
pub const DEFAULT_TOKEN_AUDIENCE: &str = "istio-ca";

/// What a Kubernetes username of a service account looks like.
const SERVICE_ACCOUNT_USER: &str = "system:serviceaccount:";

/// Reviews tokens with the API server's TokenReview.
pub struct KubeTokenReviewer {
    client: kube::Client,
    audiences: Vec<String>,
}

impl KubeTokenReviewer {
    pub fn new(client: kube::Client, audiences: Vec<String>) -> Arc<KubeTokenReviewer> {
        Arc::new(KubeTokenReviewer { client, audiences })
    }

    async fn review_token(&self, token: &str) -> Result<ServiceAccount, String> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: Some(self.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|error| format!("TokenReview failed: {error}"))?;
        let status = reviewed.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Err(status
                .error
                .filter(|error| !error.is_empty())
                .unwrap_or_else(|| "not authenticated".to_string()));
        }
        let username = status
            .user
            .and_then(|user| user.username)
            .unwrap_or_default();
        service_account_of(&username)
            .ok_or_else(|| format!("{username:?} is not a service account"))
    }
}

impl TokenReviewer for KubeTokenReviewer {
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<ServiceAccount, String>> {
        Box::pin(self.review_token(token))
    }
}

/// `system:serviceaccount:NAMESPACE:NAME` as a service account.
fn service_account_of(username: &str) -> Option<ServiceAccount> {
    let (namespace, name) = username
        .strip_prefix(SERVICE_ACCOUNT_USER)?
        .split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then(|| ServiceAccount {
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

/// Asks the API server's SubjectAccessReview whether a service account may `list` `secrets` in
/// its namespace, as istiod does before it sends a gateway its keys.
pub struct KubeSecretReaders {
    client: kube::Client,
    cache: Mutex<HashMap<ServiceAccount, (bool, Instant)>>,
}

impl KubeSecretReaders {
    pub fn new(client: kube::Client) -> Arc<KubeSecretReaders> {
        Arc::new(KubeSecretReaders {
            client,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn cached(&self, account: &ServiceAccount) -> Option<bool> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let (allowed, at) = cache.get(account)?;
        (at.elapsed() < CACHE_TTL).then_some(*allowed)
    }

    fn remember(&self, account: &ServiceAccount, allowed: bool) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_PRUNE_AT {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
        }
        cache.insert(account.clone(), (allowed, Instant::now()));
    }

    async fn check(&self, account: &ServiceAccount) -> bool {
        if let Some(allowed) = self.cached(account) {
            return allowed;
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(format!(
                    "{SERVICE_ACCOUNT_USER}{}:{}",
                    account.namespace, account.name
                )),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(account.namespace.clone()),
                    verb: Some("list".to_string()),
                    resource: Some("secrets".to_string()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let allowed = match Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
        {
            Ok(reviewed) => reviewed.status.is_some_and(|status| status.allowed),
            Err(error) => {
                // Not cached: the next stream asks again.
                tracing::warn!(%account, %error, "SubjectAccessReview failed; serving no keys");
                return false;
            }
        };
        self.remember(account, allowed);
        allowed
    }
}

impl SecretReaders for KubeSecretReaders {
    fn may_read<'a>(&'a self, account: &'a ServiceAccount) -> BoxFuture<'a, bool> {
        Box::pin(self.check(account))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_usernames_only() {
        assert_eq!(
            service_account_of("system:serviceaccount:istio-system:ingress"),
            Some(ServiceAccount {
                namespace: "istio-system".into(),
                name: "ingress".into(),
            })
        );
        for other in [
            "admin",
            "system:serviceaccount:ns",
            "system:serviceaccount::name",
            "system:serviceaccount:ns:",
            "system:serviceaccount:ns:a:b",
            "system:node:x",
        ] {
            assert_eq!(service_account_of(other), None, "{other}");
        }
    }
}
