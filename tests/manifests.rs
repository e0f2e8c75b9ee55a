//! The deployment manifest `manifests/rudder.yaml`, on a real Kubernetes API server
//! (`scripts/dev-cluster`) with Istio's own CRDs installed as the README says
//! (`scripts/istio-crds`): the manifest applies (server-side, as the README says); Istio's
//! documentation examples of all six kinds are stored as written and read by rudder's types; an
//! Istio status stays on the status subresource; rudder's ServiceAccount gets what it needs and no
//! more; applied over a Service `istiod` left by an Istio install, the Service selects rudder's
//! Pods only; and `kubectl delete -f manifests/rudder.yaml` leaves the namespace and what else is
//! in it (a `cacerts` Secret) alone.
//!
//! The cluster test starts its own cluster in a run dir of its own and stops it when done (also
//! when it fails). It needs `kubectl` (or `KUBECTL=/path/to/kubectl`) and what
//! `scripts/dev-cluster` needs (Go, for a first build of kube-apiserver that takes minutes).

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::cluster::DevCluster;

const RUDDER: &str = "manifests/rudder.yaml";
/// The Service `istiod` for rudder, for clusters where istiod does not run.
const ISTIOD_SERVICE: &str = "manifests/istiod-service.yaml";
const SERVICE_ACCOUNT: &str = "system:serviceaccount:istio-system:rudder";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `kubectl apply` as the README applies the manifests: server-side, so that a Service's
/// selector (an atomic map) replaces one left by an Istio install instead of merging with it
/// (manifests/istiod-service.yaml adds `--force-conflicts` to take the fields over).
fn apply_as_readme<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["apply", "--server-side"];
    args.extend_from_slice(extra);
    args.extend(["-f", "-"]);
    args
}

fn rudder_manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(RUDDER)).unwrap();
    serde_saphyr::from_multiple(&text).unwrap_or_else(|error| panic!("{RUDDER}: {error}"))
}

#[test]
fn the_manifest_holds_no_namespace_and_no_crd() {
    let documents = rudder_manifest();
    assert!(
        documents
            .iter()
            .all(|doc| doc["apiVersion"].is_string() && doc["kind"].is_string()),
        "{RUDDER}: every document is a Kubernetes object"
    );
    for doc in &documents {
        let kind = doc["kind"].as_str().unwrap_or("");
        // Deleting the manifest deletes what it holds: a Namespace would take everything in it.
        assert!(
            !["Namespace", "CustomResourceDefinition"].contains(&kind),
            "{RUDDER} holds a {kind}: `kubectl delete -f` would delete it and all it holds"
        );
        if !["ClusterRole", "ClusterRoleBinding"].contains(&kind) {
            assert_eq!(
                doc["metadata"]["namespace"], "istio-system",
                "{kind} {}",
                doc["metadata"]["name"]
            );
        }
    }
}

/// Whether rudder's ServiceAccount may do this (`kubectl auth can-i` arguments).
/// istioctl finds the control plane's Pods by `app=istiod` (and a revision by `istio.io/rev`);
/// the Deployment, its Pods and the Service carry istiod's labels, while selectors use a label of
/// rudder's own, so that a leftover istiod's Pods are never selected.
#[test]
fn control_plane_carries_istiods_labels() {
    let objects: Vec<Value> =
        serde_saphyr::from_multiple(&std::fs::read_to_string(root().join(RUDDER)).unwrap())
            .unwrap();
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name} in {RUDDER}"))
    };
    let deployment = find("Deployment", "istiod-rudder");
    let service = find("Service", "istiod-rudder");
    let istiod_service: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(root().join(ISTIOD_SERVICE)).unwrap())
            .unwrap();
    assert_eq!(istiod_service["metadata"]["name"], "istiod");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    // A revision of the control plane, as Istio labels one: istioctl (`--revision rudder`) and
    // the dashboards find it; istiod's own Service (`app: istiod, istio: pilot`) does not
    // select it.
    for labels in [
        &deployment["metadata"]["labels"],
        pod_labels,
        &service["metadata"]["labels"],
        &istiod_service["metadata"]["labels"],
    ] {
        assert_eq!(labels["app"], "istiod", "{labels}");
        assert_eq!(labels["istio.io/rev"], "rudder", "{labels}");
        assert!(
            labels.get("istio").is_none(),
            "{labels}: istiod's Service selects it"
        );
    }
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["name"], "discovery",
        "the container Istio's dashboard reads"
    );
    let selects_pods = |selector: &Value| {
        let selector = selector.as_object().expect("a selector");
        assert!(
            !selector.contains_key("app"),
            "{selector:?} selects istiod's Pods too"
        );
        selector
            .iter()
            .all(|(key, value)| &pod_labels[key] == value)
    };
    assert!(selects_pods(&deployment["spec"]["selector"]["matchLabels"]));
    assert!(selects_pods(&service["spec"]["selector"]));
    assert!(selects_pods(&istiod_service["spec"]["selector"]));
    assert!(selects_pods(
        &find("PodDisruptionBudget", "rudder")["spec"]["selector"]["matchLabels"]
    ));
}

