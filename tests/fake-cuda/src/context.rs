//! Contexts: the primary context of each device, created contexts, and each
//! thread's stack of current contexts.

use std::cell::RefCell;
use std::collections::HashMap;

use parking_lot::Mutex;

use crate::config::MAX_DEVICES;
use crate::ffi::{CUDA_ERROR_INVALID_CONTEXT, CUcontext};
use crate::guard::CuResult;

/// One context: the device it belongs to.
#[derive(Clone, Copy, Debug)]
struct Context {
    device: usize,
}

/// All live contexts of the process.
#[derive(Default)]
pub struct Contexts {
    live: Mutex<HashMap<usize, Context>>,
    primary: Mutex<[Option<usize>; MAX_DEVICES]>,
}

thread_local! {
    /// This thread's context stack; the top is the current context.
    static CURRENT: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

impl Contexts {
    /// The primary context of `device`, created on first use (its handle
    /// never changes afterwards, as with the real driver).
    pub fn primary(&self, device: usize, new_handle: impl FnOnce() -> usize) -> CUcontext {
        let mut primary = self.primary.lock();
        let handle = *primary[device].get_or_insert_with(|| {
            let handle = new_handle();
            self.live.lock().insert(handle, Context { device });
            handle
        });
        handle as CUcontext
    }

    /// A new (non-primary) context on `device`.
    pub fn create(&self, device: usize, handle: usize) -> CUcontext {
        self.live.lock().insert(handle, Context { device });
        handle as CUcontext
    }

    /// Destroys a created context and removes it from this thread's stack.
    pub fn destroy(&self, ctx: CUcontext) -> CuResult {
        let handle = ctx as usize;
        let is_primary = self.primary.lock().contains(&Some(handle));
        if is_primary || self.live.lock().remove(&handle).is_none() {
            return Err(CUDA_ERROR_INVALID_CONTEXT);
        }
        CURRENT.with(|stack| stack.borrow_mut().retain(|c| *c != handle));
        Ok(())
    }

    /// The device of a live context.
    pub fn device_of(&self, ctx: CUcontext) -> CuResult<usize> {
        self.live
            .lock()
            .get(&(ctx as usize))
            .map(|c| c.device)
            .ok_or(CUDA_ERROR_INVALID_CONTEXT)
    }

    /// The calling thread's current context (NULL when none).
    pub fn current(&self) -> CUcontext {
        CURRENT.with(|stack| stack.borrow().last().copied().unwrap_or(0)) as CUcontext
    }

    /// The device of the current context, or CUDA_ERROR_INVALID_CONTEXT.
    pub fn current_device(&self) -> CuResult<usize> {
        let ctx = self.current();
        if ctx.is_null() {
            return Err(CUDA_ERROR_INVALID_CONTEXT);
        }
        self.device_of(ctx)
    }

    /// `cuCtxSetCurrent`: replaces the top of the stack (NULL pops it).
    pub fn set_current(&self, ctx: CUcontext) -> CuResult {
        if !ctx.is_null() {
            self.device_of(ctx)?;
        }
        CURRENT.with(|stack| {
            let mut stack = stack.borrow_mut();
            stack.pop();
            if !ctx.is_null() {
                stack.push(ctx as usize);
            }
        });
        Ok(())
    }

    /// `cuCtxPushCurrent`.
    pub fn push(&self, ctx: CUcontext) -> CuResult {
        self.device_of(ctx)?;
        CURRENT.with(|stack| stack.borrow_mut().push(ctx as usize));
        Ok(())
    }

    /// `cuCtxPopCurrent`: the popped context.
    pub fn pop(&self) -> CuResult<CUcontext> {
        CURRENT
            .with(|stack| stack.borrow_mut().pop())
            .map(|handle| handle as CUcontext)
            .ok_or(CUDA_ERROR_INVALID_CONTEXT)
    }
}
