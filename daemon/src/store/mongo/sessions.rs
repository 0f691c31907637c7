//! [`Sessions`] on MongoDB.

use super::*;
use crate::store::Rotate;

#[async_trait::async_trait]
impl Sessions for MongoStore {
    async fn create_family(&self, f: &NewFamily) -> Result<(), StoreError> {
        // Token row first: a family is only reachable through its tokens.
        self.coll("refresh_tokens")
            .insert_one(doc! {"_id": hex::encode(f.token_hash), "family_id": &f.id, "expires_at": date(f.expires_at)})
            .await
            .map_err(down)?;
        self.coll("refresh_families")
            .insert_one(doc! {
                "_id": &f.id,
                "user_id": f.user_id.as_str(),
                "current_hash": hex::encode(f.token_hash),
                "revoked": false,
                "created_at": f.created_at,
                "expires_ms": f.expires_at,
                "expires_at": date(f.expires_at),
            })
            .await
            .map_err(down)?;
        Ok(())
    }

    async fn rotate_refresh(&self, ask: Rotate<'_>) -> Result<Rotation, StoreError> {
        let (presented, next) = (hex::encode(ask.presented), hex::encode(ask.next));
        let Some(token) = self
            .coll("refresh_tokens")
            .find_one(doc! {"_id": &presented})
            .await
            .map_err(down)?
        else {
            return Ok(Rotation::Invalid);
        };
        let family_id = get_str(&token, "family_id")?;
        let Some(family) = self
            .coll("refresh_families")
            .find_one(doc! {"_id": &family_id})
            .await
            .map_err(down)?
        else {
            return Ok(Rotation::Invalid);
        };
        let user_id = UserId::stored(get_str(&family, "user_id")?);
        if ask
            .claims
            .is_some_and(|(u, f)| *u != user_id || f != family_id)
        {
            return Ok(Rotation::Mismatch { user_id, family_id });
        }
        let expires = get_i64(&family, "expires_ms")?;
        if family.get_bool("revoked").unwrap_or(true) || expires <= ask.now {
            return Ok(Rotation::Invalid);
        }
        // Register the next token before the swap (an unused row if we lose),
        // then compare-and-swap the family's current hash. The account is
        // read meanwhile: a family whose account is not active is revoked.
        let tokens = self.coll("refresh_tokens");
        let (inserted, account) = tokio::join!(
            tokens.insert_one(
                doc! {"_id": &next, "family_id": &family_id, "expires_at": date(expires)}
            ),
            self.user_by_id(&user_id),
        );
        inserted.map_err(down)?;
        let active = account?.is_some_and(|u| u.status == UserStatus::Active);
        let swapped = if active {
            self.coll("refresh_families")
                .update_one(
                    doc! {"_id": &family_id, "current_hash": &presented, "revoked": false},
                    doc! {"$set": {"current_hash": &next}},
                )
                .await
                .map_err(down)?
                .modified_count
                == 1
        } else {
            false
        };
        if swapped {
            // No transaction spans the swap and the entry here: a daemon
            // killed between them rotates without a log entry.
            if let Some(entry) = ask.entry {
                self.append_log(entry).await?;
            }
            return Ok(Rotation::Rotated { user_id, family_id });
        }
        self.coll("refresh_tokens")
            .delete_one(doc! {"_id": &next})
            .await
            .map_err(down)?;
        self.coll("refresh_families")
            .update_one(doc! {"_id": &family_id}, doc! {"$set": {"revoked": true}})
            .await
            .map_err(down)?;
        if !active {
            return Ok(Rotation::Invalid);
        }
        Ok(Rotation::Reused { user_id, family_id })
    }

    async fn revoke_family_of(&self, token_hash: &[u8; 32]) -> Result<bool, StoreError> {
        let Some(token) = self
            .coll("refresh_tokens")
            .find_one(doc! {"_id": hex::encode(token_hash)})
            .await
            .map_err(down)?
        else {
            return Ok(false);
        };
        let r = self
            .coll("refresh_families")
            .update_one(
                doc! {"_id": get_str(&token, "family_id")?, "revoked": false},
                doc! {"$set": {"revoked": true}},
            )
            .await
            .map_err(down)?;
        Ok(r.modified_count > 0)
    }

    async fn revoke_family(&self, family_id: &str) -> Result<bool, StoreError> {
        let r = self
            .coll("refresh_families")
            .update_one(
                doc! {"_id": family_id, "revoked": false},
                doc! {"$set": {"revoked": true}},
            )
            .await
            .map_err(down)?;
        Ok(r.modified_count > 0)
    }

    async fn family_live(&self, family_id: &str, now: Millis) -> Result<bool, StoreError> {
        let found = self
            .coll("refresh_families")
            .find_one(doc! {"_id": family_id, "revoked": false, "expires_ms": {"$gt": now}})
            .await
            .map_err(down)?;
        Ok(found.is_some())
    }
}
