//! Key custody against a real SoftHSM2 token.
//!
//! Each test process gets its own SoftHSM2 configuration and token directory, and
//! each test its own token (SoftHSM2 always offers one free slot).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arclock_hsm::provision::{Provisioned, ensure_keys, ensure_token};
use arclock_hsm::{
    Alg, Binding, Error, Hsm, HsmConfig, Pin, PublicKey, Signing, WrappedKey, pkcs11_context,
};
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The credentials digest the blobs of these tests are bound to.
const B: &[u8; 32] = &[0xB0; 32];

/// Held by every test for its whole length: these tests run one at a time.
/// SoftHSM2 2.6 crashes now and then when `C_CreateObject` or `C_InitToken`
/// on one token meets `C_GetTokenInfo` or `C_InitToken` on another in the
/// same process (seen here in 1 run in 8 with the tests in parallel), and the
/// test that re-initialises the module would finalise it under the others'
/// raw sessions. One process per daemon, as in production, never meets the
/// first; the pool keeps the second away from its own sessions.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Env {
    dir: tempfile::TempDir,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    // Every test goes through here before it loads SoftHSM2.
    ENV.get_or_init(|| Env {
        dir: common::private_softhsm(),
    })
}

/// A freshly initialised token with a KEK and a JWT key, and its handle.
async fn token(label: &str) -> (Hsm, PathBuf) {
    let env = env();
    let pin = env.dir.path().join(format!("{label}.pin"));
    let so = env.dir.path().join(format!("{label}.so.pin"));
    let module = Path::new(MODULE);
    let label2 = label.to_string();
    let (pin2, so2) = (pin.clone(), so.clone());
    let made =
        tokio::task::spawn_blocking(move || ensure_token(module, &label2, None, &pin2, &so2))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(made, Provisioned::Created);
    let hsm = Hsm::new(config(label), Pin::from_file(&pin).unwrap());
    assert!(ensure_keys(&hsm).await.unwrap());
    assert!(
        !ensure_keys(&hsm).await.unwrap(),
        "second ensure_keys must be a no-op"
    );
    (hsm, pin)
}

/// The shared PKCS#11 context and the slot of token `label`, for raw
/// sessions beside the pool.
fn raw_slot(label: &str) -> (cryptoki::context::Pkcs11, cryptoki::slot::Slot) {
    let ctx = pkcs11_context(Path::new(MODULE)).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim() == label)
        .unwrap();
    (ctx, slot)
}

fn config(label: &str) -> HsmConfig {
    HsmConfig {
        module: MODULE.into(),
        token_label: label.into(),
        slot: None,
        pool_size: 4,
        signing: Signing::Rs256 { bits: 2048 },
    }
}

#[tokio::test]
async fn wrap_round_trip_binds_user_and_detects_tampering() {
    let _serial = SERIAL.lock().await;
    let (hsm, _) = token("roundtrip").await;
    let secret = [0x42u8; 32];
    let w = hsm.wrap("user-a", B, &secret).await.unwrap();
    assert_eq!(w.kek_version, 1);
    assert_eq!(w.ciphertext.len(), 32 + 16);
    assert_ne!(&w.ciphertext[..32], &secret[..]);
    assert_eq!(
        hsm.unwrap("user-a", B, &w).await.unwrap().as_slice(),
        &secret
    );

    // Bound to other credentials (a record swapped in the store): fails.
    assert!(matches!(
        hsm.unwrap("user-a", &[0xB1; 32], &w).await,
        Err(Error::IntegrityFailure)
    ));
    // Moved to another user: fails.
    assert!(matches!(
        hsm.unwrap("user-b", B, &w).await,
        Err(Error::IntegrityFailure)
    ));
    // Any bit of nonce or ciphertext changed: fails.
    let mut bad = w.clone();
    bad.nonce[0] ^= 1;
    assert!(matches!(
        hsm.unwrap("user-a", B, &bad).await,
        Err(Error::IntegrityFailure)
    ));
    for i in [0, 31, 40, 47] {
        let mut bad = w.clone();
        bad.ciphertext[i] ^= 0x80;
        assert!(
            matches!(
                hsm.unwrap("user-a", B, &bad).await,
                Err(Error::IntegrityFailure)
            ),
            "byte {i}"
        );
    }
    let mut short = w.clone();
    short.ciphertext.truncate(20);
    assert!(hsm.unwrap("user-a", B, &short).await.is_err());
    // Through the storage encoding too.
    let parsed = WrappedKey::from_bytes(&w.to_bytes()).unwrap();
    assert_eq!(
        hsm.unwrap("user-a", B, &parsed).await.unwrap().as_slice(),
        &secret
    );
    // Two wraps of one secret differ (fresh nonce).
    let w2 = hsm.wrap("user-a", B, &secret).await.unwrap();
    assert_ne!(w.nonce, w2.nonce);
}

