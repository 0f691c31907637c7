//! [`Instances`] on SQLite.

use super::*;

#[async_trait::async_trait]
impl Instances for EmbeddedStore {
    async fn heartbeat(&self, beat: &InstanceBeat) -> Result<(), StoreError> {
        let b = beat.clone();
        self.with(move |conn, path| {
            let err = unavailable(path);
            let tx = conn.transaction().map_err(&err)?;
            tx.execute(
                "INSERT INTO instances (id, host, pid, version, started_at, seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET seen_at = excluded.seen_at",
                params![b.id, b.host, b.pid, b.version, b.started_at, b.seen_at],
            )
            .map_err(&err)?;
            tx.execute(
                "DELETE FROM instances WHERE seen_at < ?1",
                [b.seen_at - INSTANCE_RETENTION_MS],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)
        })
        .await
    }

    async fn instances(&self, since: Millis) -> Result<Vec<InstanceBeat>, StoreError> {
        self.with(move |conn, path| {
            let err = unavailable(path);
            let mut st = conn
                .prepare(
                    "SELECT id, host, pid, version, started_at, seen_at FROM instances
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
                })
            })
            .map_err(&err)?
            .collect::<Result<_, _>>()
            .map_err(&err)
        })
        .await
    }
}
