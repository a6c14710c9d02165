//! The event trace (`FAKE_CUDA_TRACE`): one line per event, appended with
//! `O_APPEND` and a single `write` per line so several processes can share a
//! file. Format: `<pid> <monotonic_ns> <event> <key=value>...`; the clock is
//! `CLOCK_MONOTONIC`, comparable across processes on one machine.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

/// Where events go; a no-op when tracing is off.
pub struct Trace {
    file: Option<File>,
}

impl Trace {
    /// Opens (creating) the trace file for appending, or disables tracing.
    pub fn open(path: Option<&Path>) -> Result<Trace, String> {
        let file = match path {
            None => None,
            Some(path) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        format!(
                            "FAKE_CUDA_TRACE={}: cannot open for appending: {e}; point it at a writable file",
                            path.display()
                        )
                    })?,
            ),
        };
        Ok(Trace { file })
    }

    /// Whether events are recorded at all (lets callers skip formatting).
    pub fn enabled(&self) -> bool {
        self.file.is_some()
    }

    /// Appends `<pid> <ns> <event> <fields>` as one line.
    pub fn event(&self, event: &str, fields: std::fmt::Arguments<'_>) {
        let Some(file) = &self.file else { return };
        let mut line = String::with_capacity(96);
        let _ = writeln!(
            line,
            "{} {} {event} {fields}",
            std::process::id(),
            monotonic_ns()
        );
        // One write() per line: O_APPEND makes it land whole at the end.
        let _ = (&*file).write_all(line.as_bytes());
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
