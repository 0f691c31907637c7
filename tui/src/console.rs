//! The console's state and what keys do to it. Nothing here draws or touches
//! the terminal, so tests drive it directly: keys in, commands out, and a
//! refresh against a real daemon.

use std::collections::VecDeque;
use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::client::{Client, ClientError, LogQuery};
use crate::model::{AdminHealth, InstanceInfo, Lockout, LogEntry, StreamEvent, User};
use crate::stats::{History, Sample};

/// The five screens, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Dashboard,
    Logs,
    Lockouts,
    Users,
    /// Every daemon sharing the store, from their heartbeats.
    Instances,
}

impl View {
    pub const ALL: [View; 5] = [
        View::Dashboard,
        View::Logs,
        View::Lockouts,
        View::Users,
        View::Instances,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Dashboard => "Dashboard",
            View::Logs => "Live log",
            View::Lockouts => "Lockouts",
            View::Users => "Users",
            View::Instances => "Instances",
        }
    }

    /// Parses a view name (for `--snapshot`).
    pub fn parse(s: &str) -> Option<View> {
        match s {
            "dashboard" => Some(View::Dashboard),
            "logs" => Some(View::Logs),
            "lockouts" => Some(View::Lockouts),
            "users" => Some(View::Users),
            "instances" => Some(View::Instances),
            _ => None,
        }
    }
}

/// Whether the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Not tried yet.
    Connecting,
    Up,
    /// Unreachable since `since`; retried every refresh.
    Down {
        since: Instant,
        reason: String,
        attempts: u32,
    },
}

/// Something the operator confirmed, to be sent to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Unlock {
        kind: String,
        key: String,
        who: String,
    },
    Disable {
        id: String,
        email: String,
    },
    Enable {
        id: String,
        email: String,
    },
    Delete {
        id: String,
        email: String,
    },
    RotateKek,
    /// Rotate, then destroy every older KEK (crypto-shredding).
    RetireKeks,
    /// Enrol a new account from the camera.
    CameraEnrol {
        name: String,
        email: String,
    },
    /// Verify the person at the camera against an account.
    CameraVerify {
        email: String,
    },
}

impl Command {
    /// Whether it visits every account (run beside the screen, progress in
    /// the dashboard, instead of holding it).
    pub fn is_key_job(&self) -> bool {
        matches!(self, Command::RotateKek | Command::RetireKeks)
    }

    /// The question the confirmation dialog asks.
    pub fn prompt(&self) -> String {
        match self {
            Command::Unlock { kind, who, .. } => format!("Lift the {kind} lockout of {who}?"),
            Command::Disable { email, .. } => format!("Disable {email}? Sign-in stops at once."),
            Command::Enable { email, .. } => format!("Enable {email}?"),
            Command::Delete { email, .. } => {
                format!("Delete {email}? Template and key are destroyed; this cannot be undone.")
            }
            Command::RotateKek => {
                "Create a new KEK version in the HSM and re-wrap every user's key?".into()
            }
            Command::RetireKeks => "Rotate, then DESTROY every older KEK? Backups and copies of \
                 the store taken before (deleted accounts too) will never open again."
                .into(),
            Command::CameraEnrol { name, email } => {
                format!("Enrol {name} <{email}> from the camera? Ask them to look at it.")
            }
            Command::CameraVerify { email } => {
                format!("Verify {email} at the camera? Ask them to look at it.")
            }
        }
    }
}

/// The enrol form: name and e-mail typed in, then the camera.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrolForm {
    pub name: String,
    pub email: String,
    /// 0: name, 1: e-mail.
    pub field: usize,
}

/// What keys go to: the views, or the one thing open on top of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mode {
    /// Keys switch views and act on the selected row.
    #[default]
    Browse,
    /// Typing the log view's filter (Enter keeps it, Esc clears it).
    Filter,
    /// The camera enrol form is open.
    Enrol(EnrolForm),
    /// A command waits for `y`; any other key cancels it.
    Confirm(Command),
    /// The help overlay; any key closes it.
    Help,
}