#[tokio::test]
async fn kek_and_signing_key_cannot_be_read_out() {
    let _serial = SERIAL.lock().await;
    let (hsm, pin) = token("sealed").await;
    drop(hsm);
    let pin_text = std::fs::read_to_string(&pin).unwrap();
    tokio::task::spawn_blocking(move || {
        let (ctx, slot) = raw_slot("sealed");
        let s = ctx.open_ro_session(slot).unwrap();
        let _ = s.login(UserType::User, Some(&pin_text.trim().to_string().into()));
        for (class, label) in [
            (ObjectClass::SECRET_KEY, "kek-v1"),
            (ObjectClass::PRIVATE_KEY, "jwt-v1"),
            (ObjectClass::SECRET_KEY, arclock_hsm::pseudonym::LABEL),
        ] {
            let h = s
                .find_objects(&[Attribute::Class(class), Attribute::Label(label.into())])
                .unwrap()[0];
            let wanted = if class == ObjectClass::SECRET_KEY {
                AttributeType::Value
            } else {
                AttributeType::PrivateExponent
            };
            let info = s.get_attribute_info(h, &[wanted]).unwrap();
            assert!(
                matches!(info[0], AttributeInfo::Sensitive),
                "{label}: {:?}",
                info[0]
            );
            let got = s.get_attributes(h, &[wanted]).unwrap();
            assert!(
                got.is_empty(),
                "{label} value came out: {} attrs",
                got.len()
            );
            let flags = s
                .get_attributes(h, &[AttributeType::Extractable, AttributeType::Sensitive])
                .unwrap();
            assert!(flags.contains(&Attribute::Extractable(false)), "{label}");
            assert!(flags.contains(&Attribute::Sensitive(true)), "{label}");
        }
    })
    .await
    .unwrap();
}

/// An attacker with a read-write session (and the user PIN, for the secret
/// ones) plants objects under ArcLock's labels: an imported AES key whose
/// value they know as the next KEK, a readable one, an RSA public key of
/// their own as the next signing key (a public object: no PIN needed), and a
/// known pseudonym secret. None of them is ever used: the KEK list, the
/// JWKS and the pseudonyms are what they were, and a blob naming the planted
/// KEK does not open.
#[tokio::test]
async fn keys_planted_under_our_labels_are_never_used() {
    let _serial = SERIAL.lock().await;
    let (hsm, pin) = token("planted").await;
    let jwks_before = hsm.jwks().await.unwrap();
    let pseudonym_before = hsm.pseudonym(b"alice@example.org").await.unwrap();
    drop(hsm);
    let pin_text = std::fs::read_to_string(&pin).unwrap();
    tokio::task::spawn_blocking(move || {
        let (ctx, slot) = raw_slot("planted");
        let s = ctx.open_rw_session(slot).unwrap();
        // The attacker's own RSA key as the next signing key.
        common::plant_rsa_public(&s, "jwt-v99").unwrap();
        s.login(UserType::User, Some(&pin_text.trim().to_string().into()))
            .unwrap();
        let secret = |key_type, label: &str, value: [u8; 32], sensitive| {
            vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(key_type),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(sensitive),
                Attribute::Extractable(!sensitive),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Sign(true),
                Attribute::Value(value.to_vec()),
                Attribute::Label(label.as_bytes().to_vec()),
            ]
        };
        // Imported: sensitive now, but its value was known before.
        s.create_object(&secret(KeyType::AES, "kek-v99", [7; 32], true))
            .unwrap();
        s.create_object(&secret(KeyType::AES, "kek-v98", [8; 32], false))
            .unwrap();
        s.create_object(&secret(
            KeyType::GENERIC_SECRET,
            arclock_hsm::pseudonym::LABEL,
            [9; 32],
            false,
        ))
        .unwrap();
    })
    .await
    .unwrap();

    let hsm = Hsm::new(config("planted"), Pin::from_file(&pin).unwrap());
    assert_eq!(hsm.kek_versions().await.unwrap(), vec![1]);
    assert_eq!(
        hsm.wrap("user-a", B, &[1; 32]).await.unwrap().kek_version,
        1
    );
    let forged = WrappedKey {
        kek_version: 99,
        nonce: [0; 12],
        ciphertext: vec![0; 48],
        binding: Binding::Credentials,
    };
    assert!(matches!(
        hsm.unwrap("user-a", B, &forged).await,
        Err(Error::KeyNotFound(_))
    ));
    assert_eq!(hsm.jwks().await.unwrap().keys, jwks_before.keys);
    assert_eq!(
        hsm.pseudonym(b"alice@example.org").await.unwrap(),
        pseudonym_before
    );
    assert!(!hsm.create_pseudonym_key().await.unwrap());
}

