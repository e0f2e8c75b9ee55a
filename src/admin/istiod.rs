//! istiod's debug endpoints that tools read (Kiali, istioctl, dashboards), in istiod's JSON shapes:
//! `/debug/syncz`, `/debug/adsz`, `/debug/registryz`, `/debug/endpointz`, `/debug/clusterz`, and
//! the `/debug` index and `/debug/list` of every endpoint. Pure views of the registry and the
//! model; the routes, their authorization and bounds are in `admin`.
//!
//! Where rudder does not keep what istiod shows, the field is left out rather than made up:
//! istiod's syncz nonces are rudder's (a type is ACKed when its last nonce is, so `*_acked` is
//! the nonce sent once the proxy ACKed it, else absent), adsz has no `watches` (rudder's registry
//! keeps no subscribed names), and registryz has no Kubernetes Service labels.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::model::{Model, Protocol, Registry as ServiceRegistry, Resolution, Service};
use crate::proxy::ProxyKind;
use crate::proxy_status::SyncState;
use crate::translate::ResourceType;
use crate::xds::debug::istio_proxy_id;
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
    (
        "/debug/configz",
        "Debug support for config (rudder's shape: every input as loaded, with its errors)",
    ),
    (
        "/debug/connections",
        "Info about the connected XDS clients (rudder's shape: each ADS stream, its peer and identity)",
    ),
    (
        "/debug/endpointz",
        "Endpoints of every service, by service and port",
    ),
    ("/debug/list", "List all supported debug commands in json"),
    ("/debug/registryz", "Debug support for registry"),
    (
        "/debug/streamz",
        "rudder's sync state per ADS stream: versions and nonces sent, ACKed and NACKed, with the NACK's error",
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
            let id = istio_proxy_id(&proxy.id);
            let mut client = json!({
                "connectionId": format!("{id}-{}", connected.connection),
                "connectedAt": super::rfc3339(connected.connected_at),
                "address": connected.peer.map(|peer| peer.to_string()).unwrap_or_default(),
                "metadata": { "NAMESPACE": proxy.namespace },
            });
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
            client
        })
        .collect();
    let mut adsz = json!({ "totalClients": clients.len() });
    if !clients.is_empty() {
        adsz["clients"] = json!(clients);
    }
    adsz
}

/// Every connected proxy's newest stream, for `/debug/adsz` without `?proxyID=`.
pub fn adsz_all(registry: &Registry) -> Value {
    adsz_view(&newest_streams(registry))
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
    let vips = if addresses.is_empty() {
        Value::Null
    } else {
        json!({ crate::xds::debug::DEFAULT_CLUSTER_ID: addresses })
    };
    json!({
        "Attributes": {
            "ServiceRegistry": registry_name(service.registry),
            "Name": service.name,
            "Namespace": service.namespace,
            "Labels": null,
            "ExportTo": null,
            "LabelSelectors": service.selector,
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
                json!({
                    "Labels": endpoint.labels,
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
