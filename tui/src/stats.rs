//! The dashboard's figures, read from the daemon's Prometheus text (the same
//! numbers a Prometheus server would scrape) and turned into per-interval
//! rates by differencing two scrapes.

use std::collections::VecDeque;

/// Counters from one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub requests: f64,
    pub accept: f64,
    pub reject: f64,
    pub locked: f64,
    pub lockouts_started: f64,
    pub active_lockouts: f64,
    /// Sum and count of face-route latencies (login and verify-face).
    pub face_secs: f64,
    pub face_count: f64,
    /// Liveness refusals since start, by reason (`pad`, `flat`, `pose`, ...).
    pub liveness_refused: std::collections::BTreeMap<String, f64>,
}

/// One metric line: name, labels as written, value.
fn parse_line(line: &str) -> Option<(&str, &str, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((n, rest)) => (n, rest.trim_end_matches('}')),
        None => (series, ""),
    };
    Some((name, labels, value))
}

impl Sample {
    /// Reads the series the dashboard needs; others are ignored.
    pub fn parse(text: &str) -> Self {
        let mut s = Sample::default();
        let face = |l: &str| {
            l.contains(r#"route="/api/auth/login""#)
                || l.contains(r#"route="/api/auth/verify-face""#)
        };
        for (name, labels, v) in text.lines().filter_map(parse_line) {
            match name {
                "arclock_http_requests_total" => s.requests += v,
                "arclock_verifications_total" if labels.contains(r#""accept""#) => s.accept += v,
                "arclock_verifications_total" if labels.contains(r#""reject""#) => s.reject += v,
                "arclock_verifications_total" if labels.contains(r#""locked""#) => s.locked += v,
                "arclock_lockouts_total" => s.lockouts_started += v,
                "arclock_lockouts_active" => s.active_lockouts += v,
                "arclock_liveness_checks_total" => {
                    let outcome = labels
                        .split_once("outcome=\"")
                        .and_then(|(_, rest)| rest.split('"').next())
                        .unwrap_or("");
                    if outcome != "live" && !outcome.is_empty() {
                        *s.liveness_refused.entry(outcome.to_string()).or_default() += v;
                    }
                }
                "arclock_http_request_duration_seconds_sum" if face(labels) => s.face_secs += v,
                "arclock_http_request_duration_seconds_count" if face(labels) => s.face_count += v,
                _ => {}
            }
        }
        s
    }
}

/// What happened between two scrapes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Interval {
    pub requests: u64,
    pub accept: u64,
    pub reject: u64,
    pub locked: u64,
    /// Mean face-route latency over the interval, ms (0: no face requests).
    pub face_ms: u64,
}

/// The last `capacity` intervals and the running totals.
#[derive(Debug, Clone)]
pub struct History {
    pub last: Option<Sample>,
    pub intervals: VecDeque<Interval>,
    capacity: usize,
}

impl Default for History {
    fn default() -> Self {
        History {
            last: None,
            intervals: VecDeque::new(),
            capacity: 240,
        }
    }
}

impl History {
    /// Adds a scrape. A counter that went down means the daemon restarted:
    /// the new sample is a fresh baseline, not a negative interval.
    pub fn push(&mut self, now: Sample) {
        if let Some(prev) = &self.last
            && now.requests >= prev.requests
        {
            let d = |a: f64, b: f64| (a - b).max(0.0).round() as u64;
            let n = now.face_count - prev.face_count;
            let face_ms = if n > 0.0 {
                ((now.face_secs - prev.face_secs) / n * 1000.0).round() as u64
            } else {
                0
            };
            self.intervals.push_back(Interval {
                requests: d(now.requests, prev.requests),
                accept: d(now.accept, prev.accept),
                reject: d(now.reject, prev.reject),
                locked: d(now.locked, prev.locked),
                face_ms,
            });
            while self.intervals.len() > self.capacity {
                self.intervals.pop_front();
            }
        }
        self.last = Some(now);
    }

    /// Sum of the last `n` intervals.
    pub fn recent(&self, n: usize) -> Interval {
        self.intervals
            .iter()
            .rev()
            .take(n)
            .fold(Interval::default(), |a, i| Interval {
                requests: a.requests + i.requests,
                accept: a.accept + i.accept,
                reject: a.reject + i.reject,
                locked: a.locked + i.locked,
                face_ms: a.face_ms.max(i.face_ms),
            })
    }

    /// Face latency per interval, for the sparkline.
    pub fn latency(&self) -> Vec<u64> {
        self.intervals.iter().map(|i| i.face_ms).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"# HELP arclock_http_requests Public API requests
arclock_http_requests_total{route="/api/auth/login",status="200"} 3
arclock_http_requests_total{route="/health",status="200"} 7
arclock_http_request_duration_seconds_sum{route="/api/auth/login"} 0.120
arclock_http_request_duration_seconds_count{route="/api/auth/login"} 3
arclock_http_request_duration_seconds_sum{route="/health"} 9.0
arclock_http_request_duration_seconds_count{route="/health"} 7
arclock_verifications_total{outcome="accept"} 2
arclock_verifications_total{outcome="reject"} 1
arclock_verifications_total{outcome="locked"} 0
arclock_lockouts_active{subject="account"} 1
arclock_lockouts_active{subject="ip"} 1
arclock_liveness_checks_total{outcome="live"} 4
arclock_liveness_checks_total{outcome="flat"} 2
arclock_liveness_checks_total{outcome="pad"} 0
# EOF
"#;

    #[test]
    fn parses_the_exposition_and_differences_scrapes() {
        let a = Sample::parse(A);
        assert_eq!(a.requests, 10.0);
        assert_eq!((a.accept, a.reject, a.locked), (2.0, 1.0, 0.0));
        assert_eq!(a.active_lockouts, 2.0);
        assert_eq!(a.face_count, 3.0);
        assert_eq!(
            a.liveness_refused.clone().into_iter().collect::<Vec<_>>(),
            vec![("flat".to_string(), 2.0), ("pad".to_string(), 0.0)]
        );
        let mut h = History::default();
        h.push(a.clone());
        assert!(h.intervals.is_empty());
        let b = Sample {
            requests: 14.0,
            accept: 3.0,
            face_secs: 0.220,
            face_count: 5.0,
            ..a
        };
        h.push(b);
        assert_eq!(
            h.intervals[0],
            Interval {
                requests: 4,
                accept: 1,
                reject: 0,
                locked: 0,
                face_ms: 50
            }
        );
        // A restarted daemon starts from zero: no interval, a new baseline.
        h.push(Sample::default());
        assert_eq!(h.intervals.len(), 1);
    }
}
