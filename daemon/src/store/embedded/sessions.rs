//! [`Sessions`] on SQLite.

use super::*;
use crate::store::Rotate;

#[async_trait::async_trait]
impl Sessions for EmbeddedStore {
    async fn create_family(&self, family: &NewFamily) -> Result<(), StoreError> {
        let f = family.clone();
        self.with(move |conn, path| {
            let err = unavailable(path);
            let tx = conn.transaction().map_err(&err)?;
            insert_family(&tx, &f).map_err(&err)?;
            tx.commit().map_err(&err)
        })
        .await
    }

    async fn rotate_refresh(&self, ask: Rotate<'_>) -> Result<Rotation, StoreError> {
        let ask = Swap {
            presented: *ask.presented,
            next: *ask.next,
            now: ask.now,
            claims: ask.claims.map(|(u, f)| (u.clone(), f.to_string())),
            entry: ask.entry.cloned(),
        };
        let unsynced = self.unsynced.clone();
        self.with(move |conn, path| {
            // Only a revocation is left undone, and with `Now` none is.
            let fsynced = |conn: &mut Connection| {
                swap(conn, path, &ask, Fsync::Now)?.ok_or_else(|| {
                    StoreError::Unavailable("a refresh token's revocation was left undone".into())
                })
            };
            let Some(unsynced) = unsynced else {
                return fsynced(conn);
            };
            match without_fsync(conn, path, &unsynced, |conn| {
                swap(conn, path, &ask, Fsync::Later)
            })? {
                Some(rotation) => Ok(rotation),
                // A revocation, made again on the fsyncing connection (the
                // writer's lock is still held: nothing changed in between).
                None => fsynced(conn),
            }
        })
        .await
    }

    async fn revoke_family_of(&self, token_hash: &[u8; 32]) -> Result<bool, StoreError> {
        let hash = *token_hash;
        self.with(move |conn, path| {
            conn.execute_cached(
                "UPDATE refresh_families SET revoked = 1
                 WHERE revoked = 0 AND id = (SELECT family_id FROM refresh_tokens WHERE hash = ?1)",
                [hash.as_slice()],
            )
            .map(|n| n > 0)
            .map_err(unavailable(path))
        })
        .await
    }

    async fn revoke_family(&self, family_id: &str) -> Result<bool, StoreError> {
        let id = family_id.to_string();
        self.with(move |conn, path| {
            conn.execute_cached(
                "UPDATE refresh_families SET revoked = 1 WHERE revoked = 0 AND id = ?1",
                [&id],
            )
            .map(|n| n > 0)
            .map_err(unavailable(path))
        })
        .await
    }

    async fn family_live(&self, family_id: &str, now: Millis) -> Result<bool, StoreError> {
        let id = family_id.to_string();
        self.read(move |conn, path| {
            conn.query_row_cached(
                "SELECT 1 FROM refresh_families WHERE id = ?1 AND revoked = 0 AND expires_at > ?2",
                params![id, now],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(unavailable(path))
        })
        .await
    }
}

/// [`Sessions::rotate_refresh`]'s question, owned, to ask on the blocking pool.
struct Swap {
    presented: [u8; 32],
    next: [u8; 32],
    now: Millis,
    claims: Option<(UserId, String)>,
    entry: Option<AuthLog>,
}

/// Whether [`swap`] runs on a connection whose commit fsyncs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fsync {
    Now,
    /// The commit does not: only a rotation may commit this way, and a
    /// revocation is left undone (`None`) to be made again with `Now`.
    Later,
}

/// The rotation in one immediate transaction: the presented token's family,
/// the account's state and the claims checked, then the swap and its log
/// entry, or the family revoked.
fn swap(
    conn: &mut Connection,
    path: &Path,
    ask: &Swap,
    fsync: Fsync,
) -> Result<Option<Rotation>, StoreError> {
    let (presented, next, now) = (ask.presented, ask.next, ask.now);
    let err = unavailable(path);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    let row: Option<(String, String, Vec<u8>, bool, i64, bool)> = tx
        .query_row_cached(
            "SELECT f.id, f.user_id, f.current_hash, f.revoked, f.expires_at,
                    COALESCE(u.status = ?2, 0)
             FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id
             LEFT JOIN users u ON u.id = f.user_id
             WHERE t.hash = ?1",
            params![presented.as_slice(), UserStatus::Active.as_str()],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get::<_, i64>(3)? != 0,
                    r.get(4)?,
                    r.get::<_, i64>(5)? != 0,
                ))
            },
        )
        .optional()
        .map_err(&err)?;
    let Some((family_id, user, current, revoked, expires_at, active)) = row else {
        return Ok(Some(Rotation::Invalid));
    };
    let user_id = UserId::stored(user);
    if ask
        .claims
        .as_ref()
        .is_some_and(|(u, f)| *u != user_id || *f != family_id)
    {
        return Ok(Some(Rotation::Mismatch { user_id, family_id }));
    }
    if revoked || expires_at <= now {
        return Ok(Some(Rotation::Invalid));
    }
    let revoke = |tx: rusqlite::Transaction<'_>| {
        tx.execute_cached(
            "UPDATE refresh_families SET revoked = 1 WHERE id = ?1",
            [&family_id],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)
    };
    let reused = current != presented;
    if reused || !active {
        if fsync == Fsync::Later {
            return Ok(None);
        }
        revoke(tx)?;
        return Ok(Some(if reused {
            Rotation::Reused { user_id, family_id }
        } else {
            Rotation::Invalid
        }));
    }
    tx.execute_cached(
        "UPDATE refresh_families SET current_hash = ?1 WHERE id = ?2",
        params![next.as_slice(), family_id],
    )
    .map_err(&err)?;
    tx.execute_cached(
        "INSERT INTO refresh_tokens (hash, family_id) VALUES (?1, ?2)",
        params![next.as_slice(), family_id],
    )
    .map_err(&err)?;
    if let Some(entry) = &ask.entry {
        insert_log(&tx, entry).map_err(&err)?;
    }
    tx.commit().map_err(&err)?;
    Ok(Some(Rotation::Rotated { user_id, family_id }))
}

/// [`Sessions::create_family`]'s statements, inside the caller's
/// transaction (also a sign-in's, with its settlement).
pub(super) fn insert_family(conn: &Connection, f: &NewFamily) -> rusqlite::Result<()> {
    conn.execute_cached(
        "INSERT INTO refresh_families (id, user_id, current_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![f.id, f.user_id.as_str(), f.token_hash.as_slice(), f.created_at, f.expires_at],
    )?;
    conn.execute_cached(
        "INSERT INTO refresh_tokens (hash, family_id) VALUES (?1, ?2)",
        params![f.token_hash.as_slice(), f.id],
    )?;
    Ok(())
}
