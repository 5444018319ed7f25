//! Delivery of one message to the app, in the order of daprd's subscription handler (the
//! handler built by `New` and `sendToDeadLetter` in `pkg/runtime/subscription/subscription.go`,
//! and `Deliver` in `pkg/runtime/subscription/postman/http/http.go`).
//!
//! 1. Decode the stored CloudEvent (or wrap the bytes for raw-payload subscriptions), drop it if
//!    expired, pick the route with the CEL rules (no match = drop).
//! 2. POST the stored bytes to the app and interpret the answer (see [`super::outcome`]).
//! 3. Retriable failures are retried under the inbound resiliency policy, if any.
//! 4. Still failing: publish the original bytes and metadata to the dead-letter topic (then ack),
//!    or hand the error back to the component, which redelivers. Drops (DROP, expired, no route)
//!    go to the dead-letter topic when there is one; HTTP 404 is dropped without it.
//!    During shutdown, and while the app is unhealthy (its subscriptions are being stopped),
//!    nothing is dead-lettered: the message goes back to the broker.

use super::outcome::{AppOutcome, interpret};
use super::retry::Backoff;
use crate::cloudevent;
use crate::components::{HandlerResult, Message, MessageHandler};
use crate::resources::RetryPolicySpec;
use crate::runtime::PubSubComponent;
use crate::sidecar::SidecarState;
use crate::subscriptions::{SubscriptionDef, routes};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Why a delivery to an unhealthy app is refused (daprd's wording).
const APP_UNHEALTHY: &str = "app is not in a healthy state";

#[derive(Debug)]
struct Deliverer {
    state: Arc<SidecarState>,
    pubsub: PubSubComponent,
    def: SubscriptionDef,
    policy: Option<RetryPolicySpec>,
    /// Timeout of each attempt (inbound resiliency), none by default like daprd.
    timeout: Option<std::time::Duration>,
    semaphore: Arc<Semaphore>,
    raw: bool,
}

/// The broker callback for one subscription of one sidecar.
pub(super) fn handler(
    state: Arc<SidecarState>,
    pubsub: PubSubComponent,
    def: SubscriptionDef,
    policy: Option<RetryPolicySpec>,
    semaphore: Arc<Semaphore>,
) -> MessageHandler {
    let raw = def.raw_payload();
    let timeout = super::retry::inbound_timeout(
        &state.runtime.resources().resiliencies,
        state.app_id(),
        &def.pubsubname,
    );
    let d = Arc::new(Deliverer {
        state,
        pubsub,
        def,
        policy,
        timeout,
        semaphore,
        raw,
    });
    Arc::new(move |msg: Message| {
        let d = d.clone();
        Box::pin(async move { d.handle(msg).await })
    })
}

/// A message ready to POST.
struct Prepared {
    path: String,
    body: Bytes,
    /// The event's `traceparent`, parent of the delivery span.
    traceparent: Option<String>,
    /// The event's `tracestate`, carried over to the delivery span.
    tracestate: Option<String>,
}

/// What to do with a message that will not be delivered.
enum Disposal {
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
            Err(d) => Err(d),
        };
        match result {
            Ok(()) => Ok(()),
            Err(Disposal::Drop(reason)) => {
                tracing::warn!(app_id = %self.app_id(), topic = %msg.topic, %reason, "message dropped");
                if self.def.dead_letter_topic.is_none() {
                    // A drop is acked: without a dead-letter topic the message is gone.
                    return Ok(());
                }
                self.dead_letter(&msg, &reason).await
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
                self.dead_letter(&msg, &reason).await
            }
        }
    }

    /// Decodes, checks expiry and routes; returns the app path and the body to POST.
    fn prepare(&self, msg: &Message) -> Result<Prepared, Disposal> {
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
        match routes::select(&self.def.rules, &event) {
            Ok(Some(path)) => Ok(Prepared {
                path: path.to_string(),
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
        let mut backoff = self.policy.clone().map(Backoff::new);
        loop {
            match self.attempt(p, msg).await {
                AppOutcome::Success => {
                    tracing::debug!(app_id = %self.app_id(), topic = %msg.topic, %path, "delivered");
                    return Ok(());
                }
                AppOutcome::NotFound => {
                    tracing::error!(app_id = %self.app_id(), topic = %msg.topic, %path, "app answered 404: message dropped without dead-lettering");
                    return Ok(());
                }
                AppOutcome::Drop => return Err(Disposal::Drop("app answered DROP".into())),
                AppOutcome::Retry { status, reason } => {
                    tracing::debug!(app_id = %self.app_id(), topic = %msg.topic, %path, ?status, %reason, "delivery failed");
                    let delay = backoff
                        .as_mut()
                        .filter(|b| b.retriable(status))
                        .and_then(Backoff::next_delay);
                    let Some(delay) = delay else {
                        return Err(Disposal::Fail(reason));
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.state.shutdown.cancelled() => return Err(Disposal::Fail(reason)),
                    }
                }
            }
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
        let trace =
            cloudevent::TraceContext::child_of(p.traceparent.as_deref(), p.tracestate.as_deref());
        req = req.header("traceparent", trace.traceparent);
        if !trace.tracestate.is_empty() {
            req = req.header("tracestate", trace.tracestate);
        }
        if let Some(token) = &self.state.opts.app_api_token {
            req = req.header(crate::tokens::TOKEN_HEADER, token);
        }
        let response = tokio::select! {
            r = async {
                let send = req.body(p.body.clone()).send();
                match self.timeout {
                    Some(t) => match tokio::time::timeout(t, send).await {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(_) => Err(format!("timed out after {t:?}")),
                    },
                    None => send.await.map_err(|e| e.to_string()),
                }
            } => r,
            _ = self.state.shutdown.cancelled() => {
                return AppOutcome::Retry { status: None, reason: "sidecar shutting down".into() };
            }
        };
        match response {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await.unwrap_or_default();
                interpret(status, &bytes)
            }
            Err(e) => AppOutcome::Retry {
                status: None,
                reason: format!("error sending message to the app: {e}"),
            },
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
        match self.pubsub.broker.publish(copy).await {
            Ok(()) => {
                tracing::warn!(app_id = %self.app_id(), topic = %msg.topic, dead_letter_topic = %dlq, %reason, "message sent to the dead-letter topic");
                Ok(())
            }
            Err(e) => Err(format!("dead-letter publish failed: {e}; {reason}")),
        }
    }
}
