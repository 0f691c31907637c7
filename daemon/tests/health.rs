//! The real `arclockd` binary: provisioned into a private state directory (its
//! own SoftHSM2 token), served over TLS on loopback, checked with a TLS client
//! that trusts only the certificate provisioning wrote.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use common::{Instance, installed, lfw_base64};
use std::io::Write;
use std::process::Command;

#[tokio::test]
async fn provisions_once_and_serves_health_over_tls_with_every_dependency_ok() {
    let inst = Instance::new();
    let first = inst.provision();
    assert!(first.contains("created HSM token"), "{first}");
    assert!(first.contains("self-signed TLS certificate"), "{first}");
    let again = inst.provision();
    assert!(
        !again.contains("created") && !again.contains("generated"),
        "not idempotent: {again}"
    );

    // Secrets on disk are private.
    use std::os::unix::fs::PermissionsExt;
    for f in ["hsm/user.pin", "hsm/so.pin", "tls/key.pem", "softhsm2.conf"] {
        let mode = std::fs::metadata(inst.path(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode & 0o077, 0, "{f} is {mode:o}");
    }

    let d = inst.start();
    let (status, headers, version, body) = d.get("/health").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(version, reqwest::Version::HTTP_2, "ALPN should pick h2");
    assert_eq!(body["success"], true);
    let deps = &body["data"]["dependencies"];
    for dep in ["hsm", "store", "models"] {
        assert_eq!(deps[dep]["status"], "ok", "{dep}: {body}");
    }
    assert_eq!(deps["models"]["embeddingDim"], 128);
    for (h, v) in [
        (
            "strict-transport-security",
            "max-age=63072000; includeSubDomains",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(headers.get(h).map(|v| v.to_str().unwrap()), Some(v), "{h}");
    }
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );

    // The JWKS lists the HSM's signing key; the kid is its RFC 7638 thumbprint.
    let (status, headers, _, jwks) = d.get("/.well-known/jwks.json").await;
    assert_eq!(status, 200, "{jwks}");
    assert_eq!(headers["content-type"], "application/jwk-set+json");
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str()),
        (Some("RSA"), Some("RS256"))
    );
    assert_eq!(key["kid"].as_str().map(str::len), Some(43));
    assert!(key["n"].as_str().unwrap().len() > 300 && key["e"] == "AQAB");
    assert_eq!(headers["x-frame-options"], "DENY");

    let (status, headers, _, body) = d.get("/api/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["success"], false);
    assert_eq!(body["code"], "NOT_FOUND");
    assert!(body["message"].is_string() && body["error"].is_string());
    assert_eq!(headers["x-frame-options"], "DENY");

    let r = d
        .client
        .post(format!("{}/health", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    // HTTP/1.1 clients are served too.
    let cert = std::fs::read(inst.path("tls/cert.pem")).unwrap();
    let h1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let r = h1.get(format!("{}/health", d.url)).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.version()),
        (200, reqwest::Version::HTTP_11)
    );
}

#[tokio::test]
async fn token_gone_gives_503_naming_the_hsm_and_recovers_when_back() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start();
    assert_eq!(d.get("/health").await.0, 200);

    let tokens = inst.path("softhsm/tokens");
    let token = std::fs::read_dir(&tokens)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let away = inst.path("token-away");
    std::fs::rename(&token, &away).unwrap();
    let (status, _, _, body) = d.get("/health").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(body["code"], "SERVICE_UNAVAILABLE");
    assert_eq!(body["data"]["dependencies"]["hsm"]["status"], "error");
    assert_eq!(body["data"]["dependencies"]["store"]["status"], "ok");
    assert!(body["error"].as_str().unwrap().contains("hsm"));

    std::fs::rename(&away, &token).unwrap();
    let (status, _, _, body) = d.get("/health").await;
    assert_eq!(status, 200, "did not recover: {body}");

    // The store going away is reported the same way.
    std::fs::remove_file(inst.path("arclock.db")).unwrap();
    let (status, _, _, body) = d.get("/health").await;
    assert_eq!(status, 503);
    assert_eq!(body["data"]["dependencies"]["store"]["status"], "error");
}

