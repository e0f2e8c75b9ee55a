//! Who is asking: a proxy's identity from its Istio node id (`TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local`)
//! and node metadata (`NAMESPACE`, `LABELS`, `INSTANCE_IPS`, `INTERCEPTION_MODE`). Labels and
//! namespace missing from metadata are taken from the Pod with the proxy's IP in the model.
//! The proxy's locality is its Pod's (from the Pod's locality label or its Node's topology
//! labels), else what its labels say (Istio's topology labels, or `topology.istio.io/locality` /
//! `istio-locality`), as istiod decides it.
//! Pure parsing; no I/O and no Envoy types (the xDS edge hands metadata over as JSON).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;

use crate::model::{LOCALITY_LABELS, Locality, Model, REGION_LABELS, SUBZONE_LABEL, ZONE_LABELS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProxyKind {
    Sidecar,
    /// A gateway (`router` in the node id).
    Router,
}

/// How traffic reaches the proxy; decides whether listeners bind for real.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub enum InterceptionMode {
    #[default]
    Redirect,
    Tproxy,
    /// No iptables: outbound listeners bind on loopback and the application calls them directly.
    None,
}

/// Which credentials (SDS Secrets) a proxy may be sent, as decided by the xDS server from the
/// identity it proved on its connection; parsing a node id grants nothing. istiod's rule: a
/// proxy without a verified identity gets no Secret; a verified identity gets the CA bundles
/// (`-cacert`, public) of its namespace, and its certificates and keys only if it is allowed to
/// read Secrets there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub enum SecretAccess {
    /// No verified identity: no Secret at all.
    #[default]
    None,
    /// A verified identity that may not read its namespace's Secrets: CA certificates only.
    CaOnly,
    /// A verified identity allowed to read its namespace's Secrets: certificates and keys too.
    All,
}

