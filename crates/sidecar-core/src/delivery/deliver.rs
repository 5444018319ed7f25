//! Delivery of one message to the app, in the order of daprd's subscription handler (the
//! handler built by `New` and `sendToDeadLetter` in `pkg/runtime/subscription/subscription.go`,
//! and `Deliver` in `pkg/runtime/subscription/postman/http/http.go`).
//!
//! 1. Decode the stored CloudEvent (or wrap the bytes for raw-payload subscriptions), drop it if
//!    expired, pick the route with the CEL rules (no match = drop).
//! 2. POST the stored bytes to the app and interpret the answer (see [`super::outcome`]).
//! 3. Each POST is one attempt under the pub/sub's inbound resiliency policy, if any:
//!    `retry { breaker { timeout { POST } } }`. An app status is a status-code error, retried
//!    only if the policy's `matching` allows it; `RETRY` answers and transport errors are always
//!    retried; an open breaker fails the message at once, without calling the app.
//! 4. Still failing: publish the original bytes and metadata to the dead-letter topic under the
//!    pub/sub's outbound policy (then ack), or hand the error back to the component, which
//!    redelivers (`pkg/runtime/subscription/subscription.go New`). Drops (DROP, expired, no route)
//!    go to the dead-letter topic when there is one; HTTP 404 is dropped without it.
//!    During shutdown, and while the app is unhealthy (its subscriptions are being stopped),
//!    nothing is dead-lettered: the message goes back to the broker.

