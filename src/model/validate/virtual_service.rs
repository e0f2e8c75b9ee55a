//! VirtualService checks, after istiod's `ValidateVirtualService` (`pkg/config/validation`):
//! shapes Envoy would refuse or istiod's webhook rejects (conflicting actions, out-of-range
//! numbers, unknown enum values, invalid regexes, durations under 1ms, malformed hosts, subnets,
//! label selectors and `exportTo`), and references that lead nowhere (a destination, mirror or
//! subset that does not exist). The first problem is reported, with the field that holds it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use super::analysis::{Code, coded};
use super::http_route_policy::{
    validate_authority_rewrite, validate_cors, validate_direct_response, validate_fault,
    validate_header_operations, validate_redirect, validate_retries, validate_rewrite,
};
use super::invalid;
use super::syntax::{
    is_dns1123_label, validate_duration, validate_gateway_name, validate_header_name,
    validate_header_string_match, validate_labels, validate_percentage, validate_port,
    validate_string_match, validate_subnet, validate_wildcard_domain,
};
use super::unreachable::unreachable_rule_warnings;
use crate::inputs::FieldError;
use crate::istio::{self, StringMatch, jwt_claim_path};
use crate::model::virtual_service::{host_subset_of, hosts_match};
use crate::model::{DestinationRule, MESH_GATEWAY, Service, VirtualService};

/// How a destination that refers to no known service, or to a subset no DestinationRule
/// defines, is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownReferences {
    /// The VirtualService is refused: with the registry at hand, such a route leads nowhere.
    #[default]
    Refuse,
    /// A warning, the rest of the checks go on: the rules are validated alone, without the
    /// Services and ServiceEntries they route to (`istioctl validate` checks no reference).
    Warn,
}

/// `spec` is the object as written (for field paths); `resolved` has its hosts expanded. The first
/// problem found is reported, with the field that holds it. Warnings are returned: rules that can
/// never be reached, destinations without a port to a service with several (IST0112), and,
/// with [`UnknownReferences::Warn`], the destinations that refer to no known service or subset.
pub fn validate_virtual_service(
    spec: &istio::VirtualService,
    resolved: &VirtualService,
    services: &BTreeMap<String, Service>,
    destination_rules: &BTreeMap<String, DestinationRule>,
    unknown_references: UnknownReferences,
) -> Result<Vec<FieldError>, FieldError> {
    let references = References {
        services,
        destination_rules,
        unknown_references,
        warnings: RefCell::new(Vec::new()),
    };
    validate_with(spec, resolved, &references)?;
    let mut warnings = references.warnings.into_inner();
    warnings.extend(unreachable_rule_warnings(spec));
    Ok(warnings)
}

fn validate_with(
    spec: &istio::VirtualService,
    resolved: &VirtualService,
    references: &References<'_>,
) -> Result<(), FieldError> {
    // A VirtualService without hosts is a delegate: only a root's `http[].delegate` uses it.
    let delegate = spec.hosts.is_empty();
    if delegate {
        let parts = [
            ("spec.gateways", spec.gateways.is_empty()),
            ("spec.tls", spec.tls.is_empty()),
            ("spec.tcp", spec.tcp.is_empty()),
        ];
        for (field, empty) in parts {
            if !empty {
                return Err(invalid(
                    field,
                    "a delegate VirtualService (one without hosts) has http routes only and no gateways",
                ));
            }
        }
    }
    let applies_to_mesh =
        spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == MESH_GATEWAY);
    validate_vs_hosts(&spec.hosts, applies_to_mesh)?;
    for (i, gateway) in spec.gateways.iter().enumerate() {
        validate_gateway_name(gateway, &format!("spec.gateways[{i}]"))?;
    }
    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        return Err(invalid("spec", "one of http, tcp or tls is required"));
    }
    for (i, (route, resolved_route)) in spec.http.iter().zip(&resolved.http).enumerate() {
        let at = format!("spec.http[{i}]");
        validate_http_route(
            route,
            resolved_route,
            &at,
            delegate,
            applies_to_mesh,
            references,
        )?;
    }
    for (i, (route, resolved_route)) in spec.tls.iter().zip(&resolved.tls).enumerate() {
        let at = format!("spec.tls[{i}]");
        validate_tls_route(route, resolved_route, &spec.hosts, &at, references)?;
    }
    for (i, (route, resolved_route)) in spec.tcp.iter().zip(&resolved.tcp).enumerate() {
        let at = format!("spec.tcp[{i}]");
        validate_tcp_route(route, resolved_route, &at, references)?;
    }
    validate_export_to(&spec.export_to, &resolved.namespace, false)
}

