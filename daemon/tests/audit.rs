//! The tamper-evident audit trail against the real daemon: operator actions
//! and security events land in a hash chain whose head the HSM seals, and
//! `arclock-console audit verify` names the first entry an attacker with
//! write access to the database changed, removed, or hid by rewriting every
//! later hash.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use arclock_console::Client;
use arclockd::store::AuditEvent;
use arclockd::store::audit::{GENESIS, chain_hash};
use common::{Daemon, Instance, lfw_base64 as photo};
use mongodb::bson::doc;
use serde_json::json;

/// The daemon's database, opened behind its back (the attacker's access).
enum Db {
    Sqlite(rusqlite::Connection),
    Mongo(mongodb::Collection<mongodb::bson::Document>),
}

type Row = (u64, AuditEvent, Vec<u8>);

impl Db {
    /// Every chain entry as stored.
    async fn rows(&self) -> Vec<Row> {
        match self {
            Db::Sqlite(db) => db
                .prepare(
                    "SELECT seq, at, kind, actor, subject, detail, hash FROM audit_chain ORDER BY seq",
                )
                .unwrap()
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        AuditEvent {
                            at: r.get(1)?,
                            kind: r.get(2)?,
                            actor: r.get(3)?,
                            subject: r.get(4)?,
                            detail: r.get(5)?,
                        },
                        r.get(6)?,
                    ))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect(),
            Db::Mongo(c) => {
                use futures_util::TryStreamExt;
                let docs: Vec<mongodb::bson::Document> =
                    c.find(doc! {}).await.unwrap().try_collect().await.unwrap();
                let mut rows: Vec<Row> = docs
                    .iter()
                    .map(|d| {
                        (
                            int(d, "seq") as u64,
                            AuditEvent {
                                at: int(d, "at"),
                                kind: d.get_str("kind").unwrap().into(),
                                actor: d.get_str("actor").unwrap().into(),
                                subject: d.get_str("subject").ok().map(Into::into),
                                detail: d.get_str("detail").unwrap().into(),
                            },
                            d.get_binary_generic("hash").unwrap().clone(),
                        )
                    })
                    .collect();
                rows.sort_by_key(|r| r.0);
                rows
            }
        }
    }

    /// Overwrites one entry's text and hash as stored.
    async fn set(&self, seq: u64, detail: &str, hash: &[u8]) {
        match self {
            Db::Sqlite(db) => {
                db.execute(
                    "UPDATE audit_chain SET detail = ?1, hash = ?2 WHERE seq = ?3",
                    rusqlite::params![detail, hash, seq as i64],
                )
                .unwrap();
            }
            Db::Mongo(c) => {
                c.update_one(
                    doc! {"seq": seq as i64},
                    doc! {"$set": {"detail": detail, "hash": bin(hash)}},
                )
                .await
                .unwrap();
            }
        }
    }

    /// Removes the entries numbered `from..=to`.
    async fn delete(&self, from: u64, to: u64) {
        match self {
            Db::Sqlite(db) => {
                db.execute(
                    "DELETE FROM audit_chain WHERE seq BETWEEN ?1 AND ?2",
                    [from as i64, to as i64],
                )
                .unwrap();
            }
            Db::Mongo(c) => {
                c.delete_many(doc! {"seq": {"$gte": from as i64, "$lte": to as i64}})
                    .await
                    .unwrap();
            }
        }
    }

    /// Puts a removed entry back as it was.
    async fn insert(&self, (seq, e, hash): &Row) {
        match self {
            Db::Sqlite(db) => {
                db.execute(
                    "INSERT INTO audit_chain (seq, at, kind, actor, subject, detail, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    rusqlite::params![*seq as i64, e.at, e.kind, e.actor, e.subject, e.detail, hash],
                )
                .unwrap();
            }
            Db::Mongo(c) => {
                c.insert_one(doc! {
                    "_id": *seq as i64,
                    "seq": *seq as i64,
                    "at": e.at,
                    "kind": &e.kind,
                    "actor": &e.actor,
                    "subject": e.subject.as_deref().map_or(mongodb::bson::Bson::Null, |s| s.into()),
                    "detail": &e.detail,
                    "hash": bin(hash),
                })
                .await
                .unwrap();
            }
        }
    }
}

/// A number as the server returned it (nx-27017 gives small ones as Int32).
fn int(d: &mongodb::bson::Document, k: &str) -> i64 {
    match d.get(k) {
        Some(mongodb::bson::Bson::Int64(v)) => *v,
        Some(mongodb::bson::Bson::Int32(v)) => i64::from(*v),
        other => panic!("{k}: {other:?}"),
    }
}

fn bin(b: &[u8]) -> mongodb::bson::Binary {
    mongodb::bson::Binary {
        subtype: mongodb::bson::spec::BinarySubtype::Generic,
        bytes: b.to_vec(),
    }
}