/// A pseudonym is stable, depends on every byte of its input and on the
/// token: the same address under another token's key is another pseudonym,
/// and neither is the bare SHA-256 anyone could recompute.
#[tokio::test]
async fn pseudonyms_are_keyed_by_the_token() {
    let _serial = SERIAL.lock().await;
    let (a, _) = token("pseudo-a").await;
    let (b, _) = token("pseudo-b").await;
    let x = a.pseudonym(b"alice@example.org").await.unwrap();
    assert_eq!(x, a.pseudonym(b"alice@example.org").await.unwrap());
    assert_ne!(x, a.pseudonym(b"alice@example.orh").await.unwrap());
    assert_ne!(x, b.pseudonym(b"alice@example.org").await.unwrap());
    use sha2::Digest;
    let bare: [u8; 32] = sha2::Sha256::digest(b"alice@example.org").into();
    assert_ne!(x, bare);
    let many = a
        .pseudonyms(vec![
            b"alice@example.org".to_vec(),
            b"bob@example.org".to_vec(),
        ])
        .await
        .unwrap();
    assert_eq!(many[0], x);
    assert_ne!(many[1], x);
    assert!(a.has_pseudonym_key().await.unwrap());
    assert!(!a.create_pseudonym_key().await.unwrap(), "made only once");
}

/// A token without `CKM_SHA256_RSA_PKCS` (opencryptoki's soft token) signs
/// with raw `CKM_RSA_PKCS` over a DigestInfo made outside: the very same
/// bytes, since PKCS#1 v1.5 is deterministic. SoftHSM2 offers both, so both
/// are made here and compared.
#[tokio::test]
async fn rs256_over_a_digest_info_is_the_same_signature() {
    let _serial = SERIAL.lock().await;
    use arclock_hsm::Rs256;
    use cryptoki::mechanism::MechanismType as M;
    assert_eq!(
        Rs256::choose(&[M::RSA_PKCS, M::SHA256_RSA_PKCS]),
        Some(Rs256::Sha256RsaPkcs)
    );
    assert_eq!(
        Rs256::choose(&[M::AES_GCM, M::RSA_PKCS]),
        Some(Rs256::RsaPkcsOverDigestInfo)
    );
    assert_eq!(Rs256::choose(&[M::AES_GCM]), None);

    let (hsm, pin) = token("digest-info").await;
    assert_eq!(hsm.rs256().await.unwrap(), Rs256::Sha256RsaPkcs);
    let input = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZGEifQ";
    let made = hsm.sign(input).await.unwrap().bytes;
    let by_hand = tokio::task::spawn_blocking(move || {
        let (ctx, slot) = raw_slot("digest-info");
        let s = ctx.open_ro_session(slot).unwrap();
        common::login(&s, &pin);
        let key = s
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(b"jwt-v1".to_vec()),
            ])
            .unwrap()[0];
        s.sign(
            &cryptoki::mechanism::Mechanism::RsaPkcs,
            key,
            &arclock_hsm::signer::digest_info(input),
        )
        .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(made, by_hand);
}

/// SoftHSM2 lists everything ArcLock needs; a signing key larger than any
/// it makes is named as a lack, job and mechanism, before any key is used.
#[tokio::test]
async fn what_a_token_lacks_is_named_before_use() {
    let _serial = SERIAL.lock().await;
    let (hsm, _) = token("mechanisms").await;
    drop(hsm);
    let module = Path::new(MODULE);
    assert_eq!(
        arclock_hsm::mechanism::lacks(module, "mechanisms", None, Signing::Rs256 { bits: 3072 })
            .unwrap(),
        vec![]
    );
    assert_eq!(
        arclock_hsm::mechanism::lacks(module, "mechanisms", None, Signing::Es256).unwrap(),
        vec![]
    );
    let huge = Signing::Rs256 { bits: 1 << 20 };
    let lacks = arclock_hsm::mechanism::lacks(module, "mechanisms", None, huge).unwrap();
    let named: Vec<String> = lacks.iter().map(ToString::to_string).collect();
    assert_eq!(named.len(), 2, "{named:?}");
    assert!(
        named[0].starts_with("signing key generation (RSA)"),
        "{named:?}"
    );
    assert!(named[1].contains("allows keys up to"), "{named:?}");
    assert!(matches!(
        arclock_hsm::mechanism::lacks(module, "no-such-token", None, Signing::Es256),
        Err(Error::HsmUnavailable(_))
    ));
}

/// An `AKW1` blob (owner-only AAD, as wrapped before records were bound),
/// made the way the old code made it: AES-GCM under the KEK in the token.
fn legacy_blob(label: &str, pin: &Path, user: &str, secret: &[u8]) -> WrappedKey {
    use cryptoki::mechanism::Mechanism;
    use cryptoki::mechanism::aead::GcmParams;
    let (ctx, slot) = raw_slot(label);
    let s = ctx.open_rw_session(slot).unwrap();
    common::login(&s, pin);
    let kek = s
        .find_objects(&[Attribute::Label(b"kek-v1".to_vec())])
        .unwrap()[0];
    let mut aad = b"arclock/wrapped-key/v1\0".to_vec();
    aad.extend_from_slice(&(user.len() as u32).to_be_bytes());
    aad.extend_from_slice(user.as_bytes());
    aad.extend_from_slice(&1u32.to_be_bytes());
    let nonce = [5u8; 12];
    let mut iv = nonce;
    let params = GcmParams::new(&mut iv, &aad, 128.into()).unwrap();
    let ciphertext = s.encrypt(&Mechanism::AesGcm(params), kek, secret).unwrap();
    WrappedKey {
        kek_version: 1,
        nonce,
        ciphertext,
        binding: Binding::Owner,
    }
}

