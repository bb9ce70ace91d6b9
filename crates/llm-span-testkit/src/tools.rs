//! The external tools some tests need (`promtool`, `prometheus`, `openssl`, Alertmanager,
//! VictoriaMetrics), and the one policy for when one is missing.
//!
//! A test that needs a tool calls [`require`] first, or [`locate`] when it needs the path
//! (the [`promtool`](crate::promtool) runners and [`run`] do it themselves). When the
//! tool is not on `PATH`, they print a skip notice to stderr and return `false` or
//! `None`, and the test returns without failing; with `LLM_SPAN_REQUIRE_TOOLS=1` in the
//! environment (CI sets it) they panic instead, naming the tool and the package that
//! installs it.
//!
//! Some binaries go by more than one name: Debian calls Alertmanager
//! `prometheus-alertmanager`, upstream's archive `alertmanager`; upstream's VictoriaMetrics
//! archives add `-prod` to `victoria-metrics`, `vmagent` and `vmalert`. [`TOOLS`] lists
//! them, and [`locate`] accepts any of a tool's names.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The environment variable that turns a missing tool into a test failure (`1`).
pub const REQUIRE_TOOLS_VAR: &str = "LLM_SPAN_REQUIRE_TOOLS";

/// The command that installs every tool the tests use (Debian, Ubuntu).
pub const INSTALL: &str =
    "apt-get install -y prometheus prometheus-alertmanager victoria-metrics openssl";

/// A tool the tests run: the names its executable goes by, and its Debian package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// The executable's names, Debian's first (the one messages use).
    pub names: &'static [&'static str],
    /// The Debian package that installs it.
    pub package: &'static str,
}

impl Tool {
    /// The command that installs this tool (Debian, Ubuntu).
    pub fn install(&self) -> String {
        format!("apt-get install -y {}", self.package)
    }
}

/// Every tool the tests know, with its other names and its package. A tool not listed
/// here is looked up by its one name, and its package is assumed to have that name.
pub const TOOLS: &[Tool] = &[
    Tool {
        names: &["prometheus"],
        package: "prometheus",
    },
    Tool {
        names: &["promtool"],
        package: "prometheus",
    },
    Tool {
        names: &["prometheus-alertmanager", "alertmanager"],
        package: "prometheus-alertmanager",
    },
    Tool {
        names: &["amtool"],
        package: "prometheus-alertmanager",
    },
    Tool {
        names: &["victoria-metrics", "victoria-metrics-prod"],
        package: "victoria-metrics",
    },
    Tool {
        names: &["vmagent", "vmagent-prod"],
        package: "victoria-metrics",
    },
    Tool {
        names: &["vmalert", "vmalert-prod"],
        package: "victoria-metrics",
    },
    Tool {
        names: &["openssl"],
        package: "openssl",
    },
];

/// The entry of [`TOOLS`] that has `name` among its names.
pub fn known(name: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|tool| tool.names.contains(&name))
}

/// Whether `tool` is there to run (see [`locate`]).
pub fn require(tool: &str) -> bool {
    locate(tool).is_some()
}

/// The executable of `tool`: the first of its names (see [`TOOLS`]; `tool` itself when
/// it is not listed) on `PATH`. When there is none, prints a skip notice and returns
/// `None`, or panics when [`REQUIRE_TOOLS_VAR`] is `1`; both name the package to install.
pub fn locate(tool: &str) -> Option<PathBuf> {
    let (names, install) = match known(tool) {
        Some(known) => (known.names, known.install()),
        None => (
            std::slice::from_ref(&tool),
            format!("apt-get install -y {tool}"),
        ),
    };
    if let Some(path) = names.iter().find_map(|name| find(name)) {
        return Some(path);
    }
    let names = names.join(" or ");
    assert!(
        !tools_required(),
        "{names} is required ({REQUIRE_TOOLS_VAR}=1) but is not on PATH: {install}"
    );
    let test = std::thread::current()
        .name()
        .map_or_else(String::new, |name| format!(" {name}"));
    eprintln!(
        "SKIPPED{test}: {names} is not installed ({install}; set {REQUIRE_TOOLS_VAR}=1 to make this a failure)"
    );
    None
}

