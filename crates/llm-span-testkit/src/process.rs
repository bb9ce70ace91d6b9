//! Child processes of the tests: the demo server and the load generator, and what
//! tests need around them.
//!
//! [`DemoServer`] starts the `inference_server` example on free ports; [`load_generator`]
//! runs the load generator against it. Every child is killed when its [`ChildGuard`]
//! drops, so a failing test leaves nothing behind. [`wait_for`] polls a condition;
//! [`rss_bytes`] reads this process's resident memory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of a built example binary of the root package (`cargo test --workspace` builds
/// the examples before the tests); panics, saying how to build it, when it is missing.
pub fn example(name: &str) -> PathBuf {
    built(
        target_dir().join("examples").join(name),
        &format!("cargo build --example {name}"),
    )
}

/// Path of a built binary of the workspace, such as the testkit's `load-generator`
/// (`cargo test --workspace` builds every binary before the tests); panics, saying how
/// to build it, when it is missing.
pub fn binary(package: &str, name: &str) -> PathBuf {
    built(
        target_dir().join(name),
        &format!("cargo build -p {package} --bin {name}"),
    )
}

/// The profile directory this test binary was built into (`target/debug`, say).
fn target_dir() -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

fn built(path: PathBuf, build: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (which builds it) or `{build}` first",
        path.display()
    );
    path
}

/// A child process that is killed when dropped.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running demo inference server.
#[derive(Debug)]
pub struct DemoServer {
    /// The API address.
    pub api: SocketAddr,
    /// The `/metrics` address.
    pub metrics: SocketAddr,
    _child: ChildGuard,
}

impl DemoServer {
    /// Starts `inference_server` on free loopback ports with extra `args`, and waits
    /// until it printed its addresses.
    pub fn start(args: &[&str]) -> DemoServer {
        let mut command = Command::new(example("inference_server"));
        command
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // The demo reads LLM_METRICS_* variables: a test must not inherit stray ones.
        for (key, _) in std::env::vars() {
            if key.starts_with("LLM_METRICS_") || key.starts_with("DEMO_") {
                command.env_remove(key);
            }
        }
        let mut child = ChildGuard(command.spawn().expect("start inference_server"));
        let stdout = child.0.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        reader
            .read_line(&mut first)
            .expect("read the server's first line");
        // Keep draining: a closed pipe would make the server's next print fail.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        // "inference_server: API on http://A, metrics on http://B/metrics"
        let addr = |marker: &str| -> SocketAddr {
            let start = first
                .find(marker)
                .unwrap_or_else(|| panic!("no {marker:?} in {first:?}"))
                + marker.len();
            let rest = &first[start..];
            let end = rest.find([',', '/', '\n']).unwrap_or(rest.len());
            rest[..end]
                .parse()
                .unwrap_or_else(|_| panic!("bad address in {first:?}"))
        };
        DemoServer {
            api: addr("API on http://"),
            metrics: addr("metrics on http://"),
            _child: child,
        }
    }
}

/// Resident memory of this process, in bytes (Linux; 0 elsewhere).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// Runs the testkit's `load-generator` against `server` with `args`, `--json` and
/// `--quiet`; returns its summary as printed.
pub fn load_generator(server: &DemoServer, args: &[&str]) -> String {
    let output = Command::new(binary("llm-span-testkit", "load-generator"))
        .args(["--target", &format!("http://{}", server.api)])
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .expect("run load-generator");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 summary")
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
