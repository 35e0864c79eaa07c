//! `GET /metrics`: the Prometheus text exposition of the server's counters.
//!
//! Encoded by the `prometheus-client` crate; the values are read from the hub at each
//! scrape (a [`Collector`]), the same atomics the `--stats-interval` line reports, so the
//! two always agree.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::server::hub::{Hub, Refusal, TRANSIT_MOODS};
use crate::server::printer::ClusterStats;

/// The content type of what [`render`] returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The hub's figures, read at each scrape.
#[derive(Debug)]
struct Figures(Arc<Hub>);

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let hub = &self.0;
        for (name, help, value) in counters(hub) {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        labeled_counters(hub, &mut encoder)?;
        #[cfg(feature = "tls")]
        certificate(hub, &mut encoder)?;
        process(hub, &mut encoder)?;
        gauges(hub, &mut encoder)
    }
}

/// The counters that are one figure each: (name, help, value).
fn counters(hub: &Hub) -> [(&'static str, &'static str, u64); 10] {
    let stats = &hub.stats;
    let counter = |a: &AtomicU64| a.load(Ordering::Relaxed);
    [
        (
            "duet_connections_accepted",
            "connections accepted",
            counter(&stats.accepted),
        ),
        (
            "duet_accept_errors",
            "failed accepts (each retried after a pause)",
            counter(&stats.accept_errors),
        ),
        (
            "duet_tls_handshakes",
            "TLS handshakes completed",
            counter(&stats.tls_handshakes),
        ),
        (
            "duet_tls_failures",
            "TLS handshakes that failed",
            counter(&stats.tls_failures),
        ),
        (
            "duet_pipes_closed",
            "pipes that have closed",
            counter(&stats.pipes_closed),
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
        (
            "duet_lines_logged",
            "client lines logged (IP:PORT -> MSG)",
            hub.log.lines_logged(),
        ),
        (
            "duet_log_dropped",
            "log records dropped because stdout did not keep up",
            hub.log.dropped(),
        ),
    ]
}

/// The counters with a label: refusals by reason, piped bytes by end, transits by mood.
fn labeled_counters(hub: &Hub, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let stats = &hub.stats;
    let counter = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let refused = Refusal::ALL.map(|why| (why.label(), stats.refused_for(why)));
    let help = "clients refused or cut off by a limit or access rule, by reason";
    labeled(encoder, "duet_refused", help, "reason", &refused)?;
    let piped = [
        ("first", counter(&stats.piped_from_first)),
        ("second", counter(&stats.piped_from_second)),
    ];
    let help = "bytes carried by pipes that have closed, from the end that came first or second";
    labeled(encoder, "duet_piped_bytes", help, "from", &piped)?;
    let transits = TRANSIT_MOODS.map(|mood| (mood.as_str(), stats.transits_with(mood)));
    let help =
        "magic-wormhole transit ends done, by the reference relay's mood (errored: any other)";
    labeled(encoder, "duet_transit", help, "mood", &transits)?;
    let bytes = ConstCounter::new(counter(&stats.transit_bytes));
    let help = "bytes relayed between transit ends, both ways";
    let kind = MetricType::Counter;
    bytes.encode(encoder.encode_descriptor("duet_transit_bytes", help, None, kind)?)
}

/// A counter with one label, one sample per value.
fn labeled(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    samples: &[(&str, u64)],
) -> Result<(), fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in samples {
        ConstCounter::new(*count).encode(family.encode_family(&[(label, *value)])?)?;
    }
    Ok(())
}

/// Descriptors open now (the entries of /proc/self/fd; 0 where there is no /proc).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |entries| entries.count())
}

/// The soft limit on descriptors.
fn max_fds() -> u64 {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.current.unwrap_or(u64::MAX)
}

/// The process: when it started, and its descriptors against their limit.
fn process(hub: &Hub, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let started = hub
        .started
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let gauges = [
        (
            "process_start_time_seconds",
            "when the server started (Unix time)",
            started,
        ),
        (
            "process_open_fds",
            "descriptors open now",
            open_fds() as f64,
        ),
        (
            "process_max_fds",
            "descriptors the process may open (RLIMIT_NOFILE)",
            max_fds() as f64,
        ),
    ];
    for (name, help, value) in gauges {
        let metric = ConstGauge::new(value);
        metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
    }
    Ok(())
}