use super::outcome::{AppOutcome, interpret};
use crate::cloudevent;
use crate::components::{HandlerResult, Message, MessageHandler};
use crate::observe::{Delivery, Outcome};
use crate::runtime::PubSubComponent;
use crate::sidecar::SidecarState;
use crate::subscriptions::{SubscriptionDef, routes};
use bytes::Bytes;
use resiliency::{ErrorClass, Runner};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Why a delivery to an unhealthy app is refused (daprd's wording).
pub(super) const APP_UNHEALTHY: &str = "app is not in a healthy state";

/// Delivers the messages of one subscription of one sidecar, one at a time or (see
/// [`super::bulk`]) in batches.
#[derive(Debug)]
pub(super) struct Deliverer {
    pub(super) state: Arc<SidecarState>,
    pub(super) pubsub: PubSubComponent,
    pub(super) def: SubscriptionDef,
    /// The inbound policy; none by default, like daprd (one attempt, no timeout).
    pub(super) runner: Runner,
    pub(super) semaphore: Arc<Semaphore>,
    pub(super) raw: bool,
}

impl Deliverer {
    pub(super) fn new(
        state: Arc<SidecarState>,
        pubsub: PubSubComponent,
        def: SubscriptionDef,
        runner: Runner,
        semaphore: Arc<Semaphore>,
    ) -> Self {
        let raw = def.raw_payload();
        Self {
            state,
            pubsub,
            def,
            runner,
            semaphore,
            raw,
        }
    }
}

/// The broker callback of a subscription delivering one message per POST.
pub(super) fn handler(d: Arc<Deliverer>) -> MessageHandler {
    Arc::new(move |msg: Message| {
        let d = d.clone();
        Box::pin(async move { d.handle(msg).await })
    })
}

/// A message ready to POST.
pub(super) struct Prepared {
    pub(super) path: String,
    /// The decoded CloudEvent (the wrapped payload for raw subscriptions).
    pub(super) event: serde_json::Value,
    body: Bytes,
    /// The event's `traceparent`, parent of the delivery span.
    pub(super) traceparent: Option<String>,
    /// The event's `tracestate`, carried over to the delivery span.
    tracestate: Option<String>,
}

/// A delivery attempt that failed: the app's HTTP status if it answered, and why.
#[derive(Debug)]
pub(super) struct FailedAttempt {
    pub(super) status: Option<u16>,
    pub(super) reason: String,
}

impl std::fmt::Display for FailedAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl FailedAttempt {
    /// Only a non-2xx answer is a status-code error subject to `matching`; a `RETRY` body on a
    /// 2xx answer, like a transport error, carries no code and is always retried
    /// (`pkg/runtime/subscription/postman/http/http.go Deliver` returns a `CodeError` only for
    /// error statuses).
    pub(super) fn class(&self) -> ErrorClass {
        match self.status {
            Some(s) if !(200..300).contains(&s) => ErrorClass::Status(s),
            _ => ErrorClass::Retriable,
        }
    }
}

/// What to do with a message that will not be delivered.
pub(super) enum Disposal {
    /// Dead-letter if configured, then ack.
    Drop(String),
    /// Retry flow exhausted or not retriable: dead-letter if configured, else back to the component.
    Fail(String),
}

impl Deliverer {
    fn app_id(&self) -> &str {
        self.state.app_id()
    }

    async fn handle(&self, msg: Message) -> HandlerResult {
        // Handed over in the moment between the app turning unhealthy and its subscriptions
        // stopping: back to the broker unacknowledged, neither delivered nor dead-lettered.
        if !self.state.app_is_healthy() {
            return Err(APP_UNHEALTHY.into());
        }
        let result = match self.prepare(&msg) {
            Ok(prepared) => self.deliver_with_retries(&prepared, &msg).await,
            Err(d) => {
                self.report_unsent(&msg, &d);
                Err(d)
            }
        };
        self.dispose(&msg, result).await
    }

    /// Settles one message after its delivery: acks it, dead-letters it, or hands it back to
    /// the component for redelivery.
    pub(super) async fn dispose(
        &self,
        msg: &Message,
        result: Result<(), Disposal>,
    ) -> HandlerResult {
        match result {
            Ok(()) => Ok(()),
            Err(Disposal::Drop(reason)) => {
                tracing::warn!(app_id = %self.app_id(), topic = %msg.topic, %reason, "message dropped");
                if self.def.dead_letter_topic.is_none() {
                    // A drop is acked: without a dead-letter topic the message is gone.
                    return Ok(());
                }
                self.dead_letter(msg, &reason).await
            }
            Err(Disposal::Fail(reason)) => {
                if self.state.shutdown.is_cancelled() {
                    return Err(format!("sidecar shutting down: {reason}"));
                }
                if !self.state.app_is_healthy() {
                    // The subscription is being stopped; the broker keeps the message for the
                    // app's return.
                    return Err(format!("{APP_UNHEALTHY}: {reason}"));
                }
                self.dead_letter(msg, &reason).await
            }
        }
    }

    /// Decodes, checks expiry and routes; returns the app path and the body to POST.
    pub(super) fn prepare(&self, msg: &Message) -> Result<Prepared, Disposal> {
        let (event, body) = if self.raw {
            let ce = cloudevent::wrap_raw_for_delivery(
                &self.def.pubsubname,
                &msg.topic,
                &msg.data,
                &msg.metadata,
            );
            let bytes = Bytes::from(cloudevent::to_go_json(ce.clone()));
            (serde_json::Value::Object(ce), bytes)
        } else {
            let event: serde_json::Value = serde_json::from_slice(&msg.data)
                .map_err(|e| Disposal::Fail(format!("message is not valid JSON: {e}")))?;
            (event, msg.data.clone())
        };
        if let serde_json::Value::Object(ce) = &event
            && cloudevent::is_expired(ce, chrono::Utc::now())
        {
            return Err(Disposal::Drop("message expired".into()));
        }
        let tracestate = event
            .get("tracestate")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(String::from);
        let traceparent = event
            .get("traceparent")
            .and_then(|t| t.as_str())
            .map(String::from);
        let selected = routes::select(&self.def.rules, &event).map(|p| p.map(str::to_string));
        match selected {
            Ok(Some(path)) => Ok(Prepared {
                path,
                event,
                body,
                traceparent,
                tracestate,
            }),
            Ok(None) => Err(Disposal::Drop("no route rule matched".into())),
            Err(e) => Err(Disposal::Fail(e.to_string())),
        }
    }

    async fn deliver_with_retries(&self, p: &Prepared, msg: &Message) -> Result<(), Disposal> {
        let path = &p.path;
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let attempt = || async {
            let n = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            // Without an observer an attempt pays this one atomic load, nothing else.
            let observer = self.state.runtime.tap().observer();
            let started = observer.as_ref().map(|_| std::time::Instant::now());
            let outcome = self.attempt(p, msg).await;
            if let (Some(observer), Some(started)) = (observer, started) {
                let event_id = p.event.get("id").and_then(|i| i.as_str());
                let (kind, status, error) = outcome.observed();
                observer.delivered(&Delivery {
                    attempt: n,
                    outcome: kind,
                    status,
                    latency: started.elapsed(),
                    error,
                    ..self.observed(&msg.topic, event_id, path)
                });
            }
            match outcome {
                AppOutcome::Retry { status, reason } => {
                    tracing::debug!(app_id = %self.app_id(), topic = %msg.topic, %path, ?status, %reason, "delivery failed");
                    Err(FailedAttempt { status, reason })
                }
                done => Ok(done),
            }
        };
        let outcome = self
            .runner
            .run(attempt, FailedAttempt::class, Some(&self.state.shutdown))
            .await;
        match outcome {
            Ok(AppOutcome::NotFound) => {
                tracing::error!(app_id = %self.app_id(), topic = %msg.topic, %path, "app answered 404: message dropped without dead-lettering");
                Ok(())
            }
            Ok(AppOutcome::Drop) => Err(Disposal::Drop("app answered DROP".into())),
            Ok(_) => {
                tracing::debug!(app_id = %self.app_id(), topic = %msg.topic, %path, "delivered");
                Ok(())
            }
            Err(failure) => Err(Disposal::Fail(failure.to_string())),
        }
    }

    /// One HTTP POST to the app.
    async fn attempt(&self, p: &Prepared, msg: &Message) -> AppOutcome {
        // The app channel refuses calls to an unhealthy app (daprd's `app is not in a healthy
        // state`, `pkg/channel/http/http_channel.go`), so in-flight retries end at once.
        if !self.state.app_is_healthy() {
            return AppOutcome::Retry {
                status: None,
                reason: APP_UNHEALTHY.into(),
            };
        }
        let Some(base) = self.state.app_base_url() else {
            return AppOutcome::Retry {
                status: None,
                reason: "no app channel".into(),
            };
        };
        let Ok(_permit) = self.semaphore.acquire().await else {
            return AppOutcome::Retry {
                status: None,
                reason: "delivery closed".into(),
            };
        };
        let mut req = self
            .state
            .client
            .post(format!("{base}{}", p.path))
            .header("content-type", cloudevent::CLOUDEVENT_CONTENT_TYPE)
            .header("pubsubname", &self.def.pubsubname);
        for (k, v) in &msg.metadata {
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                reqwest::header::HeaderValue::from_str(v),
            ) {
                req = req.header(name, value);
            }
        }
        // With tracing on, each attempt is a span of its own, child of the event's trace
        // (daprd's postman starts one per `Deliver` call).
        let span = self.state.tracer.as_ref().map(|tracer| {
            tracer.start(p.traceparent.as_deref(), || {
                (
                    format!("pubsub/{}", msg.topic),
                    crate::otel::delivery_attributes(&msg.topic),
                )
            })
        });
        let trace = match &span {
            Some(span) => cloudevent::TraceContext {
                traceparent: span.traceparent(),
                tracestate: p.tracestate.clone().unwrap_or_default(),
            },
            None => cloudevent::TraceContext::child_of(
                p.traceparent.as_deref(),
                p.tracestate.as_deref(),
            ),
        };
        req = req.header("traceparent", trace.traceparent);
        if !trace.tracestate.is_empty() {
            req = req.header("tracestate", trace.tracestate);
        }
        if let Some(token) = &self.state.opts.app_api_token {
            req = req.header(crate::tokens::TOKEN_HEADER, token);
        }
        let response = tokio::select! {
            r = req.body(p.body.clone()).send() => r.map_err(|e| e.to_string()),
            _ = self.state.shutdown.cancelled() => {
                return AppOutcome::Retry { status: None, reason: "sidecar shutting down".into() };
            }
        };
        match response {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await.unwrap_or_default();
                if let Some(span) = span {
                    span.end_with_http_status(status);
                }
                interpret(status, &bytes)
            }
            Err(e) => {
                let reason = format!("error sending message to the app: {e}");
                if let Some(span) = span {
                    span.end_with_error(reason.clone());
                }
                AppOutcome::Retry {
                    status: None,
                    reason,
                }
            }
        }
    }

    /// Publishes the original message to the dead-letter topic (ack), or returns the error to the
    /// component when there is none or the dead-letter publish fails.
    async fn dead_letter(&self, msg: &Message, reason: &str) -> HandlerResult {
        let Some(dlq) = &self.def.dead_letter_topic else {
            return Err(reason.to_string());
        };
        if !self.pubsub.scopes.may_publish(self.app_id(), dlq) {
            tracing::error!(app_id = %self.app_id(), topic = %msg.topic, dead_letter_topic = %dlq, "dead-letter topic not allowed for this app; returning the message to the component");
            return Err(format!("dead-letter topic {dlq} is not allowed: {reason}"));
        }
        let copy = Message {
            topic: dlq.clone(),
            data: msg.data.clone(),
            metadata: msg.metadata.clone(),
        };
        // The dead-letter publish goes through the pub/sub's outbound policy, like any publish
        // (`sendToDeadLetter` publishes through daprd's publisher).
        let publish = || self.pubsub.broker.publish(copy.clone());
        let published = self
            .state
            .policies
            .publish(&self.def.pubsubname)
            .run(
                publish,
                |_| ErrorClass::Retriable,
                Some(&self.state.shutdown),
            )
            .await;
        match published {
            Ok(()) => {
                if let Some(observer) = self.state.runtime.tap().observer() {
                    let id = crate::observe::event_id(&msg.data);
                    observer.delivered(&Delivery {
                        outcome: Outcome::Error,
                        error: Some(reason),
                        dead_lettered: true,
                        ..self.observed(&msg.topic, id.as_deref(), "")
                    });
                }
                tracing::warn!(app_id = %self.app_id(), topic = %msg.topic, dead_letter_topic = %dlq, %reason, "message sent to the dead-letter topic");
                Ok(())
            }
            Err(e) => Err(format!("dead-letter publish failed: {e}; {reason}")),
        }
    }
}

