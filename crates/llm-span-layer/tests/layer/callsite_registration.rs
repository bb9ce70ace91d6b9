//! Requests on callsites still being registered by another thread are counted.
//!
//! tracing-core lets a thread use a callsite while another thread is still
//! registering it, so the layer sees spans and events of callsites it was never told
//! about. Each `request!` below expands to new callsites, first hit by 8 threads at
//! the same moment.

use std::sync::Barrier;

use crate::support::Expect::Counter;
use crate::support::Harness;

macro_rules! request {
    () => {{
        let span = tracing::info_span!(
            "generate",
            model = "m",
            tokens_in = 3u64,
            tokens_out = tracing::field::Empty
        );
        span.in_scope(|| tracing::info!(tokens_out_delta = 2u64));
        span.record("tokens_out", 2u64);
    }};
}

fn first_hits(round: usize) {
    match round {
        0 => request!(),
        1 => request!(),
        2 => request!(),
        3 => request!(),
        4 => request!(),
        5 => request!(),
        6 => request!(),
        7 => request!(),
        8 => request!(),
        9 => request!(),
        10 => request!(),
        11 => request!(),
        12 => request!(),
        13 => request!(),
        14 => request!(),
        _ => request!(),
    }
}

#[test]
fn callsites_hit_first_by_many_threads_at_once_are_counted() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 16;
    let h = Harness::new();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                h.run(|| {
                    for round in 0..ROUNDS {
                        barrier.wait();
                        first_hits(round);
                    }
                })
            });
        }
    });
    let m = h.snapshot();
    let requests = (THREADS * ROUNDS) as u64;
    m.assert_series(&[
        Counter("llm_requests_total{model=m,status=ok}", requests),
        Counter("llm_tokens_total{model=m,type=input}", 3 * requests),
        Counter("llm_tokens_total{model=m,type=output}", 2 * requests),
    ]);
    assert_eq!(
        m.histogram("llm_ttft_seconds", &[("model", "m")]).len() as u64,
        requests
    );
}
