//! A real Prometheus server for end-to-end tests: started on a free loopback port with
//! its own config, storage and log in a temporary directory, killed (and its directory
//! removed, unless the test fails) when dropped, and queried through its HTTP API.
//!
//! [`Prometheus::start`] runs a server, [`Prometheus::start_agent`] one in agent mode
//! (scrape and remote write only); either can be crashed, stopped and started again on
//! the same port and storage. [`Api`] is the query API alone, for any server that
//! speaks it (VictoriaMetrics does); a [`Prometheus`] dereferences to its [`Api`].
//!
//! Call [`crate::tools::require`]`("prometheus")` first.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::ops::Deref;
use std::path::PathBuf;

use serde_json::Value;

use crate::http;
use crate::process::{Service, TempDir};

/// The address `port` on 127.0.0.1.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A config that scrapes `targets` every second, as job `llm`, and evaluates
/// `rule_files` (if any) every second.
pub fn scrape_config(targets: &[SocketAddr], rule_files: &[PathBuf]) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    let mut config = "global:\n  scrape_interval: 1s\n".to_owned();
    if !rule_files.is_empty() {
        config.push_str("  evaluation_interval: 1s\nrule_files:\n");
        for file in rule_files {
            config.push_str(&format!("  - {}\n", file.display()));
        }
    }
    config.push_str(&format!(
        "scrape_configs:\n  - job_name: llm\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    ));
    config
}

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Percent-encodes a query parameter value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The Prometheus HTTP API of a server at `addr`: Prometheus's own, or another's that
/// serves the same API (VictoriaMetrics).
#[derive(Debug, Clone)]
pub struct Api {
    /// What messages call the server.
    pub name: String,
    /// Its HTTP address.
    pub addr: SocketAddr,
}

impl Api {
    /// The API of the server `name` at `addr`.
    pub fn new(name: &str, addr: SocketAddr) -> Api {
        Api {
            name: name.to_owned(),
            addr,
        }
    }

    /// `GET path` on the API, as JSON; panics unless it answers 200.
    pub fn get(&self, path: &str) -> Value {
        let response = http::get(self.addr, path);
        assert_eq!(
            response.status, 200,
            "{} {path}: {}",
            self.name, response.body
        );
        serde_json::from_str(&response.body).expect("API JSON")
    }

    /// An instant query's result vector.
    pub fn query(&self, query: &str) -> Vec<Value> {
        let value = self.get(&format!("/api/v1/query?query={}", encode(query)));
        assert_eq!(value["status"], "success", "{} {query}: {value}", self.name);
        value["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `{values of labels -> sample value}` of an instant query (a missing label reads
    /// as empty).
    pub fn values(&self, query: &str, labels: &[&str]) -> BTreeMap<Vec<String>, f64> {
        self.query(query)
            .iter()
            .map(|sample| {
                let key = labels
                    .iter()
                    .map(|l| sample["metric"][l].as_str().unwrap_or("").to_owned())
                    .collect();
                let value = sample["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (key, value)
            })
            .collect()
    }

    /// `{label value -> sample value}` of a query whose series differ by `label`.
    pub fn by(&self, query: &str, label: &str) -> HashMap<String, f64> {
        self.values(query, &[label])
            .into_iter()
            .map(|(mut key, value)| (key.remove(0), value))
            .collect()
    }

    /// The value of a query that returns one series; `None` when it returns none.
    pub fn scalar(&self, query: &str) -> Option<f64> {
        self.values(query, &[]).into_values().next()
    }
}

/// A running Prometheus (or one stopped by [`Prometheus::kill`] or [`Prometheus::stop`]).
#[derive(Debug)]
pub struct Prometheus {
    api: Api,
    service: Service,
    // Last: removed after the process that writes in it is gone.
    _dir: TempDir,
}

impl Deref for Prometheus {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Prometheus {
    /// Starts `prometheus` with `config` (YAML) and extra command-line `flags`, and
    /// waits until it is ready.
    pub fn start(config: &str, flags: &[&str]) -> Prometheus {
        Prometheus::launch("prometheus", config, "--storage.tsdb.path", &[], flags)
    }

    /// Starts `prometheus` in agent mode (`--enable-feature=agent`: it scrapes and
    /// remote-writes, keeping samples in a write-ahead log until they are sent; it stores
    /// nothing to query and evaluates no rules) with `config` and extra `flags`, and
    /// waits until it is ready.
    pub fn start_agent(config: &str, flags: &[&str]) -> Prometheus {
        Prometheus::launch(
            "prometheus agent",
            config,
            "--storage.agent.path",
            &["--enable-feature=agent"],
            flags,
        )
    }

    fn launch(
        name: &str,
        config: &str,
        storage_flag: &str,
        mode: &[&str],
        flags: &[&str],
    ) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let config = dir.write("prometheus.yml", config);
        let port = free_port();
        let mut args: Vec<String> = mode.iter().map(|f| (*f).to_owned()).collect();
        args.extend([
            format!("--config.file={}", config.display()),
            format!("{storage_flag}={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ]);
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        let program = crate::tools::locate("prometheus").expect("prometheus is installed");
        let addr = loopback(port);
        let mut service = Service::new(
            name,
            &program,
            args,
            dir.join("prometheus.log"),
            addr,
            "/-/ready",
        );
        service.start();
        Prometheus {
            api: Api::new(name, addr),
            service,
            _dir: dir,
        }
    }

    /// Its query API (also reached through `Deref`).
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// Crashes it (SIGKILL); [`Prometheus::restart`] starts it again.
    pub fn kill(&mut self) {
        self.service.kill();
    }

    /// Stops it cleanly (SIGTERM); [`Prometheus::restart`] starts it again.
    pub fn stop(&mut self) {
        self.service.stop();
    }

    /// Starts it again after [`Prometheus::kill`] or [`Prometheus::stop`] (stops it
    /// first when it runs): the same config, port and storage, so it resumes from the
    /// data and write-ahead log it left. Waits until it is ready.
    pub fn restart(&mut self) {
        self.service.stop();
        self.service.start();
    }
}
