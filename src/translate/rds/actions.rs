//! What a route does, as istiod's `translateRoute` and `applyHTTPRouteDestination` build it:
//! forward (clusters, timeout, retries, rewrites, mirrors), redirect or answer directly; header
//! operations; and the per-route fault and CORS filter configs.

use std::collections::{BTreeMap, HashMap};

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, HeaderValue, HeaderValueOption, RuntimeFractionalPercent, data_source,
};
use envoy_types::pb::envoy::config::route::v3::redirect_action::{
    PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier,
};
use envoy_types::pb::envoy::config::route::v3::retry_policy::{
    RetryBackOff, RetryHostPredicate, RetryPriority, retry_host_predicate, retry_priority,
};
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::{
    ClusterSpecifier, HostRewriteSpecifier, MaxStreamDuration, RequestMirrorPolicy,
};
use envoy_types::pb::envoy::config::route::v3::weighted_cluster::{ClusterWeight, cluster_weight};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction, RetryPolicy, RouteAction, WeightedCluster,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{FaultDelay, fault_delay};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use envoy_types::pb::google::protobuf::{Any, BoolValue, UInt32Value};

use super::matching::{regex_matcher, string_matcher};
use crate::istio;
use crate::model::Service;
use crate::translate::cluster_policy::hashes_consistently;
use crate::translate::scope::ProxyView;
use crate::translate::{any, outbound_cluster_name, proto_duration, typed_config};

/// istiod's retry defaults for every route without a retry policy of its own. `retry_on` names
/// `retriable-status-codes` but the list of codes is empty, so no status code is retried (istiod
/// dropped the 503 in 1.24: replaying non-idempotent requests on a 503 is not safe).
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
const DEFAULT_RETRIES: u32 = 2;
const HOST_SELECTION_RETRY_MAX_ATTEMPTS: i64 = 5;
/// How often the previous-priorities retry priority recomputes, as istiod sets it.
const PREVIOUS_PRIORITIES_UPDATE_FREQUENCY: i32 = 2;

pub(super) const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub(super) const CORS_FILTER: &str = "envoy.filters.http.cors";

/// Inbound defaults (istiod's `BuildDefaultHTTPInboundRoute`): no timeout (`0s` turns off
/// Envoy's 15s), no stream duration limit and the same cap for gRPC timeouts, and the retry
/// policy.
pub(in crate::translate) fn route_action_defaults(
    timeout: Option<std::time::Duration>,
    retry_policy: Option<RetryPolicy>,
) -> RouteAction {
    let timeout = proto_duration(timeout.unwrap_or_default());
    RouteAction {
        timeout: Some(timeout),
        max_stream_duration: Some(MaxStreamDuration {
            max_stream_duration: Some(timeout),
            grpc_timeout_header_max: Some(timeout),
            ..Default::default()
        }),
        retry_policy,
        ..Default::default()
    }
}

/// Outbound defaults (istiod's `setTimeout` for an Envoy proxy): the route timeout (`0s`, none,
/// by default), and the same cap on a `grpc-timeout` header through the deprecated
/// `max_grpc_timeout`, as istiod still sends it. No `max_stream_duration`: that would also bound
/// the time a request's body takes to upload, which the VirtualService `timeout` does not.
pub(super) fn outbound_route_action(
    timeout: Option<std::time::Duration>,
    retry_policy: Option<RetryPolicy>,
) -> RouteAction {
    let timeout = proto_duration(timeout.unwrap_or_default());
    #[allow(deprecated)]
    RouteAction {
        timeout: Some(timeout),
        max_grpc_timeout: Some(timeout),
        retry_policy,
        ..Default::default()
    }
}

/// istiod's default outbound route action: no timeout, the mesh config's
/// `defaultHttpRetryPolicy` (istiod's built-in policy when it is unset; the previous-hosts
/// predicate kept even when the cluster hashes consistently, as in istiod).
pub(super) fn default_route_action(retries: Option<&istio::HttpRetry>) -> RouteAction {
    outbound_route_action(None, retry_policy(retries, false))
}

