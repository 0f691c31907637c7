//! Prometheus metrics: request counts and latency per route, verification
//! outcomes, lockouts. Served only on the admin socket (never on the public
//! port, where they would tell an attacker how their probing goes).
//!
//! Labels are bounded by construction: routes come from the route table (an
//! unknown path is `"unmatched"`, never the path itself), statuses are numbers,
//! outcomes are enums. Nothing about a user or a request's content is a label.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How a face verification (login or verify-face) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The face matched the account.
    Accept,
    /// Wrong face or unknown account (one outcome, as for the client).
    Reject,
    /// Refused before the pipeline: the account or the address is locked.
    Locked,
}

/// Whose lockout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Account,
    Ip,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
            Verdict::Locked => "locked",
        }
    }
}

impl LockKind {
    fn label(self) -> &'static str {
        match self {
            LockKind::Account => "account",
            LockKind::Ip => "ip",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LivenessLabel {
    outcome: &'static str,
}

/// Every liveness outcome label, so that each exists (at 0) from the start.
pub const LIVENESS_OUTCOMES: &[&str] = &[
    "live",
    "pose",
    "pad",
    "flat",
    "identity_switch",
    "challenge_invalid",
    "pad_unavailable",
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    subject: &'static str,
}

type Latency = Family<Route, Histogram, fn() -> Histogram>;

/// The daemon's metrics; cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    latency: Latency,
    verdicts: Family<VerdictLabel, Counter>,
    lockouts: Family<KindLabel, Counter>,
    active: Family<KindLabel, Gauge>,
    liveness: Family<LivenessLabel, Counter>,
    health_checks: Counter,
    /// Face runs begun, brought up to the pipeline's count at each scrape
    /// (under the lock, so two scrapes at once do not both add the same runs).
    face_runs: std::sync::Mutex<Counter>,
    /// Every request, and those answered 5xx, without labels: what the
    /// heartbeat reports ([`Metrics::load`]) without walking the families.
    served: Counter,
    server_errors: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Latency buckets from 1 ms to ~16 s: the face pipeline sits near 40 ms, a
/// token refresh near 4 ms, a queue under overload in seconds.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("arclock");
        let requests = Family::<RouteStatus, Counter>::default();
        let latency: Latency = Family::new_with_constructor(latency_histogram);
        let verdicts = Family::<VerdictLabel, Counter>::default();
        let lockouts = Family::<KindLabel, Counter>::default();
        let active = Family::<KindLabel, Gauge>::default();
        let liveness = Family::<LivenessLabel, Counter>::default();
        let health_checks = Counter::default();
        let face_runs = Counter::default();
        registry.register(
            "face_runs",
            "Face pipeline runs begun (a decode, the detector, the recognizer, PAD): against verifications and registrations, the face work spent on requests refused without it",
            face_runs.clone(),
        );
        registry.register(
            "health_checks",
            "Dependency checks actually run for the public /health (the rest were served from its cache)",
            health_checks.clone(),
        );
        registry.register(
            "liveness_checks",
            "Liveness verdicts (passive PAD and challenge answers) by outcome or refusal reason",
            liveness.clone(),
        );
        for outcome in LIVENESS_OUTCOMES {
            liveness.get_or_create(&LivenessLabel { outcome }).inc_by(0);
        }
        registry.register(
            "http_requests",
            "Public API requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Public API time to response headers, by route",
            latency.clone(),
        );
        registry.register(
            "verifications",
            "Face verifications (login and verify-face) by outcome",
            verdicts.clone(),
        );
        registry.register(
            "lockouts",
            "Lockouts started, by subject kind",
            lockouts.clone(),
        );
        registry.register(
            "lockouts_active",
            "Lockouts in force at the last scrape, by subject kind",
            active.clone(),
        );
        // Every verdict and kind exists from the start, so a rate over a
        // fresh daemon is 0 rather than absent.
        for outcome in [Verdict::Accept, Verdict::Reject, Verdict::Locked] {
            verdicts
                .get_or_create(&VerdictLabel {
                    outcome: outcome.label(),
                })
                .inc_by(0);
        }
        for subject in [LockKind::Account, LockKind::Ip] {
            lockouts
                .get_or_create(&KindLabel {
                    subject: subject.label(),
                })
                .inc_by(0);
        }
        Metrics {
            registry,
            requests,
            latency,
            verdicts,
            lockouts,
            active,
            liveness,
            health_checks,
            face_runs: std::sync::Mutex::new(face_runs),
            served: Counter::default(),
            server_errors: Counter::default(),
        }
    }

