use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Port, WorkloadLabels};

/// `ServiceEntry.spec`: adds a service to the mesh's registry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceEntry {
    /// The hosts associated with the ServiceEntry (wildcard prefixes allowed).
    pub hosts: Vec<String>,
    /// The virtual IP addresses (or CIDR blocks) associated with the service.
    pub addresses: Vec<String>,
    /// The ports associated with the external service.
    pub ports: Vec<Port>,
    /// Whether the service is external to the mesh or part of it.
    pub location: Option<Location>,
    /// Service resolution mode for the hosts.
    pub resolution: Option<Resolution>,
    /// One or more endpoints associated with the service.
    pub endpoints: Vec<WorkloadEntry>,
    /// Selects the WorkloadEntries and pods that are this service's endpoints (only for
    /// MESH_INTERNAL services); cannot be used with `endpoints`.
    pub workload_selector: Option<WorkloadLabels>,
    /// A list of namespaces to which this service is exported.
    pub export_to: Vec<String>,
    /// Subject alternate names accepted in the certificates of the service's workloads.
    pub subject_alt_names: Vec<String>,
}

/// `ServiceEntry.location`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    MeshExternal,
    MeshInternal,
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

/// `ServiceEntry.resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// Connections go to the address the caller asked for (original destination).
    None,
    /// The endpoints' addresses are used as they are.
    Static,
    /// The endpoints (or hosts) are resolved by DNS, all addresses used.
    Dns,
    /// The endpoints (or hosts) are resolved by DNS, the first address used.
    DnsRoundRobin,
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

/// `WorkloadEntry.spec` (also a ServiceEntry endpoint): a workload that is not a pod.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkloadEntry {
    /// Address associated with the network endpoint without the port (an IP, a DNS name or
    /// `unix://` socket).
    pub address: String,
    /// Set of ports associated with the endpoint, by service port name.
    pub ports: BTreeMap<String, u32>,
    /// One or more labels associated with the endpoint.
    pub labels: BTreeMap<String, String>,
    /// Network enables Istio to group endpoints resident in the same L3 domain/network.
    pub network: Option<String>,
    /// The locality associated with the endpoint (`region/zone/subzone`).
    pub locality: Option<String>,
    /// The load balancing weight associated with the endpoint.
    pub weight: Option<u32>,
    /// The service account associated with the workload if a sidecar is present.
    pub service_account: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_reference_examples() {
        let entry: ServiceEntry = serde_saphyr::from_str(
            r#"
hosts:
- mymongodb.somedomain
addresses:
- 192.192.192.192/24
ports:
- number: 27018
  name: mongodb
  protocol: MONGO
  targetPort: 27017
location: MESH_INTERNAL
resolution: STATIC
exportTo: ["."]
subjectAltNames: [spiffe://cluster.local/ns/default/sa/mongo]
endpoints:
- address: 2.2.2.2
- address: 3.3.3.3
  ports:
    mongodb: 27019
  labels:
    version: v2
  network: network-2
  locality: us-west/zone1
  weight: 10
  serviceAccount: mongo
"#,
        )
        .unwrap();
        assert_eq!(entry.location, Some(Location::MeshInternal));
        assert_eq!(entry.resolution, Some(Resolution::Static));
        assert_eq!(entry.ports[0].target_port, Some(27017));
        let endpoint = &entry.endpoints[1];
        assert_eq!(endpoint.ports["mongodb"], 27019);
        assert_eq!(endpoint.weight, Some(10));
        assert_eq!(endpoint.service_account.as_deref(), Some("mongo"));

        let dns: ServiceEntry = serde_saphyr::from_str(
            r#"
hosts: ["*.foo.com"]
ports:
- number: 80
  name: http
  protocol: HTTP
location: MESH_EXTERNAL
resolution: DNS_ROUND_ROBIN
"#,
        )
        .unwrap();
        assert_eq!(dns.resolution, Some(Resolution::DnsRoundRobin));

        let selected: ServiceEntry = serde_saphyr::from_str(
            r#"
hosts: [details.bookinfo.com]
location: MESH_INTERNAL
ports:
- number: 80
  name: http
  protocol: HTTP
  targetPort: 8080
resolution: STATIC
workloadSelector:
  labels:
    app: details-legacy
"#,
        )
        .unwrap();
        assert_eq!(
            selected.workload_selector.unwrap().labels["app"],
            "details-legacy"
        );
    }

    #[test]
    fn parses_a_workload_entry() {
        let entry: WorkloadEntry = serde_saphyr::from_str(
            r#"
serviceAccount: details-legacy
address: 2.2.2.2
labels:
  app: details-legacy
  instance-id: vm1
ports:
  http: 8080
"#,
        )
        .unwrap();
        assert_eq!(entry.address, "2.2.2.2");
        assert_eq!(entry.ports["http"], 8080);
        assert_eq!(entry.labels["instance-id"], "vm1");
    }

    #[test]
    fn unknown_enum_values_and_fields_are_tolerated() {
        let entry: ServiceEntry = serde_json::from_value(serde_json::json!({
            "hosts": ["a.example.com"],
            "location": "MESH_ELSEWHERE",
            "resolution": "MAGIC",
            "endpoints": [{"address": "1.1.1.1", "newField": 3}],
        }))
        .unwrap();
        assert_eq!(entry.location, Some(Location::Unknown));
        assert_eq!(entry.resolution, Some(Resolution::Unknown));
    }
}
