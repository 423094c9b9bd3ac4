//! Parsing sizes (`64MiB`, `512k`, `1048576`) and durations (`2s`, `1500ms`) given on the
//! command line.

use std::time::Duration;

/// Parses a byte size: a number with an optional unit (B, k/KB, KiB, M/MB, MiB, G/GB, GiB).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| {
        format!("{text:?} is not a size: write a number with an optional unit, like 64MiB")
    })?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use B, KB, KiB, MB, MiB, GB or GiB"
            ));
        }
    };
    Ok((number * multiplier as f64).round() as u64)
}

/// Parses a duration such as `2s`, `1500ms` or `1m 30s`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| {
        format!("{text:?} is not a duration ({err}): write something like 2s or 1500ms")
    })
}

/// Formats a byte count for people: `91.8 KiB`.
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("2k").unwrap(), 2000);
        assert_eq!(parse_size("1.5 KiB").unwrap(), 1536);
        assert!(parse_size("lots").is_err());
        assert!(
            parse_size("5 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(94_003), "91.8 KiB");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert!(parse_duration("soon").is_err());
    }
}
