//! RDS: one route configuration per HTTP port (named `"PORT"`), one virtual host per service on
//! that port (`HOST:PORT`, with Istio's domains), routes from the first VirtualService for that
//! host in precedence order (or istiod's default route), and a last catch-all host that passes
//! unknown destinations through.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, HeaderValue, HeaderValueOption, data_source,
};
use envoy_types::pb::envoy::config::route::v3::redirect_action::{
    PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier,
};
use envoy_types::pb::envoy::config::route::v3::retry_policy::{
    RetryHostPredicate, retry_host_predicate,
};
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::{
    ClusterSpecifier, HostRewriteSpecifier, MaxStreamDuration,
};
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::weighted_cluster::ClusterWeight;
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, HeaderMatcher, QueryParameterMatcher, RedirectAction, RetryPolicy, Route,
    RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster, header_matcher,
    query_parameter_matcher,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use super::{PASSTHROUGH_CLUSTER, outbound_cluster_name, proto_duration, typed_config};
use crate::istio::{self, StringMatch};
use crate::model::{Model, Service, VirtualService};
use crate::proxy::Proxy;

/// istiod's retry defaults for every route without a retry policy of its own.
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_RETRIABLE_STATUS: u32 = 503;
const HOST_SELECTION_RETRY_MAX_ATTEMPTS: i64 = 5;

pub fn routes(
    model: &Model,
    proxy: &Proxy,
    names: &BTreeSet<String>,
) -> BTreeMap<String, RouteConfiguration> {
    names
        .iter()
        .filter_map(|name| {
            let port: u16 = name.parse().ok()?;
            Some((name.clone(), route_configuration(model, proxy, name, port)))
        })
        .collect()
}

fn route_configuration(model: &Model, proxy: &Proxy, name: &str, port: u16) -> RouteConfiguration {
    let mut used_domains = BTreeSet::new();
    let mut virtual_hosts = Vec::new();
    let services = model
        .services
        .values()
        .filter(|service| service.port(port).is_some_and(|p| p.protocol.is_http()));
    let rules = SidecarRules::new(model);
    for service in services {
        let rule = rules.for_host(&service.hostname);
        let routes = match rule {
            Some(vs) => virtual_service_routes(vs, model, proxy, port),
            None => vec![default_route(outbound_cluster_name(
                port,
                "",
                &service.hostname,
            ))],
        };
        let domains: Vec<String> = domains(service, proxy)
            .into_iter()
            .filter(|domain| used_domains.insert(domain.clone()))
            .collect();
        if domains.is_empty() {
            continue;
        }
        virtual_hosts.push(VirtualHost {
            name: format!("{}:{port}", service.hostname),
            domains,
            routes,
            include_request_attempt_count: true,
            ..Default::default()
        });
    }
    virtual_hosts.push(allow_any_virtual_host());
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts,
        validate_clusters: Some(BoolValue { value: false }),
        ignore_port_in_host_matching: true,
        ..Default::default()
    }
}

/// The VirtualServices that apply to sidecars, indexed by host. A host named exactly wins over a
/// wildcard; among equals, the first in precedence order wins.
struct SidecarRules<'m> {
    exact: BTreeMap<&'m str, &'m VirtualService>,
    /// `(suffix, rule)` for hosts such as `*.example.com` (suffix `.example.com`) and `*`.
    wildcards: Vec<(&'m str, &'m VirtualService)>,
}

impl<'m> SidecarRules<'m> {
    fn new(model: &'m Model) -> Self {
        let mut rules = SidecarRules {
            exact: BTreeMap::new(),
            wildcards: Vec::new(),
        };
        for vs in model
            .virtual_services
            .iter()
            .filter(|vs| vs.applies_to_sidecars())
        {
            for host in &vs.hosts {
                match host.strip_prefix('*') {
                    Some(suffix) => rules.wildcards.push((suffix, vs)),
                    None => {
                        rules.exact.entry(host.as_str()).or_insert(vs);
                    }
                }
            }
        }
        rules
    }

    fn for_host(&self, host: &str) -> Option<&'m VirtualService> {
        self.exact.get(host).copied().or_else(|| {
            self.wildcards
                .iter()
                .find(|(suffix, _)| host.ends_with(suffix))
                .map(|(_, vs)| *vs)
        })
    }
}

