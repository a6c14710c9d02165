//! Log output that never makes the event loop wait.
//!
//! Every log line is appended to a memory buffer; a background thread writes
//! the buffer to stderr in batches (every [`FLUSH_INTERVAL`], or at once for
//! warnings and errors). The loop thus pays no system call per line and
//! never blocks on a slow log reader (a stalled journald would otherwise
//! stall every GPU job). If the reader stalls for long, lines beyond
//! [`MAX_BUFFERED`] are dropped and counted, never the daemon. A process
//! killed with SIGKILL may lose its last [`FLUSH_INTERVAL`] of lines.
//!
//! [`format`](mod@format) lays out each line.

pub mod format;

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long a routine line may wait in memory.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Buffered bytes beyond which lines are dropped.
pub const MAX_BUFFERED: usize = 8 << 20;

#[derive(Debug, Default)]
struct Shared {
    buffer: Mutex<Vec<u8>>,
    wake: Condvar,
    /// A warning or error is waiting: drain without waiting the interval.
    urgent: AtomicBool,
    dropped: AtomicU64,
}

impl Shared {
    /// Writes out what is buffered; returns false if the sink failed.
    fn drain_into(&self, sink: &mut dyn Write) -> bool {
        let batch = std::mem::take(&mut *self.lock());
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        let mut ok = batch.is_empty() || sink.write_all(&batch).is_ok();
        if dropped > 0 {
            ok &= writeln!(
                sink,
                "nvshare-scheduler: {dropped} log lines dropped: the log reader did not keep up"
            )
            .is_ok();
        }
        ok && sink.flush().is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `MakeWriter` given to `tracing_subscriber::fmt`.
#[derive(Debug, Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Flushes what is left when dropped (keep it alive until `main` returns).
#[derive(Debug)]
pub struct FlushGuard {
    shared: Arc<Shared>,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.drain_into(&mut io::stderr().lock());
    }
}

impl BatchedWriter {
    /// Starts the background thread writing to `sink`. Call before the
    /// signal mask is set or after, either way: the thread blocks every
    /// signal so that SIGTERM always reaches the event loop's signalfd.
    pub fn start(sink: impl Write + Send + 'static) -> io::Result<(BatchedWriter, FlushGuard)> {
        Self::start_with_interval(sink, FLUSH_INTERVAL)
    }

    /// As [`BatchedWriter::start`], draining every `interval`.
    pub fn start_with_interval(
        sink: impl Write + Send + 'static,
        interval: Duration,
    ) -> io::Result<(BatchedWriter, FlushGuard)> {
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        let mut sink = sink;
        // A new thread inherits its creator's mask: block everything around
        // the spawn, so not even the first instant is open to signals.
        let all = nix::sys::signal::SigSet::all();
        let mut previous = nix::sys::signal::SigSet::empty();
        let _ = nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&all),
            Some(&mut previous),
        );
        let spawned = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || flush_loop(&thread_shared, &mut sink, interval));
        let _ = nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&previous),
            None,
        );
        spawned?;
        Ok((
            BatchedWriter {
                shared: shared.clone(),
            },
            FlushGuard { shared },
        ))
    }
}

fn flush_loop(shared: &Shared, sink: &mut dyn Write, interval: Duration) {
    loop {
        let buffer = shared.lock();
        let buffer = if shared.urgent.load(Ordering::Acquire) {
            buffer
        } else {
            // Woken early by an urgent line, or after the interval; a
            // spurious wake-up only means an early drain.
            shared
                .wake
                .wait_timeout(buffer, interval)
                .unwrap_or_else(PoisonError::into_inner)
                .0
        };
        // Cleared under the lock: an urgent line that arrives after this
        // sets it again and is drained on the next round without waiting.
        shared.urgent.store(false, Ordering::Release);
        drop(buffer);
        if !shared.drain_into(sink) {
            // stderr is gone (closed pipe): keep draining so memory stays
            // bounded, but back off.
            std::thread::sleep(interval);
        }
    }
}

/// One log line on its way into the buffer.
#[derive(Debug)]
pub struct LineWriter<'a> {
    shared: &'a Shared,
    urgent: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut buffer = self.shared.lock();
        if buffer.len() + data.len() > MAX_BUFFERED {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(data.len());
        }
        buffer.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if self.urgent {
            // Set under the lock so the flusher cannot miss it between its
            // check and its wait.
            let _buffer = self.shared.lock();
            self.shared.urgent.store(true, Ordering::Release);
            self.shared.wake.notify_one();
        }
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A sink the test can read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn wait_for(captured: &Captured, text: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if String::from_utf8_lossy(&captured.0.lock().unwrap()).contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn lines_reach_the_sink_in_order() {
        let captured = Captured::default();
        let (writer, _guard) = BatchedWriter::start(captured.clone()).unwrap();
        for i in 0..100 {
            writeln!(writer.make_writer(), "line {i}").unwrap();
        }
        assert!(wait_for(&captured, "line 99\n"));
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);
    }

    #[test]
    fn warnings_are_written_without_waiting_for_the_interval() {
        let captured = Captured::default();
        // Routine lines would wait an hour: only the early wake-up can
        // bring the warning out in time.
        let (writer, _guard) =
            BatchedWriter::start_with_interval(captured.clone(), Duration::from_secs(3600))
                .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        {
            let mut line = LineWriter {
                shared: &writer.shared,
                urgent: true,
            };
            line.write_all(b"careful\n").unwrap();
        }
        assert!(wait_for(&captured, "careful\n"));
    }

    #[test]
    fn a_full_buffer_drops_lines_and_says_so() {
        let shared = Shared::default();
        let mut line = LineWriter {
            shared: &shared,
            urgent: false,
        };
        let big = vec![b'x'; MAX_BUFFERED / 2 + 1];
        line.write_all(&big).unwrap();
        line.write_all(&big).unwrap();
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 1);
        let mut out = Vec::new();
        assert!(shared.drain_into(&mut out));
        assert!(
            String::from_utf8_lossy(&out)
                .ends_with("1 log lines dropped: the log reader did not keep up\n")
        );
        assert_eq!(shared.lock().len(), 0);
    }
}
