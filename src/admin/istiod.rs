//! istiod's debug endpoints that tools read (Kiali, istioctl, dashboards), in istiod's JSON shapes:
//! `/debug/syncz`, `/debug/adsz`, `/debug/connections`, `/debug/configz`,
//! `/debug/config_dump`, `/debug/registryz`, `/debug/endpointz`, `/debug/clusterz`, and the
//! `/debug` index and `/debug/list` of every endpoint. Pure views of the registry, the model and
//! the inputs; which request gets which view is [`super::views`], the routes, their
//! authorization and bounds are in `admin`. `tests/debug_istiod.rs` holds these shapes to a
//! real istiod's.
//!
//! Where rudder does not keep what istiod shows, the field is left out rather than made up:
//! istiod's syncz nonces are rudder's (a type is ACKed when its last nonce is, so `*_acked` is
//! the nonce sent once the proxy ACKed it, else absent), adsz's `metadata` holds the node
//! metadata rudder keeps (not every field of istiod's `NodeMetadata`), configz has no spec for
//! objects of kinds rudder does not translate, and registryz has no Kubernetes Service labels.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::admin::v3::{
    BootstrapConfigDump, ConfigDump, EcdsConfigDump, ScopedRoutesConfigDump,
};
use envoy_types::pb::google::protobuf::Any;
use serde_json::{Map, Value, json};

use crate::envoy_json::{self, JsonError};
use crate::inputs::Inputs;
use crate::model::{Model, Protocol, Registry as ServiceRegistry, Resolution, Service};
use crate::proxy::ProxyKind;
use crate::proxy_status::SyncState;
use crate::translate::{ResourceType, Resources, redact_secret};
use crate::xds::debug::{any, istio_proxy_id};
use crate::xds::{ConnectedProxy, Registry, TypeStatus};

/// Every debug endpoint with istiod's help text where istiod has it: the `/debug` index and
/// `/debug/list` show these.
pub const ENDPOINTS: &[(&str, &str)] = &[
    (
        "/debug/adsz",
        "Status and debug interface for ADS (?proxyID= for one proxy)",
    ),
    (
        "/debug/clusterz",
        "List remote clusters where istiod reads endpoints",
    ),
    (
        "/debug/config_dump",
        "ConfigDump in the form of the Envoy admin config dump API for passed in proxyID",
    ),
    ("/debug/configz", "Debug support for config"),
    ("/debug/connections", "Info about the connected XDS clients"),
    ("/debug/edsz", "Status and debug interface for EDS"),
    ("/debug/endpointShardz", "Info about the endpoint shards"),
    ("/debug/endpointz", "Obsolete, use endpointShardz"),
    (
        "/debug/envoy_config_dump",
        "rudder's: what a proxy gets (?proxyID=, any node id) as Envoy's own /config_dump shows it, endpoints included",
    ),
    (
        "/debug/inputz",
        "rudder's: every input as loaded, with its errors, and the objects of kinds rudder does not translate",
    ),
    ("/debug/list", "List all supported debug commands in json"),
    (
        "/debug/peerz",
        "rudder's: each ADS stream, its peer, the identity it proved and the Secrets it may get",
    ),
    ("/debug/registryz", "Debug support for registry"),
    (
        "/debug/streamz",
        "rudder's: sync state per ADS stream: versions and nonces sent, ACKed and NACKed, with the NACK's error",
    ),
    (
        "/debug/syncz",
        "Synchronization status of all Envoys connected to this Pilot instance",
    ),
];

/// `/debug/list`: the endpoints' names without `/debug/`, sorted, `list` itself excluded.
pub fn list_view() -> Value {
    let names: Vec<&str> = ENDPOINTS
        .iter()
        .filter_map(|(path, _)| path.strip_prefix("/debug/"))
        .filter(|name| *name != "list")
        .collect();
    json!(names)
}

/// `/debug`: istiod's index page, a table of endpoints linking to each.
pub fn index_html() -> String {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html>\n<head><title>rudder debug endpoints</title></head>\n<body>\n\
         <table>\n<tr><th>Name</th><th>Help</th></tr>\n",
    );
    for (path, help) in ENDPOINTS {
        page.push_str(&format!(
            "<tr><td><a href=\"{path}\">{path}</a></td><td>{}</td></tr>\n",
            html_escape(help)
        ));
    }
    page.push_str("</table>\n</body>\n</html>\n");
    page
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The newest stream of each connected proxy, by proxy id: istiod keeps one connection per
/// proxy in its views.
fn newest_streams(registry: &Registry) -> Vec<ConnectedProxy> {
    let mut connected = registry.connected();
    connected.sort_by(|a, b| (&a.proxy.id, b.connection).cmp(&(&b.proxy.id, a.connection)));
    connected.dedup_by(|later, first| later.proxy.id == first.proxy.id);
    connected
}

