//! The event ring: what the run's tap reports, filed as events with their deliveries.
//!
//! The tap's callbacks ([`TapObserver`]) run on the publishing and delivering tasks, so they only
//! copy the record into a bounded queue (`try_send`; a full queue drops the record and counts
//! it). One task files the queue: it parses the CloudEvent, keeps the newest
//! [`Limits::events`] events with up to [`Limits::deliveries_per_event`] deliveries each, and
//! broadcasts each `published` and `delivery` item to the live stream.

use crate::hub::Hub;
use crate::limits::Limits;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use sidecar_core::observe::{Delivery, Observer, Published};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use tokio::sync::mpsc;

/// One delivery attempt as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryJson {
    pub subscriber: String,
    pub instance: String,
    pub route: String,
    pub attempt: u32,
    pub outcome: &'static str,
    pub status: Option<u16>,
    pub latency_ms: f64,
    pub error: Option<String>,
    pub dead_lettered: bool,
    pub at: String,
}

/// One event as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EventJson {
    pub id: String,
    pub seq: u64,
    pub at: String,
    pub pubsub: String,
    pub topic: String,
    pub publisher: String,
    pub task_id: Option<String>,
    pub trace_id: Option<String>,
    pub cloudevent: Value,
    pub deliveries: Vec<DeliveryJson>,
}

/// A delivery on the stream: the event's id next to the delivery's fields.
#[derive(Debug, Serialize)]
struct DeliveryItem<'a> {
    event_id: Option<&'a str>,
    pubsub: &'a str,
    topic: &'a str,
    #[serde(flatten)]
    delivery: &'a DeliveryJson,
}

enum Record {
    Published {
        pubsub: String,
        topic: String,
        publisher: String,
        data: Bytes,
        at: chrono::DateTime<chrono::Utc>,
    },
    Delivered {
        pubsub: String,
        topic: String,
        event_id: Option<String>,
        delivery: DeliveryJson,
        sidecar_port: u16,
    },
}

/// The observer installed on the run's tap: copies each record into the bounded queue.
#[derive(Debug)]
pub struct TapObserver {
    tx: mpsc::Sender<Record>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Record")
    }
}

