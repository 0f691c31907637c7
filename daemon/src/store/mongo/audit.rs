//! [`AuditTrail`] on MongoDB.

use super::*;

#[async_trait::async_trait]
impl AuditTrail for MongoStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditEntry, StoreError> {
        // Read the head (by `seq`, a number: nx-27017 orders integer `_id`s
        // as text, 10 before 9), insert its successor under `_id` = its
        // number: of
        // two writers linking to one head, the second insert is a duplicate
        // key and that writer reads the new head and tries again, after a
        // random pause that grows with each loss (many daemons appending at
        // once do not retry in lockstep).
        for attempt in 0..64u32 {
            if attempt > 0 {
                let cap = 1u64 << attempt.min(6);
                let pause = rand::random::<u64>() % cap + 1;
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            let head = self.audit_head().await?;
            let entry = AuditEntry::after(head.as_ref(), event.clone());
            let e = &entry.event;
            let inserted = self
                .coll("audit_chain")
                .insert_one(doc! {
                    "_id": entry.seq as i64,
                    "seq": entry.seq as i64,
                    "at": e.at,
                    "kind": &e.kind,
                    "actor": &e.actor,
                    "subject": e.subject.as_deref().map_or(Bson::Null, |s| Bson::String(s.into())),
                    "detail": &e.detail,
                    "hash": bin(&entry.hash),
                })
                .await;
            match inserted {
                Ok(_) => return Ok(entry),
                Err(e) if is_duplicate(&e) => continue,
                Err(e) => return Err(down(e)),
            }
        }
        Err(StoreError::Unavailable(
            "audit chain: too many concurrent appends".into(),
        ))
    }

    async fn audit_entries(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let docs = self
            .all(
                "audit_chain",
                doc! {"seq": {"$gt": after as i64}},
                doc! {"seq": 1},
                Some(limit),
            )
            .await?;
        docs.iter().map(audit_entry).collect()
    }

    async fn audit_head(&self) -> Result<Option<AuditEntry>, StoreError> {
        self.coll("audit_chain")
            .find_one(doc! {})
            .sort(doc! {"seq": -1})
            .await
            .map_err(down)?
            .as_ref()
            .map(audit_entry)
            .transpose()
    }

    async fn put_audit_seal(&self, seal: &AuditSeal) -> Result<(), StoreError> {
        let r = self
            .coll("audit_seals")
            .insert_one(doc! {
                "_id": seal.seq as i64,
                "seq": seal.seq as i64,
                "hash": bin(&seal.hash),
                "at": seal.at,
                "kid": &seal.kid,
                "signature": bin(&seal.signature),
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate(&e) => Ok(()),
            Err(e) => Err(down(e)),
        }
    }

    async fn audit_seals(&self) -> Result<Vec<AuditSeal>, StoreError> {
        let docs = self
            .all("audit_seals", doc! {}, doc! {"seq": 1}, None)
            .await?;
        docs.iter()
            .map(|d| {
                Ok(AuditSeal {
                    seq: get_seq(d)?,
                    hash: get_hash(d)?,
                    at: get_i64(d, "at")?,
                    kid: get_str(d, "kid")?,
                    signature: get_bytes(d, "signature")?,
                })
            })
            .collect()
    }
}
