//! VirtualServices as istiod prepares them before translating (`pilot/pkg/model/virtualservice.go`,
//! `push_context.go`):
//! - short host names (own hosts, destinations, mirrors, TCP and TLS destinations) resolved to
//!   FQDNs in the object's namespace, `exportTo` resolved (`.` is the own namespace);
//! - delegates (VirtualServices without hosts) merged into the root VirtualServices whose
//!   `http[].delegate` names them (`mergeVirtualServicesIfNeeded`): each delegate route takes the
//!   root route's match (the delegate's match must narrow it) and inherits what it leaves unset;
//! - the result in istiod's precedence order: creation time, then name, then namespace.
//!
//! It also holds the host matching rules translation needs to pick VirtualServices for a proxy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::build::resolve_host;
use super::{ExportTo, MESH_GATEWAY, VirtualService};
use crate::diagnostic::ConfigError;
use crate::inputs::{IstioObject, Kind, Object, ObjectKey};
use crate::istio::{self, StringMatch, StringMatchMap};

fn namespace_of(namespace: &Option<String>) -> &str {
    namespace.as_deref().unwrap_or("default")
}

/// A VirtualService with its hosts, gateways, destinations and `exportTo` resolved (delegates are
/// not merged yet).
pub(crate) fn resolve(
    vs: &IstioObject<istio::VirtualService>,
    dns_domain: &str,
    default_export_to: &[String],
) -> VirtualService {
    let namespace = namespace_of(&vs.metadata.namespace);
    let resolve = |host: &str| resolve_host(host, namespace, dns_domain);
    let gateways = if vs.spec.gateways.is_empty() {
        vec![MESH_GATEWAY.to_string()]
    } else {
        vs.spec
            .gateways
            .iter()
            .map(|gateway| resolve_gateway(gateway, namespace))
            .collect()
    };
    let mut http = vs.spec.http.clone();
    for route in &mut http {
        for destination in &mut route.route {
            destination.destination.host = resolve(&destination.destination.host);
        }
        if let Some(mirror) = &mut route.mirror {
            mirror.host = resolve(&mirror.host);
        }
        for mirror in &mut route.mirrors {
            mirror.destination.host = resolve(&mirror.destination.host);
        }
        for request in &mut route.matches {
            for gateway in &mut request.gateways {
                *gateway = resolve_gateway(gateway, namespace);
            }
        }
    }
    let mut tcp = vs.spec.tcp.clone();
    for route in &mut tcp {
        for destination in &mut route.route {
            destination.destination.host = resolve(&destination.destination.host);
        }
        for request in &mut route.matches {
            for gateway in &mut request.gateways {
                *gateway = resolve_gateway(gateway, namespace);
            }
        }
    }
    let mut tls = vs.spec.tls.clone();
    for route in &mut tls {
        for destination in &mut route.route {
            destination.destination.host = resolve(&destination.destination.host);
        }
        for request in &mut route.matches {
            for gateway in &mut request.gateways {
                *gateway = resolve_gateway(gateway, namespace);
            }
        }
    }
    VirtualService {
        name: vs.metadata.name.clone(),
        namespace: namespace.to_string(),
        hosts: vs.spec.hosts.iter().map(|host| resolve(host)).collect(),
        gateways,
        http,
        tls,
        tcp,
        export_to: ExportTo::from_entries_or(&vs.spec.export_to, default_export_to, namespace),
    }
}

/// `mesh` stays; `name` means `namespace/name`.
fn resolve_gateway(gateway: &str, namespace: &str) -> String {
    if gateway == MESH_GATEWAY || gateway.contains('/') {
        gateway.to_string()
    } else {
        format!("{namespace}/{gateway}")
    }
}

