//! Criterion timings of one request through every rung of the ladder.
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

criterion_group!(benches, requests);
criterion_main!(benches);
