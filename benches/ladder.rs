//! The overhead ladder, measured the way noisy machines allow: every rung runs in one
//! process, in rotating order, for many rounds; each round gives ratios between rungs
//! measured seconds apart, and the report is the median of those paired ratios.
//!
//! `cargo bench --bench ladder` (`--features bench-peers` adds the peers).
//! Options after `--`: `--rounds N` (default 40), `--batch N` requests per rung and round
//! (default 4000).

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use llm_span_testkit::prom::Scrape;
use support::{Rung, Variant};
use tracing::field::Empty;

/// Counts allocations and live bytes, to report allocations per request and memory
/// per series.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn option(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn quartiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    (values[n / 4], values[(3 * n) / 4])
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks harness=false benches for their tests.
    }
    // `--profile N`: only P, N requests, for a profiler.
    let profile = option("--profile", 0);
    if profile > 0 {
        let rung = Rung::new(Variant::Product);
        rung.run(0, profile);
        return;
    }
    let rounds = option("--rounds", 40) as usize;
    let batch = option("--batch", 4000);
    let variants = Variant::all();
    let rungs: Vec<Rung> = variants.iter().map(|v| Rung::new(*v)).collect();
    for rung in &rungs {
        rung.run(0, 20_000);
    }
    let index = |v: Variant| variants.iter().position(|x| *x == v).expect("variant");

    // ns per request, by rung and round.
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); rungs.len()];
    let mut next = 20_000u64;
    for round in 0..rounds {
        for k in 0..rungs.len() {
            let r = (k + round) % rungs.len();
            let started = Instant::now();
            rungs[r].run(next, batch);
            ns[r].push(started.elapsed().as_nanos() as f64 / batch as f64);
            next += batch;
        }
    }
    let per_round = |f: &dyn Fn(usize) -> f64| -> Vec<f64> { (0..rounds).map(f).collect() };
    let at = |v: Variant, round: usize| ns[index(v)][round];

    println!("## Per request (median ns over {rounds} rounds of {batch} requests; IQR)\n");
    println!("| rung | ns/request | IQR |");
    println!("|---|---:|---:|");
    for (r, variant) in variants.iter().enumerate() {
        let mut values = ns[r].clone();
        let (q1, q3) = quartiles(&mut values.clone());
        println!(
            "| {} | {:.0} | {:.0}-{:.0} |",
            variant.name(),
            median(&mut values),
            q1,
            q3
        );
    }

    println!("\n## Paired ratios (median over rounds)\n");
    println!("| ratio | value | target |");
    println!("|---|---:|---|");
    let mut overhead_mep = per_round(&|i| {
        (at(Variant::Product, i) - at(Variant::Baseline, i)) / at(Variant::IdealMep, i)
    });
    println!(
        "| (P - B) / E_mep | {:.2} | <= 1.0 |",
        median(&mut overhead_mep)
    );
    let mut overhead = per_round(&|i| {
        (at(Variant::Product, i) - at(Variant::Baseline, i)) / at(Variant::Ideal, i)
    });
    println!("| (P - B) / E | {:.2} | |", median(&mut overhead));
    let mut other =
        per_round(&|i| at(Variant::OtherSpanProduct, i) / at(Variant::OtherSpanBaseline, i));
    println!(
        "| non-LLM span: P / B | {:.3} | <= 1.05 |",
        median(&mut other)
    );
    let mut naive = per_round(&|i| at(Variant::Product, i) / at(Variant::Naive, i));
    println!("| P / naive layer | {:.2} | |", median(&mut naive));
    #[cfg(feature = "bench-peers")]
    {
        let mut otel = per_round(&|i| at(Variant::Product, i) / at(Variant::OpenTelemetry, i));
        println!(
            "| P / tracing-opentelemetry | {:.2} | <= 0.4 |",
            median(&mut otel)
        );
        let mut context = per_round(&|i| at(Variant::Product, i) / at(Variant::TracingContext, i));
        println!(
            "| P / metrics-tracing-context | {:.3} | <= 0.12 |",
            median(&mut context)
        );
    }

    println!("\n## Allocations per request (steady state, {batch} requests)\n");
    println!("| rung | allocations/request | beyond E |");
    println!("|---|---:|---:|");
    let mut allocations = Vec::new();
    for rung in &rungs {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        rung.run(next, batch);
        next += batch;
        allocations.push((ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / batch as f64);
    }
    let ideal_allocations = allocations[index(Variant::Ideal)];
    for (r, variant) in variants.iter().enumerate() {
        println!(
            "| {} | {:.3} | {:+.3} |",
            variant.name(),
            allocations[r],
            allocations[r] - ideal_allocations
        );
    }

    println!("\n## Throughput, 1 and 2 threads (requests/s, 300 ms each)\n");
    println!("| rung | 1 thread | 2 threads | scaling |");
    println!("|---|---:|---:|---:|");
    let mut scaling = Vec::new();
    for variant in [Variant::Baseline, Variant::Product, Variant::Ideal] {
        let rung = &rungs[index(variant)];
        let one = throughput(rung, 1);
        let two = throughput(rung, 2);
        scaling.push((variant, two / one));
        println!(
            "| {} | {:.0} | {:.0} | {:.2} |",
            variant.name(),
            one,
            two,
            two / one
        );
    }

    println!("\n## Scrape\n");
    println!("| models | series | render (median of 15) | live bytes per added model |");
    println!("|---:|---:|---:|---:|");
    scrape();
}

/// Requests per second with `threads` threads sharing one rung.
fn throughput(rung: &Rung, threads: u64) -> f64 {
    let window = Duration::from_millis(300);
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let started = Instant::now();
                    let mut done = 0u64;
                    while started.elapsed() < window {
                        rung.run(1_000_000 * (t + 1) + done, 500);
                        done += 500;
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    total as f64 / window.as_secs_f64()
}

fn scrape() {
    let (recorder, handle) = support::recorder();
    let layer = llm_span_layer::LlmSpanLayer::builder()
        .with_recorder(recorder)
        .with_max_models(1000)
        .with_max_series(1000)
        .build()
        .expect("layer");
    use tracing_subscriber::prelude::*;
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let names: Vec<String> = (0..200)
        .map(|i| format!("model-{i:03}-instruct-v0.3"))
        .collect();
    let mut models_done = 0;
    for models in [20usize, 200] {
        let live = LIVE_BYTES.load(Ordering::Relaxed);
        tracing::dispatcher::with_default(&dispatch, || {
            for name in &names[models_done..models] {
                let span = tracing::info_span!(
                    "generate",
                    model = name.as_str(),
                    tokens_in = 10u64,
                    tokens_out = Empty
                );
                span.in_scope(|| tracing::info!(first_token = true));
                span.record("tokens_out", 5u64);
            }
        });
        let added = LIVE_BYTES.load(Ordering::Relaxed) - live;
        // The first batch also pays for tables allocated once; later ones are per model.
        let per_model = added as f64 / (models - models_done) as f64;
        models_done = models;
        let mut times: Vec<f64> = (0..15)
            .map(|_| {
                let started = Instant::now();
                let text = handle.render();
                std::hint::black_box(&text);
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let series = Scrape::parse_or_panic(&handle.render()).samples.len();
        println!(
            "| {models} | {series} | {:.2} ms | {:.0} |",
            median(&mut times),
            per_model
        );
    }
}
