//! Host shadows: where a swapped-out unit's contents live. Each is an
//! anonymous mapping, populated up front and page-locked with
//! `cuMemHostRegister` (registering pre-touched memory is ~10x faster than
//! `cuMemHostAlloc`, see DESIGN.md), and kept with its unit across switches
//! so that only the first eviction pays for it. If the driver refuses to
//! pin, the shadow stays pageable: copies are slower, nothing is lost.
//!
//! The total is bounded ([`HostBudget`]): `NVSHARE_HOST_LIMIT` bytes, or
//! what `/proc/meminfo` says is available minus a safety margin.

use super::plan;
use crate::driver;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a shadow could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    /// The shadows would exceed the host memory the hook may use.
    #[error(
        "host memory for swapped-out GPU memory is exhausted: {wanted} more bytes needed, {room} allowed ({limit}); free host memory, raise NVSHARE_HOST_LIMIT, or run fewer programs on this GPU"
    )]
    OverLimit {
        /// Bytes of new shadows needed.
        wanted: u64,
        /// Bytes that may still be taken.
        room: u64,
        /// Where the limit comes from.
        limit: &'static str,
    },
    /// The kernel refused the mapping.
    #[error(
        "cannot map {bytes} bytes of host memory for swapped-out GPU memory ({source}); free host memory or lower NVSHARE_HOST_LIMIT"
    )]
    NoHostMemory {
        /// The size asked for.
        bytes: u64,
        /// What `mmap` said.
        #[source]
        source: std::io::Error,
    },
}

/// One unit's host copy.
#[derive(Debug)]
pub struct Shadow {
    ptr: usize,
    bytes: u64,
    pinned: bool,
}

impl Shadow {
    /// Maps, populates (with huge pages where the kernel has them) and, if the
    /// driver agrees, pins `bytes` of host memory.
    pub fn new(bytes: u64) -> Result<Shadow, ShadowError> {
        Self::new_until(bytes, &|| false).map(|made| made.expect("never abandoned"))
    }

    /// As [`Shadow::new`], giving up (`Ok(None)`, the memory unmapped again)
    /// as soon as `abandon` says so between populating steps: a shadow made
    /// ahead of an eviction must not delay the drop that arrives meanwhile.
    pub fn new_until(
        bytes: u64,
        abandon: &(dyn Fn() -> bool + Sync),
    ) -> Result<Option<Shadow>, ShadowError> {
        // SAFETY: an anonymous private mapping at an address of the kernel's
        // choosing; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(ShadowError::NoHostMemory {
                bytes,
                source: std::io::Error::last_os_error(),
            });
        }
        // Populating is the first eviction's main cost (DESIGN.md: pinning
        // 12 GiB of 4 KiB pages takes seconds). Transparent huge pages cut
        // the page faults 512-fold; where they are unavailable the advice is
        // ignored. Populating now, rather than on first copy, turns a host
        // memory shortage into a clean refusal instead of an OOM kill later.
        // SAFETY: advice on the mapping just made, which nothing else uses.
        unsafe {
            libc::madvise(ptr, bytes as usize, libc::MADV_HUGEPAGE);
        }
        match populate(ptr as usize, bytes as usize, abandon) {
            Ok(true) => {}
            Ok(false) => {
                // SAFETY: unmapping the mapping made above, not yet shared.
                unsafe { libc::munmap(ptr, bytes as usize) };
                return Ok(None);
            }
            Err(error) => {
                if error.raw_os_error() != Some(libc::EINVAL) {
                    // SAFETY: unmapping the mapping made above, not yet shared.
                    unsafe { libc::munmap(ptr, bytes as usize) };
                    return Err(ShadowError::NoHostMemory {
                        bytes,
                        source: error,
                    });
                }
                // Kernels before 5.14 (and some sandboxes) lack the advice:
                // registering below faults the pages in instead.
            }
        }
        // SAFETY: `ptr` is the mapping of `bytes` just made; it stays mapped
        // until this shadow's Drop, which unregisters it first.
        let pinned = match unsafe { driver::mem::host_register(ptr, bytes) } {
            Ok(()) => true,
            Err(err) => {
                warn_pageable_once(&err);
                false
            }
        };
        Ok(Some(Shadow {
            ptr: ptr as usize,
            bytes,
            pinned,
        }))
    }

    /// The start of the host copy.
    pub fn ptr(&self) -> *mut c_void {
        self.ptr as *mut c_void
    }

    /// Its size.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether it is page-locked (copies run at full speed).
    pub fn is_pinned(&self) -> bool {
        self.pinned
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        if self.pinned {
            // SAFETY: registered in `new` and still mapped.
            if let Err(err) = unsafe { driver::mem::host_unregister(self.ptr()) } {
                tracing::debug!(%err, "unregistering a host shadow failed; unmapping it anyway");
            }
        }
        // SAFETY: the mapping made in `new`, of exactly `bytes`, unmapped once.
        unsafe { libc::munmap(self.ptr(), self.bytes as usize) };
    }
}

