//! Process metrics in the standard `process_*` names, read from /proc at scrape time. Written by hand because the
//! usual exporters pull in a native build, and four numbers do not justify it.

use std::fmt::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static START: OnceLock<f64> = OnceLock::new();

/// Records the process start time; call once early.
pub fn mark_start() {
    START.get_or_init(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0));
}

/// Resident set size in bytes, if /proc is readable.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may contain spaces, so split after the closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// Appends the process metrics in Prometheus text format.
pub fn render(out: &mut String) {
    let mut metric = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n");
        }
    };
    metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", resident_bytes().map(|b| b as f64));
    metric("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpu_seconds());
    metric("process_open_fds", "gauge", "Number of open file descriptors.", open_fds().map(|n| n as f64));
    metric("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", START.get().copied());
}
