//! Memory for secrets: the only crate in ArcLock that contains `unsafe`.
//!
//! # Layout
//!
//! - [`LockedVec`]: a vector in its own anonymous mapping that is `mlock`ed
//!   (never swapped), `MADV_DONTDUMP` (never in a core dump), `MADV_WIPEONFORK`
//!   (never inherited by a child), and zeroized before it is unmapped or reused. It never
//!   moves: it either has its whole capacity from the start, or grows in place
//!   inside a reservation, locking pages before anything is written to them
//!   (a request body, whose size is known only once it has arrived). Image
//!   bytes, decoded pixels, input tensors, embeddings and plaintext private
//!   keys live in one of these.
//! - `spare`: small mappings, wiped but still locked and non-dumpable, kept
//!   for the next buffer of their size instead of being unmapped, because
//!   unmapping costs a TLB shootdown on every core the process runs on.
//! - [`process`]: process-wide hardening that needs raw syscalls (core dumps off,
//!   not ptrace-able, memlock limit checks).
//!
//! Every `unsafe` block carries a `// SAFETY:` comment; the workspace's
//! lints deny `unsafe_code` everywhere else (`Cargo.toml`).
#![allow(unsafe_code)]

pub mod process;
mod spare;

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

use zeroize::Zeroize;

/// Why locked memory could not be had.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused the mapping (address space or overcommit limits).
    #[error("cannot map {bytes} bytes for a secret buffer: {source}")]
    Map {
        bytes: usize,
        source: std::io::Error,
    },
    /// `mlock` failed: usually RLIMIT_MEMLOCK (systemd `LimitMEMLOCK=`) is too low.
    #[error(
        "cannot lock {bytes} bytes of secret memory ({source}); raise RLIMIT_MEMLOCK (systemd LimitMEMLOCK=)"
    )]
    Lock {
        bytes: usize,
        source: std::io::Error,
    },
    /// A write would pass the buffer's capacity (what is locked); secrets never reallocate
    /// because a reallocation would leave an unwiped copy behind.
    #[error("secret buffer full: capacity {capacity}, needed {needed}")]
    Capacity { capacity: usize, needed: usize },
}

/// Element types that may live in a [`LockedVec`]: plain data for which the
/// all-zero bit pattern is a valid value, so wiping never creates an invalid value.
pub trait Plain: Copy + Default + private::Sealed + 'static {}
impl Plain for u8 {}
impl Plain for f32 {}
impl Plain for i16 {}
mod private {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for f32 {}
    impl Sealed for i16 {}
}

/// A vector of secret data in locked, non-dumpable memory that is zeroized on
/// drop. It never reallocates, so no stale copy is left on the heap: its
/// capacity is fixed, or grows in place ([`LockedVec::reserved`]).
pub struct LockedVec<T: Plain> {
    ptr: NonNull<T>,
    len: usize,
    /// Bytes locked from the start of the mapping (whole pages): the only
    /// part ever written, and what [`LockedVec::capacity`] counts.
    locked: usize,
    /// Bytes mapped: the most `locked` can grow to.
    mapped: usize,
    _owns: PhantomData<T>,
}

// SAFETY: LockedVec owns its mapping exclusively (like Vec<T>); T is plain data.
unsafe impl<T: Plain + Send> Send for LockedVec<T> {}
// SAFETY: shared references only give out &[T]; mutation needs &mut self.
unsafe impl<T: Plain + Sync> Sync for LockedVec<T> {}

/// Bytes of secret data (image bytes, private keys).
pub type LockedBytes = LockedVec<u8>;

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page)
        .ok()
        .filter(|p| *p > 0)
        .unwrap_or(4096)
}

impl<T: Plain> LockedVec<T> {
    /// Maps, locks and marks non-dumpable room for `capacity` elements, or
    /// takes a spare mapping of as many pages (wiped, locked, non-dumpable).
    pub fn with_capacity(capacity: usize) -> Result<Self, Error> {
        let mapped = Self::mapped_bytes(capacity)?;
        if let Some(ptr) = spare::take(mapped) {
            return Ok(Self {
                ptr: ptr.cast(),
                len: 0,
                locked: mapped,
                mapped,
                _owns: PhantomData,
            });
        }
        let mut v = Self::map(capacity, 0)?;
        v.grow_to(capacity.max(1))?;
        Ok(v)
    }

