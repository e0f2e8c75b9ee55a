//! Tests of the metrics: names and labels as istiod renders them, and what is counted when.

use super::*;
use crate::diagnostic::Origin;
use crate::inputs::{Entry, FieldError, Kind, ObjectKey};

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
    metrics.count_build();
    metrics.record_model(&Model::default(), 3);
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
    let count = |metrics: &Metrics| sample(&metrics.render(), "pilot_proxy_convergence_time_count");
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
    let triggers = PushTrigger::of_changes(&Changes::between(&before, &after));
    assert_eq!(
        triggers,
        BTreeMap::from([
            (PushTrigger::Endpoint, 1),
            (PushTrigger::Config, 2),
            (PushTrigger::Service, 1),
        ])
    );
    assert!(PushTrigger::of_changes(&Changes::between(&after, &after)).is_empty());

    let metrics = Metrics::new();
    metrics.record_triggers(&Changes::between(&before, &after));
    let text = metrics.render();
    assert!(
        has_line(&text, "pilot_push_triggers{type=\"config\"} 2"),
        "{text}"
    );
}
