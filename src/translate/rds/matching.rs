//! `HTTPMatchRequest` -> Envoy `RouteMatch`, as istiod's `TranslateRouteMatch` shapes it, and the
//! checks done while generating for one proxy (`port`, `sourceLabels`, `sourceNamespace`,
//! `gateways` decide whether a match entry is emitted at all).

use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RouteMatch, header_matcher, query_parameter_matcher,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::BoolValue;

use crate::istio::{self, StringMatch};
use crate::proxy::Proxy;

/// Whether a match entry applies to this proxy on this port (istiod's `translateRoute` checks and
/// `sourceMatchHTTP`): the port must be the listener's (a gateway server's as written); with
/// `gateways` given, one of them must be the gateway routes are built for (`mesh` for sidecars;
/// source labels and namespace are then not looked at); otherwise the proxy must have the source
/// labels and be in the source namespace.
pub(super) fn applies(
    request: &istio::HttpMatchRequest,
    proxy: &Proxy,
    port: u16,
    gateway: &str,
) -> bool {
    if request.port.is_some_and(|p| p != 0 && p != u32::from(port)) {
        return false;
    }
    if !request.gateways.is_empty() {
        return request.gateways.iter().any(|g| g == gateway);
    }
    let labels_ok = request
        .source_labels
        .iter()
        .all(|(k, v)| proxy.labels.get(k) == Some(v));
    let namespace_ok = request
        .source_namespace
        .as_deref()
        .is_none_or(|ns| ns.is_empty() || ns == proxy.namespace);
    labels_ok && namespace_ok
}

/// istiod's `IsCatchAllRoute`: prefix `/` (or regex `.*`) with no header or parameter condition.
pub(in crate::translate) fn is_catch_all(route_match: &RouteMatch) -> bool {
    let everything = match &route_match.path_specifier {
        Some(PathSpecifier::Prefix(prefix)) => prefix == "/",
        Some(PathSpecifier::SafeRegex(regex)) => regex.regex == ".*",
        _ => false,
    };
    everything && route_match.headers.is_empty() && route_match.query_parameters.is_empty()
}

pub(in crate::translate) fn prefix_match(prefix: &str) -> RouteMatch {
    RouteMatch {
        path_specifier: Some(PathSpecifier::Prefix(prefix.to_string())),
        ..Default::default()
    }
}

pub(super) fn string_matcher(matcher: &StringMatch) -> StringMatcher {
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

pub(super) fn regex_matcher(regex: &str) -> RegexMatcher {
    RegexMatcher {
        regex: regex.to_string(),
        ..Default::default()
    }
}

/// A header matcher; `None` (`name: {}`) and `regex: "*"` ask for presence only.
fn header_matcher(name: &str, matcher: Option<&StringMatch>) -> HeaderMatcher {
    let specifier = match matcher {
        None => header_matcher::HeaderMatchSpecifier::PresentMatch(true),
        Some(StringMatch::Regex(regex)) if regex == "*" => {
            header_matcher::HeaderMatchSpecifier::PresentMatch(true)
        }
        Some(matcher) => header_matcher::HeaderMatchSpecifier::StringMatch(string_matcher(matcher)),
    };
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(specifier),
        ..Default::default()
    }
}

/// The entries of a header map: named matchers and presence checks, by name.
fn entries(map: &istio::StringMatchMap) -> Vec<(&String, Option<&StringMatch>)> {
    let mut entries: Vec<(&String, Option<&StringMatch>)> = map
        .matchers
        .iter()
        .map(|(name, matcher)| (name, Some(matcher)))
        .chain(map.present.iter().map(|name| (name, None)))
        .collect();
    entries.sort_by_key(|(name, _)| *name);
    entries
}

/// No match entry matches every path; otherwise the URI, headers (`headers` and `withoutHeaders`
/// sorted by name, then `:method`, `:authority`, `:scheme`) and query parameters, with
/// `case_sensitive` always stated, as istiod writes it.
pub(super) fn route_match(request: Option<&istio::HttpMatchRequest>) -> RouteMatch {
    let Some(request) = request else {
        return prefix_match("/");
    };
    let path_specifier = match &request.uri {
        None => PathSpecifier::Prefix("/".to_string()),
        Some(StringMatch::Exact(path)) => PathSpecifier::Path(path.clone()),
        Some(StringMatch::Prefix(prefix)) => PathSpecifier::Prefix(prefix.clone()),
        Some(StringMatch::Regex(regex)) => PathSpecifier::SafeRegex(regex_matcher(regex)),
    };
    let mut headers: Vec<HeaderMatcher> = entries(&request.headers)
        .into_iter()
        .map(|(name, matcher)| header_matcher(name, matcher))
        .collect();
    headers.extend(
        entries(&request.without_headers)
            .into_iter()
            .map(|(name, matcher)| {
                let mut header = header_matcher(name, matcher);
                header.invert_match = true;
                // A missing header counts as an empty value, unless only presence is asked.
                header.treat_missing_header_as_empty = !matches!(
                    header.header_match_specifier,
                    Some(header_matcher::HeaderMatchSpecifier::PresentMatch(_))
                );
                header
            }),
    );
    headers.sort_by(|a, b| a.name.cmp(&b.name));
    let pseudo_headers = [
        (":method", &request.method),
        (":authority", &request.authority),
        (":scheme", &request.scheme),
    ];
    headers.extend(
        pseudo_headers
            .into_iter()
            .filter_map(|(name, matcher)| matcher.as_ref().map(|m| header_matcher(name, Some(m)))),
    );
    let query_parameters = entries(&request.query_params)
        .into_iter()
        .map(|(name, matcher)| {
            let specifier = match matcher {
                // An empty exact value asks only for the parameter to be there.
                None => query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true),
                Some(StringMatch::Exact(value)) if value.is_empty() => {
                    query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true)
                }
                Some(other) => query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(
                    string_matcher(other),
                ),
            };
            QueryParameterMatcher {
                name: name.clone(),
                query_parameter_match_specifier: Some(specifier),
            }
        })
        .collect();
    RouteMatch {
        path_specifier: Some(path_specifier),
        case_sensitive: Some(BoolValue {
            value: !request.ignore_uri_case,
        }),
        headers,
        query_parameters,
        ..Default::default()
    }
}
