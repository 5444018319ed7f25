//! The app side of pub/sub: one table of subscriptions that produces both the
//! `GET /dapr/subscribe` answer and the POST route of every entry, so the two cannot drift.
//!
//! Every delivery is answered 200 with `{"status": "SUCCESS" | "RETRY" | "DROP"}`. An event that
//! cannot be decoded is a poison message: it is answered DROP (so daprd dead-letters it) with a
//! warning, never 404 (which daprd would drop silently, without dead-lettering).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bytes::Bytes;
use events::EventPayload;
use secrecy::{ExposeSecret as _, SecretString};

use crate::batch::{self, BatchHandler, BulkSubscribe, RawEntry};
use serde::Serialize;
use tracing::Instrument as _;

use crate::token::{TOKEN_HEADER, check_token};
use crate::{Event, Outcome, RawEvent, spans};

/// Largest delivery body accepted (daprd's default `--max-body-size` plus CloudEvent overhead).
const MAX_DELIVERY_BYTES: usize = 5 * 1024 * 1024;

/// A handled delivery: the outcome and the event id, for the log line.
type BoxFuture = Pin<Box<dyn Future<Output = (Outcome, String)> + Send>>;
pub(crate) type Handler<S> = Arc<dyn Fn(S, Bytes, HeaderMap) -> BoxFuture + Send + Sync>;

struct Entry<S> {
    topic: String,
    route: String,
    /// `Some(x)` overrides the table's dead-letter topic for this entry (`Some(None)`: none).
    dead_letter_topic: Option<Option<String>>,
    metadata: BTreeMap<String, String>,
    /// Single deliveries (also the second-chance route's way in for a batch entry).
    handler: Handler<S>,
    /// Set for a bulk subscription: its batching and batch handler.
    batch: Option<(BulkSubscribe, BatchHandler<S>)>,
}

/// A table of programmatic subscriptions on one pub/sub component, turned into an axum router by
/// [`Subscriptions::router`]. `S` is the state handed to every handler.
pub struct Subscriptions<S> {
    pubsub: String,
    dead_letter_topic: Option<String>,
    app_api_token: Option<SecretString>,
    entries: Vec<Entry<S>>,
    /// Also consume the table's own dead-letter topic (see [`Subscriptions::second_chance`]).
    second_chance: bool,
}

