//! A backlog in front of the send permits that lasts longer than `CLAIM_TTL`, while the broker
//! redelivers whatever waits longer than its processing timeout (Redis Streams reclaims pending
//! entries): each email still goes out exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use service_testing::RedisServer;
use support::streams::ConsumerGroups as _;
use support::{SmtpSink, WAIT, settings_for, spawn_app_on, task_created};

const EMAILS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_longer_than_the_claim_ttl_sends_each_email_once() {
    let redis = RedisServer::start();
    // One send at a time, each taking 100 ms at the relay: the last event waits about 2.4 s
    // for its turn, more than twice the claim TTL and the broker's processing timeout.
    let sink = SmtpSink::start().unwrap();
    sink.slow_down(Duration::from_millis(100));
    let mut settings = settings_for(sink.port());
    settings.max_concurrent_sends = 1;
    settings.claim_ttl = Duration::from_secs(1);
    settings.smtp_timeout = Duration::from_secs(10);
    let components = redis.streams(&[
        ("processingTimeout", "1s"),
        ("redeliverInterval", "200ms"),
        ("concurrency", "64"),
    ]);
    let app = spawn_app_on(components, settings).await;

    let events: Vec<_> = (0..EMAILS)
        .map(|i| task_created(&format!("user{i}@example.com"), &format!("Backlog {i}"), ""))
        .collect();
    for event in &events {
        app.publish(event).await;
    }

    // Until every email is in and every event acknowledged: note whether the broker redelivered
    // any of them while they waited (otherwise this test would prove nothing).
    let deadline = Instant::now() + WAIT;
    let mut redelivered = false;
    loop {
        let pending = redis.pending("task-created", "email-worker");
        redelivered |= pending.iter().any(|(_, deliveries)| *deliveries > 1);
        if pending.is_empty() && sink.count() >= EMAILS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {EMAILS} emails, {} events unacknowledged",
            sink.count(),
            pending.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(redelivered, "no event was redelivered during the backlog");
    // The first attempt of an event acknowledges it, but a redelivered copy may still be waiting
    // for a permit inside the worker: a graceful stop lets every delivery in progress finish.
    app.stop().await;

    let mut per_recipient = BTreeMap::<String, usize>::new();
    for mail in sink.received() {
        for to in mail.to {
            *per_recipient.entry(to).or_default() += 1;
        }
    }
    let twice: Vec<_> = per_recipient.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(per_recipient.len(), EMAILS);
}
