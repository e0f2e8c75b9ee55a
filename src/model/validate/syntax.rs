//! Syntax checks VirtualService validation shares: host names, label selectors, gateway names,
//! header names, regexes, durations, ports, percentages and subnets, as istiod's validation
//! (and Envoy) accept them.

use std::collections::BTreeMap;

use super::invalid;
use super::re2::check_re2_limits;
use crate::bootstrap::RE2_MAX_PROGRAM_SIZE;
use crate::inputs::FieldError;
use crate::istio::{self, StringMatch};

/// istiod's `ValidateWildcardDomain`: DNS-1123 labels, a wildcard only as the first
/// label (`*`, `*.example.com`, `*foo.example.com`).
pub(super) fn validate_wildcard_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("host is required".to_string());
    }
    if domain.len() > 255 {
        return Err(format!(
            "domain name {domain:?} is longer than 255 characters"
        ));
    }
    let (first, rest) = match domain.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (domain, None),
    };
    let label = first
        .strip_prefix("*-")
        .or_else(|| first.strip_prefix('*'))
        .unwrap_or(first);
    let wildcard_ok = first == "*" || (label.len() < 64 && is_dns1123_label(label));
    if !wildcard_ok {
        return Err(format!(
            "domain name {domain:?} is invalid (label {first:?} is not a DNS-1123 label; only the first label may be a wildcard)"
        ));
    }
    match rest {
        Some(rest) => validate_dns1123_labels(rest)
            .map_err(|label| format!("domain name {domain:?} is invalid (label {label:?})")),
        None => Ok(()),
    }
}

/// Dot-separated DNS-1123 labels (a trailing dot allowed); the failing label on error.
pub(super) fn validate_dns1123_labels(domain: &str) -> Result<(), String> {
    let labels: Vec<&str> = domain.split('.').collect();
    if let Some(last) = labels.last()
        && !last.is_empty()
        && last.chars().all(|c| c.is_ascii_digit())
    {
        return Err(last.to_string());
    }
    for (i, label) in labels.iter().enumerate() {
        if i == labels.len() - 1 && label.is_empty() {
            break;
        }
        if !is_dns1123_label(label) {
            return Err(label.to_string());
        }
    }
    Ok(())
}

/// Letters, digits and `-`, starting and ending with a letter or digit, at most 63: istiod's
/// `labels.IsDNS1123Label`, which takes capitals too (Kubernetes' own check does not, but these
/// are names inside Istio specs, which only istiod's check applies to).
pub(super) fn is_dns1123_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// `namespace/name`, or a bare (possibly dotted) name.
pub(super) fn validate_gateway_name(gateway: &str, at: &str) -> Result<(), FieldError> {
    let ok = match gateway.split_once('/') {
        Some((namespace, name)) => is_dns1123_label(namespace) && is_dns1123_label(name),
        None => validate_dns1123_labels(gateway).is_ok() && !gateway.is_empty(),
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            at,
            format!("invalid gateway name {gateway:?} (expected mesh, NAME or NAMESPACE/NAME)"),
        ))
    }
}

/// Matchers that become Envoy string matchers, where prefixes and regexes cannot be empty.
pub(super) fn validate_header_string_match(
    matcher: &StringMatch,
    at: &str,
) -> Result<(), FieldError> {
    match matcher {
        StringMatch::Prefix(prefix) if prefix.is_empty() => {
            Err(invalid(format!("{at}.prefix"), "empty prefix"))
        }
        StringMatch::Regex(regex) if regex.is_empty() => {
            Err(invalid(format!("{at}.regex"), "empty regex"))
        }
        other => validate_string_match(other, at),
    }
}

pub(super) fn validate_string_match(matcher: &StringMatch, at: &str) -> Result<(), FieldError> {
    if let StringMatch::Regex(pattern) = matcher {
        validate_regex(pattern, &format!("{at}.regex"))?;
    }
    Ok(())
}

