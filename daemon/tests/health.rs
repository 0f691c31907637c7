//! The real `arclockd` binary: provisioned into a private state directory (its
//! own SoftHSM2 token), served over TLS on loopback, checked with a TLS client
//! that trusts only the certificate provisioning wrote.

mod common;

use common::{Instance, installed};

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
