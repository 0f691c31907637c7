//! [`Users`] on SQLite.

use super::*;

#[async_trait::async_trait]
impl Users for EmbeddedStore {
    async fn register(&self, new: &NewUser) -> Result<(), StoreError> {
        let new = new.clone();
        self.with(move |conn, path| {
            let err = unavailable(path);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let u = &new.user;
            match tx.execute_cached(
                "INSERT INTO users (id, name, email, status, created_at, skeleton) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![u.id.as_str(), u.name.as_str(), u.email.as_str(), u.status.as_str(), u.created_at, u.email.skeleton()],
            ) {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Err(StoreError::EmailTaken),
                Err(e) => return Err(err(e)),
            }
            let c = &new.credentials;
            tx.execute_cached(
                "INSERT INTO templates (user_id, model_id, ciphertext, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![u.id.as_str(), c.template.model_id, c.template.ciphertext, u.created_at],
            )
            .map_err(&err)?;
            tx.execute_cached(
                "INSERT INTO wrapped_keys (user_id, kek_version, nonce, ciphertext, public_key, binding) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    u.id.as_str(),
                    c.key.wrapped.kek_version,
                    c.key.wrapped.nonce.as_slice(),
                    c.key.wrapped.ciphertext,
                    c.key.public_key,
                    c.key.wrapped.binding.as_u8()
                ],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)
        })
        .await
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        self.user_where("email", email.as_str()).await
    }

    async fn user_by_id(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.user_where("id", id.as_str()).await
    }

    async fn credentials(&self, id: &UserId) -> Result<Option<Credentials>, StoreError> {
        let id = id.as_str().to_string();
        self.read(move |conn, path| {
            let row = conn
                .query_row_cached(
                    "SELECT t.model_id, t.ciphertext, k.kek_version, k.nonce, k.ciphertext, k.public_key, k.binding
                     FROM templates t JOIN wrapped_keys k ON k.user_id = t.user_id WHERE t.user_id = ?1",
                    [id],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Vec<u8>>(1)?,
                            r.get::<_, u32>(2)?,
                            r.get::<_, Vec<u8>>(3)?,
                            r.get::<_, Vec<u8>>(4)?,
                            r.get::<_, Vec<u8>>(5)?,
                            r.get::<_, u8>(6)?,
                        ))
                    },
                )
                .optional()
                .map_err(unavailable(path))?;
            row.map(|(model_id, template, kek_version, nonce, ciphertext, public_key, binding)| {
                Ok(Credentials {
                    template: Template {
                        model_id,
                        ciphertext: template,
                    },
                    key: StoredKey {
                        wrapped: WrappedKey {
                            kek_version,
                            nonce: nonce
                                .try_into()
                                .map_err(|_| StoreError::Corrupt("wrapped key nonce".into()))?,
                            ciphertext,
                            binding: Binding::from_u8(binding)
                                .map_err(|_| StoreError::Corrupt("wrapped key binding".into()))?,
                        },
                        public_key,
                    },
                })
            })
            .transpose()
        })
        .await
    }

    async fn update_name(&self, id: &UserId, name: &Name) -> Result<Option<User>, StoreError> {
        let (id2, name) = (id.as_str().to_string(), name.as_str().to_string());
        self.with(move |conn, path| {
            conn.execute_cached(
                "UPDATE users SET name = ?1 WHERE id = ?2",
                params![name, id2],
            )
            .map_err(unavailable(path))
        })
        .await?;
        self.user_by_id(id).await
    }

    async fn set_status(&self, id: &UserId, status: UserStatus) -> Result<bool, StoreError> {
        let id = id.as_str().to_string();
        self.with(move |conn, path| {
            let err = unavailable(path);
            let tx = conn.transaction().map_err(&err)?;
            let found = tx
                .execute_cached(
                    "UPDATE users SET status = ?1 WHERE id = ?2",
                    params![status.as_str(), id],
                )
                .map_err(&err)?
                > 0;
            if status == UserStatus::Disabled {
                tx.execute_cached(
                    "UPDATE refresh_families SET revoked = 1 WHERE user_id = ?1",
                    [&id],
                )
                .map_err(&err)?;
            }
            tx.commit().map_err(&err)?;
            Ok(found)
        })
        .await
    }

    async fn replace_key(&self, id: &UserId, key: &StoredKey) -> Result<bool, StoreError> {
        let (id, key) = (id.as_str().to_string(), key.clone());
        self.with(move |conn, path| {
            conn.execute_cached(
                "UPDATE wrapped_keys SET kek_version = ?1, nonce = ?2, ciphertext = ?3, public_key = ?4, binding = ?5 WHERE user_id = ?6",
                params![key.wrapped.kek_version, key.wrapped.nonce.as_slice(), key.wrapped.ciphertext, key.public_key, key.wrapped.binding.as_u8(), id],
            )
            .map(|n| n > 0)
            .map_err(unavailable(path))
        })
        .await
    }

    async fn list_users(
        &self,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<User>, StoreError> {
        let after = after.map(|a| a.as_str().to_string()).unwrap_or_default();
        self.read(move |conn, path| {
            let err = unavailable(path);
            let mut st = conn
                .prepare(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE id > ?1 ORDER BY id LIMIT ?2"
                ))
                .map_err(&err)?;
            let rows = st
                .query_map(params![after, limit as i64], user_from_row)
                .map_err(&err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&err)?;
            rows.into_iter().map(to_user).collect()
        })
        .await
    }

    async fn delete_user(&self, id: &UserId, log: &AuthLog) -> Result<bool, StoreError> {
        let (id, log) = (id.as_str().to_string(), log.clone());
        self.with(move |conn, path| {
            let err = unavailable(path);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            // Foreign keys cascade to templates, wrapped_keys, refresh_families
            // and their tokens; secure_delete overwrites the freed pages.
            let gone = tx
                .execute_cached("DELETE FROM users WHERE id = ?1", [&id])
                .map_err(&err)?;
            if gone == 0 {
                return Ok(false);
            }
            tx.execute_cached(
                "UPDATE auth_logs SET user_id = NULL WHERE user_id = ?1",
                [&id],
            )
            .map_err(&err)?;
            insert_log(
                &tx,
                &AuthLog {
                    user_id: None,
                    ..log
                },
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)?;
            // The write-ahead log still holds the pre-delete page images:
            // checkpoint them into the database (where secure_delete zeroed the
            // freed cells) and truncate the log, so the template and wrapped key
            // are gone from both files, not only unreachable.
            let (busy, _, _): (i64, i64, i64) = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(&err)?;
            if busy != 0 {
                tracing::warn!("WAL checkpoint after account deletion was blocked by a reader");
            }
            Ok(true)
        })
        .await
    }
}