/// The VirtualServices of the model, delegates merged into their roots, in precedence order; and
/// the delegations that could not be followed, as warnings on the root (it applies without them).
pub(crate) fn virtual_services<'a>(
    objects: impl Iterator<Item = &'a Object>,
    dns_domain: &str,
    default_export_to: &[String],
) -> (Vec<VirtualService>, Vec<ConfigError>) {
    let mut ordered: Vec<&IstioObject<istio::VirtualService>> = objects
        .filter_map(|object| match object {
            Object::VirtualService(vs) => Some(vs.as_ref()),
            _ => None,
        })
        .collect();
    ordered.sort_by_key(|vs| precedence_key(vs));
    let (delegates, roots): (Vec<VirtualService>, Vec<VirtualService>) = ordered
        .iter()
        .map(|vs| resolve(vs, dns_domain, default_export_to))
        .partition(|vs| vs.hosts.is_empty());
    let delegates: BTreeMap<(&str, &str), &VirtualService> = delegates
        .iter()
        .map(|vs| ((vs.namespace.as_str(), vs.name.as_str()), vs))
        .collect();
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(roots.len());
    for mut vs in roots {
        if vs.http.iter().all(|route| route.delegate.is_none()) {
            out.push(vs);
            continue;
        }
        let key = ObjectKey::new(Kind::VirtualService, vs.namespace.clone(), vs.name.clone());
        let routes = std::mem::take(&mut vs.http);
        let mut merged = vs;
        for (i, route) in routes.into_iter().enumerate() {
            let Some(delegate) = &route.delegate else {
                merged.http.push(route);
                continue;
            };
            let vs = &merged;
            let field = format!("spec.http[{i}].delegate");
            let namespace = delegate.namespace.as_deref().unwrap_or(&vs.namespace);
            let Some(target) = delegates.get(&(namespace, delegate.name.as_str())) else {
                errors.push(
                    ConfigError::new(format!(
                        "delegate VirtualService {namespace}/{} does not exist (or has hosts); this route is left out",
                        delegate.name
                    ))
                    .field(field)
                    .on(key.clone())
                    .warning(),
                );
                continue;
            };
            if target.visibility_rank(&vs.namespace).is_none() {
                errors.push(
                    ConfigError::new(format!(
                        "delegate VirtualService {namespace}/{} is not exported to namespace {}; this route is left out",
                        delegate.name, vs.namespace
                    ))
                    .field(field)
                    .on(key.clone())
                    .warning(),
                );
                continue;
            }
            let mut delegated = Vec::new();
            for (j, sub_route) in target.http.iter().enumerate() {
                match merge_http_route(&route, sub_route) {
                    Some(merged_route) => delegated.push(merged_route),
                    None => errors.push(
                        ConfigError::new(format!(
                            "route http[{j}] of delegate VirtualService {namespace}/{} matches requests outside this route's match; it is left out",
                            delegate.name
                        ))
                        .field(field.clone())
                        .on(key.clone())
                        .warning(),
                    ),
                }
            }
            merged.http.extend(delegated);
        }
        out.push(merged);
    }
    (out, errors)
}

/// istiod's order: creation time, then name, then namespace.
fn precedence_key(vs: &IstioObject<istio::VirtualService>) -> (&str, &str, &str) {
    (
        vs.metadata
            .creation_timestamp
            .as_deref()
            .unwrap_or_default(),
        vs.metadata.name.as_str(),
        vs.metadata.namespace.as_deref().unwrap_or_default(),
    )
}

/// A delegate route under its root route (`mergeHTTPRoute`): `None` when the delegate's match is
/// not within the root's.
fn merge_http_route(root: &istio::HttpRoute, leaf: &istio::HttpRoute) -> Option<istio::HttpRoute> {
    let mut out = leaf.clone();
    out.matches = merge_match_requests(&root.matches, &leaf.matches)?;
    out.name = join_names(root.name.as_deref(), leaf.name.as_deref());
    out.delegate = None;
    macro_rules! inherit {
        ($($field:ident),*) => {
            $(if out.$field.is_none() {
                out.$field = root.$field.clone();
            })*
        };
    }
    inherit!(
        rewrite,
        direct_response,
        timeout,
        retries,
        fault,
        mirror,
        mirror_percent,
        mirror_percent_camel_case,
        mirror_percentage,
        cors_policy,
        headers
    );
    if out.mirrors.is_empty() {
        out.mirrors = root.mirrors.clone();
    }
    Some(out)
}

