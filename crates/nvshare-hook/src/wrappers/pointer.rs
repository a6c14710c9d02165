//! Pointer queries on memory the swap engine backs:
//! `cuPointerGetAttribute[s]` and `cuMemGetAddressRange_v2`.
//!
//! Such memory is a VMM unit, which the driver describes differently from
//! `cuMemAlloc` memory (a slab's blocks share one mapping), and which,
//! swapped out, it does not know at all (reserved but unmapped VA: every
//! attribute fails with INVALID_VALUE, the range with NOT_FOUND). So the
//! allocation's range always comes from the registry, and while it is
//! swapped out every attribute is answered as if it were resident. Other
//! pointers go to the real driver untouched.

use crate::driver;
use crate::ffi::*;
use crate::registry::{self, AllocKind};
use std::ffi::{c_uint, c_void};

/// A swappable allocation as the registry records it.
#[derive(Debug, Clone, Copy)]
struct Swappable {
    base: CUdeviceptr,
    bytes: u64,
    device: CUdevice,
    resident: bool,
}

fn swappable(ptr: CUdeviceptr) -> Option<Swappable> {
    let registry = registry::lock();
    let (base, allocation) = registry.containing(ptr)?;
    (allocation.kind == AllocKind::Swappable).then_some(Swappable {
        base,
        bytes: allocation.bytes,
        device: allocation.device,
        resident: allocation.resident,
    })
}

/// An attribute's value, in the C type CUDA writes for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    U32(u32),
    I32(i32),
    U64(u64),
    Pointer(usize),
}

impl Value {
    /// The zero of `attribute`'s type (what `cuPointerGetAttributes`
    /// writes for attributes that do not apply).
    fn zero(attribute: CUpointer_attribute) -> Value {
        match attribute {
            CU_POINTER_ATTRIBUTE_CONTEXT | CU_POINTER_ATTRIBUTE_HOST_POINTER => Value::Pointer(0),
            CU_POINTER_ATTRIBUTE_DEVICE_POINTER
            | CU_POINTER_ATTRIBUTE_BUFFER_ID
            | CU_POINTER_ATTRIBUTE_RANGE_START_ADDR
            | CU_POINTER_ATTRIBUTE_RANGE_SIZE
            | CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES
            | CU_POINTER_ATTRIBUTE_MAPPING_SIZE
            | CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR
            | CU_POINTER_ATTRIBUTE_MEMORY_BLOCK_ID => Value::U64(0),
            _ => Value::U32(0),
        }
    }

    /// Writes the value where the program asked.
    ///
    /// # Safety
    /// `data` is null or writable for the attribute's C type.
    unsafe fn store(self, data: *mut c_void) {
        if data.is_null() {
            return;
        }
        // SAFETY: the caller's contract; each type is the one cuda.h
        // documents for the attribute.
        unsafe {
            match self {
                Value::U32(v) => data.cast::<u32>().write_unaligned(v),
                Value::I32(v) => data.cast::<i32>().write_unaligned(v),
                Value::U64(v) => data.cast::<u64>().write_unaligned(v),
                Value::Pointer(v) => data.cast::<usize>().write_unaligned(v),
            }
        }
    }
}

/// The attributes the registry answers even for resident memory.
fn range_attribute(found: Swappable, attribute: CUpointer_attribute) -> Option<Value> {
    match attribute {
        CU_POINTER_ATTRIBUTE_RANGE_START_ADDR => Some(Value::U64(found.base)),
        CU_POINTER_ATTRIBUTE_RANGE_SIZE => Some(Value::U64(found.bytes)),
        _ => None,
    }
}

/// The context to report: the caller's if it is on the allocation's device,
/// else the device's primary context.
fn context_of(device: CUdevice) -> usize {
    let current = driver::ctx::current().ok().flatten();
    if let Some(ctx) = current
        && driver::ctx::device().ok() == Some(device)
    {
        return ctx as usize;
    }
    // The retain is kept: a released primary context could be destroyed
    // under the handle this returns.
    driver::ctx::retain_primary(device).map_or(0, |ctx| ctx as usize)
}

