//! Istio's debug xDS types on the xDS port, as istiod serves them to istioctl (its `StatusGen`):
//! - `istio.io/debug/syncz`: one `envoy.service.status.v3.ClientConfig` per connected proxy: its
//!   node id, metadata `NAMESPACE`, `CLUSTER_ID` and `ISTIO_VERSION`, and per subscribed type its
//!   `ConfigStatus` (`SYNCED`, `STALE`, `NOT_SENT`, `ERROR`) and the last rejection. The response
//!   carries istiod's `control_plane` identifier (JSON naming this instance), which istioctl shows
//!   in its ISTIOD column and uses to tell replicas apart.
//! - `istio.io/debug/config_dump` with one resource name, a proxy id or its short form
//!   (`POD.NAMESPACE`, `POD`): the admin `*ConfigDump` messages of what that proxy gets, private
//!   keys redacted, each resource at the version the proxy was sent.
//!
//! Who may ask, as istiod with its default `ENABLE_DEBUG_ENDPOINT_AUTH`: only a client whose
//! identity was verified on a TLS port (client certificate or service account token); a
//! plaintext client gets `UNAUTHENTICATED`, so the plaintext port leaks no proxy list. An identity
//! of the system namespace (meshConfig `rootNamespace`, `istio-system` by default) sees every
//! proxy; any other sees only proxies of its own namespace (`syncz` lists no others,
//! `config_dump` finds no others). The generic `istio.io/debug` type (istiod answers it from its
//! HTTP debug handlers) is answered from the admin port's views (`server::debug_stream`); other
//! `istio.io/debug/*` types get an empty response.
//!
//! Pure: responses are built from the registry and a translation handed in; the stream that asks
//! lives in `server`.

use std::sync::LazyLock;

use envoy_types::pb::envoy::admin::v3::{
    ClustersConfigDump, EndpointsConfigDump, ListenersConfigDump, RoutesConfigDump,
    SecretsConfigDump, UpdateFailureState, clusters_config_dump, endpoints_config_dump,
    listeners_config_dump, routes_config_dump, secrets_config_dump,
};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::status::v3::{ClientConfig, ConfigStatus, client_config};
use envoy_types::pb::google::protobuf::{Any, Struct, Value as ProtoValue, value::Kind};
use prost::{Message, Name};
use serde_json::json;

use super::{ConnectedProxy, Registry, TypeStatus};
use crate::proxy_status::SyncState;
use crate::translate::{ResourceType, Resources, redact_secret};

/// The type of Istio's debug requests; the kind of request follows after a slash.
pub const DEBUG_TYPE: &str = "istio.io/debug";
pub const SYNCZ_TYPE: &str = "istio.io/debug/syncz";
pub const CONFIG_DUMP_TYPE: &str = "istio.io/debug/config_dump";

/// istiod's cluster id when it was given none (`--clusterID`): the cluster rudder reads.
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";

/// Whether a request's type is one of Istio's debug types.
pub fn is_debug_type(type_url: &str) -> bool {
    type_url == DEBUG_TYPE
        || type_url
            .strip_prefix(DEBUG_TYPE)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// What a verified caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The system namespace: every proxy.
    All,
    /// Proxies of this namespace only.
    Namespace(String),
}

impl Scope {
    pub fn of(identity_namespace: &str, system_namespace: &str) -> Scope {
        if identity_namespace == system_namespace {
            Scope::All
        } else {
            Scope::Namespace(identity_namespace.to_string())
        }
    }

    pub fn sees(&self, namespace: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Namespace(own) => own == namespace,
        }
    }
}

/// What a proxy's node says of itself that syncz shows and the proxy model does not keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// Metadata `CLUSTER_ID` (istio-agent sets it); empty without, as istiod shows it.
    pub cluster_id: String,
    /// Metadata `ISTIO_VERSION` (istio-agent sets it; a bare Envoy does not).
    pub istio_version: String,
}

impl NodeInfo {
    pub fn of(node: Option<&Node>) -> NodeInfo {
        let text = |key: &str| {
            node.and_then(|node| node.metadata.as_ref())
                .and_then(|metadata| metadata.fields.get(key))
                .and_then(|value| match &value.kind {
                    Some(Kind::StringValue(text)) if !text.is_empty() => Some(text.clone()),
                    _ => None,
                })
        };
        NodeInfo {
            cluster_id: text("CLUSTER_ID").unwrap_or_default(),
            istio_version: text("ISTIO_VERSION").unwrap_or_default(),
        }
    }
}

