//! contrib/'s Grafana dashboard and Prometheus alerts: every metric they name is one a live
//! duet serves (a renamed metric would leave a panel blank and an alert silent), and
//! promtool accepts the rules.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;

const CONTRIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib");

/// The metric families of live duets' `/metrics`: one with TLS (its certificate's too),
/// one with `--acme` (the ACME counters; its CA, a closed port, never answers).
fn served_metrics() -> BTreeSet<String> {
    let cache = std::env::temp_dir().join(format!("duet-monitoring-acme-{}", std::process::id()));
    let acme = [
        "--acme",
        "relay.example.org",
        "--acme-directory",
        "https://127.0.0.1:9/dir",
        "--acme-cache",
        cache.to_str().unwrap(),
    ];
    let mut names = metrics_of(&Duet::start(&["--tls-self-signed"]));
    names.extend(metrics_of(&Duet::start(&acme)));
    std::fs::remove_dir_all(&cache).ok();
    names
}

/// The metric families one duet serves.
fn metrics_of(duet: &Duet) -> BTreeSet<String> {
    let text = smol::block_on(async {
        let mut client = duet.connect().await;
        client
            .send("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        client.read_to_end().await
    });
    let text = String::from_utf8(text).unwrap();
    let body = text.split_once("\r\n\r\n").expect("a response").1;
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// The metric names in a PromQL expression: duet's own and the process ones.
fn named(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("duet_") || w.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// Every expression of the dashboard and of the alerts.
fn expressions() -> Vec<String> {
    let dashboard = std::fs::read_to_string(format!("{CONTRIB}/grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    let panels = exprs.len();
    assert!(panels >= 14, "{panels} dashboard expressions");
    let alerts = std::fs::read_to_string(format!("{CONTRIB}/alerts.yml")).unwrap();
    exprs.extend(
        alerts
            .lines()
            .filter_map(|l| l.trim().strip_prefix("expr: "))
            .map(str::to_string),
    );
    assert!(
        exprs.len() >= panels + 9,
        "the alerts' expressions were found"
    );
    exprs
}

#[test]
fn the_dashboard_and_the_alerts_name_only_metrics_duet_serves() {
    let served = served_metrics();
    assert!(
        served.contains("duet_tls_certificate_expiry_timestamp_seconds"),
        "{served:?}"
    );
    let missing: Vec<String> = expressions()
        .iter()
        .flat_map(|e| named(e))
        .filter(|name| !served.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "not served: {missing:?} (served: {served:?})"
    );
}

#[test]
#[ignore = "needs promtool (make test installs Debian's prometheus)"]
fn promtool_accepts_the_alerts() {
    need("promtool");
    let out = Command::new("promtool")
        .args(["check", "rules", &format!("{CONTRIB}/alerts.yml")])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every rule in the file, none skipped.
    let alerts = std::fs::read_to_string(format!("{CONTRIB}/alerts.yml")).unwrap();
    let rules = alerts
        .lines()
        .filter(|l| l.trim().starts_with("- alert:"))
        .count();
    assert!(rules >= 10, "{rules} alerts");
    assert!(
        said.contains(&format!("SUCCESS: {rules} rules found")),
        "{said}"
    );
}
