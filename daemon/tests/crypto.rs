//! Access tokens and sealed templates against a real SoftHSM2 token, with real
//! embeddings from the face pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use arclock_face::Embedding;
use arclock_hsm::provision::{ensure_keys, ensure_token};
use arclock_hsm::{Hsm, HsmConfig, Pin, PublicKey, Signing};
use arclockd::identity::{Email, UserId};
use arclockd::template::{self, TemplateError};
use arclockd::token::{Claims, RefreshToken, TokenError, Tokens};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::embedding;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const NOW: i64 = 1_800_000_000_000;

/// A private SoftHSM2 store for this test process.
fn hsm_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            arclock_hsm::provision::softhsm_conf(&dir.path().join("tokens")),
        )
        .unwrap();
        // Once, before SoftHSM2 is loaded: every test passes here first.
        common::point_softhsm_at(&conf);
        dir
    })
    .path()
}

async fn token(label: &str) -> Hsm {
    token_signing(label, Signing::Rs256 { bits: 2048 }).await
}

/// Token `label` (made if new) with its keys for `signing`: a second call
/// with another algorithm is the switch `arclockd provision` makes.
async fn token_signing(label: &str, signing: Signing) -> Hsm {
    let dir = hsm_dir();
    let (pin, so) = (
        dir.join(format!("{label}.pin")),
        dir.join(format!("{label}.so")),
    );
    let (l, p, s) = (label.to_string(), pin.clone(), so.clone());
    tokio::task::spawn_blocking(move || ensure_token(Path::new(MODULE), &l, None, &p, &s))
        .await
        .unwrap()
        .unwrap();
    let hsm = Hsm::new(
        HsmConfig {
            module: MODULE.into(),
            token_label: label.into(),
            slot: None,
            pool_size: 2,
            signing,
        },
        Pin::from_file(&pin).unwrap(),
    );
    ensure_keys(&hsm).await.unwrap();
    hsm
}

fn tokens(hsm: &Hsm, audience: &str) -> Tokens {
    Tokens::new(
        hsm.clone(),
        "arclock-test",
        audience,
        Duration::from_secs(900),
    )
}