fn proxy_type(kind: ProxyKind) -> &'static str {
    match kind {
        ProxyKind::Sidecar => "sidecar",
        ProxyKind::Router => "router",
    }
}

/// `/debug/syncz` in istiod's shape (its `SyncStatus`): per proxy, the nonce sent and ACKed for
/// clusters, listeners, routes and endpoints, and per subscribed type under `resources`.
/// `namespace`: only proxies of it (istiod's `?namespace=`).
pub fn syncz_view(registry: &Registry, namespace: Option<&str>) -> Value {
    let statuses: Vec<Value> = newest_streams(registry)
        .iter()
        .filter(|connected| namespace.is_none_or(|ns| connected.proxy.namespace == ns))
        .map(|connected| {
            let mut status = Map::new();
            let mut put = |key: &str, value: &str| {
                if !value.is_empty() {
                    status.insert(key.to_string(), json!(value));
                }
            };
            put("cluster_id", &connected.node.cluster_id);
            put("proxy", istio_proxy_id(&connected.proxy.id));
            put("proxy_type", proxy_type(connected.proxy.kind));
            put("istio_version", &connected.node.istio_version);
            for (prefix, ty) in [
                ("cluster", ResourceType::Cluster),
                ("listener", ResourceType::Listener),
                ("route", ResourceType::Route),
                ("endpoint", ResourceType::Endpoint),
            ] {
                let (sent, acked) = connected.types.get(&ty).map(nonces).unwrap_or_default();
                put(&format!("{prefix}_sent"), &sent);
                put(&format!("{prefix}_acked"), &acked);
            }
            let resources: Map<String, Value> = connected
                .types
                .iter()
                .map(|(ty, type_status)| {
                    let (sent, acked) = nonces(type_status);
                    let mut resource = Map::new();
                    for (key, value) in [("sent", sent), ("acked", acked)] {
                        if !value.is_empty() {
                            resource.insert(key.to_string(), json!(value));
                        }
                    }
                    if let Some(sent_at) = connected.sent_at.get(ty) {
                        resource.insert("sentTime".to_string(), json!(nanos_rfc3339(*sent_at)));
                    }
                    if let Some(nack) = &type_status.nack {
                        resource.insert("lastError".to_string(), json!(nack.message));
                    }
                    (ty.type_url().to_string(), Value::Object(resource))
                })
                .collect();
            if !resources.is_empty() {
                status.insert("resources".to_string(), Value::Object(resources));
            }
            Value::Object(status)
        })
        .collect();
    json!(statuses)
}

/// A time as Go's JSON writes it: RFC 3339 in UTC, nanoseconds without trailing zeros.
fn nanos_rfc3339(time: std::time::SystemTime) -> String {
    jiff::Timestamp::try_from(time)
        .map(|timestamp| timestamp.to_string())
        .unwrap_or_default()
}

/// (nonce sent, nonce ACKed) of one type: the ACKed nonce is the sent one once the proxy ACKed
/// what it carried.
fn nonces(status: &TypeStatus) -> (String, String) {
    let sent = status.nonce.clone().unwrap_or_default();
    let nacked = status.nack.as_ref().map(|nack| nack.version.as_str());
    let state = SyncState::of(status.sent.as_deref(), status.acked.as_deref(), nacked);
    let acked = if state == SyncState::Synced {
        sent.clone()
    } else {
        String::new()
    };
    (sent, acked)
}

