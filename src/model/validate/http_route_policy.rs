//! Checks of what an HTTP route does besides routing, after istiod's `ValidateVirtualService`:
//! header operations, authority rewrites, CORS, fault injection, redirects, direct responses,
//! retries and rewrites. Each reports the first problem with the field that holds it; the route's
//! matches and destinations are checked in `virtual_service`.

use super::invalid;
use super::syntax::{
    validate_duration, validate_header_name, validate_percentage, validate_port, validate_regex,
    validate_string_match,
};
use crate::inputs::FieldError;
use crate::istio::{self, StringMatch};
use crate::model::virtual_service::{
    MAX_DIRECT_RESPONSE_BODY, grpc_status_code, is_known_http_status,
};

fn is_authority_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// Request `set`/`add` may name the authority (a host rewrite); nothing else may name a
/// pseudo-header or `host`.
pub(super) fn validate_header_operations(
    headers: &istio::Headers,
    at: &str,
) -> Result<(), FieldError> {
    let sides = [
        ("request", &headers.request),
        ("response", &headers.response),
    ];
    for (side, operations) in sides {
        let Some(operations) = operations else {
            continue;
        };
        let at = format!("{at}.{side}");
        let named = [("set", &operations.set), ("add", &operations.add)];
        for (op, entries) in named {
            for name in entries.keys() {
                let authority_ok = side == "request" && is_authority_header(name);
                validate_operation_header(name, authority_ok)
                    .map_err(|m| invalid(format!("{at}.{op}"), m))?;
            }
        }
        for (k, name) in operations.remove.iter().enumerate() {
            validate_operation_header(name, false)
                .map_err(|m| invalid(format!("{at}.remove[{k}]"), m))?;
        }
    }
    Ok(())
}

fn validate_operation_header(name: &str, authority_ok: bool) -> Result<(), String> {
    if authority_ok {
        return Ok(());
    }
    if name.starts_with(':') || name.eq_ignore_ascii_case("host") {
        return Err(format!("header {name:?} cannot be modified"));
    }
    validate_header_name(name)
}

/// The authority can be rewritten in one place only.
pub(super) fn validate_authority_rewrite(
    route: &istio::HttpRoute,
    at: &str,
) -> Result<(), FieldError> {
    let request = route.headers.as_ref().and_then(|h| h.request.as_ref());
    let from_rewrite = route
        .rewrite
        .as_ref()
        .and_then(|r| r.authority.as_deref())
        .filter(|a| !a.is_empty());
    let from_headers = request.into_iter().flat_map(|ops| {
        ops.set
            .iter()
            .chain(&ops.add)
            .filter(|(name, _)| is_authority_header(name))
    });
    let count = usize::from(from_rewrite.is_some()) + from_headers.count();
    if count > 1 {
        return Err(invalid(
            format!("{at}.headers.request"),
            "the authority is rewritten more than once (rewrite.authority and an :authority or host header)",
        ));
    }
    Ok(())
}

const CORS_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

pub(super) fn validate_cors(cors: &istio::CorsPolicy, at: &str) -> Result<(), FieldError> {
    for (j, origin) in cors.allow_origins.iter().enumerate() {
        let at = format!("{at}.allowOrigins[{j}]");
        let (form, value) = match origin {
            StringMatch::Exact(v) => ("exact", v),
            StringMatch::Prefix(v) => ("prefix", v),
            StringMatch::Regex(v) => ("regex", v),
        };
        if value.is_empty() {
            return Err(invalid(format!("{at}.{form}"), "empty origin match"));
        }
        validate_string_match(origin, &at)?;
    }
    for (j, method) in cors.allow_methods.iter().enumerate() {
        if !CORS_METHODS.contains(&method.as_str()) {
            return Err(invalid(
                format!("{at}.allowMethods[{j}]"),
                format!(
                    "{method:?} is not a supported HTTP method ({})",
                    CORS_METHODS.join(", ")
                ),
            ));
        }
    }
    let lists = [
        ("allowHeaders", &cors.allow_headers),
        ("exposeHeaders", &cors.expose_headers),
    ];
    for (name, headers) in lists {
        for (j, header) in headers.iter().enumerate() {
            if header != "*" {
                validate_header_name(header)
                    .map_err(|m| invalid(format!("{at}.{name}[{j}]"), m))?;
            }
        }
    }
    if let Some(max_age) = cors.max_age {
        validate_duration(max_age, &format!("{at}.maxAge"))?;
        if max_age.0.subsec_nanos() != 0 {
            return Err(invalid(
                format!("{at}.maxAge"),
                "maxAge is sent in whole seconds",
            ));
        }
    }
    if cors.unmatched_preflights == Some(istio::UnmatchedPreflights::Unknown) {
        return Err(invalid(
            format!("{at}.unmatchedPreflights"),
            "unknown value (expected UNSPECIFIED, FORWARD or IGNORE)",
        ));
    }
    Ok(())
}

