//! Drawing: a tab bar with the link state, the current view, a key-hint line,
//! and the help and confirmation overlays. Every layout is computed from the
//! frame's size each time, so resizing (even to a few cells) never breaks it.

use ratatui::Frame;
use ratatui::backend::TestBackend;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState, Tabs, Wrap,
};

use crate::console::{Console, Link, View};

/// Notices stay on screen this long.
const NOTICE_SECS: u64 = 6;

pub fn draw(f: &mut Frame, c: &Console) {
    let [top, body, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(f.area());
    tabs(f, c, top);
    let body = match &c.link {
        Link::Down { reason, .. } => {
            let [banner, rest] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(body);
            f.render_widget(
                Paragraph::new(format!(" {reason}; retrying every second"))
                    .style(Style::new().fg(Color::Red).bold()),
                banner,
            );
            rest
        }
        _ => body,
    };
    match c.view {
        View::Dashboard => dashboard(f, c, body),
        View::Logs => logs(f, c, body),
        View::Lockouts => lockouts(f, c, body),
        View::Users => users(f, c, body),
        View::Instances => instances(f, c, body),
    }
    key_hints(f, c, hints);
    if let Some(form) = &c.form {
        enrol_form(f, form);
    }
    if let Some(cmd) = &c.confirm {
        confirm(f, &cmd.prompt());
    }
    if c.help {
        help(f);
    }
}

/// The console drawn into a `width` x `height` text grid, lines joined by
/// `\n` (tests, `--snapshot`, the README's captures).
pub fn render_text(c: &Console, width: u16, height: u16) -> String {
    let mut terminal = match ratatui::Terminal::new(TestBackend::new(width, height)) {
        Ok(t) => t,
        Err(e) => return format!("cannot render: {e}"),
    };
    if let Err(e) = terminal.draw(|f| draw(f, c)) {
        return format!("cannot render: {e}");
    }
    let buf = terminal.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn tabs(f: &mut Frame, c: &Console, area: Rect) {
    let link = match &c.link {
        Link::Connecting => Span::styled(" connecting… ", Style::new().fg(Color::Yellow)),
        Link::Up => Span::styled(" ● connected ", Style::new().fg(Color::Green)),
        Link::Down {
            since, attempts, ..
        } => Span::styled(
            format!(
                " ✖ DISCONNECTED {}s, reconnecting (try {attempts}) ",
                since.elapsed().as_secs()
            ),
            Style::new().fg(Color::White).bg(Color::Red).bold(),
        ),
    };
    let width = u16::try_from(link.width()).unwrap_or(u16::MAX);
    let [left, right] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(width)]).areas(area);
    let titles = View::ALL
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{} {}", i + 1, v.title()));
    let selected = View::ALL.iter().position(|v| *v == c.view);
    f.render_widget(
        Tabs::new(titles)
            .select(selected)
            .highlight_style(Style::new().reversed())
            .divider("│"),
        left,
    );
    f.render_widget(Paragraph::new(link), right);
}

