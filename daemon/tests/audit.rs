//! The tamper-evident audit trail against the real daemon: operator actions
//! and security events land in a hash chain whose head the HSM seals, and
//! `arclock-console audit verify` names the first entry an attacker with
//! write access to the database changed, removed, or hid by rewriting every
//! later hash.

mod common;

use arclock_console::Client;
use arclockd::store::AuditEvent;
use arclockd::store::audit::{GENESIS, chain_hash};
use common::{Daemon, Instance, lfw_base64 as photo};
use serde_json::json;

/// Every chain row as stored: (seq, event, hash).
fn rows(db: &rusqlite::Connection) -> Vec<(u64, AuditEvent, Vec<u8>)> {
    db.prepare("SELECT seq, at, kind, actor, subject, detail, hash FROM audit_chain ORDER BY seq")
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
        .collect()
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
async fn tampering_is_found_and_located() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start_with(&[("ARCLOCK_AUTH_MAX_FAILURES", "3")]);
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

    let db = rusqlite::Connection::open(inst.path("arclock.db")).unwrap();
    let original = rows(&db);
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
    db.execute(
        "UPDATE audit_chain SET detail = 'enable account: success' WHERE seq = ?1",
        [target as i64],
    )
    .unwrap();
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
    for (seq, mut event, _) in rows(&db) {
        if seq == target {
            event.detail = "enable account: success".into();
        }
        let hash = chain_hash(&prev, seq, &event);
        db.execute(
            "UPDATE audit_chain SET hash = ?1 WHERE seq = ?2",
            rusqlite::params![&hash[..], seq as i64],
        )
        .unwrap();
        prev = hash;
    }
    let v = admin.audit_verify().await.unwrap();
    let broken = v.broken.expect("a rewritten chain is found");
    assert_eq!(broken.seq, sealed, "{}", broken.reason);
    assert!(broken.reason.contains("seal"), "{}", broken.reason);

    // 3. The original restored, then one entry removed: found where it was.
    for (seq, event, hash) in &original {
        db.execute(
            "UPDATE audit_chain SET detail = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![event.detail, hash, *seq as i64],
        )
        .unwrap();
    }
    assert_eq!(admin.audit_verify().await.unwrap().broken, None);
    db.execute("DELETE FROM audit_chain WHERE seq = 2", [])
        .unwrap();
    let broken = admin.audit_verify().await.unwrap().broken.unwrap();
    assert_eq!(broken.seq, 2, "{}", broken.reason);
    assert!(broken.reason.contains("missing"), "{}", broken.reason);

    // 4. The sealed tail cut off: found too.
    let (seq2, event2, hash2) = original[1].clone();
    db.execute(
        "INSERT INTO audit_chain (seq, at, kind, actor, subject, detail, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![seq2 as i64, event2.at, event2.kind, event2.actor, event2.subject, event2.detail, hash2],
    )
    .unwrap();
    db.execute("DELETE FROM audit_chain WHERE seq >= ?1", [sealed as i64])
        .unwrap();
    let broken = admin.audit_verify().await.unwrap().broken.unwrap();
    assert_eq!(broken.seq, sealed, "{}", broken.reason);
    assert!(broken.reason.contains("gone"), "{}", broken.reason);
}

fn my_uid() -> u32 {
    // The operator is this test process's uid (root on the test machines).
    std::fs::metadata("/proc/self").map_or(0, |m| std::os::unix::fs::MetadataExt::uid(&m))
}
