//! The daemon end to end: the release `arclockd` binary on its own SoftHSM2
//! token and SQLite store, driven over TLS on loopback by concurrent clients.
//! Reports verifications/s with p50/p95/p99 at 1, 4 and 16 clients next to the
//! raw face pipeline on the same photo (goal: daemon p50 at 1 client <= 1.2x
//! the pipeline), refresh-token rotations/s, the daemon's RSS, and the timing
//! of an unknown account next to a wrong face (enumeration parity).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arclock_face::{Threads, Workspace};
use base64::Engine;
use serde_json::{Value, json};

use crate::report::{Report, Samples, num};

/// The daemon under test; killed on drop.
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
    fn start(root: &Path, dir: &Path) -> Result<Self> {
        let bin = std::env::current_exe()?.with_file_name("arclockd");
        if !bin.exists() {
            bail!(
                "{} is missing: build it with `cargo build --release -p arclockd`",
                bin.display()
            );
        }
        let p = |s: &str| dir.join(s);
        let state = root.join("var");
        let command = || {
            let mut c = Command::new(&bin);
            c.current_dir(root)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("SOFTHSM2_CONF", p("softhsm2.conf"))
                .env("ARCLOCK_CONFIG", root.join("config/arclockd.toml"))
                .env("ARCLOCK_SERVER_LISTEN", "127.0.0.1:0")
                .env("ARCLOCK_SERVER_TLS_CERT", p("tls/cert.pem"))
                .env("ARCLOCK_SERVER_TLS_KEY", p("tls/key.pem"))
                .env("ARCLOCK_HSM_PIN_FILE", p("hsm/user.pin"))
                .env("ARCLOCK_HSM_SO_PIN_FILE", p("hsm/so.pin"))
                .env("ARCLOCK_HSM_JWT_KEY_BITS", "2048")
                .env("ARCLOCK_STORE_PATH", p("arclock.db"))
                .env("ARCLOCK_ADMIN_SOCKET", p("admin.sock"))
                .env("ARCLOCK_ALLOW_ROOT", "1")
                .env("ARCLOCK_MODELS_DIR", state.join("models"))
                .env(
                    "ARCLOCK_MODELS_RUNTIME",
                    state.join("opt/onnxruntime-1.32.0/libonnxruntime.so.1.32.0"),
                )
                .env("ARCLOCK_LIMITS_GENERAL", "0")
                .env("ARCLOCK_LIMITS_AUTH", "0")
                .env("ARCLOCK_LIMITS_HEALTH", "0")
                .env("ARCLOCK_AUTH_MAX_FAILURES", "1000000")
                .env("ARCLOCK_AUTH_MAX_FAILURES_PER_ADDRESS", "1000000")
                .env("ARCLOCK_LOG_LEVEL", "warn");
            c
        };
        let out = command().arg("provision").output()?;
        if !out.status.success() {
            bail!("provision failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut child = command()
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("daemon stdout")?;
        let mut url = None;
        for line in BufReader::new(stdout).lines() {
            if let Some(u) = line?.strip_prefix("arclockd listening on ") {
                url = Some(u.replace("127.0.0.1", "localhost"));
                break;
            }
        }
        let url = url.context("arclockd did not start")?;
        let cert = std::fs::read(p("tls/cert.pem"))?;
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert)?)
            .tls_built_in_root_certs(false)
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Daemon { child, url, client })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let r = self
            .client
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.json().await?))
    }

    /// (current, peak) resident memory of the daemon, MiB.
    fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// `clients` tasks each repeating `body` against `path` for `dur`; latencies
/// of the requests that got `want`, and how many got something else.
async fn load(
    d: &Arc<Daemon>,
    clients: usize,
    dur: Duration,
    path: &'static str,
    body: Arc<Value>,
    want: u16,
) -> Result<(Samples, usize, Duration)> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (d, body) = (Arc::clone(d), Arc::clone(&body));
        tasks.push(tokio::spawn(async move {
            let (mut s, mut bad) = (Samples::default(), 0usize);
            while start.elapsed() < dur {
                let t = Instant::now();
                match d.post(path, &body).await {
                    Ok((status, _)) if status == want => s.push(t.elapsed()),
                    _ => bad += 1,
                }
            }
            (s, bad)
        }));
    }
    let (mut all, mut bad) = (Samples::default(), 0);
    for t in tasks {
        let (s, b) = t.await?;
        all.extend(s);
        bad += b;
    }
    Ok((all, bad, start.elapsed()))
}

