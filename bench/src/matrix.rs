//! `arclock-bench hsm-probe`: what one PKCS#11 token really does of each job
//! ArcLock (or a fallback for it) gives a token, tried with token keys made
//! for the probe and destroyed after each job, and how fast.
//!
//! `make hsm-matrix` (`scripts/hsm-matrix.sh`) sets up SoftHSM2, kryoptic,
//! opencryptoki's soft token and a TPM 2.0 (swtpm through tpm2-pkcs11), runs
//! this once per token and commits the table to `hsm/README.md`. A mechanism
//! list says what a token claims; this says what it did.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arclock_hsm::pkcs11_context;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};

/// One row of the matrix: a job, and what the token did.
pub struct Probe {
    pub job: &'static str,
    /// `yes`, or `no: <why>`.
    pub result: String,
    /// Operations per second, for the jobs on a sign-in's path.
    pub rate: Option<f64>,
}

/// A 96-bit GCM nonce, a 128-bit tag and AAD, as `arclock_hsm::kek` uses them.
const AAD: &[u8] = b"arclock/wrapped-key/v2\0probe";
/// The DER of the P-256 curve's OID, for `CKA_EC_PARAMS`.
const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// SHA-256's DigestInfo prefix, for signing with raw `CKM_RSA_PKCS`.
const SHA256_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// Labels of the probe's keys, destroyed after every job.
const LABELS: [&str; 4] = ["probe-aes", "probe-hmac", "probe-rsa", "probe-ec"];

