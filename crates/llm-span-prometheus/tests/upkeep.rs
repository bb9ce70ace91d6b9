//! Upkeep runs while the recorder or any handle lives, and stops with the last of them.
//! One test in its own binary: it counts this process's threads by name.
#![cfg(target_os = "linux")]

use std::time::Duration;

use llm_span_prometheus::ExporterBuilder;
use llm_span_testkit::process::wait_for;

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
}