/// Entries kept in the live log view.
const LOG_CAPACITY: usize = 2000;
/// Accounts the users view loads.
const USERS_SHOWN: usize = 500;

/// Everything the screen shows.
#[derive(Debug)]
pub struct Console {
    pub view: View,
    pub link: Link,
    pub health: Option<AdminHealth>,
    pub history: History,
    /// Newest first.
    pub logs: VecDeque<LogEntry>,
    /// The free-text filter of the log view.
    pub filter: String,
    /// Log view: rows scrolled down from the newest (0 = following).
    pub scroll: usize,
    pub lockouts: Vec<Lockout>,
    pub users: Vec<User>,
    /// Every daemon sharing the store (alive or recently seen).
    pub instances: Vec<InstanceInfo>,
    /// Selected row in the lockouts and users views.
    pub selected: usize,
    pub mode: Mode,
    /// A message for the operator and when it was set (shown a few seconds).
    pub notice: Option<(String, Instant)>,
    pub quit: bool,
    /// Whether the log view has its first page (reloaded after a reconnect).
    logs_loaded: bool,
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Console {
    pub fn new() -> Self {
        Console {
            view: View::Dashboard,
            link: Link::Connecting,
            health: None,
            history: History::default(),
            logs: VecDeque::new(),
            filter: String::new(),
            scroll: 0,
            lockouts: Vec::new(),
            users: Vec::new(),
            instances: Vec::new(),
            selected: 0,
            mode: Mode::Browse,
            notice: None,
            quit: false,
            logs_loaded: false,
        }
    }

    pub fn notify(&mut self, text: impl Into<String>) {
        self.notice = Some((text.into(), Instant::now()));
    }

    /// Polls the daemon for everything shown. A failure marks the link down
    /// (the screen says so) and the next refresh tries again.
    pub async fn refresh(&mut self, client: &Client) {
        match self.fetch(client).await {
            Ok(()) => {
                if matches!(self.link, Link::Down { .. }) {
                    self.notify("Reconnected to arclockd");
                }
                self.link = Link::Up;
            }
            Err(e) => self.down(e),
        }
    }

    async fn fetch(&mut self, client: &Client) -> Result<(), ClientError> {
        let health = client.health().await?;
        let metrics = client.metrics().await?;
        let lockouts = client.lockouts().await?;
        let users = client.users(USERS_SHOWN).await?;
        let instances = client.instances().await?;
        if !self.logs_loaded {
            let page = client
                .logs(&LogQuery {
                    limit: Some(200),
                    ..LogQuery::default()
                })
                .await?;
            self.logs = page.into();
            self.logs_loaded = true;
        }
        self.health = Some(health);
        self.history.push(Sample::parse(&metrics));
        self.lockouts = lockouts;
        self.users = users;
        self.instances = instances;
        self.clamp_selection();
        Ok(())
    }

    /// The daemon did not answer.
    pub fn down(&mut self, e: ClientError) {
        let reason = e.to_string();
        self.link = match &self.link {
            Link::Down {
                since, attempts, ..
            } => Link::Down {
                since: *since,
                reason,
                attempts: attempts + 1,
            },
            _ => Link::Down {
                since: Instant::now(),
                reason,
                attempts: 1,
            },
        };
        // Entries written while we were away come with the next first page.
        self.logs_loaded = false;
    }

    /// A line from the live log.
    pub fn on_stream(&mut self, ev: StreamEvent) {
        match ev {
            StreamEvent::Log { entry } => {
                // Other instances' entries come from the store up to a
                // second late, and may also be on the first page loaded:
                // keep newest first and each (stored) entry once.
                if !entry.id.is_empty() && self.logs.iter().take(1000).any(|l| l.id == entry.id) {
                    return;
                }
                let at = self
                    .logs
                    .iter()
                    .position(|l| l.at_ms <= entry.at_ms)
                    .unwrap_or(self.logs.len());
                self.logs.insert(at, *entry);
                self.logs.truncate(LOG_CAPACITY);
                if self.scroll > 0 && at < self.scroll {
                    self.scroll += 1;
                }
            }
            StreamEvent::Lagged { skipped } => {
                self.notify(format!("Live log skipped {skipped} entries (too fast)"))
            }
            StreamEvent::Heartbeat { .. } => {}
        }
    }

    /// The log entries the filter lets through, newest first.
    pub fn visible_logs(&self) -> impl Iterator<Item = &LogEntry> {
        self.logs
            .iter()
            .filter(|l| crate::model::matches(l, &self.filter))
    }

    fn rows(&self) -> usize {
        match self.view {
            View::Lockouts => self.lockouts.len(),
            View::Users => self.users.len(),
            _ => 0,
        }
    }

    fn clamp_selection(&mut self) {
        self.selected = self.selected.min(self.rows().saturating_sub(1));
    }

    fn switch(&mut self, view: View) {
        self.view = view;
        self.selected = 0;
    }

    /// Applies a key; returns a command once the operator confirmed one.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return None;
        }
        match std::mem::take(&mut self.mode) {
            Mode::Confirm(cmd) => {
                if matches!(key.code, KeyCode::Char('y' | 'Y')) {
                    return Some(cmd);
                }
                self.notify("Cancelled");
            }
            Mode::Help => {}
            Mode::Enrol(form) => self.on_form_key(form, key.code),
            Mode::Filter => self.on_filter_key(key.code),
            Mode::Browse => self.on_browse_key(key.code),
        }
        None
    }

    /// The enrol form: two fields, then the confirmation.
    fn on_form_key(&mut self, mut form: EnrolForm, code: KeyCode) {
        let field = if form.field == 0 {
            &mut form.name
        } else {
            &mut form.email
        };
        match code {
            KeyCode::Esc => {
                self.notify("Cancelled");
                return;
            }
            KeyCode::Tab | KeyCode::BackTab | KeyCode::Up | KeyCode::Down => {
                form.field = 1 - form.field
            }
            KeyCode::Enter if form.field == 0 => form.field = 1,
            KeyCode::Enter => {
                self.mode = Mode::Confirm(Command::CameraEnrol {
                    name: form.name.trim().to_string(),
                    email: form.email.trim().to_string(),
                });
                return;
            }
            KeyCode::Backspace => {
                field.pop();
            }
            KeyCode::Char(c) if field.chars().count() < 100 => field.push(c),
            _ => {}
        }
        self.mode = Mode::Enrol(form);
    }

    /// Typing the log filter.
    fn on_filter_key(&mut self, code: KeyCode) {
        match code {
            KeyCode::Esc => self.filter.clear(),
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) if self.filter.len() < 80 => self.filter.push(c),
            _ => {}
        }
        // Enter keeps the filter, Esc drops it; both end the typing.
        if !matches!(code, KeyCode::Enter | KeyCode::Esc) {
            self.mode = Mode::Filter;
        }
        self.scroll = 0;
    }

    /// Views, selection and the actions on the selected row.
    fn on_browse_key(&mut self, code: KeyCode) {
        match code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Char('1') => self.switch(View::Dashboard),
            KeyCode::Char('2') => self.switch(View::Logs),
            KeyCode::Char('3') => self.switch(View::Lockouts),
            KeyCode::Char('4') => self.switch(View::Users),
            KeyCode::Char('5') => self.switch(View::Instances),
            KeyCode::Tab | KeyCode::BackTab => {
                let i = View::ALL.iter().position(|v| *v == self.view).unwrap_or(0);
                let n = View::ALL.len();
                let next = if code == KeyCode::Tab {
                    i + 1
                } else {
                    i + n - 1
                };
                self.switch(View::ALL[next % n]);
            }
            KeyCode::Down | KeyCode::Char('j') => match self.view {
                View::Logs => {
                    self.scroll =
                        (self.scroll + 1).min(self.visible_logs().count().saturating_sub(1))
                }
                _ => self.selected = (self.selected + 1).min(self.rows().saturating_sub(1)),
            },
            KeyCode::Up | KeyCode::Char('k') => match self.view {
                View::Logs => self.scroll = self.scroll.saturating_sub(1),
                _ => self.selected = self.selected.saturating_sub(1),
            },
            KeyCode::Home | KeyCode::Char('g') => {
                self.scroll = 0;
                self.selected = 0;
            }
            KeyCode::Char('/') if self.view == View::Logs => self.mode = Mode::Filter,
            KeyCode::Esc if self.view == View::Logs => {
                self.filter.clear();
                self.scroll = 0;
            }
            KeyCode::Char('u') if self.view == View::Lockouts => {
                if let Some(l) = self.lockouts.get(self.selected) {
                    self.mode = Mode::Confirm(Command::Unlock {
                        kind: l.kind.clone(),
                        key: l.key.clone(),
                        who: crate::model::who(l),
                    });
                }
            }
            KeyCode::Char(c @ ('d' | 'a' | 'x' | 'v')) if self.view == View::Users => {
                if let Some(u) = self.users.get(self.selected) {
                    let (id, email) = (u.id.clone(), u.email.clone());
                    self.mode = Mode::Confirm(match c {
                        'd' => Command::Disable { id, email },
                        'a' => Command::Enable { id, email },
                        'v' => Command::CameraVerify { email },
                        _ => Command::Delete { id, email },
                    });
                }
            }
            KeyCode::Char('e') if self.view == View::Users => {
                self.mode = Mode::Enrol(EnrolForm::default());
            }
            KeyCode::Char('R') if self.view == View::Dashboard => {
                self.mode = Mode::Confirm(Command::RotateKek);
            }
            KeyCode::Char('X') if self.view == View::Dashboard => {
                self.mode = Mode::Confirm(Command::RetireKeks);
            }
            _ => {}
        }
    }

    /// Sends a confirmed command and shows how it went.
    pub async fn execute(&mut self, client: &Client, cmd: Command) {
        let done = match &cmd {
            Command::Unlock { kind, key, who } => client
                .unlock(kind, key)
                .await
                .map(|()| format!("Lockout lifted: {who}")),
            Command::Disable { id, email } => client
                .set_enabled(id, false)
                .await
                .map(|()| format!("Disabled {email}")),
            Command::Enable { id, email } => client
                .set_enabled(id, true)
                .await
                .map(|()| format!("Enabled {email}")),
            Command::Delete { id, email } => client
                .delete_user(id)
                .await
                .map(|()| format!("Deleted {email}")),
            Command::CameraEnrol { name, email } => client
                .camera_enrol(name, email)
                .await
                .map(|u| format!("Enrolled {} from the camera", u.email)),
            Command::CameraVerify { email } => client.camera_verify(email).await.map(|b| {
                format!(
                    "Verified {email} at the camera (similarity ≥ {:.1})",
                    f32::from(b) / 10.0
                )
            }),
            Command::RotateKek | Command::RetireKeks => Self::key_job(client, &cmd).await,
        };
        match done {
            Ok(msg) => self.notify(msg),
            Err(e) => self.notify(format!("Failed: {e}")),
        }
        self.refresh(client).await;
    }

    /// Runs a key job ([`Command::is_key_job`]) to its end; what to tell the
    /// operator.
    pub async fn key_job(client: &Client, cmd: &Command) -> Result<String, ClientError> {
        match cmd {
            Command::RetireKeks => client.retire_keks().await.map(|r| {
                format!(
                    "KEK v{} holds every key ({} re-wrapped); destroyed {:?}",
                    r.version, r.tally.rewrapped, r.destroyed
                )
            }),
            _ => client.rotate_kek().await.map(|r| {
                format!(
                    "KEK v{}: {} re-wrapped, {} failed",
                    r.version, r.tally.rewrapped, r.tally.failed
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn lockout() -> Lockout {
        Lockout {
            kind: "ip".into(),
            key: "10.0.0.9".into(),
            email: None,
            user_id: None,
            until: "2026-11-25T10:00:00Z".into(),
            seconds_left: 60,
        }
    }

    #[test]
    fn unlock_needs_a_yes() {
        let mut c = Console::new();
        c.on_key(key(KeyCode::Char('3')));
        assert_eq!(c.view, View::Lockouts);
        c.lockouts = vec![lockout()];
        assert_eq!(c.on_key(key(KeyCode::Char('u'))), None);
        assert!(matches!(c.mode, Mode::Confirm(_)));
        assert_eq!(c.on_key(key(KeyCode::Char('n'))), None);
        assert_eq!(c.mode, Mode::Browse);
        c.on_key(key(KeyCode::Char('u')));
        let cmd = c.on_key(key(KeyCode::Char('y')));
        assert!(matches!(cmd, Some(Command::Unlock { ref key, .. }) if key == "10.0.0.9"));
    }

    #[test]
    fn the_enrol_form_collects_name_and_email_then_confirms() {
        let mut c = Console::new();
        c.on_key(key(KeyCode::Char('4')));
        c.on_key(key(KeyCode::Char('e')));
        for ch in "Ada q".chars() {
            c.on_key(key(KeyCode::Char(ch)));
        }
        c.on_key(key(KeyCode::Backspace));
        c.on_key(key(KeyCode::Enter));
        for ch in "ada@example.org".chars() {
            c.on_key(key(KeyCode::Char(ch)));
        }
        assert!(!c.quit, "typing q in the form must not quit");
        assert_eq!(c.on_key(key(KeyCode::Enter)), None);
        let cmd = c.on_key(key(KeyCode::Char('y')));
        assert_eq!(
            cmd,
            Some(Command::CameraEnrol {
                name: "Ada".into(),
                email: "ada@example.org".into()
            })
        );
    }

    fn entry(id: &str, at_ms: i64) -> StreamEvent {
        StreamEvent::Log {
            entry: Box::new(LogEntry {
                id: id.into(),
                at: String::new(),
                at_ms,
                user_id: None,
                action: "login".into(),
                outcome: "success".into(),
                reason: None,
                similarity_bucket: None,
                ip: None,
                device: None,
                instance: None,
            }),
        }
    }

    /// Another instance's entry comes from the store up to a second late,
    /// and possibly twice (also on the first page): it takes its place in
    /// time, once; this daemon's own entries carry no id and are all kept.
    #[test]
    fn late_entries_take_their_place_in_time_once() {
        let mut c = Console::new();
        for ev in [
            entry("", 100),
            entry("", 300),
            entry("7", 200),
            entry("7", 200),
            entry("", 300),
        ] {
            c.on_stream(ev);
        }
        let order: Vec<_> = c.logs.iter().map(|l| (l.id.as_str(), l.at_ms)).collect();
        assert_eq!(order, [("", 300), ("", 300), ("7", 200), ("", 100)]);
    }

    #[test]
    fn filter_typing_does_not_trigger_shortcuts() {
        let mut c = Console::new();
        c.on_key(key(KeyCode::Char('2')));
        c.on_key(key(KeyCode::Char('/')));
        for ch in "q4u".chars() {
            c.on_key(key(KeyCode::Char(ch)));
        }
        assert!(!c.quit);
        assert_eq!(c.view, View::Logs);
        assert_eq!(c.filter, "q4u");
        c.on_key(key(KeyCode::Enter));
        c.on_key(key(KeyCode::Tab));
        assert_eq!(c.view, View::Lockouts);
    }
}
