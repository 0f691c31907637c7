//! SQLite through `rusqlite` (bundled, so the appliance has no server to run):
//! WAL journal, `synchronous = FULL` (every commit fsync'd, but a refresh
//! rotation's and a sign-in's reservation's later by default:
//! [`RotationSync`]), checkpoints on
//! their own thread ([`checkpoint`]), foreign keys on, and versioned
//! migrations applied in one transaction at start.
//!
//! This file opens the database, migrates it and holds the row mapping;
//! each concern's trait is implemented in the file named after it.

mod audit;
mod challenges;
mod checkpoint;
mod instances;
mod lockouts;
mod logs;
mod sessions;
mod users;

use checkpoint::Unsynced;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arclock_hsm::{Binding, WrappedKey};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use super::audit::{stored_hash, stored_seq};
use super::{
    Action, AuditEntry, AuditEvent, AuditSeal, AuthLog, Credentials, FailureOutcome,
    INSTANCE_RETENTION_MS, InstanceBeat, LockPolicy, LogFilter, LogPage, Millis, NewFamily,
    NewUser, Outcome, Reservation, Rotation, Store, StoreError, StoredChallenge, StoredInvite,
    StoredKey, Subject, Template, User, UserStatus,
};
use super::{AuditTrail, Challenges, Instances, Lockouts, Logs, Sessions, Users};
use crate::identity::{Email, Name, UserId};
use crate::timing::{self, Step};

