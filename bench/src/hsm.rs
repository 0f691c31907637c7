//! HSM throughput: wraps/s, unwraps/s and RS256 signs/s through the session pool
//! at 1 and 2 concurrent workers, next to the raw PKCS#11 calls on one session
//! (the pool's overhead as a ratio measured in the same run).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arclock_hsm::provision::{ensure_keys, ensure_token};
use arclock_hsm::{Hsm, HsmConfig, Pin, Signing, pkcs11_context};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use sha2::Digest;

use crate::report::{Report, Samples, num};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const LABEL: &str = "bench";

/// Creates a private SoftHSM2 token under `dir` (SOFTHSM2_CONF already points there).
pub async fn token(dir: &Path) -> Result<(PathBuf, Pin)> {
    let pin = dir.join("bench.pin");
    let so = dir.join("bench.so.pin");
    let (p, s) = (pin.clone(), so.clone());
    tokio::task::spawn_blocking(move || ensure_token(Path::new(MODULE), LABEL, None, &p, &s))
        .await??;
    Ok((pin.clone(), Pin::from_file(&pin)?))
}

fn config(pool: usize, signing: Signing) -> HsmConfig {
    HsmConfig {
        module: MODULE.into(),
        token_label: LABEL.into(),
        slot: None,
        pool_size: pool,
        signing,
    }
}

/// Runs `op` from `workers` tasks for `dur`; returns ops/s and the latencies.
async fn drive<F, Fut>(workers: usize, dur: Duration, op: F) -> Result<(f64, Samples)>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    // Warm-up: sessions opened, handles cached.
    for _ in 0..workers * 4 {
        op().await?;
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let op = Arc::clone(&op);
        tasks.push(tokio::spawn(async move {
            let mut s = Samples::default();
            while start.elapsed() < dur {
                let t = Instant::now();
                op().await?;
                s.push(t.elapsed());
            }
            anyhow::Ok(s)
        }));
    }
    let mut all = Samples::default();
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((all.len() as f64 / secs, all))
}

/// Raw PKCS#11 on one session in a loop on one thread: the floor the pool is
/// measured against (C_GenerateRandom + C_Encrypt, C_Decrypt, C_Sign RS256,
/// C_Sign ES256 over a digest).
fn raw(pin_file: &Path, dur: Duration) -> Result<[(f64, Samples); 4]> {
    let ctx = pkcs11_context(Path::new(MODULE))?;
    let slot = ctx
        .get_slots_with_token()?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|i| i.label().trim_end() == LABEL)
                .unwrap_or(false)
        })
        .context("bench token not found")?;
    let session = ctx.open_rw_session(slot)?;
    let pin = std::fs::read_to_string(pin_file)?;
    match session.login(UserType::User, Some(&pin.trim().to_string().into())) {
        Ok(()) => {}
        Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => return Err(e.into()),
    }
    let find = |class, label: &str| -> Result<_> {
        session
            .find_objects(&[Attribute::Class(class), Attribute::Label(label.into())])?
            .first()
            .copied()
            .context("key missing")
    };
    let kek = find(ObjectClass::SECRET_KEY, "kek-v1")?;
    let jwt = find(ObjectClass::PRIVATE_KEY, "jwt-v1")?;
    let jwt_es = find(ObjectClass::PRIVATE_KEY, "jwt-v2")?;
    let aad = b"arclock/wrapped-key/v1\0bench-user";
    let secret = [7u8; 32];
    let mut nonce = [0u8; 12];
    session.generate_random_slice(&mut nonce)?;
    let mut iv = nonce;
    let ct = session.encrypt(
        &Mechanism::AesGcm(GcmParams::new(&mut iv, aad, 128.into())?),
        kek,
        &secret,
    )?;

    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<(f64, Samples)> {
        let mut s = Samples::default();
        let start = Instant::now();
        while start.elapsed() < dur {
            let t = Instant::now();
            f()?;
            s.push(t.elapsed());
        }
        Ok((s.len() as f64 / start.elapsed().as_secs_f64(), s))
    };
    let enc = time(&mut || {
        let mut n = [0u8; 12];
        session.generate_random_slice(&mut n)?;
        session.encrypt(
            &Mechanism::AesGcm(GcmParams::new(&mut n, aad, 128.into())?),
            kek,
            &secret,
        )?;
        Ok(())
    })?;
    let dec = time(&mut || {
        let mut n = nonce;
        let p = session.decrypt(
            &Mechanism::AesGcm(GcmParams::new(&mut n, aad, 128.into())?),
            kek,
            &ct,
        )?;
        anyhow::ensure!(p == secret);
        Ok(())
    })?;
    let sig = time(&mut || {
        session.sign(&Mechanism::Sha256RsaPkcs, jwt, b"header.payload")?;
        Ok(())
    })?;
    let sig_es = time(&mut || {
        let digest = sha2::Sha256::digest(b"header.payload");
        session.sign(&Mechanism::Ecdsa, jwt_es, &digest)?;
        Ok(())
    })?;
    Ok([enc, dec, sig, sig_es])
}

