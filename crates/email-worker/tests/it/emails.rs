//! End to end through a local sidecar to a real SMTP server: what arrives, and that it arrives
//! once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use mail_parser::MimeHeaders;
use serde_json::Value;
use support::{
    SmtpSink, WAIT, settings_for, spawn_app, spawn_app_with, task_created, task_due_soon,
};

fn data(event: &Value) -> &Value {
    &event["data"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_created_sends_one_multipart_email_and_announces_it() {
    let (app, sink) = spawn_app().await;
    assert!(
        app.handle
            .starts_with("SMTP transport to smtp://127.0.0.1:"),
        "{}",
        app.handle
    );
    let event = task_created("ann@example.com", "Pay the rent", "Before Friday, please.");
    app.publish(&event).await;

    let announced = app
        .cluster
        .wait_for_published("notification-sent", 1, WAIT)
        .await
        .unwrap();
    let mail = sink.received();
    assert_eq!(mail.len(), 1, "exactly one email");
    let mail = &mail[0];
    assert_eq!(mail.to, ["ann@example.com"]);
    assert_eq!(mail.from, "tasks@todo.test");
    let parsed = mail.parsed().unwrap();
    assert_eq!(parsed.subject(), Some("New task: Pay the rent"));
    assert_eq!(
        parsed
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address()),
        Some("ann@example.com")
    );
    let content_type = parsed.content_type().unwrap();
    assert_eq!(
        (content_type.ctype(), content_type.subtype()),
        ("multipart", Some("alternative"))
    );
    let text = parsed.body_text(0).unwrap();
    assert!(
        text.contains("Pay the rent") && text.contains("Before Friday, please."),
        "{text}"
    );
    assert!(
        text.contains("Priority: high") && text.contains("Thu, 24 Dec 2026 18:00 UTC"),
        "{text}"
    );
    let html = parsed.body_html(0).unwrap();
    assert!(
        html.contains("<h2") && html.contains("Pay the rent</h2>"),
        "{html}"
    );
    assert!(
        parsed
            .message_id()
            .unwrap()
            .starts_with(&event.event_id.to_string()),
        "Message-ID derived from the trigger"
    );

    // The announcement: deterministic id, caused by the trigger, same correlation id.
    let sent = data(&announced[0]);
    assert_eq!(sent["event_type"], "notification-sent");
    assert_eq!(sent["causation_id"], event.event_id.to_string());
    assert_eq!(sent["correlation_id"], event.correlation_id);
    assert_eq!(sent["source"], "email-worker");
    assert_eq!(sent["data"]["recipient"], "ann@example.com");
    assert_eq!(sent["data"]["subject"], "New task: Pay the rent");
    assert_eq!(sent["data"]["trigger_event_type"], "task-created");
    assert_eq!(
        announced[0]["id"], sent["event_id"],
        "CloudEvent id = event_id"
    );

    // The sent mark is in the worker's own state.
    let mark = app
        .cluster
        .state_of("email-worker", &format!("email:{}", event.event_id))
        .await
        .unwrap();
    assert_eq!(mark["status"], "sent");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_due_soon_sends_a_reminder() {
    let (app, sink) = spawn_app().await;
    let event = task_due_soon("bob@example.com", "Submit the report");
    app.publish(&event).await;

    let announced = app
        .cluster
        .wait_for_published("notification-sent", 1, WAIT)
        .await
        .unwrap();
    let mail = sink.received();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].to, ["bob@example.com"]);
    let parsed = mail[0].parsed().unwrap();
    assert_eq!(parsed.subject(), Some("Due soon: Submit the report"));
    let text = parsed.body_text(0).unwrap();
    assert!(
        text.contains("about to fall due") && text.contains("(in 2 hours"),
        "{text}"
    );
    let html = parsed.body_html(0).unwrap();
    assert!(html.contains("Submit the report"), "{html}");
    assert_eq!(
        data(&announced[0])["data"]["trigger_event_type"],
        "task-due-soon"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliveries_send_nothing_more() {
    let (app, sink) = spawn_app().await;
    // Every delivery is made twice by the sidecar ...
    app.cluster.faults().duplicate_deliveries(true);
    let event = task_created("cy@example.com", "Water the plants", "");
    app.publish(&event).await;
    // ... each of them ends with an announcement (the duplicate re-announces with the same id).
    let announced = app
        .cluster
        .wait_for_published("notification-sent", 2, WAIT)
        .await
        .unwrap();
    app.cluster.faults().duplicate_deliveries(false);
    // ... and the producer publishes the very same event (same CloudEvent id) again.
    app.publish(&event).await;
    let announced_again = app
        .cluster
        .wait_for_published("notification-sent", 3, WAIT)
        .await
        .unwrap();

    assert_eq!(sink.received().len(), 1, "one email for three deliveries");
    let ids: std::collections::HashSet<_> = announced
        .iter()
        .chain(&announced_again)
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "every announcement is the same event: {ids:?}"
    );
    let metrics = app.metrics().await;
    assert!(
        service_testing::counter(
            &metrics,
            "emails_duplicate_total",
            &[("event_type", "task-created")]
        ) >= 2.0,
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_injection_in_the_title_adds_no_recipient_and_no_header() {
    let (app, sink) = spawn_app().await;
    let event = task_created(
        "dee@example.com",
        "Hi\r\nBcc: someone@example.com\r\nX-Evil: 1",
        "x",
    );
    app.publish(&event).await;
    app.cluster
        .wait_for_published("notification-sent", 1, WAIT)
        .await
        .unwrap();

    let mail = sink.received();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].to, ["dee@example.com"], "SMTP envelope recipients");
    let headers = mail[0].raw_headers();
    for line in headers.lines() {
        let lower = line.to_ascii_lowercase();
        assert!(
            !lower.starts_with("bcc") && !lower.starts_with("x-evil"),
            "injected header: {headers}"
        );
    }
    let parsed = mail[0].parsed().unwrap();
    assert!(parsed.bcc().is_none());
    assert_eq!(
        parsed.subject(),
        Some("New task: Hi Bcc: someone@example.com X-Evil: 1")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_content_is_escaped_in_html_only() {
    let (app, sink) = spawn_app().await;
    let event = task_created(
        "eve@example.com",
        "<script>alert('title')</script>",
        "<img src=x onerror=alert(1)> & <b>more</b>",
    );
    app.publish(&event).await;
    app.cluster
        .wait_for_published("notification-sent", 1, WAIT)
        .await
        .unwrap();

    let mail = sink.received();
    let parsed = mail[0].parsed().unwrap();
    let html = parsed.body_html(0).unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("<img"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(&#x27;title&#x27;)&lt;&#x2f;script&gt;"),
        "{html}"
    );
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt; &amp; &lt;b&gt;more&lt;&#x2f;b&gt;"),
        "{html}"
    );
    let text = parsed.body_text(0).unwrap();
    assert!(
        text.contains("<script>alert('title')</script>"),
        "text stays literal: {text}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_endpoints_answer() {
    let (app, _sink) = spawn_app().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert!(health.status().is_success());
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert!(ready.status().is_success(), "{}", ready.status());
    let subscribe: Value = app
        .client
        .get(app.url("/dapr/subscribe"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let topics: Vec<&str> = subscribe
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["topic"].as_str().unwrap())
        .collect();
    assert_eq!(
        topics,
        ["task-created", "task-due-soon", "email-worker-dead-letters"]
    );
    for s in &subscribe.as_array().unwrap()[..2] {
        assert_eq!(s["pubsubname"], "todo-pubsub");
        assert_eq!(s["deadLetterTopic"], "email-worker-dead-letters");
    }
    // The second chance: its own dead letters, with no dead-letter topic (no loop).
    let second = &subscribe[2];
    assert_eq!(second["route"], "/events/email-worker-dead-letters");
    assert!(second.get("deadLetterTopic").is_none(), "{second}");
    let metrics = app.metrics().await;
    assert!(metrics.contains("emails_sent_total"), "{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_run_concurrently_up_to_the_bound() {
    for (bound, events) in [(2usize, 12usize), (6, 24)] {
        let sink = SmtpSink::start().unwrap();
        let mut settings = settings_for(sink.port());
        settings.max_concurrent_sends = bound;
        let app = spawn_app_with(settings).await;
        for i in 0..events {
            app.publish(&task_created(&format!("p{i}@example.com"), "Parallel", ""))
                .await;
        }
        app.cluster
            .wait_for_published("notification-sent", events, WAIT)
            .await
            .unwrap();
        assert_eq!(sink.received().len(), events);
        let seen = sink.max_concurrent();
        // Never above the bound; and with the sidecar delivering 10 at a time, more than one
        // send overlaps (each SMTP transaction takes tens of milliseconds).
        assert!(
            seen <= bound && seen >= 2,
            "bound {bound}, at most {seen} at once"
        );
        app.stop().await;
    }
}
