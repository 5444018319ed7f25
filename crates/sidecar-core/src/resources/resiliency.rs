//! `kind: Resiliency` documents: retry policies and their component targets.
//!
//! Only what delivery needs is modelled: named retry policies and
//! `spec.targets.components.<name>.{inbound,outbound}.retry`. Timeouts and circuit breakers are
//! parsed leniently and ignored.

use super::{ResourceError, typed};
use crate::go::parse_duration;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Backoff shape of a retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryKind {
    Constant,
    Exponential,
}

/// A named retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicySpec {
    pub kind: RetryKind,
    /// Constant interval (default 5 s).
    pub duration: Duration,
    /// Exponential cap (default 60 s).
    pub max_interval: Duration,
    /// `None` = retry forever (`-1`, the default).
    pub max_retries: Option<u64>,
    /// Optional allow-list of HTTP statuses that are retried (`"429,500-599"`).
    pub http_status_codes: Option<Vec<(u16, u16)>>,
}

/// A loaded resiliency resource.
#[derive(Debug, Clone)]
pub struct ResiliencySpec {
    pub name: String,
    pub scopes: Vec<String>,
    pub retries: BTreeMap<String, RetryPolicySpec>,
    /// component name -> retry policy name for inbound (delivery) calls.
    pub component_inbound_retry: BTreeMap<String, String>,
    /// component name -> retry policy name for outbound calls.
    pub component_outbound_retry: BTreeMap<String, String>,
    /// Named timeouts (`spec.policies.timeouts`).
    pub timeouts: BTreeMap<String, Duration>,
    /// component name -> timeout of each inbound (delivery) attempt.
    pub component_inbound_timeout: BTreeMap<String, Duration>,
    /// app id -> timeout of each service invocation of it (`spec.targets.apps.<id>.timeout`).
    pub app_timeout: BTreeMap<String, Duration>,
    pub source: PathBuf,
}

impl ResiliencySpec {
    pub fn in_scope(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == app_id)
    }
}

#[derive(Deserialize)]
struct Doc {
    metadata: Meta,
    spec: Spec,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
}

#[derive(Deserialize, Default)]
struct Spec {
    #[serde(default)]
    policies: Policies,
    #[serde(default)]
    targets: Targets,
}

