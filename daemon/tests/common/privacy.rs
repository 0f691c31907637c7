//! The privacy proof, shared by `privacy.rs` (embedded store) and
//! `privacy_mongodb.rs` (MongoDB backend). Two test binaries, because SoftHSM2
//! reads `SOFTHSM2_CONF` once per process and each run has its own token.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::common::{self, Instance, people};
use arclockd::store::{EmbeddedStore, MongoStore, Store};
use base64::Engine;
use serde_json::json;

/// Polynomial rolling hash of every `len`-byte window.
pub struct Windows {
    len: usize,
    /// Hash of a window -> (needle, offset) pairs that have it.
    table: HashMap<u64, Vec<(usize, usize)>>,
    needles: Vec<(String, Vec<u8>)>,
}

const BASE: u64 = 0x100_0000_01b3;

impl Windows {
    fn new(len: usize) -> Self {
        Windows {
            len,
            table: HashMap::new(),
            needles: Vec::new(),
        }
    }

    fn hashes(data: &[u8], len: usize) -> impl Iterator<Item = (usize, u64)> + '_ {
        let top = (0..len - 1).fold(1u64, |a, _| a.wrapping_mul(BASE));
        let mut h = 0u64;
        (0..data.len()).filter_map(move |i| {
            if i >= len {
                h = h.wrapping_sub(u64::from(data[i - len]).wrapping_mul(top));
            }
            h = h.wrapping_mul(BASE).wrapping_add(u64::from(data[i]));
            (i + 1 >= len).then(|| (i + 1 - len, h))
        })
    }

    /// Every window of `bytes` becomes something to look for.
    fn add(&mut self, what: String, bytes: Vec<u8>) {
        if bytes.len() < self.len {
            return;
        }
        let id = self.needles.len();
        for (off, h) in Self::hashes(&bytes, self.len) {
            self.table.entry(h).or_default().push((id, off));
        }
        self.needles.push((what, bytes));
    }

    /// The first needle window found in `hay`, if any.
    fn find(&self, hay: &[u8]) -> Option<(String, usize)> {
        if hay.len() < self.len {
            return None;
        }
        for (at, h) in Self::hashes(hay, self.len) {
            for &(id, off) in self.table.get(&h).into_iter().flatten() {
                let needle = &self.needles[id].1[off..off + self.len];
                if needle == &hay[at..at + self.len] {
                    return Some((self.needles[id].0.clone(), at));
                }
            }
        }
        None
    }
}

/// Every regular file under `dir`, with its contents.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

/// `/proc/<pid>/smaps`: memory mappings marked MADV_DONTDUMP (`dd`) and how
/// many of them are also locked (`lo`).
pub fn dontdump_mappings(pid: u32) -> (usize, usize) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let flags: Vec<&str> = smaps
        .lines()
        .filter_map(|l| l.strip_prefix("VmFlags:"))
        .collect();
    // The kernel's own [vvar] pages are non-dumpable special mappings
    // (VM_IO | VM_PFNMAP: `io`, `pf`), not memory anyone can lock.
    let dd: Vec<&&str> = flags
        .iter()
        .filter(|f| {
            let has = |x: &str| f.split_whitespace().any(|y| y == x);
            has("dd") && !has("io") && !has("pf")
        })
        .collect();
    let locked = dd
        .iter()
        .filter(|f| f.split_whitespace().any(|x| x == "lo"))
        .count();
    (dd.len(), locked)
}

/// Where the daemon keeps its data in one run of the proof.
pub enum Backend {
    Embedded,
    /// Connection string and a database of this run's own.
    Mongo {
        uri: String,
        database: String,
    },
}