/// Schema migrations, in order; `user_version` records how many are applied.
const MIGRATIONS: &[&str] = &[
    // 1: the data model of DESIGN.md. Biometric data only ever as ciphertext.
    r#"
    CREATE TABLE users (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        email       TEXT NOT NULL UNIQUE,
        status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
        created_at  INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE templates (
        user_id     TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        model_id    TEXT NOT NULL,
        ciphertext  BLOB NOT NULL,
        created_at  INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE wrapped_keys (
        user_id     TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        kek_version INTEGER NOT NULL,
        nonce       BLOB NOT NULL,
        ciphertext  BLOB NOT NULL,
        public_key  BLOB NOT NULL
    ) STRICT;
    CREATE TABLE auth_logs (
        id          INTEGER PRIMARY KEY,
        at          INTEGER NOT NULL,
        user_id     TEXT,
        action      TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        reason      TEXT,
        similarity_bucket INTEGER,
        client_ip   TEXT,
        user_agent  TEXT
    ) STRICT;
    CREATE INDEX auth_logs_user_at ON auth_logs(user_id, at DESC);
    CREATE INDEX auth_logs_outcome_at ON auth_logs(outcome, at DESC);
    CREATE TABLE failed_attempts (
        subject     TEXT NOT NULL,
        at          INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX failed_attempts_subject_at ON failed_attempts(subject, at);
    CREATE TABLE lockouts (
        subject     TEXT PRIMARY KEY,
        until       INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE refresh_families (
        id          TEXT PRIMARY KEY,
        user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        token_hash  BLOB NOT NULL UNIQUE,
        parent_hash BLOB,
        revoked     INTEGER NOT NULL DEFAULT 0,
        expires_at  INTEGER NOT NULL
    ) STRICT;
    "#,
    // 2: failure counters per subject with a window, refresh families that keep
    // only the current token hash plus a table of every token ever issued (for
    // reuse detection), and log indexes for the console's queries.
    r#"
    DROP TABLE failed_attempts;
    CREATE TABLE failed_attempts (
        subject      TEXT PRIMARY KEY,
        count        INTEGER NOT NULL,
        window_start INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL
    ) STRICT;
    DROP TABLE refresh_families;
    CREATE TABLE refresh_families (
        id           TEXT PRIMARY KEY,
        user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        current_hash BLOB NOT NULL,
        revoked      INTEGER NOT NULL DEFAULT 0,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX refresh_families_user ON refresh_families(user_id);
    CREATE INDEX refresh_families_expires ON refresh_families(expires_at);
    CREATE TABLE refresh_tokens (
        hash         BLOB PRIMARY KEY,
        family_id    TEXT NOT NULL REFERENCES refresh_families(id) ON DELETE CASCADE
    ) STRICT;
    CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);
    CREATE INDEX auth_logs_at ON auth_logs(at DESC);
    CREATE INDEX auth_logs_ip_at ON auth_logs(client_ip, at DESC);
    "#,
    // 3: liveness challenges (the id only as a hash), single use.
    r#"
    CREATE TABLE challenges (
        id_hash      BLOB PRIMARY KEY,
        subject      TEXT NOT NULL,
        client_ip    TEXT,
        steps        TEXT NOT NULL,
        expires_at   INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX challenges_expires ON challenges(expires_at);
    "#,
    // 4: attempts are reserved before the face work: `count` is failures plus
    // attempts still running (the gate), `failed` the failures (the lock).
    r#"
    ALTER TABLE failed_attempts ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;
    UPDATE failed_attempts SET failed = count;
    "#,
    // 5: one account per look-alike address (`Email::skeleton`); existing
    // rows are filled in by `backfill_skeletons` after the migration.
    r#"
    ALTER TABLE users ADD COLUMN skeleton TEXT;
    CREATE UNIQUE INDEX users_skeleton ON users(skeleton);
    "#,
    // 6: enrolment invitations (the code only as a hash), single use.
    r#"
    CREATE TABLE invites (
        code_hash    BLOB PRIMARY KEY,
        email        TEXT,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL
    ) STRICT;
    "#,
    // 7: the audit trail (`super::audit`): a hash chain of operator and
    // security events, and HSM seals over its heads.
    r#"
    CREATE TABLE audit_chain (
        seq          INTEGER PRIMARY KEY,
        at           INTEGER NOT NULL,
        kind         TEXT NOT NULL,
        actor        TEXT NOT NULL,
        subject      TEXT,
        detail       TEXT NOT NULL,
        hash         BLOB NOT NULL
    ) STRICT;
    CREATE TABLE audit_seals (
        seq          INTEGER PRIMARY KEY,
        hash         BLOB NOT NULL,
        at           INTEGER NOT NULL,
        kid          TEXT NOT NULL,
        signature    BLOB NOT NULL
    ) STRICT;
    "#,
    // 8: instance heartbeats (several daemons on one database).
    r#"
    CREATE TABLE instances (
        id           TEXT PRIMARY KEY,
        host         TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        version      TEXT NOT NULL,
        started_at   INTEGER NOT NULL,
        seen_at      INTEGER NOT NULL
    ) STRICT;
    "#,
    // 9: what a wrapped key's GCM tag covers (`arclock_hsm::Binding`): 1 =
    // its owner only (every blob before this), 2 = the whole record.
    r#"
    ALTER TABLE wrapped_keys ADD COLUMN binding INTEGER NOT NULL DEFAULT 1;
    "#,
    // 10: which daemon wrote each log entry (several share one database:
    // the console's live log follows them all), and what each instance
    // last reported of its load (JSON, `Load`) and of its KEK version.
    r#"
    ALTER TABLE auth_logs ADD COLUMN instance TEXT;
    ALTER TABLE instances ADD COLUMN load TEXT;
    ALTER TABLE instances ADD COLUMN kek INTEGER;
    "#,
];

const AUDIT_COLUMNS: &str = "seq, at, kind, actor, subject, detail, hash";

fn audit_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, AuditEvent, Vec<u8>)> {
    Ok((
        r.get(0)?,
        AuditEvent {
            at: r.get(1)?,
            kind: r.get(2)?,
            actor: r.get(3)?,
            subject: r.get(4)?,
            detail: r.get(5)?,
        },
        r.get(6)?,
    ))
}

fn to_audit((seq, event, hash): (i64, AuditEvent, Vec<u8>)) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: stored_seq(seq)?,
        event,
        hash: stored_hash(hash)?,
    })
}

fn audit_head(conn: &Connection, path: &Path) -> Result<Option<AuditEntry>, StoreError> {
    conn.query_row_cached(
        &format!("SELECT {AUDIT_COLUMNS} FROM audit_chain ORDER BY seq DESC LIMIT 1"),
        [],
        audit_from_row,
    )
    .optional()
    .map_err(unavailable(path))?
    .map(to_audit)
    .transpose()
}

/// Who copies the write-ahead log into the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoints {
    /// A thread of its own (`checkpoint`): commits never wait for it.
    Background,
    /// SQLite's default: the commit that takes the log past 1000 pages does
    /// it, and its caller waits (kept to measure the difference).
    Inline,
}

