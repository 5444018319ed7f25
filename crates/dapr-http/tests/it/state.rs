//! State calls against a fake sidecar over real HTTP, including every error mapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::Duration;

use dapr_http::{DaprClient, DaprError, DaprSettings, SaveItem, SecretString, TransactionOp};
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::{Canned, FakeSidecar, STORE};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Task {
    title: String,
    done: bool,
}

fn task(title: &str) -> Task {
    Task {
        title: title.into(),
        done: false,
    }
}

fn client(sidecar: &FakeSidecar) -> DaprClient {
    DaprClient::new(DaprSettings::with_endpoint(&sidecar.endpoint)).unwrap()
}

#[tokio::test]
async fn save_then_get_returns_the_value_and_etag() {
    let sidecar = FakeSidecar::start().await;
    let client = client(&sidecar);
    let item = SaveItem::new("task:42", &task("a")).unwrap();
    client.save_state(STORE, &[item]).await.unwrap();

    let entry = client
        .get_state::<Task>(STORE, "task:42")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.value, task("a"));
    assert_eq!(entry.etag.as_deref(), Some("1"));

    let save = &sidecar.requests()[0];
    assert_eq!(save.method, "POST");
    assert_eq!(save.path, "/v1.0/state/todo-state");
    assert_eq!(save.header("content-type"), Some("application/json"));
    assert_eq!(
        save.json(),
        json!([{ "key": "task:42", "value": { "title": "a", "done": false } }])
    );
    let get = &sidecar.requests()[1];
    assert_eq!(get.method, "GET");
    assert_eq!(get.segments, ["v1.0", "state", "todo-state", "task:42"]);
}

#[tokio::test]
async fn missing_key_is_none() {
    let sidecar = FakeSidecar::start().await;
    let got = client(&sidecar)
        .get_state::<Task>(STORE, "nope")
        .await
        .unwrap();
    assert_eq!(got, None);
}

#[tokio::test]
async fn keys_are_percent_encoded_as_one_segment() {
    let sidecar = FakeSidecar::start().await;
    let client = client(&sidecar);
    let key = "user/7 tasks?#";
    client
        .save_state(STORE, &[SaveItem::new(key, &1).unwrap()])
        .await
        .unwrap();
    let got = client.get_state::<i32>(STORE, key).await.unwrap().unwrap();
    assert_eq!(got.value, 1);
    let get = &sidecar.requests()[1];
    assert_eq!(get.path, "/v1.0/state/todo-state/user%2F7%20tasks%3F%23");
    client.delete_state(STORE, key, None).await.unwrap();
    assert_eq!(sidecar.stored(key), None);
}

#[tokio::test]
async fn save_sends_etag_concurrency_ttl_and_metadata() {
    let sidecar = FakeSidecar::start().await;
    let client = client(&sidecar);
    sidecar.put("k", json!(0));
    let item = SaveItem::new("k", &task("b"))
        .unwrap()
        .etag(Some("1"))
        .first_write()
        .ttl(Duration::from_secs(90))
        .metadata("contentType", "application/json");
    client.save_state(STORE, &[item]).await.unwrap();
    assert_eq!(
        sidecar.requests()[0].json(),
        json!([{
            "key": "k",
            "value": { "title": "b", "done": false },
            "etag": "1",
            "metadata": { "ttlInSeconds": "90", "contentType": "application/json" },
            "options": { "concurrency": "first-write" }
        }])
    );
    assert_eq!(sidecar.stored("k").unwrap().1, 2);

    let item = SaveItem::new("k", &1).unwrap().last_write().etag(Some(""));
    client.save_state(STORE, &[item]).await.unwrap();
    assert_eq!(
        sidecar.requests()[1].json(),
        json!([{ "key": "k", "value": 1, "options": { "concurrency": "last-write" } }])
    );
}

#[tokio::test]
async fn stale_etag_on_save_is_etag_mismatch() {
    let sidecar = FakeSidecar::start().await;
    let client = client(&sidecar);
    sidecar.put("k", json!(1));
    sidecar.put("k", json!(2));
    let item = SaveItem::new("k", &3).unwrap().etag(Some("1"));
    let err = client.save_state(STORE, &[item]).await.unwrap_err();
    assert!(
        matches!(&err, DaprError::EtagMismatch { code, .. } if code == "ERR_STATE_SAVE"),
        "{err:?}"
    );
    assert!(err.is_etag_conflict());
    assert!(!err.is_transient());
    assert_eq!(sidecar.stored("k").unwrap().0, json!(2));
}