pub(super) fn validate_fault(
    fault: &istio::HttpFaultInjection,
    at: &str,
) -> Result<(), FieldError> {
    if fault.abort.is_none() && fault.delay.is_none() {
        return Err(invalid(at, "a fault needs an abort, a delay or both"));
    }
    if let Some(abort) = &fault.abort {
        let at = format!("{at}.abort");
        if let Some(percentage) = &abort.percentage {
            validate_percentage(percentage, &format!("{at}.percentage.value"))?;
        }
        let kinds = usize::from(abort.http_status.is_some())
            + usize::from(abort.grpc_status.is_some())
            + usize::from(abort.http2_error.is_some());
        if kinds != 1 {
            return Err(invalid(
                at,
                "exactly one of httpStatus or grpcStatus is required",
            ));
        }
        if abort.http2_error.is_some() {
            return Err(invalid(
                format!("{at}.http2Error"),
                "HTTP/2 error aborts are not supported (by istiod either)",
            ));
        }
        if let Some(status) = abort.http_status
            && !(200..=599).contains(&status)
        {
            return Err(invalid(
                format!("{at}.httpStatus"),
                format!("HTTP status {status} is not in 200..=599"),
            ));
        }
        if let Some(status) = &abort.grpc_status
            && grpc_status_code(status).is_none()
        {
            return Err(invalid(
                format!("{at}.grpcStatus"),
                format!("{status:?} is not a gRPC status name such as UNAVAILABLE or NOT_FOUND"),
            ));
        }
    }
    if let Some(delay) = &fault.delay {
        let at = format!("{at}.delay");
        if let Some(percentage) = &delay.percentage {
            validate_percentage(percentage, &format!("{at}.percentage.value"))?;
        }
        if let Some(percent) = delay.percent
            && !(0..=100).contains(&percent)
        {
            return Err(invalid(
                format!("{at}.percent"),
                format!("{percent} is not in 0..=100"),
            ));
        }
        if delay.exponential_delay.is_some() {
            return Err(invalid(
                format!("{at}.exponentialDelay"),
                "exponential delays are not supported (by istiod either)",
            ));
        }
        let Some(fixed) = delay.fixed_delay else {
            return Err(invalid(
                format!("{at}.fixedDelay"),
                "fixedDelay is required",
            ));
        };
        validate_duration(fixed, &format!("{at}.fixedDelay"))?;
    }
    Ok(())
}

/// Envoy's redirect codes; istiod emits a route without an action (which Envoy refuses) for any
/// other 3xx, so those are refused here.
const REDIRECT_CODES: &[u32] = &[301, 302, 303, 307, 308];

pub(super) fn validate_redirect(
    redirect: &istio::HttpRedirect,
    at: &str,
) -> Result<(), FieldError> {
    let empty = |v: &Option<String>| v.as_deref().is_none_or(str::is_empty);
    if empty(&redirect.uri)
        && empty(&redirect.authority)
        && empty(&redirect.scheme)
        && redirect.port.is_none()
        && redirect.derive_port.is_none()
    {
        return Err(invalid(
            at,
            "a redirect needs at least one of uri, authority, scheme, port or derivePort",
        ));
    }
    if let Some(code) = redirect.redirect_code
        && !REDIRECT_CODES.contains(&code)
    {
        return Err(invalid(
            format!("{at}.redirectCode"),
            format!("{code} is not a redirect code Envoy sends (301, 302, 303, 307 or 308)"),
        ));
    }
    if let Some(scheme) = redirect.scheme.as_deref()
        && !scheme.is_empty()
        && scheme != "http"
        && scheme != "https"
    {
        return Err(invalid(
            format!("{at}.scheme"),
            format!("{scheme:?} is not http or https"),
        ));
    }
    if let Some(port) = redirect.port {
        if redirect.derive_port.is_some() {
            return Err(invalid(
                format!("{at}.derivePort"),
                "port and derivePort cannot both be set",
            ));
        }
        validate_port(port, &format!("{at}.port"))?;
    }
    if redirect.derive_port == Some(istio::RedirectPortSelection::Unknown) {
        return Err(invalid(
            format!("{at}.derivePort"),
            "unknown value (expected FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT)",
        ));
    }
    Ok(())
}

