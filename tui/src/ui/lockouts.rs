//! Lockouts in force, the selected one unlocked with `u`.

use super::*;

pub(super) fn draw(f: &mut Frame, c: &Console, area: Rect) {
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
