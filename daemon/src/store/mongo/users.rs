//! [`Users`] on MongoDB.

use super::*;

#[async_trait::async_trait]
impl Users for MongoStore {
    async fn register(&self, new: &NewUser) -> Result<(), StoreError> {
        if self.transactions {
            return self.register_in_transaction(new).await;
        }
        let (user, creds) = (&new.user, &new.credentials);
        if self
            .coll("users")
            .find_one(doc! {"skeleton": user.email.skeleton()})
            .await
            .map_err(down)?
            .is_some()
        {
            return Err(StoreError::EmailTaken);
        }
        // Credentials first, user last: the user document is the commit point.
        self.coll("templates")
            .insert_one(template_doc(&user.id, &creds.template, user.created_at))
            .await
            .map_err(down)?;
        self.coll("wrapped_keys")
            .insert_one(key_doc(&user.id, &creds.key))
            .await
            .map_err(down)?;
        match self.coll("users").insert_one(Self::user_doc(user)).await {
            Ok(_) => Ok(()),
            Err(e) => {
                for c in ["templates", "wrapped_keys"] {
                    let _ = self
                        .coll(c)
                        .delete_one(doc! {"_id": user.id.as_str()})
                        .await;
                }
                if is_duplicate(&e) {
                    Err(StoreError::EmailTaken)
                } else {
                    Err(down(e))
                }
            }
        }
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        self.find_user(doc! {"email": email.as_str()}).await
    }

    async fn user_by_id(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.find_user(doc! {"_id": id.as_str()}).await
    }

    async fn credentials(&self, id: &UserId) -> Result<Option<Credentials>, StoreError> {
        let t = self
            .coll("templates")
            .find_one(doc! {"_id": id.as_str()})
            .await
            .map_err(down)?;
        let k = self
            .coll("wrapped_keys")
            .find_one(doc! {"_id": id.as_str()})
            .await
            .map_err(down)?;
        let (Some(t), Some(k)) = (t, k) else {
            return Ok(None);
        };
        Ok(Some(Credentials {
            template: Template {
                model_id: get_str(&t, "model_id")?,
                ciphertext: get_bytes(&t, "ciphertext")?,
            },
            key: StoredKey {
                wrapped: WrappedKey {
                    kek_version: u32::try_from(get_i64(&k, "kek_version")?)
                        .map_err(|_| corrupt("kek_version"))?,
                    nonce: get_bytes(&k, "nonce")?
                        .try_into()
                        .map_err(|_| corrupt("nonce"))?,
                    ciphertext: get_bytes(&k, "ciphertext")?,
                    // Absent on documents written before bound blobs.
                    binding: match k.get("binding") {
                        None => Binding::Owner,
                        Some(_) => u8::try_from(get_i64(&k, "binding")?)
                            .ok()
                            .and_then(|b| Binding::from_u8(b).ok())
                            .ok_or_else(|| corrupt("binding"))?,
                    },
                },
                public_key: get_bytes(&k, "public_key")?,
            },
        }))
    }

    async fn update_name(&self, id: &UserId, name: &Name) -> Result<Option<User>, StoreError> {
        self.coll("users")
            .find_one_and_update(
                doc! {"_id": id.as_str()},
                doc! {"$set": {"name": name.as_str()}},
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(down)?
            .as_ref()
            .map(Self::to_user)
            .transpose()
    }

    async fn set_status(&self, id: &UserId, status: UserStatus) -> Result<bool, StoreError> {
        let r = self
            .coll("users")
            .update_one(
                doc! {"_id": id.as_str()},
                doc! {"$set": {"status": status.as_str()}},
            )
            .await
            .map_err(down)?;
        if status == UserStatus::Disabled {
            // After the status: a refresh racing in between is refused by
            // the status check, and every family is revoked below.
            self.coll("refresh_families")
                .update_many(
                    doc! {"user_id": id.as_str()},
                    doc! {"$set": {"revoked": true}},
                )
                .await
                .map_err(down)?;
        }
        Ok(r.matched_count > 0)
    }

    async fn replace_key(&self, id: &UserId, key: &StoredKey) -> Result<bool, StoreError> {
        let mut d = key_doc(id, key);
        d.remove("_id");
        let r = self
            .coll("wrapped_keys")
            .update_one(doc! {"_id": id.as_str()}, doc! {"$set": d})
            .await
            .map_err(down)?;
        Ok(r.matched_count > 0)
    }

    async fn list_users(
        &self,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<User>, StoreError> {
        let filter = match after {
            Some(a) => doc! {"_id": {"$gt": a.as_str()}},
            None => doc! {},
        };
        let docs = self
            .all("users", filter, doc! {"_id": 1}, Some(limit))
            .await?;
        docs.iter().map(Self::to_user).collect()
    }

    async fn delete_user(&self, id: &UserId, log: &AuthLog) -> Result<bool, StoreError> {
        // The user document goes first: from then on the account does not
        // exist, whatever happens to the rest.
        let gone = self
            .coll("users")
            .delete_one(doc! {"_id": id.as_str()})
            .await
            .map_err(down)?;
        if gone.deleted_count == 0 {
            return Ok(false);
        }
        for c in ["templates", "wrapped_keys"] {
            self.coll(c)
                .delete_one(doc! {"_id": id.as_str()})
                .await
                .map_err(down)?;
        }
        let families: Vec<Document> = self
            .coll("refresh_families")
            .find(doc! {"user_id": id.as_str()})
            .projection(doc! {"_id": 1})
            .await
            .map_err(down)?
            .try_collect()
            .await
            .map_err(down)?;
        let ids: Vec<Bson> = families
            .iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        self.coll("refresh_tokens")
            .delete_many(doc! {"family_id": {"$in": ids}})
            .await
            .map_err(down)?;
        self.coll("refresh_families")
            .delete_many(doc! {"user_id": id.as_str()})
            .await
            .map_err(down)?;
        self.coll("auth_logs")
            .update_many(
                doc! {"user_id": id.as_str()},
                doc! {"$set": {"user_id": Bson::Null}},
            )
            .await
            .map_err(down)?;
        self.append_log(&AuthLog {
            user_id: None,
            ..log.clone()
        })
        .await?;
        Ok(true)
    }
}