fn join_names(root: Option<&str>, leaf: Option<&str>) -> Option<String> {
    let root = root.filter(|name| !name.is_empty());
    let leaf = leaf.filter(|name| !name.is_empty());
    match (root, leaf) {
        (Some(root), Some(leaf)) => Some(format!("{root}-{leaf}")),
        (root, leaf) => leaf.or(root).map(str::to_string),
    }
}

/// Every delegate match must narrow at least one root match; the result has one entry per
/// compatible pair.
fn merge_match_requests(
    root: &[istio::HttpMatchRequest],
    leaf: &[istio::HttpMatchRequest],
) -> Option<Vec<istio::HttpMatchRequest>> {
    if root.is_empty() {
        return Some(leaf.to_vec());
    }
    if leaf.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for leaf_match in leaf {
        let before = out.len();
        for root_match in root {
            if !has_conflict(root_match, leaf_match) {
                out.push(merge_match_request(root_match, leaf_match));
            }
        }
        if out.len() == before {
            return None;
        }
    }
    Some(out)
}

fn merge_match_request(
    root: &istio::HttpMatchRequest,
    leaf: &istio::HttpMatchRequest,
) -> istio::HttpMatchRequest {
    let mut out = leaf.clone();
    out.name = join_names(root.name.as_deref(), leaf.name.as_deref());
    macro_rules! inherit {
        ($($field:ident),*) => {
            $(if out.$field.is_none() {
                out.$field = root.$field.clone();
            })*
        };
    }
    inherit!(
        uri,
        scheme,
        method,
        authority,
        port,
        source_namespace,
        stat_prefix
    );
    out.headers = merge_maps(&root.headers, &leaf.headers);
    out.without_headers = merge_maps(&root.without_headers, &leaf.without_headers);
    out.query_params = merge_maps(&root.query_params, &leaf.query_params);
    let mut labels = root.source_labels.clone();
    labels.extend(leaf.source_labels.clone());
    out.source_labels = labels;
    if out.gateways.is_empty() {
        out.gateways = root.gateways.clone();
    }
    out
}

/// The root's entries, overridden by the leaf's.
fn merge_maps(root: &StringMatchMap, leaf: &StringMatchMap) -> StringMatchMap {
    let mut out = root.clone();
    for (name, matcher) in &leaf.matchers {
        out.present.remove(name);
        out.matchers.insert(name.clone(), matcher.clone());
    }
    for name in &leaf.present {
        out.matchers.remove(name);
        out.present.insert(name.clone());
    }
    out
}

