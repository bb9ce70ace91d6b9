//! Child processes of the tests: the demo server and the load generator, and what
//! tests need around them.
//!
//! [`DemoServer`] starts the `inference_server` example on free ports; [`load_generator`]
//! runs the load generator against it, and [`load`] runs a seeded [`Load`] and reads its
//! summary. [`Service`] runs any other server (Prometheus,
//! Alertmanager, ...) with its output in a log file, and stops and starts it again as a
//! crash or a service manager would. Every child is killed when its [`ChildGuard`]
//! drops, so a failing test leaves nothing behind; a [`TempDir`] holds the children's
//! files and keeps them when the test fails. [`wait_for`] polls a condition;
//! [`rss_bytes`] reads this process's resident memory; [`unix_time`] reads the clock the
//! servers stamp their answers and samples with.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::http;

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
        DemoServer::start_with_env(args, &[])
    }

    /// [`DemoServer::start`] with environment variables for the server, such as
    /// `LLM_METRICS_BASIC_AUTH_USER` (all other `LLM_METRICS_*` and `DEMO_*` are removed).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> DemoServer {
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
        command.envs(env.iter().copied());
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

/// A directory of a test's files (configs, data and logs of its children), removed on
/// drop unless the test is failing: then it stays, and its path is printed.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory under the system's temporary directory, named after `tag`
    /// and this process.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "llm-span-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `name` inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to `name` inside the directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("files and logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A server process that a test can crash, stop and start again with the same
/// arguments (so on the same port, with the same data), its stdout and stderr appended
/// to a log file. Killed when dropped.
#[derive(Debug)]
pub struct Service {
    /// What messages call it.
    pub name: String,
    /// The address it serves HTTP on.
    pub addr: SocketAddr,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    ready_path: String,
    child: Option<ChildGuard>,
}

impl Service {
    /// How long [`Service::start`] waits for the server to answer.
    pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

    /// A server that `program` with `args` runs on `addr`, ready once `GET ready_path`
    /// answers 200; not started yet.
    pub fn new(
        name: &str,
        program: &Path,
        args: Vec<String>,
        log: PathBuf,
        addr: SocketAddr,
        ready_path: &str,
    ) -> Service {
        Service {
            name: name.to_owned(),
            addr,
            program: program.to_owned(),
            args,
            log,
            ready_path: ready_path.to_owned(),
            child: None,
        }
    }

    /// Starts the process and waits until it is ready; panics, pointing at the log,
    /// when it is not within [`Service::READY_TIMEOUT`].
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} runs already", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log.display()));
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.program.display()));
        self.child = Some(ChildGuard(child));
        let ready = wait_for(Service::READY_TIMEOUT, || {
            let response = http::try_request(self.addr, "GET", &self.ready_path, &[], None).ok()?;
            (response.status == 200).then_some(())
        });
        assert!(
            ready.is_some(),
            "{} on {} did not become ready: see {}",
            self.name,
            self.addr,
            self.log.display()
        );
    }

    /// Whether the process was started and not stopped since (it may have exited).
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, as in a crash: the process has no chance to clean up.
    pub fn kill(&mut self) {
        drop(self.child.take());
    }

    /// SIGTERM, as a service manager stops it: the process shuts down cleanly. Waits for
    /// it to exit, and kills it after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.0.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let exited = wait_for(Duration::from_secs(10), || {
            child.0.try_wait().ok().flatten().map(|_| ())
        });
        if exited.is_none() {
            eprintln!(
                "{} (pid {pid}) ignored SIGTERM for 10 s: killing it",
                self.name
            );
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

/// What [`load`] asks of the load generator.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// How many requests it sends (`--requests`).
    pub requests: u64,
    /// How many clients send at once (`--concurrency`).
    pub concurrency: usize,
    /// The seed of its prompts, models and walk-aways (`--seed`): the same seed, the same
    /// requests.
    pub seed: u64,
    /// The share of streaming clients that walk away mid-stream (`--abort-share`).
    pub abort_share: f64,
}

/// Drives `server` with the load generator: the flags of `spec`, then `extra` (such as
/// `--models`, `--api` or `--embeddings-share`; a flag of `spec` given again in `extra`
/// takes its value from `extra`). Returns the summary it printed.
pub fn load(server: &DemoServer, spec: Load, extra: &[&str]) -> serde_json::Value {
    let requests = spec.requests.to_string();
    let concurrency = spec.concurrency.to_string();
    let seed = spec.seed.to_string();
    let abort_share = spec.abort_share.to_string();
    let mut args = vec![
        "--requests",
        &requests,
        "--concurrency",
        &concurrency,
        "--seed",
        &seed,
        "--abort-share",
        &abort_share,
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&load_generator(server, &args)).expect("summary JSON")
}

/// The time since the Unix epoch, by the system clock.
pub fn unix_time() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
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
