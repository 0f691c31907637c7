//! Active liveness challenges: drawn at random, kept in the store (so every
//! daemon on one database knows them), bound to the e-mail and the client
//! address that asked, answered once, within `challenge_ttl_secs`.
//!
//! Issuing never looks the e-mail up, so it answers the same, in the same
//! time, for known and unknown accounts.

use arclock_face::liveness::{Challenge, FrameView, Refusal, Step, judge};
use arclock_face::{Embedding, liveness};
use arclock_secmem::LockedBytes;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{Refused, email_subject, face_refusal};
use crate::App;
use crate::api::intake::ClientInfo;
use crate::identity::Email;
use crate::store::{Millis, StoredChallenge, Subject};

/// A challenge as the client receives it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Issued {
    pub challenge_id: String,
    pub steps: Vec<Step>,
    pub expires_in: u64,
}

fn id_hash(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The stored form of the e-mail a challenge is bound to (its lockout
/// subject's hash: the store never sees the address).
async fn bound_to(app: &App, email: &Email) -> Result<String, Refused> {
    match email_subject(app, email).await? {
        Subject::Account(hash) => Ok(hash.to_string()),
        Subject::Ip(ip) => Ok(ip),
    }
}

/// Draws a challenge for `email` from `client` and stores it.
pub async fn issue(app: &App, email: &Email, client: &ClientInfo) -> Result<Issued, Refused> {
    // rand's thread RNG: ChaCha seeded from the OS, as for session ids.
    let random: [u8; 24] = rand::random();
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&random[..16]);
    let challenge = Challenge::draw(&random[16..]);
    let ttl = app.config.liveness.challenge_ttl_secs;
    let stored = StoredChallenge {
        id_hash: id_hash(&id),
        subject: bound_to(app, email).await?,
        client_ip: client.ip.clone(),
        steps: challenge.steps().to_vec(),
        expires_at: app.clock.now() + ttl as Millis * 1000,
    };
    app.store.put_challenge(&stored).await?;
    Ok(Issued {
        challenge_id: id,
        steps: stored.steps,
        expires_in: ttl,
    })
}

/// Takes the challenge `id` out of the store (it cannot be answered twice,
/// whatever happens next) and checks it: drawn for this e-mail, from this
/// address, not expired, and answered with one frame per step.
pub async fn take(
    app: &App,
    id: &str,
    email: &Email,
    client: &ClientInfo,
    at: Millis,
    frames: usize,
) -> Result<Vec<Step>, Refused> {
    let stored = app.store.take_challenge(&id_hash(id)).await?;
    let refuse = |why| {
        app.metrics.liveness("challenge_invalid");
        Err(Refused::Challenge(why))
    };
    let Some(c) = stored else {
        return refuse("unknown or already used challenge");
    };
    if c.expires_at <= at {
        return refuse("expired challenge");
    }
    if c.subject != bound_to(app, email).await? || c.client_ip != client.ip {
        return refuse("the challenge was issued for another e-mail or client");
    }
    if frames != c.steps.len() {
        return refuse("one frame per challenge step is required, in order");
    }
    Ok(c.steps)
}

/// What the frames of an answer showed.
pub enum Judged {
    /// A live head did the steps: the fused embedding to compare.
    Live(Embedding),
    /// An attack verdict (`pad`, `flat`, `identity_switch`): the fused
    /// embedding is still compared, so the refusal costs what a wrong face
    /// costs, then counted as a failure with this reason.
    Attack(Embedding, &'static str),
}

/// Embeds every frame (at once, on the face workers), then judges them
/// against `steps`: pose problems are the client's (422 with a hint), attack
/// verdicts are [`Judged::Attack`]. `pad`: whether PAD scores count.
pub async fn judge_frames(
    app: &App,
    steps: &[Step],
    frames: Vec<LockedBytes>,
    pad: bool,
) -> Result<Judged, Refused> {
    let mut faces = Vec::with_capacity(frames.len());
    for (i, r) in app.face.embed_all(frames).await.into_iter().enumerate() {
        let face = r.map_err(|e| face_refusal(e, Some(i)))?;
        // Summed over the frames (they run in parallel on the workers).
        crate::timing::record_face(&face.timings);
        faces.push(face);
    }
    let views: Vec<FrameView<'_>> = faces
        .iter()
        .map(|f| FrameView {
            landmarks: &f.detection.landmarks,
            yaw: f.measures.yaw,
            pad: if pad { f.pad } else { None },
            embedding: &f.embedding,
        })
        .collect();
    let thresholds: &liveness::Thresholds = &app.config.liveness.thresholds;
    let verdict = judge(steps, &views, thresholds);
    let embeddings: Vec<&Embedding> = faces.iter().map(|f| &f.embedding).collect();
    let fused = Embedding::mean_of(&embeddings)
        .map_err(|e| Refused::unavailable("the face pipeline", &e))?;
    match verdict {
        Ok(evidence) => {
            tracing::debug!(
                parallax = evidence.parallax,
                consistency = evidence.consistency,
                "liveness challenge passed"
            );
            app.metrics.liveness("live");
            Ok(Judged::Live(fused))
        }
        Err(Refusal::Pose { frame, hint }) => {
            app.metrics.liveness("pose");
            Err(Refused::Pose { frame, hint })
        }
        Err(attack) => {
            let reason = attack.reason();
            tracing::info!(reason, "liveness challenge refused as an attack");
            app.metrics.liveness(reason);
            Ok(Judged::Attack(fused, reason))
        }
    }
}
