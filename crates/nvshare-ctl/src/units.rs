//! Durations the way people read them.

/// `ms` as `850 ms`, `12.3 s`, `5m 03s` or `2h 05m`.
pub fn human_duration_ms(ms: u64) -> String {
    let seconds = ms / 1000;
    match seconds {
        _ if ms < 1000 => format!("{ms} ms"),
        0..60 => format!("{:.1} s", ms as f64 / 1000.0),
        60..3600 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h {:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(human_duration_ms(0), "0 ms");
        assert_eq!(human_duration_ms(850), "850 ms");
        assert_eq!(human_duration_ms(12_345), "12.3 s");
        assert_eq!(human_duration_ms(303_000), "5m 03s");
        assert_eq!(human_duration_ms(7_500_000), "2h 05m");
    }
}