/// When a refresh-token rotation's commit must be on disk (`[store]
/// rotation_sync`), and with it a sign-in's reservation, which no answer
/// rests on alone. Every other write is fsynced before it is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RotationSync {
    /// Answered once committed; the checkpoint thread fsyncs the log within
    /// its interval (250 ms), and any later commit that fsyncs does so
    /// sooner. A power cut in that window undoes the rotation: the client's
    /// new token is refused (it signs in again) and the presented one is
    /// current again. A revocation is never deferred.
    #[default]
    Deferred,
    /// Fsynced before it is answered, like every other write (reservations
    /// too).
    Commit,
}

/// The embedded database. One writing connection behind a mutex (SQLite
/// serialises writers anyway) and two read-only ones beside it (`READERS`);
/// every call runs on the blocking pool.
#[derive(Clone)]
pub struct EmbeddedStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    readers: Arc<Readers>,
    /// Set when rotations and reservations are deferred
    /// ([`RotationSync::Deferred`]) and a checkpoint thread is there to fsync
    /// them.
    unsynced: Option<Arc<Unsynced>>,
}

/// How long any of the store's connections (writer, readers, checkpointer)
/// waits for a lock SQLite itself holds before it reports the store down.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How many read-only connections the store keeps. WAL lets a reader see
/// the last commit without waiting for the writer, whose commit holds the
/// writing connection through its fsync (1-3 ms here): a sign-in's account
/// lookup, an access token's session check and the console's log search
/// then wait for no commit. Two, for two cores.
const READERS: usize = 2;

/// The read-only connections, and which one to wait for when all are busy.
struct Readers {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    fn open(path: &Path) -> Result<Self, StoreError> {
        let err = unavailable(path);
        let conns = (0..READERS)
            .map(|_| {
                let conn = Connection::open(path).map_err(&err)?;
                // A write sent here by mistake fails instead of bypassing
                // the writer's transactions.
                conn.pragma_update(None, "query_only", true).map_err(&err)?;
                conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
                conn.set_prepared_statement_cache_capacity(STATEMENTS);
                Ok(Mutex::new(conn))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Readers {
            conns,
            next: AtomicUsize::new(0),
        })
    }

