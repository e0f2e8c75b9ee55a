//! xDS: serving translated config to Envoy over ADS, state of the world and delta on the same
//! port. [`connection`] holds the per-stream protocol state machines (no I/O): [`sotw`] and
//! [`delta`], built on the per-resource content hashes of [`versions`]. [`server`] is the tonic
//! service that feeds them models and requests. This module holds what they share with the rest
//! of rudder: the published [`Snapshot`] of the model and the [`Registry`] of connected proxies
//! that admin and metrics read.
//!
//! Nothing here builds models or translates on its own schedule: models arrive through a
//! `watch` channel and each connection asks the [`cache`] for its proxy's translation, made once
//! per snapshot for every proxy that gets the same config. Responses carry resources encoded once
//! and shared ([`wire`]), written to the wire by a codec of rudder's own (`grpc`). What a client
//! can make the server hold is bounded (see [`server`]): connections are accepted and given a
//! time to handshake by `accept`, new streams are spaced by [`rate`].

mod accept;
pub mod auth;
pub mod cache;
mod canonical;
mod closer;
pub mod connection;
pub mod debug;
pub mod delta;
#[cfg(test)]
mod fixtures;
mod grpc;
pub mod hook;
pub mod node;
pub mod rate;
pub mod server;
pub mod sotw;
pub mod spiffe;
pub mod tls;
pub mod versions;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use crate::diagnostic::ConfigError;
use crate::inputs::Inputs;
use crate::model::Model;
use crate::proxy::Proxy;
use crate::translate::ResourceType;

pub use connection::{Event, Nack, Outcome, Refused, StateMachine, TypeStatus};
pub use delta::DeltaConnection;
pub use hook::ResourcesHook;
pub use rate::StreamRate;
pub use server::{
    DEFAULT_FIRST_REQUEST_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_KEEPALIVE_INTERVAL,
    DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_MAX_CONNECTION_AGE, DEFAULT_MAX_REQUEST_SIZE,
    DEFAULT_MAX_STREAMS_PER_CONNECTION, DEFAULT_MAX_SUBSCRIBED_NAMES,
    DEFAULT_MAX_UNFINISHED_REQUEST_BYTES, XdsError, XdsOptions, serve_xds,
};
pub use sotw::SotwConnection;
pub use tls::{TlsError, TlsFiles, XdsTls};

/// One published build of the model.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub model: Arc<Model>,
    /// The config errors of this build (objects rejected, or served at their last good version).
    pub errors: Vec<ConfigError>,
    /// Increments with every build.
    pub generation: u64,
    /// When the config change this build carries was seen: where `pilot_proxy_convergence_time`
    /// starts. `None` (snapshots not built from a source, as in tests): not measured.
    pub created: Option<Instant>,
    /// The inputs this build was made from, as loaded (for `/debug/inputz` and `/debug/configz`).
    pub inputs: Arc<Inputs>,
    /// Set when this model differs from the one before only in some services' endpoints: the
    /// translation cache then updates those proxies' EDS alone.
    pub endpoint_change: Option<EndpointChange>,
}

/// How a model differs from the one it was updated from, when only endpoints and workloads
/// changed (`model::endpoint_update`).
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    /// The model this one updates; compared by identity only.
    pub base: std::sync::Weak<Model>,
    /// The hosts whose endpoints changed.
    pub hosts: std::collections::BTreeSet<String>,
    /// Addresses whose proxies are translated in full: a Pod there changed (their labels and
    /// inbound config), or ServiceEntry endpoints there came or went (inbound config from them).
    pub addresses: std::collections::BTreeSet<std::net::IpAddr>,
}

/// One live ADS stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectedProxy {
    /// The proxy as identified on this stream, with labels from the current model.
    pub proxy: Proxy,
    /// Numbers streams, since one proxy id can hold two at once while Envoy reconnects.
    pub connection: u64,
    /// Whether the stream is delta ADS (else state of the world).
    pub delta: bool,
    /// The proxy's address as the stream's TCP connection shows it, when known.
    pub peer: Option<SocketAddr>,
    /// The identity the proxy proved on its connection (a SPIFFE id); `None`: unauthenticated.
    pub identity: Option<String>,
    /// What its node says of itself beyond the proxy model (cluster id, Istio version).
    pub node: debug::NodeInfo,
    /// When the stream opened.
    pub connected_at: SystemTime,
    /// Per subscribed type, what was sent, ACKed and NACKed.
    pub types: BTreeMap<ResourceType, TypeStatus>,
    /// Per type, when the last response was sent.
    pub sent_at: BTreeMap<ResourceType, SystemTime>,
    /// Per subscribed type, the names subscribed (none for a wildcard subscription).
    pub watches: BTreeMap<ResourceType, Vec<versions::Name>>,
}