/// Blobs from before records were bound open until every one is re-wrapped
/// and the token is told so; from then on an old copy put back is refused.
/// A fresh token never accepts them.
#[tokio::test]
async fn owner_only_blobs_open_until_the_token_is_closed_to_them() {
    let _serial = SERIAL.lock().await;
    let (hsm, pin) = token("legacy").await;
    let p = pin.clone();
    let old = tokio::task::spawn_blocking(move || {
        let old = legacy_blob("legacy", &p, "u1", b"a secret from before");
        // An upgraded token: as the old code left it, without the marker
        // ensure_keys makes on a new one.
        let (ctx, slot) = raw_slot("legacy");
        let s = ctx.open_rw_session(slot).unwrap();
        common::login(&s, &p);
        for h in s
            .find_objects(&[Attribute::Class(ObjectClass::DATA)])
            .unwrap()
        {
            s.destroy_object(h).unwrap();
        }
        old
    })
    .await
    .unwrap();
    assert_eq!(old.to_bytes()[..4], *b"AKW1");
    assert!(hsm.legacy_blobs_open().await.unwrap());
    assert_eq!(
        hsm.unwrap("u1", B, &old).await.unwrap().as_slice(),
        b"a secret from before"
    );
    // Binding it: the same secret, now AKW2 and bound to B.
    let bound = hsm.rewrap("u1", B, &old).await.unwrap().expect("bound");
    assert_eq!(
        (bound.binding, bound.kek_version),
        (Binding::Credentials, 1)
    );
    assert!(matches!(
        hsm.unwrap("u1", &[0; 32], &bound).await,
        Err(Error::IntegrityFailure)
    ));
    assert!(hsm.close_legacy_blobs().await.unwrap());
    assert!(!hsm.close_legacy_blobs().await.unwrap(), "once");
    assert!(!hsm.legacy_blobs_open().await.unwrap());
    assert!(matches!(
        hsm.unwrap("u1", B, &old).await,
        Err(Error::IntegrityFailure)
    ));
    assert!(matches!(
        hsm.rewrap("u1", B, &old).await,
        Err(Error::IntegrityFailure)
    ));
    assert_eq!(
        hsm.unwrap("u1", B, &bound).await.unwrap().as_slice(),
        b"a secret from before"
    );
    // A new token is closed from its first KEK.
    let (fresh, _) = token("legacy-fresh").await;
    assert!(!fresh.legacy_blobs_open().await.unwrap());
}

