//! Device memory accounting: how many bytes of each device are in use, and
//! refusing allocations beyond the capacity. With `FAKE_CUDA_STATE_DIR` the
//! counters live in a file shared by every process on the machine (one slot
//! per pid, slots of dead pids ignored), so `cuMemGetInfo` reflects all
//! processes like a real GPU; otherwise they are per process.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::config::MAX_DEVICES;
use crate::ffi::{CUDA_ERROR_OUT_OF_MEMORY, CUresult};

/// Slots in the shared table: the most processes that can hold memory at once.
const SLOTS: usize = 512;
const STATE_FILE: &str = "fake-cuda-memory.v1";

/// One process's counters in the shared table.
#[repr(C)]
struct Slot {
    pid: AtomicU32,
    _pad: u32,
    used: [AtomicU64; MAX_DEVICES],
}

/// The per-device byte counters and the capacity they are held to.
pub struct Accounting {
    capacity: u64,
    backend: Backend,
}

enum Backend {
    Local([AtomicU64; MAX_DEVICES]),
    Shared(SharedTable),
}

struct SharedTable {
    file: OwnedFd,
    slots: &'static [Slot],
    /// (pid, slot index) of this process; re-claimed after `fork`.
    own: Mutex<Option<(u32, usize)>>,
}

impl Accounting {
    /// Per-process counters.
    pub fn local(capacity: u64) -> Accounting {
        Accounting {
            capacity,
            backend: Backend::Local(Default::default()),
        }
    }

    /// Counters in `<dir>/fake-cuda-memory.v1`, shared by all processes.
    pub fn shared(capacity: u64, dir: &Path) -> Result<Accounting, String> {
        let path = dir.join(STATE_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                format!(
                    "FAKE_CUDA_STATE_DIR: cannot open {}: {e}; point it at a writable directory",
                    path.display()
                )
            })?;
        let bytes = SLOTS * size_of::<Slot>();
        file.set_len(bytes as u64)
            .map_err(|e| format!("FAKE_CUDA_STATE_DIR: cannot size {}: {e}", path.display()))?;
        // SAFETY: maps `bytes` of a file we just sized to `bytes`; the mapping
        // is never unmapped, so the 'static slice below stays valid.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!(
                "FAKE_CUDA_STATE_DIR: cannot map {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: the mapping is page aligned, `bytes` long, zero-filled or
        // written only through these atomics, and `Slot` is plain atomics.
        let slots = unsafe { std::slice::from_raw_parts(base as *const Slot, SLOTS) };
        Ok(Accounting {
            capacity,
            backend: Backend::Shared(SharedTable {
                file: file.into(),
                slots,
                own: Mutex::new(None),
            }),
        })
    }

    /// Bytes per device.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes of `device` in use by every process this accounting sees.
    pub fn used(&self, device: usize) -> u64 {
        match &self.backend {
            Backend::Local(used) => used[device].load(Ordering::SeqCst),
            Backend::Shared(table) => table.with_lock(|| table.used(device)),
        }
    }

    /// Charges `bytes` to `device`, or fails with OUT_OF_MEMORY if that would
    /// pass the capacity.
    pub fn charge(&self, device: usize, bytes: u64) -> Result<(), CUresult> {
        let capacity = self.capacity;
        match &self.backend {
            Backend::Local(used) => used[device]
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                    now.checked_add(bytes).filter(|after| *after <= capacity)
                })
                .map(drop)
                .map_err(|_| CUDA_ERROR_OUT_OF_MEMORY),
            Backend::Shared(table) => table.with_lock(|| {
                if table.used(device).saturating_add(bytes) > capacity {
                    return Err(CUDA_ERROR_OUT_OF_MEMORY);
                }
                table.own_slot().used[device].fetch_add(bytes, Ordering::SeqCst);
                Ok(())
            }),
        }
    }

    /// Charges `bytes` even past the capacity (managed memory oversubscribes).
    pub fn force_charge(&self, device: usize, bytes: u64) {
        match &self.backend {
            Backend::Local(used) => {
                used[device].fetch_add(bytes, Ordering::SeqCst);
            }
            Backend::Shared(table) => table.with_lock(|| {
                table.own_slot().used[device].fetch_add(bytes, Ordering::SeqCst);
            }),
        }
    }

    /// Gives back `bytes` charged earlier.
    pub fn release(&self, device: usize, bytes: u64) {
        let counter = match &self.backend {
            Backend::Local(used) => &used[device],
            Backend::Shared(table) => &table.with_lock(|| table.own_slot()).used[device],
        };
        let _ = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
            Some(now.saturating_sub(bytes))
        });
    }
}