pub(super) fn validate_regex(pattern: &str, at: &str) -> Result<(), FieldError> {
    let refused = |reason: String| {
        // A pattern may be megabytes long; the error shows its start.
        let shown: String = pattern.chars().take(MAX_REGEX_SHOWN).collect();
        let ellipsis = if shown.len() < pattern.len() {
            "..."
        } else {
            ""
        };
        invalid(
            at,
            format!("invalid RE2 regex {shown:?}{ellipsis}: {reason}"),
        )
    };
    // Every character costs RE2 at least one instruction, save syntax; a pattern this long is
    // over Envoy's program size whatever it says, and parsing it would take memory for nothing.
    if pattern.len() > MAX_REGEX_LEN {
        return Err(refused(format!(
            "{} bytes long, more than Envoy compiles ({MAX_REGEX_LEN})",
            pattern.len()
        )));
    }
    // regex-syntax follows RE2's syntax and guarantees (no backreferences, no lookaround); its
    // syntax tree shows what RE2 limits on top. Translating the tree checks what parsing alone
    // does not (class ranges, Unicode class names). Nothing is compiled: the regex crate's
    // program for `\w{1000}` is far larger than RE2's, whose `\w` is ASCII, and would refuse
    // what Envoy accepts.
    let ast = regex_syntax::ast::parse::Parser::new()
        .parse(pattern)
        .map_err(|error| refused(last_line(&error.to_string())))?;
    check_re2_limits(&ast).map_err(refused)?;
    regex_syntax::hir::translate::Translator::new()
        .translate(pattern, &ast)
        .map_err(|error| refused(last_line(&error.to_string())))?;
    Ok(())
}

/// The regex crates draw the pattern with a caret over several lines; a config error is one
/// line, so keep the last (the reason).
fn last_line(text: &str) -> String {
    text.lines()
        .last()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string()
}

/// The longest pattern checked: twice as long as Envoy's program size limit.
const MAX_REGEX_LEN: usize = 2 * RE2_MAX_PROGRAM_SIZE as usize;
/// How much of a refused pattern its error shows.
const MAX_REGEX_SHOWN: usize = 200;

/// RFC 7230 token characters.
pub(super) fn validate_header_name(name: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() {
        Err("header name cannot be empty".to_string())
    } else if !name.chars().all(token) {
        Err(format!("{name:?} is not a valid header name"))
    } else {
        Ok(())
    }
}

pub(super) fn validate_percentage(percentage: &istio::Percent, at: &str) -> Result<(), FieldError> {
    if (0.0..=100.0).contains(&percentage.value) {
        Ok(())
    } else {
        Err(invalid(
            at,
            format!("{} is not a percentage in 0..=100", percentage.value),
        ))
    }
}

/// istiod's rule for durations: at least 1ms, in whole milliseconds.
pub(super) fn validate_duration(
    duration: crate::duration::Duration,
    at: &str,
) -> Result<(), FieldError> {
    if duration.0 < std::time::Duration::from_millis(1) {
        return Err(invalid(at, "duration must be at least 1ms"));
    }
    if !duration.0.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(invalid(at, "durations are in whole milliseconds"));
    }
    Ok(())
}

/// Protocols istiod's `protocol.Parse` knows.
const PROTOCOLS: [&str; 12] = [
    "TCP",
    "UDP",
    "GRPC",
    "GRPC-WEB",
    "HTTP",
    "HTTP_PROXY",
    "HTTP2",
    "HTTPS",
    "TLS",
    "MONGO",
    "REDIS",
    "MYSQL",
];

/// Whether istiod knows a port protocol (case-insensitive).
pub(super) fn is_known_protocol(protocol: &str) -> bool {
    PROTOCOLS
        .iter()
        .any(|known| known.eq_ignore_ascii_case(protocol))
}

/// Addresses of unix domain sockets.
pub(crate) use crate::model::UNIX_PREFIX;

pub(super) fn validate_port(port: u32, at: &str) -> Result<(), FieldError> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(invalid(at, format!("port {port} is not in 1..=65535")))
    }
}