fn key_hints(f: &mut Frame, c: &Console, area: Rect) {
    if let Some((text, at)) = &c.notice
        && at.elapsed().as_secs() < NOTICE_SECS
    {
        f.render_widget(
            Paragraph::new(text.as_str()).style(Style::new().fg(Color::Black).bg(Color::Yellow)),
            area,
        );
        return;
    }
    let keys: &[(&str, &str)] = match (c.view, c.editing_filter) {
        (View::Logs, true) => &[("type", "filter"), ("Enter", "apply"), ("Esc", "clear")],
        (View::Dashboard, _) => &[
            ("1-5/Tab", "view"),
            ("R", "rotate KEK"),
            ("X", "retire old KEKs"),
            ("?", "help"),
            ("q", "quit"),
        ],
        (View::Logs, _) => &[
            ("1-5/Tab", "view"),
            ("/", "filter"),
            ("↑↓", "scroll"),
            ("g", "follow"),
            ("?", "help"),
            ("q", "quit"),
        ],
        (View::Lockouts, _) => &[
            ("1-5/Tab", "view"),
            ("↑↓", "select"),
            ("u", "unlock"),
            ("?", "help"),
            ("q", "quit"),
        ],
        (View::Users, _) if c.form.is_some() => &[
            ("Tab", "next field"),
            ("Enter", "continue"),
            ("Esc", "cancel"),
        ],
        (View::Instances, _) => &[("1-5/Tab", "view"), ("?", "help"), ("q", "quit")],
        (View::Users, _) => &[
            ("↑↓", "select"),
            ("e", "enrol (camera)"),
            ("v", "verify (camera)"),
            ("d", "disable"),
            ("a", "enable"),
            ("x", "delete"),
            ("?", "help"),
        ],
    };
    let spans: Vec<Span> = keys
        .iter()
        .flat_map(|(k, what)| {
            [
                Span::styled(format!(" {k} "), Style::new().reversed()),
                Span::raw(format!(" {what}  ")),
            ]
        })
        .collect();
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A key job in one phrase: running with its count, or how the last ended.
fn job_line(j: &crate::model::KeyJob) -> String {
    let t = &j.tally;
    let moved = format!("{} moved, {} failed", t.rewrapped, t.failed);
    match (&j.finished_at, &j.error) {
        (None, _) => format!(" · {} running: {} ({moved})", j.kind, j.phase),
        (Some(_), Some(e)) => format!(" · last {}: failed ({e})", j.kind),
        (Some(_), None) if !j.destroyed.is_empty() => {
            format!(" · last {}: {moved}, destroyed {:?}", j.kind, j.destroyed)
        }
        (Some(_), None) => format!(" · last {}: {} ({moved})", j.kind, j.phase),
    }
}

fn ok_style(status: &str) -> Style {
    if status == "ok" {
        Style::new().fg(Color::Green)
    } else {
        Style::new().fg(Color::Red).bold()
    }
}

fn dashboard(f: &mut Frame, c: &Console, area: Rect) {
    let [counts, spark, deps] = Layout::vertical([
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Min(0),
    ])
    .areas(area);
    let minute = c.history.recent(60);
    let totals = c.history.last.clone().unwrap_or_default();
    let lines = vec![
        Line::from(format!(
            "Requests     last 60 s: {:>6}   since start: {:>8}",
            minute.requests, totals.requests as u64
        )),
        Line::from(vec![
            Span::raw("Verify       last 60 s: "),
            Span::styled(
                format!("{} accepted", minute.accept),
                Style::new().fg(Color::Green),
            ),
            Span::raw(" · "),
            Span::styled(
                format!("{} rejected", minute.reject),
                Style::new().fg(Color::Yellow),
            ),
            Span::raw(" · "),
            Span::styled(
                format!("{} locked out", minute.locked),
                Style::new().fg(Color::Red),
            ),
        ]),
        Line::from(format!(
            "             since start: {} accepted · {} rejected · {} locked out",
            totals.accept as u64, totals.reject as u64, totals.locked as u64
        )),
        Line::from(format!(
            "Lockouts     in force: {}   started since start: {}",
            totals.active_lockouts as u64, totals.lockouts_started as u64
        )),
        Line::from(format!(
            "Liveness     refused since start: {}",
            if totals.liveness_refused.is_empty() {
                "none".to_string()
            } else {
                totals
                    .liveness_refused
                    .iter()
                    .map(|(k, v)| format!("{k} {}", *v as u64))
                    .collect::<Vec<_>>()
                    .join(" · ")
            }
        )),
    ];
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Traffic ")),
        counts,
    );
    let latency = c.history.latency();
    let last = latency.iter().rev().find(|v| **v > 0).copied().unwrap_or(0);
    let width = usize::from(spark.width.saturating_sub(2));
    let shown = &latency[latency.len().saturating_sub(width)..];
    f.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(format!(
                " Face verification latency (ms per second, last {last} ms) "
            )))
            .data(shown)
            .style(Style::new().fg(Color::Cyan)),
        spark,
    );
    let mut rows = Vec::new();
    match &c.health {
        None => rows.push(Row::new(vec![Cell::from("no report yet")])),
        Some(h) => {
            for (name, d) in &h.public.dependencies {
                let detail = crate::model::detail(d);
                rows.push(Row::new(vec![
                    Cell::from(name.clone()),
                    Cell::from(d.status.clone()).style(ok_style(&d.status)),
                    Cell::from(detail),
                ]));
            }
            let keys = match &h.keys.error {
                Some(e) => e.clone(),
                None => format!(
                    "token {} · KEK versions {:?} · signing {} ({} keys published){}",
                    h.keys.token.as_deref().unwrap_or("?"),
                    h.keys.kek_versions,
                    h.keys.signing.as_deref().unwrap_or("?"),
                    h.keys.jwt_kids.len(),
                    h.key_job.as_ref().map(job_line).unwrap_or_default()
                ),
            };
            rows.push(Row::new(vec![
                Cell::from("keys"),
                Cell::from(if h.keys.error.is_some() {
                    "error"
                } else {
                    "ok"
                })
                .style(ok_style(if h.keys.error.is_some() {
                    "error"
                } else {
                    "ok"
                })),
                Cell::from(keys),
            ]));
            rows.push(Row::new(vec![
                Cell::from("camera"),
                Cell::from(if h.camera.enabled { "on" } else { "off" }),
                Cell::from(
                    h.camera
                        .device
                        .clone()
                        .unwrap_or_else(|| "none configured".into()),
                ),
            ]));
            rows.push(Row::new(vec![
                Cell::from("arclockd"),
                Cell::from(h.public.status.clone()).style(ok_style(&h.public.status)),
                Cell::from(format!(
                    "v{} · up {}",
                    h.public.version,
                    uptime(h.uptime_secs)
                )),
            ]));
        }
    }
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(10),
                Constraint::Length(9),
                Constraint::Min(10),
            ],
        )
        .block(Block::bordered().title(" Dependencies ")),
        deps,
    );
}

