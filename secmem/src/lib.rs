//! Memory for secrets: the only crate in ArcLock that contains `unsafe`.
//!
//! # Layout
//!
//! - [`LockedVec`]: a fixed-capacity vector in its own anonymous mapping that is
//!   `mlock`ed (never swapped), `MADV_DONTDUMP` (never in a core dump),
//!   `MADV_WIPEONFORK` (never inherited by a child), and zeroized before it is
//!   unmapped. Image bytes, decoded pixels, input tensors, embeddings and
//!   plaintext private keys live in one of these.
//! - [`process`]: process-wide hardening that needs raw syscalls (core dumps off,
//!   not ptrace-able, memlock limit checks).
//!
//! Every `unsafe` block carries a `// SAFETY:` comment; the workspace's
//! lints deny `unsafe_code` everywhere else (`Cargo.toml`).
#![allow(unsafe_code)]

pub mod process;

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
    /// A write would pass the buffer's fixed capacity; secrets never reallocate
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

/// A fixed-capacity vector of secret data in locked, non-dumpable memory that is
/// zeroized on drop. It never reallocates, so no stale copy is left on the heap.
pub struct LockedVec<T: Plain> {
    ptr: NonNull<T>,
    len: usize,
    capacity: usize,
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
    /// Maps, locks and marks non-dumpable room for `capacity` elements.
    pub fn with_capacity(capacity: usize) -> Result<Self, Error> {
        let elem = std::mem::size_of::<T>().max(1);
        let page = page_size();
        let wanted = capacity.saturating_mul(elem).max(1);
        let mapped = wanted
            .checked_add(page - 1)
            .map(|n| n / page * page)
            .ok_or(Error::Capacity {
                capacity: usize::MAX,
                needed: capacity,
            })?;
        // SAFETY: anonymous private mapping with no address hint; the result is
        // checked against MAP_FAILED before use.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
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
        // SAFETY: [raw, raw+mapped) is our own fresh mapping.
        if unsafe { libc::mlock(raw, mapped) } != 0 {
            let source = std::io::Error::last_os_error();
            unmap(raw);
            return Err(Error::Lock {
                bytes: mapped,
                source,
            });
        }
        // SAFETY: advice on our own mapping; failure only loses the advice, and
        // DONTDUMP failing would be a kernel without the feature, which we report.
        if unsafe { libc::madvise(raw, mapped, libc::MADV_DONTDUMP) } != 0 {
            let source = std::io::Error::last_os_error();
            // SAFETY: our mapping, locked above.
            unsafe { libc::munlock(raw, mapped) };
            unmap(raw);
            return Err(Error::Map {
                bytes: mapped,
                source,
            });
        }
        // Best effort: a forked child gets zero pages instead of our secrets.
        // SAFETY: advice on our own mapping; an old kernel without it returns EINVAL.
        unsafe { libc::madvise(raw, mapped, libc::MADV_WIPEONFORK) };
        let ptr = NonNull::new(raw.cast::<T>()).ok_or(Error::Map {
            bytes: mapped,
            source: std::io::Error::other("null mapping"),
        })?;
        Ok(Self {
            ptr,
            len: 0,
            capacity: mapped / elem,
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

    /// Appends within the fixed capacity.
    pub fn extend_from_slice(&mut self, data: &[T]) -> Result<(), Error> {
        let needed = self.len.saturating_add(data.len());
        if needed > self.capacity {
            return Err(Error::Capacity {
                capacity: self.capacity,
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

    /// Sets the length to `len` within the fixed capacity: growing exposes zeroed
    /// elements (the invariant above), shrinking wipes the cut-off part. Lets one
    /// locked buffer be reused across requests of different sizes.
    pub fn resize(&mut self, len: usize) -> Result<(), Error> {
        if len > self.capacity {
            return Err(Error::Capacity {
                capacity: self.capacity,
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

    /// Whether the whole mapping (not only the elements in use) is zero: what
    /// tests use to prove a buffer was wiped after use.
    pub fn is_wiped(&self) -> bool {
        // SAFETY: the whole mapping is ours and readable for `mapped` bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>(), self.mapped) };
        bytes.iter().all(|b| *b == 0)
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

    /// Fixed capacity in elements (the mapping rounded up to whole pages).
    pub fn capacity(&self) -> usize {
        self.capacity
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

    fn wipe_all(&mut self) {
        // SAFETY: the whole mapping is ours and valid for writes of `mapped` bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<u8>(), self.mapped) };
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
        let raw = self.ptr.as_ptr().cast::<libc::c_void>();
        // SAFETY: our mapping of `mapped` bytes, wiped above and no longer referenced.
        unsafe {
            libc::munlock(raw, self.mapped);
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

    /// The whole mapping, past `len`, as bytes: what a core dump or a later
    /// reader of the pages would see.
    fn raw<T: Plain>(v: &LockedVec<T>) -> &[u8] {
        // SAFETY: the mapping is ours, initialised, and lives as long as `v`.
        unsafe { std::slice::from_raw_parts(v.ptr.as_ptr().cast::<u8>(), v.mapped) }
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

    #[test]
    fn mapping_is_locked_and_not_dumped() {
        let v = LockedBytes::from_slice(&[7u8; 5000]).unwrap();
        let (start, _) = v.mapping();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        // The kernel merges neighbouring mappings with the same flags (other
        // tests' buffers, made at the same time): find the one that holds ours.
        let holds = |l: &str| {
            let Some((range, _)) = l.split_once(' ') else {
                return false;
            };
            let Some((a, b)) = range.split_once('-') else {
                return false;
            };
            match (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                (Ok(a), Ok(b)) => (a..b).contains(&start),
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
        let flags = section.lines().find(|l| l.starts_with("VmFlags")).unwrap();
        assert!(flags.contains(" lo"), "not locked: {flags}");
        assert!(flags.contains(" dd"), "not marked dontdump: {flags}");
        assert!(section.contains("Locked:"), "{section}");
    }
}
