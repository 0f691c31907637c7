//! [`Instances`] on MongoDB.

use super::*;
use crate::store::Load;

#[async_trait::async_trait]
impl Instances for MongoStore {
    async fn heartbeat(&self, beat: &InstanceBeat) -> Result<(), StoreError> {
        let b = beat;
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
                    "load": load_doc(&b.load),
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
                    load: d.get_document("load").map(to_load).unwrap_or_default(),
                    kek: get_i64(d, "kek").ok().and_then(|v| u32::try_from(v).ok()),
                })
            })
            .collect()
    }
}

/// Counters as BSON integers (`Int64`: a daemon that runs for years counts
/// past `i32`).
fn load_doc(l: &Load) -> Document {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    doc! {
        "requests": n(l.requests),
        "server_errors": n(l.server_errors),
        "accepts": n(l.accepts),
        "rejects": n(l.rejects),
        "locked": n(l.locked),
        "lockouts": n(l.lockouts),
    }
}

/// A stored load; a missing or negative counter reads as 0.
fn to_load(d: &Document) -> Load {
    let n = |k: &str| {
        get_i64(d, k)
            .ok()
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0)
    };
    Load {
        requests: n("requests"),
        server_errors: n("server_errors"),
        accepts: n("accepts"),
        rejects: n("rejects"),
        locked: n("locked"),
        lockouts: n("lockouts"),
    }
}
