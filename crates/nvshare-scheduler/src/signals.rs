//! SIGTERM and SIGINT as a readable file descriptor, so the event loop
//! handles shutdown as one more event instead of in a signal handler.

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::{AsFd, BorrowedFd};

/// The signals that stop the daemon, readable from [`ShutdownSignals::as_fd`].
#[derive(Debug)]
pub struct ShutdownSignals {
    fd: SignalFd,
}

impl ShutdownSignals {
    /// Blocks SIGTERM and SIGINT in the calling thread (and every thread it
    /// starts later, which inherit the mask) and opens a signalfd for them.
    /// Call it before starting any thread.
    pub fn install() -> nix::Result<Self> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(ShutdownSignals { fd })
    }

    /// The first pending shutdown signal, if one arrived.
    pub fn take(&self) -> nix::Result<Option<Signal>> {
        Ok(self
            .fd
            .read_signal()?
            .and_then(|info| Signal::try_from(info.ssi_signo as i32).ok()))
    }
}

impl AsFd for ShutdownSignals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