/// What destinations may refer to.
struct References<'a> {
    services: &'a BTreeMap<String, Service>,
    destination_rules: &'a BTreeMap<String, DestinationRule>,
    unknown_references: UnknownReferences,
    /// Unknown references found, with [`UnknownReferences::Warn`].
    warnings: RefCell<Vec<FieldError>>,
}

impl References<'_> {
    /// A reference at `field` that leads nowhere: an error, or a warning kept aside.
    fn unknown(&self, field: String, message: String) -> Result<(), FieldError> {
        match self.unknown_references {
            UnknownReferences::Refuse => Err(invalid(field, message)),
            UnknownReferences::Warn => {
                self.warnings.borrow_mut().push(invalid(
                    field,
                    message + " (no Services or ServiceEntries were given: checked alone)",
                ));
                Ok(())
            }
        }
    }
}

fn validate_vs_hosts(hosts: &[String], applies_to_mesh: bool) -> Result<(), FieldError> {
    for (i, host) in hosts.iter().enumerate() {
        let at = format!("spec.hosts[{i}]");
        if host.parse::<std::net::IpAddr>().is_err() {
            validate_wildcard_domain(host).map_err(|message| invalid(&at, message))?;
        }
        if applies_to_mesh && host == "*" {
            return Err(invalid(
                at,
                "the wildcard host * is not allowed for VirtualServices that apply to sidecars (mesh)",
            ));
        }
    }
    for (i, a) in hosts.iter().enumerate() {
        for b in &hosts[i + 1..] {
            if hosts_match(a, b) {
                return Err(invalid(
                    format!("spec.hosts[{i}]"),
                    format!("duplicate hosts in one VirtualService: {a} and {b}"),
                ));
            }
        }
    }
    Ok(())
}

/// `.`, `*` or namespace names, no duplicates (`.` is the own namespace), `*` alone; `~` (no
/// one) alone, and for ServiceEntries only (`none_allowed`).
pub(super) fn validate_export_to(
    entries: &[String],
    namespace: &str,
    none_allowed: bool,
) -> Result<(), FieldError> {
    let mut seen = BTreeSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("spec.exportTo[{i}]");
        let key = if entry == "." {
            namespace
        } else {
            entry.as_str()
        };
        if entry == "~" && !none_allowed {
            return Err(invalid(
                at,
                "exportTo ~ (no one) is not allowed for VirtualServices",
            ));
        }
        if entry == "~" && entries.len() > 1 {
            return Err(invalid(
                at,
                "~ exports to no namespace; it cannot be combined with other entries",
            ));
        }
        if entry != "*" && entry != "." && entry != "~" && !is_dns1123_label(entry) {
            return Err(invalid(
                at,
                format!("{entry:?} is not ., * or a namespace name"),
            ));
        }
        if !seen.insert(key) {
            return Err(invalid(
                at,
                format!("duplicate exportTo entry {entry:?} (. is namespace {namespace})"),
            ));
        }
    }
    if entries.len() > 1 && entries.iter().any(|entry| entry == "*") {
        return Err(invalid(
            "spec.exportTo",
            "* exports to every namespace; it cannot be combined with other entries",
        ));
    }
    Ok(())
}

