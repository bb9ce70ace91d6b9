//! The one way tests run `promtool` (Debian's `prometheus` package): `check metrics` on
//! an exposition, `check rules`, `test rules` and `check config` on files.
//!
//! Every runner goes through [`tools::require`] first and returns
//! `None` when the test is to skip; otherwise the [`Outcome`] has the exit code and
//! what promtool printed.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::tools;

/// What one promtool run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The arguments promtool ran with.
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

    /// Panics, showing the output, unless promtool exited 0.
    pub fn assert_success(&self) {
        assert!(
            self.code == 0,
            "promtool {:?}: exit {}, output:\n{}",
            self.args,
            self.code,
            self.output()
        );
    }

    /// Panics, showing the output and `input`, unless promtool exited 0 and printed
    /// nothing at all (no warning either).
    pub fn assert_clean(&self, input: &str) {
        assert!(
            self.code == 0 && self.stdout.is_empty() && self.stderr.is_empty(),
            "promtool {:?}: exit {}, output:\n{}\n--- input ---\n{input}",
            self.args,
            self.code,
            self.output()
        );
    }
}

/// `promtool check metrics` with `text` on stdin.
pub fn check_metrics(text: &str) -> Option<Outcome> {
    run(None, &["check", "metrics"], Some(text))
}

/// Asserts that `promtool check metrics` accepts `text` without a word (see
/// [`Outcome::assert_clean`]); does nothing when the test is to skip.
pub fn assert_clean(text: &str) {
    if let Some(outcome) = check_metrics(text) {
        outcome.assert_clean(text);
    }
}

/// `promtool check rules` on `files`, relative to `dir`.
pub fn check_rules(dir: &Path, files: &[&str]) -> Option<Outcome> {
    run(Some(dir), &[&["check", "rules"], files].concat(), None)
}

/// `promtool test rules` on the unit-test `files`, relative to `dir`.
pub fn test_rules(dir: &Path, files: &[&str]) -> Option<Outcome> {
    run(Some(dir), &[&["test", "rules"], files].concat(), None)
}

/// `promtool check config` on `file` (and the rule files it names), relative to `dir`.
pub fn check_config(dir: &Path, file: &str) -> Option<Outcome> {
    run(Some(dir), &["check", "config", file], None)
}

fn run(dir: Option<&Path>, args: &[&str], stdin: Option<&str>) -> Option<Outcome> {
    if !tools::require("promtool") {
        return None;
    }
    let mut command = Command::new("promtool");
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
        .unwrap_or_else(|e| panic!("cannot run promtool {args:?}: {e}"));
    let output = std::thread::scope(|s| {
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // Written beside the reads, so a large input cannot block on a full pipe.
            s.spawn(move || pipe.write_all(text.as_bytes()));
        }
        child.wait_with_output()
    })
    .unwrap_or_else(|e| panic!("promtool {args:?}: {e}"));
    Some(Outcome {
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_exposition_passes_and_a_broken_one_does_not() {
        let Some(clean) = check_metrics("# HELP a_total A.\n# TYPE a_total counter\na_total 1\n")
        else {
            return;
        };
        clean.assert_clean("a_total");
        let broken = check_metrics("a_total{ 1\n").expect("promtool ran before");
        assert_ne!(broken.code, 0, "{}", broken.output());
    }
}
