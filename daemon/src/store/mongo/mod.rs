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
//!
//! This file opens the database, migrates it and holds the row mapping;
//! each concern's trait is implemented in the file named after it.

mod audit;
mod challenges;
mod instances;
mod lockouts;
mod logs;
mod sessions;
mod users;

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
use super::{AuditTrail, Challenges, Instances, Lockouts, Logs, Sessions, Users};
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

    /// Every document of `name` matching `filter`, in `sort` order (the
    /// first `limit` of them, if given).
    async fn all(
        &self,
        name: &str,
        filter: Document,
        sort: Document,
        limit: Option<usize>,
    ) -> Result<Vec<Document>, StoreError> {
        let coll = self.coll(name);
        let mut find = coll.find(filter).sort(sort);
        if let Some(n) = limit {
            find = find.limit(i64::try_from(n).unwrap_or(i64::MAX));
        }
        find.await.map_err(down)?.try_collect().await.map_err(down)
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
            "instance": opt(&l.instance),
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
            instance: opt_str(d, "instance"),
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