/// The names a service answers to: the short name from its own namespace only, then
/// `name.namespace`, `name.namespace.svc`, the FQDN and its cluster IPs.
fn domains(service: &Service, proxy: &Proxy) -> Vec<String> {
    let mut domains = vec![service.hostname.clone()];
    if service.namespace == proxy.namespace {
        domains.push(service.name.clone());
    }
    domains.push(format!("{}.{}.svc", service.name, service.namespace));
    domains.push(format!("{}.{}", service.name, service.namespace));
    domains.extend(service.cluster_ips.iter().map(ToString::to_string));
    domains
}

fn allow_any_virtual_host() -> VirtualHost {
    let mut route = default_route(PASSTHROUGH_CLUSTER.to_string());
    route.name = "allow_any".to_string();
    if let Some(Action::Route(action)) = &mut route.action {
        action.retry_policy = None;
    }
    VirtualHost {
        name: "allow_any".to_string(),
        domains: vec!["*".to_string()],
        routes: vec![route],
        include_request_attempt_count: true,
        ..Default::default()
    }
}

/// istiod's route for a service without a VirtualService.
fn default_route(cluster: String) -> Route {
    Route {
        name: "default".to_string(),
        r#match: Some(prefix_match("/")),
        action: Some(Action::Route(RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster(cluster)),
            ..route_action_defaults(None, Some(&default_retry_policy()))
        })),
        ..Default::default()
    }
}

fn prefix_match(prefix: &str) -> RouteMatch {
    RouteMatch {
        path_specifier: Some(PathSpecifier::Prefix(prefix.to_string())),
        ..Default::default()
    }
}

/// Timeout (none by default: `0s` turns off Envoy's 15s), the same cap for gRPC timeouts, and the
/// retry policy.
fn route_action_defaults(
    timeout: Option<std::time::Duration>,
    retry_policy: Option<&RetryPolicy>,
) -> RouteAction {
    let timeout = proto_duration(timeout.unwrap_or_default());
    RouteAction {
        timeout: Some(timeout),
        max_stream_duration: Some(MaxStreamDuration {
            max_stream_duration: Some(timeout),
            grpc_timeout_header_max: Some(timeout),
            ..Default::default()
        }),
        retry_policy: retry_policy.cloned(),
        ..Default::default()
    }
}

fn default_retry_policy() -> RetryPolicy {
    RetryPolicy {
        retry_on: DEFAULT_RETRY_ON.to_string(),
        num_retries: Some(UInt32Value {
            value: DEFAULT_RETRIES,
        }),
        retriable_status_codes: vec![DEFAULT_RETRIABLE_STATUS],
        retry_host_predicate: vec![RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".to_string(),
            config_type: typed_config(&PreviousHostsPredicate::default())
                .map(retry_host_predicate::ConfigType::TypedConfig),
        }],
        host_selection_retry_max_attempts: HOST_SELECTION_RETRY_MAX_ATTEMPTS,
        ..Default::default()
    }
}

/// istiod's conversion: no `retries` means the default policy, `attempts: 0` means none, and
/// numbers in `retryOn` are retriable status codes.
fn retry_policy(retries: Option<&istio::HttpRetry>) -> Option<RetryPolicy> {
    let mut policy = default_retry_policy();
    let Some(retries) = retries else {
        return Some(policy);
    };
    let attempts = u32::try_from(retries.attempts)
        .ok()
        .filter(|attempts| *attempts > 0)?;
    policy.num_retries = Some(UInt32Value { value: attempts });
    if let Some(retry_on) = retries.retry_on.as_deref().filter(|r| !r.trim().is_empty()) {
        let (codes, conditions): (Vec<&str>, Vec<&str>) = retry_on
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .partition(|part| {
                part.parse::<u32>()
                    .is_ok_and(|code| (100..600).contains(&code))
            });
        policy.retriable_status_codes = codes.iter().filter_map(|code| code.parse().ok()).collect();
        policy.retry_on = conditions.join(",");
        if !policy.retriable_status_codes.is_empty()
            && !policy.retry_on.contains("retriable-status-codes")
        {
            if !policy.retry_on.is_empty() {
                policy.retry_on.push(',');
            }
            policy.retry_on.push_str("retriable-status-codes");
        }
    }
    if let Some(per_try) = retries.per_try_timeout {
        policy.per_try_timeout = Some(proto_duration(per_try.0));
    }
    Some(policy)
}

