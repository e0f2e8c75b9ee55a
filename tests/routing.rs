//! The VirtualService API end to end: rudder serves a config directory, a real Envoy sidecar
//! (interception `NONE`, listeners on 127.0.0.1) attaches over ADS, and requests through it reach
//! upstream servers on loopback addresses. Each test has its own port (19190 to 19199) and its own
//! addresses (`127.0.NET.x` with NET from 190 to 199), so they run in parallel. Every check
//! looks at what the client or the upstream actually saw.

mod support;

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use rudder::bootstrap::AdsApiType;
use support::mesh::{Mesh, TestNet};
use support::upstream::{Echo, TcpUpstream, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROPAGATION_LIMIT: Duration = Duration::from_secs(5);

/// A Service whose port has another name (and so another protocol) and number.
fn service_on(yaml: &str, default_port: u16, port_name: &str, port: u16) -> String {
    yaml.replace(
        &format!("{{name: http, port: {default_port}}}"),
        &format!("{{name: {port_name}, port: {port}}}"),
    )
}

/// What came back for one request through the sidecar.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
    elapsed: Duration,
}

impl Answer {
    fn echo(&self) -> Option<Echo> {
        serde_json::from_str(&self.body).ok()
    }

    /// The upstream that answered, or what came back instead.
    fn upstream(&self) -> String {
        match self.echo() {
            Some(echo) => echo.upstream,
            None => format!("status {} body {:?}", self.status, self.body),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A header the upstream received.
    fn upstream_header(&self, name: &str) -> Option<String> {
        self.echo().and_then(|echo| echo.headers.get(name).cloned())
    }
}

/// Requests to the sidecar's listener on one port, redirects not followed.
struct Client {
    port: u16,
    http: reqwest::Client,
}

impl Client {
    fn new(port: u16) -> Client {
        Self::with(port, reqwest::Client::builder())
    }

    /// A client that opens a new connection for every request: a TCP proxy keeps an open
    /// connection on the upstream it chose, whatever the rules say later.
    fn one_connection_per_request(port: u16) -> Client {
        Self::with(port, reqwest::Client::builder().pool_max_idle_per_host(0))
    }

    fn with(port: u16, builder: reqwest::ClientBuilder) -> Client {
        Client {
            port,
            http: builder
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
        }
    }

    async fn send(&self, method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = self
            .http
            .request(method, format!("http://127.0.0.1:{}{path}", self.port))
            .header("host", host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let start = Instant::now();
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body = response.text().await.unwrap_or_default();
                Answer {
                    status,
                    headers,
                    body,
                    elapsed: start.elapsed(),
                }
            }
            Err(error) => Answer {
                status: 0,
                headers: HeaderMap::new(),
                body: error.to_string(),
                elapsed: start.elapsed(),
            },
        }
    }

    async fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send("GET", host, path, headers).await
    }