/// What the driver answered for the same memory while it was mapped (as
/// measured on VMM memory), or `None` where it would refuse the attribute.
fn as_if_resident(
    found: Swappable,
    ptr: CUdeviceptr,
    attribute: CUpointer_attribute,
) -> Option<Value> {
    if let Some(value) = range_attribute(found, attribute) {
        return Some(value);
    }
    Some(match attribute {
        CU_POINTER_ATTRIBUTE_CONTEXT => Value::Pointer(context_of(found.device)),
        CU_POINTER_ATTRIBUTE_MEMORY_TYPE => Value::U32(CU_MEMORYTYPE_DEVICE),
        CU_POINTER_ATTRIBUTE_DEVICE_POINTER => Value::U64(ptr),
        CU_POINTER_ATTRIBUTE_SYNC_MEMOPS
        | CU_POINTER_ATTRIBUTE_IS_MANAGED
        | CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE
        | CU_POINTER_ATTRIBUTE_IS_GPU_DIRECT_RDMA_CAPABLE => Value::U32(0),
        CU_POINTER_ATTRIBUTE_BUFFER_ID | CU_POINTER_ATTRIBUTE_MEMORY_BLOCK_ID => {
            Value::U64(found.base)
        }
        CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL => Value::I32(found.device),
        CU_POINTER_ATTRIBUTE_MAPPED => Value::U32(1),
        CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES => Value::U64(
            crate::engine::swap::mapped::handle_types_at(ptr)
                .unwrap_or_else(crate::engine::swap::unit::exportable_handle_types)
                .into(),
        ),
        CU_POINTER_ATTRIBUTE_ACCESS_FLAGS => Value::U32(CU_MEM_ACCESS_FLAGS_PROT_READWRITE),
        CU_POINTER_ATTRIBUTE_MAPPING_BASE_ADDR => Value::U64(found.base),
        CU_POINTER_ATTRIBUTE_MAPPING_SIZE => Value::U64(found.bytes),
        _ => return None,
    })
}

/// `cuPointerGetAttribute`.
///
/// # Safety
/// As the driver's `cuPointerGetAttribute`.
pub unsafe fn get_attribute(
    real: unsafe extern "C" fn(*mut c_void, CUpointer_attribute, CUdeviceptr) -> CUresult,
    data: *mut c_void,
    attribute: CUpointer_attribute,
    ptr: CUdeviceptr,
) -> CUresult {
    // SAFETY: the program's arguments, forwarded.
    let passthrough = || unsafe { real(data, attribute, ptr) };
    let Some(found) = swappable(ptr) else {
        return passthrough();
    };
    if data.is_null() {
        return CUresult::ERROR_INVALID_VALUE;
    }
    let answer = match range_attribute(found, attribute) {
        Some(value) => Some(value),
        None if found.resident => return passthrough(),
        None => as_if_resident(found, ptr, attribute),
    };
    match answer {
        Some(value) => {
            // SAFETY: `data` is writable for the attribute's type (the
            // caller's contract).
            unsafe { value.store(data) };
            CUresult::SUCCESS
        }
        None => CUresult::ERROR_INVALID_VALUE,
    }
}

