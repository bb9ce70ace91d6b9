//! The workspace's own files as they ship (the deploy configs, scripts, docs): their paths
//! and their text, for the tests that check them or run them.

use std::path::{Path, PathBuf};

/// The workspace's root directory (this crate is `crates/llm-span-testkit` in it).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the testkit lies two levels below the workspace root")
}

/// The path of `relative` (such as `deploy/prometheus/prometheus.yml`) in the workspace.
pub fn path(relative: &str) -> PathBuf {
    root().join(relative)
}

/// The text of the workspace's file `relative`; panics naming it when it cannot be read.
pub fn read(relative: &str) -> String {
    std::fs::read_to_string(path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}
