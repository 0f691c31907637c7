//! Key custody against someone who can write to the store (a MongoDB
//! credential, a stolen SQLite file put back): records bound to their owner
//! by the HSM, and crypto-shredding that reaches copies taken before.
//! The real daemon, its real SoftHSM2 token, real faces.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::path::Path;

use arclock_console::Client;
use arclock_hsm::Hsm;
use arclockd::identity::{Email, UserId};
use arclockd::store::EmbeddedStore;
use arclockd::store::prelude::*;
use common::{Daemon, Instance, embedding, lfw_base64 as photo};
use serde_json::{Value, json};

async fn register(d: &Daemon, name: &str, email: &str, who: (&str, u32)) -> String {
    let (s, body) = d
        .post(
            "/api/auth/register",
            &json!({"name": name, "email": email, "imageBase64": photo(who.0, who.1)}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    body["data"]["user"]["id"].as_str().unwrap().to_string()
}

async fn login(d: &Daemon, email: &str, who: (&str, u32)) -> (u16, Value) {
    d.post(
        "/api/auth/login",
        &json!({"email": email, "imageBase64": photo(who.0, who.1)}),
    )
    .await
}

async fn refresh(d: &Daemon, token: &str) -> u16 {
    d.post("/api/auth/refresh-token", &json!({"refreshToken": token}))
        .await
        .0
}

/// The attacker's handle on the database: another connection to the file.
fn db(inst: &Instance) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(inst.path("arclock.db")).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    c
}

fn integrity_events(inst: &Instance) -> i64 {
    db(inst)
        .query_row(
            "SELECT count(*) FROM audit_chain WHERE kind = 'integrity'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// What a store writer would do with nothing but write access: put their
/// own face in a victim's record (encrypted to the victim's *public* key,
/// which needs no secret), move their own session to the victim, or plant a
/// session whose token they know. Each fails closed and is audited; before
/// records were bound, the first one signed in as the victim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_writer_cannot_take_over_an_account() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start();
    let alice = register(&d, "Alice", "alice@example.org", ("Aaron_Peirsol", 1)).await;
    let mallory = register(
        &d,
        "Mallory",
        "mallory@example.org",
        ("Alejandro_Toledo", 1),
    )
    .await;
    let (s, body) = login(&d, "mallory@example.org", ("Alejandro_Toledo", 2)).await;
    assert_eq!(s, 200, "{body}");
    let mallory_refresh = body["data"]["tokens"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_string();

    // 1. Mallory's face, encrypted to Alice's public key, as Alice's template.
    let (original, public_key): (Vec<u8>, Vec<u8>) = db(&inst)
        .query_row(
            "SELECT t.ciphertext, k.public_key FROM templates t
             JOIN wrapped_keys k ON k.user_id = t.user_id WHERE t.user_id = ?1",
            [&alice],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let face = embedding("Alejandro_Toledo", 1).to_bytes().unwrap();
    let forged = ecies::encrypt(&public_key, &face).unwrap();
    db(&inst)
        .execute(
            "UPDATE templates SET ciphertext = ?1 WHERE user_id = ?2",
            rusqlite::params![forged, alice],
        )
        .unwrap();
    let (s, body) = login(&d, "alice@example.org", ("Alejandro_Toledo", 2)).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (503, Some("SERVICE_UNAVAILABLE")),
        "a forged template must never sign in: {body}"
    );
    assert_eq!(body["success"], json!(false));
    assert_eq!(integrity_events(&inst), 1);
    let log = std::fs::read_to_string(inst.path("daemon.log")).unwrap();
    assert!(log.contains("stored credentials failed their integrity check"));
    // Put back, the record opens again: the refusal was the binding.
    db(&inst)
        .execute(
            "UPDATE templates SET ciphertext = ?1 WHERE user_id = ?2",
            rusqlite::params![original, alice],
        )
        .unwrap();
    assert_eq!(
        login(&d, "alice@example.org", ("Aaron_Peirsol", 2)).await.0,
        200
    );
    assert_eq!(
        login(&d, "alice@example.org", ("Alejandro_Toledo", 2))
            .await
            .0,
        401
    );

    // 2. Mallory's session moved to Alice: refused and revoked, for good.
    db(&inst)
        .execute(
            "UPDATE refresh_families SET user_id = ?1 WHERE user_id = ?2",
            [&alice, &mallory],
        )
        .unwrap();
    assert_eq!(refresh(&d, &mallory_refresh).await, 401);
    assert_eq!(integrity_events(&inst), 2);
    db(&inst)
        .execute(
            "UPDATE refresh_families SET user_id = ?1 WHERE user_id = ?2",
            [&mallory, &alice],
        )
        .unwrap();
    assert_eq!(refresh(&d, &mallory_refresh).await, 401, "revoked");

    // 3. A session planted for Alice with a token Mallory chose, stored the
    // way a hash-only store would keep it: it does not exist for the daemon.
    let family = "ab".repeat(16);
    let planted = format!("{family}.{alice}.{}", "A".repeat(43));
    let guess = <sha2::Sha256 as sha2::Digest>::digest(planted.as_bytes()).to_vec();
    let c = db(&inst);
    c.execute(
        "INSERT INTO refresh_families (id, user_id, current_hash, created_at, expires_at)
         VALUES (?1, ?2, ?3, 0, 9999999999999)",
        rusqlite::params![family, alice, guess],
    )
    .unwrap();
    c.execute(
        "INSERT INTO refresh_tokens (hash, family_id) VALUES (?1, ?2)",
        rusqlite::params![guess, family],
    )
    .unwrap();
    assert_eq!(refresh(&d, &planted).await, 401);
}

/// Deleting an account removes its rows, but a backup taken before still
/// opens with the token. Retirement (rotate, re-wrap, destroy every older
/// KEK) ends that: the copy never opens again, while live accounts sign in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retirement_makes_copies_taken_before_unreadable() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start();
    let admin = Client::new(inst.path("admin.sock"));
    register(&d, "Alice", "alice@example.org", ("Aaron_Peirsol", 1)).await;
    let bob = register(&d, "Bob", "bob@example.org", ("Alejandro_Toledo", 1)).await;
    let backup = inst.path("backup.db");
    db(&inst)
        .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
        .unwrap();
    admin.delete_user(&bob).await.unwrap();

    // The copy, opened as whoever holds it and the token would open it
    // (the only test here that loads SoftHSM2).
    let hsm = inst.hsm();
    let copy = EmbeddedStore::open(&backup).unwrap();
    let (bob_id, bob_at) = (
        UserId::parse(&bob).unwrap(),
        Email::parse("bob@example.org").unwrap(),
    );
    let before = open_copy(&hsm, &copy, &bob_id, &bob_at).await;
    assert!(
        before.is_ok(),
        "deletion alone does not reach the copy: {before:?}"
    );

    // The operator's one-shot commands: a rotation first (the copy still
    // opens, its KEK is only no longer the newest), then the retirement.
    let console = |what: &str| {
        std::process::Command::new(common::console_bin())
            .args([
                "--socket",
                inst.path("admin.sock").to_str().unwrap(),
                "keys",
                what,
            ])
            .output()
            .unwrap()
    };
    let out = console("rotate");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("KEK v2: 1 re-wrapped, 0 failed"),
        "{said}"
    );
    assert!(open_copy(&hsm, &copy, &bob_id, &bob_at).await.is_ok());
    let retired = admin.retire_keks().await.unwrap();
    assert_eq!(
        (retired.version, retired.destroyed.clone()),
        (3, vec![1, 2])
    );
    assert_eq!((retired.tally.rewrapped, retired.tally.failed), (1, 0));
    let gone = std::process::Command::new(common::console_bin())
        .args(["--socket", "/nonexistent/admin.sock", "keys", "retire"])
        .output()
        .unwrap();
    assert!(
        !gone.status.success(),
        "a key job that did not run must not exit 0"
    );
    let after = open_copy(&hsm, &copy, &bob_id, &bob_at).await;
    assert!(
        matches!(
            after,
            Err(arclockd::template::TemplateError::Hsm(
                arclock_hsm::Error::KeyNotFound(_)
            ))
        ),
        "the copy must not open once its KEK is destroyed: {after:?}"
    );
    assert_eq!(hsm.kek_versions().await.unwrap(), vec![3]);
    // The live account moved and signs in; the console saw the job end.
    assert_eq!(
        login(&d, "alice@example.org", ("Aaron_Peirsol", 2)).await.0,
        200
    );
    let job = admin.health().await.unwrap().key_job.unwrap();
    assert_eq!(
        (job.kind.as_str(), job.phase.as_str(), job.destroyed),
        ("retire", "done", vec![1, 2])
    );
    assert!(Path::new(&backup).exists());
}

/// Bob's template as the copy holds it, opened with the token.
async fn open_copy(
    hsm: &Hsm,
    copy: &EmbeddedStore,
    id: &UserId,
    at: &Email,
) -> Result<arclock_face::Embedding, arclockd::template::TemplateError> {
    let creds = copy.credentials(id).await.unwrap().expect("in the copy");
    arclockd::template::open(hsm, id, at, &creds).await
}
