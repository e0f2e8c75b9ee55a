//! Bad input, kind by kind, as a user meets it: `rudder validate` names the file, line, object and
//! field and exits 1, the good objects beside the bad ones still translate, fields rudder does not
//! carry out are warnings that do not fail, and `serve` keeps the last good version of an object
//! while it reports the bad one.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rudder::serve::{Debounce, ServeOptions, Server};
use rudder::xds::XdsOptions;
use serde_json::Value;

const NODE_ID: &str = "sidecar~127.0.0.1~client.shop~shop.svc.cluster.local";

fn rudder(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run rudder")
}

/// A Service `web`, a DestinationRule with subset v1 and a VirtualService sending `/good` to it.
const GOOD: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop, creationTimestamp: '2026-01-01T00:00:00Z'}
spec:
  hosts: [web]
  http:
  - match: [{uri: {prefix: /good}}]
    route: [{destination: {host: web, subset: v1}}]
";

/// Istio objects (metadata `name`, `namespace: shop`) from `kind` and `spec` pairs.
fn istio(objects: &[(&str, &str, &str)]) -> String {
    objects
        .iter()
        .map(|(kind, name, spec)| {
            format!(
                "apiVersion: networking.istio.io/v1\nkind: {kind}\n\
                 metadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn virtual_services() -> String {
    let vs = |name, spec| ("VirtualService", name, spec);
    istio(&[
        vs("wrong-type", "  hosts: web\n"),
        vs(
            "unknown-enum",
            "  hosts: [web]\n  http:\n  - redirect: {uri: /x, derivePort: FROM_NOWHERE}\n",
        ),
        vs(
            "out-of-range",
            "  hosts: [web]\n  http:\n  - fault: {abort: {httpStatus: 700, percentage: {value: 10}}}\n    \
             route: [{destination: {host: web}}]\n",
        ),
        vs(
            "bad-regex",
            "  hosts: [web]\n  http:\n  - match: [{uri: {regex: '([a-z'}}]\n    \
             route: [{destination: {host: web}}]\n",
        ),
        vs(
            "conflicting",
            "  hosts: [web]\n  http:\n  - redirect: {uri: /elsewhere}\n    \
             route: [{destination: {host: web}}]\n",
        ),
        vs(
            "no-such-subset",
            "  hosts: [web]\n  http:\n  - route: [{destination: {host: web, subset: v9}}]\n",
        ),
    ])
}

fn destination_rules() -> String {
    let dr = |name, spec| ("DestinationRule", name, spec);
    istio(&[
        dr(
            "wrong-type",
            "  host: web\n  trafficPolicy: {connectionPool: {tcp: {maxConnections: lots}}}\n",
        ),
        dr(
            "unknown-enum",
            "  host: web\n  trafficPolicy: {loadBalancer: {simple: FASTEST}}\n",
        ),
        dr(
            "out-of-range",
            "  host: web\n  trafficPolicy: {outlierDetection: {maxEjectionPercent: 120}}\n",
        ),
        dr(
            "conflicting",
            "  host: web\n  trafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}}\n",
        ),
        dr(
            "duplicate-subsets",
            "  host: web\n  subsets: [{name: v1}, {name: v1}]\n",
        ),
    ])
}

/// Kinds whose meaning is checked elsewhere: only what does not fit their schema.
fn other_istio_kinds() -> String {
    istio(&[
        ("Gateway", "wrong-type", "  servers: {port: 80}\n"),
        (
            "Gateway",
            "out-of-range",
            "  servers: [{port: {number: -1, name: http, protocol: HTTP}, hosts: ['*']}]\n",
        ),
        ("ServiceEntry", "wrong-type", "  hosts: api.example.com\n"),
        (
            "ServiceEntry",
            "out-of-range",
            "  hosts: [api.example.com]\n  ports: [{number: 99999999999, name: http}]\n",
        ),
        (
            "WorkloadEntry",
            "wrong-type",
            "  address: 10.0.0.1\n  ports: [80]\n",
        ),
        (
            "WorkloadEntry",
            "out-of-range",
            "  address: 10.0.0.1\n  ports: {http: -80}\n",
        ),
        ("Sidecar", "wrong-type", "  egress: {hosts: ['./*']}\n"),
        (
            "Sidecar",
            "out-of-range",
            "  egress: [{port: {number: -1}, hosts: ['./*']}]\n",
        ),
    ])
}

const KUBERNETES: &str = "\
apiVersion: v1
kind: Service
metadata: {name: wrong-type, namespace: shop}
spec:
  ports: 80
---
apiVersion: v1
kind: Service
metadata: {name: out-of-range, namespace: shop}
spec:
  ports: [{name: http, port: 80, targetPort: 70000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: wrong-type, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: {addresses: [10.0.0.1]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: out-of-range, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 0}]
endpoints: [{addresses: [10.0.0.1]}]
---
apiVersion: v1
kind: Pod
metadata: {name: wrong-type, namespace: shop}
status: {podIP: [10.0.0.1]}
";

fn write_all(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write a config file");
    }
}

/// `rudder validate DIR`: the exit code and the lines, with DIR left out of the paths.
fn validate(dir: &Path) -> (Option<i32>, Vec<String>) {
    let output = rudder(&["validate", dir.to_str().expect("a UTF-8 path")]);
    let prefix = format!("{}/", dir.display());
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.replacen(&prefix, "", 1))
        .collect();
    (output.status.code(), lines)
}

#[test]
fn bad_input_of_every_kind_is_named_and_the_good_objects_still_translate() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (vs, dr, others) = (virtual_services(), destination_rules(), other_istio_kinds());
    write_all(
        dir.path(),
        &[
            ("good.yaml", GOOD),
            ("virtual-services.yaml", &vs),
            ("destination-rules.yaml", &dr),
            ("istio.yaml", &others),
            ("kubernetes.yaml", KUBERNETES),
        ],
    );
    let (code, lines) = validate(dir.path());
    assert_eq!(code, Some(1), "{lines:#?}");
    let expected = [
        "virtual-services.yaml:1: VirtualService shop/wrong-type: spec.hosts: invalid type: string \"web\", expected a sequence; not applied",
        "virtual-services.yaml:7: VirtualService shop/unknown-enum: spec.http[0].redirect.derivePort: unknown value (expected FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT); not applied",
        "virtual-services.yaml:15: VirtualService shop/out-of-range: spec.http[0].fault.abort.httpStatus: HTTP status 700 is not in 200..=599; not applied",
        "virtual-services.yaml:24: VirtualService shop/bad-regex: spec.http[0].match[0].uri.regex: invalid RE2 regex \"([a-z\": unclosed character class; not applied",
        "virtual-services.yaml:33: VirtualService shop/conflicting: spec.http[0].route: route cannot be combined with redirect; not applied",
        "destination-rules.yaml:1: DestinationRule shop/wrong-type: spec.trafficPolicy.connectionPool.tcp.maxConnections: invalid type: string \"lots\", expected i32; not applied",
        "destination-rules.yaml:8: DestinationRule shop/unknown-enum: spec.trafficPolicy.loadBalancer.simple: unknown load balancer; expected one of ROUND_ROBIN, LEAST_REQUEST, LEAST_CONN, RANDOM, PASSTHROUGH; not applied",
        "destination-rules.yaml:15: DestinationRule shop/out-of-range: spec.trafficPolicy.outlierDetection.maxEjectionPercent: 120 is not a percentage from 0 to 100; not applied",
        "destination-rules.yaml:22: DestinationRule shop/conflicting: spec.trafficPolicy.loadBalancer: simple and consistentHash exclude each other; set only one; not applied",
        "destination-rules.yaml:29: DestinationRule shop/duplicate-subsets: spec.subsets[1].name: duplicate subset name \"v1\"; not applied",
        "istio.yaml:1: Gateway shop/wrong-type: spec.servers: invalid type: map, expected a sequence; not applied",
        "istio.yaml:7: Gateway shop/out-of-range: spec.servers[0].port.number: invalid value: integer `-1`, expected u32; not applied",
        "istio.yaml:13: ServiceEntry shop/wrong-type: spec.hosts: invalid type: string \"api.example.com\", expected a sequence; not applied",
        "istio.yaml:19: ServiceEntry shop/out-of-range: spec.ports[0].number: invalid value: integer `99999999999`, expected u32; not applied",
        "istio.yaml:26: WorkloadEntry shop/wrong-type: spec.ports: invalid type: sequence, expected a map; not applied",
        "istio.yaml:33: WorkloadEntry shop/out-of-range: spec.ports.http: invalid value: integer `-80`, expected u32; not applied",
        "istio.yaml:40: Sidecar shop/wrong-type: spec.egress: invalid type: map, expected a sequence; not applied",
        "istio.yaml:46: Sidecar shop/out-of-range: spec.egress[0].port.number: invalid value: integer `-1`, expected u32; not applied",
        "kubernetes.yaml:1: Service shop/wrong-type: spec.ports: invalid type: integer `80`, expected a sequence; not applied",
        "kubernetes.yaml:7: Service shop/out-of-range: spec.ports[0].targetPort: port 70000 is not a port number from 1 to 65535; not applied",
        "kubernetes.yaml:13: EndpointSlice shop/wrong-type: endpoints: invalid type: map, expected a sequence; not applied",
        "kubernetes.yaml:19: EndpointSlice shop/out-of-range: ports[0].port: port 0 is not a port number from 1 to 65535; not applied",
        "kubernetes.yaml:26: Pod shop/wrong-type: status.podIP: invalid type: sequence, expected a string; not applied",
    ];
    for line in expected {
        assert!(
            lines.iter().any(|l| l == line),
            "missing: {line}\ngot: {lines:#?}"
        );
    }
    let subset = lines.iter().find(|l| {
        l.contains("VirtualService shop/no-such-subset: spec.http[0].route[0].destination.subset:")
    });
    assert!(subset.is_some_and(|l| l.contains("v9")), "{lines:#?}");
    // Every object but the three good ones is reported, once.
    assert_eq!(lines.len(), expected.len() + 1, "{lines:#?}");

    // The good objects translate as if the bad ones were not there.
    let output = rudder(&[
        "translate",
        "--config-dir",
        dir.path().to_str().expect("a UTF-8 path"),
        "--node-id",
        NODE_ID,
    ]);
    assert!(output.status.success());
    let dump = String::from_utf8_lossy(&output.stdout);
    assert!(dump.contains("\"prefix\": \"/good\""), "{dump}");
    assert!(
        dump.contains("outbound|80|v1|web.shop.svc.cluster.local"),
        "{dump}"
    );
    for absent in ["/elsewhere", "RANDOM", "RING_HASH", "|v9|"] {
        assert!(!dump.contains(absent), "{absent} in {dump}");
    }
}

#[test]
fn unsupported_fields_are_warnings_that_do_not_fail() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let unsupported = istio(&[
        (
            "VirtualService",
            "subnets",
            "  hosts: [tcp.example.com]\n  tcp:\n  - route: [{destination: {host: web}}]\n  \
             - match: [{sourceSubnet: 10.0.0.0/8}]\n    route: [{destination: {host: web}}]\n",
        ),
        (
            "DestinationRule",
            "tunneled",
            "  host: web\n  trafficPolicy: {tunnel: {targetHost: proxy, targetPort: 8080}}\n",
        ),
        (
            "Gateway",
            "ingress",
            "  selector: {istio: ingressgateway}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*'], defaultEndpoint: '127.0.0.1:8080'}]\n",
        ),
    ]);
    write_all(
        dir.path(),
        &[("good.yaml", GOOD), ("unsupported.yaml", &unsupported)],
    );
    let (code, lines) = validate(dir.path());
    assert_eq!(code, Some(0), "{lines:#?}");
    assert_eq!(
        lines,
        [
            // istiod's validation says the same of a rule after one without matches.
            "unsupported.yaml:1: VirtualService shop/subnets: spec.tcp[1]: warning: [IST0130] virtualService rule #1 not used (route without matches defined before)",
            "unsupported.yaml:1: VirtualService shop/subnets: spec.tcp[1].match[0].sourceSubnet: warning: not supported by rudder yet; ignored",
            "unsupported.yaml:11: DestinationRule shop/tunneled: spec.trafficPolicy.tunnel: warning: not supported by rudder yet; ignored",
            "unsupported.yaml:18: Gateway shop/ingress: spec.servers[0].defaultEndpoint: warning: not supported by rudder yet; ignored",
        ]
    );
}

