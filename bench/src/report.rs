//! Latency samples and the markdown report every benchmark appends to.

use std::fmt::Write as _;
use std::time::Duration;

/// Latencies of one measured operation, summarised as median and p95 (the
/// figures the issues ask for; means hide the tail on noisy machines).
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `q`-quantile (nearest rank), in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut v = self.0.clone();
        v.sort_unstable();
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[rank].as_secs_f64() * 1e3
    }

    pub fn median_ms(&self) -> f64 {
        self.quantile_ms(0.5)
    }

    pub fn p95_ms(&self) -> f64 {
        self.quantile_ms(0.95)
    }
}

/// The markdown document written to `bench/results/`.
#[derive(Debug, Default)]
pub struct Report {
    text: String,
}

impl Report {
    pub fn new(title: &str, facts: &[(String, String)]) -> Self {
        let mut text = format!("# {title}\n\n");
        for (k, v) in facts {
            let _ = writeln!(text, "- {k}: {v}");
        }
        text.push('\n');
        Report { text }
    }

    /// Starts a section with a markdown table header.
    pub fn table(&mut self, heading: &str, note: &str, columns: &[&str]) {
        let _ = write!(self.text, "## {heading}\n\n");
        if !note.is_empty() {
            let _ = write!(self.text, "{note}\n\n");
        }
        let _ = writeln!(self.text, "| {} |", columns.join(" | "));
        let _ = writeln!(
            self.text,
            "|{}",
            columns.iter().map(|_| "---|").collect::<String>()
        );
    }

    pub fn row(&mut self, cells: &[String]) {
        let _ = writeln!(self.text, "| {} |", cells.join(" | "));
        print!(
            "{}",
            self.text
                .lines()
                .last()
                .map(|l| format!("{l}\n"))
                .unwrap_or_default()
        );
    }

    /// Free text after a table (ratios, caveats).
    pub fn para(&mut self, text: &str) {
        let _ = write!(self.text, "{text}\n\n");
        println!("{text}");
    }

    pub fn end_table(&mut self) {
        self.text.push('\n');
    }

    pub fn into_string(self) -> String {
        self.text
    }
}

/// `x` with a sensible number of digits for a table cell.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}
