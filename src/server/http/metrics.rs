//! `GET /metrics`: the Prometheus text exposition of the server's counters.
//!
//! Encoded by the `prometheus-client` crate; the values are read from the hub at each
//! scrape (a [`Collector`]), the same atomics the `--stats-interval` line reports, so the
//! two always agree.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::server::hub::Hub;

/// The content type of what [`render`] returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The hub's figures, read at each scrape.
#[derive(Debug)]
struct Figures(Arc<Hub>);

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let hub = &self.0;
        let stats = &hub.stats;
        let (waiting, open) = hub.pipes.count();
        let counter = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let counters = [
            (
                "duet_connections_accepted",
                "connections accepted",
                counter(&stats.accepted),
            ),
            (
                "duet_refused",
                "clients refused or cut off by a limit or access rule",
                counter(&stats.refused),
            ),
            (
                "duet_pipes_closed",
                "pipes that have closed",
                counter(&stats.pipes_closed),
            ),
            (
                "duet_piped_bytes",
                "bytes carried by pipes that have closed, both ways",
                counter(&stats.piped_bytes),
            ),
            (
                "duet_auth_failed",
                "failed /auth (and Bearer) attempts",
                counter(&stats.auth_failed),
            ),
            (
                "duet_auth_lockouts",
                "addresses locked out after failed /auth",
                counter(&stats.auth_lockouts),
            ),
            (
                "duet_http_requests",
                "HTTP requests answered",
                counter(&stats.http_requests),
            ),
        ];
        for (name, help, value) in counters {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        let started = hub
            .started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let gauges = [
            (
                "duet_connections",
                "connections open now",
                hub.conns() as f64,
            ),
            ("duet_rooms", "rooms open now", hub.rooms.count() as f64),
            (
                "duet_pipes_waiting",
                "pipes waiting for their peer now",
                waiting as f64,
            ),
            ("duet_pipes_open", "pipes open now", open as f64),
            (
                "process_start_time_seconds",
                "when the server started (Unix time)",
                started,
            ),
        ];
        for (name, help, value) in gauges {
            let metric = ConstGauge::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        Ok(())
    }
}

/// The exposition, as text.
pub fn render(hub: &Arc<Hub>) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register(
        "duet_build",
        "the duet that answers",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    registry.register_collector(Box::new(Figures(hub.clone())));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}
