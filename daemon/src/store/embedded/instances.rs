//! [`Instances`] on SQLite.

use super::*;

#[async_trait::async_trait]
impl Instances for EmbeddedStore {
    async fn heartbeat(&self, beat: &InstanceBeat) -> Result<(), StoreError> {
        let b = beat.clone();
        let load = serde_json::to_string(&b.load)
            .map_err(|e| StoreError::Unavailable(format!("instance load: {e}")))?;
        self.with(move |conn, path| {
            let err = unavailable(path);
            let tx = conn.transaction().map_err(&err)?;
            tx.execute_cached(
                "INSERT INTO instances (id, host, pid, version, started_at, seen_at, load, kek)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(id) DO UPDATE SET
                    seen_at = excluded.seen_at, load = excluded.load, kek = excluded.kek",
                params![
                    b.id,
                    b.host,
                    b.pid,
                    b.version,
                    b.started_at,
                    b.seen_at,
                    load,
                    b.kek
                ],
            )
            .map_err(&err)?;
            tx.execute_cached(
                "DELETE FROM instances WHERE seen_at < ?1",
                [b.seen_at - INSTANCE_RETENTION_MS],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)
        })
        .await
    }

    async fn instances(&self, since: Millis) -> Result<Vec<InstanceBeat>, StoreError> {
        self.read(move |conn, path| {
            let err = unavailable(path);
            let mut st = conn
                .prepare(
                    "SELECT id, host, pid, version, started_at, seen_at, load, kek FROM instances
                     WHERE seen_at >= ?1 ORDER BY started_at, id",
                )
                .map_err(&err)?;
            st.query_map([since], |r| {
                Ok(InstanceBeat {
                    id: r.get(0)?,
                    host: r.get(1)?,
                    pid: r.get(2)?,
                    version: r.get(3)?,
                    started_at: r.get(4)?,
                    seen_at: r.get(5)?,
                    // Absent before migration 10; unreadable is shown as none.
                    load: r
                        .get::<_, Option<String>>(6)?
                        .and_then(|j| serde_json::from_str(&j).ok())
                        .unwrap_or_default(),
                    kek: r.get(7)?,
                })
            })
            .map_err(&err)?
            .collect::<Result<_, _>>()
            .map_err(&err)
        })
        .await
    }
}