fn validate_http_route(
    route: &istio::HttpRoute,
    resolved: &istio::HttpRoute,
    at: &str,
    in_delegate: bool,
    applies_to_mesh: bool,
    references: &References<'_>,
) -> Result<(), FieldError> {
    validate_http_conflicts(route, at, in_delegate)?;
    for (j, request) in route.matches.iter().enumerate() {
        validate_match(request, &format!("{at}.match[{j}]"), applies_to_mesh)?;
    }
    if let Some(headers) = &route.headers {
        validate_header_operations(headers, &format!("{at}.headers"))?;
    }
    if let Some(cors) = &route.cors_policy {
        validate_cors(cors, &format!("{at}.corsPolicy"))?;
    }
    if let Some(fault) = &route.fault {
        validate_fault(fault, &format!("{at}.fault"))?;
    }
    if let Some((percent, name)) = route.legacy_mirror_percent()
        && percent > 100
    {
        return Err(invalid(
            format!("{at}.{name}"),
            format!("{percent} is more than 100"),
        ));
    }
    if let Some(percentage) = &route.mirror_percentage {
        validate_percentage(percentage, &format!("{at}.mirrorPercentage.value"))?;
    }
    if let Some(mirror) = &resolved.mirror {
        validate_destination(mirror, &format!("{at}.mirror"), references)?;
    }
    for (j, mirror) in resolved.mirrors.iter().enumerate() {
        let at = format!("{at}.mirrors[{j}]");
        validate_destination(
            &mirror.destination,
            &format!("{at}.destination"),
            references,
        )?;
        if let Some(percentage) = &mirror.percentage {
            validate_percentage(percentage, &format!("{at}.percentage.value"))?;
        }
    }
    if let Some(redirect) = &route.redirect {
        validate_redirect(redirect, &format!("{at}.redirect"))?;
    }
    if let Some(direct) = &route.direct_response {
        validate_direct_response(direct, &format!("{at}.directResponse"))?;
    }
    if let Some(retries) = &route.retries {
        validate_retries(retries, &format!("{at}.retries"))?;
    }
    if let Some(rewrite) = &route.rewrite {
        validate_rewrite(rewrite, &format!("{at}.rewrite"))?;
    }
    validate_authority_rewrite(route, at)?;
    validate_weights(route.route.iter().map(|d| d.weight), at)?;
    for (j, (destination, resolved_destination)) in
        route.route.iter().zip(&resolved.route).enumerate()
    {
        let at = format!("{at}.route[{j}]");
        if let Some(headers) = &destination.headers {
            validate_header_operations(headers, &format!("{at}.headers"))?;
        }
        validate_destination(
            &resolved_destination.destination,
            &format!("{at}.destination"),
            references,
        )?;
    }
    if let Some(timeout) = route.timeout {
        validate_duration(timeout, &format!("{at}.timeout"))?;
    }
    Ok(())
}

/// What a route does: forward (`route`), `redirect`, `directResponse`, or `delegate`; and what
/// cannot go with each.
fn validate_http_conflicts(
    route: &istio::HttpRoute,
    at: &str,
    in_delegate: bool,
) -> Result<(), FieldError> {
    let conflict = |field: &str, other: &str| {
        Err(invalid(
            format!("{at}.{field}"),
            format!("{field} cannot be combined with {other}"),
        ))
    };
    if let Some(delegate) = &route.delegate {
        if in_delegate {
            return Err(invalid(
                format!("{at}.delegate"),
                "the routes of a delegate VirtualService cannot delegate again",
            ));
        }
        if delegate.name.is_empty() {
            return Err(invalid(format!("{at}.delegate.name"), "name is required"));
        }
        if !route.route.is_empty() {
            return conflict("route", "delegate");
        }
        if route.redirect.is_some() {
            return conflict("redirect", "delegate");
        }
        if route.direct_response.is_some() {
            return conflict("directResponse", "delegate");
        }
    } else if route.redirect.is_some() {
        if !route.route.is_empty() {
            return conflict("route", "redirect");
        }
        if route.direct_response.is_some() {
            return conflict("directResponse", "redirect");
        }
        if route.fault.is_some() {
            return conflict("fault", "redirect");
        }
        if route.rewrite.is_some() {
            return conflict("rewrite", "redirect");
        }
    } else if route.direct_response.is_some() {
        if !route.route.is_empty() {
            return conflict("route", "directResponse");
        }
        if route.fault.is_some() {
            return conflict("fault", "directResponse");
        }
        if route.rewrite.is_some() {
            return conflict("rewrite", "directResponse");
        }
    } else if route.route.is_empty() {
        return Err(invalid(
            at,
            "one of route, redirect, directResponse or delegate is required",
        ));
    }
    if route.mirror.is_some() && !route.mirrors.is_empty() {
        return conflict("mirrors", "mirror");
    }
    Ok(())
}