#[derive(Deserialize, Default)]
struct Policies {
    #[serde(default)]
    retries: BTreeMap<String, RetryDoc>,
    #[serde(default)]
    timeouts: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetryDoc {
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    max_interval: Option<String>,
    #[serde(default)]
    max_retries: Option<i64>,
    #[serde(default)]
    matching: Option<Matching>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Matching {
    #[serde(default)]
    http_status_codes: Option<String>,
}

#[derive(Deserialize, Default)]
struct Targets {
    #[serde(default)]
    components: BTreeMap<String, ComponentTarget>,
    #[serde(default)]
    apps: BTreeMap<String, AppTarget>,
}

#[derive(Deserialize, Default)]
struct AppTarget {
    #[serde(default)]
    timeout: Option<String>,
}

#[derive(Deserialize, Default)]
struct ComponentTarget {
    #[serde(default)]
    inbound: Option<TargetPolicies>,
    #[serde(default)]
    outbound: Option<TargetPolicies>,
}

#[derive(Deserialize, Default)]
struct TargetPolicies {
    #[serde(default)]
    retry: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
}

pub(super) fn parse(
    file: &Path,
    value: yaml_serde::Value,
) -> Result<ResiliencySpec, ResourceError> {
    let doc: Doc = typed(file, "Resiliency", value)?;
    let name = doc.metadata.name;
    let field_err = |field: String, message: String| ResourceError::Field {
        file: file.to_path_buf(),
        kind: "Resiliency".into(),
        name: name.clone(),
        field,
        message,
    };
    let mut retries = BTreeMap::new();
    for (policy_name, r) in doc.spec.policies.retries {
        let base = format!("spec.policies.retries.{policy_name}");
        let kind = match r.policy.as_deref().unwrap_or("constant") {
            "constant" | "" => RetryKind::Constant,
            "exponential" => RetryKind::Exponential,
            other => {
                return Err(field_err(
                    format!("{base}.policy"),
                    format!("unknown retry policy `{other}` (constant or exponential)"),
                ));
            }
        };
        let dur = |f: &str, v: Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(s) => parse_duration(&s)
                .ok_or_else(|| field_err(format!("{base}.{f}"), format!("invalid duration `{s}`"))),
        };
        let duration = dur("duration", r.duration, Duration::from_secs(5))?;
        let max_interval = dur("maxInterval", r.max_interval, Duration::from_secs(60))?;
        let http_status_codes = match r.matching.and_then(|m| m.http_status_codes) {
            None => None,
            Some(s) if s.trim().is_empty() => None,
            Some(s) => Some(parse_status_ranges(&s).ok_or_else(|| {
                field_err(
                    format!("{base}.matching.httpStatusCodes"),
                    format!("invalid status list `{s}`"),
                )
            })?),
        };
        retries.insert(
            policy_name,
            RetryPolicySpec {
                kind,
                duration,
                max_interval,
                max_retries: r.max_retries.and_then(|n| u64::try_from(n).ok()),
                http_status_codes,
            },
        );
    }
    let mut timeouts = BTreeMap::new();
    for (timeout_name, value) in doc.spec.policies.timeouts {
        let d = parse_duration(&value).ok_or_else(|| {
            field_err(
                format!("spec.policies.timeouts.{timeout_name}"),
                format!("invalid duration `{value}`"),
            )
        })?;
        timeouts.insert(timeout_name, d);
    }
    let mut app_timeout = BTreeMap::new();
    for (app, target) in doc.spec.targets.apps {
        if let Some(t) = target.timeout {
            let d = timeouts
                .get(&t)
                .copied()
                .or_else(|| parse_duration(&t))
                .ok_or_else(|| {
                    field_err(
                        format!("spec.targets.apps.{app}.timeout"),
                        format!("no timeout policy named `{t}`"),
                    )
                })?;
            app_timeout.insert(app, d);
        }
    }
    let mut inbound = BTreeMap::new();
    let mut outbound = BTreeMap::new();
    let mut inbound_timeout = BTreeMap::new();
    for (component, target) in doc.spec.targets.components {
        // A target timeout names a policy, or is a duration itself.
        if let Some(t) = target.inbound.as_ref().and_then(|p| p.timeout.as_ref()) {
            let d = timeouts
                .get(t)
                .copied()
                .or_else(|| parse_duration(t))
                .ok_or_else(|| {
                    field_err(
                        format!("spec.targets.components.{component}.inbound.timeout"),
                        format!("no timeout policy named `{t}`"),
                    )
                })?;
            inbound_timeout.insert(component.clone(), d);
        }
        for (dir, policies, map) in [
            ("inbound", target.inbound, &mut inbound),
            ("outbound", target.outbound, &mut outbound),
        ] {
            if let Some(policy) = policies.and_then(|p| p.retry) {
                if !retries.contains_key(&policy) {
                    return Err(field_err(
                        format!("spec.targets.components.{component}.{dir}.retry"),
                        format!("no retry policy named `{policy}`"),
                    ));
                }
                map.insert(component.clone(), policy);
            }
        }
    }
    Ok(ResiliencySpec {
        name,
        scopes: doc.scopes,
        retries,
        component_inbound_retry: inbound,
        component_outbound_retry: outbound,
        timeouts,
        component_inbound_timeout: inbound_timeout,
        app_timeout,
        source: file.to_path_buf(),
    })
}

fn parse_status_ranges(s: &str) -> Option<Vec<(u16, u16)>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| match part.split_once('-') {
            Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
            None => {
                let n = part.parse().ok()?;
                Some((n, n))
            }
        })
        .collect()
}
