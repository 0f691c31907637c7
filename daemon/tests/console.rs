//! `arclock-console` against the real daemon: its views drawn into ratatui's
//! `TestBackend` and read back as text, and the real binary driven in tmux.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use arclock_console::ui::render_text;
use arclock_console::{Client, Command as Action, Console, Link, View};
use common::{Daemon, Instance, lfw_base64 as photo};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;

/// A key press as crossterm delivers it.
fn press(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn key(c: char) -> KeyEvent {
    press(KeyCode::Char(c))
}

const EMAIL: &str = "linus@example.org";

async fn post(d: &Daemon, path: &str, body: serde_json::Value) -> u16 {
    d.post(path, &body).await.0
}

/// The address's failure ceiling as low as the account's (by default it is
/// ten times higher), so that five wrong faces lock both.
const LOCK_THE_ADDRESS_TOO: &[(&str, &str)] = &[("ARCLOCK_AUTH_MAX_FAILURES_PER_ADDRESS", "5")];

/// One account, locked out (and its address with it) by five wrong faces.
async fn locked_out_account(d: &Daemon) {
    let reg = json!({"name": "Linus", "email": EMAIL, "imageBase64": photo("Aaron_Peirsol", 1)});
    assert_eq!(post(d, "/api/auth/register", reg).await, 201);
    for _ in 0..5 {
        let bad = json!({"email": EMAIL, "imageBase64": photo("Adam_Sandler", 1)});
        assert_eq!(post(d, "/api/auth/login", bad).await, 401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_show_the_daemon_and_actions_take_effect() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start_with(LOCK_THE_ADDRESS_TOO);
    locked_out_account(&d).await;
    let client = Client::new(inst.path("admin.sock"));
    let mut c = Console::new();
    c.refresh(&client).await;
    assert_eq!(c.link, Link::Up);

    // Dashboard: traffic since start and every dependency.
    let text = render_text(&c, 120, 32);
    assert!(text.contains("● connected"), "{text}");
    assert!(text.contains("5 rejected"), "{text}");
    for dep in ["hsm", "store", "models", "keys"] {
        assert!(text.contains(dep), "{dep} missing:\n{text}");
    }
    assert!(text.contains("KEK versions [1]"), "{text}");

    // Logs: the failures, then filtered down to the lockout trigger's peers.
    c.on_key(key('2'));
    let text = render_text(&c, 120, 32);
    assert_eq!(text.matches("no match").count(), 5, "{text}");
    assert!(text.contains("register"), "{text}");
    c.on_key(key('/'));
    for ch in "regis".chars() {
        c.on_key(key(ch));
    }
    let text = render_text(&c, 120, 32);
    assert!(text.contains("Filter: regis"), "{text}");
    assert!(!text.contains("no match"), "{text}");
    assert!(text.contains("1 of 6 entries"), "{text}");

    // Lockouts: the fresh lockout is there, named by e-mail; unlock removes it.
    c.on_key(press(KeyCode::Enter));
    c.on_key(key('3'));
    let text = render_text(&c, 120, 32);
    assert!(text.contains(EMAIL), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(c.on_key(key('u')).is_none());
    let text = render_text(&c, 120, 32);
    assert!(
        text.contains(&format!("Lift the account lockout of {EMAIL}?")),
        "{text}"
    );
    let cmd = c.on_key(key('y')).expect("confirmed");
    c.execute(&client, cmd).await;
    let text = render_text(&c, 120, 32);
    assert!(text.contains(&format!("Lockout lifted: {EMAIL}")), "{text}");
    assert!(!text.contains(&format!("│▶ account  {EMAIL}")), "{text}");
    assert_eq!(c.lockouts.len(), 1);

    // Users: disable through the dialog, and the view says so.
    c.on_key(key('4'));
    let text = render_text(&c, 120, 32);
    assert!(text.contains(EMAIL) && text.contains("active"), "{text}");
    c.on_key(key('d'));
    let cmd = c.on_key(key('y')).expect("confirmed");
    assert!(matches!(cmd, Action::Disable { .. }));
    c.execute(&client, cmd).await;
    let text = render_text(&c, 120, 32);
    assert!(text.contains("disabled"), "{text}");

    // Camera actions reach the daemon and its answer is shown (no camera here).
    c.on_key(key('v'));
    let text = render_text(&c, 120, 32);
    assert!(
        text.contains(&format!("Verify {EMAIL} at the camera?")),
        "{text}"
    );
    let cmd = c.on_key(key('y')).expect("confirmed");
    c.execute(&client, cmd).await;
    let text = render_text(&c, 120, 32);
    assert!(text.contains("Failed: No camera is configured"), "{text}");
    c.on_key(key('e'));
    let text = render_text(&c, 120, 32);
    assert!(text.contains("Enrol from the camera"), "{text}");
    c.on_key(press(KeyCode::Esc));
    assert_eq!(c.mode, arclock_console::Mode::Browse);

    // Instances: this daemon, from its heartbeat in the store.
    c.on_key(key('5'));
    assert_eq!(c.view, View::Instances);
    let text = render_text(&c, 120, 32);
    assert!(text.contains("(this)") && text.contains("yes"), "{text}");
    assert_eq!(c.instances.len(), 1, "{text}");
    assert!(text.contains(&d.child.id().to_string()), "{text}");
    c.on_key(key('4'));

    // The daemon goes away: the screen says so; it comes back: reconnected.
    drop(d);
    c.refresh(&client).await;
    let text = render_text(&c, 120, 32);
    assert!(text.contains("DISCONNECTED"), "{text}");
    assert!(text.contains("cannot reach arclockd"), "{text}");
    let _d = inst.start();
    c.refresh(&client).await;
    let text = render_text(&c, 120, 32);
    assert!(text.contains("● connected"), "{text}");
    assert!(text.contains("Reconnected to arclockd"), "{text}");
    assert_eq!(c.view, View::Users);
}

/// A private tmux server for one test.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is installed by `make setup`")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "console"]).stdout)
            .into_owned()
    }

    fn keys(&self, keys: &str) {
        assert!(
            self.run(&["send-keys", "-t", "console", keys])
                .status
                .success()
        );
    }

    /// Waits until the screen shows `text`.
    fn expect(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} never appeared; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_binary_in_tmux() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start_with(LOCK_THE_ADDRESS_TOO);
    locked_out_account(&d).await;
    let tmux = Tmux {
        socket: format!("arclock-test-{}", std::process::id()),
    };
    let cmd = format!(
        "{} --socket {}",
        common::console_bin().display(),
        inst.path("admin.sock").display()
    );
    let out = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "console",
        "-x",
        "120",
        "-y",
        "32",
        &cmd,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tmux.expect("● connected");
    tmux.expect("Dependencies");

    tmux.keys("3");
    tmux.expect(EMAIL);
    tmux.keys("u");
    tmux.expect("Confirm");
    tmux.keys("y");
    let screen = tmux.expect(&format!("Lockout lifted: {EMAIL}"));
    assert!(screen.contains("127.0.0.1"), "{screen}");

    tmux.keys("2");
    tmux.expect("unlock account by operator uid");
    tmux.keys("?");
    tmux.expect("Every action asks for confirmation");
    tmux.keys("Escape");

    drop(d);
    tmux.expect("DISCONNECTED");
    let _d = inst.start();
    tmux.expect("● connected");

    tmux.keys("q");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.run(&["has-session", "-t", "console"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "q did not quit:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
