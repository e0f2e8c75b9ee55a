//! End to end through a real Envoy: rudder serves a config directory, Envoy attaches with a
//! bootstrap that holds only its identity and ADS, and requests through Envoy reach real
//! upstream servers on loopback addresses. Every test runs twice, as `sotw::NAME` with state of
//! the world ADS and as `delta::NAME` with delta ADS. Each test and mode has its own port and
//! addresses, so all of them run in parallel.

mod support;

use std::time::Duration;

use rudder::bootstrap::AdsApiType;
use serde_json::Value;
use support::in_both_modes;
use support::mesh::{Backend, JASON_EXACT, Mesh, Reply, reviews_rules_matching, service_yaml};
use support::upstream::Upstream;

const PROPAGATION_LIMIT: Duration = Duration::from_secs(5);

in_both_modes!(
    header_routing_and_every_host_form,
    weighted_split_within_statistical_bounds,
    rule_and_endpoint_edits_reach_traffic,
    bad_files_leave_traffic_as_it_was,
    changes_that_do_not_affect_the_proxy_push_nothing,
);

/// Everyone with `end-user: jason` to `match_user_subset`, everyone else to `default_subset`.
fn reviews_rules(match_user_subset: &str, default_subset: &str) -> String {
    reviews_rules_matching(match_user_subset, default_subset, JASON_EXACT)
}

/// reviews (v1 and v2) and details, each Pod served by an upstream on `127.0.NET.x`, on port
/// `19000 + NET`; `rules` in `reviews-rules.yaml`. Ready once reviews answers.
struct Fixture {
    mesh: Mesh,
    port: u16,
    net: u8,
    _upstreams: Vec<Upstream>,
}

/// What delta tests add to their test's net, so that both modes of a test run side by side.
const DELTA_NET_OFFSET: u8 = 50;

impl Fixture {
    /// `net` is the test's own; delta ADS runs on `net + DELTA_NET_OFFSET`. `extra` upstreams are
    /// started too: `(name, last octet)`.
    async fn start(api_type: AdsApiType, net: u8, rules: String, extra: &[(&str, u8)]) -> Fixture {
        let net = match api_type {
            AdsApiType::Grpc => net,
            AdsApiType::DeltaGrpc => net + DELTA_NET_OFFSET,
        };
        let port = 19000 + u16::from(net);
        let ip = |octet: u8| format!("127.0.{net}.{octet}");
        let mut upstreams = Vec::new();
        let pods = [("reviews-v1", 1), ("reviews-v2", 2), ("details", 3)];
        for (name, octet) in pods.iter().chain(extra) {
            upstreams.push(Upstream::start(name, &format!("{}:{port}", ip(*octet))).await);
        }
        let reviews = [
            Backend::new("reviews-v1", &ip(1), "v1"),
            Backend::new("reviews-v2", &ip(2), "v2"),
        ];
        let details = [Backend::new("details-v1", &ip(3), "v1")];
        let mesh = Mesh::start(
            api_type,
            port,
            &[
                (
                    "reviews.yaml",
                    service_yaml("reviews", &format!("10.96.{net}.1"), port, &reviews),
                ),
                (
                    "details.yaml",
                    service_yaml("details", &format!("10.96.{net}.2"), port, &details),
                ),
                ("reviews-rules.yaml", rules),
            ],
        )
        .await;
        let ready = mesh
            .wait_until(PROPAGATION_LIMIT, || async {
                mesh.upstream_of("reviews", &[])
                    .await
                    .starts_with("reviews-")
            })
            .await;
        assert!(
            ready.is_some(),
            "reviews never routed; Envoy log:\n{}",
            mesh.envoy.log()
        );
        Fixture {
            mesh,
            port,
            net,
            _upstreams: upstreams,
        }
    }

    fn ip(&self, octet: u8) -> String {
        format!("127.0.{}.{octet}", self.net)
    }

    /// Waits until reviews answers from `upstream`; how long that took.
    async fn reviews_reaches(&self, upstream: &str) -> Duration {
        self.mesh
            .wait_until(PROPAGATION_LIMIT, || async {
                self.mesh.upstream_of("reviews", &[]).await == upstream
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "reviews never reached {upstream}; Envoy log:\n{}",
                    self.mesh.envoy.log()
                )
            })
    }
}

