//! What opens on top of a view: the confirmation, the enrol form, help.

use super::*;

pub(super) fn confirm(f: &mut Frame, prompt: &str) {
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

pub(super) fn enrol_form(f: &mut Frame, form: &crate::console::EnrolForm) {
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

pub(super) fn help(f: &mut Frame) {
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
