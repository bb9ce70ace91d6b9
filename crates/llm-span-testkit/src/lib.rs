//! Shared pieces of the llm-span workspace's tests, examples and benchmarks.
//!
//! Not published, and not the product: the product is `llm-span-layer` and
//! `llm-span-prometheus`. The demo server and the load generator agree on tokenization
//! and randomness through [`demo`]; tests run the examples through [`process`] and read
//! scrapes through [`prom`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod demo;
pub mod process;
pub mod prom;