/// A matcher as istiod's conflict check sees it: absent, empty (`{}` or an empty value), or one of
/// the three forms.
#[derive(Clone, Copy)]
enum Matcher<'a> {
    Absent,
    Empty,
    Exact(&'a str),
    Prefix(&'a str),
    Regex,
}

impl<'a> Matcher<'a> {
    fn of(matcher: Option<&'a StringMatch>) -> Self {
        match matcher {
            None => Matcher::Absent,
            Some(StringMatch::Exact(v) | StringMatch::Prefix(v) | StringMatch::Regex(v))
                if v.is_empty() =>
            {
                Matcher::Empty
            }
            Some(StringMatch::Exact(v)) => Matcher::Exact(v),
            Some(StringMatch::Prefix(v)) => Matcher::Prefix(v),
            Some(StringMatch::Regex(_)) => Matcher::Regex,
        }
    }

    fn in_map(map: &'a StringMatchMap, name: &str) -> Self {
        if map.present.contains(name) {
            Matcher::Empty
        } else {
            Matcher::of(map.get(name))
        }
    }

    fn is_set(self) -> bool {
        matches!(
            self,
            Matcher::Exact(_) | Matcher::Prefix(_) | Matcher::Regex
        )
    }
}

/// istiod's `stringMatchConflict`: the leaf must be an exact value or a prefix within the root's.
fn string_match_conflict(root: Matcher<'_>, leaf: Matcher<'_>) -> bool {
    match (root, leaf) {
        (Matcher::Absent, _) | (_, Matcher::Absent) => false,
        (Matcher::Regex, leaf) if leaf.is_set() => true,
        (root, Matcher::Regex) if root.is_set() => true,
        (Matcher::Exact(root), Matcher::Exact(leaf)) => root != leaf,
        (Matcher::Prefix(root), Matcher::Prefix(leaf) | Matcher::Exact(leaf)) => {
            !leaf.starts_with(root)
        }
        _ => true,
    }
}

/// istiod's `hasConflict`: whether a delegate match can not be narrowed from a root match.
fn has_conflict(root: &istio::HttpMatchRequest, leaf: &istio::HttpMatchRequest) -> bool {
    let singles = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ];
    if singles.iter().any(|(root, leaf)| {
        string_match_conflict(Matcher::of(root.as_ref()), Matcher::of(leaf.as_ref()))
    }) {
        return true;
    }
    let maps = [
        (&root.headers, &leaf.headers),
        (&root.without_headers, &leaf.without_headers),
        (&root.query_params, &leaf.query_params),
    ];
    for (root_map, leaf_map) in maps {
        let names = leaf_map.matchers.keys().chain(&leaf_map.present);
        for name in names {
            if string_match_conflict(
                Matcher::in_map(root_map, name),
                Matcher::in_map(leaf_map, name),
            ) {
                return true;
            }
        }
    }
    if root.ignore_uri_case != leaf.ignore_uri_case {
        return true;
    }
    if let (Some(root_port), Some(leaf_port)) = (root.port, leaf.port)
        && root_port > 0
        && leaf_port > 0
        && root_port != leaf_port
    {
        return true;
    }
    if let Some(namespace) = root.source_namespace.as_deref().filter(|ns| !ns.is_empty())
        && leaf.source_namespace.as_deref() != Some(namespace)
    {
        return true;
    }
    if leaf
        .source_labels
        .iter()
        .any(|(key, value)| root.source_labels.get(key).is_some_and(|v| v != value))
    {
        return true;
    }
    if !root.gateways.is_empty() && !leaf.gateways.is_empty() {
        let root_gateways: BTreeSet<&String> = root.gateways.iter().collect();
        if root.gateways.len() < leaf.gateways.len()
            || leaf.gateways.iter().any(|g| !root_gateways.contains(g))
        {
            return true;
        }
    }
    false
}

/// The VirtualServices a sidecar in `namespace` uses, in istiod's order: bound to `mesh` and
/// exported to the namespace; those private to it first, then those exported to it by name, then
/// public ones, each group in precedence order.
pub fn for_sidecar<'m>(
    virtual_services: &'m [Arc<VirtualService>],
    namespace: &str,
) -> Vec<&'m VirtualService> {
    bound_to(virtual_services, namespace, MESH_GATEWAY)
}

/// The VirtualServices bound to `gateway` (`namespace/name`, or `mesh`) that proxies in
/// `namespace` see, in istiod's order (as [`for_sidecar`]), of `virtual_services` (the model's,
/// or those a proxy's view holds).
pub fn bound_to<'m>(
    virtual_services: &'m [Arc<VirtualService>],
    namespace: &str,
    gateway: &str,
) -> Vec<&'m VirtualService> {
    let mut visible: Vec<(u8, &VirtualService)> = virtual_services
        .iter()
        .filter(|vs| vs.gateways.iter().any(|g| g == gateway))
        .filter_map(|vs| Some((vs.visibility_rank(namespace)?, &**vs)))
        .collect();
    visible.sort_by_key(|(rank, _)| *rank);
    visible.into_iter().map(|(_, vs)| vs).collect()
}

