//! One debug request, by endpoint name and query (`syncz`, `config_dump?proxyID=ID`), answered
//! from the xDS registry and the current snapshot. The one table of debug endpoints behind both
//! ways of asking: `GET /debug/NAME?QUERY` on the admin port, and the xDS type `istio.io/debug`
//! with the resource name `NAME?QUERY` (istiod answers that type from its HTTP debug handlers;
//! `istioctl x internal-debug` asks it), so the two always answer the same.
//!
//! Pure and synchronous: the callers run it under their debug bounds (`admin::work`, the xDS
//! server's debug semaphore); it never touches the network nor blocks on anything but the
//! registry's lock. What a caller may see is its [`Scope`]: the admin port's callers are all of
//! the system namespace; an xDS caller of another namespace reaches only config dumps of the
//! connected proxies of its own namespace.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::Value;

use super::istiod::{self, DumpShape};
use crate::envoy_json;
use crate::proxy::Proxy;
use crate::translate::{self, ResourceType};
use crate::xds::debug::Scope;
use crate::xds::{FindError, Registry, Snapshot};

/// What a debug view reads.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub registry: &'a Registry,
    pub snapshot: &'a Snapshot,
}

/// A debug answer: a status (the xDS type carries the body only, as istiod's) and a body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Json(Value),
    /// A one-line message ending in a newline, as istiod's plain-text answers.
    Text(String),
}

impl Answer {
    fn json(value: Value) -> Answer {
        Answer {
            status: StatusCode::OK,
            body: Body::Json(value),
        }
    }

    fn text(status: StatusCode, message: impl Into<String>) -> Answer {
        let mut message = message.into();
        if !message.ends_with('\n') {
            message.push('\n');
        }
        Answer {
            status,
            body: Body::Text(message),
        }
    }

    /// The body as the xDS type carries it: compact JSON (istiod's without `?pretty`), or the
    /// message.
    pub fn into_bytes(self) -> Vec<u8> {
        match self.body {
            Body::Json(value) => serde_json::to_vec(&value).unwrap_or_default(),
            Body::Text(message) => message.into_bytes(),
        }
    }
}

/// The endpoints an xDS caller outside the system namespace may ask for (istiod's
/// `activeNamespaceDebuggers`; rudder has no `ndsz`).
pub fn open_to_every_namespace(request: &str) -> bool {
    let (name, _) = split(request);
    matches!(name, "config_dump" | "edsz")
}