    /// Room for up to `limit` elements as address space only: nothing is
    /// locked (or resident) until [`LockedVec::grow_to`] locks it, so what
    /// the buffer holds follows what was written, never a size merely
    /// promised, and growing never copies. The whole reservation is
    /// `MADV_DONTDUMP` and `MADV_WIPEONFORK` from the start; its unlocked
    /// pages are never written.
    pub fn reserved(limit: usize) -> Result<Self, Error> {
        Self::map(limit, libc::MAP_NORESERVE)
    }

    /// Makes room for at least `capacity` elements by locking more of the
    /// mapping (whole pages), in place. Fails past the reservation.
    pub fn grow_to(&mut self, capacity: usize) -> Result<(), Error> {
        if capacity <= self.capacity() {
            return Ok(());
        }
        let elem = std::mem::size_of::<T>().max(1);
        let too_big = || Error::Capacity {
            capacity: self.mapped / elem,
            needed: capacity,
        };
        let bytes = capacity.checked_mul(elem).ok_or_else(too_big)?;
        if bytes > self.mapped {
            return Err(too_big());
        }
        let page = page_size();
        let upto = bytes.div_ceil(page).saturating_mul(page).min(self.mapped);
        let more = upto - self.locked;
        // SAFETY: [ptr+locked, ptr+upto) lies inside our own mapping
        // (locked <= upto <= mapped).
        let rc =
            unsafe { libc::mlock(self.ptr.as_ptr().cast::<u8>().add(self.locked).cast(), more) };
        if rc != 0 {
            return Err(Error::Lock {
                bytes: more,
                source: std::io::Error::last_os_error(),
            });
        }
        self.locked = upto;
        Ok(())
    }

    /// The whole pages `capacity` elements take.
    fn mapped_bytes(capacity: usize) -> Result<usize, Error> {
        let elem = std::mem::size_of::<T>().max(1);
        let page = page_size();
        let wanted = capacity.saturating_mul(elem).max(1);
        wanted
            .checked_add(page - 1)
            .map(|n| n / page * page)
            .ok_or(Error::Capacity {
                capacity: usize::MAX,
                needed: capacity,
            })
    }

