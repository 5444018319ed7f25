//! Batch appends: one batch of deliveries recorded with one append per trail, keeping the chain,
//! the dedupe and the order of a one-by-one append.
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

fn store(app: &TestApp, chunk_size: usize) -> TrailStore {
    TrailStore::new(
        app.dapr(),
        events::STATE_STORE_NAME.into(),
        chain_key(),
        chunk_size,
        10_000,
    )
}

fn is_new(a: &Appended) -> bool {
    matches!(a, Appended::New(_))
}

/// Duplicates within a batch and across batches are appended once; a batch larger than the
/// room in the tail chunk continues in new chunks; the chain verifies.
#[tokio::test]
async fn a_batch_with_duplicates_spanning_chunks_appends_each_entry_once() {
    let app = spawn_app().await;
    let trails = store(&app, 2);
    let mut life = TaskFixture::new();
    let trail = TrailId::Task(life.id().to_string());
    let d: Vec<EntryDraft> = (0..5).map(|_| draft(&mut life)).collect();

    let first = trails
        .append_batch(
            &trail,
            vec![d[0].clone(), d[1].clone(), d[0].clone(), d[2].clone()],
        )
        .await
        .unwrap();
    assert!(
        is_new(&first[0]) && is_new(&first[1]) && is_new(&first[3]),
        "{first:?}"
    );
    assert_eq!(
        first[2],
        Appended::Duplicate { seq: 0 },
        "the copy in the batch"
    );
    let seqs: Vec<u64> = [&first[0], &first[1], &first[3]]
        .iter()
        .map(|a| match a {
            Appended::New(e) => e.seq,
            Appended::Duplicate { seq } => *seq,
        })
        .collect();
    assert_eq!(seqs, [0, 1, 2], "in batch order");

    // A redelivered batch: the known entries are found, the new ones appended after them.
    let second = trails
        .append_batch(
            &trail,
            vec![d[1].clone(), d[3].clone(), d[2].clone(), d[4].clone()],
        )
        .await
        .unwrap();
    assert_eq!(second[0], Appended::Duplicate { seq: 1 });
    assert_eq!(second[2], Appended::Duplicate { seq: 2 });
    assert!(is_new(&second[1]) && is_new(&second[3]), "{second:?}");

    // A one-by-one append of a batched entry is a duplicate too: the two paths share markers.
    assert_eq!(
        trails.append(&trail, d[3].clone()).await.unwrap(),
        Appended::Duplicate { seq: 3 }
    );
    let result = app.get(&format!("/audit/tasks/{}/verify", life.id())).await;
    assert_eq!(result["valid"], true, "{result}");
    assert_eq!(result["entries"], 5);
    assert!(
        app.cluster
            .state_of(APP, &trail.chunk_key(2))
            .await
            .is_some(),
        "5 entries in chunks of 2"
    );
}

/// Replicas appending overlapping batches to the same trail: every entry once, one chain.
#[tokio::test]
async fn racing_batches_append_every_entry_once_in_one_chain() {
    let app = spawn_app().await;
    let stores: Vec<TrailStore> = (0..3).map(|_| store(&app, 4)).collect();
    let mut life = TaskFixture::new();
    let trail = TrailId::Task(life.id().to_string());
    let drafts: Vec<EntryDraft> = (0..24).map(|_| draft(&mut life)).collect();
    // Each replica gets two thirds of the entries, so every entry is raced by two of them.
    let batches: Vec<Vec<EntryDraft>> = (0..3)
        .map(|r| {
            drafts
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 3 != r)
                .map(|(_, d)| d.clone())
                .collect()
        })
        .collect();
    let results = join_all(
        stores
            .iter()
            .zip(&batches)
            .map(|(s, b)| s.append_batch(&trail, b.clone())),
    )
    .await;
    let new: usize = results
        .iter()
        .map(|r| r.as_ref().unwrap().iter().filter(|a| is_new(a)).count())
        .sum();
    assert_eq!(new, 24, "each entry appended by exactly one replica");
    let result = app.get(&format!("/audit/tasks/{}/verify", life.id())).await;
    assert_eq!(result["valid"], true, "{result}");
    assert_eq!(result["entries"], 24);
}

