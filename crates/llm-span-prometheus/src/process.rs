//! `process_*` metrics read from `/proc` at scrape time (feature `process`, Linux).
//!
//! The names and meanings are those of the Prometheus client libraries' process
//! collectors, so existing dashboards work. On other systems, or when `/proc` cannot be
//! read, the affected lines are left out.

use std::sync::Arc;

use crate::exposition::{CounterValue, Family, Samples};

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, which Linux fixes at
/// 100 in its user-space ABI on the common architectures (no libc call needed).
const USER_HZ: f64 = 100.0;

/// The process families readable now, with `labels` (label pairs as written) on each
/// sample.
pub(crate) fn families(labels: &Arc<str>) -> Vec<Family> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // Field n of proc(5) (1-based) is fields[n - 3]: pid and comm come before.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let family = |name: &'static str, kind: &'static str, help: &str, value: f64| {
        let labels = Arc::clone(labels);
        Family {
            name: name.into(),
            help: Some(help.into()),
            samples: if kind == "counter" {
                Samples::Counter(vec![(labels, CounterValue::Float(value))])
            } else {
                Samples::Gauge(vec![(labels, value)])
            },
        }
    };
    let mut families = Vec::with_capacity(4);
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        families.push(family(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (utime + stime) / USER_HZ,
        ));
    }
    if let (Some(start), Some(boot)) = (field(22), boot_time()) {
        families.push(family(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            boot + start / USER_HZ,
        ));
    }
    if let Some(rss) = status_kib("VmRSS:") {
        families.push(family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss * 1024.0,
        ));
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The directory handle itself is one of the entries while we count.
        let open = dir.count().saturating_sub(1);
        families.push(family(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            open as f64,
        ));
    }
    families
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn status_kib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix(field))?;
    line.split_whitespace().next()?.parse().ok()
}

// Two attributes: cargo-mutants leaves code under a plain `#[cfg(test)]` unmutated.
#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests {
    use super::*;

    fn render(labels: &Arc<str>) -> String {
        crate::exposition::write(families(labels), crate::exposition::Format::Text)
    }

    #[test]
    fn renders_the_four_process_metrics() {
        let out = render(&"service=\"a\\\"b\"".into());
        for name in [
            "process_cpu_seconds_total",
            "process_start_time_seconds",
            "process_resident_memory_bytes",
            "process_open_fds",
        ] {
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("{name}{{")))
                .unwrap_or_else(|| panic!("{name} missing in {out}"));
            assert!(line.contains("service=\"a\\\"b\""), "{line}");
            let value: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .expect("numeric value");
            assert!(value >= 0.0, "{line}");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after epoch")
            .as_secs_f64();
        let start: f64 = out
            .lines()
            .find(|l| l.starts_with("process_start_time_seconds{"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .expect("start time");
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "{start} vs {now}"
        );
    }

    /// `utime + stime` of this process, in clock ticks, and VmRSS in KiB, read here
    /// independently of the code under test.
    fn ticks_and_rss_kib() -> (f64, f64) {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
        let fields: Vec<f64> = stat
            .rsplit_once(')')
            .expect("comm")
            .1
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(f64::NAN))
            .collect();
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS");
        // proc(5) fields 14 and 15, counted from 1 with pid and comm before the rest.
        (fields[11] + fields[12], rss)
    }

    fn value_of(out: &str, name: &str) -> f64 {
        out.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {out}"))
    }

    #[test]
    fn values_are_those_of_proc_in_seconds_and_bytes() {
        // Spend CPU time in user space and in the kernel (reading /proc is system time),
        // at least 0.03 s of each, so that a wrong sum or scale cannot match by chance.
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        loop {
            let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
            let fields: Vec<u64> = stat
                .rsplit_once(')')
                .expect("comm")
                .1
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            if (fields[11] >= 3 && fields[12] >= 3) || started.elapsed().as_secs() > 20 {
                break;
            }
            for _ in 0..100 {
                std::hint::black_box(std::fs::read_to_string("/proc/self/stat").ok());
            }
            for i in 0..50_000u64 {
                spin = std::hint::black_box(spin.wrapping_mul(31).wrapping_add(i));
            }
        }
        let (ticks_before, rss_before) = ticks_and_rss_kib();
        let out = render(&"".into());
        let (ticks_after, rss_after) = ticks_and_rss_kib();
        let cpu = value_of(&out, "process_cpu_seconds_total");
        assert!(
            ticks_before / 100.0 <= cpu && cpu <= ticks_after / 100.0,
            "{cpu} s of CPU, {ticks_before} to {ticks_after} ticks"
        );
        let rss = value_of(&out, "process_resident_memory_bytes");
        let (low, high) = (rss_before.min(rss_after), rss_before.max(rss_after));
        assert!(
            low * 1024.0 / 2.0 <= rss && rss <= high * 1024.0 * 2.0,
            "{rss} bytes resident, VmRSS {rss_before} to {rss_after} KiB"
        );
        // This test binary started a moment ago (and started after the machine booted).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after epoch")
            .as_secs_f64();
        let start = value_of(&out, "process_start_time_seconds");
        assert!(
            now - 300.0 < start && start <= now + 1.0,
            "started at {start}, now {now}"
        );
    }
}
