//! An in-process ADS client that subscribes the way Envoy does, for the xDS scale tests and
//! benchmarks (shared by `benches/xds_memory.rs` and `tests/xds_scale.rs` through `#[path]`):
//! CDS and LDS first, then EDS for every EDS cluster and RDS for every route configuration the
//! listeners name, ACKing every response. State of the world or delta. It keeps only names and
//! counters, not the resources, so that many clients stay small.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest,
};
use envoy_types::pb::google::protobuf::{Any, Struct, Value, value::Kind};
use prost::{Message, Name};
use rudder::translate::ResourceType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};

const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// A sidecar's node: `sidecar~IP~NAME.bench~bench.svc.cluster.local`, with `LABELS`.
pub fn node(ip: &str, name: &str, labels: &[(&str, &str)]) -> Node {
    let text = |value: &str| Value {
        kind: Some(Kind::StringValue(value.to_string())),
    };
    let labels = Struct {
        fields: labels
            .iter()
            .map(|(key, value)| (key.to_string(), text(value)))
            .collect(),
    };
    let metadata = Struct {
        fields: [
            ("NAMESPACE".to_string(), text("bench")),
            (
                "LABELS".to_string(),
                Value {
                    kind: Some(Kind::StructValue(labels)),
                },
            ),
        ]
        .into(),
    };
    Node {
        id: format!("sidecar~{ip}~{name}.bench~bench.svc.cluster.local"),
        metadata: Some(metadata),
        ..Default::default()
    }
}

/// Opens a connection of its own, as every Envoy has.
pub async fn connect(address: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{address}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("connect to the xDS server")
}

/// What a client has received, for tests that count responses and benchmarks that time them.
#[derive(Debug, Default)]
pub struct Received {
    responses: [AtomicUsize; ResourceType::ALL.len()],
    /// How many resources the last response of each type carried.
    last: [AtomicUsize; ResourceType::ALL.len()],
    /// Encoded bytes of every response, of every type.
    bytes: AtomicU64,
    /// When the last response arrived, as nanoseconds since [`epoch`] (0: none yet).
    last_at: AtomicU64,
}

/// The instant response times are counted from; the same for every client of the process.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Received {
    /// How many responses of `ty` arrived.
    pub fn of(&self, ty: ResourceType) -> usize {
        self.responses[index(ty)].load(Ordering::Relaxed)
    }

    /// How many resources the last response of `ty` carried.
    pub fn last(&self, ty: ResourceType) -> usize {
        self.last[index(ty)].load(Ordering::Relaxed)
    }

    /// Responses by type, in ADS order, of the types every proxy gets (only gateways with
    /// credentials get Secrets).
    pub fn counts(&self) -> [usize; 4] {
        [
            ResourceType::Cluster,
            ResourceType::Endpoint,
            ResourceType::Listener,
            ResourceType::Route,
        ]
        .map(|ty| self.of(ty))
    }

    /// Encoded bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// When the last response arrived, if any did.
    pub fn last_at(&self) -> Option<Instant> {
        match self.last_at.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(epoch() + Duration::from_nanos(nanos)),
        }
    }

    fn count(&self, ty: ResourceType, resources: usize, bytes: usize) {
        self.last[index(ty)].store(resources, Ordering::Relaxed);
        self.responses[index(ty)].fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let nanos = u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_at.store(nanos.max(1), Ordering::Relaxed);
    }
}

fn index(ty: ResourceType) -> usize {
    ResourceType::ALL
        .iter()
        .position(|t| *t == ty)
        .expect("a served type")
}

/// Runs a client until its stream ends: `Ok` if the server closed it, `Err` on a failure.
pub async fn run(
    channel: Channel,
    node: Node,
    delta: bool,
    received: Arc<Received>,
) -> Result<(), tonic::Status> {
    if delta {
        run_delta(channel, node, received).await
    } else {
        run_sotw(channel, node, received).await
    }
}

/// The names a CDS or LDS resource makes the client subscribe to: a cluster's EDS name, or the
/// route configurations a listener's connection managers fetch.
fn dependencies(ty: ResourceType, any: &Any) -> Vec<String> {
    match ty {
        ResourceType::Cluster => {
            let cluster = Cluster::decode(any.value.as_slice()).expect("a cluster");
            let eds = ClusterDiscoveryType::Type(DiscoveryType::Eds as i32);
            if cluster.cluster_discovery_type != Some(eds) {
                return Vec::new();
            }
            let service_name = cluster
                .eds_cluster_config
                .map(|config| config.service_name)
                .filter(|name| !name.is_empty());
            vec![service_name.unwrap_or(cluster.name)]
        }
        ResourceType::Listener => {
            let listener = Listener::decode(any.value.as_slice()).expect("a listener");
            listener
                .filter_chains
                .iter()
                .chain(&listener.default_filter_chain)
                .flat_map(|chain| &chain.filters)
                .filter_map(|filter| match &filter.config_type {
                    Some(filter::ConfigType::TypedConfig(config))
                        if config.type_url == HttpConnectionManager::type_url() =>
                    {
                        let hcm = HttpConnectionManager::decode(config.value.as_slice())
                            .expect("a connection manager");
                        match hcm.route_specifier {
                            Some(RouteSpecifier::Rds(rds)) => Some(rds.route_config_name),
                            _ => None,
                        }
                    }
                    _ => None,
                })
                .collect()
        }
        ResourceType::Endpoint | ResourceType::Route | ResourceType::Secret => Vec::new(),
    }
}