/// On a token without AES-GCM a KEK is an RSA key pair and blobs are
/// `AKW3`: OAEP plus an HMAC tag made in the token. SoftHSM2 makes both
/// kinds, so one token holds an AES and an RSA version and blobs move
/// between them; the tag binds as the GCM AAD does.
#[tokio::test]
async fn rsa_keks_bind_blobs_with_a_tag_made_in_the_token() {
    let _serial = SERIAL.lock().await;
    use arclock_hsm::KekKind;
    let (hsm, pin) = token("rsa-kek").await;
    assert_eq!(hsm.kek_kind().await.unwrap(), KekKind::Aes);
    let old = hsm
        .wrap("u1", B, b"a secret key of 32 bytes, really")
        .await
        .unwrap();
    assert_eq!(hsm.create_kek_version_of(KekKind::Rsa).await.unwrap(), 2);
    assert_eq!(hsm.kek_versions().await.unwrap(), vec![1, 2]);
    let w = hsm.wrap("u1", B, b"another secret").await.unwrap();
    assert_eq!((w.kek_version, w.binding), (2, Binding::CredentialsRsa));
    assert_eq!(&w.to_bytes()[..4], b"AKW3");
    assert_eq!(w.ciphertext.len(), 256 + 32);
    assert_eq!(
        hsm.unwrap("u1", B, &w).await.unwrap().as_slice(),
        b"another secret"
    );
    let refused =
        |r: Result<arclock_hsm::LockedBytes, Error>| matches!(r, Err(Error::IntegrityFailure));
    // Another record, another user, a changed ciphertext or tag, a
    // truncated blob, or the blob relabelled as GCM: refused.
    assert!(refused(hsm.unwrap("u1", &[0; 32], &w).await));
    assert!(refused(hsm.unwrap("u2", B, &w).await));
    for i in [0, 100, 255, 256, 287] {
        let mut bad = w.clone();
        bad.ciphertext[i] ^= 1;
        assert!(refused(hsm.unwrap("u1", B, &bad).await), "byte {i}");
    }
    let mut short = w.clone();
    short.ciphertext.truncate(20);
    assert!(refused(hsm.unwrap("u1", B, &short).await));
    let mut relabelled = w.clone();
    relabelled.binding = Binding::Credentials;
    assert!(refused(hsm.unwrap("u1", B, &relabelled).await));
    // What anyone with the public key could make: an OAEP encryption of a
    // secret of their choosing, with a tag they cannot compute.
    let p = pin.clone();
    let mut forged = w.clone();
    forged.ciphertext = tokio::task::spawn_blocking(move || {
        let (ctx, slot) = raw_slot("rsa-kek");
        let s = ctx.open_ro_session(slot).unwrap();
        common::login(&s, &p);
        let public = s
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Label(b"kek-v2".to_vec()),
            ])
            .unwrap()[0];
        let params = cryptoki::mechanism::rsa::PkcsOaepParams::new(
            cryptoki::mechanism::MechanismType::SHA1,
            cryptoki::mechanism::rsa::PkcsMgfType::MGF1_SHA1,
            cryptoki::mechanism::rsa::PkcsOaepSource::empty(),
        );
        let mut ct = s
            .encrypt(
                &cryptoki::mechanism::Mechanism::RsaPkcsOaep(params),
                public,
                b"the attacker's own secret key...",
            )
            .unwrap();
        ct.extend_from_slice(&[0u8; 32]);
        ct
    })
    .await
    .unwrap();
    assert!(refused(hsm.unwrap("u1", B, &forged).await));
    // Rotation moves blobs across kinds, and retirement destroys both halves.
    let moved = hsm.rewrap("u1", B, &old).await.unwrap().expect("moved");
    assert_eq!(
        (moved.kek_version, moved.binding),
        (2, Binding::CredentialsRsa)
    );
    assert!(hsm.rewrap("u1", B, &moved).await.unwrap().is_none());
    hsm.retire_kek_version(1).await.unwrap();
    assert_eq!(hsm.create_kek_version_of(KekKind::Aes).await.unwrap(), 3);
    let back = hsm
        .rewrap("u1", B, &moved)
        .await
        .unwrap()
        .expect("moved back");
    assert_eq!((back.kek_version, back.binding), (3, Binding::Credentials));
    hsm.retire_kek_version(2).await.unwrap();
    assert_eq!(hsm.kek_versions().await.unwrap(), vec![3]);
    assert!(matches!(
        hsm.unwrap("u1", B, &w).await,
        Err(Error::KeyNotFound(_))
    ));
    assert_eq!(
        hsm.unwrap("u1", B, &back).await.unwrap().as_slice(),
        b"a secret key of 32 bytes, really"
    );
}

#[tokio::test]
async fn rotation_rewraps_and_old_versions_work_until_retired() {
    let _serial = SERIAL.lock().await;
    let (hsm, _) = token("rotation").await;
    let old = hsm.wrap("u1", B, b"old secret bytes").await.unwrap();
    assert_eq!(hsm.create_kek_version().await.unwrap(), 2);
    assert_eq!(hsm.kek_versions().await.unwrap(), vec![1, 2]);

    let fresh = hsm.wrap("u1", B, b"new secret bytes").await.unwrap();
    assert_eq!(fresh.kek_version, 2);
    assert_eq!(
        hsm.unwrap("u1", B, &old).await.unwrap().as_slice(),
        b"old secret bytes"
    );

    let moved = hsm.rewrap("u1", B, &old).await.unwrap().expect("moved");
    assert_eq!(moved.kek_version, 2);
    assert_eq!(
        hsm.unwrap("u1", B, &moved).await.unwrap().as_slice(),
        b"old secret bytes"
    );
    // Relabelling a v1 blob as v2 does not pass (version is in the AAD).
    let mut relabelled = old.clone();
    relabelled.kek_version = 2;
    assert!(matches!(
        hsm.unwrap("u1", B, &relabelled).await,
        Err(Error::IntegrityFailure)
    ));

    assert!(
        hsm.retire_kek_version(2).await.is_err(),
        "current KEK must not be retired"
    );
    hsm.retire_kek_version(1).await.unwrap();
    assert_eq!(hsm.kek_versions().await.unwrap(), vec![2]);
    assert!(matches!(
        hsm.unwrap("u1", B, &old).await,
        Err(Error::KeyNotFound(_))
    ));
    assert_eq!(
        hsm.unwrap("u1", B, &moved).await.unwrap().as_slice(),
        b"old secret bytes"
    );
}

fn jwt_parts(header: &serde_json::Value, claims: &serde_json::Value) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}",
        b.encode(serde_json::to_vec(header).unwrap()),
        b.encode(serde_json::to_vec(claims).unwrap())
    )
}

