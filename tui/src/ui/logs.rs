//! The live log, newest first, with its free-text filter.

use super::*;

pub(super) fn draw(f: &mut Frame, c: &Console, area: Rect) {
    let [bar, table] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    let shown: Vec<_> = c.visible_logs().collect();
    let filter = if c.mode == Mode::Filter {
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
            Cell::from(
                l.instance
                    .as_deref()
                    .map_or("-", |i| i.get(..6).unwrap_or(i)),
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
                Constraint::Length(8),
                Constraint::Min(10),
            ],
        )
        .header(
            Row::new([
                "time (UTC)",
                "action",
                "outcome",
                "ip",
                "user",
                "instance",
                "reason",
            ])
            .bold(),
        )
        .block(Block::new().borders(Borders::TOP)),
        table,
    );
}

pub(super) fn outcome_style(outcome: &str) -> Style {
    match outcome {
        "success" => Style::new().fg(Color::Green),
        "failure" => Style::new().fg(Color::Yellow),
        _ => Style::new().fg(Color::Red).bold(),
    }
}
