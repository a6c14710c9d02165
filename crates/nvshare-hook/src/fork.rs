//! What a `fork()` child does with the parent's state: CUDA does not
//! survive a fork, so every table of driver handles is emptied, and a lock
//! that another parent thread held at the fork (a thread that does not
//! exist in the child) is freed first.
//!
//! The one unsafe promise, "this is a fork child that has started no
//! thread", is made once, by the fork handler, as an [`InForkChild`]; the
//! resets themselves are safe given it.

use parking_lot::Mutex;

/// Proof that the calling code runs in a `fork()` child before it started
/// any thread: every lock holder is a parent thread that is gone.
#[derive(Debug)]
pub struct InForkChild(());

impl InForkChild {
    /// Makes the proof.
    ///
    /// # Safety
    /// Only in a `pthread_atfork` child handler (or equivalent), before the
    /// child starts a thread.
    pub unsafe fn assume() -> Self {
        InForkChild(())
    }
}

/// Frees `mutex` of a holder that vanished with the fork and leaks what it
/// held: the parent's handles, streams and shadows mean nothing in the
/// child (shadow memory is the parent's copy-on-write pages, never to be
/// released here), and half-updated contents must not run their drop.
pub fn forget_contents<T: Default>(mutex: &Mutex<T>, _child: &InForkChild) {
    if mutex.is_locked() {
        // SAFETY: by `InForkChild`, the holder is a thread that no longer
        // exists, and no other thread can take the lock meanwhile.
        unsafe { mutex.force_unlock() };
    }
    std::mem::forget(std::mem::take(&mut *mutex.lock()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_held_by_a_vanished_thread_is_freed_and_emptied() {
        let table = Mutex::new(vec![1, 2, 3]);
        // A holder that never unlocks, as a thread lost in a fork.
        std::mem::forget(table.lock());
        // SAFETY: no other thread uses `table`; its holder is forgotten,
        // as a fork child's vanished threads are.
        let child = unsafe { InForkChild::assume() };
        forget_contents(&table, &child);
        assert!(table.try_lock().is_some_and(|contents| contents.is_empty()));
    }
}
