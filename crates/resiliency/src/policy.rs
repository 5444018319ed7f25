//! The policy model of one `kind: Resiliency` resource: named timeouts, retries and circuit
//! breakers, and the targets that name them (dapr/dapr `pkg/apis/resiliency/v1alpha1/types.go`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Backoff shape of a retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryKind {
    Constant,
    Exponential,
}

/// A named retry policy with daprd's defaults filled in (dapr/kit `retry/retry.go DefaultConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub kind: RetryKind,
    /// Interval of a constant policy (default 5 s).
    pub duration: Duration,
    /// Cap of an exponential policy's base interval (default 60 s).
    pub max_interval: Duration,
    /// Retries after the first attempt; `None` = unlimited (`maxRetries` negative or absent).
    pub max_retries: Option<u64>,
    /// `matching.httpStatusCodes` as inclusive ranges; `None` = every code is retried.
    pub http_status_codes: Option<Vec<(u16, u16)>>,
}

impl RetryPolicy {
    /// Whether a status-code error with `status` may be retried (`pkg/resiliency/retry.go
    /// statusCodeNeedRetry`): without `matching` every code is.
    pub fn retries_status(&self, status: u16) -> bool {
        match &self.http_status_codes {
            None => true,
            Some(ranges) => ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status)),
        }
    }
}

/// The `trip` expression of a breaker, compiled once.
#[derive(Clone)]
pub struct TripExpr {
    pub source: String,
    pub(crate) program: Arc<cel::Program>,
}

impl std::fmt::Debug for TripExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TripExpr").field(&self.source).finish()
    }
}

impl PartialEq for TripExpr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl TripExpr {
    /// Compiles `source`; the error text is the CEL parser's.
    pub fn compile(source: &str) -> Result<Self, String> {
        let program = cel::Program::compile(source).map_err(|e| e.to_string())?;
        Ok(Self {
            source: source.to_string(),
            program: Arc::new(program),
        })
    }
}

/// A named circuit breaker policy with gobreaker's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerPolicy {
    /// Policy name (`spec.policies.circuitBreakers.<name>`).
    pub name: String,
    /// The resource that defined it (the `name` label of daprd's resiliency metrics).
    pub resource: String,
    /// Calls admitted while half-open, and successes in a row that close it (default 1).
    pub max_requests: u32,
    /// Period after which the counts are cleared while closed; zero = never.
    pub interval: Duration,
    /// How long the breaker stays open before it lets calls through half-open (default 60 s).
    pub timeout: Duration,
    /// When a failure opens the breaker (default `consecutiveFailures > 5`).
    pub trip: TripExpr,
}

/// The policy names one target (or one direction of a component target) uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyNames {
    pub timeout: Option<String>,
    pub retry: Option<String>,
    pub circuit_breaker: Option<String>,
}

/// `spec.targets.components.<name>`: replaced whole by a later resource naming the same
/// component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentTarget {
    pub inbound: Option<PolicyNames>,
    pub outbound: Option<PolicyNames>,
}

/// A decode error of one resource: which file and field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: Resiliency `{name}`: field `{field}`: {message}")]
pub struct DecodeError {
    pub file: PathBuf,
    pub name: String,
    pub field: String,
    pub message: String,
}

/// One decoded `kind: Resiliency` resource.
///
/// When a field fails to decode, daprd keeps the policies decoded before it and applies none of
/// the resource's targets (`pkg/resiliency/resiliency.go DecodeConfiguration`); `error` then says
/// what failed, and `components`/`apps` are empty.
#[derive(Debug, Clone, Default)]
pub struct Resource {
    pub name: String,
    pub scopes: Vec<String>,
    pub source: PathBuf,
    pub timeouts: BTreeMap<String, Duration>,
    pub retries: BTreeMap<String, RetryPolicy>,
    pub breakers: BTreeMap<String, BreakerPolicy>,
    pub components: BTreeMap<String, ComponentTarget>,
    pub apps: BTreeMap<String, PolicyNames>,
    pub error: Option<DecodeError>,
}

impl Resource {
    /// Whether the resource applies to `app_id` (`filterResiliencyConfigs`: empty scopes = all).
    pub fn in_scope(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == app_id)
    }
}
