//! The scale-out topology of `deploy/`, proven live on one machine: three replicas of the
//! demo server on two "hosts", one Prometheus agent per host remote-writing to
//! VictoriaMetrics, vmalert evaluating the shipped rules against it and Alertmanager
//! delivering to a webhook receiver inside this test; beside them a plain Prometheus
//! scraping the same replicas, to compare with. Also: every config of the topology
//! passes its checker, the Kubernetes `PrometheusRule` is exactly what
//! `scripts/gen-prometheusrule.sh` makes of the rule files, and Alertmanager routes,
//! groups and inhibits as `deploy/alertmanager/alertmanager.yml` says.
//!
//! Needs Debian's `prometheus`, `prometheus-alertmanager` and `victoria-metrics`. A test
//! whose tool is missing says so on stderr and passes, unless `LLM_SPAN_REQUIRE_TOOLS=1`
//! (as in `.ci/run`): then it fails naming the package (`llm_span_testkit::tools`).
//!
//! The running configs are the shipped files with only addresses, file paths, intervals
//! and one `for:` duration substituted, each substitution required to match exactly once
//! (see `Topology::write_configs`); the rule expressions are the shipped ones.
//!
//! Every process is started here and stopped by PID when its handle drops; everything
//! listens on 127.0.0.1, on ports picked by binding port 0.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use llm_span_testkit::process::{self, unix_time, wait_for, DemoServer, Load, Service, TempDir};
use llm_span_testkit::prometheus::{encode, free_port, loopback, Api, Prometheus};
use llm_span_testkit::{http, prom, promtool, shipped, tools};
use serde_json::Value;

/// `text` with `from` replaced by `to`; `from` must occur exactly once, so that a
/// change to a shipped file that a test no longer covers fails here.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} should occur exactly once in:\n{text}"
    );
    text.replacen(from, to, 1)
}

/// The shipped file at `path` with each `(from, to)` of `substitutions` made by
/// [`replace_once`], in order.
fn shipped_with(path: &str, substitutions: &[(&str, &str)]) -> String {
    substitutions
        .iter()
        .fold(shipped::read(path), |text, (from, to)| {
            replace_once(&text, from, to)
        })
}

// ---------------------------------------------------------------------------------------
// Tools and processes: every process of this file is a `Service`, a `Prometheus`, a
// `replica` or a `load`.

/// The servers of the topology besides Prometheus.
#[derive(Debug, Clone)]
struct Tools {
    alertmanager: PathBuf,
    victoria_metrics: PathBuf,
    vmalert: PathBuf,
}

