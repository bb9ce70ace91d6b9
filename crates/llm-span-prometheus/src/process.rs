//! `process_*` metrics read from `/proc` at scrape time (feature `process`, Linux).
//!
//! The names and meanings are those of the Prometheus client libraries' process
//! collectors, so existing dashboards work. On other systems, or when `/proc` cannot be
//! read, the affected lines are left out.

use std::fmt::Write;

use crate::recorder::write_header;

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, which Linux fixes at
/// 100 in its user-space ABI on the common architectures (no libc call needed).
const USER_HZ: f64 = 100.0;

pub(crate) fn render(out: &mut String, labels: &[(String, String)]) {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // Field n of proc(5) (1-based) is fields[n - 3]: pid and comm come before.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());

    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        write_header(
            out,
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            "counter",
        );
        sample(
            out,
            "process_cpu_seconds_total",
            labels,
            (utime + stime) / USER_HZ,
        );
    }
    if let (Some(start), Some(boot)) = (field(22), boot_time()) {
        write_header(
            out,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            "gauge",
        );
        sample(
            out,
            "process_start_time_seconds",
            labels,
            boot + start / USER_HZ,
        );
    }
    if let Some(rss) = status_kib("VmRSS:") {
        write_header(
            out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            "gauge",
        );
        sample(out, "process_resident_memory_bytes", labels, rss * 1024.0);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The directory handle itself is one of the entries while we count.
        let open = dir.count().saturating_sub(1);
        write_header(
            out,
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
        );
        sample(out, "process_open_fds", labels, open as f64);
    }
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

fn sample(out: &mut String, name: &str, labels: &[(String, String)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(key);
            out.push_str("=\"");
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn renders_the_four_process_metrics() {
        let mut out = String::new();
        render(&mut out, &[("service".into(), "a\"b".into())]);
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
}