/// Kubernetes label syntax: `[prefix/]name` keys, values of at most 63 characters.
pub(super) fn validate_labels(
    labels: &BTreeMap<String, String>,
    at: &str,
) -> Result<(), FieldError> {
    let name_ok = |name: &str| {
        let bytes = name.as_bytes();
        bytes.len() <= 63
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
    };
    for (key, value) in labels {
        let (prefix, name) = match key.rsplit_once('/') {
            Some((prefix, name)) => (Some(prefix), name),
            None => (None, key.as_str()),
        };
        let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && validate_dns1123_labels(p).is_ok());
        if !prefix_ok || !name_ok(name) {
            return Err(invalid(at, format!("{key:?} is not a valid label key")));
        }
        if !value.is_empty() && !name_ok(value) {
            return Err(invalid(
                format!("{at}.{key}"),
                format!("{value:?} is not a valid label value"),
            ));
        }
    }
    Ok(())
}

/// An IP address or a CIDR block.
pub(super) fn validate_subnet(subnet: &str) -> Result<(), String> {
    let (address, length) = match subnet.split_once('/') {
        Some((address, length)) => (address, Some(length)),
        None => (subnet, None),
    };
    let address: std::net::IpAddr = address
        .parse()
        .map_err(|_| format!("{subnet:?} is not an IP address or CIDR block"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    if let Some(length) = length
        && !length.parse::<u32>().is_ok_and(|l| l <= max)
    {
        return Err(format!("{subnet:?} has an invalid prefix length"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_follow_istiod() {
        for good in [
            "reviews",
            "reviews.bookinfo.svc.cluster.local",
            "*.example.com",
            "*",
            "*foo.example.com",
            "istio.io.",
            // istiod's labels take capitals (samples/multicluster uses `ISTIOD-HOST.DOMAIN`).
            "Reviews",
        ] {
            assert_eq!(validate_wildcard_domain(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a.*.example.com",
            "foo_bar.example.com",
            "example.123",
            "-a.example.com",
        ] {
            assert!(validate_wildcard_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regexes_are_held_to_re2_not_to_the_regex_crate() {
        // RE2's `\w` is ASCII, so Envoy compiles a thousand of them; Unicode classes and case
        // folding are RE2 syntax too.
        for accepted in ["\\w{1000}", "\\pL{3}.*", "(?i)caf\u{e9}", "[[:alpha:]]+"] {
            assert_eq!(validate_regex(accepted, "at"), Ok(()), "{accepted}");
        }
        for refused in ["(jason", "[z-a]", "\\p{NoSuchClass}", "a{1001}", "(a)\\1"] {
            assert!(validate_regex(refused, "at").is_err(), "{refused}");
        }
    }

    #[test]
    fn subnets_labels_and_gateways() {
        for good in ["10.0.0.0/8", "192.168.1.7", "::1/128", "fd00::/8"] {
            assert_eq!(validate_subnet(good), Ok(()), "{good}");
        }
        for bad in ["10.0.0.0/33", "10.0.0", "::1/129", "example.com/8"] {
            assert!(validate_subnet(bad).is_err(), "{bad}");
        }
        let labels = |key: &str, value: &str| {
            validate_labels(&[(key.to_string(), value.to_string())].into(), "at").is_ok()
        };
        assert!(labels("app", "web"));
        assert!(labels("app.kubernetes.io/name", "web_1.x"));
        assert!(labels("app", ""));
        assert!(!labels("app", "-web"));
        assert!(!labels("bad key", "web"));
        assert!(validate_gateway_name("istio-system/ingress", "at").is_ok());
        assert!(validate_gateway_name("ingress", "at").is_ok());
        assert!(validate_gateway_name("istio-system/", "at").is_err());
    }

    #[test]
    fn durations_are_whole_milliseconds_of_at_least_one() {
        let duration = |text: &str| text.parse::<crate::duration::Duration>().unwrap();
        assert!(validate_duration(duration("1ms"), "at").is_ok());
        assert!(validate_duration(duration("1.5s"), "at").is_ok());
        assert!(validate_duration(duration("0s"), "at").is_err());
        assert!(validate_duration(duration("1500us"), "at").is_err());
    }
}
