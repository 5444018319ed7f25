//! The console's router driven in-process (`oneshot`): contract shapes, the guard, the live
//! stream's bounds, the OTLP receiver and the file-backed views.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bytes::Bytes;
use console::{AppStatus, AppsSource, Console, Limits, LogStream, Settings};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sidecar_core::observe::{Delivery, Outcome, Published};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

#[derive(Debug)]
struct NoApps;
impl AppsSource for NoApps {
    fn apps(&self) -> Vec<AppStatus> {
        vec![AppStatus {
            app_id: "worker".into(),
            instance: "worker#2".into(),
            pid: Some(42),
            exit_status: None,
            app_port: Some(8081),
            http_port: 3501,
            sidecar: None,
        }]
    }
}

fn console(settings: Settings) -> Console {
    Console::new(settings, Arc::new(NoApps), None)
}

async fn call(console: &Console, request: Request<Body>) -> (StatusCode, header::HeaderMap, Bytes) {
    let response = console.router().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

async fn get(console: &Console, uri: &str) -> (StatusCode, header::HeaderMap, Bytes) {
    call(console, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn get_json(console: &Console, uri: &str) -> Value {
    let (status, headers, body) = get(console, uri).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{uri}: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    serde_json::from_slice(&body).unwrap()
}

fn publish(console: &Console, topic: &str, event: &Value) {
    let data = Bytes::from(serde_json::to_vec(event).unwrap());
    console.observer().published(&Published {
        pubsub: "pubsub",
        topic,
        publisher: "task-api",
        data: &data,
        metadata: &BTreeMap::new(),
    });
}

fn deliver(console: &Console, event_id: &str, outcome: Outcome, attempt: u32, dead_lettered: bool) {
    console.observer().delivered(&Delivery {
        pubsub: "pubsub",
        topic: "task-created",
        event_id: Some(event_id),
        subscriber: "worker",
        sidecar_port: 3501,
        route: "/events/task-created",
        attempt,
        outcome,
        status: Some(200),
        latency: Duration::from_millis(3),
        error: None,
        dead_lettered,
    });
}

/// Polls `uri` until `check` accepts its JSON (the tap's records are filed by a task).
async fn poll(console: &Console, uri: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = get_json(console, uri).await;
        if check(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{uri} never matched: {value}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_page_and_every_answer_carry_the_csp_and_their_content_types() {
    let console = console(Settings::default());
    let (status, headers, body) = get(&console, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(
        headers[header::CONTENT_SECURITY_POLICY],
        "default-src 'self'; frame-src 'self'; img-src 'self' data:"
    );
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(String::from_utf8_lossy(&body).contains("/assets/app.js"));
    let (status, headers, _) = get(&console, "/assets/app.js").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    let (status, headers, _) = get(&console, "/assets/app.css").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    let (status, headers, _) = get(&console, "/assets/../Cargo.toml").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
    let apps = get_json(&console, "/api/apps").await;
    assert_eq!(apps[0]["instance"], "worker#2");
    assert_eq!(apps[0]["state"], "running");
    assert_eq!(apps[0]["health"], "unknown");
    assert_eq!(apps[0]["subscriptions"], json!([]));
}

#[tokio::test]
async fn published_events_are_listed_newest_first_with_their_deliveries_and_filters() {
    let console = console(Settings::default());
    let hostile = "<img src=x onerror=alert(1)>";
    publish(
        &console,
        "task-created",
        &json!({"id": "e-1", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "data": {"data": {"task": {"task_id": "t-1", "title": hostile}}}}),
    );
    publish(
        &console,
        "task-updated",
        &json!({"id": "e-2", "data": {"task_id": "t-2"}}),
    );
    deliver(&console, "e-1", Outcome::Retry, 1, false);
    deliver(&console, "e-1", Outcome::Success, 2, false);
    console.name_sidecar(3501, "worker#2");
    let events = poll(&console, "/api/events", |v| {
        v.as_array().is_some_and(|a| a.len() == 2)
            && v[1]["deliveries"].as_array().is_some_and(|d| d.len() == 2)
    })
    .await;
    assert_eq!(events[0]["id"], "e-2", "newest first");
    let first = &events[1];
    assert_eq!(first["topic"], "task-created");
    assert_eq!(first["publisher"], "task-api");
    assert_eq!(first["task_id"], "t-1");
    assert_eq!(first["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    // Hostile text is data: returned as it came, in JSON (escaping is the page's job).
    assert_eq!(
        first["cloudevent"]["data"]["data"]["task"]["title"],
        hostile
    );
    let d = &first["deliveries"];
    assert_eq!(d[0]["outcome"], "RETRY");
    assert_eq!(d[1]["outcome"], "SUCCESS");
    assert_eq!(d[1]["attempt"], 2);
    assert_eq!(d[1]["subscriber"], "worker");
    assert_eq!(d[1]["dead_lettered"], false);

    let by_task = get_json(&console, "/api/events?task_id=t-2").await;
    assert_eq!(by_task.as_array().unwrap().len(), 1);
    assert_eq!(by_task[0]["id"], "e-2");
    let by_topic = get_json(&console, "/api/events?topic=task-created&limit=5").await;
    assert_eq!(by_topic.as_array().unwrap().len(), 1);
    let by_subscriber = get_json(&console, "/api/events?app=worker").await;
    assert_eq!(by_subscriber.as_array().unwrap().len(), 1);
    let limited = get_json(&console, "/api/events?limit=1").await;
    assert_eq!(limited.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_event_ring_keeps_only_the_newest_events() {
    let limits = Limits {
        events: 3,
        ..Limits::default()
    };
    let console = console(Settings {
        limits,
        ..Settings::default()
    });
    for i in 0..5 {
        publish(&console, "t", &json!({"id": format!("e-{i}")}));
    }
    deliver(&console, "e-0", Outcome::Success, 1, false);
    let events = poll(&console, "/api/events", |v| v[0]["id"] == "e-4").await;
    let ids: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e-4", "e-3", "e-2"]);
}

#[tokio::test]
async fn a_token_is_required_when_one_is_configured() {
    let console = console(Settings {
        token: Some("s3cret-token".into()),
        ..Settings::default()
    });
    let (status, headers, _) = get(&console, "/api/apps").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
    let (status, _, _) = get(&console, "/?token=wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = get(&console, "/?token=s3cret-token").await;
    assert_eq!(status, StatusCode::OK);
    let request = Request::get("/api/apps")
        .header(header::AUTHORIZATION, "Bearer s3cret-token")
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = call(&console, request).await;
    assert_eq!(status, StatusCode::OK);
    // Without a known loopback peer, OTLP needs the token too.
    let request = Request::post("/v1/traces").body(Body::empty()).unwrap();
    let (status, _, _) = call(&console, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_a_token_only_loopback_host_names_are_served() {
    // A page of another site whose name the attacker rebinds to 127.0.0.1 reaches the console
    // with its own name in `Host`: refused, so it cannot read state, emails or logs.
    let console = console(Settings::default());
    for host in [
        "evil.example",
        "evil.example:9999",
        "127.0.0.1.evil.example",
    ] {
        let request = Request::get("/api/apps")
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap();
        let (status, headers, _) = call(&console, request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "Host {host}");
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
    }
    for host in [
        "127.0.0.1:9999",
        "localhost:9999",
        "localhost",
        "[::1]:9999",
    ] {
        let request = Request::get("/api/apps")
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap();
        let (status, _, _) = call(&console, request).await;
        assert_eq!(status, StatusCode::OK, "Host {host}");
    }
    // With a token (a console beyond loopback), the token is the guard and any name may be used.
    let console = console_with_token();
    let request = Request::get("/api/apps")
        .header(header::HOST, "console.lan:9999")
        .header(header::AUTHORIZATION, "Bearer s3cret-token")
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = call(&console, request).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_token_never_shows_in_debug_output() {
    let settings = Settings {
        token: Some("s3cret-token".into()),
        ..Settings::default()
    };
    let console = console_with_token();
    for text in [format!("{settings:?}"), format!("{console:?}")] {
        assert!(!text.contains("s3cret-token"), "{text}");
    }
}

fn console_with_token() -> Console {
    console(Settings {
        token: Some("s3cret-token".into()),
        ..Settings::default()
    })
}

#[tokio::test]
async fn replay_requires_the_action_header() {
    let console = console(Settings::default());
    let (status, _, body) = call(
        &console,
        Request::post("/api/dead-letters/e-1/replay")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("X-Console-Action"));
    let (status, _, _) = call(
        &console,
        Request::post("/api/dead-letters/e-1/replay")
            .header("X-Console-Action", "delete")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // With the header the guard lets it through; this run has no audit-logger.
    let (status, _, _) = call(
        &console,
        Request::post("/api/dead-letters/e-1/replay")
            .header("X-Console-Action", "replay")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _, _) = get(&console, "/api/dead-letters/e-1/replay").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_lagging_viewer_is_told_how_many_items_it_lost() {
    let console = console(Settings {
        limits: Limits {
            stream_backlog: 4,
            ..Limits::default()
        },
        ..Settings::default()
    });
    let response = console
        .router()
        .oneshot(Request::get("/api/stream").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    // The viewer reads nothing while 20 events go by: the filing never waits for it.
    for i in 0..20 {
        publish(&console, "t", &json!({"id": format!("e-{i}")}));
    }
    poll(&console, "/api/events?limit=1", |v| v[0]["id"] == "e-19").await;
    let mut body = response.into_body();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains("e-19") {
        assert!(Instant::now() < deadline, "stream ended early: {text}");
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(
        text.contains("event: lagged\ndata: {\"dropped\":16}"),
        "{text}"
    );
    assert!(text.contains("event: published"), "{text}");
    assert!(
        !text.contains("\"e-0\""),
        "the oldest items were dropped: {text}"
    );
}

#[tokio::test]
async fn otlp_exports_become_traces() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message as _;
    let text = |s: &str| AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    };
    let span = |id: u8, parent: Option<u8>, name: &str, start: u64| Span {
        trace_id: vec![0xab; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        kind: 2,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 2_000_000,
        attributes: vec![KeyValue {
            key: "http.route".into(),
            value: Some(text("/api/tasks")),
            ..KeyValue::default()
        }],
        ..Span::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(text("task-api")),
                    ..KeyValue::default()
                }],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    span(1, None, "POST /api/tasks", 1_000),
                    span(2, Some(1), "publish", 2_000),
                ],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    let (status, headers, _) = call(
        &console(Settings::default()),
        Request::post("/v1/traces")
            .body(Body::from(vec![1, 2, 3]))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{headers:?}");
    let console = console(Settings::default());
    let (status, headers, _) = call(
        &console,
        Request::post("/v1/traces")
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .body(Body::from(request.encode_to_vec()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-protobuf");
    let trace_id = "ab".repeat(16);
    let list = get_json(&console, "/api/traces").await;
    assert_eq!(list[0]["trace_id"], trace_id);
    assert_eq!(list[0]["root_name"], "POST /api/tasks");
    assert_eq!(list[0]["root_service"], "task-api");
    assert_eq!(list[0]["span_count"], 2);
    let trace = get_json(&console, &format!("/api/traces/{trace_id}")).await;
    assert_eq!(trace["spans"][1]["parent_span_id"], "01".repeat(8));
    assert_eq!(trace["spans"][0]["kind"], "server");
    assert_eq!(trace["spans"][0]["attributes"]["http.route"], "/api/tasks");
    let (status, _, _) = get(&console, "/api/traces/ffff").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn emails_come_from_the_mail_folder_and_ids_are_plain_file_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m1.eml"),
        "From: a@localhost\r\nTo: b@example.com\r\nSubject: <b>hi</b>\r\nContent-Type: text/html\r\n\r\n<script>alert(1)</script>",
    )
    .unwrap();
    let console = console(Settings {
        mail_dir: Some(dir.path().to_owned()),
        ..Settings::default()
    });
    let list = get_json(&console, "/api/emails").await;
    assert_eq!(list[0]["id"], "m1.eml");
    assert_eq!(list[0]["subject"], "<b>hi</b>");
    let email = get_json(&console, "/api/emails/m1.eml").await;
    assert_eq!(email["html"], "<script>alert(1)</script>");
    let (status, _, _) = get(&console, "/api/emails/..%2FCargo.toml").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = get(&console, "/api/emails/none.eml").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn logs_are_filtered_by_app_and_level() {
    let console = console(Settings::default());
    console.log(
        "api#1",
        "api",
        LogStream::Stdout,
        r#"{"level":"INFO","fields":{"message":"up"}}"#,
    );
    console.log(
        "api#1",
        "api",
        LogStream::Stderr,
        "2026-01-01T00:00:00Z ERROR api: boom",
    );
    console.log(
        "worker",
        "worker",
        LogStream::Stdout,
        "\u{1b}[2m2026\u{1b}[0m  WARN worker: slow",
    );
    let all = get_json(&console, "/api/logs").await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(all[0]["app"], "worker");
    assert_eq!(all[0]["line"], "2026  WARN worker: slow");
    let errors = get_json(&console, "/api/logs?app=api&level=error").await;
    assert_eq!(errors.as_array().unwrap().len(), 1);
    assert_eq!(errors[0]["stream"], "stderr");
    let info = get_json(&console, "/api/logs?level=info").await;
    assert_eq!(info[0]["message"], "up");
}