/// `cuPointerGetAttributes`.
///
/// # Safety
/// As the driver's `cuPointerGetAttributes`.
pub unsafe fn get_attributes(
    real: unsafe extern "C" fn(
        c_uint,
        *mut CUpointer_attribute,
        *mut *mut c_void,
        CUdeviceptr,
    ) -> CUresult,
    count: c_uint,
    attributes: *mut CUpointer_attribute,
    data: *mut *mut c_void,
    ptr: CUdeviceptr,
) -> CUresult {
    // SAFETY: the program's arguments, forwarded.
    let passthrough = || unsafe { real(count, attributes, data, ptr) };
    let found = swappable(ptr);
    let (Some(found), false) = (found, count == 0 || attributes.is_null() || data.is_null()) else {
        return passthrough();
    };
    let status = if found.resident {
        passthrough()
    } else {
        CUresult::SUCCESS
    };
    if !status.is_success() {
        return status;
    }
    for index in 0..count as usize {
        // SAFETY: both arrays hold `count` entries (the caller's contract).
        let (attribute, out) = unsafe { (*attributes.add(index), *data.add(index)) };
        let value = if found.resident {
            range_attribute(found, attribute)
        } else {
            Some(as_if_resident(found, ptr, attribute).unwrap_or(Value::zero(attribute)))
        };
        if let Some(value) = value {
            // SAFETY: `out` is null or writable for the attribute's type.
            unsafe { value.store(out) };
        }
    }
    CUresult::SUCCESS
}

/// `cuMemGetAddressRange_v2`.
///
/// # Safety
/// As the driver's `cuMemGetAddressRange_v2`.
pub unsafe fn address_range(
    real: unsafe extern "C" fn(*mut CUdeviceptr, *mut usize, CUdeviceptr) -> CUresult,
    base: *mut CUdeviceptr,
    size: *mut usize,
    ptr: CUdeviceptr,
) -> CUresult {
    let Some(found) = swappable(ptr) else {
        // SAFETY: the program's arguments, forwarded.
        return unsafe { real(base, size, ptr) };
    };
    // SAFETY: each is null (not wanted) or writable (the caller's contract).
    unsafe {
        Value::U64(found.base).store(base.cast());
        Value::Pointer(found.bytes as usize).store(size.cast());
    }
    CUresult::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swapped() -> Swappable {
        Swappable {
            base: 0x7000_0000_0000,
            bytes: 1000,
            device: 0,
            resident: false,
        }
    }

    #[test]
    fn swapped_memory_reads_as_device_memory_with_its_own_range() {
        let found = swapped();
        let ptr = found.base + 100;
        let ask = |attribute| as_if_resident(found, ptr, attribute);
        assert_eq!(
            ask(CU_POINTER_ATTRIBUTE_MEMORY_TYPE),
            Some(Value::U32(CU_MEMORYTYPE_DEVICE))
        );
        assert_eq!(
            ask(CU_POINTER_ATTRIBUTE_RANGE_START_ADDR),
            Some(Value::U64(found.base))
        );
        assert_eq!(ask(CU_POINTER_ATTRIBUTE_RANGE_SIZE), Some(Value::U64(1000)));
        assert_eq!(
            ask(CU_POINTER_ATTRIBUTE_DEVICE_POINTER),
            Some(Value::U64(ptr))
        );
        assert_eq!(
            ask(CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL),
            Some(Value::I32(0))
        );
        assert_eq!(ask(CU_POINTER_ATTRIBUTE_MAPPED), Some(Value::U32(1)));
        assert_eq!(
            ask(CU_POINTER_ATTRIBUTE_HOST_POINTER),
            None,
            "device memory has no host pointer"
        );
        assert_eq!(ask(12345), None);
    }

    #[test]
    fn values_are_written_in_their_c_types() {
        let mut wide = [0xffu8; 16];
        // SAFETY: a local buffer larger than any attribute type.
        unsafe { Value::U32(7).store(wide.as_mut_ptr().cast()) };
        assert_eq!(&wide[..5], &[7, 0, 0, 0, 0xff]);
        // SAFETY: as above.
        unsafe { Value::U64(1 << 40).store(wide.as_mut_ptr().cast()) };
        assert_eq!(u64::from_le_bytes(wide[..8].try_into().unwrap()), 1 << 40);
        // SAFETY: null is skipped.
        unsafe { Value::U64(1).store(std::ptr::null_mut()) };
        assert_eq!(Value::zero(CU_POINTER_ATTRIBUTE_RANGE_SIZE), Value::U64(0));
        assert_eq!(Value::zero(CU_POINTER_ATTRIBUTE_MAPPED), Value::U32(0));
    }
}
