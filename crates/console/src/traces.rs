//! The OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf `ExportTraceServiceRequest`, as the
//! services' and sidecars' exporters send it) and a bounded store of the received traces: the
//! newest [`crate::Limits::traces`] traces, each with at most
//! [`crate::Limits::spans_per_trace`] spans.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

/// One span as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SpanJson {
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub service: String,
    pub name: String,
    pub kind: &'static str,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: BTreeMap<String, String>,
    /// `unset`, `ok` or `error`, with the error's message after a colon.
    pub status: String,
    /// `{trace_id, span_id}` of each linked span.
    pub links: Vec<LinkJson>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkJson {
    pub trace_id: String,
    pub span_id: String,
}

/// A trace in the list.
#[derive(Debug, Clone, Serialize)]
pub struct TraceSummary {
    pub trace_id: String,
    pub root_name: Option<String>,
    pub root_service: Option<String>,
    pub services: Vec<String>,
    pub start_unix_nano: u64,
    pub duration_ms: f64,
    pub span_count: usize,
}

/// A whole trace.
#[derive(Debug, Clone, Serialize)]
pub struct TraceJson {
    pub trace_id: String,
    pub spans: Vec<SpanJson>,
}

#[derive(Debug, Default)]
struct Store {
    traces: HashMap<String, Vec<SpanJson>>,
    /// Trace ids, oldest first (by first span received).
    order: VecDeque<String>,
}

/// Why an export was refused.
#[derive(Debug, thiserror::Error)]
#[error("not an OTLP ExportTraceServiceRequest: {0}")]
pub struct DecodeError(#[from] prost::DecodeError);

/// The trace store.
#[derive(Debug)]
pub struct TraceStore {
    store: Mutex<Store>,
    max_traces: usize,
    max_spans: usize,
}

impl TraceStore {
    pub fn new(max_traces: usize, max_spans: usize) -> TraceStore {
        TraceStore {
            store: Mutex::new(Store::default()),
            max_traces: max_traces.max(1),
            max_spans: max_spans.max(1),
        }
    }

    /// Decodes one export request and files its spans.
    pub fn receive(&self, body: &[u8]) -> Result<usize, DecodeError> {
        let request = ExportTraceServiceRequest::decode(body)?;
        let mut received: Vec<(String, SpanJson)> = Vec::new();
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| attribute(&r.attributes, "service.name"))
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    let status = match span.status {
                        Some(s) if s.code == 2 && s.message.is_empty() => "error".to_owned(),
                        Some(s) if s.code == 2 => format!("error: {}", s.message),
                        Some(s) if s.code == 1 => "ok".to_owned(),
                        _ => "unset".to_owned(),
                    };
                    received.push((
                        hex::encode(&span.trace_id),
                        SpanJson {
                            span_id: hex::encode(&span.span_id),
                            parent_span_id: (!span.parent_span_id.is_empty())
                                .then(|| hex::encode(&span.parent_span_id)),
                            service: service.clone(),
                            name: span.name,
                            kind: kind(span.kind),
                            start_unix_nano: span.start_time_unix_nano,
                            end_unix_nano: span.end_time_unix_nano,
                            attributes: span
                                .attributes
                                .iter()
                                .filter_map(|kv| Some((kv.key.clone(), text(kv.value.as_ref()?)?)))
                                .collect(),
                            status,
                            links: span
                                .links
                                .iter()
                                .map(|l| LinkJson {
                                    trace_id: hex::encode(&l.trace_id),
                                    span_id: hex::encode(&l.span_id),
                                })
                                .collect(),
                        },
                    ));
                }
            }
        }
        let count = received.len();
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        for (trace_id, span) in received {
            if !store.traces.contains_key(&trace_id) {
                if store.order.len() >= self.max_traces
                    && let Some(old) = store.order.pop_front()
                {
                    store.traces.remove(&old);
                }
                store.order.push_back(trace_id.clone());
            }
            let spans = store.traces.entry(trace_id).or_default();
            if spans.len() < self.max_spans {
                spans.push(span);
            }
        }
        Ok(count)
    }

    /// Newest first.
    pub fn list(&self, limit: usize) -> Vec<TraceSummary> {
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        store
            .order
            .iter()
            .rev()
            .take(limit)
            .filter_map(|id| Some(summary(id, store.traces.get(id)?)))
            .collect()
    }

    /// One trace, its spans by start time.
    pub fn get(&self, trace_id: &str) -> Option<TraceJson> {
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let mut spans = store.traces.get(trace_id)?.clone();
        spans.sort_by_key(|s| s.start_unix_nano);
        Some(TraceJson {
            trace_id: trace_id.to_owned(),
            spans,
        })
    }
}

fn summary(trace_id: &str, spans: &[SpanJson]) -> TraceSummary {
    let ids: std::collections::HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    // The root: no parent, else the earliest span whose parent is not here (yet).
    let root = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .min_by_key(|s| s.start_unix_nano)
        .or_else(|| {
            spans
                .iter()
                .filter(|s| s.parent_span_id.as_deref().is_none_or(|p| !ids.contains(p)))
                .min_by_key(|s| s.start_unix_nano)
        });
    let start = spans.iter().map(|s| s.start_unix_nano).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end_unix_nano).max().unwrap_or(start);
    let mut services: Vec<String> = spans.iter().map(|s| s.service.clone()).collect();
    services.sort();
    services.dedup();
    TraceSummary {
        trace_id: trace_id.to_owned(),
        root_name: root.map(|s| s.name.clone()),
        root_service: root.map(|s| s.service.clone()),
        services,
        start_unix_nano: start,
        // Nanoseconds to milliseconds; a trace is far shorter than f64's exact range.
        duration_ms: end.saturating_sub(start) as f64 / 1e6,
        span_count: spans.len(),
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| text(kv.value.as_ref()?))
}

fn text(value: &AnyValue) -> Option<String> {
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn kind(code: i32) -> &'static str {
    match code {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}
