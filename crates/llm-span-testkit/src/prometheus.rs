//! A real Prometheus server for end-to-end tests: started on a free loopback port with
//! its own config and storage in a temporary directory, killed (and its directory
//! removed) when dropped, and queried through its HTTP API.
//!
//! Call [`crate::tools::require`]`("prometheus")` first.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::http;
use crate::process::{wait_for, ChildGuard};

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

/// A running Prometheus.
#[derive(Debug)]
pub struct Prometheus {
    /// Its HTTP address.
    pub addr: SocketAddr,
    _child: ChildGuard,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Starts `prometheus` with `config` (YAML) and extra command-line `flags`, and
    /// waits until it is ready.
    pub fn start(config: &str, flags: &[&str]) -> Prometheus {
        let dir = std::env::temp_dir().join(format!(
            "llm-span-prom-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("data")).expect("temp dir");
        std::fs::write(dir.join("prometheus.yml"), config).expect("config");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _child: ChildGuard(child),
            dir,
        };
        let ready = wait_for(Duration::from_secs(15), || {
            let response = http::try_request(prometheus.addr, "GET", "/-/ready", &[], None).ok()?;
            (response.status == 200).then_some(())
        });
        assert!(ready.is_some(), "prometheus did not become ready");
        prometheus
    }

    /// `GET path` on the API, as JSON; panics unless it answers 200.
    pub fn get(&self, path: &str) -> Value {
        let response = http::get(self.addr, path);
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        serde_json::from_str(&response.body).expect("API JSON")
    }

    /// An instant query's result vector.
    pub fn query(&self, query: &str) -> Vec<Value> {
        let value = self.get(&format!("/api/v1/query?query={}", encode(query)));
        assert_eq!(value["status"], "success", "{query}: {value}");
        value["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `{label value -> sample value}` of a query whose series differ by `label`.
    pub fn by(&self, query: &str, label: &str) -> HashMap<String, f64> {
        self.query(query)
            .iter()
            .map(|sample| {
                let key = sample["metric"][label].as_str().unwrap_or("").to_owned();
                let value = sample["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (key, value)
            })
            .collect()
    }
}