    /// A free connection, else the next one in turn.
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        for conn in &self.conns {
            match conn.try_lock() {
                Ok(c) => return Ok(c),
                Err(std::sync::TryLockError::WouldBlock) => {}
                Err(std::sync::TryLockError::Poisoned(_)) => return Err(poisoned()),
            }
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[turn].lock().map_err(|_| poisoned())
    }
}

/// Which connection a call needs.
#[derive(Clone, Copy)]
enum Role {
    Write,
    Read,
}

/// Runs `f` with the writing connection's commits not fsynced (`synchronous
/// = NORMAL`, which cannot change inside a transaction), then restores
/// `FULL` and owes the checkpoint thread an fsync of the log for whatever
/// `f` committed (a spare one if it committed nothing). If restoring fails,
/// the writer is marked stuck ([`Unsynced::stuck`]): every later write and
/// health check is refused, rather than left unsynced.
fn without_fsync<R>(
    conn: &mut Connection,
    path: &Path,
    unsynced: &Unsynced,
    f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    conn.execute_cached("PRAGMA synchronous = NORMAL", [])
        .map_err(unavailable(path))?;
    let out = f(conn);
    if let Err(e) = conn.execute_cached("PRAGMA synchronous = FULL", []) {
        unsynced.stick();
        return Err(unavailable(path)(e));
    }
    unsynced.owe();
    out
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("connection lock poisoned".into())
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn unavailable(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Unavailable(format!("{}: {e}", path.display()))
}

impl EmbeddedStore {
    /// Opens (creating if needed, mode 0600 via the process umask) and
    /// migrates; checkpoints run on their own thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, Checkpoints::Background)
    }

    /// [`EmbeddedStore::open`] with a choice of checkpointing (the bench
    /// compares both).
    pub fn open_with(path: &Path, checkpoints: Checkpoints) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Unavailable(format!("{}: {e}", parent.display())))?;
        }
        let err = unavailable(path);
        let mut conn = Connection::open(path).map_err(&err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(&err)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(&err)?;
        conn.pragma_update(None, "secure_delete", true)
            .map_err(&err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS);
        migrate(&mut conn, path)?;
        if checkpoints == Checkpoints::Background {
            conn.pragma_update(None, "wal_autocheckpoint", 0)
                .map_err(&err)?;
            // After a burst, the log file goes back to at most this size
            // when it rewinds.
            conn.pragma_update(None, "journal_size_limit", 64 << 20)
                .map_err(&err)?;
        }
        let conn = Arc::new(Mutex::new(conn));
        let readers = Arc::new(Readers::open(path)?);
        let unsynced = match checkpoints {
            Checkpoints::Background => Some(
                checkpoint::start(path, Arc::downgrade(&conn))
                    .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?,
            ),
            Checkpoints::Inline => None,
        };
        Ok(EmbeddedStore {
            path: path.to_path_buf(),
            conn,
            readers,
            unsynced,
        })
    }

    /// The store with rotations synced as `sync` says (the default is
    /// [`RotationSync::Deferred`]; with inline checkpoints every commit is
    /// fsynced, as there is no thread to defer to).
    pub fn rotation_sync(mut self, sync: RotationSync) -> Self {
        if sync == RotationSync::Commit {
            self.unsynced = None;
        }
        self
    }

    /// The writing connection, unless it could not be made to fsync again.
    fn writer(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        let conn = self.conn.lock().map_err(|_| poisoned())?;
        if self.unsynced.as_ref().is_some_and(|u| u.stuck()) {
            return Err(StoreError::Unavailable(format!(
                "{}: the writing connection no longer fsyncs its commits",
                self.path.display()
            )));
        }
        Ok(conn)
    }

    /// Schema version in the file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let conn = self.writer()?;
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(unavailable(&self.path))
    }

    /// The database file, for tests that scan what was written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the writing connection on the blocking pool.
    async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &Path) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.on_pool(Role::Write, f).await
    }

    /// Runs `f` on a read-only connection on the blocking pool: it sees
    /// every commit made before it starts, and waits for none in progress.
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &Path) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.on_pool(Role::Read, move |conn, path| f(conn, path))
            .await
    }

    /// Runs `f` on a connection of `role`, timing the wait for it
    /// ([`Step::StoreWait`]: the pool and the lock) apart from the work.
    async fn on_pool<R: Send + 'static>(
        &self,
        role: Role,
        f: impl FnOnce(&mut Connection, &Path) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let store = self.clone();
        let asked = Instant::now();
        let (out, waited, ran) = tokio::task::spawn_blocking(move || {
            let mut conn = match role {
                Role::Write => store.writer()?,
                Role::Read => store.readers.lock()?,
            };
            let waited = asked.elapsed();
            let out = f(&mut conn, &store.path);
            Ok((out, waited, asked.elapsed() - waited))
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store worker failed: {e}")))??;
        timing::record(Step::StoreWait, waited);
        timing::record(Step::Store, ran);
        out
    }

    /// The user whose unique `column` (`id` or `email`) equals `value`.
    async fn user_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<User>, StoreError> {
        let value = value.to_string();
        self.read(move |conn, path| {
            conn.query_row_cached(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE {column} = ?1"),
                [value],
                user_from_row,
            )
            .optional()
            .map_err(unavailable(path))?
            .map(to_user)
            .transpose()
        })
        .await
    }

    /// A real round trip to the database file: a read of the schema and a
    /// quick integrity check, on the blocking pool.
    async fn check(&self) -> Result<(), StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = store.writer()?;
            let err = unavailable(&store.path);
            if !store.path.exists() {
                return Err(StoreError::Unavailable(format!(
                    "{} has been removed",
                    store.path.display()
                )));
            }
            conn.query_row_cached("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))
                .map_err(&err)?;
            let check: String = conn
                .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
                .map_err(&err)?;
            if check != "ok" {
                return Err(StoreError::Unavailable(format!("integrity check: {check}")));
            }
            free_space(&store.path)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store worker failed: {e}")))?
    }
}

