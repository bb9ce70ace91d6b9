//! Alertmanager as the topology runs it, and fed by hand: it routes, groups and inhibits
//! as `deploy/alertmanager/alertmanager.yml` says.

use std::path::Path;
use std::time::Duration;

use llm_span_testkit::http;
use llm_span_testkit::process::{Service, TempDir};
use llm_span_testkit::prometheus::{encode, free_port, loopback, Api};
use llm_span_testkit::tools;
use serde_json::Value;

use crate::configs::alertmanager_config_for_test;
use crate::webhook::{Notification, Webhook};

/// Alertmanager with `config` on `port`, its data and log in `dir`; not started yet.
pub(crate) fn service(program: &Path, config: &Path, dir: &TempDir, port: u16) -> Service {
    let args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.path={}", dir.join("alertmanager").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        // No gossip port: a single Alertmanager, nothing listening beyond loopback.
        "--cluster.listen-address=".to_owned(),
    ];
    let log = dir.join("alertmanager.log");
    Service::new(
        "alertmanager",
        program,
        args,
        log,
        loopback(port),
        "/-/ready",
    )
}

/// Alertmanager, fed by hand: pages and warnings reach their receivers, a down instance
/// pages once with all its models, and a model's HighTTFT is held back while an instance
/// that served it is down, while another model's is not.
#[test]
fn alertmanager_routes_groups_and_inhibits() {
    let Some(program) = tools::locate("prometheus-alertmanager") else {
        return;
    };
    let dir = TempDir::new("alertmanager");
    let webhook = Webhook::start();
    let config = dir.write(
        "alertmanager.yml",
        &alertmanager_config_for_test(webhook.addr),
    );
    let mut alertmanager = service(&program, &config, &dir, free_port());
    alertmanager.start();
    let addr = alertmanager.addr;

    let alert = |labels: &[(&str, &str)]| {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        serde_json::json!({"labels": labels, "annotations": {"summary": "test"}})
    };
    let down = |model| {
        alert(&[
            ("alertname", "LlmMetricsDown"),
            ("severity", "page"),
            ("job", "llm"),
            ("instance", "host-a:9000"),
            ("model", model),
        ])
    };
    let ttft = |model| {
        alert(&[
            ("alertname", "HighTTFT"),
            ("severity", "page"),
            ("model", model),
        ])
    };
    let alerts = Value::from(vec![
        down("slow"),
        down("other"),
        ttft("slow"),
        ttft("fast"),
        alert(&[
            ("alertname", "LowCacheHitRate"),
            ("severity", "warning"),
            ("model", "fast"),
        ]),
    ]);
    let response = http::request(
        addr,
        "POST",
        "/api/v2/alerts",
        &[("Content-Type", "application/json")],
        Some(&alerts.to_string()),
    );
    assert_eq!(response.status, 200, "{}", response.body);

    let expected = |n: &Notification, path: &str, alerts: &[(&str, &str)]| {
        let mut got: Vec<(String, String)> =
            n.alerts().into_iter().map(|(a, m, _)| (a, m)).collect();
        got.sort();
        let mut want: Vec<(String, String)> = alerts
            .iter()
            .map(|(a, m)| ((*a).to_owned(), (*m).to_owned()))
            .collect();
        want.sort();
        n.path == path && got == want
    };
    let timeout = Duration::from_secs(15);
    let page_down = webhook.wait(timeout, |n| {
        expected(
            n,
            "/pager",
            &[("LlmMetricsDown", "slow"), ("LlmMetricsDown", "other")],
        )
    });
    let page_ttft = webhook.wait(timeout, |n| expected(n, "/pager", &[("HighTTFT", "fast")]));
    let ticket = webhook.wait(timeout, |n| {
        expected(n, "/tickets", &[("LowCacheHitRate", "fast")])
    });
    let received = webhook.received();
    assert!(
        page_down.is_some() && page_ttft.is_some() && ticket.is_some(),
        "{received:#?}"
    );
    assert_eq!(
        page_down.expect("page")["groupLabels"]["instance"],
        "host-a:9000"
    );
    // Alertmanager marks the held-back alert, and never sent it.
    let path = format!(
        "/api/v2/alerts?filter={}",
        encode(r#"alertname="HighTTFT""#)
    );
    let stored = Api::new("alertmanager", addr).get(&path);
    let inhibited: Vec<&str> = stored
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| {
            a["status"]["inhibitedBy"]
                .as_array()
                .is_some_and(|by| !by.is_empty())
        })
        .filter_map(|a| a["labels"]["model"].as_str())
        .collect();
    assert_eq!(inhibited, ["slow"], "{stored}");
    std::thread::sleep(Duration::from_secs(2));
    let received = webhook.received();
    assert_eq!(received.len(), 3, "{received:#?}");
}
