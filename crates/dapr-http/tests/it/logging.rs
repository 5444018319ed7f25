//! What the subscription router logs: undecodable events at warn with topic and error, every
//! outcome at debug, and never the API token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dapr_http::{Outcome, RawEvent, SecretString, Subscriptions};
use tower::ServiceExt as _;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

async fn retry(_: (), _: RawEvent) -> Outcome {
    Outcome::Retry("database locked".into())
}

#[tokio::test]
async fn undecodable_is_warned_and_outcomes_are_debug_logged_without_the_token() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .finish();
    // The test runtime is single-threaded, so the handlers run under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let router = Subscriptions::new("todo-pubsub")
        .on::<events::TaskCreated, _, _>(|_: (), _| async { Outcome::Success })
        .on_raw("task-updated", retry)
        .app_api_token(Some(SecretString::from("hunter2-token")))
        .router(());
    let post = |path: &str, body: &'static str| {
        Request::post(path)
            .header("dapr-api-token", "hunter2-token")
            .body(Body::from(body))
            .unwrap()
    };

    let response = router
        .clone()
        .oneshot(post("/events/task-created", "not json"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = router
        .clone()
        .oneshot(post(
            "/events/task-updated",
            r#"{"specversion":"1.0","id":"ev-9","data":{"x":1}}"#,
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let logs = captured.text();
    let warn = logs
        .lines()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning in {logs}"));
    assert!(warn.contains("task-created"), "{warn}");
    assert!(warn.contains("not JSON"), "{warn}");
    assert!(
        logs.lines().any(|l| l.contains("DEBUG")
            && l.contains("status=\"DROP\"")
            && l.contains("task-created")),
        "{logs}"
    );
    assert!(
        logs.lines().any(|l| l.contains("DEBUG")
            && l.contains("status=\"RETRY\"")
            && l.contains("ev-9")
            && l.contains("database locked")),
        "{logs}"
    );
    assert!(!logs.contains("hunter2-token"), "{logs}");
}