/// Below this much free space beside the database, writes (registration,
/// lockout counters, refresh tokens) are about to fail, so health says so
/// before a user finds out.
const MIN_FREE_BYTES: u64 = 1 << 20;

/// Refuses when the file system holding the database is (nearly) full.
fn free_space(path: &Path) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let st = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    if free < MIN_FREE_BYTES {
        return Err(StoreError::Unavailable(format!(
            "no space left on the file system of {}: {} KiB free",
            dir.display(),
            free / 1024
        )));
    }
    Ok(())
}

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn to_user(row: (String, String, String, String, i64)) -> Result<User, StoreError> {
    let (id, name, email, status, created_at) = row;
    Ok(User {
        id: UserId::stored(id),
        name: Name::stored(name),
        email: Email::stored(email),
        status: UserStatus::parse(&status)?,
        created_at,
    })
}

const USER_COLUMNS: &str = "id, name, email, status, created_at";

/// The auth log's columns in the order `log_from_row` reads them.
const LOG_COLUMNS: &str =
    "id, at, user_id, action, outcome, reason, similarity_bucket, client_ip, user_agent, instance";

fn log_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<[Value; 10]> {
    Ok([
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ])
}

fn to_log(v: [Value; 10]) -> Result<AuthLog, StoreError> {
    let text = |v: &Value| match v {
        Value::Text(s) => Some(s.clone()),
        _ => None,
    };
    let int = |v: &Value| match v {
        Value::Integer(i) => Some(*i),
        _ => None,
    };
    let bad = || StoreError::Corrupt("auth log row".into());
    Ok(AuthLog {
        id: int(&v[0]).ok_or_else(bad)?.to_string(),
        at: int(&v[1]).ok_or_else(bad)?,
        user_id: text(&v[2]).map(UserId::stored),
        action: Action::parse(&text(&v[3]).ok_or_else(bad)?)?,
        outcome: Outcome::parse(&text(&v[4]).ok_or_else(bad)?)?,
        reason: text(&v[5]),
        similarity_bucket: int(&v[6]).and_then(|b| u8::try_from(b).ok()),
        client_ip: text(&v[7]),
        user_agent: text(&v[8]),
        instance: text(&v[9]),
    })
}

/// Prepared statements each connection keeps (rusqlite's default is 16):
/// every statement the store runs fits, so none is parsed twice.
const STATEMENTS: usize = 96;

/// Statements from the connection's cache of prepared ones. rusqlite's
/// `execute` and `query_row` parse their SQL anew on every call; a sign-in
/// runs a dozen statements, and under load parsing them took ~8 % of the
/// daemon's CPU beside the face (a `perf` profile at 4 clients).
trait Cached {
    fn execute_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;

    fn query_row_cached<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn execute_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, row)
    }
}

/// Until when `key` is locked at `now`, if it is.
fn locked(conn: &Connection, key: &str, now: Millis) -> rusqlite::Result<Option<Millis>> {
    conn.query_row_cached(
        "SELECT until FROM lockouts WHERE subject = ?1 AND until > ?2",
        params![key, now],
        |r| r.get(0),
    )
    .optional()
}

/// Forgets `key`'s failures (a success, a lockout that replaces them, an
/// operator's unlock).
fn forget_failures(conn: &Connection, key: &str) -> rusqlite::Result<usize> {
    conn.execute_cached("DELETE FROM failed_attempts WHERE subject = ?1", [key])
}

/// Gives back one place `key` reserved and did not fail.
fn give_back(conn: &Connection, key: &str) -> rusqlite::Result<usize> {
    conn.execute_cached(
        "UPDATE failed_attempts SET count = count - 1 WHERE subject = ?1 AND count > failed",
        [key],
    )
}