fn rudder_can(cluster: &DevCluster, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i", "--as", SERVICE_ACCOUNT];
    all.extend_from_slice(args);
    let output = cluster.kubectl(&all, "");
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_string();
    match answer.as_str() {
        "yes" => true,
        "no" => false,
        _ => panic!(
            "kubectl {}: {answer} {}",
            all.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Istio's documentation examples, one of each kind, across the three served versions.
const EXAMPLES: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews-route
spec:
  hosts:
  - reviews.prod.svc.cluster.local
  gateways:
  - mesh
  - bookinfo-gateway
  http:
  - name: reviews-v2-routes
    match:
    - uri:
        prefix: /wpcatalog
      headers:
        end-user:
          exact: jason
        x-canary: {}
      queryParams:
        version:
          regex: "v[0-9]+"
      ignoreUriCase: true
    - uri:
        prefix: /consumercatalog
    rewrite:
      uri: /newcatalog
    route:
    - destination:
        host: reviews.prod.svc.cluster.local
        subset: v2
        port:
          number: 9080
      weight: 75
      headers:
        response:
          remove: [foo]
    - destination:
        host: reviews.prod.svc.cluster.local
        subset: v1
      weight: 25
    timeout: 10s
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: gateway-error,connect-failure,refused-stream
      retryIgnorePreviousHosts: true
      backoff: 25ms
    fault:
      delay:
        percentage:
          value: 0.1
        fixedDelay: 5s
    mirror:
      host: reviews.prod.svc.cluster.local
      subset: v3
    mirrorPercentage:
      value: 50.5
    corsPolicy:
      allowOrigins:
      - exact: https://example.com
      allowMethods: [POST, GET]
      allowCredentials: false
      maxAge: 24h
      unmatchedPreflights: IGNORE
    headers:
      request:
        set:
          test: "true"
  - name: reviews-redirect
    match:
    - uri:
        exact: /v1/getProductRatings
    redirect:
      uri: /v1/bookRatings
      authority: newratings.default.svc.cluster.local
      derivePort: FROM_REQUEST_PORT
  - name: reviews-v1-route
    directResponse:
      status: 503
      body:
        string: unknown error
  tls:
  - match:
    - port: 443
      sniHosts:
      - login.bookinfo.com
    route:
    - destination:
        host: login.prod.svc.cluster.local
  tcp:
  - match:
    - port: 27017
    route:
    - destination:
        host: mongo.backup.svc.cluster.local
        port:
          number: 5555
  exportTo: ["."]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: bookinfo-ratings
spec:
  host: ratings.prod.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      simple: LEAST_REQUEST
      localityLbSetting:
        enabled: true
        distribute:
        - from: us-west/zone1/*
          to:
            "us-west/zone1/*": 80
            "us-west/zone2/*": 20
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 30ms
        tcpKeepalive:
          time: 7200s
          interval: 75s
      http:
        http2MaxRequests: 1000
        maxRequestsPerConnection: 10
        h2UpgradePolicy: UPGRADE
    outlierDetection:
      consecutive5xxErrors: 7
      interval: 5m
      baseEjectionTime: 15m
    tls:
      mode: SIMPLE
      credentialName: client-credential
      sni: ratings.example.com
    portLevelSettings:
    - port:
        number: 80
      loadBalancer:
        consistentHash:
          httpCookie:
            name: user
            ttl: 0s
  subsets:
  - name: testversion
    labels:
      version: v3
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: my-gateway
spec:
  selector:
    app: my-gateway-controller
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - uk.bookinfo.com
    tls:
      httpsRedirect: true
  - port:
      number: 443
      name: https-443
      protocol: HTTPS
    hosts:
    - "bookinfo-namespace/*.bookinfo.com"
    tls:
      mode: SIMPLE
      credentialName: bookinfo-secret
      minProtocolVersion: TLSV1_2
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: external-svc-mongocluster
spec:
  hosts:
  - mymongodb.somedomain
  addresses:
  - 192.192.192.192/24
  ports:
  - number: 27018
    name: mongodb
    protocol: MONGO
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - address: 2.2.2.2
  - address: 3.3.3.3
    ports:
      mongodb: 27019
    labels:
      version: v2
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: details-svc
spec:
  serviceAccount: details-legacy
  address: 2.2.2.2
  labels:
    app: details-legacy
    instance-id: vm1
  ports:
    http: 8080
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: default
spec:
  egress:
  - hosts:
    - "./*"
    - "istio-system/*"
  - port:
      number: 3306
      protocol: MYSQL
      name: egressmysql
    bind: 127.0.0.1
    captureMode: NONE
    hosts:
    - "*/mysql.foo.com"
  outboundTrafficPolicy:
    mode: REGISTRY_ONLY
"#;

/// Numbers compared as floats: the API server writes `50.0` back as `50`.
fn floats(value: Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(items) => Value::Array(items.into_iter().map(floats).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, floats(v))).collect()),
        other => other,
    }
}

