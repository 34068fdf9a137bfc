//! The figures one run prints, as a single JSON line.

use hdrhistogram::Histogram;
use serde_json::json;

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Requests whose replies all arrived.
    pub requests: u64,
    /// Requests among `requests` with an error reply, or a `WAIT` reply below N.
    pub errors: u64,
    /// Length of the load phase.
    pub seconds: f64,
    /// Successful requests (`requests - errors`) per second.
    pub ops_per_sec: f64,
    /// Median latency of successful requests, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency of successful requests, in milliseconds.
    pub p99_ms: f64,
    /// Slowest successful request, in milliseconds.
    pub max_ms: f64,
    /// Whether the time bound ended the run before every request was done.
    pub timed_out: bool,
}

impl Report {
    /// Builds a report from counts, the load phase length and a histogram of successful
    /// requests' latencies in microseconds.
    #[must_use]
    pub fn new(
        requests: u64,
        errors: u64,
        seconds: f64,
        latency_us: &Histogram<u64>,
        timed_out: bool,
    ) -> Self {
        let ok = requests.saturating_sub(errors);
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let ops_per_sec = if seconds > 0.0 {
            ok as f64 / seconds
        } else {
            0.0
        };
        let ms = |us: u64| {
            #[allow(clippy::cast_precision_loss)] // latencies far below 2^52 µs
            let v = us as f64 / 1000.0;
            v
        };
        let (p50, p99, max) = if latency_us.is_empty() {
            (0, 0, 0)
        } else {
            (
                latency_us.value_at_quantile(0.50),
                latency_us.value_at_quantile(0.99),
                latency_us.max(),
            )
        };
        Self {
            requests,
            errors,
            seconds,
            ops_per_sec,
            p50_ms: ms(p50),
            p99_ms: ms(p99),
            max_ms: ms(max),
            timed_out,
        }
    }

    /// The report as one line of JSON, figures rounded for reading.
    #[must_use]
    pub fn to_json_line(&self) -> String {
        let round = |x: f64, places: i32| {
            let scale = 10f64.powi(places);
            (x * scale).round() / scale
        };
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "ops_per_sec": round(self.ops_per_sec, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "timed_out": self.timed_out,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_the_documented_keys() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let r = Report::new(1010, 10, 2.0, &h, false);
        assert!((r.ops_per_sec - 500.0).abs() < 1e-9);
        let v: serde_json::Value = serde_json::from_str(&r.to_json_line()).unwrap();
        assert_eq!(v["requests"], 1010);
        assert_eq!(v["errors"], 10);
        assert_eq!(v["ops_per_sec"], 500.0);
        assert_eq!(v["p50_ms"], 0.5);
        assert_eq!(v["max_ms"], 1.0);
        assert_eq!(v["timed_out"], false);
        assert!(v["p99_ms"].as_f64().unwrap() >= 0.99);
    }

    #[test]
    fn empty_run_reports_zeros_not_nan() {
        let h = Histogram::<u64>::new_with_bounds(1, 1000, 3).unwrap();
        let line = Report::new(0, 0, 0.0, &h, true).to_json_line();
        assert!(!line.contains("null"), "{line}");
        assert!(line.contains("\"timed_out\":true"), "{line}");
    }
}