/// The body of rudder's admin endpoint `path` at `admin`.
async fn admin_get(admin: std::net::SocketAddr, path: &str) -> String {
    reqwest::get(format!("http://{admin}{path}"))
        .await
        .expect("admin answers")
        .text()
        .await
        .expect("a body")
}

/// The first error in `/debug/inputz` at `admin` that contains `needle`, once there is one
/// (within 10 s).
async fn reported_error(admin: std::net::SocketAddr, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let configz: Value =
            serde_json::from_str(&admin_get(admin, "/debug/inputz").await).expect("JSON");
        let found = configz["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find(|error| error.contains(needle));
        if let Some(error) = found {
            return error.to_string();
        }
        assert!(Instant::now() < deadline, "no error reported: {configz}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `rudder serve` on `dir` alone, on free loopback ports, with a short debounce.
fn serve_options(dir: &std::path::Path) -> ServeOptions {
    ServeOptions {
        config_dirs: vec![dir.to_path_buf()],
        file_quiet_period: rudder::source::file::DEFAULT_QUIET_PERIOD,
        kubernetes: None,
        debounce: Debounce {
            quiet: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        xds_address: "127.0.0.1:0".parse().expect("address"),
        admin_address: "127.0.0.1:0".parse().expect("address"),
        admin: rudder::admin::AdminOptions::default(),
        xds: XdsOptions::default(),
        root_namespace: rudder::model::DEFAULT_ROOT_NAMESPACE.to_string(),
        dns_domain: rudder::model::DEFAULT_DNS_DOMAIN.to_string(),
        mesh_config_file: None,
    }
}

/// `serve` keeps the last good version of an object that turns bad, and reports why in
/// `/debug/inputz`; fixing it applies the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_the_last_good_version_and_reports_the_bad_one() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    write_all(dir.path(), &[("good.yaml", GOOD)]);
    let server = Server::start(serve_options(dir.path()))
        .await
        .expect("rudder starts");
    let admin = server.admin_address();
    let get = |path: String| async move { admin_get(admin, &path).await };
    let routes = || get(format!("/debug/config_dump?proxyID={NODE_ID}"));
    assert!(routes().await.contains("/good"));

    write_all(
        dir.path(),
        &[(
            "good.yaml",
            &GOOD.replace("prefix: /good", "regex: '([a-z'"),
        )],
    );
    let error = reported_error(admin, "VirtualService shop/web").await;
    assert!(
        error.ends_with(
            "good.yaml:15: VirtualService shop/web: spec.http[0].match[0].uri.regex: invalid RE2 \
             regex \"([a-z\": unclosed character class; the last valid version stays in force"
        ),
        "{error}"
    );
    let dump = routes().await;
    assert!(dump.contains("/good") && !dump.contains("([a-z"), "{dump}");
    server.stop().await;
}

/// `rudder validate` on PATHS with extra flags: the exit code and the lines, with `dir` left out
/// of the paths.
fn validate_with(dir: &Path, flags: &[&str]) -> (Option<i32>, Vec<String>) {
    let mut args = vec!["validate", dir.to_str().expect("a UTF-8 path")];
    args.extend(flags);
    let output = rudder(&args);
    let prefix = format!("{}/", dir.display());
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.replacen(&prefix, "", 1))
        .collect();
    (output.status.code(), lines)
}

/// A deny-all AuthorizationPolicy and a STRICT PeerAuthentication.
const SECURITY: &str = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: shop}
spec: {action: DENY, rules: [{}]}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: strict, namespace: shop}
spec: {mtls: {mode: STRICT}}
";