fn plural(kind: &str) -> &'static str {
    match kind {
        "VirtualService" => "virtualservices.networking.istio.io",
        "DestinationRule" => "destinationrules.networking.istio.io",
        "Gateway" => "gateways.networking.istio.io",
        "ServiceEntry" => "serviceentries.networking.istio.io",
        "WorkloadEntry" => "workloadentries.networking.istio.io",
        "Sidecar" => "sidecars.networking.istio.io",
        other => panic!("no plural for {other}"),
    }
}

#[test]
fn manifests_apply_to_a_real_api_server() {
    let cluster = DevCluster::up("manifests");
    let rudder = std::fs::read_to_string(root().join(RUDDER)).unwrap();

    // Istio's CRDs, as the README installs them on a cluster without Istio.
    cluster.install_istio_crds();

    // Everything else: a dry run in the namespace it lives in.
    let namespace = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}).to_string()
    };
    cluster.ok(&["apply", "-f", "-"], &namespace("istio-system"));
    let dry_run = cluster.ok(&apply_as_readme(&["--dry-run=server"]), &rudder);
    for object in [
        "serviceaccount/rudder",
        "clusterrole.rbac.authorization.k8s.io/rudder",
        "deployment.apps/istiod-rudder",
        "service/istiod-rudder",
    ] {
        assert!(dry_run.contains(object), "{object} in:\n{dry_run}");
    }

    // Istio's examples are stored as written: no field is unknown to the schema.
    cluster.ok(&["apply", "-f", "-"], &namespace("examples"));
    cluster.ok(&["apply", "-n", "examples", "-f", "-"], EXAMPLES);
    let examples: Vec<Value> = serde_saphyr::from_multiple(EXAMPLES).unwrap();
    assert_eq!(examples.len(), 6);
    for example in &examples {
        let kind = example["kind"].as_str().unwrap();
        let name = example["metadata"]["name"].as_str().unwrap();
        let stored: Value = serde_json::from_str(&cluster.ok(
            &[
                "get",
                "-n",
                "examples",
                &format!("{}/{name}", plural(kind)),
                "-o",
                "json",
            ],
            "",
        ))
        .unwrap();
        assert_eq!(
            floats(stored["spec"].clone()),
            floats(example["spec"].clone()),
            "{kind} {name}: the API server changed the spec (pruned or defaulted a field)"
        );
        // rudder reads what the API server stores.
        let spec = stored["spec"].clone();
        let parsed = match kind {
            "VirtualService" => {
                serde_json::from_value::<rudder::istio::VirtualService>(spec).map(|_| ())
            }
            "DestinationRule" => {
                serde_json::from_value::<rudder::istio::DestinationRule>(spec).map(|_| ())
            }
            "Gateway" => serde_json::from_value::<rudder::istio::Gateway>(spec).map(|_| ()),
            "ServiceEntry" => {
                serde_json::from_value::<rudder::istio::ServiceEntry>(spec).map(|_| ())
            }
            "WorkloadEntry" => {
                serde_json::from_value::<rudder::istio::WorkloadEntry>(spec).map(|_| ())
            }
            "Sidecar" => serde_json::from_value::<rudder::istio::Sidecar>(spec).map(|_| ()),
            other => panic!("unexpected kind {other}"),
        };
        parsed.unwrap_or_else(|error| panic!("{kind} {name}: {error}"));
    }

    // Short names and printer columns.
    let table = cluster.ok(&["get", "vs", "-n", "examples"], "");
    assert!(
        table.contains("GATEWAYS") && table.contains("HOSTS") && table.contains("reviews-route"),
        "{table}"
    );
    let table = cluster.ok(&["get", "se", "-n", "examples"], "");
    assert!(
        table.contains("LOCATION") && table.contains("MESH_INTERNAL"),
        "{table}"
    );
    cluster.ok(&["get", "dr,gw,we,sidecars", "-n", "examples"], "");

    // The status subresource keeps Istio's status as written.
    let status = json!({
        "observedGeneration": 1,
        "conditions": [{"type": "Reconciled", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}],
        "validationMessages": [{"type": {"code": "IST0106", "name": "SchemaValidationError"}, "level": "ERROR"}]
    });
    cluster.ok(
        &[
            "patch",
            "-n",
            "examples",
            "virtualservices.networking.istio.io/reviews-route",
            "--subresource=status",
            "--type=merge",
            "-p",
            &json!({"status": status}).to_string(),
        ],
        "",
    );
    let stored: Value = serde_json::from_str(&cluster.ok(
        &["get", "-n", "examples", "vs/reviews-route", "-o", "json"],
        "",
    ))
    .unwrap();
    assert_eq!(stored["status"], status);

    // Wrong shapes are refused, naming the field.
    let refused = [
        (
            "VirtualService",
            json!({"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}}], "timeout": 5}]}),
            "spec.http[0].timeout",
        ),
        (
            "VirtualService",
            json!({"hosts": ["a"], "http": [{"match": [{"uri": {"exact": "/a", "prefix": "/"}}], "route": [{"destination": {"host": "a"}}]}]}),
            "spec.http[0].match[0].uri",
        ),
        (
            "DestinationRule",
            json!({"host": "a", "trafficPolicy": {"loadBalancer": {"simple": "FASTEST"}}}),
            "spec.trafficPolicy.loadBalancer.simple",
        ),
        (
            "ServiceEntry",
            json!({"hosts": "a.example.com"}),
            "spec.hosts",
        ),
    ];
    for (kind, spec, field) in refused {
        let object = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": kind,
            "metadata": {"name": "wrong", "namespace": "examples"},
            "spec": spec,
        });
        let stderr = cluster.refused(
            &["apply", "--dry-run=server", "-f", "-"],
            &object.to_string(),
        );
        assert!(stderr.contains(field), "{kind} {spec}: {stderr}");
    }

    // What an Istio install leaves in the namespace: a CA Secret, and a Service `istiod` that
    // Helm created selecting istiod's Pods.
    cluster.ok(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Secret\nmetadata: {name: cacerts, namespace: istio-system}\n\
         stringData: {ca-cert.pem: not-a-real-ca}\n",
    );
    cluster.ok(
        &["create", "--field-manager", "helm", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: istiod, namespace: istio-system}\n\
         spec:\n  selector: {app: istiod, istio: pilot}\n  ports:\n  \
         - {name: grpc-xds, port: 15010}\n  - {name: https-dns, port: 15012}\n",
    );

    // rudder's permissions, for real: what it needs, and no more.
    cluster.ok(&apply_as_readme(&[]), &rudder);

    // Beside it, rudder's Service leaves istiod's alone.
    let leftover: Value = serde_json::from_str(&cluster.ok(
        &["get", "-n", "istio-system", "service/istiod", "-o", "json"],
        "",
    ))
    .unwrap();
    assert_eq!(
        leftover["spec"]["selector"],
        json!({"app": "istiod", "istio": "pilot"})
    );

    // The name `istiod` for rudder, once istiod is gone: the selector is the file's, not a merge.
    let istiod_service = std::fs::read_to_string(root().join(ISTIOD_SERVICE)).unwrap();
    cluster.ok(&apply_as_readme(&["--force-conflicts"]), &istiod_service);
    let wanted =
        serde_saphyr::from_str::<Value>(&istiod_service).unwrap()["spec"]["selector"].clone();
    let service: Value = serde_json::from_str(&cluster.ok(
        &["get", "-n", "istio-system", "service/istiod", "-o", "json"],
        "",
    ))
    .unwrap();
    assert_eq!(
        service["spec"]["selector"], wanted,
        "the leftover Service's selector"
    );
    for (allowed, args) in [
        (true, &["list", "pods", "--all-namespaces"][..]),
        (true, &["watch", "services", "--all-namespaces"]),
        (
            true,
            &[
                "watch",
                "endpointslices.discovery.k8s.io",
                "--all-namespaces",
            ],
        ),
        (true, &["list", "nodes"]),
        (true, &["watch", "namespaces"]),
        (true, &["get", "secrets", "-n", "examples"]),
        (
            true,
            &[
                "watch",
                "virtualservices.networking.istio.io",
                "--all-namespaces",
            ],
        ),
        (
            true,
            &["list", "sidecars.networking.istio.io", "--all-namespaces"],
        ),
        (
            true,
            &[
                "list",
                "workloadentries.networking.istio.io",
                "--all-namespaces",
            ],
        ),
        (
            true,
            &[
                "patch",
                "destinationrules.networking.istio.io",
                "--subresource=status",
                "-n",
                "examples",
            ],
        ),
        (
            true,
            &["create", "leases.coordination.k8s.io", "-n", "istio-system"],
        ),
        (
            true,
            &[
                "update",
                "leases.coordination.k8s.io/rudder-status",
                "-n",
                "istio-system",
            ],
        ),
        (true, &["create", "tokenreviews.authentication.k8s.io"]),
        (
            true,
            &["create", "subjectaccessreviews.authorization.k8s.io"],
        ),
        (false, &["create", "pods", "-n", "examples"]),
        (false, &["delete", "secrets", "-n", "examples"]),
        (false, &["list", "configmaps", "--all-namespaces"]),
        // The mesh config, and no other ConfigMap.
        (true, &["watch", "configmaps/istio", "-n", "istio-system"]),
        (true, &["list", "configmaps/istio", "-n", "istio-system"]),
        (false, &["get", "configmaps/other", "-n", "istio-system"]),
        // Kinds rudder reports but does not translate: read, never written.
        (
            true,
            &[
                "watch",
                "authorizationpolicies.security.istio.io",
                "--all-namespaces",
            ],
        ),
        (
            false,
            &[
                "update",
                "authorizationpolicies.security.istio.io",
                "-n",
                "examples",
            ],
        ),
        (
            false,
            &[
                "update",
                "virtualservices.networking.istio.io",
                "-n",
                "examples",
            ],
        ),
        (
            false,
            &["delete", "gateways.networking.istio.io", "-n", "examples"],
        ),
        (
            false,
            &["create", "leases.coordination.k8s.io", "-n", "examples"],
        ),
        (
            false,
            &[
                "update",
                "leases.coordination.k8s.io/other",
                "-n",
                "istio-system",
            ],
        ),
    ] {
        assert_eq!(
            rudder_can(&cluster, args),
            allowed,
            "rudder may {}: expected {allowed}",
            args.join(" ")
        );
    }

    // Deleting rudder deletes rudder, not the namespace nor its other contents.
    cluster.ok(&["delete", "--wait=true", "-f", "-"], &rudder);
    let phase = cluster.ok(
        &[
            "get",
            "namespace",
            "istio-system",
            "-o",
            "jsonpath={.status.phase}",
        ],
        "",
    );
    assert_eq!(phase, "Active");
    cluster.ok(&["get", "-n", "istio-system", "secret/cacerts"], "");
    let gone = cluster.kubectl(
        &["get", "-n", "istio-system", "deployment/istiod-rudder"],
        "",
    );
    assert!(!gone.status.success(), "the Deployment is deleted");
}