impl SharedTable {
    /// Runs `f` holding an exclusive `flock` on the table, so that the
    /// check-and-charge of one process does not race with another's.
    fn with_lock<T>(&self, f: impl FnOnce() -> T) -> T {
        let fd = self.file.as_raw_fd();
        // SAFETY: `fd` is an open file owned by `self`.
        while unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {}
        let result = f();
        // SAFETY: as above.
        unsafe { libc::flock(fd, libc::LOCK_UN) };
        result
    }

    /// Sum over live processes' slots. Call with the lock held.
    fn used(&self, device: usize) -> u64 {
        self.slots
            .iter()
            .filter(|slot| pid_alive(slot.pid.load(Ordering::SeqCst)))
            .map(|slot| slot.used[device].load(Ordering::SeqCst))
            .sum()
    }

    /// This process's slot, claiming a free or dead one on first use (or after
    /// a fork). Call with the lock held.
    fn own_slot(&self) -> &Slot {
        let pid = std::process::id();
        let mut own = self.own.lock();
        if let Some((owner, index)) = *own
            && owner == pid
        {
            return &self.slots[index];
        }
        let index = self
            .slots
            .iter()
            .position(|slot| {
                let holder = slot.pid.load(Ordering::SeqCst);
                holder == pid || !pid_alive(holder)
            })
            .expect("fake-cuda: the shared memory table has no free slot (512 live processes)");
        let slot = &self.slots[index];
        for counter in &slot.used {
            counter.store(0, Ordering::SeqCst);
        }
        slot.pid.store(pid, Ordering::SeqCst);
        *own = Some((pid, index));
        slot
    }
}

fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let result = unsafe { libc::kill(pid as libc::pid_t, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_charges_stop_at_capacity_and_release_frees() {
        let accounting = Accounting::local(100);
        accounting.charge(0, 60).unwrap();
        assert_eq!(accounting.charge(0, 41), Err(CUDA_ERROR_OUT_OF_MEMORY));
        accounting.charge(0, 40).unwrap();
        assert_eq!(accounting.used(0), 100);
        assert_eq!(accounting.used(1), 0);
        accounting.release(0, 70);
        assert_eq!(accounting.used(0), 30);
        accounting.force_charge(0, 200);
        assert_eq!(accounting.used(0), 230);
    }

    proptest::proptest! {
        /// Whatever the sequence of charges and releases, the use never
        /// passes the capacity through `charge`, and always equals the sum
        /// of what was granted minus what was given back.
        #[test]
        fn use_matches_a_model_and_never_passes_capacity(
            ops in proptest::collection::vec((proptest::bool::ANY, 0u64..400, 0usize..2), 1..60)
        ) {
            let accounting = Accounting::local(1000);
            let mut model = [0u64; 2];
            for (is_charge, bytes, device) in ops {
                if is_charge {
                    let fits = model[device] + bytes <= 1000;
                    proptest::prop_assert_eq!(accounting.charge(device, bytes).is_ok(), fits);
                    if fits {
                        model[device] += bytes;
                    }
                } else {
                    let back = bytes.min(model[device]);
                    accounting.release(device, back);
                    model[device] -= back;
                }
                proptest::prop_assert_eq!(accounting.used(device), model[device]);
                proptest::prop_assert!(accounting.used(device) <= 1000);
            }
        }
    }

    #[test]
    fn shared_table_sums_slots_of_live_pids_only() {
        let dir = tempfile::tempdir().unwrap();
        let first = Accounting::shared(1000, dir.path()).unwrap();
        let second = Accounting::shared(1000, dir.path()).unwrap();
        first.charge(0, 300).unwrap();
        // Same pid: both views share one slot, as two loads in one process would.
        assert_eq!(second.used(0), 300);
        assert_eq!(second.charge(0, 701), Err(CUDA_ERROR_OUT_OF_MEMORY));
        if let Backend::Shared(table) = &first.backend {
            // A slot left by a dead process does not count.
            let dead = &table.slots[SLOTS - 1];
            dead.pid.store(i32::MAX as u32 - 7, Ordering::SeqCst);
            dead.used[0].store(500, Ordering::SeqCst);
        }
        assert_eq!(first.used(0), 300);
        second.release(0, 300);
        assert_eq!(first.used(0), 0);
    }
}
