//! The operator API's wire types, shared by `arclockd` (which serialises
//! them) and `arclock-console` (which reads them), so that the two cannot
//! drift apart: a field renamed here is renamed on both sides, and the
//! round-trip tests below hold the JSON spelling.
//!
//! Every answer travels inside the public API's envelope
//! (`{"success", "message", "data"}`); these are the `data` parts, and the
//! request bodies. Readers ignore unknown fields and default the optional
//! ones, so a newer daemon does not break an older console.
//!
//! - [`health`]: `GET /v1/health` (and the public `/health` it extends).
//! - [`logs`]: the auth-log search and the live stream's lines.
//! - [`accounts`]: users, lockouts, invitations and the kiosk camera.
//! - [`keys`]: KEK rotation and retirement, the key job's progress.
//! - [`audit`]: the audit trail's verification and seals.
//! - [`instances`]: every daemon sharing the store.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod audit;
pub mod health;
pub mod instances;
pub mod keys;
pub mod logs;

pub use accounts::{
    CameraMatch, EnrolRequest, Enrolment, Invite, InviteRequest, Lockout, Lockouts, StatusChange,
    Unlock, User, UserPage, UserRef, VerifyRequest,
};
pub use audit::{AuditBreak, AuditVerdict, Sealed};
pub use health::{AdminHealth, CameraState, Dependency, Health, Keys};
pub use instances::{InstanceInfo, Instances, Load};
pub use keys::{KeyJob, Retirement, Rotation, Tally};
pub use logs::{LogEntry, LogPage, StreamEvent};

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn round_trip<T>(value: &T, wire: Value)
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        assert_eq!(serde_json::to_value(value).unwrap(), wire);
        assert_eq!(&serde_json::from_value::<T>(wire).unwrap(), value);
    }

    /// The operator health answer is the public one plus the operator's
    /// fields, side by side; a dependency sends only what it has.
    #[test]
    fn health_flattens_and_skips_what_is_absent() {
        let mut deps = std::collections::BTreeMap::new();
        deps.insert("hsm".to_string(), Dependency::ok());
        deps.insert(
            "store".to_string(),
            Dependency {
                backend: Some("embedded".into()),
                ..Dependency::down("disk full")
            },
        );
        let h = AdminHealth {
            public: Health {
                status: "degraded".into(),
                version: "0.1.0".into(),
                dependencies: deps,
            },
            uptime_secs: 7,
            down: vec!["store".into()],
            keys: Keys {
                error: Some("no token".into()),
                ..Default::default()
            },
            key_job: None,
            camera: CameraState::default(),
        };
        round_trip(
            &h,
            json!({
                "status": "degraded", "version": "0.1.0",
                "dependencies": {
                    "hsm": {"status": "ok"},
                    "store": {"status": "error", "reason": "disk full", "backend": "embedded"},
                },
                "uptimeSecs": 7, "down": ["store"], "keys": {"error": "no token"},
                "keyJob": null, "camera": {"enabled": false},
            }),
        );
    }

    /// A rotation's tally sits beside its version; the stream's lines are
    /// tagged by `type`.
    #[test]
    fn rotation_and_stream_lines_keep_their_spelling() {
        round_trip(
            &Rotation {
                version: 3,
                tally: Tally {
                    rewrapped: 5,
                    already_current: 1,
                    failed: 0,
                },
            },
            json!({"version": 3, "rewrapped": 5, "alreadyCurrent": 1, "failed": 0}),
        );
        round_trip(
            &StreamEvent::Lagged { skipped: 4 },
            json!({"type": "lagged", "skipped": 4}),
        );
    }

    /// An older daemon's answer (fewer fields) still reads; a newer one's
    /// extra fields are ignored.
    #[test]
    fn readers_tolerate_older_and_newer_daemons() {
        let u: User = serde_json::from_value(json!({
            "id": "u1", "name": "Al", "email": "al@example.org",
            "createdAt": "2026-01-01T00:00:00Z", "newField": 1,
        }))
        .unwrap();
        assert_eq!(u.status, "active");
        let h: AdminHealth = serde_json::from_value(json!({
            "status": "ok", "version": "0.0.9", "dependencies": {},
        }))
        .unwrap();
        assert_eq!(h.keys, Keys::default());
    }
}