/// `applies_to_mesh`: the VirtualService binds sidecars (no gateways, or `mesh` among them),
/// where JWT claims are never known, so istiod refuses claim matches.
fn validate_match(
    request: &istio::HttpMatchRequest,
    at: &str,
    applies_to_mesh: bool,
) -> Result<(), FieldError> {
    // An empty URI prefix is allowed (it matches everything); Envoy refuses empty prefixes in
    // the string matchers scheme, method and authority become.
    if let Some(uri) = &request.uri {
        if matches!(uri, StringMatch::Regex(regex) if regex.is_empty()) {
            return Err(invalid(format!("{at}.uri.regex"), "empty regex"));
        }
        validate_string_match(uri, &format!("{at}.uri"))?;
    }
    let singles = [
        ("scheme", &request.scheme),
        ("method", &request.method),
        ("authority", &request.authority),
    ];
    for (name, matcher) in singles {
        if let Some(matcher) = matcher {
            validate_header_string_match(matcher, &format!("{at}.{name}"))?;
        }
    }
    let maps = [
        ("headers", &request.headers),
        ("withoutHeaders", &request.without_headers),
        ("queryParams", &request.query_params),
    ];
    for (name, matchers) in maps {
        let names = matchers.matchers.keys().chain(&matchers.present);
        for key in names {
            if key.is_empty() {
                return Err(invalid(format!("{at}.{name}"), "empty name"));
            }
            if name != "queryParams" {
                if jwt_claim_path(key).is_some() {
                    if applies_to_mesh {
                        return Err(invalid(
                            format!("{at}.{name}.{key}"),
                            "JWT claim based routing is only supported on gateways (this \
                             VirtualService applies to sidecars: no gateways, or `mesh`)",
                        ));
                    }
                    continue;
                }
                validate_header_name(key).map_err(|m| invalid(format!("{at}.{name}"), m))?;
            }
        }
        for (key, matcher) in matchers {
            // `regex: "*"` under withoutHeaders asks for the header to be absent, as in istiod.
            if name == "withoutHeaders" && matches!(matcher, StringMatch::Regex(r) if r == "*") {
                continue;
            }
            validate_header_string_match(matcher, &format!("{at}.{name}.{key}"))?;
        }
    }
    if let Some(port) = request.port {
        validate_port(port, &format!("{at}.port"))?;
    }
    validate_labels(&request.source_labels, &format!("{at}.sourceLabels"))?;
    if let Some(namespace) = &request.source_namespace
        && !is_dns1123_label(namespace)
    {
        return Err(invalid(
            format!("{at}.sourceNamespace"),
            format!("{namespace:?} is not a namespace name"),
        ));
    }
    for (k, gateway) in request.gateways.iter().enumerate() {
        validate_gateway_name(gateway, &format!("{at}.gateways[{k}]"))?;
    }
    Ok(())
}

/// As istiod's: no weight is negative, and several destinations do not weigh 0 in all (an unset
/// weight is 0). Weights need not add up to 100: Envoy shares traffic in proportion to them.
fn validate_weights(
    weights: impl Iterator<Item = Option<i32>> + Clone,
    at: &str,
) -> Result<(), FieldError> {
    for (j, weight) in weights.clone().enumerate() {
        if let Some(weight) = weight.filter(|weight| *weight < 0) {
            return Err(invalid(
                format!("{at}.route[{j}].weight"),
                format!("weight {weight} < 0"),
            ));
        }
    }
    let count = weights.clone().count();
    let total: i64 = weights.map(|w| i64::from(w.unwrap_or(0))).sum();
    if count > 1 && total == 0 {
        return Err(invalid(
            format!("{at}.route"),
            "total destination weight = 0 (several destinations need weights)",
        ));
    }
    Ok(())
}

fn validate_destination(
    destination: &istio::Destination,
    at: &str,
    references: &References<'_>,
) -> Result<(), FieldError> {
    if destination.host.is_empty() {
        return Err(invalid(format!("{at}.host"), "host is required"));
    }
    let service = references.services.get(&destination.host);
    if service.is_none() {
        let message = format!("{} is not a known service", destination.host);
        references.unknown(format!("{at}.host"), message)?;
    }
    if let Some(service) = service
        && destination.port.is_none()
        && service.ports.len() > 1
    {
        // Valid: istiod then takes the port the request came in on, which may be none of them.
        let ports: Vec<String> = service.ports.iter().map(|p| p.port.to_string()).collect();
        references.warnings.borrow_mut().push(invalid(
            format!("{at}.port"),
            coded(
                Code::VirtualServiceDestinationPortSelectorRequired,
                format!(
                    "service {} exposes several ports ({}) and this destination names none",
                    destination.host,
                    ports.join(", ")
                ),
            ),
        ));
    }
    if let (Some(service), Some(port)) = (service, destination.port.map(|port| port.number)) {
        let known = u16::try_from(port).ok().and_then(|port| service.port(port));
        if known.is_none() {
            return Err(invalid(
                format!("{at}.port.number"),
                format!("service {} has no port {port}", destination.host),
            ));
        }
    }
    if let Some(subset) = &destination.subset {
        let defined = references
            .destination_rules
            .get(&destination.host)
            .is_some_and(|rule| rule.subset(subset).is_some());
        if !defined {
            let message = coded(
                Code::ReferencedResourceNotFound,
                format!(
                    "subset {subset:?} is not defined by any DestinationRule for {}",
                    destination.host
                ),
            );
            references.unknown(format!("{at}.subset"), message)?;
        }
    }
    Ok(())
}

