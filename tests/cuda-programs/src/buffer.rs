//! A device buffer allocated the way a framework would: `cuMemAlloc_v2`
//! (PyTorch's default allocator, CuPy), managed memory (nvshare's uvm
//! world), or VMM reserve/create/map/set-access, either one range mapped at
//! once or grown segment by segment the way PyTorch's expandable segments
//! grow.

use std::ffi::c_void;

use crate::error::{Error, check};
use crate::ffi::*;
use crate::session::Cuda;

/// How a buffer's memory is obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AllocMode {
    Device,
    Managed,
    Vmm,
    /// PyTorch's expandable segments: a reservation twice the size, grown
    /// in segments alternating 2 MiB and `chunk` bytes (20 MiB if 0), each
    /// created, mapped and given access on its own; the handles are kept
    /// until the segments are unmapped.
    Expandable,
    /// As `Expandable`, but each handle is released right after it is
    /// mapped (the memory lives until unmapped), as CUDA's samples do.
    ExpandableReleased,
}

/// A VMM handle mapped at `address`.
#[derive(Debug)]
pub struct Chunk {
    pub address: u64,
    pub size: u64,
    pub handle: CUmemGenericAllocationHandle,
}

/// An allocated buffer of `bytes` at `ptr`.
#[derive(Debug)]
pub struct Buffer {
    pub ptr: u64,
    pub bytes: u64,
    pub mode: AllocMode,
    /// For VMM: the reservation size and the mapped chunks.
    pub reserved: u64,
    pub chunks: Vec<Chunk>,
}

impl Buffer {
    /// Allocates `bytes`; for VMM in handles of `chunk` bytes (rounded to the
    /// granularity; 0 means one handle for everything).
    pub fn alloc(cuda: &Cuda, mode: AllocMode, bytes: u64, chunk: u64) -> Result<Buffer, Error> {
        let mut ptr = 0;
        match mode {
            AllocMode::Device => {
                // SAFETY: valid out-pointer.
                check("cuMemAlloc_v2", unsafe {
                    (cuda.api.mem_alloc)(&mut ptr, bytes as usize)
                })?;
                Ok(Buffer {
                    ptr,
                    bytes,
                    mode,
                    reserved: 0,
                    chunks: Vec::new(),
                })
            }
            AllocMode::Managed => {
                // SAFETY: valid out-pointer.
                check("cuMemAllocManaged", unsafe {
                    (cuda.api.mem_alloc_managed)(&mut ptr, bytes as usize, CU_MEM_ATTACH_GLOBAL)
                })?;
                let location = CUmemLocation {
                    type_: CU_MEM_LOCATION_TYPE_DEVICE,
                    id: cuda.device,
                };
                // SAFETY: a managed range just allocated; NULL stream.
                check("cuMemPrefetchAsync", unsafe {
                    (cuda.api.mem_prefetch)(ptr, bytes as usize, location, 0, std::ptr::null_mut())
                })?;
                Ok(Buffer {
                    ptr,
                    bytes,
                    mode,
                    reserved: 0,
                    chunks: Vec::new(),
                })
            }
            AllocMode::Vmm => Buffer::alloc_vmm(cuda, bytes, chunk),
            AllocMode::Expandable | AllocMode::ExpandableReleased => {
                Buffer::alloc_expandable(cuda, mode, bytes, chunk)
            }
        }
    }

    fn granularity(cuda: &Cuda) -> Result<u64, Error> {
        let prop = CUmemAllocationProp::device(cuda.device);
        let mut granularity = 0usize;
        // SAFETY: valid pointers.
        check("cuMemGetAllocationGranularity", unsafe {
            (cuda.api.mem_get_granularity)(
                &mut granularity,
                &prop,
                CU_MEM_ALLOC_GRANULARITY_MINIMUM,
            )
        })?;
        Ok(granularity as u64)
    }

    fn alloc_expandable(
        cuda: &Cuda,
        mode: AllocMode,
        bytes: u64,
        chunk: u64,
    ) -> Result<Buffer, Error> {
        let granularity = Buffer::granularity(cuda)?;
        let round = |n: u64| n.div_ceil(granularity).max(1) * granularity;
        let wanted = round(bytes);
        let large = round(if chunk == 0 { 20 << 20 } else { chunk });
        let reserved = 2 * wanted;
        let mut ptr = 0;
        // SAFETY: valid out-pointer.
        check("cuMemAddressReserve", unsafe {
            (cuda.api.mem_address_reserve)(&mut ptr, reserved as usize, 0, 0, 0)
        })?;
        let mut buffer = Buffer {
            ptr,
            bytes,
            mode,
            reserved,
            chunks: Vec::new(),
        };
        let prop = CUmemAllocationProp::device(cuda.device);
        let access = CUmemAccessDesc {
            location: CUmemLocation {
                type_: CU_MEM_LOCATION_TYPE_DEVICE,
                id: cuda.device,
            },
            flags: CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
        };
        let mut offset = 0;
        let mut small = true;
        while offset < wanted {
            let size = if small { granularity } else { large }.min(wanted - offset);
            small = !small;
            let mut handle = 0;
            let address = ptr + offset;
            // SAFETY: valid pointers; `address` lies in our reservation and
            // `handle` is live; one valid access descriptor.
            unsafe {
                check(
                    "cuMemCreate",
                    (cuda.api.mem_create)(&mut handle, size as usize, &prop, 0),
                )?;
                check(
                    "cuMemMap",
                    (cuda.api.mem_map)(address, size as usize, 0, handle, 0),
                )?;
                if mode == AllocMode::ExpandableReleased {
                    check("cuMemRelease", (cuda.api.mem_release)(handle))?;
                    handle = 0;
                }
                check(
                    "cuMemSetAccess",
                    (cuda.api.mem_set_access)(address, size as usize, &access, 1),
                )?;
            }
            buffer.chunks.push(Chunk {
                address,
                size,
                handle,
            });
            offset += size;
        }
        Ok(buffer)
    }

