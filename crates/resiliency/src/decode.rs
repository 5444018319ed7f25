//! Decoding one `kind: Resiliency` YAML document into a [`Resource`], field by field, the way
//! daprd does (`pkg/resiliency/resiliency.go DecodeConfiguration`): timeouts, then retries, then
//! circuit breakers, then targets. The first bad field stops decoding; what was decoded before it
//! stays, and the resource's targets are not applied.

use crate::duration;
use crate::policy::{
    BreakerPolicy, ComponentTarget, DecodeError, PolicyNames, Resource, RetryKind, RetryPolicy,
    TripExpr,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use yaml_serde::Value;

/// Trip expression of a breaker that names none (`pkg/resiliency/breaker/circuitbreaker.go
/// Initialize`).
pub const DEFAULT_TRIP: &str = "consecutiveFailures > 5";
/// Open-state duration of a breaker that names none (gobreaker `defaultTimeout`).
pub const DEFAULT_BREAKER_TIMEOUT: Duration = Duration::from_secs(60);

/// Decodes `doc`. Only a document without `metadata.name` is refused outright; any other bad
/// field is recorded in [`Resource::error`].
pub fn decode(file: &Path, doc: &Value) -> Result<Resource, DecodeError> {
    let name = doc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| DecodeError {
            file: file.to_path_buf(),
            name: "<unnamed>".into(),
            field: "metadata.name".into(),
            message: "missing".into(),
        })?
        .to_string();
    let mut resource = Resource {
        name: name.clone(),
        source: file.to_path_buf(),
        ..Resource::default()
    };
    let fail = |field: String, message: String| DecodeError {
        file: file.to_path_buf(),
        name: name.clone(),
        field,
        message,
    };
    match doc.get("scopes") {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(items)) => {
            for item in items {
                match item.as_str() {
                    Some(s) => resource.scopes.push(s.to_string()),
                    None => {
                        resource.error = Some(fail("scopes".into(), "expected app ids".into()));
                        return Ok(resource);
                    }
                }
            }
        }
        Some(_) => {
            resource.error = Some(fail("scopes".into(), "expected a list of app ids".into()));
            return Ok(resource);
        }
    }
    if let Err(e) = decode_into(&mut resource, doc, &fail) {
        resource.components.clear();
        resource.apps.clear();
        resource.error = Some(e);
    }
    Ok(resource)
}

type Fail<'a> = dyn Fn(String, String) -> DecodeError + 'a;

fn decode_into(r: &mut Resource, doc: &Value, fail: &Fail<'_>) -> Result<(), DecodeError> {
    let spec = doc.get("spec");
    let policies = spec.and_then(|s| s.get("policies"));
    for (name, value) in entries(
        policies.and_then(|p| p.get("timeouts")),
        "spec.policies.timeouts",
        fail,
    )? {
        let field = format!("spec.policies.timeouts.{name}");
        let d = duration_of(value, &field, fail)?;
        r.timeouts.insert(name, d);
    }
    for (name, value) in entries(
        policies.and_then(|p| p.get("retries")),
        "spec.policies.retries",
        fail,
    )? {
        let retry = retry_of(value, &format!("spec.policies.retries.{name}"), fail)?;
        r.retries.insert(name, retry);
    }
    for (name, value) in entries(
        policies.and_then(|p| p.get("circuitBreakers")),
        "spec.policies.circuitBreakers",
        fail,
    )? {
        let field = format!("spec.policies.circuitBreakers.{name}");
        let breaker = breaker_of(&name, &r.name, value, &field, fail)?;
        r.breakers.insert(name, breaker);
    }
    let targets = spec.and_then(|s| s.get("targets"));
    for (name, value) in entries(
        targets.and_then(|t| t.get("components")),
        "spec.targets.components",
        fail,
    )? {
        let base = format!("spec.targets.components.{name}");
        let target = ComponentTarget {
            inbound: names_of(value.get("inbound"), &format!("{base}.inbound"), fail)?,
            outbound: names_of(value.get("outbound"), &format!("{base}.outbound"), fail)?,
        };
        r.components.insert(name, target);
    }
    for (name, value) in entries(
        targets.and_then(|t| t.get("apps")),
        "spec.targets.apps",
        fail,
    )? {
        let field = format!("spec.targets.apps.{name}");
        let names = names_of(Some(value), &field, fail)?.unwrap_or_default();
        r.apps.insert(name, names);
    }
    Ok(())
}

/// The entries of a mapping in name order (absent or null = none).
fn entries<'v>(
    value: Option<&'v Value>,
    field: &str,
    fail: &Fail<'_>,
) -> Result<Vec<(String, &'v Value)>, DecodeError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Mapping(map)) => {
            let mut out = BTreeMap::new();
            for (k, v) in map {
                let key =
                    scalar(k).ok_or_else(|| fail(field.into(), "keys must be names".into()))?;
                out.insert(key, v);
            }
            Ok(out.into_iter().collect())
        }
        Some(_) => Err(fail(field.into(), "expected a mapping".into())),
    }
}

/// A scalar as text: strings, numbers and booleans (YAML leaves `5` unquoted as a number).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn duration_of(v: &Value, field: &str, fail: &Fail<'_>) -> Result<Duration, DecodeError> {
    let text = scalar(v).ok_or_else(|| fail(field.into(), "expected a duration".into()))?;
    duration::parse(&text).ok_or_else(|| {
        fail(
            field.into(),
            format!("invalid duration `{text}` (an integer of milliseconds or a Go duration such as 500ms, 5s, 1m30s)"),
        )
    })
}

