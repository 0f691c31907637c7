//! What ArcLock asks of a token, job by job, checked against what the token
//! says it offers before the first sign-in needs it.
//!
//! Tokens differ exactly where ArcLock depends on them (a TPM through
//! tpm2-pkcs11 makes no AES keys; opencryptoki's soft token signs only raw
//! `CKM_RSA_PKCS`): a token that lacks a mechanism should be named at start
//! and by `arclockd --check-config`, not discovered by a user's failed login.
//! The list (`C_GetMechanismList`, `C_GetMechanismInfo`) needs no PIN. A
//! token may still refuse an operation it lists (parameters, key attributes):
//! `make hsm-matrix` measures what each token really does.

use std::path::Path;

use cryptoki::mechanism::{MechanismInfo, MechanismType};

use crate::context::module;
use crate::error::{Error, from_ck};
use crate::pool::find_slot;
use crate::signer::Signing;

/// One job ArcLock gives the token, and the mechanism it uses for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// What ArcLock does with it, for the operator.
    pub job: &'static str,
    pub mechanism: MechanismType,
    /// What ArcLock falls back to when the token lacks `mechanism`.
    pub fallback: Option<MechanismType>,
    what: Use,
    /// Smallest key size the token must accept for it (0: any).
    min_key: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Generate,
    GenerateKeyPair,
    EncryptDecrypt,
    Sign,
}

impl Use {
    /// What a fallback mechanism is used for.
    fn of_fallback(mechanism: MechanismType) -> Use {
        match mechanism {
            MechanismType::RSA_PKCS_KEY_PAIR_GEN => Use::GenerateKeyPair,
            MechanismType::RSA_PKCS_OAEP => Use::EncryptDecrypt,
            _ => Use::Sign,
        }
    }

    fn offered(self, info: &MechanismInfo) -> bool {
        match self {
            Use::Generate => info.generate(),
            Use::GenerateKeyPair => info.generate_key_pair(),
            Use::EncryptDecrypt => info.encrypt() && info.decrypt(),
            Use::Sign => info.sign(),
        }
    }
}

/// Everything ArcLock needs of a token today, signing as `signing` says.
pub fn needs(signing: Signing) -> Vec<Need> {
    let need = |job, mechanism, what, min_key| Need {
        job,
        mechanism,
        fallback: None,
        what,
        min_key,
    };
    let mut out = vec![
        // Without AES-GCM a KEK is an RSA key pair, blobs RSA-OAEP with an
        // HMAC tag (`kek`, `AKW3`).
        Need {
            fallback: Some(MechanismType::RSA_PKCS_KEY_PAIR_GEN),
            ..need(
                "KEK generation (AES-256)",
                MechanismType::AES_KEY_GEN,
                Use::Generate,
                32,
            )
        },
        Need {
            fallback: Some(MechanismType::RSA_PKCS_OAEP),
            ..need(
                "key wrapping (AES-GCM with AAD)",
                MechanismType::AES_GCM,
                Use::EncryptDecrypt,
                32,
            )
        },
        // Without HMAC keys the pseudonym key is an RSA pair and the keyed
        // function a hashed deterministic RS256 signature (`pseudonym`).
        Need {
            fallback: Some(MechanismType::RSA_PKCS_KEY_PAIR_GEN),
            ..need(
                "pseudonym and session MAC key generation",
                MechanismType::GENERIC_SECRET_KEY_GEN,
                Use::Generate,
                0,
            )
        },
        Need {
            fallback: Some(MechanismType::RSA_PKCS),
            ..need(
                "pseudonyms and session MACs (HMAC-SHA256)",
                MechanismType::SHA256_HMAC,
                Use::Sign,
                0,
            )
        },
    ];
    match signing {
        Signing::Rs256 { bits } => {
            let bits = bits as usize;
            out.extend([
                need(
                    "signing key generation (RSA)",
                    MechanismType::RSA_PKCS_KEY_PAIR_GEN,
                    Use::GenerateKeyPair,
                    bits,
                ),
                Need {
                    // Raw PKCS#1 v1.5 over a DigestInfo made here: the same bytes.
                    fallback: Some(MechanismType::RSA_PKCS),
                    ..need(
                        "token and audit signatures (RS256)",
                        MechanismType::SHA256_RSA_PKCS,
                        Use::Sign,
                        bits,
                    )
                },
            ]);
        }
        Signing::Es256 => out.extend([
            need(
                "signing key generation (P-256)",
                MechanismType::ECC_KEY_PAIR_GEN,
                Use::GenerateKeyPair,
                256,
            ),
            need(
                "token and audit signatures (ES256)",
                MechanismType::ECDSA,
                Use::Sign,
                256,
            ),
        ]),
    }
    out
}

/// A job the token cannot do, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lack {
    pub need: Need,
    pub why: String,
}

impl std::fmt::Display for Lack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} {}", self.need.job, self.need.mechanism, self.why)
    }
}

/// What the token labelled `label` in `module` lacks of [`needs`]; empty
/// when it offers everything. Errors only when the token cannot be asked.
pub fn lacks(
    module_path: &Path,
    label: &str,
    slot: Option<u64>,
    signing: Signing,
) -> Result<Vec<Lack>, Error> {
    let m = module(module_path)?;
    // Like every operation: a pool re-initialising the module (a token
    // removed) must not finalise it under these calls.
    let _gate = m
        .gate
        .read()
        .map_err(|_| Error::HsmUnavailable("PKCS#11 gate poisoned".into()))?;
    let slot = find_slot(&m.ctx, label, slot)?;
    let offered = m.ctx.get_mechanism_list(slot).map_err(from_ck)?;
    let mut out = Vec::new();
    for need in needs(signing) {
        let why = |mechanism: MechanismType| -> Result<Option<String>, Error> {
            if !offered.contains(&mechanism) {
                return Ok(Some("is not offered".to_string()));
            }
            let info = m.ctx.get_mechanism_info(slot, mechanism).map_err(from_ck)?;
            // A fallback is judged for its own use (an RSA key pair for a
            // missing secret key) and the job's key size.
            let judged = Need {
                mechanism,
                what: if mechanism == need.mechanism {
                    need.what
                } else {
                    Use::of_fallback(mechanism)
                },
                ..need
            };
            Ok(judge(&judged, &info))
        };
        let mut lack = why(need.mechanism)?;
        if lack.is_some()
            && let Some(fallback) = need.fallback
            && why(fallback)?.is_none()
        {
            lack = None;
        }
        if let Some(why) = lack {
            out.push(Lack { need, why });
        }
    }
    Ok(out)
}

/// Why `info` does not serve `need`, if it does not. Key sizes are in bytes
/// for AES and bits for RSA (PKCS#11 3.0, 2.6); a token reporting AES sizes in
/// bits passes too.
fn judge(need: &Need, info: &MechanismInfo) -> Option<String> {
    if !need.what.offered(info) {
        return Some(format!("is offered, but not for {:?}", need.what));
    }
    let max = info.max_key_size();
    let aes =
        need.mechanism == MechanismType::AES_KEY_GEN || need.mechanism == MechanismType::AES_GCM;
    let enough = need.min_key == 0 || max >= need.min_key || (aes && max >= need.min_key * 8);
    (!enough).then(|| format!("allows keys up to {max}, not {}", need.min_key))
}
