//! Every daemon sharing the store, from their heartbeats.

use super::*;

/// Every daemon on the store: which one this console speaks to, and when
/// each was last heard from (a heartbeat every 5 s; "no" after three missed).
pub(super) fn draw(f: &mut Frame, c: &Console, area: Rect) {
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
