//! The coverage table itself: every field of the six Istio networking kinds with what rudder does
//! with it. Data only; the walk, the docs/coverage.md rendering and the checks against the schemas are in
//! the parent module. A field named `name[]` is a list, `name{}` a map whose values have fields;
//! maps of plain values (labels) are plain fields.
//!
//! Groups used in several places are `static` so that docs/coverage.md lists their fields once and
//! refers to that place from the others.

use serde_json::Value;

use super::{Field, Status, Unsupported};

const S: Status = Status::Supported;
const N: Status = Status::NotYet { note: "" };

const fn leaf(name: &'static str, status: Status) -> Field {
    Field {
        name,
        status,
        fields: &[],
    }
}

const fn node(name: &'static str, status: Status, fields: &'static [Field]) -> Field {
    Field {
        name,
        status,
        fields,
    }
}

/// The kinds with a table, in docs/coverage.md order, each with its spec's fields.
pub(super) static KINDS: &[(crate::inputs::Kind, &[Field])] = &[
    (crate::inputs::Kind::VirtualService, VIRTUAL_SERVICE),
    (crate::inputs::Kind::DestinationRule, DESTINATION_RULE),
    (crate::inputs::Kind::ServiceEntry, SERVICE_ENTRY),
    (crate::inputs::Kind::WorkloadEntry, WORKLOAD_ENTRY),
    (crate::inputs::Kind::Sidecar, SIDECAR),
    (crate::inputs::Kind::Gateway, GATEWAY),
];

// ---- shared groups ----

static PORT_SELECTOR: &[Field] = &[leaf("number", S)];

static STRING_MATCH: &[Field] = &[leaf("exact", S), leaf("prefix", S), leaf("regex", S)];

static PERCENT: &[Field] = &[leaf("value", S)];

static DESTINATION: &[Field] = &[
    leaf("host", S),
    leaf("subset", S),
    node("port", S, PORT_SELECTOR),
];

static HEADER_OPERATIONS: &[Field] = &[leaf("set", S), leaf("add", S), leaf("remove[]", S)];

static HEADERS: &[Field] = &[
    node("request", S, HEADER_OPERATIONS),
    node("response", S, HEADER_OPERATIONS),
];

/// Istio's `Port`, `ServicePort` and `SidecarPort`.
static PORT: &[Field] = &[
    leaf("number", S),
    leaf("protocol", S),
    leaf("name", S),
    leaf("targetPort", S),
];

static CONNECTION_POOL: &[Field] = &[
    node(
        "tcp",
        S,
        &[
            leaf("maxConnections", S),
            leaf("connectTimeout", S),
            node(
                "tcpKeepalive",
                S,
                &[leaf("probes", S), leaf("time", S), leaf("interval", S)],
            ),
            leaf("maxConnectionDuration", S),
            leaf(
                "idleTimeout",
                Status::Partial {
                    how: "on HTTP clusters, when `http.idleTimeout` is unset; not on TCP proxy \
                          listeners",
                    unsupported: None,
                },
            ),
        ],
    ),
    node(
        "http",
        S,
        &[
            leaf("http1MaxPendingRequests", S),
            leaf("http2MaxRequests", S),
            leaf("maxRequestsPerConnection", S),
            leaf("maxRetries", S),
            leaf("idleTimeout", S),
            leaf("h2UpgradePolicy", S),
            leaf("useClientProtocol", S),
            leaf("maxConcurrentStreams", S),
            node(
                "http2KeepAlive",
                N,
                &[leaf("interval", N), leaf("timeout", N)],
            ),
        ],
    ),
];

static LOAD_BALANCER: &[Field] = &[
    leaf("simple", S),
    node(
        "consistentHash",
        S,
        &[
            leaf("httpHeaderName", S),
            node(
                "httpCookie",
                S,
                &[
                    leaf("name", S),
                    leaf("path", S),
                    leaf("ttl", S),
                    node("attributes[]", S, &[leaf("name", S), leaf("value", S)]),
                ],
            ),
            leaf("useSourceIp", S),
            leaf("httpQueryParameterName", S),
            node("ringHash", S, &[leaf("minimumRingSize", S)]),
            node("maglev", S, &[leaf("tableSize", S)]),
            leaf("minimumRingSize", S),
        ],
    ),
    node(
        "localityLbSetting",
        S,
        &[
            node("distribute[]", S, &[leaf("from", S), leaf("to", S)]),
            node("failover[]", S, &[leaf("from", S), leaf("to", S)]),
            leaf("failoverPriority[]", S),
            leaf("enabled", S),
        ],
    ),
    leaf("warmupDurationSecs", S),
    node(
        "warmup",
        S,
        &[
            leaf("duration", S),
            leaf("minimumPercent", S),
            leaf("aggression", S),
        ],
    ),
    node(
        "zoneAwareLbSetting",
        N,
        &[
            leaf("enabled", N),
            node("failover[]", N, &[leaf("from", N), leaf("to", N)]),
            leaf("failoverPriority[]", N),
            leaf("minClusterSize", N),
        ],
    ),
];

