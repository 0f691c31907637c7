//! The real `arclockd` binary: provisioned into a private state directory (its
//! own SoftHSM2 token), served over TLS on loopback, checked with a TLS client
//! that trusts only the certificate provisioning wrote.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_arclockd");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn installed() -> PathBuf {
    std::env::var_os("ARCLOCK_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("var"))
}

/// A private state directory and the environment that points arclockd at it.
struct Instance {
    dir: tempfile::TempDir,
    models: PathBuf,
}

impl Instance {
    fn new() -> Self {
        Instance {
            dir: tempfile::tempdir().unwrap(),
            models: installed().join("models"),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(root())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SOFTHSM2_CONF", self.path("softhsm2.conf"))
            .env("ARCLOCK_CONFIG", root().join("config/arclockd.toml"))
            .env("ARCLOCK_SERVER_LISTEN", "127.0.0.1:0")
            .env("ARCLOCK_SERVER_TLS_CERT", self.path("tls/cert.pem"))
            .env("ARCLOCK_SERVER_TLS_KEY", self.path("tls/key.pem"))
            .env("ARCLOCK_HSM_PIN_FILE", self.path("hsm/user.pin"))
            .env("ARCLOCK_HSM_SO_PIN_FILE", self.path("hsm/so.pin"))
            .env("ARCLOCK_HSM_JWT_KEY_BITS", "2048")
            .env("ARCLOCK_STORE_PATH", self.path("arclock.db"))
            .env("ARCLOCK_MODELS_DIR", &self.models)
            .env(
                "ARCLOCK_MODELS_RUNTIME",
                installed().join("opt/onnxruntime-1.32.0/libonnxruntime.so.1.32.0"),
            )
            .env("ARCLOCK_MODELS_INTRA_THREADS", "1");
        c
    }

    fn provision(&self) -> String {
        let out = self.command().arg("provision").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "provision failed: {text}");
        text
    }

    /// Starts the daemon and waits for the line saying where it listens.
    fn start(&self) -> Daemon {
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("arclockd listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("arclockd did not start listening");
        let cert = std::fs::read(self.path("tls/cert.pem")).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
            .https_only(true)
            .build()
            .unwrap();
        Daemon {
            child,
            url: url.replace("127.0.0.1", "localhost"),
            client,
        }
    }
}

struct Daemon {
    child: Child,
    url: String,
    client: reqwest::Client,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    async fn get(
        &self,
        path: &str,
    ) -> (
        reqwest::StatusCode,
        reqwest::header::HeaderMap,
        reqwest::Version,
        serde_json::Value,
    ) {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let (status, headers, version) = (r.status(), r.headers().clone(), r.version());
        (status, headers, version, r.json().await.unwrap())
    }
}

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
