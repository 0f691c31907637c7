//! MongoDB through the official `mongodb` driver (3.x).
//!
//! Collections: `users` (unique `email`), `templates` and `wrapped_keys` keyed by
//! user id, `auth_logs` (indexes for per-user, per-outcome, per-ip and time
//! queries), `failed_attempts` and `lockouts` keyed by subject, and
//! `refresh_families` + `refresh_tokens`; the last four carry an `expires_at`
//! date with a TTL index, so a genuine server deletes them by itself.
//!
//! Multi-document writes (registration, deletion) use a transaction when the
//! server supports them (replica set or sharded cluster) and are ordered to be
//! safe without one: registration writes the template and key first and the
//! user last (a user document exists only with its credentials; a crash leaves
//! at most an orphaned, still encrypted template that `open` sweeps away);
//! deletion removes the user first. Refresh rotation and lockouts are single
//! conditional updates, atomic on any server. The audit chain is keyed by
//! entry number (`_id`), so two appends linking to one head cannot both land.

use futures_util::TryStreamExt;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, DateTime, Document, doc, oid::ObjectId};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};

use arclock_hsm::{Binding, WrappedKey};

use super::audit::{stored_hash, stored_seq};
use super::{
    AuditEntry, AuditEvent, AuditSeal, AuthLog, Credentials, FailureOutcome, INSTANCE_RETENTION_MS,
    InstanceBeat, LockPolicy, LogFilter, LogPage, Millis, NewFamily, NewUser, Reservation,
    Rotation, Store, StoreError, StoredChallenge, StoredInvite, StoredKey, Subject, Template, User,
    UserStatus,
};
use crate::identity::{Email, Name, UserId};
use crate::store::{Action, Outcome};

/// A MongoDB database holding ArcLock's collections.
#[derive(Clone)]
pub struct MongoStore {
    client: Client,
    db: Database,
    transactions: bool,
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("db", &self.db.name())
            .field("transactions", &self.transactions)
            .finish_non_exhaustive()
    }
}

fn down(e: mongodb::error::Error) -> StoreError {
    StoreError::Unavailable(format!("mongodb: {e}"))
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

fn bin(b: &[u8]) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: b.to_vec(),
    }
}

fn date(ms: Millis) -> DateTime {
    DateTime::from_millis(ms)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("mongodb document: {what}"))
}

fn get_str(d: &Document, k: &str) -> Result<String, StoreError> {
    d.get_str(k).map(str::to_string).map_err(|_| corrupt(k))
}

fn get_i64(d: &Document, k: &str) -> Result<i64, StoreError> {
    match d.get(k) {
        Some(Bson::Int64(v)) => Ok(*v),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        Some(Bson::Double(v)) if v.fract() == 0.0 => Ok(*v as i64),
        _ => Err(corrupt(k)),
    }
}

fn get_bytes(d: &Document, k: &str) -> Result<Vec<u8>, StoreError> {
    match d.get(k) {
        Some(Bson::Binary(b)) => Ok(b.bytes.clone()),
        _ => Err(corrupt(k)),
    }
}

fn opt_str(d: &Document, k: &str) -> Option<String> {
    d.get_str(k).ok().map(str::to_string)
}

/// An audit chain document as an entry.
fn audit_entry(d: &Document) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: get_seq(d)?,
        event: AuditEvent {
            at: get_i64(d, "at")?,
            kind: get_str(d, "kind")?,
            actor: get_str(d, "actor")?,
            subject: opt_str(d, "subject"),
            detail: get_str(d, "detail")?,
        },
        hash: get_hash(d)?,
    })
}

/// An audit document's entry number (its `_id`).
fn get_seq(d: &Document) -> Result<u64, StoreError> {
    stored_seq(get_i64(d, "_id")?)
}

/// An audit document's 32-byte `hash`.
fn get_hash(d: &Document) -> Result<[u8; 32], StoreError> {
    stored_hash(get_bytes(d, "hash")?)
}

