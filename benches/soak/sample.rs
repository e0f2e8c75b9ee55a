//! What the soak samples of rudder every interval: memory and open descriptors from /proc, and
//! connected proxies, model builds and pushes from its admin `/metrics`; and how samples are
//! printed (one Markdown table row each, and a summary). It reads and formats; it does not
//! decide what counts as flat.

use std::net::SocketAddr;
use std::time::Duration;

use super::server::ServerProcess;

/// What rudder's `/metrics` said, when it answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scraped {
    /// `pilot_xds`: open ADS streams.
    pub connected: f64,
    /// `rudder_config_builds_total`: debounced changes taken in, whichever way.
    pub builds: f64,
    /// `rudder_config_endpoint_updates_total`: those that changed only endpoints and updated
    /// the published model instead of building it in full.
    pub endpoint_updates: f64,
    /// `pilot_xds_pushes`, every type summed.
    pub pushes: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Since the churn started.
    pub at: Duration,
    pub rss: u64,
    pub peak_rss: u64,
    pub fds: usize,
    /// Changes made to the config so far.
    pub changes: u64,
    pub scraped: Option<Scraped>,
}

pub async fn take(
    server: &ServerProcess,
    client: &reqwest::Client,
    at: Duration,
    changes: u64,
) -> Sample {
    Sample {
        at,
        rss: server.rss(),
        peak_rss: server.peak_rss(),
        fds: server.open_fds(),
        changes,
        scraped: scrape(client, server.admin).await,
    }
}

async fn scrape(client: &reqwest::Client, admin: Option<SocketAddr>) -> Option<Scraped> {
    let response = client
        .get(format!("http://{}/metrics", admin?))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let text = response.text().await.ok()?;
    Some(Scraped {
        connected: metric_sum(&text, "pilot_xds"),
        builds: metric_sum(&text, "rudder_config_builds_total"),
        endpoint_updates: metric_sum(&text, "rudder_config_endpoint_updates_total"),
        pushes: metric_sum(&text, "pilot_xds_pushes"),
    })
}

/// The sum of every series of the metric `name` (each label set), in Prometheus' text format.
fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

pub const HEADER: &str = "| minute | VmRSS (MiB) | VmHWM (MiB) | open fds | proxies (pilot_xds) | \
     changes | builds | pushes | builds / change | full builds / change | pushes / change |\n\
     | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |";

/// One table row; the per-change columns cover the interval since `previous`.
pub fn row(sample: &Sample, previous: Option<&Sample>) -> String {
    let scraped = |figure: fn(&Scraped) -> f64| {
        sample
            .scraped
            .as_ref()
            .map_or("n/a".to_string(), |scraped| {
                format!("{:.0}", figure(scraped))
            })
    };
    let per_change = |figure: fn(&Scraped) -> f64| {
        let (Some(previous), Some(now)) = (previous, sample.scraped.as_ref()) else {
            return String::new();
        };
        let Some(before) = previous.scraped.as_ref() else {
            return "n/a".to_string();
        };
        ratio(
            figure(now) - figure(before),
            sample.changes - previous.changes,
        )
    };
    format!(
        "| {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        sample.at.as_secs_f64() / 60.0,
        mib(sample.rss),
        mib(sample.peak_rss),
        sample.fds,
        scraped(|s| s.connected),
        sample.changes,
        scraped(|s| s.builds),
        scraped(|s| s.pushes),
        per_change(|s| s.builds),
        per_change(|s| s.builds - s.endpoint_updates),
        per_change(|s| s.pushes),
    )
}

pub fn ratio(amount: f64, changes: u64) -> String {
    if changes == 0 {
        "n/a".to_string()
    } else {
        format!("{:.2}", amount / changes as f64)
    }
}