    /// Waits until `condition` holds for `GET host path`; fails the test with the last answer
    /// and Envoy's log otherwise.
    async fn wait_for(
        &self,
        mesh: &Mesh,
        host: &str,
        path: &str,
        condition: impl Fn(&Answer) -> bool,
    ) -> Answer {
        let start = Instant::now();
        loop {
            let answer = self.get(host, path, &[]).await;
            if condition(&answer) {
                return answer;
            }
            assert!(
                start.elapsed() < PROPAGATION_LIMIT,
                "GET {host}{path} never got what was expected; last answer {answer:?}\nEnvoy log:\n{}",
                mesh.envoy.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn rule(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: bookinfo}}\nspec:\n{spec}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_rewrite_and_direct_response() {
    let net = TestNet(190);
    let _web = Upstream::start("web", &net.address(1)).await;
    let rules = rule(
        "web",
        r#"  hosts: [web]
  http:
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: moved.example.com, redirectCode: 302}
  - match: [{uri: {exact: /same-port}}]
    redirect: {uri: /here, derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {prefix: /api/v1/}}]
    rewrite: {uri: /v2/}
    route: [{destination: {host: web}}]
  - match: [{uri: {regex: "^/users/([0-9]+)/profile$"}}]
    rewrite:
      uriRegexRewrite: {match: "^/users/([0-9]+)/profile$", rewrite: "/profiles/\\1"}
      authority: profiles.internal
    route: [{destination: {host: web}}]
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - route: [{destination: {host: web}}]
"#,
    );
    let files = [
        ("web.yaml", net.service("web", 1, &[("web-1", 1, "v1")])),
        ("rules.yaml", rules),
    ];
    let mesh = Mesh::start(AdsApiType::Grpc, net.port(), &files).await;
    let client = Client::new(net.port());
    client
        .wait_for(&mesh, "web", "/teapot", |a| a.status == 418)
        .await;

    let moved = client.get("web", "/old", &[]).await;
    assert_eq!(moved.status, 302, "{moved:?}");
    assert_eq!(
        moved.header("location"),
        Some("http://moved.example.com/new")
    );
    // Envoy cannot derive the port; istiod writes the listener's, and so does rudder.
    let same_port = client.get("web", "/same-port", &[]).await;
    assert_eq!(same_port.status, 301, "{same_port:?}");
    assert_eq!(
        same_port.header("location"),
        Some(format!("http://web:{}/here", net.port()).as_str())
    );

    let rewritten = client.get("web", "/api/v1/books?page=2", &[]).await;
    let echo = rewritten.echo().expect("the upstream answers");
    assert_eq!(echo.path, "/v2/books?page=2");

    let regex = client.get("web", "/users/42/profile", &[]).await;
    let echo = regex.echo().expect("the upstream answers");
    assert_eq!(echo.path, "/profiles/42");
    assert_eq!(
        echo.headers.get("host").map(String::as_str),
        Some("profiles.internal")
    );
    // A path the regex does not match is not rewritten.
    let other = client.get("web", "/users/me/profile", &[]).await;
    assert_eq!(
        other.echo().expect("the upstream answers").path,
        "/users/me/profile"
    );

    let teapot = client.get("web", "/teapot", &[]).await;
    assert_eq!(
        (teapot.status, teapot.body.as_str()),
        (418, "short and stout")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_manipulation_seen_on_both_sides() {
    let net = TestNet(191);
    let _v1 = Upstream::start("web-v1", &net.address(1)).await;
    let _v2 = Upstream::start("web-v2", &net.address(2)).await;
    let subsets = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: bookinfo}\n\
                   spec:\n  host: web\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n";
    let rules = rule(
        "web",
        r#"  hosts: [web]
  http:
  - match: [{uri: {prefix: /weighted}}]
    route:
    - destination: {host: web, subset: v1}
      weight: 100
      headers:
        request: {set: {x-subset: v1}}
        response: {set: {x-served-by: v1}}
    - destination: {host: web, subset: v2}
      weight: 0
  - headers:
      request:
        set: {x-set: set-value, x-overwrite: new}
        add: {x-added: added}
        remove: [x-remove-me]
      response:
        set: {x-response-set: rs}
        add: {x-response-add: ra}
        remove: [content-type]
    route:
    - destination: {host: web, subset: v2}
      headers:
        request: {add: {x-destination: v2}}
"#,
    );
    let files = [
        (
            "web.yaml",
            net.service("web", 1, &[("web-1", 1, "v1"), ("web-2", 2, "v2")]),
        ),
        ("subsets.yaml", subsets.to_string()),
        ("rules.yaml", rules),
    ];
    let mesh = Mesh::start(AdsApiType::Grpc, net.port(), &files).await;
    let client = Client::new(net.port());
    client
        .wait_for(&mesh, "web", "/", |a| {
            a.header("x-response-set") == Some("rs")
        })
        .await;

    let answer = client
        .get(
            "web",
            "/",
            &[("x-overwrite", "old"), ("x-remove-me", "please")],
        )
        .await;
    assert_eq!(answer.upstream(), "web-v2");
    // What the upstream received.
    assert_eq!(
        answer.upstream_header("x-set").as_deref(),
        Some("set-value")
    );
    assert_eq!(
        answer.upstream_header("x-overwrite").as_deref(),
        Some("new")
    );
    assert_eq!(answer.upstream_header("x-added").as_deref(), Some("added"));
    assert_eq!(
        answer.upstream_header("x-destination").as_deref(),
        Some("v2")
    );
    assert_eq!(answer.upstream_header("x-remove-me"), None);
    // What the client received.
    assert_eq!(answer.header("x-response-set"), Some("rs"));
    assert_eq!(answer.header("x-response-add"), Some("ra"));
    assert_eq!(answer.header("content-type"), None, "{answer:?}");

    // Per-destination headers of a weighted destination.
    let weighted = client.get("web", "/weighted", &[]).await;
    assert_eq!(weighted.upstream(), "web-v1");
    assert_eq!(weighted.upstream_header("x-subset").as_deref(), Some("v1"));
    assert_eq!(weighted.header("x-served-by"), Some("v1"));
    assert_eq!(weighted.header("x-response-set"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_retries() {
    let net = TestNet(192);
    let slow = Upstream::start("slow", &net.address(1)).await;
    slow.delay_answers(Duration::from_millis(1500));
    let flaky = Upstream::start("flaky", &net.address(2)).await;
    let rules = format!(
        "{}---\n{}",
        rule(
            "slow",
            "  hosts: [slow]\n  http:\n  - match: [{uri: {prefix: /hurry}}]\n    timeout: 300ms\n    \
             route: [{destination: {host: slow}}]\n  - route: [{destination: {host: slow}}]\n",
        ),
        rule(
            "flaky",
            r#"  hosts: [flaky]
  http:
  - match: [{uri: {prefix: /retry}}]
    retries: {attempts: 4, retryOn: "503", perTryTimeout: 2s}
    route: [{destination: {host: flaky}}]
  - match: [{uri: {prefix: /once}}]
    retries: {attempts: 0}
    route: [{destination: {host: flaky}}]
  - route: [{destination: {host: flaky}}]
"#,
        )
    );
    let files = [
        ("slow.yaml", net.service("slow", 1, &[("slow-1", 1, "v1")])),
        (
            "flaky.yaml",
            net.service("flaky", 2, &[("flaky-1", 2, "v1")]),
        ),
        ("rules.yaml", rules),
    ];
    let mesh = Mesh::start(AdsApiType::Grpc, net.port(), &files).await;
    let client = Client::new(net.port());
    client
        .wait_for(&mesh, "slow", "/hurry", |a| a.status == 504)
        .await;

    // The route's timeout cuts the slow upstream off; without one, the answer comes.
    let hurried = client.get("slow", "/hurry", &[]).await;
    assert_eq!(hurried.status, 504, "{hurried:?}");
    assert!(hurried.elapsed < Duration::from_millis(1200), "{hurried:?}");
    let patient = client.get("slow", "/patient", &[]).await;
    assert_eq!(patient.upstream(), "slow");
    assert!(
        patient.elapsed >= Duration::from_millis(1500),
        "{patient:?}"
    );

    // attempts: 4 on 503: three failures, then the fourth attempt gets through.
    client
        .wait_for(&mesh, "flaky", "/retry", |a| a.status == 200)
        .await;
    let before = flaky.requests();
    flaky.fail_next(3);
    let retried = client.get("flaky", "/retry", &[]).await;
    assert_eq!(retried.upstream(), "flaky", "{retried:?}");
    assert_eq!(
        retried.upstream_header("x-envoy-attempt-count").as_deref(),
        Some("4")
    );
    assert_eq!(flaky.requests() - before, 4);

    // attempts: 0 disables retries.
    let before = flaky.requests();
    flaky.fail_next(1);
    let once = client.get("flaky", "/once", &[]).await;
    assert_eq!(once.status, 503, "{once:?}");
    assert_eq!(flaky.requests() - before, 1);

    // Without retries, istiod's default policy: 2 retries, but not on a plain 503 (since
    // Istio 1.24 no status code is retriable by default).
    let before = flaky.requests();
    flaky.fail_next(1);
    let defaulted = client.get("flaky", "/", &[]).await;
    assert_eq!(defaulted.status, 503, "{defaulted:?}");
    assert_eq!(flaky.requests() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_delay_and_abort() {
    let net = TestNet(193);
    let web = Upstream::start("web", &net.address(1)).await;
    let rules = rule(
        "web",
        r#"  hosts: [web]
  http:
  - match: [{uri: {prefix: /delay}}]
    fault: {delay: {fixedDelay: 600ms, percentage: {value: 100}}}
    route: [{destination: {host: web}}]
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: web}}]
  - match: [{uri: {prefix: /half}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}
    route: [{destination: {host: web}}]
  - route: [{destination: {host: web}}]
"#,
    );
    let files = [
        ("web.yaml", net.service("web", 1, &[("web-1", 1, "v1")])),
        ("rules.yaml", rules),
    ];
    let mesh = Mesh::start(AdsApiType::Grpc, net.port(), &files).await;
    let client = Client::new(net.port());
    client
        .wait_for(&mesh, "web", "/abort", |a| a.status == 418)
        .await;

    let delayed = client.get("web", "/delay", &[]).await;
    assert_eq!(delayed.upstream(), "web");
    // Envoy's timers have millisecond granularity and the clocks differ; a delay that took less
    // than 550 ms of the configured 600 ms was not applied.
    assert!(delayed.elapsed >= Duration::from_millis(550), "{delayed:?}");
    let direct = client.get("web", "/", &[]).await;
    assert_eq!(direct.upstream(), "web");
    assert!(direct.elapsed < Duration::from_millis(550), "{direct:?}");

    // The fault filter answers; the upstream never sees the request.
    let before = web.requests();
    for _ in 0..10 {
        assert_eq!(client.get("web", "/abort", &[]).await.status, 418);
    }
    assert_eq!(web.requests(), before);

    const REQUESTS: usize = 400;
    let before = web.requests();
    let mut aborted = 0;
    for _ in 0..REQUESTS {
        match client.get("web", "/half", &[]).await.status {
            503 => aborted += 1,
            200 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    // 50% of 400 has a standard deviation of 10; ±60 is six of them.
    eprintln!("fault abort: {aborted} of {REQUESTS} aborted at 50%");
    assert!(
        (140..=260).contains(&aborted),
        "{aborted} of {REQUESTS} aborted"
    );
    let reached = usize::try_from(web.requests() - before).expect("a count");
    assert_eq!(reached, REQUESTS - aborted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_and_cors() {
    let net = TestNet(194);
    let web = Upstream::start("web", &net.address(1)).await;
    let shadow = Upstream::start("shadow", &net.address(2)).await;
    let rules = rule(
        "web",
        r#"  hosts: [web]
  http:
  - match: [{uri: {prefix: /mirror-all}}]
    mirror: {host: shadow}
    route: [{destination: {host: web}}]
  - match: [{uri: {prefix: /mirror-some}}]
    mirrors:
    - destination: {host: shadow}
      percentage: {value: 25}
    route: [{destination: {host: web}}]
  - match: [{uri: {prefix: /cors}}]
    corsPolicy:
      allowOrigins:
      - exact: https://allowed.example
      - regex: "https://[a-z]+\\.trusted\\.example"
      allowMethods: [GET, POST]
      allowHeaders: [x-custom]
      exposeHeaders: [x-exposed]
      maxAge: 1h
      allowCredentials: true
      unmatchedPreflights: IGNORE
    route: [{destination: {host: web}}]
  - route: [{destination: {host: web}}]
"#,
    );
    let files = [
        ("web.yaml", net.service("web", 1, &[("web-1", 1, "v1")])),
        (
            "shadow.yaml",
            net.service("shadow", 2, &[("shadow-1", 2, "v1")]),
        ),
        ("rules.yaml", rules),
    ];
    let mesh = Mesh::start(AdsApiType::Grpc, net.port(), &files).await;
    let client = Client::new(net.port());
    let shadow_before = shadow.requests();
    client
        .wait_for(&mesh, "web", "/mirror-all", |_| {
            shadow.requests() > shadow_before
        })
        .await;

    // Every request is copied to the mirror; the client only ever hears from web.
    let before = shadow.requests();
    for _ in 0..20 {
        assert_eq!(
            client.get("web", "/mirror-all", &[]).await.upstream(),
            "web"
        );
    }
    let mirrored = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            shadow.requests() - before >= 20
        })
        .await;
    assert!(
        mirrored.is_some(),
        "the mirror got {}",
        shadow.requests() - before
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(shadow.requests() - before, 20);

    // 25% of 400 has a standard deviation of about 8.7; ±45 is more than five of them.
    const REQUESTS: u64 = 400;
    let before = shadow.requests();
    for _ in 0..REQUESTS {
        assert_eq!(
            client.get("web", "/mirror-some", &[]).await.upstream(),
            "web"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let copies = shadow.requests() - before;
    eprintln!("mirror: {copies} of {REQUESTS} copied at 25%");
    assert!(
        (55..=145).contains(&copies),
        "{copies} of {REQUESTS} mirrored"
    );

    // A preflight from an allowed origin is answered by Envoy.
    let before = web.requests();
    let preflight = |origin: &'static str| {
        let client = &client;
        async move {
            client
                .send(
                    "OPTIONS",
                    "web",
                    "/cors",
                    &[
                        ("origin", origin),
                        ("access-control-request-method", "POST"),
                    ],
                )
                .await
        }
    };
    for origin in ["https://allowed.example", "https://app.trusted.example"] {
        let answer = preflight(origin).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.header("access-control-allow-origin"), Some(origin));
        assert_eq!(
            answer.header("access-control-allow-methods"),
            Some("GET,POST")
        );
        assert_eq!(
            answer.header("access-control-allow-headers"),
            Some("x-custom")
        );
        assert_eq!(answer.header("access-control-max-age"), Some("3600"));
        assert_eq!(
            answer.header("access-control-allow-credentials"),
            Some("true")
        );
    }
    // unmatchedPreflights: IGNORE: another origin gets no CORS headers, and nothing goes upstream.
    let refused = preflight("https://evil.example").await;
    assert_eq!(
        refused.header("access-control-allow-origin"),
        None,
        "{refused:?}"
    );
    assert_eq!(web.requests(), before);

    // Actual requests go upstream; allowed origins get the CORS response headers.
    let allowed = client
        .get("web", "/cors", &[("origin", "https://allowed.example")])
        .await;
    assert_eq!(allowed.upstream(), "web");
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://allowed.example")
    );
    assert_eq!(
        allowed.header("access-control-expose-headers"),
        Some("x-exposed")
    );
    let other = client
        .get("web", "/cors", &[("origin", "https://evil.example")])
        .await;
    assert_eq!(other.upstream(), "web");
    assert_eq!(other.header("access-control-allow-origin"), None);
}

/// `(method, host, path, headers, the route expected to match)`.
type MatchCase<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_match_kind() {
    let net = TestNet(195);
    let _web = Upstream::start("web", &net.address(1)).await;
    let routes = [
        ("exact", "[{uri: {exact: /exact}}]"),
        ("regex", r#"[{uri: {regex: "^/regex/[0-9]+$"}}]"#),
        (
            "ignore-case",
            "[{uri: {exact: /CaSe}, ignoreUriCase: true}]",
        ),
        (
            "header-exact",
            "[{uri: {prefix: /h}, headers: {x-exact: {exact: \"yes\"}}}]",
        ),
        (
            "header-prefix",
            "[{uri: {prefix: /h}, headers: {x-prefix: {prefix: pre}}}]",
        ),
        (
            "header-regex",
            r#"[{uri: {prefix: /h}, headers: {x-regex: {regex: "^v[0-9]$"}}}]"#,
        ),
        (
            "header-present",
            "[{uri: {prefix: /h}, headers: {x-present: {}}}]",
        ),
        (
            "without-value",
            "[{uri: {prefix: /without-value}, withoutHeaders: {x-block: {exact: \"yes\"}}}]",
        ),
        (
            "without-header",
            "[{uri: {prefix: /without}, withoutHeaders: {x-block: {}}}]",
        ),
        (
            "query-exact",
            "[{uri: {prefix: /q}, queryParams: {version: {exact: \"2\"}}}]",
        ),
        (
            "query-regex",
            r#"[{uri: {prefix: /q}, queryParams: {id: {regex: "^[a-f]+$"}}}]"#,
        ),
        (
            "query-present",
            "[{uri: {prefix: /q}, queryParams: {debug: {}}}]",
        ),
        ("method", "[{uri: {prefix: /m}, method: {exact: DELETE}}]"),
        (
            "authority",
            "[{uri: {prefix: /a}, authority: {prefix: web.bookinfo}}]",
        ),
        (
            "scheme-https",
            "[{uri: {prefix: /s}, scheme: {exact: https}}]",
        ),
        (
            "scheme-http",
            "[{uri: {prefix: /s}, scheme: {exact: http}}]",
        ),
        ("prefix", "[{uri: {prefix: /prefix}}]"),
    ];
    let mut spec = String::from("  hosts: [web]\n  http:\n");
    for (name, matches) in routes {
        spec.push_str(&format!(
            "  - name: {name}\n    match: {matches}\n    headers: {{response: {{set: {{x-route: {name}}}}}}}\n    \
             route: [{{destination: {{host: web}}}}]\n"
        ));
    }
    spec.push_str(
        "  - name: fallback\n    headers: {response: {set: {x-route: fallback}}}\n    \
         route: [{destination: {host: web}}]\n",
    );
    let files = [
        ("web.yaml", net.service("web", 1, &[("web-1", 1, "v1")])),
        ("rules.yaml", rule("web", &spec)),
    ];
    let mesh = Mesh::start(AdsApiType::Grpc, net.port(), &files).await;
    let client = Client::new(net.port());
    client
        .wait_for(&mesh, "web", "/exact", |a| {
            a.header("x-route") == Some("exact")
        })
        .await;

    let cases: &[MatchCase] = &[
        ("GET", "web", "/exact", &[], "exact"),
        ("GET", "web", "/exact/more", &[], "fallback"),
        ("GET", "web", "/prefix/anything", &[], "prefix"),
        ("GET", "web", "/regex/123", &[], "regex"),
        ("GET", "web", "/regex/abc", &[], "fallback"),
        ("GET", "web", "/case", &[], "ignore-case"),
        ("GET", "web", "/CASE", &[], "ignore-case"),
        ("GET", "web", "/h", &[("x-exact", "yes")], "header-exact"),
        ("GET", "web", "/h", &[("x-exact", "no")], "fallback"),
        (
            "GET",
            "web",
            "/h",
            &[("x-prefix", "prefixed")],
            "header-prefix",
        ),
        (
            "GET",
            "web",
            "/h",
            &[("x-prefix", "unprefixed")],
            "fallback",
        ),
        ("GET", "web", "/h", &[("x-regex", "v7")], "header-regex"),
        ("GET", "web", "/h", &[("x-regex", "v77")], "fallback"),
        (
            "GET",
            "web",
            "/h",
            &[("x-present", "anything")],
            "header-present",
        ),
        ("GET", "web", "/h", &[], "fallback"),
        ("GET", "web", "/without-value", &[], "without-value"),
        (
            "GET",
            "web",
            "/without-value",
            &[("x-block", "no")],
            "without-value",
        ),
        (
            "GET",
            "web",
            "/without-value",
            &[("x-block", "yes")],
            "fallback",
        ),
        ("GET", "web", "/without", &[], "without-header"),
        ("GET", "web", "/without", &[("x-block", "1")], "fallback"),
        ("GET", "web", "/q?version=2", &[], "query-exact"),
        ("GET", "web", "/q?version=3", &[], "fallback"),
        ("GET", "web", "/q?id=cafe", &[], "query-regex"),
        ("GET", "web", "/q?id=c0ffee", &[], "fallback"),
        ("GET", "web", "/q?debug", &[], "query-present"),
        ("GET", "web", "/q?debug=1", &[], "query-present"),
        ("DELETE", "web", "/m", &[], "method"),
        ("GET", "web", "/m", &[], "fallback"),
        ("GET", "web.bookinfo.svc", "/a", &[], "authority"),
        ("GET", "web", "/a", &[], "fallback"),
        ("GET", "web", "/s", &[], "scheme-http"),
    ];
    for (method, host, path, headers, expected) in cases {
        let answer = client.send(method, host, path, headers).await;
        assert_eq!(
            answer.upstream(),
            "web",
            "{method} {host}{path} {headers:?}"
        );
        assert_eq!(
            answer.header("x-route"),
            Some(*expected),
            "{method} {host}{path} {headers:?}"
        );
    }
}

/// A TLS 1.2 ClientHello naming `server_name`: enough for Envoy's TLS inspector to read the SNI.
fn client_hello(server_name: &str) -> Vec<u8> {
    let u16_bytes = |n: usize| u16::try_from(n).expect("a short length").to_be_bytes();
    let name = server_name.as_bytes();
    let mut server_name_list = vec![0u8];
    server_name_list.extend(u16_bytes(name.len()));
    server_name_list.extend(name);
    let mut extension = Vec::new();
    extension.extend(u16_bytes(server_name_list.len()));
    extension.extend(server_name_list);
    let mut extensions = vec![0u8, 0];
    extensions.extend(u16_bytes(extension.len()));
    extensions.extend(extension);
    let mut hello = vec![3u8, 3];
    hello.extend([7u8; 32]);
    hello.push(0);
    hello.extend(u16_bytes(4));
    hello.extend([0x13, 0x01, 0xc0, 0x2f]);
    hello.extend([1, 0]);
    hello.extend(u16_bytes(extensions.len()));
    hello.extend(extensions);
    let length = u32::try_from(hello.len())
        .expect("a short hello")
        .to_be_bytes();
    let mut handshake = vec![1u8];
    handshake.extend(&length[1..]);
    handshake.extend(hello);
    let mut record = vec![0x16u8, 3, 1];
    record.extend(u16_bytes(handshake.len()));
    record.extend(handshake);
    record
}

/// Connects to `port` on loopback, sends `bytes`, and returns what comes back until the
/// connection closes (empty if it is closed or reset without an answer).
async fn exchange(port: u16, bytes: &[u8]) -> String {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream.write_all(bytes).await.ok()?;
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply).await;
        Some(String::from_utf8_lossy(&reply).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_tls_routes() {
    let net = TestNet(196);
    let (tcp_port, tls_port) = (19197, 19198);
    let _web = Upstream::start("web", &net.address(1)).await;
    let _main = Upstream::start("db-main", &format!("{}:{tcp_port}", net.ip(2))).await;
    let _backup = Upstream::start("db-backup", &format!("{}:{tcp_port}", net.ip(3))).await;
    let mut upstreams = Vec::new();
    for (name, octet) in [("secure-default", 4), ("secure-a", 5), ("secure-b", 6)] {
        upstreams.push(TcpUpstream::start(name, &format!("{}:{tls_port}", net.ip(octet))).await);
    }
    let on = |yaml: String, name: &str, port: u16| service_on(&yaml, net.port(), name, port);
    let mut services = vec![
        net.service("web", 1, &[("web-1", 1, "v1")]),
        on(
            net.service("db", 2, &[("db-main", 2, "v1")]),
            "tcp",
            tcp_port,
        ),
        on(
            net.service("replica", 3, &[("db-backup", 3, "v1")]),
            "tcp",
            tcp_port,
        ),
    ];
    // In interception mode NONE the services on one port share one listener, which the first
    // by host name gets: the one with the rules comes first.
    for (name, octet) in [("secure", 4), ("tenant-a", 5), ("tenant-b", 6)] {
        let pod = format!("{name}-1");
        services.push(on(
            net.service(name, octet, &[(&pod, octet, "v1")]),
            "tls",
            tls_port,
        ));
    }
    // db: a rule for other clients, a subnet this traffic (to 127.0.0.1) is not in, then one it
    // is in. secure: routes by SNI, no default.
    let tcp_rules = rule(
        "db",
        r#"  hosts: [db]
  tcp:
  - match: [{sourceLabels: {app: someone-else}}]
    route: [{destination: {host: web}}]
  - match: [{destinationSubnets: [10.0.0.0/8]}]
    route: [{destination: {host: web}}]
  - match: [{destinationSubnets: [127.0.0.1/32]}]
    route: [{destination: {host: replica}}]
"#,
    );
    let tls_rules = rule(
        "secure",
        r#"  hosts: [secure, "*.secure.example"]
  tls:
  - match: [{sniHosts: [a.secure.example]}]
    route: [{destination: {host: tenant-a}}]
  - match: [{sniHosts: [b.secure.example, "*.wild.secure.example"]}]
    route: [{destination: {host: tenant-b}}]
"#,
    );
    let files = [
        ("services.yaml", services.join("---\n")),
        ("tcp-rules.yaml", tcp_rules.clone()),
        ("tls-rules.yaml", tls_rules),
    ];
    let mesh = Mesh::start(AdsApiType::Grpc, net.port(), &files).await;
    let tcp = Client::one_connection_per_request(tcp_port);
    // HTTP through the TCP proxy: the echo says which upstream got the bytes.
    tcp.wait_for(&mesh, "db", "/", |a| a.upstream() == "db-backup")
        .await;
    for _ in 0..5 {
        assert_eq!(tcp.get("anything", "/", &[]).await.upstream(), "db-backup");
    }
    // Without the subnet rule, the service's own cluster takes the connection.
    let without_subnet = tcp_rules.replace(
        "  - match: [{destinationSubnets: [127.0.0.1/32]}]\n    route: [{destination: {host: replica}}]\n",
        "",
    );
    mesh.write("tcp-rules.yaml", &without_subnet);
    tcp.wait_for(&mesh, "db", "/", |a| a.upstream() == "db-main")
        .await;

    // TLS by SNI, passed through untouched to the upstream the rule names.
    let start = Instant::now();
    while exchange(tls_port, &client_hello("a.secure.example")).await != "secure-a" {
        assert!(
            start.elapsed() < PROPAGATION_LIMIT,
            "SNI routing never reached secure-a; Envoy log:\n{}",
            mesh.envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cases = [
        ("a.secure.example", "secure-a"),
        ("b.secure.example", "secure-b"),
        ("x.wild.secure.example", "secure-b"),
        // No rule names it, and with TLS rules there is no default chain: the connection closes.
        ("c.secure.example", ""),
    ];
    for (sni, expected) in cases {
        assert_eq!(
            exchange(tls_port, &client_hello(sni)).await,
            expected,
            "SNI {sni}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precedence_visibility_delegates_and_plain_hosts() {
    let net = TestNet(199);
    let mut upstreams = Vec::new();
    let names = ["reviews", "ratings", "details", "frontend"];
    let mut services = Vec::new();
    for (octet, name) in (1..).zip(names) {
        upstreams.push(Upstream::start(name, &net.address(octet)).await);
        let pod = format!("{name}-1");
        services.push(net.service(name, octet, &[(&pod, octet, "v1")]));
    }
    let marked = |name: &str,
                  namespace: &str,
                  created: &str,
                  extra: &str,
                  host: &str,
                  mark: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {namespace}, \
             creationTimestamp: \"{created}\"}}\nspec:\n  hosts: [{host}]\n{extra}  http:\n  - headers: {{response: {{set: {{x-rule: {mark}}}}}}}\n    \
             route: [{{destination: {{host: {host}}}}}]\n"
        )
    };
    let reviews = "reviews.bookinfo.svc.cluster.local";
    let ratings = "ratings.bookinfo.svc.cluster.local";
    let details = "details.bookinfo.svc.cluster.local";
    let precedence = |older_extra: &str| {
        format!(
            "{}---\n{}",
            marked(
                "reviews-newer",
                "bookinfo",
                "2026-02-01T00:00:00Z",
                "",
                reviews,
                "newer"
            ),
            marked(
                "reviews-older",
                "bookinfo",
                "2026-01-01T00:00:00Z",
                older_extra,
                reviews,
                "older"
            ),
        )
    };
    let visibility = [
        marked(
            "ratings-public",
            "team",
            "2025-01-01T00:00:00Z",
            "  exportTo: [\"*\"]\n",
            ratings,
            "public",
        ),
        marked(
            "ratings-exported",
            "team",
            "2026-01-01T00:00:00Z",
            "  exportTo: [bookinfo]\n",
            ratings,
            "exported",
        ),
        marked(
            "details-private",
            "team",
            "2024-01-01T00:00:00Z",
            "  exportTo: [\".\"]\n",
            details,
            "private",
        ),
    ]
    .join("---\n");
    let site = |mark: &str| {
        rule(
            "site",
            &format!(
                "  hosts: [details, site.example.com]\n  http:\n  - headers: {{response: {{set: {{x-rule: {mark}}}}}}}\n    \
                 route: [{{destination: {{host: details}}}}]\n"
            ),
        )
    };
    let delegates = format!(
        "{}---\n{}",
        rule(
            "frontend",
            r#"  hosts: [frontend]
  http:
  - match: [{uri: {prefix: /api}}]
    delegate: {name: frontend-api, namespace: team}
  - route: [{destination: {host: frontend}}]
"#,
        ),
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: frontend-api, namespace: team}
spec:
  exportTo: [bookinfo]
  http:
  - match: [{uri: {prefix: /api/reviews}}]
    route: [{destination: {host: reviews.bookinfo.svc.cluster.local}}]
  - route: [{destination: {host: ratings.bookinfo.svc.cluster.local}}]
"#
    );
    let files = [
        ("services.yaml", services.join("---\n")),
        ("precedence.yaml", precedence("")),
        ("visibility.yaml", visibility),
        ("site.yaml", site("site")),
        ("delegates.yaml", delegates),
    ];
    let mesh = Mesh::start(AdsApiType::Grpc, net.port(), &files).await;
    let client = Client::new(net.port());
    client
        .wait_for(&mesh, "reviews", "/", |a| a.header("x-rule").is_some())
        .await;

    // Two rules for one host: the older one applies, the newer one is not merged in.
    assert_eq!(
        client.get("reviews", "/", &[]).await.header("x-rule"),
        Some("older")
    );
    // A rule exported to the proxy's namespace by name comes before a public one, even an
    // older one.
    assert_eq!(
        client.get("ratings", "/", &[]).await.header("x-rule"),
        Some("exported")
    );
    // A rule private to another namespace does not apply here.
    let details_answer = client.get("details", "/", &[]).await;
    assert_eq!(details_answer.upstream(), "details");
    assert_eq!(details_answer.header("x-rule"), Some("site"));
    // A host that is no service gets a virtual host of its own.
    let site_answer = client.get("site.example.com", "/", &[]).await;
    assert_eq!(site_answer.upstream(), "details");
    assert_eq!(site_answer.header("x-rule"), Some("site"));

    // The delegate's routes, under the root's /api.
    assert_eq!(
        client
            .get("frontend", "/api/reviews/1", &[])
            .await
            .upstream(),
        "reviews"
    );
    assert_eq!(
        client.get("frontend", "/api/other", &[]).await.upstream(),
        "ratings"
    );
    assert_eq!(
        client.get("frontend", "/", &[]).await.upstream(),
        "frontend"
    );

    // An invalid edit of the older rule is reported, and its last valid version keeps serving.
    mesh.write(
        "precedence.yaml",
        &precedence("").replace(
            "  - headers: {response: {set: {x-rule: older}}}\n",
            "  - headers: {response: {set: {x-rule: older}}}\n    fault: {abort: {httpStatus: 700}}\n",
        ),
    );
    mesh.write("site.yaml", &site("site-2"));
    client
        .wait_for(&mesh, "details", "/", |a| {
            a.header("x-rule") == Some("site-2")
        })
        .await;
    assert_eq!(
        client.get("reviews", "/", &[]).await.header("x-rule"),
        Some("older")
    );
    let validate = std::process::Command::new(env!("CARGO_BIN_EXE_rudder"))
        .arg("validate")
        .arg(mesh.dir.path())
        .output()
        .expect("run rudder validate");
    let report = String::from_utf8_lossy(&validate.stdout).into_owned()
        + &String::from_utf8_lossy(&validate.stderr);
    assert!(!validate.status.success(), "{report}");
    assert!(
        report.contains(
            "VirtualService bookinfo/reviews-older: spec.http[0].fault.abort.httpStatus: HTTP status 700 is not in 200..=599"
        ),
        "{report}"
    );
}
