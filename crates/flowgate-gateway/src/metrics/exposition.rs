//! The Prometheus text exposition format, version 0.0.4: `# HELP` / `# TYPE` headers, one
//! line per sample, escaped label values, histograms as cumulative `_bucket{le}` lines plus
//! `_sum` and `_count`. Also the process metrics, read from `/proc/self` at scrape time (on
//! systems without `/proc` they are left out).

use super::family::{BUCKETS, HistogramSnapshot};
use std::fmt::Write as _;

/// The `Content-Type` of a scrape answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// Builds one scrape answer.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            out: String::with_capacity(capacity),
        }
    }

    pub fn finish(self) -> String {
        self.out
    }

    /// The `# HELP` and `# TYPE` lines of a metric; call once before its samples.
    pub fn header(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample line: `name{l1="v1",...} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// The lines of one histogram series: buckets (with `le` after the given labels), `+Inf`,
    /// `_sum` in seconds and `_count`.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], snapshot: &HistogramSnapshot) {
        for ((le, _), cumulative) in BUCKETS.iter().zip(snapshot.cumulative) {
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        let _ = write!(self.out, "{name}_bucket");
        self.labels(labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", snapshot.count);
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", Seconds(snapshot.sum_nanos));
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", snapshot.count);
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        for (name, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.out.push_str(name);
            self.out.push_str("=\"");
            escape_label_value(&mut self.out, value);
            self.out.push('"');
        }
        self.out.push('}');
    }
}

/// Nanoseconds printed as exact decimal seconds (`0.000042`), no float rounding, so a sum
/// matches the millisecond header of the same request digit for digit.
#[derive(Debug, Clone, Copy)]
pub struct Seconds(pub u64);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let whole = self.0 / 1_000_000_000;
        let fraction = self.0 % 1_000_000_000;
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{fraction:09}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape_label_value(out: &mut String, value: &str) {
    for character in value.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}

/// Help text escapes backslash and line feed.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Kernel clock ticks per second for `/proc/<pid>/stat` times: `USER_HZ`, fixed at 100 in the
/// Linux user-space ABI on every architecture flowgate ships for.
const USER_HZ: f64 = 100.0;

/// The process's own figures, as Prometheus client libraries name them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    pub resident_memory_bytes: Option<u64>,
    pub virtual_memory_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub threads: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads `/proc/self`; whatever cannot be read stays `None`.
    pub fn read() -> Self {
        let mut stats = Self::default();
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            stats.resident_memory_bytes = status_kib(&status, "VmRSS:").map(|kib| kib * 1024);
            stats.virtual_memory_bytes = status_kib(&status, "VmSize:").map(|kib| kib * 1024);
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            let fields = stat_fields(&stat);
            // Fields after the command name, counted from `state` (field 3 in proc(5)).
            let field = |number: usize| {
                fields
                    .get(number - 3)
                    .and_then(|text| text.parse::<u64>().ok())
            };
            if let (Some(user), Some(system)) = (field(14), field(15)) {
                stats.cpu_seconds = Some((user + system) as f64 / USER_HZ);
            }
            stats.threads = field(20);
            if let (Some(start_ticks), Some(boot)) = (field(22), boot_time_seconds()) {
                stats.start_time_seconds = Some(boot as f64 + start_ticks as f64 / USER_HZ);
            }
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            stats.open_fds = Some(entries.count() as u64);
        }
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            stats.max_fds = limits
                .lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_whitespace().nth(3))
                .and_then(|soft| soft.parse().ok());
        }
        stats
    }

    pub fn write(&self, out: &mut Exposition) {
        let gauges: [(&str, &str, Option<f64>); 6] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                self.resident_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                self.virtual_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                self.threads.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                self.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                self.max_fds.map(|v| v as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                self.start_time_seconds,
            ),
        ];
        if let Some(cpu) = self.cpu_seconds {
            out.header(
                "process_cpu_seconds_total",
                Kind::Counter,
                "Total user and system CPU time spent in seconds.",
            );
            out.sample("process_cpu_seconds_total", &[], cpu);
        }
        for (name, help, value) in gauges {
            if let Some(value) = value {
                out.header(name, Kind::Gauge, help);
                out.sample(name, &[], value);
            }
        }
    }
}

/// A `Key:   1234 kB` line of `/proc/self/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The fields of `/proc/self/stat` after the parenthesised command name (which may itself
/// contain spaces and parentheses, hence the last `)`).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rfind(')')
        .map(|end| stat[end + 1..].split_whitespace().collect())
        .unwrap_or_default()
}

fn boot_time_seconds() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::family::Histogram;
    use std::time::Duration;

    #[test]
    fn counters_and_gauges_with_escaped_labels() {
        let mut out = Exposition::default();
        out.header(
            "flowgate_things_total",
            Kind::Counter,
            "Things.\nCounted \\ here.",
        );
        out.sample(
            "flowgate_things_total",
            &[("rule_id", "a\"b\\c\nd"), ("action", "block")],
            3,
        );
        out.sample("flowgate_things_total", &[], 0);
        assert_eq!(
            out.finish(),
            "# HELP flowgate_things_total Things.\\nCounted \\\\ here.\n\
             # TYPE flowgate_things_total counter\n\
             flowgate_things_total{rule_id=\"a\\\"b\\\\c\\nd\",action=\"block\"} 3\n\
             flowgate_things_total 0\n"
        );
    }

    #[test]
    fn histogram_lines_are_cumulative_with_inf_sum_and_count() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(30));
        histogram.observe(Duration::from_millis(700));
        histogram.observe(Duration::from_secs(11));
        let mut out = Exposition::default();
        out.histogram("h", &[("provider", "p")], &histogram.snapshot());
        let text = out.finish();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), BUCKETS.len() + 3);
        assert_eq!(lines[0], "h_bucket{provider=\"p\",le=\"0.000025\"} 0");
        assert_eq!(lines[1], "h_bucket{provider=\"p\",le=\"0.00005\"} 1");
        assert!(lines.contains(&"h_bucket{provider=\"p\",le=\"0.5\"} 1"));
        assert!(lines.contains(&"h_bucket{provider=\"p\",le=\"1\"} 2"));
        assert!(lines.contains(&"h_bucket{provider=\"p\",le=\"10\"} 2"));
        assert!(lines.contains(&"h_bucket{provider=\"p\",le=\"+Inf\"} 3"));
        assert!(lines.contains(&"h_sum{provider=\"p\"} 11.70003"));
        assert_eq!(lines[lines.len() - 1], "h_count{provider=\"p\"} 3");
    }

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(Seconds(0).to_string(), "0");
        assert_eq!(Seconds(42_000).to_string(), "0.000042");
        assert_eq!(Seconds(1_500_000_000).to_string(), "1.5");
        assert_eq!(Seconds(1).to_string(), "0.000000001");
    }

    #[test]
    fn proc_parsing() {
        assert_eq!(
            status_kib("Name:\tx\nVmRSS:\t  2048 kB\n", "VmRSS:"),
            Some(2048)
        );
        assert_eq!(status_kib("Name:\tx\n", "VmRSS:"), None);
        let fields = stat_fields("42 (my (odd) name) S 1 42 42 0 -1");
        assert_eq!(fields[0], "S");
        assert_eq!(fields[1], "1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_stats_are_read_on_linux() {
        let stats = ProcessStats::read();
        assert!(stats.resident_memory_bytes.is_some_and(|rss| rss > 0));
        assert!(stats.open_fds.is_some_and(|fds| fds > 0));
        assert!(stats.cpu_seconds.is_some());
        assert!(stats.threads.is_some_and(|threads| threads >= 1));
        let mut out = Exposition::default();
        stats.write(&mut out);
        let text = out.finish();
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(text.contains("\nprocess_resident_memory_bytes "));
        assert!(text.contains("\nprocess_open_fds "));
    }
}