#[test]
fn check_config_names_the_bad_key_and_a_corrupt_model_refuses_start() {
    let inst = Instance::new();
    let out = inst.command().arg("--check-config").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No token yet: a note, not a failure.
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("not checked"), "{said}");
    inst.provision();
    let out = inst.command().arg("--check-config").output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("offers every mechanism ArcLock needs"),
        "{said}"
    );

    let out = inst
        .command()
        .arg("--check-config")
        .env("ARCLOCK_SERVER_MAX_CONNECTIONS", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.max_connections"));

    let out = inst
        .command()
        .arg("--check-config")
        .env("ARCLOCK_HSM_PIN", "123456")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a PIN in the environment must not be accepted"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ARCLOCK_HSM_PIN") && !err.contains("123456"),
        "{err}"
    );

    // A model directory whose recognizer has one byte changed.
    inst.provision();
    let models = inst.path("models");
    std::fs::create_dir(&models).unwrap();
    for e in std::fs::read_dir(installed().join("models")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), models.join(e.file_name())).unwrap();
    }
    let victim = models.join("arcface_mobileface_128.onnx");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let out = inst
        .command()
        .env("ARCLOCK_MODELS_DIR", &models)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("arcface_mobileface_128.onnx") && err.contains("integrity"),
        "{err}"
    );
}

/// The store's file system fills up under a running daemon. The database sits
/// on its own 8 MiB tmpfs, mounted in a private mount namespace (`unshare`) so
/// nothing outside the test sees it; the test fills it through
/// `/proc/<pid>/root`. While it is full: health names the space, registration
/// and login answer 503 (never a half user, never an accept). Once space is
/// back, everything works and the failed registration left nothing behind.
#[tokio::test]
async fn a_full_disk_gives_503_and_recovers_without_half_users() {
    let inst = Instance::new();
    inst.provision();
    let data = inst.path("data");
    std::fs::create_dir(&data).unwrap();
    let db = data.join("arclock.db");

    let inner = inst.command();
    let mut cmd = common::wrapped(&inner, Command::new("unshare"));
    cmd.args(["--map-root-user", "--mount", "--propagation", "private"])
        .args(["/bin/sh", "-c"])
        .arg("mount -t tmpfs -o size=8m,mode=0700 arclock-full \"$0\" && exec \"$1\"")
        .arg(&data)
        .arg(inner.get_program())
        .env("ARCLOCK_STORE_PATH", &db);
    let d = inst.spawn(cmd);
    // The daemon's view of the data directory: the tmpfs, not the test's.
    let seen = std::path::PathBuf::from(format!("/proc/{}/root", d.child.id()))
        .join(data.strip_prefix("/").unwrap());
    assert!(
        seen.join("arclock.db").exists(),
        "the store is not on the tmpfs"
    );
    assert!(!db.exists(), "the tmpfs leaked out of the namespace");

    let post = |path: &'static str, body: serde_json::Value| {
        let d = &d;
        async move { d.post(path, &body).await }
    };
    let person = |name: &str, email: &str, who: &str| serde_json::json!({"name": name, "email": email, "imageBase64": lfw_base64(who, 1)});
    let alice = person("Alice", "alice@example.com", "Aaron_Peirsol");
    let login = serde_json::json!({"email": "alice@example.com", "imageBase64": lfw_base64("Aaron_Peirsol", 2)});
    assert_eq!(post("/api/auth/register", alice).await.0, 201);
    assert_eq!(post("/api/auth/login", login.clone()).await.0, 200);

    // Fill the file system to the last block.
    let filler = seen.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let full = loop {
        if let Err(e) = f.write_all(&chunk) {
            break e;
        }
    };
    assert_eq!(full.raw_os_error(), Some(libc::ENOSPC), "{full}");
    for small in [4096, 512, 1] {
        while f.write_all(&chunk[..small]).is_ok() {}
    }
    drop(f);

    let (status, _, _, body) = d.get("/health").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["data"]["dependencies"]["store"]["status"], "error");
    assert_eq!(body["error"], "down: store");
    assert!(
        body["data"]["dependencies"]["store"]
            .get("reason")
            .is_none(),
        "the public port must not say why: {body}"
    );
    // Operators see why, on the admin socket.
    let admin = arclock_console::Client::new(inst.path("admin.sock"));
    let health = admin.health().await.unwrap();
    let why = health.public.dependencies["store"]
        .reason
        .clone()
        .unwrap_or_default();
    assert!(why.contains("no space left"), "{why}");

    // A login that would need a refresh token written cannot be accepted. The
    // write-ahead log may still have room the last checkpoint freed (a
    // commit then rewinds into blocks the file already has, and succeeds):
    // such a login is a committed one, rightly 200; so may be the rows that
    // still fit the database's last pages. Once that room is used, every
    // login is 503.
    let mut refused = None;
    for _ in 0..200 {
        let (status, body) = post("/api/auth/login", login.clone()).await;
        match status {
            200 => continue,
            503 => {
                refused = Some(body);
                break;
            }
            _ => panic!("a login on a full disk gave {status}: {body}"),
        }
    }
    let body = refused.expect("200 logins on a full disk were all accepted");
    assert_eq!(body["code"], "SERVICE_UNAVAILABLE");
    assert_eq!(body["error"], "the store is unavailable");

    // Registration is refused whole.
    let bob = person("Bob", "bob@example.com", "Adam_Sandler");
    let (status, body) = post("/api/auth/register", bob.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(body["code"], "SERVICE_UNAVAILABLE");
    let log = std::fs::read_to_string(inst.path("daemon.log")).unwrap();
    assert!(log.contains("database or disk is full"), "{log}");

    // Space comes back: no restart needed, and the refused registration left
    // no trace (the e-mail is free, the new account works).
    std::fs::remove_file(&filler).unwrap();
    let (status, _, _, body) = d.get("/health").await;
    assert_eq!(status, 200, "did not recover: {body}");
    assert_eq!(post("/api/auth/register", bob).await.0, 201);
    let bob_login = serde_json::json!({"email": "bob@example.com", "imageBase64": lfw_base64("Adam_Sandler", 1)});
    assert_eq!(post("/api/auth/login", bob_login).await.0, 200);
    assert_eq!(post("/api/auth/login", login).await.0, 200);
}