/// `/debug/adsz` in istiod's shape (`AdsClients`): the connected proxies with their connection
/// id (`PROXY_ID-N`), when and from where they connected, their labels, namespace and locality.
/// `proxy`: only that connected proxy.
pub fn adsz_view(connected: &[ConnectedProxy]) -> Value {
    let clients: Vec<Value> = connected
        .iter()
        .map(|connected| {
            let proxy = &connected.proxy;
            let mut client = client_json(connected);
            client["metadata"] = json!({ "NAMESPACE": proxy.namespace });
            for (key, value) in [
                ("CLUSTER_ID", &connected.node.cluster_id),
                ("ISTIO_VERSION", &connected.node.istio_version),
            ] {
                if !value.is_empty() {
                    client["metadata"][key] = json!(value);
                }
            }
            if !proxy.labels.is_empty() {
                client["labels"] = json!(proxy.labels);
                client["metadata"]["LABELS"] = json!(proxy.labels);
            }
            // Protobuf JSON of `core.Locality`: empty fields are left out, as istiod's `{}`.
            let locality = &proxy.locality;
            let mut place = Map::new();
            for (key, value) in [
                ("region", &locality.region),
                ("zone", &locality.zone),
                ("sub_zone", &locality.subzone),
            ] {
                if !value.is_empty() {
                    place.insert(key.to_string(), json!(value));
                }
            }
            client["locality"] = Value::Object(place);
            // By type URL, the names subscribed: `[]` for a wildcard subscription.
            let watches: Map<String, Value> = connected
                .watches
                .iter()
                .map(|(ty, names)| {
                    let names: Vec<&str> = names.iter().map(|name| &**name).collect();
                    (ty.type_url().to_string(), json!(names))
                })
                .collect();
            if !watches.is_empty() {
                client["watches"] = Value::Object(watches);
            }
            client
        })
        .collect();
    clients_json(clients)
}

/// Every connected proxy's newest stream, for `/debug/adsz` without `?proxyID=`.
pub fn adsz_all(registry: &Registry) -> Value {
    adsz_view(&newest_streams(registry))
}

/// `/debug/connections` in istiod's shape (`AdsClients` without per-proxy detail): every stream
/// with its connection id, when and from where it connected.
pub fn connections_view(connected: &[ConnectedProxy]) -> Value {
    clients_json(connected.iter().map(client_json).collect())
}

/// `{"totalClients": N, "clients": [...]}`, `clients` left out when empty (istiod's `omitempty`).
fn clients_json(clients: Vec<Value>) -> Value {
    let mut view = json!({ "totalClients": clients.len() });
    if !clients.is_empty() {
        view["clients"] = json!(clients);
    }
    view
}

/// What istiod's `AdsClient` says of every connection.
fn client_json(connected: &ConnectedProxy) -> Value {
    let id = istio_proxy_id(&connected.proxy.id);
    json!({
        "connectionId": format!("{id}-{}", connected.connection),
        "connectedAt": super::rfc3339(connected.connected_at),
        "address": connected.peer.map(|peer| peer.to_string()).unwrap_or_default(),
    })
}

/// `/debug/configz` in istiod's shape (its config store's objects, as `crd.ConvertConfig` writes
/// them): every Istio object rudder holds, of the kinds it translates and of those it does not,
/// as a Kubernetes object: `kind`, `apiVersion`, `metadata`, `spec` (protobuf JSON: fields at
/// their default left out). rudder keeps no spec of an untranslated kind's object: `{}`. An
/// object whose content rudder refused is not listed, as istiod's store does not hold objects its
/// validation refused; `/debug/inputz` shows those, with why.
pub fn configz_view(inputs: &Inputs) -> Value {
    let objects: Vec<Value> = inputs
        .entries
        .iter()
        .filter(|(key, _)| key.kind.is_istio())
        .filter_map(|(key, entry)| {
            let (metadata, spec) = super::inputz::istio_parts(entry.object.as_ref().ok()?)?;
            let api = key.kind.api();
            let version = api.versions.first().copied().unwrap_or_default();
            let mut meta = json!({
                "name": metadata.name,
                // istiod's store has no object without a namespace: it defaults to `default`.
                "namespace": metadata.namespace.as_deref().unwrap_or("default"),
            });
            if let Some(created) = &metadata.creation_timestamp {
                meta["creationTimestamp"] = json!(created);
            }
            if !metadata.labels.is_empty() {
                meta["labels"] = json!(metadata.labels);
            }
            if !metadata.annotations.is_empty() {
                meta["annotations"] = json!(metadata.annotations);
            }
            Some(json!({
                "kind": key.kind.name(),
                "apiVersion": format!("{}/{version}", api.group),
                "metadata": meta,
                "spec": without_defaults(spec),
            }))
        })
        .collect();
    json!(objects)
}

