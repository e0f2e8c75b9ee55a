//! `HTTPMatchRequest` -> Envoy `RouteMatch`, as istiod's `TranslateRouteMatch` shapes it, and the
//! checks done while generating for one proxy (`port`, `sourceLabels`, `sourceNamespace`,
//! `gateways` decide whether a match entry is emitted at all).

use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RouteMatch, header_matcher, query_parameter_matcher,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    ListMatcher, MetadataMatcher, OrMatcher, RegexMatcher, StringMatcher, ValueMatcher,
    list_matcher, metadata_matcher, string_matcher, value_matcher,
};
use envoy_types::pb::google::protobuf::BoolValue;

use crate::istio::{self, StringMatch, jwt_claim_path};
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

/// The filter whose dynamic metadata holds a verified JWT's payload.
const JWT_AUTHN_FILTER: &str = "envoy.filters.http.jwt_authn";

/// A JWT claim match (`@request.auth.claims...`), as istiod writes it: a matcher on the payload
/// the JWT filter leaves in dynamic metadata, taking a claim that is a string or a list of
/// strings. No route matches while no RequestAuthentication puts a payload there.
fn jwt_claim_matcher(path: &[&str], matcher: Option<&StringMatch>) -> MetadataMatcher {
    let value = match matcher {
        None => ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::PresentMatch(true)),
        },
        Some(matcher) => ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::StringMatch(string_matcher(
                matcher,
            ))),
        },
    };
    let one_of = ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::ListMatch(Box::new(
            ListMatcher {
                match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(value.clone()))),
            },
        ))),
    };
    MetadataMatcher {
        filter: JWT_AUTHN_FILTER.to_string(),
        path: std::iter::once("payload")
            .chain(path.iter().copied())
            .map(|key| metadata_matcher::PathSegment {
                segment: Some(metadata_matcher::path_segment::Segment::Key(
                    key.to_string(),
                )),
            })
            .collect(),
        value: Some(ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::OrMatch(OrMatcher {
                value_matchers: vec![one_of, value],
            })),
        }),
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
    let mut dynamic_metadata: Vec<MetadataMatcher> = Vec::new();
    for (name, matcher, invert) in entries(&request.headers)
        .into_iter()
        .map(|(name, matcher)| (name, matcher, false))
        .chain(
            entries(&request.without_headers)
                .into_iter()
                .map(|(name, matcher)| (name, matcher, true)),
        )
    {
        if let Some(path) = jwt_claim_path(name) {
            let mut claim = jwt_claim_matcher(&path, matcher);
            claim.invert = invert;
            dynamic_metadata.push(claim);
        }
    }
    let is_header = |(name, _): &(&String, Option<&StringMatch>)| jwt_claim_path(name).is_none();
    let mut headers: Vec<HeaderMatcher> = entries(&request.headers)
        .into_iter()
        .filter(is_header)
        .map(|(name, matcher)| header_matcher(name, matcher))
        .collect();
    headers.extend(
        entries(&request.without_headers)
            .into_iter()
            .filter(is_header)
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
        dynamic_metadata,
        ..Default::default()
    }
}