/// Signatures of a JWS signing input through `hsm`, as it is configured to
/// sign, from `workers` tasks for `dur`.
async fn signing(hsm: &Hsm, workers: usize, dur: Duration) -> Result<(f64, Samples)> {
    let h = hsm.clone();
    drive(workers, dur, move || {
        let h = h.clone();
        async move {
            h.sign(b"header.payload").await?;
            Ok(())
        }
    })
    .await
}

/// The 2-worker RS256 rate of the newest RSA key (of `bits`, made by
/// [`run`]) in the bench token under `dir`, measured again: the bracket
/// beside a daemon row, since this host's signer rate moves by a fifth
/// within minutes.
pub async fn rs256_rate(dir: &Path, bits: u32, dur: Duration) -> Result<f64> {
    let hsm = Hsm::new(
        config(2, Signing::Rs256 { bits }),
        Pin::from_file(&dir.join("bench.pin"))?,
    );
    Ok(signing(&hsm, 2, dur).await?.0)
}

/// The signer's own rates through the pool at 2 workers (both cores), per
/// second: what a refresh-token rotation, one signature each, is held to.
#[derive(Debug, Clone, Copy)]
pub struct Signers {
    pub rs256: f64,
    pub es256: f64,
    /// The RSA key's size (`--jwt-bits`).
    pub rsa_bits: u32,
    /// RS256 with the installed configuration's key size, when that is not
    /// `rsa_bits`: (bits, 2-worker rate).
    pub installed: Option<(u32, f64)>,
}