pub async fn prove(backend: Backend) {
    let inst = Instance::new();
    inst.provision();
    let uri_file = inst.path("mongodb.uri");
    let uri_file = uri_file.to_string_lossy();
    let mut env = vec![
        ("ARCLOCK_LOG_LEVEL", "trace"),
        ("ARCLOCK_LOG_FORMAT", "json"),
    ];
    if let Backend::Mongo { uri, database } = &backend {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&*uri_file, uri).unwrap();
        std::fs::set_permissions(&*uri_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        env.extend([
            ("ARCLOCK_STORE_BACKEND", "mongodb"),
            ("ARCLOCK_STORE_MONGODB_URI_FILE", &uri_file),
            ("ARCLOCK_STORE_MONGODB_DATABASE", database),
        ]);
    }
    let mut d = inst.start_with(&env);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut photos = Windows::new(64);
    let names = people(6);
    assert_eq!(names.len(), 6, "not enough people in ../shared/faces");
    let (mut enrolled, mut accepted) = (0, 0);
    for (i, p) in names.iter().enumerate() {
        let email = format!("person{i}@example.org");
        let first = common::lfw(p, 1);
        let second = common::lfw(p, 2);
        let r = if i % 2 == 0 {
            d.client
                .post(format!("{}/api/auth/register", d.url))
                .json(&json!({"name": p, "email": email, "imageBase64": b64.encode(&first)}))
                .send()
                .await
                .unwrap()
        } else {
            let form = reqwest::multipart::Form::new()
                .text("name", p.clone())
                .text("email", email.clone())
                .part(
                    "image",
                    reqwest::multipart::Part::bytes(first.clone())
                        .file_name("face.jpg")
                        .mime_str("image/jpeg")
                        .unwrap(),
                );
            d.client
                .post(format!("{}/api/auth/register", d.url))
                .multipart(form)
                .send()
                .await
                .unwrap()
        };
        if r.status() == 201 {
            enrolled += 1;
        }
        for (photo, _) in [
            (&second, true),
            (&common::lfw(&names[(i + 1) % 6], 1), false),
        ] {
            let r = d
                .client
                .post(format!("{}/api/auth/login", d.url))
                .json(&json!({"email": email, "imageBase64": b64.encode(photo)}))
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                accepted += 1;
            }
        }
        for (n, bytes) in [(1, first), (2, second)] {
            photos.add(
                format!("{p} photo {n} base64"),
                b64.encode(&bytes).into_bytes(),
            );
            photos.add(format!("{p} photo {n}"), bytes);
        }
    }
    assert!(
        enrolled >= 5 && accepted >= 4,
        "enrolled {enrolled}, accepted {accepted}"
    );

    // A liveness challenge answered with frames: neither the frames nor the
    // challenge id (the store keeps its hash) may be found anywhere.
    let mut ids = Windows::new(16);
    let live = |n: u32| common::lfw("Amanda_Bynes", n);
    let r = d
        .client
        .post(format!("{}/api/auth/register", d.url))
        .json(&json!({"name": "Live", "email": "live@example.org", "imageBase64": b64.encode(live(3))}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    enrolled += 1;
    let turned = live(4);
    let mirrored = {
        let img = image::load_from_memory(&turned).unwrap().to_rgb8();
        let mut out = std::io::Cursor::new(Vec::new());
        image::imageops::flip_horizontal(&img)
            .write_to(&mut out, image::ImageFormat::Jpeg)
            .unwrap();
        out.into_inner()
    };
    let by_step = [("front", live(2)), ("right", turned), ("left", mirrored)];
    for round in 0..2 {
        let c = d
            .post("/api/auth/challenge", &json!({"email": "live@example.org"}))
            .await
            .1;
        let id = c["data"]["challengeId"].as_str().unwrap().to_string();
        let frames: Vec<&Vec<u8>> = c["data"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                &by_step
                    .iter()
                    .find(|(k, _)| *k == s.as_str().unwrap())
                    .unwrap()
                    .1
            })
            .collect();
        ids.add(format!("challenge id {round}"), id.clone().into_bytes());
        let r = if round == 0 {
            d.client
                .post(format!("{}/api/auth/login", d.url))
                .json(&json!({"email": "live@example.org", "challengeId": id, "frames": frames.iter().map(|f| b64.encode(f)).collect::<Vec<_>>()}))
                .send()
                .await
                .unwrap()
        } else {
            let mut form = reqwest::multipart::Form::new()
                .text("email", "live@example.org")
                .text("challengeId", id);
            for f in &frames {
                form = form.part(
                    "frames",
                    reqwest::multipart::Part::bytes(f.to_vec()).file_name("f.jpg"),
                );
            }
            d.client
                .post(format!("{}/api/auth/verify-face", d.url))
                .multipart(form)
                .send()
                .await
                .unwrap()
        };
        assert_eq!(r.status(), 200, "challenge answer {round}");
    }
    // One challenge left unanswered in the store.
    let c = d
        .post("/api/auth/challenge", &json!({"email": "live@example.org"}))
        .await
        .1;
    ids.add(
        "pending challenge id".into(),
        c["data"]["challengeId"]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec(),
    );
    for (step, bytes) in &by_step {
        photos.add(
            format!("{step} frame base64"),
            b64.encode(bytes).into_bytes(),
        );
        photos.add(format!("{step} frame"), bytes.clone());
    }

    // While it runs: every non-dumpable buffer is locked; no core dumps.
    let pid = d.child.id();
    let (dd, locked) = dontdump_mappings(pid);
    assert!(
        dd >= 2,
        "expected locked secret buffers, found {dd} MADV_DONTDUMP mappings"
    );
    assert_eq!(
        locked,
        dd,
        "{} non-dumpable mappings are not locked",
        dd - locked
    );
    let vm_lck = common::locked_kib(pid);
    assert_ne!(vm_lck, 0, "nothing locked");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().nth(4),
        Some("0"),
        "core dumps not off: {core}"
    );
    eprintln!("privacy: {dd} locked non-dumpable mappings, VmLck {vm_lck} kB");

    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(d.child.wait().unwrap().success());
    let mut files = snapshot(inst.path("").as_path());
    if let Backend::Mongo { uri, database } = &backend {
        let docs = common::mongo_documents(uri, database).await;
        files.extend(
            docs.into_iter()
                .map(|(c, b)| (PathBuf::from(format!("mongodb:{database}.{c}")), b)),
        );
        // The server's own files (its SQLite database and log), when known.
        if let Some(data) = std::env::var_os("ARCLOCK_TEST_MONGODB_DATA") {
            files.extend(snapshot(Path::new(&data)));
        }
    }
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();

    // What the store holds, opened with the token's own keys.
    let hsm = inst.hsm();
    let store: Box<dyn Store> = match &backend {
        Backend::Embedded => Box::new(EmbeddedStore::open(&inst.path("arclock.db")).unwrap()),
        Backend::Mongo { uri, database } => {
            assert!(
                !inst.path("arclock.db").exists(),
                "the daemon wrote the embedded store"
            );
            Box::new(MongoStore::open(uri, database).await.unwrap())
        }
    };
    let mut secrets = Windows::new(32);
    let mut controls = Windows::new(32);
    let users = store.list_users(None, 100).await.unwrap();
    assert_eq!(users.len(), enrolled);
    for u in &users {
        let creds = store.credentials(&u.id).await.unwrap().unwrap();
        let bound =
            arclockd::template::binding(u.email.as_str(), &creds.template, &creds.key.public_key);
        let key = hsm
            .unwrap(u.id.as_str(), &bound, &creds.key.wrapped)
            .await
            .unwrap();
        secrets.add(format!("{}'s private key", u.email.as_str()), key.to_vec());
        let embedding = arclockd::template::open(&hsm, &u.id, &u.email, &creds)
            .await
            .unwrap();
        let floats: Vec<u8> = embedding
            .values()
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        secrets.add(format!("{}'s embedding", u.email.as_str()), floats);
        // Positive control: the ciphertexts are stored, so the scan must see them.
        controls.add("wrapped key".into(), creds.key.wrapped.to_bytes());
        controls.add(
            "template ciphertext".into(),
            creds.template.ciphertext.clone(),
        );
    }

    let mut controls_seen = 0;
    for (path, content) in &files {
        if let Some((what, at)) = photos.find(content) {
            panic!("{} holds a window of {what} at byte {at}", path.display());
        }
        if let Some((what, at)) = secrets.find(content) {
            panic!("{} holds {what} at byte {at}", path.display());
        }
        if let Some((what, at)) = ids.find(content) {
            panic!("{} holds {what} in the clear at byte {at}", path.display());
        }
        if controls.find(content).is_some() {
            controls_seen += 1;
        }
    }
    assert!(
        controls_seen > 0,
        "the scan did not even find the stored ciphertexts"
    );
    eprintln!(
        "privacy ({}): scanned {} files, {bytes} bytes, for {} photos, {} keys and embeddings: none found",
        match backend {
            Backend::Embedded => "embedded",
            Backend::Mongo { .. } => "mongodb",
        },
        files.len(),
        photos.needles.len(),
        secrets.needles.len()
    );
}
