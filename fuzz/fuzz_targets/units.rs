//! Fuzz the parsers of what people type: sizes (`--memory-capacity`,
//! `NVSHARE_MEMORY_LIMIT`, `NVSHARE_HOST_LIMIT`, `--memory-unit`) and
//! durations (`--quantum`, `nvshare-ctl set-tq`).
//! Invariants: any text yields a value or an error naming the accepted
//! forms, never a panic; a parsed size printed as plain bytes parses back
//! to itself, and printed for people (`Bytes`) parses back within the
//! rounding of its one decimal (below 15 EiB); a parsed duration is at least a
//! millisecond and, written as seconds to the microsecond, parses back to
//! itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nvshare_proto::units::{Bytes, parse_duration, parse_size};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_size(text) {
        Ok(bytes) => {
            assert_eq!(parse_size(&bytes.to_string()), Ok(bytes), "{text:?}");
            // The largest sizes print as 16.0 EiB, one past what a u64
            // holds: every smaller one must parse back.
            if bytes < 15 << 60 {
                let shown = Bytes(bytes).to_string();
                let again = parse_size(&shown).expect("a printed size parses");
                let error = again.abs_diff(bytes) as f64;
                assert!(error <= bytes as f64 * 0.05 + 1.0, "{text:?} -> {shown} -> {again}");
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
    match parse_duration(text) {
        Ok(duration) => {
            assert!(duration.as_micros() >= 1_000, "{text:?}");
            let micros = duration.as_micros();
            // Past 2^53 microseconds (285 years) a float no longer holds
            // every microsecond: only shorter ones must come back exactly.
            if micros < 1 << 53 {
                let seconds = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
                assert_eq!(parse_duration(&seconds), Ok(duration), "{text:?}");
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
