//! The browser reference client (`/app/`) in a real browser: Debian's
//! headless Chromium, driven by `chromedriver` over the W3C WebDriver
//! protocol, with a fake camera playing a y4m built from LFW photos.
//!
//! One person enrols through the page, signs in through the liveness
//! challenge, sees the activity log, renames, keeps working after the access
//! token expired, is signed out cleanly when a stolen refresh token is
//! replayed, and deletes the account; a second browser whose camera shows a
//! flat photo turned left and right is refused, with the page saying so.
//! The same run proves the page sent nothing anywhere but the daemon and
//! stored nothing in Web Storage, IndexedDB, the Cache API or cookies.
//! Screenshots of each screen go to `target/tmp/browser-screens/` (the test
//! prints the path).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, Instance, lfw};
use image::RgbImage;
use serde_json::{Value, json};

const PERSON: &str = "Amanda_Bynes";
/// Enrolment photo, frontal frame and a frame turned toward the image's
/// right edge (measured by `arclock-face embed`, as in `liveness.rs`).
const ENROL: u32 = 3;
const FRONT: u32 = 2;
const TURNED_RIGHT: u32 = 4;
const EMAIL: &str = "amanda.browser@example.org";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Access tokens live this long here, so that the session outlives several.
const ACCESS_TTL: &str = "4";

/// What the fake camera shows, block after block, in a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pose {
    Enrol,
    Front,
    /// Nose toward the image's left edge: the API's `left`.
    Left,
    Right,
}

/// A camera recording: each pose held for `HOLD` frames at 10 frames/s.
struct Video {
    path: PathBuf,
    /// Each pose's 16x16 grey thumbnail, to tell which one is on screen.
    thumbs: Vec<(Pose, Vec<f32>)>,
}

const HOLD: usize = 20;
const THUMB: u32 = 16;

fn decode(bytes: &[u8]) -> RgbImage {
    image::load_from_memory(bytes).unwrap().to_rgb8()
}

fn thumb(img: &RgbImage) -> Vec<f32> {
    let small = image::imageops::resize(img, THUMB, THUMB, image::imageops::FilterType::Triangle);
    small
        .pixels()
        .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
        .collect()
}

/// Writes `poses` as a YUV4MPEG2 4:2:0 file (what Chromium's fake capture reads).
fn y4m(path: &Path, poses: &[(Pose, RgbImage)]) -> Video {
    let (w, h) = poses[0].1.dimensions();
    assert!(w % 2 == 0 && h % 2 == 0);
    let mut out = format!("YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n").into_bytes();
    for (_, img) in poses {
        let mut y = Vec::with_capacity((w * h) as usize);
        let mut u = Vec::new();
        let mut v = Vec::new();
        for p in img.pixels() {
            let [r, g, b] = p.0.map(f32::from);
            y.push(
                (0.299 * r + 0.587 * g + 0.114 * b)
                    .round()
                    .clamp(0.0, 255.0) as u8,
            );
        }
        for cy in (0..h).step_by(2) {
            for cx in (0..w).step_by(2) {
                let mut acc = [0f32; 3];
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let p = img.get_pixel(cx + dx, cy + dy);
                    for c in 0..3 {
                        acc[c] += p[c] as f32 / 4.0;
                    }
                }
                let [r, g, b] = acc;
                u.push(
                    (-0.168_736 * r - 0.331_264 * g + 0.5 * b + 128.0)
                        .round()
                        .clamp(0.0, 255.0) as u8,
                );
                v.push(
                    (0.5 * r - 0.418_688 * g - 0.081_312 * b + 128.0)
                        .round()
                        .clamp(0.0, 255.0) as u8,
                );
            }
        }
        for _ in 0..HOLD {
            out.extend_from_slice(b"FRAME\n");
            out.extend_from_slice(&y);
            out.extend_from_slice(&u);
            out.extend_from_slice(&v);
        }
    }
    std::fs::write(path, out).unwrap();
    Video {
        path: path.to_path_buf(),
        thumbs: poses.iter().map(|(p, img)| (*p, thumb(img))).collect(),
    }
}

/// A live person: enrolment photo, then front, turned right, turned left.
fn live_video(dir: &Path) -> Video {
    let turned = decode(&lfw(PERSON, TURNED_RIGHT));
    y4m(
        &dir.join("live.y4m"),
        &[
            (Pose::Enrol, decode(&lfw(PERSON, ENROL))),
            (Pose::Front, decode(&lfw(PERSON, FRONT))),
            (Pose::Right, turned.clone()),
            (Pose::Left, image::imageops::flip_horizontal(&turned)),
        ],
    )
}