#[tokio::test]
async fn first_write_on_existing_key_is_etag_mismatch() {
    let sidecar = FakeSidecar::start().await;
    sidecar.put("k", json!(1));
    let item = SaveItem::new("k", &3).unwrap().first_write();
    let err = client(&sidecar)
        .save_state(STORE, &[item])
        .await
        .unwrap_err();
    assert!(err.is_etag_conflict(), "{err:?}");
}

#[tokio::test]
async fn non_integer_etag_is_bad_request() {
    let sidecar = FakeSidecar::start().await;
    let item = SaveItem::new("k", &3).unwrap().etag(Some("abc"));
    let err = client(&sidecar)
        .save_state(STORE, &[item])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DaprError::BadRequest { code, .. } if code == "ERR_STATE_SAVE"),
        "{err:?}"
    );
    assert!(!err.is_etag_conflict());
}

#[tokio::test]
async fn delete_sends_if_match_and_maps_409() {
    let sidecar = FakeSidecar::start().await;
    let client = client(&sidecar);
    sidecar.put("k", json!(1));
    sidecar.put("k", json!(2));
    let err = client
        .delete_state(STORE, "k", Some("1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DaprError::EtagMismatch { code, .. } if code == "ERR_STATE_DELETE"),
        "{err:?}"
    );
    assert!(sidecar.stored("k").is_some());
    client.delete_state(STORE, "k", Some("2")).await.unwrap();
    assert_eq!(sidecar.stored("k"), None);
    // Deleting a missing key succeeds (204), and no If-Match is sent without an etag.
    client.delete_state(STORE, "k", None).await.unwrap();

    let deletes = sidecar.requests();
    assert_eq!(deletes[0].method, "DELETE");
    assert_eq!(deletes[0].header("if-match"), Some("1"));
    assert_eq!(deletes[1].header("if-match"), Some("2"));
    assert_eq!(deletes[2].header("if-match"), None);
}

#[tokio::test]
async fn bulk_get_reads_data_and_leaves_missing_keys_empty() {
    let sidecar = FakeSidecar::start().await;
    sidecar.put("a", json!({ "title": "a", "done": true }));
    let keys = vec!["a".to_owned(), "missing".to_owned()];
    let items = client(&sidecar)
        .get_bulk_state::<Task>(STORE, &keys)
        .await
        .unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].key, "a");
    assert_eq!(
        items[0].value,
        Some(Task {
            title: "a".into(),
            done: true
        })
    );
    assert_eq!(items[0].etag.as_deref(), Some("1"));
    assert_eq!(items[1].key, "missing");
    assert_eq!(items[1].value, None);
    assert_eq!(items[1].etag, None);
    let r = &sidecar.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1.0/state/todo-state/bulk");
    assert_eq!(r.json()["keys"], json!(["a", "missing"]));
}

#[tokio::test]
async fn bulk_get_keeps_per_key_errors() {
    let sidecar = FakeSidecar::start().await;
    sidecar.push_canned(Canned {
        status: 200,
        content_type: "application/json",
        body: r#"[{"key":"a","error":"redis down"},{"key":"b","data":1,"etag":"4"}]"#.into(),
    });
    let keys = vec!["a".to_owned(), "b".to_owned()];
    let items = client(&sidecar)
        .get_bulk_state::<i32>(STORE, &keys)
        .await
        .unwrap();
    assert_eq!(items[0].error.as_deref(), Some("redis down"));
    assert_eq!(items[0].value, None);
    assert_eq!(items[1].value, Some(1));
    assert_eq!(items[1].error, None);
}

#[tokio::test]
async fn transaction_sends_operations_and_applies_them() {
    let sidecar = FakeSidecar::start().await;
    let client = client(&sidecar);
    sidecar.put("old", json!(1));
    let ops = [
        TransactionOp::Upsert(
            SaveItem::new("new", &task("n"))
                .unwrap()
                .ttl(Duration::from_secs(60))
                .first_write(),
        ),
        TransactionOp::Delete {
            key: "old".into(),
            etag: Some("1".into()),
        },
    ];
    client.transact_state(STORE, &ops).await.unwrap();
    let r = &sidecar.requests()[0];
    assert_eq!(r.path, "/v1.0/state/todo-state/transaction");
    assert_eq!(
        r.json(),
        json!({ "operations": [
            { "operation": "upsert", "request": {
                "key": "new", "value": { "title": "n", "done": false },
                "metadata": { "ttlInSeconds": "60" },
                "options": { "concurrency": "first-write" } } },
            { "operation": "delete", "request": { "key": "old", "etag": "1" } }
        ] })
    );
    assert!(sidecar.stored("new").is_some());
    assert_eq!(sidecar.stored("old"), None);
}

