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

/// Requests per round of a rung: streaming requests are 100 events long.
fn batch_of(variant: Variant, batch: u64) -> u64 {
    if variant.streams() {
        (batch / 20).max(1)
    } else {
        batch
    }
}

/// One target of the table: its median and IQR over rounds, and whether it is met.
fn target(name: &str, values: &mut [f64], goal: &str, met: impl Fn(f64) -> bool) {
    let (q1, q3) = quartiles(values);
    let value = median(values);
    let verdict = if met(value) { "met" } else { "not met" };
    println!("| {name} | {value:.3} | {q1:.3}-{q3:.3} | {goal} | {verdict} |");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks harness=false benches for their tests.
    }
    // `--profile N`: only P (or `--stream`: P_stream), N requests, for a profiler.
    let profile = option("--profile", 0);
    if profile > 0 {
        let variant = if std::env::args().any(|a| a == "--stream") {
            Variant::StreamProduct
        } else {
            Variant::Product
        };
        // `--container K` (bench-peers): the container rung `Work::ALL[K]` instead.
        #[cfg(feature = "bench-peers")]
        let variant = match std::env::args().position(|a| a == "--container") {
            Some(_) => Variant::Container(
                support::containers::Work::ALL[option("--container", 0) as usize],
            ),
            None => variant,
        };
        Rung::new(variant).run(0, profile);
        return;
    }
    let rounds = option("--rounds", 40) as usize;
    let batch = option("--batch", 4000);
    let variants = Variant::all();
    let rungs: Vec<Rung> = variants.iter().map(|v| Rung::new(*v)).collect();
    for (rung, variant) in rungs.iter().zip(&variants) {
        rung.run(0, batch_of(*variant, 20_000));
    }
    let index = |v: Variant| variants.iter().position(|x| *x == v).expect("variant");

    // ns per request, by rung and round.
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); rungs.len()];
    let mut next = 20_000u64;
    for round in 0..rounds {
        for k in 0..rungs.len() {
            let r = (k + round) % rungs.len();
            let count = batch_of(variants[r], batch);
            let started = Instant::now();
            rungs[r].run(next, count);
            ns[r].push(started.elapsed().as_nanos() as f64 / count as f64);
            next += count;
        }
    }
    let per_round = |f: &dyn Fn(usize) -> f64| -> Vec<f64> { (0..rounds).map(f).collect() };
    let at = |v: Variant, round: usize| ns[index(v)][round];

    println!("## Per request (median ns over {rounds} rounds; IQR)\n");
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

    let mut allocations = Vec::new();
    for (rung, variant) in rungs.iter().zip(&variants) {
        let count = batch_of(*variant, batch);
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        rung.run(next, count);
        next += count;
        allocations.push((ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / count as f64);
    }
    let ideal_allocations = allocations[index(Variant::Ideal)];

    let threads: Vec<(Variant, f64)> = [Variant::Baseline, Variant::Product, Variant::IdealMep]
        .into_iter()
        .map(|variant| {
            let rung = &rungs[index(variant)];
            let one = throughput(rung, 1);
            let two = throughput(rung, 2);
            (variant, two / one)
        })
        .collect();
    let scaling = |v: Variant| {
        threads
            .iter()
            .find(|(x, _)| *x == v)
            .map_or(0.0, |(_, s)| *s)
    };

    let mut render = render_ratios(if rounds >= 10 { 9 } else { 3 });

    println!("\n## Targets (paired ratios: median over rounds, IQR)\n");
    println!("| ratio | value | IQR | target | |");
    println!("|---|---:|---:|---|---|");
    target(
        "(P - B) / E_mep",
        &mut per_round(&|i| {
            (at(Variant::Product, i) - at(Variant::Baseline, i)) / at(Variant::IdealMep, i)
        }),
        "<= 1.0",
        |v| v <= 1.0,
    );
    target(
        "non-LLM span: P / B",
        &mut per_round(&|i| at(Variant::OtherSpanProduct, i) / at(Variant::OtherSpanBaseline, i)),
        "<= 1.05",
        |v| v <= 1.05,
    );
    #[cfg(feature = "bench-peers")]
    target(
        "P / tracing-opentelemetry MetricsLayer",
        &mut per_round(&|i| at(Variant::Product, i) / at(Variant::OpenTelemetry, i)),
        "<= 0.2",
        |v| v <= 0.2,
    );
    target(
        "streaming, 100 deltas: (P - B) / E_stream",
        &mut per_round(&|i| {
            (at(Variant::StreamProduct, i) - at(Variant::StreamBaseline, i))
                / at(Variant::StreamIdeal, i)
        }),
        "<= 1.5",
        |v| v <= 1.5,
    );
    let beyond = allocations[index(Variant::Product)] - ideal_allocations;
    println!(
        "| allocations per request beyond E | {beyond:+.3} | | 0 | {} |",
        if beyond <= 0.0 { "met" } else { "not met" }
    );
    let (p, b, e) = (
        scaling(Variant::Product),
        scaling(Variant::Baseline),
        scaling(Variant::IdealMep),
    );
    println!(
        "| 2-thread scaling: P (B, E_mep) | {p:.2} ({b:.2}, {e:.2}) | | >= both | {} |",
        if p >= b && p >= e { "met" } else { "not met" }
    );
    target(
        "render 25,800 series: llm-span-prometheus / MEP alone",
        &mut render,
        "<= 1.0",
        |v| v <= 1.0,
    );
    println!("\n## Other ratios (median over rounds)\n");
    println!("| ratio | value | IQR |");
    println!("|---|---:|---:|");
    let info = |name: &str, mut values: Vec<f64>| {
        let (q1, q3) = quartiles(&mut values);
        println!("| {name} | {:.3} | {q1:.3}-{q3:.3} |", median(&mut values));
    };
    info(
        "P with a trace id / P (exemplars on)",
        per_round(&|i| at(Variant::ProductTraced, i) / at(Variant::Product, i)),
    );
    info(
        "(P - B) / E (E on the exporter's storage)",
        per_round(&|i| {
            (at(Variant::Product, i) - at(Variant::Baseline, i)) / at(Variant::Ideal, i)
        }),
    );
    info(
        "E / E_mep (the exporter's storage vs plain MEP)",
        per_round(&|i| at(Variant::Ideal, i) / at(Variant::IdealMep, i)),
    );
    info(
        "P / naive layer",
        per_round(&|i| at(Variant::Product, i) / at(Variant::Naive, i)),
    );
    #[cfg(feature = "bench-peers")]
    info(
        "P / metrics-tracing-context",
        per_round(&|i| at(Variant::Product, i) / at(Variant::TracingContext, i)),
    );

    println!("\n## Allocations per request (steady state)\n");
    println!("| rung | allocations/request | beyond E |");
    println!("|---|---:|---:|");
    for (r, variant) in variants.iter().enumerate() {
        println!(
            "| {} | {:.3} | {:+.3} |",
            variant.name(),
            allocations[r],
            allocations[r] - ideal_allocations
        );
    }

    #[cfg(feature = "bench-peers")]
    containers_report(&ns, &variants, &allocations, rounds);

    println!("\n## Throughput scaling, 1 to 2 threads sharing one rung (300 ms each)\n");
    println!("| rung | 2 threads / 1 thread |");
    println!("|---|---:|");
    for (variant, ratio) in &threads {
        println!("| {} | {ratio:.2} |", variant.name());
    }

    println!("\n## Scrape\n");
    println!("| models | series | render (median of 15) | gzip of the body (median of 15) | live bytes per added model |");
    println!("|---:|---:|---:|---:|---:|");
    scrape();
}

