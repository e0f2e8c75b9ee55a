//! The bad-input corpus: every `testdata/bad-input/*.yaml` is one case of bad config, loaded from
//! its file beside a good mesh (`testdata/bad-input/good-mesh/`), as a config directory is read.
//! Each case must be reported with a diagnostic that starts with the case's file and contains
//! every `# expect: ` line of its header (kind, namespace/name, field); the good mesh must
//! translate byte for byte as it does alone, for a sidecar, a sidecar of another namespace and an
//! ingress gateway; nothing may panic; and a case must take well under [`TIME_LIMIT`]. Cases too
//! big to keep in the repository (a 10 MB string, 100 000 routes) are generated here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use rudder::model::{LastGood, build};
use rudder::proxy::Proxy;
use rudder::source::file::load_dirs;
use rudder::translate::{ResourceType, translate};
use serde_json::json;

/// Unoptimized test builds parse and validate about ten times slower (100 000 routes: 14 s, of
/// which `rudder validate` built the same way takes 10 s, linear in the routes).
const TIME_LIMIT: Duration = Duration::from_secs(if cfg!(debug_assertions) { 30 } else { 10 });

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/bad-input")
}

fn good_mesh() -> PathBuf {
    corpus().join("good-mesh")
}

/// What a config translates to: per proxy and type, every resource's encoded bytes by name; and
/// every diagnostic, rendered.
struct Translation {
    resources: BTreeMap<(String, ResourceType), BTreeMap<String, Vec<u8>>>,
    diagnostics: Vec<String>,
}

fn translation(paths: &[PathBuf]) -> Translation {
    static PROXIES: LazyLock<Vec<Proxy>> = LazyLock::new(|| {
        [
            (
                "sidecar~10.1.0.1~web-1.shop~shop.svc.cluster.local",
                json!(null),
            ),
            (
                "sidecar~10.0.0.1~client.default~default.svc.cluster.local",
                json!({"INTERCEPTION_MODE": "NONE"}),
            ),
            (
                "router~10.0.0.9~ingress-abc.istio-system~istio-system.svc.cluster.local",
                json!({"LABELS": {"istio": "ingressgateway"}}),
            ),
        ]
        .iter()
        .map(|(id, metadata)| Proxy::parse(id, metadata).expect("a valid node id"))
        .collect()
    });
    let built = build(&load_dirs(paths).inputs(), &LastGood::default());
    let mut resources = BTreeMap::new();
    for proxy in PROXIES.iter() {
        let proxy = proxy.clone().with_workload_labels(&built.model);
        let translated = translate(&built.model, &proxy);
        for ty in ResourceType::ALL {
            // Compared as canonical JSON: the wire bytes of map fields (filter metadata's
            // Struct) follow a hash map's order, as Envoy allows; rudder's versions hash the
            // same canonical form.
            let encoded = translated
                .encode(ty)
                .into_iter()
                .map(|(name, any)| {
                    let json = rudder::envoy_json::any_to_json(&any).expect("renders as JSON");
                    (name, json.to_string().into_bytes())
                })
                .collect();
            resources.insert((proxy.id.clone(), ty), encoded);
        }
    }
    let diagnostics = built.errors.iter().map(ToString::to_string).collect();
    Translation {
        resources,
        diagnostics,
    }
}

static BASELINE: LazyLock<Translation> = LazyLock::new(|| {
    let alone = translation(&[good_mesh()]);
    assert_eq!(
        alone.diagnostics,
        Vec::<String>::new(),
        "the good mesh is good"
    );
    alone
});

/// The `# expect: ` lines of a case's header.
fn expectations(text: &str) -> Vec<String> {
    text.lines()
        .take_while(|line| line.starts_with('#'))
        .filter_map(|line| line.strip_prefix("# expect: "))
        .map(str::to_string)
        .collect()
}