static OUTLIER_DETECTION: &[Field] = &[
    leaf(
        "consecutiveErrors",
        Status::Ignored(
            "deprecated and ignored, as by istiod; use consecutive5xxErrors or \
             consecutiveGatewayErrors",
        ),
    ),
    leaf("splitExternalLocalOriginErrors", S),
    leaf("consecutiveLocalOriginFailures", S),
    leaf("consecutiveGatewayErrors", S),
    leaf("consecutive5xxErrors", S),
    leaf("interval", S),
    leaf("baseEjectionTime", S),
    leaf("maxEjectionPercent", S),
    leaf("minHealthPercent", S),
    leaf("outlierDetectionHttpErrorCodes[]", N),
];

fn is_istio_mutual(value: &Value) -> bool {
    value.as_str() == Some("ISTIO_MUTUAL")
}

static CLIENT_TLS: &[Field] = &[
    leaf(
        "mode",
        Status::Partial {
            how: "DISABLE, SIMPLE and MUTUAL; ISTIO_MUTUAL not yet (it needs Istio's certificate \
                  authority; the cluster stays plaintext)",
            unsupported: Some(Unsupported {
                applies: is_istio_mutual,
                message: "ISTIO_MUTUAL needs Istio's certificate authority, which rudder does \
                          not have; not supported, the cluster stays plaintext",
            }),
        },
    ),
    leaf("clientCertificate", S),
    leaf("privateKey", S),
    leaf("caCertificates", S),
    leaf(
        "credentialName",
        Status::NotYet {
            note: "certificates from a Secret need SDS; the cluster stays plaintext",
        },
    ),
    leaf("subjectAltNames[]", S),
    leaf("sni", S),
    leaf("insecureSkipVerify", S),
    leaf("caCrl", S),
];

static PORT_TRAFFIC_POLICY: &[Field] = &[
    node("port", S, PORT_SELECTOR),
    node("loadBalancer", S, LOAD_BALANCER),
    node("connectionPool", S, CONNECTION_POOL),
    node("outlierDetection", S, OUTLIER_DETECTION),
    node("tls", S, CLIENT_TLS),
];

static TRAFFIC_POLICY: &[Field] = &[
    node("loadBalancer", S, LOAD_BALANCER),
    node("connectionPool", S, CONNECTION_POOL),
    node("outlierDetection", S, OUTLIER_DETECTION),
    node("tls", S, CLIENT_TLS),
    node("portLevelSettings[]", S, PORT_TRAFFIC_POLICY),
    node(
        "tunnel",
        N,
        &[
            leaf("protocol", N),
            leaf("targetHost", N),
            leaf("targetPort", N),
        ],
    ),
    node("proxyProtocol", N, &[leaf("version", N)]),
    node(
        "retryBudget",
        N,
        &[
            leaf("percent", N),
            leaf("minRetryConcurrency", N),
            leaf("budgetInterval", N),
        ],
    ),
];

/// Istio's `WorkloadEntry`: a WorkloadEntry's spec and a ServiceEntry endpoint.
static WORKLOAD: &[Field] = &[
    leaf("address", S),
    leaf("ports", S),
    leaf("labels", S),
    leaf("network", N),
    leaf("locality", S),
    leaf("weight", S),
    leaf("serviceAccount", N),
];

/// Sidecar ingress TLS; not translated yet.
static SERVER_TLS: &[Field] = &[
    leaf("httpsRedirect", N),
    leaf("mode", N),
    leaf("serverCertificate", N),
    leaf("privateKey", N),
    leaf("caCertificates", N),
    leaf("caCrl", N),
    leaf("credentialName", N),
    leaf("credentialNames[]", N),
    leaf("caCertCredentialName", N),
    node(
        "tlsCertificates[]",
        N,
        &[
            leaf("serverCertificate", N),
            leaf("privateKey", N),
            leaf("caCertificates", N),
        ],
    ),
    leaf("subjectAltNames[]", N),
    leaf("verifyCertificateSpki[]", N),
    leaf("verifyCertificateHash[]", N),
    leaf("minProtocolVersion", N),
    leaf("maxProtocolVersion", N),
    leaf("cipherSuites[]", N),
    leaf("insecureSkipVerify", N),
];

