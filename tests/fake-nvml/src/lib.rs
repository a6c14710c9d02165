//! A `libnvidia-ml.so.1` test double: the GPUs of the fake CUDA driver
//! (`tests/fake-cuda`) as NVML reports them, so that GPU discovery (the
//! scheduler's inventory, the device plugin) is tested without a GPU.
//!
//! It reads the fake driver's own settings (`tests/fake-gpus`), so a daemon and the programs
//! started with the same environment see the same GPUs: `FAKE_CUDA_DEVICES`
//! (count, default 1) and `FAKE_CUDA_MEMORY` (bytes each, default 16 GiB).
//! UUIDs and names are the fake driver's (`FAKECUDA` + the index + 1;
//! `Fake GPU <index>`).
//!
//! Health events: `FAKE_NVML_XID_FILE` names a file a test appends lines
//! `<index> <xid>` to; `nvmlEventSetWait_v2` reports each new line once as
//! a critical XID event of that GPU (registered or not), and times out
//! when there is none.
//!
//! `FAKE_NVML_FAIL_INIT=1` makes `nvmlInit` fail as on a node whose driver
//! is not loaded (`NVML_ERROR_DRIVER_NOT_LOADED`).
//!
//! Only what nvml-wrapper calls for discovery and XID events is exported.
//! Every entry point checks its pointers and returns NVML's codes; none
//! panics across the C boundary (all the bodies are panic-free plain code,
//! and `catch_unwind` guards them anyway).

#![allow(non_camel_case_types, non_snake_case)]

use std::ffi::{c_char, c_uint, c_ulonglong, c_void};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

type nvmlReturn_t = c_uint;
const NVML_SUCCESS: nvmlReturn_t = 0;
const NVML_ERROR_UNINITIALIZED: nvmlReturn_t = 1;
const NVML_ERROR_INVALID_ARGUMENT: nvmlReturn_t = 2;
const NVML_ERROR_INSUFFICIENT_SIZE: nvmlReturn_t = 7;
const NVML_ERROR_DRIVER_NOT_LOADED: nvmlReturn_t = 9;
const NVML_ERROR_TIMEOUT: nvmlReturn_t = 10;
const NVML_ERROR_UNKNOWN: nvmlReturn_t = 999;

/// `nvmlEventTypeXidCriticalError`.
const EVENT_XID_CRITICAL: c_ulonglong = 0x8;

/// `nvmlMemory_t`.
#[repr(C)]
pub struct nvmlMemory_t {
    total: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// `nvmlMemory_v2_t`.
#[repr(C)]
pub struct nvmlMemory_v2_t {
    version: c_uint,
    total: c_ulonglong,
    reserved: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// `nvmlEventData_t`.
#[repr(C)]
pub struct nvmlEventData_t {
    device: *mut c_void,
    event_type: c_ulonglong,
    event_data: c_ulonglong,
    gpu_instance_id: c_uint,
    compute_instance_id: c_uint,
}

/// `nvmlInit` calls not yet matched by `nvmlShutdown`.
static INITIALIZED: AtomicU32 = AtomicU32::new(0);

/// How far the XID file has been reported.
static XID_OFFSET: Mutex<u64> = Mutex::new(0);

/// The device count and memory from the fake driver's variables (its
/// defaults where they are wrong: the fake driver refuses to start then,
/// with the reason).
fn devices() -> (usize, u64) {
    fake_gpus::from_env().unwrap_or((1, fake_gpus::DEFAULT_MEMORY))
}

/// Runs an entry point's body: NVML's "uninitialized" before `nvmlInit`,
/// and a code instead of an unwind on a bug.
fn entry(needs_init: bool, body: impl FnOnce() -> nvmlReturn_t) -> nvmlReturn_t {
    if needs_init && INITIALIZED.load(Ordering::SeqCst) == 0 {
        return NVML_ERROR_UNINITIALIZED;
    }
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(NVML_ERROR_UNKNOWN)
}

/// A device handle is its index plus one (never NULL).
fn handle_of(index: usize) -> *mut c_void {
    (index + 1) as *mut c_void
}

fn index_of(device: *mut c_void) -> Option<usize> {
    let index = (device as usize).checked_sub(1)?;
    (index < devices().0).then_some(index)
}

/// Copies `text` and a NUL into the caller's `length`-byte buffer.
///
/// # Safety
/// `out` is NULL or writable for `length` bytes.
unsafe fn write_text(text: &str, out: *mut c_char, length: c_uint) -> nvmlReturn_t {
    if out.is_null() {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    if text.len() + 1 > length as usize {
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    // SAFETY: `out` holds `length` bytes (the caller's contract), and
    // `text.len() + 1 <= length`.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), out.cast::<u8>(), text.len());
        *out.add(text.len()) = 0;
    }
    NVML_SUCCESS
}

/// `nvmlInit_v2`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit_v2() -> nvmlReturn_t {
    entry(false, || {
        if std::env::var_os("FAKE_NVML_FAIL_INIT").is_some() {
            return NVML_ERROR_DRIVER_NOT_LOADED;
        }
        INITIALIZED.fetch_add(1, Ordering::SeqCst);
        NVML_SUCCESS
    })
}

/// `nvmlInitWithFlags`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> nvmlReturn_t {
    nvmlInit_v2()
}

/// `nvmlShutdown`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlShutdown() -> nvmlReturn_t {
    entry(true, || {
        INITIALIZED.fetch_sub(1, Ordering::SeqCst);
        NVML_SUCCESS
    })
}

