//! Durations as daprd reads them in Resiliency resources: a bare integer (quoted or not) is
//! milliseconds, anything else is Go's `time.ParseDuration` syntax (`pkg/resiliency/resiliency.go
//! parseDuration`; dapr/kit `config/decode.go decodeString`).

use std::time::Duration;

/// Parses a Resiliency duration; `None` when it is neither an integer nor a Go duration, or is
/// negative.
pub fn parse(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return u64::try_from(ms).ok().map(Duration::from_millis);
    }
    go_duration(s)
}

/// Go's `time.ParseDuration` for non-negative values: one or more `<number><unit>` with units
/// `ns us µs μs ms s m h`; a bare number is accepted only for `0`.
fn go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * factor;
    }
    Duration::try_from_secs_f64(total).ok()
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
        assert_eq!(parse("5x"), None);
        assert_eq!(parse(""), None);
    }
}
