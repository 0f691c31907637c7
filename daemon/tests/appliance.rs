//! The appliance around the daemon: what `make install` lays down, the
//! systemd unit's exposure score, the sd_notify protocol, and the checks the
//! daemon makes on itself at start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Instance, root};

/// `systemd-analyze security --offline=yes` on the installed tree: the
/// "Overall exposure level" it prints.
fn exposure(dest: &Path) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(format!("--root={}", dest.display()))
        .arg("arclockd.service")
        .output()
        .expect("systemd-analyze (Debian package systemd) is installed by make setup");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for arclockd.service"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    line.split(':')
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"))
}

/// `make install-files` into a DESTDIR: the files land where the unit and
/// the installed config say, the unit scores below 2.0 with and without the
/// camera drop-in, and the installed config is valid.
#[test]
fn install_lays_out_a_hardened_unit_and_a_valid_config() {
    let dest = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(common::BIN).parent().unwrap();
    let out = Command::new("make")
        .current_dir(root())
        .arg("-s")
        .arg("install-files")
        .arg(format!("DESTDIR={}", dest.path().display()))
        .arg(format!("BIN_SRC={}", bin_dir.display()))
        .arg(format!("STATE={}", common::installed().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make install-files: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = dest.path();
    for f in [
        "usr/bin/arclockd",
        "usr/bin/arclock-console",
        "usr/lib/arclock/libonnxruntime.so.1.32.0",
        "usr/share/arclock/models/manifest.toml",
        "usr/share/arclock/models/scrfd_2.5g_bnkps.onnx",
        "usr/lib/systemd/system/arclockd.service",
        "usr/lib/sysusers.d/arclock.conf",
        "usr/lib/tmpfiles.d/arclock.conf",
        "etc/arclock/arclockd.toml",
        "etc/arclock/softhsm2.conf",
        "usr/share/doc/arclock/README.md",
        "usr/share/doc/arclock/examples/arclockd-camera.conf",
    ] {
        assert!(d.join(f).is_file(), "{f} not installed");
    }
    let config_mode = std::fs::metadata(d.join("etc/arclock/arclockd.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(config_mode & 0o777, 0o640);
    let unit = std::fs::read_to_string(d.join("usr/lib/systemd/system/arclockd.service")).unwrap();
    assert!(!unit.contains("@BINDIR@") && !unit.contains("@DOCDIR@"));
    assert!(unit.contains("ExecStart=/usr/bin/arclockd --config /etc/arclock/arclockd.toml"));
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "LoadCredential=hsm-pin:",
        "LimitMEMLOCK=",
        "LimitCORE=0",
        "CapabilityBoundingSet=\n",
        "RestartPreventExitStatus=78",
        "MemoryDenyWriteExecute=yes",
        "PrivateDevices=yes",
    ] {
        assert!(unit.contains(line), "unit lacks {line:?}");
    }

    let bare = exposure(d);
    assert!(bare < 2.0, "exposure {bare} is not below 2.0");
    let dropins = d.join("etc/systemd/system/arclockd.service.d");
    std::fs::create_dir_all(&dropins).unwrap();
    std::fs::copy(
        d.join("usr/share/doc/arclock/examples/arclockd-camera.conf"),
        dropins.join("camera.conf"),
    )
    .unwrap();
    let camera = exposure(d);
    assert!(camera > bare, "the camera drop-in was not read ({camera})");
    assert!(
        camera < 2.0,
        "exposure with the camera {camera} is not below 2.0"
    );
    eprintln!("systemd-analyze exposure: {bare} (camera drop-in: {camera})");

    // The installed configuration names installed paths and validates.
    let config = std::fs::read_to_string(d.join("etc/arclock/arclockd.toml")).unwrap();
    assert!(config.contains("runtime = \"/usr/lib/arclock/libonnxruntime.so.1.32.0\""));
    // Checking a file needs no --allow-root, even as root.
    let check = Command::new(common::BIN)
        .env_clear()
        .arg("--check-config")
        .arg("--config")
        .arg(d.join("etc/arclock/arclockd.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// What an operator meets at the command line: a bad configuration exits
/// 78 (EX_CONFIG, which the unit does not restart on) naming the key;
/// `RUST_LOG` wins over `[log] level`; every binary has `--version`; the man
/// page and completions come from the binary itself.
#[test]
fn the_command_line_behaves_as_operators_expect() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let good = std::fs::read_to_string(root().join("config/arclockd.toml")).unwrap();
    std::fs::write(
        &bad,
        good.replace("listen = \"127.0.0.1:8443\"", "listen = \"nowhere\""),
    )
    .unwrap();
    for extra in [&["--check-config"][..], &["--allow-root"][..]] {
        let out = Command::new(common::BIN)
            .env_clear()
            .arg("--config")
            .arg(&bad)
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{extra:?}: {err}");
        assert!(err.contains("listen"), "the key is not named: {err}");
    }

    let inst = Instance::new();
    let out = inst
        .command()
        .env("RUST_LOG", "arclockd=debug")
        .arg("provision")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("log filter from RUST_LOG"), "{err}");

    let face = Path::new(common::BIN).with_file_name("arclock-face");
    for bin in [Path::new(common::BIN), &common::console_bin(), &face] {
        let out = Command::new(bin).arg("--version").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(env!("CARGO_PKG_VERSION")),
            "{} --version: {text}",
            bin.display()
        );
    }
    for (bin, head) in [
        (Path::new(common::BIN).to_path_buf(), ".TH arclockd 8"),
        (common::console_bin(), ".TH arclock-console 1"),
    ] {
        let man = Command::new(&bin)
            .args(["--generate", "man"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&man.stdout).contains(head));
        let bash = Command::new(&bin)
            .args(["--generate", "bash"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&bash.stdout).contains("complete -F"));
    }
}

/// Root is refused unless told; a state directory others may write is
/// refused by name; both before anything is opened.
#[test]
fn unsafe_starts_are_refused_with_the_reason() {
    let inst = Instance::new();
    let euid = std::fs::metadata("/proc/self").unwrap();
    use std::os::unix::fs::MetadataExt;
    if euid.uid() == 0 {
        let out = inst
            .command()
            .env_remove("ARCLOCK_ALLOW_ROOT")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refusing to run as root"), "{err}");
    }
    inst.provision();
    let dir = inst.path("");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = inst.command().output().unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod go-w"), "{err}");
    assert!(
        err.contains(dir.to_string_lossy().trim_end_matches('/')),
        "{err}"
    );
}

/// Under a service manager: READY=1 once serving, WATCHDOG=1 at half the
/// interval, STOPPING=1 on SIGTERM; and the kernel refuses W+X mappings to
/// the daemon that just loaded ONNX Runtime and its models.
#[test]
fn speaks_the_service_manager_protocol() {
    let inst = Instance::new();
    inst.provision();
    let notify = inst.path("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // WATCHDOG_PID must be the daemon's own pid: exec keeps the shell's.
    let inner = inst.command();
    let mut cmd = common::wrapped(&inner, Command::new("/bin/sh"));
    cmd.arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\"")
        .arg(inner.get_program())
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "1000000")
        .env("ARCLOCK_LOG_FORMAT", "json");
    let mut d = inst.spawn(cmd);

    let mut buf = [0u8; 512];
    let mut recv = || {
        // A signal (a child of the test harness exiting) may interrupt the wait.
        let n = loop {
            match sock.recv(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other.expect("a notification"),
            }
        };
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = recv();
    assert!(first.contains("READY=1"), "{first}");
    assert!(first.contains("STATUS=serving on"), "{first}");
    let started = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        if recv().contains("WATCHDOG=1") {
            pings += 1;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "3 pings took {:?} (expected every 0.5 s)",
        started.elapsed()
    );
    let kill = Command::new("kill")
        .args(["-TERM", &d.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut stopping = false;
    for _ in 0..10 {
        if recv().contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "no STOPPING=1 after SIGTERM");
    let status = d.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let log = std::fs::read_to_string(inst.path("daemon.log")).unwrap();
    assert!(log.contains(r#""write_execute_denied":true"#), "{log}");
    assert!(log.contains(r#""message":"stopped""#), "{log}");
}

/// SIGHUP re-reads the config file: the log level applies at once, other
/// changed sections are named as needing a restart, a broken file is refused
/// and the daemon keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_the_log_level_and_names_the_rest() {
    let inst = Instance::new();
    inst.provision();
    let config = inst.path("arclockd.toml");
    let original = std::fs::read_to_string(root().join("config/arclockd.toml")).unwrap();
    std::fs::write(&config, &original).unwrap();
    let d = inst.start_with(&[
        ("ARCLOCK_CONFIG", config.to_str().unwrap()),
        ("ARCLOCK_LOG_FORMAT", "json"),
    ]);
    let port = d
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    // Not TLS: a handshake failure, logged at debug level only.
    let garbage = || {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
        std::thread::sleep(Duration::from_millis(300));
    };
    let log = || std::fs::read_to_string(inst.path("daemon.log")).unwrap();
    let wait_for = |text: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !log().contains(text) {
            assert!(Instant::now() < deadline, "{text:?} not logged:\n{}", log());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let hup = || {
        assert!(
            Command::new("kill")
                .args(["-HUP", &d.child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    garbage();
    assert!(
        !log().contains("TLS handshake failed"),
        "debug logged at info level"
    );

    let edited = original
        .replace("level = \"info,ort=warn\"", "level = \"debug,ort=warn\"")
        .replace("lockout_secs = 900", "lockout_secs = 600");
    assert_ne!(edited, original);
    std::fs::write(&config, &edited).unwrap();
    hup();
    wait_for("log level applied");
    wait_for(r#""sections":"[\"auth\"]""#);
    garbage();
    wait_for("TLS handshake failed");

    std::fs::write(&config, "this is [not toml").unwrap();
    hup();
    wait_for("configuration not reloaded");
    let (status, _, _, _) = d.get("/health").await;
    assert_eq!(status, 200);
}

/// `scripts/fetch.py`, the half of set-up a fresh machine depends on.
fn fetch(what: &str, dest: &Path, env: &[(&str, String)]) -> (bool, String) {
    let list = match what {
        "models" => root().join("models/manifest.toml"),
        _ => root().join("scripts/faces.sha256"),
    };
    // Any real download fails at once: a dead proxy stands in for "offline".
    let out = Command::new("python3")
        .arg(root().join("scripts/fetch.py"))
        .arg(what)
        .arg(list)
        .arg(dest)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("http_proxy", "http://127.0.0.1:9")
        .env("https_proxy", "http://127.0.0.1:9")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The mirror (`ARCLOCK_MIRROR`, default `../shared`, holding `models/` and
/// `faces/`), as set-up finds it.
fn mirror() -> std::path::PathBuf {
    std::env::var_os("ARCLOCK_MIRROR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"))
}

/// A mirror given as a `file://` URL installs every model and photo, each
/// checked against its pinned sha256.
#[test]
fn a_file_url_mirror_installs_everything_checked() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", mirror().canonicalize().unwrap().display());
    let env = [("ARCLOCK_MIRROR", url)];
    let (ok, text) = fetch("models", &dir.path().join("models"), &env);
    assert!(ok, "{text}");
    assert!(
        text.contains("scrfd_2.5g_bnkps installed from mirror"),
        "{text}"
    );
    assert!(
        text.contains("minifasnet_v2_80 installed from mirror"),
        "{text}"
    );
    let (ok, text) = fetch("faces", &dir.path().join("faces"), &env);
    assert!(ok, "{text}");
    let listed = std::fs::read_to_string(root().join("scripts/faces.sha256")).unwrap();
    for line in listed.lines() {
        let rel = line.split_whitespace().nth(1).unwrap();
        assert!(
            dir.path().join("faces").join(rel).is_file(),
            "{rel} missing"
        );
    }
    // A second run finds everything in place and fetches nothing.
    let (ok, text) = fetch("models", &dir.path().join("models"), &env);
    assert!(ok && !text.contains("installed"), "{text}");

    // A corrupted file in the mirror is refused, not installed.
    let bad = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bad.path().join("models")).unwrap();
    for f in std::fs::read_dir(mirror().join("models")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), bad.path().join("models").join(f.file_name())).unwrap();
    }
    let victim = bad.path().join("models/arcface_mobileface_128.onnx");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let out = tempfile::tempdir().unwrap();
    let env = [("ARCLOCK_MIRROR", bad.path().display().to_string())];
    let (ok, text) = fetch("models", out.path(), &env);
    assert!(!ok, "{text}");
    assert!(
        text.contains("arcface_mobileface_128.onnx: mirror"),
        "{text}"
    );
    assert!(text.contains("wrong sha256"), "{text}");
    assert!(!out.path().join("arcface_mobileface_128.onnx").exists());
}

/// With no mirror and no network, set-up fails and says, for each file, what
/// is missing and every place it was looked for; models without an upstream
/// (the PAD models) are reported absent, not fatal.
#[test]
fn no_mirror_offline_names_what_is_missing_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("ARCLOCK_MIRROR", "none".to_string())];
    let (ok, text) = fetch("models", &dir.path().join("models"), &env);
    assert!(!ok, "{text}");
    assert!(
        text.contains("optional model minifasnet_v2_80 is absent"),
        "{text}"
    );
    for file in ["scrfd_2.5g_bnkps.onnx", "arcface_mobileface_128.onnx"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("model {file}:")))
            .unwrap_or_else(|| panic!("{file} not named:\n{text}"));
        assert!(line.contains("upstream https://"), "{line}");
        assert!(line.contains("no mirror"), "{line}");
    }
    let (ok, text) = fetch("faces", &dir.path().join("faces"), &env);
    assert!(!ok, "{text}");
    assert!(
        text.contains("LFW archive http://vis-www.cs.umass.edu/lfw/lfw.tgz"),
        "{text}"
    );
    assert!(
        text.contains("photo pad-samples/image_F1.jpg: upstream https://"),
        "{text}"
    );
}

/// Without a mirror the LFW photos come from the LFW archive (its md5
/// checked), extracting exactly the listed files. Here the archive is one
/// built from the mirror's photos in LFW's layout, served as a file:// URL.
#[test]
fn lfw_photos_come_from_the_archive_without_a_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let tgz = dir.path().join("lfw.tgz");
    let made = Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("--transform=s,^lfw-dev,lfw,")
        .arg("-C")
        .arg(common::faces())
        .arg("lfw-dev")
        .status()
        .unwrap();
    assert!(made.success());
    let md5 = Command::new("md5sum").arg(&tgz).output().unwrap();
    let md5 = String::from_utf8_lossy(&md5.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let faces = dir.path().join("state/faces");
    let env = [
        ("ARCLOCK_MIRROR", "none".to_string()),
        ("ARCLOCK_LFW_URL", format!("file://{}", tgz.display())),
        ("ARCLOCK_LFW_MD5", md5),
    ];
    let (ok, text) = fetch("faces", &faces, &env);
    // The PAD samples have no reachable upstream offline: named, and fatal.
    assert!(!ok, "{text}");
    assert!(
        text.contains("lfw-dev photos extracted from the LFW archive"),
        "{text}"
    );
    let listed = std::fs::read_to_string(root().join("scripts/faces.sha256")).unwrap();
    let lfw: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|rel| rel.starts_with("lfw-dev/"))
        .collect();
    assert_eq!(lfw.len(), 2449);
    for rel in &lfw {
        assert!(faces.join(rel).is_file(), "{rel} not extracted");
    }
    assert!(text.contains("pad-samples/image_T1.jpg"), "{text}");

    // An archive whose md5 is not the pinned one is refused.
    let env = [
        ("ARCLOCK_MIRROR", "none".to_string()),
        ("ARCLOCK_LFW_URL", format!("file://{}", tgz.display())),
    ];
    let other = dir.path().join("other/faces");
    let (ok, text) = fetch("faces", &other, &env);
    assert!(!ok);
    assert!(
        text.contains("md5 is not a17d05bd522c52d84eca14327a23d494"),
        "{text}"
    );
    assert!(!other.join(lfw[0]).exists());
}
