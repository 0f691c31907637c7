//! The key-custody contract, on any PKCS#11 token: what ArcLock relies on a
//! token for, checked through `arclock-hsm` as the daemon uses it, plus the
//! raw look at the token an attacker with a session would take.
//!
//! It runs on a fresh SoftHSM2 token in every `make test`, on a software
//! TPM 2.0 (swtpm + tpm2-pkcs11) there too (`scripts/with-tpm.sh` names it),
//! and on each token of `make hsm-matrix`. A token is named by
//! `ARCLOCK_TEST_PKCS11_MODULE`, `_LABEL`, `_PIN` (a file) and perhaps
//! `_SLOT`; the module's own variables come from this process's
//! environment. The token may hold keys from earlier runs: every check is
//! relative to what it holds when the run starts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::path::{Path, PathBuf};

use arclock_hsm::provision::{ensure_keys, ensure_token};
use arclock_hsm::{Alg, Error, Hsm, HsmConfig, Pin, PublicKey, Signing, pkcs11_context};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use sha2::Digest;

/// The record digest the blobs of the contract are bound to.
const B: &[u8; 32] = &[0xC0; 32];
const SECRET: &[u8; 32] = b"the user's ECIES private key....";
const RS256: Signing = Signing::Rs256 { bits: 2048 };

/// A token to hold to the contract.
struct Target {
    name: String,
    config: HsmConfig,
    pin: PathBuf,
    /// Keeps a SoftHSM2 token's directory alive for the run.
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    fn hsm(&self, signing: Signing) -> Hsm {
        Hsm::new(
            HsmConfig {
                signing,
                ..self.config.clone()
            },
            Pin::from_file(&self.pin).unwrap(),
        )
    }
}

/// A SoftHSM2 token made for this run, in a directory of its own.
async fn softhsm2() -> Target {
    // The only test here that loads SoftHSM2; the other names a token of
    // another module (make hsm-matrix runs it alone on its SoftHSM2).
    let dir = common::private_softhsm();
    let module = PathBuf::from("/usr/lib/softhsm/libsofthsm2.so");
    let (pin, so) = (dir.path().join("user.pin"), dir.path().join("so.pin"));
    let (m, p, s) = (module.clone(), pin.clone(), so.clone());
    tokio::task::spawn_blocking(move || ensure_token(&m, "contract", None, &p, &s))
        .await
        .unwrap()
        .unwrap();
    Target {
        name: "SoftHSM2".into(),
        config: HsmConfig {
            module,
            token_label: "contract".into(),
            slot: None,
            pool_size: 2,
            signing: RS256,
        },
        pin,
        _dir: Some(dir),
    }
}