/// Why [`Registry::find`] found no proxy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    /// istiod's words, which istioctl looks for to try the next replica.
    #[error(
        "Proxy not connected to this Pilot instance. It may be connected to another instance. ({0:?})"
    )]
    NotConnected(String),
    #[error("{query:?} names more than one connected proxy: {}", ids.join(", "))]
    Ambiguous { query: String, ids: Vec<String> },
}

/// The proxies connected to this server, shared by the xDS server (which writes) and admin.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    connections: Arc<Mutex<BTreeMap<(String, u64), ConnectedProxy>>>,
}

impl Registry {
    /// Every live stream, by proxy id then stream number.
    pub fn connected(&self) -> Vec<ConnectedProxy> {
        self.lock().values().cloned().collect()
    }

    /// The newest stream of a proxy.
    pub fn get(&self, proxy_id: &str) -> Option<ConnectedProxy> {
        self.lock()
            .values()
            .filter(|connected| connected.proxy.id == proxy_id)
            .max_by_key(|connected| connected.connection)
            .cloned()
    }

    /// The connected proxy a debug request names, as istiod resolves `proxyID`: the full node
    /// id, or the `POD.NAMESPACE` part of it, or the Pod name alone (istioctl's short forms).
    /// A short form that fits proxies of more than one id is ambiguous, and finds none.
    pub fn find(&self, proxy_id: &str) -> Result<ConnectedProxy, FindError> {
        if let Some(connected) = self.get(proxy_id) {
            return Ok(connected);
        }
        let connections = self.lock();
        let fits = |connected: &&ConnectedProxy| {
            let proxy = &connected.proxy;
            let pod_part = proxy.id.split('~').nth(2).unwrap_or_default();
            pod_part == proxy_id
                || format!("{}.{}", proxy.pod_name, proxy.namespace) == proxy_id
                || (!proxy.pod_name.is_empty() && proxy.pod_name == proxy_id)
        };
        let mut found: Vec<&ConnectedProxy> = connections.values().filter(fits).collect();
        // The newest stream of each proxy, as `get`.
        found.sort_by(|a, b| (&a.proxy.id, a.connection).cmp(&(&b.proxy.id, b.connection)));
        let ids: std::collections::BTreeSet<&str> = found
            .iter()
            .map(|connected| connected.proxy.id.as_str())
            .collect();
        match (found.last(), ids.len()) {
            (Some(connected), 1) => Ok((*connected).clone()),
            (None, _) => Err(FindError::NotConnected(proxy_id.to_string())),
            _ => Err(FindError::Ambiguous {
                query: proxy_id.to_string(),
                ids: ids.into_iter().map(str::to_string).collect(),
            }),
        }
    }

    pub(crate) fn update(&self, connected: ConnectedProxy) {
        let key = (connected.proxy.id.clone(), connected.connection);
        self.lock().insert(key, connected);
    }

    fn remove(&self, proxy_id: &str, connection: u64) {
        self.lock().remove(&(proxy_id.to_string(), connection));
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, u64), ConnectedProxy>> {
        // The map is replaced entry by entry, so it is consistent even if a holder panicked.
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// A registered stream of the proxy `id`.
    pub(crate) fn connected(id: &str, connection: u64) -> ConnectedProxy {
        ConnectedProxy {
            proxy: Proxy::parse(id, &Value::Null).expect("a node id"),
            connection,
            delta: false,
            peer: None,
            identity: None,
            node: debug::NodeInfo::default(),
            connected_at: SystemTime::UNIX_EPOCH,
            types: BTreeMap::new(),
            sent_at: BTreeMap::new(),
            watches: BTreeMap::new(),
        }
    }

    #[test]
    fn finds_proxies_by_istiods_short_forms() {
        let registry = Registry::default();
        let web = "sidecar~10.0.0.1~web-1.shop~shop.svc.cluster.local";
        registry.update(connected(web, 1));
        registry.update(connected(web, 3));
        registry.update(connected(
            "sidecar~10.0.0.2~web-1.other~other.svc.cluster.local",
            2,
        ));
        for query in [web, "web-1.shop"] {
            let found = registry.find(query).expect("found");
            assert_eq!((found.proxy.id.as_str(), found.connection), (web, 3));
        }
        // The Pod name alone fits two proxies: ambiguous, not a guess.
        assert!(matches!(
            registry.find("web-1"),
            Err(FindError::Ambiguous { ids, .. }) if ids.len() == 2
        ));
        let missing = registry.find("db-0.shop").expect_err("not connected");
        assert!(
            missing
                .to_string()
                .contains("Proxy not connected to this Pilot instance")
        );
        registry.remove(web, 1);
        registry.remove(web, 3);
        assert_eq!(
            registry.find("web-1").expect("now one").proxy.namespace,
            "other"
        );
    }
}