#[tokio::test]
async fn transaction_etag_conflict_is_a_transaction_error_and_an_etag_conflict() {
    let sidecar = FakeSidecar::start().await;
    sidecar.put("k", json!(1));
    sidecar.put("k", json!(2));
    let ops = [TransactionOp::Delete {
        key: "k".into(),
        etag: Some("1".into()),
    }];
    let err = client(&sidecar)
        .transact_state(STORE, &ops)
        .await
        .unwrap_err();
    assert!(matches!(err, DaprError::Transaction { .. }), "{err:?}");
    assert!(err.is_etag_conflict());
    assert!(!err.is_transient());
    assert_eq!(err.error_code(), Some("ERR_STATE_TRANSACTION"));
}

#[tokio::test]
async fn empty_batches_make_no_request() {
    let sidecar = FakeSidecar::start().await;
    let client = client(&sidecar);
    client.save_state(STORE, &[]).await.unwrap();
    client.transact_state(STORE, &[]).await.unwrap();
    assert!(
        client
            .get_bulk_state::<i32>(STORE, &[])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(sidecar.requests().is_empty());
}

#[tokio::test]
async fn unknown_store_is_store_not_found_on_every_call() {
    let sidecar = FakeSidecar::start().await;
    let client = client(&sidecar);
    let item = SaveItem::new("k", &1).unwrap();
    let errors = [
        client.get_state::<i32>("nope", "k").await.unwrap_err(),
        client
            .save_state("nope", std::slice::from_ref(&item))
            .await
            .unwrap_err(),
        client.delete_state("nope", "k", None).await.unwrap_err(),
        client
            .get_bulk_state::<i32>("nope", &["k".into()])
            .await
            .unwrap_err(),
        client
            .transact_state("nope", &[TransactionOp::Upsert(item)])
            .await
            .unwrap_err(),
    ];
    for err in errors {
        assert!(
            matches!(&err, DaprError::StoreNotFound { store, .. } if store == "nope"),
            "{err:?}"
        );
        assert_eq!(err.error_code(), Some("ERR_STATE_STORE_NOT_FOUND"));
    }
}

#[tokio::test]
async fn server_errors_keep_status_and_code_and_tolerate_text_bodies() {
    let sidecar = FakeSidecar::start().await;
    let client = client(&sidecar);
    sidecar.push_canned(Canned::error(
        500,
        "ERR_STATE_GET",
        "redis: connection refused",
    ));
    let err = client.get_state::<i32>(STORE, "k").await.unwrap_err();
    assert!(
        matches!(&err, DaprError::Server { status: 500, code, message }
            if code == "ERR_STATE_GET" && message == "redis: connection refused"),
        "{err:?}"
    );
    assert!(err.is_transient());

    sidecar.push_canned(Canned::text(502, "<html>bad gateway</html>"));
    let err = client.get_state::<i32>(STORE, "k").await.unwrap_err();
    assert!(
        matches!(&err, DaprError::Server { status: 502, code, message }
            if code.is_empty() && message == "<html>bad gateway</html>"),
        "{err:?}"
    );

    sidecar.push_canned(Canned::error(400, "ERR_MALFORMED_REQUEST", "bad key"));
    let err = client.get_state::<i32>(STORE, "k").await.unwrap_err();
    assert!(matches!(&err, DaprError::BadRequest { .. }), "{err:?}");

    sidecar.push_canned(Canned::text(404, "404 page not found"));
    let err = client.get_state::<i32>(STORE, "k").await.unwrap_err();
    assert!(
        matches!(&err, DaprError::Unexpected { status: 404, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn undecodable_value_is_a_decode_error() {
    let sidecar = FakeSidecar::start().await;
    sidecar.put("k", json!("not a task"));
    let err = client(&sidecar)
        .get_state::<Task>(STORE, "k")
        .await
        .unwrap_err();
    assert!(matches!(err, DaprError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn state_calls_send_the_api_token_and_map_401() {
    let sidecar = FakeSidecar::start_with(Some("tok")).await;
    let good = DaprClient::new(
        DaprSettings::with_endpoint(&sidecar.endpoint).api_token(Some(SecretString::from("tok"))),
    )
    .unwrap();
    good.save_state(STORE, &[SaveItem::new("k", &1).unwrap()])
        .await
        .unwrap();
    let err = client(&sidecar)
        .get_state::<i32>(STORE, "k")
        .await
        .unwrap_err();
    assert!(matches!(err, DaprError::Unauthorized { .. }), "{err:?}");
}
