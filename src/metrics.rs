//! rudder's Prometheus metrics, named as istiod names them wherever the meaning is the same, so
//! Istio's dashboards and alerts work unchanged: connected proxies (`pilot_xds`), pushes, their
//! time and size by xDS type, proxy convergence, rejections (NACKs), debounce and push triggers,
//! services and virtual services in the model, and the process's CPU and memory. What istiod has
//! no metric for is `rudder_*` (config errors, model builds, xDS streams and connections refused
//! or not yet identified). Owns its own registry (no global
//! state) and renders it in the text format; the admin server exposes it. Recording only; no I/O
//! beyond the process collector reading `/proc` when scraped.
//!
//! Like istiod's (which exports through OpenTelemetry without unit or `_total` suffixes), the
//! counters are named without `_total`: `pilot_xds_pushes`, `pilot_total_xds_rejects`.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::inputs::{Changes, Inputs, Kind};
use crate::model::Model;
use crate::translate::ResourceType;

mod labels;
mod runtime;

pub use labels::{PushTrigger, Refusal};

/// istiod's buckets for `pilot_xds_push_time`, `pilot_xds_send_time` and `pilot_debounce_time`
/// (seconds).
const PUSH_TIME_BUCKETS: &[f64] = &[0.01, 0.1, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];
/// istiod's buckets for `pilot_proxy_convergence_time` (seconds).
const CONVERGENCE_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];
/// istiod's buckets for `pilot_xds_config_size_bytes`: 10K, 1M, 4M (gRPC's default limit), 10M,
/// 40M.
const CONFIG_SIZE_BUCKETS: &[f64] = &[1.0, 10e3, 1e6, 4e6, 10e6, 40e6];

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `pilot_xds`: open ADS streams.
    xds_clients: IntGauge,
    /// `pilot_xds_pushes{type}`.
    pushes: IntCounterVec,
    /// `pilot_xds_push_time{type}`.
    push_time: HistogramVec,
    /// `pilot_xds_config_size_bytes{type}`.
    config_size: HistogramVec,
    /// `pilot_proxy_convergence_time`.
    convergence: Histogram,
    /// `pilot_total_xds_rejects{type}`.
    rejects: IntCounterVec,
    /// `pilot_xds_{cds,eds,lds,rds,sds}_reject{node}`, in [`ResourceType::ALL`] order.
    type_rejects: [IntGaugeVec; ResourceType::ALL.len()],
    /// `pilot_debounce_time`.
    debounce: Histogram,
    /// `pilot_push_triggers{type}`.
    push_triggers: IntCounterVec,
    /// `pilot_services`.
    services: IntGauge,
    /// `pilot_virt_services`.
    virt_services: IntGauge,
    /// `rudder_config_errors`.
    config_errors: IntGauge,
    /// `rudder_config_builds_total`.
    config_builds: IntCounter,
    /// `rudder_config_endpoint_updates_total`.
    endpoint_updates: IntCounter,
    /// `rudder_kube_synced{kind}`.
    kube_synced: IntGaugeVec,
    /// `rudder_xds_unidentified_streams`.
    unidentified_streams: IntGauge,
    /// `rudder_xds_refused_total{reason}`.
    refused: IntCounterVec,
    /// `pilot_xds_send_time`.
    send_time: Histogram,
    /// `pilot_xds_write_timeout`.
    write_timeouts: IntCounter,
    /// `pilot_xds_expired_nonce`.
    expired_nonces: IntCounter,
    /// `pilot_k8s_cfg_events{type,event}`.
    config_events: IntCounterVec,
    /// `pilot_k8s_reg_events{type,event}`.
    registry_events: IntCounterVec,
    /// `istiod_uptime_seconds`, set when rendered.
    uptime: Gauge,
    started: Instant,
    /// `rudder_untranslated_objects{kind}`.
    untranslated: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The definitions are constant and registered once into a fresh registry, so failing is a
/// programming error, not a runtime condition.
const VALID: &str = "metric definitions are valid and unique";

fn histogram(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(buckets.to_vec())
}