fn kept(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

/// Runs every probe against the token labelled `label` in `module`, logged
/// in with the PIN in `pin_file`; each rate is measured for `dur`.
pub fn run(module: &Path, label: &str, pin_file: &Path, dur: Duration) -> Result<Vec<Probe>> {
    let ctx = pkcs11_context(module).context("loading the module")?;
    // ArcLock finds its token by label (C_GetTokenInfo). A token whose
    // answer cryptoki cannot parse is probed anyway, by slot, and the row
    // says so.
    let (mut found, mut unreadable, mut seen) = (None, None, Vec::new());
    for slot in ctx.get_slots_with_token()? {
        match ctx.get_token_info(slot) {
            Ok(i) if i.label().trim_end() == label => found = Some(slot),
            Ok(i) => seen.push(i.label().trim_end().to_string()),
            Err(e) => {
                unreadable.get_or_insert((slot, e.to_string()));
            }
        }
    }
    let mut out = Vec::new();
    let slot = match (found, unreadable) {
        (Some(slot), _) => {
            out.push(Probe {
                job: "token found by its label (C_GetTokenInfo)",
                result: "yes".into(),
                rate: None,
            });
            slot
        }
        (None, Some((slot, e))) => {
            out.push(Probe {
                job: "token found by its label (C_GetTokenInfo)",
                result: format!("no: cryptoki cannot parse the token info ({e})"),
                rate: None,
            });
            slot
        }
        (None, None) => anyhow::bail!("no token labelled {label:?} (saw {seen:?})"),
    };
    let pin = std::fs::read_to_string(pin_file)?.trim().to_string();
    // A fresh session per probe: some tokens (tpm2-pkcs11) leave a session
    // stuck in CKR_OPERATION_ACTIVE after a failed operation.
    let session = || -> Result<Session> {
        let s = ctx.open_rw_session(slot)?;
        match s.login(UserType::User, Some(&pin.clone().into())) {
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::UserAlreadyLoggedIn,
                _,
            )) => Ok(s),
            Err(e) => Err(e.into()),
        }
    };
    let mut probe = |job: &'static str, f: &dyn Fn(&Session) -> Result<Option<f64>>| {
        let r = session().and_then(|s| {
            let r = f(&s);
            for label in LABELS {
                let found = s
                    .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
                    .unwrap_or_default();
                for h in found {
                    let _ = s.destroy_object(h);
                }
            }
            r
        });
        out.push(match r {
            Ok(rate) => Probe {
                job,
                result: "yes".into(),
                rate,
            },
            Err(e) => Probe {
                job,
                result: format!("no: {}", short(&e)),
                rate: None,
            },
        });
    };

    probe("AES-256 key made in the token, not extractable", &|s| {
        aes_key(s).map(|_| None)
    });
    probe("... reported always sensitive, never extractable", &|s| {
        let k = aes_key(s)?;
        born_sealed(s, k).map(|_| None)
    });
    probe("wrap: CKM_AES_GCM with AAD (per wrap)", &|s| {
        let k = aes_key(s)?;
        let secret = [7u8; 32];
        let rate = rate(dur, || gcm(s, k, true, &secret).map(drop))?;
        Ok(Some(rate))
    });
    probe("unwrap: CKM_AES_GCM with AAD, tag checked", &|s| {
        let k = aes_key(s)?;
        let blob = gcm(s, k, true, &[7u8; 32])?;
        let mut bad = blob.clone();
        bad[3] ^= 1;
        anyhow::ensure!(gcm(s, k, false, &bad).is_err(), "a changed blob opened");
        let rate = rate(dur, || gcm(s, k, false, &blob).map(drop))?;
        Ok(Some(rate))
    });
    probe("HMAC key (generic secret) made in the token", &|s| {
        hmac_key(s).map(|_| None)
    });
    probe("CKM_SHA256_HMAC (pseudonyms, session MACs)", &|s| {
        let k = hmac_key(s)?;
        let rate = rate(dur, || {
            s.sign(&Mechanism::Sha256Hmac, k, b"alice@example.org")
                .map(drop)
                .map_err(Into::into)
        })?;
        Ok(Some(rate))
    });
    probe("RSA-2048 key pair made in the token", &|s| {
        rsa_pair(s).map(|_| None)
    });
    probe("RS256: CKM_SHA256_RSA_PKCS", &|s| {
        let (_, private) = rsa_pair(s)?;
        let rate = rate(dur, || {
            s.sign(&Mechanism::Sha256RsaPkcs, private, b"header.claims")
                .map(drop)
                .map_err(Into::into)
        })?;
        Ok(Some(rate))
    });
    probe("RS256 fallback: CKM_RSA_PKCS over a DigestInfo", &|s| {
        let (_, private) = rsa_pair(s)?;
        let digest: Vec<u8> = [SHA256_INFO, &[0x5a; 32]].concat();
        s.sign(&Mechanism::RsaPkcs, private, &digest)?;
        Ok(None)
    });
    probe(
        "wrap fallback: CKM_RSA_PKCS_OAEP SHA-1, no label (what every token offers)",
        &|s| {
            let (public, private) = rsa_pair(s)?;
            let params = PkcsOaepParams::new(
                MechanismType::SHA1,
                PkcsMgfType::MGF1_SHA1,
                PkcsOaepSource::empty(),
            );
            let blob = s.encrypt(&Mechanism::RsaPkcsOaep(params), public, &[7u8; 32])?;
            let plain = s.decrypt(&Mechanism::RsaPkcsOaep(params), private, &blob)?;
            anyhow::ensure!(plain == [7u8; 32], "decrypted to something else");
            Ok(None)
        },
    );
    probe("unwrap fallback: OAEP SHA-1 decrypt in the token", &|s| {
        let (public, private) = rsa_pair(s)?;
        let m = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
            MechanismType::SHA1,
            PkcsMgfType::MGF1_SHA1,
            PkcsOaepSource::empty(),
        ));
        let blob = s.encrypt(&m, public, &[7u8; 32])?;
        let rate = rate(dur, || {
            s.decrypt(&m, private, &blob).map(drop).map_err(Into::into)
        })?;
        Ok(Some(rate))
    });
    probe("ES256: P-256 key pair, CKM_ECDSA over a digest", &|s| {
        let (_, private) = s.generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::Verify(true),
                Attribute::EcParams(P256.to_vec()),
                Attribute::Label(b"probe-ec".to_vec()),
            ],
            &[kept("probe-ec"), vec![Attribute::Sign(true)]].concat(),
        )?;
        let rate = rate(dur, || {
            s.sign(&Mechanism::Ecdsa, private, &[0x5a; 32])
                .map(drop)
                .map_err(Into::into)
        })?;
        Ok(Some(rate))
    });
    // Last: on swtpm 0.7.1 (libtpms) the decryption with a label ending in
    // a NUL byte puts the TPM into failure mode ("commands not being
    // accepted because of a TPM failure"), and every RSA operation after it
    // fails; the rows above were measured on a healthy TPM.
    probe(
        "OAEP SHA-256 with a label (not used: the tag binds)",
        &|s| oaep(s, b"arclock/wrapped-key/u1/v1").map(|_| None),
    );
    probe("... SHA-256 with a label ending in a NUL byte", &|s| {
        oaep(s, b"arclock/wrapped-key/u1/v1\0").map(|_| None)
    });
    Ok(out)
}