fn optional_duration(
    v: &Value,
    key: &str,
    base: &str,
    fail: &Fail<'_>,
) -> Result<Option<Duration>, DecodeError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(d) => duration_of(d, &format!("{base}.{key}"), fail).map(Some),
    }
}

fn integer(v: &Value, key: &str, base: &str, fail: &Fail<'_>) -> Result<Option<i64>, DecodeError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => scalar(n)
            .and_then(|s| s.trim().parse::<i64>().ok())
            .map(Some)
            .ok_or_else(|| fail(format!("{base}.{key}"), "expected an integer".into())),
    }
}

fn retry_of(v: &Value, base: &str, fail: &Fail<'_>) -> Result<RetryPolicy, DecodeError> {
    if !matches!(v, Value::Mapping(_) | Value::Null) {
        return Err(fail(base.into(), "expected a mapping".into()));
    }
    let kind_text = v.get("policy").and_then(scalar).unwrap_or_default();
    let kind = match kind_text.to_ascii_lowercase().as_str() {
        "" | "constant" => RetryKind::Constant,
        "exponential" => RetryKind::Exponential,
        _ => {
            return Err(fail(
                format!("{base}.policy"),
                format!("unknown retry policy `{kind_text}` (constant or exponential)"),
            ));
        }
    };
    let duration = optional_duration(v, "duration", base, fail)?.unwrap_or(Duration::from_secs(5));
    let max_interval =
        optional_duration(v, "maxInterval", base, fail)?.unwrap_or(Duration::from_secs(60));
    let max_retries = integer(v, "maxRetries", base, fail)?
        .unwrap_or(-1)
        .try_into()
        .ok();
    let matching = v.get("matching");
    let http_status_codes = match matching.and_then(|m| m.get("httpStatusCodes")) {
        None | Some(Value::Null) => None,
        Some(codes) => {
            let field = format!("{base}.matching.httpStatusCodes");
            let text = scalar(codes).ok_or_else(|| {
                fail(
                    field.clone(),
                    "expected a list such as \"429,500-599\"".into(),
                )
            })?;
            codes_of(&text, 100, 599).map_err(|m| fail(field, m))?
        }
    };
    if let Some(codes) = matching.and_then(|m| m.get("gRPCStatusCodes")) {
        let field = format!("{base}.matching.gRPCStatusCodes");
        let text = scalar(codes)
            .ok_or_else(|| fail(field.clone(), "expected a list such as \"1-4,14\"".into()))?;
        codes_of(&text, 0, 16).map_err(|m| fail(field, m))?;
    }
    Ok(RetryPolicy {
        kind,
        duration,
        max_interval,
        max_retries,
        http_status_codes,
    })
}

/// A `matching` list: comma-separated codes or `a-b` ranges within `lo..=hi`; empty = `None`.
fn codes_of(text: &str, lo: u16, hi: u16) -> Result<Option<Vec<(u16, u16)>>, String> {
    let mut ranges = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let parse = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (lo..=hi).contains(c))
        };
        match (parse(a), parse(b)) {
            (Some(a), Some(b)) if a <= b => ranges.push((a, b)),
            _ => {
                return Err(format!(
                    "invalid code or range `{part}` (codes {lo}-{hi}, ranges low-high)"
                ));
            }
        }
    }
    Ok((!ranges.is_empty()).then_some(ranges))
}

fn breaker_of(
    name: &str,
    resource: &str,
    v: &Value,
    base: &str,
    fail: &Fail<'_>,
) -> Result<BreakerPolicy, DecodeError> {
    if !matches!(v, Value::Mapping(_) | Value::Null) {
        return Err(fail(base.into(), "expected a mapping".into()));
    }
    let max_requests = integer(v, "maxRequests", base, fail)?
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let interval = optional_duration(v, "interval", base, fail)?.unwrap_or(Duration::ZERO);
    let timeout = optional_duration(v, "timeout", base, fail)?
        .filter(|t| !t.is_zero())
        .unwrap_or(DEFAULT_BREAKER_TIMEOUT);
    let trip_text = match v.get("trip") {
        None | Some(Value::Null) => DEFAULT_TRIP.to_string(),
        Some(t) => scalar(t)
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_TRIP.to_string()),
    };
    let trip = TripExpr::compile(&trip_text).map_err(|e| {
        fail(
            format!("{base}.trip"),
            format!("`{trip_text}` is not a CEL expression: {e}"),
        )
    })?;
    Ok(BreakerPolicy {
        name: name.to_string(),
        resource: resource.to_string(),
        max_requests,
        interval,
        timeout,
        trip,
    })
}

fn names_of(
    v: Option<&Value>,
    base: &str,
    fail: &Fail<'_>,
) -> Result<Option<PolicyNames>, DecodeError> {
    let v = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(v @ Value::Mapping(_)) => v,
        Some(_) => return Err(fail(base.into(), "expected a mapping".into())),
    };
    let name = |key: &str| -> Result<Option<String>, DecodeError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(n) => scalar(n)
                .map(Some)
                .ok_or_else(|| fail(format!("{base}.{key}"), "expected a policy name".into())),
        }
    };
    Ok(Some(PolicyNames {
        timeout: name("timeout")?,
        retry: name("retry")?,
        circuit_breaker: name("circuitBreaker")?,
    }))
}