    /// The counters an instance's heartbeat carries, for the console's view
    /// across every daemon on one database.
    pub fn load(&self) -> crate::store::Load {
        let verdict = |v: Verdict| {
            self.verdicts
                .get_or_create(&VerdictLabel { outcome: v.label() })
                .get()
        };
        let lockouts = [LockKind::Account, LockKind::Ip]
            .into_iter()
            .map(|k| {
                self.lockouts
                    .get_or_create(&KindLabel { subject: k.label() })
                    .get()
            })
            .sum();
        crate::store::Load {
            requests: self.served.get(),
            server_errors: self.server_errors.get(),
            accepts: verdict(Verdict::Accept),
            rejects: verdict(Verdict::Reject),
            locked: verdict(Verdict::Locked),
            lockouts,
        }
    }

    /// One real dependency check for the public `/health`.
    pub fn health_check(&self) {
        self.health_checks.inc();
    }

    /// One liveness verdict: `live` or the refusal reason (one of
    /// [`LIVENESS_OUTCOMES`]).
    pub fn liveness(&self, outcome: &'static str) {
        self.liveness
            .get_or_create(&LivenessLabel { outcome })
            .inc();
    }

    /// One public API request answered.
    pub fn request(&self, route: &'static str, status: u16, took: Duration) {
        self.served.inc();
        if status >= 500 {
            self.server_errors.inc();
        }
        self.requests
            .get_or_create(&RouteStatus { route, status })
            .inc();
        self.latency
            .get_or_create(&Route { route })
            .observe(took.as_secs_f64());
    }

    pub fn verdict(&self, outcome: Verdict) {
        self.verdicts
            .get_or_create(&VerdictLabel {
                outcome: outcome.label(),
            })
            .inc();
    }

    pub fn lockout(&self, subject: LockKind) {
        self.lockouts
            .get_or_create(&KindLabel {
                subject: subject.label(),
            })
            .inc();
    }

    /// The text exposition format, with the lockouts in force counted by the
    /// caller (they live in the store, shared by every daemon on it) and the
    /// face runs begun (the pipeline counts them).
    pub fn render(&self, active_accounts: usize, active_ips: usize, face_runs: u64) -> String {
        if let Ok(counter) = self.face_runs.lock() {
            let shown = counter.get();
            if face_runs > shown {
                counter.inc_by(face_runs - shown);
            }
        }
        for (subject, n) in [
            (LockKind::Account, active_accounts),
            (LockKind::Ip, active_ips),
        ] {
            self.active
                .get_or_create(&KindLabel {
                    subject: subject.label(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            // Writing to a String cannot fail; say so rather than panic.
            out = "# encoding failed\n".into();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_routes_and_outcomes() {
        let m = Metrics::new();
        m.request("/api/auth/login", 401, Duration::from_millis(40));
        m.request("/api/auth/login", 200, Duration::from_millis(42));
        m.verdict(Verdict::Reject);
        m.lockout(LockKind::Ip);
        let text = m.render(2, 1, 3);
        assert!(
            text.contains(r#"arclock_http_requests_total{route="/api/auth/login",status="401"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"arclock_http_request_duration_seconds_count{route="/api/auth/login"} 2"#
            )
        );
        assert!(text.contains(r#"arclock_verifications_total{outcome="reject"} 1"#));
        assert!(text.contains("arclock_face_runs_total 3"), "{text}");
        assert!(text.contains(r#"arclock_verifications_total{outcome="accept"} 0"#));
        assert!(text.contains(r#"arclock_lockouts_total{subject="ip"} 1"#));
        assert!(text.contains(r#"arclock_lockouts_active{subject="account"} 2"#));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn load_counts_what_the_families_count() {
        let m = Metrics::new();
        m.request("/api/auth/login", 200, Duration::from_millis(40));
        m.request("/health", 503, Duration::from_millis(1));
        m.request("/health", 200, Duration::from_millis(1));
        m.verdict(Verdict::Accept);
        m.verdict(Verdict::Reject);
        m.verdict(Verdict::Reject);
        m.lockout(LockKind::Ip);
        m.lockout(LockKind::Account);
        assert_eq!(
            m.load(),
            crate::store::Load {
                requests: 3,
                server_errors: 1,
                accepts: 1,
                rejects: 2,
                locked: 0,
                lockouts: 2,
            }
        );
    }
}
