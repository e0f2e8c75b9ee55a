//! The differential suite's harness (tests/differential.rs runs it): each scenario of
//! `testdata/differential/` served by rudder and by real istiod (`scripts/istiod`) from the same
//! files and mesh config, the same stock Envoy attached to each in turn, their config dumps and
//! probe results compared field by field (`compare`), and every difference matched against the
//! allowlist (`allowlist`). Holds no expectation of its own about Istio's behaviour: istiod's
//! answer is the expectation. The Kubernetes variant (tests/differential_kube.rs, `kube`) serves
//! the same scenarios from a real API server instead of files; `suite` is both test files' main.

pub mod allowlist;
pub mod compare;
pub mod kube;
pub mod report;
pub mod run;
pub mod scenario;
pub mod suite;

use std::collections::BTreeSet;
use std::path::Path;

use rudder::serve::{ServeOptions, Server};
use serde_json::{Map, Value};

use allowlist::{Allowlist, Variant};
use compare::Difference;
use run::{MESH_BASE, Upstreams, observe};
use scenario::{ProxyKind, ScenarioDir};

use crate::support::istiod::Istiod;
use crate::support::mesh::local_serve_options;

/// Where a run's control planes read the scenario from.
pub enum Source<'a> {
    /// A config directory (rudder's file source, istiod's file mode).
    Files,
    /// The cluster of the Kubernetes variant.
    Kube(&'a kube::KubeEnv),
}

impl Source<'_> {
    pub fn variant(&self) -> Variant {
        match self {
            Source::Files => Variant::File,
            Source::Kube(_) => Variant::Kube,
        }
    }
}

/// Mesh-wide plaintext: without it istiod gives inbound listeners mutual TLS chains whose
/// certificates only istio-agent serves, and a stock Envoy's listeners would wait for them.
/// rudder does not read PeerAuthentication.
const PEER_AUTHENTICATION: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
     metadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: DISABLE}}\n";

/// A difference found in a scenario, with the allowlist entry that accepts it, if any.
pub struct Found {
    pub proxy: String,
    pub difference: Difference,
    pub entry: Option<allowlist::MatchId>,
}

/// What one scenario came to.
pub struct Outcome {
    pub name: String,
    pub compared: usize,
    pub found: Vec<Found>,
    /// Why the scenario could not be compared at all.
    pub error: Option<String>,
}

impl Outcome {
    pub fn matched(&self) -> BTreeSet<allowlist::MatchId> {
        self.found.iter().filter_map(|found| found.entry).collect()
    }

    /// Why this scenario fails in a run of `variant`: differences no entry accepts, and entries
    /// of that variant naming this scenario that matched nothing in it. Empty when it passes.
    pub fn failures(&self, allowlist: &Allowlist, variant: Variant) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(error) = &self.error {
            out.push(error.clone());
            return out;
        }
        for found in self.found.iter().filter(|found| found.entry.is_none()) {
            let d = &found.difference;
            out.push(format!(
                "not in the allowlist: proxy {} {}\n    rudder: {}\n    istiod: {}",
                found.proxy,
                d.path,
                shown(d.rudder.as_ref()),
                shown(d.istiod.as_ref()),
            ));
        }
        let matched = self.matched();
        for (id, one) in allowlist.match_ids() {
            if !one.for_every_scenario()
                && one.checked_by(variant)
                && one.scenarios.contains(&self.name)
                && !matched.contains(&id)
            {
                out.push(format!(
                    "stale: {} names scenario {} but matched nothing there; remove {} from its \
                     scenarios (or the pattern, or the entry)",
                    allowlist.describe(id),
                    self.name,
                    self.name
                ));
            }
        }
        out
    }
}

/// A value for a failure message: `(absent)`, or its JSON cut to a readable length.
pub fn shown(value: Option<&Value>) -> String {
    match value {
        None => "(absent)".to_string(),
        Some(value) => {
            let text = value.to_string();
            match text.char_indices().nth(400) {
                Some((cut, _)) => format!("{}... ({} chars)", &text[..cut], text.len()),
                None => text,
            }
        }
    }
}

/// Runs one scenario under both control planes and compares.
pub async fn run_scenario(
    scenario: &ScenarioDir,
    allowlist: &Allowlist,
    source: &Source<'_>,
) -> Outcome {
    let mut outcome = Outcome {
        name: scenario.name.clone(),
        compared: 0,
        found: Vec::new(),
        error: None,
    };
    let observed = match source {
        Source::Files => observe_both(scenario).await,
        Source::Kube(env) => observe_both_kube(scenario, env).await,
    };
    match observed {
        Err(error) => outcome.error = Some(error),
        Ok((rudder, istiod)) => {
            if let Ok(dir) = std::env::var("RUDDER_DIFF_DUMPS") {
                save(Path::new(&dir), &scenario.name, &rudder, &istiod);
            }
            // A port something else on the machine holds fails both sides alike, which would
            // compare equal and prove nothing.
            if let Some(error) = [&rudder, &istiod].into_iter().find_map(port_taken) {
                outcome.error = Some(format!("a listener could not bind (port in use?): {error}"));
                return outcome;
            }
            for proxy in &scenario.scenario.proxies {
                let kind = match proxy.kind {
                    ProxyKind::Sidecar => "sidecar",
                    ProxyKind::Router => "router",
                };
                let (differences, compared) =
                    compare::diff(&rudder[&proxy.name], &istiod[&proxy.name]);
                outcome.compared += compared;
                for difference in differences {
                    let entry = allowlist.find(&scenario.name, kind, source.variant(), &difference);
                    outcome.found.push(Found {
                        proxy: proxy.name.clone(),
                        difference,
                        entry,
                    });
                }
            }
        }
    }
    outcome
}

