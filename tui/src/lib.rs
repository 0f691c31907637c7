//! `arclock-console`: the operator's terminal console for `arclockd`.
//!
//! It speaks only to the daemon's admin socket (HTTP over a Unix socket,
//! peer uid checked by the daemon), never to the public port.
//!
//! - [`client`]: the admin socket client, including the live log stream.
//! - [`model`]: the admin API's types (`arclock-proto`, shared with the
//!   daemon) and what the console derives from them to show.
//! - [`stats`]: dashboard figures from the daemon's Prometheus metrics.
//! - [`console`]: the state, its [`Mode`] (browsing, filtering, a form, a
//!   confirmation, help), and what each key does to it.
//! - [`ui`]: drawing it with ratatui, one file per view (also into text, for
//!   tests and captures).
#![forbid(unsafe_code)]

pub mod client;
pub mod console;
pub mod model;
pub mod stats;
pub mod ui;

pub use client::{Client, ClientError, LogQuery};
pub use console::{Command, Console, Link, Mode, View};