/// The PKCS#11 function and return value, or the first line of another
/// error, short enough for a table cell.
fn short(e: &anyhow::Error) -> String {
    if let Some(cryptoki::error::Error::Pkcs11(rv, function)) = e.downcast_ref() {
        return format!("{function:?} {rv:?}");
    }
    let text = format!("{e}");
    text.lines().next().unwrap_or("").chars().take(80).collect()
}

fn rate(dur: Duration, mut op: impl FnMut() -> Result<()>) -> Result<f64> {
    op()?;
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < dur {
        op()?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn aes_key(s: &Session) -> Result<ObjectHandle> {
    let mut t = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(32.into()),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
    ];
    t.extend(kept("probe-aes"));
    Ok(s.generate_key(&Mechanism::AesKeyGen, &t)?)
}

fn hmac_key(s: &Session) -> Result<ObjectHandle> {
    let mut t = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::ValueLen(32.into()),
        Attribute::Sign(true),
        Attribute::Verify(true),
    ];
    t.extend(kept("probe-hmac"));
    Ok(s.generate_key(&Mechanism::GenericSecretKeyGen, &t)?)
}

fn rsa_pair(s: &Session) -> Result<(ObjectHandle, ObjectHandle)> {
    Ok(s.generate_key_pair(
        &Mechanism::RsaPkcsKeyPairGen,
        &[
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::Encrypt(true),
            Attribute::ModulusBits(2048.into()),
            Attribute::PublicExponent(vec![1, 0, 1]),
            Attribute::Label(b"probe-rsa".to_vec()),
        ],
        &[
            kept("probe-rsa"),
            vec![Attribute::Sign(true), Attribute::Decrypt(true)],
        ]
        .concat(),
    )?)
}

/// Whether the token says the key was made sensitive and never left it: what
/// `arclock_hsm`'s trust check requires before using a key.
fn born_sealed(s: &Session, key: ObjectHandle) -> Result<()> {
    let attrs = s.get_attributes(
        key,
        &[
            AttributeType::AlwaysSensitive,
            AttributeType::NeverExtractable,
        ],
    )?;
    for want in [
        Attribute::AlwaysSensitive(true),
        Attribute::NeverExtractable(true),
    ] {
        anyhow::ensure!(attrs.contains(&want), "reports {attrs:?}");
    }
    Ok(())
}

fn gcm(s: &Session, key: ObjectHandle, encrypt: bool, data: &[u8]) -> Result<Vec<u8>> {
    let mut iv = [3u8; 12];
    let params = GcmParams::new(&mut iv, AAD, 128.into())?;
    let m = Mechanism::AesGcm(params);
    Ok(if encrypt {
        s.encrypt(&m, key, data)?
    } else {
        s.decrypt(&m, key, data)?
    })
}

fn oaep(s: &Session, label: &[u8]) -> Result<()> {
    let (public, private) = rsa_pair(s)?;
    let params = PkcsOaepParams::new(
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
        PkcsOaepSource::data_specified(label),
    );
    let blob = s.encrypt(&Mechanism::RsaPkcsOaep(params), public, &[7u8; 32])?;
    let plain = s.decrypt(&Mechanism::RsaPkcsOaep(params), private, &blob)?;
    anyhow::ensure!(plain == [7u8; 32], "decrypted to something else");
    Ok(())
}
