//! Criterion timings of one request through every rung of the ladder, and of one
//! histogram record on each storage.
//!
//! `cargo bench --bench overhead` (add `--features bench-peers` for the peers). For the
//! ratios the targets are stated in, run the paired runner: `cargo bench --bench ladder`.

mod support;

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use support::{Rung, Variant};

fn requests(c: &mut Criterion) {
    let mut group = c.benchmark_group("request");
    for variant in Variant::all() {
        let rung = Rung::new(variant);
        rung.run(0, 10_000);
        let mut next = 10_000u64;
        group.bench_function(variant.name(), |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                rung.run(next, iters);
                next += iters;
                started.elapsed()
            })
        });
    }
    group.finish();
}

/// One `Histogram::record` of a catalog histogram: llm-span-prometheus's fixed atomic
/// buckets against metrics-exporter-prometheus's `AtomicBucket` (what it keeps for every
/// histogram, drained by scrapes and upkeep), same name, same buckets.
fn histogram_record(c: &mut Criterion) {
    use metrics::{Key, Metadata, Recorder};
    let key = Key::from_static_name("llm_ttft_seconds");
    let metadata = Metadata::new(module_path!(), metrics::Level::INFO, None);
    let (owned, _handle) = support::recorder();
    let mep = support::mep_recorder();
    let stores: [(&str, metrics::Histogram); 2] = [
        (
            "fixed buckets (llm-span-prometheus)",
            owned.register_histogram(&key, &metadata),
        ),
        (
            "AtomicBucket (metrics-exporter-prometheus)",
            mep.register_histogram(&key, &metadata),
        ),
    ];
    let mut group = c.benchmark_group("histogram_record");
    for (name, histogram) in &stores {
        let mut i = 0u32;
        group.bench_function(*name, |b| {
            b.iter(|| {
                // Spread over the buckets: 1 ms to 4 s.
                i = i.wrapping_add(1);
                histogram.record(f64::from(i % 4096) / 1024.0 + 0.001);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, requests, histogram_record);
criterion_main!(benches);
