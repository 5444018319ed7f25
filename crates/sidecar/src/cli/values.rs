//! Parsing of flag values shared by the command line and the run file: listen addresses, Kubernetes
//! quantities, and Go-style `-flag` arguments.

use std::ffi::OsString;
use std::net::IpAddr;

use super::CliError;

/// Parses `--dapr-listen-addresses`: comma-separated IPs, `[::1]` brackets and `localhost` allowed.
pub fn parse_listen_addresses(list: &str) -> Result<Vec<IpAddr>, CliError> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bare = part.trim_start_matches('[').trim_end_matches(']');
        let ip = if bare.eq_ignore_ascii_case("localhost") {
            IpAddr::from([127, 0, 0, 1])
        } else {
            bare.parse().map_err(|_| CliError::Invalid {
                flag: "dapr-listen-addresses",
                value: list.to_owned(),
                why: format!("{part:?} is not an IP address"),
            })?
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// Parses a Kubernetes-style quantity (`4Mi`, `4M`, `1.5Gi`, `4194304`) into bytes, as daprd does for
/// `--max-body-size`. Fractional results are rounded up; negative means "no limit" (`usize::MAX`).
pub fn parse_quantity(value: &str) -> Result<usize, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(split);
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        other => {
            return Err(format!(
                "unknown unit {other:?} (use Ki, Mi, Gi, k, M, G or none)"
            ));
        }
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{number:?} is not a number"))?;
    if !n.is_finite() {
        return Err("not a finite number".into());
    }
    if n < 0.0 {
        return Ok(usize::MAX);
    }
    let bytes = (n * multiplier).ceil();
    if bytes >= usize::MAX as f64 {
        Ok(usize::MAX)
    } else {
        // In range and non-negative: checked just above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(bytes as usize)
    }
}

/// Rewrites daprd's Go-style `-flag` arguments to `--flag` so clap understands them. Short flags
/// (`-f`, `-h`, `-V`) and values after a flag are left alone; `--` ends the rewriting.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut done = false;
    for arg in args {
        if done {
            out.push(arg);
            continue;
        }
        match arg.to_str() {
            Some("--") => {
                done = true;
                out.push(arg);
            }
            Some(s)
                if s.starts_with('-')
                    && !s.starts_with("--")
                    && s.len() > 2
                    && s.as_bytes().get(1).is_some_and(u8::is_ascii_alphabetic)
                    && s.as_bytes()
                        .get(2)
                        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'-') =>
            {
                out.push(OsString::from(format!("-{s}")));
            }
            _ => out.push(arg),
        }
    }
    out
}