impl MongoStore {
    /// Connects, checks the server answers, creates the indexes and sweeps
    /// registrations a crash left half-written.
    pub async fn open(uri: &str, database: &str) -> Result<Self, StoreError> {
        let client = Client::with_uri_str(uri).await.map_err(down)?;
        let db = client.database(database);
        let hello = db.run_command(doc! {"hello": 1}).await.map_err(down)?;
        // Transactions need a replica set member or a mongos.
        let transactions = hello.contains_key("setName") || hello.get_str("msg") == Ok("isdbgrid");
        let store = MongoStore {
            client,
            db,
            transactions,
        };
        store.create_indexes().await?;
        store.sweep_orphans().await?;
        Ok(store)
    }

    /// Whether multi-document writes run in transactions on this server.
    pub fn uses_transactions(&self) -> bool {
        self.transactions
    }

    /// The database handle, for tests that scan the stored documents.
    pub fn database(&self) -> &Database {
        &self.db
    }

    fn coll(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    /// Every document of `name` matching `filter`, in `sort` order.
    async fn all(
        &self,
        name: &str,
        filter: Document,
        sort: Document,
    ) -> Result<Vec<Document>, StoreError> {
        self.coll(name)
            .find(filter)
            .sort(sort)
            .await
            .map_err(down)?
            .try_collect()
            .await
            .map_err(down)
    }

    /// The subject's failure counter with a window open at `now`: one that
    /// ran out is dropped (conditionally, so no concurrent count is lost),
    /// then the counter is created if absent (a duplicate means it exists).
    /// Two single-document atomic steps, not an upsert with `$setOnInsert`:
    /// nx-27017 ignores `$setOnInsert`, and on MongoDB two racing upserts can
    /// fail with a duplicate key.
    async fn open_window(
        &self,
        key: &str,
        now: Millis,
        p: &LockPolicy,
    ) -> Result<Collection<Document>, StoreError> {
        let attempts = self.coll("failed_attempts");
        attempts
            .delete_one(doc! {"_id": key, "window_start": {"$lte": now - p.window}})
            .await
            .map_err(down)?;
        match attempts
            .insert_one(doc! {"_id": key, "count": 0_i64, "failed": 0_i64, "window_start": now, "expires_at": date(now + p.window)})
            .await
        {
            Ok(_) => {}
            Err(e) if is_duplicate(&e) => {}
            Err(e) => return Err(down(e)),
        }
        Ok(attempts)
    }

    async fn create_indexes(&self) -> Result<(), StoreError> {
        let idx = |keys: Document, opts: Option<IndexOptions>| {
            IndexModel::builder().keys(keys).options(opts).build()
        };
        let unique = IndexOptions::builder().unique(true).build();
        let ttl = IndexOptions::builder()
            .expire_after(std::time::Duration::from_secs(0))
            .build();
        self.coll("users")
            .create_index(idx(doc! {"email": 1}, Some(unique.clone())))
            .await
            .map_err(down)?;
        self.backfill_skeletons().await?;
        // Sparse: an account whose address looked like another's before this
        // index existed keeps working without a skeleton.
        let sparse_unique = IndexOptions::builder().unique(true).sparse(true).build();
        self.coll("users")
            .create_index(idx(doc! {"skeleton": 1}, Some(sparse_unique)))
            .await
            .map_err(down)?;
        // The audit chain and its seals are read in `seq` order.
        for c in ["audit_chain", "audit_seals"] {
            self.coll(c)
                .create_index(idx(doc! {"seq": 1}, Some(unique.clone())))
                .await
                .map_err(down)?;
        }
        for keys in [
            doc! {"user_id": 1, "at": -1},
            doc! {"outcome": 1, "at": -1},
            doc! {"client_ip": 1, "at": -1},
            doc! {"at": -1},
        ] {
            self.coll("auth_logs")
                .create_index(idx(keys, None))
                .await
                .map_err(down)?;
        }
        for c in [
            "failed_attempts",
            "lockouts",
            "refresh_families",
            "refresh_tokens",
            "challenges",
            "invites",
        ] {
            self.coll(c)
                .create_index(idx(doc! {"expires_at": 1}, Some(ttl.clone())))
                .await
                .map_err(down)?;
        }
        self.coll("refresh_families")
            .create_index(idx(doc! {"user_id": 1}, None))
            .await
            .map_err(down)?;
        self.coll("refresh_tokens")
            .create_index(idx(doc! {"family_id": 1}, None))
            .await
            .map_err(down)?;
        Ok(())
    }

    /// Fills in the skeleton of accounts made before it was kept (see
    /// `Email::skeleton`); of two look-alikes the second keeps none.
    async fn backfill_skeletons(&self) -> Result<(), StoreError> {
        let users = self.coll("users");
        let mut cursor = users
            .find(doc! {"skeleton": {"$exists": false}})
            .projection(doc! {"_id": 1, "email": 1})
            .await
            .map_err(down)?;
        let mut missing = Vec::new();
        while let Some(d) = cursor.try_next().await.map_err(down)? {
            missing.push((get_str(&d, "_id")?, get_str(&d, "email")?));
        }
        for (id, email) in missing {
            let skeleton = Email::stored(email).skeleton();
            let taken = users
                .find_one(doc! {"skeleton": &skeleton})
                .await
                .map_err(down)?
                .is_some();
            if taken {
                tracing::warn!(user = %id, "account's address looks like another account's");
                continue;
            }
            users
                .update_one(doc! {"_id": &id}, doc! {"$set": {"skeleton": skeleton}})
                .await
                .map_err(down)?;
        }
        Ok(())
    }

    /// Templates and keys whose user document does not exist: left by a crash
    /// between the writes of a registration without transactions.
    async fn sweep_orphans(&self) -> Result<(), StoreError> {
        for c in ["templates", "wrapped_keys"] {
            let mut cursor = self
                .coll(c)
                .find(doc! {})
                .projection(doc! {"_id": 1})
                .await
                .map_err(down)?;
            let mut orphans = Vec::new();
            while let Some(d) = cursor.try_next().await.map_err(down)? {
                let id = get_str(&d, "_id")?;
                if self
                    .coll("users")
                    .find_one(doc! {"_id": &id})
                    .await
                    .map_err(down)?
                    .is_none()
                {
                    orphans.push(id);
                }
            }
            if !orphans.is_empty() {
                tracing::warn!(
                    collection = c,
                    count = orphans.len(),
                    "removing orphaned records"
                );
                self.coll(c)
                    .delete_many(doc! {"_id": {"$in": orphans}})
                    .await
                    .map_err(down)?;
            }
        }
        Ok(())
    }

    fn user_doc(u: &User) -> Document {
        doc! {
            "_id": u.id.as_str(),
            "name": u.name.as_str(),
            "email": u.email.as_str(),
            "skeleton": u.email.skeleton(),
            "status": u.status.as_str(),
            "created_at": u.created_at,
        }
    }

    fn to_user(d: &Document) -> Result<User, StoreError> {
        Ok(User {
            id: UserId::stored(get_str(d, "_id")?),
            name: Name::stored(get_str(d, "name")?),
            email: Email::stored(get_str(d, "email")?),
            status: UserStatus::parse(&get_str(d, "status")?)?,
            created_at: get_i64(d, "created_at")?,
        })
    }

    fn log_doc(l: &AuthLog) -> Document {
        let opt = |v: &Option<String>| v.clone().map_or(Bson::Null, Bson::String);
        doc! {
            "at": l.at,
            "user_id": l.user_id.as_ref().map_or(Bson::Null, |u| Bson::String(u.to_string())),
            "action": l.action.as_str(),
            "outcome": l.outcome.as_str(),
            "reason": opt(&l.reason),
            "similarity_bucket": l.similarity_bucket.map_or(Bson::Null, |b| Bson::Int32(i32::from(b))),
            "client_ip": opt(&l.client_ip),
            "user_agent": opt(&l.user_agent),
        }
    }

    fn to_log(d: &Document) -> Result<AuthLog, StoreError> {
        Ok(AuthLog {
            id: d.get_object_id("_id").map_err(|_| corrupt("_id"))?.to_hex(),
            at: get_i64(d, "at")?,
            user_id: opt_str(d, "user_id").map(UserId::stored),
            action: Action::parse(&get_str(d, "action")?)?,
            outcome: Outcome::parse(&get_str(d, "outcome")?)?,
            reason: opt_str(d, "reason"),
            similarity_bucket: get_i64(d, "similarity_bucket")
                .ok()
                .and_then(|b| u8::try_from(b).ok()),
            client_ip: opt_str(d, "client_ip"),
            user_agent: opt_str(d, "user_agent"),
        })
    }

    async fn find_user(&self, filter: Document) -> Result<Option<User>, StoreError> {
        self.coll("users")
            .find_one(filter)
            .await
            .map_err(down)?
            .as_ref()
            .map(Self::to_user)
            .transpose()
    }

    async fn register_in_transaction(&self, new: &NewUser) -> Result<(), StoreError> {
        let mut s = self.client.start_session().await.map_err(down)?;
        s.start_transaction().await.map_err(down)?;
        let (user, creds) = (&new.user, &new.credentials);
        let r = async {
            self.coll("users")
                .insert_one(Self::user_doc(user))
                .session(&mut s)
                .await?;
            self.coll("templates")
                .insert_one(template_doc(&user.id, &creds.template, user.created_at))
                .session(&mut s)
                .await?;
            self.coll("wrapped_keys")
                .insert_one(key_doc(&user.id, &creds.key))
                .session(&mut s)
                .await?;
            Ok::<_, mongodb::error::Error>(())
        }
        .await;
        match r {
            Ok(()) => s.commit_transaction().await.map_err(down),
            Err(e) => {
                let _ = s.abort_transaction().await;
                if is_duplicate(&e) {
                    Err(StoreError::EmailTaken)
                } else {
                    Err(down(e))
                }
            }
        }
    }
}

fn template_doc(id: &UserId, t: &Template, at: Millis) -> Document {
    doc! {"_id": id.as_str(), "model_id": &t.model_id, "ciphertext": bin(&t.ciphertext), "created_at": at}
}

fn key_doc(id: &UserId, k: &StoredKey) -> Document {
    doc! {
        "_id": id.as_str(),
        "kek_version": i64::from(k.wrapped.kek_version),
        "nonce": bin(&k.wrapped.nonce),
        "ciphertext": bin(&k.wrapped.ciphertext),
        "public_key": bin(&k.public_key),
        "binding": i32::from(k.wrapped.binding.as_u8()),
    }
}

#[async_trait::async_trait]
impl Store for MongoStore {
    fn backend(&self) -> &'static str {
        "mongodb"
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.db.run_command(doc! {"ping": 1}).await.map_err(down)?;
        self.coll("users").find_one(doc! {}).await.map_err(down)?;
        Ok(())
    }

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
        let docs: Vec<Document> = self
            .coll("users")
            .find(filter)
            .sort(doc! {"_id": 1})
            .limit(limit as i64)
            .await
            .map_err(down)?
            .try_collect()
            .await
            .map_err(down)?;
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

