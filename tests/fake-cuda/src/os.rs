//! The host memory operations that play device memory: anonymous mappings,
//! `PROT_NONE` reservations, and memfd-backed physical allocations mapped
//! shared into reserved ranges. All raw `mmap` calls of the fake live here.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::ffi::{CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_OUT_OF_MEMORY, CUresult};

/// The host page size.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u64 }
}

/// Rounds `bytes` up to a multiple of `align` (a power of two).
pub fn round_up(bytes: u64, align: u64) -> Option<u64> {
    Some(bytes.checked_add(align - 1)? & !(align - 1))
}

fn map(addr: u64, bytes: u64, prot: i32, flags: i32, fd: i32) -> Result<u64, CUresult> {
    // SAFETY: callers pass either no address, or MAP_FIXED over a range this
    // module reserved earlier (and that nothing else of the fake still uses).
    let base = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            bytes as usize,
            prot,
            flags,
            fd,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        Err(CUDA_ERROR_OUT_OF_MEMORY)
    } else {
        Ok(base as u64)
    }
}

/// Fresh zeroed read-write memory (a `cuMemAlloc` or pinned host buffer).
pub fn alloc(bytes: u64) -> Result<u64, CUresult> {
    map(
        0,
        bytes,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
    )
}

/// Fresh zeroed read-write memory below 2 GiB, for the 32-bit entry points.
pub fn alloc_low(bytes: u64) -> Result<u64, CUresult> {
    map(
        0,
        bytes,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_32BIT,
        -1,
    )
}

/// Reserves `bytes` of address space aligned to `align`, inaccessible. Tries
/// `hint` first when it is non-zero, as `cuMemAddressReserve` does.
pub fn reserve(bytes: u64, align: u64, hint: u64) -> Result<u64, CUresult> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    if hint != 0
        && hint.is_multiple_of(align)
        && let Ok(base) = map(
            hint,
            bytes,
            libc::PROT_NONE,
            flags | libc::MAP_FIXED_NOREPLACE,
            -1,
        )
    {
        if base == hint {
            return Ok(base);
        }
        release(base, bytes);
    }
    let padded = bytes.checked_add(align).ok_or(CUDA_ERROR_INVALID_VALUE)?;
    let raw = map(0, padded, libc::PROT_NONE, flags, -1)?;
    let base = round_up(raw, align).ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
    if base > raw {
        release(raw, base - raw);
    }
    let end = raw + padded;
    if end > base + bytes {
        release(base + bytes, end - (base + bytes));
    }
    Ok(base)
}

/// Returns a range to the reserved, inaccessible state (after an unmap).
pub fn make_reserved(addr: u64, bytes: u64) -> Result<(), CUresult> {
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED;
    map(addr, bytes, libc::PROT_NONE, flags, -1).map(drop)
}

/// Unmaps a range entirely.
pub fn release(addr: u64, bytes: u64) {
    // SAFETY: the range was mapped by this module and is no longer referenced.
    unsafe { libc::munmap(addr as *mut libc::c_void, bytes as usize) };
}

/// A memfd of `bytes` zero bytes: the "physical memory" behind a VMM handle
/// of `device`. The device is part of the memfd's name, so that an importer
/// of the descriptor in another process can tell it (see [`memfd_device`]).
pub fn memfd(bytes: u64, device: usize) -> Result<OwnedFd, CUresult> {
    let name = std::ffi::CString::new(format!("{MEMFD_PREFIX}{device}"))
        .map_err(|_| CUDA_ERROR_INVALID_VALUE)?;
    // SAFETY: the name is a valid NUL-terminated string.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(CUDA_ERROR_OUT_OF_MEMORY);
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `fd` is a valid open memfd.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), bytes as libc::off_t) } != 0 {
        return Err(CUDA_ERROR_OUT_OF_MEMORY);
    }
    Ok(fd)
}

const MEMFD_PREFIX: &str = "fake-cuda-vmm-device-";

/// The device of a memfd made by [`memfd`] (in any process), from its name.
pub fn memfd_device(fd: &OwnedFd) -> Option<usize> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let link = link.to_str()?;
    let rest = link.split(MEMFD_PREFIX).nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Maps `bytes` of `fd` shared at `addr` (inside a reservation), inaccessible
/// until [`protect`] grants access.
pub fn map_shared(addr: u64, bytes: u64, fd: &OwnedFd) -> Result<(), CUresult> {
    let flags = libc::MAP_SHARED | libc::MAP_FIXED;
    map(addr, bytes, libc::PROT_NONE, flags, fd.as_raw_fd()).map(drop)
}

/// Sets a mapped range readable/writable or not.
pub fn protect(addr: u64, bytes: u64, read: bool, write: bool) -> Result<(), CUresult> {
    let prot = match (read, write) {
        (_, true) => libc::PROT_READ | libc::PROT_WRITE,
        (true, false) => libc::PROT_READ,
        (false, false) => libc::PROT_NONE,
    };
    // SAFETY: the range lies inside a mapping this module made.
    let result = unsafe { libc::mprotect(addr as *mut libc::c_void, bytes as usize, prot) };
    if result == 0 {
        Ok(())
    } else {
        Err(CUDA_ERROR_INVALID_VALUE)
    }
}

/// Duplicates a descriptor (export/import of shareable handles).
pub fn dup(fd: i32) -> Result<OwnedFd, CUresult> {
    // SAFETY: F_DUPFD_CLOEXEC on any integer is safe; failure is reported.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if copy < 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: `copy` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// The size of the file behind a descriptor.
pub fn file_size(fd: &OwnedFd) -> Result<u64, CUresult> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `stat` is writable.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } != 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    Ok(stat.st_size as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_up_reaches_the_next_multiple() {
        assert_eq!(round_up(0, 4096), Some(0));
        assert_eq!(round_up(1, 4096), Some(4096));
        assert_eq!(round_up(4096, 4096), Some(4096));
        assert_eq!(round_up(u64::MAX, 4096), None);
    }

    #[test]
    fn reserved_ranges_are_aligned_and_memfd_contents_survive_remapping() {
        let two_mib = 2 << 20;
        let base = reserve(4 * two_mib, two_mib, 0).unwrap();
        assert_eq!(base % two_mib, 0);
        let fd = memfd(two_mib, 3).unwrap();
        assert_eq!(memfd_device(&fd), Some(3));
        map_shared(base, two_mib, &fd).unwrap();
        protect(base, two_mib, true, true).unwrap();
        // SAFETY: the range was just mapped read-write.
        unsafe { (base as *mut u32).write(0xdead_beef) };
        make_reserved(base, two_mib).unwrap();
        map_shared(base + two_mib, two_mib, &fd).unwrap();
        protect(base + two_mib, two_mib, true, false).unwrap();
        // SAFETY: mapped readable just above.
        let read = unsafe { ((base + two_mib) as *const u32).read() };
        assert_eq!(read, 0xdead_beef);
        release(base, 4 * two_mib);
    }
}
