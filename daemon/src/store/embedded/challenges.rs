//! [`Challenges`] on SQLite.

use super::*;

#[async_trait::async_trait]
impl Challenges for EmbeddedStore {
    async fn put_challenge(&self, c: &StoredChallenge) -> Result<(), StoreError> {
        let (c, steps) = (c.clone(), c.steps_text());
        self.with(move |conn, path| {
            conn.execute_cached(
                "INSERT INTO challenges (id_hash, subject, client_ip, steps, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![&c.id_hash[..], c.subject, c.client_ip, steps, c.expires_at],
            )
            .map(|_| ())
            .map_err(unavailable(path))
        })
        .await
    }

    async fn take_challenge(
        &self,
        id_hash: &[u8; 32],
    ) -> Result<Option<StoredChallenge>, StoreError> {
        let id_hash = *id_hash;
        self.with(move |conn, path| {
            let row = conn
                .query_row_cached(
                    "DELETE FROM challenges WHERE id_hash = ?1 \
                     RETURNING subject, client_ip, steps, expires_at",
                    [&id_hash[..]],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    },
                )
                .optional()
                .map_err(unavailable(path))?;
            row.map(|(subject, client_ip, steps, expires_at)| {
                Ok(StoredChallenge {
                    id_hash,
                    subject,
                    client_ip,
                    steps: StoredChallenge::parse_steps(&steps)?,
                    expires_at,
                })
            })
            .transpose()
        })
        .await
    }

    async fn put_invite(&self, i: &StoredInvite) -> Result<(), StoreError> {
        let i = i.clone();
        self.with(move |conn, path| {
            conn.execute_cached(
                "INSERT INTO invites (code_hash, email, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![&i.code_hash[..], i.email, i.created_at, i.expires_at],
            )
            .map(|_| ())
            .map_err(unavailable(path))
        })
        .await
    }

    async fn take_invite(&self, code_hash: &[u8; 32]) -> Result<Option<StoredInvite>, StoreError> {
        let code_hash = *code_hash;
        self.with(move |conn, path| {
            conn.query_row_cached(
                "DELETE FROM invites WHERE code_hash = ?1 RETURNING email, created_at, expires_at",
                [&code_hash[..]],
                |r| {
                    Ok(StoredInvite {
                        code_hash,
                        email: r.get(0)?,
                        created_at: r.get(1)?,
                        expires_at: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(unavailable(path))
        })
        .await
    }
}
