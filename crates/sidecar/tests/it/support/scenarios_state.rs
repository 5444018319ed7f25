//! Scenarios of `conformance_state.rs`, run against each [`Backend`] (in-memory and Redis
//! components): the test entry points live in `conformance_*.rs`.

use serde_json::{Value, json};

use super::*;

async fn sidecar(backend: &Backend) -> (Sidecar, tempfile::TempDir) {
    let dir = resources_dir(&[("components.yaml", backend.components())]);
    let sc = Sidecar::start(SidecarSpec {
        app_id: "state-app".into(),
        resources: vec![dir.path().to_path_buf()],
        ..SidecarSpec::default()
    })
    .await;
    (sc, dir)
}

async fn save(sc: &Sidecar, store: &str, items: Value) -> reqwest::Response {
    http()
        .post(sc.url(&format!("/v1.0/state/{store}")))
        .json(&items)
        .send()
        .await
        .unwrap()
}

async fn get(sc: &Sidecar, key: &str) -> reqwest::Response {
    http()
        .get(sc.url(&format!("/v1.0/state/{STATE}/{key}")))
        .send()
        .await
        .unwrap()
}

async fn etag_of(sc: &Sidecar, key: &str) -> String {
    let r = get(sc, key).await;
    assert_eq!(r.status(), 200);
    r.headers()["etag"].to_str().unwrap().to_owned()
}

pub async fn save_get_delete_happy_path(backend: &Backend) {
    let (sc, _d) = sidecar(backend).await;
    assert_no_content(
        save(
            &sc,
            STATE,
            json!([{"key": "task:1", "value": {"title": "x"}}]),
        )
        .await,
    )
    .await;

    let r = get(&sc, "task:1").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        r.headers()["etag"],
        "1",
        "Redis-style integer etag, 1 on first write"
    );
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"title": "x"}));

    assert_no_content(save(&sc, STATE, json!([{"key": "task:1", "value": "s"}])).await).await;
    let r = get(&sc, "task:1").await;
    assert_eq!(r.headers()["etag"], "2", "+1 per write");
    assert_eq!(
        r.text().await.unwrap(),
        "\"s\"",
        "a string value is stored with its quotes"
    );

    let r = http()
        .delete(sc.url(&format!("/v1.0/state/{STATE}/task:1")))
        .send()
        .await
        .unwrap();
    assert_no_content(r).await;
    let r = get(&sc, "task:1").await;
    assert_eq!(r.status(), 204, "missing key is 204, never 404");
    assert!(r.headers().get("etag").is_none());
    assert!(r.bytes().await.unwrap().is_empty());

    let r = http()
        .delete(sc.url(&format!("/v1.0/state/{STATE}/never")))
        .send()
        .await
        .unwrap();
    assert_no_content(r).await;
    assert_no_content(save(&sc, STATE, json!([])).await).await;
}

pub async fn path_keys_are_percent_decoded(backend: &Backend) {
    let (sc, _d) = sidecar(backend).await;
    assert_no_content(save(&sc, STATE, json!([{"key": "task:42", "value": 1}])).await).await;
    let r = get(&sc, "task%3A42").await;
    assert_eq!(r.status(), 200);
}

pub async fn etag_mismatch_and_invalid_etag(backend: &Backend) {
    let (sc, _d) = sidecar(backend).await;
    assert_no_content(save(&sc, STATE, json!([{"key": "k", "value": 1}])).await).await;
    let etag = etag_of(&sc, "k").await;

    let r = save(&sc, STATE, json!([{"key": "k", "value": 2, "etag": "99"}])).await;
    assert_error(r, 409, "ERR_STATE_SAVE").await;
    let r = save(
        &sc,
        STATE,
        json!([{"key": "k", "value": 2, "etag": "not-a-number"}]),
    )
    .await;
    assert_error(r, 400, "ERR_STATE_SAVE").await;
    assert_no_content(save(&sc, STATE, json!([{"key": "k", "value": 2, "etag": etag}])).await)
        .await;

    // Redis: saving with an etag on an absent key creates it.
    assert_no_content(
        save(
            &sc,
            STATE,
            json!([{"key": "fresh", "value": 1, "etag": "5"}]),
        )
        .await,
    )
    .await;
    assert_eq!(etag_of(&sc, "fresh").await, "1");

    let r = http()
        .delete(sc.url(&format!("/v1.0/state/{STATE}/k")))
        .header("if-match", "99")
        .send()
        .await
        .unwrap();
    assert_error(r, 409, "ERR_STATE_DELETE").await;
    let current = etag_of(&sc, "k").await;
    let r = http()
        .delete(sc.url(&format!("/v1.0/state/{STATE}/k")))
        .header("if-match", current)
        .send()
        .await
        .unwrap();
    assert_no_content(r).await;
}