impl TapObserver {
    fn offer(&self, record: Record) {
        if self.tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Observer for TapObserver {
    fn published(&self, event: &Published<'_>) {
        self.offer(Record::Published {
            pubsub: event.pubsub.to_owned(),
            topic: event.topic.to_owned(),
            publisher: event.publisher.to_owned(),
            data: event.data.clone(),
            at: chrono::Utc::now(),
        });
    }

    fn delivered(&self, d: &Delivery<'_>) {
        self.offer(Record::Delivered {
            pubsub: d.pubsub.to_owned(),
            topic: d.topic.to_owned(),
            event_id: d.event_id.map(str::to_owned),
            sidecar_port: d.sidecar_port,
            delivery: DeliveryJson {
                subscriber: d.subscriber.to_owned(),
                instance: String::new(),
                route: d.route.to_owned(),
                attempt: d.attempt,
                outcome: d.outcome.as_str(),
                status: d.status,
                latency_ms: d.latency.as_secs_f64() * 1000.0,
                error: d.error.map(str::to_owned),
                dead_lettered: d.dead_lettered,
                at: now_text(),
            },
        });
    }
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The bounded ring of events.
#[derive(Debug)]
struct Ring {
    events: VecDeque<EventJson>,
    /// Event id → seq, for the events in the ring.
    by_id: HashMap<String, u64>,
    next_seq: u64,
}

impl Ring {
    fn get_mut(&mut self, seq: u64) -> Option<&mut EventJson> {
        let first = self.events.front()?.seq;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.events.get_mut(index)
    }
}

/// Filters of `GET /api/events`.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct EventFilter {
    pub topic: Option<String>,
    pub app: Option<String>,
    pub task_id: Option<String>,
    pub limit: Option<usize>,
}

/// The event store.
#[derive(Debug)]
pub struct EventStore {
    ring: Arc<Mutex<Ring>>,
    observer: Arc<TapObserver>,
    dropped: Arc<AtomicU64>,
    names: Arc<RwLock<HashMap<u16, String>>>,
    capacity: usize,
}

impl EventStore {
    /// A store and the task that files the tap's records into it.
    pub fn start(limits: &Limits, hub: Hub) -> EventStore {
        let (tx, rx) = mpsc::channel(limits.tap_queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let ring = Arc::new(Mutex::new(Ring {
            events: VecDeque::with_capacity(limits.events.min(4096)),
            by_id: HashMap::new(),
            next_seq: 1,
        }));
        let names = Arc::new(RwLock::new(HashMap::new()));
        let filer = Filer {
            ring: ring.clone(),
            hub,
            names: names.clone(),
            capacity: limits.events.max(1),
            per_event: limits.deliveries_per_event,
        };
        tokio::spawn(filer.run(rx));
        EventStore {
            ring,
            observer: Arc::new(TapObserver {
                tx,
                dropped: dropped.clone(),
            }),
            dropped,
            names,
            capacity: limits.events.max(1),
        }
    }

    pub fn observer(&self) -> Arc<dyn Observer> {
        self.observer.clone()
    }

    pub fn name_sidecar(&self, port: u16, instance: &str) {
        self.names
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(port, instance.to_owned());
    }

    /// Tap records dropped because the filing task fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Newest first, filtered.
    pub fn list(&self, filter: &EventFilter) -> Vec<EventJson> {
        let limit = filter.limit.unwrap_or(200).min(self.capacity);
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.events
            .iter()
            .rev()
            .filter(|e| filter.topic.as_ref().is_none_or(|t| &e.topic == t))
            .filter(|e| {
                filter.app.as_ref().is_none_or(|a| {
                    &e.publisher == a || e.deliveries.iter().any(|d| &d.subscriber == a)
                })
            })
            .filter(|e| {
                filter
                    .task_id
                    .as_ref()
                    .is_none_or(|t| e.task_id.as_ref() == Some(t))
            })
            .take(limit)
            .cloned()
            .collect()
    }

    /// One event by id.
    pub fn get(&self, id: &str) -> Option<EventJson> {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = *ring.by_id.get(id)?;
        ring.get_mut(seq).map(|e| e.clone())
    }
}

struct Filer {
    ring: Arc<Mutex<Ring>>,
    hub: Hub,
    names: Arc<RwLock<HashMap<u16, String>>>,
    capacity: usize,
    per_event: usize,
}

impl Filer {
    async fn run(self, mut rx: mpsc::Receiver<Record>) {
        while let Some(record) = rx.recv().await {
            match record {
                Record::Published {
                    pubsub,
                    topic,
                    publisher,
                    data,
                    at,
                } => self.file_published(pubsub, topic, publisher, &data, at),
                Record::Delivered {
                    pubsub,
                    topic,
                    event_id,
                    mut delivery,
                    sidecar_port,
                } => {
                    delivery.instance = self
                        .names
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(&sidecar_port)
                        .cloned()
                        .unwrap_or_else(|| delivery.subscriber.clone());
                    self.file_delivery(&pubsub, &topic, event_id.as_deref(), delivery);
                }
            }
        }
    }

    fn file_published(
        &self,
        pubsub: String,
        topic: String,
        publisher: String,
        data: &[u8],
        at: chrono::DateTime<chrono::Utc>,
    ) {
        let cloudevent = serde_json::from_slice::<Value>(data).unwrap_or_else(|_| {
            // A raw payload: shown as text.
            Value::String(String::from_utf8_lossy(data).into_owned())
        });
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = ring.next_seq;
        ring.next_seq += 1;
        let id = cloudevent
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("seq-{seq}"), str::to_owned);
        let event = EventJson {
            id: id.clone(),
            seq,
            at: at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            pubsub,
            topic,
            publisher,
            task_id: task_id(&cloudevent),
            trace_id: trace_id(&cloudevent),
            cloudevent,
            deliveries: Vec::new(),
        };
        self.hub.send("published", &event);
        if ring.events.len() >= self.capacity
            && let Some(old) = ring.events.pop_front()
            && ring.by_id.get(&old.id) == Some(&old.seq)
        {
            ring.by_id.remove(&old.id);
        }
        ring.by_id.insert(id, seq);
        ring.events.push_back(event);
    }

    fn file_delivery(
        &self,
        pubsub: &str,
        topic: &str,
        event_id: Option<&str>,
        delivery: DeliveryJson,
    ) {
        self.hub.send(
            "delivery",
            &DeliveryItem {
                event_id,
                pubsub,
                topic,
                delivery: &delivery,
            },
        );
        let Some(id) = event_id else { return };
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(seq) = ring.by_id.get(id).copied() else {
            return;
        };
        if let Some(event) = ring.get_mut(seq)
            && event.deliveries.len() < self.per_event
        {
            event.deliveries.push(delivery);
        }
    }
}

/// The task id in the event's data: `task_id`, `taskId` or `task.task_id`, in the data itself
/// or in the data of the envelope it carries (the services' envelopes nest their payload).
fn task_id(cloudevent: &Value) -> Option<String> {
    let data = cloudevent.get("data")?;
    let look = |d: &Value| {
        d.get("task_id")
            .or_else(|| d.get("taskId"))
            .or_else(|| d.get("task").and_then(|t| t.get("task_id")))
            .filter(|v| !v.is_null())
            .cloned()
    };
    let found = look(data).or_else(|| data.get("data").and_then(look))?;
    match found {
        Value::String(s) => Some(s),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// The trace id of the event's `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn trace_id(cloudevent: &Value) -> Option<String> {
    let traceparent = cloudevent.get("traceparent")?.as_str()?;
    let id = traceparent.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn task_and_trace_ids_come_from_the_envelope() {
        let ce = json!({
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "data": {"task": {"task_id": "t-1"}}
        });
        assert_eq!(task_id(&ce).as_deref(), Some("t-1"));
        assert_eq!(
            trace_id(&ce).as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(
            task_id(&json!({"data": {"task_id": 5}})).as_deref(),
            Some("5")
        );
        let nested = json!({"data": {"event_id": "e", "data": {"task": {"task_id": "t-2"}}}});
        assert_eq!(task_id(&nested).as_deref(), Some("t-2"));
        assert_eq!(trace_id(&json!({"traceparent": "garbage"})), None);
    }
}
