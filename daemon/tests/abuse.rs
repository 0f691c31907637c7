//! Abuse resistance against the real daemon over TLS: people sharing one
//! address (a NAT, an office, a reverse proxy) do not lock each other out,
//! an attacker can neither escape the per-address ceiling by forging
//! `X-Forwarded-For` nor reset it with a success of their own, forwarded
//! addresses are believed only from trusted proxies, and concurrent guesses
//! at one account are evaluated at most `[auth] max_failures` times.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use arclock_console::{Client, LogQuery};
use common::{Daemon, Instance, lfw_base64 as photo};
use serde_json::{Value, json};

const NEIGHBOUR: (&str, &str, u32) = ("neighbour@example.org", "Aaron_Peirsol", 1);
const VICTIM: (&str, &str, u32) = ("victim@example.org", "Al_Pacino", 1);
/// A face that is neither of them.
const STRANGER: (&str, u32) = ("Adam_Sandler", 2);

async fn register(d: &Daemon, (email, person, n): (&str, &str, u32)) {
    let (s, body) = d
        .post(
            "/api/auth/register",
            &json!({"name": "Someone", "email": email, "imageBase64": photo(person, n)}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
}

/// A login with `face`, claiming to come from `forwarded` (if set).
async fn login(
    d: &Daemon,
    email: &str,
    face: (&str, u32),
    forwarded: Option<&str>,
) -> (u16, Value) {
    let mut r = d
        .client
        .post(format!("{}/api/auth/login", d.url))
        .json(&json!({"email": email, "imageBase64": photo(face.0, face.1)}));
    if let Some(f) = forwarded {
        r = r.header("x-forwarded-for", f);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neighbours_on_one_address_do_not_lock_each_other_out() {
    let inst = Instance::new();
    inst.provision();
    // A small per-address ceiling, so that the test reaches it.
    let d = inst.start_with(&[("ARCLOCK_AUTH_MAX_FAILURES_PER_ADDRESS", "10")]);
    let admin = Client::new(inst.path("admin.sock"));
    register(&d, NEIGHBOUR).await;
    register(&d, VICTIM).await;
    // Nobody registers a look-alike of an existing address (a Cyrillic "е"
    // and "о"): the same answer as the address itself.
    let (s, body) = d
        .post(
            "/api/auth/register",
            &json!({"name": "Twin", "email": "n\u{0435}ighb\u{043e}ur@example.org", "imageBase64": photo("Adam_Sandler", 1)}),
        )
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (409, Some("USER_EXISTS")),
        "{body}"
    );

    // Seven failures on other accounts from this address (known and
    // unknown, each under a forged X-Forwarded-For: no proxy is trusted).
    let mut statuses = Vec::new();
    for i in 0..7 {
        let email = if i % 2 == 0 {
            VICTIM.0.to_string()
        } else {
            format!("nobody{i}@example.org")
        };
        let forged = format!("203.0.113.{i}");
        statuses.push(login(&d, &email, STRANGER, Some(&forged)).await.0);
    }
    // The victim's account locked at its own limit (5 per e-mail) only if
    // it got five; four went to it, so every answer is a plain refusal.
    assert_eq!(statuses, vec![401; 7]);

    // The neighbour, same address, right face: signs in.
    let (s, body) = login(&d, NEIGHBOUR.0, (NEIGHBOUR.1, NEIGHBOUR.2), None).await;
    assert_eq!(s, 200, "{body}");

    // That success did not wipe the address's count: three more failures
    // reach the ceiling of ten, and then the address is locked for all.
    for i in 0..3 {
        let (s, _) = login(&d, &format!("other{i}@example.org"), STRANGER, None).await;
        assert_eq!(s, 401);
    }
    let (s, body) = login(&d, NEIGHBOUR.0, (NEIGHBOUR.1, NEIGHBOUR.2), None).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (429, Some("ACCOUNT_LOCKED")),
        "{body}"
    );

    // The forged addresses were never believed: every entry is loopback's.
    let logs = admin
        .logs(&LogQuery {
            action: Some("login".into()),
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert!(logs.len() >= 11);
    assert!(
        logs.iter().all(|l| l.ip.as_deref() == Some("127.0.0.1")),
        "{:?}",
        logs.iter().map(|l| l.ip.clone()).collect::<Vec<_>>()
    );
    let locks = admin.lockouts().await.unwrap();
    assert_eq!(locks.len(), 1, "only the address: {locks:?}");
}

/// A copy of the store alone does not say whose sign-ins failed: an
/// e-mail's lockout subject is an HMAC under a key inside the HSM, not a
/// hash anyone can recompute from a list of candidate addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_subjects_cannot_be_matched_against_addresses() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start();
    register(&d, VICTIM).await;
    for email in [VICTIM.0, VICTIM.0, "nobody@example.org"] {
        let (s, body) = login(&d, email, STRANGER, None).await;
        assert_eq!(s, 401, "{body}");
    }
    let db = rusqlite::Connection::open(inst.path("arclock.db")).unwrap();
    let rows: Vec<(String, i64)> = db
        .prepare("SELECT subject, failed FROM failed_attempts WHERE subject LIKE 'acct:%'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // One stable subject per address: the victim's two failures on one row.
    let mut counts: Vec<i64> = rows.iter().map(|(_, n)| *n).collect();
    counts.sort_unstable();
    assert_eq!(counts, [1, 2], "{rows:?}");
    // What an attacker with the file would try: the bare SHA-256 of every
    // address on a list (as arclockd itself used to store it).
    use sha2::Digest;
    for email in [VICTIM.0, "nobody@example.org", NEIGHBOUR.0] {
        let bare = format!(
            "acct:{}",
            hex::encode(&sha2::Sha256::digest(email.as_bytes())[..16])
        );
        assert!(rows.iter().all(|(s, _)| *s != bare), "{email} matched");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_are_evaluated_at_most_max_failures_times() {
    let inst = Instance::new();
    inst.provision();
    // Loopback plays the reverse proxy: its X-Forwarded-For names the client.
    let d = inst.start_with(&[("ARCLOCK_SERVER_TRUSTED_PROXIES", r#"["127.0.0.1/32"]"#)]);
    let admin = Client::new(inst.path("admin.sock"));
    register(&d, VICTIM).await;

    // Pictures without a usable face never reach a comparison: they are
    // the client's to fix (422) and do not count, however many.
    let blank = faceless();
    for _ in 0..8 {
        let (s, body) = d
            .post(
                "/api/auth/login",
                &json!({"email": VICTIM.0, "imageBase64": blank}),
            )
            .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (422, Some("FACE_ERROR")),
            "{body}"
        );
    }
    let (s, body) = login(&d, VICTIM.0, (VICTIM.1, VICTIM.2), None).await;
    assert_eq!(s, 200, "{body}");

    // Sixteen wrong faces at one account, from sixteen addresses, at once.
    let d = std::sync::Arc::new(d);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let via = format!("198.51.100.{}, 127.0.0.1", i + 1);
            login(&d, VICTIM.0, STRANGER, Some(&via)).await
        }));
    }
    let mut evaluated = 0;
    for t in tasks {
        let (s, body) = t.await.unwrap();
        match s {
            401 => evaluated += 1,
            429 => assert_eq!(body["code"], "ACCOUNT_LOCKED"),
            other => panic!("{other}: {body}"),
        }
    }
    assert!((1..=5).contains(&evaluated), "{evaluated} evaluated");
    // Locked now, also for the right face.
    let (s, _) = login(&d, VICTIM.0, (VICTIM.1, VICTIM.2), Some("198.51.100.99")).await;
    assert_eq!(s, 429);

    // The log names the forwarded clients (the trusted hop is skipped).
    let logs = admin
        .logs(&LogQuery {
            action: Some("login".into()),
            ..LogQuery::default()
        })
        .await
        .unwrap();
    let ips: Vec<String> = logs
        .iter()
        .filter(|l| l.outcome != "success")
        .filter_map(|l| l.ip.clone())
        .collect();
    assert!(
        !ips.is_empty() && ips.iter().all(|ip| ip.starts_with("198.51.100.")),
        "{ips:?}"
    );
}

/// An attacker who keeps sending faces to a locked account must not keep the
/// face workers busy: the daemon remembers the lockout and reserves before
/// any face work (`signin::LocksSeen`), so a refused attempt costs a store
/// call, not a face run. Counted by the daemon's own `face_runs` metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_account_under_attack_costs_no_face_work() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start();
    let admin = Client::new(inst.path("admin.sock"));
    let runs = || counter(&admin, "arclock_face_runs_total");
    register(&d, VICTIM).await;
    assert_eq!(runs().await, 1, "one run per registration photo");

    // Five wrong faces lock the account, each after a face run.
    for _ in 0..5 {
        let (s, body) = login(&d, VICTIM.0, STRANGER, None).await;
        assert_eq!(s, 401, "{body}");
    }
    assert_eq!(runs().await, 6);
    // The attack goes on, the right face among the wrong ones: refused, and
    // not one face run more.
    for i in 0..24 {
        let face = if i % 2 == 0 {
            STRANGER
        } else {
            (VICTIM.1, VICTIM.2)
        };
        let (s, body) = login(&d, VICTIM.0, face, None).await;
        assert_eq!((s, body["code"].as_str()), (429, Some("ACCOUNT_LOCKED")));
    }
    assert_eq!(runs().await, 6, "a refused attempt ran the face pipeline");
}

/// A sign-in prepares its session in the HSM while the face is embedded
/// (for the decoy when the e-mail is unknown). What an attacker with wrong
/// faces and made-up addresses would hope for: that some of it is stored
/// or handed out. Nothing is: no family, no token in the answer; and the
/// owner's later success is stored with its settlement in one commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_face_leaves_no_session_behind() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start();
    register(&d, VICTIM).await;
    let db = rusqlite::Connection::open(inst.path("arclock.db")).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    let families = || count("SELECT count(*) FROM refresh_families");
    let tokens = || count("SELECT count(*) FROM refresh_tokens");
    assert_eq!((families(), tokens()), (1, 1), "the registration's session");

    for email in [
        VICTIM.0,
        "nobody@example.org",
        VICTIM.0,
        "nobody@example.org",
    ] {
        let (s, body) = login(&d, email, STRANGER, None).await;
        assert_eq!(s, 401, "{body}");
        assert!(
            body.get("data").is_none() && !body.to_string().contains("Token"),
            "{body}"
        );
    }
    assert_eq!(
        (families(), tokens()),
        (1, 1),
        "a refused face stored a session"
    );
    let failures =
        || count("SELECT count(*) FROM failed_attempts WHERE subject LIKE 'acct:%' AND failed > 0");
    assert_eq!(failures(), 2, "the victim's and the unknown address's");

    let (s, body) = login(&d, VICTIM.0, (VICTIM.1, VICTIM.2), None).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!((families(), tokens()), (2, 2));
    assert_eq!(failures(), 1, "the victim's failures were not cleared");
    let access = body["data"]["tokens"]["accessToken"].as_str().unwrap();
    assert_eq!(d.profile_status(access).await, 200);
}

/// `[registration] mode = "invite"`: no code, a wrong address, a used code:
/// 403 `INVITE_INVALID`; an operator's code (from the console binary) works
/// once, and a registration that fails for another reason gives it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_mode_needs_an_operators_single_use_code() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start_with(&[("ARCLOCK_REGISTRATION_MODE", "invite")]);
    let admin = Client::new(inst.path("admin.sock"));
    let register = |email: &str, code: Option<&str>, face: (&str, u32)| {
        let mut body =
            json!({"name": "Invited", "email": email, "imageBase64": photo(face.0, face.1)});
        if let Some(c) = code {
            body["inviteCode"] = json!(c);
        }
        let d = &d;
        async move { d.post("/api/auth/register", &body).await }
    };
    let invalid = |(s, body): (u16, Value)| {
        assert_eq!(
            (s, body["code"].as_str()),
            (403, Some("INVITE_INVALID")),
            "{body}"
        );
    };
    invalid(register(NEIGHBOUR.0, None, (NEIGHBOUR.1, NEIGHBOUR.2)).await);
    invalid(
        register(
            NEIGHBOUR.0,
            Some("made-up-code"),
            (NEIGHBOUR.1, NEIGHBOUR.2),
        )
        .await,
    );

    // The console makes a code for one address.
    let out = std::process::Command::new(common::console_bin())
        .args(["--socket"])
        .arg(inst.path("admin.sock"))
        .args(["invite", "--email", NEIGHBOUR.0])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = text
        .lines()
        .find_map(|l| l.strip_prefix("invitation code: "))
        .unwrap()
        .trim()
        .to_string();
    // Someone else's address: refused, and the code stays its owner's.
    invalid(register(VICTIM.0, Some(&code), (VICTIM.1, VICTIM.2)).await);
    let (s, body) = register(NEIGHBOUR.0, Some(&code), (NEIGHBOUR.1, NEIGHBOUR.2)).await;
    assert_eq!(s, 201, "{body}");
    invalid(register("again@example.org", Some(&code), STRANGER).await);

    // A code for anyone survives a registration refused for its photo.
    let open = admin.create_invite(None, Some(3600)).await.unwrap();
    assert_eq!(open.email, None);
    let blank = faceless();
    let (s, _) = d
        .post(
            "/api/auth/register",
            &json!({"name": "V", "email": VICTIM.0, "imageBase64": blank, "inviteCode": open.code}),
        )
        .await;
    assert_eq!(s, 422);
    let (s, body) = register(VICTIM.0, Some(&open.code), (VICTIM.1, VICTIM.2)).await;
    assert_eq!(s, 201, "{body}");

    // Operators see who made invitations.
    let logs = admin
        .logs(&LogQuery {
            action: Some("admin".into()),
            ..LogQuery::default()
        })
        .await
        .unwrap();
    let made: Vec<String> = logs.iter().filter_map(|l| l.reason.clone()).collect();
    assert!(
        made.iter()
            .any(|r| r.starts_with(&format!("create invitation for {}", NEIGHBOUR.0))),
        "{made:?}"
    );
}

/// `[registration] mode = "closed"`: the API enrols nobody (403 before the
/// body is read); sign-in is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_mode_leaves_enrolment_to_operators() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start_with(&[("ARCLOCK_REGISTRATION_MODE", "closed")]);
    let (s, body) = d
        .post(
            "/api/auth/register",
            &json!({"name": "N", "email": NEIGHBOUR.0, "imageBase64": photo(NEIGHBOUR.1, NEIGHBOUR.2)}),
        )
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (403, Some("REGISTRATION_CLOSED")),
        "{body}"
    );
    let (s, _) = login(&d, NEIGHBOUR.0, (NEIGHBOUR.1, NEIGHBOUR.2), None).await;
    assert_eq!(s, 401, "no account was made");
}

