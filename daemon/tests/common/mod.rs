//! The real `arclockd` binary in a private state directory, for integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_arclockd");

/// The console binary, built beside `arclockd` by `cargo test --workspace`.
pub fn console_bin() -> PathBuf {
    let bin = PathBuf::from(BIN).with_file_name("arclock-console");
    assert!(
        bin.exists(),
        "{} is missing: run the suite with `cargo test --workspace` (or build -p arclock-console)",
        bin.display()
    );
    bin
}

/// Locked memory (VmLck) of process `pid`, in KiB.
pub fn locked_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The labelled photos (`../shared/faces`, or `ARCLOCK_FACES_DIR`).
pub fn faces() -> PathBuf {
    std::env::var_os("ARCLOCK_FACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/faces"))
}

/// The bytes of LFW photo `n` of `person` (e.g. `("Al_Pacino", 1)`).
pub fn lfw(person: &str, n: u32) -> Vec<u8> {
    let path = faces().join(format!("lfw-dev/{person}/{person}_{n:04}.jpg"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The same photo as base64, the way the mobile app sends it.
/// People with at least two photos (one to enrol, one to sign in).
pub fn people(n: usize) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(faces().join("lfw-dev"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|p| faces().join(format!("lfw-dev/{p}/{p}_0002.jpg")).exists())
        .collect();
    names.sort();
    names.truncate(n);
    names
}

/// The embedding the daemon's own pipeline makes of LFW photo `n` of
/// `person` (one pipeline per test process, loaded on first use).
pub fn embedding(person: &str, n: u32) -> arclock_face::Embedding {
    use arclock_face::{FaceModels, Manifest, Pipeline, Policy, Threads, Workspace};
    static P: std::sync::OnceLock<Pipeline> = std::sync::OnceLock::new();
    let p = P.get_or_init(|| {
        let manifest = Manifest::load(&root().join("models/manifest.toml")).unwrap();
        let models = FaceModels::load(
            &installed().join("opt/onnxruntime-1.32.0/libonnxruntime.so.1.32.0"),
            &manifest,
            &installed().join("models"),
            "scrfd_2.5g_bnkps",
            "arcface_mobileface_128",
            Threads {
                workers: 1,
                intra: 1,
            },
        )
        .unwrap();
        Pipeline::new(models, Policy::default(), Default::default(), 1)
    });
    p.run(&mut Workspace::new().unwrap(), &lfw(person, n), None)
        .unwrap()
        .embedding
}

pub fn lfw_base64(person: &str, n: u32) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(lfw(person, n))
}

/// The MongoDB server `make test` started (`scripts/with-mongo.sh`), if any.
/// Without one the caller skips, and says so here on stderr (`SKIPPED`, with
/// the test's name); with `ARCLOCK_TEST_MONGODB_REQUIRED` set (as `make test`
/// sets it), a missing server fails the test instead.
pub fn mongo_uri() -> Option<String> {
    match std::env::var("ARCLOCK_TEST_MONGODB_URI") {
        Ok(uri) if !uri.is_empty() => Some(uri),
        _ => {
            assert!(
                std::env::var_os("ARCLOCK_TEST_MONGODB_REQUIRED").is_none(),
                "ARCLOCK_TEST_MONGODB_REQUIRED is set but ARCLOCK_TEST_MONGODB_URI is not"
            );
            let test = std::thread::current().name().unwrap_or("?").to_string();
            eprintln!("SKIPPED {test}: no MongoDB (ARCLOCK_TEST_MONGODB_URI is not set)");
            None
        }
    }
}

/// Every document of every collection of `database`, as raw BSON, per
/// collection name.
pub async fn mongo_documents(uri: &str, database: &str) -> Vec<(String, Vec<u8>)> {
    use futures_util::TryStreamExt;
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let db = client.database(database);
    let mut out = Vec::new();
    for name in db.list_collection_names().await.unwrap() {
        let docs: Vec<mongodb::bson::RawDocumentBuf> = db
            .collection::<mongodb::bson::RawDocumentBuf>(&name)
            .find(mongodb::bson::doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let bytes = docs.iter().flat_map(|d| d.as_bytes().to_vec()).collect();
        out.push((name, bytes));
    }
    out
}

/// `outer` (a wrapper such as `sh -c` or `unshare`) with the environment and
/// working directory of `inner`, whose program the caller passes as an
/// argument where the wrapper expects it.
pub fn wrapped(inner: &Command, mut outer: Command) -> Command {
    outer
        .env_clear()
        .envs(
            inner
                .get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .current_dir(inner.get_current_dir().unwrap_or(Path::new(".")));
    outer
}

pub fn installed() -> PathBuf {
    std::env::var_os("ARCLOCK_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("var"))
}

/// A private state directory and the environment that points arclockd at it.
pub struct Instance {
    dir: tempfile::TempDir,
    models: PathBuf,
}

impl Instance {
    pub fn new() -> Self {
        Instance {
            dir: tempfile::tempdir().unwrap(),
            models: installed().join("models"),
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The `ARCLOCK_*` overrides that point arclockd at this instance. Rate
    /// limits are off (tests make many requests from one address) and
    /// `/health` is checked on every call (tests watch it change) unless a
    /// test sets them.
    pub fn env(&self) -> Vec<(String, String)> {
        let p = |s: &str| self.path(s).to_string_lossy().into_owned();
        [
            ("ARCLOCK_SERVER_LISTEN", "127.0.0.1:0".to_string()),
            ("ARCLOCK_SERVER_TLS_CERT", p("tls/cert.pem")),
            ("ARCLOCK_SERVER_TLS_KEY", p("tls/key.pem")),
            ("ARCLOCK_HSM_PIN_FILE", p("hsm/user.pin")),
            ("ARCLOCK_HSM_SO_PIN_FILE", p("hsm/so.pin")),
            ("ARCLOCK_HSM_JWT_KEY_BITS", "2048".into()),
            ("ARCLOCK_STORE_PATH", p("arclock.db")),
            (
                "ARCLOCK_MODELS_DIR",
                self.models.to_string_lossy().into_owned(),
            ),
            (
                "ARCLOCK_MODELS_MANIFEST",
                root()
                    .join("models/manifest.toml")
                    .to_string_lossy()
                    .into_owned(),
            ),
            (
                "ARCLOCK_MODELS_RUNTIME",
                installed()
                    .join("opt/onnxruntime-1.32.0/libonnxruntime.so.1.32.0")
                    .to_string_lossy()
                    .into_owned(),
            ),
            ("ARCLOCK_MODELS_INTRA_THREADS", "1".into()),
            ("ARCLOCK_LIMITS_GENERAL", "0".into()),
            ("ARCLOCK_LIMITS_AUTH", "0".into()),
            ("ARCLOCK_LIMITS_HEALTH", "0".into()),
            ("ARCLOCK_SERVER_HEALTH_CACHE_MS", "0".into()),
            ("ARCLOCK_ADMIN_SOCKET", p("admin.sock")),
            // The tests run as root on CI machines.
            ("ARCLOCK_ALLOW_ROOT", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(root())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SOFTHSM2_CONF", self.path("softhsm2.conf"))
            .env("ARCLOCK_CONFIG", root().join("config/arclockd.toml"))
            .envs(self.env());
        c
    }

    pub fn provision(&self) -> String {
        let out = self.command().arg("provision").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "provision failed: {text}");
        text
    }

    /// Starts the daemon and waits for the line saying where it listens.
    pub fn start(&self) -> Daemon {
        self.start_with(&[])
    }

    /// As [`Instance::start`], with extra `ARCLOCK_*` overrides.
    pub fn start_with(&self, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = self.command();
        cmd.envs(env.iter().copied());
        self.spawn(cmd)
    }

    /// Starts `cmd` (a [`Instance::command`], perhaps wrapped) and waits for
    /// the line saying where it listens.
    pub fn spawn(&self, mut cmd: Command) -> Daemon {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(self.path("daemon.log")).unwrap())
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
            .unwrap_or_else(|e| {
                let log = std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default();
                panic!("arclockd did not start listening ({e}):\n{log}")
            });
        Daemon {
            child,
            url: url.replace("127.0.0.1", "localhost"),
            client: self.client(),
        }
    }

    /// A handle on this instance's own SoftHSM2 token, beside the daemon:
    /// what whoever holds the token could open. Points this process's
    /// SoftHSM2 at the instance, so only one test per process may call it,
    /// before anything else loads SoftHSM2.
    pub fn hsm(&self) -> arclock_hsm::Hsm {
        point_softhsm_at(&self.path("softhsm2.conf"));
        arclock_hsm::Hsm::new(
            arclock_hsm::HsmConfig {
                module: "/usr/lib/softhsm/libsofthsm2.so".into(),
                token_label: "arclock".into(),
                slot: None,
                pool_size: 1,
                signing: arclock_hsm::Signing::Rs256 { bits: 2048 },
            },
            arclock_hsm::Pin::from_file(&self.path("hsm/user.pin")).unwrap(),
        )
    }

    /// An HTTPS client that trusts this instance's certificate (only).
    pub fn client(&self) -> reqwest::Client {
        let cert = std::fs::read(self.path("tls/cert.pem")).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
            .tls_built_in_root_certs(false)
            .https_only(true)
            .build()
            .unwrap()
    }
}

pub struct Daemon {
    pub child: Child,
    pub url: String,
    pub client: reqwest::Client,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// POSTs `body` as JSON; the status and the parsed answer.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// What `GET /api/user/profile` answers to `token` as the bearer: whether
    /// a session's access token is accepted.
    pub async fn profile_status(&self, token: &str) -> u16 {
        self.client
            .get(format!("{}/api/user/profile", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub async fn get(
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

/// Points this process's SoftHSM2 at `conf` (SoftHSM2 reads the variable
/// once, at `C_Initialize`). The one place the tests write the environment:
/// call it before anything in the process loads SoftHSM2, from one test per
/// process (or under a `OnceLock`), never while other threads may read it.
#[allow(unsafe_code)]
pub fn point_softhsm_at(conf: &std::path::Path) {
    // SAFETY: the caller's contract above: no other thread reads the
    // environment while this runs.
    unsafe { std::env::set_var("SOFTHSM2_CONF", conf) };
}

/// The token pair of a sign-in, registration or refresh answer
/// (`data.tokens`); panics, showing the answer, if it has none.
pub struct Pair {
    pub access: String,
    pub refresh: String,
}

/// [`Pair`] out of an answer's body.
pub fn tokens(body: &serde_json::Value) -> Pair {
    let t = &body["data"]["tokens"];
    let field = |name: &str| {
        t[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {body}"))
            .to_string()
    };
    Pair {
        access: field("accessToken"),
        refresh: field("refreshToken"),
    }
}

/// Whether any `w`-byte window of `needle` (taken every `w / 2` bytes)
/// occurs in `hay`: a secret leaked whole, or in large pieces, is found.
/// For many needles at once over large dumps, `privacy::Needles`.
pub fn contains_window(hay: &[u8], needle: &[u8], w: usize) -> bool {
    let w = w.min(needle.len());
    needle
        .windows(w)
        .step_by((w / 2).max(1))
        .any(|win| memchr::memmem::find(hay, win).is_some())
}
