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

use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use crate::error::{Error, from_ck};

/// What a key must be, besides kept in the token.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Expect {
    /// A secret key of this type and length in bytes (KEK, pseudonym key).
    Secret(KeyType, u64),
    /// An RSA private key of at least this many bits (JWT signing).
    RsaPrivate(usize),
}

impl Expect {
    /// The object class the key has.
    pub(crate) fn class(self) -> ObjectClass {
        match self {
            Expect::Secret(..) => ObjectClass::SECRET_KEY,
            Expect::RsaPrivate(_) => ObjectClass::PRIVATE_KEY,
        }
    }
}

/// Why an object under one of our labels is not used, or `None` if it may be.
pub(crate) fn distrust(
    session: &Session,
    handle: ObjectHandle,
    expect: Expect,
) -> Result<Option<String>, Error> {
    let mut wanted = vec![
        AttributeType::Class,
        AttributeType::KeyType,
        AttributeType::Private,
        AttributeType::Sensitive,
        AttributeType::AlwaysSensitive,
        AttributeType::Extractable,
        AttributeType::NeverExtractable,
    ];
    wanted.push(match expect {
        Expect::Secret(..) => AttributeType::ValueLen,
        Expect::RsaPrivate(_) => AttributeType::Modulus,
    });
    let attrs = session.get_attributes(handle, &wanted).map_err(from_ck)?;
    let flag = |want: AttributeType| {
        attrs.iter().any(|a| {
            a.attribute_type() == want
                && matches!(
                    a,
                    Attribute::Private(true)
                        | Attribute::Sensitive(true)
                        | Attribute::AlwaysSensitive(true)
                        | Attribute::NeverExtractable(true)
                )
        })
    };
    for (want, what) in [
        (
            AttributeType::Private,
            "not private (readable without the PIN)",
        ),
        (AttributeType::Sensitive, "not sensitive"),
        (
            AttributeType::AlwaysSensitive,
            "not always sensitive (imported, or once readable)",
        ),
        (AttributeType::NeverExtractable, "once extractable"),
    ] {
        if !flag(want) {
            return Ok(Some(what.into()));
        }
    }
    if attrs
        .iter()
        .any(|a| matches!(a, Attribute::Extractable(true)))
    {
        return Ok(Some("extractable".into()));
    }
    let class = attrs.iter().find_map(|a| match a {
        Attribute::Class(c) => Some(*c),
        _ => None,
    });
    if class != Some(expect.class()) {
        return Ok(Some(format!("class {class:?}, not {:?}", expect.class())));
    }
    let key_type = attrs.iter().find_map(|a| match a {
        Attribute::KeyType(k) => Some(*k),
        _ => None,
    });
    match expect {
        Expect::Secret(want, len) => {
            if key_type != Some(want) {
                return Ok(Some(format!("key type {key_type:?}, not {want:?}")));
            }
            let have = attrs.iter().find_map(|a| match a {
                Attribute::ValueLen(v) => Some(**v),
                _ => None,
            });
            if have != Some(len) {
                return Ok(Some(format!("{have:?} bytes, not {len}")));
            }
        }
        Expect::RsaPrivate(min_bits) => {
            if key_type != Some(KeyType::RSA) {
                return Ok(Some(format!("key type {key_type:?}, not RSA")));
            }
            let bits = attrs
                .iter()
                .find_map(|a| match a {
                    Attribute::Modulus(n) => Some(significant_bits(n)),
                    _ => None,
                })
                .unwrap_or(0);
            if bits < min_bits {
                return Ok(Some(format!("{bits}-bit modulus, under {min_bits}")));
            }
        }
    }
    Ok(None)
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