/// `nvmlErrorString`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlErrorString(result: nvmlReturn_t) -> *const c_char {
    let text: &'static [u8] = match result {
        NVML_SUCCESS => b"Success\0",
        NVML_ERROR_UNINITIALIZED => b"Uninitialized\0",
        NVML_ERROR_INVALID_ARGUMENT => b"Invalid Argument\0",
        NVML_ERROR_INSUFFICIENT_SIZE => b"Insufficient Size\0",
        NVML_ERROR_DRIVER_NOT_LOADED => b"Driver Not Loaded\0",
        NVML_ERROR_TIMEOUT => b"Timeout\0",
        _ => b"Unknown Error\0",
    };
    text.as_ptr().cast()
}

/// `nvmlDeviceGetCount_v2`.
///
/// # Safety
/// `count` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> nvmlReturn_t {
    entry(true, || {
        if count.is_null() {
            return NVML_ERROR_INVALID_ARGUMENT;
        }
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe { count.write(devices().0 as c_uint) };
        NVML_SUCCESS
    })
}

/// `nvmlDeviceGetHandleByIndex_v2`.
///
/// # Safety
/// `device` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut *mut c_void,
) -> nvmlReturn_t {
    entry(true, || {
        if device.is_null() || index as usize >= devices().0 {
            return NVML_ERROR_INVALID_ARGUMENT;
        }
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe { device.write(handle_of(index as usize)) };
        NVML_SUCCESS
    })
}

/// `nvmlDeviceGetIndex`.
///
/// # Safety
/// `index` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetIndex(
    device: *mut c_void,
    index: *mut c_uint,
) -> nvmlReturn_t {
    entry(true, || match index_of(device) {
        Some(found) if !index.is_null() => {
            // SAFETY: non-NULL and writable (the caller's contract).
            unsafe { index.write(found as c_uint) };
            NVML_SUCCESS
        }
        _ => NVML_ERROR_INVALID_ARGUMENT,
    })
}

/// `nvmlDeviceGetUUID`.
///
/// # Safety
/// `uuid` is NULL or writable for `length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: *mut c_void,
    uuid: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    entry(true, || match index_of(device) {
        // SAFETY: the caller's contract, passed on.
        Some(index) => unsafe { write_text(&fake_gpus::uuid_text(index), uuid, length) },
        None => NVML_ERROR_INVALID_ARGUMENT,
    })
}

/// `nvmlDeviceGetName`.
///
/// # Safety
/// `name` is NULL or writable for `length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetName(
    device: *mut c_void,
    name: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    entry(true, || match index_of(device) {
        // SAFETY: the caller's contract, passed on.
        Some(index) => unsafe { write_text(&format!("Fake GPU {index}"), name, length) },
        None => NVML_ERROR_INVALID_ARGUMENT,
    })
}

/// `nvmlDeviceGetMemoryInfo`: the whole memory, all of it free (the fake
/// does not see the programs' use).
///
/// # Safety
/// `memory` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(
    device: *mut c_void,
    memory: *mut nvmlMemory_t,
) -> nvmlReturn_t {
    entry(true, || {
        if index_of(device).is_none() || memory.is_null() {
            return NVML_ERROR_INVALID_ARGUMENT;
        }
        let total = devices().1;
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe {
            memory.write(nvmlMemory_t {
                total,
                free: total,
                used: 0,
            })
        };
        NVML_SUCCESS
    })
}

