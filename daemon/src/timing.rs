//! Where one request's time went: a timeline of named steps (body intake,
//! waiting for a face worker, decode, detect, ..., store, HSM, signing),
//! recorded from anywhere in the request's task without threading a
//! parameter through every call.
//!
//! Slow requests are what users and load balancers notice, and a p99 alone
//! cannot say which step stalled. The API dispatcher runs every request in a
//! [`scope`]; steps add their durations with [`record`] or [`timed`] (no-ops
//! outside a scope, e.g. in the admin API or a test calling the store
//! directly). The timeline then goes to the journal when the request was
//! slow (`[server] slow_request_ms`) and, only if the operator asks for it,
//! to the client as a `Server-Timing` header (`[server] server_timing`:
//! step durations tell a client more than it should know, so it is off by
//! default and meant for benchmarks and staging).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, Instant};

/// A step of the request path, in the order a sign-in meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reading the body into locked memory (includes the client's upload).
    Intake,
    /// Allocating (mlock + MADV_DONTDUMP) locked buffers.
    Lock,
    /// Waiting for a face worker (permit and blocking-pool thread).
    Queue,
    Decode,
    Detect,
    Align,
    /// Passive presentation-attack detection.
    Pad,
    Embed,
    /// Waiting for the store: a blocking-pool thread and the connection.
    StoreWait,
    /// Store statements, commits and their fsyncs.
    Store,
    /// Key unwrap (and wrap) inside the HSM.
    Hsm,
    /// ECIES decryption of the template and the comparison.
    Decrypt,
    /// The access token's signature in the HSM.
    Sign,
}

impl Step {
    /// Every step, in display order.
    pub const ALL: [Step; 13] = [
        Step::Intake,
        Step::Lock,
        Step::Queue,
        Step::Decode,
        Step::Detect,
        Step::Align,
        Step::Pad,
        Step::Embed,
        Step::StoreWait,
        Step::Store,
        Step::Hsm,
        Step::Decrypt,
        Step::Sign,
    ];

    /// The name in `Server-Timing` and the journal (a token: no spaces).
    pub fn name(self) -> &'static str {
        match self {
            Step::Intake => "intake",
            Step::Lock => "lock",
            Step::Queue => "queue",
            Step::Decode => "decode",
            Step::Detect => "detect",
            Step::Align => "align",
            Step::Pad => "pad",
            Step::Embed => "embed",
            Step::StoreWait => "store_wait",
            Step::Store => "store",
            Step::Hsm => "hsm",
            Step::Decrypt => "decrypt",
            Step::Sign => "sign",
        }
    }
}

/// The steps of one request: time summed per step (a request may meet a step
/// several times: seven store calls, three frames), and how often.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    spent: [Duration; Step::ALL.len()],
    calls: [u32; Step::ALL.len()],
    /// The whole handler, from routing to the response being built.
    pub total: Duration,
}

impl Timeline {
    fn add(&mut self, step: Step, d: Duration) {
        let i = step as usize;
        self.spent[i] += d;
        self.calls[i] += 1;
    }

    /// Time spent in `step`.
    pub fn spent(&self, step: Step) -> Duration {
        self.spent[step as usize]
    }

    /// The `Server-Timing` value (W3C Server Timing): every step met, then
    /// `total`, in milliseconds.
    pub fn server_timing(&self) -> String {
        let mut out = String::new();
        for s in Step::ALL {
            if self.calls[s as usize] > 0 {
                let _ = write!(
                    out,
                    "{};dur={:.3}, ",
                    s.name(),
                    self.spent(s).as_secs_f64() * 1e3
                );
            }
        }
        let _ = write!(out, "total;dur={:.3}", self.total.as_secs_f64() * 1e3);
        out
    }
}

impl std::fmt::Display for Timeline {
    /// `store=12.1ms(7) hsm=0.3ms(1) ...`: the journal's form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in Step::ALL {
            let n = self.calls[s as usize];
            if n > 0 {
                write!(
                    f,
                    "{}={:.1}ms({n}) ",
                    s.name(),
                    self.spent(s).as_secs_f64() * 1e3
                )?;
            }
        }
        write!(f, "total={:.1}ms", self.total.as_secs_f64() * 1e3)
    }
}

tokio::task_local! {
    static TIMELINE: RefCell<Timeline>;
}

/// Runs `fut` with a fresh timeline and returns both (`total` is the wall
/// time of `fut`).
pub async fn scope<F: Future>(fut: F) -> (F::Output, Timeline) {
    let started = Instant::now();
    TIMELINE
        .scope(RefCell::new(Timeline::default()), async move {
            let out = fut.await;
            let mut t = TIMELINE.with(|t| t.borrow().clone());
            t.total = started.elapsed();
            (out, t)
        })
        .await
}

/// Adds `d` to `step` of the current request (nothing outside a [`scope`]).
pub fn record(step: Step, d: Duration) {
    let _ = TIMELINE.try_with(|t| t.borrow_mut().add(step, d));
}

/// Awaits `fut`, recording its wall time as `step`.
pub async fn timed<F: Future>(step: Step, fut: F) -> F::Output {
    let started = Instant::now();
    let out = fut.await;
    record(step, started.elapsed());
    out
}

/// Runs `f`, recording its wall time as `step` (the synchronous [`timed`]).
pub fn measured<T>(step: Step, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    record(step, started.elapsed());
    out
}

/// The face pipeline's own split of one run, recorded as steps.
pub fn record_face(t: &arclock_face::Timings) {
    record(Step::Queue, t.queue);
    record(Step::Decode, t.decode);
    record(Step::Detect, t.detect);
    record(Step::Align, t.align);
    if !t.pad.is_zero() {
        record(Step::Pad, t.pad);
    }
    record(Step::Embed, t.embed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn steps_add_up_inside_a_scope_only() {
        record(Step::Store, Duration::from_millis(5)); // outside: ignored
        let ((), t) = scope(async {
            record(Step::Store, Duration::from_millis(2));
            record(Step::Store, Duration::from_millis(3));
            timed(Step::Sign, tokio::time::sleep(Duration::from_millis(10))).await;
        })
        .await;
        assert_eq!(t.spent(Step::Store), Duration::from_millis(5));
        assert!(t.spent(Step::Sign) >= Duration::from_millis(10));
        assert!(t.total >= t.spent(Step::Sign));
        let header = t.server_timing();
        assert!(header.starts_with("store;dur=5.000, sign;dur="), "{header}");
        assert!(header.contains(", total;dur="), "{header}");
        assert!(t.to_string().starts_with("store=5.0ms(2) sign="), "{t}");
    }
}