/// Each home-made container of the layer against its replacement: the same operations per
/// request of P (or P_stream), medians over rounds, and the paired difference per round
/// as a share of P (or P_stream) measured in the same round.
#[cfg(feature = "bench-peers")]
fn containers_report(ns: &[Vec<f64>], variants: &[Variant], allocations: &[f64], rounds: usize) {
    use support::containers::Work;
    let index = |v: Variant| variants.iter().position(|x| *x == v).expect("variant");
    let at = |v: Variant, round: usize| ns[index(v)][round];
    let summary = |v: Variant| {
        let mut values = ns[index(v)].clone();
        let (q1, q3) = quartiles(&mut values);
        format!("{:.1} ({q1:.1}-{q3:.1})", median(&mut values))
    };
    println!(
        "\n## Containers: the layer's own against dashmap/std ({} callsites in the callsite maps, {} bytes of span state)\n",
        support::containers::callsite_count(),
        support::containers::span_state_bytes()
    );
    println!("Per simulated request, the container operations of one request of P or P_stream; the difference (replacement - home-made) is taken per round and divided by P or P_stream of the same round: positive means the home-made container saves that share.\n");
    println!("| container | of | home-made ns/request (IQR) | replacement ns/request (IQR) | (replacement - home-made) / P or P_stream (IQR) | allocations/request home-made, replacement |");
    println!("|---|---|---:|---:|---:|---:|");
    let pairs = [
        (
            "in-flight: DashMap<u64, state>",
            Work::InFlightHome,
            Work::InFlightDash,
            Variant::Product,
        ),
        (
            "in-flight: DashMap<u64, state>",
            Work::InFlightStreamHome,
            Work::InFlightStreamDash,
            Variant::StreamProduct,
        ),
        (
            "series: DashMap<key, Arc>",
            Work::SeriesHome,
            Work::SeriesDash,
            Variant::Product,
        ),
        (
            "series: DashMap<key, Arc>",
            Work::SeriesStreamHome,
            Work::SeriesStreamDash,
            Variant::StreamProduct,
        ),
        (
            "series: RwLock<HashMap<key, Arc>>",
            Work::SeriesHome,
            Work::SeriesRwLock,
            Variant::Product,
        ),
        (
            "series: RwLock<HashMap<key, Arc>>",
            Work::SeriesStreamHome,
            Work::SeriesStreamRwLock,
            Variant::StreamProduct,
        ),
        (
            "series: DashMap, a lookup per lane delta",
            Work::SeriesStreamHome,
            Work::SeriesStreamDashLookup,
            Variant::StreamProduct,
        ),
        (
            "series: RwLock<HashMap>, a lookup per lane delta",
            Work::SeriesStreamHome,
            Work::SeriesStreamRwLockLookup,
            Variant::StreamProduct,
        ),
        (
            "labels (now a capped DashMap): bare DashMap<Box<str>, id> foldhash",
            Work::LabelsLayer,
            Work::LabelsDash,
            Variant::Product,
        ),
        (
            "labels (now a capped DashMap): bare DashMap<Box<str>, id> foldhash",
            Work::LabelsLayer,
            Work::LabelsDash,
            Variant::StreamProduct,
        ),
        (
            "labels (now a capped DashMap): bare DashMap<Box<str>, id> SipHash",
            Work::LabelsLayer,
            Work::LabelsDashSip,
            Variant::Product,
        ),
        (
            "labels (now a capped DashMap): bare DashMap<Box<str>, id> SipHash",
            Work::LabelsLayer,
            Work::LabelsDashSip,
            Variant::StreamProduct,
        ),
        (
            "callsites (hint hit): DashMap<Identifier, class>",
            Work::CallsitesHint,
            Work::CallsitesDash,
            Variant::Product,
        ),
        (
            "callsites (hint hit): DashMap<Identifier, class>",
            Work::CallsitesStreamHint,
            Work::CallsitesStreamDash,
            Variant::StreamProduct,
        ),
        (
            "callsites (hint miss): DashMap<Identifier, class>",
            Work::CallsitesMiss,
            Work::CallsitesDash,
            Variant::Product,
        ),
        (
            "callsites (hint miss): DashMap<Identifier, class>",
            Work::CallsitesStreamMiss,
            Work::CallsitesStreamDash,
            Variant::StreamProduct,
        ),
    ];
    for (name, home, replacement, of) in pairs {
        let (home, replacement) = (Variant::Container(home), Variant::Container(replacement));
        let mut shares: Vec<f64> = (0..rounds)
            .map(|i| (at(replacement, i) - at(home, i)) / at(of, i))
            .collect();
        let (q1, q3) = quartiles(&mut shares);
        println!(
            "| {name} | {} | {} | {} | {:+.3} ({q1:+.3} to {q3:+.3}) | {:.3}, {:.3} |",
            if of == Variant::Product {
                "P"
            } else {
                "P_stream"
            },
            summary(home),
            summary(replacement),
            median(&mut shares),
            allocations[index(home)],
            allocations[index(replacement)],
        );
    }
}