/// istiod's `host.Name.Matches`: equal names, or a wildcard (`*.example.com`, `*`) that covers the
/// other name (in either direction).
pub fn hosts_match(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (None, None) => a == b,
        (Some(suffix), None) => b.ends_with(suffix),
        (None, Some(suffix)) => a.ends_with(suffix),
        (Some(a_suffix), Some(b_suffix)) => {
            a_suffix.ends_with(b_suffix) || b_suffix.ends_with(a_suffix)
        }
    }
}

/// istiod's `host.Name.SubsetOf`: every name `a` covers is covered by `b`.
pub fn host_subset_of(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (None, None) => a == b,
        (_, Some(suffix)) => a.ends_with(suffix),
        (Some(_), None) => false,
    }
}

/// gRPC status names, by code.
const GRPC_STATUS: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The code of a gRPC status name such as `UNAVAILABLE`.
pub fn grpc_status_code(name: &str) -> Option<usize> {
    GRPC_STATUS.iter().position(|status| *status == name)
}

/// The status codes Go's `http.StatusText` knows: istiod reads these (and only these) in
/// `retryOn` as retriable status codes.
pub fn is_known_http_status(code: u32) -> bool {
    matches!(code,
        100..=103 | 200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418 | 421..=426 | 428 | 429
        | 431 | 451 | 500..=508 | 510 | 511)
}