/// The token `ARCLOCK_TEST_PKCS11_*` names, if any.
fn named() -> Option<Target> {
    let var = |n: &str| std::env::var(format!("ARCLOCK_TEST_PKCS11_{n}")).ok();
    let module = var("MODULE")?;
    Some(Target {
        name: var("NAME").unwrap_or_else(|| module.clone()),
        config: HsmConfig {
            module: module.into(),
            token_label: var("LABEL").expect("ARCLOCK_TEST_PKCS11_LABEL"),
            slot: var("SLOT")
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap()),
            pool_size: 2,
            signing: RS256,
        },
        pin: var("PIN").expect("ARCLOCK_TEST_PKCS11_PIN").into(),
        _dir: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softhsm2_keeps_the_contract() {
    contract(softhsm2().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_named_token_keeps_the_contract() {
    match named() {
        Some(target) => contract(target).await,
        None if std::env::var_os("ARCLOCK_TEST_PKCS11_REQUIRED").is_some() => {
            panic!("ARCLOCK_TEST_PKCS11_REQUIRED is set but no token is named")
        }
        None => eprintln!(
            "SKIPPED: ARCLOCK_TEST_PKCS11_MODULE names no token (make test names a TPM \
             through scripts/with-tpm.sh, make hsm-matrix each of its tokens)"
        ),
    }
}

fn step(t: &Target, what: &str) {
    eprintln!("contract on {}: {what}", t.name);
}

async fn contract(t: Target) {
    let hsm = t.hsm(RS256);
    step(&t, "keys made or found");
    ensure_keys(&hsm).await.unwrap();
    let lacks = hsm.lacks().await.unwrap();
    assert!(lacks.is_empty(), "lacks for RS256: {lacks:?}");
    eprintln!("  KEK kind {:?}", hsm.kek_kind().await.unwrap());

    step(&t, "a wrapped key opens only for its user and record");
    let before = *hsm.kek_versions().await.unwrap().last().unwrap();
    let w = hsm.wrap("u1", B, SECRET).await.unwrap();
    assert_eq!(w.kek_version, before);
    assert_eq!(hsm.unwrap("u1", B, &w).await.unwrap().as_slice(), SECRET);
    let refused = |r: Result<_, Error>, what: &str| {
        assert!(
            matches!(r, Err(Error::IntegrityFailure)),
            "{what}: {:?}",
            r.map(|_| ())
        );
    };
    refused(hsm.unwrap("u2", B, &w).await, "another user");
    refused(hsm.unwrap("u1", &[0xC1; 32], &w).await, "another record");
    let mut flipped = w.clone();
    *flipped.ciphertext.last_mut().unwrap() ^= 1;
    refused(hsm.unwrap("u1", B, &flipped).await, "a flipped bit");
    let blob = w.to_bytes();
    assert!(
        !blob.windows(SECRET.len()).any(|x| x == SECRET),
        "the secret is in the blob"
    );

    step(
        &t,
        "rotation re-wraps, retirement makes old blobs unreadable",
    );
    let next = hsm.create_kek_version().await.unwrap();
    assert!(next > before);
    assert_eq!(hsm.wrap("u1", B, SECRET).await.unwrap().kek_version, next);
    assert_eq!(hsm.unwrap("u1", B, &w).await.unwrap().as_slice(), SECRET);
    let moved = hsm.rewrap("u1", B, &w).await.unwrap().expect("moved");
    assert_eq!(moved.kek_version, next);
    assert!(
        hsm.retire_kek_version(next).await.is_err(),
        "the newest KEK"
    );
    for old in hsm.kek_versions().await.unwrap() {
        if old != next {
            hsm.retire_kek_version(old).await.unwrap();
        }
    }
    assert_eq!(hsm.kek_versions().await.unwrap(), vec![next]);
    assert!(matches!(
        hsm.unwrap("u1", B, &w).await,
        Err(Error::KeyNotFound(_))
    ));
    assert_eq!(
        hsm.unwrap("u1", B, &moved).await.unwrap().as_slice(),
        SECRET
    );

    step(&t, "RS256 signatures verify under the published key");
    let sig = hsm.sign(b"header.payload").await.unwrap();
    assert_eq!(sig.key.alg, Alg::Rs256);
    let jwks = hsm.jwks().await.unwrap();
    let jwk = jwks.keys.iter().find(|k| k.kid == sig.key.kid).unwrap();
    let PublicKey::Rsa { n, e } = &jwk.key else {
        panic!("{jwk:?}")
    };
    let (n, e) = (
        URL_SAFE_NO_PAD.decode(n).unwrap(),
        URL_SAFE_NO_PAD.decode(e).unwrap(),
    );
    let rsa = ring::signature::RsaPublicKeyComponents { n: &n, e: &e };
    let rs = &ring::signature::RSA_PKCS1_2048_8192_SHA256;
    rsa.verify(rs, b"header.payload", &sig.bytes).unwrap();
    assert!(rsa.verify(rs, b"header.payloaD", &sig.bytes).is_err());

    step(&t, "ES256, where the token makes P-256 keys");
    let ec = t.hsm(Signing::Es256);
    let ec_lacks = ec.lacks().await.unwrap();
    if ec_lacks.is_empty() {
        ensure_keys(&ec).await.unwrap();
        let sig = ec.sign(b"header.payload").await.unwrap();
        assert_eq!((sig.key.alg, sig.bytes.len()), (Alg::Es256, 64));
        let jwks = ec.jwks().await.unwrap();
        let jwk = jwks.keys.iter().find(|k| k.kid == sig.key.kid).unwrap();
        let PublicKey::Ec { x, y, .. } = &jwk.key else {
            panic!("{jwk:?}")
        };
        let point = [
            vec![4],
            URL_SAFE_NO_PAD.decode(x).unwrap(),
            URL_SAFE_NO_PAD.decode(y).unwrap(),
        ]
        .concat();
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            point,
        );
        key.verify(b"header.payload", &sig.bytes).unwrap();
        assert!(key.verify(b"header.payloaD", &sig.bytes).is_err());
        let algs: Vec<Alg> = jwks.keys.iter().map(|k| k.alg).collect();
        assert!(
            algs.contains(&Alg::Rs256) && algs.contains(&Alg::Es256),
            "{algs:?}"
        );
        // The RS256 side still signs with its own key.
        assert_eq!(hsm.sign(b"x").await.unwrap().key.alg, Alg::Rs256);
    } else {
        eprintln!("  ES256 not offered: {ec_lacks:?}");
    }
    drop(ec);

    step(&t, "pseudonyms are keyed by the token");
    let a = hsm.pseudonym(b"alice@example.org").await.unwrap();
    assert_eq!(a, hsm.pseudonym(b"alice@example.org").await.unwrap());
    assert_ne!(a, hsm.pseudonym(b"alice@example.org ").await.unwrap());
    assert_ne!(a[..], sha2::Sha256::digest(b"alice@example.org")[..]);

    step(
        &t,
        "no key ArcLock made can be read out, and planted ones are not used",
    );
    let jwks_before = hsm.jwks().await.unwrap().keys;
    drop(hsm);
    let (module, config, pin) = (t.config.module.clone(), t.config.clone(), t.pin.clone());
    tokio::task::spawn_blocking(move || raw_look(&module, &config, &pin))
        .await
        .unwrap();
    let hsm = t.hsm(RS256);
    assert_eq!(hsm.jwks().await.unwrap().keys, jwks_before);
    assert_eq!(
        hsm.unwrap("u1", B, &moved).await.unwrap().as_slice(),
        SECRET
    );
    step(&t, "kept");
}

/// What someone with a session on the token sees: every private or secret
/// key under ArcLock's labels is sensitive, never was extractable, and its
/// value does not come out. Then they plant an RSA public key of their own
/// as the next signing key (a public object needs no PIN), which the caller
/// checks is not published.
fn raw_look(module: &Path, config: &HsmConfig, pin: &Path) {
    let ctx = pkcs11_context(module).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| match config.slot {
            Some(id) => s.id() == id,
            None => ctx
                .get_token_info(*s)
                .is_ok_and(|i| i.label().trim_end() == config.token_label),
        })
        .expect("the token's slot");
    let s = ctx.open_rw_session(slot).unwrap();
    common::login(&s, pin);
    let mut seen = Vec::new();
    for class in [ObjectClass::SECRET_KEY, ObjectClass::PRIVATE_KEY] {
        for h in s.find_objects(&[Attribute::Class(class)]).unwrap() {
            let attrs = s
                .get_attributes(h, &[AttributeType::Label, AttributeType::KeyType])
                .unwrap();
            let label = attrs
                .iter()
                .find_map(|a| match a {
                    Attribute::Label(l) => Some(String::from_utf8_lossy(l).into_owned()),
                    _ => None,
                })
                .unwrap_or_default();
            if !(label.starts_with("kek-v")
                || label.starts_with("jwt-v")
                || label == arclock_hsm::pseudonym::LABEL)
            {
                continue;
            }
            seen.push(label.clone());
            let secret_part = match attrs.iter().find_map(|a| match a {
                Attribute::KeyType(k) => Some(*k),
                _ => None,
            }) {
                Some(KeyType::RSA) => AttributeType::PrivateExponent,
                _ => AttributeType::Value,
            };
            let flags = s
                .get_attributes(
                    h,
                    &[
                        AttributeType::Sensitive,
                        AttributeType::AlwaysSensitive,
                        AttributeType::Extractable,
                        AttributeType::NeverExtractable,
                        AttributeType::Private,
                    ],
                )
                .unwrap();
            for want in [
                Attribute::Sensitive(true),
                Attribute::AlwaysSensitive(true),
                Attribute::Extractable(false),
                Attribute::NeverExtractable(true),
                Attribute::Private(true),
            ] {
                assert!(flags.contains(&want), "{label}: {flags:?}");
            }
            let got = s.get_attributes(h, &[secret_part]).unwrap_or_default();
            assert!(got.is_empty(), "{label}: its {secret_part:?} came out");
        }
    }
    for prefix in ["kek-v", "jwt-v", arclock_hsm::pseudonym::LABEL] {
        assert!(
            seen.iter().any(|l| l.starts_with(prefix)),
            "no {prefix} key looked at: {seen:?}"
        );
    }
    // A token that refuses to import a public key has nothing to plant.
    let planted = common::plant_rsa_public(&s, "jwt-v9999");
    eprintln!("  planted public key: {planted:?}");
}
