//! [`Instances`] on MongoDB.

use super::*;

#[async_trait::async_trait]
impl Instances for MongoStore {
    async fn heartbeat(&self, beat: &InstanceBeat) -> Result<(), StoreError> {
        let b = beat;
        // The wire type's own spelling, as the embedded store keeps it (JSON).
        let load = mongodb::bson::to_document(&b.load)
            .map_err(|e| StoreError::Unavailable(format!("instance load: {e}")))?;
        self.coll("instances")
            .update_one(
                doc! {"_id": &b.id},
                // All of it every time (it does not change within a start):
                // nx-27017 does not apply `$setOnInsert`.
                doc! {"$set": {
                    "host": &b.host,
                    "pid": i64::from(b.pid),
                    "version": &b.version,
                    "started_at": b.started_at,
                    "seen_at": b.seen_at,
                    "load": load,
                    "kek": b.kek.map_or(Bson::Null, |v| Bson::Int64(i64::from(v))),
                }},
            )
            .upsert(true)
            .await
            .map_err(down)?;
        self.coll("instances")
            .delete_many(doc! {"seen_at": {"$lt": b.seen_at - INSTANCE_RETENTION_MS}})
            .await
            .map_err(down)?;
        Ok(())
    }

    async fn instances(&self, since: Millis) -> Result<Vec<InstanceBeat>, StoreError> {
        let docs = self
            .all(
                "instances",
                doc! {"seen_at": {"$gte": since}},
                doc! {"started_at": 1, "_id": 1},
                None,
            )
            .await?;
        docs.iter()
            .map(|d| {
                Ok(InstanceBeat {
                    id: get_str(d, "_id")?,
                    host: get_str(d, "host")?,
                    pid: u32::try_from(get_i64(d, "pid")?).map_err(|_| corrupt("pid"))?,
                    version: get_str(d, "version")?,
                    started_at: get_i64(d, "started_at")?,
                    seen_at: get_i64(d, "seen_at")?,
                    // Absent from older daemons; unreadable is shown as none.
                    load: d
                        .get_document("load")
                        .ok()
                        .and_then(|l| mongodb::bson::from_document(l.clone()).ok())
                        .unwrap_or_default(),
                    kek: get_i64(d, "kek").ok().and_then(|v| u32::try_from(v).ok()),
                })
            })
            .collect()
    }
}