impl AppOutcome {
    /// How the observer sees one answer: outcome, HTTP status, error text.
    fn observed(&self) -> (Outcome, Option<u16>, Option<&str>) {
        match self {
            AppOutcome::Success => (Outcome::Success, Some(200), None),
            AppOutcome::Drop => (Outcome::Drop, Some(200), None),
            AppOutcome::NotFound => (Outcome::Drop, Some(404), None),
            AppOutcome::Retry {
                status: Some(status),
                reason,
            } => (Outcome::Retry, Some(*status), Some(reason)),
            AppOutcome::Retry {
                status: None,
                reason,
            } => (Outcome::Error, None, Some(reason)),
        }
    }
}

impl Deliverer {
    /// A record of this subscription for the run's observer; call sites fill in the attempt.
    pub(super) fn observed<'a>(
        &'a self,
        topic: &'a str,
        event_id: Option<&'a str>,
        route: &'a str,
    ) -> Delivery<'a> {
        Delivery {
            pubsub: &self.def.pubsubname,
            topic,
            event_id,
            subscriber: self.app_id(),
            sidecar_port: self.state.opts.dapr_http_port,
            route,
            attempt: 0,
            outcome: Outcome::Success,
            status: None,
            latency: std::time::Duration::ZERO,
            error: None,
            dead_lettered: false,
        }
    }

    /// Tells the observer about a message disposed of before any POST (expired, no route,
    /// undecodable).
    pub(super) fn report_unsent(&self, msg: &Message, disposal: &Disposal) {
        let Some(observer) = self.state.runtime.tap().observer() else {
            return;
        };
        let id = crate::observe::event_id(&msg.data);
        let (outcome, reason) = match disposal {
            Disposal::Drop(r) => (Outcome::Drop, r),
            Disposal::Fail(r) => (Outcome::Error, r),
        };
        observer.delivered(&Delivery {
            outcome,
            error: Some(reason),
            ..self.observed(&msg.topic, id.as_deref(), "")
        });
    }
}
