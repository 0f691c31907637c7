//! Issue 22: a slow request names the step it stalled in. The real daemon
//! (SoftHSM2, ONNX Runtime, SQLite, TLS) logs every request slower than
//! `[server] slow_request_ms` with its per-step timeline, and sends that
//! timeline as `Server-Timing` only when `[server] server_timing` asks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use common::{Instance, lfw_base64};
use serde_json::json;

/// `name;dur=ms` pairs of a `Server-Timing` value.
fn steps(header: &str) -> Vec<(String, f64)> {
    header
        .split(',')
        .map(|m| {
            let (name, dur) = m.trim().split_once(";dur=").expect(m);
            (name.to_string(), dur.parse().expect(dur))
        })
        .collect()
}

async fn post_timed(
    d: &common::Daemon,
    path: &str,
    body: serde_json::Value,
) -> (u16, Option<String>) {
    let (status, header, _) = post_answered(d, path, body).await;
    (status, header)
}

/// [`post_timed`], with the answer's body.
async fn post_answered(
    d: &common::Daemon,
    path: &str,
    body: serde_json::Value,
) -> (u16, Option<String>, serde_json::Value) {
    let r = d
        .client
        .post(format!("{}{path}", d.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let header = r
        .headers()
        .get("server-timing")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), header, r.json().await.unwrap())
}

/// Whether an answer's `Server-Timing` has a `sign` step: an access token
/// was signed in the HSM while answering.
fn signed(header: Option<String>) -> bool {
    steps(&header.expect("Server-Timing on"))
        .iter()
        .any(|(n, _)| n == "sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_reports_where_its_time_went() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start_with(&[
        ("ARCLOCK_SERVER_SERVER_TIMING", "true"),
        ("ARCLOCK_SERVER_SLOW_REQUEST_MS", "1"),
    ]);
    let (status, _) = post_timed(
        &d,
        "/api/auth/register",
        json!({"name": "Aaron", "email": "aaron@example.org", "imageBase64": lfw_base64("Aaron_Peirsol", 1)}),
    )
    .await;
    assert_eq!(status, 201);

    let (status, header, answer) = post_answered(
        &d,
        "/api/auth/verify-face",
        json!({"email": "aaron@example.org", "imageBase64": lfw_base64("Aaron_Peirsol", 2)}),
    )
    .await;
    assert_eq!(status, 200);
    let refresh_token = answer["data"]["tokens"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_string();
    let header = header.expect("Server-Timing on");
    let got = steps(&header);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    // Every step of a sign-in, in the order the timeline lists them.
    assert_eq!(
        names,
        [
            "intake",
            "lock",
            "queue",
            "decode",
            "detect",
            "align",
            "pad",
            "embed",
            "store_wait",
            "store",
            "hsm",
            "decrypt",
            "sign",
            "total"
        ],
        "{header}"
    );
    let total = got.last().unwrap().1;
    let step = |name: &str| got.iter().find(|(n, _)| n == name).unwrap().1;
    // PAD runs beside the recognizer when a worker's core is idle, so only
    // the longer of the two is sure to have been waited for.
    let face: f64 = ["decode", "detect", "align"].map(step).iter().sum::<f64>()
        + step("pad").max(step("embed"));
    assert!(
        face > 0.0 && face <= total,
        "face steps {face} ms, total {total} ms"
    );

    // The slow-request line: route, status and steps, nothing of the user.
    let log = (0..50)
        .find_map(|_| {
            let log = std::fs::read_to_string(inst.path("daemon.log")).unwrap();
            if log.contains("/api/auth/verify-face") && log.contains("slow request") {
                Some(log)
            } else {
                std::thread::sleep(std::time::Duration::from_millis(100));
                None
            }
        })
        .expect("a slow-request line for verify-face");
    let line = log
        .lines()
        .find(|l| l.contains("slow request") && l.contains("/api/auth/verify-face"))
        .unwrap();
    assert!(
        line.contains("detect=") && line.contains("store=") && line.contains("sign="),
        "{line}"
    );
    assert!(!line.contains("aaron"), "{line}");

    // An attacker shown the header cannot tell an unknown account from a
    // wrong face by the steps taken (the decoy does the same work).
    let mut seen = Vec::new();
    for email in ["aaron@example.org", "nobody@example.org"] {
        let (status, header) = post_timed(
            &d,
            "/api/auth/login",
            json!({"email": email, "imageBase64": lfw_base64("Adam_Sandler", 1)}),
        )
        .await;
        assert_eq!(status, 401);
        let names: Vec<String> = steps(&header.unwrap())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        seen.push(names);
    }
    assert_eq!(seen[0], seen[1]);

    // A rotation's access token is signed only once the store has found
    // the presented token current. An attacker's well-formed token (the right family
    // and user, a secret of their own), a replayed one and the current one
    // of a family the replay revoked must cost no signature: each would
    // otherwise buy an RSA signature in the HSM per request.
    let refresh = |token: String| {
        post_answered(
            &d,
            "/api/auth/refresh-token",
            json!({"refreshToken": token}),
        )
    };
    let secret_at = refresh_token.rfind('.').unwrap() + 1;
    let mut forged = refresh_token.clone();
    let flipped = if forged.as_bytes()[secret_at] == b'A' {
        "B"
    } else {
        "A"
    };
    forged.replace_range(secret_at..secret_at + 1, flipped);
    let (status, header, _) = refresh(forged).await;
    assert_eq!(status, 401);
    assert!(!signed(header), "a forged refresh token was signed for");

    let (status, header, answer) = refresh(refresh_token.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert!(signed(header), "a rotation signs its access token");
    let access = answer["data"]["tokens"]["accessToken"].as_str().unwrap();
    assert_eq!(d.profile_status(access).await, 200);
    let rotated = answer["data"]["tokens"]["refreshToken"].as_str().unwrap();

    let (status, header, _) = refresh(refresh_token).await;
    assert_eq!(status, 401);
    assert!(!signed(header), "a replayed refresh token was signed for");
    // The replay revoked the family: the access token it came with is dead,
    // and so is its current refresh token, at no signature.
    assert_eq!(d.profile_status(access).await, 401);
    let (status, header, _) = refresh(rotated.to_string()).await;
    assert_eq!(status, 401);
    assert!(!signed(header), "a revoked family's token was signed for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_timings_stay_private_by_default() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start();
    let (status, header) = post_timed(
        &d,
        "/api/auth/login",
        json!({"email": "nobody@example.org", "imageBase64": lfw_base64("Adam_Sandler", 1)}),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(header, None);
}
