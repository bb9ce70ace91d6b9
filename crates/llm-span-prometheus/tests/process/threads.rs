//! The recorder runs no thread of its own (nothing needs upkeep: every histogram is
//! fixed buckets); the listener's thread lives as long as the server's handle and is
//! gone when dropping it returns. It counts this process's threads.

use std::io::{Read, Write};
use std::time::Duration;

use llm_span_prometheus::ExporterBuilder;
use llm_span_testkit::process::wait_for;
use metrics::{Key, Label, Metadata, Recorder};

const META: Metadata<'static> = Metadata::new("test", metrics::Level::INFO, None);

/// This process's threads whose name starts with `prefix` (names are cut to 15 bytes).
fn threads(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

pub(crate) fn the_recorder_runs_no_thread_and_the_listener_s_goes_with_its_handle() {
    let before = threads("");
    let (recorder, handle) = ExporterBuilder::new().build().expect("recorder");
    let histogram = recorder.register_histogram(&Key::from_name("app_seconds"), &META);
    for _ in 0..1000 {
        histogram.record(0.3);
    }
    assert_eq!(threads(""), before, "no thread for the recorder");
    // Samples are in their buckets at once, with no upkeep.
    assert!(handle
        .render()
        .contains("app_seconds_bucket{le=\"0.5\"} 1000\n"));
    drop((recorder, handle));

    let (recorder, server) = ExporterBuilder::new()
        .with_listen_addr(([127, 0, 0, 1], 0))
        .spawn()
        .expect("server");
    drop(recorder);
    // The thread has its name once it runs: wait for that, it may not have yet.
    assert!(
        wait_for(Duration::from_secs(5), || (threads("llm-metrics-htt") == 1)
            .then_some(()))
        .is_some(),
        "the listener's thread"
    );
    server.shutdown();
    assert_eq!(threads("llm-metrics-htt"), 0);

    // Dropping the server's handle stops and joins the listener just the same: when
    // drop returns, the listener's thread is gone with its handle, though a scrape was
    // in flight to a client that never reads (its connection is let go after the
    // shutdown timeout; a listener that stopped on its own afterwards would hold the
    // last handle for that long).
    let (recorder, server) = ExporterBuilder::new()
        .with_listen_addr(([127, 0, 0, 1], 0))
        .with_shutdown_timeout(Duration::from_millis(500))
        .spawn()
        .expect("server");
    let pad = "p".repeat(1000);
    for i in 0..20_000 {
        let key = Key::from_parts(
            "test_big",
            vec![
                Label::new("pad", pad.clone()),
                Label::new("i", i.to_string()),
            ],
        );
        recorder.register_gauge(&key, &META).set(1.0);
    }
    drop(recorder);
    let addr = server.local_addr();
    let mut stalled = std::net::TcpStream::connect(addr).expect("connect");
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut first = [0u8; 12];
    stalled.read_exact(&mut first).expect("the response starts");
    assert_eq!(&first, b"HTTP/1.1 200");
    assert_eq!(threads("llm-metrics-htt"), 1);
    drop(server);
    assert_eq!(
        threads("llm-metrics-htt"),
        0,
        "the listener's thread outlived drop"
    );
    let rebound = std::net::TcpListener::bind(addr).expect("the port is free again");
    drop(rebound);
    drop(stalled);
}