/// Below this, one thread populates a shadow: threads cost more than they save.
const POPULATE_PIECE: usize = 256 << 20;
/// The most threads that populate one shadow.
const POPULATE_THREADS: usize = 8;
/// Each thread populates its piece in steps of this, asking between steps
/// whether to give up (a few ms each at the rates DESIGN.md measured).
const POPULATE_STEP: usize = 64 << 20;

/// A pause before each populating step, in microseconds (0: none): lets
/// tests slow populating down to observe what happens meanwhile.
static POPULATE_PAUSE_US: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Slows every populating step by `pause` (tests only: a real shadow of
/// GiBs takes long enough by itself).
#[doc(hidden)]
pub fn slow_populating_for_tests(pause: std::time::Duration) {
    POPULATE_PAUSE_US.store(pause.as_micros() as u64, Ordering::Relaxed);
}

/// Faults in every page of the mapping at `addr` (`len` bytes), in
/// 2 MiB-aligned pieces on several threads: zeroing fresh pages (and, in a
/// VM, the hypervisor backing them) is the first eviction's main cost, and
/// it scales with cores (seen on the H200 VM: 12 GiB took ~3 s on one
/// thread). The first error wins; every thread is joined before returning.
/// Returns false if `abandon` said to give up (some pages then stay
/// unpopulated).
fn populate(addr: usize, len: usize, abandon: &(dyn Fn() -> bool + Sync)) -> std::io::Result<bool> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    populate_in_pieces(
        addr,
        len,
        POPULATE_PIECE,
        POPULATE_THREADS.min(cores),
        abandon,
    )
}

/// [`populate`] with pieces of at least `min_piece` bytes on at most
/// `max_threads` threads.
fn populate_in_pieces(
    addr: usize,
    len: usize,
    min_piece: usize,
    max_threads: usize,
    abandon: &(dyn Fn() -> bool + Sync),
) -> std::io::Result<bool> {
    const HUGE_PAGE: usize = 2 << 20;
    let threads = (len / min_piece).clamp(1, max_threads.max(1));
    let piece = len.div_ceil(threads).next_multiple_of(HUGE_PAGE);
    let abandoned = AtomicBool::new(false);
    let fault_in = |start: usize, end: usize| -> std::io::Result<()> {
        // SAFETY: [start, end) lies within the private anonymous mapping the
        // caller made and nothing else uses yet; MADV_POPULATE_WRITE only
        // faults its pages in.
        let rc = unsafe {
            libc::madvise(
                (addr + start) as *mut c_void,
                end - start,
                libc::MADV_POPULATE_WRITE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let fault_in_piece = |start: usize| -> std::io::Result<()> {
        let end = (start + piece).min(len);
        for step in (start..end).step_by(POPULATE_STEP) {
            let pause = POPULATE_PAUSE_US.load(Ordering::Relaxed);
            if pause > 0 {
                std::thread::sleep(std::time::Duration::from_micros(pause));
            }
            if abandoned.load(Ordering::Relaxed) || abandon() {
                abandoned.store(true, Ordering::Relaxed);
                return Ok(());
            }
            fault_in(step, (step + POPULATE_STEP).min(end))?;
        }
        Ok(())
    };
    if threads == 1 {
        fault_in_piece(0)?;
    } else {
        std::thread::scope(|scope| {
            let fault_in_piece = &fault_in_piece;
            let workers: Vec<_> = (0..len)
                .step_by(piece)
                .map(|start| scope.spawn(move || fault_in_piece(start)))
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join().unwrap_or_else(|_| {
                        Err(std::io::Error::other("a populating thread panicked"))
                    })
                })
                .collect::<std::io::Result<Vec<()>>>()
                .map(|_| ())
        })?;
    }
    Ok(!abandoned.load(Ordering::Relaxed))
}

fn warn_pageable_once(err: &driver::CudaError) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            %err,
            "cannot pin host memory for swapping; using pageable memory instead (swapping runs several times slower; raise the locked-memory limit, e.g. ulimit -l, to avoid it)"
        );
    }
}

