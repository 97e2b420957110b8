//! Human units in configuration: periods such as `30s`, `500ms`, `2m`, `1h`,
//! bitrates such as `25Mbit`, and sizes such as `10MiB`.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Parses `<number><unit>` with unit `us`, `ms`, `s`, `m` or `h` (no unit: an
/// error, so `30` is never silently read as 30 ms or 30 s).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (value, unit) = split_unit(text, "us, ms, s, m or h")?;
    let seconds = match unit {
        "us" | "µs" => value / 1e6,
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use us, ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is out of range"))
}

/// Serde adapter: `#[serde(deserialize_with = "units::duration")]`.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// Splits `<number><unit>`; the error names the text and the units allowed.
fn split_unit<'t>(text: &'t str, units: &str) -> Result<(f64, &'t str), String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{text}` has no unit (use {units})"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}`: `{number}` is not a number"))?;
    Ok((value, unit.trim()))
}

/// Scales `value` by the multiplier of `unit` in `table`; the result must be a
/// whole number that fits 64 bits.
fn scaled(
    text: &str,
    value: f64,
    unit: &str,
    table: &[(&str, u64)],
    units: &str,
) -> Result<u64, String> {
    let (_, multiplier) = table
        .iter()
        .find(|(name, _)| *name == unit)
        .ok_or_else(|| format!("`{text}`: unknown unit `{unit}` (use {units})"))?;
    let result = value * *multiplier as f64;
    if !(0.0..=u64::MAX as f64).contains(&result) || result.fract() != 0.0 {
        return Err(format!(
            "`{text}` is not a whole number of the base unit in range"
        ));
    }
    Ok(result as u64)
}

const BITRATE_UNITS: &str = "bit, kbit, Mbit or Gbit (per second)";

/// Parses a bitrate `<number><unit>` in bit/s: `bit`, `kbit`, `Mbit`, `Gbit`
/// (decimal prefixes, as link rates are quoted).
pub fn parse_bitrate(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (value, unit) = split_unit(text, BITRATE_UNITS)?;
    let table = [
        ("bit", 1),
        ("kbit", 1_000),
        ("Mbit", 1_000_000),
        ("Gbit", 1_000_000_000),
    ];
    scaled(text, value, unit, &table, BITRATE_UNITS)
}

const SIZE_UNITS: &str = "B, KiB, MiB, GiB, kB, MB or GB";

/// Parses a size `<number><unit>` in bytes: `B`, `KiB`, `MiB`, `GiB`, `kB`,
/// `MB`, `GB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (value, unit) = split_unit(text, SIZE_UNITS)?;
    let table = [
        ("B", 1),
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("kB", 1_000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
    ];
    scaled(text, value, unit, &table, SIZE_UNITS)
}

/// Serde adapter: `#[serde(deserialize_with = "units::bitrate")]`.
pub fn bitrate<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = String::deserialize(d)?;
    parse_bitrate(&text).map_err(serde::de::Error::custom)
}

/// Serde adapter: `#[serde(deserialize_with = "units::size")]`.
pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = String::deserialize(d)?;
    parse_size(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates() {
        assert_eq!(parse_bitrate("25Mbit"), Ok(25_000_000));
        assert_eq!(parse_bitrate("1.5 Gbit"), Ok(1_500_000_000));
        assert_eq!(parse_bitrate("64kbit"), Ok(64_000));
        assert!(parse_bitrate("25").unwrap_err().contains("no unit"));
        assert!(
            parse_bitrate("25MB")
                .unwrap_err()
                .contains("unknown unit `MB`")
        );
        assert!(
            parse_bitrate("0.5bit")
                .unwrap_err()
                .contains("whole number")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1428B"), Ok(1428));
        assert!(parse_size("10").unwrap_err().contains("no unit"));
        assert!(parse_size("10Mbit").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("xs").unwrap_err().contains("not a number"));
    }
}
