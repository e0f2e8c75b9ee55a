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
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::inputs::{Inputs, Kind};
use crate::model::Model;
use crate::translate::ResourceType;

/// istiod's buckets for `pilot_xds_push_time` and `pilot_debounce_time` (seconds).
const PUSH_TIME_BUCKETS: &[f64] = &[0.01, 0.1, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];
/// istiod's buckets for `pilot_proxy_convergence_time` (seconds).
const CONVERGENCE_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];
/// istiod's buckets for `pilot_xds_config_size_bytes`: 10K, 1M, 4M (gRPC's default limit), 10M,
/// 40M.
const CONFIG_SIZE_BUCKETS: &[f64] = &[1.0, 10e3, 1e6, 4e6, 10e6, 40e6];

/// Why a push was started, as istiod labels `pilot_push_triggers{type}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PushTrigger {
    /// Endpoints changed (EndpointSlices, Pods, WorkloadEntries).
    Endpoint,
    /// Istio config changed (VirtualService, DestinationRule, Gateway, Sidecar, unreadable files).
    Config,
    /// Services changed (Service, ServiceEntry).
    Service,
    /// A proxy changed (reconnected, new metadata).
    Proxy,
    /// Everything must be recomputed.
    Global,
    /// A Namespace changed.
    Namespace,
    /// A Secret changed.
    Secret,
    /// A push for no known reason.
    Unknown,
}

impl PushTrigger {
    pub const ALL: [PushTrigger; 8] = [
        PushTrigger::Endpoint,
        PushTrigger::Config,
        PushTrigger::Service,
        PushTrigger::Proxy,
        PushTrigger::Global,
        PushTrigger::Namespace,
        PushTrigger::Secret,
        PushTrigger::Unknown,
    ];

    /// istiod's label value (`model.TriggerReason`).
    pub fn label(self) -> &'static str {
        match self {
            PushTrigger::Endpoint => "endpoint",
            PushTrigger::Config => "config",
            PushTrigger::Service => "service",
            PushTrigger::Proxy => "proxy",
            PushTrigger::Global => "global",
            PushTrigger::Namespace => "namespace",
            PushTrigger::Secret => "secret",
            PushTrigger::Unknown => "unknown",
        }
    }

    /// The trigger a change of an object of `kind` is.
    pub fn of_kind(kind: Kind) -> PushTrigger {
        match kind {
            Kind::EndpointSlice | Kind::Pod | Kind::WorkloadEntry => PushTrigger::Endpoint,
            Kind::Service | Kind::ServiceEntry => PushTrigger::Service,
            Kind::Namespace => PushTrigger::Namespace,
            Kind::Secret => PushTrigger::Secret,
            Kind::Node => PushTrigger::Global,
            // VirtualService, DestinationRule, Gateway, Sidecar, and kinds added later.
            _ => PushTrigger::Config,
        }
    }

    /// What changed from `before` to `after`, by trigger: one per object added, removed or
    /// changed (or refused differently), and one `config` if the problems that belong to no
    /// object changed.
    pub fn between(before: &Inputs, after: &Inputs) -> BTreeMap<PushTrigger, u64> {
        let mut triggers = BTreeMap::new();
        let mut count = |kind: Kind| *triggers.entry(PushTrigger::of_kind(kind)).or_insert(0) += 1;
        for (key, entry) in &after.entries {
            if before
                .entries
                .get(key)
                .is_none_or(|old| old.object != entry.object)
            {
                count(key.kind);
            }
        }
        for key in before.entries.keys() {
            if !after.entries.contains_key(key) {
                count(key.kind);
            }
        }
        if before.problems != after.problems {
            *triggers.entry(PushTrigger::Config).or_insert(0) += 1;
        }
        triggers
    }
}

