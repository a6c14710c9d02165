//! The FAKE_CUDA_TRACE event log: one line per event, from every process.

use crate::common::{assert_success, run_program};

struct Line {
    pid: u32,
    ns: u64,
    event: String,
    fields: Vec<(String, String)>,
}

impl Line {
    fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn read_trace(path: &std::path::Path) -> Vec<Line> {
    std::fs::read_to_string(path)
        .expect("the trace file exists")
        .lines()
        .map(|line| {
            let mut words = line.split(' ');
            let pid = words.next().unwrap().parse().expect("pid");
            let ns = words.next().unwrap().parse().expect("monotonic ns");
            let event = words.next().expect("event").to_string();
            let fields = words
                .filter(|w| !w.is_empty())
                .map(|w| {
                    let (k, v) = w.split_once('=').expect("key=value field");
                    (k.to_string(), v.to_string())
                })
                .collect();
            Line {
                pid,
                ns,
                event,
                fields,
            }
        })
        .collect()
}

#[test]
fn kernels_copies_and_allocations_of_every_process_are_traced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.log");
    let env = [("FAKE_CUDA_TRACE", path.to_str().unwrap())];
    let (first, report) = run_program(
        "cuda-worker",
        &["--bytes", "65536", "--iterations", "3"],
        &env,
    );
    assert_success(&first);
    let (second, managed) = run_program(
        "cuda-worker",
        &[
            "--bytes",
            "65536",
            "--iterations",
            "2",
            "--alloc",
            "managed",
        ],
        &env,
    );
    assert_success(&second);
    let lines = read_trace(&path);
    let pid = report["pid"].as_u64().unwrap() as u32;
    let managed_pid = managed["pid"].as_u64().unwrap() as u32;

    let mine: Vec<&Line> = lines.iter().filter(|l| l.pid == pid).collect();
    assert!(
        mine.windows(2).all(|w| w[0].ns <= w[1].ns),
        "timestamps never go back"
    );
    let kernels: Vec<(&str, &str)> = mine
        .iter()
        .filter(|l| l.event.starts_with("kernel_"))
        .map(|l| (l.event.as_str(), l.field("name").unwrap()))
        .collect();
    let expected: Vec<(&str, &str)> = ["fill_u32", "add_u32", "add_u32", "add_u32", "checksum_u32"]
        .into_iter()
        .flat_map(|name| [("kernel_begin", name), ("kernel_end", name)])
        .collect();
    assert_eq!(kernels, expected);
    assert!(
        mine.iter()
            .filter(|l| l.event.starts_with("kernel_"))
            .all(|l| l.field("device") == Some("0"))
    );
    let alloc = mine
        .iter()
        .find(|l| l.event == "alloc")
        .expect("an alloc line");
    assert_eq!(alloc.field("kind"), Some("device"));
    assert_eq!(alloc.field("bytes"), Some("65536"));
    assert!(
        mine.iter()
            .any(|l| l.event == "free" && l.field("ptr") == alloc.field("ptr"))
    );
    assert!(mine.iter().any(|l| l.event == "memcpy"
        && l.field("kind") == Some("DtoH")
        && l.field("bytes") == Some("8")));

    let prefetch = lines
        .iter()
        .find(|l| l.pid == managed_pid && l.event == "prefetch")
        .expect("the managed worker prefetches");
    assert_eq!(prefetch.field("bytes"), Some("65536"));
    assert_eq!(prefetch.field("dst"), Some("0"));
}
