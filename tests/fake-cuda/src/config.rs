//! The fake driver's settings, read once from the environment at `cuInit`.

use std::path::PathBuf;

/// The most devices the fake exposes (the cross-process accounting table has
/// one counter per device per process).
pub const MAX_DEVICES: usize = 8;
/// Memory per device when `FAKE_CUDA_MEMORY` is not set: 16 GiB.
pub const DEFAULT_MEMORY: u64 = 16 << 30;

/// Settings of one process's fake driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `FAKE_CUDA_DEVICES`: how many devices exist (1..=8, default 1).
    pub devices: usize,
    /// `FAKE_CUDA_MEMORY`: bytes of memory per device.
    pub memory_per_device: u64,
    /// `FAKE_CUDA_TRACE`: a file that receives one line per event.
    pub trace_path: Option<PathBuf>,
    /// `FAKE_CUDA_STATE_DIR`: where the cross-process memory table lives.
    pub state_dir: Option<PathBuf>,
    /// `FAKE_CUDA_PINNED_LIMIT`: bytes of host memory one process may pin
    /// (allocate pinned or register); unlimited when unset.
    pub pinned_limit: Option<u64>,
}

impl Config {
    /// Reads the settings from the process environment; the `Err` says which
    /// variable is wrong and what it accepts.
    pub fn from_env() -> Result<Config, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let devices = match var("FAKE_CUDA_DEVICES") {
            None => 1,
            Some(text) => match text.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_DEVICES).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "FAKE_CUDA_DEVICES={text:?} is not a device count; use 1 to {MAX_DEVICES}"
                    ));
                }
            },
        };
        let memory_per_device = match var("FAKE_CUDA_MEMORY") {
            None => DEFAULT_MEMORY,
            Some(text) => parse_bytes(&text).ok_or_else(|| {
                format!(
                    "FAKE_CUDA_MEMORY={text:?} is not a size; use bytes or a suffix such as 512MiB or 16GiB"
                )
            })?,
        };
        let pinned_limit = match var("FAKE_CUDA_PINNED_LIMIT") {
            None => None,
            Some(text) => Some(parse_bytes(&text).ok_or_else(|| {
                format!("FAKE_CUDA_PINNED_LIMIT={text:?} is not a size; use bytes or a suffix such as 256MiB")
            })?),
        };
        Ok(Config {
            pinned_limit,
            devices,
            memory_per_device,
            trace_path: var("FAKE_CUDA_TRACE").map(PathBuf::from),
            state_dir: var("FAKE_CUDA_STATE_DIR").map(PathBuf::from),
        })
    }
}

/// Parses a byte count: a number with an optional unit (`B`, `KiB`, `MiB`,
/// `GiB`, `TiB`, or the short `K`/`M`/`G`/`T`, all binary). Zero is refused.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        "t" | "tib" | "tb" => 40,
        _ => return None,
    };
    let bytes = number.checked_mul(1u64 << shift)?;
    (bytes > 0).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units_parse_as_binary_multiples() {
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("16GiB"), Some(16 << 30));
        assert_eq!(parse_bytes(" 2 G "), Some(2 << 30));
        assert_eq!(parse_bytes("4kib"), Some(4096));
    }

    proptest::proptest! {
        #[test]
        fn every_unit_scales_by_its_power_of_two(n in 1u64..1 << 20, unit in 0usize..5) {
            let (suffix, shift) = [("", 0), ("KiB", 10), ("MiB", 20), ("GiB", 30), ("TiB", 40)][unit];
            proptest::prop_assert_eq!(parse_bytes(&format!("{n}{suffix}")), Some(n << shift));
        }
    }

    #[test]
    fn nonsense_and_zero_sizes_are_refused() {
        assert_eq!(parse_bytes(""), None);
        assert_eq!(parse_bytes("0"), None);
        assert_eq!(parse_bytes("GiB"), None);
        assert_eq!(parse_bytes("12XB"), None);
        assert_eq!(parse_bytes("99999999999999999999"), None);
        assert_eq!(parse_bytes("99999999999GiB"), None);
    }
}
