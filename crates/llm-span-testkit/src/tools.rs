//! The external tools some tests need (`promtool`, `prometheus`, `openssl`), and the one
//! policy for when one is missing.
//!
//! A test that needs a tool calls [`require`] first (the [`promtool`](crate::promtool)
//! runners do it themselves). When the tool is not on `PATH`, [`require`] prints a skip
//! notice to stderr and returns `false`, and the test returns without failing; with
//! `LLM_SPAN_REQUIRE_TOOLS=1` in the environment (CI sets it) it panics instead, naming
//! the tool and how to install it.

use std::path::PathBuf;

/// The environment variable that turns a missing tool into a test failure (`1`).
pub const REQUIRE_TOOLS_VAR: &str = "LLM_SPAN_REQUIRE_TOOLS";

/// The command that installs every tool the tests use (Debian, Ubuntu).
pub const INSTALL: &str = "apt-get install -y prometheus openssl";

/// Whether `tool` is there to run: `true` when it is on `PATH`. When it is not, prints
/// a skip notice and returns `false`, or panics when [`REQUIRE_TOOLS_VAR`] is `1`.
pub fn require(tool: &str) -> bool {
    if find(tool).is_some() {
        return true;
    }
    assert!(
        !tools_required(),
        "{tool} is required ({REQUIRE_TOOLS_VAR}=1) but is not on PATH: {INSTALL}"
    );
    let test = std::thread::current()
        .name()
        .map_or_else(String::new, |name| format!(" {name}"));
    eprintln!(
        "SKIPPED{test}: {tool} is not installed ({INSTALL}; set {REQUIRE_TOOLS_VAR}=1 to make this a failure)"
    );
    false
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
}