async fn header_routing_and_every_host_form(api_type: AdsApiType) {
    let fixture = Fixture::start(api_type, 101, reviews_rules("v2", "v1"), &[]).await;
    let mesh = &fixture.mesh;
    fixture.reviews_reaches("reviews-v1").await;
    for _ in 0..20 {
        assert_eq!(mesh.upstream_of("reviews", &[]).await, "reviews-v1");
        assert_eq!(
            mesh.upstream_of("reviews", &[("end-user", "jason")]).await,
            "reviews-v2"
        );
        assert_eq!(
            mesh.upstream_of("reviews", &[("end-user", "someone")])
                .await,
            "reviews-v1"
        );
    }

    // A service without any rule answers to every name Istio gives it, with or without port.
    let cluster_ip = format!("10.96.{}.2", fixture.net);
    let forms = [
        "details",
        "details.bookinfo",
        "details.bookinfo.svc",
        "details.bookinfo.svc.cluster.local",
        cluster_ip.as_str(),
    ];
    for form in forms {
        assert_eq!(mesh.upstream_of(form, &[]).await, "details", "host {form}");
        let with_port = format!("{form}:{}", fixture.port);
        assert_eq!(
            mesh.upstream_of(&with_port, &[]).await,
            "details",
            "host {with_port}"
        );
    }
    // Unknown hosts go to the passthrough cluster, which has nowhere to go here.
    assert!(mesh.upstream_of("unknown.example.com", &[]).await != "details");

    // Envoy ACKed every type, which /debug/streamz shows in both modes.
    let synced = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            all_acked(&mesh.admin("/debug/streamz").await)
        })
        .await;
    assert!(
        synced.is_some(),
        "not every type ACKed:\n{}",
        mesh.admin("/debug/streamz").await
    );
}

/// Whether /debug/streamz shows one proxy that ACKed what it was sent of all four types.
fn all_acked(syncz: &str) -> bool {
    let proxies: Value = serde_json::from_str(syncz).expect("syncz is JSON");
    let [proxy] = proxies.as_array().map(Vec::as_slice).unwrap_or_default() else {
        return false;
    };
    ["cds", "eds", "lds", "rds"].iter().all(|ty| {
        let status = &proxy["types"][ty];
        status["sent"].is_string() && status["acked"] == status["sent"] && status["nack"].is_null()
    })
}

async fn weighted_split_within_statistical_bounds(api_type: AdsApiType) {
    let rules = reviews_rules("v2", "v1").replace(
        "  - route:\n    - destination: {host: reviews, subset: v1}\n",
        "  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 80\n    - destination: {host: reviews, subset: v2}\n      weight: 20\n",
    );
    let fixture = Fixture::start(api_type, 102, rules, &[]).await;
    const REQUESTS: usize = 1000;
    let mut v2 = 0;
    for _ in 0..REQUESTS {
        match fixture.mesh.upstream_of("reviews", &[]).await.as_str() {
            "reviews-v1" => {}
            "reviews-v2" => v2 += 1,
            other => panic!("unexpected reply {other}"),
        }
    }
    // 20% of 1000 has a standard deviation of about 12.6; ±60 is beyond 4.7 of them.
    eprintln!("weighted split: {v2} of {REQUESTS} requests went to v2 (weight 20)");
    assert!(
        (140..=260).contains(&v2),
        "{v2} of {REQUESTS} went to v2, expected about 200"
    );
}

async fn rule_and_endpoint_edits_reach_traffic(api_type: AdsApiType) {
    let fixture = Fixture::start(
        api_type,
        103,
        reviews_rules("v2", "v1"),
        &[("reviews-v1-moved", 9)],
    )
    .await;
    let mesh = &fixture.mesh;
    fixture.reviews_reaches("reviews-v1").await;

    // A rule edit: everyone to v2.
    mesh.write("reviews-rules.yaml", &reviews_rules("v2", "v2"));
    let rule_edit = fixture.reviews_reaches("reviews-v2").await;

    // An endpoint edit: v1 moves to another address.
    mesh.write("reviews-rules.yaml", &reviews_rules("v1", "v1"));
    fixture.reviews_reaches("reviews-v1").await;
    let moved = [
        Backend::new("reviews-v1", &fixture.ip(9), "v1"),
        Backend::new("reviews-v2", &fixture.ip(2), "v2"),
    ];
    let cluster_ip = format!("10.96.{}.1", fixture.net);
    mesh.write(
        "reviews.yaml",
        &service_yaml("reviews", &cluster_ip, fixture.port, &moved),
    );
    let endpoint_edit = fixture.reviews_reaches("reviews-v1-moved").await;

    // A deleted rule: the default route spreads over both versions again.
    std::fs::remove_file(mesh.path("reviews-rules.yaml")).expect("delete the rules");
    let rule_delete = fixture.reviews_reaches("reviews-v2").await;
    eprintln!(
        "edit to traffic: rule edit {rule_edit:?}, endpoint edit {endpoint_edit:?}, rule deletion {rule_delete:?}"
    );
}

