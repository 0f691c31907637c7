//! Liveness end to end: the real daemon over TLS, real LFW frames, real PAD
//! models. A bona fide answer to a drawn challenge signs in; each attack
//! type, replay, expiry, a wrong order or count and an oversized frame set
//! are refused the way `daemon/README.md` says, and operators see why.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::io::Cursor;

use arclock_console::{Client, LogQuery};
use common::{Daemon, Instance, lfw};
use serde_json::{Value, json};

/// One person's photos, picked by their measured poses
/// (`arclock-face embed`): a template, a frontal face and a turned face
/// whose mirror image turns the other way.
const PERSON: &str = "Amanda_Bynes";
const TEMPLATE: u32 = 3;
const FRONT: u32 = 2;
const TURNED: u32 = 4;
/// `TURNED`'s nose points toward the image's left edge (its mirror: right).
const TURNED_IS_LEFT: bool = false;
/// Someone else, turned (the accomplice of the two-people attack).
const OTHER: (&str, u32) = ("Angela_Merkel", 1);

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn jpeg(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn mirrored(bytes: &[u8]) -> Vec<u8> {
    let img = image::load_from_memory(bytes).unwrap().to_rgb8();
    jpeg(&image::imageops::flip_horizontal(&img))
}

/// The frame a live user would send for each step.
fn bona_fide(step: &str) -> Vec<u8> {
    let turned = lfw(PERSON, TURNED);
    match (step, TURNED_IS_LEFT) {
        ("front", _) => lfw(PERSON, FRONT),
        ("left", true) | ("right", false) => turned,
        _ => mirrored(&turned),
    }
}

async fn challenge(d: &Daemon, email: &str) -> (String, Vec<String>) {
    challenge_lasting(d, email, 60).await
}

/// A challenge, checked: `ttl` seconds, 2-4 steps, no step twice in a row.
async fn challenge_lasting(d: &Daemon, email: &str, ttl: u64) -> (String, Vec<String>) {
    let (s, body) = d
        .post("/api/auth/challenge", &json!({"email": email}))
        .await;
    assert_eq!(s, 200, "{body}");
    let data = &body["data"];
    assert_eq!(data["expiresIn"], ttl);
    let steps: Vec<String> = data["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert!((2..=4).contains(&steps.len()), "{steps:?}");
    assert!(steps.windows(2).all(|w| w[0] != w[1]), "{steps:?}");
    (data["challengeId"].as_str().unwrap().to_string(), steps)
}

async fn answer(d: &Daemon, email: &str, id: &str, frames: &[Vec<u8>]) -> (u16, Value) {
    let frames: Vec<String> = frames.iter().map(|f| b64(f)).collect();
    d.post(
        "/api/auth/login",
        &json!({"email": email, "challengeId": id, "frames": frames}),
    )
    .await
}

const EMAIL: &str = "amanda@example.org";

/// Enrols `PERSON` (the template photo, one photo as the mobile app sends it).
async fn register(d: &Daemon) {
    let (s, body) = d
        .post(
            "/api/auth/register",
            &json!({"name": "Amanda", "email": EMAIL, "imageBase64": b64(&lfw(PERSON, TEMPLATE))}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
}

fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenges_sign_in_live_heads_and_refuse_attacks() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start();
    let admin = Client::new(inst.path("admin.sock"));
    let email = EMAIL;
    register(&d).await;

    // Known and unknown e-mails get the same shape of challenge.
    let (_, unknown) = d
        .post(
            "/api/auth/challenge",
            &json!({"email": "nobody@example.org"}),
        )
        .await;
    assert_eq!(unknown["data"]["expiresIn"], 60);
    let (s, bad) = d.post("/api/auth/challenge", &json!({"email": "x"})).await;
    assert_eq!((s, code(&bad)), (400, "VALIDATION_ERROR"));

    // Bona fide: a frame per step, in order, signs in; the id is then spent.
    let (id, steps) = challenge(&d, email).await;
    let frames: Vec<Vec<u8>> = steps.iter().map(|s| bona_fide(s)).collect();
    let (s, body) = answer(&d, email, &id, &frames).await;
    assert_eq!(s, 200, "steps {steps:?}: {body}");
    assert!(body["data"]["tokens"]["accessToken"].is_string());
    let (s, body) = answer(&d, email, &id, &frames).await;
    assert_eq!((s, code(&body)), (422, "CHALLENGE_INVALID"), "replayed id");

    // The same answer as multipart, with repeated `frames` parts.
    let (id, steps) = challenge(&d, email).await;
    let mut form = reqwest::multipart::Form::new()
        .text("email", email.to_string())
        .text("challengeId", id);
    for s in &steps {
        form = form.part(
            "frames",
            reqwest::multipart::Part::bytes(bona_fide(s)).file_name("frame.jpg"),
        );
    }
    let r = d
        .client
        .post(format!("{}/api/auth/verify-face", d.url))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // Wrong count, wrong e-mail, wrong order: refused, and the id is spent.
    let (id, steps) = challenge(&d, email).await;
    let (s, body) = answer(&d, email, &id, &[bona_fide(&steps[0])]).await;
    assert_eq!((s, code(&body)), (422, "CHALLENGE_INVALID"), "{body}");
    let (id, steps) = challenge(&d, "someone-else@example.org").await;
    let frames: Vec<Vec<u8>> = steps.iter().map(|s| bona_fide(s)).collect();
    let (s, body) = answer(&d, email, &id, &frames).await;
    assert_eq!((s, code(&body)), (422, "CHALLENGE_INVALID"), "{body}");
    let (id, steps) = challenge(&d, email).await;
    let mut frames: Vec<Vec<u8>> = steps.iter().map(|s| bona_fide(s)).collect();
    frames.reverse();
    let (s, body) = answer(&d, email, &id, &frames).await;
    if steps.len() == 2 || steps.first() != steps.last() {
        assert_eq!((s, code(&body)), (422, "LIVENESS_POSE"), "{steps:?} {body}");
        assert!(body["data"]["hint"].is_string(), "{body}");
    }
    // Too many frames, and a frame set over the body limit.
    let five = vec![bona_fide("front"); 5];
    let (s, body) = answer(&d, email, "anything", &five).await;
    assert_eq!((s, code(&body)), (400, "VALIDATION_ERROR"), "{body}");
    let huge = vec![vec![0xFFu8; 4 << 20]; 4];
    let r = d
        .client
        .post(format!("{}/api/auth/login", d.url))
        .json(&json!({"email": email, "challengeId": "x", "frames": huge.iter().map(|f| b64(f)).collect::<Vec<_>>()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // Attacks. Replay: one photo of the user as every frame (a pose the
    // steps cannot all have): refused as a pose problem, no account harmed.
    let (id, steps) = challenge(&d, email).await;
    let frames = vec![lfw(PERSON, FRONT); steps.len()];
    let (s, body) = answer(&d, email, &id, &frames).await;
    assert_eq!((s, code(&body)), (422, "LIVENESS_POSE"), "{body}");

    // Two people: the user's photo for `front`, someone else's real turns.
    // Only a challenge with a `front` step mixes the two (without one, every
    // frame is the other person: a live head that is simply not the user).
    let other = lfw(OTHER.0, OTHER.1);
    let mut refused_as_attack = 0;
    for _ in 0..2 {
        let mut drawn = challenge(&d, email).await;
        while !drawn.1.iter().any(|s| s == "front") {
            drawn = challenge(&d, email).await;
        }
        let (id, steps) = drawn;
        let frames: Vec<Vec<u8>> = steps
            .iter()
            .map(|s| match s.as_str() {
                "front" => lfw(PERSON, FRONT),
                _ => bona_fide(s),
            })
            .collect();
        // Swap every turned frame for the other person's (mirrored as needed).
        let frames: Vec<Vec<u8>> = frames
            .into_iter()
            .zip(&steps)
            .map(|(f, s)| {
                if s == "front" {
                    f
                } else {
                    other_turned(&other, s)
                }
            })
            .collect();
        let (s, body) = answer(&d, email, &id, &frames).await;
        assert_ne!(s, 200, "two people signed in: {body}");
        if (s, code(&body)) == (401, "VERIFICATION_FAILED") {
            refused_as_attack += 1;
        }
    }

    // A flat picture turned in front of the camera: never a sign-in.
    let (id, steps) = challenge(&d, email).await;
    let turned = image::load_from_memory(&lfw(PERSON, FRONT))
        .unwrap()
        .to_rgb8();
    let deg = std::f32::consts::PI / 180.0;
    let frames: Vec<Vec<u8>> = steps
        .iter()
        .map(|s| {
            let yaw = match s.as_str() {
                "left" => 35.0,
                "right" => -35.0,
                _ => 0.0,
            };
            jpeg(&arclock_face::liveness::eval::warp_flat(
                &turned,
                yaw * deg,
                0.0,
                1.0,
                [0.0, 0.0],
                250.0,
            ))
        })
        .collect();
    let (s, body) = answer(&d, email, &id, &frames).await;
    assert!(s == 401 || s == 422, "a turned print: {s} {body}");

    // Operators see the reasons; the client saw only 401 / 422.
    let logs = admin
        .logs(&LogQuery {
            outcome: Some("failure".into()),
            ..LogQuery::default()
        })
        .await
        .unwrap();
    let reasons: Vec<String> = logs.iter().filter_map(|l| l.reason.clone()).collect();
    // Both mixed answers were refused as attacks (401, like a wrong face).
    assert_eq!(refused_as_attack, 2, "{reasons:?}");
    let attacks = reasons
        .iter()
        .filter(|r| *r == "identity_switch" || *r == "flat")
        .count();
    assert!(attacks >= 2, "{reasons:?}");
    let m = admin.metrics().await.unwrap();
    for want in [
        r#"arclock_liveness_checks_total{outcome="live"}"#,
        r#"arclock_liveness_checks_total{outcome="challenge_invalid"} 3"#,
        r#"arclock_liveness_checks_total{outcome="pose"}"#,
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }
    let health = admin.health().await.unwrap();
    let l = &health.public.dependencies["liveness"];
    assert_eq!(
        (l.signin.as_deref(), l.pad.as_deref()),
        (Some("passive"), Some("ready"))
    );
}

/// The other person's photo, mirrored if needed so its nose points to `step`'s side.
fn other_turned(other: &[u8], step: &str) -> Vec<u8> {
    match (step, OTHER_IS_LEFT) {
        ("left", true) | ("right", false) => other.to_vec(),
        _ => mirrored(other),
    }
}

const OTHER_IS_LEFT: bool = true;

/// `active` sign-in refuses single photos and takes only challenge answers;
/// a challenge expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_mode_requires_a_challenge_and_challenges_expire() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start_with(&[
        ("ARCLOCK_LIVENESS_SIGNIN", "active"),
        ("ARCLOCK_LIVENESS_CHALLENGE_TTL_SECS", "10"),
    ]);
    let email = EMAIL;
    register(&d).await;
    let (s, body) = d
        .post(
            "/api/auth/login",
            &json!({"email": email, "imageBase64": b64(&lfw(PERSON, FRONT))}),
        )
        .await;
    assert_eq!((s, code(&body)), (422, "LIVENESS_REQUIRED"), "{body}");

    let (id, steps) = challenge_lasting(&d, email, 10).await;
    let frames: Vec<Vec<u8>> = steps.iter().map(|s| bona_fide(s)).collect();
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let (s, body) = answer(&d, email, &id, &frames).await;
    assert_eq!((s, code(&body)), (422, "CHALLENGE_INVALID"), "{body}");

    // A fresh one, answered in time, signs in.
    let (id, steps) = challenge_lasting(&d, email, 10).await;
    let frames: Vec<Vec<u8>> = steps.iter().map(|s| bona_fide(s)).collect();
    let (s, body) = answer(&d, email, &id, &frames).await;
    assert_eq!(s, 200, "{steps:?} {body}");
}
