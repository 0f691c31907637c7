//! [`Challenges`] on MongoDB.

use super::*;

#[async_trait::async_trait]
impl Challenges for MongoStore {
    async fn put_challenge(&self, c: &StoredChallenge) -> Result<(), StoreError> {
        self.coll("challenges")
            .insert_one(doc! {
                "_id": hex::encode(c.id_hash),
                "subject": &c.subject,
                "client_ip": c.client_ip.as_deref().map_or(Bson::Null, |ip| Bson::String(ip.into())),
                "steps": c.steps_text(),
                "expires_at": date(c.expires_at),
            })
            .await
            .map(|_| ())
            .map_err(down)
    }

    async fn take_challenge(
        &self,
        id_hash: &[u8; 32],
    ) -> Result<Option<StoredChallenge>, StoreError> {
        // findOneAndDelete is atomic on any server: one answer gets it.
        let Some(d) = self
            .coll("challenges")
            .find_one_and_delete(doc! {"_id": hex::encode(id_hash)})
            .await
            .map_err(down)?
        else {
            return Ok(None);
        };
        Ok(Some(StoredChallenge {
            id_hash: *id_hash,
            subject: get_str(&d, "subject")?,
            client_ip: opt_str(&d, "client_ip"),
            steps: StoredChallenge::parse_steps(&get_str(&d, "steps")?)?,
            expires_at: d
                .get_datetime("expires_at")
                .map_err(|_| corrupt("expires_at"))?
                .timestamp_millis(),
        }))
    }

    async fn put_invite(&self, i: &StoredInvite) -> Result<(), StoreError> {
        self.coll("invites")
            .insert_one(doc! {
                "_id": hex::encode(i.code_hash),
                "email": i.email.as_deref().map_or(Bson::Null, |e| Bson::String(e.into())),
                "created_at": i.created_at,
                "expires_at": date(i.expires_at),
            })
            .await
            .map(|_| ())
            .map_err(down)
    }

    async fn take_invite(&self, code_hash: &[u8; 32]) -> Result<Option<StoredInvite>, StoreError> {
        // findOneAndDelete: of two registrations with one code, one gets it.
        let Some(d) = self
            .coll("invites")
            .find_one_and_delete(doc! {"_id": hex::encode(code_hash)})
            .await
            .map_err(down)?
        else {
            return Ok(None);
        };
        Ok(Some(StoredInvite {
            code_hash: *code_hash,
            email: opt_str(&d, "email"),
            created_at: get_i64(&d, "created_at")?,
            expires_at: d
                .get_datetime("expires_at")
                .map_err(|_| corrupt("expires_at"))?
                .timestamp_millis(),
        }))
    }
}