#[tokio::test]
async fn hsm_signed_jwt_verifies_and_forgeries_do_not() {
    let _serial = SERIAL.lock().await;
    use base64::Engine;
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // What any RS256 verifier does: the JWK's modulus and exponent check
    // PKCS#1 v1.5 SHA-256 over `header.payload`.
    let verifies = |jwk: &arclock_hsm::Jwk, token: &str| {
        let (input, sig) = token.rsplit_once('.').unwrap();
        let PublicKey::Rsa { n, e } = &jwk.key else {
            panic!("{jwk:?}")
        };
        let (n, e) = (b64.decode(n).unwrap(), b64.decode(e).unwrap());
        RsaPublicKeyComponents { n: &n, e: &e }
            .verify(
                &RSA_PKCS1_2048_8192_SHA256,
                input.as_bytes(),
                &b64.decode(sig).unwrap(),
            )
            .is_ok()
    };
    let (hsm, _) = token("signer").await;
    let jwks = hsm.jwks().await.unwrap();
    assert_eq!(jwks.keys.len(), 1);
    let jwk = jwks.keys[0].clone();
    let claims = serde_json::json!({"sub": "u1", "exp": 4_000_000_000u64});
    let input = jwt_parts(
        &serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": jwk.kid}),
        &claims,
    );
    let sig = hsm.sign(input.as_bytes()).await.unwrap();
    assert_eq!(sig.key.kid, jwk.kid);
    let token = format!("{input}.{}", b64.encode(&sig.bytes));

    assert!(verifies(&jwk, &token));

    // Payload changed after signing.
    let forged_input = jwt_parts(
        &serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": jwk.kid}),
        &serde_json::json!({"sub": "admin", "exp": 4_000_000_000u64}),
    );
    let forged = format!("{forged_input}.{}", b64.encode(&sig.bytes));
    assert!(!verifies(&jwk, &forged));

    // After rotation, a new kid signs; the old public key does not verify it.
    let new = hsm
        .create_signing_key(Signing::Rs256 { bits: 2048 })
        .await
        .unwrap();
    assert_ne!(new.kid, jwk.kid);
    assert_eq!(hsm.jwks().await.unwrap().keys.len(), 2);
    let sig2 = hsm.sign(input.as_bytes()).await.unwrap();
    assert_eq!(sig2.key.kid, new.kid);
    let token2 = format!("{input}.{}", b64.encode(&sig2.bytes));
    assert!(!verifies(&jwk, &token2));
    assert!(verifies(&new, &token2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_tasks_share_the_pool() {
    let _serial = SERIAL.lock().await;
    let (hsm, _) = token("concurrent").await;
    let hsm = Arc::new(hsm);
    let mut tasks = Vec::new();
    for t in 0..8u8 {
        let hsm = Arc::clone(&hsm);
        tasks.push(tokio::spawn(async move {
            for i in 0..25u8 {
                let user = format!("user-{t}");
                let secret = [t ^ i; 32];
                let w = hsm.wrap(&user, B, &secret).await.unwrap();
                assert_eq!(hsm.unwrap(&user, B, &w).await.unwrap().as_slice(), &secret);
                if i % 5 == 0 {
                    hsm.sign(b"a.b").await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn missing_module_token_and_wrong_pin_are_clear_errors() {
    let _serial = SERIAL.lock().await;
    let (hsm, pin) = token("errors").await;
    // PKCS#11 login state is per process and token: close every session first,
    // or a new session would inherit the login and never check the PIN.
    drop(hsm);
    let no_module = Hsm::new(
        HsmConfig {
            module: "/nonexistent/libpkcs11.so".into(),
            ..config("errors")
        },
        Pin::from_file(&pin).unwrap(),
    );
    let e = no_module.status().await.unwrap_err();
    assert!(matches!(e, Error::HsmUnavailable(_)), "{e}");

    let no_token = Hsm::new(config("no-such-token"), Pin::from_file(&pin).unwrap());
    let e = no_token.wrap("u", B, b"x").await.unwrap_err();
    assert!(
        matches!(e, Error::HsmUnavailable(ref m) if m.contains("no-such-token")),
        "{e}"
    );

    let wrong = env().dir.path().join("wrong.pin");
    std::fs::write(&wrong, "0000wrong").unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let bad_pin = Hsm::new(config("errors"), Pin::from_file(&wrong).unwrap());
    let e = bad_pin.wrap("u", B, b"x").await.unwrap_err();
    assert!(matches!(e, Error::BadPin(_)), "{e}");
    assert!(!e.to_string().contains("0000wrong"));
}

#[tokio::test]
async fn token_removed_then_reinserted() {
    let _serial = SERIAL.lock().await;
    let (hsm, _) = token("removable").await;
    let w = hsm.wrap("u", B, b"survives removal").await.unwrap();
    let status = hsm.status().await.unwrap();
    assert_eq!(status.kek_versions, vec![1]);

    // "Remove" the token: SoftHSM2 keeps each token in its own directory.
    let tokens = env().dir.path().join("tokens");
    let dir = token_dir(&tokens, "removable");
    let away = env().dir.path().join("removed-token");
    std::fs::rename(&dir, &away).unwrap();
    let e = hsm.unwrap("u", B, &w).await.unwrap_err();
    assert!(
        matches!(e, Error::HsmUnavailable(_) | Error::KeyNotFound(_)),
        "{e}"
    );

    // Re-insert: the pool reconnects and logs in again by itself.
    std::fs::rename(&away, &dir).unwrap();
    let back = hsm.unwrap("u", B, &w).await.unwrap();
    assert_eq!(back.as_slice(), b"survives removal");
}

/// The SoftHSM2 token directory whose token.object holds `label`.
fn token_dir(tokens: &Path, label: &str) -> PathBuf {
    for entry in std::fs::read_dir(tokens).unwrap() {
        let path = entry.unwrap().path();
        let obj = std::fs::read(path.join("token.object")).unwrap_or_default();
        if obj.windows(label.len()).any(|w| w == label.as_bytes())
            && !obj
                .windows(label.len() + 1)
                .any(|w| w == format!("{label}-").as_bytes())
        {
            return path;
        }
    }
    panic!("no token dir for {label}");
}

/// Whether an ES256 JWS `token` verifies under P-256 `jwk`, as any verifier
/// checks it: ECDSA SHA-256 over `header.payload`, `r || s`.
fn es256_verifies(jwk: &arclock_hsm::Jwk, token: &str) -> bool {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let PublicKey::Ec { crv, x, y } = &jwk.key else {
        return false;
    };
    assert_eq!((*crv, jwk.alg), ("P-256", Alg::Es256));
    let point = [vec![4u8], b64.decode(x).unwrap(), b64.decode(y).unwrap()].concat();
    let (input, sig) = token.rsplit_once('.').unwrap();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(input.as_bytes(), &b64.decode(sig).unwrap())
        .is_ok()
}

/// Switching a token from RS256 to ES256: provisioning with ES256
/// configured adds a P-256 key, which signs from then on, while the RSA key
/// stays published so that tokens signed before the switch still verify; a
/// daemon still configured for RS256 keeps signing with its RSA key. Both
/// private keys are sensitive and never extractable.
#[tokio::test]
async fn a_switch_to_es256_keeps_both_keys_published() {
    let _serial = SERIAL.lock().await;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (rsa, pin) = token("es256").await;
    let before = rsa.sign(b"h.p").await.unwrap();
    assert_eq!(before.key.alg, Alg::Rs256);

    let ec = Hsm::new(
        HsmConfig {
            signing: Signing::Es256,
            ..config("es256")
        },
        Pin::from_file(&pin).unwrap(),
    );
    assert!(
        matches!(ec.signing_key().await, Err(Error::KeyNotFound(ref m)) if m.contains("ES256")),
        "no ES256 key yet: signing fails closed"
    );
    assert!(ensure_keys(&ec).await.unwrap(), "the switch makes a key");
    assert!(!ensure_keys(&ec).await.unwrap(), "and only once");
    let jwks = ec.jwks().await.unwrap();
    assert_eq!(
        jwks.keys.iter().map(|k| k.alg).collect::<Vec<_>>(),
        [Alg::Rs256, Alg::Es256]
    );
    let serialized = serde_json::to_value(&jwks.keys[1]).unwrap();
    assert_eq!(serialized["kty"], "EC");
    assert_eq!(serialized["crv"], "P-256");
    assert_eq!(serialized["alg"], "ES256");
    assert_eq!(
        b64.decode(serialized["x"].as_str().unwrap()).unwrap().len(),
        32
    );

    let input = jwt_parts(
        &serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": jwks.keys[1].kid}),
        &serde_json::json!({"sub": "u1"}),
    );
    let sig = ec.sign(input.as_bytes()).await.unwrap();
    assert_eq!(sig.key.kid, jwks.keys[1].kid);
    assert_eq!(sig.bytes.len(), 64);
    let token = format!("{input}.{}", b64.encode(&sig.bytes));
    assert!(es256_verifies(&jwks.keys[1], &token));
    let mut flipped = sig.bytes.clone();
    flipped[10] ^= 1;
    assert!(!es256_verifies(
        &jwks.keys[1],
        &format!("{input}.{}", b64.encode(&flipped))
    ));
    // The RS256 side keeps its key, which stays in the set.
    assert_eq!(rsa.sign(b"h.p").await.unwrap().key, before.key);
    assert_eq!(jwks.keys[0].kid, before.key.kid);

    drop((rsa, ec));
    tokio::task::spawn_blocking(move || {
        let (ctx, slot) = raw_slot("es256");
        let s = ctx.open_ro_session(slot).unwrap();
        common::login(&s, &pin);
        let h = s
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(b"jwt-v2".to_vec()),
            ])
            .unwrap()[0];
        let got = s
            .get_attributes(
                h,
                &[
                    AttributeType::KeyType,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::Sensitive,
                    AttributeType::Value,
                ],
            )
            .unwrap();
        assert!(got.contains(&Attribute::KeyType(KeyType::EC)));
        assert!(got.contains(&Attribute::Extractable(false)));
        assert!(got.contains(&Attribute::NeverExtractable(true)));
        assert!(got.contains(&Attribute::Sensitive(true)));
        assert!(
            !got.iter().any(|a| matches!(a, Attribute::Value(_))),
            "the private scalar came out"
        );
    })
    .await
    .unwrap();
}

/// Someone with a read-write session plants P-256 public keys whose private
/// halves they hold: one under a label of its own (`jwt-v98`, no private key
/// beside it) and one under the label of the real ES256 key (`jwt-v2`), and
/// a private key they imported as `jwt-v97`. None is published or signs: the
/// second fails the proof that the token's private key made a signature it
/// verifies. A token they sign with their key is therefore not checkable
/// against the published set.
#[tokio::test]
async fn planted_p256_keys_are_never_published() {
    let _serial = SERIAL.lock().await;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let (hsm, pin) = token("planted-ec").await;
    drop(hsm);
    let ec_config = || HsmConfig {
        signing: Signing::Es256,
        ..config("planted-ec")
    };
    let ec = Hsm::new(ec_config(), Pin::from_file(&pin).unwrap());
    ensure_keys(&ec).await.unwrap();
    // This instance has proven its key pair (and remembers the proof):
    // what it publishes after the planting must not change either.
    let before = ec.jwks().await.unwrap().keys;
    let signer = ec.signing_key().await.unwrap();

    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let mine =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = mine.public_key().as_ref().to_vec();
    let pin2 = pin.clone();
    tokio::task::spawn_blocking(move || {
        let (ctx, slot) = raw_slot("planted-ec");
        let s = ctx.open_rw_session(slot).unwrap();
        let p256 = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        for label in ["jwt-v98", "jwt-v2"] {
            s.create_object(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::EC),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::EcParams(p256.clone()),
                Attribute::EcPoint([&[0x04, 0x41][..], &point].concat()),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .unwrap();
        }
        common::login(&s, &pin2);
        // Made in the token but extractable: not a key that never left it.
        s.generate_key_pair(
            &cryptoki::mechanism::Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::EcParams(p256),
                Attribute::Label(b"jwt-v97".to_vec()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::Sign(true),
                Attribute::Label(b"jwt-v97".to_vec()),
            ],
        )
        .unwrap();
    })
    .await
    .unwrap();

    assert_eq!(
        ec.jwks().await.unwrap().keys,
        before,
        "with proofs remembered"
    );
    assert_eq!(ec.status().await.unwrap().jwt_kids.len(), before.len());
    drop(ec);
    let ec = Hsm::new(ec_config(), Pin::from_file(&pin).unwrap());
    assert_eq!(ec.jwks().await.unwrap().keys, before);
    assert_eq!(ec.signing_key().await.unwrap(), signer);
    let sig = ec.sign(b"h.p").await.unwrap();
    assert_eq!(sig.key, signer);
}

/// A failed operation closes its session (tpm2-pkcs11 leaves it stuck), and
/// PKCS#11 ends the login with the application's last session. The pool
/// keeps one session for the login alone, so the login, and with it every
/// cached key handle, outlives that: opencryptoki renumbers private objects
/// at each login, and the handle cached for the pseudonym key then named an
/// RSA key (found by `tests/contract.rs` on it). Here, a one-session pool's
/// only working session fails and is closed; the token stays logged in.
#[tokio::test]
async fn a_failed_operation_does_not_end_the_login() {
    use cryptoki::session::SessionState;
    let _serial = SERIAL.lock().await;
    let (hsm, pin) = token("login-kept").await;
    drop(hsm);
    let hsm = Hsm::new(
        HsmConfig {
            pool_size: 1,
            ..config("login-kept")
        },
        Pin::from_file(&pin).unwrap(),
    );
    let w = hsm.wrap("u1", B, &[1; 32]).await.unwrap();
    let mac = hsm.pseudonym(b"alice@example.org").await.unwrap();
    assert!(matches!(
        hsm.unwrap("u2", B, &w).await,
        Err(Error::IntegrityFailure)
    ));
    let state = tokio::task::spawn_blocking(|| {
        let (ctx, slot) = raw_slot("login-kept");
        let s = ctx.open_ro_session(slot).unwrap();
        s.get_session_info().unwrap().session_state()
    })
    .await
    .unwrap();
    assert_eq!(state, SessionState::RoUser, "the login ended");
    assert_eq!(hsm.pseudonym(b"alice@example.org").await.unwrap(), mac);
}