/// Objects of kinds rudder does not translate are warnings saying what they mean for traffic:
/// exit 0, or 3 with `--fail-on-warnings`; with an error beside them, 1.
#[test]
fn untranslated_kinds_are_warnings_saying_what_they_mean_for_traffic() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    write_all(
        dir.path(),
        &[("good.yaml", GOOD), ("security.yaml", SECURITY)],
    );
    let (code, lines) = validate(dir.path());
    assert_eq!(code, Some(0), "{lines:#?}");
    assert_eq!(
        lines,
        [
            "security.yaml:1: AuthorizationPolicy shop/deny-all: warning: not translated by rudder \
             yet; NOT enforced: sidecars and gateways get no RBAC filter, so every request is let \
             through, including those it would deny (DENY rules, or ALLOW rules that leave them out)",
            "security.yaml:6: PeerAuthentication shop/strict: warning: not translated by rudder \
             yet; NOT enforced: proxies get no Istio mutual TLS, so a STRICT mode does not refuse \
             plaintext connections",
        ]
    );
    assert_eq!(
        validate_with(dir.path(), &["--fail-on-warnings"]).0,
        Some(3)
    );

    // A clean config is clean with the flag too; an error fails with 1 either way.
    let clean = tempfile::tempdir().expect("a temporary directory");
    write_all(clean.path(), &[("good.yaml", GOOD)]);
    assert_eq!(
        validate_with(clean.path(), &["--fail-on-warnings"]),
        (Some(0), Vec::new())
    );
    let bad = SECURITY.replace("action: DENY", "actoin: DENY");
    write_all(dir.path(), &[("security.yaml", &bad)]);
    let (code, lines) = validate_with(dir.path(), &["--fail-on-warnings"]);
    assert_eq!(code, Some(1), "{lines:#?}");
    assert!(
        lines.contains(
            &"security.yaml:1: AuthorizationPolicy shop/deny-all: spec.actoin: unknown field (did \
              you mean action?); not applied"
                .to_string()
        ),
        "{lines:#?}"
    );
}

