//! Unit tests of `series.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use metrics::{CounterFn, GaugeFn, KeyName, Metadata, SharedString, Unit};

use super::*;

/// More writes than any test here makes: a handle written more often is in a loop
/// that does not end, which panics rather than hangs.
const MAX_WRITES: usize = 16;

/// Every value written to a handle, in order.
#[derive(Default)]
struct Writes(Mutex<Vec<f64>>);

impl Writes {
    fn push(&self, value: f64) {
        let mut writes = self.0.lock().expect("lock");
        assert!(writes.len() < MAX_WRITES, "a write loop that does not end");
        writes.push(value);
    }
    fn take(&self) -> Vec<f64> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}

impl CounterFn for Writes {
    fn increment(&self, value: u64) {
        self.push(value as f64);
    }
    fn absolute(&self, value: u64) {
        self.push(value as f64);
    }
}

impl GaugeFn for Writes {
    fn increment(&self, value: f64) {
        self.push(value);
    }
    fn decrement(&self, value: f64) {
        self.push(-value);
    }
    fn set(&self, value: f64) {
        self.push(value);
    }
}

/// A recorder that keeps each counter's and gauge's writes by metric name.
#[derive(Default)]
struct Recording(Mutex<HashMap<String, Arc<Writes>>>);

impl Recording {
    fn handle(&self, key: &Key) -> Arc<Writes> {
        let mut all = self.0.lock().expect("lock");
        Arc::clone(all.entry(key.name().to_owned()).or_default())
    }
}

impl Recorder for Recording {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Ends the test binary, as a failure, unless the returned sender is used within
/// 10 s: a loop that never ends (and never writes) would otherwise hang every test.
fn watchdog() -> std::sync::mpsc::Sender<()> {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        // A test that failed drops the sender: only a timeout means a hang.
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            finished.recv_timeout(std::time::Duration::from_secs(10))
        {
            eprintln!("a loop of series.rs did not end within 10 s");
            std::process::exit(101);
        }
    });
    done
}

#[test]
fn cost_is_added_in_u64_steps() {
    let done = watchdog();
    let recorder = Recording::default();
    let counted = LabelSetHandles::register(&recorder, &[], SeriesPricing::Priced);
    let cost = recorder.handle(&Key::from_name(catalog::COST_PICO_USD_TOTAL));
    counted.add_cost(0);
    assert_eq!(cost.take(), [0.0; 0]);
    counted.add_cost(5);
    assert_eq!(cost.take(), [5.0]);
    counted.add_cost(u128::from(u64::MAX) * 2 + 7);
    let max = u64::MAX as f64;
    assert_eq!(cost.take(), [max, max, 7.0]);
    done.send(()).expect("watchdog");
}

#[test]
fn the_hit_rate_is_set_from_both_totals() {
    let done = watchdog();
    let recorder = Recording::default();
    let counted = LabelSetHandles::register(&recorder, &[], SeriesPricing::Unpriced);
    let rate = recorder.handle(&Key::from_name(catalog::KV_CACHE_HIT_RATE));
    // Nothing at all, then cached tokens but no input: no ratio to show yet.
    counted.add_cache_totals(0, 0);
    counted.add_cache_totals(0, 5);
    assert_eq!(rate.take(), [0.0; 0]);
    // No cached token yet: the gauge's 0 stands.
    counted.add_cache_totals(100, 0);
    assert_eq!(rate.take(), [0.0; 0]);
    counted.add_cache_totals(100, 50);
    assert_eq!(rate.take(), [0.25]);
    counted.add_cache_totals(200, 0);
    assert_eq!(rate.take(), [0.125]);
    // Cached tokens past the input count as the input.
    counted.add_cache_totals(10, 30);
    assert_eq!(rate.take(), [60.0 / 410.0]);
    done.send(()).expect("watchdog");
}

#[test]
fn a_series_ref_survives_its_one_word_form() {
    for series in [
        SeriesRef {
            recorder: 3,
            slot: 70_000,
        },
        SeriesRef {
            recorder: u8::MAX,
            slot: u32::MAX,
        },
        SeriesRef {
            recorder: 0,
            slot: 0,
        },
    ] {
        assert_eq!(SeriesRef::from_bits(series.to_bits()), series);
    }
    assert_eq!(
        SeriesRef {
            recorder: 3,
            slot: 70_000
        }
        .to_bits(),
        3 << 32 | 70_000
    );
}