pub async fn bulk_get_uses_the_data_field(backend: &Backend) {
    let (sc, _d) = sidecar(backend).await;
    assert_no_content(
        save(
            &sc,
            STATE,
            json!([{"key": "a", "value": {"t": 1}}, {"key": "b", "value": 2}]),
        )
        .await,
    )
    .await;
    let r = http()
        .post(sc.url(&format!("/v1.0/state/{STATE}/bulk")))
        .json(&json!({"keys": ["a", "missing", "b"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let items: Vec<Value> = r.json().await.unwrap();
    assert_eq!(items.len(), 3, "request order kept");
    assert_eq!(items[0]["key"], "a");
    assert_eq!(items[0]["data"], json!({"t": 1}));
    assert_eq!(items[0]["etag"], "1");
    assert!(
        items[0].get("value").is_none(),
        "the field is data, not value"
    );
    assert_eq!(
        items[1],
        json!({"key": "missing"}),
        "a missing key has only its key"
    );
    assert_eq!(items[2]["data"], 2);

    let r = http()
        .post(sc.url(&format!("/v1.0/state/{STATE}/bulk")))
        .json(&json!({"keys": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
}

pub async fn transactions(backend: &Backend) {
    let (sc, _d) = sidecar(backend).await;
    let tx = |body: Value| {
        let url = sc.url(&format!("/v1.0/state/{STATE}/transaction"));
        async move { http().post(url).json(&body).send().await.unwrap() }
    };
    let ok = json!({"operations": [
        {"operation": "upsert", "request": {"key": "t1", "value": {"n": 1}}},
        {"operation": "upsert", "request": {"key": "t2", "value": {"n": 2}}}
    ]});
    assert_no_content(tx(ok).await).await;
    assert_eq!(get(&sc, "t1").await.status(), 200);

    let del = json!({"operations": [{"operation": "delete", "request": {"key": "t2"}}]});
    assert_no_content(tx(del).await).await;
    assert_eq!(get(&sc, "t2").await.status(), 204);

    let conflict = json!({"operations": [
        {"operation": "upsert", "request": {"key": "t1", "value": {"n": 9}, "etag": "77"}}
    ]});
    let body = assert_error(tx(conflict).await, 500, "ERR_STATE_TRANSACTION").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("error while executing state transaction"),
        "{body}"
    );

    assert_no_content(tx(json!({"operations": []})).await).await;
    let bad_op = json!({"operations": [{"operation": "merge", "request": {"key": "x"}}]});
    assert_error(tx(bad_op).await, 400, "ERR_NOT_SUPPORTED_STATE_OPERATION").await;
}

pub async fn request_errors(backend: &Backend) {
    let (sc, _d) = sidecar(backend).await;
    assert_error(
        save(&sc, "no-such-store", json!([{"key": "k", "value": 1}])).await,
        400,
        "ERR_STATE_STORE_NOT_FOUND",
    )
    .await;
    let r = http()
        .get(sc.url("/v1.0/state/no-such-store/k"))
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "ERR_STATE_STORE_NOT_FOUND").await;

    let r = http()
        .post(sc.url(&format!("/v1.0/state/{STATE}")))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "ERR_MALFORMED_REQUEST").await;
    assert_error(
        save(&sc, STATE, json!([{"value": 1}])).await,
        400,
        "ERR_MALFORMED_REQUEST",
    )
    .await;
    assert_error(
        save(&sc, STATE, json!([{"key": "a||b", "value": 1}])).await,
        400,
        "ERR_MALFORMED_REQUEST",
    )
    .await;
}

pub async fn first_write_marker_follows_redis(backend: &Backend) {
    let (sc, _d) = sidecar(backend).await;
    let fw = |etag: Option<&str>| {
        let mut item = json!({"key": "fw", "value": 1, "options": {"concurrency": "first-write"}});
        if let Some(e) = etag {
            item["etag"] = json!(e);
        }
        json!([item])
    };
    assert_no_content(save(&sc, STATE, json!([{"key": "fw", "value": 0}])).await).await;
    // The key has no first-write marker yet, so a first-write save without etag succeeds...
    assert_no_content(save(&sc, STATE, fw(None)).await).await;
    // ...and marks it: from now on saves without an etag fail.
    let r = save(&sc, STATE, json!([{"key": "fw", "value": 2}])).await;
    assert_error(r, 500, "ERR_STATE_SAVE").await;
    let r = save(&sc, STATE, fw(None)).await;
    assert_error(r, 500, "ERR_STATE_SAVE").await;
    let etag = etag_of(&sc, "fw").await;
    assert_no_content(save(&sc, STATE, fw(Some(&etag))).await).await;
}

pub async fn ttl_expires_keys(backend: &Backend) {
    let (sc, _d) = sidecar(backend).await;
    let item = json!([{"key": "short", "value": 1, "metadata": {"ttlInSeconds": "1"}}]);
    assert_no_content(save(&sc, STATE, item).await).await;
    assert_no_content(save(&sc, STATE, json!([{"key": "long", "value": 1}])).await).await;
    assert_eq!(get(&sc, "short").await.status(), 200);
    eventually("key with ttlInSeconds=1 to expire", || async {
        (get(&sc, "short").await.status() == 204).then_some(())
    })
    .await;
    assert_eq!(get(&sc, "long").await.status(), 200, "no TTL, no expiry");
}

pub async fn multi_item_save_with_an_etag_failure_is_409(backend: &Backend) {
    let (sc, _d) = sidecar(backend).await;
    assert_no_content(save(&sc, STATE, json!([{"key": "m1", "value": 1}])).await).await;
    let r = save(
        &sc,
        STATE,
        json!([{"key": "m1", "value": 2, "etag": "42"}, {"key": "m2", "value": 2}]),
    )
    .await;
    assert_error(r, 409, "ERR_STATE_SAVE").await;
    assert_eq!(
        get(&sc, "m2").await.status(),
        200,
        "items are written independently (non-atomic)"
    );
}
