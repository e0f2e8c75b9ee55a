//! Runs a scenario against one control plane: a stock Envoy per proxy of the scenario, attached
//! with the same node identity whichever control plane serves it, its config dump once the config
//! has settled, then the scenario's probes through it, one after the other. Returns what was seen
//! as a JSON tree per proxy (`config` normalised by `compare::normalize`, `probes` by name); judging
//! it is the caller's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rudder::bootstrap::AdsApiType;
use serde_json::{Map, Value, json};

use super::compare::normalize;
use super::scenario::{Probe, ProxyKind, ProxySpec, ScenarioDir};
use crate::support::envoy_process::EnvoyProcess;
use crate::support::netns::TestHost;
use crate::support::router::tcp_exchange;
use crate::support::upstream::{TcpUpstream, Upstream};

/// The mesh config under every scenario: without Istio's CA neither side does mutual TLS (with
/// it, istiod's clusters would wait for istio-agent's SDS).
pub const MESH_BASE: &str = "enableAutoMtls: false\n";

/// Request headers that differ between two sends of the same request.
const VOLATILE_REQUEST_HEADERS: &[&str] = &[
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
];
/// Response headers that differ between two sends (`content-length` follows the echoed headers).
const VOLATILE_RESPONSE_HEADERS: &[&str] =
    &["date", "x-envoy-upstream-service-time", "content-length"];

/// The upstreams of a scenario, shared by both runs.
pub struct Upstreams {
    http: Vec<Upstream>,
    _tcp: Vec<TcpUpstream>,
}

impl Upstreams {
    /// The scenario's upstreams, those on the test host's addresses (`10.231.*`, the Kubernetes
    /// variant's endpoints) listening inside `host`.
    pub async fn start(
        scenario: &ScenarioDir,
        host: Option<&TestHost>,
    ) -> Result<Upstreams, String> {
        let mut http = Vec::new();
        let mut tcp = Vec::new();
        for spec in &scenario.scenario.upstreams {
            let listener = match host {
                Some(host) if spec.address.starts_with("10.231.") => host.bind(&spec.address),
                _ => bind(&spec.address).await?,
            };
            if spec.tcp {
                tcp.push(TcpUpstream::start_on(&spec.name, listener));
                continue;
            }
            let upstream = Upstream::start_on(&spec.name, listener);
            if let Some(status) = spec.status {
                upstream.answer_with(status);
            }
            if let Some(delay) = spec.delay_ms {
                upstream.delay_answers(Duration::from_millis(delay));
            }
            http.push(upstream);
        }
        Ok(Upstreams { http, _tcp: tcp })
    }

    fn counts(&self) -> BTreeMap<String, u64> {
        self.http
            .iter()
            .map(|upstream| (upstream.name.clone(), upstream.requests()))
            .collect()
    }
}