/// A spec as protobuf's JSON writes it: fields at their default (null, false, 0, "", empty lists
/// and maps) left out.
fn without_defaults(value: Value) -> Value {
    fn is_default(value: &Value) -> bool {
        match value {
            Value::Null => true,
            Value::Bool(flag) => !flag,
            Value::Number(number) => number.as_f64() == Some(0.0),
            Value::String(text) => text.is_empty(),
            Value::Array(items) => items.is_empty(),
            Value::Object(fields) => fields.is_empty(),
        }
    }
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (key, without_defaults(value)))
                .filter(|(_, value)| !is_default(value))
                .collect(),
        ),
        // List items stay, defaults or not: their positions matter.
        Value::Array(items) => Value::Array(items.into_iter().map(without_defaults).collect()),
        other => other,
    }
}

/// What `/debug/config_dump` dumps: istiod's whole dump, or only resources of some types
/// (`?types=cds,eds`, and `/debug/edsz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpShape {
    /// istiod's `ConfigDump`: bootstrap, clusters, (endpoints with `include_eds`), listeners,
    /// scoped routes, routes, secrets and extension configs, each an admin `*ConfigDump`.
    Whole { include_eds: bool },
    /// The resources of these types themselves, in `configs`.
    Types(Vec<ResourceType>),
}

/// `/debug/config_dump?proxyID=` in istiod's shape: an admin `ConfigDump` in protobuf's JSON with
/// lowerCamelCase names, as istiod writes it; private keys redacted. rudder sends no bootstrap,
/// scoped routes or extension configs: those dumps are empty, as istiod's are without them.
pub fn config_dump_view(
    resources: &Resources,
    version_of: impl Fn(ResourceType) -> String,
    shape: &DumpShape,
) -> Result<Value, JsonError> {
    let configs = match shape {
        DumpShape::Whole { include_eds } => {
            let dumps = crate::xds::debug::config_dump(resources, version_of);
            let [clusters, listeners, routes, secrets, endpoints] =
                <[Any; 5]>::try_from(dumps).unwrap_or_default();
            let mut configs = vec![any(&BootstrapConfigDump::default()), clusters];
            if *include_eds {
                configs.push(endpoints);
            }
            configs.extend([
                listeners,
                any(&ScopedRoutesConfigDump::default()),
                routes,
                secrets,
                any(&EcdsConfigDump::default()),
            ]);
            configs
        }
        DumpShape::Types(types) => types
            .iter()
            .flat_map(|ty| redacted(resources, *ty).into_values())
            .collect(),
    };
    envoy_json::to_camel_case_json(&ConfigDump { configs })
}

/// The resources of one type, private keys redacted.
fn redacted(resources: &Resources, ty: ResourceType) -> BTreeMap<String, Any> {
    if ty != ResourceType::Secret {
        return resources.encode(ty);
    }
    let mut secrets = resources.secrets.clone();
    secrets.values_mut().for_each(redact_secret);
    Resources {
        secrets,
        ..Resources::default()
    }
    .encode(ty)
}

/// `/debug/clusterz`: the clusters rudder reads endpoints from: the one it runs in.
pub fn clusterz_view() -> Value {
    json!([{
        "id": crate::xds::debug::DEFAULT_CLUSTER_ID,
        "secretName": "",
        "syncStatus": "synced",
    }])
}

/// A port's protocol as istiod's registry writes it (a port without one is istiod's
/// `UnsupportedProtocol`).
fn protocol_name(protocol: Protocol) -> &'static str {
    protocol.name().unwrap_or("UnsupportedProtocol")
}

/// istiod's `model.Resolution`, which its JSON writes as a number.
fn resolution_number(resolution: Resolution) -> u8 {
    match resolution {
        Resolution::ClientSideLb => 0,
        Resolution::Dns => 1,
        Resolution::Passthrough => 2,
        Resolution::DnsRoundRobin => 3,
    }
}

fn registry_name(registry: ServiceRegistry) -> &'static str {
    match registry {
        ServiceRegistry::Kubernetes => "Kubernetes",
        ServiceRegistry::ServiceEntry => "External",
    }
}

/// `/debug/registryz` in istiod's shape (its `model.Service`): every service in hostname order.
/// Fields rudder does not keep (the Kubernetes Service's labels, its creation time and
/// resource version) are written as istiod writes them when unset.
pub fn registryz_view(model: &Model) -> Value {
    let services: Vec<Value> = model
        .services
        .values()
        .map(|service| service_json(service))
        .collect();
    json!(services)
}