/// `nvmlDeviceGetMemoryInfo_v2`.
///
/// # Safety
/// `memory` is NULL or a writable `nvmlMemory_v2_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: *mut c_void,
    memory: *mut nvmlMemory_v2_t,
) -> nvmlReturn_t {
    entry(true, || {
        if index_of(device).is_none() || memory.is_null() {
            return NVML_ERROR_INVALID_ARGUMENT;
        }
        let total = devices().1;
        // SAFETY: non-NULL and writable (the caller's contract); the
        // caller's version field is kept.
        unsafe {
            let version = (*memory).version;
            memory.write(nvmlMemory_v2_t {
                version,
                total,
                reserved: 0,
                free: total,
                used: 0,
            })
        };
        NVML_SUCCESS
    })
}

/// `nvmlEventSetCreate`: one process-wide set (its handle is never NULL).
///
/// # Safety
/// `set` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlEventSetCreate(set: *mut *mut c_void) -> nvmlReturn_t {
    entry(true, || {
        if set.is_null() {
            return NVML_ERROR_INVALID_ARGUMENT;
        }
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe { set.write(std::ptr::dangling_mut::<u8>().cast()) };
        NVML_SUCCESS
    })
}

/// `nvmlEventSetFree`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlEventSetFree(_set: *mut c_void) -> nvmlReturn_t {
    entry(true, || NVML_SUCCESS)
}

/// `nvmlDeviceGetSupportedEventTypes`: critical XIDs.
///
/// # Safety
/// `types` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetSupportedEventTypes(
    device: *mut c_void,
    types: *mut c_ulonglong,
) -> nvmlReturn_t {
    entry(true, || {
        if index_of(device).is_none() || types.is_null() {
            return NVML_ERROR_INVALID_ARGUMENT;
        }
        // SAFETY: non-NULL and writable (the caller's contract).
        unsafe { types.write(EVENT_XID_CRITICAL) };
        NVML_SUCCESS
    })
}

/// `nvmlDeviceRegisterEvents`.
#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceRegisterEvents(
    device: *mut c_void,
    _types: c_ulonglong,
    _set: *mut c_void,
) -> nvmlReturn_t {
    entry(true, || match index_of(device) {
        Some(_) => NVML_SUCCESS,
        None => NVML_ERROR_INVALID_ARGUMENT,
    })
}

/// The next unreported `<index> <xid>` line of the XID file, if any.
fn next_xid() -> Option<(usize, u64)> {
    let path = std::env::var_os("FAKE_NVML_XID_FILE")?;
    let mut offset = XID_OFFSET.lock().ok()?;
    let mut file = std::fs::File::open(path).ok()?;
    file.seek(SeekFrom::Start(*offset)).ok()?;
    let mut reader = BufReader::new(file);
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line).ok()?;
        if read == 0 || !line.ends_with('\n') {
            return None;
        }
        *offset += read as u64;
        let mut words = line.split_whitespace();
        let parsed = (|| Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?)))();
        if let Some((index, xid)) = parsed
            && index < devices().0
        {
            return Some((index, xid));
        }
    }
}

/// `nvmlEventSetWait_v2`: the next XID line, waiting up to `timeout_ms`.
///
/// # Safety
/// `data` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlEventSetWait_v2(
    _set: *mut c_void,
    data: *mut nvmlEventData_t,
    timeout_ms: c_uint,
) -> nvmlReturn_t {
    entry(true, || {
        if data.is_null() {
            return NVML_ERROR_INVALID_ARGUMENT;
        }
        let deadline = Instant::now() + Duration::from_millis(u64::from(timeout_ms));
        loop {
            if let Some((index, xid)) = next_xid() {
                // SAFETY: non-NULL and writable (the caller's contract).
                unsafe {
                    data.write(nvmlEventData_t {
                        device: handle_of(index),
                        event_type: EVENT_XID_CRITICAL,
                        event_data: xid,
                        gpu_instance_id: u32::MAX,
                        compute_instance_id: u32::MAX,
                    })
                };
                return NVML_SUCCESS;
            }
            if Instant::now() >= deadline {
                return NVML_ERROR_TIMEOUT;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}