/// The type whose names a type's resources decide.
fn dependent(ty: ResourceType) -> Option<ResourceType> {
    match ty {
        ResourceType::Cluster => Some(ResourceType::Endpoint),
        ResourceType::Listener => Some(ResourceType::Route),
        ResourceType::Endpoint | ResourceType::Route | ResourceType::Secret => None,
    }
}

async fn run_sotw(
    channel: Channel,
    node: Node,
    received: Arc<Received>,
) -> Result<(), tonic::Status> {
    let (requests, outgoing) = mpsc::unbounded_channel();
    let send = |request: DiscoveryRequest| {
        // The stream is gone if this fails; the response loop notices.
        let _ = requests.send(request);
    };
    let subscribe = |ty: ResourceType| DiscoveryRequest {
        type_url: ty.type_url().to_string(),
        ..Default::default()
    };
    send(DiscoveryRequest {
        node: Some(node),
        ..subscribe(ResourceType::Cluster)
    });
    send(subscribe(ResourceType::Listener));
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_SIZE);
    let mut responses = client
        .stream_aggregated_resources(UnboundedReceiverStream::new(outgoing))
        .await?
        .into_inner();
    // Per type: the names subscribed (EDS and RDS), and the last response's version and nonce.
    let mut names: BTreeMap<ResourceType, Vec<String>> = BTreeMap::new();
    let mut last: BTreeMap<ResourceType, (String, String)> = BTreeMap::new();
    while let Some(response) = responses.message().await? {
        let Some(ty) = ResourceType::from_type_url(&response.type_url) else {
            continue;
        };
        received.count(ty, response.resources.len(), response.encoded_len());
        let wanted: Option<Vec<String>> = dependent(ty).map(|_| {
            let all: BTreeSet<String> = response
                .resources
                .iter()
                .flat_map(|any| dependencies(ty, any))
                .collect();
            all.into_iter().collect()
        });
        last.insert(ty, (response.version_info.clone(), response.nonce.clone()));
        send(DiscoveryRequest {
            type_url: response.type_url,
            version_info: response.version_info,
            response_nonce: response.nonce,
            resource_names: names.get(&ty).cloned().unwrap_or_default(),
            ..Default::default()
        });
        if let (Some(dependent), Some(wanted)) = (dependent(ty), wanted)
            && names.get(&dependent) != Some(&wanted)
        {
            let (version, nonce) = last.get(&dependent).cloned().unwrap_or_default();
            names.insert(dependent, wanted.clone());
            send(DiscoveryRequest {
                type_url: dependent.type_url().to_string(),
                version_info: version,
                response_nonce: nonce,
                resource_names: wanted,
                ..Default::default()
            });
        }
    }
    Ok(())
}

async fn run_delta(
    channel: Channel,
    node: Node,
    received: Arc<Received>,
) -> Result<(), tonic::Status> {
    let (requests, outgoing) = mpsc::unbounded_channel();
    let send = |request: DeltaDiscoveryRequest| {
        let _ = requests.send(request);
    };
    let subscribe = |ty: ResourceType| DeltaDiscoveryRequest {
        type_url: ty.type_url().to_string(),
        ..Default::default()
    };
    send(DeltaDiscoveryRequest {
        node: Some(node),
        ..subscribe(ResourceType::Cluster)
    });
    send(subscribe(ResourceType::Listener));
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_SIZE);
    let mut responses = client
        .delta_aggregated_resources(UnboundedReceiverStream::new(outgoing))
        .await?
        .into_inner();
    // Per CDS/LDS resource, the names it makes the client subscribe to.
    let mut held: BTreeMap<ResourceType, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut subscribed: BTreeMap<ResourceType, BTreeSet<String>> = BTreeMap::new();
    while let Some(response) = responses.message().await? {
        let Some(ty) = ResourceType::from_type_url(&response.type_url) else {
            continue;
        };
        received.count(ty, response.resources.len(), response.encoded_len());
        if let Some(dependent) = dependent(ty) {
            let held = held.entry(ty).or_default();
            for resource in &response.resources {
                let names = resource
                    .resource
                    .as_ref()
                    .map(|any| dependencies(ty, any))
                    .unwrap_or_default();
                held.insert(resource.name.clone(), names);
            }
            for name in &response.removed_resources {
                held.remove(name);
            }
            let wanted: BTreeSet<String> = held.values().flatten().cloned().collect();
            let current = subscribed.entry(dependent).or_default();
            let added: Vec<String> = wanted.difference(current).cloned().collect();
            let dropped: Vec<String> = current.difference(&wanted).cloned().collect();
            send(DeltaDiscoveryRequest {
                type_url: response.type_url.clone(),
                response_nonce: response.nonce.clone(),
                ..Default::default()
            });
            if !added.is_empty() || !dropped.is_empty() {
                *current = wanted;
                send(DeltaDiscoveryRequest {
                    type_url: dependent.type_url().to_string(),
                    resource_names_subscribe: added,
                    resource_names_unsubscribe: dropped,
                    ..Default::default()
                });
            }
        } else {
            send(DeltaDiscoveryRequest {
                type_url: response.type_url,
                response_nonce: response.nonce,
                ..Default::default()
            });
        }
    }
    Ok(())
}
