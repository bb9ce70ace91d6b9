//! Shared helpers for the workspace's examples, integration tests and benchmarks.