async fn bad_files_leave_traffic_as_it_was(api_type: AdsApiType) {
    let fixture = Fixture::start(api_type, 104, reviews_rules("v2", "v1"), &[]).await;
    let mesh = &fixture.mesh;
    fixture.reviews_reaches("reviews-v1").await;
    // Each bad change is paired with a good change in another file; once the good change shows
    // in traffic, the bad one has been processed too, and traffic to reviews must be unchanged.
    let marker_rule = |value: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: details, namespace: bookinfo}}\n\
             spec:\n  hosts: [details]\n  http:\n  - headers:\n      response:\n        set: {{x-marker: \"{value}\"}}\n    \
             route:\n    - destination: {{host: details}}\n"
        )
    };
    let bad_changes = [
        ("a YAML syntax error", "reviews-rules.yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews\n".to_string()),
        ("an invalid regex", "reviews-rules.yaml", reviews_rules("v2", "v2").replace("exact: jason", "regex: \"(jason\"")),
        ("a missing subset", "reviews-rules.yaml", reviews_rules("v9", "v2")),
        ("several destinations without weights", "reviews-rules.yaml", reviews_rules("v2", "v2").replace(
            "  - route:\n    - destination: {host: reviews, subset: v2}\n",
            "  - route:\n    - destination: {host: reviews, subset: v2}\n    - destination: {host: reviews, subset: v1}\n",
        )),
        ("a malformed duration", "reviews-rules.yaml", reviews_rules("v2", "v2").replace("  - route:\n", "  - timeout: soon\n    route:\n")),
        ("a destination host that does not exist", "reviews-rules.yaml", reviews_rules("v2", "v2").replace("{host: reviews, subset: v2}", "{host: nowhere}")),
        ("an unparsable new file", "zz-garbage.yaml", "{{{{ not yaml".to_string()),
    ];
    for (round, (what, file, contents)) in bad_changes.iter().enumerate() {
        mesh.write(file, contents);
        let marker = format!("round-{round}");
        mesh.write("details-rules.yaml", &marker_rule(&marker));
        let seen = mesh
            .wait_until(PROPAGATION_LIMIT, || async {
                let response = reqwest::Client::new()
                    .get(format!("http://127.0.0.1:{}/", fixture.port))
                    .header("host", "details")
                    .send()
                    .await;
                response.is_ok_and(|r| {
                    r.headers()
                        .get("x-marker")
                        .is_some_and(|v| v == marker.as_str())
                })
            })
            .await;
        assert!(
            seen.is_some(),
            "the good change after {what} never reached Envoy"
        );
        for _ in 0..5 {
            assert_eq!(
                mesh.upstream_of("reviews", &[]).await,
                "reviews-v1",
                "after {what}"
            );
            assert_eq!(
                mesh.upstream_of("reviews", &[("end-user", "jason")]).await,
                "reviews-v2",
                "after {what}"
            );
        }
    }
    let metrics = mesh.admin("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("rudder_config_errors ") && !line.ends_with(" 0")),
        "config errors are counted:\n{metrics}"
    );

    // Fixing the file applies the fix.
    mesh.write("reviews-rules.yaml", &reviews_rules("v2", "v2"));
    fixture.reviews_reaches("reviews-v2").await;
    assert!(matches!(
        mesh.get("reviews", "/", &[]).await,
        Reply::Upstream(_)
    ));
}

