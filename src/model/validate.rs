//! Checks that decide whether an Istio object may be applied: what Envoy would reject (regexes
//! RE2 does not accept, weights that do not add up) and references that lead nowhere (a subset no
//! DestinationRule defines, a destination host that is not a service). Each check names the
//! field at fault. Pure functions over the object and the already admitted part of the model.

use std::collections::{BTreeMap, BTreeSet};

use super::{DestinationRule, Service, VirtualService};
use crate::inputs::FieldError;
use crate::istio::{self, StringMatch};

/// The largest RE2 program Envoy accepts with rudder's bootstrap; bigger regexes are refused here
/// rather than by Envoy.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

pub fn validate_destination_rule(rule: &istio::DestinationRule) -> Result<(), FieldError> {
    if rule.host.trim().is_empty() {
        return Err(invalid("spec.host", "host is required"));
    }
    let mut names = BTreeSet::new();
    for (i, subset) in rule.subsets.iter().enumerate() {
        if subset.name.is_empty() {
            return Err(invalid(
                format!("spec.subsets[{i}].name"),
                "subset name is required",
            ));
        }
        if !names.insert(subset.name.as_str()) {
            return Err(invalid(
                format!("spec.subsets[{i}].name"),
                format!("duplicate subset name {:?}", subset.name),
            ));
        }
    }
    Ok(())
}

/// `spec` is the object as written (for field paths); `resolved` has its hosts expanded.
pub fn validate_virtual_service(
    spec: &istio::VirtualService,
    resolved: &VirtualService,
    services: &BTreeMap<String, Service>,
    destination_rules: &BTreeMap<String, DestinationRule>,
) -> Result<(), FieldError> {
    if spec.hosts.is_empty() {
        return Err(invalid("spec.hosts", "at least one host is required"));
    }
    for (i, (route, resolved_route)) in spec.http.iter().zip(&resolved.http).enumerate() {
        let at = format!("spec.http[{i}]");
        if route.route.is_empty() && route.redirect.is_none() && route.direct_response.is_none() {
            return Err(invalid(
                &at,
                "one of route, redirect or directResponse is required",
            ));
        }
        for (j, request) in route.matches.iter().enumerate() {
            validate_match(request, &format!("{at}.match[{j}]"))?;
        }
        if let Some(retries) = &route.retries
            && retries.attempts < 0
        {
            return Err(invalid(
                format!("{at}.retries.attempts"),
                "attempts cannot be negative",
            ));
        }
        validate_weights(&route.route, &at)?;
        for (j, destination) in resolved_route.route.iter().enumerate() {
            let at = format!("{at}.route[{j}].destination");
            validate_destination(&destination.destination, &at, services, destination_rules)?;
        }
    }
    Ok(())
}

fn validate_match(request: &istio::HttpMatchRequest, at: &str) -> Result<(), FieldError> {
    let singles = [
        ("uri", &request.uri),
        ("scheme", &request.scheme),
        ("method", &request.method),
        ("authority", &request.authority),
    ];
    for (name, matcher) in singles {
        if let Some(matcher) = matcher {
            validate_string_match(matcher, &format!("{at}.{name}"))?;
        }
    }
    let maps = [
        ("headers", &request.headers),
        ("withoutHeaders", &request.without_headers),
        ("queryParams", &request.query_params),
    ];
    for (name, matchers) in maps {
        for (key, matcher) in matchers {
            if key.is_empty() {
                return Err(invalid(format!("{at}.{name}"), "empty name"));
            }
            validate_string_match(matcher, &format!("{at}.{name}.{key}"))?;
        }
    }
    Ok(())
}

fn validate_string_match(matcher: &StringMatch, at: &str) -> Result<(), FieldError> {
    if let StringMatch::Regex(pattern) = matcher {
        // The regex crate follows RE2's syntax and guarantees (no backreferences, no lookaround).
        regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|error| {
                // The regex crate draws the pattern with a caret over several lines; a config
                // error is one line, so keep its last line (the reason).
                let text = error.to_string();
                let reason = text
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim_start_matches("error: ")
                    .to_string();
                invalid(
                    format!("{at}.regex"),
                    format!("invalid RE2 regex {pattern:?}: {reason}"),
                )
            })?;
    }
    Ok(())
}

/// Weights are percentages: with several destinations, either none is weighted (an even split)
/// or they add up to 100.
fn validate_weights(
    destinations: &[istio::HttpRouteDestination],
    at: &str,
) -> Result<(), FieldError> {
    for (j, destination) in destinations.iter().enumerate() {
        if destination.weight.is_some_and(|weight| weight < 0) {
            return Err(invalid(
                format!("{at}.route[{j}].weight"),
                "weight cannot be negative",
            ));
        }
    }
    let weighted = destinations
        .iter()
        .any(|destination| destination.weight.is_some());
    if destinations.len() > 1 && weighted {
        let total: i64 = destinations
            .iter()
            .map(|d| i64::from(d.weight.unwrap_or(0)))
            .sum();
        if total != 100 {
            return Err(invalid(
                format!("{at}.route"),
                format!("destination weights add up to {total}, not 100"),
            ));
        }
    }
    Ok(())
}

fn validate_destination(
    destination: &istio::Destination,
    at: &str,
    services: &BTreeMap<String, Service>,
    destination_rules: &BTreeMap<String, DestinationRule>,
) -> Result<(), FieldError> {
    if destination.host.is_empty() {
        return Err(invalid(format!("{at}.host"), "host is required"));
    }
    let Some(service) = services.get(&destination.host) else {
        return Err(invalid(
            format!("{at}.host"),
            format!("{} is not a known service", destination.host),
        ));
    };
    if let Some(port) = destination.port.map(|port| port.number) {
        let known = u16::try_from(port).ok().and_then(|port| service.port(port));
        if known.is_none() {
            return Err(invalid(
                format!("{at}.port.number"),
                format!("service {} has no port {port}", destination.host),
            ));
        }
    }
    if let Some(subset) = &destination.subset {
        let defined = destination_rules
            .get(&destination.host)
            .is_some_and(|rule| rule.subset(subset).is_some());
        if !defined {
            return Err(invalid(
                format!("{at}.subset"),
                format!(
                    "subset {subset:?} is not defined by any DestinationRule for {}",
                    destination.host
                ),
            ));
        }
    }
    Ok(())
}