/// Checks one case; returns how long it took, or what is wrong.
fn check(case: &Path, expected: &[String]) -> Result<Duration, String> {
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        translation(&[good_mesh(), case.to_path_buf()])
    }));
    let elapsed = started.elapsed();
    let with_case = outcome.map_err(|_| "panicked".to_string())?;
    let mut problems = String::new();
    if expected.is_empty() {
        problems.push_str("no `# expect: ` line in its header; ");
    }
    let prefix = format!("{}:", case.display());
    for expect in expected {
        let reported = with_case
            .diagnostics
            .iter()
            .any(|d| d.starts_with(&prefix) && d.contains(expect.as_str()));
        if !reported {
            let _ = write!(problems, "no diagnostic of its file contains {expect:?}; ");
        }
    }
    for (key, resources) in &BASELINE.resources {
        if with_case.resources.get(key) != Some(resources) {
            let _ = write!(problems, "the good mesh's {key:?} changed; ");
        }
    }
    if elapsed >= TIME_LIMIT {
        let _ = write!(problems, "took {elapsed:?}; ");
    }
    if problems.is_empty() {
        Ok(elapsed)
    } else {
        Err(format!(
            "{problems}diagnostics: {:#?}",
            with_case.diagnostics
        ))
    }
}

/// Checks every case, reporting all failures at once.
fn check_all(cases: &[(PathBuf, Vec<String>)]) {
    let mut failures = String::new();
    let mut slowest = (Duration::ZERO, PathBuf::new());
    for (case, expected) in cases {
        match check(case, expected) {
            Ok(elapsed) => {
                eprintln!("{}: {elapsed:?}", case.display());
                if elapsed > slowest.0 {
                    slowest = (elapsed, case.clone());
                }
            }
            Err(problem) => {
                let _ = writeln!(failures, "{}: {problem}", case.display());
            }
        }
    }
    eprintln!("slowest: {} in {:?}", slowest.1.display(), slowest.0);
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn every_case_is_reported_and_leaves_the_good_mesh_alone() {
    let mut cases: Vec<(PathBuf, Vec<String>)> = std::fs::read_dir(corpus())
        .expect("testdata/bad-input exists")
        .map(|entry| entry.expect("a readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a readable case");
            (path, expectations(&text))
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 50, "only {} cases", cases.len());
    check_all(&cases);
}

/// A case generated into a temporary directory.
fn generated(dir: &Path, name: &str, expect: &str, yaml: &str) -> (PathBuf, Vec<String>) {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("write the generated case");
    (path, vec![expect.to_string()])
}

#[test]
fn huge_values_are_reported_in_time() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let huge = "a".repeat(10 << 20);
    let route = "{destination: {host: web.shop.svc.cluster.local}}";
    let ok_rule = format!("  - route: [{route}]\n");
    let mut many_rules = ok_rule.repeat(99_999);
    many_rules.push_str(&format!("  - route: [{route}]\n    timeout: -1s\n"));
    let vs = |name: &str, spec: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
             metadata: {{name: {name}, namespace: bad}}\nspec:\n{spec}"
        )
    };
    let cases = [
        generated(
            dir.path(),
            "huge-host",
            "VirtualService bad/huge-host: spec.hosts[0]",
            &vs(
                "huge-host",
                &format!("  hosts: [{huge}]\n  http: [{{route: [{route}]}}]\n"),
            ),
        ),
        generated(
            dir.path(),
            "huge-regex",
            "VirtualService bad/huge-regex: spec.http[0].match[0].uri.regex",
            &vs(
                "huge-regex",
                &format!(
                    "  hosts: [web.shop.svc.cluster.local]\n  http:\n  \
                     - match: [{{uri: {{regex: '{huge}'}}}}]\n    route: [{route}]\n"
                ),
            ),
        ),
        generated(
            dir.path(),
            "huge-name",
            "VirtualService bad/",
            &vs(
                &huge,
                &format!(
                    "  hosts: [web.shop.svc.cluster.local]\n  http: [{{route: [{route}], timeout: -1s}}]\n"
                ),
            ),
        ),
        generated(
            dir.path(),
            "many-routes",
            "VirtualService bad/many-routes: spec.http[99999].timeout",
            &vs(
                "many-routes",
                &format!("  hosts: [web.shop.svc.cluster.local]\n  http:\n{many_rules}"),
            ),
        ),
    ];
    check_all(&cases);
}
