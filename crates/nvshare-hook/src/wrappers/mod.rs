//! The hand-written handlers behind the symbol table's non-`work` lines
//! (work submission needs none: the table's `work` lines admit the call
//! through the gate and forward it).
//!
//! - [`memory`]: allocation and free, accounted in the registry, backed by
//!   the memory engine, refused beyond the capacity.
//! - [`info`]: memory queries answered with the virtual GPU's capacity.
//! - [`nvml`]: the NVML memory queries, answered the same way.
//! - [`pointer`]: pointer queries, answered for swapped-out memory.
//! - [`vmm`]: the program's own virtual memory management calls, its
//!   handles virtualized and its memory counted and swapped.

pub mod info;
pub mod memory;
pub mod nvml;
pub mod pointer;
pub mod vmm;
