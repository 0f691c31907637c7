//! Access tokens: JWTs signed inside the HSM (RS256, or ES256 when
//! configured), verified against the token's own public keys, and refresh
//! tokens stored only as HMACs under a key inside the HSM ([`RefreshToken`]).
//!
//! Verification accepts a `kid` from our key set and exactly the algorithm
//! that key was made for, and checks issuer, audience, `exp` and `nbf` with no
//! leeway, so the classic attacks (`alg: none`, HS256 keyed with the public
//! key, an RS256 header on an ES256 key, a foreign or missing `kid`, expired
//! or other-audience tokens) all fail the same way.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arclock_hsm::{Alg, Hsm, Jwk, Jwks, PublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::identity::UserId;
use crate::store::Millis;
use crate::timing::{self, Step};

pub(crate) mod jws;

/// Why a token was refused. The client always sees one generic 401.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Bad signature, algorithm, key, issuer, audience or time.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The HSM could not sign or list its keys (503).
    #[error(transparent)]
    Hsm(#[from] arclock_hsm::Error),
}

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    /// The refresh family (session) the token was issued to: logout or a
    /// detected refresh-token theft revokes it, and its access tokens with it.
    pub sid: String,
}

/// Issues and checks access tokens for one issuer/audience pair.
#[derive(Clone)]
pub struct Tokens {
    hsm: Hsm,
    issuer: String,
    audience: String,
    access_ttl: Duration,
    keys: Arc<RwLock<Option<(Instant, Jwks)>>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// How long the published key set is trusted before it is read again; an
/// unknown `kid` forces a re-read at most this often.
const KEYS_TTL: Duration = Duration::from_secs(60);

impl Tokens {
    /// How long access tokens live (the `expiresIn` the app is told).
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    pub fn new(hsm: Hsm, issuer: &str, audience: &str, access_ttl: Duration) -> Self {
        Tokens {
            hsm,
            issuer: issuer.into(),
            audience: audience.into(),
            access_ttl,
            keys: Arc::new(RwLock::new(None)),
        }
    }

    /// A signed access token for `user` in session `sid`, valid from `now` for
    /// the access TTL.
    pub async fn issue(&self, user: &UserId, sid: &str, now: Millis) -> Result<String, TokenError> {
        let secs = now.div_euclid(1000);
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.to_string(),
            iat: secs,
            nbf: secs,
            exp: secs + self.access_ttl.as_secs() as i64,
            jti: hex::encode(rand::random::<[u8; 16]>()),
            sid: sid.to_string(),
        };
        let payload = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims).map_err(|e| TokenError::Invalid(e.to_string()))?);
        // The header names the key before signing; if a rotation slips in
        // between, the HSM reports the key it used and we sign again.
        for _ in 0..3 {
            let key = self.hsm.signing_key().await?;
            let header = URL_SAFE_NO_PAD.encode(
                serde_json::json!({"alg": key.alg.as_str(), "typ": "JWT", "kid": key.kid})
                    .to_string(),
            );
            let input = format!("{header}.{payload}");
            let sig = timing::timed(Step::Sign, self.hsm.sign(input.as_bytes())).await?;
            if sig.key == key {
                return Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.bytes)));
            }
        }
        Err(TokenError::Invalid("signing key kept changing".into()))
    }

    /// The public keys (for `/.well-known/jwks.json`), cached for a minute.
    pub async fn jwks(&self) -> Result<Jwks, TokenError> {
        if let Ok(g) = self.keys.read()
            && let Some((at, jwks)) = g.as_ref()
            && at.elapsed() < KEYS_TTL
        {
            return Ok(jwks.clone());
        }
        self.reload().await
    }

    async fn reload(&self) -> Result<Jwks, TokenError> {
        let jwks = self.hsm.jwks().await?;
        if let Ok(mut g) = self.keys.write() {
            *g = Some((Instant::now(), jwks.clone()));
        }
        Ok(jwks)
    }

    /// Checks signature (our `kid`s only, each with its own algorithm), issuer, audience and
    /// times against `now`; returns the claims.
    pub async fn verify(&self, token: &str, now: Millis) -> Result<Claims, TokenError> {
        // The header only decides which keys `check` gets: none for a token
        // that cannot pass (so the HSM is not asked), a refreshed set for an
        // unknown kid. `check` parses and judges the whole token.
        let Some(kid) = jsonwebtoken::decode_header(token)
            .ok()
            .filter(|h| matches!(h.alg, Algorithm::RS256 | Algorithm::ES256))
            .and_then(|h| h.kid)
        else {
            return check(token, &Jwks { keys: Vec::new() }, "", "", now);
        };
        let mut jwks = self.jwks().await?;
        if !jwks.keys.iter().any(|k| k.kid == kid) {
            let fresh = self
                .keys
                .read()
                .ok()
                .and_then(|g| {
                    g.as_ref()
                        .map(|(at, _)| at.elapsed() >= Duration::from_secs(5))
                })
                .unwrap_or(true);
            if fresh {
                jwks = self.reload().await?;
            }
        }
        check(token, &jwks, &self.issuer, &self.audience, now)
    }
}