impl Metrics {
    pub fn new() -> Metrics {
        let xds_clients = IntGauge::new(
            "pilot_xds",
            "Number of endpoints connected to this pilot using XDS.",
        )
        .expect(VALID);
        let pushes = IntCounterVec::new(
            Opts::new(
                "pilot_xds_pushes",
                "xDS responses sent, by type (cds, eds, lds, rds, sds).",
            ),
            &["type"],
        )
        .expect(VALID);
        let push_time = HistogramVec::new(
            histogram(
                "pilot_xds_push_time",
                "Total time in seconds Pilot takes to push lds, rds, cds and eds.",
                PUSH_TIME_BUCKETS,
            ),
            &["type"],
        )
        .expect(VALID);
        let config_size = HistogramVec::new(
            histogram(
                "pilot_xds_config_size_bytes",
                "Distribution of configuration sizes pushed to clients",
                CONFIG_SIZE_BUCKETS,
            ),
            &["type"],
        )
        .expect(VALID);
        let convergence = Histogram::with_opts(histogram(
            "pilot_proxy_convergence_time",
            "Delay in seconds between config change and a proxy receiving all required configuration.",
            CONVERGENCE_BUCKETS,
        ))
        .expect(VALID);
        let rejects = IntCounterVec::new(
            Opts::new(
                "pilot_total_xds_rejects",
                "Total number of XDS responses from pilot rejected by proxy.",
            ),
            &["type"],
        )
        .expect(VALID);
        let type_reject = |ty: ResourceType, help: &str| {
            let name = format!("pilot_xds_{}_reject", ty.short_name());
            IntGaugeVec::new(Opts::new(name, help), &["node"]).expect(VALID)
        };
        let type_rejects = [
            type_reject(ResourceType::Cluster, "Pilot rejected CDS configs."),
            type_reject(ResourceType::Endpoint, "Pilot rejected EDS."),
            type_reject(ResourceType::Listener, "Pilot rejected LDS."),
            type_reject(ResourceType::Route, "Pilot rejected RDS."),
            type_reject(ResourceType::Secret, "Pilot rejected SDS."),
        ];
        let debounce = Histogram::with_opts(histogram(
            "pilot_debounce_time",
            "Delay in seconds between the first config enters debouncing and the merged push request is pushed into the push queue.",
            PUSH_TIME_BUCKETS,
        ))
        .expect(VALID);
        let push_triggers = IntCounterVec::new(
            Opts::new(
                "pilot_push_triggers",
                "Total number of times a push was triggered, labeled by reason for the push.",
            ),
            &["type"],
        )
        .expect(VALID);
        let services =
            IntGauge::new("pilot_services", "Total services known to pilot.").expect(VALID);
        let virt_services = IntGauge::new(
            "pilot_virt_services",
            "Total virtual services known to pilot.",
        )
        .expect(VALID);
        let config_errors = IntGauge::new(
            "rudder_config_errors",
            "Config errors in the current build (objects rejected or served at their last good version).",
        )
        .expect(VALID);
        let config_builds = IntCounter::new(
            "rudder_config_builds_total",
            "Builds: debounced config changes taken in (a full model build, an endpoint update, or nothing to do).",
        )
        .expect(VALID);
        let endpoint_updates = IntCounter::new(
            "rudder_config_endpoint_updates_total",
            "Builds that only updated endpoints, without building the model anew.",
        )
        .expect(VALID);
        let kube_synced = IntGaugeVec::new(
            Opts::new(
                "rudder_kube_synced",
                "1 while the kind is listed and watched on the Kubernetes API server; 0 while its \
                 watch is down and the objects last listed are served.",
            ),
            &["kind"],
        )
        .expect(VALID);
        let unidentified_streams = IntGauge::new(
            "rudder_xds_unidentified_streams",
            "ADS streams open that have not sent a valid first request yet (not in pilot_xds).",
        )
        .expect(VALID);
        let refused = IntCounterVec::new(
            Opts::new(
                "rudder_xds_refused_total",
                "xDS connections closed and ADS streams ended by rudder for breaking a limit or \
                 the protocol, by reason.",
            ),
            &["reason"],
        )
        .expect(VALID);
        let untranslated = IntGaugeVec::new(
            Opts::new(
                "rudder_untranslated_objects",
                "Objects present of an Istio kind rudder does not translate yet (their config is \
                 not applied: an AuthorizationPolicy is not enforced), by kind.",
            ),
            &["kind"],
        )
        .expect(VALID);

        let send_time = Histogram::with_opts(histogram(
            "pilot_xds_send_time",
            "Total time in seconds Pilot takes to send generated configuration.",
            PUSH_TIME_BUCKETS,
        ))
        .expect(VALID);
        let write_timeouts = IntCounter::new(
            "pilot_xds_write_timeout",
            "Pilot XDS response write timeouts.",
        )
        .expect(VALID);
        let expired_nonces = IntCounter::new(
            "pilot_xds_expired_nonce",
            "Total number of XDS requests with an expired nonce.",
        )
        .expect(VALID);
        // istiod counts responses it failed to generate. rudder's translation has no failure
        // path (bad config is refused before it), so this stays 0; it is there so that alerts
        // written on it evaluate.
        let internal_errors = IntCounter::new(
            "pilot_total_xds_internal_errors",
            "Total number of internal XDS errors in pilot.",
        )
        .expect(VALID);
        let config_events = IntCounterVec::new(
            Opts::new(
                "pilot_k8s_cfg_events",
                "Events from k8s config: Istio objects added, updated, deleted, by kind.",
            ),
            &["type", "event"],
        )
        .expect(VALID);
        let registry_events = IntCounterVec::new(
            Opts::new(
                "pilot_k8s_reg_events",
                "Events from k8s registry: Services added, updated, updated unchanged, deleted.",
            ),
            &["type", "event"],
        )
        .expect(VALID);
        let uptime = Gauge::new(
            "istiod_uptime_seconds",
            "Current istiod server uptime in seconds",
        )
        .expect(VALID);
        // istiod's build gauges: one series, value 1, whose labels say the version.
        let version = env!("CARGO_PKG_VERSION");
        let build = GaugeVec::new(
            Opts::new("istio_build", "Istio component build info"),
            &["component", "tag"],
        )
        .expect(VALID);
        build.with_label_values(&["pilot", version]).set(1.0);
        let info = GaugeVec::new(
            Opts::new("pilot_info", "Pilot version and build information."),
            &["version"],
        )
        .expect(VALID);
        info.with_label_values(&[&format!("rudder-{version}")])
            .set(1.0);

        let registry = Registry::new();
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(xds_clients.clone()),
            Box::new(pushes.clone()),
            Box::new(push_time.clone()),
            Box::new(config_size.clone()),
            Box::new(convergence.clone()),
            Box::new(rejects.clone()),
            Box::new(type_rejects[0].clone()),
            Box::new(type_rejects[1].clone()),
            Box::new(type_rejects[2].clone()),
            Box::new(type_rejects[3].clone()),
            Box::new(type_rejects[4].clone()),
            Box::new(debounce.clone()),
            Box::new(push_triggers.clone()),
            Box::new(services.clone()),
            Box::new(virt_services.clone()),
            Box::new(config_errors.clone()),
            Box::new(config_builds.clone()),
            Box::new(endpoint_updates.clone()),
            Box::new(kube_synced.clone()),
            Box::new(unidentified_streams.clone()),
            Box::new(refused.clone()),
            Box::new(send_time.clone()),
            Box::new(write_timeouts.clone()),
            Box::new(expired_nonces.clone()),
            Box::new(internal_errors),
            Box::new(config_events.clone()),
            Box::new(registry_events.clone()),
            Box::new(uptime.clone()),
            Box::new(build),
            Box::new(info),
            // go_goroutines, go_memstats_heap_*: what stands for them in rudder.
            Box::new(runtime::RuntimeCollector::new()),
            Box::new(untranslated.clone()),
            // process_cpu_seconds_total, process_resident_memory_bytes, open fds, ...
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for collector in collectors {
            registry.register(collector).expect(VALID);
        }
        // Every type and trigger shows from the start, so rates and alerts work before the first
        // event.
        for ty in ResourceType::ALL {
            pushes.with_label_values(&[ty.short_name()]);
            rejects.with_label_values(&[ty.short_name()]);
        }
        for trigger in PushTrigger::ALL {
            push_triggers.with_label_values(&[trigger.label()]);
        }
        for refusal in Refusal::ALL {
            refused.with_label_values(&[refusal.label()]);
        }
        for kind in Kind::untranslated() {
            untranslated.with_label_values(&[kind.name()]);
        }
        Metrics {
            registry,
            xds_clients,
            pushes,
            push_time,
            config_size,
            convergence,
            rejects,
            type_rejects,
            debounce,
            push_triggers,
            services,
            virt_services,
            config_errors,
            config_builds,
            endpoint_updates,
            kube_synced,
            unidentified_streams,
            refused,
            send_time,
            write_timeouts,
            expired_nonces,
            config_events,
            registry_events,
            uptime,
            started: Instant::now(),
            untranslated,
        }
    }

