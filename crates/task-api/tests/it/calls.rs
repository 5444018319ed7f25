//! What a change costs on the request path, counted at a proxy in front of the sidecar: a
//! create is one state transaction and one publish, with no read; an update, completion or
//! deletion adds the one read of its task. And what a list shows of changes the index does not
//! have yet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use serde_json::{Value, json};
use support::{TaskApi as _, TestApp, spawn_app_with, spawn_proxied};

/// The sidecar calls of one request, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Calls {
    reads: usize,
    transactions: usize,
    publishes: usize,
}

fn count(lines: &[String]) -> Calls {
    let reads = lines
        .iter()
        .filter(|l| {
            l.starts_with("GET /v1.0/state/") || l.starts_with("POST /v1.0/state/todo-state/bulk")
        })
        .count();
    let transactions = lines.iter().filter(|l| l.ends_with("/transaction")).count();
    let publishes = lines
        .iter()
        .filter(|l| l.starts_with("POST /v1.0/publish/"))
        .count();
    Calls {
        reads,
        transactions,
        publishes,
    }
}

/// The calls `request` made. The outbox's relay, cleaner and lease keeper share the proxy, so a
/// run may count some of theirs too; none of them can make a run count fewer than the
/// request's own, so the fewest over a few runs ([`least`]) is what one request makes.
async fn calls_of(app: &TestApp, request: impl Future<Output = ()>) -> Calls {
    let proxy = app.proxy.as_ref().unwrap();
    let before = proxy.requests().len();
    request.await;
    count(&proxy.requests()[before..])
}

fn least(runs: &[Calls]) -> Calls {
    Calls {
        reads: runs.iter().map(|c| c.reads).min().unwrap(),
        transactions: runs.iter().map(|c| c.transactions).min().unwrap(),
        publishes: runs.iter().map(|c| c.publishes).min().unwrap(),
    }
}

async fn send_ok(request: reqwest::RequestBuilder, user: &support::User, status: u16) {
    let response = request.bearer_auth(&user.token).send().await.unwrap();
    assert_eq!(response.status(), status);
}

#[tokio::test]
async fn a_create_is_one_transaction_and_one_publish_and_a_change_adds_one_read() {
    // The relay and the cleaner make calls of their own on the same proxy; neither is needed
    // here, so they run only at start-up, and the fewest calls seen over the runs are the
    // request's own.
    let app = spawn_proxied(&[
        ("OUTBOX_RELAY_INTERVAL", "1h"),
        ("INDEX_PROJECTION_INTERVAL", "1h"),
    ])
    .await;
    let user = app.user();
    let mut ids = Vec::new();
    let mut runs = Vec::new();
    for n in 0..8 {
        let mut id = String::new();
        runs.push(
            calls_of(&app, async {
                let task = app.create_ok(&user, &format!("counted {n}")).await;
                id = task["id"].as_str().unwrap().to_owned();
            })
            .await,
        );
        ids.push(id);
    }
    let none_read = Calls {
        reads: 0,
        transactions: 1,
        publishes: 1,
    };
    assert_eq!(least(&runs), none_read, "per create");
    let one_read = Calls {
        reads: 1,
        ..none_read
    };
    let mut runs = Vec::new();
    for id in &ids {
        let request = app
            .client
            .patch(app.url(&format!("/api/tasks/{id}")))
            .header("if-match", "\"1\"")
            .json(&json!({ "title": "renamed" }));
        runs.push(calls_of(&app, send_ok(request, &user, 200)).await);
    }
    assert_eq!(least(&runs), one_read, "per update");
    let mut runs = Vec::new();
    for id in &ids[..4] {
        let request = app
            .client
            .post(app.url(&format!("/api/tasks/{id}/complete")));
        runs.push(calls_of(&app, send_ok(request, &user, 200)).await);
    }
    assert_eq!(least(&runs), one_read, "per completion");
    let mut runs = Vec::new();
    for id in &ids[4..] {
        let request = app.client.delete(app.url(&format!("/api/tasks/{id}")));
        runs.push(calls_of(&app, send_ok(request, &user, 204)).await);
    }
    assert_eq!(least(&runs), one_read, "per deletion");
    app.stop().await;
}

fn titles(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_list_shows_the_callers_changes_at_once_before_they_are_projected() {
    // Nothing is projected into the index during the test.
    let app = spawn_app_with(&[("INDEX_PROJECTION_INTERVAL", "1h")]).await;
    let user = app.user();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            app.create_ok(&user, &format!("task {n}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let response = app
        .client
        .post(app.url(&format!("/api/tasks/{}/complete", ids[1])))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .client
        .delete(app.url(&format!("/api/tasks/{}", ids[3])))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let heads = (0..16)
        .map(|b| format!("user:{}:tasks:{b}", user.id))
        .collect::<Vec<_>>();
    for key in &heads {
        assert!(
            app.cluster.state_of("task-api", key).await.is_none(),
            "{key} written on the request path"
        );
    }
    let page: Value = app.get(&user, "/api/tasks").await.json().await.unwrap();
    assert_eq!(titles(&page), ["task 4", "task 2", "task 1", "task 0"]);
    let page: Value = app
        .get(&user, "/api/tasks?status=completed")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(titles(&page), ["task 1"]);
    let page: Value = app
        .get(&user, "/api/tasks?limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(titles(&page), ["task 4", "task 2"]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let page: Value = app
        .get(&user, &format!("/api/tasks?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(titles(&page), ["task 1", "task 0"]);
    app.stop().await;
}