/// How much host memory the shadows may take.
#[derive(Debug, Clone, Copy)]
pub struct HostBudget {
    /// `NVSHARE_HOST_LIMIT`, if set: a cap on the total of this process's
    /// shadows.
    pub explicit_limit: Option<u64>,
}

impl HostBudget {
    /// Fails unless `wanted` more shadow bytes fit beside `shadows_now`.
    pub fn admit(&self, shadows_now: u64, wanted: u64) -> Result<(), ShadowError> {
        if wanted == 0 {
            return Ok(());
        }
        let (mem_total, mem_available) = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| plan::parse_meminfo(&text))
            .unwrap_or((u64::MAX, u64::MAX));
        let room = plan::shadow_room(self.explicit_limit, shadows_now, mem_available, mem_total);
        if wanted <= room {
            Ok(())
        } else {
            Err(ShadowError::OverLimit {
                wanted,
                room,
                limit: if self.explicit_limit.is_some() {
                    "NVSHARE_HOST_LIMIT"
                } else {
                    "MemAvailable minus a safety margin"
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_limit_refuses_what_does_not_fit_and_admits_what_does() {
        let budget = HostBudget {
            explicit_limit: Some(100 << 20),
        };
        assert!(budget.admit(0, 100 << 20).is_ok());
        assert!(budget.admit(60 << 20, 40 << 20).is_ok());
        let refused = budget.admit(60 << 20, 41 << 20).unwrap_err();
        assert!(matches!(refused, ShadowError::OverLimit { room, .. } if room == 40 << 20));
        assert!(refused.to_string().contains("NVSHARE_HOST_LIMIT"));
        assert!(
            budget.admit(200 << 20, 0).is_ok(),
            "nothing new always fits"
        );
    }

    /// Pages of the mapping at `addr` that are resident, per `mincore`.
    fn resident_pages(addr: usize, len: usize) -> usize {
        let page = 4096;
        let mut flags = vec![0u8; len.div_ceil(page)];
        // SAFETY: `addr` is a page-aligned mapping of `len` bytes and
        // `flags` has one byte per page.
        let rc = unsafe { libc::mincore(addr as *mut c_void, len, flags.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        flags.iter().filter(|f| **f & 1 == 1).count()
    }

    #[test]
    fn populating_in_pieces_on_several_threads_faults_in_every_page() {
        let len = 37 << 20; // not a multiple of the pieces
        // SAFETY: a fresh private anonymous mapping, unmapped below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        assert_eq!(resident_pages(ptr as usize, len), 0);
        let populated = populate_in_pieces(ptr as usize, len, 4 << 20, 4, &|| false);
        if let Err(e) = &populated
            && e.raw_os_error() == Some(libc::EINVAL)
        {
            // A kernel without MADV_POPULATE_WRITE: nothing to check here.
        } else {
            assert!(populated.expect("populate"), "not abandoned");
            assert_eq!(resident_pages(ptr as usize, len), len / 4096);
        }
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(ptr, len) };
    }

    #[test]
    fn without_a_limit_more_than_the_machine_has_is_refused() {
        let budget = HostBudget {
            explicit_limit: None,
        };
        assert!(budget.admit(0, u64::MAX / 2).is_err());
        assert!(budget.admit(0, 1 << 20).is_ok());
    }
}
