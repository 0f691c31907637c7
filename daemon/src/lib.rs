//! `arclockd`: the ArcLock daemon.
//!
//! # Layout
//!
//! - [`app`]: [`App`], the shared state every handler gets, opened once.
//! - [`server`]: [`run`]: listeners, upkeep, heartbeat, SIGHUP, graceful stop.
//! - [`config`]: the TOML schema, `ARCLOCK_*` overrides, validation.
//! - [`http`]: the rustls + hyper listener (certificate reload, connection,
//!   header, body and idle limits), the response envelope, security headers,
//!   and [`http::ApiError`]: every refusal as a value (a [`http::Code`] with
//!   its status), converted from the domain errors with `From`.
//! - [`signin`]: the sign-in service shared by the API and the kiosk (which
//!   only parse, call it and render):
//!   lockouts, liveness (passive PAD, active challenges), comparison with a
//!   decoy for unknown accounts, failure accounting, enrolment.
//! - [`api`]: the route table and one file per concern: face sign-in
//!   (`auth`), sessions and refresh tokens (`session`), the caller's account
//!   and logs, request intake, rate limits, health and public keys.
//! - [`webapp`]: the browser reference client at `/app/`, built into the
//!   binary, with its own narrow CSP and the only camera permission.
//! - [`admin`]: the operator API on a Unix socket (peer uid checked): live
//!   auth log, search, lockouts, users, health, key rotation, metrics; its
//!   bodies are `arclock-proto`'s types, which the console reads.
//! - [`audit`]: the tamper-evident trail of operator actions and security
//!   events: a hash chain in the store, its head sealed in the HSM, verified
//!   from the console.
//! - [`metrics`]: Prometheus counters and latency histograms, admin-only.
//! - [`hardening`]: checks and limits applied at start (core dumps, W^X,
//!   root, memlock, state directory permissions).
//! - [`supervisor`]: sd_notify readiness, stopping and watchdog.
//! - [`kiosk`]: the local V4L2 camera (enrol and verify from the console).
//! - [`identity`]: `UserId`, `Email`, `Name`, parsed once at the edge.
//! - [`template`]: face templates sealed under per-user keys the HSM wraps,
//!   each wrapped key bound to its whole record (a swapped template fails).
//! - [`custody`]: jobs over every wrapped key: KEK rotation, retirement of
//!   old KEKs (crypto-shredding that reaches backups), binding old records.
//! - [`token`]: RS256 or ES256 access tokens signed in the HSM; refresh
//!   token MACs.
//! - [`store`]: one trait per concern (users and credentials, logs,
//!   lockouts, sessions, challenges, the audit chain, instances), each
//!   backend (SQLite, MongoDB) a folder with one file per concern.
//! - [`timing`]: where one request's time went, step by step (slow-request
//!   log lines, opt-in `Server-Timing`).
//! - [`clock`]: the one source of wall-clock time (movable in tests).
//! - [`cli`]: man page and completions from the binary's own clap definition.
//! - [`provision`]: dev set-up of the SoftHSM2 token, its keys and a TLS cert.
//! - `fuzzing` (feature `fuzzing`): the entry points of the fuzz targets.
//!
//! The key custody lives in `arclock-hsm`, the face pipeline in `arclock-face`;
//! this crate wires them to the network and never touches key material itself.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod custody;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod hardening;
pub mod http;
pub mod identity;
pub mod kiosk;
pub mod metrics;
pub mod provision;
pub mod server;
pub mod signin;
pub mod store;
pub mod supervisor;
pub mod template;
pub mod timing;
pub mod token;
pub mod webapp;

pub use app::{App, LevelSetter, Reload, StartError, hsm_config, open_store, read_pin};
pub use config::Config;
pub use server::{HEARTBEAT_EVERY, run};
