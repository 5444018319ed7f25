//! The console's routes, per its HTTP contract: the page and assets, the JSON API, the live
//! stream and the OTLP/HTTP receiver, all behind [`crate::guard`].

use crate::events::EventFilter;
use crate::guard::ACTION_HEADER;
use crate::logs::LogFilter;
use crate::{Console, apps, dead_letters, emails, state};
use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, body::Bytes};
use futures::Stream;
use std::convert::Infallible;
use tokio::sync::broadcast::error::RecvError;

pub(crate) fn router(console: Console) -> Router {
    let otlp_limit = console.inner.settings.limits.otlp_body_bytes;
    Router::new()
        .route("/", get(crate::assets::index))
        .route("/assets/{file}", get(crate::assets::asset))
        .route("/api/apps", get(list_apps))
        .route("/api/events", get(list_events))
        .route("/api/events/{id}", get(get_event))
        .route("/api/stream", get(stream))
        .route("/api/dead-letters", get(list_dead_letters))
        .route("/api/dead-letters/{event_id}/replay", post(replay))
        .route("/api/state", get(list_state))
        .route("/api/state/{store}/{*key}", get(get_state))
        .route("/api/emails", get(list_emails))
        .route("/api/emails/{id}", get(get_email))
        .route("/api/traces", get(list_traces))
        .route("/api/traces/{trace_id}", get(get_trace))
        .route("/api/logs", get(list_logs))
        .route(
            "/v1/traces",
            post(receive_traces).layer(DefaultBodyLimit::max(otlp_limit)),
        )
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            crate::guard::guard,
        ))
        .with_state(console)
}

fn problem(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({"error": message.to_string()})),
    )
        .into_response()
}

async fn list_apps(State(console): State<Console>) -> Response {
    let apps: Vec<_> = console
        .inner
        .apps
        .apps()
        .into_iter()
        .map(apps::to_json)
        .collect();
    Json(apps).into_response()
}

async fn list_events(
    State(console): State<Console>,
    Query(filter): Query<EventFilter>,
) -> Response {
    Json(console.inner.events.list(&filter)).into_response()
}

async fn get_event(State(console): State<Console>, Path(id): Path<String>) -> Response {
    match console.inner.events.get(&id) {
        Some(event) => Json(event).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            format!("no event {id:?} in the console's ring"),
        ),
    }
}

async fn stream(
    State(console): State<Console>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = console.inner.hub.subscribe();
    let events = futures::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(item) => Event::default().event(item.kind).data(item.json.as_str()),
            Err(RecvError::Lagged(dropped)) => Event::default()
                .event("lagged")
                .data(serde_json::json!({ "dropped": dropped }).to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

async fn list_dead_letters(State(console): State<Console>, RawQuery(query): RawQuery) -> Response {
    let query = query.map(|q| {
        // The console's own token is not audit-logger's business.
        q.split('&')
            .filter(|p| !p.starts_with("token="))
            .collect::<Vec<_>>()
            .join("&")
    });
    dead_letters::list(&console, query.as_deref()).await
}

async fn replay(
    State(console): State<Console>,
    Path(event_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let declared = headers
        .get(ACTION_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "replay");
    if !declared {
        return problem(
            StatusCode::FORBIDDEN,
            "a replay needs the header `X-Console-Action: replay`",
        );
    }
    dead_letters::replay(&console, &event_id).await
}

#[derive(Debug, serde::Deserialize)]
struct StateQuery {
    prefix: Option<String>,
    limit: Option<usize>,
}

async fn list_state(State(console): State<Console>, Query(q): Query<StateQuery>) -> Response {
    let Some(runtime) = &console.inner.runtime else {
        return Json(Vec::<state::KeyJson>::new()).into_response();
    };
    let max = console.inner.settings.limits.state_keys;
    let limit = q.limit.unwrap_or(max).min(max);
    match state::list(runtime, q.prefix.as_deref().unwrap_or(""), limit).await {
        Ok(keys) => Json(keys).into_response(),
        Err(e) => problem(StatusCode::BAD_GATEWAY, e),
    }
}

async fn get_state(
    State(console): State<Console>,
    Path((store, key)): Path<(String, String)>,
) -> Response {
    let Some(runtime) = &console.inner.runtime else {
        return problem(StatusCode::NOT_FOUND, "no state stores in this console");
    };
    let max = console.inner.settings.limits.state_value_bytes;
    match state::get(runtime, &store, &key, max).await {
        Ok(value) => Json(value).into_response(),
        Err(e @ (state::StateViewError::NoStore(_) | state::StateViewError::NoKey { .. })) => {
            problem(StatusCode::NOT_FOUND, e)
        }
        Err(e) => problem(StatusCode::BAD_GATEWAY, e),
    }
}

async fn list_emails(State(console): State<Console>) -> Response {
    let settings = &console.inner.settings;
    let Some(dir) = settings.mail_dir.clone() else {
        return Json(Vec::<emails::EmailSummary>::new()).into_response();
    };
    let (limit, max) = (settings.limits.emails, settings.limits.email_bytes);
    let listed = tokio::task::spawn_blocking(move || emails::list(&dir, limit, max)).await;
    match listed {
        Ok(Ok(list)) => Json(list).into_response(),
        Ok(Err(e)) => problem(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn get_email(State(console): State<Console>, Path(id): Path<String>) -> Response {
    let settings = &console.inner.settings;
    let Some(dir) = settings.mail_dir.clone() else {
        return problem(StatusCode::NOT_FOUND, emails::EmailError::NoFolder);
    };
    let max = settings.limits.email_bytes;
    let read = tokio::task::spawn_blocking(move || emails::get(&dir, &id, max)).await;
    match read {
        Ok(Ok(email)) => Json(email).into_response(),
        Ok(Err(e @ emails::EmailError::BadId(_))) => problem(StatusCode::BAD_REQUEST, e),
        Ok(Err(e @ emails::EmailError::NotFound(_))) => problem(StatusCode::NOT_FOUND, e),
        Ok(Err(e)) => problem(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Debug, serde::Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
}

async fn list_traces(State(console): State<Console>, Query(q): Query<LimitQuery>) -> Response {
    let max = console.inner.settings.limits.traces;
    Json(console.inner.traces.list(q.limit.unwrap_or(100).min(max))).into_response()
}

async fn get_trace(State(console): State<Console>, Path(trace_id): Path<String>) -> Response {
    match console.inner.traces.get(&trace_id.to_ascii_lowercase()) {
        Some(trace) => Json(trace).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            format!("no trace {trace_id:?} received"),
        ),
    }
}

async fn receive_traces(State(console): State<Console>, body: Bytes) -> Response {
    use prost::Message as _;
    match console.inner.traces.receive(&body) {
        Ok(_) => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::default()
                .encode_to_vec(),
        )
            .into_response(),
        Err(e) => problem(StatusCode::BAD_REQUEST, e),
    }
}

async fn list_logs(State(console): State<Console>, Query(filter): Query<LogFilter>) -> Response {
    Json(console.inner.logs.list(&filter)).into_response()
}