/// Renders the same 200 models' series (every per-request family of the catalog, every
/// label value) through llm-span-prometheus and through plain metrics-exporter-prometheus,
/// alternating, `rounds` times: the ratios of the render times.
fn render_ratios(rounds: usize) -> Vec<f64> {
    let (ours, handle) = support::recorder();
    let mep = support::mep_recorder();
    for model in 0..200 {
        let model = format!("model-{model:03}-instruct-v0.3");
        support::fill_series(&ours, &model);
        support::fill_series(&*mep, &model);
    }
    let time = |render: &dyn Fn() -> String| {
        let started = Instant::now();
        std::hint::black_box(render());
        started.elapsed().as_secs_f64()
    };
    // Warm both (MEP folds its samples into buckets on the first render).
    time(&|| handle.render());
    time(&|| mep.handle.render());
    (0..rounds)
        .map(|_| time(&|| handle.render()) / time(&|| mep.handle.render()))
        .collect()
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
        let text = handle.render();
        let series = Scrape::parse_or_panic(&text).samples.len();
        // What a gzip scrape adds: the body compressed as /metrics does it (fastest level).
        let mut gzip_times: Vec<f64> = (0..15)
            .map(|_| {
                let started = Instant::now();
                let compressed = gzip(text.as_bytes());
                std::hint::black_box(&compressed);
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        println!(
            "| {models} | {series} | {:.2} ms | {:.2} ms, {} KiB to {} KiB | {:.0} |",
            median(&mut times),
            median(&mut gzip_times),
            text.len() / 1024,
            gzip(text.as_bytes()).len() / 1024,
            per_model
        );
    }
}

/// gzip at the fastest level, as `/metrics` compresses its answer.
fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body).expect("in memory");
    encoder.finish().expect("in memory")
}