fn validate_tls_route(
    route: &istio::TlsRoute,
    resolved: &istio::TlsRoute,
    vs_hosts: &[String],
    at: &str,
    references: &References<'_>,
) -> Result<(), FieldError> {
    if route.matches.is_empty() {
        return Err(invalid(
            format!("{at}.match"),
            "a TLS route needs at least one match (with sniHosts)",
        ));
    }
    for (j, request) in route.matches.iter().enumerate() {
        let at = format!("{at}.match[{j}]");
        if request.sni_hosts.is_empty() {
            return Err(invalid(
                format!("{at}.sniHosts"),
                "at least one SNI host is required",
            ));
        }
        for (k, sni) in request.sni_hosts.iter().enumerate() {
            let at = format!("{at}.sniHosts[{k}]");
            if sni.parse::<std::net::IpAddr>().is_ok() {
                continue;
            }
            validate_wildcard_domain(sni).map_err(|m| invalid(&at, m))?;
            if !vs_hosts.iter().any(|host| host_subset_of(sni, host)) {
                return Err(invalid(
                    at,
                    format!(
                        "SNI host {sni:?} is not within any of the VirtualService's hosts [{}]",
                        vs_hosts.join(", ")
                    ),
                ));
            }
        }
        validate_l4_match(
            &request.destination_subnets,
            None,
            request.port,
            &request.source_labels,
            request.source_namespace.as_deref(),
            &request.gateways,
            &at,
        )?;
    }
    validate_route_destinations(&route.route, &resolved.route, at, references)
}

fn validate_tcp_route(
    route: &istio::TcpRoute,
    resolved: &istio::TcpRoute,
    at: &str,
    references: &References<'_>,
) -> Result<(), FieldError> {
    for (j, request) in route.matches.iter().enumerate() {
        validate_l4_match(
            &request.destination_subnets,
            request.source_subnet.as_deref(),
            request.port,
            &request.source_labels,
            request.source_namespace.as_deref(),
            &request.gateways,
            &format!("{at}.match[{j}]"),
        )?;
    }
    validate_route_destinations(&route.route, &resolved.route, at, references)
}

fn validate_l4_match(
    destination_subnets: &[String],
    source_subnet: Option<&str>,
    port: Option<u32>,
    source_labels: &BTreeMap<String, String>,
    source_namespace: Option<&str>,
    gateways: &[String],
    at: &str,
) -> Result<(), FieldError> {
    for (k, subnet) in destination_subnets.iter().enumerate() {
        validate_subnet(subnet).map_err(|m| invalid(format!("{at}.destinationSubnets[{k}]"), m))?;
    }
    if let Some(subnet) = source_subnet {
        validate_subnet(subnet).map_err(|m| invalid(format!("{at}.sourceSubnet"), m))?;
    }
    if let Some(port) = port {
        validate_port(port, &format!("{at}.port"))?;
    }
    validate_labels(source_labels, &format!("{at}.sourceLabels"))?;
    if let Some(namespace) = source_namespace
        && !is_dns1123_label(namespace)
    {
        return Err(invalid(
            format!("{at}.sourceNamespace"),
            format!("{namespace:?} is not a namespace name"),
        ));
    }
    for (k, gateway) in gateways.iter().enumerate() {
        validate_gateway_name(gateway, &format!("{at}.gateways[{k}]"))?;
    }
    Ok(())
}

fn validate_route_destinations(
    destinations: &[istio::RouteDestination],
    resolved: &[istio::RouteDestination],
    at: &str,
    references: &References<'_>,
) -> Result<(), FieldError> {
    if destinations.is_empty() {
        return Err(invalid(
            format!("{at}.route"),
            "at least one destination is required",
        ));
    }
    validate_weights(destinations.iter().map(|d| d.weight), at)?;
    for (j, destination) in resolved.iter().enumerate() {
        validate_destination(
            &destination.destination,
            &format!("{at}.route[{j}].destination"),
            references,
        )?;
    }
    Ok(())
}
