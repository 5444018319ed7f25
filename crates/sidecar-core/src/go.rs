//! Values written the way Go programs write them. daprd and components-contrib are Go, so the
//! strings they accept in metadata, query parameters and resource files, and the strings they
//! print, follow Go's standard library; every such parse and print of this crate is here.

use std::time::Duration;

/// Go's `strconv.ParseBool`: `1 t T TRUE true True` and `0 f F FALSE false False`, nothing else.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A boolean component metadata value with the words of `utils.IsTruthy` (dapr/kit), which
/// components-contrib uses for flags such as `enableTLS`: case-insensitive `true 1 t yes y on`,
/// and their opposites. A word outside both lists is `None` (the caller reports it) rather than
/// the silent `false` of `IsTruthy`.
pub fn parse_truthy(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "t" | "yes" | "y" | "on" => Some(true),
        "false" | "0" | "f" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// Go's `time.ParseDuration` (`300ms`, `5s`, `1m30s`, `1h`); a bare number is taken as seconds,
/// as Dapr's resource files and `ttl` metadata allow. Negative values are `None`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let nanos = parse_go_duration(s)?;
    u64::try_from(nanos).ok().map(Duration::from_nanos)
}

/// Go's `time.ParseDuration` exactly, in signed nanoseconds. One parser serves the sidecar and
/// the resiliency engine, which reads Resiliency durations with it.
pub use resiliency::duration::parse_go_duration;

/// A duration as Go's `time.Duration.String` writes it, to millisecond precision: `0s`, `500ms`,
/// `5s`, `1.5s`, `1m30s`, `2h0m0s`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let total = d.as_secs();
    let (hours, minutes, seconds) = (total / 3600, total % 3600 / 60, total % 60);
    let millis = d.subsec_millis();
    let seconds = if millis == 0 {
        seconds.to_string()
    } else {
        format!("{seconds}.{millis:03}")
            .trim_end_matches('0')
            .to_owned()
    };
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration(""), None);
    }
}