/// Why the xDS server refused a connection or ended a stream, as `rudder_xds_refused_total{reason}`
/// labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// A request over `--xds-max-message-size`.
    MessageSize,
    /// A request that is no valid ADS request (bad protobuf, too deep, not UTF-8, compressed, cut
    /// short).
    BadRequest,
    /// No first request within `--xds-first-request-timeout`.
    FirstRequestTimeout,
    /// A connection without TLS and the HTTP/2 preface within `--xds-handshake-timeout`.
    HandshakeTimeout,
    /// A connection whose TLS handshake failed, or that is not HTTP/2.
    HandshakeFailed,
    /// A new stream beyond `--xds-max-streams-per-second`.
    RateLimit,
    /// A request taking a stream past `--xds-max-subscribed-names`.
    Subscriptions,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::MessageSize,
        Refusal::BadRequest,
        Refusal::FirstRequestTimeout,
        Refusal::HandshakeTimeout,
        Refusal::HandshakeFailed,
        Refusal::RateLimit,
        Refusal::Subscriptions,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::MessageSize => "message_size",
            Refusal::BadRequest => "bad_request",
            Refusal::FirstRequestTimeout => "first_request_timeout",
            Refusal::HandshakeTimeout => "handshake_timeout",
            Refusal::HandshakeFailed => "handshake_failed",
            Refusal::RateLimit => "rate_limit",
            Refusal::Subscriptions => "subscriptions",
        }
    }
}

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
    /// `rudder_kube_synced{kind}`.
    kube_synced: IntGaugeVec,
    /// `rudder_xds_unidentified_streams`.
    unidentified_streams: IntGauge,
    /// `rudder_xds_refused_total{reason}`.
    refused: IntCounterVec,
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
        let config_builds =
            IntCounter::new("rudder_config_builds_total", "Model builds.").expect(VALID);
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
            Box::new(kube_synced.clone()),
            Box::new(unidentified_streams.clone()),
            Box::new(refused.clone()),
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
            kube_synced,
            unidentified_streams,
            refused,
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

    /// Records one model build: its services, virtual services and config errors.
    pub fn record_build(&self, model: &Model, errors: usize) {
        self.config_builds.inc();
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

    /// Counts the triggers of a build that went from `before` to `after` (see
    /// [`PushTrigger::between`]).
    pub fn record_triggers(&self, before: &Inputs, after: &Inputs) {
        for (trigger, count) in PushTrigger::between(before, after) {
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

    /// All metrics in the Prometheus text format.
    pub fn render(&self) -> String {
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
mod tests {
    use super::*;
    use crate::diagnostic::Origin;
    use crate::inputs::{Entry, FieldError, ObjectKey};

    fn has_line(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    /// The value of the one sample of `name` (with its labels, as rendered).
    fn sample(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn renders_istiod_names() {
        let metrics = Metrics::new();
        metrics.record_build(&Model::default(), 3);
        metrics.proxy_connected();
        metrics.proxy_connected();
        metrics.proxy_disconnected();
        metrics.pushed(ResourceType::Cluster, 2_000);
        metrics.observe_push_time(ResourceType::Cluster, Duration::from_millis(50));
        metrics.rejected(
            ResourceType::Route,
            "sidecar~1.2.3.4~a.b~b.svc.cluster.local",
        );
        metrics.observe_debounce(Duration::from_millis(120));
        metrics.push_triggered(PushTrigger::Endpoint, 2);
        metrics.unidentified_stream_opened();
        metrics.unidentified_stream_opened();
        metrics.unidentified_stream_closed();
        metrics.refused(Refusal::MessageSize);
        let text = metrics.render();
        for line in [
            "# TYPE pilot_xds gauge",
            "pilot_xds 1",
            "# TYPE pilot_xds_pushes counter",
            "pilot_xds_pushes{type=\"cds\"} 1",
            "pilot_xds_pushes{type=\"eds\"} 0",
            "# TYPE pilot_total_xds_rejects counter",
            "pilot_total_xds_rejects{type=\"rds\"} 1",
            "pilot_total_xds_rejects{type=\"cds\"} 0",
            "# TYPE pilot_xds_rds_reject gauge",
            "pilot_xds_rds_reject{node=\"sidecar~1.2.3.4~a.b~b.svc.cluster.local\"} 1",
            "# TYPE pilot_xds_push_time histogram",
            "pilot_xds_push_time_bucket{type=\"cds\",le=\"0.01\"} 0",
            "pilot_xds_push_time_bucket{type=\"cds\",le=\"0.1\"} 1",
            "pilot_xds_config_size_bytes_bucket{type=\"cds\",le=\"10000\"} 1",
            "pilot_xds_config_size_bytes_sum{type=\"cds\"} 2000",
            "pilot_debounce_time_bucket{le=\"1\"} 1",
            "pilot_debounce_time_count 1",
            "pilot_push_triggers{type=\"endpoint\"} 2",
            "pilot_push_triggers{type=\"config\"} 0",
            "pilot_services 0",
            "pilot_virt_services 0",
            "# TYPE pilot_proxy_convergence_time histogram",
            "pilot_proxy_convergence_time_count 0",
            "rudder_config_errors 3",
            "rudder_config_builds_total 1",
            "# TYPE rudder_xds_unidentified_streams gauge",
            "rudder_xds_unidentified_streams 1",
            "# TYPE rudder_xds_refused_total counter",
            "rudder_xds_refused_total{reason=\"message_size\"} 1",
            "rudder_xds_refused_total{reason=\"handshake_timeout\"} 0",
        ] {
            assert!(has_line(&text, line), "missing {line:?} in\n{text}");
        }
        for name in ["process_cpu_seconds_total", "process_resident_memory_bytes"] {
            assert!(sample(&text, name) >= 0.0);
        }
    }

    #[test]
    fn convergence_is_measured_from_the_change_to_the_ack() {
        let metrics = Metrics::new();
        let convergence = Convergence::default();
        let count =
            |metrics: &Metrics| sample(&metrics.render(), "pilot_proxy_convergence_time_count");
        // A change seen before the stream opened counts from the stream's start.
        let long_ago = Instant::now().checked_sub(Duration::from_secs(3600));
        convergence.sent(ResourceType::Cluster, long_ago);
        convergence.acked(ResourceType::Cluster, &metrics);
        assert_eq!(count(&metrics), 1.0);
        let sum = sample(&metrics.render(), "pilot_proxy_convergence_time_sum");
        assert!(sum < 60.0, "measured from the stream's start: {sum}");
        // Each response is measured once; a second ACK (or an ACK of nothing) adds nothing.
        convergence.acked(ResourceType::Cluster, &metrics);
        convergence.acked(ResourceType::Route, &metrics);
        assert_eq!(count(&metrics), 1.0);
        // A NACK drops it; an unknown origin is not measured.
        convergence.sent(ResourceType::Listener, Some(Instant::now()));
        convergence.rejected(ResourceType::Listener);
        convergence.acked(ResourceType::Listener, &metrics);
        convergence.sent(ResourceType::Endpoint, Some(Instant::now()));
        convergence.sent(ResourceType::Endpoint, None);
        convergence.acked(ResourceType::Endpoint, &metrics);
        assert_eq!(count(&metrics), 1.0);
    }

    fn entry(object: Result<crate::inputs::Object, FieldError>) -> Entry {
        Entry {
            origin: Origin::Kubernetes,
            object,
        }
    }

    fn refused(message: &str) -> Result<crate::inputs::Object, FieldError> {
        Err(FieldError {
            field: "spec".into(),
            message: message.into(),
        })
    }

    #[test]
    fn triggers_count_changed_objects_by_kind() {
        let key = |kind, name: &str| ObjectKey::new(kind, "default", name);
        let mut before = Inputs::default();
        before.insert(key(Kind::VirtualService, "kept"), entry(refused("a")));
        before.insert(key(Kind::VirtualService, "changed"), entry(refused("a")));
        before.insert(key(Kind::EndpointSlice, "gone"), entry(refused("a")));
        let mut after = Inputs::default();
        after.insert(key(Kind::VirtualService, "kept"), entry(refused("a")));
        after.insert(key(Kind::VirtualService, "changed"), entry(refused("b")));
        after.insert(key(Kind::Service, "new"), entry(refused("a")));
        after
            .problems
            .push(crate::diagnostic::ConfigError::new("x"));
        let triggers = PushTrigger::between(&before, &after);
        assert_eq!(
            triggers,
            BTreeMap::from([
                (PushTrigger::Endpoint, 1),
                (PushTrigger::Config, 2),
                (PushTrigger::Service, 1),
            ])
        );
        assert!(PushTrigger::between(&after, &after).is_empty());

        let metrics = Metrics::new();
        metrics.record_triggers(&before, &after);
        let text = metrics.render();
        assert!(
            has_line(&text, "pilot_push_triggers{type=\"config\"} 2"),
            "{text}"
        );
    }
}