    fn alloc_vmm(cuda: &Cuda, bytes: u64, chunk: u64) -> Result<Buffer, Error> {
        let granularity = Buffer::granularity(cuda)?;
        let round = |n: u64| n.div_ceil(granularity).max(1) * granularity;
        let reserved = round(bytes);
        let chunk = if chunk == 0 {
            reserved
        } else {
            round(chunk).min(reserved)
        };
        let mut ptr = 0;
        // SAFETY: valid out-pointer.
        check("cuMemAddressReserve", unsafe {
            (cuda.api.mem_address_reserve)(&mut ptr, reserved as usize, 0, 0, 0)
        })?;
        let mut buffer = Buffer {
            ptr,
            bytes,
            mode: AllocMode::Vmm,
            reserved,
            chunks: Vec::new(),
        };
        buffer.map(cuda, chunk)?;
        Ok(buffer)
    }

    /// (Re)creates and maps the whole VMM range in `chunk`-byte handles and
    /// grants read-write access once for the range.
    pub fn map(&mut self, cuda: &Cuda, chunk: u64) -> Result<(), Error> {
        let prop = CUmemAllocationProp::device(cuda.device);
        let mut offset = 0;
        while offset < self.reserved {
            let size = chunk.min(self.reserved - offset);
            let mut handle = 0;
            // SAFETY: valid pointers.
            check("cuMemCreate", unsafe {
                (cuda.api.mem_create)(&mut handle, size as usize, &prop, 0)
            })?;
            let address = self.ptr + offset;
            // SAFETY: `address` lies in our reservation; `handle` is live.
            check("cuMemMap", unsafe {
                (cuda.api.mem_map)(address, size as usize, 0, handle, 0)
            })?;
            self.chunks.push(Chunk {
                address,
                size,
                handle,
            });
            offset += size;
        }
        let access = CUmemAccessDesc {
            location: CUmemLocation {
                type_: CU_MEM_LOCATION_TYPE_DEVICE,
                id: cuda.device,
            },
            flags: CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
        };
        // SAFETY: the range is mapped; one valid descriptor.
        check("cuMemSetAccess", unsafe {
            (cuda.api.mem_set_access)(self.ptr, self.reserved as usize, &access, 1)
        })
    }

    /// Unmaps and releases every VMM chunk (handle 0: released already);
    /// the VA stays reserved.
    pub fn unmap(&mut self, cuda: &Cuda) -> Result<(), Error> {
        for chunk in self.chunks.drain(..) {
            // SAFETY: the chunk was mapped by `map`.
            check("cuMemUnmap", unsafe {
                (cuda.api.mem_unmap)(chunk.address, chunk.size as usize)
            })?;
            if chunk.handle != 0 {
                // SAFETY: a handle we created and still own.
                check("cuMemRelease", unsafe {
                    (cuda.api.mem_release)(chunk.handle)
                })?;
            }
        }
        Ok(())
    }

    /// Exports every VMM handle the buffer still holds as a file
    /// descriptor (as `torch.multiprocessing` does to share CUDA tensors)
    /// and closes the descriptors; returns how many were exported.
    pub fn export_handles(&self, cuda: &Cuda) -> Result<usize, Error> {
        let mut exported = 0;
        for chunk in self.chunks.iter().filter(|c| c.handle != 0) {
            let mut fd: std::ffi::c_int = -1;
            // SAFETY: `fd` is writable for an int; our live handle, created
            // with the POSIX file descriptor handle type.
            check("cuMemExportToShareableHandle", unsafe {
                (cuda.api.mem_export)(
                    (&mut fd as *mut std::ffi::c_int).cast(),
                    chunk.handle,
                    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
                    0,
                )
            })?;
            // SAFETY: the descriptor the driver just gave us, closed once.
            unsafe { libc::close(fd) };
            exported += 1;
        }
        Ok(exported)
    }

    /// Copies `data` to the start of the buffer.
    pub fn upload(&self, cuda: &Cuda, data: &[u8]) -> Result<(), Error> {
        // SAFETY: `data` is valid for its length; the buffer is at least as big.
        check("cuMemcpyHtoD", unsafe {
            (cuda.api.memcpy_htod)(self.ptr, data.as_ptr().cast::<c_void>(), data.len())
        })
    }

    /// Copies the start of the buffer into `data`.
    pub fn download(&self, cuda: &Cuda, data: &mut [u8]) -> Result<(), Error> {
        // SAFETY: `data` is writable for its length.
        check("cuMemcpyDtoH", unsafe {
            (cuda.api.memcpy_dtoh)(data.as_mut_ptr().cast::<c_void>(), self.ptr, data.len())
        })
    }

    /// Frees the buffer (VMM: unmaps, releases, frees the reservation).
    pub fn free(mut self, cuda: &Cuda) -> Result<(), Error> {
        match self.mode {
            AllocMode::Device | AllocMode::Managed => {
                // SAFETY: our own allocation, freed once.
                check("cuMemFree", unsafe { (cuda.api.mem_free)(self.ptr) })
            }
            AllocMode::Vmm | AllocMode::Expandable | AllocMode::ExpandableReleased => {
                self.unmap(cuda)?;
                // SAFETY: our reservation, now empty.
                check("cuMemAddressFree", unsafe {
                    (cuda.api.mem_address_free)(self.ptr, self.reserved as usize)
                })
            }
        }
    }
}