/// SIGKILL of the daemon itself while registrations are in flight, three
/// times at different moments. After each restart, every e-mail that was
/// being registered is either a whole account (its owner signs in) or free
/// (registering it again succeeds): never a half user that blocks the
/// address or fails sign-in with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_registration_leaves_no_half_user() {
    let inst = Instance::new();
    inst.provision();
    // Photos other tests enrol: a refusal here can only be the store's doing.
    let people = [
        "Aaron_Peirsol",
        "Adam_Sandler",
        "Alvaro_Uribe",
        "Alejandro_Toledo",
    ];
    // Probing with sign-ins counts failures per address: keep the lockout
    // out of the way.
    let env = [
        ("ARCLOCK_AUTH_MAX_FAILURES", "100"),
        ("ARCLOCK_AUTH_MAX_FAILURES_PER_ADDRESS", "100"),
    ];
    for (round, delay_ms) in [10u64, 30, 60].into_iter().enumerate() {
        let register = |i: usize, p: &str| {
            serde_json::json!({
                "name": p,
                "email": format!("r{round}p{i}@example.org"),
                "imageBase64": lfw_base64(p, 1),
            })
        };
        let mut d = inst.start_with(&env);
        let mut inflight = Vec::new();
        for (i, p) in people.iter().enumerate() {
            let req = d
                .client
                .post(format!("{}/api/auth/register", d.url))
                .json(&register(i, p));
            inflight.push(tokio::spawn(async move { req.send().await }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        // `Child::kill` is SIGKILL: no destructor, no flush, no commit.
        d.child.kill().unwrap();
        for r in inflight {
            let _ = r.await;
        }
        drop(d);

        let d = inst.start_with(&env);
        let (mut whole, mut free) = (0, 0);
        for (i, p) in people.iter().enumerate() {
            let email = format!("r{round}p{i}@example.org");
            let login = serde_json::json!({"email": email, "imageBase64": lfw_base64(p, 1)});
            match d.post("/api/auth/login", &login).await.0 {
                200 => whole += 1,
                401 => {
                    let (status, body) = d.post("/api/auth/register", &register(i, p)).await;
                    assert_eq!(status, 201, "{email} is a half user after SIGKILL: {body}");
                    free += 1;
                }
                other => panic!("{email}: sign-in after SIGKILL answered {other}"),
            }
        }
        eprintln!("sigkill after {delay_ms} ms: {whole} accounts whole, {free} free");
    }
}
