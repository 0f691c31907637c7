//! `arclockd provision`: the dev/embedded set-up `make run` performs once.
//!
//! Creates the SoftHSM2 configuration and token directory (if the module is
//! SoftHSM2 and `SOFTHSM2_CONF` names a file that does not exist yet), the
//! token with random PINs in 0600 files, its first KEK and JWT signing key, and
//! a self-signed localhost TLS certificate. Every step is skipped when its
//! result exists, so running it again changes nothing.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arclock_hsm::provision::{Provisioned, ensure_keys, ensure_token};

use crate::config::{Config, Provision};

/// Runs every provisioning step; returns lines describing what was done.
pub async fn run(config: &Config) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    if config.hsm.provision != Provision::Dev {
        bail!("hsm.provision is \"attach\": provisioning is for dev/embedded installs only");
    }
    if let Some(line) = softhsm_conf(&config.hsm.module)? {
        done.push(line);
    }
    let (Some(pin), Some(so_pin)) = (config.hsm.pin_file.clone(), config.hsm.so_pin_file.clone())
    else {
        bail!("dev provisioning needs hsm.pin_file and hsm.so_pin_file");
    };
    let (module, label, slot) = (
        config.hsm.module.clone(),
        config.hsm.token_label.clone(),
        config.hsm.slot,
    );
    let made =
        tokio::task::spawn_blocking(move || ensure_token(&module, &label, slot, &pin, &so_pin))
            .await??;
    if made == Provisioned::Created {
        done.push(format!("created HSM token {:?}", config.hsm.token_label));
    }
    let hsm = arclock_hsm::Hsm::new(crate::hsm_config(config), crate::read_pin(config)?);
    if ensure_keys(&hsm).await? {
        done.push(format!(
            "generated keys inside the token (signing: {})",
            config.hsm.signing().alg()
        ));
    }
    if let Some(line) = tls_cert(&config.server.tls_cert, &config.server.tls_key)? {
        done.push(line);
    }
    Ok(done)
}

/// Writes the SoftHSM2 config named by `SOFTHSM2_CONF` if it is missing.
fn softhsm_conf(module: &Path) -> anyhow::Result<Option<String>> {
    if !module.to_string_lossy().contains("softhsm") {
        return Ok(None);
    }
    let Some(conf) = std::env::var_os("SOFTHSM2_CONF").map(PathBuf::from) else {
        return Ok(None);
    };
    if conf.exists() {
        return Ok(None);
    }
    let base = conf.parent().unwrap_or(Path::new("."));
    let tokens = base.join("softhsm").join("tokens");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&tokens)
        .with_context(|| format!("creating {}", tokens.display()))?;
    let tokens = tokens.canonicalize()?;
    write_new(
        &conf,
        format!(
            "{}slots.removable = false\n",
            arclock_hsm::provision::softhsm_conf(&tokens)
        )
        .as_bytes(),
        0o600,
    )?;
    Ok(Some(format!("wrote SoftHSM2 config {}", conf.display())))
}

/// A self-signed certificate for localhost, 127.0.0.1 and ::1 (dev only).
fn tls_cert(cert: &Path, key: &Path) -> anyhow::Result<Option<String>> {
    match (cert.exists(), key.exists()) {
        (true, true) => return Ok(None),
        (true, false) | (false, true) => bail!(
            "only one of {} and {} exists; remove it or supply both",
            cert.display(),
            key.display()
        ),
        _ => {}
    }
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let certified =
        rcgen::generate_simple_self_signed(names).context("generating TLS certificate")?;
    write_new(key, certified.signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert, certified.cert.pem().as_bytes(), 0o644)?;
    Ok(Some(format!(
        "wrote self-signed TLS certificate {}",
        cert.display()
    )))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