fn previous_hosts_predicate() -> RetryHostPredicate {
    RetryHostPredicate {
        name: "envoy.retry_host_predicates.previous_hosts".to_string(),
        config_type: typed_config(&PreviousHostsPredicate::default())
            .map(retry_host_predicate::ConfigType::TypedConfig),
    }
}

/// istiod's `retry.ConvertPolicy`: no `retries` means the default policy, `attempts: 0` means
/// none; numbers in `retryOn` are retriable status codes; `retryIgnorePreviousHosts` sets the
/// previous-hosts predicate, which is otherwise there unless the route's one destination hashes
/// consistently (`consistent_hash`: retries must stay on the hashed host); `retryRemoteLocalities`
/// adds the previous-priorities retry priority; `backoff` is the base interval.
fn retry_policy(retries: Option<&istio::HttpRetry>, consistent_hash: bool) -> Option<RetryPolicy> {
    let mut policy = RetryPolicy {
        retry_on: DEFAULT_RETRY_ON.to_string(),
        num_retries: Some(UInt32Value {
            value: DEFAULT_RETRIES,
        }),
        retry_host_predicate: if consistent_hash {
            Vec::new()
        } else {
            vec![previous_hosts_predicate()]
        },
        host_selection_retry_max_attempts: HOST_SELECTION_RETRY_MAX_ATTEMPTS,
        ..Default::default()
    };
    let Some(retries) = retries else {
        return Some(policy);
    };
    let attempts = u32::try_from(retries.attempts)
        .ok()
        .filter(|attempts| *attempts > 0)?;
    policy.num_retries = Some(UInt32Value { value: attempts });
    if let Some(retry_on) = retries.retry_on.as_deref().filter(|r| !r.is_empty()) {
        let (codes, conditions): (Vec<&str>, Vec<&str>) = retry_on
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .partition(|part| {
                part.parse::<u32>()
                    .is_ok_and(crate::model::virtual_service::is_known_http_status)
            });
        policy.retriable_status_codes = codes.iter().filter_map(|code| code.parse().ok()).collect();
        policy.retry_on = conditions.join(",");
        if !policy.retriable_status_codes.is_empty()
            && !policy.retry_on.contains("retriable-status-codes")
        {
            policy.retry_on.push_str(",retriable-status-codes");
        }
    }
    if let Some(per_try) = retries.per_try_timeout {
        policy.per_try_timeout = Some(proto_duration(per_try.0));
    }
    if let Some(ignore_previous) = retries.retry_ignore_previous_hosts {
        policy.retry_host_predicate = if ignore_previous {
            vec![previous_hosts_predicate()]
        } else {
            Vec::new()
        };
    }
    if retries.retry_remote_localities == Some(true) {
        policy.retry_priority = Some(RetryPriority {
            name: "envoy.retry_priorities.previous_priorities".to_string(),
            config_type: Some(retry_priority::ConfigType::TypedConfig(any(
                &PreviousPrioritiesConfig {
                    update_frequency: PREVIOUS_PRIORITIES_UPDATE_FREQUENCY,
                },
            ))),
        });
    }
    if let Some(backoff) = retries.backoff {
        policy.retry_back_off = Some(RetryBackOff {
            base_interval: Some(proto_duration(backoff.0)),
            ..Default::default()
        });
    }
    Some(policy)
}

fn is_authority(header: &str) -> bool {
    header.eq_ignore_ascii_case(":authority") || header.eq_ignore_ascii_case("host")
}

/// Pseudo-headers and `host` cannot be set or removed as headers.
fn is_internal(header: &str) -> bool {
    header.starts_with(':') || header.eq_ignore_ascii_case("host")
}

