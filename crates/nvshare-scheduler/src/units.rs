//! Human-friendly durations for the command line (sizes are parsed by
//! [`nvshare_proto::units::parse_size`], shared with the hook).
//!
//! Operators write `16GiB` or `200ms`; the daemon works in bytes and
//! [`Duration`]s. Parsing is strict: anything ambiguous is an error naming
//! the accepted forms, never a silent guess.

use std::time::Duration;

/// Parses a positive duration: seconds as a plain number (`30`, `0.2`), or a
/// number with a unit `ms`, `s` or `m`.
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
    let duration = Duration::try_from_secs_f64(seconds).map_err(|_| bad())?;
    if duration < Duration::from_millis(1) {
        return Err(format!(
            "duration {text:?} is too short: the smallest accepted value is 1ms"
        ));
    }
    Ok(duration)
}

/// Formats bytes for log lines: `12.0GiB`, `512.0MiB`, `300B`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0.2"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0").unwrap_err().contains("too short"));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn formats_bytes() {
        assert_eq!(format_bytes(300), "300B");
        assert_eq!(format_bytes(512 << 20), "512.0MiB");
        assert_eq!(format_bytes(12 << 30), "12.0GiB");
    }

    proptest! {
        #[test]
        fn never_panics(text in ".{0,20}") {
            let _ = parse_duration(&text);
        }
    }
}