/// What every proxy saw under rudder, then under istiod: `{proxy: {config, probes}}` each.
async fn observe_both(scenario: &ScenarioDir) -> Result<(Value, Value), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).map_err(|e| e.to_string())?;
    for (index, file) in scenario.config_files.iter().enumerate() {
        let name = file.file_name().ok_or("a config file without a name")?;
        // Numbered: a scenario's file and an included one may share a name.
        let copy = config_dir.join(format!("{index:02}-{}", name.to_string_lossy()));
        std::fs::copy(file, copy).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    std::fs::write(
        config_dir.join("zz-differential-plaintext.yaml"),
        PEER_AUTHENTICATION,
    )
    .map_err(|e| e.to_string())?;
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(&mesh, format!("{MESH_BASE}{}", scenario.scenario.mesh))
        .map_err(|e| e.to_string())?;
    let upstreams = Upstreams::start(scenario, None).await?;

    let server = Server::start(ServeOptions {
        mesh_config_file: Some(mesh.clone()),
        ..local_serve_options(vec![config_dir.clone()])
    })
    .await
    .map_err(|error| format!("rudder did not start: {error}"))?;
    let rudder = observe_every_proxy(scenario, server.xds_address(), &upstreams).await;
    server.stop().await;

    let istiod = Istiod::up(&config_dir, Some(&mesh))?;
    istiod.wait_for_config(&config_dir).await?;
    let reference = observe_every_proxy(scenario, istiod.xds, &upstreams).await;
    drop(istiod);
    Ok((rudder, reference))
}

/// What each proxy of the scenario saw from the control plane at `xds`, by proxy name.
async fn observe_every_proxy(
    scenario: &ScenarioDir,
    xds: std::net::SocketAddr,
    upstreams: &Upstreams,
) -> Value {
    let mut seen = Map::new();
    for proxy in &scenario.scenario.proxies {
        let observed = observe(scenario, proxy, xds, upstreams).await;
        seen.insert(proxy.name.clone(), observed);
    }
    Value::Object(seen)
}

/// [`observe_both`] with the scenario's objects in the Kubernetes variant's cluster (see `kube`):
/// rudder watching it, then istiod in Kubernetes mode; the objects are removed afterwards.
async fn observe_both_kube(
    scenario: &ScenarioDir,
    env: &kube::KubeEnv,
) -> Result<(Value, Value), String> {
    let objects = kube::objects(scenario, PEER_AUTHENTICATION)?;
    // The same scenario with the addresses the cluster's objects name.
    let mut local = ScenarioDir::load(&scenario.name)?;
    kube::localize(&mut local, &objects, env)?;
    env.apply(&objects)?;
    let observed = observe_kube(&local, env, &objects.items).await;
    env.delete(&objects);
    observed
}

async fn observe_kube(
    scenario: &ScenarioDir,
    env: &kube::KubeEnv,
    objects: &[Value],
) -> Result<(Value, Value), String> {
    let upstreams = Upstreams::start(scenario, Some(&env.host)).await?;
    let server = Server::start(ServeOptions {
        kubernetes: Some(env.cluster.kubernetes_options()),
        ..local_serve_options(Vec::new())
    })
    .await
    .map_err(|error| format!("rudder did not start: {error}"))?;
    let rudder = observe_every_proxy(scenario, server.xds_address(), &upstreams).await;
    server.stop().await;

    let istiod = Istiod::up_kubernetes(&env.cluster.kubeconfig, None)?;
    istiod.wait_for_documents(objects).await?;
    let reference = observe_every_proxy(scenario, istiod.xds, &upstreams).await;
    drop(istiod);
    Ok((rudder, reference))
}

/// The first listener error about an address in use, in any proxy's config.
fn port_taken(observed: &Value) -> Option<String> {
    observed
        .as_object()?
        .values()
        .filter_map(|proxy| proxy["config"]["listener_errors"].as_object())
        .flatten()
        .find(|(_, error)| error.as_str().is_some_and(|e| e.contains("already in use")))
        .map(|(name, error)| format!("{name}: {error}"))
}

/// Both sides' trees as files, for writing scenarios and allowlist entries.
fn save(dir: &Path, name: &str, rudder: &Value, istiod: &Value) {
    let _ = std::fs::create_dir_all(dir);
    for (side, tree) in [("rudder", rudder), ("istiod", istiod)] {
        let text = serde_json::to_string_pretty(tree).unwrap_or_default();
        let _ = std::fs::write(dir.join(format!("{name}.{side}.json")), text);
    }
}