/// The routes of one VirtualService as this proxy on this port sees them: each `match` entry is
/// one route, entries that do not apply to the proxy are left out, and generation stops after
/// the first route that matches everything.
fn virtual_service_routes(
    vs: &VirtualService,
    model: &Model,
    proxy: &Proxy,
    port: u16,
) -> Vec<Route> {
    let mut routes = Vec::new();
    for http in &vs.http {
        let action = route_action(http, model, port);
        let matches: Vec<Option<&istio::HttpMatchRequest>> = if http.matches.is_empty() {
            vec![None]
        } else {
            http.matches
                .iter()
                .filter(|m| applies(m, proxy, port))
                .map(Some)
                .collect()
        };
        for request in matches {
            let route_match = route_match(request);
            let catch_all = is_catch_all(&route_match);
            routes.push(Route {
                name: route_name(http, request),
                r#match: Some(route_match),
                action: Some(action.clone()),
                request_headers_to_add: header_options(
                    http.headers.as_ref().and_then(|h| h.request.as_ref()),
                    true,
                ),
                request_headers_to_remove: removed(
                    http.headers.as_ref().and_then(|h| h.request.as_ref()),
                ),
                response_headers_to_add: header_options(
                    http.headers.as_ref().and_then(|h| h.response.as_ref()),
                    false,
                ),
                response_headers_to_remove: removed(
                    http.headers.as_ref().and_then(|h| h.response.as_ref()),
                ),
                ..Default::default()
            });
            if catch_all {
                return routes;
            }
        }
    }
    routes
}

fn route_name(http: &istio::HttpRoute, request: Option<&istio::HttpMatchRequest>) -> String {
    let match_name = request.and_then(|r| r.name.as_deref());
    match (http.name.as_deref(), match_name) {
        (Some(route), Some(matched)) => format!("{route}.{matched}"),
        (Some(name), None) | (None, Some(name)) => name.to_string(),
        (None, None) => String::new(),
    }
}

/// Whether a match entry can apply to this proxy on this port at all.
fn applies(request: &istio::HttpMatchRequest, proxy: &Proxy, port: u16) -> bool {
    let port_ok = request.port.is_none_or(|p| p == u32::from(port));
    let labels_ok = request
        .source_labels
        .iter()
        .all(|(k, v)| proxy.labels.get(k) == Some(v));
    let namespace_ok = request
        .source_namespace
        .as_deref()
        .is_none_or(|ns| ns == proxy.namespace);
    let gateways_ok = request.gateways.is_empty()
        || request
            .gateways
            .iter()
            .any(|g| g == crate::model::MESH_GATEWAY);
    port_ok && labels_ok && namespace_ok && gateways_ok
}

fn is_catch_all(route_match: &RouteMatch) -> bool {
    let everything = match &route_match.path_specifier {
        Some(PathSpecifier::Prefix(prefix)) => prefix == "/",
        Some(PathSpecifier::SafeRegex(regex)) => regex.regex == "*" || regex.regex == ".*",
        _ => false,
    };
    everything && route_match.headers.is_empty() && route_match.query_parameters.is_empty()
}

fn string_matcher(matcher: &StringMatch) -> StringMatcher {
    let pattern = match matcher {
        StringMatch::Exact(value) => string_matcher::MatchPattern::Exact(value.clone()),
        StringMatch::Prefix(value) => string_matcher::MatchPattern::Prefix(value.clone()),
        StringMatch::Regex(value) => string_matcher::MatchPattern::SafeRegex(regex_matcher(value)),
    };
    StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    }
}

fn regex_matcher(regex: &str) -> RegexMatcher {
    RegexMatcher {
        regex: regex.to_string(),
        ..Default::default()
    }
}

fn header_matcher(name: &str, matcher: &StringMatch, invert: bool) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_string(),
        invert_match: invert,
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
            string_matcher(matcher),
        )),
        ..Default::default()
    }
}

