//! The shipped Resiliency resources: every copy (production's `deploy/dapr`, each local set)
//! carries the same `spec`, and none puts a circuit breaker where daprd's breaker semantics harm
//! the services, nor retries on state.
//!
//! daprd keeps one breaker per component name, shared by deliveries, publishes, dead-letter
//! publishes and state calls, and an open breaker is a permanent error
//! (`pkg/resiliency/resiliency.go circuitBreakerInstances`, `pkg/resiliency/policy.go`). So a
//! breaker on a pub/sub cuts the delivery retry budget short and dead-letters healthy events of
//! every topic, and one on a state store opens on the ETag conflicts daprd retries for deletes
//! and transactions, which the services resolve themselves.

use crate::manifests::Manifests;
use crate::violation::{Rule, Violation};
use crate::yaml::{at, kind};
use yaml_serde::Value;

/// The copy the others must match.
pub const REFERENCE: &str = "deploy/dapr/resiliency.yaml";

/// Every copy's `spec` equals the production file's.
pub fn copies_agree(manifests: &Manifests) -> Vec<Violation> {
    let docs: Vec<(&str, &Value)> = manifests
        .all()
        .filter(|(_, d)| kind(d) == Some("Resiliency"))
        .collect();
    let Some(reference) = docs
        .iter()
        .find(|(f, _)| *f == REFERENCE)
        .and_then(|(_, d)| d.get("spec"))
    else {
        return vec![Violation::new(
            REFERENCE,
            Rule::ResiliencyCopies,
            "the production Resiliency resource is missing",
        )];
    };
    docs.iter()
        .filter(|(f, d)| *f != REFERENCE && d.get("spec") != Some(reference))
        .map(|(f, _)| {
            Violation::new(
                *f,
                Rule::ResiliencyCopies,
                format!("`spec` differs from {REFERENCE}; keep every copy's policies and targets identical"),
            )
        })
        .collect()
}

/// No component target names a circuit breaker, and state stores get no retries.
pub fn safe_policies(manifests: &Manifests) -> Vec<Violation> {
    let mut found = Vec::new();
    for (file, doc) in manifests
        .all()
        .filter(|(_, d)| kind(d) == Some("Resiliency"))
    {
        let Some(Value::Mapping(components)) = at(doc, &["spec", "targets", "components"]) else {
            continue;
        };
        for (name, target) in components {
            let name = name.as_str().unwrap_or("?");
            for direction in ["inbound", "outbound"] {
                if at(target, &[direction, "circuitBreaker"]).is_some() {
                    found.push(Violation::new(
                        file,
                        Rule::ResiliencyBreaker,
                        format!("components.{name}.{direction} names a circuit breaker: daprd shares it across the component's deliveries, publishes, dead-letter publishes and state calls, and an open one fails them all"),
                    ));
                }
            }
            if name.contains("state") && at(target, &["outbound", "retry"]).is_some() {
                found.push(Violation::new(
                    file,
                    Rule::ResiliencyBreaker,
                    format!("components.{name}.outbound names a retry: daprd retries ETag conflicts of deletes and transactions, which the services resolve themselves"),
                ));
            }
        }
    }
    found
}