/// What one run of a tool did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The tool as the test named it (`promtool`, `amtool`, ...).
    pub tool: String,
    /// The arguments it ran with.
    pub args: Vec<String>,
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl Outcome {
    /// stdout then stderr.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panics, showing the output, unless the tool exited 0.
    pub fn assert_success(&self) {
        assert!(
            self.code == 0,
            "{} {:?}: exit {}, output:\n{}",
            self.tool,
            self.args,
            self.code,
            self.output()
        );
    }

    /// Panics, showing the output and `input`, unless the tool exited 0 and printed
    /// nothing at all (no warning either).
    pub fn assert_clean(&self, input: &str) {
        assert!(
            self.code == 0 && self.stdout.is_empty() && self.stderr.is_empty(),
            "{} {:?}: exit {}, output:\n{}\n--- input ---\n{input}",
            self.tool,
            self.args,
            self.code,
            self.output()
        );
    }
}

/// Runs `tool` (found by [`locate`]) with `args` in `dir` (the current directory when
/// `None`), `stdin` written to its standard input, and waits for it; `None` when the
/// test is to skip.
pub fn run(tool: &str, dir: Option<&Path>, args: &[&str], stdin: Option<&str>) -> Option<Outcome> {
    let program = locate(tool)?;
    let mut command = Command::new(&program);
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {tool} {args:?}: {e}"));
    let output = std::thread::scope(|s| {
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // Written beside the reads, so a large input cannot block on a full pipe.
            s.spawn(move || std::io::Write::write_all(&mut pipe, text.as_bytes()));
        }
        child.wait_with_output()
    })
    .unwrap_or_else(|e| panic!("{tool} {args:?}: {e}"));
    Some(Outcome {
        tool: tool.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Whether `python3` can import `module` (the OpenMetrics parser of
/// `prometheus-client`, say); the same policy as [`require`] when it cannot.
pub fn require_python_module(module: &str, install: &str) -> bool {
    let found = find("python3").is_some()
        && std::process::Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|output| output.status.success());
    if found {
        return true;
    }
    assert!(
        !tools_required(),
        "python3 with {module} is required ({REQUIRE_TOOLS_VAR}=1) but missing: {install}"
    );
    eprintln!(
        "SKIPPED: python3 with {module} is not installed ({install}; set {REQUIRE_TOOLS_VAR}=1 to make this a failure)"
    );
    false
}

/// Whether [`REQUIRE_TOOLS_VAR`] asks for every tool (`1`).
pub fn tools_required() -> bool {
    std::env::var(REQUIRE_TOOLS_VAR).is_ok_and(|value| value.trim() == "1")
}

/// The executable file called `tool` in a directory of `PATH`, if any.
pub fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &std::path::Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_is_on_path_only() {
        assert!(find("sh").is_some(), "sh is on every PATH this runs on");
        assert!(find("no-such-tool-llm-span").is_none());
    }

    #[test]
    fn every_name_of_a_tool_finds_its_entry() {
        let alertmanager = known("alertmanager").expect("listed");
        assert_eq!(Some(alertmanager), known("prometheus-alertmanager"));
        assert_eq!(
            alertmanager.install(),
            "apt-get install -y prometheus-alertmanager"
        );
        assert_eq!(
            known("vmalert-prod").map(|t| t.package),
            Some("victoria-metrics")
        );
        assert!(known("no-such-tool-llm-span").is_none());
        for tool in TOOLS {
            assert!(INSTALL.contains(tool.package), "{tool:?}");
        }
    }

    #[test]
    fn runs_a_tool_and_keeps_what_it_printed() {
        let outcome = run("sh", None, &["-c", "cat; echo err >&2; exit 3"], Some("in"))
            .expect("sh is on PATH");
        assert_eq!((outcome.code, outcome.stdout.as_str()), (3, "in"));
        assert_eq!(outcome.stderr, "err\n");
    }
}