/// The largest direct response body istiod allows, and the limit it sets on route
/// configurations (Envoy's default is 4KiB).
pub const MAX_DIRECT_RESPONSE_BODY: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn request(yaml: &str) -> istio::HttpMatchRequest {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn delegate_matches_must_narrow_the_root() {
        let root = request("uri: {prefix: /api}\nheaders: {x-team: {exact: a}}");
        assert!(!has_conflict(&root, &request("uri: {prefix: /api/v1}")));
        assert!(!has_conflict(&root, &request("uri: {exact: /api/x}")));
        assert!(has_conflict(&root, &request("uri: {prefix: /other}")));
        assert!(has_conflict(&root, &request("uri: {regex: /api.*}")));
        assert!(has_conflict(
            &root,
            &request("headers: {x-team: {exact: b}}")
        ));
        assert!(!has_conflict(
            &root,
            &request("headers: {x-team: {exact: a}}")
        ));
        assert!(has_conflict(&root, &request("ignoreUriCase: true")));

        let merged = merge_match_request(
            &root,
            &request("uri: {prefix: /api/v1}\nheaders: {x-user: {}}"),
        );
        assert_eq!(merged.uri, Some(StringMatch::Prefix("/api/v1".into())));
        assert_eq!(
            merged.headers.get("x-team"),
            Some(&StringMatch::Exact("a".into()))
        );
        assert!(merged.headers.present.contains("x-user"));
    }

    #[test]
    fn host_matching_follows_istiod() {
        assert!(hosts_match("*.example.com", "a.example.com"));
        assert!(hosts_match("a.example.com", "*.example.com"));
        assert!(hosts_match("*", "a.example.com"));
        assert!(hosts_match("*.a.example.com", "*.example.com"));
        assert!(!hosts_match("a.example.com", "b.example.com"));
        assert!(host_subset_of("a.example.com", "*.example.com"));
        assert!(host_subset_of("*.a.example.com", "*.example.com"));
        assert!(!host_subset_of("*.example.com", "a.example.com"));
    }

    /// The model built from YAML text.
    fn model(yaml: &str) -> crate::model::Built {
        crate::model::build(
            &crate::inputs::from_test_yaml(yaml),
            &crate::model::LastGood::default(),
        )
    }

    const SERVICES: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{name: http, port: 80}]}\n\
                            ---\napiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: team}\nspec: {ports: [{name: http, port: 80}]}\n";

    fn vs(name: &str, namespace: &str, spec: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}"
        )
    }

    #[test]
    fn delegates_merge_into_their_roots_when_exported_to_them() {
        let yaml = [
            SERVICES.to_string(),
            vs(
                "root",
                "default",
                "  hosts: [web]\n  http:\n  - name: api\n    match: [{uri: {prefix: /api}}]\n    timeout: 2s\n    \
                 delegate: {name: exported, namespace: team}\n  - delegate: {name: private, namespace: team}\n  \
                 - route: [{destination: {host: web}}]\n",
            ),
            vs(
                "exported",
                "team",
                "  exportTo: [default]\n  http:\n  - name: v1\n    match: [{uri: {prefix: /api/v1}}]\n    \
                 route: [{destination: {host: api}}]\n  - route: [{destination: {host: api}}]\n",
            ),
            vs(
                "private",
                "team",
                "  exportTo: [.]\n  http:\n  - route: [{destination: {host: api}}]\n",
            ),
        ]
        .concat();
        let built = model(&yaml);
        let names: Vec<&str> = built
            .model
            .virtual_services
            .iter()
            .map(|vs| vs.name.as_str())
            .collect();
        assert_eq!(names, ["root"], "delegates are not listed themselves");
        let root = &built.model.virtual_services[0];
        let routes: Vec<(Option<&str>, Option<&StringMatch>, &str)> = root
            .http
            .iter()
            .map(|route| {
                (
                    route.name.as_deref(),
                    route.matches.first().and_then(|m| m.uri.as_ref()),
                    route.route[0].destination.host.as_str(),
                )
            })
            .collect();
        let api = "api.team.svc.cluster.local";
        assert_eq!(
            routes,
            [
                (
                    Some("api-v1"),
                    Some(&StringMatch::Prefix("/api/v1".into())),
                    api
                ),
                (Some("api"), Some(&StringMatch::Prefix("/api".into())), api),
                (None, None, "web.default.svc.cluster.local"),
            ]
        );
        assert!(
            root.http[..2].iter().all(|r| r.timeout.is_some()),
            "inherited from the root"
        );
        let errors: Vec<String> = built.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "test.yaml:11: VirtualService default/root: spec.http[1].delegate: warning: delegate VirtualService team/private is not exported to namespace default; this route is left out",
                // As istiod's validation says: the delegate without matches catches all.
                "test.yaml:11: VirtualService default/root: spec.http[2]: warning: [IST0130] virtualService rule #2 not used (only the last rule can have no matches)",
            ]
        );
    }

    #[test]
    fn export_to_decides_who_sees_a_rule_and_in_which_order() {
        let yaml = [
            SERVICES.to_string(),
            vs("public", "team", "  hosts: [api]\n  http: [{route: [{destination: {host: api}}]}]\n"),
            vs(
                "named",
                "team",
                "  hosts: [api]\n  exportTo: [., default]\n  http: [{route: [{destination: {host: api}}]}]\n",
            ),
            vs(
                "own",
                "default",
                "  hosts: [api.team.svc.cluster.local]\n  exportTo: [default]\n  \
                 http: [{route: [{destination: {host: api.team.svc.cluster.local}}]}]\n",
            ),
        ]
        .concat();
        let built = model(&yaml);
        // All three define the host for the default namespace's sidecars, which istioctl analyze
        // reports (IST0109); they apply all the same.
        assert!(
            built
                .errors
                .iter()
                .all(|error| error.is_warning() && error.message.starts_with("[IST0109]")),
            "{:?}",
            built.errors
        );
        let seen = |namespace: &str| -> Vec<String> {
            for_sidecar(&built.model.virtual_services, namespace)
                .iter()
                .map(|vs| vs.name.clone())
                .collect()
        };
        assert_eq!(seen("default"), ["own", "named", "public"]);
        assert_eq!(seen("team"), ["named", "public"]);
        assert_eq!(seen("elsewhere"), ["public"]);
    }

    #[test]
    fn names_join_like_istiod() {
        assert_eq!(join_names(Some("r"), Some("d")).as_deref(), Some("r-d"));
        assert_eq!(join_names(None, Some("d")).as_deref(), Some("d"));
        assert_eq!(join_names(Some("r"), None).as_deref(), Some("r"));
        assert_eq!(join_names(None, None), None);
    }
}
