//! The live topology: three replicas on two "hosts", one Prometheus agent per host
//! remote-writing to VictoriaMetrics, vmalert evaluating the shipped rules against it,
//! Alertmanager delivering to the test's webhook, and beside them a plain Prometheus
//! scraping the same replicas. Every process is a `Service`, a `Prometheus`, a replica or
//! a load.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use llm_span_testkit::http;
use llm_span_testkit::process::{self, DemoServer, Load, Service, TempDir};
use llm_span_testkit::prometheus::{free_port, loopback, Api, Prometheus};
use llm_span_testkit::{shipped, tools};
use serde_json::Value;

use crate::alertmanager;
use crate::configs::{alert_rules_for_test, alertmanager_config_for_test, shipped_with};
use crate::replicas::{replica, PASSWORD};
use crate::totals::Totals;
use crate::webhook::Webhook;

/// The servers of the topology besides Prometheus.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    alertmanager: PathBuf,
    victoria_metrics: PathBuf,
    vmalert: PathBuf,
}

impl Tools {
    /// Every tool, or `None` (after a skip notice) when one is missing.
    pub(crate) fn find() -> Option<Tools> {
        if !tools::require("prometheus") {
            return None;
        }
        Some(Tools {
            alertmanager: tools::locate("prometheus-alertmanager")?,
            victoria_metrics: tools::locate("victoria-metrics")?,
            vmalert: tools::locate("vmalert")?,
        })
    }
}

/// Two "hosts": replicas 0 and 1 on host-a, replica 2 on host-b, one agent each.
const HOSTS: [(&str, &[usize]); 2] = [("host-a", &[0, 1]), ("host-b", &[2])];

pub(crate) struct Topology {
    pub(crate) replicas: Vec<DemoServer>,
    pub(crate) victoria: Service,
    pub(crate) agents: Vec<Prometheus>,
    // Kept running; the test reaches them through the webhook and the store.
    _vmalert: Service,
    _alertmanager: Service,
    prometheus: Prometheus,
    pub(crate) webhook: Webhook,
    // Last: dropped after every process that uses its files.
    _dir: TempDir,
}

impl Topology {
    pub(crate) fn start(tools: &Tools) -> Topology {
        let dir = TempDir::new("scale-out");
        let password = dir.write("llm-metrics-password", PASSWORD);
        // "slow" stays unpriced: the cost series exist for "fast" only.
        let prices = dir.write("prices.txt", "fast 0.2 0.1 0.6\n");
        let replicas: Vec<DemoServer> = (0..3)
            .map(|i| replica(40 + i, &prices, &password))
            .collect();
        let webhook = Webhook::start();
        let [vm, vmalert, alertmanager] = [free_port(), free_port(), free_port()];
        let configs = Topology::write_configs(&dir, &replicas, &password, &webhook, loopback(vm));
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let service = |name: &str, program: &Path, args: Vec<String>, port, ready_path| {
            let log = dir.join(&format!("{name}.log"));
            let mut service = Service::new(name, program, args, log, loopback(port), ready_path);
            service.start();
            service
        };
        let victoria = service(
            "victoria-metrics",
            &tools.victoria_metrics,
            vec![
                format!(
                    "-storageDataPath={}",
                    dir.join("victoria-metrics").display()
                ),
                format!("-httpListenAddr=127.0.0.1:{vm}"),
                // Queries (the rules' too) see samples older than this: 30 s by default.
                // Not less than a few seconds: an agent's batch can carry part of a scrape
                // and the next batch the rest, and a rule that sees half a histogram
                // computes nonsense (at 1 s, a run recorded a p99 of 640 s for "fast").
                "-search.latencyOffset=5s".to_owned(),
            ],
            vm,
            "/health",
        );
        let mut alertmanager = alertmanager::service(
            &tools.alertmanager,
            &configs.alertmanager,
            &dir,
            alertmanager,
        );
        alertmanager.start();
        let prometheus = Prometheus::start(&configs.prometheus, &[]);
        let agents = configs
            .agents
            .iter()
            .map(|config| Prometheus::start_agent(config, &[]))
            .collect();
        let vmalert = service(
            "vmalert",
            &tools.vmalert,
            vec![
                format!(
                    "-rule={}",
                    shipped::path("deploy/prometheus/rules/llm-recording.yml").display()
                ),
                format!("-rule={}", configs.alert_rules.display()),
                format!("-datasource.url={}", url(vm)),
                format!("-remoteWrite.url={}", url(vm)),
                format!("-remoteRead.url={}", url(vm)),
                format!("-notifier.url={}", url(alertmanager.addr.port())),
                "-evaluationInterval=1s".to_owned(),
                "-remoteWrite.flushInterval=1s".to_owned(),
                format!("-httpListenAddr=127.0.0.1:{vmalert}"),
            ],
            vmalert,
            "/health",
        );
        Topology {
            replicas,
            victoria,
            agents,
            _vmalert: vmalert,
            _alertmanager: alertmanager,
            prometheus,
            webhook,
            _dir: dir,
        }
    }

