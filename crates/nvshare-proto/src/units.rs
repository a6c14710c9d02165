//! Byte sizes as people write them (`16GiB`, `512MiB`, `1.5G`), parsed the
//! same way by every nvshare program: the daemon's `--memory-capacity` and
//! the hook's `NVSHARE_HOST_LIMIT` accept the same forms.

/// Parses a byte size: a number (fractions allowed) with an optional unit.
///
/// Units are case-insensitive: `B`; binary `KiB MiB GiB TiB` and their short
/// forms `K M G T` (as `free -h` and Docker use them); decimal `KB MB GB TB`.
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
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("size {text:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
    }
}
