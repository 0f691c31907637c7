//! Enrolment invitations (`[registration] mode = "invite"`): an operator
//! makes a code (`arclock-console invite`, over the admin socket), hands it
//! to one person, and `register` takes it. A code is 128 random bits, kept
//! only as its SHA-256, optionally bound to one e-mail address, single use
//! (taken atomically from the store, so also across daemons) and expiring.

use base64::Engine;
use sha2::{Digest, Sha256};

use super::Refused;
use arclock_proto::Invite;

use crate::App;
use crate::identity::Email;
use crate::store::{Millis, StoredInvite};

/// Longest code accepted (ours are 22 characters).
const MAX_CODE: usize = 64;

fn code_hash(code: &str) -> [u8; 32] {
    Sha256::digest(code.trim().as_bytes()).into()
}

/// Makes and stores an invitation for `email` (or anyone) lasting `ttl_secs`
/// (`[registration] invite_ttl_secs` when `None`).
pub async fn issue(
    app: &App,
    email: Option<Email>,
    ttl_secs: Option<u64>,
) -> Result<Invite, Refused> {
    let random: [u8; 16] = rand::random();
    let code = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
    let now = app.clock.now();
    let ttl = ttl_secs.unwrap_or(app.config.registration.invite_ttl_secs);
    let stored = StoredInvite {
        code_hash: code_hash(&code),
        email: email.map(|e| e.as_str().to_string()),
        created_at: now,
        expires_at: now + ttl as Millis * 1000,
    };
    app.store.put_invite(&stored).await?;
    Ok(Invite {
        code,
        email: stored.email,
        expires_at: crate::http::response::timestamp(stored.expires_at),
    })
}

/// An invitation taken for one registration: spent if the account is made,
/// given back if the registration fails for another reason.
#[derive(Debug)]
pub struct Redeemed(StoredInvite);

/// Takes the invitation `code` for `email`: 403 `INVITE_INVALID` (one answer)
/// when there is none, or it expired, or it is for another address (then it
/// stays usable by its owner).
pub async fn redeem(
    app: &App,
    code: Option<&str>,
    email: &Email,
    at: Millis,
) -> Result<Redeemed, Refused> {
    let code = code
        .filter(|c| !c.trim().is_empty() && c.len() <= MAX_CODE)
        .ok_or(Refused::InviteInvalid)?;
    let invite = app
        .store
        .take_invite(&code_hash(code))
        .await?
        .ok_or(Refused::InviteInvalid)?;
    if invite.expires_at <= at {
        return Err(Refused::InviteInvalid);
    }
    let taken = Redeemed(invite);
    if taken
        .0
        .email
        .as_deref()
        .is_some_and(|e| e != email.as_str())
    {
        taken.give_back(app).await;
        return Err(Refused::InviteInvalid);
    }
    Ok(taken)
}

impl Redeemed {
    /// Puts the invitation back (the registration did not happen).
    pub async fn give_back(self, app: &App) {
        if let Err(e) = app.store.put_invite(&self.0).await {
            tracing::warn!(error = %e, "could not give an invitation back");
        }
    }
}
