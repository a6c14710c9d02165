//! Sizes and durations as people write and read them, the same in every
//! nvshare program: the daemon's `--memory-capacity` and the hook's
//! `NVSHARE_HOST_LIMIT` accept the same sizes (`16GiB`, `512MiB`, `1.5G`),
//! the daemon's `--quantum` and `nvshare-ctl set-tq` the same durations
//! (`30`, `0.5`, `200ms`), and logs and tables print sizes one way.
//!
//! Parsing is strict: anything ambiguous is an error naming the accepted
//! forms, never a silent guess.

use std::fmt;
use std::time::Duration;

/// One kibibyte.
pub const KIB: u64 = 1 << 10;
/// One mebibyte.
pub const MIB: u64 = 1 << 20;
/// One gibibyte.
pub const GIB: u64 = 1 << 30;

/// Parses a byte size: a number (fractions allowed) with an optional unit.
///
/// Units are case-insensitive: `B`; binary `KiB MiB GiB TiB PiB EiB` and
/// their short forms `K M G T P E` (as `free -h` and Docker use them);
/// decimal `KB MB GB TB PB EB`. Every size [`Bytes`] prints parses back.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(format!(
            "size {text:?} is negative: give a number of bytes with an optional unit, e.g. 16GiB"
        ));
    }
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let bad = || {
        format!(
            "invalid size {text:?}: expected a number of bytes with an optional unit, \
             e.g. 16GiB, 512MiB, 1.5G or 1073741824"
        )
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "p" | "pib" => 1 << 50,
        "e" | "eib" => 1 << 60,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "pb" => 1_000_000_000_000_000,
        "eb" => 1_000_000_000_000_000_000,
        _ => return Err(bad()),
    };
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("size {text:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

/// Parses a positive duration: seconds as a plain number (`30`, `0.2`), or a
/// number with a unit `ms`, `s` or `m`; at least a millisecond, kept to the
/// microsecond.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(format!(
            "duration {text:?} is negative: give seconds (30, 0.5) or a number with ms, s or m"
        ));
    }
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let bad = || {
        format!("invalid duration {text:?}: expected seconds (30, 0.5) or a number with ms, s or m")
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1_000.0,
        "m" => value * 60.0,
        _ => return Err(bad()),
    };
    // Whole microseconds: `1234567ms` must mean exactly that, not a
    // nanosecond less from the float's rounding.
    let micros = (seconds * 1e6).round();
    if !micros.is_finite() || micros >= u64::MAX as f64 {
        return Err(bad());
    }
    let duration = Duration::from_micros(micros as u64);
    if duration < Duration::from_millis(1) {
        return Err(format!(
            "duration {text:?} is too short: the smallest accepted value is 1ms"
        ));
    }
    Ok(duration)
}

/// A byte count for people, in binary units with one decimal: `{}` is
/// compact for log fields (`300B`, `512.0MiB`), `{:#}` spaced for tables
/// (`300 B`, `512.0 MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let space = if f.alternate() { " " } else { "" };
        if self.0 < KIB {
            return write!(f, "{}{space}B", self.0);
        }
        let mut value = self.0 as f64 / KIB as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1}{space}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0.2"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0").unwrap_err().contains("too short"));
        assert!(parse_duration("-1").unwrap_err().contains("negative"));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn bytes_compact_and_spaced() {
        assert_eq!(Bytes(300).to_string(), "300B");
        assert_eq!(Bytes(512 << 20).to_string(), "512.0MiB");
        assert_eq!(Bytes(12 << 30).to_string(), "12.0GiB");
        assert_eq!(format!("{:#}", Bytes(0)), "0 B");
        assert_eq!(format!("{:#}", Bytes(1023)), "1023 B");
        assert_eq!(format!("{:#}", Bytes(1536)), "1.5 KiB");
        assert_eq!(format!("{:#}", Bytes((80 << 30) - (80 << 20))), "79.9 GiB");
        assert_eq!(format!("{:#}", Bytes(u64::MAX)), "16.0 EiB");
    }

    #[test]
    fn printed_sizes_parse_back() {
        // The fuzz target `units` found "8.7EiB" refused.
        assert_eq!(parse_size("2PiB"), Ok(2 << 50));
        assert_eq!(parse_size("1.5e"), Ok(3 << 59));
        assert_eq!(parse_size("3PB"), Ok(3_000_000_000_000_000));
        for bytes in [1u64 << 20, 5 << 40, 3 << 50, 9 << 60] {
            let again = parse_size(&Bytes(bytes).to_string()).unwrap();
            assert!(again.abs_diff(bytes) <= bytes / 20, "{bytes} -> {again}");
        }
        // The largest sizes print as 16.0 EiB, past what a u64 holds.
        assert!(parse_size("16EiB").is_err());
    }

    #[test]
    fn sizes_in_every_unit() {
        assert_eq!(parse_size("16GiB"), Ok(16 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("512mib"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10 KB"), Ok(10_000));
        assert_eq!(parse_size("2TB"), Ok(2_000_000_000_000));
    }

    #[test]
    fn bad_sizes_name_the_accepted_forms() {
        for bad in ["", "GiB", "12 parsecs", "-5", "1e9"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains("e.g. 16GiB"), "{bad}: {err}");
        }
        assert!(
            parse_size("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    proptest::proptest! {
        #[test]
        fn whole_mib_round_trip(mib in 0u64..(1 << 30)) {
            proptest::prop_assert_eq!(parse_size(&format!("{mib}MiB")), Ok(mib << 20));
        }

        #[test]
        fn never_panics(text in ".{0,20}") {
            let _ = parse_size(&text);
            let _ = parse_duration(&text);
        }

        #[test]
        fn whole_milliseconds_round_trip(ms in 1u64..(1 << 40)) {
            proptest::prop_assert_eq!(
                parse_duration(&format!("{ms}ms")),
                Ok(Duration::from_millis(ms))
            );
        }
    }
}