impl Tools {
    /// Every tool, or `None` (after a skip notice) when one is missing.
    fn find() -> Option<Tools> {
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

/// A demo replica with two models, basic auth on /metrics and the admin endpoint.
fn replica(seed: u64, prices: &Path, password_file: &Path) -> DemoServer {
    let seed = seed.to_string();
    DemoServer::start_with_env(
        &[
            "--model",
            "fast:0.05:1:8",
            "--model",
            "slow:0.05:1:8",
            "--error-rate",
            "0.02",
            "--prices",
            prices.to_str().expect("path"),
            "--seed",
            &seed,
            "--admin",
        ],
        &[
            ("LLM_METRICS_BASIC_AUTH_USER", "prometheus"),
            (
                "LLM_METRICS_BASIC_AUTH_PASSWORD_FILE",
                password_file.to_str().expect("path"),
            ),
        ],
    )
}

/// The load of this test: `requests` from 8 clients, seeded with `seed`.
///
/// A tenth of the streaming clients walk away mid-stream (`abort_share: 0.1`): the demo
/// counts a streamed token once the response body took it, so its counters equal what
/// those clients received, and the store's must too.
fn load(seed: u64, requests: u64) -> Load {
    Load {
        requests,
        concurrency: 8,
        seed,
        abort_share: 0.1,
    }
}

// ---------------------------------------------------------------------------------------
// Small pieces: the webhook receiver.

/// One notification the webhook received.
#[derive(Debug, Clone)]
struct Notification {
    path: String,
    body: Value,
}

impl Notification {
    /// `(alertname, model, status)` of every alert in it.
    fn alerts(&self) -> Vec<(String, String, String)> {
        let field =
            |alert: &Value, name: &str| alert["labels"][name].as_str().unwrap_or("").to_owned();
        self.body["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    field(a, "alertname"),
                    field(a, "model"),
                    a["status"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }
}

impl std::ops::Index<&str> for Notification {
    type Output = Value;

    fn index(&self, key: &str) -> &Value {
        &self.body[key]
    }
}

/// A webhook receiver on 127.0.0.1: records every request's path and JSON body and
/// answers 200. Its thread stops when it drops.
struct Webhook {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Notification>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Webhook {
    fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("webhook port");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("webhook address");
        let received: Arc<Mutex<Vec<Notification>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Some(notification) = Webhook::serve(stream) {
                                received.lock().expect("webhook log").push(notification);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        Webhook {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// Reads one request, answers 200 and closes the connection.
    fn serve(mut stream: TcpStream) -> Option<Notification> {
        stream.set_nonblocking(false).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut data = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
            data.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while data.len() < head_end + length {
            let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
            data.extend_from_slice(&chunk[..n]);
        }
        let _ =
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        let body = serde_json::from_slice(&data[head_end..head_end + length]).ok()?;
        Some(Notification { path, body })
    }

    fn received(&self) -> Vec<Notification> {
        self.received.lock().expect("webhook log").clone()
    }

    /// Waits up to `timeout` for a notification that `check` accepts.
    fn wait(
        &self,
        timeout: Duration,
        check: impl Fn(&Notification) -> bool,
    ) -> Option<Notification> {
        wait_for(timeout, || self.received().into_iter().find(|n| check(n)))
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Configs derived from the shipped files.

/// The shipped alert rules with HighTTFT's `for: 2m` shortened to `for_`: the only
/// difference, checked line by line. The other alerts keep their shipped `for:` (two
/// minutes or more, longer than this test), so none of them can fire here.
fn alert_rules_for_test(for_: &str) -> String {
    let rules = shipped::read("deploy/prometheus/rules/llm-alerts.yml");
    let start = rules.find("- alert: HighTTFT").expect("HighTTFT rule");
    let end = rules[start + 1..]
        .find("- alert:")
        .map_or(rules.len(), |i| start + 1 + i);
    let block = replace_once(&rules[start..end], "for: 2m", &format!("for: {for_}"));
    let copy = format!("{}{block}{}", &rules[..start], &rules[end..]);
    let changed: Vec<(&str, &str)> = rules
        .lines()
        .zip(copy.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(
        changed[0].1.trim_start().starts_with("for: "),
        "{changed:?}"
    );
    copy
}

/// The `expr:` of a shipped alert, as written.
fn alert_expr(alert: &str) -> String {
    let rules = shipped::read("deploy/prometheus/rules/llm-alerts.yml");
    let start = rules
        .find(&format!("- alert: {alert}\n"))
        .unwrap_or_else(|| panic!("no alert {alert}"));
    let mut lines = rules[start..]
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("expr:"));
    let first = lines.next().expect("expr:");
    let indent = first.len() - first.trim_start().len();
    let inline = first.trim_start().trim_start_matches("expr:").trim();
    if inline != "|" {
        return inline.to_owned();
    }
    lines
        .take_while(|l| l.len() - l.trim_start().len() > indent)
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The shipped Alertmanager config with the test's webhook and short group timers.
fn alertmanager_config_for_test(webhook: SocketAddr) -> String {
    shipped_with(
        "deploy/alertmanager/alertmanager.yml",
        &[
            ("group_wait: 30s", "group_wait: 1s"),
            ("group_interval: 5m", "group_interval: 1s"),
            (
                "http://pager-bridge.internal:9095/alerts",
                &format!("http://{webhook}/pager"),
            ),
            (
                "http://ticket-bridge.internal:9096/alerts",
                &format!("http://{webhook}/tickets"),
            ),
        ],
    )
}

/// Alertmanager with `config` on `port`, its data and log in `dir`; not started yet.
fn alertmanager(program: &Path, config: &Path, dir: &TempDir, port: u16) -> Service {
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

// ---------------------------------------------------------------------------------------
// Checks that need no running server.

/// Runs `tool` with `args` in `dir` and asserts that it exits 0; `None` when the test is
/// to skip (see `tools::run`).
fn run_ok(tool: &str, args: &[&str], dir: &Path) -> Option<String> {
    let outcome = tools::run(tool, Some(dir), args, None)?;
    outcome.assert_success();
    Some(outcome.output())
}

/// The scale-out configs pass their checkers. (`prometheus.yml` and the rule files, with
/// their unit tests, are checked by tests/prometheus_end_to_end.rs.)
#[test]
fn scale_out_configs_pass_their_checkers() {
    if !(tools::require("promtool") && tools::require("amtool") && tools::require("vmalert")) {
        return;
    }
    let deploy = shipped::path("deploy");
    promtool::check_agent_config(&deploy.join("prometheus"), "agent.yml")
        .expect("promtool is installed")
        .assert_success();
    // The same rule files parse as MetricsQL (vmalert exits non-zero if not).
    run_ok(
        "vmalert",
        &[
            "-dryRun",
            "-rule=prometheus/rules/llm-recording.yml",
            "-rule=prometheus/rules/llm-alerts.yml",
        ],
        &deploy,
    );

    let alertmanager_dir = deploy.join("alertmanager");
    run_ok(
        "amtool",
        &["check-config", "alertmanager.yml"],
        &alertmanager_dir,
    );
    // The routing tree: pages to the pager, warnings (and anything unknown) to tickets.
    for (receiver, labels) in [
        (
            "llm-pager",
            &["severity=page", "alertname=HighTTFT", "model=m"][..],
        ),
        (
            "llm-pager",
            &["severity=page", "alertname=LlmMetricsDown", "instance=i"],
        ),
        (
            "llm-tickets",
            &["severity=warning", "alertname=LowCacheHitRate", "model=m"],
        ),
        ("llm-tickets", &["alertname=Unknown"]),
    ] {
        let verify = format!("--verify.receivers={receiver}");
        let mut args = vec![
            "config",
            "routes",
            "test",
            "--config.file=alertmanager.yml",
            &verify,
        ];
        args.extend_from_slice(labels);
        run_ok("amtool", &args, &alertmanager_dir);
    }

    // The test's own copies are still valid configs.
    let dir = TempDir::new("scale-out-checks");
    dir.write(
        "alertmanager.yml",
        &alertmanager_config_for_test(loopback(9)),
    );
    run_ok("amtool", &["check-config", "alertmanager.yml"], dir.path());
    dir.write("llm-alerts.yml", &alert_rules_for_test("5s"));
    promtool::check_rules(dir.path(), &["llm-alerts.yml"])
        .expect("promtool is installed")
        .assert_success();
}

/// The `PrometheusRule` is what the generator makes of the rule files today, and its
/// groups, taken back out, pass the same promtool unit tests as the shipped files.
#[test]
fn prometheus_rule_is_generated_from_the_rule_files() {
    let dir = TempDir::new("prometheusrule");
    let fresh = dir.join("prometheusrule.yaml");
    run_ok(
        "bash",
        &[
            "scripts/gen-prometheusrule.sh",
            fresh.to_str().expect("path"),
        ],
        shipped::root(),
    );
    let committed = shipped::read("deploy/kubernetes/prometheusrule.yaml");
    assert!(
        std::fs::read_to_string(&fresh).expect("generated") == committed,
        "deploy/kubernetes/prometheusrule.yaml is stale: run scripts/gen-prometheusrule.sh"
    );
    for rules in ["llm-recording.yml", "llm-alerts.yml"] {
        let text = shipped::read(&format!("deploy/prometheus/rules/{rules}"));
        for line in text
            .lines()
            .filter(|l| l.contains("- record:") || l.contains("- alert:"))
        {
            assert!(
                committed.contains(&format!("  {line}\n")),
                "{rules}: {line:?} is not in the PrometheusRule"
            );
        }
    }

    // spec.groups, two spaces shallower, is a Prometheus rule file again.
    let spec = committed
        .split_once("\nspec:\n")
        .expect("spec:")
        .1
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let extracted = dir.write("extracted.yml", &spec);
    let tests = shipped::read("deploy/prometheus/tests/llm-alerts.test.yml");
    let tests = replace_once(
        &tests,
        "  - ../rules/llm-recording.yml\n  - ../rules/llm-alerts.yml\n",
        &format!("  - {}\n", extracted.display()),
    );
    dir.write("llm-alerts.test.yml", &tests);
    let Some(outcome) = promtool::test_rules(dir.path(), &["llm-alerts.test.yml"]) else {
        return;
    };
    outcome.assert_success();
    assert!(outcome.output().contains("SUCCESS"), "{}", outcome.output());
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
    let mut alertmanager = alertmanager(&program, &config, &dir, free_port());
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

#[test]
fn admin_endpoint_is_off_by_default() {
    let put = |server: &DemoServer, path: &str, body: &str| {
        http::request(server.api, "PUT", path, &[], Some(body))
    };
    let server = DemoServer::start(&["--model", "m:0:0:1"]);
    assert_eq!(put(&server, "/admin/models/m", "{}").status, 404);
    let server = DemoServer::start(&["--model", "m:0:0:1", "--admin"]);
    let response = put(
        &server,
        "/admin/models/m",
        r#"{"prefill_ms_per_token": 30}"#,
    );
    assert_eq!(response.status, 200, "{}", response.body);
    let speed: Value = serde_json::from_str(&response.body).expect("JSON");
    assert_eq!(speed["prefill_ms_per_token"], 30.0);
    assert_eq!(speed["decode_ms_per_token"], 0.0);
    assert_eq!(put(&server, "/admin/models/nope", "{}").status, 404);
    let response = put(&server, "/admin/models/m", r#"{"decode_ms_per_token": -1}"#);
    assert_eq!(response.status, 400);
}

// ---------------------------------------------------------------------------------------
// The live topology.

/// Two "hosts": replicas 0 and 1 on host-a, replica 2 on host-b, one agent each.
const HOSTS: [(&str, &[usize]); 2] = [("host-a", &[0, 1]), ("host-b", &[2])];

struct Topology {
    replicas: Vec<DemoServer>,
    victoria: Service,
    agents: Vec<Prometheus>,
    // Kept running; the test reaches them through the webhook and the store.
    _vmalert: Service,
    _alertmanager: Service,
    prometheus: Prometheus,
    webhook: Webhook,
    // Last: dropped after every process that uses its files.
    _dir: TempDir,
}

impl Topology {
    fn start(tools: &Tools) -> Topology {
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
        let mut alertmanager = self::alertmanager(
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

    fn central(&self) -> Api {
        Api::new("victoria-metrics", self.victoria.addr)
    }

    fn local(&self) -> Api {
        self.prometheus.api().clone()
    }

    /// The load generator against every replica at once: `spec` and `extra` flags, with
    /// the seed made distinct per replica (`seed * 10 + i`).
    fn load_all(&self, totals: &mut Totals, spec: Load, extra: &[&str]) {
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
    fn set_speed(&self, model: &str, prefill_ms: f64, decode_ms: f64) {
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

/// What the load generators saw, per model: requests, input tokens, output tokens; and
/// how many streams they walked away from.
#[derive(Debug, Default)]
struct Totals(BTreeMap<String, [u64; 3]>, u64);

/// The queries whose per-model results must equal [`Totals`], in its order.
const COUNTER_QUERIES: [&str; 3] = [
    "sum by (model) (llm_requests_total)",
    r#"sum by (model) (llm_tokens_total{type="input"})"#,
    r#"sum by (model) (llm_tokens_total{type="output"})"#,
];

impl Totals {
    fn add(&mut self, summary: &Value) {
        for (model, s) in summary["models"].as_object().expect("models") {
            assert_eq!(s["failed"], 0, "{model}: {s}");
            self.1 += s["aborted"].as_u64().expect("aborted");
            let entry = self.0.entry(model.clone()).or_default();
            for (i, field) in ["requests", "input_tokens", "output_tokens"]
                .iter()
                .enumerate()
            {
                entry[i] += s[field]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{field} in {s}"));
            }
        }
    }

    /// Whether `api`'s counters equal these totals exactly; else what differs.
    fn compare(&self, api: &Api) -> Result<(), String> {
        for (i, query) in COUNTER_QUERIES.iter().enumerate() {
            let got = api.values(query, &["model"]);
            let want: BTreeMap<Vec<String>, f64> = self
                .0
                .iter()
                .map(|(model, t)| (vec![model.clone()], t[i] as f64))
                .collect();
            if got != want {
                return Err(format!("{} {query}: {got:?}, clients: {want:?}", api.name));
            }
        }
        Ok(())
    }

    fn wait_until_equal(&self, api: &Api, timeout: Duration, replicas: &[DemoServer]) {
        if wait_for(timeout, || self.compare(api).ok()).is_none() {
            panic!(
                "{}; the replicas' own /metrics: {:?}",
                self.compare(api).err().unwrap_or_default(),
                direct_totals(replicas)
            );
        }
    }
}

/// The password of the test's replicas.
const PASSWORD: &str = "scale-out-test-password";

/// [`COUNTER_QUERIES`] computed from the replicas' own /metrics, for failure messages.
fn direct_totals(replicas: &[DemoServer]) -> BTreeMap<String, [f64; 3]> {
    let mut totals: BTreeMap<String, [f64; 3]> = BTreeMap::new();
    for server in replicas {
        let authorization = http::basic_auth("prometheus", PASSWORD);
        let response = http::get_with(
            server.metrics,
            "/metrics",
            &[("Authorization", &authorization)],
        );
        assert_eq!(response.status, 200, "{}", response.body);
        let scrape = prom::Scrape::parse_or_panic(&response.body);
        for sample in &scrape.samples {
            let model = sample.labels.get("model").cloned().unwrap_or_default();
            let index = match (
                sample.name.as_str(),
                sample.labels.get("type").map(String::as_str),
            ) {
                ("llm_requests_total", _) => 0,
                ("llm_tokens_total", Some("input")) => 1,
                ("llm_tokens_total", Some("output")) => 2,
                _ => continue,
            };
            totals.entry(model).or_default()[index] += sample.value;
        }
    }
    totals
}

/// Raw samples of every series matching `selector` between two times, from
/// VictoriaMetrics' export API: `(labels, timestamps in seconds)`.
fn export(api: &Api, selector: &str, start: f64, end: f64) -> Vec<(Value, Vec<f64>)> {
    let path = format!(
        "/api/v1/export?match%5B%5D={}&start={start:.3}&end={end:.3}",
        encode(selector)
    );
    let response = http::get(api.addr, &path);
    assert_eq!(response.status, 200, "{}", response.body);
    response
        .body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("export JSON");
            let mut times: Vec<f64> = v["timestamps"]
                .as_array()
                .expect("timestamps")
                .iter()
                .filter_map(Value::as_f64)
                .map(|ms| ms / 1e3)
                .collect();
            times.sort_by(f64::total_cmp);
            (v["metric"].clone(), times)
        })
        .collect()
}

fn largest_gap(times: &[f64], start: f64, end: f64) -> f64 {
    let mut points = vec![start];
    points.extend(times.iter().copied().filter(|t| *t > start && *t < end));
    points.push(end);
    points.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
}

/// The notifications for HighTTFT of `model` with `status`.
fn high_ttft(n: &Notification, model: &str, status: &str) -> bool {
    n.path == "/pager"
        && n.body["status"] == status
        && n.alerts()
            .iter()
            .any(|(a, m, s)| a == "HighTTFT" && m == model && s == status)
}

#[test]
fn three_replicas_two_agents_one_store_one_pager() {
    let Some(tools) = Tools::find() else {
        return;
    };
    let started = Instant::now();
    let phase = |what: &str| eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());
    let mut t = Topology::start(&tools);
    let (central, local) = (t.central(), t.local());
    phase("topology up");

    // Both stores see all three replicas (through the agents' basic auth, for the central one).
    for api in [&central, &local] {
        let up = wait_for(Duration::from_secs(30), || {
            let up = api.values(r#"up{job="llm"}"#, &["instance"]);
            (up.len() == 3 && up.values().all(|v| *v == 1.0)).then_some(())
        });
        assert!(
            up.is_some(),
            "{}: {:?}",
            api.name,
            api.values("up", &["instance", "job"])
        );
    }
    let instances = central.values(r#"up{job="llm"}"#, &["host", "instance"]);
    assert_eq!(
        instances
            .keys()
            .filter(|k| k[0] == "host-a" && k[1].starts_with("host-a:"))
            .count(),
        2,
        "{instances:?}"
    );
    assert_eq!(
        instances
            .keys()
            .filter(|k| k[0] == "host-b" && k[1].starts_with("host-b:"))
            .count(),
        1,
        "{instances:?}"
    );
    phase("all replicas scraped by both stores");

    // 1. Traffic on both models, both fast. First three requests per model and replica,
    //    and their scrape: Prometheus and VictoriaMetrics alike take a series' first
    //    sample as its start, so what a new series counted before its first scrape is in
    //    the totals but in no rate or increase (HighTTFT's traffic guard among them).
    let mut totals = Totals::default();
    for model in ["fast", "slow"] {
        let spec = Load {
            concurrency: 1,
            ..load(1, 3)
        };
        t.load_all(&mut totals, spec, &["--models", model]);
    }
    for api in [&central, &local] {
        let born = wait_for(Duration::from_secs(30), || {
            (api.scalar("count(llm_ttft_seconds_count)") == Some(6.0)).then_some(())
        });
        assert!(
            born.is_some(),
            "{}: no TTFT series for every model and replica",
            api.name
        );
    }
    t.load_all(&mut totals, load(2, 60), &[]);
    phase("warm-up load done");

    // 2. The slow model slows down: prefill at 30 ms a token puts many first tokens
    //    above 2 s. More than 1 % of its first tokens in the window are enough for p99.
    t.set_speed("slow", 30.0, 1.0);
    let slow_ttfts = (0..3)
        .find_map(|round| {
            let spec = Load {
                concurrency: 5,
                ..load(3 + round, 5)
            };
            t.load_all(&mut totals, spec, &["--models", "slow"]);
            totals.wait_until_equal(&central, Duration::from_secs(30), &t.replicas);
            let over = central.scalar(concat!(
                r#"sum(llm_ttft_seconds_count{model="slow"})"#,
                r#" - sum(llm_ttft_seconds_bucket{model="slow",le="2"})"#
            ))?;
            (over >= 3.0).then_some(over)
        })
        .expect("slow first tokens above 2 s");
    phase(&format!(
        "{slow_ttfts} slow first tokens above 2 s, central counters exact"
    ));

    // 3. HighTTFT reaches the pager through vmalert and Alertmanager.
    let firing = t
        .webhook
        .wait(Duration::from_secs(90), |n| high_ttft(n, "slow", "firing"))
        .unwrap_or_else(|| panic!("no HighTTFT page: {:#?}", t.webhook.received()));
    assert_eq!(firing["receiver"], "llm-pager");
    let alert = &firing["alerts"][0]["labels"];
    assert_eq!(alert["severity"], "page", "{alert}");
    assert_eq!(firing["groupLabels"]["model"], "slow", "{}", firing.body);
    assert_eq!(
        firing["groupLabels"]["alertname"], "HighTTFT",
        "{}",
        firing.body
    );
    let p99 = |api: &Api| api.values("model:llm_ttft_seconds:p99_5m", &["model"]);
    let (central_p99, local_p99) = (p99(&central), p99(&local));
    phase(&format!(
        "HighTTFT{{model=\"slow\"}} paged; recorded p99 TTFT: \
         vmalert {central_p99:?}, prometheus {local_p99:?}"
    ));
    // Both engines put each model on the same side of the threshold, and record nearly
    // the same value: the same rule over the same samples, evaluated at two moments, and
    // MetricsQL's rate() does not extrapolate to the window's edges as PromQL's does. (The
    // buckets behind both are compared exactly below.)
    let get =
        |p99: &BTreeMap<Vec<String>, f64>, model: &str| p99.get(&vec![model.to_owned()]).copied();
    for p99 in [&central_p99, &local_p99] {
        assert!(
            get(p99, "slow").is_some_and(|v| v > 2.0),
            "vmalert {central_p99:?}, prometheus {local_p99:?}"
        );
        assert!(
            get(p99, "fast").is_some_and(|v| v < 2.0),
            "vmalert {central_p99:?}, prometheus {local_p99:?}"
        );
    }
    for (model, central) in &central_p99 {
        let local = local_p99[model];
        assert!(
            (central - local).abs() <= 0.1 * local,
            "{model:?}: vmalert recorded p99 {central}, prometheus {local}"
        );
    }

    // 4. The slow model recovers; enough fast first tokens push it back under 1 %.
    t.set_speed("slow", 0.05, 1.0);
    let needed = (100.0 * slow_ttfts) as u64 + 30;
    t.load_all(
        &mut totals,
        load(6, needed.div_ceil(3)),
        &["--models", "slow"],
    );
    phase(&format!("recovery load done ({needed} requests)"));
    let resolved = t
        .webhook
        .wait(Duration::from_secs(90), |n| {
            high_ttft(n, "slow", "resolved")
        })
        .unwrap_or_else(|| panic!("no resolved HighTTFT: {:#?}", t.webhook.received()));
    assert_eq!(resolved["receiver"], "llm-pager");
    phase("resolved notification received");

    // 5. Exact counters in both stores; every recording rule's series in the central one;
    //    the same buckets, so the same quantiles, centrally and locally.
    totals.wait_until_equal(&central, Duration::from_secs(30), &t.replicas);
    totals.wait_until_equal(&local, Duration::from_secs(30), &t.replicas);
    // Among them streams the clients walked away from, counted to the token received.
    assert!(totals.1 > 0, "no client aborted a stream: {totals:?}");
    let recording = shipped::read("deploy/prometheus/rules/llm-recording.yml");
    let records: Vec<&str> = recording
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .collect();
    assert!(records.len() >= 15, "{records:?}");
    for record in &records {
        let found = wait_for(Duration::from_secs(10), || {
            (!central.query(record).is_empty()).then_some(())
        });
        assert!(found.is_some(), "no {record} in the central store");
    }
    for metric in ["llm_ttft_seconds", "llm_e2e_latency_seconds"] {
        let buckets = format!("sum by (model, le) ({metric}_bucket)");
        let same = wait_for(Duration::from_secs(15), || {
            let c = central.values(&buckets, &["model", "le"]);
            (c == local.values(&buckets, &["model", "le"])).then_some(c)
        })
        .unwrap_or_else(|| panic!("{metric} buckets differ"));
        assert!(same.len() >= 40, "{same:?}");
        for q in [0.5, 0.9, 0.99] {
            let query = format!("histogram_quantile({q}, sum by (le, model) ({metric}_bucket))");
            let (c, l) = (
                central.values(&query, &["model"]),
                local.values(&query, &["model"]),
            );
            assert_eq!(c.len(), 2, "{query}: {c:?}");
            for (model, value) in &c {
                let other = l[model];
                assert!(
                    (value - other).abs() <= 1e-9 * value.abs().max(1.0),
                    "{query} {model:?}: central {value}, prometheus {other}"
                );
            }
        }
    }
    phase(&format!(
        "counters exact in both stores ({} aborted streams); {} recording series \
         centrally; quantiles agree",
        totals.1,
        records.len()
    ));

    // 6. Host B's agent crashes (SIGKILL) and at the same moment the central store stops
    //    (SIGTERM); the load goes on against every replica. Then both come back, the
    //    agent on its old write-ahead log.
    let outage_start = unix_time().as_secs_f64();
    t.agents[1].kill();
    t.victoria.stop();
    t.load_all(&mut totals, load(7, 40), &[]);
    std::thread::sleep(Duration::from_secs_f64(
        (outage_start + 10.0 - unix_time().as_secs_f64()).max(0.0),
    ));
    let outage_end = unix_time().as_secs_f64();
    t.victoria.start();
    t.agents[1].restart();
    phase(&format!(
        "central store and host-b's agent back after {:.1} s",
        outage_end - outage_start
    ));
    // No increment is lost: the counters are cumulative, and the first scrape of the
    // restarted agent carries everything counted while it was dead.
    totals.wait_until_equal(&central, Duration::from_secs(45), &t.replicas);
    assert_eq!(
        central.scalar("sum(resets(llm_requests_total[15m]))"),
        Some(0.0),
        "a counter went backwards"
    );
    // Host A's agent kept scraping into its write-ahead log while the store was down and
    // delivered every sample of the outage once it was back.
    let delivered = wait_for(Duration::from_secs(20), || {
        let series = export(
            &central,
            r#"up{job="llm",host="host-a"}"#,
            outage_start,
            outage_end,
        );
        (series.len() == 2
            && series
                .iter()
                .all(|(_, times)| largest_gap(times, outage_start, outage_end) <= 2.5))
        .then_some(series)
    });
    let series = export(
        &central,
        r#"up{job="llm",host="host-a"}"#,
        outage_start,
        outage_end,
    );
    assert!(
        delivered.is_some(),
        "host-a's scrapes during the outage are missing: {:?}",
        series
            .iter()
            .map(|(m, t)| (
                m["instance"].clone(),
                t.len(),
                largest_gap(t, outage_start, outage_end)
            ))
            .collect::<Vec<_>>()
    );
    // Host B's agent scraped nothing while it was dead: a gap in its series, but no lost
    // increment. (Prometheus 2.42 does not re-send, after a restart, what it had not sent
    // before a crash: remote write resumes at the restart, prometheus/prometheus#8809.)
    let host_b = export(
        &central,
        r#"up{job="llm",host="host-b"}"#,
        outage_start - 10.0,
        unix_time().as_secs_f64(),
    );
    assert_eq!(host_b.len(), 1, "{host_b:?}");
    let times = &host_b[0].1;
    let last_before = times
        .iter()
        .copied()
        .filter(|t| *t < outage_start)
        .fold(f64::NAN, f64::max);
    let first_after = times.iter().copied().find(|t| *t > outage_start);
    let first_after = first_after.expect("host-b's agent scrapes again after its restart");
    phase(&format!(
        "outage: host-a delivered every scrape late; host-b's samples stop {:.1} s before \
         the crash, resume {:.1} s after the restart; counters exact",
        outage_start - last_before,
        first_after - outage_end
    ));

    // 7. A replica dies: the shipped LlmMetricsDown expression, run as MetricsQL by the
    //    store and as PromQL by the plain Prometheus, names the same instance once per
    //    model it served (its `for:` of 2 minutes keeps it from paging in this test).
    let dead = t.replicas.pop().expect("replica on host-b");
    let dead_port = dead.metrics.port().to_string();
    drop(dead);
    let expr = alert_expr("LlmMetricsDown");
    for api in [&central, &local] {
        let down = wait_for(Duration::from_secs(30), || {
            let down = api.values(&expr, &["job", "instance", "model"]);
            (down.len() == 2).then_some(down)
        })
        .unwrap_or_else(|| panic!("{}: {expr} finds no down instance", api.name));
        let keys: Vec<&Vec<String>> = down.keys().collect();
        for (key, model) in keys.iter().zip(["fast", "slow"]) {
            assert_eq!(key[0], "llm", "{down:?}");
            assert!(key[1].ends_with(&format!(":{dead_port}")), "{down:?}");
            assert_eq!(key[2], model, "{down:?}");
        }
    }
    phase("a dead replica: LlmMetricsDown's expression agrees in both stores");

    // Only the slow model paged, and only HighTTFT; the fast model never alerted.
    let received = t.webhook.received();
    for n in &received {
        for (alertname, model, _) in n.alerts() {
            assert!(model != "fast", "the fast model alerted: {:#?}", n.body);
            if n.path == "/pager" {
                assert_eq!(
                    (alertname.as_str(), model.as_str()),
                    ("HighTTFT", "slow"),
                    "{:#?}",
                    n.body
                );
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "scale-out end-to-end took {elapsed:?} ({} notifications)",
        received.len()
    );
    assert!(elapsed < Duration::from_secs(240), "took {elapsed:?}");
}