/// Events of two tasks of one user delivered as one batch: each task's trail and the user's
/// trail get their entries, once, even when the sidecar delivers every event twice.
#[tokio::test]
async fn a_batch_spanning_two_trails_is_recorded_once_per_trail() {
    let app = spawn_app().await;
    app.cluster.faults().duplicate_deliveries(true);
    let mut a = TaskFixture::new();
    let mut b = TaskFixture::new();
    b.snapshot.user_id = a.user();
    let producer = app.producer("task-api").await;
    for _ in 0..3 {
        publish(&producer, &a.update()).await;
        publish(&producer, &b.update()).await;
    }
    let user_path = format!("/audit/users/{}", a.user());
    app.wait_for_entries(&user_path, 6).await;
    for task in [&a, &b] {
        let entries = app
            .wait_for_entries(&format!("/audit/tasks/{}", task.id()), 3)
            .await;
        assert_eq!(entries.len(), 3, "no doubled entry");
        let result = app.get(&format!("/audit/tasks/{}/verify", task.id())).await;
        assert_eq!(result["valid"], true, "{result}");
    }
    let user = app.trail(&user_path).await;
    assert_eq!(user.len(), 6, "no doubled entry in the user's trail");
}

/// A chunk read ahead of a batch (as `record_batch` reads every trail's chunk in one call) that
/// another append moved before the batch took the trail: the batch still finds the entry the
/// other append wrote, appends only its new ones, and leaves one chain whose head hint, written
/// afterwards for the whole batch, names its end.
#[tokio::test]
async fn a_batch_whose_chunk_moved_after_it_was_read_ahead_appends_each_entry_once() {
    let app = spawn_app().await;
    let ours = store(&app, 4);
    let other = store(&app, 4);
    let mut life = TaskFixture::new();
    let trail = TrailId::Task(life.id().to_string());
    let d: Vec<EntryDraft> = (0..4).map(|_| draft(&mut life)).collect();

    // Read ahead while the chunk does not exist yet; another replica then creates it.
    let ahead = ours.read_ahead(&[(&trail, 0)]).await.unwrap();
    assert!(matches!(
        other.append(&trail, d[0].clone()).await.unwrap(),
        Appended::New(_)
    ));
    let (appended, head) = ours
        .append_batch_deferred(
            &trail,
            vec![d[0].clone(), d[1].clone()],
            Some(0),
            ahead.into_iter().next().flatten(),
        )
        .await
        .unwrap();
    assert_eq!(
        appended[0],
        Appended::Duplicate { seq: 0 },
        "found, not appended again"
    );
    assert!(is_new(&appended[1]), "{appended:?}");

    // Read ahead with the chunk present; the other replica appends to it before the batch.
    let ahead = ours.read_ahead(&[(&trail, 0)]).await.unwrap();
    assert!(matches!(
        other.append(&trail, d[2].clone()).await.unwrap(),
        Appended::New(_)
    ));
    let (appended, head_after) = ours
        .append_batch_deferred(
            &trail,
            vec![d[2].clone(), d[3].clone()],
            Some(0),
            ahead.into_iter().next().flatten(),
        )
        .await
        .unwrap();
    assert_eq!(appended[0], Appended::Duplicate { seq: 2 });
    assert!(is_new(&appended[1]), "{appended:?}");
    assert_eq!(head.map(|h| h.count), Some(2));

    let head_after = head_after.expect("the batch appended, so it has a head to write");
    assert_eq!(head_after.count, 4);
    ours.write_heads(&[(trail.clone(), head_after.clone())])
        .await;
    assert_eq!(ours.head(&trail).await.unwrap(), Some(head_after));
    let result = app.get(&format!("/audit/tasks/{}/verify", life.id())).await;
    assert_eq!(result["valid"], true, "{result}");
    assert_eq!(result["entries"], 4);
}