/// istiod's `control_plane.identifier` for this instance: `{"Component", "ID", "Info"}`, the ID
/// being the Pod name (`POD_NAME`, else the host name), as istiod's.
pub fn control_plane_identifier() -> &'static str {
    static IDENTIFIER: LazyLock<String> = LazyLock::new(|| {
        let id = std::env::var("POD_NAME")
            .ok()
            .filter(|name| !name.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|name| name.trim().to_string())
            })
            .unwrap_or_default();
        json!({
            "Component": "istiod",
            "ID": id,
            "Info": {
                "version": concat!("rudder-", env!("CARGO_PKG_VERSION")),
                "revision": "",
                "golang_version": "",
                "status": "",
                "tag": concat!("rudder-", env!("CARGO_PKG_VERSION")),
            },
        })
        .to_string()
    });
    &IDENTIFIER
}

/// syncz: a `ClientConfig` for each proxy the caller may see, in proxy id order.
pub fn syncz(registry: &Registry, scope: &Scope) -> Vec<Any> {
    let mut connected = registry.connected();
    // One proxy may hold two streams while Envoy reconnects: the newest speaks for it.
    connected.sort_by(|a, b| (&a.proxy.id, b.connection).cmp(&(&b.proxy.id, a.connection)));
    connected.dedup_by(|later, first| later.proxy.id == first.proxy.id);
    connected
        .iter()
        .filter(|connected| scope.sees(&connected.proxy.namespace))
        .map(|connected| any(&client_config(connected)))
        .collect()
}

/// One proxy's sync state as istiod's syncz reports it.
pub fn client_config(connected: &ConnectedProxy) -> ClientConfig {
    let string = |text: &str| ProtoValue {
        kind: Some(Kind::StringValue(text.to_string())),
    };
    let mut metadata = Struct::default();
    let info = &connected.node;
    for (key, value) in [
        ("CLUSTER_ID", info.cluster_id.as_str()),
        ("NAMESPACE", connected.proxy.namespace.as_str()),
        ("ISTIO_VERSION", info.istio_version.as_str()),
    ] {
        if !value.is_empty() {
            metadata.fields.insert(key.to_string(), string(value));
        }
    }
    let mut configs: Vec<client_config::GenericXdsConfig> = connected
        .types
        .iter()
        .map(|(ty, status)| {
            let mut config = generic_config(*ty, status);
            config.last_updated = connected.sent_at.get(ty).map(|sent| timestamp(*sent));
            config
        })
        .collect();
    configs.sort_by(|a, b| a.type_url.cmp(&b.type_url));
    ClientConfig {
        node: Some(Node {
            id: istio_proxy_id(&connected.proxy.id).to_string(),
            metadata: Some(metadata),
            ..Node::default()
        }),
        generic_xds_configs: configs,
        ..ClientConfig::default()
    }
}

fn generic_config(ty: ResourceType, status: &TypeStatus) -> client_config::GenericXdsConfig {
    let nacked = status.nack.as_ref().map(|nack| nack.version.as_str());
    let state = SyncState::of(status.sent.as_deref(), status.acked.as_deref(), nacked);
    let config_status = match state {
        SyncState::Synced => ConfigStatus::Synced,
        SyncState::Stale => ConfigStatus::Stale,
        SyncState::NotSent => ConfigStatus::NotSent,
        SyncState::Error => ConfigStatus::Error,
    };
    let error_state = status
        .nack
        .as_ref()
        .filter(|_| state == SyncState::Error)
        .map(|nack| UpdateFailureState {
            details: nack.message.clone(),
            version_info: nack.version.clone(),
            ..UpdateFailureState::default()
        });
    client_config::GenericXdsConfig {
        type_url: ty.type_url().to_string(),
        version_info: status.sent.clone().unwrap_or_default(),
        config_status: config_status as i32,
        error_state,
        ..client_config::GenericXdsConfig::default()
    }
}