fn uptime(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn outcome_style(outcome: &str) -> Style {
    match outcome {
        "success" => Style::new().fg(Color::Green),
        "failure" => Style::new().fg(Color::Yellow),
        _ => Style::new().fg(Color::Red).bold(),
    }
}

fn logs(f: &mut Frame, c: &Console, area: Rect) {
    let [bar, table] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    let shown: Vec<_> = c.visible_logs().collect();
    let filter = if c.editing_filter {
        format!(" Filter: {}▏", c.filter)
    } else if c.filter.is_empty() {
        " Filter: (none; press / to search)".to_string()
    } else {
        format!(" Filter: {}", c.filter)
    };
    let follow = if c.scroll == 0 {
        "following"
    } else {
        "paused (g to follow)"
    };
    f.render_widget(
        Paragraph::new(format!(
            "{filter}   {} of {} entries, {follow}",
            shown.len(),
            c.logs.len()
        )),
        bar,
    );
    let rows = shown.iter().skip(c.scroll).map(|l| {
        Row::new(vec![
            Cell::from(l.at.get(..19).unwrap_or(&l.at).replace('T', " ")),
            Cell::from(l.action.clone()),
            Cell::from(l.outcome.clone()).style(outcome_style(&l.outcome)),
            Cell::from(l.ip.clone().unwrap_or_default()),
            Cell::from(
                l.user_id
                    .as_deref()
                    .map(|u| u.get(..8).unwrap_or(u).to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
            Cell::from(l.reason.clone().unwrap_or_default()),
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(19),
                Constraint::Length(14),
                Constraint::Length(8),
                Constraint::Length(15),
                Constraint::Length(8),
                Constraint::Min(10),
            ],
        )
        .header(Row::new(["time (UTC)", "action", "outcome", "ip", "user", "reason"]).bold())
        .block(Block::new().borders(Borders::TOP)),
        table,
    );
}

fn selectable(f: &mut Frame, area: Rect, table: Table, selected: usize, empty: &str, count: usize) {
    if count == 0 {
        f.render_widget(
            Paragraph::new(empty)
                .alignment(Alignment::Center)
                .block(Block::bordered()),
            area,
        );
        return;
    }
    let mut state = TableState::default().with_selected(Some(selected));
    f.render_stateful_widget(
        table
            .row_highlight_style(Style::new().reversed())
            .highlight_symbol("▶ ")
            .block(Block::bordered()),
        area,
        &mut state,
    );
}

fn lockouts(f: &mut Frame, c: &Console, area: Rect) {
    let rows = c.lockouts.iter().map(|l| {
        Row::new(vec![
            Cell::from(l.kind.clone()),
            Cell::from(crate::model::who(l)),
            Cell::from(l.until.get(..19).unwrap_or(&l.until).replace('T', " ")),
            Cell::from(format!("{}s", l.seconds_left)),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Min(20),
            Constraint::Length(19),
            Constraint::Length(7),
        ],
    )
    .header(Row::new(["kind", "who", "until (UTC)", "left"]).bold());
    selectable(
        f,
        area,
        table,
        c.selected,
        "No lockouts in force",
        c.lockouts.len(),
    );
}

fn users(f: &mut Frame, c: &Console, area: Rect) {
    let rows = c.users.iter().map(|u| {
        let status = Cell::from(u.status.clone()).style(if u.status == "active" {
            Style::new().fg(Color::Green)
        } else {
            Style::new().fg(Color::Red)
        });
        Row::new(vec![
            Cell::from(u.email.clone()),
            Cell::from(u.name.clone()),
            status,
            Cell::from(u.created_at.get(..10).unwrap_or(&u.created_at).to_string()),
            Cell::from(u.id.get(..8).unwrap_or(&u.id).to_string()),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Min(20),
            Constraint::Length(20),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(8),
        ],
    )
    .header(Row::new(["e-mail", "name", "status", "created", "id"]).bold());
    selectable(f, area, table, c.selected, "No accounts", c.users.len());
}

/// Every daemon on the store: which one this console speaks to, and when
/// each was last heard from (a heartbeat every 5 s; "no" after three missed).
fn instances(f: &mut Frame, c: &Console, area: Rect) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let rows = c.instances.iter().map(|i| {
        let alive = Cell::from(if i.alive { "yes" } else { "no" }).style(if i.alive {
            Style::new().fg(Color::Green)
        } else {
            Style::new().fg(Color::Red)
        });
        Row::new(vec![
            Cell::from(format!("{}{}", i.id, if i.this { " (this)" } else { "" })),
            Cell::from(i.host.clone()),
            Cell::from(i.pid.to_string()),
            Cell::from(i.version.clone()),
            alive,
            Cell::from(format!("{} s ago", (now - i.seen_at).max(0) / 1000)),
            Cell::from(format!("{} min", (now - i.started_at).max(0) / 60_000)),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Min(24),
            Constraint::Length(20),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(10),
            Constraint::Length(10),
        ],
    )
    .header(
        Row::new([
            "instance",
            "host",
            "pid",
            "version",
            "alive",
            "last seen",
            "up",
        ])
        .bold(),
    );
    if c.instances.is_empty() {
        f.render_widget(
            Paragraph::new("No instance has announced itself yet")
                .alignment(Alignment::Center)
                .block(Block::bordered()),
            area,
        );
    } else {
        f.render_widget(table.block(Block::bordered()), area);
    }
}

/// A centred rectangle of at most `w` x `h`, never larger than `area`.
fn centred(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn confirm(f: &mut Frame, prompt: &str) {
    let area = centred(f.area(), 60, 7);
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(vec![
            Line::from(prompt.to_string()),
            Line::from(""),
            Line::from(vec![
                Span::styled(" y ", Style::new().reversed()),
                Span::raw(" confirm   "),
                Span::styled(" any other key ", Style::new().reversed()),
                Span::raw(" cancel"),
            ]),
        ])
        .wrap(Wrap { trim: true })
        .block(
            Block::bordered()
                .title(" Confirm ")
                .border_style(Style::new().fg(Color::Yellow)),
        ),
        area,
    );
}

fn enrol_form(f: &mut Frame, form: &crate::console::EnrolForm) {
    let area = centred(f.area(), 60, 8);
    f.render_widget(Clear, area);
    let field = |label: &str, value: &str, active: bool| {
        let style = if active {
            Style::new().reversed()
        } else {
            Style::new()
        };
        Line::from(vec![
            Span::raw(format!("{label:>8}: ")),
            Span::styled(format!("{value}{}", if active { "▏" } else { "" }), style),
        ])
    };
    f.render_widget(
        Paragraph::new(vec![
            field("Name", &form.name, form.field == 0),
            field("E-mail", &form.email, form.field == 1),
            Line::from(""),
            Line::from("Then the person looks at the camera; the best of a"),
            Line::from("short burst of frames is enrolled."),
        ])
        .block(Block::bordered().title(" Enrol from the camera ")),
        area,
    );
}

fn help(f: &mut Frame) {
    let area = centred(f.area(), 62, 20);
    f.render_widget(Clear, area);
    let text = [
        "1 2 3 4 5, Tab Dashboard, Live log, Lockouts, Users,",
        "               Instances (every daemon on this store)",
        "↑ ↓ / j k      move the selection, scroll the log",
        "g, Home        back to the top (the log follows again)",
        "/              filter the log (words: action, outcome,",
        "               ip, user id, reason); Esc clears",
        "u              unlock the selected lockout",
        "d / a / x      disable / enable / delete the selected user",
        "e / v          enrol a new user / verify the selected one",
        "               with the kiosk camera",
        "R              rotate the KEK (Dashboard)",
        "X              retire old KEKs: rotate, then destroy the old ones (Dashboard)",
        "?              this help; any key closes it",
        "q, Ctrl-C      quit",
        "",
        "Every action asks for confirmation and is written to",
        "the audit log with your uid.",
    ];
    f.render_widget(
        Paragraph::new(text.iter().map(|l| Line::from(*l)).collect::<Vec<_>>())
            .style(Style::new().add_modifier(Modifier::empty()))
            .block(Block::bordered().title(" Help ")),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_survives_tiny_and_large_terminals() {
        let mut c = Console::new();
        c.help = true;
        c.confirm = Some(crate::console::Command::RotateKek);
        for v in View::ALL {
            c.view = v;
            for (w, h) in [(1, 1), (10, 3), (40, 10), (200, 60)] {
                let _ = render_text(&c, w, h);
            }
        }
    }

    #[test]
    fn a_lost_daemon_is_said_on_screen() {
        let mut c = Console::new();
        c.down(crate::client::ClientError::Unreachable {
            path: "/run/arclockd/admin.sock".into(),
            reason: "connection refused".into(),
        });
        let text = render_text(&c, 100, 20);
        assert!(text.contains("DISCONNECTED"), "{text}");
    }
}