/// The example binds port 9080 and fixed upstream addresses, so its two modes run in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_example_routes_as_its_rules_say() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bookinfo");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&example).expect("examples/bookinfo exists") {
        let path = entry.expect("readable entry").path();
        let name = path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .to_string();
        files.push((
            name,
            std::fs::read_to_string(&path).expect("readable example file"),
        ));
    }
    let files: Vec<(&str, String)> = files
        .iter()
        .map(|(name, text)| (name.as_str(), text.clone()))
        .collect();
    let port = 9080;
    let pods = [
        ("productpage-v1", "127.0.10.1"),
        ("details-v1", "127.0.11.1"),
        ("ratings-v1", "127.0.12.1"),
        ("reviews-v1", "127.0.13.1"),
        ("reviews-v2", "127.0.13.2"),
        ("reviews-v3", "127.0.13.3"),
    ];
    let mut upstreams = Vec::new();
    for (pod, ip) in pods {
        upstreams.push(Upstream::start(pod, &format!("{ip}:{port}")).await);
    }
    for api_type in [AdsApiType::Grpc, AdsApiType::DeltaGrpc] {
        // Each mesh is dropped (its Envoy killed) before the next binds the same port.
        let mesh = Mesh::start(api_type, port, &files).await;
        let ready = mesh
            .wait_until(PROPAGATION_LIMIT, || async {
                mesh.upstream_of("reviews", &[]).await == "reviews-v1"
            })
            .await;
        assert!(
            ready.is_some(),
            "reviews never routed ({api_type:?}); Envoy log:\n{}",
            mesh.envoy.log()
        );
        for _ in 0..10 {
            assert_eq!(mesh.upstream_of("reviews", &[]).await, "reviews-v1");
            assert_eq!(
                mesh.upstream_of("reviews", &[("end-user", "jason")]).await,
                "reviews-v2"
            );
            assert_eq!(mesh.upstream_of("ratings", &[]).await, "ratings-v1");
            assert_eq!(
                mesh.upstream_of("details.bookinfo", &[]).await,
                "details-v1"
            );
            assert_eq!(
                mesh.upstream_of("productpage.bookinfo.svc.cluster.local", &[])
                    .await,
                "productpage-v1"
            );
        }
    }
}

/// Waits until rudder has built the model `builds` times in all.
async fn wait_for_build(mesh: &Mesh, builds: f64) {
    let rebuilt = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            metric_sum(&mesh.admin("/metrics").await, "rudder_config_builds_total") >= builds
        })
        .await;
    assert!(
        rebuilt.is_some(),
        "rudder never built the model {builds} times"
    );
}

/// The sum of a metric's samples in Prometheus text.
fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with([' ', '{']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn changes_that_do_not_affect_the_proxy_push_nothing(api_type: AdsApiType) {
    let fixture = Fixture::start(api_type, 105, reviews_rules("v2", "v1"), &[]).await;
    let mesh = &fixture.mesh;
    fixture.reviews_reaches("reviews-v1").await;
    let before = mesh.admin("/metrics").await;
    let builds = metric_sum(&before, "rudder_config_builds_total");
    let pushes = metric_sum(&before, "pilot_xds_pushes");
    // A namespace, a Pod behind no service, and a comment in a rules file change no resource.
    let unrelated = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: elsewhere}}\n---\n\
         apiVersion: v1\nkind: Pod\n\
         metadata: {{name: lonely, namespace: elsewhere, labels: {{app: lonely}}}}\n\
         status: {{podIP: {}}}\n",
        fixture.ip(77)
    );
    mesh.write("unrelated.yaml", &unrelated);
    mesh.write(
        "reviews-rules.yaml",
        &format!("# reviewed\n{}", reviews_rules("v2", "v1")),
    );
    wait_for_build(mesh, builds + 1.0).await;
    // Give a push, if one were coming, time to be counted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = mesh.admin("/metrics").await;
    assert_eq!(
        metric_sum(&after, "pilot_xds_pushes"),
        pushes,
        "pushes before:\n{before}\nafter:\n{after}"
    );

    // Under a Sidecar that imports only the proxy's own namespace (which holds every service it
    // uses, so the Sidecar itself changes nothing it holds), a service and a rule in another
    // namespace change the model but nothing this proxy holds.
    mesh.write(
        "sidecar.yaml",
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\n\
         metadata: {name: default, namespace: bookinfo}\n\
         spec: {egress: [{hosts: [\"./*\"]}]}\n",
    );
    wait_for_build(mesh, builds + 2.0).await;
    let elsewhere = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: ratings, namespace: elsewhere}}\n\
         spec: {{clusterIP: {}, ports: [{{name: http, port: 9080}}]}}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: ratings, namespace: elsewhere}}\n\
         spec: {{hosts: [ratings], http: [{{timeout: 3s, route: [{{destination: {{host: ratings}}}}]}}]}}\n",
        fixture.ip(78)
    );
    mesh.write("elsewhere.yaml", &elsewhere);
    wait_for_build(mesh, builds + 3.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = mesh.admin("/metrics").await;
    assert_eq!(
        metric_sum(&after, "pilot_xds_pushes"),
        pushes,
        "pushes before:\n{before}\nafter the Sidecar and the other namespace's rule:\n{after}"
    );

    // A change that does affect it is pushed.
    mesh.write("reviews-rules.yaml", &reviews_rules("v2", "v2"));
    fixture.reviews_reaches("reviews-v2").await;
    let pushed = metric_sum(&mesh.admin("/metrics").await, "pilot_xds_pushes");
    assert!(pushed > pushes);
}
