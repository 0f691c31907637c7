//! The auth log: append-only from the request path, searched by the
//! console and the account owner, anonymised when an account goes.

use super::*;

/// What an auth log entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Register,
    Login,
    VerifyFace,
    Refresh,
    Logout,
    DeleteAccount,
    UpdateProfile,
    /// An operator action on the admin socket.
    Admin,
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Locked,
}

macro_rules! str_enum {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
            pub fn parse(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($s => Ok(<$t>::$v),)*
                    other => Err(StoreError::Corrupt(format!("{} {other:?}", stringify!($t)))),
                }
            }
        }
    };
}

str_enum!(Action {
    Register => "register",
    Login => "login",
    VerifyFace => "verify_face",
    Refresh => "refresh",
    Logout => "logout",
    DeleteAccount => "delete_account",
    UpdateProfile => "update_profile",
    Admin => "admin",
});

str_enum!(Outcome {
    Success => "success",
    Failure => "failure",
    Locked => "locked",
});

/// One auth log entry. `user_id` is `None` for unknown accounts and after the
/// account was deleted (the entry is kept, anonymised).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuthLog {
    /// Assigned by the store; ignored on append.
    pub id: String,
    pub at: Millis,
    pub user_id: Option<UserId>,
    pub action: Action,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// Similarity in tenths (0..=10), never the raw score.
    pub similarity_bucket: Option<u8>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The daemon that wrote it (`App::instance`): several share one
    /// database, and the live log follows them all. `None` for entries
    /// written before instances were recorded.
    pub instance: Option<String>,
}

/// Opaque position in a log listing ("entries older than this one").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCursor {
    pub at: Millis,
    pub id: String,
}

impl LogCursor {
    /// The wire form handed to clients.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.at, self.id)
    }

    /// `<ms>.<id>` with the id as either backend writes it: a row number
    /// (embedded) or 24 lowercase hex digits (MongoDB ObjectId).
    pub fn decode(s: &str) -> Option<Self> {
        let (at, id) = s.split_once('.')?;
        let ok = !id.is_empty()
            && id.len() <= 24
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        Some(LogCursor {
            at: at.parse().ok()?,
            id: id.to_string(),
        })
        .filter(|_| ok)
    }
}

/// Which log entries to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub user_id: Option<UserId>,
    pub action: Option<Action>,
    pub outcome: Option<Outcome>,
    pub client_ip: Option<String>,
    /// Inclusive lower bound.
    pub since: Option<Millis>,
    /// Exclusive upper bound.
    pub until: Option<Millis>,
    pub before: Option<LogCursor>,
    /// Leaves out what this instance wrote (the live log has those already).
    pub exclude_instance: Option<String>,
    pub limit: usize,
}

impl LogFilter {
    /// Entries per page, bounded whatever the caller asked for.
    pub(super) fn page_size(&self) -> usize {
        self.limit.clamp(1, 1000)
    }
}

/// A page of log entries and where the next one starts.
#[derive(Debug, Clone)]
pub struct LogPage {
    pub entries: Vec<AuthLog>,
    pub next: Option<LogCursor>,
}

impl LogPage {
    /// Backends fetch one entry more than a page: if it came, there is a next
    /// page, starting after the last entry kept.
    pub(super) fn from_overfetch(mut entries: Vec<AuthLog>, page_size: usize) -> Self {
        let next = if entries.len() > page_size {
            entries.truncate(page_size);
            entries.last().map(|l| LogCursor {
                at: l.at,
                id: l.id.clone(),
            })
        } else {
            None
        };
        LogPage { entries, next }
    }
}

/// The similarity bucket stored in logs: tenths, clamped to 0..=10.
pub fn similarity_bucket(similarity: f32) -> u8 {
    (similarity.clamp(0.0, 1.0) * 10.0).floor() as u8
}

/// What every backend offers for this concern (part of [`Store`]).
#[async_trait::async_trait]
pub trait Logs: Send + Sync {
    async fn append_log(&self, log: &AuthLog) -> Result<(), StoreError>;

    async fn logs(&self, filter: &LogFilter) -> Result<LogPage, StoreError>;
}
