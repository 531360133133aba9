//! Latency samples and their summary, printed as one JSON object.

use std::fmt::Write as _;
use std::time::Duration;

/// Per-operation latencies of one workload, in nanoseconds.
#[derive(Default)]
pub struct Samples {
    ns: Vec<u64>,
}

impl Samples {
    pub fn with_capacity(n: usize) -> Samples {
        Samples {
            ns: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, d: Duration) {
        self.ns
            .push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn len(&self) -> usize {
        self.ns.len()
    }

    /// Nearest-rank percentile (p in 0..=100) in microseconds.
    fn pct_us(sorted: &[u64], p: f64) -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        let i = rank.clamp(1, sorted.len()) - 1;
        sorted[i] as f64 / 1000.0
    }

    /// The median in microseconds.
    pub fn median_us(&self) -> f64 {
        let mut s = self.ns.clone();
        s.sort_unstable();
        Self::pct_us(&s, 50.0)
    }

    /// `"median_us":…,"p99_us":…,…` (no braces), to splice into an object.
    pub fn json_fields(&self) -> String {
        let mut s = self.ns.clone();
        s.sort_unstable();
        let sum: u128 = s.iter().map(|&v| u128::from(v)).sum();
        let mean = if s.is_empty() {
            0.0
        } else {
            sum as f64 / s.len() as f64 / 1000.0
        };
        let mut out = String::new();
        let _ = write!(
            out,
            "\"samples\":{},\"median_us\":{:.1},\"p99_us\":{:.1},\"mean_us\":{:.1},\"min_us\":{:.1},\"max_us\":{:.1}",
            s.len(),
            Self::pct_us(&s, 50.0),
            Self::pct_us(&s, 99.0),
            mean,
            Self::pct_us(&s, 0.0),
            s.last().map(|&v| v as f64 / 1000.0).unwrap_or(0.0)
        );
        out
    }
}

/// A JSON string literal.
pub fn jstr(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Error tallies by kind (`"718"`, `"io"`, …), in first-seen order.
#[derive(Default)]
pub struct Errors {
    pub counts: Vec<(String, u64)>,
    pub first: Option<String>,
}

impl Errors {
    pub fn add(&mut self, kind: &str, detail: impl FnOnce() -> String) {
        if self.first.is_none() {
            self.first = Some(detail());
        }
        match self.counts.iter_mut().find(|(k, _)| k == kind) {
            Some((_, n)) => *n += 1,
            None => self.counts.push((kind.to_string(), 1)),
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }

    pub fn json_fields(&self) -> String {
        let inner: Vec<String> = self
            .counts
            .iter()
            .map(|(k, n)| format!("{}:{n}", jstr(k)))
            .collect();
        format!(
            "\"errors\":{{{}}},\"first_error\":{}",
            inner.join(","),
            self.first
                .as_deref()
                .map(jstr)
                .unwrap_or_else(|| "null".into())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(Samples::pct_us(&v, 50.0), 50.0);
        assert_eq!(Samples::pct_us(&v, 99.0), 99.0);
        assert_eq!(Samples::pct_us(&v, 0.0), 1.0);
        assert_eq!(Samples::pct_us(&[7000], 99.0), 7.0);
    }

    #[test]
    fn json_escaping() {
        assert_eq!(jstr("a\"b\\\n"), "\"a\\\"b\\\\\\u000a\"");
    }
}
