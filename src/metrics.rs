//! rudder's Prometheus metrics: connected proxies, pushes and rejections per xDS type, and config
//! build health. Owns its own registry (no global state) and renders it in the text format; the
//! admin server exposes it. Recording only; no I/O.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::translate::ResourceType;

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    connected_proxies: IntGauge,
    pushes: IntCounterVec,
    rejects: IntCounterVec,
    config_errors: IntGauge,
    config_builds: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        // The definitions are constant and registered once into a fresh registry, so failing here
        // is a programming error, not a runtime condition.
        const VALID: &str = "metric definitions are valid and unique";
        let registry = Registry::new();
        let connected_proxies = IntGauge::new(
            "rudder_xds_connected_proxies",
            "ADS streams currently open.",
        )
        .expect(VALID);
        let pushes = IntCounterVec::new(
            Opts::new("rudder_xds_pushes_total", "xDS responses sent, by type."),
            &["type"],
        )
        .expect(VALID);
        let rejects = IntCounterVec::new(
            Opts::new(
                "rudder_xds_rejects_total",
                "xDS responses proxies rejected (NACKs), by type.",
            ),
            &["type"],
        )
        .expect(VALID);
        let config_errors = IntGauge::new(
            "rudder_config_errors",
            "Config errors in the current build.",
        )
        .expect(VALID);
        let config_builds =
            IntCounter::new("rudder_config_builds_total", "Model builds.").expect(VALID);
        registry
            .register(Box::new(connected_proxies.clone()))
            .expect(VALID);
        registry.register(Box::new(pushes.clone())).expect(VALID);
        registry.register(Box::new(rejects.clone())).expect(VALID);
        registry
            .register(Box::new(config_errors.clone()))
            .expect(VALID);
        registry
            .register(Box::new(config_builds.clone()))
            .expect(VALID);
        // Every type shows from the start, so rates and alerts work before the first push.
        for ty in ResourceType::ALL {
            pushes.with_label_values(&[ty.short_name()]);
            rejects.with_label_values(&[ty.short_name()]);
        }
        Metrics {
            registry,
            connected_proxies,
            pushes,
            rejects,
            config_errors,
            config_builds,
        }
    }

    /// Records one model build and how many config errors it has.
    pub fn record_build(&self, errors: usize) {
        self.config_builds.inc();
        self.config_errors
            .set(i64::try_from(errors).unwrap_or(i64::MAX));
    }

    pub fn proxy_connected(&self) {
        self.connected_proxies.inc();
    }

    pub fn proxy_disconnected(&self) {
        self.connected_proxies.dec();
    }

    pub fn pushed(&self, ty: ResourceType) {
        self.pushes.with_label_values(&[ty.short_name()]).inc();
    }

    pub fn rejected(&self, ty: ResourceType) {
        self.rejects.with_label_values(&[ty.short_name()]).inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric() {
        let metrics = Metrics::new();
        metrics.record_build(3);
        metrics.proxy_connected();
        metrics.pushed(ResourceType::Cluster);
        metrics.rejected(ResourceType::Route);
        let text = metrics.render();
        for line in [
            "rudder_xds_connected_proxies 1",
            "rudder_xds_pushes_total{type=\"cds\"} 1",
            "rudder_xds_pushes_total{type=\"eds\"} 0",
            "rudder_xds_rejects_total{type=\"rds\"} 1",
            "rudder_config_errors 3",
            "rudder_config_builds_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
