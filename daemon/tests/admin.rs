//! The admin socket end to end: the real daemon, its real Unix socket, the
//! console's own client; lockouts made by real failed face logins over TLS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use arclock_console::model::StreamEvent;
use arclock_console::{Client, ClientError, LogQuery};
use common::{Daemon, Instance, lfw_base64 as photo};
use serde_json::{Value, json};

async fn login(d: &Daemon, email: &str, who: (&str, u32)) -> (u16, Value) {
    d.post(
        "/api/auth/login",
        &json!({"email": email, "imageBase64": photo(who.0, who.1)}),
    )
    .await
}

fn refused(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Refused { status, code, .. } => (status, code),
        other => panic!("expected a refusal, got {other}"),
    }
}

/// The socket is 0660 and only operators get answers: a uid that can open
/// the file (mode widened by the test) is still refused by SO_PEERCRED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_operators_are_answered() {
    let inst = Instance::new();
    inst.provision();
    let _d = inst.start();
    let socket = inst.path("admin.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode {mode:o}");
    let client = Client::new(&socket);
    assert_eq!(client.health().await.unwrap().public.status, "ok");

    if nix_uid() != 0 {
        eprintln!("not root: cannot run a client as another uid; peer-uid refusal untested here");
        return;
    }
    // As nobody, through the file mode as set by the daemon: no connection.
    let as_nobody = |socket: &std::path::Path| {
        Command::new("curl")
            .args(["-sS", "--max-time", "5", "--unix-socket"])
            .arg(socket)
            .arg("http://arclockd/v1/health")
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    std::fs::set_permissions(inst.path(""), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = as_nobody(&socket);
    assert!(!out.status.success(), "nobody connected through mode 0660");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ermission denied")
            || String::from_utf8_lossy(&out.stderr).contains("Couldn't connect"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With the file opened to everyone, the daemon itself refuses the uid.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(&socket);
    let body: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(body["code"], "FORBIDDEN", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("uid 65534"),
        "{body}"
    );
    assert!(body.get("data").is_none(), "a refusal leaks data: {body}");
    // And the operator still is.
    assert_eq!(client.health().await.unwrap().public.status, "ok");
    let log = std::fs::read_to_string(inst.path("daemon.log")).unwrap();
    assert!(log.contains("not an operator"), "refusal not logged");
}

/// Membership of the admin group is read per connection: a member is an
/// operator, and stops being one the moment they leave the group (no
/// restart). Needs root (it makes a throwaway group and user).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_membership_is_checked_live() {
    if nix_uid() != 0 {
        eprintln!("not root: cannot make a group and a user; live membership untested here");
        return;
    }
    struct Throwaway(String);
    impl Drop for Throwaway {
        fn drop(&mut self) {
            let _ = Command::new("userdel").arg(&self.0).status();
            let _ = Command::new("groupdel")
                .arg(format!("{}g", self.0))
                .status();
        }
    }
    let name = format!("alk{}", std::process::id());
    let who = Throwaway(name.clone());
    let group = format!("{name}g");
    let run = |cmd: &str, args: &[&str]| {
        let st = Command::new(cmd).args(args).status().unwrap();
        assert!(st.success(), "{cmd} {args:?}");
    };
    run("groupadd", &[&group]);
    run(
        "useradd",
        &["-M", "-N", "-g", "65534", "-s", "/usr/sbin/nologin", &name],
    );
    run("gpasswd", &["-a", &name, &group]);
    let uid: u32 = String::from_utf8(
        Command::new("id")
            .args(["-u", &name])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();

    let inst = Instance::new();
    inst.provision();
    let _d = inst.start_with(&[("ARCLOCK_ADMIN_GROUP", group.as_str())]);
    let socket = inst.path("admin.sock");
    // The file open to everyone: only the daemon's own check decides.
    std::fs::set_permissions(inst.path(""), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let health_as_member = || {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--unix-socket"])
            .arg(&socket)
            .arg("http://arclockd/v1/health")
            .uid(uid)
            .gid(65534)
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
    };
    assert_eq!(health_as_member()["success"], true);
    run("gpasswd", &["-d", &name, &group]);
    assert_eq!(health_as_member()["code"], "FORBIDDEN");
    drop(who);
}

fn nix_uid() -> u32 {
    // Our own real uid, from /proc (no libc in the tests).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

/// Lockouts from real failed logins appear, with the account's e-mail; the
/// live stream and search see the attempts; unlock lets the next login in;
/// disable, enable, KEK rotation and deletion work and are audited; metrics
/// count it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockouts_users_keys_logs_and_metrics() {
    let inst = Instance::new();
    inst.provision();
    // The address's ceiling as low as the account's, so both lock at once
    // (by default it is ten times higher: `tests/abuse.rs`).
    let d = inst.start_with(&[("ARCLOCK_AUTH_MAX_FAILURES_PER_ADDRESS", "5")]);
    let admin = Client::new(inst.path("admin.sock"));
    let mut stream = admin.stream(&LogQuery::default()).await.unwrap();

    let email = "grace@example.org";
    let (s, reg) = d
        .post(
            "/api/auth/register",
            &json!({"name": "Grace", "email": email, "imageBase64": photo("Aaron_Peirsol", 1)}),
        )
        .await;
    assert_eq!(s, 201, "{reg}");
    let id = reg["data"]["user"]["id"].as_str().unwrap().to_string();
    for _ in 0..5 {
        assert_eq!(login(&d, email, ("Adam_Sandler", 1)).await.0, 401);
    }
    let (s, body) = login(&d, email, ("Aaron_Peirsol", 2)).await;
    assert_eq!((s, body["code"].as_str()), (429, Some("ACCOUNT_LOCKED")));

    // The stream saw register, 5 failures and the locked attempt, in order.
    let mut seen = Vec::new();
    while seen.len() < 7 {
        match tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            StreamEvent::Log { entry } => seen.push(format!("{}:{}", entry.action, entry.outcome)),
            StreamEvent::Heartbeat { .. } | StreamEvent::Lagged { .. } => {}
        }
    }
    assert_eq!(seen[0], "register:success");
    assert!(seen[1..6].iter().all(|s| s == "login:failure"), "{seen:?}");
    assert_eq!(seen[6], "login:locked");

    // Search by e-mail and outcome.
    let failures = admin
        .logs(&LogQuery {
            user: Some(email.into()),
            outcome: Some("failure".into()),
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(failures.len(), 5);
    assert!(
        failures
            .iter()
            .all(|l| l.user_id.as_deref() == Some(id.as_str()))
    );
    let by_ip = admin
        .logs(&LogQuery {
            ip: Some("127.0.0.1".into()),
            limit: Some(3),
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(by_ip.len(), 3);

    // Both lockouts, the account named by its e-mail.
    let locks = admin.lockouts().await.unwrap();
    assert_eq!(locks.len(), 2, "{locks:?}");
    let acct = locks.iter().find(|l| l.kind == "account").unwrap();
    assert_eq!(acct.email.as_deref(), Some(email));
    assert!(acct.seconds_left > 800);
    let ip = locks.iter().find(|l| l.kind == "ip").unwrap();
    assert_eq!(ip.key, "127.0.0.1");

    // Unlocking one is not enough (the address is locked too) ...
    admin.unlock("account", &acct.key).await.unwrap();
    assert_eq!(login(&d, email, ("Aaron_Peirsol", 2)).await.0, 429);
    // ... both, and the next login with the right face is in.
    admin.unlock("ip", "127.0.0.1").await.unwrap();
    let (s, body) = login(&d, email, ("Aaron_Peirsol", 2)).await;
    assert_eq!(s, 200, "{body}");
    let token = body["data"]["tokens"]["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    let refresh = body["data"]["tokens"]["refreshToken"].clone();
    assert!(admin.lockouts().await.unwrap().is_empty());
    assert_eq!(
        refused(admin.unlock("ip", "127.0.0.1").await.unwrap_err()),
        (404, "NOT_FOUND".into())
    );
    assert_eq!(
        refused(admin.unlock("door", "x").await.unwrap_err()),
        (400, "VALIDATION_ERROR".into())
    );

    // Users: no biometric field at all; disable stops login and live tokens.
    let users = admin.users(10).await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(
        (users[0].email.as_str(), users[0].status.as_str()),
        (email, "active")
    );
    assert_eq!(d.profile_status(&token).await, 200);
    admin.set_enabled(&id, false).await.unwrap();
    assert_eq!(login(&d, email, ("Aaron_Peirsol", 2)).await.0, 401);
    assert_eq!(
        d.profile_status(&token).await,
        401,
        "a disabled user's token still works"
    );
    admin.set_enabled(&id, true).await.unwrap();
    // Re-enabling revives nothing: the sessions died with the disabling (a
    // refresh token stolen before it stays useless).
    let (s, body) = d
        .post("/api/auth/refresh-token", &json!({"refreshToken": refresh}))
        .await;
    assert_eq!(s, 401, "{body}");
    assert_eq!(d.profile_status(&token).await, 401);
    assert_eq!(login(&d, email, ("Aaron_Peirsol", 2)).await.0, 200);
    assert_eq!(
        refused(admin.set_enabled(&"0".repeat(32), false).await.unwrap_err()),
        (404, "NOT_FOUND".into())
    );
    assert_eq!(
        refused(admin.set_enabled("../etc", false).await.unwrap_err()).0,
        400
    );

    // KEK rotation re-wraps the key; the face still opens its template.
    let rot = admin.rotate_kek().await.unwrap();
    assert_eq!(
        (rot.version, rot.tally.rewrapped, rot.tally.failed),
        (2, 1, 0)
    );
    assert_eq!(admin.health().await.unwrap().keys.kek_versions, vec![1, 2]);
    assert_eq!(login(&d, email, ("Aaron_Peirsol", 2)).await.0, 200);
    let again = admin.rotate_kek().await.unwrap();
    assert_eq!((again.version, again.tally.rewrapped), (3, 1));

    // Metrics count what happened, by route, outcome and lockout kind.
    let m = admin.metrics().await.unwrap();
    for want in [
        r#"arclock_verifications_total{outcome="accept"} 3"#,
        r#"arclock_verifications_total{outcome="reject"} 6"#,
        r#"arclock_verifications_total{outcome="locked"} 2"#,
        r#"arclock_lockouts_total{subject="account"} 1"#,
        r#"arclock_lockouts_total{subject="ip"} 1"#,
        r#"arclock_lockouts_active{subject="account"} 0"#,
        r#"arclock_http_requests_total{route="/api/auth/login",status="429"} 2"#,
        r#"arclock_http_requests_total{route="/api/auth/register",status="201"} 1"#,
        r#"arclock_http_request_duration_seconds_count{route="/api/auth/login"} 11"#,
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }
    assert!(
        !m.contains(email) && !m.contains(&id),
        "metrics name a user"
    );
    // Not on the public port.
    let r = d
        .client
        .get(format!("{}/v1/metrics", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = d
        .client
        .get(format!("{}/metrics", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Deletion, then every operator action is in the audit log with the uid.
    admin.delete_user(&id).await.unwrap();
    assert!(admin.users(10).await.unwrap().is_empty());
    assert_eq!(login(&d, email, ("Aaron_Peirsol", 2)).await.0, 401);
    let audit = admin
        .logs(&LogQuery {
            action: Some("admin".into()),
            ..LogQuery::default()
        })
        .await
        .unwrap();
    let reasons: Vec<String> = audit.iter().filter_map(|l| l.reason.clone()).collect();
    let uid = nix_uid();
    for what in [
        "unlock account",
        "unlock ip 127.0.0.1",
        "disable account",
        "enable account",
        "rotate KEK to v2 (1 re-wrapped, 0 failed)",
        &format!("delete account {id}"),
    ] {
        let want = format!("{what} by operator uid {uid}");
        assert!(
            reasons.contains(&want),
            "no audit entry {want:?} in {reasons:?}"
        );
    }
    // Reads of accounts and of the log are audited too (in the journal),
    // with the operator and what they searched for.
    let journal = std::fs::read_to_string(inst.path("daemon.log")).unwrap();
    for read in ["read=/v1/users", "read=/v1/logs query=\"action=admin\""] {
        assert!(
            journal.lines().any(|l| l.contains("operator read")
                && l.contains(read)
                && l.contains(&format!("uid={uid}"))),
            "no audit line with {read:?}"
        );
    }
}

/// Bad admin requests are clear 4xx answers in the envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_admin_requests_are_refused_clearly() {
    let inst = Instance::new();
    inst.provision();
    let _d = inst.start();
    let admin = Client::new(inst.path("admin.sock"));
    let query = |set: fn(&mut LogQuery)| {
        let mut q = LogQuery::default();
        set(&mut q);
        q
    };
    for (q, want) in [
        (query(|q| q.outcome = Some("maybe".into())), "outcome"),
        (query(|q| q.ip = Some("not-an-ip".into())), "ip"),
        (query(|q| q.since = Some("yesterday".into())), "since"),
        (query(|q| q.limit = Some(5000)), "limit"),
        (
            query(|q| q.user = Some("nobody@example.org".into())),
            "e-mail",
        ),
    ] {
        let err = admin.logs(&q).await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                ClientError::Refused {
                    status: 400 | 404,
                    ..
                }
            ),
            "{q:?}: {text}"
        );
        assert!(text.to_lowercase().contains(want), "{q:?}: {text}");
    }
    let gone = Client::new(inst.path("no-such.sock"));
    assert!(matches!(
        gone.health().await.unwrap_err(),
        ClientError::Unreachable { .. }
    ));
}

/// The kiosk camera: absent from the config, it is a clear 404; configured
/// but missing, a 503 naming the device, with nothing enrolled; a locked-out
/// account is refused before the camera is touched. (No camera exists on
/// these machines; capture, conversion and frame choice are tested with
/// synthetic frames in `models/tests/camera.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_requests_fail_clearly_without_a_camera() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start();
    let admin = Client::new(inst.path("admin.sock"));
    assert!(!admin.health().await.unwrap().camera.enabled);
    let (status, code) = refused(admin.camera_verify("a@example.org").await.unwrap_err());
    assert_eq!((status, code.as_str()), (404, "NO_CAMERA"));
    drop(d);

    let device = inst.path("video-absent");
    let _d = inst.start_with(&[
        ("ARCLOCK_CAMERA_ENABLED", "true"),
        ("ARCLOCK_CAMERA_DEVICE", device.to_str().unwrap()),
    ]);
    let health = admin.health().await.unwrap();
    assert!(health.camera.enabled);
    let err = admin
        .camera_enrol("Ada", "ada@example.org")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ClientError::Refused { status: 503, .. }),
        "{text}"
    );
    assert!(text.contains(&device.display().to_string()), "{text}");
    assert!(
        admin.users(10).await.unwrap().is_empty(),
        "enrolled without a face"
    );
    assert_eq!(
        refused(admin.camera_enrol("", "ada@example.org").await.unwrap_err()).0,
        400
    );
    assert_eq!(
        refused(admin.camera_verify("not-an-email").await.unwrap_err()).0,
        400
    );
}