/// istiod's `TranslateHeadersOperations`: `set` then `add`, each by name; setting (or adding)
/// the authority becomes a host rewrite (`set` wins over `add`).
#[derive(Debug, Default)]
pub(super) struct HeaderOperations {
    pub request_to_add: Vec<HeaderValueOption>,
    pub request_to_remove: Vec<String>,
    pub response_to_add: Vec<HeaderValueOption>,
    pub response_to_remove: Vec<String>,
    pub authority: Option<String>,
}

impl HeaderOperations {
    pub fn new(headers: Option<&istio::Headers>) -> Self {
        let Some(headers) = headers else {
            return Self::default();
        };
        let request = headers.request.as_ref();
        let response = headers.response.as_ref();
        let authority_in = |entries: Option<&BTreeMap<String, String>>| {
            entries.and_then(|entries| {
                entries
                    .iter()
                    .rfind(|(key, _)| is_authority(key))
                    .map(|(_, value)| value.clone())
            })
        };
        let authority = authority_in(request.map(|ops| &ops.set))
            .or_else(|| authority_in(request.map(|ops| &ops.add)));
        HeaderOperations {
            request_to_add: header_options(request),
            request_to_remove: removed(request),
            response_to_add: header_options(response),
            response_to_remove: removed(response),
            authority,
        }
    }
}

fn header_options(operations: Option<&istio::HeaderOperations>) -> Vec<HeaderValueOption> {
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
        .filter(|(key, _)| !is_internal(key))
        .map(|(k, v)| option(k, v, HeaderAppendAction::OverwriteIfExistsOrAdd));
    let add = operations
        .add
        .iter()
        .filter(|(key, _)| !is_internal(key))
        .map(|(k, v)| option(k, v, HeaderAppendAction::AppendIfExistsOrAdd));
    set.chain(add).collect()
}

