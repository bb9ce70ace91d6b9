//! Faults around the listener: a taken port is an immediate typed error, and a
//! listener can be shut down and started again on the same port.
//! (Recorder installed twice, missing credential files and a panic inside a request
//! span are covered by llm-span-prometheus's install.rs and config.rs and
//! llm-span-layer's errors.rs.)

use std::time::{Duration, Instant};

use llm_span_prometheus::{ExporterBuilder, ExporterError};
use llm_span_suite::process::http;

#[test]
fn a_taken_port_is_a_typed_error_not_a_hang() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let started = Instant::now();
    let error = ExporterBuilder::new()
        .with_listen_addr(addr)
        .spawn()
        .expect_err("port is taken");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(error, ExporterError::AddressInUse { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
}

#[test]
fn the_listener_restarts_on_the_same_port() {
    let (_recorder, first) = ExporterBuilder::new()
        .with_listen_addr(([127, 0, 0, 1], 0))
        .spawn()
        .expect("first listener");
    let addr = first.local_addr();
    assert_eq!(http(addr, "GET", "/health", &[], "").0, 200);
    first.shutdown();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the port is closed after shutdown"
    );
    for round in 0..3 {
        let (_recorder, again) = ExporterBuilder::new()
            .with_listen_addr(addr)
            .spawn()
            .unwrap_or_else(|e| panic!("restart {round}: {e}"));
        assert_eq!(http(addr, "GET", "/metrics", &[], "").0, 200);
        again.shutdown();
    }
}