impl SecretAccess {
    /// How logs and debug endpoints name it.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretAccess::None => "none",
            SecretAccess::CaOnly => "ca-only",
            SecretAccess::All => "all",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("node id {0:?} is not TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local")]
    MalformedId(String),
    #[error("node id {id:?}: unknown proxy type {kind:?} (expected sidecar or router)")]
    UnknownType { id: String, kind: String },
    #[error("node id {id:?}: {ip:?} is not an IP address")]
    BadIp { id: String, ip: String },
    #[error("node id {0:?} names no namespace (POD.NAMESPACE) and metadata has no NAMESPACE")]
    NoNamespace(String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Proxy {
    /// The full node id, as Envoy sent it.
    pub id: String,
    pub kind: ProxyKind,
    /// The first IP: from the node id, or `INSTANCE_IPS`.
    pub ips: Vec<IpAddr>,
    /// The pod name part of `POD.NAMESPACE`.
    pub pod_name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub interception: InterceptionMode,
    /// The cluster DNS suffix (`cluster.local`), from the node id's last part.
    pub dns_domain: String,
    /// Where the proxy runs; empty when unknown. Locality load balancing is relative to it.
    pub locality: Locality,
    /// The Secrets it may be sent; [`SecretAccess::None`] until the xDS server verified who is
    /// connected.
    pub secret_access: SecretAccess,
}

impl Proxy {
    /// Parses a node id and its metadata (Envoy's `node.metadata` as JSON; `Value::Null` if none).
    pub fn parse(id: &str, metadata: &Value) -> Result<Proxy, ProxyError> {
        let parts: Vec<&str> = id.split('~').collect();
        let [kind, ip, pod, domain] = parts[..] else {
            return Err(ProxyError::MalformedId(id.to_string()));
        };
        let kind = match kind {
            "sidecar" => ProxyKind::Sidecar,
            "router" => ProxyKind::Router,
            other => {
                return Err(ProxyError::UnknownType {
                    id: id.to_string(),
                    kind: other.to_string(),
                });
            }
        };
        let text = |key: &str| {
            metadata
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let parse_ip = |ip: &str| {
            ip.trim().parse::<IpAddr>().map_err(|_| ProxyError::BadIp {
                id: id.to_string(),
                ip: ip.to_string(),
            })
        };
        let mut ips = vec![parse_ip(ip)?];
        if let Some(instance_ips) = text("INSTANCE_IPS") {
            for ip in instance_ips.split(',').filter(|ip| !ip.trim().is_empty()) {
                let ip = parse_ip(ip)?;
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        let (pod_name, pod_namespace) = pod.split_once('.').unwrap_or((pod, ""));
        // `NAMESPACE.svc.cluster.local`: the namespace, then the DNS domain after `svc.`.
        let (domain_namespace, dns_domain) = match domain.split_once(".svc.") {
            Some((namespace, suffix)) => (namespace, suffix),
            None => (domain, "cluster.local"),
        };
        let namespace = text("NAMESPACE")
            .or(Some(pod_namespace).filter(|ns| !ns.is_empty()))
            .or(Some(domain_namespace).filter(|ns| !ns.is_empty()))
            .ok_or_else(|| ProxyError::NoNamespace(id.to_string()))?;
        let labels = metadata
            .get("LABELS")
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let interception = match text("INTERCEPTION_MODE") {
            Some("NONE") => InterceptionMode::None,
            Some("TPROXY") => InterceptionMode::Tproxy,
            _ => InterceptionMode::Redirect,
        };
        let locality = locality_from_labels(&labels);
        Ok(Proxy {
            id: id.to_string(),
            kind,
            ips,
            pod_name: pod_name.to_string(),
            namespace: namespace.to_string(),
            labels,
            interception,
            dns_domain: dns_domain.to_string(),
            locality,
            secret_access: SecretAccess::None,
        })
    }

    /// Fills labels from the Pod with this proxy's IP when metadata carried none, and takes the
    /// Pod's locality when it has one (the registry knows better than the proxy, as in istiod).
    /// The labels then carry Istio's topology labels for the locality, as istiod adds them.
    pub fn with_workload_labels(mut self, model: &Model) -> Proxy {
        let workload = self.ips.iter().find_map(|ip| model.workloads.get(ip));
        if let Some(workload) = workload {
            if self.labels.is_empty() {
                self.labels = workload.augmented_labels();
            }
            if !workload.locality.is_empty() {
                self.locality = workload.locality.clone();
            }
        }
        self.locality.add_topology_labels(&mut self.labels);
        self
    }
}

/// A locality from labels: Istio's topology labels, else its locality override labels.
fn locality_from_labels(labels: &BTreeMap<String, String>) -> Locality {
    let get = |name: &str| labels.get(name).cloned();
    let (region, zone, subzone) = (
        get(REGION_LABELS[0]),
        get(ZONE_LABELS[0]),
        get(SUBZONE_LABEL),
    );
    if region.is_none() && zone.is_none() && subzone.is_none() {
        // The proxy's own override label is read as written, split on `/` only, as istiod does;
        // dots are read as slashes only in the registry's labels (`Locality::from_labels`),
        // since a Kubernetes label value cannot hold a slash.
        return LOCALITY_LABELS
            .iter()
            .find_map(|name| labels.get(*name))
            .map(|value| Locality::parse(value))
            .unwrap_or_default();
    }
    Locality {
        region: region.unwrap_or_default(),
        zone: zone.unwrap_or_default(),
        subzone: subzone.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_istio_node_id() {
        let proxy = Proxy::parse(
            "sidecar~10.1.2.3~productpage-v1-abc.bookinfo~bookinfo.svc.cluster.local",
            &json!({"LABELS": {"app": "productpage"}, "INTERCEPTION_MODE": "NONE"}),
        )
        .unwrap();
        assert_eq!(proxy.kind, ProxyKind::Sidecar);
        assert_eq!(proxy.ips, vec!["10.1.2.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(proxy.pod_name, "productpage-v1-abc");
        assert_eq!(proxy.namespace, "bookinfo");
        assert_eq!(proxy.dns_domain, "cluster.local");
        assert_eq!(proxy.interception, InterceptionMode::None);
        assert_eq!(proxy.labels["app"], "productpage");
    }

    #[test]
    fn metadata_namespace_wins() {
        let proxy = Proxy::parse(
            "router~10.0.0.1~gw.a~a.svc.cluster.local",
            &json!({"NAMESPACE": "b"}),
        )
        .unwrap();
        assert_eq!(proxy.namespace, "b");
        assert_eq!(proxy.kind, ProxyKind::Router);
    }

    #[test]
    fn locality_comes_from_the_pod_then_from_labels() {
        use crate::model::Workload;
        let id = "sidecar~10.0.0.7~web.default~default.svc.cluster.local";
        // From the proxy's labels: Istio's topology labels, else the locality override label.
        let labelled = Proxy::parse(
            id,
            &json!({"LABELS": {"app": "web", "topology.kubernetes.io/region": "us", "topology.kubernetes.io/zone": "us-1"}}),
        )
        .unwrap();
        assert_eq!(labelled.locality, Locality::parse("us/us-1"));
        let overridden = Proxy::parse(
            id,
            &json!({"LABELS": {"istio-locality": "eu/eu-2/rack-3/x"}}),
        )
        .unwrap();
        assert_eq!(overridden.locality, Locality::parse("eu/eu-2/rack-3"));
        // As istiod: the proxy's own label is split on slashes only, so dots stay in the region.
        let dotted =
            Proxy::parse(id, &json!({"LABELS": {"istio-locality": "eu.eu-2.rack-3"}})).unwrap();
        assert_eq!(dotted.locality.region, "eu.eu-2.rack-3");

        // The Pod with the proxy's IP knows better, and its topology labels join the labels.
        let mut model = Model::default();
        std::sync::Arc::make_mut(&mut model.workloads).insert(
            "10.0.0.7".parse().unwrap(),
            Workload {
                name: "web".into(),
                namespace: "default".into(),
                labels: [("app".to_string(), "web".to_string())].into(),
                locality: Locality::parse("ap/ap-3/a"),
                node_name: "node-9".into(),
                named_ports: BTreeMap::new(),
            },
        );
        let placed = labelled.with_workload_labels(&model);
        assert_eq!(placed.locality, Locality::parse("ap/ap-3/a"));
        assert_eq!(placed.labels["topology.kubernetes.io/zone"], "ap-3");
        assert_eq!(placed.labels["topology.istio.io/subzone"], "a");
        let unlabelled = Proxy::parse(id, &Value::Null)
            .unwrap()
            .with_workload_labels(&model);
        assert_eq!(unlabelled.labels["kubernetes.io/hostname"], "node-9");
        assert_eq!(unlabelled.labels["app"], "web");
    }

    #[test]
    fn rejects_malformed_ids() {
        assert!(Proxy::parse("sidecar~1.2.3.4", &Value::Null).is_err());
        assert!(Proxy::parse("waypoint~1.2.3.4~a.b~b.svc.cluster.local", &Value::Null).is_err());
        assert!(Proxy::parse("sidecar~not-an-ip~a.b~b.svc.cluster.local", &Value::Null).is_err());
    }
}
