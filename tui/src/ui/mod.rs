//! Drawing: a tab bar with the link state, the current view (one file per
//! view), a key-hint line, and what the console's [`Mode`] opens on top
//! (`overlay`). Every layout is computed from the frame's size each time,
//! so resizing (even to a few cells) never breaks it.

mod dashboard;
mod instances;
mod lockouts;
mod logs;
mod overlay;
mod users;

use ratatui::Frame;
use ratatui::backend::TestBackend;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState, Tabs, Wrap,
};

use crate::console::{Console, Link, Mode, View};

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
        View::Dashboard => dashboard::draw(f, c, body),
        View::Logs => logs::draw(f, c, body),
        View::Lockouts => lockouts::draw(f, c, body),
        View::Users => users::draw(f, c, body),
        View::Instances => instances::draw(f, c, body),
    }
    key_hints(f, c, hints);
    match &c.mode {
        Mode::Enrol(form) => overlay::enrol_form(f, form),
        Mode::Confirm(cmd) => overlay::confirm(f, &cmd.prompt()),
        Mode::Help => overlay::help(f),
        Mode::Browse | Mode::Filter => {}
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
    let keys: &[(&str, &str)] = match (c.view, c.mode == Mode::Filter) {
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
        (View::Users, _) if matches!(c.mode, Mode::Enrol(_)) => &[
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

fn ok_style(status: &str) -> Style {
    if status == "ok" {
        Style::new().fg(Color::Green)
    } else {
        Style::new().fg(Color::Red).bold()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_survives_tiny_and_large_terminals() {
        let mut c = Console::new();
        let modes = [
            Mode::Browse,
            Mode::Filter,
            Mode::Help,
            Mode::Confirm(crate::console::Command::RotateKek),
            Mode::Enrol(crate::console::EnrolForm::default()),
        ];
        for mode in modes {
            c.mode = mode;
            for v in View::ALL {
                c.view = v;
                for (w, h) in [(1, 1), (10, 3), (40, 10), (200, 60)] {
                    let _ = render_text(&c, w, h);
                }
            }
        }
    }

    /// The Instances view adds up what every daemon reported.
    #[test]
    fn instances_are_summed() {
        let mut c = Console::new();
        c.view = View::Instances;
        c.instances = ["aa11", "bb22"]
            .iter()
            .enumerate()
            .map(|(n, id)| crate::model::InstanceInfo {
                id: (*id).into(),
                host: "node".into(),
                pid: 10 + n as u32,
                version: "0.1.0".into(),
                started_at: 0,
                seen_at: 0,
                alive: true,
                this: n == 0,
                load: crate::model::Load {
                    requests: 100 + n as u64,
                    accepts: 3,
                    rejects: 4,
                    ..Default::default()
                },
                kek: Some(2),
            })
            .collect();
        let narrow = render_text(&c, 120, 12);
        for whole in ["aa11 (this)", "requests", "lockouts", "KEK", "v2"] {
            assert!(
                narrow.contains(whole),
                "{whole} cut at 120 columns: {narrow}"
            );
        }
        let text = render_text(&c, 200, 12);
        let sum = text
            .lines()
            .find(|l| l.contains("all 2"))
            .unwrap_or_else(|| panic!("no sum row: {text}"));
        let numbers: Vec<&str> = sum
            .trim_matches(|c: char| c == '│' || c.is_whitespace())
            .split_whitespace()
            .skip(2)
            .collect();
        assert_eq!(numbers, ["201", "0", "6", "8", "0", "0"], "{sum}");
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