fn b64json(v: serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn claims(sub: &str, exp_in: i64) -> serde_json::Value {
    let now = NOW / 1000;
    serde_json::json!({"iss": "arclock-test", "aud": "arclock-app", "sub": sub,
        "iat": now, "nbf": now, "exp": now + exp_in, "jti": "x"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_verify_and_every_classic_attack_fails() {
    let hsm = token("tokens").await;
    let t = tokens(&hsm, "arclock-app");
    let user = UserId::generate();
    let jwt = t.issue(&user, "sid-1", NOW).await.unwrap();
    let c: Claims = t.verify(&jwt, NOW + 1000).await.unwrap();
    assert_eq!((c.sub.as_str(), c.exp - c.iat), (user.as_str(), 900));
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let kid = header["kid"].as_str().unwrap().to_string();
    assert_eq!(header["alg"], "RS256");

    let refused = |r: Result<Claims, TokenError>, what: &str| {
        assert!(matches!(r, Err(TokenError::Invalid(_))), "{what}: {r:?}");
    };
    // Expired, not yet valid, and for another audience.
    refused(t.verify(&jwt, NOW + 900_000).await, "expired");
    refused(t.verify(&jwt, NOW - 1000).await, "before nbf");
    refused(
        tokens(&hsm, "someone-else").verify(&jwt, NOW).await,
        "audience",
    );

    // alg: none, with and without a signature part.
    let payload = b64json(claims(user.as_str(), 900));
    let none = format!(
        "{}.{payload}.",
        b64json(serde_json::json!({"alg": "none", "kid": kid}))
    );
    refused(t.verify(&none, NOW).await, "alg none");

    // HS256 keyed with our public key (the RS/HS confusion attack).
    let jwk = &t.jwks().await.unwrap().keys[0];
    let PublicKey::Rsa { n, .. } = &jwk.key else {
        panic!("{jwk:?}")
    };
    let hs_input = format!(
        "{}.{payload}",
        b64json(serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": kid}))
    );
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, n.as_bytes()),
        hs_input.as_bytes(),
    );
    let hs = format!("{hs_input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
    refused(t.verify(&hs, NOW).await, "HS256 with the public key");

    // A valid signature under a kid we never published.
    let parts: Vec<&str> = jwt.split('.').collect();
    let foreign_kid = format!(
        "{}.{}.{}",
        b64json(serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "not-ours"})),
        parts[1],
        parts[2]
    );
    refused(t.verify(&foreign_kid, NOW).await, "unknown kid");

    // Signed by another HSM's key but claiming our kid.
    let other = tokens(&token("tokens-other").await, "arclock-app");
    let forged = other.issue(&user, "sid-1", NOW).await.unwrap();
    let fp: Vec<&str> = forged.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        b64json(serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": kid})),
        fp[1],
        fp[2]
    );
    refused(t.verify(&forged, NOW).await, "foreign key, our kid");

    // A changed claim breaks the signature.
    let evil = b64json(claims(UserId::generate().as_str(), 900));
    refused(
        t.verify(&format!("{}.{evil}.{}", parts[0], parts[2]), NOW)
            .await,
        "tampered",
    );

    // After a rotation new tokens carry the new kid and old ones still verify.
    hsm.create_signing_key(Signing::Rs256 { bits: 2048 })
        .await
        .unwrap();
    let t2 = tokens(&hsm, "arclock-app");
    let fresh = t2.issue(&user, "sid-1", NOW).await.unwrap();
    assert_ne!(fresh.split('.').next(), jwt.split('.').next());
    t2.verify(&fresh, NOW).await.unwrap();
    t2.verify(&jwt, NOW).await.unwrap();
}

/// `token` with its header replaced by `header`, payload and signature kept.
fn with_header(token: &str, header: serde_json::Value) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    format!("{}.{rest}", b64json(header))
}

/// ES256 from the token: tokens name the P-256 key and verify; after a
/// switch from RS256, tokens signed before it still verify (both keys are
/// published), and neither key accepts the other algorithm's header, so a
/// signature cannot be re-labelled to be checked some other way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_tokens_verify_and_a_switch_keeps_earlier_ones() {
    let user = UserId::generate();
    let rsa = tokens(&token("es256-switch").await, "arclock-app");
    let before = rsa.issue(&user, "sid-1", NOW).await.unwrap();
    let ec = tokens(
        &token_signing("es256-switch", Signing::Es256).await,
        "arclock-app",
    );
    let after = ec.issue(&user, "sid-1", NOW).await.unwrap();
    let header = |t: &str| -> serde_json::Value {
        serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(t.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    let (h_before, h_after) = (header(&before), header(&after));
    assert_eq!(
        (&h_before["alg"], &h_after["alg"]),
        (&"RS256".into(), &"ES256".into())
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(after.rsplit('.').next().unwrap())
            .unwrap()
            .len(),
        64
    );
    let jwks = ec.jwks().await.unwrap();
    assert_eq!(jwks.keys.len(), 2, "both keys published during the switch");
    for t in [&rsa, &ec] {
        assert_eq!(t.verify(&before, NOW).await.unwrap().sub, user.as_str());
        assert_eq!(t.verify(&after, NOW).await.unwrap().sub, user.as_str());
    }

    let refused = |r: Result<Claims, TokenError>, what: &str| {
        assert!(matches!(r, Err(TokenError::Invalid(_))), "{what}: {r:?}");
    };
    let (kid_rsa, kid_ec) = (h_before["kid"].clone(), h_after["kid"].clone());
    refused(
        ec.verify(
            &with_header(&after, serde_json::json!({"alg": "RS256", "kid": kid_ec})),
            NOW,
        )
        .await,
        "an ES256 signature relabelled RS256",
    );
    refused(
        ec.verify(
            &with_header(&before, serde_json::json!({"alg": "ES256", "kid": kid_rsa})),
            NOW,
        )
        .await,
        "an RS256 signature relabelled ES256",
    );
    refused(
        ec.verify(
            &with_header(&before, serde_json::json!({"alg": "RS256", "kid": kid_ec})),
            NOW,
        )
        .await,
        "an RS256 signature under the ES256 kid",
    );
    // HS256 keyed with the public point's x coordinate.
    let PublicKey::Ec { x, .. } = &jwks.keys[1].key else {
        panic!("{:?}", jwks.keys[1])
    };
    let hs_input = format!(
        "{}.{}",
        b64json(serde_json::json!({"alg": "HS256", "kid": kid_ec})),
        b64json(claims(user.as_str(), 900))
    );
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, x.as_bytes()),
        hs_input.as_bytes(),
    );
    refused(
        ec.verify(
            &format!("{hs_input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref())),
            NOW,
        )
        .await,
        "HS256 keyed with the EC key",
    );
    // One bit of the signature.
    let mut sig = URL_SAFE_NO_PAD
        .decode(after.rsplit('.').next().unwrap())
        .unwrap();
    sig[40] ^= 1;
    let (signed, _) = after.rsplit_once('.').unwrap();
    refused(
        ec.verify(&format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&sig)), NOW)
            .await,
        "a flipped bit",
    );
    // The other algorithm's daemon verifies, and keeps signing with its own.
    let again = rsa.issue(&user, "sid-2", NOW).await.unwrap();
    assert_eq!(header(&again)["kid"], kid_rsa);
}