fn route_match(request: Option<&istio::HttpMatchRequest>) -> RouteMatch {
    let Some(request) = request else {
        return prefix_match("/");
    };
    let path_specifier = match &request.uri {
        None => PathSpecifier::Prefix("/".to_string()),
        Some(StringMatch::Exact(path)) => PathSpecifier::Path(path.clone()),
        Some(StringMatch::Prefix(prefix)) => PathSpecifier::Prefix(prefix.clone()),
        Some(StringMatch::Regex(regex)) => PathSpecifier::SafeRegex(regex_matcher(regex)),
    };
    let pseudo_headers = [
        (":method", &request.method),
        (":authority", &request.authority),
        (":scheme", &request.scheme),
    ];
    let mut headers: Vec<HeaderMatcher> = pseudo_headers
        .into_iter()
        .filter_map(|(name, matcher)| matcher.as_ref().map(|m| header_matcher(name, m, false)))
        .collect();
    headers.extend(
        request
            .headers
            .iter()
            .map(|(name, m)| header_matcher(name, m, false)),
    );
    headers.extend(
        request
            .without_headers
            .iter()
            .map(|(name, m)| header_matcher(name, m, true)),
    );
    // `name: {}` asks only for the header to be there (or, under withoutHeaders, not there).
    let present = |name: &String, invert: bool| HeaderMatcher {
        name: name.clone(),
        invert_match: invert,
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true)),
        ..Default::default()
    };
    headers.extend(
        request
            .headers
            .present
            .iter()
            .map(|name| present(name, false)),
    );
    headers.extend(
        request
            .without_headers
            .present
            .iter()
            .map(|name| present(name, true)),
    );
    let parameter_present = |name: &String| QueryParameterMatcher {
        name: name.clone(),
        query_parameter_match_specifier: Some(
            query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true),
        ),
    };
    let query_parameters = request
        .query_params
        .iter()
        .map(|(name, matcher)| QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(match matcher {
                // An empty exact value asks only for the parameter to be there, as in istiod.
                StringMatch::Exact(value) if value.is_empty() => {
                    query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true)
                }
                other => query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(
                    string_matcher(other),
                ),
            }),
        })
        .chain(request.query_params.present.iter().map(parameter_present))
        .collect();
    RouteMatch {
        path_specifier: Some(path_specifier),
        case_sensitive: request
            .ignore_uri_case
            .then_some(BoolValue { value: false }),
        headers,
        query_parameters,
        ..Default::default()
    }
}

fn route_action(http: &istio::HttpRoute, model: &Model, port: u16) -> Action {
    if let Some(redirect) = &http.redirect {
        return Action::Redirect(redirect_action(redirect));
    }
    if let Some(direct) = &http.direct_response {
        return Action::DirectResponse(direct_response_action(direct));
    }
    let mut action = route_action_defaults(
        http.timeout.map(|t| t.0),
        retry_policy(http.retries.as_ref()).as_ref(),
    );
    action.cluster_specifier = Some(cluster_specifier(&http.route, model, port));
    if let Some(rewrite) = &http.rewrite {
        if let Some(uri) = &rewrite.uri {
            action.prefix_rewrite = uri.clone();
        }
        if let Some(authority) = &rewrite.authority {
            action.host_rewrite_specifier =
                Some(HostRewriteSpecifier::HostRewriteLiteral(authority.clone()));
        }
    }
    let authority = http
        .headers
        .as_ref()
        .and_then(|h| h.request.as_ref())
        .and_then(|ops| ops.set.iter().find(|(k, _)| is_authority(k)))
        .map(|(_, v)| v.clone());
    if let Some(authority) = authority {
        action.host_rewrite_specifier = Some(HostRewriteSpecifier::HostRewriteLiteral(authority));
    }
    Action::Route(action)
}

fn is_authority(header: &str) -> bool {
    header == ":authority" || header.eq_ignore_ascii_case("host")
}

/// One destination is a cluster; several are weighted clusters. Several destinations with no
/// weights share traffic evenly (istiod would send weights Envoy rejects).
fn cluster_specifier(
    destinations: &[istio::HttpRouteDestination],
    model: &Model,
    port: u16,
) -> ClusterSpecifier {
    let weights = split_weights(destinations);
    let weighted: Vec<(&istio::HttpRouteDestination, u32)> = destinations
        .iter()
        .zip(weights)
        .filter(|(_, weight)| *weight > 0 || destinations.len() == 1)
        .collect();
    if let [(destination, _)] = weighted[..] {
        return ClusterSpecifier::Cluster(destination_cluster(
            &destination.destination,
            model,
            port,
        ));
    }
    let clusters = weighted
        .into_iter()
        .map(|(destination, weight)| {
            let headers = destination.headers.as_ref();
            ClusterWeight {
                name: destination_cluster(&destination.destination, model, port),
                weight: Some(UInt32Value { value: weight }),
                request_headers_to_add: header_options(
                    headers.and_then(|h| h.request.as_ref()),
                    true,
                ),
                request_headers_to_remove: removed(headers.and_then(|h| h.request.as_ref())),
                response_headers_to_add: header_options(
                    headers.and_then(|h| h.response.as_ref()),
                    false,
                ),
                response_headers_to_remove: removed(headers.and_then(|h| h.response.as_ref())),
                ..Default::default()
            }
        })
        .collect();
    ClusterSpecifier::WeightedClusters(WeightedCluster {
        clusters,
        ..Default::default()
    })
}

