//! Every field of istiod's MeshConfig (istio.io/api `mesh/v1alpha1/config.proto`, v1.31), with its
//! JSON type and what rudder does with it. [`super::parse`] checks each field's type here (so a
//! field rudder does not read is still refused when istiod would refuse it) and warns about
//! fields that are set to something rudder does not carry out; docs/mesh-config.md is
//! [`render`]ed from this table (a unit test keeps the two equal).

use serde_json::Value;

/// A field's JSON type, as istiod's protobuf JSON decoder takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Bool,
    /// A number, or a string holding one.
    Integer,
    String,
    Strings,
    /// Go duration syntax (`10s`, `1m30s`), which istiod's decoder parses.
    Duration,
    /// One of these names, or the enum's number.
    Enum(&'static [&'static str]),
    Object,
    Objects,
}

/// What rudder does with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Supported,
    /// Carried out as istiod does; the note says how it meets rudder's own options.
    SupportedAs(&'static str),
    /// Carried out except what the note says.
    Partial(&'static str),
    /// Not carried out yet; the note says what it does in istiod or where it is tracked.
    NotYet(&'static str),
    /// Has no meaning for rudder; the note says why.
    NotApplicable(&'static str),
}

/// When setting a field earns a warning that rudder does not carry it out.
#[derive(Debug, Clone, Copy)]
pub enum WarnIf {
    Never,
    /// Whenever the value differs from istiod's default (JSON text).
    NotDefault(&'static str),
    /// When this says the value uses the part rudder does not carry out.
    Uses(fn(&Value) -> bool),
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The JSON name (istiod also takes the proto name, `snake_case`).
    pub name: &'static str,
    pub shape: Shape,
    pub status: Status,
    pub warn_if: WarnIf,
}

const fn entry(name: &'static str, shape: Shape, status: Status, warn_if: WarnIf) -> Field {
    Field {
        name,
        shape,
        status,
        warn_if,
    }
}

const SUPPORTED: Status = Status::Supported;
const SECURITY: &str = "mutual TLS and workload identity, issue 20";

use Shape::{Bool, Duration, Enum, Integer, Object, Objects, Strings};
use WarnIf::{Never, NotDefault, Uses};

/// Every MeshConfig field, in the proto's order.
pub const FIELDS: &[Field] = &[
    entry("proxyListenPort", Integer, SUPPORTED, Never),
    entry("proxyInboundListenPort", Integer, SUPPORTED, Never),
    entry(
        "proxyHttpPort",
        Integer,
        Status::NotYet(
            "istiod gives sidecars a listener on 127.0.0.1:PORT (or the proxy's `HTTP_PROXY_PORT` \
             metadata) whose HTTP connection manager takes absolute URLs and routes with the \
             `http_proxy` route configuration (every service's HTTP ports by `host:port`); rudder \
             builds neither",
        ),
        NotDefault("0"),
    ),
    entry("connectTimeout", Duration, SUPPORTED, Never),
    entry(
        "hboneIdleTimeout",
        Duration,
        Status::NotApplicable("ambient mode (HBONE) is not supported"),
        Never,
    ),
    entry("protocolDetectionTimeout", Duration, SUPPORTED, Never),
    entry("tcpKeepalive", Object, SUPPORTED, Never),
    entry(
        "ingressClass",
        Shape::String,
        Status::NotApplicable("Kubernetes Ingress objects are not read"),
        Never,
    ),
    entry(
        "ingressService",
        Shape::String,
        Status::NotApplicable("Kubernetes Ingress objects are not read"),
        Never,
    ),
    entry(
        "ingressControllerMode",
        Enum(&["UNSPECIFIED", "OFF", "DEFAULT", "STRICT"]),
        Status::NotApplicable("Kubernetes Ingress objects are not read"),
        Never,
    ),
    entry(
        "ingressSelector",
        Shape::String,
        Status::NotApplicable("Kubernetes Ingress objects are not read"),
        Never,
    ),
    entry(
        "enableTracing",
        Bool,
        Status::Partial(
            "connection managers trace as istiod's do; without a `defaultProviders.tracing` \
             provider spans go to the bootstrap's tracer, which istio-agent writes from \
             `defaultConfig.tracing` and a stock Envoy does not have",
        ),
        Never,
    ),
    entry("accessLogFile", Shape::String, SUPPORTED, Never),
    entry("accessLogFormat", Shape::String, SUPPORTED, Never),
    entry(
        "accessLogEncoding",
        Enum(&["TEXT", "JSON"]),
        SUPPORTED,
        Never,
    ),
    entry(
        "enableEnvoyAccessLogService",
        Bool,
        Status::Partial(
            "carried out as istiod does; its loggers send to the bootstrap cluster \
             `envoy_accesslog_service`, which `rudder bootstrap --access-log-service HOST:PORT` \
             adds (istio-agent adds it from `defaultConfig.envoyAccessLogService`); an Envoy \
             without it accepts the config and sends nothing",
        ),
        Never,
    ),
    entry("disableEnvoyListenerLog", Bool, SUPPORTED, Never),
    entry(
        "defaultConfig",
        Object,
        Status::Partial(
            "ProxyConfig is mostly the proxy's bootstrap, which istio-agent writes (`rudder \
             bootstrap` makes it for stock Envoy); its `tracing` sampling, `customTags`, \
             `maxPathTagLength` and `enableIstioTags` shape connection managers' tracing, as in \
             istiod",
        ),
        Never,
    ),
    entry(
        "outboundTrafficPolicy",
        Object,
        Status::Partial(
            "`ALLOW_ANY_DYNAMIC_DNS` is treated as `ALLOW_ANY`: istiod 1.31 builds it without \
             istio-agent (a dynamic forward proxy cluster `AllowAnyDynamicDNSCluster` with the \
             DNS cache `allow_any_dfp_dns_cache`, its HTTP filter in outbound HTTP connection \
             managers, catch-all virtual hosts `allow_any_dynamic_dns` routing to it, and an \
             HTTP chain on `virtualOutbound`; other TCP still goes to `PassthroughCluster`), \
             which rudder does not build yet. `tls` (egress TLS origination) is not carried out",
        ),
        Uses(uses_dynamic_dns),
    ),
    entry("inboundTrafficPolicy", Object, SUPPORTED, Never),
    entry(
        "configSources",
        Objects,
        Status::NotApplicable(
            "rudder reads config from files or the Kubernetes API server (`--config-dir`, `--kubeconfig`)",
        ),
        Never,
    ),
    entry(
        "enableAutoMtls",
        Bool,
        Status::NotYet(SECURITY),
        NotDefault("true"),
    ),
    entry(
        "trustDomain",
        Shape::String,
        Status::NotYet(
            "mutual TLS and workload identity, issue 20 (`--trust-domain` sets the trust domain of tokens)",
        ),
        NotDefault("\"cluster.local\""),
    ),
    entry(
        "trustDomainAliases",
        Strings,
        Status::NotYet(SECURITY),
        NotDefault("[]"),
    ),
    entry(
        "caCertificates",
        Objects,
        Status::NotYet(SECURITY),
        NotDefault("[]"),
    ),
    entry("defaultServiceExportTo", Strings, SUPPORTED, Never),
    entry("defaultVirtualServiceExportTo", Strings, SUPPORTED, Never),
    entry("defaultDestinationRuleExportTo", Strings, SUPPORTED, Never),
    entry("rootNamespace", Shape::String, SUPPORTED, Never),
    entry("localityLbSetting", Object, SUPPORTED, Never),
    entry(
        "zoneAwareLbSetting",
        Object,
        Status::NotYet(
            "zone-aware load balancing is not built (DestinationRule `zoneAwareLbSetting` is not \
             either); istiod applies the mesh's setting, ahead of `localityLbSetting`, to \
             clusters whose DestinationRule and Service set neither: endpoints bucketed by \
             region (and `failoverPriority`), Envoy's zone-aware balancing within the region",
        ),
        NotDefault("null"),
    ),
    entry("dnsRefreshRate", Duration, SUPPORTED, Never),
    entry(
        "h2UpgradePolicy",
        Enum(&["DO_NOT_UPGRADE", "UPGRADE"]),
        SUPPORTED,
        Never,
    ),
    entry("inboundClusterStatName", Shape::String, SUPPORTED, Never),
    entry("outboundClusterStatName", Shape::String, SUPPORTED, Never),
    entry(
        "certificates",
        Objects,
        Status::NotApplicable("deprecated; istiod does not read it either"),
        Never,
    ),
    entry(
        "serviceSettings",
        Objects,
        Status::NotApplicable(
            "`clusterLocal` keeps traffic in its cluster; rudder serves one cluster",
        ),
        Never,
    ),
    entry(
        "serviceScopeConfigs",
        Objects,
        Status::NotApplicable("ambient mode is not supported"),
        Never,
    ),
    entry(
        "enablePrometheusMerge",
        Bool,
        Status::NotApplicable("read by the sidecar injector and istio-agent"),
        Never,
    ),
    entry(
        "verifyCertificateAtClient",
        Bool,
        Status::NotApplicable(
            "deprecated; DestinationRule TLS without `caCertificates` trusts the system CA bundle, as with it set",
        ),
        Never,
    ),
    entry("ca", Object, Status::NotYet(SECURITY), NotDefault("null")),
    entry(
        "extensionProviders",
        Objects,
        Status::Partial(
            "`envoyFileAccessLog`, `zipkin` and `opentelemetry` (tracing, without \
             `resourceDetectors` and samplers) are carried out when `defaultProviders` names \
             them; the gRPC and OpenTelemetry access log services, datadog, skywalking and \
             lightstep are not yet, ext authz providers wait for CUSTOM AuthorizationPolicy \
             (issue 21), and metrics providers need Istio's stats filters, which a stock Envoy \
             lacks",
        ),
        Uses(uses_unsupported_provider),
    ),
    entry(
        "defaultProviders",
        Object,
        Status::Partial(
            "`accessLogging` and `tracing` are carried out (no Telemetry object is read yet, \
             so they apply to every proxy); `metrics` needs Istio's stats filters",
        ),
        Uses(sets_metrics),
    ),
    entry(
        "discoverySelectors",
        Objects,
        Status::SupportedAs(
            "only the Kubernetes objects (Services, endpoints, Pods, Secrets, Istio \
             config) of namespaces whose labels match a selector are read, the root namespace's \
             too; objects from `--config-dir` files are not filtered (istiod's file store is not \
             either). With `--namespaces` or `--namespace-selector`, a namespace must pass both \
             the flags and the selectors, and the selectors see only the labels of namespaces \
             the flags let rudder read",
        ),
        Never,
    ),
    entry("pathNormalization", Object, SUPPORTED, Never),
    entry("defaultHttpRetryPolicy", Object, SUPPORTED, Never),
    entry(
        "meshMTLS",
        Object,
        Status::NotYet(SECURITY),
        NotDefault("null"),
    ),
    entry("tlsDefaults", Object, SUPPORTED, Never),
    entry("defaultTrafficPolicy", Object, SUPPORTED, Never),
    entry(
        "serviceEntryVisibility",
        Object,
        Status::SupportedAs(
            "with `applyToSidecars: true` it caps ServiceEntries' `exportTo` for every proxy; \
             without it only ambient proxies would apply it, and rudder serves none",
        ),
        Never,
    ),
];

/// An `extensionProviders` entry of a kind (or with a part) rudder does not carry out; the
/// built-in metrics providers (`prometheus`, `stackdriver`) are not reported.
fn uses_unsupported_provider(value: &Value) -> bool {
    let carried_out = [
        "envoyFileAccessLog",
        "zipkin",
        "opentelemetry",
        "prometheus",
        "stackdriver",
    ];
    value.as_array().is_some_and(|providers| {
        providers
            .iter()
            .filter_map(Value::as_object)
            .any(|provider| {
                provider.iter().any(|(key, value)| {
                    let other_kind =
                        key != "name" && !value.is_null() && !carried_out.contains(&key.as_str());
                    let otel_extras = key == "opentelemetry"
                        && [
                            "resourceDetectors",
                            "dynatraceSampler",
                            "serviceAttributeEnrichment",
                        ]
                        .iter()
                        .any(|part| value.get(part).is_some_and(|v| !v.is_null()));
                    other_kind || otel_extras
                })
            })
    })
}

/// `defaultProviders.metrics` is set.
fn sets_metrics(value: &Value) -> bool {
    value
        .get("metrics")
        .and_then(Value::as_array)
        .is_some_and(|metrics| !metrics.is_empty())
}

/// `outboundTrafficPolicy` asks for what rudder does not build: dynamic DNS forwarding.
fn uses_dynamic_dns(value: &Value) -> bool {
    value.get("mode").and_then(Value::as_str) == Some("ALLOW_ANY_DYNAMIC_DNS")
        || value.get("tls").is_some_and(|tls| !tls.is_null())
}

/// The field a name stands for: its JSON name, or its proto name (`connect_timeout`), which
/// istiod's decoder takes too.
pub fn field(name: &str) -> Option<&'static Field> {
    FIELDS
        .iter()
        .find(|field| field.name == name || proto_name(field.name) == name)
}

/// `connectTimeout` -> `connect_timeout`; `meshMTLS` -> `mesh_mTLS`, as the proto spells it.
fn proto_name(json_name: &str) -> String {
    if json_name == "meshMTLS" {
        return "mesh_mTLS".to_string();
    }
    let mut name = String::new();
    for c in json_name.chars() {
        if c.is_ascii_uppercase() {
            name.push('_');
            name.push(c.to_ascii_lowercase());
        } else {
            name.push(c);
        }
    }
    name
}

/// An integer as istiod's decoder takes one: a JSON number without a fraction, or a string
/// holding one.
pub fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

impl Shape {
    /// Whether `value` has this type; the error names the field.
    pub fn check(self, name: &str, value: &Value) -> Result<(), super::MeshConfigError> {
        let fits = match self {
            Shape::Bool => value.is_boolean(),
            Shape::Integer => integer(value).is_some_and(|n| i32::try_from(n).is_ok()),
            Shape::String => value.is_string(),
            Shape::Strings => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            Shape::Duration => value
                .as_str()
                .is_some_and(|text| text.parse::<crate::duration::Duration>().is_ok()),
            Shape::Enum(names) => match value {
                Value::String(text) => names.contains(&text.as_str()),
                Value::Number(number) => number.as_u64().is_some(),
                _ => false,
            },
            Shape::Object => value.is_object(),
            Shape::Objects => value
                .as_array()
                .is_some_and(|items| items.iter().all(|item| item.is_object() || item.is_null())),
        };
        if fits {
            Ok(())
        } else {
            Err(super::problem(
                name,
                format!("{value} is not {}", self.describe()),
            ))
        }
    }

    /// An enum given by number as its name (the names are listed in the enum's order), so it
    /// decodes as the name would.
    pub fn by_name(self, value: Value) -> Value {
        match (self, &value) {
            (Shape::Enum(names), Value::Number(number)) => number
                .as_u64()
                .and_then(|n| names.get(usize::try_from(n).ok()?))
                .map_or(value, |name| Value::String((*name).to_string())),
            _ => value,
        }
    }

    fn describe(self) -> String {
        match self {
            Shape::Bool => "true or false".to_string(),
            Shape::Integer => "a 32-bit integer".to_string(),
            Shape::String => "a string".to_string(),
            Shape::Strings => "a list of strings".to_string(),
            Shape::Duration => "a duration such as 10s or 1m30s".to_string(),
            Shape::Enum(names) => format!("one of {}", names.join(", ")),
            Shape::Object => "a mapping".to_string(),
            Shape::Objects => "a list of mappings".to_string(),
        }
    }
}

impl Field {
    /// The warning setting this field to `value` earns, if rudder does not carry it out.
    pub fn warning(&self, value: &Value) -> Option<String> {
        let warn = match self.warn_if {
            WarnIf::Never => false,
            WarnIf::NotDefault(default) => {
                serde_json::from_str::<Value>(default).ok().as_ref() != Some(value)
            }
            WarnIf::Uses(uses) => uses(value),
        };
        if !warn {
            return None;
        }
        Some(match self.status {
            Status::Supported | Status::SupportedAs(_) => return None,
            Status::Partial(note) => format!("partly carried out by rudder: {note}"),
            Status::NotYet(note) => format!("not carried out by rudder yet ({note}); ignored"),
            Status::NotApplicable(note) => format!("ignored: {note}"),
        })
    }
}

/// docs/mesh-config.md: every field with its status.
pub fn render() -> String {
    let mut out = String::from(
        "# meshConfig fields\n\n\
         Generated from `src/mesh_config/fields.rs` (regenerate with \
         `RUDDER_UPDATE_DOCS=1 cargo test --lib mesh_config`). Every field of istiod's \
         MeshConfig (istio.io/api 1.31), with istiod's default where rudder reads the field.\n\n\
         - *supported*: carried out as istiod does.\n\
         - *partial*: carried out except what the note says.\n\
         - *not yet*: read and type-checked, not carried out; setting it to something other \
         than istiod's default is reported as a warning (log, `/debug/inputz`).\n\
         - *not applicable*: means nothing for rudder (the note says why); type-checked only.\n\n\
         A field rudder does not know is ignored with a warning, as istiod ignores it.\n\n\
         | field | status |\n| --- | --- |\n",
    );
    for field in FIELDS {
        let status = match field.status {
            Status::Supported => "supported".to_string(),
            Status::SupportedAs(note) => format!("supported: {note}"),
            Status::Partial(note) => format!("partial: {note}"),
            Status::NotYet(note) => format!("not yet: {note}"),
            Status::NotApplicable(note) => format!("not applicable: {note}"),
        };
        out.push_str(&format!("| `{}` | {status} |\n", field.name));
    }
    out.push_str(
        "\n## meshNetworks\n\n\
         | field | status |\n| --- | --- |\n\
         | `networks` | not applicable: rudder serves one network; declared networks are \
         reported as a warning |\n",
    );
    out
}