/// The pure half of [`Tokens::verify`]: `token` against a key set, issuer,
/// audience and time, with no key fetching (also the JWT fuzz target's entry).
pub fn check(
    token: &str,
    jwks: &Jwks,
    issuer: &str,
    audience: &str,
    now: Millis,
) -> Result<Claims, TokenError> {
    jws::install();
    let invalid = |e: &dyn std::fmt::Display| TokenError::Invalid(e.to_string());
    let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&e))?;
    let kid = header
        .kid
        .ok_or_else(|| TokenError::Invalid("no kid".into()))?;
    let jwk = jwks
        .keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| TokenError::Invalid("unknown kid".into()))?;
    let (alg, key) = verifying_key(jwk).map_err(|e| invalid(&e))?;
    if header.alg != alg {
        return Err(TokenError::Invalid(format!(
            "algorithm {:?} for a {} key",
            header.alg, jwk.alg
        )));
    }
    let mut v = Validation::new(alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    // Times are checked below against the injected clock, not the system's.
    v.validate_nbf = false;
    v.validate_exp = false;
    v.leeway = 0;
    let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| invalid(&e))?;
    let c = data.claims;
    let secs = now.div_euclid(1000);
    if secs >= c.exp {
        return Err(TokenError::Invalid("expired".into()));
    }
    if secs < c.nbf {
        return Err(TokenError::Invalid("not yet valid".into()));
    }
    Ok(c)
}

/// The one algorithm `jwk` verifies, and the key to verify it with.
pub fn verifying_key(jwk: &Jwk) -> jsonwebtoken::errors::Result<(Algorithm, DecodingKey)> {
    match (&jwk.key, jwk.alg) {
        (PublicKey::Rsa { n, e }, Alg::Rs256) => {
            Ok((Algorithm::RS256, DecodingKey::from_rsa_components(n, e)?))
        }
        (PublicKey::Ec { x, y, .. }, Alg::Es256) => {
            Ok((Algorithm::ES256, DecodingKey::from_ec_components(x, y)?))
        }
        _ => Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into()),
    }
}

/// A refresh token as the client holds it: `<family id>.<user id>.<secret>`
/// (256 random bits, base64url). The store keeps only an HMAC of it under a
/// key inside the HSM ([`RefreshToken::mac_input`]), binding the secret to
/// the family and the user it names: someone who can write to the store can
/// neither insert a family for a token they know (the stored form needs the
/// HSM) nor move a family to another user (the row's user is checked
/// against the token's, which the MAC covers).
pub struct RefreshToken {
    family_id: String,
    user: UserId,
    secret: zeroize::Zeroizing<String>,
}

impl RefreshToken {
    /// A fresh token for `user` in family `family_id`.
    pub fn generate(family_id: &str, user: &UserId) -> Self {
        RefreshToken {
            family_id: family_id.to_string(),
            user: user.clone(),
            secret: zeroize::Zeroizing::new(URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())),
        }
    }

    /// The token's three parts, or `None` for any other shape (including the
    /// bare secrets issued before tokens were bound: those sessions end).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.');
        let (family, user, secret) = (parts.next()?, parts.next()?, parts.next()?);
        let secret_ok = secret.len() == 43
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (parts.next().is_none() && secret_ok && UserId::parse(family).is_some()).then(|| {
            Some(RefreshToken {
                family_id: family.to_string(),
                user: UserId::parse(user)?,
                secret: zeroize::Zeroizing::new(secret.to_string()),
            })
        })?
    }

    /// The wire form handed to the client.
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.family_id, self.user, self.secret.as_str())
    }

    /// The family the token claims.
    pub fn family_id(&self) -> &str {
        &self.family_id
    }

    /// The user the token claims.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// What the HSM's HMAC runs over: a context no other use of the key
    /// shares, then each part length-prefixed.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut m = b"arclock/refresh-token/v1\0".to_vec();
        for part in [
            self.family_id.as_bytes(),
            self.user.as_str().as_bytes(),
            self.secret.as_bytes(),
        ] {
            m.extend_from_slice(&(part.len() as u32).to_be_bytes());
            m.extend_from_slice(part);
        }
        m
    }
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshToken")
            .field("family_id", &self.family_id)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}