/// With TLS: when the certificate in use expires, for the alert in contrib/alerts.yml;
/// with `--acme`, how getting certificates goes.
#[cfg(feature = "tls")]
fn certificate(hub: &Hub, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let Some(tls) = hub.config.tls.as_ref() else {
        return Ok(());
    };
    if let Some(expires) = tls.current.expires() {
        let metric = ConstGauge::new(expires as f64);
        let name = "duet_tls_certificate_expiry_timestamp_seconds";
        let help = "when the TLS certificate in use expires (Unix time)";
        metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
    }
    let Some(acme) = tls.acme.as_ref() else {
        return Ok(());
    };
    let counters = [
        (
            "duet_acme_certificates_obtained",
            "certificates obtained from the ACME CA",
            &acme.obtained,
        ),
        (
            "duet_acme_failures",
            "ACME orders (or saves to --acme-cache) that failed; the log has the CA's words",
            &acme.failures,
        ),
    ];
    for (name, help, value) in counters {
        let metric = ConstCounter::new(value.load(Ordering::Relaxed));
        metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
    }
    let metric = ConstGauge::new(acme.deployed_at.load(Ordering::Relaxed) as f64);
    let name = "duet_acme_certificate_deployed_timestamp_seconds";
    let help = "when the certificate in use was obtained or read back from --acme-cache (Unix time; 0: none yet)";
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// What is open now, and when the server started.
fn gauges(hub: &Hub, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
    let (waiting, open) = hub.pipes.count();
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
            "duet_wormhole_nameplates",
            "magic-wormhole nameplates in use now",
            hub.wormhole.count().0 as f64,
        ),
        (
            "duet_wormhole_mailboxes",
            "magic-wormhole mailboxes open now",
            hub.wormhole.count().1 as f64,
        ),
        (
            "duet_wormhole_message_bytes",
            "bytes of messages the magic-wormhole mailboxes keep now (see --wormhole-max-bytes)",
            hub.wormhole.bytes() as f64,
        ),
        (
            "duet_transit_waiting",
            "transit ends waiting for their partner now",
            hub.transits.count() as f64,
        ),
        (
            "duet_executor_threads",
            "threads running the executor now (at most --threads)",
            hub.workers.running() as f64,
        ),
        (
            "duet_max_connections",
            "connections the server takes at most (--max-conns)",
            hub.config.limits.max_conns as f64,
        ),
    ];
    for (name, help, value) in gauges {
        let metric = ConstGauge::new(value);
        metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
    }
    if let Some(cluster) = &hub.cluster {
        encode_cluster(cluster, encoder)?;
    }
    Ok(())
}

/// With `--cluster`: whether Redis is reachable, and the cluster-wide figures.
fn encode_cluster(
    cluster: &crate::server::cluster::Cluster,
    encoder: &mut DescriptorEncoder,
) -> Result<(), fmt::Error> {
    let ClusterStats {
        nodes,
        connections: conns,
    } = cluster.figures();
    let gauges = [
        (
            "duet_cluster_up",
            "1 while this node reaches Redis",
            f64::from(u8::from(cluster.is_up())),
        ),
        (
            "duet_cluster_nodes",
            "nodes in the cluster (at this node's last heartbeat)",
            nodes as f64,
        ),
        (
            "duet_cluster_connections",
            "connections on every node of the cluster (at the last heartbeat)",
            conns as f64,
        ),
    ];
    for (name, help, value) in gauges {
        let metric = ConstGauge::new(value);
        metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
    }
    let lost = ConstCounter::new(cluster.lost.load(Ordering::Relaxed));
    let help = "nodes this node found lost (their members were taken out of rooms)";
    lost.encode(encoder.encode_descriptor(
        "duet_cluster_nodes_lost",
        help,
        None,
        lost.metric_type(),
    )?)
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