/// The attack: one photo of the user, held up and turned 35 degrees each way.
fn attack_video(dir: &Path) -> Video {
    let photo = decode(&lfw(PERSON, FRONT));
    let deg = std::f32::consts::PI / 180.0;
    let warp = |yaw: f32| {
        arclock_face::liveness::eval::warp_flat(&photo, yaw * deg, 0.0, 1.0, [0.0, 0.0], 250.0)
    };
    y4m(
        &dir.join("attack.y4m"),
        &[
            (Pose::Front, photo.clone()),
            (Pose::Left, warp(35.0)),
            (Pose::Right, warp(-35.0)),
        ],
    )
}

// --- a minimal W3C WebDriver client ----------------------------------------

/// `chromedriver` and one browser session. The protocol needs eight
/// commands here, plus chromedriver's performance log (which generic
/// WebDriver crates do not expose), so it is spoken directly.
struct Browser {
    http: reqwest::Client,
    base: String,
    driver: Child,
    screens: PathBuf,
    profile: tempfile::TempDir,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    async fn launch(video: &Video, screens: &Path) -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: `make setup` installs chromium and chromium-driver"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Its own process group: the browser's processes go with it on drop.
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let up = Instant::now();
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(
                up.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser {
            http,
            base,
            driver,
            screens: screens.to_path_buf(),
            profile,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // The daemon's self-signed development certificate.
            "acceptInsecureCerts": true,
            "goog:loggingPrefs": {"performance": "ALL", "browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream",
                    format!("--use-file-for-fake-video-capture={}", video.path.display()),
                    format!("--user-data-dir={}", b.profile.path().display()),
                    // A phone-sized window: the layout is checked there.
                    "--window-size=412,915",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-default-apps",
                ],
            },
        }}});
        let r = b
            .http
            .post(format!("{}/session", b.base))
            .json(&caps)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        b.base = format!("{}/session/{id}", b.base);
        b
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !body.is_null() {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {v}");
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, body).await
    }

    async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css}: {v}"))
            .to_string()
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{e}/click"), json!({})).await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{e}/clear"), json!({})).await;
        self.post(&format!("/element/{e}/value"), json!({"text": text}))
            .await;
    }

    async fn js(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    async fn js_async(&self, script: &str) -> Value {
        self.post("/execute/async", json!({"script": script, "args": []}))
            .await
    }

    async fn text(&self, css: &str) -> String {
        self.js(&format!(
            "const e = document.querySelector({css:?}); return e ? e.textContent : null;"
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Waits (up to `secs`) for `css` to be a visible section or element.
    async fn visible(&self, css: &str, secs: u64) {
        let script = format!(
            "const e = document.querySelector({css:?}); return !!e && e.checkVisibility();"
        );
        let start = Instant::now();
        while self.js(&script).await != json!(true) {
            if start.elapsed() > Duration::from_secs(secs) {
                let alert = self.text("#alert").await;
                let notice = self.text("#notice").await;
                self.screenshot("timeout").await;
                panic!("{css} not visible after {secs} s; alert: {alert:?}; notice: {notice:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (up to `secs`) until the text of `css` satisfies `done`; the
    /// page's alert names what went wrong if it never does.
    async fn text_until(&self, css: &str, secs: u64, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let text = self.text(css).await;
            if done(&text) {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "{css} still {text:?} after {secs} s; alert: {:?}",
                self.text("#alert").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let png = self
            .cmd(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(self.screens.join(format!("{name}.png")), bytes).unwrap();
    }

    /// Which pose the page's camera preview shows now (nearest thumbnail).
    async fn pose_on_screen(&self, video: &Video) -> Option<Pose> {
        let grey = self
            .js(&format!(
                "const v = document.getElementById('video');
                 if (!v || !v.videoWidth) return null;
                 const c = document.createElement('canvas'); c.width = {THUMB}; c.height = {THUMB};
                 const g = c.getContext('2d'); g.drawImage(v, 0, 0, {THUMB}, {THUMB});
                 const d = g.getImageData(0, 0, {THUMB}, {THUMB}).data; const out = [];
                 for (let i = 0; i < d.length; i += 4) out.push(0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]);
                 return out;"
            ))
            .await;
        let grey: Vec<f32> = grey
            .as_array()?
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        video
            .thumbs
            .iter()
            .map(|(p, t)| {
                let d: f32 = t.iter().zip(&grey).map(|(a, b)| (a - b).abs()).sum();
                (*p, d)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(p, _)| p)
    }

    /// Presses "Capture" as soon as the camera starts showing `pose` (the
    /// start of its block, so the whole hold is ahead).
    async fn capture(&self, video: &Video, pose: Pose) {
        let start = Instant::now();
        let mut before = self.pose_on_screen(video).await;
        loop {
            let now = self.pose_on_screen(video).await;
            if now == Some(pose) && before.is_some() && before != Some(pose) {
                break;
            }
            before = now;
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{pose:?} never shown"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.click("#capture").await;
    }

    /// Answers the challenge the page shows, step by step, reading each
    /// instruction from the page (so a wrong instruction fails the sign-in).
    async fn answer_challenge(&self, video: &Video, name: &str) {
        self.visible("#steps", 20).await;
        let steps = self
            .js("return [...document.querySelectorAll('#steps li')].map(l => l.textContent);")
            .await;
        let steps: Vec<String> = serde_json::from_value(steps).unwrap();
        for (i, label) in steps.iter().enumerate() {
            let pose = match label.as_str() {
                "Straight" => Pose::Front,
                // The user's own right: the nose toward the image's left edge.
                "Turn right" => Pose::Left,
                "Turn left" => Pose::Right,
                other => panic!("unknown step label {other:?}"),
            };
            let want = format!("Step {} of {}", i + 1, steps.len());
            self.text_until("#instruction", 10, |t| t.starts_with(&want))
                .await;
            if i == 1 {
                self.screenshot(name).await;
            }
            self.capture(video, pose).await;
        }
    }

    /// What the page keeps in the browser: must be nothing.
    async fn stored(&self) -> Value {
        self.js_async(
            "const done = arguments[arguments.length - 1];
             (async () => ({
               local: localStorage.length,
               session: sessionStorage.length,
               indexedDB: (await indexedDB.databases()).length,
               caches: (await caches.keys()).length,
               cookies: document.cookie,
               serviceWorkers: (await navigator.serviceWorker.getRegistrations()).length,
             }))().then(done, e => done(String(e)));",
        )
        .await
    }

    /// Files of the browser profile (disk cache, storage, ...) that hold a
    /// JPEG or a frame's part name: must be none.
    fn profile_files_with_frames(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if let Ok(bytes) = std::fs::read(&p) {
                    let hit = [&b"JFIF\0"[..], b"Exif\0\0", b"frame-1.jpg", b"face.jpg"]
                        .iter()
                        .any(|n| bytes.windows(n.len()).any(|w| w == *n));
                    if hit {
                        out.push(p);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(self.profile.path(), &mut out);
        out
    }

    /// Every request the page made (chromedriver's performance log): method,
    /// URL and the JSON body if one was logged.
    async fn requests(&self) -> Vec<Request> {
        let log = self.post("/se/log", json!({"type": "performance"})).await;
        let mut out = Vec::new();
        for entry in log.as_array().unwrap() {
            let msg: Value = serde_json::from_str(entry["message"].as_str().unwrap()).unwrap();
            let m = &msg["message"];
            match m["method"].as_str() {
                Some("Network.requestWillBeSent") => {
                    let r = &m["params"]["request"];
                    out.push(Request {
                        method: r["method"].as_str().unwrap_or("").to_string(),
                        url: r["url"].as_str().unwrap_or("").to_string(),
                        body: r["postData"].as_str().map(str::to_string),
                        document: m["params"]["documentURL"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                    });
                }
                Some("Network.webSocketCreated") => out.push(Request {
                    method: "WEBSOCKET".into(),
                    url: m["params"]["url"].as_str().unwrap_or("").to_string(),
                    body: None,
                    document: String::new(),
                }),
                _ => {}
            }
        }
        out
    }
}

impl Drop for Browser {
    /// Ends chromedriver and every browser process it started (a killed
    /// chromedriver alone would leave Chromium's dozens of processes behind).
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

/// One request of the browser's network log.
struct Request {
    method: String,
    url: String,
    /// The body, when Chromium logged it (JSON bodies; not multipart files).
    body: Option<String>,
    /// The document that made it.
    document: String,
}

/// Only the daemon's origin was contacted (no CDN, no telemetry, no
/// beacon). What the browser's own `chrome://` pages (the first tab, before
/// the test navigates) load from inside the browser is not the client's and
/// is left out; anything of theirs that reaches the network is not.
fn assert_only_daemon(requests: &[Request], origin: &str) {
    let ours = |r: &&Request| {
        let network = ["http:", "https:", "ws:", "wss:"]
            .iter()
            .any(|p| r.url.starts_with(p));
        network || !r.document.starts_with("chrome://")
    };
    let mine: Vec<&Request> = requests.iter().filter(ours).collect();
    assert!(mine.len() > 5, "{} requests", mine.len());
    for r in mine {
        assert!(
            r.url.starts_with(&format!("{origin}/")),
            "the page contacted {} {} (from {})",
            r.method,
            r.url,
            r.document
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_enrols_signs_in_and_leaves_through_the_browser() {
    let inst = Instance::new();
    inst.provision();
    let d: Daemon = inst.start_with(&[("ARCLOCK_AUTH_ACCESS_TTL_SECS", ACCESS_TTL)]);
    let origin = d.url.clone();
    let screens = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-screens");
    std::fs::create_dir_all(&screens).unwrap();
    eprintln!("screenshots: {}", screens.display());
    let videos = tempfile::tempdir().unwrap();
    let live = live_video(videos.path());

    // The page's headers: its own narrow policy, the camera for it alone.
    let r = d.client.get(format!("{origin}/app/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("connect-src 'self'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(
        r.headers()["permissions-policy"]
            .to_str()
            .unwrap()
            .split(',')
            .next(),
        Some("camera=(self)")
    );
    let (_, api_headers, _, _) = d.get("/health").await;
    assert!(
        api_headers["permissions-policy"]
            .to_str()
            .unwrap()
            .contains("camera=()")
    );
    assert!(
        api_headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );

    let b = Browser::launch(&live, &screens).await;
    b.goto(&format!("{origin}/app/")).await;
    b.visible("#welcome", 20).await;
    b.screenshot("1-welcome").await;
    // Every field has a label, every button a name, the page a language.
    let a11y = b
        .js("return {
              unlabelled: [...document.querySelectorAll('input')].filter(e => !e.labels.length).map(e => e.id),
              nameless: [...document.querySelectorAll('button')].filter(e => !e.textContent.trim()).map(e => e.id),
              lang: document.documentElement.lang };")
        .await;
    assert_eq!(
        a11y,
        json!({"unlabelled": [], "nameless": [], "lang": "en"})
    );

    // Enrol through the page.
    b.click("#to-register").await;
    b.type_into("#reg-name", "Amanda").await;
    b.type_into("#reg-email", EMAIL).await;
    b.click("#register-form button[type=submit]").await;
    b.visible("#camera", 20).await;
    b.capture(&live, Pose::Enrol).await;
    b.screenshot("2-register-camera").await;
    b.visible("#dashboard", 60).await;
    assert!(b.text("#result").await.starts_with("Account created"));
    b.click("#nav-signout").await;
    b.visible("#welcome", 20).await;
    assert_eq!(b.text("#notice").await, "Signed out.");

    // Sign in through the liveness challenge (the form sent with the
    // keyboard: Enter in the field).
    b.type_into("#signin-email", &format!("{EMAIL}\u{E007}"))
        .await;
    b.answer_challenge(&live, "3-challenge").await;
    b.visible("#dashboard", 60).await;
    let result = b.text("#result").await;
    assert!(
        result.starts_with("Signed in: live face confirmed. Face match: 0."),
        "{result}"
    );
    assert_eq!(b.text("#dashboard-title").await, "Welcome, Amanda");
    let activity = b.text("#activity").await;
    assert!(
        activity.contains("Sign-in") && activity.contains("success"),
        "{activity}"
    );
    b.screenshot("4-dashboard").await;

    // The access token expires mid-session: renaming still works (one
    // rotation, then the request again).
    tokio::time::sleep(Duration::from_secs(5)).await;
    b.click("#nav-profile").await;
    b.visible("#profile", 10).await;
    b.type_into("#profile-name", "Amanda B.").await;
    b.click("#rename-form button[type=submit]").await;
    b.text_until("#notice", 10, |t| t == "Name saved: Amanda B.")
        .await;
    b.screenshot("5-profile").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    b.click("#nav-dashboard").await;
    b.visible("#dashboard", 10).await;
    b.text_until("#dashboard-title", 10, |t| t == "Welcome, Amanda B.")
        .await;
    assert!(b.js("return document.getElementById('alert').hidden").await == json!(true));
    let requests = b.requests().await;
    let rotations: Vec<&String> = requests
        .iter()
        .filter(|r| r.method == "POST" && r.url.ends_with("/api/auth/refresh-token"))
        .filter_map(|r| r.body.as_ref())
        .collect();
    assert!(
        rotations.len() >= 2,
        "expected a rotation per expiry: {rotations:?}"
    );

    // A stolen, already rotated refresh token is replayed by someone else:
    // the server revokes the family, and the page signs out cleanly.
    let stolen: Value = serde_json::from_str(rotations[0]).unwrap();
    let (s, body) = d.post("/api/auth/refresh-token", &stolen).await;
    assert_eq!(s, 401, "{body}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    b.click("#refresh-dashboard").await;
    b.visible("#welcome", 10).await;
    assert!(b.text("#notice").await.starts_with("Your session ended"));
    assert!(b.js("return document.getElementById('nav').hidden").await == json!(true));

    // The attack: a flat photo turned in front of the camera, in another browser.
    let attack = attack_video(videos.path());
    let a = Browser::launch(&attack, &screens).await;
    a.goto(&format!("{origin}/app/")).await;
    a.visible("#welcome", 20).await;
    a.type_into("#signin-email", EMAIL).await;
    a.click("#signin-form button[type=submit]").await;
    a.answer_challenge(&attack, "6-attack-challenge").await;
    a.visible("#refused", 60).await;
    // A turned print is refused as a pose it cannot make (422), as a face
    // the detector cannot use at that angle (422), or as an attack (401, the
    // same words as a wrong face); whichever, the page says the sign-in did
    // not happen and why.
    let said = a.text("#refused-message").await;
    assert!(
        [
            "Step ",
            "Sign-in refused",
            "The camera did not see a live face",
            "The picture could not be used",
        ]
        .iter()
        .any(|p| said.starts_with(p)),
        "{said}"
    );
    assert_eq!(a.text("#refused-title").await, "Not signed in");
    assert!(a.js("return document.getElementById('nav').hidden").await == json!(true));
    a.screenshot("7-refused").await;
    assert_only_daemon(&a.requests().await, &origin);
    assert_eq!(
        a.stored().await,
        json!({"local": 0, "session": 0, "indexedDB": 0, "caches": 0, "cookies": "", "serviceWorkers": 0})
    );
    drop(a);

    // Back to the person: sign in, see the failed attempt, delete the account.
    b.type_into("#signin-email", EMAIL).await;
    b.click("#signin-form button[type=submit]").await;
    b.answer_challenge(&live, "8-challenge-again").await;
    b.visible("#dashboard", 60).await;
    b.text_until("#failures", 10, |t| {
        !t.is_empty() && !t.contains("No failed attempts")
    })
    .await;
    b.click("#nav-profile").await;
    b.visible("#profile", 10).await;
    b.click("#delete-open").await;
    b.visible("#delete-dialog", 5).await;
    b.screenshot("9-delete-confirm").await;
    b.click("#delete-confirm").await;
    b.visible("#welcome", 10).await;
    assert!(
        b.text("#notice")
            .await
            .starts_with("Your account, face template and keys were deleted")
    );
    let admin = arclock_console::Client::new(inst.path("admin.sock"));
    assert!(
        admin.users(10).await.unwrap().is_empty(),
        "the account is gone"
    );

    // Frames went nowhere but the daemon, and only in the requests that
    // take them; nothing is kept in the browser.
    let requests = b.requests().await;
    assert_only_daemon(&requests, &origin);
    let posts: Vec<&str> = requests
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.url.trim_start_matches(origin.as_str()))
        .collect();
    for p in &posts {
        assert!(
            [
                "/api/auth/register",
                "/api/auth/challenge",
                "/api/auth/login",
                "/api/auth/refresh-token",
                "/api/auth/logout"
            ]
            .contains(p),
            "{p}"
        );
    }
    assert_eq!(
        b.stored().await,
        json!({"local": 0, "session": 0, "indexedDB": 0, "caches": 0, "cookies": "", "serviceWorkers": 0})
    );
    assert_eq!(b.profile_files_with_frames(), Vec::<PathBuf>::new());
}

/// `[app] enabled = false`: no client, the API as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_can_be_switched_off() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start_with(&[("ARCLOCK_APP_ENABLED", "false")]);
    for path in ["/app/", "/app/app.js", "/app"] {
        let r = d
            .client
            .get(format!("{}{path}", d.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let (s, _, _, _) = d.get("/health").await;
    assert_eq!(s, 200);
}
