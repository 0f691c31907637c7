//! [`AuditTrail`] on SQLite.

use super::*;

#[async_trait::async_trait]
impl AuditTrail for EmbeddedStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditEntry, StoreError> {
        let event = event.clone();
        self.with(move |conn, path| {
            let err = unavailable(path);
            // IMMEDIATE: the write lock before reading the head, so no other
            // writer links to the same head.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let head = audit_head(&tx, path)?;
            let entry = AuditEntry::after(head.as_ref(), event);
            let e = &entry.event;
            tx.execute_cached(
                &format!(
                    "INSERT INTO audit_chain ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![
                    entry.seq as i64,
                    e.at,
                    e.kind,
                    e.actor,
                    e.subject,
                    e.detail,
                    &entry.hash[..]
                ],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)?;
            Ok(entry)
        })
        .await
    }

    async fn audit_entries(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(move |conn, path| {
            let err = unavailable(path);
            let mut st = conn
                .prepare(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_chain WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                ))
                .map_err(&err)?;
            let rows = st
                .query_map(params![after as i64, limit as i64], audit_from_row)
                .map_err(&err)?;
            rows.map(|r| r.map_err(&err).and_then(to_audit)).collect()
        })
        .await
    }

    async fn audit_head(&self) -> Result<Option<AuditEntry>, StoreError> {
        self.read(audit_head).await
    }

    async fn put_audit_seal(&self, seal: &AuditSeal) -> Result<(), StoreError> {
        let seal = seal.clone();
        self.with(move |conn, path| {
            conn.execute_cached(
                "INSERT OR IGNORE INTO audit_seals (seq, hash, at, kid, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![seal.seq as i64, &seal.hash[..], seal.at, seal.kid, seal.signature],
            )
            .map(|_| ())
            .map_err(unavailable(path))
        })
        .await
    }

    async fn audit_seals(&self) -> Result<Vec<AuditSeal>, StoreError> {
        self.read(|conn, path| {
            let err = unavailable(path);
            let mut st = conn
                .prepare("SELECT seq, hash, at, kid, signature FROM audit_seals ORDER BY seq")
                .map_err(&err)?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                    ))
                })
                .map_err(&err)?;
            rows.map(|r| {
                let (seq, hash, at, kid, signature) = r.map_err(&err)?;
                Ok(AuditSeal {
                    seq: stored_seq(seq)?,
                    hash: stored_hash(hash)?,
                    at,
                    kid,
                    signature,
                })
            })
            .collect()
        })
        .await
    }
}