impl<S> fmt::Debug for Subscriptions<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriptions")
            .field("pubsub", &self.pubsub)
            .field("dead_letter_topic", &self.dead_letter_topic)
            .field(
                "app_api_token",
                &self.app_api_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("second_chance", &self.second_chance)
            .field(
                "topics",
                &self
                    .entries
                    .iter()
                    .map(|e| e.topic.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One element of the `GET /dapr/subscribe` answer (field names as daprd reads them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionSpec {
    pub pubsubname: String,
    pub topic: String,
    pub route: String,
    #[serde(rename = "deadLetterTopic", skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    /// Values are strings: daprd rejects the whole answer otherwise.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(rename = "bulkSubscribe", skip_serializing_if = "Option::is_none")]
    pub bulk_subscribe: Option<BulkSubscribe>,
}

/// The route of a topic's deliveries: `/events/<topic>`.
pub fn route_for(topic: &str) -> String {
    format!("/events/{topic}")
}

impl<S: Clone + Send + Sync + 'static> Subscriptions<S> {
    /// An empty table for the pub/sub component `pubsub_name`.
    pub fn new(pubsub_name: impl Into<String>) -> Self {
        Self {
            pubsub: pubsub_name.into(),
            dead_letter_topic: None,
            app_api_token: None,
            entries: Vec::new(),
            second_chance: false,
        }
    }

    /// The dead-letter topic of every entry (where daprd sends events answered DROP).
    pub fn dead_letter_topic(mut self, topic: impl Into<String>) -> Self {
        self.dead_letter_topic = Some(topic.into());
        self
    }

    /// Gives every dead letter of this table a second chance: the app also subscribes to its own
    /// dead-letter topic (at `/events/<dead-letter topic>`, with no dead-letter topic of its own)
    /// and each message there goes to the handler of the topic it was published on (the
    /// CloudEvent's `topic`, which dead-lettering keeps). Without a resiliency policy daprd
    /// dead-letters a message at its first failed delivery (`pkg/runtime/subscription/
    /// subscription.go`), e.g. while the app restarts; the second delivery processes it then.
    /// Handlers must be idempotent by event id. A failure there returns the message to the
    /// broker, which redelivers it by its own rules; a DROP there drops it for good (it was
    /// already dead-lettered once, for whoever records dead letters). A topic with an entry of
    /// its own (added with [`Subscriptions::on_raw`]) keeps that entry instead.
    pub fn second_chance(mut self) -> Self {
        self.second_chance = true;
        self
    }

    /// The dead-letter topic the second-chance route consumes, when there is one to add.
    fn second_chance_topic(&self) -> Option<&str> {
        let dlq = self.dead_letter_topic.as_deref()?;
        (self.second_chance && !self.entries.iter().any(|e| e.topic == dlq)).then_some(dlq)
    }

    /// Overrides the dead-letter topic of the entry already added for `topic`: `None` gives it no
    /// dead-letter topic. A subscription to a dead-letter topic needs this, or a message it DROPs
    /// would be dead-lettered into a topic it consumes itself and loop.
    pub fn dead_letter_topic_for(
        mut self,
        topic: impl fmt::Display,
        dead_letter_topic: Option<String>,
    ) -> Self {
        let topic = topic.to_string();
        for entry in self.entries.iter_mut().filter(|e| e.topic == topic) {
            entry.dead_letter_topic = Some(dead_letter_topic.clone());
        }
        self
    }

    /// Adds a subscription metadata entry (e.g. `rawPayload`) to the entry already added for
    /// `topic`; daprd passes it to the component's subscribe call.
    pub fn metadata_for(
        mut self,
        topic: impl fmt::Display,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        let (topic, key, value) = (topic.to_string(), key.into(), value.into());
        for entry in self.entries.iter_mut().filter(|e| e.topic == topic) {
            entry.metadata.insert(key.clone(), value.clone());
        }
        self
    }

    /// Requires `dapr-api-token: <token>` on `/dapr/subscribe` and deliveries when `Some`
    /// (daprd sends its `APP_API_TOKEN` there); requests without it get 401.
    pub fn app_api_token(mut self, token: Option<SecretString>) -> Self {
        self.app_api_token = token.filter(|t| !t.expose_secret().is_empty());
        self
    }

    /// Subscribes `handler` to `T::TOPIC` at `/events/<topic>`, decoding each delivery into an
    /// [`Event<T>`]. A later entry for the same topic replaces an earlier one (daprd keeps only
    /// one subscription per topic anyway).
    pub fn on<T, H, Fut>(self, handler: H) -> Self
    where
        T: EventPayload + Send + 'static,
        H: Fn(S, Event<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let topic = T::TOPIC.as_str();
        let handler = Arc::new(handler);
        let wrapped: Handler<S> = Arc::new(move |state: S, body: Bytes, headers: HeaderMap| {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                match events::decode::<T>(&body) {
                    Ok(delivery) => {
                        let event = Event {
                            envelope: delivery.envelope,
                            cloud_event: delivery.cloud_event,
                            headers,
                        };
                        let id = event.dedupe_id();
                        (handler(state, event).await, id)
                    }
                    Err(error) => (undecodable(topic, &error), String::new()),
                }
            })
        });
        self.entry(topic.to_owned(), wrapped)
    }

    /// Subscribes `handler` to any `topic` (e.g. a dead-letter topic) at `/events/<topic>`,
    /// without a type check: for consumers of every event, like an audit trail.
    pub fn on_raw<H, Fut>(self, topic: impl fmt::Display, handler: H) -> Self
    where
        H: Fn(S, RawEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let topic = topic.to_string();
        let log_topic = topic.clone();
        let handler = Arc::new(handler);
        let wrapped: Handler<S> = Arc::new(move |state: S, body: Bytes, headers: HeaderMap| {
            let handler = Arc::clone(&handler);
            let topic = log_topic.clone();
            Box::pin(async move {
                match events::decode_any(&body) {
                    Ok((cloud_event, data)) => {
                        let id = cloud_event.id.clone();
                        let event = RawEvent {
                            cloud_event,
                            data,
                            headers,
                            body,
                        };
                        (handler(state, event).await, id)
                    }
                    Err(error) => (undecodable(&topic, &error), String::new()),
                }
            })
        });
        self.entry(topic, wrapped)
    }

    /// Subscribes `handler` to `T::TOPIC` in bulk: the sidecar delivers batches of up to
    /// `bulk.max_messages_count` events and the handler answers one [`Outcome`] per event, in
    /// order (a missing one is a RETRY). Events that do not decode are answered DROP without
    /// reaching the handler.
    pub fn on_batch<T, H, Fut>(self, bulk: BulkSubscribe, handler: H) -> Self
    where
        T: EventPayload + Send + 'static,
        H: Fn(S, Vec<Event<T>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Outcome>> + Send + 'static,
    {
        let topic = T::TOPIC.as_str();
        let decode = move |entry: RawEntry| match events::decode::<T>(&entry.body) {
            Ok(delivery) => Ok(Event {
                envelope: delivery.envelope,
                cloud_event: delivery.cloud_event,
                headers: entry.headers,
            }),
            Err(error) => Err(undecodable(topic, &error)),
        };
        self.batch_entry(topic.to_owned(), bulk, batch::decoding(decode, handler))
    }

    /// [`Subscriptions::on_batch`] for any `topic`, without a type check (see
    /// [`Subscriptions::on_raw`]).
    pub fn on_raw_batch<H, Fut>(
        self,
        topic: impl fmt::Display,
        bulk: BulkSubscribe,
        handler: H,
    ) -> Self
    where
        H: Fn(S, Vec<RawEvent>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Outcome>> + Send + 'static,
    {
        let topic = topic.to_string();
        let log_topic = topic.clone();
        let decode = move |entry: RawEntry| match events::decode_any(&entry.body) {
            Ok((cloud_event, data)) => Ok(RawEvent {
                cloud_event,
                data,
                headers: entry.headers,
                body: entry.body,
            }),
            Err(error) => Err(undecodable(&log_topic, &error)),
        };
        self.batch_entry(topic, bulk, batch::decoding(decode, handler))
    }

    fn batch_entry(self, topic: String, bulk: BulkSubscribe, handler: BatchHandler<S>) -> Self {
        let for_one = Arc::clone(&handler);
        let single: Handler<S> = Arc::new(move |state: S, body: Bytes, headers: HeaderMap| {
            let for_one = Arc::clone(&for_one);
            Box::pin(async move {
                let id = events::decode_any(&body)
                    .map(|(ce, _)| ce.id)
                    .unwrap_or_default();
                let outcome = for_one(state, vec![RawEntry { body, headers }])
                    .await
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| Outcome::Retry("handler gave no outcome".into()));
                (outcome, id)
            })
        });
        let mut this = self.entry(topic, single);
        if let Some(last) = this.entries.last_mut() {
            last.batch = Some((bulk, handler));
        }
        this
    }

    fn entry(mut self, topic: String, handler: Handler<S>) -> Self {
        self.entries.retain(|e| e.topic != topic);
        self.entries.push(Entry {
            route: route_for(&topic),
            topic,
            dead_letter_topic: None,
            metadata: BTreeMap::new(),
            handler,
            batch: None,
        });
        self
    }

    /// The `GET /dapr/subscribe` answer.
    pub fn specs(&self) -> Vec<SubscriptionSpec> {
        self.entries
            .iter()
            .map(|e| SubscriptionSpec {
                pubsubname: self.pubsub.clone(),
                topic: e.topic.clone(),
                route: e.route.clone(),
                dead_letter_topic: e
                    .dead_letter_topic
                    .clone()
                    .unwrap_or_else(|| self.dead_letter_topic.clone())
                    // Dead-lettering a topic into itself would loop forever.
                    .filter(|dlq| *dlq != e.topic),
                metadata: e.metadata.clone(),
                bulk_subscribe: e.batch.as_ref().map(|(bulk, _)| *bulk),
            })
            .chain(self.second_chance_topic().map(|dlq| SubscriptionSpec {
                pubsubname: self.pubsub.clone(),
                topic: dlq.to_owned(),
                route: route_for(dlq),
                // A failure here goes back to the broker: dead-lettering again would loop.
                dead_letter_topic: None,
                metadata: BTreeMap::new(),
                bulk_subscribe: None,
            }))
            .collect()
    }

    /// The router: `GET /dapr/subscribe` and one `POST` route per entry. Merge it into the
    /// service's router once that has its state (`app.with_state(s).merge(subs.router(state))`).
    pub fn router(self, state: S) -> Router {
        let token = self.app_api_token.clone().map(Arc::new);
        let specs = Arc::new(self.specs());
        let mut router = Router::new().route(
            "/dapr/subscribe",
            get({
                let token = token.clone();
                move |headers: HeaderMap| async move {
                    if let Err(denied) = check_token(token.as_deref(), &headers) {
                        return denied;
                    }
                    axum::Json(specs.as_ref().clone()).into_response()
                }
            }),
        );
        let second_chance = self.second_chance_topic().map(|dlq| {
            let handlers: BTreeMap<String, Handler<S>> = self
                .entries
                .iter()
                .map(|e| (e.topic.clone(), Arc::clone(&e.handler)))
                .collect();
            (
                dlq.to_owned(),
                second_chance_handler(dlq.to_owned(), handlers),
            )
        });
        let entries = self
            .entries
            .into_iter()
            .map(|e| (e.topic, e.route, e.handler, e.batch.map(|(_, b)| b)));
        let extra =
            second_chance.map(|(dlq, handler)| (dlq.clone(), route_for(&dlq), handler, None));
        for (topic, route, handler, batch) in entries.chain(extra) {
            let state = state.clone();
            let token = token.clone();
            let topic: Arc<str> = Arc::from(topic.as_str());
            router = router.route(
                &route,
                post(move |mut headers: HeaderMap, body: Bytes| async move {
                    if let Err(denied) = check_token(token.as_deref(), &headers) {
                        tracing::warn!(
                            topic = %topic,
                            "delivery rejected: missing or wrong dapr-api-token"
                        );
                        return denied;
                    }
                    headers.remove(TOKEN_HEADER);
                    let span = delivery_span(&topic, &mut headers);
                    if let Some(batch) = &batch {
                        if let Some(span) = span {
                            return batch::answer(batch, state, body, headers, &topic)
                                .instrument(span)
                                .await;
                        }
                        return batch::answer(batch, state, body, headers, &topic).await;
                    }
                    let (outcome, id) = if let Some(span) = span {
                        let handled = handler(state, body, headers).instrument(span.clone()).await;
                        if let Some(reason) = handled.0.reason() {
                            spans::fail(&span, &format_args!("{}: {reason}", handled.0.status()));
                        }
                        handled
                    } else {
                        handler(state, body, headers).await
                    };
                    tracing::debug!(
                        topic = %topic,
                        event_id = %id,
                        status = outcome.status(),
                        reason = outcome.reason().unwrap_or(""),
                        "delivery handled"
                    );
                    outcome.into_response()
                }),
            );
        }
        // daprd accepts publishes up to 4 MiB (its default max body size); axum's default limit
        // of 2 MiB would answer larger deliveries 413, which daprd retries forever.
        router.layer(DefaultBodyLimit::max(MAX_DELIVERY_BYTES))
    }
}

/// The span of one delivery handled, when it is traced: a consumer span under the request's
/// server span, or, when the router runs without one, continuing the delivery's `traceparent`
/// (daprd sends one on every delivery:
/// <https://docs.dapr.io/operations/observability/tracing/w3c-tracing-overview/>) when its head
/// decision samples it. An unsampled delivery gets no span; its `traceparent` is rewritten when
/// this process's sampler cleared the flag the sidecar set, so the handler passes the decision on.
fn delivery_span(topic: &str, headers: &mut HeaderMap) -> Option<tracing::Span> {
    if !spans::exporting() {
        return None;
    }
    let make = || {
        tracing::info_span!(
            "delivery",
            otel.name = format!("deliver {topic}"),
            otel.kind = "consumer",
            messaging.destination.name = topic,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        )
    };
    if spans::span_context(&tracing::Span::current()).is_valid() {
        let span = make();
        spans::record_ids(&span);
        return Some(span);
    }
    let incoming = headers.get("traceparent").and_then(|v| v.to_str().ok());
    let sent_sampled = trace_context::TraceParent::from_header(incoming).is_some_and(|p| p.sampled);
    match spans::head(incoming) {
        spans::Head::Sampled { parent, trace_id } => Some(spans::open(parent, trace_id, make)),
        spans::Head::Unsampled(context) => {
            if sent_sampled && let Ok(value) = http::HeaderValue::from_str(&context.to_string()) {
                headers.insert("traceparent", value);
            }
            None
        }
    }
}

/// The handler of a second-chance route: each dead letter goes to the handler of its original
/// topic; one whose topic this table does not consume is dropped (nothing here can process it).
fn second_chance_handler<S: Send + 'static>(
    dlq: String,
    handlers: BTreeMap<String, Handler<S>>,
) -> Handler<S> {
    let handlers = Arc::new(handlers);
    Arc::new(move |state: S, body: Bytes, headers: HeaderMap| {
        let handlers = Arc::clone(&handlers);
        let dlq = dlq.clone();
        Box::pin(async move {
            let original = match events::decode_any(&body) {
                Ok((cloud_event, _)) => cloud_event.topic,
                Err(error) => return (undecodable(&dlq, &error), String::new()),
            };
            match handlers.get(&original) {
                Some(handler) => {
                    tracing::info!(topic = %dlq, original_topic = %original, "second delivery of a dead letter");
                    handler(state, body, headers).await
                }
                None => {
                    tracing::warn!(topic = %dlq, original_topic = %original, "dead letter of a topic this app does not consume, answering DROP");
                    (
                        Outcome::Drop(format!(
                            "dead letter of topic `{original}`, which this app does not consume"
                        )),
                        String::new(),
                    )
                }
            }
        })
    })
}

fn undecodable(topic: &str, error: &events::DecodeError) -> Outcome {
    tracing::warn!(topic, %error, "undecodable event, answering DROP");
    Outcome::Drop(format!("undecodable event: {error}"))
}
