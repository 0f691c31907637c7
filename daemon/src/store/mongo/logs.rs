//! [`Logs`] on MongoDB.

use super::*;

#[async_trait::async_trait]
impl Logs for MongoStore {
    async fn append_log(&self, log: &AuthLog) -> Result<(), StoreError> {
        self.coll("auth_logs")
            .insert_one(Self::log_doc(log))
            .await
            .map_err(down)?;
        Ok(())
    }

    async fn logs(&self, f: &LogFilter) -> Result<LogPage, StoreError> {
        let mut filter = doc! {};
        if let Some(u) = &f.user_id {
            filter.insert("user_id", u.as_str());
        }
        if let Some(a) = f.action {
            filter.insert("action", a.as_str());
        }
        if let Some(o) = f.outcome {
            filter.insert("outcome", o.as_str());
        }
        if let Some(ip) = &f.client_ip {
            filter.insert("client_ip", ip.as_str());
        }
        if let Some(i) = &f.exclude_instance {
            // `$ne` also matches entries without the field (older daemons).
            filter.insert("instance", doc! {"$ne": i.as_str()});
        }
        let mut at = doc! {};
        if let Some(t) = f.since {
            at.insert("$gte", t);
        }
        if let Some(t) = f.until {
            at.insert("$lt", t);
        }
        if !at.is_empty() {
            filter.insert("at", at);
        }
        if let Some(c) = &f.before {
            // A well-formed id this backend did not issue (the embedded
            // store's row number): every entry at that time.
            let oid = ObjectId::parse_str(&c.id).unwrap_or(ObjectId::from_bytes([0xff; 12]));
            filter.insert(
                "$or",
                vec![
                    doc! {"at": {"$lt": c.at}},
                    doc! {"at": c.at, "_id": {"$lt": oid}},
                ],
            );
        }
        let limit = f.page_size();
        let docs: Vec<Document> = self
            .coll("auth_logs")
            .find(filter)
            .sort(doc! {"at": -1, "_id": -1})
            .limit(limit as i64 + 1)
            .await
            .map_err(down)?
            .try_collect()
            .await
            .map_err(down)?;
        let entries = docs
            .iter()
            .map(Self::to_log)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LogPage::from_overfetch(entries, limit))
    }
}