    /// An anonymous mapping for `capacity` elements, non-dumpable and wiped
    /// on fork, with nothing locked yet.
    fn map(capacity: usize, flags: libc::c_int) -> Result<Self, Error> {
        let mapped = Self::mapped_bytes(capacity)?;
        // SAFETY: anonymous private mapping with no address hint; the result is
        // checked against MAP_FAILED before use.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(Error::Map {
                bytes: mapped,
                source: std::io::Error::last_os_error(),
            });
        }
        let unmap = |raw: *mut libc::c_void| {
            // SAFETY: `raw` is the mapping of `mapped` bytes created above, not yet shared.
            unsafe { libc::munmap(raw, mapped) };
        };
        // Before any page is locked or written, so no page of it is ever
        // dumpable. SAFETY: advice on our own mapping; DONTDUMP failing would
        // be a kernel without the feature, which we report.
        if unsafe { libc::madvise(raw, mapped, libc::MADV_DONTDUMP) } != 0 {
            let source = std::io::Error::last_os_error();
            unmap(raw);
            return Err(Error::Map {
                bytes: mapped,
                source,
            });
        }
        // Best effort: a forked child gets zero pages instead of our secrets.
        // SAFETY: advice on our own mapping; an old kernel without it returns EINVAL.
        unsafe { libc::madvise(raw, mapped, libc::MADV_WIPEONFORK) };
        let Some(ptr) = NonNull::new(raw.cast::<T>()) else {
            unmap(raw);
            return Err(Error::Map {
                bytes: mapped,
                source: std::io::Error::other("null mapping"),
            });
        };
        Ok(Self {
            ptr,
            len: 0,
            locked: 0,
            mapped,
            _owns: PhantomData,
        })
    }

    /// A locked copy of `data`. The caller still owns (and must wipe) the source.
    pub fn from_slice(data: &[T]) -> Result<Self, Error> {
        let mut v = Self::with_capacity(data.len())?;
        v.extend_from_slice(data)?;
        Ok(v)
    }

    /// A locked buffer of `len` zeroed elements, ready to be written in place.
    pub fn zeroed(len: usize) -> Result<Self, Error> {
        let mut v = Self::with_capacity(len)?;
        v.len = len; // the mapping is zero-filled by the kernel
        Ok(v)
    }

    /// Appends within the capacity (what is locked: [`LockedVec::grow_to`] adds more).
    pub fn extend_from_slice(&mut self, data: &[T]) -> Result<(), Error> {
        let needed = self.len.saturating_add(data.len());
        if needed > self.capacity() {
            return Err(Error::Capacity {
                capacity: self.capacity(),
                needed,
            });
        }
        // SAFETY: needed <= capacity, so the destination range is inside our
        // mapping, and `data` cannot overlap memory we exclusively own.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                data.len(),
            )
        };
        self.len = needed;
        Ok(())
    }

    /// Wipes the contents and sets the length to zero, keeping the mapping.
    ///
    /// Only `[0, len)` needs wiping: everything past `len` is zero already
    /// (fresh mappings are zero-filled, and `truncate`/`clear` wipe what they cut).
    pub fn clear(&mut self) {
        self.as_mut_slice().zeroize_plain();
        self.len = 0;
    }

    /// Sets the length to `len` within the capacity: growing exposes zeroed
    /// elements (the invariant above), shrinking wipes the cut-off part. Lets one
    /// locked buffer be reused across requests of different sizes.
    pub fn resize(&mut self, len: usize) -> Result<(), Error> {
        if len > self.capacity() {
            return Err(Error::Capacity {
                capacity: self.capacity(),
                needed: len,
            });
        }
        if len < self.len {
            self.truncate(len);
        } else {
            self.len = len;
        }
        Ok(())
    }

    /// Whether the whole locked part (not only the elements in use) is zero:
    /// what tests use to prove a buffer was wiped after use. (The rest of a
    /// reservation is never written.)
    pub fn is_wiped(&self) -> bool {
        self.locked_bytes().iter().all(|b| *b == 0)
    }

    /// Shortens the vector, wiping what is cut off.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.as_mut_slice()[len..].zeroize_plain();
            self.len = len;
        }
    }

    /// Number of elements in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no element is in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements that fit in what is locked: the mapping rounded up to whole
    /// pages, or for a reservation what [`LockedVec::grow_to`] has locked so
    /// far (what the buffer really holds of the locked-memory budget).
    pub fn capacity(&self) -> usize {
        self.locked / std::mem::size_of::<T>().max(1)
    }

    /// The elements in use.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: [ptr, ptr+len) is initialised (zero-filled mapping or written) and ours.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The elements in use, writable in place.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in as_slice, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Address range of the mapping, for tests that check `/proc/self/smaps`.
    pub fn mapping(&self) -> (usize, usize) {
        let start = self.ptr.as_ptr() as usize;
        (start, start + self.mapped)
    }

    /// The locked part of the mapping as bytes, past `len` too.
    fn locked_bytes(&self) -> &[u8] {
        // SAFETY: [ptr, ptr+locked) is ours, resident and initialised (zero-filled
        // by the kernel or written), and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>(), self.locked) }
    }

    fn wipe_all(&mut self) {
        // SAFETY: as in `locked_bytes`, and `&mut self` gives exclusive access.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<u8>(), self.locked) };
        bytes.zeroize();
    }
}

trait ZeroizePlain {
    fn zeroize_plain(&mut self);
}

impl<T: Plain> ZeroizePlain for [T] {
    fn zeroize_plain(&mut self) {
        let len = std::mem::size_of_val(self);
        // SAFETY: T is plain data, all-zero is a valid T, and the byte view covers
        // exactly this slice.
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr().cast::<u8>(), len) };
        bytes.zeroize();
    }
}

