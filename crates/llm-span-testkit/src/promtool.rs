//! The one way tests run `promtool` (Debian's `prometheus` package): `check metrics` on
//! an exposition, `check rules`, `test rules` and `check config` (`--agent` too) on files.
//!
//! Every runner goes through [`tools::run`], which returns `None` when the test is to
//! skip; otherwise the [`Outcome`] has the exit code and what promtool printed.

use std::path::Path;

use crate::tools;

/// What one promtool run did (see [`tools::run`]).
pub use crate::tools::Outcome;

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

/// `promtool check config --agent` on `file`: a config for Prometheus in agent mode,
/// relative to `dir`.
pub fn check_agent_config(dir: &Path, file: &str) -> Option<Outcome> {
    run(Some(dir), &["check", "config", "--agent", file], None)
}

fn run(dir: Option<&Path>, args: &[&str], stdin: Option<&str>) -> Option<Outcome> {
    tools::run("promtool", dir, args, stdin)
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
