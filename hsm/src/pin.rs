//! The token's user PIN: from a private file or a systemd credential, never from
//! the environment, never printed.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::error::Error;

/// A PIN held in a zeroize-on-drop secret; `Debug` prints nothing of it.
#[derive(Clone)]
pub struct Pin(AuthPin);

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin([redacted])")
    }
}

impl Pin {
    /// Reads the PIN from `path`, which must be a regular file not readable or
    /// writable by group or others (0600 or 0400). One trailing newline is dropped.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let err = |reason: String| Error::PinSource {
            path: path.display().to_string(),
            reason,
        };
        let meta = fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if !meta.is_file() {
            return Err(err("not a regular file".into()));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "mode {mode:03o} lets others read it; chmod 600"
            )));
        }
        let uid = arclock_secmem::process::effective_uid();
        if meta.uid() != uid && uid != 0 {
            return Err(err(format!("owned by uid {}, not by us", meta.uid())));
        }
        let raw = Zeroizing::new(fs::read(path).map_err(|e| err(e.to_string()))?);
        Self::parse(&raw).map_err(err)
    }

    /// Reads the PIN from the systemd credential `name` (`LoadCredential=`),
    /// found under `$CREDENTIALS_DIRECTORY`, which systemd creates private to the unit.
    pub fn from_credential(name: &str) -> Result<Self, Error> {
        let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| Error::PinSource {
            path: format!("credential {name}"),
            reason:
                "CREDENTIALS_DIRECTORY is not set (not started by systemd with LoadCredential=)"
                    .into(),
        })?;
        Self::from_file(&PathBuf::from(dir).join(name))
    }

    /// A PIN from raw bytes (used when provisioning a fresh token).
    pub(crate) fn parse(raw: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(raw).map_err(|_| "PIN is not UTF-8".to_string())?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.is_empty() {
            return Err("PIN is empty".into());
        }
        if text.len() > 255 {
            return Err("PIN longer than 255 bytes".into());
        }
        Ok(Pin(AuthPin::new(text.into())))
    }

    pub(crate) fn auth(&self) -> &AuthPin {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_group_readable_file_and_never_prints_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        fs::write(&p, "123456\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let e = Pin::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        assert!(!e.contains("123456"));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let pin = Pin::from_file(&p).unwrap();
        assert_eq!(format!("{pin:?}"), "Pin([redacted])");
        use secrecy::ExposeSecret;
        assert_eq!(pin.auth().expose_secret(), "123456");
    }

    #[test]
    fn refuses_empty_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pin");
        assert!(Pin::from_file(&p).is_err());
        fs::write(&p, "\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            Pin::from_file(&p)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }
}