fn insert_log(conn: &Connection, log: &AuthLog) -> rusqlite::Result<usize> {
    conn.execute_cached(
        "INSERT INTO auth_logs (at, user_id, action, outcome, reason, similarity_bucket, client_ip, user_agent, instance)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            log.at,
            log.user_id.as_ref().map(UserId::as_str),
            log.action.as_str(),
            log.outcome.as_str(),
            log.reason,
            log.similarity_bucket,
            log.client_ip,
            log.user_agent,
            log.instance
        ],
    )
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.check().await
    }

    async fn settle_sign_in(
        &self,
        subjects: &[Subject],
        log: &AuthLog,
        family: &NewFamily,
    ) -> Result<(), StoreError> {
        let (subjects, log, family) = (subjects.to_vec(), log.clone(), family.clone());
        self.with(move |conn, path| {
            let err = unavailable(path);
            let tx = conn.transaction().map_err(&err)?;
            lockouts::settle(&tx, &subjects, &log).map_err(&err)?;
            sessions::insert_family(&tx, &family).map_err(&err)?;
            tx.commit().map_err(&err)
        })
        .await
    }

    async fn purge_expired(&self, now: Millis) -> Result<u64, StoreError> {
        self.with(move |conn, path| {
            let err = unavailable(path);
            let tx = conn.transaction().map_err(&err)?;
            let mut n = 0;
            for sql in [
                "DELETE FROM refresh_families WHERE expires_at <= ?1",
                "DELETE FROM failed_attempts WHERE expires_at <= ?1",
                "DELETE FROM lockouts WHERE until <= ?1",
                "DELETE FROM challenges WHERE expires_at <= ?1",
                "DELETE FROM invites WHERE expires_at <= ?1",
            ] {
                n += tx.execute(sql, [now]).map_err(&err)? as u64;
            }
            tx.commit().map_err(&err)?;
            Ok(n)
        })
        .await
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let err = unavailable(path);
    let supported = MIGRATIONS.len() as i64;
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(&err)?;
    if found > supported {
        return Err(StoreError::TooNew { found, supported });
    }
    let tx = conn.transaction().map_err(&err)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql).map_err(&err)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(&err)?;
        tracing::info!(version = i + 1, "applied store migration");
    }
    tx.commit().map_err(&err)?;
    backfill_skeletons(conn).map_err(&err)
}