fn service_json(service: &Service) -> Value {
    let ports: Vec<Value> = service
        .ports
        .iter()
        .map(|port| {
            json!({
                "name": port.name,
                "port": port.port,
                "protocol": protocol_name(port.protocol),
            })
        })
        .collect();
    let mut addresses: Vec<String> = service
        .cluster_ips
        .iter()
        .map(ToString::to_string)
        .collect();
    addresses.extend(service.address_blocks.iter().cloned());
    let default_address = addresses
        .first()
        .cloned()
        .unwrap_or_else(|| "0.0.0.0".to_string());
    // istiod keeps per-cluster VIPs for Kubernetes Services only; a ServiceEntry's addresses
    // show in `defaultAddress`.
    let vips = if addresses.is_empty() || service.registry == ServiceRegistry::ServiceEntry {
        Value::Null
    } else {
        json!({ crate::xds::debug::DEFAULT_CLUSTER_ID: addresses })
    };
    let passthrough = if service.passthrough_target_ports.is_empty() {
        Value::Null
    } else {
        json!(service.passthrough_target_ports)
    };
    // The Kubernetes Service's name; rudder does not keep a ServiceEntry's.
    let object_name = match service.registry {
        ServiceRegistry::Kubernetes => service.name.as_str(),
        ServiceRegistry::ServiceEntry => "",
    };
    json!({
        "Attributes": {
            "ServiceRegistry": registry_name(service.registry),
            "Name": service.name,
            "Namespace": service.namespace,
            "Labels": null,
            "ExportTo": null,
            "Visibility": 0,
            "LabelSelectors": service.selector,
            "Aliases": null,
            "ClusterExternalAddresses": { "Addresses": null },
            "ClusterExternalPorts": null,
            "PassthroughTargetPorts": passthrough,
            "Type": "",
            "ExternalName": "",
            "NodeLocal": false,
            "TrafficDistribution": 0,
            "ObjectName": object_name,
            "DNSConnectStrategy": 0,
            "PublishNotReadyAddresses": false,
        },
        "ports": ports,
        "creationTime": "0001-01-01T00:00:00Z",
        "hostname": service.hostname,
        "clusterVIPs": { "Addresses": vips },
        "defaultAddress": default_address,
        "Resolution": resolution_number(service.resolution),
        "MeshExternal": service.mesh_external,
        "ResourceVersion": "",
    })
}

