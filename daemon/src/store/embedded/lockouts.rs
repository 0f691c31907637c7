//! [`Lockouts`] on SQLite.

use super::*;

#[async_trait::async_trait]
impl Lockouts for EmbeddedStore {
    async fn reserve_attempt(
        &self,
        subject: &Subject,
        now: Millis,
        policy: &LockPolicy,
    ) -> Result<Reservation, StoreError> {
        self.reserve_attempts(&[(subject.clone(), *policy)], now)
            .await
    }

    async fn reserve_attempts(
        &self,
        asks: &[(Subject, LockPolicy)],
        now: Millis,
    ) -> Result<Reservation, StoreError> {
        let asks: Vec<(String, LockPolicy)> = asks.iter().map(|(s, p)| (s.key(), *p)).collect();
        let unsynced = self.unsynced.clone();
        self.with(move |conn, path| {
            let Some(unsynced) = unsynced else {
                return reserve(conn, path, &asks, now);
            };
            // Not fsynced before it is answered: nothing answered rests on a
            // reservation alone. Every answer to an attempt that got one comes
            // after a commit on this writer that fsyncs (its failure, its
            // success, its release), and that fsync takes the reservation
            // along; a power cut before it undoes only an attempt that never
            // got an answer. Other requests and the console see the count as
            // soon as it is committed, fsync or not.
            without_fsync(conn, path, &unsynced, |conn| {
                reserve(conn, path, &asks, now)
            })
        })
        .await
    }

    async fn settle_success(&self, subjects: &[Subject], log: &AuthLog) -> Result<(), StoreError> {
        let subjects = subjects.to_vec();
        let log = log.clone();
        self.with(move |conn, path| {
            let err = unavailable(path);
            let tx = conn.transaction().map_err(&err)?;
            settle(&tx, &subjects, &log).map_err(&err)?;
            tx.commit().map_err(&err)
        })
        .await
    }

    async fn fail_attempt(
        &self,
        subject: &Subject,
        now: Millis,
        policy: &LockPolicy,
    ) -> Result<FailureOutcome, StoreError> {
        let (key, p) = (subject.key(), *policy);
        self.with(move |conn, path| {
            let err = unavailable(path);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let (count, failed, start) = window(&tx, &key, now, &p).map_err(&err)?;
            // The reservation becomes a failure. If a success cleared it or
            // its window ran out meanwhile, the failure still counts, afresh.
            let failed = failed + 1;
            put_count(&tx, &key, (count.max(failed), failed), start, &p).map_err(&err)?;
            let out = if failed >= i64::from(p.max_failures) {
                let until = now + p.lock_for;
                tx.execute_cached(
                    "INSERT INTO lockouts (subject, until) VALUES (?1, ?2)
                     ON CONFLICT(subject) DO UPDATE SET until = max(until, excluded.until)",
                    params![key, until],
                )
                .map_err(&err)?;
                forget_failures(&tx, &key).map_err(&err)?;
                FailureOutcome::LockedUntil(until)
            } else {
                FailureOutcome::Counted(failed as u32)
            };
            tx.commit().map_err(&err)?;
            Ok(out)
        })
        .await
    }

    async fn release_attempt(&self, subject: &Subject) -> Result<(), StoreError> {
        let key = subject.key();
        self.with(move |conn, path| {
            give_back(conn, &key).map_err(unavailable(path))?;
            Ok(())
        })
        .await
    }

    async fn locked_until(
        &self,
        subject: &Subject,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let key = subject.key();
        self.read(move |conn, path| locked(conn, &key, now).map_err(unavailable(path)))
            .await
    }

    async fn clear_failures(&self, subject: &Subject) -> Result<(), StoreError> {
        let key = subject.key();
        self.with(move |conn, path| {
            forget_failures(conn, &key)
                .map(|_| ())
                .map_err(unavailable(path))
        })
        .await
    }

    async fn unlock(&self, subject: &Subject) -> Result<bool, StoreError> {
        let key = subject.key();
        self.with(move |conn, path| {
            let err = unavailable(path);
            let tx = conn.transaction().map_err(&err)?;
            let n = tx
                .execute_cached("DELETE FROM lockouts WHERE subject = ?1", [&key])
                .map_err(&err)?;
            forget_failures(&tx, &key).map_err(&err)?;
            tx.commit().map_err(&err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn lockouts(&self, now: Millis) -> Result<Vec<(Subject, Millis)>, StoreError> {
        self.read(move |conn, path| {
            let err = unavailable(path);
            let mut st = conn
                .prepare("SELECT subject, until FROM lockouts WHERE until > ?1 ORDER BY until")
                .map_err(&err)?;
            let rows = st
                .query_map([now], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(&err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&err)?;
            rows.into_iter()
                .map(|(k, until)| Ok((Subject::from_key(&k)?, until)))
                .collect()
        })
        .await
    }
}

/// [`Lockouts::settle_success`]'s statements, inside the caller's
/// transaction (also a sign-in's, with its session's family).
pub(super) fn settle(
    conn: &Connection,
    subjects: &[Subject],
    log: &AuthLog,
) -> rusqlite::Result<()> {
    for s in subjects {
        let key = s.key();
        match s {
            Subject::Account(_) => forget_failures(conn, &key),
            Subject::Ip(_) => give_back(conn, &key),
        }?;
    }
    insert_log(conn, log).map(|_| ())
}

/// Takes one place in each of `asks`' budgets, or none if one is locked or
/// full ([`Lockouts::reserve_attempts`]).
fn reserve(
    conn: &mut Connection,
    path: &Path,
    asks: &[(String, LockPolicy)],
    now: Millis,
) -> Result<Reservation, StoreError> {
    let err = unavailable(path);
    // IMMEDIATE: the read and the increment are one writer's, so concurrent
    // reservations queue and each sees the last count. One transaction for
    // all: a refusal rolls back the places already taken (the transaction
    // is dropped uncommitted).
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    for (key, p) in asks {
        if let Some(until) = locked(&tx, key, now).map_err(&err)? {
            return Ok(Reservation::Refused { until });
        }
        let (count, failed, start) = window(&tx, key, now, p).map_err(&err)?;
        if count >= i64::from(p.max_failures) {
            return Ok(Reservation::Refused {
                until: start + p.window,
            });
        }
        put_count(&tx, key, (count + 1, failed), start, p).map_err(&err)?;
    }
    tx.commit().map_err(&err)?;
    Ok(Reservation::Granted)
}
