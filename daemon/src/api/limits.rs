//! Request rate limits per client address (`governor`, GCRA): a general
//! quota on every `/api` route and a tighter one on the auth routes, each
//! answered with IETF `RateLimit-*` headers and, when exceeded, 429 with
//! `Retry-After`. IPv6 clients are limited per /64, since one host can
//! trivially own a whole prefix.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::HeaderValue;

use crate::config;
use crate::http::{ApiError, Code};

type Keyed =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;

/// Which quota a route counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Every `/api` route.
    General,
    /// Register, login, verify-face, refresh, logout: also the general quota.
    Auth,
    /// `/health`: its own, larger quota (load balancers probe it often), not
    /// the general one.
    Health,
}

struct Bucket {
    limiter: Keyed,
    limit: u32,
    window: Duration,
    code: Code,
}

/// Where a client stands in one quota, for the headers.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    limit: u32,
    remaining: u32,
    reset_secs: u64,
    window_secs: u64,
}

impl Bucket {
    fn new(limit: u32, window: Duration, code: Code) -> Option<Self> {
        let n = NonZeroU32::new(limit)?;
        let quota = Quota::with_period(window / limit)?.allow_burst(n);
        Some(Bucket {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            limit,
            window,
            code,
        })
    }

    fn check(&self, key: &IpAddr) -> Result<Standing, (Standing, Code)> {
        let per_cell = self.window / self.limit;
        match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = self.limit.saturating_sub(remaining);
                Ok(Standing {
                    limit: self.limit,
                    remaining,
                    reset_secs: (per_cell * used).as_secs_f64().ceil() as u64,
                    window_secs: self.window.as_secs(),
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err((
                    Standing {
                        limit: self.limit,
                        remaining: 0,
                        reset_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                        window_secs: self.window.as_secs(),
                    },
                    self.code,
                ))
            }
        }
    }
}

/// The quotas of `[limits]`, keyed by client address (the running limiter;
/// `config::Limits` is its configuration).
pub struct Quotas {
    general: Option<Bucket>,
    auth: Option<Bucket>,
    health: Option<Bucket>,
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas").finish_non_exhaustive()
    }
}

impl Quotas {
    /// A quota of 0 switches that limit off.
    pub fn new(c: &config::Limits) -> Self {
        let window = Duration::from_secs(c.window_secs);
        Quotas {
            general: Bucket::new(c.general, window, Code::RateLimited),
            auth: Bucket::new(c.auth, window, Code::AuthRateLimited),
            health: Bucket::new(c.health, window, Code::RateLimited),
        }
    }

    /// Counts one request; the standing to report, or the 429 to send.
    pub fn check(&self, class: Class, ip: IpAddr) -> Result<Option<Standing>, ApiError> {
        let k = crate::http::forwarded::grouped(ip);
        if class == Class::Health {
            return match &self.health {
                Some(b) => b.check(&k).map(Some).map_err(refuse),
                None => Ok(None),
            };
        }
        let general = match &self.general {
            Some(b) => Some(b.check(&k).map_err(refuse)?),
            None => None,
        };
        let auth = match (&self.auth, class) {
            (Some(b), Class::Auth) => Some(b.check(&k).map_err(refuse)?),
            _ => None,
        };
        Ok(auth.or(general))
    }

    /// Forgets clients whose quota is full again (bounds memory).
    pub fn prune(&self) {
        for b in [&self.general, &self.auth, &self.health]
            .into_iter()
            .flatten()
        {
            b.limiter.retain_recent();
            b.limiter.shrink_to_fit();
        }
    }
}

fn refuse((standing, code): (Standing, Code)) -> ApiError {
    let mut e = ApiError::new(
        code,
        "Too many requests, please try again later.",
        "rate limit exceeded",
    )
    .retry_after(standing.reset_secs);
    annotate(e.headers_mut(), &standing);
    e
}

/// `RateLimit-Limit`, `-Remaining`, `-Reset` (seconds until the quota is
/// whole again) and `-Policy` (`limit;w=window`).
pub fn annotate(h: &mut http::HeaderMap, s: &Standing) {
    for (name, value) in [
        ("ratelimit-limit", s.limit.to_string()),
        ("ratelimit-remaining", s.remaining.to_string()),
        ("ratelimit-reset", s.reset_secs.to_string()),
        (
            "ratelimit-policy",
            format!("{};w={}", s.limit, s.window_secs),
        ),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_down_then_refuses_with_retry_after() {
        let l = Quotas::new(&config::Limits {
            window_secs: 900,
            general: 100,
            auth: 3,
            health: 2,
        });
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for want in [2, 1, 0] {
            let s = l.check(Class::Auth, ip).unwrap().unwrap();
            assert_eq!((s.limit, s.remaining), (3, want));
        }
        let r = l.check(Class::Auth, ip).unwrap_err();
        assert_eq!(r.status(), 429);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=300).contains(&retry), "{retry}");
        // Another client is not affected; general routes still pass.
        assert!(l.check(Class::Auth, "192.0.2.8".parse().unwrap()).is_ok());
        assert_eq!(l.check(Class::General, ip).unwrap().unwrap().limit, 100);
        // /health counts on its own quota only.
        let general = l.check(Class::General, ip).unwrap().unwrap().remaining;
        assert_eq!(l.check(Class::Health, ip).unwrap().unwrap().limit, 2);
        assert!(l.check(Class::Health, ip).is_ok());
        assert!(l.check(Class::Health, ip).is_err());
        let after = l.check(Class::General, ip).unwrap().unwrap().remaining;
        assert_eq!(after, general - 1, "only the general check itself counted");
    }

    #[test]
    fn ipv6_hosts_share_their_64() {
        let l = Quotas::new(&config::Limits {
            window_secs: 60,
            general: 1,
            auth: 1,
            health: 1,
        });
        assert!(
            l.check(Class::General, "2001:db8::1".parse().unwrap())
                .is_ok()
        );
        assert!(
            l.check(Class::General, "2001:db8::2".parse().unwrap())
                .is_err()
        );
        assert!(
            l.check(Class::General, "2001:db8:0:1::1".parse().unwrap())
                .is_ok()
        );
    }
}
