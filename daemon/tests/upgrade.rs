//! An upgrade from before records were bound: the token lacks the marker
//! and a stored key is an `AKW1` blob (its tag covers only user and KEK
//! version). The daemon binds every record at start, then the token refuses
//! `AKW1`, so the old blob put back (a backup, a replay) no longer opens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::path::Path;
use std::time::Duration;

use arclock_console::Client;
use arclock_hsm::pkcs11_context;
use common::{Instance, lfw_base64 as photo};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::{Session, UserType};
use serde_json::json;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn db(inst: &Instance) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(inst.path("arclock.db")).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// A raw session on the instance's token, logged in with the PIN in `pin`.
fn raw_session(pin: &Path) -> Session {
    let ctx = pkcs11_context(Path::new(MODULE)).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim() == "arclock")
        .unwrap();
    let s = ctx.open_rw_session(slot).unwrap();
    let pin = std::fs::read_to_string(pin).unwrap();
    match s.login(UserType::User, Some(&pin.trim().to_string().into())) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {
        }
        Err(e) => panic!("login: {e}"),
    }
    s
}

/// `secret` wrapped as the code before bound records did: AES-GCM under
/// `kek-v1`, AAD = context, user id, version.
fn akw1(s: &Session, user: &str, secret: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let kek = s
        .find_objects(&[Attribute::Label(b"kek-v1".to_vec())])
        .unwrap()[0];
    let mut aad = b"arclock/wrapped-key/v1\0".to_vec();
    aad.extend_from_slice(&(user.len() as u32).to_be_bytes());
    aad.extend_from_slice(user.as_bytes());
    aad.extend_from_slice(&1u32.to_be_bytes());
    let nonce = s.generate_random_vec(12).unwrap();
    let mut iv: [u8; 12] = nonce.clone().try_into().unwrap();
    let params = GcmParams::new(&mut iv, &aad, 128.into()).unwrap();
    let ct = s.encrypt(&Mechanism::AesGcm(params), kek, secret).unwrap();
    (nonce, ct)
}

async fn login(d: &common::Daemon, email: &str) -> (u16, serde_json::Value) {
    d.post(
        "/api/auth/login",
        &json!({"email": email, "imageBase64": photo("Aaron_Peirsol", 2)}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_records_are_bound_at_start_and_old_blobs_refused_after() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start();
    let email = "alice@example.org";
    let (s, body) = d
        .post(
            "/api/auth/register",
            &json!({"name": "Alice", "email": email, "imageBase64": photo("Aaron_Peirsol", 1)}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let alice = body["data"]["user"]["id"].as_str().unwrap().to_string();
    drop(d);

    // Make the store and token what an older arclockd left behind (the only
    // test here that loads SoftHSM2).
    let hsm = inst.hsm();
    let store = arclockd::store::EmbeddedStore::open(&inst.path("arclock.db")).unwrap();
    let creds = arclockd::store::Users::credentials(
        &store,
        &arclockd::identity::UserId::parse(&alice).unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    drop(store);
    let bound = arclockd::template::binding(email, &creds.template, &creds.key.public_key);
    let secret = hsm
        .unwrap(&alice, &bound, &creds.key.wrapped)
        .await
        .unwrap();
    let (pin, user, plain) = (inst.path("hsm/user.pin"), alice.clone(), secret.to_vec());
    let (nonce, old) = tokio::task::spawn_blocking(move || {
        let s = raw_session(&pin);
        let blob = akw1(&s, &user, &plain);
        for h in s
            .find_objects(&[Attribute::Class(ObjectClass::DATA)])
            .unwrap()
        {
            s.destroy_object(h).unwrap();
        }
        blob
    })
    .await
    .unwrap();
    drop(secret);
    let put_old = || {
        db(&inst)
            .execute(
                "UPDATE wrapped_keys SET kek_version = 1, nonce = ?1, ciphertext = ?2, binding = 1 WHERE user_id = ?3",
                rusqlite::params![nonce, old, alice],
            )
            .unwrap()
    };
    put_old();
    assert!(hsm.legacy_blobs_open().await.unwrap());

    // The new daemon binds it at start, beside serving.
    let d = inst.start();
    let admin = Client::new(inst.path("admin.sock"));
    let job = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(j) = admin.health().await.unwrap().key_job
                && j.finished_at.is_some()
            {
                break j;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the binding job ran and ended");
    assert_eq!(
        (
            job.kind.as_str(),
            job.phase.as_str(),
            job.tally.rewrapped,
            job.tally.failed
        ),
        ("bind", "done", 1, 0),
        "{job:?}"
    );
    let binding: i64 = db(&inst)
        .query_row(
            "SELECT binding FROM wrapped_keys WHERE user_id = ?1",
            [&alice],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(binding, 2);
    assert!(!hsm.legacy_blobs_open().await.unwrap());
    assert_eq!(login(&d, email).await.0, 200);

    // The old blob put back: refused, fail closed.
    put_old();
    let (s, body) = login(&d, email).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (503, Some("SERVICE_UNAVAILABLE")),
        "{body}"
    );
    // A restart does not bind it again: the token is closed for good.
    drop(d);
    let d = inst.start();
    assert_eq!(login(&d, email).await.0, 503);
}
