//! What the admin socket answers, as the console reads it: the admin API's
//! own types (`arclock-proto`, shared with the daemon), and what the
//! console derives from them to show.

pub use arclock_proto::{
    AdminHealth, AuditBreak, AuditVerdict, CameraState, Dependency, InstanceInfo, Invite, KeyJob,
    Keys, Load, Lockout, LogEntry, Retirement, Rotation, StreamEvent, Tally, User,
};

/// One line on what it is or why it is down.
pub fn detail(d: &Dependency) -> String {
    if let (Some(s), Some(r), Some(p)) = (&d.signin, &d.registration, &d.pad) {
        let why = d
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        return format!("sign-in {s} · registration {r} · PAD {p}{why}");
    }
    if let Some(r) = &d.reason {
        return r.clone();
    }
    match (&d.backend, &d.detector, &d.recognizer) {
        (Some(b), _, _) => b.clone(),
        (None, Some(d), Some(r)) => format!("{d} + {r}"),
        _ => String::new(),
    }
}

/// Whether a free-text filter (case-insensitive, every word must occur)
/// matches any shown field.
pub fn matches(entry: &LogEntry, filter: &str) -> bool {
    let hay = format!(
        "{} {} {} {} {} {} {}",
        entry.at,
        entry.action,
        entry.outcome,
        entry.user_id.as_deref().unwrap_or(""),
        entry.ip.as_deref().unwrap_or(""),
        entry.reason.as_deref().unwrap_or(""),
        entry.device.as_deref().unwrap_or(""),
    )
    .to_lowercase();
    filter
        .to_lowercase()
        .split_whitespace()
        .all(|w| hay.contains(w))
}

/// Who is locked, as an operator reads it.
pub fn who(lockout: &Lockout) -> String {
    match (lockout.kind.as_str(), &lockout.email) {
        ("account", Some(e)) => e.clone(),
        ("account", None) => format!(
            "(no account) {}…",
            &lockout.key[..lockout.key.len().min(12)]
        ),
        _ => lockout.key.clone(),
    }
}
