use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Percent, PortSelector, StringMatch, StringMatchMap};
use crate::duration::Duration;

/// `VirtualService.spec`: traffic routing rules for a set of hosts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VirtualService {
    /// The destination hosts to which traffic is being sent.
    pub hosts: Vec<String>,
    /// The names of gateways and sidecars that should apply these routes (`mesh` for sidecars).
    pub gateways: Vec<String>,
    /// An ordered list of route rules for HTTP traffic.
    pub http: Vec<HttpRoute>,
    /// An ordered list of route rules for non-terminated TLS and HTTPS traffic.
    pub tls: Vec<TlsRoute>,
    /// An ordered list of route rules for opaque TCP traffic.
    pub tcp: Vec<TcpRoute>,
    /// A list of namespaces to which this virtual service is exported.
    pub export_to: Vec<String>,
}

/// One HTTP routing rule: match conditions and what to do with matching requests.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRoute {
    /// The name assigned to the route for debugging purposes.
    pub name: Option<String>,
    /// Match conditions to be satisfied for the rule to be activated (any one of them).
    #[serde(rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    /// Where to forward matching requests.
    pub route: Vec<HttpRouteDestination>,
    /// Send a redirect instead of forwarding.
    pub redirect: Option<HttpRedirect>,
    /// Answer directly instead of forwarding.
    pub direct_response: Option<HttpDirectResponse>,
    /// Delegate routing to another VirtualService.
    pub delegate: Option<Delegate>,
    /// Rewrite URIs and the authority before forwarding.
    pub rewrite: Option<HttpRewrite>,
    /// Timeout for HTTP requests, default is disabled.
    pub timeout: Option<Duration>,
    /// Retry policy for HTTP requests.
    pub retries: Option<HttpRetry>,
    /// Fault injection policy to apply on HTTP traffic at the client side.
    pub fault: Option<HttpFaultInjection>,
    /// Mirror HTTP traffic to another destination as well.
    pub mirror: Option<Destination>,
    /// Destinations to mirror HTTP traffic to, each with its own percentage.
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Deprecated: use `mirrorPercentage`. Istio's JSON name for it; see
    /// [`HttpRoute::legacy_mirror_percent`].
    #[serde(rename = "mirror_percent")]
    pub mirror_percent: Option<u32>,
    /// `mirror_percent` as Istio's CRDs spell it too (they have both properties, so an object
    /// may carry both).
    #[serde(rename = "mirrorPercent")]
    pub mirror_percent_camel_case: Option<u32>,
    /// Percentage of the traffic to be mirrored by the `mirror` field.
    pub mirror_percentage: Option<Percent>,
    /// Cross-Origin Resource Sharing policy (CORS).
    pub cors_policy: Option<CorsPolicy>,
    /// Header manipulation rules.
    pub headers: Option<Headers>,
}

impl HttpRoute {
    /// The deprecated mirror percentage under either of its names, `mirror_percent` first, with
    /// the name it was read under.
    pub fn legacy_mirror_percent(&self) -> Option<(u32, &'static str)> {
        match (self.mirror_percent, self.mirror_percent_camel_case) {
            (Some(percent), _) => Some((percent, "mirror_percent")),
            (None, Some(percent)) => Some((percent, "mirrorPercent")),
            (None, None) => None,
        }
    }
}

/// Conditions on a request; all given conditions must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpMatchRequest {
    /// The name assigned to a match.
    pub name: Option<String>,
    #[serde(deserialize_with = "super::string_match::optional")]
    pub uri: Option<StringMatch>,
    #[serde(deserialize_with = "super::string_match::optional")]
    pub scheme: Option<StringMatch>,
    #[serde(deserialize_with = "super::string_match::optional")]
    pub method: Option<StringMatch>,
    #[serde(deserialize_with = "super::string_match::optional")]
    pub authority: Option<StringMatch>,
    /// Header matchers; keys must be lowercase. `name: {}` asks for presence only.
    pub headers: StringMatchMap,
    /// Headers that must not match.
    pub without_headers: StringMatchMap,
    /// Query parameters for matching.
    pub query_params: StringMatchMap,
    /// Specifies the ports on the host that is being addressed.
    pub port: Option<u32>,
    /// Labels that constrain the rule to client workloads with these labels.
    pub source_labels: BTreeMap<String, String>,
    /// Source namespace constraining the applicability of a rule to workloads in that namespace.
    pub source_namespace: Option<String>,
    /// Names of gateways where the rule should be applied.
    pub gateways: Vec<String>,
    /// Flag to specify whether the URI matching should be case-insensitive.
    pub ignore_uri_case: bool,
    /// The human readable prefix to use when emitting statistics for this route.
    pub stat_prefix: Option<String>,
}