fn removed(operations: Option<&istio::HeaderOperations>) -> Vec<String> {
    operations
        .map(|ops| {
            ops.remove
                .iter()
                .filter(|name| !is_internal(name))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The route's action. A single destination's header operations are added to the route's own
/// (`route_headers`), as istiod does; weighted destinations keep theirs on the cluster weight.
pub(super) fn action(
    http: &istio::HttpRoute,
    authority: Option<String>,
    route_headers: &mut HeaderOperations,
    destinations: &Destinations<'_>,
) -> Action {
    if let Some(redirect) = &http.redirect {
        return Action::Redirect(redirect_action(redirect, destinations.listener_port));
    }
    if let Some(direct) = &http.direct_response {
        return Action::DirectResponse(direct_response_action(direct));
    }
    let mut action = outbound_route_action(http.timeout.map(|t| t.0), None);
    let mut authority = authority;
    if let Some(rewrite) = &http.rewrite {
        if let Some(regex) = &rewrite.uri_regex_rewrite {
            action.regex_rewrite = Some(RegexMatchAndSubstitute {
                pattern: Some(regex_matcher(&regex.pattern)),
                substitution: regex.rewrite.clone(),
            });
        } else if let Some(uri) = rewrite.uri.as_ref().filter(|uri| !uri.is_empty()) {
            action.prefix_rewrite = uri.clone();
        }
        if let Some(rewritten) = rewrite.authority.as_ref().filter(|a| !a.is_empty()) {
            authority = Some(rewritten.clone());
        }
    }
    if let Some(authority) = authority {
        action.host_rewrite_specifier = Some(HostRewriteSpecifier::HostRewriteLiteral(authority));
    }
    action.request_mirror_policies = mirror_policies(http, destinations);
    let specifier = cluster_specifier(
        &http.route,
        destinations,
        route_headers,
        &mut action.host_rewrite_specifier,
    );
    // istiod keeps retries on the hashed host only for a single destination.
    let consistent_hash = match &specifier {
        ClusterSpecifier::Cluster(cluster) => hashes_consistently(destinations.model, cluster),
        _ => false,
    };
    // A rule without `retries` gets the mesh config's default policy, as in istiod.
    let retries =
        http.retries
            .as_ref()
            .or(destinations.model.mesh.default_http_retry_policy.as_ref());
    action.retry_policy = retry_policy(retries, consistent_hash);
    action.cluster_specifier = Some(specifier);
    Action::Route(action)
}

/// Where a route's destinations are looked up: the services of `model`, all of them through a
/// gateway, only those with the listener's port for a sidecar (istiod's sidecar routes know only
/// the services on the port: a destination host without that port and without an explicit
/// destination port goes to `outbound|LISTENER_PORT|...`, a cluster that does not exist).
pub(super) struct Destinations<'m> {
    pub model: &'m ProxyView,
    pub listener_port: u16,
    pub on_port_only: bool,
}

impl Destinations<'_> {
    fn cluster(&self, destination: &istio::Destination) -> String {
        let service = self
            .model
            .services
            .get(&destination.host)
            .filter(|service| !self.on_port_only || service.port(self.listener_port).is_some());
        cluster_name(
            destination,
            service.map(|service| &**service),
            self.listener_port,
        )
    }
}

/// One destination is a cluster; several are weighted clusters (validation has refused several
/// that weigh 0 in all).
fn cluster_specifier(
    destinations: &[istio::HttpRouteDestination],
    lookup: &Destinations<'_>,
    route_headers: &mut HeaderOperations,
    host_rewrite: &mut Option<HostRewriteSpecifier>,
) -> ClusterSpecifier {
    let weights = split_weights(destinations.iter().map(|d| d.weight));
    if let [destination] = destinations {
        let operations = HeaderOperations::new(destination.headers.as_ref());
        route_headers
            .request_to_add
            .extend(operations.request_to_add);
        route_headers
            .request_to_remove
            .extend(operations.request_to_remove);
        route_headers
            .response_to_add
            .extend(operations.response_to_add);
        route_headers
            .response_to_remove
            .extend(operations.response_to_remove);
        if let Some(authority) = operations.authority
            && host_rewrite.is_none()
        {
            *host_rewrite = Some(HostRewriteSpecifier::HostRewriteLiteral(authority));
        }
        return ClusterSpecifier::Cluster(lookup.cluster(&destination.destination));
    }
    let clusters = destinations
        .iter()
        .zip(weights)
        .filter(|(_, weight)| *weight > 0)
        .map(|(destination, weight)| {
            let operations = HeaderOperations::new(destination.headers.as_ref());
            ClusterWeight {
                name: lookup.cluster(&destination.destination),
                weight: Some(UInt32Value { value: weight }),
                request_headers_to_add: operations.request_to_add,
                request_headers_to_remove: operations.request_to_remove,
                response_headers_to_add: operations.response_to_add,
                response_headers_to_remove: operations.response_to_remove,
                host_rewrite_specifier: operations
                    .authority
                    .map(cluster_weight::HostRewriteSpecifier::HostRewriteLiteral),
                ..Default::default()
            }
        })
        .collect();
    ClusterSpecifier::WeightedClusters(WeightedCluster {
        clusters,
        ..Default::default()
    })
}

/// The weight of each destination, as written (unset is 0, which Envoy's weighted clusters
/// leave out); Envoy shares traffic in proportion to them.
pub(crate) fn split_weights(weights: impl Iterator<Item = Option<i32>>) -> Vec<u32> {
    weights
        .map(|weight| u32::try_from(weight.unwrap_or(0)).unwrap_or(0))
        .collect()
}

/// The cluster a destination names, its host looked up among all the services of `model`.
pub(crate) fn destination_cluster(
    destination: &istio::Destination,
    model: &ProxyView,
    listener_port: u16,
) -> String {
    let service = model.services.get(&destination.host);
    cluster_name(
        destination,
        service.map(|service| &**service),
        listener_port,
    )
}

/// The cluster a destination names: its port, else its service's only port, else the port being
/// served (istiod's `GetDestinationCluster`).
fn cluster_name(
    destination: &istio::Destination,
    service: Option<&Service>,
    listener_port: u16,
) -> String {
    let explicit = destination.port.and_then(|p| u16::try_from(p.number).ok());
    let only_port = service.and_then(|service| match service.ports[..] {
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

/// `percentage.value` is a percent: istiod keeps four decimals, in millionths.
fn percent_in_millionths(percent: &istio::Percent) -> FractionalPercent {
    FractionalPercent {
        // Truncated as Go's uint32 conversion does.
        numerator: (percent.value * 10_000.0) as u32,
        denominator: fractional_percent::DenominatorType::Million as i32,
    }
}

fn percent_in_hundredths(percent: u32) -> FractionalPercent {
    FractionalPercent {
        numerator: percent,
        denominator: fractional_percent::DenominatorType::Hundred as i32,
    }
}

fn runtime_fraction(default_value: FractionalPercent) -> RuntimeFractionalPercent {
    RuntimeFractionalPercent {
        default_value: Some(default_value),
        ..Default::default()
    }
}

/// `mirror` (with `mirrorPercentage`, or the deprecated integer `mirror_percent`; 100% when
/// neither is given, nothing when it is 0) and every `mirrors` entry (same rule with its own
/// `percentage`). The mirrored request keeps its Host: istiod turns off Envoy's `-shadow` suffix
/// (its `DISABLE_SHADOW_HOST_SUFFIX`, on by default).
fn mirror_policies(http: &istio::HttpRoute, lookup: &Destinations<'_>) -> Vec<RequestMirrorPolicy> {
    let policy =
        |destination: &istio::Destination, fraction: FractionalPercent| RequestMirrorPolicy {
            cluster: lookup.cluster(destination),
            runtime_fraction: Some(runtime_fraction(fraction)),
            trace_sampled: Some(BoolValue { value: false }),
            disable_shadow_host_suffix_append: true,
            ..Default::default()
        };
    let mut policies = Vec::new();
    if let Some(mirror) = &http.mirror {
        let legacy = http.legacy_mirror_percent().map(|(percent, _)| percent);
        let fraction = match (&http.mirror_percentage, legacy) {
            (Some(percentage), _) => {
                (percentage.value > 0.0).then(|| percent_in_millionths(percentage))
            }
            (None, Some(percent)) => (percent > 0).then(|| percent_in_hundredths(percent)),
            (None, None) => Some(percent_in_hundredths(100)),
        };
        policies.extend(fraction.map(|fraction| policy(mirror, fraction)));
    }
    for mirror in &http.mirrors {
        let fraction = match &mirror.percentage {
            Some(percentage) => (percentage.value > 0.0).then(|| percent_in_millionths(percentage)),
            None => Some(percent_in_hundredths(100)),
        };
        policies.extend(fraction.map(|fraction| policy(&mirror.destination, fraction)));
    }
    policies
}

/// istiod's `ApplyRedirect` for a sidecar: `derivePort: FROM_REQUEST_PORT` is the listener's
/// port (Envoy cannot derive it), and the scheme's default port is left out.
fn redirect_action(redirect: &istio::HttpRedirect, listener_port: u16) -> RedirectAction {
    let response_code = match redirect.redirect_code.unwrap_or(301) {
        302 => RedirectResponseCode::Found,
        303 => RedirectResponseCode::SeeOther,
        307 => RedirectResponseCode::TemporaryRedirect,
        308 => RedirectResponseCode::PermanentRedirect,
        _ => RedirectResponseCode::MovedPermanently,
    };
    let scheme = redirect.scheme.clone().filter(|s| !s.is_empty());
    let mut port_redirect = 0;
    if redirect.port.is_some() || redirect.derive_port.is_some() {
        port_redirect = match (redirect.derive_port, redirect.port) {
            (Some(istio::RedirectPortSelection::FromRequestPort), _) => u32::from(listener_port),
            (None, Some(port)) => port,
            _ => 0,
        };
        let effective_scheme = scheme.as_deref().unwrap_or("http");
        if (port_redirect == 80 && effective_scheme == "http")
            || (port_redirect == 443 && effective_scheme == "https")
        {
            port_redirect = 0;
        }
    }
    RedirectAction {
        host_redirect: redirect.authority.clone().unwrap_or_default(),
        port_redirect,
        scheme_rewrite_specifier: scheme.map(SchemeRewriteSpecifier::SchemeRedirect),
        path_rewrite_specifier: redirect
            .uri
            .clone()
            .filter(|uri| !uri.is_empty())
            .map(PathRewriteSpecifier::PathRedirect),
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

/// The per-route configs of the fault and CORS filters every HTTP listener has.
pub(super) fn per_filter_config(http: &istio::HttpRoute) -> HashMap<String, Any> {
    let mut configs = HashMap::new();
    if let Some(fault) = &http.fault {
        configs.insert(FAULT_FILTER.to_string(), any(&fault_config(fault)));
    }
    if let Some(cors) = &http.cors_policy {
        configs.insert(CORS_FILTER.to_string(), any(&cors_policy(cors)));
    }
    configs
}

/// istiod's `TranslateFault`: percentages in millionths (the deprecated integer `percent` in
/// hundredths); a delay without `percentage` or `percent` delays nothing, and so does an abort.
fn fault_config(fault: &istio::HttpFaultInjection) -> HttpFault {
    let delay = fault.delay.as_ref().and_then(|delay| {
        let fixed = delay.fixed_delay?;
        let percentage = match &delay.percentage {
            Some(percentage) => percent_in_millionths(percentage),
            None => percent_in_hundredths(u32::try_from(delay.percent.unwrap_or(0)).unwrap_or(0)),
        };
        Some(FaultDelay {
            percentage: Some(percentage),
            fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(
                proto_duration(fixed.0),
            )),
        })
    });
    let abort = fault.abort.as_ref().and_then(|abort| {
        let error_type = match (abort.http_status, abort.grpc_status.as_deref()) {
            (Some(status), _) => fault_abort::ErrorType::HttpStatus(u32::try_from(status).ok()?),
            (None, Some(name)) => fault_abort::ErrorType::GrpcStatus(
                u32::try_from(crate::model::virtual_service::grpc_status_code(name)?).ok()?,
            ),
            (None, None) => return None,
        };
        Some(FaultAbort {
            percentage: abort.percentage.as_ref().map(percent_in_millionths),
            error_type: Some(error_type),
            ..Default::default()
        })
    });
    HttpFault {
        delay,
        abort,
        ..Default::default()
    }
}

/// istiod's `TranslateCORSPolicy`: origins from `allowOrigins` (else the deprecated exact
/// `allowOrigin`), lists joined with commas, `maxAge` in seconds, always enabled; preflights that
/// match no origin go upstream unless `unmatchedPreflights: IGNORE`.
fn cors_policy(cors: &istio::CorsPolicy) -> CorsPolicy {
    let origins = if cors.allow_origins.is_empty() {
        cors.allow_origin
            .iter()
            .map(|origin| string_matcher(&istio::StringMatch::Exact(origin.clone())))
            .collect()
    } else {
        cors.allow_origins.iter().map(string_matcher).collect()
    };
    CorsPolicy {
        allow_origin_string_match: origins,
        allow_methods: cors.allow_methods.join(","),
        allow_headers: cors.allow_headers.join(","),
        expose_headers: cors.expose_headers.join(","),
        max_age: cors
            .max_age
            .map(|age| age.0.as_secs().to_string())
            .unwrap_or_default(),
        allow_credentials: cors.allow_credentials.map(|value| BoolValue { value }),
        filter_enabled: Some(runtime_fraction(percent_in_hundredths(100))),
        forward_not_matching_preflights: Some(BoolValue {
            value: cors.unmatched_preflights != Some(istio::UnmatchedPreflights::Ignore),
        }),
        ..Default::default()
    }
}