// ---- kinds ----

static VIRTUAL_SERVICE: &[Field] = &[
    leaf("hosts[]", S),
    leaf("gateways[]", S),
    node(
        "http[]",
        S,
        &[
            leaf("name", S),
            node(
                "match[]",
                S,
                &[
                    leaf("name", S),
                    node("uri", S, STRING_MATCH),
                    node("scheme", S, STRING_MATCH),
                    node("method", S, STRING_MATCH),
                    node("authority", S, STRING_MATCH),
                    node("headers{}", S, STRING_MATCH),
                    leaf("port", S),
                    leaf("sourceLabels", S),
                    leaf("gateways[]", S),
                    node("queryParams{}", S, STRING_MATCH),
                    leaf("ignoreUriCase", S),
                    node("withoutHeaders{}", S, STRING_MATCH),
                    leaf("sourceNamespace", S),
                    leaf("statPrefix", S),
                ],
            ),
            node(
                "route[]",
                S,
                &[
                    node("destination", S, DESTINATION),
                    leaf("weight", S),
                    node("headers", S, HEADERS),
                ],
            ),
            node(
                "redirect",
                S,
                &[
                    leaf("uri", S),
                    leaf("authority", S),
                    leaf("port", S),
                    leaf("derivePort", S),
                    leaf("scheme", S),
                    leaf("redirectCode", S),
                    leaf("prefixRewrite", N),
                ],
            ),
            node(
                "directResponse",
                S,
                &[
                    leaf("status", S),
                    node("body", S, &[leaf("string", S), leaf("bytes", S)]),
                ],
            ),
            node("delegate", S, &[leaf("name", S), leaf("namespace", S)]),
            node(
                "rewrite",
                S,
                &[
                    leaf("uri", S),
                    leaf("authority", S),
                    node(
                        "uriRegexRewrite",
                        S,
                        &[leaf("match", S), leaf("rewrite", S)],
                    ),
                ],
            ),
            leaf("timeout", S),
            node(
                "retries",
                S,
                &[
                    leaf("attempts", S),
                    leaf("perTryTimeout", S),
                    leaf("retryOn", S),
                    leaf("retryRemoteLocalities", S),
                    leaf("retryIgnorePreviousHosts", S),
                    leaf("backoff", S),
                ],
            ),
            node(
                "fault",
                S,
                &[
                    node(
                        "delay",
                        S,
                        &[
                            leaf("fixedDelay", S),
                            leaf(
                                "exponentialDelay",
                                Status::Refused(
                                    "istiod refuses it too: exponential delays are not implemented",
                                ),
                            ),
                            node("percentage", S, PERCENT),
                            leaf("percent", S),
                        ],
                    ),
                    node(
                        "abort",
                        S,
                        &[
                            leaf("httpStatus", S),
                            leaf("grpcStatus", S),
                            leaf(
                                "http2Error",
                                Status::Refused(
                                    "istiod refuses it too: HTTP/2 error aborts are not implemented",
                                ),
                            ),
                            node("percentage", S, PERCENT),
                        ],
                    ),
                ],
            ),
            node("mirror", S, DESTINATION),
            node("mirrorPercentage", S, PERCENT),
            leaf("mirror_percent", S),
            // The same field as Istio's CRDs spell it too; `mirror_percent` wins when both are set.
            leaf("mirrorPercent", S),
            node(
                "mirrors[]",
                S,
                &[
                    node("destination", S, DESTINATION),
                    node("percentage", S, PERCENT),
                ],
            ),
            node(
                "corsPolicy",
                S,
                &[
                    leaf("allowOrigin[]", S),
                    node("allowOrigins[]", S, STRING_MATCH),
                    leaf("allowMethods[]", S),
                    leaf("allowHeaders[]", S),
                    leaf("exposeHeaders[]", S),
                    leaf("maxAge", S),
                    leaf("allowCredentials", S),
                    leaf("unmatchedPreflights", S),
                ],
            ),
            node("headers", S, HEADERS),
        ],
    ),
    node(
        "tls[]",
        S,
        &[
            node(
                "match[]",
                S,
                &[
                    leaf("sniHosts[]", S),
                    leaf("destinationSubnets[]", S),
                    leaf("port", S),
                    leaf("sourceLabels", S),
                    leaf("gateways[]", S),
                    leaf("sourceNamespace", S),
                ],
            ),
            node("route[]", S, ROUTE_DESTINATION),
        ],
    ),
    node(
        "tcp[]",
        S,
        &[
            node(
                "match[]",
                S,
                &[
                    leaf("destinationSubnets[]", S),
                    leaf("port", S),
                    leaf("sourceSubnet", N),
                    leaf("sourceLabels", S),
                    leaf("gateways[]", S),
                    leaf("sourceNamespace", S),
                ],
            ),
            node("route[]", S, ROUTE_DESTINATION),
        ],
    ),
    leaf("exportTo[]", S),
];

