//! The dashboard: dependencies, keys and the key job, traffic and latency
//! from the metrics history.

use super::*;

pub(super) fn draw(f: &mut Frame, c: &Console, area: Rect) {
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

/// A key job in one phrase: running with its count, or how the last ended.
pub(super) fn job_line(j: &crate::model::KeyJob) -> String {
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

pub(super) fn uptime(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}