    /// Records how many objects of each kind rudder does not translate `inputs` hold.
    pub fn record_untranslated(&self, inputs: &Inputs) {
        for kind in Kind::untranslated() {
            let count = inputs.of_kind(kind).count();
            self.untranslated
                .with_label_values(&[kind.name()])
                .set(saturating(count));
        }
    }

    /// Records which watched Kubernetes kinds are in sync with the API server.
    pub fn record_kube_sync<'a>(&self, kinds: impl IntoIterator<Item = (&'a str, bool)>) {
        for (kind, in_sync) in kinds {
            self.kube_synced
                .with_label_values(&[kind])
                .set(i64::from(in_sync));
        }
    }

    /// Counts one build: a debounced config change taken in, whatever came of it.
    pub fn count_build(&self) {
        self.config_builds.inc();
    }

    /// Counts a build that was an endpoint update (no full model build).
    pub fn count_endpoint_update(&self) {
        self.endpoint_updates.inc();
    }

    /// Records the model published: its services, virtual services and config errors.
    pub fn record_model(&self, model: &Model, errors: usize) {
        self.config_errors.set(saturating(errors));
        self.services.set(saturating(model.services.len()));
        self.virt_services
            .set(saturating(model.virtual_services.len()));
    }

    /// Counts `count` push triggers of one kind (`pilot_push_triggers`).
    pub fn push_triggered(&self, trigger: PushTrigger, count: u64) {
        self.push_triggers
            .with_label_values(&[trigger.label()])
            .inc_by(count);
    }

    /// Counts the triggers of a build's change set (see [`PushTrigger::of_changes`]).
    pub fn record_triggers(&self, changes: &Changes) {
        for (trigger, count) in PushTrigger::of_changes(changes) {
            self.push_triggered(trigger, count);
        }
    }

    /// How long a debounced push waited, from the first change it holds until it was released
    /// (`pilot_debounce_time`).
    pub fn observe_debounce(&self, waited: Duration) {
        self.debounce.observe(waited.as_secs_f64());
    }

    pub fn proxy_connected(&self) {
        self.xds_clients.inc();
    }

    pub fn proxy_disconnected(&self) {
        self.xds_clients.dec();
    }

    /// An ADS stream opened: unidentified until [`Metrics::unidentified_stream_closed`].
    pub fn unidentified_stream_opened(&self) {
        self.unidentified_streams.inc();
    }

    /// An unidentified ADS stream identified itself with a valid first request, or ended.
    pub fn unidentified_stream_closed(&self) {
        self.unidentified_streams.dec();
    }

    /// The xDS server refused a connection or ended a stream for `reason`.
    pub fn refused(&self, reason: Refusal) {
        self.refused.with_label_values(&[reason.label()]).inc();
    }

    /// One response of `ty` sent: counted, with its encoded size in bytes.
    pub fn pushed(&self, ty: ResourceType, size_bytes: usize) {
        self.pushes.with_label_values(&[ty.short_name()]).inc();
        self.config_size
            .with_label_values(&[ty.short_name()])
            .observe(size_bytes as f64);
    }

    /// How long one push of `ty` took, from the start of its translation until it was sent
    /// (`pilot_xds_push_time`).
    pub fn observe_push_time(&self, ty: ResourceType, took: Duration) {
        self.push_time
            .with_label_values(&[ty.short_name()])
            .observe(took.as_secs_f64());
    }

    /// How long it took from a config change until a proxy ACKed the response that carried it
    /// (`pilot_proxy_convergence_time`).
    pub fn observe_convergence(&self, took: Duration) {
        self.convergence.observe(took.as_secs_f64());
    }

    /// A proxy (`node`: its id) rejected a response of `ty`: `pilot_total_xds_rejects{type}` and,
    /// like istiod, the older per-type `pilot_xds_<type>_reject{node}` gauges (which count up).
    pub fn rejected(&self, ty: ResourceType, node: &str) {
        self.rejects.with_label_values(&[ty.short_name()]).inc();
        self.type_rejects[type_index(ty)]
            .with_label_values(&[node])
            .inc();
    }

    /// How long sending one response took (`pilot_xds_send_time`): from handing it to the
    /// stream until the stream took it.
    pub fn observe_send_time(&self, took: Duration) {
        self.send_time.observe(took.as_secs_f64());
    }

    /// A proxy did not read its config within the send timeout (`pilot_xds_write_timeout`).
    pub fn write_timed_out(&self) {
        self.write_timeouts.inc();
    }

    /// A request answered a nonce the stream no longer expects (`pilot_xds_expired_nonce`).
    pub fn nonce_expired(&self) {
        self.expired_nonces.inc();
    }

    /// Adds `count` Kubernetes watch events of `event` (`add`, `update`, `updatesame`,
    /// `delete`) on `kind`: Istio config kinds count in `pilot_k8s_cfg_events{type=KIND}`,
    /// Services in `pilot_k8s_reg_events{type="Services"}`, as istiod counts its informer
    /// events; other registry kinds are not counted, as istiod does not count them either.
    pub fn kube_events(&self, kind: &str, event: &str, count: u64) {
        match kind {
            "Service" => self
                .registry_events
                .with_label_values(&["Services", event])
                .inc_by(count),
            "Namespace" | "Node" | "Pod" | "Secret" | "EndpointSlice" | "ConfigMap" => {}
            _ => self
                .config_events
                .with_label_values(&[kind, event])
                .inc_by(count),
        }
    }

    /// All metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot render metrics");
                String::new()
            })
    }
}

