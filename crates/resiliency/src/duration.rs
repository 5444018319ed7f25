//! Durations as daprd reads them. In Resiliency resources a bare integer (quoted or not) is
//! milliseconds, anything else is Go's `time.ParseDuration` syntax (`pkg/resiliency/resiliency.go
//! parseDuration`; dapr/kit `config/decode.go decodeString`). The Go parser here is the one the
//! whole sidecar uses (its `go` module re-exports it).

use std::time::Duration;

/// Parses a Resiliency duration; `None` when it is neither an integer nor a Go duration, or is
/// negative.
pub fn parse(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return u64::try_from(ms).ok().map(Duration::from_millis);
    }
    let nanos = parse_go_duration(s)?;
    u64::try_from(nanos).ok().map(Duration::from_nanos)
}

/// Go's `time.ParseDuration` exactly, in nanoseconds: an optional sign, then one or more
/// `<number><unit>` (`ns us µs μs ms s m h`); a bare number is accepted only for `0`. Whitespace
/// and values beyond `i64` nanoseconds are errors.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * nanos_per_unit;
    }
    // i64::MAX nanoseconds, as f64; Go reports anything above it as an invalid duration.
    if total > 9_223_372_036_854_775_807f64 {
        return None;
    }
    let nanos = total.round() as i64;
    Some(if negative { -nanos } else { nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_integers_are_milliseconds_and_go_syntax_is_accepted() {
        assert_eq!(parse("5"), Some(Duration::from_millis(5)));
        assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(parse("soon"), None);
        assert_eq!(parse("-5"), None);
        assert_eq!(parse("-5s"), None);
        assert_eq!(parse("5x"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn go_durations_parse_exactly() {
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("-2s"), Some(-2_000_000_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("5"), None, "a unit is required");
        assert_eq!(parse_go_duration(" 5s"), None);
        assert_eq!(parse_go_duration("1..5s"), None);
        assert_eq!(parse_go_duration("99999999999999999999h"), None);
    }
}