/// `/health` needs no account, so it must not be a lever: a burst of probes
/// costs one dependency check per `health_cache_ms`, and past its own quota
/// an address gets 429 (the default config; tests otherwise switch both off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_cost_one_check_per_interval() {
    let inst = Instance::new();
    inst.provision();
    let d = std::sync::Arc::new(inst.start_with(&[
        ("ARCLOCK_SERVER_HEALTH_CACHE_MS", "2000"),
        ("ARCLOCK_LIMITS_HEALTH", "40"),
    ]));
    let admin = Client::new(inst.path("admin.sock"));
    let checks = || counter(&admin, "arclock_health_checks_total");
    let before = checks().await;
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move { d.get("/health").await.0 }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let burst = checks().await - before;
    assert!((1..=2).contains(&burst), "{burst} checks for 30 probes");
    // Past the quota: 429 in the envelope, with Retry-After.
    let mut refused = 0;
    for _ in 0..15 {
        let (s, headers, _, body) = d.get("/health").await;
        if s == 429 {
            assert_eq!(body["code"], "RATE_LIMIT_EXCEEDED");
            assert!(headers.contains_key("retry-after"));
            refused += 1;
        }
    }
    assert!(refused >= 5, "{refused} refused");
}

/// An unlabelled counter from the daemon's metrics.
async fn counter(admin: &Client, name: &str) -> u64 {
    let m = admin.metrics().await.unwrap();
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// A picture without a face (a grey JPEG), as base64.
fn faceless() -> String {
    let img = image::RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, out.into_inner())
}