impl<T: Plain> Drop for LockedVec<T> {
    fn drop(&mut self) {
        self.wipe_all();
        // Wiped and wholly locked: a small one waits for the next buffer of
        // its size instead of being unmapped.
        if self.locked == self.mapped && spare::keep(self.ptr.cast(), self.mapped) {
            return;
        }
        let raw = self.ptr.as_ptr().cast::<libc::c_void>();
        // SAFETY: our mapping of `mapped` bytes, its first `locked` locked and
        // wiped above (the rest never written), no longer referenced.
        unsafe {
            libc::munlock(raw, self.locked);
            libc::munmap(raw, self.mapped);
        }
    }
}

impl<T: Plain> fmt::Debug for LockedVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockedVec([redacted; {}])", self.len)
    }
}

impl<T: Plain> std::ops::Deref for LockedVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Plain> std::ops::DerefMut for LockedVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_reuses_the_mapping_and_clear_wipes() {
        let mut v = LockedVec::<f32>::with_capacity(1000).unwrap();
        v.resize(10).unwrap();
        assert!(v.iter().all(|x| *x == 0.0));
        v.iter_mut().for_each(|x| *x = 1.5);
        v.resize(4).unwrap();
        v.resize(10).unwrap();
        assert_eq!(
            &v[..5],
            &[1.5, 1.5, 1.5, 1.5, 0.0],
            "the cut-off tail was wiped"
        );
        assert!(!v.is_wiped());
        v.clear();
        assert!(v.is_wiped());
        assert!(v.resize(v.capacity() + 1).is_err());
    }

    #[test]
    fn round_trip_and_capacity() {
        let mut v = LockedBytes::with_capacity(10).unwrap();
        assert!(v.capacity() >= 10);
        v.extend_from_slice(b"secret").unwrap();
        assert_eq!(v.as_slice(), b"secret");
        let cap = v.capacity();
        let err = v.extend_from_slice(&vec![0u8; cap]).unwrap_err();
        assert!(matches!(err, Error::Capacity { .. }));
        assert_eq!(format!("{v:?}"), "LockedVec([redacted; 6])");
    }

    /// The locked part of the mapping, past `len`, as bytes: what a core
    /// dump or a later reader of the pages would see (the rest of a
    /// reservation is never written).
    fn raw<T: Plain>(v: &LockedVec<T>) -> &[u8] {
        v.locked_bytes()
    }

    #[test]
    fn clear_and_truncate_wipe_the_pages() {
        let mut v = LockedVec::<f32>::zeroed(8).unwrap();
        v.as_mut_slice().fill(1.5);
        v.truncate(4);
        assert_eq!(v.len(), 4);
        assert!(
            raw(&v)[16..].iter().all(|b| *b == 0),
            "truncated tail not wiped"
        );
        assert!(raw(&v)[..16].iter().any(|b| *b != 0));
        v.clear();
        assert!(v.is_empty());
        assert!(raw(&v).iter().all(|b| *b == 0), "clear left bytes behind");
    }

    /// The `VmFlags` and `Locked:` lines of the mapping (VMA) that holds
    /// `addr`, from `/proc/self/smaps`. The kernel merges neighbouring mappings
    /// with the same flags (other tests' buffers, made at the same time), and
    /// splits one whose pages are locked in part.
    fn vma_of(addr: usize) -> (String, String) {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let holds = |l: &str| {
            let Some((range, _)) = l.split_once(' ') else {
                return false;
            };
            let Some((a, b)) = range.split_once('-') else {
                return false;
            };
            match (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                (Ok(a), Ok(b)) => (a..b).contains(&addr),
                _ => false,
            }
        };
        let section: String = smaps
            .split_inclusive('\n')
            .skip_while(|l| !holds(l))
            .take_while({
                let mut first = true;
                move |l| std::mem::take(&mut first) || !l.contains('-') || l.starts_with("VmFlags")
            })
            .collect();
        let line = |key: &str| {
            section
                .lines()
                .find(|l| l.starts_with(key))
                .unwrap_or_else(|| panic!("no {key} for {addr:#x}: {section}"))
                .to_string()
        };
        (line("VmFlags"), line("Locked:"))
    }

    #[test]
    fn mapping_is_locked_and_not_dumped() {
        let v = LockedBytes::from_slice(&[7u8; 5000]).unwrap();
        let (start, _) = v.mapping();
        let (flags, _) = vma_of(start);
        assert!(flags.contains(" lo"), "not locked: {flags}");
        assert!(flags.contains(" dd"), "not marked dontdump: {flags}");
    }

    /// A dropped small buffer's mapping is the next buffer of its size:
    /// wiped, still locked and non-dumpable. A burst keeps no more than the
    /// bound; the rest is unmapped. (Three pages: no other test here makes
    /// a buffer of that size.)
    #[test]
    fn a_small_buffer_is_kept_wiped_and_locked_for_the_next() {
        let page = page_size();
        let mut v = LockedBytes::with_capacity(3 * page).unwrap();
        v.extend_from_slice(&vec![0xA5; 3 * page]).unwrap();
        let at = v.as_ptr() as usize;
        drop(v);
        let w = LockedBytes::with_capacity(3 * page - 100).unwrap();
        assert_eq!(w.as_ptr() as usize, at, "the kept mapping is reused");
        assert_eq!((w.len(), w.capacity()), (0, 3 * page));
        assert!(w.is_wiped(), "reused with the last buffer's bytes in it");
        let (flags, locked) = vma_of(at);
        assert!(flags.contains(" lo") && flags.contains(" dd"), "{flags}");
        assert_ne!(locked.split_whitespace().nth(1), Some("0"), "{locked}");
        let mut w = w;
        w.extend_from_slice(&[0x5A; 64]).unwrap();
        drop(w);
        let z = LockedVec::<f32>::zeroed(3 * page / 4).unwrap();
        assert_eq!(z.as_ptr() as usize, at, "kept for any element type");
        assert!(z.iter().all(|x| *x == 0.0), "zeroed() over a kept mapping");
        drop(z);

        let burst: Vec<_> = (0..spare::KEPT_PAGES)
            .map(|_| LockedBytes::with_capacity(3 * page).unwrap())
            .collect();
        drop(burst);
        let waiting = spare::waiting(3);
        assert!(
            (1..=spare::KEPT_PAGES / 3).contains(&waiting),
            "{waiting} three-page mappings kept"
        );
    }

    /// A reservation locks (and holds) only what was asked for so far, grows
    /// in place, is never dumpable, and refuses to grow past its limit.
    #[test]
    fn a_reservation_locks_only_what_it_grew_to() {
        let page = page_size();
        let mut v = LockedBytes::reserved(64 * page).unwrap();
        let (start, end) = v.mapping();
        assert_eq!(end - start, 64 * page);
        assert_eq!(v.capacity(), 0);
        assert!(
            v.extend_from_slice(b"x").is_err(),
            "wrote into unlocked pages"
        );
        let (flags, _) = vma_of(start);
        assert!(!flags.contains(" lo"), "locked before any growth: {flags}");
        assert!(flags.contains(" dd"), "dumpable before any growth: {flags}");

        v.grow_to(2 * page + 1).unwrap();
        assert_eq!(v.capacity(), 3 * page, "whole pages");
        v.extend_from_slice(&vec![9u8; 2 * page + 1]).unwrap();
        let at = v.as_ptr();
        v.grow_to(10 * page).unwrap();
        assert_eq!(v.as_ptr(), at, "grown in place, not moved");
        let (flags, _) = vma_of(start);
        assert!(flags.contains(" lo") && flags.contains(" dd"), "{flags}");
        let (flags, locked) = vma_of(start + 10 * page);
        assert!(!flags.contains(" lo"), "locked past the growth: {flags}");
        assert!(flags.contains(" dd"), "the rest is dumpable: {flags}");
        assert_eq!(locked.split_whitespace().nth(1), Some("0"), "{locked}");

        let err = v.grow_to(64 * page + 1).unwrap_err();
        assert!(matches!(err, Error::Capacity { .. }));
        v.grow_to(64 * page).unwrap();
        assert_eq!(v.capacity(), 64 * page);
        assert_eq!(v.len(), 2 * page + 1);
        v.clear();
        assert!(v.is_wiped());
    }
}