/// config_dump: what a proxy gets as Envoy's admin dumps, clusters, listeners, routes, secrets
/// (private keys redacted) and endpoints, each resource at `version_of` its type.
pub fn config_dump(resources: &Resources, version_of: impl Fn(ResourceType) -> String) -> Vec<Any> {
    let encoded = |ty: ResourceType| resources.encode(ty).into_values();
    let version = |ty| version_of(ty);
    let clusters = ClustersConfigDump {
        version_info: version(ResourceType::Cluster),
        dynamic_active_clusters: encoded(ResourceType::Cluster)
            // istiod versions the whole dump only (istioctl ignores per-cluster versions).
            .map(|cluster| clusters_config_dump::DynamicCluster {
                cluster: Some(cluster),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let listeners = ListenersConfigDump {
        version_info: version(ResourceType::Listener),
        dynamic_listeners: resources
            .encode(ResourceType::Listener)
            .into_iter()
            .map(|(name, listener)| listeners_config_dump::DynamicListener {
                name,
                active_state: Some(listeners_config_dump::DynamicListenerState {
                    version_info: version(ResourceType::Listener),
                    listener: Some(listener),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let routes = RoutesConfigDump {
        dynamic_route_configs: encoded(ResourceType::Route)
            .map(|route| routes_config_dump::DynamicRouteConfig {
                version_info: version(ResourceType::Route),
                route_config: Some(route),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut redacted = resources.secrets.clone();
    redacted.values_mut().for_each(redact_secret);
    let secrets = SecretsConfigDump {
        dynamic_active_secrets: redacted
            .iter()
            .map(|(name, secret)| secrets_config_dump::DynamicSecret {
                name: name.clone(),
                version_info: version(ResourceType::Secret),
                secret: Some(any(secret)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let endpoints = EndpointsConfigDump {
        dynamic_endpoint_configs: encoded(ResourceType::Endpoint)
            .map(|cla| endpoints_config_dump::DynamicEndpointConfig {
                version_info: version(ResourceType::Endpoint),
                endpoint_config: Some(cla),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    vec![
        any(&clusters),
        any(&listeners),
        any(&routes),
        any(&secrets),
        any(&endpoints),
    ]
}

/// How istiod names a proxy in its debug views: the `POD.NAMESPACE` part of an Istio node id
/// (its `Proxy.ID`); any other id as it is.
pub fn istio_proxy_id(node_id: &str) -> &str {
    crate::proxy_status::proxy_name(node_id)
}

fn timestamp(time: std::time::SystemTime) -> envoy_types::pb::google::protobuf::Timestamp {
    let since_epoch = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    envoy_types::pb::google::protobuf::Timestamp {
        seconds: i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since_epoch.subsec_nanos()).unwrap_or(0),
    }
}

pub(crate) fn any<M: Message + Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_types_are_istios() {
        assert!(is_debug_type(SYNCZ_TYPE));
        assert!(is_debug_type(CONFIG_DUMP_TYPE));
        assert!(is_debug_type("istio.io/debug"));
        assert!(!is_debug_type("istio.io/debugger"));
        assert!(!is_debug_type(ResourceType::Cluster.type_url()));
    }

    #[test]
    fn the_system_namespace_sees_every_proxy_others_their_own() {
        let all = Scope::of("istio-system", "istio-system");
        assert!(all.sees("shop") && all.sees("istio-system"));
        let shop = Scope::of("shop", "istio-system");
        assert!(shop.sees("shop"));
        assert!(!shop.sees("istio-system"));
    }

    #[test]
    fn the_control_plane_names_itself_as_istiod_does() {
        let identifier: serde_json::Value =
            serde_json::from_str(control_plane_identifier()).unwrap();
        assert_eq!(identifier["Component"], "istiod");
        assert!(identifier["ID"].is_string());
        assert!(identifier["Info"]["version"].is_string());
    }

    #[test]
    fn sync_states_map_to_config_statuses() {
        let sent = |acked: Option<&str>, nack: Option<&str>| TypeStatus {
            sent: Some("v2".into()),
            nonce: Some("n".into()),
            acked: acked.map(str::to_string),
            nack: nack.map(|version| super::super::Nack {
                version: version.into(),
                message: "bad".into(),
            }),
        };
        let status = |status: &TypeStatus| generic_config(ResourceType::Cluster, status);
        assert_eq!(
            status(&TypeStatus::default()).config_status,
            ConfigStatus::NotSent as i32
        );
        assert_eq!(
            status(&sent(Some("v2"), None)).config_status,
            ConfigStatus::Synced as i32
        );
        assert_eq!(
            status(&sent(Some("v1"), None)).config_status,
            ConfigStatus::Stale as i32
        );
        let rejected = status(&sent(Some("v1"), Some("v2")));
        assert_eq!(rejected.config_status, ConfigStatus::Error as i32);
        assert_eq!(rejected.error_state.unwrap().details, "bad");
        // An old rejection, since ACKed past, is no error.
        assert!(status(&sent(Some("v2"), Some("v1"))).error_state.is_none());
    }
}