pub(super) fn validate_direct_response(
    direct: &istio::HttpDirectResponse,
    at: &str,
) -> Result<(), FieldError> {
    if !(200..=599).contains(&direct.status) {
        return Err(invalid(
            format!("{at}.status"),
            format!("HTTP status {} is not in 200..=599", direct.status),
        ));
    }
    let size = match &direct.body {
        Some(istio::HttpBody::String(text)) => text.len(),
        Some(istio::HttpBody::Bytes(bytes)) => bytes.len(),
        None => 0,
    };
    if size > MAX_DIRECT_RESPONSE_BODY {
        return Err(invalid(
            format!("{at}.body"),
            format!("the body has {size} bytes; at most 1MiB is allowed"),
        ));
    }
    Ok(())
}

/// Envoy's `x-envoy-retry-on` and `x-envoy-retry-grpc-on` conditions.
const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

pub(crate) fn validate_retries(retries: &istio::HttpRetry, at: &str) -> Result<(), FieldError> {
    if retries.attempts < 0 {
        return Err(invalid(
            format!("{at}.attempts"),
            "attempts cannot be negative",
        ));
    }
    if retries.attempts == 0
        && (retries.per_try_timeout.is_some()
            || retries.retry_on.as_deref().is_some_and(|r| !r.is_empty())
            || retries.retry_remote_localities.is_some())
    {
        return Err(invalid(
            format!("{at}.attempts"),
            "attempts: 0 disables retries, but perTryTimeout, retryOn or retryRemoteLocalities is set",
        ));
    }
    if let Some(per_try) = retries.per_try_timeout {
        validate_duration(per_try, &format!("{at}.perTryTimeout"))?;
    }
    if let Some(retry_on) = retries.retry_on.as_deref().filter(|r| !r.is_empty()) {
        for condition in retry_on.split(',').map(str::trim) {
            let status = condition.parse::<u32>().is_ok_and(is_known_http_status);
            if !status && !RETRY_ON.contains(&condition) {
                return Err(invalid(
                    format!("{at}.retryOn"),
                    format!(
                        "{condition:?} is neither a retry condition Envoy knows nor an HTTP status code"
                    ),
                ));
            }
        }
    }
    if let Some(backoff) = retries.backoff {
        validate_duration(backoff, &format!("{at}.backoff"))?;
    }
    Ok(())
}

pub(super) fn validate_rewrite(rewrite: &istio::HttpRewrite, at: &str) -> Result<(), FieldError> {
    let uri = rewrite.uri.as_deref().filter(|uri| !uri.is_empty());
    let authority = rewrite.authority.as_deref().filter(|a| !a.is_empty());
    if uri.is_some() && rewrite.uri_regex_rewrite.is_some() {
        return Err(invalid(
            format!("{at}.uriRegexRewrite"),
            "uri and uriRegexRewrite cannot both be set",
        ));
    }
    if uri.is_none() && rewrite.uri_regex_rewrite.is_none() && authority.is_none() {
        return Err(invalid(
            at,
            "a rewrite needs at least one of uri, uriRegexRewrite or authority",
        ));
    }
    if let Some(regex) = &rewrite.uri_regex_rewrite {
        let at = format!("{at}.uriRegexRewrite");
        if regex.pattern.is_empty() || regex.rewrite.is_empty() {
            return Err(invalid(at, "both match and rewrite are required"));
        }
        validate_regex(&regex.pattern, &format!("{at}.match"))?;
    }
    Ok(())
}