static ROUTE_DESTINATION: &[Field] = &[node("destination", S, DESTINATION), leaf("weight", S)];

static DESTINATION_RULE: &[Field] = &[
    leaf("host", S),
    node("trafficPolicy", S, TRAFFIC_POLICY),
    node(
        "subsets[]",
        S,
        &[
            leaf("name", S),
            leaf("labels", S),
            node("trafficPolicy", S, TRAFFIC_POLICY),
        ],
    ),
    leaf("exportTo[]", S),
    node("workloadSelector", N, &[leaf("matchLabels", N)]),
];

static SERVICE_ENTRY: &[Field] = &[
    leaf("hosts[]", S),
    leaf("addresses[]", S),
    node("ports[]", S, PORT),
    leaf("location", S),
    leaf("resolution", S),
    node("endpoints[]", S, WORKLOAD),
    node("workloadSelector", S, &[leaf("labels", S)]),
    leaf("exportTo[]", S),
    leaf("subjectAltNames[]", N),
];

static WORKLOAD_ENTRY: &[Field] = WORKLOAD;

static SIDECAR: &[Field] = &[
    node("workloadSelector", S, &[leaf("labels", S)]),
    node(
        "ingress[]",
        S,
        &[
            node("port", S, PORT),
            leaf("bind", S),
            leaf("captureMode", S),
            leaf("defaultEndpoint", S),
            node(
                "tls",
                Status::NotYet {
                    note: "as istiod without ENABLE_TLS_ON_SIDECAR_INGRESS",
                },
                SERVER_TLS,
            ),
            node("connectionPool", N, CONNECTION_POOL),
        ],
    ),
    node(
        "egress[]",
        S,
        &[
            node("port", S, PORT),
            leaf("bind", S),
            leaf("captureMode", S),
            leaf("hosts[]", S),
        ],
    ),
    node("inboundConnectionPool", N, CONNECTION_POOL),
    node(
        "outboundTrafficPolicy",
        S,
        &[
            leaf("mode", S),
            node(
                "egressProxy",
                N,
                &[
                    leaf("host", N),
                    leaf("subset", N),
                    node("port", N, PORT_SELECTOR),
                ],
            ),
        ],
    ),
];

/// A Gateway server's port: as for services, except that the target port comes from the gateway
/// Service, as istiod looks it up.
static GATEWAY_PORT: &[Field] = &[
    leaf("number", S),
    leaf("protocol", S),
    leaf("name", S),
    leaf(
        "targetPort",
        Status::Ignored("istiod ignores it on Gateways: the gateway Service's targetPort applies"),
    ),
];

static GATEWAY_TLS: &[Field] = &[
    leaf("httpsRedirect", S),
    leaf(
        "mode",
        Status::Partial {
            how: "PASSTHROUGH, SIMPLE, MUTUAL; AUTO_PASSTHROUGH without Istio's mTLS ALPN check; ISTIO_MUTUAL and OPTIONAL_MUTUAL are refused (no Istio CA)",
            unsupported: None,
        },
    ),
    leaf("serverCertificate", S),
    leaf("privateKey", S),
    leaf("caCertificates", S),
    leaf("caCrl", S),
    leaf("credentialName", S),
    leaf(
        "credentialNames[]",
        Status::Refused("several certificates per server are not supported"),
    ),
    leaf("caCertCredentialName", N),
    node(
        "tlsCertificates[]",
        Status::Refused("several certificates per server are not supported"),
        &[
            leaf("serverCertificate", S),
            leaf("privateKey", S),
            leaf("caCertificates", S),
        ],
    ),
    leaf("subjectAltNames[]", S),
    leaf("verifyCertificateSpki[]", S),
    leaf("verifyCertificateHash[]", S),
    leaf("minProtocolVersion", S),
    leaf("maxProtocolVersion", S),
    leaf("cipherSuites[]", S),
    leaf("insecureSkipVerify", N),
];

static GATEWAY: &[Field] = &[
    node(
        "servers[]",
        S,
        &[
            node("port", S, GATEWAY_PORT),
            leaf("bind", S),
            leaf("hosts[]", S),
            node("tls", S, GATEWAY_TLS),
            leaf("defaultEndpoint", N),
            leaf("name", S),
        ],
    ),
    leaf("selector", S),
];
