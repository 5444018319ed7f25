//! `GET /metrics`: the sidecar's Prometheus metrics in the text format. daprd serves its metrics
//! on a separate port (`--metrics-port`, 9090); this sidecar has no such listener and serves them
//! on its HTTP API port. What it exports today is the resiliency state, under daprd's metric
//! names (`pkg/diagnostics/resiliency_monitoring.go`; see `resiliency::Engine::render_prometheus`),
//! and what the in-memory state stores hold for this sidecar's app, by key family
//! (`sidecar_state_keys`, `sidecar_state_bytes`; daprd has no such metric, its stores are
//! remote), with the memory each store as a whole holds them in (`sidecar_state_reserved_bytes`,
//! free space not yet compacted included): after a load run they tell which keys the runner's
//! memory goes to.

use crate::sidecar::SidecarState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub(super) async fn metrics(State(state): State<Arc<SidecarState>>) -> Response {
    let mut out = String::new();
    state.policies.render_metrics(&mut out);
    render_state_usage(&state, &mut out);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

fn render_state_usage(state: &SidecarState, out: &mut String) {
    use std::fmt::Write as _;
    let app_id = state.opts.app_id.as_str();
    let mut rows = Vec::new();
    let mut reserved = Vec::new();
    for component in state.runtime.state_stores_for(app_id) {
        let prefix = crate::metadata::key_prefix(&component.spec, app_id);
        if let Some(families) = component.store.usage(prefix.as_deref()) {
            rows.push((component.spec.name.as_str(), families));
        }
        if let Some(bytes) = component.store.reserved_bytes() {
            reserved.push((component.spec.name.as_str(), bytes));
        }
    }
    if !reserved.is_empty() {
        let metric = "sidecar_state_reserved_bytes";
        let _ = writeln!(
            out,
            "# HELP {metric} Memory an in-memory state store holds every app's keys and values in, free space not yet compacted included.\n# TYPE {metric} gauge"
        );
        for (store, bytes) in &reserved {
            let _ = writeln!(out, "{metric}{{store=\"{}\"}} {bytes}", label(store));
        }
    }
    if rows.is_empty() {
        return;
    }
    for (metric, help) in [
        (
            "sidecar_state_keys",
            "Live keys of this app in an in-memory state store, by key family.",
        ),
        (
            "sidecar_state_bytes",
            "Key and value bytes (values as held, compressed or not) of this app in an in-memory state store, by key family.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} gauge");
        for (store, families) in &rows {
            for f in families {
                let value = if metric == "sidecar_state_keys" {
                    f.keys
                } else {
                    f.bytes
                };
                let _ = writeln!(
                    out,
                    "{metric}{{app_id=\"{}\",store=\"{}\",family=\"{}\"}} {value}",
                    label(app_id),
                    label(store),
                    label(&f.family)
                );
            }
        }
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
