//! Replicas racing for the same trail: no in-process lock helps here, only the etag-checked
//! appends and the dedupe markers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use audit_logger::entry::EntryDraft;
use audit_logger::trail::{Appended, TrailId, TrailStore};
use chrono::Utc;
use futures::future::join_all;
use support::*;

fn draft(life: &mut TaskFixture) -> EntryDraft {
    let envelope = serde_json::to_value(life.update()).unwrap();
    EntryDraft::from_envelope("task-updated", "", "task-api", &envelope, Utc::now()).unwrap()
}

/// Four independent stores (as four replicas would have) on the same sidecar.
fn replicas(app: &TestApp, chunk_size: usize) -> Vec<TrailStore> {
    (0..4)
        .map(|_| {
            TrailStore::new(
                app.dapr(),
                events::STATE_STORE_NAME.into(),
                chain_key(),
                chunk_size,
                10_000,
            )
        })
        .collect()
}

#[tokio::test]
async fn racing_replicas_append_every_entry_once_in_one_chain() {
    let app = spawn_app().await;
    // One entry per chunk: every append creates a chunk, and verification reads the 40 chunks
    // in several bulk batches.
    let stores = replicas(&app, 1);
    let mut life = TaskFixture::new();
    let trail = TrailId::Task(life.id().to_string());
    let drafts: Vec<EntryDraft> = (0..40).map(|_| draft(&mut life)).collect();
    let results = join_all(
        drafts
            .iter()
            .enumerate()
            .map(|(i, d)| stores[i % stores.len()].append(&trail, d.clone())),
    )
    .await;
    assert!(
        results.iter().all(|r| matches!(r, Ok(Appended::New(_)))),
        "{results:?}"
    );
    let result = app.get(&format!("/audit/tasks/{}/verify", life.id())).await;
    assert_eq!(result["valid"], true, "{result}");
    assert_eq!(result["entries"], 40);
    let entries = app.trail(&format!("/audit/tasks/{}", life.id())).await;
    let mut ids: Vec<&str> = entries
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    assert!(
        app.cluster
            .state_of(APP, &trail.chunk_key(39))
            .await
            .is_some()
    );
    // The replicas did collide (so the etag checks were exercised, not bypassed by luck).
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let conflicts: f64 = metrics
        .lines()
        .find(|l| l.starts_with("audit_append_conflicts_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(conflicts > 0.0, "{metrics}");
}

#[tokio::test]
async fn the_same_entry_racing_on_every_replica_is_written_once() {
    let app = spawn_app().await;
    let stores = replicas(&app, 3);
    let mut life = TaskFixture::new();
    let trail = TrailId::Task(life.id().to_string());
    // Fill a few chunks first so the race happens at a chunk boundary (chunks of 3).
    for _ in 0..5 {
        stores[0].append(&trail, draft(&mut life)).await.unwrap();
    }
    for round in 0..5 {
        let same = draft(&mut life);
        let other = draft(&mut life);
        let mut racers: Vec<_> = (0..12)
            .map(|i| stores[i % stores.len()].append(&trail, same.clone()))
            .collect();
        racers.push(stores[round % 4].append(&trail, other.clone()));
        let results = join_all(racers).await;
        let new = results
            .iter()
            .filter(|r| matches!(r, Ok(Appended::New(e)) if e.draft.entry_id == same.entry_id))
            .count();
        assert_eq!(new, 1, "round {round}: {results:?}");
        assert!(results.iter().all(Result::is_ok));
    }
    let result = app.get(&format!("/audit/tasks/{}/verify", life.id())).await;
    assert_eq!(result["valid"], true, "{result}");
    assert_eq!(result["entries"], 5 + 5 * 2);
}