/// Rules without the Services they route to are checked alone, as `istioctl validate` does:
/// unknown destination hosts are warnings; a misspelled field is an error naming its path and
/// the field meant.
#[test]
fn rules_alone_are_checked_like_istioctl_validate() {
    let rules = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: shop}
spec:
  host: web
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http:
  - timeout: 5s
    route: [{destination: {host: web, subset: v1, port: {number: 80}}}]
";
    let dir = tempfile::tempdir().expect("a temporary directory");
    write_all(dir.path(), &[("rules.yaml", rules)]);
    let (code, lines) = validate(dir.path());
    assert_eq!(code, Some(0), "{lines:#?}");
    assert_eq!(
        lines,
        [
            "rules.yaml:8: VirtualService shop/web: spec.http[0].route[0].destination.host: warning: \
          web.shop.svc.cluster.local is not a known service (no Services or ServiceEntries were \
          given: checked alone)"
        ]
    );

    // A subset no DestinationRule among the rules defines: also a warning (its DestinationRule
    // may live elsewhere; `istioctl validate` checks no reference).
    let other_subset = rules.replace("subset: v1, port", "subset: v9, port");
    write_all(dir.path(), &[("rules.yaml", &other_subset)]);
    let (code, lines) = validate(dir.path());
    assert_eq!(code, Some(0), "{lines:#?}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some(
            "rules.yaml:8: VirtualService shop/web: spec.http[0].route[0].destination.subset: \
             warning: [IST0101] subset \"v9\" is not defined by any DestinationRule for \
             web.shop.svc.cluster.local (no Services or ServiceEntries were given: checked alone)"
        ),
        "{lines:#?}"
    );

    let typo = rules.replace("timeout: 5s", "timeuot: 5s");
    write_all(dir.path(), &[("rules.yaml", &typo)]);
    let (code, lines) = validate(dir.path());
    assert_eq!(code, Some(1), "{lines:#?}");
    assert!(
        lines.contains(
            &"rules.yaml:8: VirtualService shop/web: spec.http[0].timeuot: unknown field (did you \
              mean timeout?); not applied"
                .to_string()
        ),
        "{lines:#?}"
    );

    // With the registry given, a host that is no service is an error, as `serve` treats it.
    let stray = "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
                 metadata: {name: stray, namespace: shop}\n\
                 spec:\n  hosts: [stray]\n  http:\n  - route: [{destination: {host: nowhere}}]\n";
    let with_registry = format!("{GOOD}---\n{stray}");
    write_all(dir.path(), &[("rules.yaml", &with_registry)]);
    let (code, lines) = validate(dir.path());
    assert_eq!(code, Some(1), "{lines:#?}");
    assert!(
        lines.iter().any(|line| line
            .contains("nowhere.shop.svc.cluster.local is not a known service; not applied")),
        "{lines:#?}"
    );
}

