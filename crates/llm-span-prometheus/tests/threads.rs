//! Upkeep runs while the recorder or any handle lives, and stops with the last of them.
//! One test in its own binary: it counts this process's threads by name.
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::time::Duration;

use llm_span_prometheus::ExporterBuilder;
use llm_span_testkit::process::wait_for;
use metrics::{Key, Label, Metadata, Recorder};

const META: Metadata<'static> = Metadata::new("test", metrics::Level::INFO, None);

fn upkeep_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        // Thread names are cut to 15 bytes.
        .filter(|name| name.trim_end() == "llm-metrics-upk")
        .count()
}

/// Whether the number of upkeep threads becomes `count` within 5 s.
fn threads_become(count: usize) -> bool {
    wait_for(Duration::from_secs(5), || {
        (upkeep_threads() == count).then_some(())
    })
    .is_some()
}

#[test]
fn upkeep_lives_as_long_as_the_recorder_or_a_handle() {
    assert_eq!(upkeep_threads(), 0);
    let (recorder, handle) = ExporterBuilder::new().build().expect("recorder");
    assert!(threads_become(1), "upkeep thread started");
    let clone = handle.clone();
    drop(recorder);
    drop(handle);
    // A handle serving /metrics from the user's own router keeps upkeep going.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(upkeep_threads(), 1);
    assert!(clone.render().contains("# TYPE llm_ttft_seconds histogram"));
    drop(clone);
    // Dropping the last one joins the thread.
    assert_eq!(upkeep_threads(), 0);

    // The server's own handle counts too.
    let (recorder, server) = ExporterBuilder::new()
        .with_listen_addr(([127, 0, 0, 1], 0))
        .spawn()
        .expect("server");
    drop(recorder);
    // The thread names itself once it runs: wait for that, it may not have yet.
    assert!(threads_become(1), "upkeep thread of the server's handle");
    server.shutdown();
    assert_eq!(upkeep_threads(), 0);

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
    assert_eq!(upkeep_threads(), 1);
    drop(server);
    assert_eq!(upkeep_threads(), 0, "the listener still holds its handle");
    let rebound = std::net::TcpListener::bind(addr).expect("the port is free again");
    drop(rebound);
    drop(stalled);
}
