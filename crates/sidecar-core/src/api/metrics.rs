//! `GET /metrics`: the sidecar's Prometheus metrics in the text format. daprd serves its metrics
//! on a separate port (`--metrics-port`, 9090); this sidecar has no such listener and serves them
//! on its HTTP API port. What it exports today is the resiliency state, under daprd's metric
//! names (`pkg/diagnostics/resiliency_monitoring.go`; see `resiliency::Engine::render_prometheus`).

use crate::sidecar::SidecarState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub(super) async fn metrics(State(state): State<Arc<SidecarState>>) -> Response {
    let mut out = String::new();
    state.policies.render_metrics(&mut out);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
