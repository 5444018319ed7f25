//! Unit tests across the modules: decoding and merging resources, breaker transitions with a
//! driven clock, and the runner's order of policies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::breaker::{Breaker, BreakerState, Rejection};
use crate::decode::decode;
use crate::engine::Engine;
use crate::merge::{ComponentCall, PolicySet};
use crate::policy::{BreakerPolicy, Resource, RetryKind, TripExpr};
use crate::runner::{ErrorClass, Failure, Runner};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::Instant;

fn resource(file: &str, yaml: &str) -> Resource {
    let value: yaml_serde::Value = yaml_serde::from_str(yaml).unwrap();
    decode(Path::new(file), &value).unwrap()
}

fn breaker_policy(trip: &str, max_requests: u32, interval: Duration) -> Arc<BreakerPolicy> {
    Arc::new(BreakerPolicy {
        name: "cb".into(),
        resource: "r".into(),
        max_requests,
        interval,
        timeout: Duration::from_secs(30),
        trip: TripExpr::compile(trip).unwrap(),
    })
}

#[test]
fn decode_fills_daprd_defaults() {
    let r = resource(
        "a.yaml",
        r#"
metadata: { name: r }
spec:
  policies:
    timeouts: { t: 5, u: 1m30s }
    retries:
      c: {}
      e: { policy: Exponential, maxRetries: 3, matching: { httpStatusCodes: "429, 500-599" } }
    circuitBreakers:
      b: {}
      b2: { maxRequests: 3, interval: 10s, timeout: 0, trip: "totalFailures >= 2" }
"#,
    );
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(
        r.timeouts["t"],
        Duration::from_millis(5),
        "a bare integer is milliseconds"
    );
    assert_eq!(r.timeouts["u"], Duration::from_secs(90));
    let c = &r.retries["c"];
    assert_eq!(
        (c.kind, c.duration, c.max_retries),
        (RetryKind::Constant, Duration::from_secs(5), None)
    );
    let e = &r.retries["e"];
    assert_eq!(
        (e.kind, e.max_interval, e.max_retries),
        (RetryKind::Exponential, Duration::from_secs(60), Some(3))
    );
    assert!(e.retries_status(429) && e.retries_status(503) && !e.retries_status(404));
    let b = &r.breakers["b"];
    assert_eq!(
        (b.max_requests, b.interval, b.timeout),
        (1, Duration::ZERO, Duration::from_secs(60))
    );
    assert_eq!(b.trip.source, "consecutiveFailures > 5");
    let b2 = &r.breakers["b2"];
    assert_eq!(
        (b2.max_requests, b2.interval, b2.timeout),
        (3, Duration::from_secs(10), Duration::from_secs(60))
    );
}

#[test]
fn a_bad_field_keeps_earlier_policies_but_drops_the_targets() {
    let r = resource(
        "bad.yaml",
        r#"
metadata: { name: bad }
spec:
  policies:
    timeouts: { ok: 1s }
    retries:
      good: { duration: 10ms }
      worse: { policy: linear }
  targets:
    components: { p: { inbound: { retry: good } } }
"#,
    );
    let e = r.error.as_ref().unwrap();
    assert_eq!(e.field, "spec.policies.retries.worse.policy");
    assert!(
        e.to_string().contains("bad.yaml") && e.to_string().contains("linear"),
        "{e}"
    );
    assert!(r.timeouts.contains_key("ok") && r.retries.contains_key("good"));
    assert!(r.components.is_empty());
    for (yaml, field) in [
        ("timeouts: { t: soon }", "spec.policies.timeouts.t"),
        (
            "retries: { r: { matching: { httpStatusCodes: \"600\" } } }",
            "spec.policies.retries.r.matching.httpStatusCodes",
        ),
        (
            "circuitBreakers: { b: { trip: \"consecutiveFailures >\" } }",
            "spec.policies.circuitBreakers.b.trip",
        ),
        (
            "circuitBreakers: { b: { timeout: x } }",
            "spec.policies.circuitBreakers.b.timeout",
        ),
    ] {
        let r = resource(
            "f.yaml",
            &format!("metadata: {{ name: f }}\nspec:\n  policies:\n    {yaml}\n"),
        );
        assert_eq!(r.error.map(|e| e.field).as_deref(), Some(field), "{yaml}");
    }
}