    /// The test's configs: the shipped ones with addresses, paths and intervals
    /// substituted, each substitution matching exactly once.
    fn write_configs(
        dir: &TempDir,
        replicas: &[DemoServer],
        password: &Path,
        webhook: &Webhook,
        victoria: SocketAddr,
    ) -> Configs {
        let password = password.to_str().expect("path");
        let targets = |indices: &[usize]| -> String {
            let quoted: Vec<String> = indices
                .iter()
                .map(|i| format!("\"{}\"", replicas[*i].metrics))
                .collect();
            format!("targets: [{}]", quoted.join(", "))
        };
        let password_file = ("/etc/prometheus/secrets/llm-metrics-password", password);
        let agents = HOSTS
            .iter()
            .map(|(host, indices)| {
                shipped_with(
                    "deploy/prometheus/agent.yml",
                    &[
                        ("scrape_interval: 15s", "scrape_interval: 1s"),
                        ("host: inference-1", &format!("host: {host}")),
                        (
                            "replacement: inference-1:$1",
                            &format!("replacement: {host}:$1"),
                        ),
                        password_file,
                        (
                            r#"targets: ["127.0.0.1:9000", "127.0.0.1:9001"]"#,
                            &targets(indices),
                        ),
                        (
                            "http://victoria-metrics.internal:8428",
                            &format!("http://{victoria}"),
                        ),
                    ],
                )
            })
            .collect();
        let alert_rules = dir.write("llm-alerts.yml", &alert_rules_for_test("5s"));
        let recording_rules = shipped::path("deploy/prometheus/rules/llm-recording.yml");
        let prometheus = shipped_with(
            "deploy/prometheus/prometheus.yml",
            &[
                ("scrape_interval: 15s", "scrape_interval: 1s"),
                ("evaluation_interval: 15s", "evaluation_interval: 1s"),
                (
                    "  - rules/llm-recording.yml\n",
                    &format!("  - {}\n", recording_rules.display()),
                ),
                (
                    "  - rules/llm-alerts.yml\n",
                    &format!("  - {}\n", alert_rules.display()),
                ),
                password_file,
                (
                    r#"targets: ["inference-1.internal:9000", "inference-2.internal:9000"]"#,
                    &targets(&[0, 1, 2]),
                ),
            ],
        );
        let alertmanager = dir.write(
            "alertmanager.yml",
            &alertmanager_config_for_test(webhook.addr),
        );
        Configs {
            agents,
            alert_rules,
            prometheus,
            alertmanager,
        }
    }

    pub(crate) fn central(&self) -> Api {
        Api::new("victoria-metrics", self.victoria.addr)
    }

    pub(crate) fn local(&self) -> Api {
        self.prometheus.api().clone()
    }

    /// The load generator against every replica at once: `spec` and `extra` flags, with
    /// the seed made distinct per replica (`seed * 10 + i`).
    pub(crate) fn load_all(&self, totals: &mut Totals, spec: Load, extra: &[&str]) {
        let summaries: Vec<Value> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .replicas
                .iter()
                .enumerate()
                .map(|(i, server)| {
                    let spec = Load {
                        seed: spec.seed * 10 + i as u64,
                        ..spec
                    };
                    s.spawn(move || process::load(server, spec, extra))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("load generator thread"))
                .collect()
        });
        for summary in &summaries {
            totals.add(summary);
        }
    }

    /// Changes a model's per-token times on every replica (the demo's `--admin`).
    pub(crate) fn set_speed(&self, model: &str, prefill_ms: f64, decode_ms: f64) {
        for server in &self.replicas {
            let body = serde_json::json!({
                "prefill_ms_per_token": prefill_ms,
                "decode_ms_per_token": decode_ms,
            });
            let response = http::request(
                server.api,
                "PUT",
                &format!("/admin/models/{model}"),
                &[("Content-Type", "application/json")],
                Some(&body.to_string()),
            );
            assert_eq!(response.status, 200, "{}", response.body);
        }
    }
}

/// The test's configs: of the agents and the plain Prometheus as YAML, of the alerting
/// rules and Alertmanager as files.
struct Configs {
    agents: Vec<String>,
    alert_rules: PathBuf,
    prometheus: String,
    alertmanager: PathBuf,
}
