//! SQLite through `rusqlite` (bundled, so the appliance has no server to run):
//! WAL journal, `synchronous = FULL` (every commit fsync'd), foreign keys on,
//! and versioned migrations applied in one transaction at start.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::StoreError;

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
];

/// The embedded database. One connection behind a mutex: SQLite serialises
/// writers anyway, and every call runs on the blocking pool.
#[derive(Clone)]
pub struct EmbeddedStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
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
    /// Opens (creating if needed, mode 0600 via the process umask) and migrates.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
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
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(&err)?;
        migrate(&mut conn, path)?;
        Ok(EmbeddedStore {
            path: path.to_path_buf(),
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Schema version in the file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| StoreError::Unavailable("connection lock poisoned".into()))?;
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(unavailable(&self.path))
    }

    /// A real round trip to the database file: a read of the schema and a
    /// write-ahead-log checkpoint probe, on the blocking pool.
    pub async fn health(&self) -> Result<(), StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = store
                .conn
                .lock()
                .map_err(|_| StoreError::Unavailable("connection lock poisoned".into()))?;
            let err = unavailable(&store.path);
            if !store.path.exists() {
                return Err(StoreError::Unavailable(format!(
                    "{} has been removed",
                    store.path.display()
                )));
            }
            conn.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))
                .map_err(&err)?;
            let check: String = conn
                .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
                .map_err(&err)?;
            if check != "ok" {
                return Err(StoreError::Unavailable(format!("integrity check: {check}")));
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store worker failed: {e}")))?
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
    tx.commit().map_err(&err)
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
        s.health().await.unwrap();
        drop(s);
        let s = EmbeddedStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(s.health().await, Err(StoreError::Unavailable(_))));
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
