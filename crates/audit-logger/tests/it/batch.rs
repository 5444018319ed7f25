//! Batch appends: one batch of deliveries recorded with one append per trail, keeping the chain,
//! the dedupe and the order of a one-by-one append.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use audit_logger::append_many::TrailBatch;
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

/// `append_many` over trails in every state: a new trail, one whose chunk has room, one whose
/// batch spills into a second chunk, one whose chunk is full, one holding a draft already.
/// Each gets each entry once, in one chain, with the head hint of its end.
#[tokio::test]
async fn appending_to_many_trails_at_once_keeps_each_trail_as_a_one_trail_append_would() {
    let app = spawn_app().await;
    let trails = store(&app, 3);
    let mut lives: Vec<TaskFixture> = (0..5).map(|_| TaskFixture::new()).collect();
    let ids: Vec<TrailId> = lives
        .iter()
        .map(|l| TrailId::Task(l.id().to_string()))
        .collect();
    let drafts: Vec<Vec<EntryDraft>> = lives
        .iter_mut()
        .map(|life| (0..4).map(|_| draft(life)).collect())
        .collect();
    // Before: trail 1 holds one entry, trail 3 a full chunk, trail 4 the draft sent again.
    trails.append(&ids[1], drafts[1][0].clone()).await.unwrap();
    trails
        .append_batch(&ids[3], drafts[3][..3].to_vec())
        .await
        .unwrap();
    trails.append(&ids[4], drafts[4][0].clone()).await.unwrap();

    let batches = vec![
        TrailBatch {
            trail: ids[0].clone(),
            drafts: drafts[0][..2].to_vec(),
            from: 0,
        },
        TrailBatch {
            trail: ids[1].clone(),
            drafts: drafts[1][1..3].to_vec(),
            from: 0,
        },
        TrailBatch {
            trail: ids[2].clone(),
            drafts: drafts[2].clone(),
            from: 0,
        },
        TrailBatch {
            trail: ids[3].clone(),
            drafts: vec![drafts[3][3].clone()],
            from: 0,
        },
        TrailBatch {
            trail: ids[4].clone(),
            drafts: vec![
                drafts[4][0].clone(),
                drafts[4][1].clone(),
                drafts[4][0].clone(),
            ],
            from: 0,
        },
    ];
    let outcomes = trails.append_many(batches).await;
    let outcomes: Vec<_> = outcomes.into_iter().map(Result::unwrap).collect();
    let new = |i: usize| outcomes[i].0.iter().filter(|a| is_new(a)).count();
    assert_eq!([new(0), new(1), new(2), new(3), new(4)], [2, 2, 4, 1, 1]);
    assert_eq!(outcomes[4].0[0], Appended::Duplicate { seq: 0 });
    assert_eq!(outcomes[4].0[2], Appended::Duplicate { seq: 0 });
    let counts: Vec<Option<u64>> = outcomes
        .iter()
        .map(|(_, h)| h.as_ref().map(|h| h.count))
        .collect();
    assert_eq!(
        counts,
        [Some(2), Some(3), Some(4), Some(4), Some(2)],
        "each head names its trail's end"
    );
    assert_eq!(
        outcomes[2].1.as_ref().map(|h| h.chunk),
        Some(1),
        "4 entries spill into chunk 1"
    );
    for (life, entries) in lives.iter().zip([2, 3, 4, 4, 2]) {
        let result = app.get(&format!("/audit/tasks/{}/verify", life.id())).await;
        assert_eq!(result["valid"], true, "{result}");
        assert_eq!(result["entries"], entries, "{result}");
    }
}

/// Replicas appending overlapping batches to the same trails at once: a replica's bulk write
/// fails when another wrote one of its chunks first, after some of its chunks landed; those are
/// told apart from the ones that did not (which append again), so every entry is new to exactly
/// one replica and each trail is one chain.
#[tokio::test]
async fn racing_replicas_appending_to_many_trails_append_every_entry_once() {
    let app = spawn_app().await;
    let stores: Vec<TrailStore> = (0..3).map(|_| store(&app, 50)).collect();
    let mut lives: Vec<TaskFixture> = (0..6).map(|_| TaskFixture::new()).collect();
    let ids: Vec<TrailId> = lives
        .iter()
        .map(|l| TrailId::Task(l.id().to_string()))
        .collect();
    let mut appended = vec![0usize; ids.len()];
    for _round in 0..8 {
        let envelopes: Vec<Vec<serde_json::Value>> = lives
            .iter_mut()
            .map(|life| {
                (0..3)
                    .map(|_| serde_json::to_value(life.update()).unwrap())
                    .collect()
            })
            .collect();
        // Replica r gets every trail but the r-th pair, so each trail is raced by two of them;
        // each replica records the events at its own time, as replicas do.
        let recorded = Utc::now();
        let runs = stores.iter().enumerate().map(|(r, s)| {
            let at = recorded + chrono::Duration::milliseconds(i64::try_from(r).unwrap());
            let trails: Vec<usize> = (0..ids.len()).filter(|t| t / 2 != r).collect();
            let batches: Vec<TrailBatch> = trails
                .iter()
                .map(|&t| TrailBatch {
                    trail: ids[t].clone(),
                    drafts: envelopes[t]
                        .iter()
                        .map(|e| {
                            EntryDraft::from_envelope("task-updated", "", "task-api", e, at)
                                .unwrap()
                        })
                        .collect(),
                    from: 0,
                })
                .collect();
            async move { (trails, s.append_many(batches).await) }
        });
        for (trails, outcomes) in join_all(runs).await {
            for (t, outcome) in trails.into_iter().zip(outcomes) {
                appended[t] += outcome.unwrap().0.iter().filter(|a| is_new(a)).count();
            }
        }
    }
    assert_eq!(
        appended,
        vec![24; ids.len()],
        "each entry new to exactly one replica"
    );
    for life in &lives {
        let result = app.get(&format!("/audit/tasks/{}/verify", life.id())).await;
        assert_eq!(result["valid"], true, "{result}");
        assert_eq!(result["entries"], 24);
    }
}
