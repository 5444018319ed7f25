//! Concurrent writers never lose a write: etag-checked read-modify-write with bounded retries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::{TaskApi as _, spawn_app};

#[tokio::test]
async fn parallel_patches_are_all_applied_with_gapless_versions() {
    let app = spawn_app().await;
    let user = app.user();
    let id = app.create_ok(&user, "contended").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    const N: usize = 10;
    let patches = (0..N).map(|i| {
        let app = &app;
        let user = &user;
        let id = &id;
        async move {
            let response = app
                .patch(user, id, json!({ "title": format!("title-{i}") }), None)
                .await;
            assert_eq!(response.status(), 200, "patch {i}");
            let task: Value = response.json().await.unwrap();
            task["version"].as_u64().unwrap()
        }
    });
    let versions: BTreeSet<u64> = futures::future::join_all(patches)
        .await
        .into_iter()
        .collect();
    let expected: BTreeSet<u64> = (2..=(N as u64 + 1)).collect();
    assert_eq!(versions, expected, "each patch got its own version");

    let events = app.wait_events("task-updated", &id, N).await;
    assert_eq!(events.len(), N);
    let event_versions: BTreeSet<u64> = events
        .iter()
        .map(|e| e["data"]["data"]["task"]["version"].as_u64().unwrap())
        .collect();
    assert_eq!(event_versions, expected, "one event per version, no gaps");
    let titles: BTreeSet<String> = events
        .iter()
        .map(|e| {
            e["data"]["data"]["task"]["title"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let all: BTreeSet<String> = (0..N).map(|i| format!("title-{i}")).collect();
    assert_eq!(titles, all, "every write was applied");
    let current: Value = app
        .get(&user, &format!("/api/tasks/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(current["version"], N as u64 + 1);
    app.stop().await;
}

#[tokio::test]
async fn parallel_creates_by_one_user_all_reach_the_index() {
    let app = spawn_app().await;
    let user = app.user();
    const N: usize = 12;
    let creates = (0..N).map(|i| {
        let app = &app;
        let user = &user;
        async move {
            app.create_ok(user, &format!("parallel {i}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    });
    let ids: BTreeSet<String> = futures::future::join_all(creates)
        .await
        .into_iter()
        .collect();
    assert_eq!(ids.len(), N);
    let page: Value = app
        .get(&user, "/api/tasks?limit=200")
        .await
        .json()
        .await
        .unwrap();
    let listed: BTreeSet<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ids);
    let events = app
        .cluster
        .wait_for_published("task-created", N, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(events.len(), N);
    app.stop().await;
}
