//! The fake sidecar's state store: Redis etag semantics (integer versions, a non-integer etag
//! is 400, a wrong one 409, 500 `ERR_STATE_TRANSACTION` for any failure inside a transaction).

use std::collections::HashMap;

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Shared, error, no_content};

/// Redis semantics: a non-integer etag is 400, a wrong one 409; an etag on an absent key succeeds.
fn check_etag(
    store: &HashMap<String, (Value, u64)>,
    item: &Value,
    code: &str,
) -> Result<(), (u16, String)> {
    let key = item["key"].as_str().unwrap_or_default();
    let etag = item["etag"].as_str().filter(|e| !e.is_empty());
    let first_write = item["options"]["concurrency"] == "first-write";
    let last_write = item["options"]["concurrency"] == "last-write";
    let current = store.get(key).map(|(_, v)| *v);
    match (etag, current) {
        (Some(etag), _) if etag.parse::<u64>().is_err() => Err((400, code.to_owned())),
        (Some(etag), Some(version)) if !last_write && etag != version.to_string() => {
            Err((409, code.to_owned()))
        }
        (None, Some(_)) if first_write => Err((409, code.to_owned())),
        _ => Ok(()),
    }
}

pub(crate) fn save(shared: &Shared, body: &[u8]) -> Response {
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(body) else {
        return error(
            400,
            "ERR_MALFORMED_REQUEST",
            "failed deserializing HTTP body",
        );
    };
    let mut store = shared.store.lock().unwrap();
    for item in &items {
        if item["key"].as_str().is_none() {
            return error(400, "ERR_MALFORMED_REQUEST", "\"key\" is a required field");
        }
        if let Err((status, code)) = check_etag(&store, item, "ERR_STATE_SAVE") {
            return error(status, &code, "failed saving state: possible etag mismatch");
        }
    }
    for item in items {
        let key = item["key"].as_str().unwrap_or_default().to_owned();
        let version = store.get(&key).map_or(0, |(_, v)| *v) + 1;
        store.insert(key, (item["value"].clone(), version));
    }
    no_content()
}

pub(crate) fn bulk(shared: &Shared, body: &[u8]) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error(
            400,
            "ERR_MALFORMED_REQUEST",
            "failed deserializing HTTP body",
        );
    };
    let store = shared.store.lock().unwrap();
    let items: Vec<Value> = request["keys"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|key| {
            let key = key.as_str().unwrap_or_default();
            match store.get(key) {
                Some((value, version)) => {
                    json!({ "key": key, "data": value, "etag": version.to_string() })
                }
                None => json!({ "key": key }),
            }
        })
        .collect();
    axum::Json(items).into_response()
}

pub(crate) fn transaction(shared: &Shared, body: &[u8]) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error(
            400,
            "ERR_MALFORMED_REQUEST",
            "failed deserializing HTTP body",
        );
    };
    let ops = request["operations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut store = shared.store.lock().unwrap();
    for op in &ops {
        match op["operation"].as_str() {
            Some("upsert" | "delete") => {}
            other => {
                return error(
                    400,
                    "ERR_NOT_SUPPORTED_STATE_OPERATION",
                    &format!("operation type {other:?} not supported"),
                );
            }
        }
        if check_etag(&store, &op["request"], "").is_err() {
            return error(
                500,
                "ERR_STATE_TRANSACTION",
                "error while executing state transaction: possible etag mismatch",
            );
        }
    }
    for op in ops {
        let key = op["request"]["key"].as_str().unwrap_or_default().to_owned();
        if op["operation"] == "upsert" {
            let version = store.get(&key).map_or(0, |(_, v)| *v) + 1;
            store.insert(key.clone(), (op["request"]["value"].clone(), version));
        } else {
            store.remove(&key);
        }
    }
    no_content()
}
