//! The fake driver's event trace: `<pid> <monotonic_ns> <event> <key=value>...`
//! per line, shared by every process of a test.

use std::collections::BTreeMap;
use std::path::Path;

/// One traced event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The process.
    pub pid: u32,
    /// CLOCK_MONOTONIC, comparable across processes.
    pub ns: u64,
    /// The event's name (`kernel_begin`, `prefetch`, ...).
    pub name: String,
    /// Its `key=value` fields.
    pub fields: BTreeMap<String, String>,
}

impl Event {
    /// Field `key` as a number (decimal, or hex with `0x`), failing the
    /// test if it is missing or not a number.
    pub fn number(&self, key: &str) -> u64 {
        let text = self
            .fields
            .get(key)
            .unwrap_or_else(|| panic!("{self:?} has no {key}"));
        text.strip_prefix("0x")
            .map(|hex| u64::from_str_radix(hex, 16))
            .unwrap_or_else(|| text.parse())
            .unwrap_or_else(|_| panic!("{self:?}: {key} is not a number"))
    }
}

/// Every event of a trace file, in file order.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The events.
    pub events: Vec<Event>,
}

/// A kernel's run: from `kernel_begin` to the matching `kernel_end` on the
/// same stream of the same process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelRun {
    /// The process.
    pub pid: u32,
    /// The device it ran on.
    pub device: u32,
    /// Start.
    pub begin: u64,
    /// End.
    pub end: u64,
}

impl Trace {
    /// Reads and parses a trace file (empty if it does not exist yet).
    pub fn read(path: &Path) -> Trace {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Trace {
            events: text.lines().filter_map(parse_line).collect(),
        }
    }

    /// Events named `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
        self.events.iter().filter(move |e| e.name == name)
    }

    /// The bytes the hook copied out of `pid`'s GPU memory: every device
    /// to host copy of a MiB or more (the test programs themselves copy out
    /// 8-byte results).
    pub fn copied_out_by(&self, pid: u32) -> u64 {
        self.named("memcpy")
            .filter(|e| e.pid == pid && e.fields.get("kind").is_some_and(|k| k == "DtoH"))
            .map(|e| e.number("bytes"))
            .filter(|&bytes| bytes >= crate::MIB)
            .sum()
    }

    /// Every completed kernel run.
    pub fn kernel_runs(&self) -> Vec<KernelRun> {
        let mut open: BTreeMap<(u32, u32, String), Vec<u64>> = BTreeMap::new();
        let mut runs = Vec::new();
        for event in &self.events {
            let stream = event.fields.get("stream").cloned().unwrap_or_default();
            let device: u32 = event
                .fields
                .get("device")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            let key = (event.pid, device, stream);
            match event.name.as_str() {
                "kernel_begin" => open.entry(key).or_default().push(event.ns),
                "kernel_end" => {
                    if let Some(begin) = open.get_mut(&key).and_then(Vec::pop) {
                        runs.push(KernelRun {
                            pid: event.pid,
                            device: key.1,
                            begin,
                            end: event.ns,
                        });
                    }
                }
                _ => {}
            }
        }
        runs
    }

    /// Pairs of kernel runs of different processes on the same device that
    /// overlap in time.
    pub fn same_device_overlaps(&self) -> Vec<(KernelRun, KernelRun)> {
        self.cross_process_overlaps()
            .into_iter()
            .filter(|(a, b)| a.device == b.device)
            .collect()
    }

    /// Pairs of kernel runs of different processes that overlap in time.
    pub fn cross_process_overlaps(&self) -> Vec<(KernelRun, KernelRun)> {
        let runs = self.kernel_runs();
        let mut overlaps = Vec::new();
        for (i, a) in runs.iter().enumerate() {
            for b in &runs[i + 1..] {
                if a.pid != b.pid && a.begin < b.end && b.begin < a.end {
                    overlaps.push((*a, *b));
                }
            }
        }
        overlaps
    }
}

fn parse_line(line: &str) -> Option<Event> {
    let mut words = line.split_whitespace();
    let pid = words.next()?.parse().ok()?;
    let ns = words.next()?.parse().ok()?;
    let name = words.next()?.to_owned();
    let fields = words
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Some(Event {
        pid,
        ns,
        name,
        fields,
    })
}

impl Trace {
    /// The most device memory the fake GPU held at once, over every process:
    /// the running sum of `create` (physical memory charged) minus `destroy`
    /// (released), in time order.
    pub fn peak_device_memory(&self) -> u64 {
        let mut changes: Vec<(u64, i128)> = self
            .events
            .iter()
            .filter_map(|e| {
                let bytes: i128 = e.fields.get("bytes")?.parse().ok()?;
                match e.name.as_str() {
                    "create" => Some((e.ns, bytes)),
                    "destroy" => Some((e.ns, -bytes)),
                    _ => None,
                }
            })
            .collect();
        // At equal times, releases first: they made the room.
        changes.sort_by_key(|&(ns, delta)| (ns, delta));
        let (mut used, mut peak) = (0i128, 0i128);
        for (_, delta) in changes {
            used += delta;
            peak = peak.max(used);
        }
        u64::try_from(peak).unwrap_or(0)
    }
}

impl Trace {
    /// Who held the device memory at the moment of [`Trace::peak_device_memory`]:
    /// `(time, bytes per pid)`, to say which programs overcommitted a GPU.
    pub fn holdings_at_peak(&self) -> (u64, BTreeMap<u32, i128>) {
        let mut changes: Vec<(u64, i128, u32)> = self
            .events
            .iter()
            .filter_map(|e| {
                let bytes: i128 = e.fields.get("bytes")?.parse().ok()?;
                match e.name.as_str() {
                    "create" => Some((e.ns, bytes, e.pid)),
                    "destroy" => Some((e.ns, -bytes, e.pid)),
                    _ => None,
                }
            })
            .collect();
        changes.sort_by_key(|&(ns, delta, _)| (ns, delta));
        let (mut used, mut peak) = (0i128, 0i128);
        let mut held: BTreeMap<u32, i128> = BTreeMap::new();
        let mut at_peak = (0, BTreeMap::new());
        for (ns, delta, pid) in changes {
            used += delta;
            *held.entry(pid).or_default() += delta;
            if used > peak {
                peak = used;
                at_peak = (ns, held.clone());
            }
        }
        at_peak
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_kernels_of_two_processes_are_found() {
        let text = "1 10 kernel_begin name=a stream=0x0\n\
                    2 15 kernel_begin name=b stream=0x0\n\
                    1 20 kernel_end name=a stream=0x0\n\
                    2 30 kernel_end name=b stream=0x0\n\
                    3 40 kernel_begin name=c stream=0x0\n\
                    3 50 kernel_end name=c stream=0x0\n";
        let trace = Trace {
            events: text.lines().filter_map(parse_line).collect(),
        };
        assert_eq!(trace.kernel_runs().len(), 3);
        let overlaps = trace.cross_process_overlaps();
        assert_eq!(overlaps.len(), 1);
        assert_eq!((overlaps[0].0.pid, overlaps[0].1.pid), (1, 2));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(parse_line("not a trace line").is_none());
        assert!(parse_line("").is_none());
    }
}