    async fn reserve_attempt(
        &self,
        subject: &Subject,
        now: Millis,
        p: &LockPolicy,
    ) -> Result<Reservation, StoreError> {
        if let Some(until) = self.locked_until(subject, now).await? {
            return Ok(Reservation::Refused { until });
        }
        let key = subject.key();
        let attempts = self.open_window(&key, now, p).await?;
        // The gate: one conditional increment. Of any number of concurrent
        // reservations exactly `max_failures - count` match the filter.
        let granted = attempts
            .find_one_and_update(
                doc! {"_id": &key, "count": {"$lt": i64::from(p.max_failures)}},
                doc! {"$inc": {"count": 1_i64}},
            )
            .await
            .map_err(down)?;
        if granted.is_some() {
            return Ok(Reservation::Granted);
        }
        let start = match attempts.find_one(doc! {"_id": &key}).await.map_err(down)? {
            Some(d) => get_i64(&d, "window_start")?,
            None => now,
        };
        Ok(Reservation::Refused {
            until: start + p.window,
        })
    }

    async fn fail_attempt(
        &self,
        subject: &Subject,
        now: Millis,
        p: &LockPolicy,
    ) -> Result<FailureOutcome, StoreError> {
        let key = subject.key();
        let attempts = self.coll("failed_attempts");
        // The reservation becomes a failure (`count` already holds it).
        let current = attempts
            .find_one_and_update(
                doc! {"_id": &key, "window_start": {"$gt": now - p.window}},
                doc! {"$inc": {"failed": 1_i64}},
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(down)?;
        let failed = match current {
            Some(d) => get_i64(&d, "failed")?,
            // Cleared by a success, or the window ran out: count it afresh.
            None => {
                let attempts = self.open_window(&key, now, p).await?;
                let counted = attempts
                    .find_one_and_update(
                        doc! {"_id": &key},
                        doc! {"$inc": {"count": 1_i64, "failed": 1_i64}},
                    )
                    .return_document(ReturnDocument::After)
                    .await
                    .map_err(down)?
                    .ok_or_else(|| corrupt("failed_attempts counter vanished"))?;
                get_i64(&counted, "failed")?
            }
        };
        if failed < i64::from(p.max_failures) {
            return Ok(FailureOutcome::Counted(failed as u32));
        }
        let until = now + p.lock_for;
        self.coll("lockouts")
            .update_one(
                doc! {"_id": &key},
                doc! {"$max": {"until": until, "expires_at": date(until)}},
            )
            .upsert(true)
            .await
            .map_err(down)?;
        attempts
            .delete_one(doc! {"_id": &key})
            .await
            .map_err(down)?;
        Ok(FailureOutcome::LockedUntil(until))
    }

    async fn release_attempt(&self, subject: &Subject) -> Result<(), StoreError> {
        self.coll("failed_attempts")
            .update_one(
                // Only a running attempt's place: never below the failures.
                doc! {"_id": subject.key(), "$expr": {"$gt": ["$count", "$failed"]}},
                doc! {"$inc": {"count": -1_i64}},
            )
            .await
            .map_err(down)?;
        Ok(())
    }

    async fn locked_until(
        &self,
        subject: &Subject,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let d = self
            .coll("lockouts")
            .find_one(doc! {"_id": subject.key(), "until": {"$gt": now}})
            .await
            .map_err(down)?;
        d.map(|d| get_i64(&d, "until")).transpose()
    }

    async fn clear_failures(&self, subject: &Subject) -> Result<(), StoreError> {
        self.coll("failed_attempts")
            .delete_one(doc! {"_id": subject.key()})
            .await
            .map_err(down)?;
        Ok(())
    }

    async fn unlock(&self, subject: &Subject) -> Result<bool, StoreError> {
        let r = self
            .coll("lockouts")
            .delete_one(doc! {"_id": subject.key()})
            .await
            .map_err(down)?;
        self.clear_failures(subject).await?;
        Ok(r.deleted_count > 0)
    }

    async fn lockouts(&self, now: Millis) -> Result<Vec<(Subject, Millis)>, StoreError> {
        let docs = self
            .all("lockouts", doc! {"until": {"$gt": now}}, doc! {"until": 1})
            .await?;
        docs.iter()
            .map(|d| {
                Ok((
                    Subject::from_key(&get_str(d, "_id")?)?,
                    get_i64(d, "until")?,
                ))
            })
            .collect()
    }

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

    async fn rotate_refresh(
        &self,
        presented: &[u8; 32],
        next: &[u8; 32],
        now: Millis,
    ) -> Result<Rotation, StoreError> {
        let (presented, next) = (hex::encode(presented), hex::encode(next));
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
        let expires = get_i64(&family, "expires_ms")?;
        if family.get_bool("revoked").unwrap_or(true) || expires <= now {
            return Ok(Rotation::Invalid);
        }
        // Register the next token before the swap (an unused row if we lose),
        // then compare-and-swap the family's current hash.
        self.coll("refresh_tokens")
            .insert_one(doc! {"_id": &next, "family_id": &family_id, "expires_at": date(expires)})
            .await
            .map_err(down)?;
        let swapped = self
            .coll("refresh_families")
            .update_one(
                doc! {"_id": &family_id, "current_hash": &presented, "revoked": false},
                doc! {"$set": {"current_hash": &next}},
            )
            .await
            .map_err(down)?;
        if swapped.modified_count == 1 {
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

    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditEntry, StoreError> {
        // Read the head (by `seq`, a number: nx-27017 orders integer `_id`s
        // as text, 10 before 9), insert its successor under `_id` = its
        // number: of
        // two writers linking to one head, the second insert is a duplicate
        // key and that writer reads the new head and tries again, after a
        // random pause that grows with each loss (many daemons appending at
        // once do not retry in lockstep).
        for attempt in 0..64u32 {
            if attempt > 0 {
                let cap = 1u64 << attempt.min(6);
                let pause = rand::random::<u64>() % cap + 1;
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            let head = self.audit_head().await?;
            let entry = AuditEntry::after(head.as_ref(), event.clone());
            let e = &entry.event;
            let inserted = self
                .coll("audit_chain")
                .insert_one(doc! {
                    "_id": entry.seq as i64,
                    "seq": entry.seq as i64,
                    "at": e.at,
                    "kind": &e.kind,
                    "actor": &e.actor,
                    "subject": e.subject.as_deref().map_or(Bson::Null, |s| Bson::String(s.into())),
                    "detail": &e.detail,
                    "hash": bin(&entry.hash),
                })
                .await;
            match inserted {
                Ok(_) => return Ok(entry),
                Err(e) if is_duplicate(&e) => continue,
                Err(e) => return Err(down(e)),
            }
        }
        Err(StoreError::Unavailable(
            "audit chain: too many concurrent appends".into(),
        ))
    }

    async fn audit_entries(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let docs: Vec<Document> = self
            .coll("audit_chain")
            .find(doc! {"seq": {"$gt": after as i64}})
            .sort(doc! {"seq": 1})
            .limit(limit as i64)
            .await
            .map_err(down)?
            .try_collect()
            .await
            .map_err(down)?;
        docs.iter().map(audit_entry).collect()
    }

    async fn audit_head(&self) -> Result<Option<AuditEntry>, StoreError> {
        self.coll("audit_chain")
            .find_one(doc! {})
            .sort(doc! {"seq": -1})
            .await
            .map_err(down)?
            .as_ref()
            .map(audit_entry)
            .transpose()
    }

    async fn put_audit_seal(&self, seal: &AuditSeal) -> Result<(), StoreError> {
        let r = self
            .coll("audit_seals")
            .insert_one(doc! {
                "_id": seal.seq as i64,
                "seq": seal.seq as i64,
                "hash": bin(&seal.hash),
                "at": seal.at,
                "kid": &seal.kid,
                "signature": bin(&seal.signature),
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate(&e) => Ok(()),
            Err(e) => Err(down(e)),
        }
    }

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
                })
            })
            .collect()
    }

    async fn audit_seals(&self) -> Result<Vec<AuditSeal>, StoreError> {
        let docs = self.all("audit_seals", doc! {}, doc! {"seq": 1}).await?;
        docs.iter()
            .map(|d| {
                Ok(AuditSeal {
                    seq: get_seq(d)?,
                    hash: get_hash(d)?,
                    at: get_i64(d, "at")?,
                    kid: get_str(d, "kid")?,
                    signature: get_bytes(d, "signature")?,
                })
            })
            .collect()
    }

    async fn purge_expired(&self, now: Millis) -> Result<u64, StoreError> {
        // The TTL indexes do this on a genuine server; servers without TTL
        // (and tests with an injected clock) get it here.
        let mut n = 0;
        for c in [
            "refresh_families",
            "refresh_tokens",
            "failed_attempts",
            "lockouts",
            "challenges",
            "invites",
        ] {
            n += self
                .coll(c)
                .delete_many(doc! {"expires_at": {"$lte": date(now)}})
                .await
                .map_err(down)?
                .deleted_count;
        }
        Ok(n)
    }
}