/// Answers `request`, `NAME` or `NAME?QUERY` (a leading `/debug/` is allowed).
pub fn answer(request: &str, sources: Sources<'_>, scope: &Scope) -> Answer {
    let (name, query) = split(request);
    let query = Query::parse(query);
    let Sources { registry, snapshot } = sources;
    match name {
        "list" => Answer::json(istiod::list_view()),
        "syncz" => {
            let namespace = match scope {
                Scope::All => query.get("namespace"),
                Scope::Namespace(own) => Some(own.as_str()),
            };
            Answer::json(istiod::syncz_view(registry, namespace))
        }
        "streamz" => json_of(&super::syncz_view(registry)),
        "adsz" => match query.get("proxyID") {
            None => Answer::json(istiod::adsz_all(registry)),
            Some(id) => match registry.find(id) {
                Ok(connected) => Answer::json(istiod::adsz_view(&[connected])),
                Err(error) => Answer::text(StatusCode::NOT_FOUND, error.to_string()),
            },
        },
        "connections" => Answer::json(istiod::connections_view(&registry.connected())),
        "peerz" => json_of(&super::peerz_view(registry)),
        "registryz" => Answer::json(istiod::registryz_view(&snapshot.model)),
        "endpointz" | "endpointShardz" => Answer::json(istiod::endpointz_view(&snapshot.model)),
        "clusterz" => Answer::json(istiod::clusterz_view()),
        "configz" => Answer::json(istiod::configz_view(&snapshot.inputs)),
        "inputz" => Answer::json(super::inputz::inputz_view(snapshot)),
        "config_dump" => {
            let shape = match query.get("types") {
                Some(types) => match types_of(types) {
                    Ok(types) => DumpShape::Types(types),
                    Err(unknown) => {
                        return Answer::text(
                            StatusCode::BAD_REQUEST,
                            format!("unknown resource type {unknown:?} in ?types="),
                        );
                    }
                },
                None => DumpShape::Whole {
                    include_eds: query.has("include_eds"),
                },
            };
            istiod_dump(&query, sources, scope, &shape)
        }
        "edsz" => istiod_dump(
            &query,
            sources,
            scope,
            &DumpShape::Types(vec![ResourceType::Endpoint]),
        ),
        "envoy_config_dump" => dump(&query, sources, scope, |resources, versions| {
            envoy_json::config_dump(resources, |ty| {
                versions.get(&ty).cloned().unwrap_or_default()
            })
        }),
        // Go's answer for a path no handler serves, which istioctl looks for to list the
        // endpoints instead.
        _ => Answer::text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// `NAME` and `QUERY` of `[/debug/]NAME[?QUERY]`.
fn split(request: &str) -> (&str, &str) {
    let request = request.trim_start_matches('/');
    let request = request.strip_prefix("debug/").unwrap_or(request);
    request.split_once('?').unwrap_or((request, ""))
}

fn json_of<T: serde::Serialize>(view: &T) -> Answer {
    match serde_json::to_value(view) {
        Ok(value) => Answer::json(value),
        Err(error) => Answer::text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
}

/// `cds,eds`: the types, or the first name that is none.
fn types_of(list: &str) -> Result<Vec<ResourceType>, String> {
    list.split(',')
        .filter(|name| !name.is_empty())
        .map(|name| {
            ResourceType::ALL
                .into_iter()
                .find(|ty| ty.short_name() == name || ty.type_url() == name)
                .ok_or_else(|| name.to_string())
        })
        .collect()
}

fn istiod_dump(query: &Query, sources: Sources<'_>, scope: &Scope, shape: &DumpShape) -> Answer {
    dump(query, sources, scope, |resources, versions| {
        istiod::config_dump_view(
            resources,
            |ty| versions.get(&ty).cloned().unwrap_or_default(),
            shape,
        )
    })
}

/// A config dump of `?proxyID=`, rendered by `render` from the proxy's resources and the
/// versions it was sent. A connected proxy is dumped as identified on its stream (metadata
/// included); for the admin port's callers, any other node id is dumped as if it connected
/// without metadata, with empty versions (istiod knows connected proxies only).
fn dump(
    query: &Query,
    sources: Sources<'_>,
    scope: &Scope,
    render: impl FnOnce(
        &translate::Resources,
        &BTreeMap<ResourceType, String>,
    ) -> Result<Value, envoy_json::JsonError>,
) -> Answer {
    let Some(proxy_id) = query.get("proxyID") else {
        return Answer::text(
            StatusCode::BAD_REQUEST,
            "You must provide a proxyID in the query string",
        );
    };
    let snapshot = sources.snapshot;
    let (proxy, versions) = match sources.registry.find(proxy_id) {
        Ok(connected) if scope.sees(&connected.proxy.namespace) => {
            let versions = connected
                .types
                .into_iter()
                .filter_map(|(ty, status)| Some((ty, status.sent?)))
                .collect();
            (connected.proxy, versions)
        }
        Err(error @ FindError::Ambiguous { .. }) if *scope == Scope::All => {
            return Answer::text(StatusCode::BAD_REQUEST, error.to_string());
        }
        // Out of the caller's scope, or ambiguous (whose message names proxies of other
        // namespaces): as if not connected.
        Ok(_) | Err(FindError::Ambiguous { .. }) => {
            let error = FindError::NotConnected(proxy_id.to_string());
            return Answer::text(StatusCode::NOT_FOUND, error.to_string());
        }
        Err(error @ FindError::NotConnected(_)) => {
            // A short form of no connected proxy, or a caller limited to the connected proxies
            // of its namespace: istiod's 404.
            if *scope != Scope::All || !proxy_id.contains('~') {
                return Answer::text(StatusCode::NOT_FOUND, error.to_string());
            }
            match Proxy::parse(proxy_id, &Value::Null) {
                Ok(proxy) => (proxy.with_workload_labels(&snapshot.model), BTreeMap::new()),
                Err(error) => return Answer::text(StatusCode::BAD_REQUEST, error.to_string()),
            }
        }
    };
    let resources = translate::translate(&snapshot.model, &proxy);
    match render(&resources, &versions) {
        Ok(dump) => Answer::json(dump),
        Err(error) => Answer::text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
}

/// A URL query: its parameters, the first of each name kept.
struct Query(BTreeMap<String, String>);

impl Query {
    fn parse(query: &str) -> Query {
        let mut parameters = BTreeMap::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            parameters
                .entry(percent_decode(name))
                .or_insert_with(|| percent_decode(value));
        }
        Query(parameters)
    }

    /// A non-empty parameter (istiod treats `?proxyID=` as no proxy id).
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte; a malformed
/// escape stays as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let escaped = (byte == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (byte, escaped) {
            (_, Some(value)) => {
                decoded.push(value);
                index += 3;
            }
            (b'+', None) => {
                decoded.push(b' ');
                index += 1;
            }
            (other, None) => {
                decoded.push(other);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(request: &str, scope: &Scope) -> Answer {
        let registry = Registry::default();
        let snapshot = Snapshot::default();
        answer(
            request,
            Sources {
                registry: &registry,
                snapshot: &snapshot,
            },
            scope,
        )
    }

    #[test]
    fn requests_name_an_endpoint_and_a_query() {
        assert_eq!(split("/debug/adsz?proxyID=a"), ("adsz", "proxyID=a"));
        assert_eq!(split("config_dump"), ("config_dump", ""));
        let query = Query::parse("proxyID=web-1.shop&include_eds&x=%7E+y&proxyID=other");
        assert_eq!(query.get("proxyID"), Some("web-1.shop"));
        assert!(query.has("include_eds") && query.get("include_eds").is_none());
        assert_eq!(query.get("x"), Some("~ y"));
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn unknown_endpoints_get_gos_404_and_dumps_want_a_proxy() {
        let unknown = ask("nosuch", &Scope::All);
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_eq!(unknown.into_bytes(), b"404 page not found\n");
        let dump = ask("config_dump", &Scope::All);
        assert_eq!(dump.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            ask("config_dump?proxyID=web-1.shop", &Scope::All).status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            ask("config_dump?proxyID=x&types=cds,nds", &Scope::All).status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn other_namespaces_get_no_dump_of_a_proxy_that_is_not_theirs() {
        let id = "sidecar~10.0.0.1~web-1.shop~shop.svc.cluster.local";
        let whole = ask(&format!("config_dump?proxyID={id}"), &Scope::All);
        assert_eq!(whole.status, StatusCode::OK);
        let shop = Scope::Namespace("shop".to_string());
        // Not connected: the admin port dumps any node id, an xDS caller's scope does not.
        assert_eq!(
            ask(&format!("config_dump?proxyID={id}"), &shop).status,
            StatusCode::NOT_FOUND
        );
        assert!(open_to_every_namespace("config_dump?proxyID=x"));
        assert!(open_to_every_namespace("edsz"));
        assert!(!open_to_every_namespace("syncz"));
        assert!(!open_to_every_namespace("configz"));
    }

    #[test]
    fn an_ambiguous_name_tells_a_scoped_caller_nothing_of_other_namespaces() {
        use crate::xds::ConnectedProxy;
        use crate::xds::debug::NodeInfo;
        let registry = Registry::default();
        for id in [
            "sidecar~10.0.0.1~web-1.shop~shop.svc.cluster.local",
            "sidecar~10.0.0.2~web-1.edge~edge.svc.cluster.local",
        ] {
            registry.update(ConnectedProxy {
                proxy: Proxy::parse(id, &Value::Null).unwrap(),
                connection: 1,
                delta: false,
                peer: None,
                identity: None,
                node: NodeInfo::default(),
                connected_at: std::time::SystemTime::UNIX_EPOCH,
                types: BTreeMap::new(),
                sent_at: BTreeMap::new(),
                watches: BTreeMap::new(),
            });
        }
        let snapshot = Snapshot::default();
        let sources = Sources {
            registry: &registry,
            snapshot: &snapshot,
        };
        let all = answer("config_dump?proxyID=web-1", sources, &Scope::All);
        assert_eq!(all.status, StatusCode::BAD_REQUEST);
        let shop = Scope::Namespace("shop".to_string());
        let scoped = answer("config_dump?proxyID=web-1", sources, &shop);
        assert_eq!(scoped.status, StatusCode::NOT_FOUND);
        assert!(!String::from_utf8_lossy(&scoped.into_bytes()).contains("edge"));
        let own = answer("config_dump?proxyID=web-1.shop", sources, &shop);
        assert_eq!(own.status, StatusCode::OK);
        let other = answer("config_dump?proxyID=web-1.edge", sources, &shop);
        assert_eq!(other.status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn istiods_config_dump_is_camel_case_in_istiods_order() {
        let id = "sidecar~10.0.0.1~web-1.shop~shop.svc.cluster.local";
        let Body::Json(dump) = ask(&format!("config_dump?proxyID={id}"), &Scope::All).body else {
            panic!("a JSON dump");
        };
        let types: Vec<&str> = dump["configs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|config| config["@type"].as_str().unwrap())
            .collect();
        let admin = |name: &str| format!("type.googleapis.com/envoy.admin.v3.{name}");
        assert_eq!(
            types,
            [
                "BootstrapConfigDump",
                "ClustersConfigDump",
                "ListenersConfigDump",
                "ScopedRoutesConfigDump",
                "RoutesConfigDump",
                "SecretsConfigDump",
                "EcdsConfigDump",
            ]
            .map(admin)
        );
        let clusters = &dump["configs"][1]["dynamicActiveClusters"];
        assert!(clusters.as_array().is_some_and(|c| !c.is_empty()), "{dump}");
        assert!(clusters[0]["cluster"]["name"].is_string(), "{dump}");
        let Body::Json(with_eds) = ask(
            &format!("config_dump?proxyID={id}&include_eds"),
            &Scope::All,
        )
        .body
        else {
            panic!("a JSON dump");
        };
        assert_eq!(
            with_eds["configs"][2]["@type"],
            admin("EndpointsConfigDump")
        );
    }
}