/// `serve` refuses an object with a field Istio's API does not have, as the API server would:
/// the last good version stays in force; objects of kinds rudder does not translate are listed
/// in `/debug/inputz` and counted in `rudder_untranslated_objects`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_unknown_fields_and_lists_untranslated_objects() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    write_all(
        dir.path(),
        &[("good.yaml", GOOD), ("security.yaml", SECURITY)],
    );
    let server = Server::start(serve_options(dir.path()))
        .await
        .expect("rudder starts");
    let admin = server.admin_address();
    let get = |path: &'static str| async move { admin_get(admin, path).await };
    let configz: Value = serde_json::from_str(&get("/debug/inputz").await).expect("JSON");
    let listed: Vec<(&str, &str)> = configz["untranslated"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or_default(),
                o["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("AuthorizationPolicy", "deny-all"),
            ("PeerAuthentication", "strict")
        ]
    );
    assert!(
        configz["untranslated"][0]["effect"]
            .as_str()
            .is_some_and(|effect| effect.starts_with("NOT enforced")),
        "{configz}"
    );
    let metrics = get("/metrics").await;
    for line in [
        "rudder_untranslated_objects{kind=\"AuthorizationPolicy\"} 1",
        "rudder_untranslated_objects{kind=\"PeerAuthentication\"} 1",
        "rudder_untranslated_objects{kind=\"EnvoyFilter\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }

    write_all(
        dir.path(),
        &[(
            "good.yaml",
            &GOOD.replace(
                "route: [{destination",
                "timeuot: 1s\n    route: [{destination",
            ),
        )],
    );
    let error = reported_error(admin, "VirtualService shop/web").await;
    assert!(
        error.ends_with(
            "good.yaml:15: VirtualService shop/web: spec.http[0].timeuot: unknown field (did you \
             mean timeout?); the last valid version stays in force"
        ),
        "{error}"
    );
    let dump =
        get("/debug/config_dump?proxyID=sidecar~127.0.0.1~client.shop~shop.svc.cluster.local")
            .await;
    assert!(dump.contains("/good"), "{dump}");
    server.stop().await;
}
