//! The GPUs the test doubles agree on: the fake CUDA driver
//! (`tests/fake-cuda`) and the fake NVML (`tests/fake-nvml`) read the same
//! variables the same way and name each device with the same UUID, so a
//! program and a daemon started with the same environment see the same
//! GPUs through either library.
//!
//! - `FAKE_CUDA_DEVICES`: how many devices (1 to [`MAX_DEVICES`], default 1).
//! - `FAKE_CUDA_MEMORY`: bytes of memory each (default [`DEFAULT_MEMORY`]).

/// The most devices the fakes expose (the fake driver's cross-process
/// accounting table has one counter per device per process).
pub const MAX_DEVICES: usize = 8;

/// Memory per device when `FAKE_CUDA_MEMORY` is not set: 16 GiB.
pub const DEFAULT_MEMORY: u64 = 16 << 30;

/// The devices of this environment: how many, and the memory of each; the
/// `Err` says which variable is wrong and what it accepts.
pub fn from_env() -> Result<(usize, u64), String> {
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
    let memory = match var("FAKE_CUDA_MEMORY") {
        None => DEFAULT_MEMORY,
        Some(text) => parse_bytes(&text).ok_or_else(|| {
            format!(
                "FAKE_CUDA_MEMORY={text:?} is not a size; use bytes or a suffix such as 512MiB or 16GiB"
            )
        })?,
    };
    Ok((devices, memory))
}

/// The UUID of device `index`: fixed bytes, distinct per device.
pub fn uuid_bytes(index: usize) -> [u8; 16] {
    let mut bytes = *b"FAKECUDA\0\0\0\0\0\0\0\0";
    bytes[8..].copy_from_slice(&(index as u64 + 1).to_be_bytes());
    bytes
}

/// The UUID of device `index` as NVML and `nvidia-smi` spell it
/// (`GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
pub fn uuid_text(index: usize) -> String {
    let hex: String = uuid_bytes(index)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
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
    fn uuids_are_distinct_and_spelled_as_nvml_does() {
        assert_eq!(uuid_text(0), "GPU-46414b45-4355-4441-0000-000000000001");
        assert_ne!(uuid_bytes(0), uuid_bytes(1));
    }

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
