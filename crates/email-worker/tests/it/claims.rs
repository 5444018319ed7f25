//! Claims taken a batch at a time: one state transaction per group of triggers, whose result
//! tells which claims are ours without reading them back; a batch mixing new events with
//! redeliveries of sent ones sends the new ones only.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use email_worker::ledger::{Claim, Ledger, key_of};
use futures::future::join_all;
use serde_json::json;
use service_testing::{AppBuilder, Cluster, RedisServer};
use support::{SmtpSink, WAIT, resources_dir, settings_for, spawn_app, task_created};
use uuid::Uuid;

const SENT_TTL: Duration = Duration::from_secs(3600);

/// A record as the worker writes it, in `status`.
fn record(status: &str) -> serde_json::Value {
    json!({"status": status, "claim_id": Uuid::new_v4(),
        "updated_at": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        "subject": "New task: earlier"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_claimed_in_one_transaction_and_each_claim_is_told_apart() {
    let redis = RedisServer::start();
    let cluster = Cluster::from_resources(&[redis.resources()]).await.unwrap();
    let dapr = service_testing::sidecar_client(&cluster, "email-worker").await;
    let ledger = Ledger::new(
        dapr.clone(),
        "todo-state".into(),
        Duration::from_secs(60),
        SENT_TTL,
    );
    let [new, sent, held, other] = [(); 4].map(|()| Uuid::now_v7());
    // A sent mark (with its long TTL) and another attempt's live claim, as the worker writes them.
    for (id, status) in [(sent, "sent"), (held, "sending")] {
        let item = dapr_http::SaveItem::new(key_of(id), &record(status))
            .unwrap()
            .first_write()
            .ttl(SENT_TTL);
        dapr.save_state("todo-state", &[item]).await.unwrap();
    }

    let claims = ledger.claim_batch(&[new, sent, held, other]).await;
    let [
        Ok(Claim::Acquired(ours)),
        Ok(Claim::AlreadySent(mark)),
        Ok(Claim::InFlight),
        Ok(Claim::Acquired(also_ours)),
    ] = <[_; 4]>::try_from(claims).unwrap()
    else {
        panic!("wrong claims");
    };
    assert_eq!(mark.subject.as_deref(), Some("New task: earlier"));

    // The etags the claims were given without a read are the stored ones: the sent mark and the
    // release (both conditional on them) go through.
    ledger
        .mark_sent(&ours, "New task: x", Utc::now())
        .await
        .unwrap();
    ledger.release(also_ours).await.unwrap();
    let again = ledger.claim_batch(&[new, other]).await;
    assert!(
        matches!(
            again.as_slice(),
            [Ok(Claim::AlreadySent(_)), Ok(Claim::Acquired(_))]
        ),
        "{again:?}"
    );

    // The failed claim on the sent mark did not shorten the mark's life (Redis applies a
    // transaction's EXPIRE even after the write before it failed).
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("email-worker||{}", key_of(sent)))
        .query(
            &mut redis::Client::open(format!("redis://{}/", redis.address()))
                .and_then(|c| c.get_connection())
                .unwrap(),
        )
        .unwrap();
    assert!(ttl > 3000, "the sent mark expires in {ttl} s");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_mixing_new_and_already_sent_events_sends_only_the_new_ones() {
    let (app, sink) = spawn_app().await;
    let events: Vec<_> = (0..12)
        .map(|i| task_created(&format!("b{i}@example.com"), &format!("Batch {i}"), ""))
        .collect();
    // Every third event was sent before (a redelivery, as far as the worker can tell).
    let dapr = app.dapr();
    for event in events.iter().step_by(3) {
        let item = dapr_http::SaveItem::new(key_of(event.event_id), &record("sent"))
            .unwrap()
            .first_write()
            .ttl(SENT_TTL);
        dapr.save_state("todo-state", &[item]).await.unwrap();
    }
    // Published at once, so that the sidecar delivers them in batches.
    join_all(events.iter().map(|e| app.publish(e))).await;
    app.cluster
        .wait_for_published("notification-sent", events.len(), WAIT)
        .await
        .unwrap();

    let recipients: BTreeSet<String> = sink
        .received()
        .into_iter()
        .flat_map(|mail| mail.to)
        .collect();
    let expected: BTreeSet<String> = (0..12)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("b{i}@example.com"))
        .collect();
    assert_eq!(recipients, expected);
    assert_eq!(sink.received().len(), expected.len(), "each new email once");
    let metrics = app.metrics().await;
    assert_eq!(
        service_testing::counter(
            &metrics,
            "emails_duplicate_total",
            &[("event_type", "task-created")]
        ),
        4.0,
        "{metrics}"
    );
    app.stop().await;
}

/// State calls per email, counted at a proxy between the worker and its sidecar: a group's
/// claims share one transaction and none is read back, so a burst costs fewer than two state
/// calls per email (a claim, its read-back and the sent mark made three).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_costs_fewer_than_two_state_calls_per_email_and_reads_nothing() {
    const EMAILS: usize = 40;
    let sink = SmtpSink::start().unwrap();
    let cluster = Cluster::from_resources(&[resources_dir().path()])
        .await
        .unwrap();
    let app = AppBuilder::<email_worker::Application>::new(settings_for(sink.port()))
        .with_cluster(cluster)
        .proxied()
        .start()
        .await;
    let events: Vec<_> = (0..EMAILS)
        .map(|i| task_created(&format!("s{i}@example.com"), &format!("Burst {i}"), ""))
        .collect();
    join_all(events.iter().map(|e| app.publish(e))).await;
    app.cluster
        .wait_for_published("notification-sent", EMAILS, WAIT)
        .await
        .unwrap();
    assert_eq!(sink.received().len(), EMAILS);

    let requests = app.proxy.as_ref().unwrap().requests();
    let state: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains("/v1.0/state/"))
        .collect();
    let transactions = state.iter().filter(|r| r.ends_with("/transaction")).count();
    println!(
        "{EMAILS} emails: {} state calls ({transactions} claim transactions), {:.2} per email",
        state.len(),
        state.len() as f64 / EMAILS as f64
    );
    assert!(
        !state.iter().any(|r| r.starts_with("GET")),
        "no claim is read back: {state:?}"
    );
    assert!(state.len() < 2 * EMAILS, "{state:?}");
    app.stop().await;
}
