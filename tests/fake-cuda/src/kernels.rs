//! The built-in "kernels": host functions a module hands out by name. Their
//! arguments arrive as CUDA passes them (`kernelParams`: an array of pointers
//! to each argument) and are copied at launch, as the driver does. They touch
//! memory directly, so a kernel run on unmapped or swapped-out memory
//! crashes the process with SIGSEGV, which is the point.
//!
//! `rendezvous_u64` stands in for a collective such as an NCCL all-reduce:
//! it occupies its stream until every peer (other processes or devices) has
//! reached the same step, as an NCCL kernel spins until its peers' kernels
//! run. That makes a program whose peer cannot get its GPU unable to drain.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::ffi::CUDA_ERROR_INVALID_VALUE;
use crate::guard::CuResult;

/// One kernel: its name, the byte size of each argument, and its body.
pub struct Kernel {
    pub name: &'static str,
    pub arg_sizes: &'static [usize],
    pub run: fn(&[u64]),
}

/// Every kernel a module provides; `cuModuleGetFunction` looks names up here
/// and hands out `index + 1` as the function handle.
pub static KERNELS: &[Kernel] = &[
    Kernel {
        name: "fill_u32",
        arg_sizes: &[8, 4, 8],
        run: |a| for_each_u32(a[0], a[2], |_| a[1] as u32),
    },
    Kernel {
        name: "add_u32",
        arg_sizes: &[8, 4, 8],
        run: |a| for_each_u32(a[0], a[2], |x| x.wrapping_add(a[1] as u32)),
    },
    Kernel {
        name: "checksum_u32",
        arg_sizes: &[8, 8, 8],
        run: |a| {
            let sum = u32_slice(a[0], a[1])
                .iter()
                .fold(0u64, |sum, x| sum.wrapping_add(u64::from(*x)));
            // SAFETY: kernel contract: `out` is device memory for one u64.
            unsafe { (a[2] as *mut u64).write_unaligned(sum) };
        },
    },
    Kernel {
        name: "copy_bytes",
        arg_sizes: &[8, 8, 8],
        // SAFETY: kernel contract: both ranges are device memory of `bytes`.
        run: |a| unsafe { std::ptr::copy(a[1] as *const u8, a[0] as *mut u8, a[2] as usize) },
    },
    Kernel {
        name: "sleep_us",
        arg_sizes: &[8],
        run: |a| std::thread::sleep(Duration::from_micros(a[0])),
    },
    Kernel {
        name: "rendezvous_u64",
        arg_sizes: &[8, 8, 8, 8],
        run: |a| rendezvous(a[0], a[1], a[2], a[3]),
    },
    Kernel {
        name: "fma_f32",
        arg_sizes: &[8, 4, 4, 8],
        run: |a| {
            let (mul, add) = (f32::from_bits(a[1] as u32), f32::from_bits(a[2] as u32));
            for_each_u32(a[0], a[3], |x| {
                f32::from_bits(x).mul_add(mul, add).to_bits()
            });
        },
    },
];

/// How long a rendezvous waits for its peers before it gives up: a peer that
/// never comes is a deadlock, and a test should fail, not hang.
const RENDEZVOUS_LIMIT: Duration = Duration::from_secs(120);

