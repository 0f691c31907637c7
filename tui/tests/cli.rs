//! The `arclock-console` binary's command line. (Its views against a running
//! daemon, and the binary driven in tmux, are in `daemon/tests/console.rs`,
//! where the daemon harness lives; this file also makes `cargo test
//! --workspace` build the binary those tests run.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_arclock-console");

#[test]
fn help_names_the_socket_option() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--socket"), "{text}");
    assert!(text.contains("--snapshot"), "{text}");
}

#[test]
fn a_missing_daemon_is_said_plainly_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    let out = Command::new(BIN)
        .args(["--snapshot", "lockouts", "--size", "100x8", "--socket"])
        .arg(&socket)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("DISCONNECTED"), "{screen}");
    assert!(screen.contains("cannot reach arclockd"), "{screen}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did not answer"), "{err}");
    let bad = Command::new(BIN)
        .args(["--snapshot", "nowhere", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("view must be"));
}
