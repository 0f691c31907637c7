//! Which objects on the token may act as ArcLock's keys.
//!
//! A label is only a name: anyone with a read-write session can create an
//! object and call it `kek-v99` or `jwt-v99`, and a public object needs no
//! PIN at all. An AES key imported with a value its importer knows would
//! become the newest KEK; a planted RSA public key would be published in the
//! JWKS and trusted to verify tokens its planter signs. So a key is used only
//! if the token says it was born sensitive and never extractable
//! (`CKA_ALWAYS_SENSITIVE`, `CKA_NEVER_EXTRACTABLE`: generated inside, never
//! imported, never readable), is private to logged-in sessions, and is of the
//! expected type and size. Anything else under our labels is ignored and
//! named in the log.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::error::{Error, from_ck};

/// What every private or secret key ArcLock makes carries: persistent,
/// private, sensitive, and neither extractable nor copyable, so its value
/// never leaves the token. [`distrust`] checks what the token reports of
/// these (and that they always held) before a key is used.
pub(crate) fn kept_in_token() -> [Attribute; 5] {
    [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Copyable(false),
    ]
}

/// `C_GenerateKey` with `template`, and once more with [`relaxed`] if the
/// token refuses it as written.
pub(crate) fn generate_key(
    session: &Session,
    mechanism: &Mechanism,
    template: &[Attribute],
) -> Result<ObjectHandle, Error> {
    let _catalogue = crate::context::catalogue();
    match session.generate_key(mechanism, template) {
        Err(e) if refused_template(&e) => {
            tracing::warn!(error = %e, "the token refused the key template: made with the relaxed one");
            session
                .generate_key(mechanism, &relaxed(template))
                .map_err(from_ck)
        }
        r => r.map_err(from_ck),
    }
}

/// A key pair made in the token by `mechanism` under `label` (label and id
/// on both halves, both halves token objects), the private half
/// [`kept_in_token`]; `public` and `private` add each half's parameters,
/// visibility and usages.
pub(crate) fn generate_named_pair(
    session: &Session,
    mechanism: &Mechanism,
    label: &str,
    public: &[Attribute],
    private: &[Attribute],
) -> Result<(ObjectHandle, ObjectHandle), Error> {
    let named = [
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(label.as_bytes().to_vec()),
    ];
    let public = [&[Attribute::Token(true)][..], public, &named].concat();
    let private = [&kept_in_token()[..], private, &named].concat();
    generate_key_pair(session, mechanism, &public, &private)
}

/// [`generate_named_pair`] for an RSA pair of `bits`, exponent 65537.
pub(crate) fn generate_rsa_pair(
    session: &Session,
    label: &str,
    bits: u64,
    public: &[Attribute],
    private: &[Attribute],
) -> Result<(ObjectHandle, ObjectHandle), Error> {
    let public = [
        &[
            Attribute::ModulusBits(bits.into()),
            Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
        ][..],
        public,
    ]
    .concat();
    generate_named_pair(
        session,
        &Mechanism::RsaPkcsKeyPairGen,
        label,
        &public,
        private,
    )
}

/// The modulus of an RSA key object (public or private), if it reports one.
pub(crate) fn modulus(session: &Session, key: ObjectHandle) -> Result<Option<Vec<u8>>, Error> {
    Ok(session
        .get_attributes(key, &[AttributeType::Modulus])
        .map_err(from_ck)?
        .into_iter()
        .find_map(|a| match a {
            Attribute::Modulus(m) => Some(m),
            _ => None,
        }))
}

/// [`generate_key`] for a key pair.
fn generate_key_pair(
    session: &Session,
    mechanism: &Mechanism,
    public: &[Attribute],
    private: &[Attribute],
) -> Result<(ObjectHandle, ObjectHandle), Error> {
    let _catalogue = crate::context::catalogue();
    match session.generate_key_pair(mechanism, public, private) {
        Err(e) if refused_template(&e) => {
            tracing::warn!(error = %e, "the token refused the key pair template: made with the relaxed one");
            session
                .generate_key_pair(mechanism, &relaxed(public), &relaxed(private))
                .map_err(from_ck)
        }
        r => r.map_err(from_ck),
    }
}

/// How tokens refuse a template they do not take as written: opencryptoki
/// 3.8 does not know `CKA_COPYABLE` (`CKR_ATTRIBUTE_TYPE_INVALID`);
/// tpm2-pkcs11 makes RSA keys that can both sign and decrypt and answers a
/// usage set to false with `CKR_GENERAL_ERROR` ("attr mismatch").
fn refused_template(e: &cryptoki::error::Error) -> bool {
    use cryptoki::error::RvError::*;
    matches!(
        e,
        cryptoki::error::Error::Pkcs11(
            AttributeTypeInvalid | AttributeValueInvalid | TemplateInconsistent | GeneralError,
            _
        )
    )
}

/// `template` without `CKA_COPYABLE` and without the usages it forbids. What
/// [`distrust`] checks (private, sensitive, never extractable) stays: a key
/// made this way may be usable for more than its job (a TPM's RSA KEK can
/// also sign), never readable.
fn relaxed(template: &[Attribute]) -> Vec<Attribute> {
    template
        .iter()
        .filter(|a| {
            !matches!(
                a,
                Attribute::Copyable(_)
                    | Attribute::Encrypt(false)
                    | Attribute::Decrypt(false)
                    | Attribute::Sign(false)
                    | Attribute::Verify(false)
                    | Attribute::Wrap(false)
                    | Attribute::Unwrap(false)
                    | Attribute::Derive(false)
            )
        })
        .cloned()
        .collect()
}