/// The weight of each destination; unweighted routes split 100 evenly, the remainder going to the
/// first destinations.
fn split_weights(destinations: &[istio::HttpRouteDestination]) -> Vec<u32> {
    if destinations.iter().any(|d| d.weight.is_some()) {
        return destinations
            .iter()
            .map(|d| u32::try_from(d.weight.unwrap_or(0)).unwrap_or(0))
            .collect();
    }
    let count = u32::try_from(destinations.len()).unwrap_or(u32::MAX).max(1);
    (0..count)
        .map(|i| 100 / count + u32::from(i < 100 % count))
        .collect()
}

/// The cluster a destination names: its port, else the service's only port, else the port being
/// served.
fn destination_cluster(
    destination: &istio::Destination,
    model: &Model,
    listener_port: u16,
) -> String {
    let explicit = destination.port.and_then(|p| u16::try_from(p.number).ok());
    let only_port =
        model
            .services
            .get(&destination.host)
            .and_then(|service| match service.ports[..] {
                [ref only] => Some(only.port),
                _ => None,
            });
    let port = explicit.or(only_port).unwrap_or(listener_port);
    outbound_cluster_name(
        port,
        destination.subset.as_deref().unwrap_or_default(),
        &destination.host,
    )
}

fn header_options(
    operations: Option<&istio::HeaderOperations>,
    request: bool,
) -> Vec<HeaderValueOption> {
    let Some(operations) = operations else {
        return Vec::new();
    };
    let option = |key: &String, value: &String, action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    let set = operations
        .set
        .iter()
        // Setting the authority of a request is a host rewrite, not a header.
        .filter(|(key, _)| !(request && is_authority(key)))
        .map(|(k, v)| option(k, v, HeaderAppendAction::OverwriteIfExistsOrAdd));
    let add = operations
        .add
        .iter()
        .map(|(k, v)| option(k, v, HeaderAppendAction::AppendIfExistsOrAdd));
    set.chain(add).collect()
}

fn removed(operations: Option<&istio::HeaderOperations>) -> Vec<String> {
    operations.map(|ops| ops.remove.clone()).unwrap_or_default()
}

fn redirect_action(redirect: &istio::HttpRedirect) -> RedirectAction {
    let response_code = match redirect.redirect_code.unwrap_or(301) {
        302 => RedirectResponseCode::Found,
        303 => RedirectResponseCode::SeeOther,
        307 => RedirectResponseCode::TemporaryRedirect,
        308 => RedirectResponseCode::PermanentRedirect,
        _ => RedirectResponseCode::MovedPermanently,
    };
    RedirectAction {
        host_redirect: redirect.authority.clone().unwrap_or_default(),
        port_redirect: redirect.port.unwrap_or_default(),
        scheme_rewrite_specifier: redirect
            .scheme
            .clone()
            .map(SchemeRewriteSpecifier::SchemeRedirect),
        path_rewrite_specifier: redirect.uri.clone().map(PathRewriteSpecifier::PathRedirect),
        response_code: response_code as i32,
        ..Default::default()
    }
}

fn direct_response_action(direct: &istio::HttpDirectResponse) -> DirectResponseAction {
    let body = direct.body.as_ref().map(|body| DataSource {
        specifier: Some(match body {
            istio::HttpBody::String(text) => data_source::Specifier::InlineString(text.clone()),
            istio::HttpBody::Bytes(bytes) => data_source::Specifier::InlineBytes(bytes.clone()),
        }),
        ..Default::default()
    });
    DirectResponseAction {
        status: direct.status,
        body,
        ..Default::default()
    }
}