/// `slots` points to `world` u64 step counters shared by the peers (a
/// `MAP_SHARED` file mapping, so they may live in other processes): raises
/// the counter of `rank` to `step`, then waits until every counter has
/// reached `step`. Past [`RENDEZVOUS_LIMIT`] the process aborts, loudly.
fn rendezvous(slots: u64, rank: u64, world: u64, step: u64) {
    // SAFETY: kernel contract: `slots` is a mapping of `world` u64 counters,
    // 8-byte aligned, that stays mapped while the kernel runs; peers touch
    // them only atomically.
    let counters = unsafe { std::slice::from_raw_parts(slots as *const AtomicU64, world as usize) };
    counters[rank as usize].fetch_max(step, Ordering::SeqCst);
    let started = Instant::now();
    while counters.iter().any(|c| c.load(Ordering::SeqCst) < step) {
        if started.elapsed() > RENDEZVOUS_LIMIT {
            eprintln!(
                "fake-cuda: rendezvous_u64 rank {rank} waited {RENDEZVOUS_LIMIT:?} for its peers at step {step}: deadlock"
            );
            std::process::abort();
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The kernel with `name`.
pub fn find(name: &str) -> Option<usize> {
    KERNELS.iter().position(|k| k.name == name)
}

/// Copies the kernel's arguments out of `kernelParams` (each widened to u64).
///
/// # Safety
/// `params` is NULL or an array with one valid pointer per argument of
/// `kernel`, each pointing to at least that argument's size in bytes.
pub unsafe fn read_args(kernel: &Kernel, params: *mut *mut c_void) -> CuResult<Vec<u64>> {
    if kernel.arg_sizes.is_empty() {
        return Ok(Vec::new());
    }
    if params.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let mut args = Vec::with_capacity(kernel.arg_sizes.len());
    for (index, size) in kernel.arg_sizes.iter().enumerate() {
        // SAFETY: per the contract there is a pointer for every argument.
        let arg = unsafe { *params.add(index) } as *const u8;
        if arg.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mut bytes = [0u8; 8];
        // SAFETY: `arg` points to `size` (<= 8) readable bytes.
        unsafe { std::ptr::copy_nonoverlapping(arg, bytes.as_mut_ptr(), *size) };
        args.push(u64::from_le_bytes(bytes));
    }
    Ok(args)
}

fn u32_slice<'a>(ptr: u64, count: u64) -> &'a mut [u32] {
    if count == 0 {
        return &mut [];
    }
    // SAFETY: kernel contract: `ptr` is device memory of `count` u32 that no
    // other kernel touches meanwhile; unmapped memory faults, as intended.
    unsafe { std::slice::from_raw_parts_mut(ptr as *mut u32, count as usize) }
}

fn for_each_u32(ptr: u64, count: u64, f: impl Fn(u32) -> u32) {
    for x in u32_slice(ptr, count) {
        *x = f(*x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(name: &str, args: &[u64]) {
        let kernel = &KERNELS[find(name).unwrap()];
        assert_eq!(kernel.arg_sizes.len(), args.len());
        (kernel.run)(args);
    }

    #[test]
    fn fill_add_and_checksum_agree_with_the_host() {
        let mut data = vec![0u32; 1000];
        let mut sum = 0u64;
        let ptr = data.as_mut_ptr() as u64;
        launch("fill_u32", &[ptr, 7, 1000]);
        launch("add_u32", &[ptr, u64::from(u32::MAX), 500]);
        launch("checksum_u32", &[ptr, 1000, &mut sum as *mut u64 as u64]);
        assert_eq!(data[0], 6);
        assert_eq!(data[999], 7);
        assert_eq!(sum, 500 * 6 + 500 * 7);
    }

    #[test]
    fn arguments_are_read_through_pointers_with_their_own_sizes() {
        let (ptr, value, count) = (0x1234_5678_9abc_u64, 0xdead_beef_u32, 42u64);
        let mut params = [
            &ptr as *const u64 as *mut c_void,
            &value as *const u32 as *mut c_void,
            &count as *const u64 as *mut c_void,
        ];
        let kernel = &KERNELS[find("add_u32").unwrap()];
        // SAFETY: one valid pointer per argument of add_u32.
        let args = unsafe { read_args(kernel, params.as_mut_ptr()) }.unwrap();
        assert_eq!(args, vec![ptr, u64::from(value), count]);
        assert!(find("no_such_kernel").is_none());
    }

    #[test]
    fn a_rendezvous_waits_for_every_peer_of_its_step() {
        let slots: &'static [AtomicU64; 2] =
            Box::leak(Box::new([AtomicU64::new(0), AtomicU64::new(0)]));
        let base = slots.as_ptr() as u64;
        let first = std::thread::spawn(move || launch("rendezvous_u64", &[base, 0, 2, 1]));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!first.is_finished(), "rank 0 must wait for rank 1");
        launch("rendezvous_u64", &[base, 1, 2, 1]);
        first.join().unwrap();
        assert_eq!(slots[0].load(Ordering::SeqCst), 1);
        assert_eq!(slots[1].load(Ordering::SeqCst), 1);
    }
}