/// What a key must be, besides kept in the token.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Expect {
    /// A secret key of this type and length in bytes (KEK, pseudonym key).
    Secret(KeyType, u64),
    /// An RSA private key of at least this many bits (JWT signing).
    RsaPrivate(usize),
    /// An EC private key on the curve whose DER OID `CKA_EC_PARAMS` holds.
    EcPrivate(&'static [u8]),
}

impl Expect {
    /// The object class the key has.
    pub(crate) fn class(self) -> ObjectClass {
        match self {
            Expect::Secret(..) => ObjectClass::SECRET_KEY,
            Expect::RsaPrivate(_) | Expect::EcPrivate(_) => ObjectClass::PRIVATE_KEY,
        }
    }
}

/// Why an object under one of our labels is not used, or `None` if it may be.
pub(crate) fn distrust(
    session: &Session,
    handle: ObjectHandle,
    expect: Expect,
) -> Result<Option<String>, Error> {
    let (key_type, size) = match expect {
        Expect::Secret(key_type, _) => (key_type, AttributeType::ValueLen),
        Expect::RsaPrivate(_) => (KeyType::RSA, AttributeType::Modulus),
        Expect::EcPrivate(_) => (KeyType::EC, AttributeType::EcParams),
    };
    let required = [
        (
            Attribute::Class(expect.class()),
            "not of the expected class",
        ),
        (Attribute::KeyType(key_type), "not of the expected key type"),
        (
            Attribute::Private(true),
            "not private (readable without the PIN)",
        ),
        (Attribute::Sensitive(true), "not sensitive"),
        (
            Attribute::AlwaysSensitive(true),
            "not always sensitive (imported, or once readable)",
        ),
        (Attribute::Extractable(false), "extractable"),
        (Attribute::NeverExtractable(true), "once extractable"),
    ];
    let mut wanted: Vec<AttributeType> = required.iter().map(|(a, _)| a.attribute_type()).collect();
    wanted.push(size);
    let attrs = session.get_attributes(handle, &wanted).map_err(from_ck)?;
    if let Some((_, why)) = required.iter().find(|(a, _)| !attrs.contains(a)) {
        return Ok(Some((*why).into()));
    }
    Ok(
        match (expect, attrs.iter().find(|a| a.attribute_type() == size)) {
            (Expect::Secret(_, len), Some(Attribute::ValueLen(v))) if **v == len => None,
            (Expect::RsaPrivate(min), Some(Attribute::Modulus(n)))
                if significant_bits(n) >= min =>
            {
                None
            }
            (Expect::EcPrivate(curve), Some(Attribute::EcParams(p))) if p == curve => None,
            (Expect::Secret(_, len), have) => Some(format!("{have:?}, not {len} bytes")),
            (Expect::EcPrivate(_), _) => Some("not on the expected curve".into()),
            (Expect::RsaPrivate(min), _) => Some(format!("modulus under {min} bits")),
        },
    )
}

/// The first object labelled `label` that may serve as `expect` says; the
/// others are logged and skipped.
pub(crate) fn find(session: &Session, label: &str, expect: Expect) -> Result<ObjectHandle, Error> {
    let found = session
        .find_objects(&[
            Attribute::Class(expect.class()),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(from_ck)?;
    for handle in found {
        match distrust(session, handle, expect)? {
            None => return Ok(handle),
            Some(why) => refused(label, &why),
        }
    }
    Err(Error::KeyNotFound(label.to_string()))
}

/// Logs an object under one of our labels that is not used: someone with
/// access to the token put it there, or a key was made outside ArcLock.
pub(crate) fn refused(label: &str, why: &str) {
    tracing::error!(
        label,
        reason = why,
        "HSM object ignored: not a key ArcLock made in the token"
    );
}

/// Bits of a big-endian unsigned integer, leading zero bytes ignored.
fn significant_bits(n: &[u8]) -> usize {
    match n.iter().position(|b| *b != 0) {
        Some(i) => (n.len() - i) * 8 - n[i].leading_zeros() as usize,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relaxing drops what tokens refuse, never what keeps a key inside.
    #[test]
    fn a_relaxed_template_still_keeps_the_key_in_the_token() {
        let mut t = kept_in_token().to_vec();
        t.extend([
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Encrypt(false),
            Attribute::Label(b"kek-v1".to_vec()),
        ]);
        let r = relaxed(&t);
        for keep in [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(b"kek-v1".to_vec()),
        ] {
            assert!(r.contains(&keep), "{keep:?} dropped");
        }
        assert_eq!(r.len(), 6, "{r:?}");
    }

    #[test]
    fn bits_ignore_leading_zeros() {
        assert_eq!(significant_bits(&[0, 0, 0x80, 0]), 16);
        assert_eq!(significant_bits(&[0x01]), 1);
        assert_eq!(significant_bits(&[0, 0]), 0);
    }
}