/// `installed_bits` is the RSA size of `config/arclockd.toml`: measured as
/// well when `jwt_bits` (the rows above, and the daemon's key in `api`) is
/// another.
pub async fn run(
    report: &mut Report,
    dir: &Path,
    dur: Duration,
    jwt_bits: u32,
    installed_bits: u32,
) -> Result<Signers> {
    let (pin_file, _) = token(dir).await?;
    let (rs256, es256) = (Signing::Rs256 { bits: jwt_bits }, Signing::Es256);
    // jwt-v1 is RSA, jwt-v2 P-256: the token as it is after a switch.
    for signing in [rs256, es256] {
        let hsm = Hsm::new(config(1, signing), Pin::from_file(&pin_file)?);
        ensure_keys(&hsm).await?;
    }
    let raw_dur = dur;
    let pf = pin_file.clone();
    let raw = tokio::task::spawn_blocking(move || raw(&pf, raw_dur)).await??;

    report.table(
        "HSM (SoftHSM2 2.6, PKCS#11 via cryptoki)",
        &format!(
            "Throughput through `arclock_hsm::Hsm` with N concurrent tasks and a pool of N \
             sessions, each run {:.0} s; latency per call (ms). `raw` is the bare PKCS#11 \
             call sequence on one session in one thread, same run. RSA {jwt_bits}-bit, \
             ECDSA P-256 (ES256), AES-256-GCM over a 32-byte secret.",
            dur.as_secs_f64()
        ),
        &[
            "operation",
            "workers",
            "ops/s",
            "median ms",
            "p95 ms",
            "vs raw (1 worker)",
        ],
    );
    let names = ["wrap", "unwrap", "sign RS256", "sign ES256"];
    let mut pooled1 = [0.0f64; 4];
    let mut signers = Signers {
        rs256: 0.0,
        es256: 0.0,
        rsa_bits: jwt_bits,
        installed: None,
    };
    let mut pooled_median = [0.0f64; 4];
    for workers in [1usize, 2] {
        let hsm = Hsm::new(config(workers, rs256), Pin::from_file(&pin_file)?);
        let hsm_es = Hsm::new(config(workers, es256), Pin::from_file(&pin_file)?);
        let blob = hsm.wrap("bench-user", &[9u8; 32], &[7u8; 32]).await?;
        let h = hsm.clone();
        let wrap = drive(workers, dur, move || {
            let h = h.clone();
            async move {
                h.wrap("bench-user", &[9u8; 32], &[7u8; 32]).await?;
                Ok(())
            }
        })
        .await?;
        let h = hsm.clone();
        let unwrap = drive(workers, dur, move || {
            let (h, b) = (h.clone(), blob.clone());
            async move {
                h.unwrap("bench-user", &[9u8; 32], &b).await?;
                Ok(())
            }
        })
        .await?;
        let sign = signing(&hsm, workers, dur).await?;
        let sign_es = signing(&hsm_es, workers, dur).await?;
        if workers == 2 {
            (signers.rs256, signers.es256) = (sign.0, sign_es.0);
        }
        for (i, (rate, s)) in [wrap, unwrap, sign, sign_es].into_iter().enumerate() {
            if workers == 1 {
                pooled1[i] = rate;
                pooled_median[i] = s.median_ms();
            }
            let ratio = if workers == 1 {
                format!("{}x the raw time", num(raw[i].0 / rate))
            } else {
                format!("{}x the 1-worker rate", num(rate / pooled1[i]))
            };
            report.row(&[
                names[i].into(),
                workers.to_string(),
                num(rate),
                num(s.median_ms()),
                num(s.p95_ms()),
                ratio,
            ]);
        }
    }
    for (i, (rate, s)) in raw.iter().enumerate() {
        report.row(&[
            format!("{} (raw)", names[i]),
            "1".into(),
            num(*rate),
            num(s.median_ms()),
            num(s.p95_ms()),
            "1.00x".into(),
        ]);
    }
    report.end_table();
    // The hop alone: an empty closure to the blocking pool and back, one
    // caller (a refresh-token rotation makes three, each with its work).
    let (_, hop) = drive(1, dur, || async {
        tokio::task::spawn_blocking(|| ()).await?;
        Ok(())
    })
    .await?;
    report.para(&format!(
        "Per-call cost of the pool over raw PKCS#11 at 1 worker (median): wrap +{} ms, \
         unwrap +{} ms, sign RS256 +{} ms, sign ES256 +{} ms: one hop to tokio's blocking pool and one locked \
         buffer per call (a small one is a kept mapping, not a new one: `arclock_secmem`). The hop alone (an empty closure to the blocking pool and back, \
         one caller) takes {} ms (median; p95 {} ms). The current KEK version and signing \
         kid are cached for 10 s (cleared on rotation), so `wrap` and `sign` do not \
         enumerate the token per call.",
        num(pooled_median[0] - raw[0].1.median_ms()),
        num(pooled_median[1] - raw[1].1.median_ms()),
        num(pooled_median[2] - raw[2].1.median_ms()),
        num(pooled_median[3] - raw[3].1.median_ms()),
        num(hop.median_ms()),
        num(hop.p95_ms()),
    ));
    if installed_bits != jwt_bits {
        // The next RS256 key in the same token: it signs from its creation on.
        let installed = Signing::Rs256 {
            bits: installed_bits,
        };
        let hsm = Hsm::new(config(2, installed), Pin::from_file(&pin_file)?);
        hsm.create_signing_key(installed).await?;
        let (rate, s) = signing(&hsm, 2, dur).await?;
        report.para(&format!(
            "An installation signs with RSA-{installed_bits} out of the box \
             (`config/arclockd.toml`); the rows above and the daemon below use \
             RSA-{jwt_bits}. RS256 with RSA-{installed_bits} through the pool at 2 workers: \
             **{}/s** (median {} ms), {}x the RSA-{jwt_bits} rate: {} core-ms a signature \
             against {}.",
            num(rate),
            num(s.median_ms()),
            num(rate / signers.rs256),
            num(2000.0 / rate),
            num(2000.0 / signers.rs256),
        ));
        signers.installed = Some((installed_bits, rate));
    }
    Ok(signers)
}
