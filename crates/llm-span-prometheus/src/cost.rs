//! The cost counter: picodollars in, US dollars out.
//!
//! The layer counts cost in integer picodollars (`llm_cost_pico_usd_total`), the
//! granularity of its prices, so that every series and every sum of series is exact.
//! A `u64` of picodollars ends at 18.4 million USD; this counter carries past it, to
//! 3.4 * 10^26 USD, and is served as `llm_cost_usd_total` in US dollars, written as an
//! exact decimal.

use std::sync::atomic::{AtomicU64, Ordering};

/// Picodollars per US dollar.
const PICO_PER_USD: u128 = 1_000_000_000_000;

/// A picodollar counter wider than `u64`: the low word and how often it wrapped.
#[derive(Debug, Default)]
pub(crate) struct PicoCost {
    low: AtomicU64,
    wraps: AtomicU64,
}

impl PicoCost {
    /// Adds `pico` picodollars: one atomic addition, and a second on the rare wrap.
    pub(crate) fn add(&self, pico: u64) {
        let before = self.low.fetch_add(pico, Ordering::Relaxed);
        if before.checked_add(pico).is_none() {
            // Release: a reader that sees this wrap sees the low word that wrapped.
            self.wraps.fetch_add(1, Ordering::Release);
        }
    }

    /// The total, never below `floor` (the value a previous read returned): a read
    /// that lands between a wrap of the low word and its carry retries until the carry
    /// is in, and after a bounded wait returns `floor`.
    pub(crate) fn read(&self, floor: u128) -> u128 {
        for attempt in 0..10_000 {
            let wraps = self.wraps.load(Ordering::Acquire);
            let low = self.low.load(Ordering::Acquire);
            if self.wraps.load(Ordering::Acquire) != wraps {
                continue;
            }
            let total = (u128::from(wraps) << 64) | u128::from(low);
            if total >= floor {
                return total;
            }
            if attempt > 100 {
                std::thread::yield_now();
            }
        }
        floor
    }
}

impl metrics::CounterFn for PicoCost {
    fn increment(&self, value: u64) {
        self.add(value);
    }

    fn absolute(&self, value: u64) {
        // Only meaningful below the first wrap, as for any u64 counter.
        if self.wraps.load(Ordering::Acquire) == 0 {
            self.low.fetch_max(value, Ordering::Relaxed);
        }
    }
}

/// Writes picodollars as an exact decimal number of US dollars: `12.5`, `0.000000000001`.
pub(crate) fn write_usd(out: &mut String, pico: u128) {
    use std::fmt::Write;
    let whole = pico / PICO_PER_USD;
    let fraction = pico % PICO_PER_USD;
    let _ = write!(out, "{whole}");
    if fraction > 0 {
        let digits = format!("{fraction:012}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(pico: u128) -> String {
        let mut out = String::new();
        write_usd(&mut out, pico);
        out
    }

    #[test]
    fn dollars_are_written_exactly() {
        assert_eq!(usd(0), "0");
        assert_eq!(usd(1), "0.000000000001");
        assert_eq!(usd(PICO_PER_USD), "1");
        assert_eq!(usd(12 * PICO_PER_USD + 500_000_000_000), "12.5");
        assert_eq!(usd(72_000_000), "0.000072");
        // A billion dollars and a picodollar: past u64 picodollars, still exact.
        assert_eq!(
            usd(1_000_000_000 * PICO_PER_USD + 1),
            "1000000000.000000000001"
        );
    }

    #[test]
    fn the_counter_carries_past_u64() {
        let cost = PicoCost::default();
        cost.add(u64::MAX - 5);
        assert_eq!(cost.read(0), u128::from(u64::MAX - 5));
        cost.add(10);
        assert_eq!(cost.read(0), u128::from(u64::MAX) + 5);
        // A billion dollars in increments of a thousand dollars.
        let cost = PicoCost::default();
        for _ in 0..1_000_000 {
            cost.add(1000 * PICO_PER_USD as u64);
        }
        assert_eq!(cost.read(0), 1_000_000_000 * PICO_PER_USD);
    }

    #[test]
    fn concurrent_adds_across_wraps_lose_nothing_and_reads_never_go_back() {
        let cost = std::sync::Arc::new(PicoCost::default());
        cost.add(u64::MAX - 1_000_000);
        let adders: Vec<_> = (0..3)
            .map(|_| {
                let cost = std::sync::Arc::clone(&cost);
                std::thread::spawn(move || {
                    for _ in 0..200_000 {
                        cost.add(u64::MAX / 100_000);
                    }
                })
            })
            .collect();
        let mut last = 0;
        while adders.iter().any(|a| !a.is_finished()) {
            let now = cost.read(last);
            assert!(now >= last);
            last = now;
        }
        for adder in adders {
            adder.join().expect("adder");
        }
        let expected = u128::from(u64::MAX - 1_000_000) + 600_000 * u128::from(u64::MAX / 100_000);
        assert_eq!(cost.read(0), expected);
    }

    #[test]
    fn as_a_counter_it_adds_and_takes_absolute_values_below_the_first_wrap() {
        use metrics::CounterFn;
        let cost = PicoCost::default();
        cost.increment(5);
        assert_eq!(cost.read(0), 5);
        cost.absolute(3);
        assert_eq!(cost.read(0), 5, "absolute never lowers the counter");
        cost.absolute(1_000);
        assert_eq!(cost.read(0), 1_000);
        cost.increment(u64::MAX - 999);
        assert_eq!(cost.read(0), 1u128 << 64);
        cost.absolute(7_000);
        assert_eq!(
            cost.read(0),
            1u128 << 64,
            "past a wrap, absolute is ignored"
        );
    }
}