/// `arclock-console audit verify`: (exit success, output).
fn console_verify(inst: &Instance) -> (bool, String) {
    let out = std::process::Command::new(common::console_bin())
        .args(["--socket"])
        .arg(inst.path("admin.sock"))
        .args(["audit", "verify"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn wrong_face(d: &Daemon, email: &str) -> u16 {
    d.post(
        "/api/auth/login",
        &json!({"email": email, "imageBase64": photo("Adam_Sandler", 1)}),
    )
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_found_and_located_on_sqlite() {
    tampering_is_found_and_located(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_found_and_located_on_mongodb() {
    let Some(uri) = common::mongo_uri() else {
        return;
    };
    tampering_is_found_and_located(Some(uri)).await;
}

async fn tampering_is_found_and_located(mongo: Option<String>) {
    let inst = Instance::new();
    inst.provision();
    let uri_file = inst.path("mongodb.uri").to_string_lossy().into_owned();
    let database = format!("audit{}", std::process::id());
    let mut env = vec![("ARCLOCK_AUTH_MAX_FAILURES", "3")];
    if let Some(uri) = &mongo {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&uri_file, uri).unwrap();
        std::fs::set_permissions(&uri_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        env.extend([
            ("ARCLOCK_STORE_BACKEND", "mongodb"),
            ("ARCLOCK_STORE_MONGODB_URI_FILE", uri_file.as_str()),
            ("ARCLOCK_STORE_MONGODB_DATABASE", database.as_str()),
        ]);
    }
    let d = inst.start_with(&env);
    let admin = Client::new(inst.path("admin.sock"));
    let (s, body) = d
        .post(
            "/api/auth/register",
            &json!({"name": "Ada", "email": "ada@example.org", "imageBase64": photo("Aaron_Peirsol", 1)}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let id = body["data"]["user"]["id"].as_str().unwrap().to_string();

    // Events: an operator's actions, and a lockout the daemon decided.
    admin.set_enabled(&id, false).await.unwrap();
    admin.set_enabled(&id, true).await.unwrap();
    for _ in 0..3 {
        assert_eq!(wrong_face(&d, "ada@example.org").await, 401);
    }
    assert_eq!(wrong_face(&d, "ada@example.org").await, 429);
    let sealed = admin
        .audit_seal()
        .await
        .unwrap()
        .expect("something to seal");
    admin.set_enabled(&id, false).await.unwrap();

    let db = match &mongo {
        None => Db::Sqlite(rusqlite::Connection::open(inst.path("arclock.db")).unwrap()),
        Some(uri) => Db::Mongo(
            mongodb::Client::with_uri_str(uri)
                .await
                .unwrap()
                .database(&database)
                .collection("audit_chain"),
        ),
    };
    let original = db.rows().await;
    let kinds: Vec<&str> = original.iter().map(|(_, e, _)| e.kind.as_str()).collect();
    assert!(
        kinds.contains(&"operator") && kinds.contains(&"lockout"),
        "{kinds:?}"
    );
    let disable = original
        .iter()
        .find(|(_, e, _)| e.detail.starts_with("disable account"))
        .unwrap();
    assert_eq!(disable.1.actor, format!("operator uid {}", my_uid()));
    assert_eq!(disable.1.subject.as_deref(), Some(id.as_str()));

    let v = admin.audit_verify().await.unwrap();
    assert_eq!(v.broken, None, "{v:?}");
    assert_eq!(v.entries, original.len() as u64);
    assert_eq!((v.sealed_through, v.seals_verified), (sealed, 1));
    let (ok, text) = console_verify(&inst);
    assert!(ok && text.contains("audit trail intact"), "{text}");

    // 1. One entry's text changed in the database: found at that entry.
    let target = disable.0;
    db.set(target, "enable account: success", &disable.2).await;
    let v = admin.audit_verify().await.unwrap();
    let broken = v.broken.expect("a changed entry is found");
    assert_eq!(broken.seq, target, "{}", broken.reason);
    let (ok, text) = console_verify(&inst);
    assert!(
        !ok && text.contains(&format!("BROKEN at entry {target}")),
        "{text}"
    );

    // 2. The attacker also rewrites every later hash so that the chain
    //    links again: the HSM's seal no longer matches.
    let mut prev = GENESIS;
    for (seq, event, _) in db.rows().await {
        let hash = chain_hash(&prev, seq, &event);
        db.set(seq, &event.detail, &hash).await;
        prev = hash;
    }
    let v = admin.audit_verify().await.unwrap();
    let broken = v.broken.expect("a rewritten chain is found");
    assert_eq!(broken.seq, sealed, "{}", broken.reason);
    assert!(broken.reason.contains("seal"), "{}", broken.reason);

    // 3. The original restored, then one entry removed: found where it was.
    for (seq, event, hash) in &original {
        db.set(*seq, &event.detail, hash).await;
    }
    assert_eq!(admin.audit_verify().await.unwrap().broken, None);
    db.delete(2, 2).await;
    let broken = admin.audit_verify().await.unwrap().broken.unwrap();
    assert_eq!(broken.seq, 2, "{}", broken.reason);
    assert!(broken.reason.contains("missing"), "{}", broken.reason);

    // 4. The sealed tail cut off: found too.
    db.insert(&original[1]).await;
    db.delete(sealed, u64::MAX >> 1).await;
    let broken = admin.audit_verify().await.unwrap().broken.unwrap();
    assert_eq!(broken.seq, sealed, "{}", broken.reason);
    assert!(broken.reason.contains("gone"), "{}", broken.reason);
}

fn my_uid() -> u32 {
    // The operator is this test process's uid (root on the test machines).
    std::fs::metadata("/proc/self").map_or(0, |m| std::os::unix::fs::MetadataExt::uid(&m))
}