/// A destination with its share of the traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRouteDestination {
    pub destination: Destination,
    /// Weight specifies the relative proportion of traffic to be forwarded to the destination.
    pub weight: Option<i32>,
    /// Header manipulation rules for this destination.
    pub headers: Option<Headers>,
}

/// A service (and optionally a subset and port) in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Destination {
    /// The name of a service from the service registry.
    pub host: String,
    /// The name of a subset within the service.
    pub subset: Option<String>,
    /// Specifies the port on the host that is being addressed.
    pub port: Option<PortSelector>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRedirect {
    /// Overwrite the path portion of the URL with this value.
    pub uri: Option<String>,
    /// Overwrite the authority/host portion of the URL with this value.
    pub authority: Option<String>,
    /// Overwrite the port portion of the URL with this value.
    pub port: Option<u32>,
    /// Set the port from the protocol or the request instead.
    pub derive_port: Option<RedirectPortSelection>,
    /// Overwrite the scheme portion of the URL with this value.
    pub scheme: Option<String>,
    /// The HTTP status code to use in the redirect response (default 301).
    pub redirect_code: Option<u32>,
    /// Replace the matched prefix of the path with this value.
    pub prefix_rewrite: Option<String>,
}

/// `HTTPRedirect.derivePort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedirectPortSelection {
    /// 80 for HTTP and 443 for HTTPS.
    FromProtocolDefault,
    /// The port of the request.
    FromRequestPort,
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpDirectResponse {
    /// Specifies the HTTP response status to be returned.
    pub status: u32,
    /// Specifies the content of the response body.
    pub body: Option<HttpBody>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum HttpBody {
    String(String),
    /// Base64 in YAML, as protobuf JSON writes bytes.
    Bytes(
        #[serde(with = "base64_bytes")]
        #[schemars(with = "String")]
        Vec<u8>,
    ),
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text.trim())
            .map_err(|error| serde::de::Error::custom(format!("invalid base64: {error}")))
    }
}