#[test]
fn refresh_tokens_are_random_and_name_their_family_and_user() {
    let (user, family) = (UserId::generate(), hex::encode([7u8; 16]));
    let (a, b) = (
        RefreshToken::generate(&family, &user),
        RefreshToken::generate(&family, &user),
    );
    assert_ne!(a.encode(), b.encode());
    assert_ne!(a.mac_input(), b.mac_input());
    let parsed = RefreshToken::parse(&a.encode()).unwrap();
    assert_eq!(
        (parsed.family_id(), parsed.user()),
        (family.as_str(), &user)
    );
    assert_eq!(parsed.mac_input(), a.mac_input());
    assert!(
        a.encode().rsplit('.').next().unwrap().len() >= 43,
        "256 bits"
    );
    // The same secret claimed for another user is another MAC input.
    let other = a
        .encode()
        .replace(user.as_str(), UserId::generate().as_str());
    assert_ne!(
        RefreshToken::parse(&other).unwrap().mac_input(),
        a.mac_input()
    );
    // Bare secrets (the format before tokens were bound) and junk do not parse.
    for junk in [
        "",
        "abc",
        &URL_SAFE_NO_PAD.encode([1u8; 32]),
        &format!("{}.extra", a.encode()),
        &a.encode().replacen('.', "..", 1),
    ] {
        assert!(RefreshToken::parse(junk).is_none(), "{junk:?}");
    }
    assert!(!format!("{a:?}").contains(a.encode().rsplit('.').next().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_seal_to_the_user_and_open_only_for_them() {
    let hsm = token("templates").await;
    let (alice, mallory) = (UserId::generate(), UserId::generate());
    let at = Email::parse("alice@example.com").unwrap();
    let probe = embedding("Al_Pacino", 1);
    let creds = template::seal(&hsm, &alice, &at, &probe).await.unwrap();
    assert_eq!(creds.key.wrapped.binding, arclock_hsm::Binding::Credentials);

    // Nothing of the embedding is in what gets stored.
    let plain = probe.to_bytes().unwrap();
    assert!(!common::contains_window(
        &creds.template.ciphertext,
        &plain,
        16
    ));
    assert_eq!(creds.template.model_id, "arcface_mobileface_128");
    assert_eq!(creds.key.public_key.len(), 33);

    let opened = template::open(&hsm, &alice, &at, &creds).await.unwrap();
    assert!((opened.cosine(&probe).unwrap() - 1.0).abs() < 1e-6);
    let same_person = embedding("Al_Pacino", 2);
    assert!(opened.cosine(&same_person).unwrap() >= 0.39);

    let forged = |r: Result<Embedding, TemplateError>| {
        matches!(
            r,
            Err(TemplateError::Hsm(arclock_hsm::Error::IntegrityFailure))
        )
    };
    // Moved to another user: the HSM refuses the key (AAD binds the user id).
    assert!(forged(template::open(&hsm, &mallory, &at, &creds).await));
    // Moved to another address: refused (the e-mail is in the binding).
    let elsewhere = Email::parse("mallory@example.com").unwrap();
    assert!(forged(
        template::open(&hsm, &alice, &elsewhere, &creds).await
    ));
    // The attack a store writer would make: their own face, encrypted to
    // Alice's *public* key (no secret needed), in place of her template.
    let theirs = embedding("George_W_Bush", 1);
    let mut swapped = creds.clone();
    swapped.template.ciphertext =
        ecies::encrypt(&creds.key.public_key, &theirs.to_bytes().unwrap()).unwrap();
    assert!(forged(template::open(&hsm, &alice, &at, &swapped).await));
    // A flipped bit in the template, another public key, or the template
    // relabelled to another model: refused before any decryption.
    let mut bad = creds.clone();
    let mid = bad.template.ciphertext.len() / 2;
    bad.template.ciphertext[mid] ^= 1;
    assert!(forged(template::open(&hsm, &alice, &at, &bad).await));
    let mut other_key = creds.clone();
    other_key.key.public_key[5] ^= 1;
    assert!(forged(template::open(&hsm, &alice, &at, &other_key).await));
    let mut other_model = creds.clone();
    other_model.template.model_id = "mobilefacenet_128".into();
    assert!(forged(
        template::open(&hsm, &alice, &at, &other_model).await
    ));
    // The blob relabelled as the old, owner-only format: refused (this
    // token was made bound, so it never accepts AKW1).
    let mut downgraded = creds.clone();
    downgraded.key.wrapped.binding = arclock_hsm::Binding::Owner;
    assert!(forged(template::open(&hsm, &alice, &at, &downgraded).await));

    // After a KEK rotation the stored key is re-wrapped without re-enrolment,
    // still bound to its record.
    hsm.create_kek_version().await.unwrap();
    let bound = template::binding(at.as_str(), &creds.template, &creds.key.public_key);
    let mut rotated = creds.clone();
    rotated.key.wrapped = hsm
        .rewrap(alice.as_str(), &bound, &creds.key.wrapped)
        .await
        .unwrap()
        .expect("moved to v2");
    assert_eq!(rotated.key.wrapped.kek_version, 2);
    let again = template::open(&hsm, &alice, &at, &rotated).await.unwrap();
    assert!((again.cosine(&probe).unwrap() - 1.0).abs() < 1e-6);
    assert!(
        hsm.rewrap(alice.as_str(), &bound, &rotated.key.wrapped)
            .await
            .unwrap()
            .is_none(),
        "already current"
    );
    // A rewrap is no way around the binding either.
    let other_bound = template::binding(at.as_str(), &swapped.template, &creds.key.public_key);
    assert!(matches!(
        hsm.rewrap(alice.as_str(), &other_bound, &creds.key.wrapped)
            .await,
        Err(arclock_hsm::Error::IntegrityFailure)
    ));
}
