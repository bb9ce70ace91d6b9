//! Tests of `llm-span-layer` with real LLM frameworks: rig-core and genai call the demo
//! inference server over HTTP, their own spans go through the layer in the test process,
//! and `/metrics` must say what each framework returned to its caller.
//!
//! The tests are in `tests/`; this library is empty. Never published.

#![forbid(unsafe_code)]
