//! A listener can be shut down and started again on the same port.
//! (A taken port, a recorder installed twice and missing credential files are covered
//! by llm-span-prometheus's http.rs, install.rs and config.rs; a panic inside a request
//! span by llm-span-layer's tests/layer/errors.rs.)

use llm_span_prometheus::ExporterBuilder;
use llm_span_testkit::http;

#[test]
fn the_listener_restarts_on_the_same_port() {
    let (_recorder, first) = ExporterBuilder::new()
        .with_listen_addr(([127, 0, 0, 1], 0))
        .spawn()
        .expect("first listener");
    let addr = first.local_addr();
    assert_eq!(http::get(addr, "/health").status, 200);
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
        assert_eq!(http::get(addr, "/metrics").status, 200);
        again.shutdown();
    }
}