/// A listening socket on `address`, waiting up to 5 s for another process to let go of it.
async fn bind(address: &str) -> Result<std::net::TcpListener, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::net::TcpListener::bind(address) {
            Ok(listener) => return Ok(listener),
            Err(error) if Instant::now() > deadline => {
                return Err(format!("upstream address {address}: {error}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// What a proxy's Envoy got from `xds` and did with the probes: `{config, probes}`.
pub async fn observe(
    scenario: &ScenarioDir,
    proxy: &ProxySpec,
    xds: SocketAddr,
    upstreams: &Upstreams,
) -> Value {
    let envoy = start_envoy(proxy, xds);
    let dump = settled_dump(&envoy).await;
    let mut probes = Map::new();
    for probe in &scenario.scenario.probes {
        if scenario.proxy_of(probe) == proxy.name {
            probes.insert(probe.name.clone(), send(probe, upstreams).await);
        }
    }
    json!({"config": dump, "probes": probes})
}

fn start_envoy(proxy: &ProxySpec, xds: SocketAddr) -> EnvoyProcess {
    let kind = match proxy.kind {
        ProxyKind::Sidecar => "sidecar",
        ProxyKind::Router => "router",
    };
    let ns = &proxy.namespace;
    let node_id = format!(
        "{kind}~{}~{}.{ns}~{ns}.svc.cluster.local",
        proxy.ip, proxy.pod
    );
    let metadata = json!({
        "NAMESPACE": ns,
        "INTERCEPTION_MODE": proxy.interception,
        "LABELS": proxy.labels,
    });
    EnvoyProcess::start(&node_id, metadata, xds, AdsApiType::Grpc)
}

/// The normalised config dump once Envoy holds a settled config: every listener and cluster
/// active (or refused), every route configuration a listener names present, and two dumps 300 ms
/// apart alike. After 30 s, whatever it holds.
async fn settled_dump(envoy: &EnvoyProcess) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut previous = Value::Null;
    loop {
        let dump = fetch_json(&format!("http://{}/config_dump?include_eds", envoy.admin)).await;
        let tree = normalize(&dump);
        let complete = (tree.get("listeners").is_some() || tree.get("listener_errors").is_some())
            && tree.get("warming_listeners").is_none()
            && tree.get("warming_clusters").is_none()
            && referenced_routes(&tree)
                .iter()
                .all(|name| tree["routes"].get(name).is_some());
        if (complete && tree == previous) || Instant::now() > deadline {
            let mut tree = tree;
            tree["rejected"] = rejected(envoy).await;
            return tree;
        }
        previous = if complete { tree } else { Value::Null };
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The route configuration names the listeners' HTTP connection managers ask RDS for.
fn referenced_routes(tree: &Value) -> Vec<String> {
    fn collect(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(name) = map
                    .get("rds")
                    .and_then(|rds| rds["route_config_name"].as_str())
                {
                    out.push(name.to_string());
                }
                map.values().for_each(|v| collect(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    collect(&tree["listeners"], &mut out);
    out
}

/// Envoy's `*.update_rejected` counters that are not zero: what it refused (a NACK).
async fn rejected(envoy: &EnvoyProcess) -> Value {
    let url = format!("http://{}/stats?filter=update_rejected", envoy.admin);
    let text = match reqwest::get(&url).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let counters: Map<String, Value> = text
        .lines()
        .filter_map(|line| line.split_once(": "))
        .filter(|(_, value)| value.trim() != "0")
        .map(|(name, value)| (name.to_string(), Value::from(value.trim())))
        .collect();
    Value::Object(counters)
}

async fn fetch_json(url: &str) -> Value {
    match reqwest::get(url).await {
        Ok(response) => response.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Sends a probe and says what happened: status, body or answering upstream, the headers the
/// upstream saw and those of the response, and how many requests each upstream received.
async fn send(probe: &Probe, upstreams: &Upstreams) -> Value {
    let address: SocketAddr = match (&probe.address, probe.port) {
        (Some(address), _) => address.parse().expect("a probe address IP:PORT"),
        (None, Some(port)) => SocketAddr::from(([127, 0, 0, 1], port)),
        (None, None) => unreachable!("checked when the scenario was loaded"),
    };
    let before = upstreams.counts();
    let mut answers = Vec::new();
    for _ in 0..probe.repeat {
        answers.push(match &probe.tcp {
            Some(message) => {
                json!({"tcp": tcp_exchange(address, message).await.unwrap_or_else(|e| {
                    // The error names the address, which is the same for both; keep its kind.
                    format!("error: {}", e.rsplit(": ").next().unwrap_or_default())
                })})
            }
            None => http(probe, address).await,
        });
    }
    if probe.settle_ms > 0 {
        tokio::time::sleep(Duration::from_millis(probe.settle_ms)).await;
    }
    let after = upstreams.counts();
    let received: Map<String, Value> = after
        .iter()
        .filter_map(|(name, count)| {
            let delta = count - before.get(name).copied().unwrap_or(0);
            (delta > 0).then(|| (name.clone(), Value::from(delta)))
        })
        .collect();
    if answers.len() == 1 {
        let answer = answers.pop().unwrap_or(Value::Null);
        return json!({"answer": answer, "upstream_requests": received});
    }
    // Repeated (weights, load balancing): which answers came back and which upstreams were
    // reached at all, not how many of each, which is chance.
    answers.sort_by_key(Value::to_string);
    answers.dedup();
    let reached: Vec<&String> = received.keys().collect();
    json!({"answers": answers, "upstreams_reached": reached})
}

async fn http(probe: &Probe, address: SocketAddr) -> Value {
    let client = reqwest::Client::builder()
        .no_proxy()
        // A redirect is an answer to compare, not to follow.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let method = reqwest::Method::from_bytes(probe.method.as_bytes()).expect("an HTTP method");
    let mut request = client.request(method, format!("http://{address}{}", probe.path));
    if let Some(host) = &probe.host {
        request = request.header("host", host);
    }
    for (name, value) in &probe.headers {
        request = request.header(name, value);
    }
    if let Some(body) = &probe.body {
        request = request.body(body.clone());
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            let kind = if error.is_timeout() {
                "timeout"
            } else if error.is_connect() {
                "connect"
            } else {
                "request"
            };
            return json!({"error": kind});
        }
    };
    let status = response.status().as_u16();
    let headers: Map<String, Value> = response
        .headers()
        .iter()
        .filter(|(name, _)| !VOLATILE_RESPONSE_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| {
            let value = value.to_str().unwrap_or_default();
            let value = if name == "set-cookie" {
                cookie_shape(value)
            } else {
                value.to_string()
            };
            (name.to_string(), Value::from(value))
        })
        .collect();
    let body = response.text().await.unwrap_or_default();
    let mut answer = json!({"status": status, "headers": headers});
    match serde_json::from_str::<Value>(&body) {
        Ok(mut echo) if echo.get("upstream").is_some() => {
            if let Some(seen) = echo["headers"].as_object_mut() {
                seen.retain(|name, _| !VOLATILE_REQUEST_HEADERS.contains(&name.as_str()));
            }
            answer["upstream"] = echo["upstream"].take();
            answer["upstream_path"] = echo["path"].take();
            answer["upstream_headers"] = echo["headers"].take();
        }
        _ => answer["body"] = Value::from(body),
    }
    answer
}

/// A cookie without its value: the value Envoy makes up for a hash-policy cookie comes from the
/// client's address and port, which differ from one request to the next.
fn cookie_shape(cookie: &str) -> String {
    match cookie.split_once('=') {
        Some((name, rest)) => {
            let attributes = rest
                .split_once(';')
                .map_or("", |(_, attributes)| attributes);
            format!("{name}=(value);{attributes}")
        }
        None => cookie.to_string(),
    }
}