#[test]
fn later_resources_replace_policies_and_targets_whole_and_scopes_filter() {
    let first = resource(
        "a.yaml",
        r#"
metadata: { name: a }
spec:
  policies:
    retries: { r: { duration: 1s }, DefaultRetryPolicy: { duration: 2s } }
  targets:
    components: { p: { inbound: { retry: r }, outbound: { retry: r } } }
"#,
    );
    let second = resource(
        "b.yaml",
        r#"
metadata: { name: b }
spec:
  policies:
    retries: { r: { duration: 3s } }
  targets:
    components: { p: { outbound: { retry: r } } }
"#,
    );
    let other_app = resource(
        "c.yaml",
        "metadata: { name: c }\nscopes: [someone-else]\nspec:\n  policies:\n    retries: { r: { duration: 9s } }\n",
    );
    let set = PolicySet::for_app([&first, &second, &other_app], "me");
    let out = set.component("p", ComponentCall::PubsubOutbound);
    assert_eq!(out.retry.unwrap().duration, Duration::from_secs(3));
    assert!(
        set.component("p", ComponentCall::PubsubInbound).is_empty(),
        "the later target replaced the earlier one whole, and a targeted name gets no defaults"
    );
    let untargeted = set.component("q", ComponentCall::PubsubInbound);
    assert_eq!(untargeted.retry.unwrap().duration, Duration::from_secs(2));
}

#[test]
fn defaults_are_looked_up_from_the_most_specific_name() {
    let r = resource(
        "d.yaml",
        r#"
metadata: { name: d }
spec:
  policies:
    timeouts: { DefaultStatestoreComponentOutboundTimeoutPolicy: 1s, DefaultTimeoutPolicy: 9s }
    retries:
      DefaultPubsubComponentInboundRetryPolicy: { duration: 1ms }
      DefaultComponentRetryPolicy: { duration: 2ms }
      DefaultAppRetryPolicy: { duration: 3ms }
    circuitBreakers: { DefaultComponentOutboundCircuitBreakerPolicy: {} }
"#,
    );
    let set = PolicySet::for_app([&r], "me");
    let inbound = set.component("x", ComponentCall::PubsubInbound);
    assert_eq!(inbound.retry.unwrap().duration, Duration::from_millis(1));
    assert_eq!(inbound.timeout, Some(Duration::from_secs(9)));
    assert!(inbound.breaker.is_none());
    let state = set.component("x", ComponentCall::StateOutbound);
    assert_eq!(state.timeout, Some(Duration::from_secs(1)));
    assert_eq!(state.retry.unwrap().duration, Duration::from_millis(2));
    assert!(state.breaker.is_some());
    assert_eq!(
        set.app("other").retry.unwrap().duration,
        Duration::from_millis(3)
    );
}

#[test]
fn breaker_opens_on_trip_rejects_then_half_opens_and_closes() {
    let b = Breaker::new(
        breaker_policy("consecutiveFailures > 2", 2, Duration::ZERO),
        "me",
        "pubsub_p".into(),
    );
    let t0 = Instant::now();
    for _ in 0..3 {
        let g = b.before_at(t0).unwrap();
        b.after_at(g, false, t0);
    }
    assert_eq!(b.state_at(t0), BreakerState::Open);
    assert_eq!(
        b.before_at(t0 + Duration::from_secs(29)),
        Err(Rejection::Open)
    );
    let half = t0 + Duration::from_secs(30);
    assert_eq!(b.state_at(half), BreakerState::HalfOpen);
    let g1 = b.before_at(half).unwrap();
    let g2 = b.before_at(half).unwrap();
    assert_eq!(
        b.before_at(half),
        Err(Rejection::TooManyRequests),
        "maxRequests admitted"
    );
    b.after_at(g1, true, half);
    assert_eq!(b.state_at(half), BreakerState::HalfOpen);
    b.after_at(g2, true, half);
    assert_eq!(b.state_at(half), BreakerState::Closed);
    assert_eq!(b.rejected(), 2);
    assert_eq!(b.activations(BreakerState::Open), 1);
}

#[test]
fn a_half_open_failure_reopens_and_late_results_do_not_count() {
    let b = Breaker::new(
        breaker_policy("consecutiveFailures >= 1", 1, Duration::ZERO),
        "me",
        "t".into(),
    );
    let t0 = Instant::now();
    let stale = b.before_at(t0).unwrap();
    let g = b.before_at(t0).unwrap();
    b.after_at(g, false, t0);
    assert_eq!(b.state_at(t0), BreakerState::Open);
    let half = t0 + Duration::from_secs(30);
    b.after_at(stale, true, half);
    let g = b.before_at(half).unwrap();
    b.after_at(g, false, half);
    assert_eq!(
        b.state_at(half),
        BreakerState::Open,
        "a failure while half-open reopens"
    );
}

#[test]
fn interval_clears_counts_and_bad_trip_expressions_never_trip() {
    let b = Breaker::new(
        breaker_policy("consecutiveFailures > 1", 1, Duration::from_secs(10)),
        "me",
        "t".into(),
    );
    let t0 = Instant::now();
    let g = b.before_at(t0).unwrap();
    b.after_at(g, false, t0);
    let later = t0 + Duration::from_secs(11);
    let g = b.before_at(later).unwrap();
    b.after_at(g, false, later);
    assert_eq!(
        b.state_at(later),
        BreakerState::Closed,
        "the interval cleared the first failure"
    );

    for trip in ["misspelled > 1", "consecutiveFailures + 1"] {
        let b = Breaker::new(breaker_policy(trip, 1, Duration::ZERO), "me", "t".into());
        for _ in 0..20 {
            let g = b.before_at(t0).unwrap();
            b.after_at(g, false, t0);
        }
        assert_eq!(b.state_at(t0), BreakerState::Closed, "{trip}");
    }
}

