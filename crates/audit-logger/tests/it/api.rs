//! The admin API: the token, paging, invocation through any sidecar of the run, probes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use serde_json::Value;
use support::*;

async fn recorded_task(app: &TestApp, updates: usize) -> TaskFixture {
    let task_api = app.producer("task-api").await;
    let mut life = TaskFixture::new();
    publish(&task_api, &life.created()).await;
    for _ in 0..updates {
        publish(&task_api, &life.update()).await;
    }
    app.wait_for_entries(&format!("/audit/tasks/{}", life.id()), updates + 1)
        .await;
    life
}

#[tokio::test]
async fn missing_or_wrong_token_is_a_401_problem() {
    let app = spawn_app().await;
    let life = recorded_task(&app, 0).await;
    let paths = [
        format!("/audit/tasks/{}", life.id()),
        format!("/audit/tasks/{}/verify", life.id()),
        format!("/audit/users/{}", life.user()),
        "/audit/dead-letters".to_owned(),
    ];
    for path in &paths {
        for auth in [
            None,
            Some("Bearer wrong-token-0123456789"),
            Some("Basic dGVzdA=="),
        ] {
            let mut request = app.client.get(app.url(path));
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{path} with {auth:?}");
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["status"], 401);
            assert_eq!(body["type"], "urn:todo:problem:unauthorized");
        }
    }
    let replay = app
        .client
        .post(app.url("/audit/dead-letters/x/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
    let ok = app
        .client
        .get(app.url(&paths[0]))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn reachable_through_service_invocation_on_another_sidecar() {
    let app = spawn_app().await;
    let life = recorded_task(&app, 2).await;
    // A sidecar of another app of the same run.
    let other = app.cluster.sidecar("task-api").start().await.unwrap();
    let url = format!(
        "{}/v1.0/invoke/audit-logger/method/audit/tasks/{}",
        other.http_endpoint(),
        life.id()
    );
    let response = app
        .client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["entries"].as_array().unwrap().len(), 3);
    let denied = app.client.get(&url).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let verify = app
        .client
        .get(format!("{url}/verify"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(verify.json::<Value>().await.unwrap()["valid"], true);
}

/// A page across several chunks reads the cursor's chunk, then the rest in one bulk read: not
/// one read per chunk.
#[tokio::test]
async fn a_page_across_many_chunks_costs_two_state_reads() {
    let mut settings = settings();
    settings.trail_chunk_size = 2;
    let app = spawn_proxied(settings).await;
    let life = recorded_task(&app, 12).await;
    let proxy = app.proxy.as_ref().unwrap();
    let state_calls = || {
        proxy
            .requests()
            .iter()
            .filter(|r| r.contains("/v1.0/state/"))
            .count()
    };
    let before = state_calls();
    let page = app
        .get(&format!("/audit/tasks/{}?limit=9&cursor=1.1", life.id()))
        .await;
    let seqs: Vec<u64> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (3..12).collect::<Vec<_>>());
    assert_eq!(page["next_cursor"], "6.0");
    assert_eq!(state_calls() - before, 2, "{:?}", proxy.requests());
    // The last page ends at the trail's end, in the same two reads.
    let before = state_calls();
    let last = app
        .get(&format!("/audit/tasks/{}?limit=9&cursor=5.0", life.id()))
        .await;
    assert_eq!(last["entries"].as_array().unwrap().len(), 3);
    assert!(last["next_cursor"].is_null());
    assert_eq!(state_calls() - before, 2, "{:?}", proxy.requests());
}

#[tokio::test]
async fn pages_follow_cursors_and_bad_paging_is_a_400() {
    let mut settings = settings();
    settings.trail_chunk_size = 4;
    let app = spawn_with(settings).await;
    let life = recorded_task(&app, 9).await;
    let path = format!("/audit/tasks/{}", life.id());
    let first = app.get(&format!("{path}?limit=6")).await;
    assert_eq!(first["entries"].as_array().unwrap().len(), 6);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = app.get(&format!("{path}?limit=6&cursor={cursor}")).await;
    let rest = second["entries"].as_array().unwrap();
    assert_eq!(rest.len(), 4);
    assert_eq!(rest[0]["seq"], 6);
    assert!(second["next_cursor"].is_null());
    // Following cursors with another page size gives every entry once, in order.
    let all = app.trail(&path).await;
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());

    for query in ["limit=0", "limit=501", "limit=x", "cursor=zzz"] {
        let response = app
            .client
            .get(app.url(&format!("{path}?{query}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    // A cursor at the last chunk number there can be is an empty page, not an overflow.
    let far = app
        .get(&format!("{path}?limit=6&cursor={}.0", u64::MAX))
        .await;
    assert_eq!(far["entries"].as_array().unwrap().len(), 0, "{far}");
    assert!(far["next_cursor"].is_null(), "{far}");
    // An unknown task has an empty, valid trail.
    let empty = app.get("/audit/tasks/unknown").await;
    assert_eq!(empty["entries"].as_array().unwrap().len(), 0);
    assert_eq!(app.get("/audit/tasks/unknown/verify").await["valid"], true);
}

#[tokio::test]
async fn probes_metrics_and_subscriptions() {
    let app = spawn_app().await;
    recorded_task(&app, 1).await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert!(health.status().is_success());
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert!(ready.status().is_success());
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("audit_entries_total{"), "{metrics}");
    assert!(metrics.contains("topic=\"task-updated\""), "{metrics}");
    let subs: Value = app
        .client
        .get(app.url("/dapr/subscribe"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let subs = subs.as_array().unwrap();
    assert_eq!(subs.len(), 10);
    for s in subs {
        let topic = s["topic"].as_str().unwrap();
        if topic.ends_with("-dead-letters") {
            assert!(s.get("deadLetterTopic").is_none(), "{s}");
        } else {
            assert_eq!(s["deadLetterTopic"], "audit-logger-dead-letters");
        }
    }
}

#[tokio::test]
async fn deliveries_need_the_app_api_token_when_one_is_set() {
    let mut settings = settings();
    settings.common.app_api_token = Some(dapr_http::SecretString::from("sidecar-to-app-token"));
    let app = spawn_with(settings).await;
    // The sidecar sends the token: events are recorded.
    let life = recorded_task(&app, 1).await;
    assert_eq!(
        app.trail(&format!("/audit/tasks/{}", life.id()))
            .await
            .len(),
        2
    );
    // Anyone else posting to a delivery route is refused.
    let forged = app
        .client
        .post(app.url("/events/task-created"))
        .json(&serde_json::to_value(life.created()).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
}
