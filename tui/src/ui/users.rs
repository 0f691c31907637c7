//! Accounts (never any biometric data) and their actions.

use super::*;

pub(super) fn draw(f: &mut Frame, c: &Console, area: Rect) {
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
