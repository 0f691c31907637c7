//! Who a request is about: user ids, e-mail addresses and display names, each
//! parsed once at the edge so that the rest of the daemon cannot hold an invalid one.

use std::fmt;

/// A user's stable id: 128 random bits, hex. Never derived from the e-mail, so
/// logs and tokens that carry it reveal nothing about the person.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// A fresh random id.
    pub fn generate() -> Self {
        UserId(hex::encode(rand::random::<[u8; 16]>()))
    }

    /// Accepts only the shape `generate` produces (32 lowercase hex digits).
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| UserId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A normalised e-mail address (trimmed, lower-cased), the unique login name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

/// Why an e-mail or name was refused (shown to the client as a validation error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: &'static str,
}

impl Email {
    /// Lower-cases the whole address (as the mobile app's backend did) and checks
    /// a conservative shape: one `@`, a dotted domain, no spaces or controls,
    /// at most 254 characters.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let bad = |reason| Invalid {
            field: "email",
            reason,
        };
        let e = raw.trim().to_lowercase();
        if e.is_empty() || e.len() > 254 {
            return Err(bad("must be 1 to 254 characters"));
        }
        let (local, domain) = e.split_once('@').ok_or(bad("must contain @"))?;
        let ok_char = |c: char| !c.is_whitespace() && !c.is_control() && c != '@';
        if local.is_empty()
            || local.len() > 64
            || domain.len() < 3
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
            || !local
                .chars()
                .all(|c| ok_char(c) && !"<>()[]\\,;:\"".contains(c))
            || !domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
        {
            return Err(bad("is not a valid address"));
        }
        Ok(Email(e))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address's UTS #39 skeleton (lower-cased): two addresses with the
    /// same skeleton look alike (`аda@` with a Cyrillic `а` and `ada@`,
    /// `rn` and `m`), so the store keeps at most one account per skeleton and
    /// nobody can register a look-alike of someone else's address.
    pub fn skeleton(&self) -> String {
        unicode_security::confusable_detection::skeleton(&self.0)
            .flat_map(char::to_lowercase)
            .collect()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A display name: trimmed, markup removed (`<`, `>` and what they enclose),
/// control characters dropped, 1 to 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let mut out = String::with_capacity(raw.len());
        let mut in_tag = false;
        for c in raw.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if in_tag || c.is_control() => {}
                c => out.push(c),
            }
        }
        let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
        let n = collapsed.chars().count();
        if n == 0 || n > 100 {
            return Err(Invalid {
                field: "name",
                reason: "must be 1 to 100 characters of text",
            });
        }
        Ok(Name(collapsed))
    }

    /// A name read back from the store, trusted as already parsed.
    pub(crate) fn stored(s: String) -> Self {
        Name(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Email {
    /// An address read back from the store, trusted as already normalised.
    pub(crate) fn stored(s: String) -> Self {
        Email(s)
    }
}

impl UserId {
    /// An id read back from the store.
    pub(crate) fn stored(s: String) -> Self {
        UserId(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alike_addresses_share_a_skeleton() {
        let skeleton = |s: &str| Email::parse(s).unwrap().skeleton();
        let ada = skeleton("ada@example.org");
        assert_eq!(skeleton("\u{0430}da@example.org"), ada, "Cyrillic a");
        assert_eq!(skeleton("ADA@EXAMPLE.ORG"), ada);
        assert_eq!(skeleton("ada@examp\u{04cf}e.org"), ada, "Cyrillic palochka");
        assert_eq!(skeleton("jim@example.org"), skeleton("jirn@example.org"));
        assert_ne!(skeleton("bob@example.org"), ada);
    }

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.ORG ").unwrap().as_str(),
            "ada@example.org"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@x.org",
            "a b@x.org",
            "ada@x",
            "ada@x..org",
            "a<b>@x.org",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_lose_markup_and_controls() {
        assert_eq!(
            Name::parse(" Ada <b>Love</b>lace\u{7} ").unwrap().as_str(),
            "Ada Lovelace"
        );
        assert_eq!(
            Name::parse("<script>x</script>Bob").unwrap().as_str(),
            "xBob"
        );
        assert!(Name::parse("<b></b>").is_err());
        assert!(Name::parse(&"x".repeat(101)).is_err());
    }

    #[test]
    fn user_ids_are_random_hex() {
        let a = UserId::generate();
        assert_ne!(a, UserId::generate());
        assert_eq!(UserId::parse(a.as_str()), Some(a));
        assert!(UserId::parse("../etc").is_none());
    }
}
