//! A tap on the shared publish and delivery layer, for tools that show a run's messages as they
//! move (the runner's console). Every publish handed to a component (single and bulk, through the
//! API; told before the component has it, so a publish is always seen before its deliveries) and every delivery attempt to every subscriber, with its outcome, is handed to the
//! [`Observer`] installed on the run's [`crate::Runtime`], whatever the pub/sub component.
//!
//! Cost: without an observer each call site pays one relaxed atomic load and nothing else (no
//! allocation, no lock). With one, the call site builds a borrowed record and calls the observer
//! synchronously, so an observer must return at once: it copies what it keeps into a bounded
//! buffer and drops (counting) when that is full, never waits.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Receives the run's publishes and deliveries. Called on the publishing and delivering tasks:
/// an implementation must not block or wait.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// A message about to be handed to the component.
    fn published(&self, event: &Published<'_>);
    /// One delivery attempt to one subscriber has ended (or a message was disposed of).
    fn delivered(&self, delivery: &Delivery<'_>);
}

/// A message handed to a pub/sub component.
#[derive(Debug, Clone, Copy)]
pub struct Published<'a> {
    pub pubsub: &'a str,
    pub topic: &'a str,
    /// The publishing app id.
    pub publisher: &'a str,
    /// The stored bytes: the CloudEvent JSON, or the raw payload.
    pub data: &'a Bytes,
    pub metadata: &'a BTreeMap<String, String>,
}

/// How one attempt ended, in Dapr's words for an app's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The app took the message.
    Success,
    /// The app asked for a retry (or answered an error status).
    Retry,
    /// The message was dropped (app answered DROP or 404, expired, no route matched).
    Drop,
    /// The app could not be reached, or the message could not be prepared.
    Error,
}

impl Outcome {
    /// `SUCCESS`, `RETRY`, `DROP` or `ERROR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Retry => "RETRY",
            Self::Drop => "DROP",
            Self::Error => "ERROR",
        }
    }
}

/// One delivery attempt to one subscriber.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub pubsub: &'a str,
    pub topic: &'a str,
    /// The CloudEvent `id`, when the message is a CloudEvent.
    pub event_id: Option<&'a str>,
    /// The subscribing app id.
    pub subscriber: &'a str,
    /// The subscriber sidecar's Dapr HTTP port (tells the instances of a scaled app apart).
    pub sidecar_port: u16,
    /// The app path the message went (or would have gone) to; empty when no route was chosen.
    pub route: &'a str,
    /// 1 for the first POST; 0 when the message was disposed of without a POST.
    pub attempt: u32,
    pub outcome: Outcome,
    /// The app's HTTP status, when it answered.
    pub status: Option<u16>,
    pub latency: Duration,
    pub error: Option<&'a str>,
    /// The message went to the dead-letter topic after this.
    pub dead_lettered: bool,
}

/// The observer slot of a run.
#[derive(Debug, Default)]
pub struct Tap {
    active: AtomicBool,
    observer: RwLock<Option<Arc<dyn Observer>>>,
}

impl Tap {
    /// Installs `observer` (replacing any other).
    pub fn set(&self, observer: Arc<dyn Observer>) {
        *self
            .observer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(observer);
        self.active.store(true, Ordering::Release);
    }

    /// Removes the observer.
    pub fn clear(&self) {
        self.active.store(false, Ordering::Release);
        *self
            .observer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// The observer, if one is installed; without one this is a single atomic load.
    pub fn observer(&self) -> Option<Arc<dyn Observer>> {
        if !self.active.load(Ordering::Relaxed) {
            return None;
        }
        self.observer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether an observer is installed (lets a call site skip building a record).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }
}

/// The CloudEvent `id` of stored message bytes, if they are a CloudEvent.
pub fn event_id(data: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: Option<serde_json::Value>,
    }
    let id = serde_json::from_slice::<Id>(data).ok()?.id?;
    match id {
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct Count(Mutex<usize>);
    impl Observer for Count {
        fn published(&self, _: &Published<'_>) {
            *self.0.lock().unwrap() += 1;
        }
        fn delivered(&self, _: &Delivery<'_>) {}
    }

    #[test]
    fn an_empty_tap_has_no_observer_and_a_set_one_is_called() {
        let tap = Tap::default();
        assert!(tap.observer().is_none());
        let count = Arc::new(Count::default());
        tap.set(count.clone());
        let data = Bytes::from_static(b"{}");
        let meta = BTreeMap::new();
        tap.observer().unwrap().published(&Published {
            pubsub: "p",
            topic: "t",
            publisher: "a",
            data: &data,
            metadata: &meta,
        });
        assert_eq!(*count.0.lock().unwrap(), 1);
        tap.clear();
        assert!(tap.observer().is_none());
    }

    #[test]
    fn event_ids_are_read_from_cloudevents_only() {
        assert_eq!(
            event_id(br#"{"id":"e-1","data":{}}"#).as_deref(),
            Some("e-1")
        );
        assert_eq!(event_id(br#"{"id":7}"#).as_deref(), Some("7"));
        assert_eq!(event_id(b"not json"), None);
        assert_eq!(event_id(br#"{"data":1}"#), None);
    }
}
