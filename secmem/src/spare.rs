//! Small secret mappings kept for reuse instead of unmapped.
//!
//! Unmapping memory that other threads of the process may hold in their TLBs
//! makes the kernel interrupt every core they run on (a shootdown; under a
//! hypervisor each is a VM exit). Measured on the 2-core benchmark host, a
//! one-page buffer made and dropped took ~10 µs with the other core idle and
//! ~34 µs with another thread of the process running there, as a face worker
//! always is under load. The daemon makes a few such buffers per request on
//! its runtime threads (HSM calls, opened keys, embeddings). So a dropped
//! buffer of at most [`MAX_PAGES`] pages, already wiped and still locked,
//! waits here for the next buffer of its size. At most [`KEPT_PAGES`] pages
//! wait (256 KiB with 4 KiB pages, part of the daemon's base memlock
//! allowance); what a burst frees beyond that is unmapped as before.
//!
//! A kept mapping stays `MADV_DONTDUMP` and `MADV_WIPEONFORK` (advice lives
//! with the mapping). Locks are not inherited by a forked child, so a child
//! neither takes what its parent kept nor keeps anything itself.

use std::ptr::NonNull;
use std::sync::Mutex;

/// The largest buffer kept, in pages: what a request's small secrets take.
pub(crate) const MAX_PAGES: usize = 4;

/// The most pages kept at once, over all sizes.
pub(crate) const KEPT_PAGES: usize = 64;

struct Kept {
    /// The process that locked them (0: none yet).
    owner: u32,
    /// Addresses of kept mappings of `i + 1` pages.
    by_pages: [Vec<usize>; MAX_PAGES],
}

impl Kept {
    /// Whether this process locked what is kept. The first caller claims
    /// the list. A forked child (another pid) forgets its parent's mappings,
    /// which are not locked in it, and keeps nothing of its own.
    fn ours(&mut self) -> bool {
        let me = std::process::id();
        if self.owner == 0 {
            self.owner = me;
        }
        if self.owner != me {
            self.by_pages.iter_mut().for_each(Vec::clear);
            return false;
        }
        true
    }

    /// Pages kept, over all sizes.
    fn pages(&self) -> usize {
        (1..=MAX_PAGES)
            .zip(&self.by_pages)
            .map(|(pages, kept)| pages * kept.len())
            .sum()
    }
}

static KEPT: Mutex<Kept> = Mutex::new(Kept {
    owner: 0,
    by_pages: [const { Vec::new() }; MAX_PAGES],
});

/// A kept mapping of exactly `bytes` (whole pages): wiped, locked,
/// non-dumpable. `None` when none of that size waits.
pub(crate) fn take(bytes: usize) -> Option<NonNull<u8>> {
    let pages = pages_of(bytes)?;
    let mut kept = KEPT.lock().ok()?;
    if !kept.ours() {
        return None;
    }
    let addr = kept.by_pages[pages - 1].pop()?;
    NonNull::new(addr as *mut u8)
}

/// Keeps a mapping of `bytes` that the caller has wiped and that is locked
/// throughout. False when it is too large or enough are kept: the caller
/// unmaps it.
pub(crate) fn keep(ptr: NonNull<u8>, bytes: usize) -> bool {
    let Some(pages) = pages_of(bytes) else {
        return false;
    };
    let Ok(mut kept) = KEPT.lock() else {
        return false;
    };
    if !kept.ours() || kept.pages() + pages > KEPT_PAGES {
        return false;
    }
    kept.by_pages[pages - 1].push(ptr.as_ptr() as usize);
    true
}

/// `bytes` in pages, if it is a size that is kept.
fn pages_of(bytes: usize) -> Option<usize> {
    let page = super::page_size();
    bytes
        .is_multiple_of(page)
        .then_some(bytes / page)
        .filter(|p| (1..=MAX_PAGES).contains(p))
}

/// How many mappings of `pages` pages wait, for tests.
#[cfg(test)]
pub(crate) fn waiting(pages: usize) -> usize {
    KEPT.lock().unwrap().by_pages[pages - 1].len()
}
