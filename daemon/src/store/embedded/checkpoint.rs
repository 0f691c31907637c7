//! WAL checkpoints off the request path.
//!
//! SQLite's default checkpoints inside a commit: the commit that takes the
//! write-ahead log past 1000 pages also copies all of them into the database
//! file and fsyncs it, and the request waiting on that commit (a sign-in, a
//! token refresh) stalls for as long as the disk takes to absorb ~4 MB: on
//! a slow or throttled disk, a large part of a second (issue 22 saw stalls
//! of a quarter of a second in one sign-in of forty; on the bench host a
//! sign-in's store work peaked at 92 ms this way, and at 7 ms without it,
//! `bench/results/latest.md`). Here the request connection never checkpoints
//! (`wal_autocheckpoint = 0`); a thread with its own connection does, four
//! times a second:
//!
//! 1. a PASSIVE checkpoint, which copies what is committed without taking
//!    any lock a writer needs (requests go on committing meanwhile);
//! 2. if the log is long enough to be worth starting over and has grown
//!    since the last time, a second PASSIVE checkpoint while holding the
//!    request connection's mutex: it only copies the pages committed during
//!    the first, and leaves the log fully checkpointed, so that the next
//!    commit rewinds the log to its start. Without this step a steady
//!    stream of commits never finds the log fully copied, and the file
//!    grows without end (measured: 160 MB in 5 s of sign-ins at full rate;
//!    every commit then extends the file, and its fsync costs 1.5x).
//!
//! It also makes durable, within one interval, the commits made without
//! their own fsync ([`Unsynced`]: refresh rotations and sign-in reservations,
//! by default).
//!
//! The thread ends when the store is dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How often the log is checkpointed, and so the longest an unsynced commit
/// waits for its fsync (plus the fsync itself).
const INTERVAL: Duration = Duration::from_millis(250);

/// Whether a commit made with `synchronous = NORMAL` may not be on disk yet.
/// The log is appended in order and recovery replays it up to the last
/// intact commit, so one fsync of the log file (by this thread, or by any
/// later commit made with `FULL`) makes every earlier commit durable.
#[derive(Debug)]
pub struct Unsynced {
    owed: AtomicBool,
    /// The writer could not be set back to `FULL` after such a commit.
    stuck: AtomicBool,
    wal: PathBuf,
}

impl Unsynced {
    fn new(db: &Path) -> Self {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Unsynced {
            owed: AtomicBool::new(false),
            stuck: AtomicBool::new(false),
            wal: wal.into(),
        }
    }

    /// Called after such a commit (by `without_fsync`, and again by a failed
    /// [`Self::settle`]): the thread fsyncs the log at its next turn.
    pub fn owe(&self) {
        self.owed.store(true, Ordering::Release);
    }

    /// Marks the writing connection as left without its fsyncs.
    pub fn stick(&self) {
        self.stuck.store(true, Ordering::Release);
    }

    /// Whether [`Self::stick`] was called: the store then refuses writes.
    pub fn stuck(&self) -> bool {
        self.stuck.load(Ordering::Acquire)
    }

    /// Fsyncs the log if a commit is owed one. The flag is cleared first, so
    /// a commit that ends during the fsync sets it again for the next turn.
    fn settle(&self) {
        if !self.owed.swap(false, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = std::fs::File::open(&self.wal).and_then(|f| f.sync_data()) {
            self.owe();
            tracing::error!(error = %e, "cannot fsync the write-ahead log");
        }
    }
}

/// Length of the log (pages) from which the second, brief, writer-pausing
/// step runs (shorter: the log rewinds by itself at a quieter moment).
const REWIND_PAGES: i64 = 256;

/// What one checkpoint did: (pages in the log, pages copied into the
/// database), as `PRAGMA wal_checkpoint` reports them; `None` if busy.
fn passive(conn: &Connection) -> rusqlite::Result<Option<(i64, i64)>> {
    let (busy, log, done): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    Ok((busy == 0).then_some((log, done)))
}

/// Starts the checkpoint thread for the database at `path`, whose request
/// connection is `writer` (held weakly: the thread ends with the store);
/// returns what the thread fsyncs for commits that do not.
pub fn start(path: &Path, writer: Weak<Mutex<Connection>>) -> std::io::Result<Arc<Unsynced>> {
    let conn = Connection::open(path).map_err(std::io::Error::other)?;
    // Same durability as the request connection: the checkpoint fsyncs the
    // database file before the log may be reused.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(std::io::Error::other)?;
    conn.busy_timeout(super::BUSY_TIMEOUT)
        .map_err(std::io::Error::other)?;
    let unsynced = Arc::new(Unsynced::new(path));
    let owed = unsynced.clone();
    std::thread::Builder::new()
        .name("arclock-checkpoint".into())
        .spawn(move || run(conn, writer, &owed))?;
    Ok(unsynced)
}

fn run(conn: Connection, writer: Weak<Mutex<Connection>>, unsynced: &Unsynced) {
    // The log's length at the last rewind attempt: nothing new, no pause.
    let mut settled = 0;
    loop {
        std::thread::sleep(INTERVAL);
        unsynced.settle();
        let Some(writer) = writer.upgrade() else {
            return;
        };
        let started = Instant::now();
        // `log` is the log's length when this checkpoint began; commits
        // made meanwhile are still to copy, and the log rewinds only when
        // a commit finds nothing left to copy.
        let log = match passive(&conn) {
            Ok(Some((log, _))) => log,
            Ok(None) => 0,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed");
                0
            }
        };
        let mut rewound = false;
        if log >= REWIND_PAGES && log != settled {
            // Requests wait here only for the pages committed during the
            // first step, not for the whole log.
            if let Ok(_paused) = writer.lock()
                && let Ok(Some((l, d))) = passive(&conn)
            {
                rewound = l == d;
                settled = l;
            }
        }
        drop(writer);
        let took = started.elapsed();
        if took > Duration::from_millis(100) {
            tracing::debug!(
                ms = took.as_millis() as u64,
                rewound,
                "slow WAL checkpoint (off the request path)"
            );
        }
    }
}
