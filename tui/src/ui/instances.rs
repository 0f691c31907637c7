//! Every daemon sharing the store, from their heartbeats.

use super::*;
use crate::model::Load;

/// Every daemon on the store: which one this console speaks to, when each
/// was last heard from (a heartbeat every 5 s; "no" after three missed),
/// the KEK version each wraps with (a rotation has reached them all when
/// every row shows it), and what each has served since its start, with the
/// sum over all of them (each daemon's `/metrics` only knows itself).
pub(super) fn draw(f: &mut Frame, c: &Console, area: Rect) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    // The counters in column order: the rows show them, the sum adds them.
    let counts = |l: &Load| {
        [
            l.requests,
            l.server_errors,
            l.accepts,
            l.rejects,
            l.locked,
            l.lockouts,
        ]
    };
    let counters = |n: [u64; 6]| n.map(|v| Cell::from(v.to_string()));
    let rows = c.instances.iter().map(|i| {
        let alive = Cell::from(if i.alive { "yes" } else { "no" }).style(if i.alive {
            Style::new().fg(Color::Green)
        } else {
            Style::new().fg(Color::Red)
        });
        let mut cells = vec![
            // 12 of the id's 16 hex digits tell instances apart and leave
            // room for the counters at 120 columns.
            Cell::from(format!(
                "{}{}",
                i.id.get(..12).unwrap_or(&i.id),
                if i.this { " (this)" } else { "" }
            )),
            Cell::from(i.host.clone()),
            Cell::from(i.pid.to_string()),
            Cell::from(i.version.clone()),
            alive,
            Cell::from(span(now - i.seen_at)),
            Cell::from(span(now - i.started_at)),
            Cell::from(i.kek.map_or("?".into(), |v| format!("v{v}"))),
        ];
        cells.extend(counters(counts(&i.load)));
        Row::new(cells)
    });
    let total = c.instances.iter().fold([0; 6], |mut t, i| {
        for (sum, n) in t.iter_mut().zip(counts(&i.load)) {
            *sum += n;
        }
        t
    });
    let mut sum = vec![Cell::from(format!("all {}", c.instances.len()))];
    sum.extend(std::iter::repeat_n(Cell::from(""), 7));
    sum.extend(counters(total));
    let rows = rows.chain(std::iter::once(Row::new(sum).bold()));
    let table = Table::new(
        rows,
        [
            Constraint::Length(19),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(4),
            Constraint::Length(8),
            Constraint::Length(4),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Min(8),
        ],
    )
    .header(
        Row::new([
            "instance", "host", "pid", "version", "alive", "seen ago", "up", "KEK", "requests",
            "5xx", "accepts", "rejects", "locked", "lockouts",
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

/// A time span in its largest whole unit, short enough for a narrow column.
fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}
