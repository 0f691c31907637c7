//! Process hardening at start, whatever the init system (the systemd unit
//! repeats most of it from the outside): no core dumps and not ptrace-able,
//! no writable-and-executable memory, a private umask, not root unless told,
//! enough lockable memory for the face workers, and state directories nobody
//! else can write.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use arclock_secmem::process;

use crate::config::Config;

/// Why the daemon refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum HardeningError {
    #[error("{what}: {source}")]
    Syscall {
        what: &'static str,
        source: std::io::Error,
    },
    #[error(
        "refusing to run as root: run as the arclock user (systemd does), or pass --allow-root for a development machine"
    )]
    Root,
    #[error(
        "RLIMIT_MEMLOCK is {have} MiB; {workers} face worker(s) and [server] body_budget_bytes need at least {need} MiB of locked memory (LimitMEMLOCK= in the unit, `ulimit -l` in a shell)"
    )]
    Memlock {
        have: u64,
        need: u64,
        workers: usize,
    },
    #[error("{path}: {reason}")]
    StateDir { path: String, reason: String },
}

/// What hardening found, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Write-xor-execute enforced by the kernel (PR_SET_MDWE).
    pub write_execute_denied: bool,
    /// The memlock limit in MiB (`None`: unlimited or root).
    pub memlock_mib: Option<u64>,
}

/// Locked memory one face worker may need at the photo limits (24 MP: the RGB
/// image and its workspace; models/README.md), and what keys and decoded
/// requests need besides arriving bodies (`[server] body_budget_bytes`),
/// including the at most 256 KiB of small buffers `arclock_secmem` keeps
/// locked for reuse.
const PER_WORKER_MIB: u64 = 80;
const BASE_MIB: u64 = 32;

/// The first thing `main` does after parsing arguments (before any thread).
pub fn at_start(allow_root: bool) -> Result<Report, HardeningError> {
    let sys = |what| move |source| HardeningError::Syscall { what, source };
    process::disable_core_dumps().map_err(sys("disabling core dumps"))?;
    process::set_private_umask();
    let write_execute_denied =
        process::deny_write_execute().map_err(sys("denying writable-executable memory"))?;
    if process::effective_uid() == 0 && !allow_root {
        return Err(HardeningError::Root);
    }
    Ok(Report {
        write_execute_denied,
        memlock_mib: None,
    })
}

/// Checks that need the configuration: lockable memory for the configured
/// workers, and directories holding state that only we can write.
pub fn check(config: &Config, report: &mut Report) -> Result<(), HardeningError> {
    let unlimited = process::can_lock_past_limit();
    let limit = process::memlock_limit().map_err(|source| HardeningError::Syscall {
        what: "reading RLIMIT_MEMLOCK",
        source,
    })?;
    let bodies_mib = (config.server.body_budget_bytes as u64).div_ceil(1024 * 1024);
    report.memlock_mib = memlock_enough(limit, unlimited, config.models.workers, bodies_mib)?;
    let mut dirs = vec![config.admin.socket.as_path()];
    if config.store.backend == crate::config::Backend::Embedded {
        dirs.push(config.store.path.as_path());
    }
    if let Some(pin) = &config.hsm.pin_file {
        dirs.push(pin.as_path());
    }
    for file in dirs {
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        private_dir(dir)?;
    }
    Ok(())
}

/// Whether `limit` bytes of lockable memory (`None`: unlimited) cover
/// `workers` and the arriving bodies' budget; CAP_IPC_LOCK (`unlimited`:
/// root's, or a unit's ambient one) locks past any limit. The limit in MiB
/// when one applies.
fn memlock_enough(
    limit: Option<u64>,
    unlimited: bool,
    workers: usize,
    bodies_mib: u64,
) -> Result<Option<u64>, HardeningError> {
    let (Some(bytes), false) = (limit, unlimited) else {
        return Ok(None);
    };
    let have = bytes / (1024 * 1024);
    let need = BASE_MIB + PER_WORKER_MIB * workers as u64 + bodies_mib;
    if have < need {
        return Err(HardeningError::Memlock {
            have,
            need,
            workers,
        });
    }
    Ok(Some(have))
}

/// A directory we keep state in: ours or root's, and writable by nobody else.
fn private_dir(dir: &Path) -> Result<(), HardeningError> {
    let fail = |reason: String| HardeningError::StateDir {
        path: dir.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(dir).map_err(|e| fail(format!("{e} (create it first)")))?;
    if !meta.is_dir() {
        return Err(fail("not a directory".into()));
    }
    let me = process::effective_uid();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(fail(format!(
            "owned by uid {}, not by this daemon (uid {me}) or root",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(fail(format!(
            "mode {:o} lets group or others write here; chmod go-w",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn memlock_must_cover_the_workers_unless_root() {
        let mib = |n: u64| Some(n * 1024 * 1024);
        let e = memlock_enough(mib(8), false, 2, 64)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("8 MiB") && e.contains("256 MiB") && e.contains("LimitMEMLOCK"),
            "{e}"
        );
        assert_eq!(memlock_enough(mib(512), false, 2, 64).unwrap(), Some(512));
        assert!(memlock_enough(mib(512), false, 6, 64).is_err());
        assert_eq!(memlock_enough(mib(8), true, 2, 64).unwrap(), None);
        assert_eq!(memlock_enough(None, false, 64, 64).unwrap(), None);
    }

    #[test]
    fn state_dirs_writable_by_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        private_dir(dir.path()).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("chmod go-w"), "{e}");
        let e = private_dir(&dir.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("create it first"), "{e}");
    }
}