/// Fills in the skeleton of accounts made before migration 5. Two existing
/// accounts that look alike keep working (the second keeps no skeleton and
/// is named in the log for an operator to look at).
fn backfill_skeletons(conn: &mut Connection) -> rusqlite::Result<()> {
    let rows: Vec<(String, String)> = {
        let mut q = conn.prepare("SELECT id, email FROM users WHERE skeleton IS NULL")?;
        q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    for (id, email) in rows {
        let skeleton = Email::stored(email).skeleton();
        match conn.execute_cached(
            "UPDATE users SET skeleton = ?1 WHERE id = ?2",
            params![skeleton, id],
        ) {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                tracing::warn!(user = %id, "account's address looks like another account's");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The subject's attempts (failed plus running), failures and window start
/// at `now` (0, 0 and `now` when there is none or its window ran out).
fn window(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    now: Millis,
    p: &LockPolicy,
) -> rusqlite::Result<(i64, i64, Millis)> {
    let current: Option<(i64, i64, i64)> = tx
        .query_row_cached(
            "SELECT count, failed, window_start FROM failed_attempts WHERE subject = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(match current {
        Some((c, f, s)) if s + p.window > now => (c, f, s),
        _ => (0, 0, now),
    })
}

fn put_count(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    (count, failed): (i64, i64),
    start: Millis,
    p: &LockPolicy,
) -> rusqlite::Result<()> {
    tx.execute_cached(
        "INSERT INTO failed_attempts (subject, count, failed, window_start, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(subject) DO UPDATE SET count = excluded.count, failed = excluded.failed,
            window_start = excluded.window_start, expires_at = excluded.expires_at",
        params![key, count, failed, start, start + p.window],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_migrates_once_and_reports_health() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let s = EmbeddedStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        s.check().await.unwrap();
        drop(s);
        let s = EmbeddedStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(s.check().await, Err(StoreError::Unavailable(_))));
    }

    /// A read runs while a commit holds the writing connection (it would
    /// deadlock here if it waited for it), sees what was committed before
    /// it began and nothing uncommitted, and cannot write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_wait_for_no_commit_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(&dir.path().join("r.db")).unwrap();
        let count = |s: &EmbeddedStore| {
            let s = s.clone();
            async move {
                s.read(|c, p| {
                    c.query_row_cached("SELECT count(*) FROM instances", [], |r| r.get::<_, i64>(0))
                        .map_err(unavailable(p))
                })
                .await
            }
        };
        let writer = s.conn.clone();
        let (held, holding) = std::sync::mpsc::channel();
        let (commit, committing) = std::sync::mpsc::channel::<()>();
        let commits = std::thread::spawn(move || {
            let mut c = writer.lock().unwrap();
            let tx = c.transaction().unwrap();
            tx.execute_cached(
                "INSERT INTO instances (id, host, pid, version, started_at, seen_at)
                 VALUES ('a', 'h', 1, 'v', 0, 0)",
                [],
            )
            .unwrap();
            held.send(()).unwrap();
            committing.recv().unwrap();
            tx.commit().unwrap();
        });
        holding.recv().unwrap();
        let during = tokio::time::timeout(std::time::Duration::from_secs(30), count(&s))
            .await
            .expect("a read waited for the writing connection")
            .unwrap();
        assert_eq!(during, 0, "a read saw an uncommitted row");
        commit.send(()).unwrap();
        commits.join().unwrap();
        assert_eq!(
            count(&s).await.unwrap(),
            1,
            "a read missed a finished commit"
        );
        let wrote = s
            .read(|c, p| {
                c.execute_cached("DELETE FROM instances", [])
                    .map_err(unavailable(p))
            })
            .await;
        assert!(wrote.is_err(), "a read connection wrote");
        assert_eq!(count(&s).await.unwrap(), 1);
    }

    /// If the writer cannot be set back to fsyncing after a deferred
    /// rotation (here: a transaction left open, inside which `synchronous`
    /// cannot change), the store refuses its health check and every later
    /// write, rather than commit them unsynced.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_left_unsynced_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(&dir.path().join("u.db")).unwrap();
        s.check().await.unwrap();
        let unsynced = s.unsynced.clone().unwrap();
        let left_open = s
            .with(move |conn, path| {
                without_fsync(conn, path, &unsynced, |c| {
                    c.execute_batch("BEGIN").map_err(unavailable(path))
                })
            })
            .await;
        assert!(
            left_open.is_err(),
            "synchronous changed inside a transaction"
        );
        assert!(matches!(s.check().await, Err(StoreError::Unavailable(_))));
        let wrote = s
            .with(|c, p| {
                c.execute_cached("DELETE FROM instances", [])
                    .map_err(unavailable(p))
            })
            .await;
        assert!(
            matches!(wrote, Err(StoreError::Unavailable(_))),
            "a write ran on a writer left unsynced"
        );
    }

    /// Issue 22: with checkpoints on their own thread, a steady stream of
    /// commits still sees the write-ahead log rewind (its header's salt
    /// changes) instead of growing for as long as the stream lasts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_rewinds_under_a_steady_stream_of_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let store = EmbeddedStore::open(&path).unwrap();
        let wal = dir.path().join("c.db-wal");
        let log = AuthLog {
            id: String::new(),
            at: 1,
            user_id: None,
            action: Action::Login,
            outcome: Outcome::Failure,
            reason: Some("no match".into()),
            similarity_bucket: Some(3),
            client_ip: Some("192.0.2.1".into()),
            user_agent: None,
            instance: None,
        };
        let started = std::time::Instant::now();
        let mut salts = std::collections::BTreeSet::new();
        let mut commits = 0;
        while started.elapsed() < std::time::Duration::from_secs(3) {
            store.append_log(&log).await.unwrap();
            commits += 1;
            // Salt-1 and salt-2 of the WAL header: new ones on every rewind.
            let mut header = [0u8; 24];
            if let Ok(mut f) = std::fs::File::open(&wal)
                && std::io::Read::read_exact(&mut f, &mut header).is_ok()
            {
                salts.insert(header[16..24].to_vec());
            }
        }
        assert!(
            salts.len() >= 3,
            "{commits} commits in 3 s, the log rewound {} time(s)",
            salts.len().saturating_sub(1)
        );
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            EmbeddedStore::open(&path),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