fn type_index(ty: ResourceType) -> usize {
    match ty {
        ResourceType::Cluster => 0,
        ResourceType::Endpoint => 1,
        ResourceType::Listener => 2,
        ResourceType::Route => 3,
        ResourceType::Secret => 4,
    }
}

fn saturating(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The convergence bookkeeping of one ADS stream: per type, when the config behind the last
/// response sent was seen, until the proxy ACKs (observed) or NACKs (dropped) it. A response's
/// origin is the later of the config change it carries and the stream's start, so a proxy that
/// connects long after the last change measures from its connection, not from that change.
#[derive(Debug)]
pub struct Convergence {
    opened: Instant,
    pending: Mutex<BTreeMap<ResourceType, Instant>>,
}

impl Default for Convergence {
    /// A stream that opens now.
    fn default() -> Self {
        Convergence {
            opened: Instant::now(),
            pending: Mutex::default(),
        }
    }
}

impl Convergence {
    /// A response of `ty` went out carrying config seen at `seen` (`None`: unknown, so this
    /// response is not measured).
    pub fn sent(&self, ty: ResourceType, seen: Option<Instant>) {
        let mut pending = self.lock();
        match seen {
            Some(seen) => pending.insert(ty, seen.max(self.opened)),
            None => pending.remove(&ty),
        };
    }

    /// The proxy ACKed the last response of `ty`: records how long it took since its config was
    /// seen, once per response.
    pub fn acked(&self, ty: ResourceType, metrics: &Metrics) {
        if let Some(seen) = self.lock().remove(&ty) {
            metrics.observe_convergence(seen.elapsed());
        }
    }

    /// The proxy NACKed the last response of `ty`: it never converges on it.
    pub fn rejected(&self, ty: ResourceType) {
        self.lock().remove(&ty);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ResourceType, Instant>> {
        // Entries are replaced one at a time, so the map is consistent even after a panic.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
