//! Shared pieces of the workspace's examples, integration tests and benchmarks.
//!
//! Not published: the demo server and the load generator agree on tokenization and
//! randomness through [`demo`], and tests read scrapes through [`prom`].

#![forbid(unsafe_code)]

pub mod demo;
pub mod process;
pub mod prom;
