//! SMTP credentials never cross the network in clear: a session that did not become encrypted
//! gets no AUTH, unless plaintext AUTH was allowed for a loopback development relay. The relay
//! here is the sink behind a front that offers AUTH without TLS (as a careless relay, or a man
//! in the middle who removed STARTTLS, would).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::{Duration, Instant};

use service_testing::counter;
use smtp_sink::PlaintextAuthFront;
use support::{SmtpSink, WAIT, settings_for, spawn_app_with, task_created};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_not_sent_when_the_session_is_not_encrypted() {
    let sink = SmtpSink::start().unwrap();
    let front = PlaintextAuthFront::start(sink.addr()).unwrap();
    let mut settings = settings_for(sink.port());
    settings.smtp_url = Some(
        front
            .url_with_credentials("bot", "hunter2", "tls=opportunistic")
            .into(),
    );
    let app = spawn_app_with(settings).await;
    app.publish(&task_created("gus@example.com", "Renew passport", ""))
        .await;

    // The send fails (and is retried) instead of authenticating in clear.
    let deadline = Instant::now() + WAIT;
    loop {
        let metrics = app.metrics().await;
        let retried = counter(
            &metrics,
            "emails_retried_total",
            &[("event_type", "task-created"), ("reason", "smtp")],
        );
        if retried >= 2.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no failed SMTP attempt seen");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        front.auth_commands(),
        Vec::<String>::new(),
        "AUTH sent in clear"
    );
    assert!(sink.received().is_empty());
    assert!(app.cluster.published("notification-sent").is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_relay_may_be_allowed_plaintext_auth() {
    let sink = SmtpSink::start().unwrap();
    let front = PlaintextAuthFront::start(sink.addr()).unwrap();
    let mut settings = settings_for(sink.port());
    settings.smtp_url = Some(front.url_with_credentials("bot", "hunter2", "").into());
    settings.smtp_allow_plaintext_auth = true;
    let app = spawn_app_with(settings).await;
    app.publish(&task_created("hal@example.com", "Water the plants", ""))
        .await;
    app.cluster
        .wait_for_published("notification-sent", 1, WAIT)
        .await
        .unwrap();
    let auth = front.auth_commands();
    assert_eq!(auth.len(), 1, "{auth:?}");
    assert!(auth[0].starts_with("AUTH PLAIN"), "{auth:?}");
    assert_eq!(sink.received().len(), 1);
    app.stop().await;
}
