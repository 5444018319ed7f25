//! The REST API end to end: real HTTP to the app, real HTTP from the app to an in-process sidecar.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use serde_json::{Value, json};
use support::{TaskApi as _, fields, problem, spawn_app};

#[tokio::test]
async fn create_publishes_exactly_the_expected_envelope() {
    let app = spawn_app().await;
    let user = app.user();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = app
        .client
        .post(app.url("/api/tasks"))
        .bearer_auth(&user.token)
        .header("x-correlation-id", "corr-create-1")
        .header("traceparent", traceparent)
        .json(&json!({
            "title": "  Write the report ",
            "description": "quarterly",
            "priority": "high",
            "due_date": "2030-01-01T09:00:00+01:00"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-correlation-id"], "corr-create-1");
    assert_eq!(response.headers()["etag"], "\"1\"");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let task: Value = response.json().await.unwrap();
    let id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/tasks/{id}"));
    assert_eq!(task["title"], "Write the report");
    assert_eq!(task["status"], "open");
    assert_eq!(task["version"], 1);

    let events = app
        .cluster
        .wait_for_published("task-created", 1, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let ce = &events[0];
    let envelope = &ce["data"];
    assert_eq!(ce["id"], envelope["event_id"], "CloudEvent id = event id");
    assert_eq!(ce["type"], "task-created");
    assert_eq!(ce["source"], "task-api");
    assert_eq!(ce["datacontenttype"], "application/json");
    assert_eq!(ce["topic"], "task-created");
    assert_eq!(ce["pubsubname"], "todo-pubsub");
    let trace_id = ce["traceparent"].as_str().unwrap_or_default();
    assert!(
        trace_id.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
        "trace continued: {trace_id}"
    );
    assert_eq!(envelope["event_type"], "task-created");
    assert_eq!(envelope["schema_version"], 1);
    assert_eq!(envelope["correlation_id"], "corr-create-1");
    assert_eq!(envelope["source"], "task-api");
    let snapshot = &envelope["data"]["task"];
    assert_eq!(snapshot["task_id"], id.as_str());
    assert_eq!(snapshot["user_id"], user.id.to_string());
    assert_eq!(snapshot["user_email"], user.email.as_str());
    assert_eq!(snapshot["title"], "Write the report");
    assert_eq!(snapshot["priority"], "high");
    assert_eq!(snapshot["due_date"], "2030-01-01T08:00:00.000000Z");
    assert_eq!(snapshot["version"], 1);
    // Typed decoding as a consumer would do it.
    let body = serde_json::to_vec(ce).unwrap();
    let delivery = events::decode::<events::TaskCreated>(&body).unwrap();
    assert_eq!(delivery.envelope.data.task.task_id.to_string(), id);
    assert_eq!(
        delivery.envelope.partition_key().as_deref(),
        Some(id.as_str())
    );
    app.stop().await;
}

#[tokio::test]
async fn update_complete_delete_publish_versioned_events() {
    let app = spawn_app().await;
    let user = app.user();
    let task = app.create_ok(&user, "lifecycle").await;
    let id = task["id"].as_str().unwrap().to_owned();

    let response = app
        .patch(
            &user,
            &id,
            json!({"title": "renamed", "due_date": "2031-05-01T00:00:00Z"}),
            Some("\"1\""),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["title"], "renamed");

    let response = app
        .client
        .post(app.url(&format!("/api/tasks/{id}/complete")))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"3\"");
    let completed: Value = response.json().await.unwrap();
    assert_eq!(completed["status"], "completed");

    let response = app
        .client
        .delete(app.url(&format!("/api/tasks/{id}")))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    problem(
        app.get(&user, &format!("/api/tasks/{id}")).await,
        404,
        "not-found",
    )
    .await;

    let updated = app.wait_events("task-updated", &id, 1).await;
    let completed = app.wait_events("task-completed", &id, 1).await;
    let deleted = app.wait_events("task-deleted", &id, 1).await;
    assert_eq!(updated[0]["data"]["data"]["task"]["version"], 2);
    let mut changed: Vec<String> =
        serde_json::from_value(updated[0]["data"]["data"]["changed_fields"].clone()).unwrap();
    changed.sort();
    assert_eq!(changed, ["due_date", "title"]);
    assert_eq!(completed[0]["data"]["data"]["task"]["version"], 3);
    assert_eq!(completed[0]["type"], "task-completed");
    assert_eq!(deleted[0]["data"]["data"]["task"]["version"], 4);
    assert_eq!(deleted[0]["type"], "task-deleted");
    assert_eq!(app.events_of("task-created", &id).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn stale_if_match_is_412_and_changes_nothing() {
    let app = spawn_app().await;
    let user = app.user();
    let id = app.create_ok(&user, "etag").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ok = app
        .patch(&user, &id, json!({"priority": "low"}), Some("\"1\""))
        .await;
    assert_eq!(ok.status(), 200);
    let stale = app
        .patch(&user, &id, json!({"priority": "urgent"}), Some("\"1\""))
        .await;
    let body = problem(stale, 412, "precondition-failed").await;
    assert_eq!(fields(&body), ["if-match"]);
    let current = app.get(&user, &format!("/api/tasks/{id}")).await;
    assert_eq!(current.headers()["etag"], "\"2\"");
    let current: Value = current.json().await.unwrap();
    assert_eq!(current["priority"], "low");
    assert_eq!(app.wait_events("task-updated", &id, 1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn users_cannot_see_or_change_each_others_tasks() {
    let app = spawn_app().await;
    let alice = app.user();
    let bob = app.user();
    let id = app.create_ok(&alice, "alice's").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/tasks/{id}");
    problem(app.get(&bob, &path).await, 404, "not-found").await;
    problem(
        app.patch(&bob, &id, json!({"title": "mine"}), None).await,
        404,
        "not-found",
    )
    .await;
    let delete = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    problem(delete, 404, "not-found").await;
    let complete = app
        .client
        .post(app.url(&format!("{path}/complete")))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    problem(complete, 404, "not-found").await;
    let bobs: Value = app.get(&bob, "/api/tasks").await.json().await.unwrap();
    assert_eq!(bobs["items"].as_array().unwrap().len(), 0);
    let still: Value = app.get(&alice, &path).await.json().await.unwrap();
    assert_eq!(still["title"], "alice's");
    assert_eq!(still["version"], 1);
    app.stop().await;
}

#[tokio::test]
async fn list_filters_and_paginates_without_duplicates_or_misses() {
    let app = spawn_app().await;
    let user = app.user();
    let other = app.user();
    app.create_ok(&other, "not mine").await;
    let mut created = Vec::new();
    for i in 0..23 {
        let priority = if i % 3 == 0 { "high" } else { "low" };
        let due = if i % 2 == 0 {
            json!("2030-01-01T00:00:00Z")
        } else {
            json!("2040-01-01T00:00:00Z")
        };
        let response = app
            .create(
                &user,
                json!({"title": format!("task {i}"), "priority": priority, "due_date": due}),
            )
            .await;
        assert_eq!(response.status(), 201);
        let task: Value = response.json().await.unwrap();
        created.push(task["id"].as_str().unwrap().to_owned());
    }
    // Complete two tasks.
    for id in &created[..2] {
        let r = app
            .client
            .post(app.url(&format!("/api/tasks/{id}/complete")))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    // Page through everything, 5 at a time.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/api/tasks?limit=5".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: Value = app.get(&user, &path).await.json().await.unwrap();
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    let mut expected = created.clone();
    expected.reverse(); // newest first
    assert_eq!(seen, expected, "every task once, in a stable order");

    // Filters.
    let high: Value = app
        .get(&user, "/api/tasks?priority=high&limit=200")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(high["items"].as_array().unwrap().len(), 8);
    assert!(
        high["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["priority"] == "high")
    );
    let done: Value = app
        .get(&user, "/api/tasks?status=completed")
        .await
        .json()
        .await
        .unwrap();
    let done_ids: Vec<&str> = done["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(done_ids, [created[1].as_str(), created[0].as_str()]);
    let soon: Value = app
        .get(
            &user,
            "/api/tasks?due_before=2035-01-01T00:00:00Z&status=open",
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        soon["items"].as_array().unwrap().len(),
        11,
        "12 early tasks minus 1 completed"
    );

    let bad = app.get(&user, "/api/tasks?limit=500&status=finished").await;
    let body = problem(bad, 400, "validation-error").await;
    assert_eq!(fields(&body), ["limit", "status"]);
    app.stop().await;
}

#[tokio::test]
async fn invalid_bodies_are_problems_naming_the_field() {
    let app = spawn_app().await;
    let user = app.user();
    let cases = [
        (json!({"title": "x", "colour": "red"}), "colour"),
        (json!({"title": "x".repeat(201)}), "title"),
        (json!({"title": "   "}), "title"),
        (
            json!({"title": "x", "due_date": "2030-01-01 09:00"}),
            "due_date",
        ),
        (
            json!({"title": "x", "due_date": "2030-01-01T09:00:00"}),
            "due_date",
        ),
        (json!({"title": "x", "priority": "whenever"}), "priority"),
        (
            json!({"title": "x", "description": "d".repeat(10_001)}),
            "description",
        ),
        (json!({"title": 42}), "title"),
    ];
    for (body, field) in cases {
        let response = app.create(&user, body.clone()).await;
        let problem = problem(response, 400, "validation-error").await;
        assert_eq!(fields(&problem), [field], "{body}");
    }
    // Syntax error.
    let response = app
        .client
        .post(app.url("/api/tasks"))
        .bearer_auth(&user.token)
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    problem(response, 400, "malformed-json").await;
    // Wrong media type.
    let response = app
        .client
        .post(app.url("/api/tasks"))
        .bearer_auth(&user.token)
        .header("content-type", "text/plain")
        .body("{\"title\": \"x\"}")
        .send()
        .await
        .unwrap();
    let body = problem(response, 415, "unsupported-media-type").await;
    assert_eq!(fields(&body), ["content-type"]);
    // Too large.
    let response = app
        .create(
            &user,
            json!({"title": "x", "description": "d".repeat(70 * 1024)}),
        )
        .await;
    problem(response, 413, "payload-too-large").await;
    // Patch: unknown field and a request to complete through PATCH.
    let id = app.create_ok(&user, "ok").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = problem(
        app.patch(&user, &id, json!({"owner": "me"}), None).await,
        400,
        "validation-error",
    )
    .await;
    assert_eq!(fields(&body), ["owner"]);
    let body = problem(
        app.patch(&user, &id, json!({"status": "completed"}), None)
            .await,
        400,
        "validation-error",
    )
    .await;
    assert_eq!(fields(&body), ["status"]);
    // Nothing but the one valid task produced an event.
    assert_eq!(app.cluster.published("task-created").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn missing_expired_and_forged_tokens_are_401() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/api/tasks")).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    problem(response, 401, "unauthorized").await;

    // Signed with the right key but already expired (well beyond the leeway).
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": uuid::Uuid::new_v4().to_string(), "email": "a@example.com",
                "exp": chrono::Utc::now().timestamp() - 3600}),
        &jsonwebtoken::EncodingKey::from_secret(support::SECRET.as_bytes()),
    )
    .unwrap();
    let response = app
        .client
        .get(app.url("/api/tasks"))
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    let body = problem(response, 401, "unauthorized").await;
    assert!(body["detail"].as_str().unwrap().contains("expired"));

    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": uuid::Uuid::new_v4().to_string(), "email": "a@example.com",
                "exp": chrono::Utc::now().timestamp() + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(b"some-other-secret-of-sufficient-length!!"),
    )
    .unwrap();
    let response = app
        .client
        .post(app.url("/api/tasks"))
        .bearer_auth(&forged)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    problem(response, 401, "unauthorized").await;

    let bad_email = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": uuid::Uuid::new_v4().to_string(), "email": "not-an-address",
                "exp": chrono::Utc::now().timestamp() + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(support::SECRET.as_bytes()),
    )
    .unwrap();
    let response = app
        .client
        .get(app.url("/api/tasks"))
        .bearer_auth(&bad_email)
        .send()
        .await
        .unwrap();
    problem(response, 401, "unauthorized").await;
    assert!(app.cluster.published("task-created").is_empty());
    app.stop().await;
}

/// A token signed with the right key carrying `claims` (plus `sub` and `email`).
fn signed(claims: Value) -> String {
    let mut all = json!({"sub": uuid::Uuid::new_v4().to_string(), "email": "a@example.com"});
    all.as_object_mut()
        .unwrap()
        .extend(claims.as_object().unwrap().clone());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &all,
        &jsonwebtoken::EncodingKey::from_secret(support::SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn tokens_not_yet_valid_or_living_too_long_are_401() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();
    let cases = [
        // Not valid for another 10 minutes (beyond the 30 s leeway).
        (
            json!({"nbf": now + 600, "iat": now, "exp": now + 3600}),
            "not valid yet",
        ),
        // 30 days between issue and expiry: above the 24 h maximum.
        (
            json!({"iat": now, "exp": now + 30 * 86_400}),
            "longer than the 86400s",
        ),
        // No `iat`: the remaining lifetime counts.
        (json!({"exp": now + 30 * 86_400}), "longer than the 86400s"),
    ];
    for (claims, reason) in cases {
        let response = app
            .client
            .get(app.url("/api/tasks"))
            .bearer_auth(signed(claims.clone()))
            .send()
            .await
            .unwrap();
        let body = problem(response, 401, "unauthorized").await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(reason), "{claims}: {detail}");
    }
    // The same shapes within the limits are accepted.
    let fine = signed(json!({"nbf": now - 10, "iat": now, "exp": now + 3600}));
    let response = app
        .client
        .get(app.url("/api/tasks"))
        .bearer_auth(fine)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn operational_endpoints() {
    let app = spawn_app().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert!(health.status().is_success());
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert!(ready.status().is_success());
    let user = app.user();
    app.create_ok(&user, "metrics").await;
    let response = app.client.get(app.url("/api/tasks")).send().await.unwrap();
    assert!(
        response.headers().contains_key("x-correlation-id"),
        "generated when absent"
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("task_api_http_requests_total"),
        "{metrics}"
    );
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/api/tasks", "/api/tasks/{id}", "/api/tasks/{id}/complete"] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(doc["components"]["schemas"].get("CreateTask").is_some());
    let unknown = app.client.get(app.url("/nope")).send().await.unwrap();
    problem(unknown, 404, "not-found").await;
    app.stop().await;
}

#[tokio::test]
async fn readyz_fails_when_the_sidecar_is_gone() {
    let app = spawn_app().await;
    let support::TestApp {
        sidecar,
        base,
        client,
        cluster,
        ..
    } = app;
    sidecar.shutdown().await;
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    problem(ready, 503, "unavailable").await;
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert!(health.status().is_success());
    // Without the sidecar a write cannot be stored: 503 problem, not a hang or a panic.
    let user_token = task_api::auth::issue_token(
        &support::settings(&[]),
        uuid::Uuid::new_v4(),
        "a@example.com",
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    let response = client
        .post(format!("{base}/api/tasks"))
        .bearer_auth(user_token)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    problem(response, 503, "unavailable").await;
    cluster.shutdown().await;
}