/// `/debug/endpointz` (istiod's `endpointShardz`): per hostname and namespace, the endpoints
/// of each registry's shard (`REGISTRY/CLUSTER`), each as istiod's `IstioEndpoint`.
pub fn endpointz_view(model: &Model) -> Value {
    let mut by_host: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for service in model.services.values() {
        let endpoints: Vec<Value> = service
            .endpoints
            .iter()
            .map(|endpoint| {
                let port_name = service
                    .port(endpoint.service_port)
                    .map(|port| port.name.as_str())
                    .unwrap_or_default();
                // istiod adds its cluster to the labels an endpoint has.
                let labels = if endpoint.labels.is_empty() {
                    Value::Null
                } else {
                    let mut labels = json!(endpoint.labels);
                    labels["topology.istio.io/cluster"] =
                        json!(crate::xds::debug::DEFAULT_CLUSTER_ID);
                    labels
                };
                // istiod's `HealthStatus`: unset for a ServiceEntry's endpoints, `Healthy` for
                // the ready endpoints of a Kubernetes Service (the only ones rudder keeps).
                let health = match service.registry {
                    ServiceRegistry::Kubernetes => 1,
                    ServiceRegistry::ServiceEntry => 0,
                };
                json!({
                    "Labels": labels,
                    "Addresses": [endpoint.address.to_string()],
                    "ServicePortName": port_name,
                    "LegacyClusterPortKey": endpoint.service_port,
                    "Locality": {
                        "Label": endpoint.locality.label(),
                        "ClusterID": crate::xds::debug::DEFAULT_CLUSTER_ID,
                    },
                    "EndpointPort": endpoint.port,
                    "LbWeight": endpoint.weight,
                    "TLSMode": "disabled",
                    "Namespace": service.namespace,
                    "ServiceAccount": "",
                    "Network": "",
                    "WorkloadName": "",
                    "HostName": "",
                    "SubDomain": "",
                    "HealthStatus": health,
                    "SendUnhealthyEndpoints": false,
                    "NodeName": "",
                })
            })
            .collect();
        let shard = format!(
            "{}/{}",
            registry_name(service.registry),
            crate::xds::debug::DEFAULT_CLUSTER_ID
        );
        by_host.entry(&service.hostname).or_default().insert(
            service.namespace.clone(),
            json!({ "Shards": { shard: endpoints }, "ServiceAccounts": {} }),
        );
    }
    json!(by_host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::Proxy;
    use crate::xds::debug::NodeInfo;
    use std::time::SystemTime;

    fn stream(id: &str, types: BTreeMap<ResourceType, TypeStatus>) -> ConnectedProxy {
        ConnectedProxy {
            proxy: Proxy::parse(id, &Value::Null).unwrap(),
            connection: 7,
            delta: false,
            peer: Some("10.0.0.1:4000".parse().unwrap()),
            identity: None,
            node: NodeInfo {
                cluster_id: "east".into(),
                istio_version: String::new(),
            },
            connected_at: SystemTime::UNIX_EPOCH,
            sent_at: [(ResourceType::Cluster, SystemTime::UNIX_EPOCH)].into(),
            watches: [
                (ResourceType::Cluster, Vec::new()),
                (ResourceType::Route, vec!["80".into()]),
            ]
            .into(),
            types,
        }
    }

    #[test]
    fn syncz_and_adsz_have_istiods_shapes() {
        let registry = Registry::default();
        let synced = TypeStatus {
            sent: Some("v1".into()),
            nonce: Some("3".into()),
            acked: Some("v1".into()),
            nack: None,
        };
        let stale = TypeStatus {
            sent: Some("v2".into()),
            nonce: Some("4".into()),
            acked: Some("v1".into()),
            nack: None,
        };
        registry.update(stream(
            "sidecar~10.0.0.1~web-1.shop~shop.svc.cluster.local",
            [
                (ResourceType::Cluster, synced),
                (ResourceType::Endpoint, stale),
            ]
            .into(),
        ));
        registry.update(stream(
            "router~10.0.0.9~gw-1.edge~edge.svc.cluster.local",
            BTreeMap::new(),
        ));
        assert_eq!(
            syncz_view(&registry, Some("shop")),
            json!([{
                "cluster_id": "east",
                "proxy": "web-1.shop",
                "proxy_type": "sidecar",
                "cluster_sent": "3",
                "cluster_acked": "3",
                "endpoint_sent": "4",
                "resources": {
                    "type.googleapis.com/envoy.config.cluster.v3.Cluster": {"sent": "3", "acked": "3", "sentTime": "1970-01-01T00:00:00Z"},
                    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": {"sent": "4"},
                },
            }])
        );
        assert_eq!(syncz_view(&registry, None).as_array().unwrap().len(), 2);
        let adsz = adsz_all(&registry);
        assert_eq!(adsz["totalClients"], 2);
        assert_eq!(adsz["clients"][0]["connectionId"], "gw-1.edge-7");
        assert_eq!(adsz["clients"][1]["address"], "10.0.0.1:4000");
        assert_eq!(
            adsz["clients"][1]["metadata"],
            json!({"NAMESPACE": "shop", "CLUSTER_ID": "east"})
        );
        assert_eq!(adsz["clients"][1]["locality"], json!({}));
        assert_eq!(
            adsz["clients"][1]["watches"],
            json!({
                "type.googleapis.com/envoy.config.cluster.v3.Cluster": [],
                "type.googleapis.com/envoy.config.route.v3.RouteConfiguration": ["80"],
            })
        );
        let connections = connections_view(&registry.connected());
        assert_eq!(connections["totalClients"], 2);
        let keys: Vec<&String> = connections["clients"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        // istiod's `AdsClient` as its /debug/connections writes it (Istio 1.31,
        // pilot/pkg/xds/debug.go `connectionsHandler`).
        assert_eq!(keys, ["address", "connectedAt", "connectionId"]);
    }

    #[test]
    fn list_names_every_endpoint_but_itself() {
        let list = list_view();
        let names: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(names.contains(&"syncz") && names.contains(&"config_dump"));
        assert!(!names.contains(&"list"));
        assert!(index_html().contains("<a href=\"/debug/registryz\">"));
    }
}