/// Names the VirtualService that holds delegated routes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Delegate {
    /// Name specifies the name of the delegate VirtualService.
    pub name: String,
    /// Namespace specifies the namespace where the delegate VirtualService resides.
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRewrite {
    /// Rewrite the path (or the prefix) portion of the URI with this value.
    pub uri: Option<String>,
    /// Rewrite the Authority/Host header with this value.
    pub authority: Option<String>,
    /// Rewrite the path portion of the URI with the specified regex.
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RegexRewrite {
    /// RE2 style regex-based match.
    #[serde(rename = "match")]
    pub pattern: String,
    /// The string that should replace into matching portions of original URI.
    pub rewrite: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpRetry {
    /// Number of retries to be allowed for a given request (0 disables retries).
    pub attempts: i32,
    /// Timeout per attempt for a given request, including the initial call and any retries.
    pub per_try_timeout: Option<Duration>,
    /// Specifies the conditions under which retry takes place (comma-separated).
    pub retry_on: Option<String>,
    /// Flag to specify whether the retries should retry to other localities.
    pub retry_remote_localities: Option<bool>,
    /// Flag to specify whether the retries should ignore previously tried hosts during retry.
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Specifies the minimum duration between retry attempts.
    pub backoff: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpFaultInjection {
    /// Delay requests before forwarding.
    pub delay: Option<FaultDelay>,
    /// Abort requests and return error codes.
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultDelay {
    /// Add a fixed delay before forwarding the request.
    pub fixed_delay: Option<Duration>,
    /// Add a delay growing exponentially (unsupported by istiod too).
    pub exponential_delay: Option<Duration>,
    /// Percentage of requests on which the delay will be injected.
    pub percentage: Option<Percent>,
    /// Deprecated: percentage of requests as an integer (0-100); use `percentage`.
    pub percent: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultAbort {
    /// HTTP status code to use to abort the HTTP request.
    pub http_status: Option<i32>,
    /// GRPC status code to use to abort the request (a name such as `UNAVAILABLE`).
    pub grpc_status: Option<String>,
    /// HTTP/2 error to abort the request with (unsupported by istiod too).
    pub http2_error: Option<String>,
    /// Percentage of requests to be aborted with the error code provided.
    pub percentage: Option<Percent>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpMirrorPolicy {
    /// Destination specifies the target of the mirror operation.
    pub destination: Destination,
    /// Percentage of the traffic to be mirrored to this destination.
    pub percentage: Option<Percent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct CorsPolicy {
    /// Deprecated: use `allowOrigins`.
    pub allow_origin: Vec<String>,
    /// String patterns that match allowed origins.
    pub allow_origins: Vec<StringMatch>,
    /// List of HTTP methods allowed to access the resource.
    pub allow_methods: Vec<String>,
    /// List of HTTP headers that can be used when requesting the resource.
    pub allow_headers: Vec<String>,
    /// A list of HTTP headers that the browsers are allowed to access.
    pub expose_headers: Vec<String>,
    /// Specifies how long the results of a preflight request can be cached.
    pub max_age: Option<Duration>,
    /// Whether the caller may send the actual request (not the preflight) with credentials.
    pub allow_credentials: Option<bool>,
    /// Whether preflight requests not matching the allowed origins are forwarded upstream.
    pub unmatched_preflights: Option<UnmatchedPreflights>,
}

/// `CorsPolicy.unmatchedPreflights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnmatchedPreflights {
    Unspecified,
    Forward,
    Ignore,
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Headers {
    /// Header manipulation rules to apply before forwarding a request.
    pub request: Option<HeaderOperations>,
    /// Header manipulation rules to apply before returning a response.
    pub response: Option<HeaderOperations>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct HeaderOperations {
    /// Overwrite the headers specified by key with the given values.
    pub set: BTreeMap<String, String>,
    /// Append the given values to the headers specified by keys.
    pub add: BTreeMap<String, String>,
    /// Remove the specified headers.
    pub remove: Vec<String>,
}

/// A rule for non-terminated TLS traffic, matched by SNI.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsRoute {
    /// Match conditions to be satisfied for the rule to be activated.
    #[serde(rename = "match")]
    pub matches: Vec<TlsMatchAttributes>,
    /// The destination to which the connection should be forwarded to.
    pub route: Vec<RouteDestination>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsMatchAttributes {
    /// SNI (server name indicator) to match on.
    pub sni_hosts: Vec<String>,
    /// IPv4 or IPv6 ip addresses of destination with optional subnet.
    pub destination_subnets: Vec<String>,
    /// Specifies the port on the host that is being addressed.
    pub port: Option<u32>,
    /// Labels that constrain the rule to client workloads with these labels.
    pub source_labels: BTreeMap<String, String>,
    /// Names of gateways where the rule should be applied.
    pub gateways: Vec<String>,
    /// Source namespace constraining the applicability of a rule to workloads in that namespace.
    pub source_namespace: Option<String>,
}

/// A rule for opaque TCP traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpRoute {
    /// Match conditions to be satisfied for the rule to be activated.
    #[serde(rename = "match")]
    pub matches: Vec<L4MatchAttributes>,
    /// The destination to which the connection should be forwarded to.
    pub route: Vec<RouteDestination>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct L4MatchAttributes {
    /// IPv4 or IPv6 ip addresses of destination with optional subnet.
    pub destination_subnets: Vec<String>,
    /// Specifies the port on the host that is being addressed.
    pub port: Option<u32>,
    /// Deprecated: IPv4 or IPv6 ip address of the source with optional subnet.
    pub source_subnet: Option<String>,
    /// Labels that constrain the rule to client workloads with these labels.
    pub source_labels: BTreeMap<String, String>,
    /// Names of gateways where the rule should be applied.
    pub gateways: Vec<String>,
    /// Source namespace constraining the applicability of a rule to workloads in that namespace.
    pub source_namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RouteDestination {
    pub destination: Destination,
    /// Weight specifies the relative proportion of traffic to be forwarded to the destination.
    pub weight: Option<i32>,
}

/// The JWT claim path a header match names, as istiod's `jwt.ToRoutingClaim` reads it:
/// `@request.auth.claims.group.id` (dot-separated) or `@request.auth.claims[group][id]`; `None`
/// for any other header name. Such a match tests the request's verified JWT payload, not a
/// header.
pub fn jwt_claim_path(header: &str) -> Option<Vec<&str>> {
    const PREFIX: &str = "@request.auth.claims";
    let prefix = header.get(..PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &header[PREFIX.len()..];
    if let Some(dotted) = rest.strip_prefix('.').filter(|names| !names.is_empty()) {
        return Some(dotted.split('.').collect());
    }
    let bracketed = rest.strip_prefix('[')?.strip_suffix(']')?;
    (!bracketed.is_empty()).then(|| bracketed.split("][").collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_claim_paths_are_read_as_istiod_reads_them() {
        assert_eq!(
            jwt_claim_path("@request.auth.claims.admin"),
            Some(vec!["admin"])
        );
        assert_eq!(
            jwt_claim_path("@request.auth.claims.group.id"),
            Some(vec!["group", "id"])
        );
        assert_eq!(
            jwt_claim_path("@request.auth.claims[group][id.x]"),
            Some(vec!["group", "id.x"])
        );
        for not_a_claim in [
            "@request.auth.claims",
            "@request.auth.claims.",
            "x-user",
            "@request.auth.claims[]",
        ] {
            assert_eq!(jwt_claim_path(not_a_claim), None, "{not_a_claim}");
        }
    }

    /// The examples of Istio's VirtualService reference, in one object.
    const EXAMPLE: &str = r#"
hosts:
- reviews.prod.svc.cluster.local
- uk.bookinfo.com
gateways:
- bookinfo-gateway
- mesh
exportTo: ["."]
http:
- name: reviews-v2-routes
  match:
  - name: wpcatalog
    uri:
      prefix: /wpcatalog
    headers:
      end-user:
        exact: jason
      x-canary: {}
    withoutHeaders:
      x-debug:
        regex: ".*"
    queryParams:
      version:
        exact: v2
    ignoreUriCase: true
    sourceLabels:
      app: productpage
    sourceNamespace: bookinfo
    port: 9080
    statPrefix: wp
  rewrite:
    uri: /newcatalog
    uriRegexRewrite:
      match: ^/service/([^/]+)(/.*)$
      rewrite: \2/instance/\1
  route:
  - destination:
      host: reviews.prod.svc.cluster.local
      subset: v2
      port:
        number: 9080
    weight: 75
    headers:
      response:
        remove: [foo]
  - destination:
      host: reviews.prod.svc.cluster.local
      subset: v1
    weight: 25
  timeout: 10s
  retries:
    attempts: 3
    perTryTimeout: 2s
    retryOn: gateway-error,connect-failure,refused-stream
    retryRemoteLocalities: true
    retryIgnorePreviousHosts: false
    backoff: 25ms
  fault:
    delay:
      percentage:
        value: 0.1
      fixedDelay: 5s
    abort:
      percentage:
        value: 0.1
      httpStatus: 400
  mirror:
    host: httpbin
    subset: v2
  mirrorPercentage:
    value: 50.0
  mirrors:
  - destination:
      host: httpbin
      subset: v3
    percentage:
      value: 10
  corsPolicy:
    allowOrigins:
    - exact: https://example.com
    - regex: https://.*\.example\.org
    allowMethods: [POST, GET]
    allowCredentials: false
    allowHeaders: [X-Foo-Bar]
    exposeHeaders: [X-Exposed]
    maxAge: "24h"
    unmatchedPreflights: IGNORE
  headers:
    request:
      set:
        test: "true"
      add:
        x-add: "1"
- match:
  - uri:
      exact: /v1/getProductRatings
  redirect:
    uri: /v1/bookRatings
    authority: newratings.default.svc.cluster.local
    derivePort: FROM_REQUEST_PORT
    redirectCode: 302
- match:
  - uri:
      prefix: /grpc
  fault:
    abort:
      grpcStatus: UNAVAILABLE
      percentage:
        value: 5
- match:
  - uri:
      prefix: /old
  directResponse:
    status: 503
    body:
      string: "unknown error"
- match:
  - uri:
      prefix: /bytes
  directResponse:
    status: 200
    body:
      bytes: aGVsbG8=
- match:
  - uri:
      prefix: /productpage
  delegate:
    name: productpage
    namespace: nsA
tls:
- match:
  - port: 443
    sniHosts:
    - login.bookinfo.com
    destinationSubnets: [10.0.0.0/8]
    sourceLabels:
      app: ingress
    gateways: [mygateway]
    sourceNamespace: istio-system
  route:
  - destination:
      host: login.prod.svc.cluster.local
tcp:
- match:
  - port: 27017
    destinationSubnets: [10.1.0.0/16]
  route:
  - destination:
      host: mongo.backup.svc.cluster.local
      port:
        number: 5555
    weight: 100
"#;

    #[test]
    fn parses_the_reference_examples() {
        let vs: VirtualService = serde_saphyr::from_str(EXAMPLE).unwrap();
        assert_eq!(vs.hosts.len(), 2);
        assert_eq!(vs.export_to, ["."]);
        let first = &vs.http[0];
        let request = &first.matches[0];
        assert_eq!(request.uri, Some(StringMatch::Prefix("/wpcatalog".into())));
        assert_eq!(
            request.headers.get("end-user"),
            Some(&StringMatch::Exact("jason".into()))
        );
        assert!(request.headers.present.contains("x-canary"));
        assert_eq!(
            request.without_headers.get("x-debug"),
            Some(&StringMatch::Regex(".*".into()))
        );
        assert!(request.ignore_uri_case);
        assert_eq!(request.stat_prefix.as_deref(), Some("wp"));
        let rewrite = first.rewrite.as_ref().unwrap();
        assert_eq!(
            rewrite.uri_regex_rewrite.as_ref().unwrap().rewrite,
            r"\2/instance/\1"
        );
        assert_eq!(first.route[0].weight, Some(75));
        assert_eq!(first.timeout, Some(Duration::from_secs(10)));
        let retries = first.retries.as_ref().unwrap();
        assert_eq!(retries.retry_ignore_previous_hosts, Some(false));
        assert_eq!(retries.backoff, Some(Duration::from_millis(25)));
        let fault = first.fault.as_ref().unwrap();
        assert_eq!(
            fault.delay.as_ref().unwrap().fixed_delay,
            Some(Duration::from_secs(5))
        );
        assert_eq!(fault.abort.as_ref().unwrap().http_status, Some(400));
        assert_eq!(first.mirror.as_ref().unwrap().subset.as_deref(), Some("v2"));
        assert_eq!(first.mirrors[0].percentage, Some(Percent { value: 10.0 }));
        let cors = first.cors_policy.as_ref().unwrap();
        assert_eq!(cors.allow_origins.len(), 2);
        assert_eq!(cors.max_age, Some(Duration::from_secs(86400)));
        assert_eq!(cors.unmatched_preflights, Some(UnmatchedPreflights::Ignore));
        let redirect = vs.http[1].redirect.as_ref().unwrap();
        assert_eq!(
            redirect.derive_port,
            Some(RedirectPortSelection::FromRequestPort)
        );
        assert_eq!(
            vs.http[2]
                .fault
                .as_ref()
                .unwrap()
                .abort
                .as_ref()
                .unwrap()
                .grpc_status
                .as_deref(),
            Some("UNAVAILABLE")
        );
        assert_eq!(
            vs.http[4].direct_response.as_ref().unwrap().body,
            Some(HttpBody::Bytes(b"hello".to_vec()))
        );
        assert_eq!(
            vs.http[5].delegate,
            Some(Delegate {
                name: "productpage".into(),
                namespace: Some("nsA".into())
            })
        );
        assert_eq!(vs.tls[0].matches[0].sni_hosts, ["login.bookinfo.com"]);
        assert_eq!(vs.tcp[0].route[0].destination.port.unwrap().number, 5555);
    }

    #[test]
    fn both_spellings_of_mirror_percent_are_read() {
        let route = |fields: serde_json::Value| -> HttpRoute {
            serde_json::from_value(fields).expect("an HTTP route")
        };
        let camel = route(serde_json::json!({"mirrorPercent": 7}));
        assert_eq!(camel.legacy_mirror_percent(), Some((7, "mirrorPercent")));
        // Istio's CRDs have both properties; the proto's JSON name wins.
        let both = route(serde_json::json!({"mirror_percent": 5, "mirrorPercent": 7}));
        assert_eq!(both.legacy_mirror_percent(), Some((5, "mirror_percent")));
        assert_eq!(route(serde_json::json!({})).legacy_mirror_percent(), None);
    }

    #[test]
    fn unknown_fields_and_enum_values_are_tolerated() {
        let vs: VirtualService = serde_json::from_value(serde_json::json!({
            "hosts": ["a"],
            "futureField": {"x": 1},
            "http": [{
                "futureRouteField": true,
                "mirror_percent": 5,
                "redirect": {"derivePort": "FROM_THE_FUTURE"},
                "corsPolicy": {"unmatchedPreflights": "SOMETHING_NEW"}
            }]
        }))
        .unwrap();
        let route = &vs.http[0];
        assert_eq!(route.mirror_percent, Some(5));
        assert_eq!(
            route.redirect.as_ref().unwrap().derive_port,
            Some(RedirectPortSelection::Unknown)
        );
        assert_eq!(
            route.cors_policy.as_ref().unwrap().unmatched_preflights,
            Some(UnmatchedPreflights::Unknown)
        );
    }

    #[test]
    fn round_trips_through_json() {
        let vs: VirtualService = serde_saphyr::from_str(EXAMPLE).unwrap();
        let again: VirtualService =
            serde_json::from_value(serde_json::to_value(&vs).unwrap()).unwrap();
        assert_eq!(again, vs);
    }
}
