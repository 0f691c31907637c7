//! Process-wide hardening that needs raw syscalls.

use std::io;

/// Turns core dumps off (RLIMIT_CORE 0) and makes the process non-dumpable
/// (PR_SET_DUMPABLE 0: no core, no ptrace attach by same-uid processes, /proc/self/mem
/// unreadable to others). Called first thing in `main`.
pub fn disable_core_dumps() -> io::Result<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass by reference.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the process is currently dumpable (for health and tests).
pub fn is_dumpable() -> bool {
    // SAFETY: prctl(PR_GET_DUMPABLE) takes no pointers.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) == 1 }
}

/// The soft RLIMIT_MEMLOCK in bytes (`None` = unlimited), so start-up can say
/// clearly when locked buffers will not fit.
pub fn memlock_limit() -> io::Result<Option<u64>> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur))
}

/// Whether CAP_IPC_LOCK is in the effective set, so mlock ignores
/// RLIMIT_MEMLOCK (root has it; so does a unit granting it with
/// `AmbientCapabilities=`). Read from /proc/self/status; `false` if unreadable.
pub fn can_lock_past_limit() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Sets the file-creation mask so every file the daemon writes is private by default.
pub fn set_private_umask() {
    // SAFETY: umask has no memory-safety preconditions.
    unsafe { libc::umask(0o077) };
}

/// The effective user id, to refuse running as root unless told to.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and takes no arguments.
    unsafe { libc::geteuid() }
}

/// Refuses, from now on, any mapping that is writable and executable at once,
/// or that becomes executable later (PR_SET_MDWE, Linux 6.3+; inherited by
/// children). The same guarantee as systemd's MemoryDenyWriteExecute=, kept
/// whatever the init system. `Ok(false)` when the kernel is too old for it.
pub fn deny_write_execute() -> io::Result<bool> {
    const PR_SET_MDWE: libc::c_int = 65;
    const PR_MDWE_REFUSE_EXEC_GAIN: libc::c_ulong = 1;
    // SAFETY: prctl(PR_SET_MDWE, flags, 0, 0, 0) takes no pointers.
    if unsafe { libc::prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EINVAL) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Whether write-xor-execute is in force for this process (PR_GET_MDWE).
pub fn write_execute_denied() -> bool {
    const PR_GET_MDWE: libc::c_int = 66;
    // SAFETY: prctl(PR_GET_MDWE, 0, 0, 0, 0) takes no pointers.
    unsafe { libc::prctl(PR_GET_MDWE, 0, 0, 0, 0) > 0 }
}

/// Gives the C heap's free pages back to the kernel (`malloc_trim`). Loading
/// the face models parses and rewrites their graphs on the main thread, and
/// what that frees stays in glibc's main arena, counted in RSS for the life
/// of the process (~24 MiB of the daemon's 108 at idle). Returns whether any
/// memory went back. Elsewhere than glibc it does nothing.
pub fn release_free_heap() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim takes no pointers; it walks glibc's own free
        // lists under their locks and madvises whole free pages away.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

#[cfg(all(test, target_env = "gnu"))]
mod tests {
    #[test]
    fn freed_heap_goes_back_to_the_kernel() {
        // Blocks under glibc's mmap threshold come from an arena. Freeing all
        // but the last leaves whole free pages behind it, below the top, which
        // only trimming gives back.
        let mut blocks: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i | 1; 64 * 1024]).collect();
        let last = blocks.pop();
        drop(blocks);
        assert!(super::release_free_heap());
        drop(last);
    }
}