fn retry_engine(yaml_policies: &str) -> Arc<Engine> {
    let r = resource(
        "e.yaml",
        &format!(
            "metadata: {{ name: e }}\nspec:\n  policies:\n{yaml_policies}\n  targets:\n    components:\n      p: {{ inbound: {{ retry: r, circuitBreaker: cb }}, outbound: {{ retry: r, circuitBreaker: cb }} }}\n      s: {{ outbound: {{ retry: r, timeout: t }} }}\n    apps:\n      callee: {{ retry: r, circuitBreaker: cb }}\n"
        ),
    );
    assert!(r.error.is_none(), "{:?}", r.error);
    Arc::new(Engine::new([&r], "me"))
}

const POLICIES: &str = "    timeouts: { t: 20ms }\n    retries: { r: { duration: 1ms, maxRetries: 3, matching: { httpStatusCodes: \"500-599\" } } }\n    circuitBreakers: { cb: { trip: \"consecutiveFailures > 5\", timeout: 1h } }";

async fn count_attempts(
    runner: &Runner,
    class: ErrorClass,
) -> (u32, Result<(), Failure<&'static str>>) {
    let n = AtomicU32::new(0);
    let result = runner
        .run(
            || {
                n.fetch_add(1, Ordering::Relaxed);
                async { Err::<(), _>("boom") }
            },
            |_| class,
            None,
        )
        .await;
    (n.load(Ordering::Relaxed), result)
}

#[tokio::test]
async fn retries_follow_max_retries_and_matching() {
    let engine = retry_engine(POLICIES);
    let runner = engine.component_runner("s", ComponentCall::StateOutbound);
    assert_eq!(
        count_attempts(&runner, ErrorClass::Retriable).await.0,
        4,
        "maxRetries 3 = 4 attempts"
    );
    assert_eq!(count_attempts(&runner, ErrorClass::Status(503)).await.0, 4);
    assert_eq!(
        count_attempts(&runner, ErrorClass::Status(400)).await.0,
        1,
        "400 is outside matching"
    );
    assert_eq!(count_attempts(&runner, ErrorClass::Permanent).await.0, 1);
    assert_eq!(
        count_attempts(&Runner::NONE, ErrorClass::Retriable).await.0,
        1,
        "no policy: one attempt"
    );
}

#[tokio::test]
async fn the_timeout_bounds_each_attempt_and_is_retried() {
    let engine = retry_engine(POLICIES);
    let runner = engine.component_runner("s", ComponentCall::StateOutbound);
    let n = AtomicU32::new(0);
    let result: Result<(), Failure<&str>> = runner
        .run(
            || {
                n.fetch_add(1, Ordering::Relaxed);
                std::future::pending()
            },
            |_| ErrorClass::Retriable,
            None,
        )
        .await;
    assert_eq!(result, Err(Failure::Timeout(Duration::from_millis(20))));
    assert_eq!(n.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn one_breaker_per_component_across_directions_and_a_rejection_ends_the_retries() {
    let engine = retry_engine(POLICIES);
    let inbound = engine.component_runner("p", ComponentCall::PubsubInbound);
    let outbound = engine.component_runner("p", ComponentCall::PubsubOutbound);
    // 4 failing attempts inbound, then 2 outbound: the sixth failure trips `> 5`.
    assert_eq!(count_attempts(&inbound, ErrorClass::Retriable).await.0, 4);
    let (attempts, result) = count_attempts(&outbound, ErrorClass::Retriable).await;
    assert_eq!(
        attempts, 2,
        "the shared breaker opened after the sixth failure"
    );
    assert!(result.unwrap_err().is_rejection());
    let (attempts, result) = count_attempts(&inbound, ErrorClass::Retriable).await;
    assert_eq!(attempts, 0, "an open breaker runs nothing");
    assert_eq!(result.unwrap_err().to_string(), "circuit breaker is open");
    assert_eq!(engine.breakers().len(), 1);
    let mut metrics = String::new();
    engine.render_prometheus(&mut metrics);
    assert!(
        metrics.contains("target=\"pubsub_p\",status=\"open\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn app_breakers_are_per_method() {
    let engine = retry_engine(POLICIES);
    let policy = engine.app_policy("callee");
    for _ in 0..2 {
        let _ = count_attempts(&policy.runner("broken"), ErrorClass::Status(500)).await;
    }
    let (_, broken) = count_attempts(&policy.runner("broken"), ErrorClass::Status(500)).await;
    assert!(broken.unwrap_err().is_rejection());
    let (attempts, fine) = count_attempts(&policy.runner("fine"), ErrorClass::Status(500)).await;
    assert_eq!(attempts, 4);
    assert!(!fine.unwrap_err().is_rejection());
}
