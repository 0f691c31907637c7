//! `arclock-bench`: every ArcLock benchmark, one markdown report.
//!
//! `make bench` runs it; the table goes to `bench/results/latest.md` and a dated
//! copy. Figures are medians with p95 and ratios measured in the same run,
//! because absolute numbers on shared 2-core machines are noisy.
mod api;
mod face;
mod hsm;
mod matrix;
mod report;
mod store;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use report::Report;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "ArcLock benchmarks; writes a markdown table to bench/results/"
)]
struct Args {
    /// Sections to run (default: all).
    #[arg(value_enum)]
    sections: Vec<Section>,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Where the report goes.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Repository root (models/manifest.toml, var/ from `make setup`).
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Labelled photos (../shared/faces).
    #[arg(long, env = "ARCLOCK_FACES_DIR", default_value = "../shared/faces")]
    faces: PathBuf,
    /// Seconds per daemon latency row (verify at 1/4/16 clients, the 3-frame
    /// active sign-in, refresh at 1/4): long enough that p99 is more than a
    /// handful of requests.
    #[arg(long, default_value_t = 20.0)]
    tail_seconds: f64,
    /// Runs per latency measurement.
    #[arg(long, default_value_t = 100)]
    iterations: usize,
    /// Auth log rows loaded before the log query benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    log_rows: usize,
    /// RSA size of the JWT signing key.
    #[arg(long, default_value_t = 2048)]
    jwt_bits: u32,
    /// Instead of the benchmarks: probe the token in this PKCS#11 module
    /// (`make hsm-matrix`), printing `job<TAB>result<TAB>ops/s` lines.
    #[arg(long, value_name = "MODULE", requires_all = ["probe_label", "probe_pin"])]
    probe: Option<PathBuf>,
    /// The label of the token to probe.
    #[arg(long, value_name = "LABEL")]
    probe_label: Option<String>,
    /// The file holding its user PIN.
    #[arg(long, value_name = "FILE")]
    probe_pin: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Hsm,
    Face,
    Store,
    Api,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let (Some(module), Some(label), Some(pin)) =
        (&args.probe, &args.probe_label, &args.probe_pin)
    {
        let dur = Duration::from_secs_f64(args.seconds);
        for p in matrix::run(module, label, pin, dur)? {
            let rate = p.rate.map(|r| format!("{r:.0}")).unwrap_or_default();
            println!("{}\t{}\t{rate}", p.job, p.result);
        }
        return Ok(());
    }
    let sections = if args.sections.is_empty() {
        vec![Section::Hsm, Section::Face, Section::Store, Section::Api]
    } else {
        args.sections.clone()
    };
    // A private SoftHSM2 token store for this run, so the bench never touches
    // the dev token under var/.
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens)?;
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(&conf, arclock_hsm::provision::softhsm_conf(&tokens))?;
    #[allow(unsafe_code)]
    // SAFETY: still single-threaded (the runtime is built below) and SoftHSM2 is
    // not loaded yet; nothing else reads the environment concurrently.
    unsafe {
        std::env::set_var("SOFTHSM2_CONF", &conf)
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut report = Report::new("ArcLock benchmarks", &facts());
    let dur = Duration::from_secs_f64(args.seconds);
    let mut guard = Vec::new();
    let mut signers = None;
    rt.block_on(async {
        for s in &sections {
            match s {
                Section::Hsm => {
                    // The RSA size an installation signs with out of the box.
                    let installed = arclockd::config::Config::load(
                        &args.root.join("config/arclockd.toml"),
                        std::iter::empty(),
                    )
                    .context("config/arclockd.toml")?
                    .hsm
                    .jwt_key_bits;
                    signers = Some(
                        hsm::run(&mut report, dir.path(), dur, args.jwt_bits, installed)
                            .await
                            .context("HSM benchmark")?,
                    )
                }
                Section::Face => face::run(&mut report, &args.root, &args.faces, args.iterations)
                    .context("face pipeline benchmark")?,
                Section::Store => store::run(&mut report, dir.path(), args.log_rows)
                    .await
                    .context("store benchmark")?,
                Section::Api => guard.extend(
                    api::run(
                        &mut report,
                        &args.root,
                        &args.faces,
                        Duration::from_secs_f64(args.tail_seconds),
                        signers.map(|s| (s, dir.path())),
                    )
                    .await
                    .context("daemon benchmark")?,
                ),
            }
        }
        anyhow::Ok(())
    })?;

    std::fs::create_dir_all(&args.out)?;
    let text = report.into_string();
    let latest = args.out.join("latest.md");
    std::fs::write(&latest, &text)?;
    println!("wrote {}", latest.display());
    if !guard.is_empty() {
        anyhow::bail!("tail latency over the guard: {}", guard.join("; "));
    }
    Ok(())
}

/// Machine, versions and date: a table without them cannot be compared.
fn facts() -> Vec<(String, String)> {
    let cmd = |c: &str, a: &[&str]| {
        std::process::Command::new(c)
            .args(a)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    vec![
        ("date (UTC)".into(), cmd("date", &["-u", "+%Y-%m-%d %H:%M"])),
        (
            "machine".into(),
            format!(
                "{cpu}, {} cores, {}",
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                cmd("uname", &["-sr"])
            ),
        ),
        ("rustc".into(), cmd("rustc", &["--version"])),
        (
            "arclock".into(),
            format!(
                "{} ({})",
                env!("CARGO_PKG_VERSION"),
                // `-dirty`: the run's code is not the commit alone.
                cmd(
                    "git",
                    &["describe", "--always", "--dirty", "--exclude", "*"]
                )
            ),
        ),
        (
            "profile".into(),
            if cfg!(debug_assertions) {
                "debug".into()
            } else {
                "release".into()
            },
        ),
    ]
}