pub async fn run(report: &mut Report, root: &Path, faces: &Path, dur: Duration) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let photo = |name: &str, n: u32| {
        std::fs::read(faces.join(format!("lfw-dev/{name}/{name}_{n:04}.jpg")))
            .with_context(|| format!("photo {name} {n}"))
    };
    let enrol = photo("Aaron_Peirsol", 1)?;
    let probe = photo("Aaron_Peirsol", 2)?;
    let stranger = photo("Adam_Sandler", 1)?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);

    // The raw pipeline on the login photo, in this process: one worker, one
    // intra-op thread, as the daemon runs each of its workers.
    let raw = {
        // With passive PAD, as the daemon's default configuration runs it.
        let pipeline = crate::face::pipeline(
            root,
            Threads {
                workers: 1,
                intra: 1,
            },
        )?
        .with_pad(true);
        let mut ws = Workspace::new()?;
        let mut s = Samples::default();
        for i in 0..60 {
            let t = Instant::now();
            pipeline.run(&mut ws, &probe, None)?;
            if i >= 10 {
                s.push(t.elapsed());
            }
        }
        s
    };

    let d = Arc::new(Daemon::start(root, dir.path())?);
    let (idle_rss, _) = d.rss_mib();
    let (status, body) = d
        .post(
            "/api/auth/register",
            &json!({"name": "Bench", "email": "bench@example.org", "imageBase64": b64(&enrol)}),
        )
        .await?;
    if status != 201 {
        bail!("registration failed: {status} {body}");
    }
    let verify = Arc::new(json!({"email": "bench@example.org", "imageBase64": b64(&probe)}));
    // Warm-up: every worker's sessions, the HSM pool, TLS sessions.
    load(
        &d,
        2,
        Duration::from_millis(500),
        "/api/auth/verify-face",
        Arc::clone(&verify),
        200,
    )
    .await?;

    report.table(
        "Daemon end to end (verify-face over TLS on loopback, release arclockd)",
        &format!(
            "Each client repeats POST /api/auth/verify-face (LFW 250x250 JPEG as base64, the \
             right face) for {:.0} s on its own connection pool; latency is request to \
             parsed answer. The daemon runs its default {} face worker(s), 1 intra-op thread \
             each, SoftHSM2 and SQLite, passive PAD on (the default); the clients share the \
             same 2 cores. `raw pipeline` is the same photo through `Pipeline::run` with PAD \
             in this process (1 worker, 1 thread).",
            dur.as_secs_f64(),
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
        &[
            "clients",
            "requests/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "errors",
        ],
    );
    report.row(&[
        "raw pipeline".into(),
        num(1e3 / raw.median_ms()),
        num(raw.median_ms()),
        num(raw.p95_ms()),
        num(raw.quantile_ms(0.99)),
        "0".into(),
    ]);
    let mut p50_at_1 = f64::NAN;
    for clients in [1, 4, 16] {
        let (s, bad, took) = load(
            &d,
            clients,
            dur,
            "/api/auth/verify-face",
            Arc::clone(&verify),
            200,
        )
        .await?;
        if clients == 1 {
            p50_at_1 = s.median_ms();
        }
        report.row(&[
            clients.to_string(),
            num(s.len() as f64 / took.as_secs_f64()),
            num(s.median_ms()),
            num(s.p95_ms()),
            num(s.quantile_ms(0.99)),
            bad.to_string(),
        ]);
    }
    // Active liveness: a challenge, then one frame per step (3-step
    // challenges recorded; others answered but not counted).
    let live = |n: u32| photo("Amanda_Bynes", n);
    let (status, body) = d
        .post(
            "/api/auth/register",
            &json!({"name": "Live", "email": "live@example.org", "imageBase64": b64(&live(3)?)}),
        )
        .await?;
    if status != 201 {
        bail!("registration for the liveness run failed: {status} {body}");
    }
    let turned = live(4)?; // nose toward the image's right; its mirror: left
    let mirrored = {
        let img = image::load_from_memory(&turned)?.to_rgb8();
        let mut out = std::io::Cursor::new(Vec::new());
        image::imageops::flip_horizontal(&img).write_to(&mut out, image::ImageFormat::Jpeg)?;
        out.into_inner()
    };
    let frames = [
        ("front", b64(&live(2)?)),
        ("right", b64(&turned)),
        ("left", b64(&mirrored)),
    ];
    let (mut active, mut active_bad) = (Samples::default(), 0usize);
    let start = Instant::now();
    while start.elapsed() < dur * 2 {
        let t = Instant::now();
        let (status, c) = d
            .post("/api/auth/challenge", &json!({"email": "live@example.org"}))
            .await?;
        if status != 200 {
            active_bad += 1;
            continue;
        }
        let steps: Vec<&str> = c["data"]["steps"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        let answer: Vec<&String> = steps
            .iter()
            .filter_map(|s| frames.iter().find(|(k, _)| k == s).map(|(_, v)| v))
            .collect();
        let (status, _) = d
            .post(
                "/api/auth/login",
                &json!({"email": "live@example.org", "challengeId": c["data"]["challengeId"], "frames": answer}),
            )
            .await?;
        match (status, steps.len()) {
            (200, 3) => active.push(t.elapsed()),
            (200, _) => {}
            _ => active_bad += 1,
        }
    }
    report.row(&[
        "1, active: challenge + 3 frames".into(),
        num(active.len() as f64 / start.elapsed().as_secs_f64()),
        num(active.median_ms()),
        num(active.p95_ms()),
        num(active.quantile_ms(0.99)),
        active_bad.to_string(),
    ]);
    report.end_table();
    let (rss, peak) = d.rss_mib();
    report.para(&format!(
        "A 3-frame active sign-in (challenge request plus answer) at 1 client = **{}x** the \
         single-photo p50 (goal <= 2.2x; both with passive PAD, the frames embedded in \
         parallel on the face workers).",
        num(active.median_ms() / p50_at_1)
    ));
    report.para(&format!(
        "Daemon p50 at 1 client = **{}x** the raw pipeline median (goal <= 1.2x). \
         Daemon RSS: {} MiB idle after start, {} MiB after the load, {} MiB peak.",
        num(p50_at_1 / raw.median_ms()),
        num(idle_rss),
        num(rss),
        num(peak)
    ));

    // Refresh-token rotation: each client chains its own session.
    report.table(
        "Refresh-token rotation",
        &format!(
            "Each client holds its own session and rotates its refresh token for {:.0} s \
             (CAS in SQLite + an RS256 signature in SoftHSM2 per request).",
            dur.as_secs_f64()
        ),
        &["clients", "rotations/s", "p50 ms", "p95 ms", "p99 ms"],
    );
    for clients in [1, 4] {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let d = Arc::clone(&d);
            let verify = Arc::clone(&verify);
            tasks.push(tokio::spawn(async move {
                let (_, body) = d.post("/api/auth/login", &verify).await?;
                let mut token = body["data"]["tokens"]["refreshToken"]
                    .as_str()
                    .context("no refresh token")?
                    .to_string();
                let mut s = Samples::default();
                while start.elapsed() < dur {
                    let t = Instant::now();
                    let (status, body) = d
                        .post("/api/auth/refresh-token", &json!({"refreshToken": token}))
                        .await?;
                    if status != 200 {
                        bail!("refresh failed: {status} {body}");
                    }
                    s.push(t.elapsed());
                    token = body["data"]["tokens"]["refreshToken"]
                        .as_str()
                        .context("no refresh token")?
                        .to_string();
                }
                anyhow::Ok(s)
            }));
        }
        let mut all = Samples::default();
        for t in tasks {
            all.extend(t.await??);
        }
        let took = start.elapsed().as_secs_f64();
        report.row(&[
            clients.to_string(),
            num(all.len() as f64 / took),
            num(all.median_ms()),
            num(all.p95_ms()),
            num(all.quantile_ms(0.99)),
        ]);
    }
    report.end_table();

    // Enumeration parity: an unknown e-mail against a wrong face, interleaved.
    let wrong = json!({"email": "bench@example.org", "imageBase64": b64(&stranger)});
    let unknown = json!({"email": "nobody@example.org", "imageBase64": b64(&stranger)});
    let (mut sw, mut su) = (Samples::default(), Samples::default());
    for i in 0..120 {
        for (body, s) in [(&wrong, &mut sw), (&unknown, &mut su)] {
            let t = Instant::now();
            let (status, _) = d.post("/api/auth/login", body).await?;
            if status != 401 {
                bail!("expected 401, got {status}");
            }
            if i >= 20 {
                s.push(t.elapsed());
            }
        }
    }
    report.table(
        "Enumeration parity (POST /api/auth/login, 401 either way)",
        "100 interleaved pairs after 20 warm-up pairs, one client, the same stranger's photo.",
        &["case", "p50 ms", "p95 ms"],
    );
    report.row(&[
        "wrong face, known account".into(),
        num(sw.median_ms()),
        num(sw.p95_ms()),
    ]);
    report.row(&[
        "unknown account".into(),
        num(su.median_ms()),
        num(su.p95_ms()),
    ]);
    report.end_table();
    report.para(&format!(
        "Unknown account p50 = **{}x** the wrong-face p50 (1.0 = indistinguishable by median).",
        num(su.median_ms() / sw.median_ms())
    ));
    Ok(())
}
