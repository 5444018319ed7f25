//! State API: get, save, delete, bulk get, transaction, with the statuses and error codes of
//! daprd's handlers over `state.redis` (`onGetState`, `onPostState`, `onDeleteState`,
//! `onBulkGetState`, `onPostStateTransaction` in `pkg/api/http/http.go`). Every store call runs
//! under the store's outbound resiliency policy ([`crate::policies::Policies::state_call`]).

use super::errors::{ApiError, info_metadata, no_content};
use super::state_value::{StateValue, TxFields};
use crate::components::{
    Concurrency, DeleteRequest, SetRequest, StateError, StateItem, TransactionOp,
};
use crate::metadata::{KEY_SEPARATOR, key_prefix, prefixed_key, query_metadata, query_param};
use crate::policies::state_error;
use crate::runtime::StateComponent;
use crate::sidecar::SidecarState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use resiliency::Failure;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

type Params = Query<Vec<(String, String)>>;

fn store<'a>(state: &'a SidecarState, name: &str) -> Result<&'a StateComponent, ApiError> {
    if !state.runtime.has_state_stores(state.app_id()) {
        // `StateStoreError.NotConfigured` in daprd's `pkg/api/errors/state.go`: rich, without
        // a ResourceInfo, the app id in the ErrorInfo.
        return Err(ApiError::rich(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_STATE_STORE_NOT_CONFIGURED",
            format!("state store {name} is not configured"),
        )
        .info(
            "DAPR_STATE_NOT_CONFIGURED",
            info_metadata([("appID", state.app_id())]),
        ));
    }
    state
        .runtime
        .state_store(state.app_id(), name)
        .ok_or_else(|| {
            // `StateStoreError.NotFound` (same file): no ResourceInfo either.
            ApiError::rich(
                StatusCode::BAD_REQUEST,
                "ERR_STATE_STORE_NOT_FOUND",
                format!("state store {name} is not found"),
            )
            .info(
                "DAPR_STATE_NOT_FOUND",
                info_metadata([("appID", state.app_id())]),
            )
        })
}

fn full_key(state: &SidecarState, store: &StateComponent, key: &str) -> Result<String, ApiError> {
    if key.contains(KEY_SEPARATOR) {
        // `StateStoreError.InvalidKeyName` (same file): a field violation, then the resource,
        // then an ErrorInfo with a nil metadata map.
        let message = format!("input key/keyPrefix '{key}' can't contain '{KEY_SEPARATOR}'");
        return Err(
            ApiError::rich(StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST", &message)
                .field_violation(key, &message)
                .resource("state", &store.spec.name, "")
                .info("DAPR_STATE_ILLEGAL_KEY", None),
        );
    }
    let prefix = key_prefix(&store.spec, state.app_id());
    Ok(prefixed_key(prefix.as_deref(), key))
}

fn parse_concurrency(s: Option<&str>) -> Result<Concurrency, String> {
    match s.unwrap_or_default() {
        "" => Ok(Concurrency::Unspecified),
        "first-write" => Ok(Concurrency::FirstWrite),
        "last-write" => Ok(Concurrency::LastWrite),
        other => Err(format!("invalid concurrency value {other:?}")),
    }
}

fn check_consistency(s: Option<&str>) -> Result<(), String> {
    match s.unwrap_or_default() {
        "" | "strong" | "eventual" => Ok(()),
        other => Err(format!("invalid consistency value {other:?}")),
    }
}

fn ttl_from(metadata: &BTreeMap<String, String>) -> Result<Option<i64>, String> {
    match crate::metadata::get_ci(metadata, "ttlInSeconds") {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|e| format!("ttlInSeconds {v:?} is not a valid integer: {e}")),
    }
}

pub(super) async fn get_state(
    State(state): State<Arc<SidecarState>>,
    Path((name, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let store = store(&state, &name)?;
    let full = full_key(&state, store, &key)?;
    let got = state
        .policies
        .state_call(&name, false, || store.store.get(&full))
        .await
        .map_err(state_error);
    match got {
        Ok(Some(item)) => Ok(item_response(item)),
        Ok(None) => Ok(no_content()),
        Err(e) => Err(ApiError::legacy(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_STATE_GET",
            format!("fail to get {key} from state store {name}: {e}"),
        )),
    }
}

fn item_response(item: StateItem) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(v) = item.etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        headers.insert(header::ETAG, v);
    }
    for (k, v) in item.metadata {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(format!("metadata.{k}").as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            headers.insert(name, value);
        }
    }
    (StatusCode::OK, headers, item.data).into_response()
}

#[derive(Debug, Default, serde::Deserialize)]
struct Options {
    #[serde(default)]
    concurrency: Option<String>,
    #[serde(default)]
    consistency: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SaveItem {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: StateValue,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    options: Option<Options>,
}

enum SaveFailure {
    Api(ApiError),
    Store(StateError),
}

fn set_request(
    state: &SidecarState,
    store: &StateComponent,
    item: SaveItem,
    query_meta: &BTreeMap<String, String>,
) -> Result<SetRequest, SaveFailure> {
    let Some(key) = item.key.filter(|k| !k.is_empty()) else {
        // `onPostState`: a legacy-shape error with this message alone.
        return Err(SaveFailure::Api(ApiError::legacy(
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            "\"key\" is a required field",
        )));
    };
    let key = full_key(state, store, &key).map_err(SaveFailure::Api)?;
    let mut metadata = item.metadata;
    metadata.extend(query_meta.clone());
    let options = item.options.unwrap_or_default();
    let concurrency = parse_concurrency(options.concurrency.as_deref())
        .map_err(|e| SaveFailure::Store(StateError::Store(e)))?;
    check_consistency(options.consistency.as_deref())
        .map_err(|e| SaveFailure::Store(StateError::Store(e)))?;
    let ttl_seconds = ttl_from(&metadata).map_err(|e| SaveFailure::Store(StateError::Store(e)))?;
    Ok(SetRequest {
        key,
        value: Bytes::from(item.value.0),
        etag: item.etag.filter(|e| !e.is_empty()),
        concurrency,
        ttl_seconds,
    })
}

pub(super) async fn save_state(
    State(state): State<Arc<SidecarState>>,
    Path(name): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let store = store(&state, &name)?;
    let items: Vec<SaveItem> = serde_json::from_slice(&body).map_err(ApiError::malformed)?;
    let query_meta = query_metadata(&params);
    let mut requests = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for item in items {
        match set_request(&state, store, item, &query_meta) {
            Ok(r) => requests.push(r),
            Err(SaveFailure::Api(e)) => return Err(e),
            Err(SaveFailure::Store(e)) => errors.push(e),
        }
    }
    let policies = &state.policies;
    let writes = requests.into_iter().map(|r| {
        let store = store.store.clone();
        let name = &name;
        async move {
            if policies.state(name).is_none() {
                return store.set(r).await;
            }
            policies
                .state_call(name, true, || store.set(r.clone()))
                .await
                .map_err(state_error)
        }
    });
    errors.extend(
        futures::future::join_all(writes)
            .await
            .into_iter()
            .filter_map(Result::err),
    );
    if errors.is_empty() {
        return Ok(no_content());
    }
    let all_etag = errors
        .iter()
        .all(|e| matches!(e, StateError::EtagMismatch(_) | StateError::EtagInvalid(_)));
    let any_invalid = errors
        .iter()
        .any(|e| matches!(e, StateError::EtagInvalid(_)));
    let status = match (all_etag, any_invalid) {
        (true, true) => StatusCode::BAD_REQUEST,
        (true, false) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let causes: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Err(ApiError::legacy(
        status,
        "ERR_STATE_SAVE",
        format!(
            "failed saving state in state store {name}: {}",
            causes.join("; ")
        ),
    ))
}

pub(super) async fn delete_state(
    State(state): State<Arc<SidecarState>>,
    Path((name, key)): Path<(String, String)>,
    Query(params): Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let store = store(&state, &name)?;
    let full = full_key(&state, store, &key)?;
    let delete_error = |e: String| {
        // state.redis reports every delete failure as an etag mismatch (409).
        ApiError::legacy(
            StatusCode::CONFLICT,
            "ERR_STATE_DELETE",
            format!("failed deleting state with key {key}: {e}"),
        )
    };
    let concurrency = parse_concurrency(query_param(&params, "concurrency"))
        .map_err(|e| ApiError::legacy(StatusCode::INTERNAL_SERVER_ERROR, "ERR_STATE_DELETE", e))?;
    let etag = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .filter(|e| !e.is_empty())
        .map(str::to_string);
    let request = DeleteRequest {
        key: full,
        etag,
        concurrency,
    };
    let deleted = if state.policies.state(&name).is_none() {
        store.store.delete(request).await.map_err(Failure::Op)
    } else {
        state
            .policies
            .state_call(&name, false, || store.store.delete(request.clone()))
            .await
    };
    deleted.map_err(|f| match f {
        Failure::Op(e) => delete_error(e.to_string()),
        // A breaker rejection or timeout is not a store error: daprd's plain 500.
        other => ApiError::legacy(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_STATE_DELETE",
            format!("failed deleting state with key {key}: {other}"),
        ),
    })?;
    Ok(no_content())
}

#[derive(Debug, serde::Deserialize)]
struct BulkRequest {
    #[serde(default)]
    keys: Vec<String>,
}

pub(super) async fn bulk_get(
    State(state): State<Arc<SidecarState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let store = store(&state, &name)?;
    let req: BulkRequest = serde_json::from_slice(&body).map_err(ApiError::malformed)?;
    let keys = req
        .keys
        .iter()
        .map(|key| full_key(&state, store, key))
        .collect::<Result<Vec<String>, ApiError>>()?;
    // daprd runs the whole bulk get as one call under the policy; per-key errors are entries of
    // the answer, not failures of the call.
    let gets = || async {
        let mut out = Vec::with_capacity(keys.len());
        for full in &keys {
            let result = store.store.get(full).await;
            let mut item = BulkItem {
                key: crate::metadata::strip_key_prefix(full).to_owned(),
                data: None,
                etag: None,
                error: None,
            };
            match result {
                Ok(Some(found)) => {
                    item.data = Some(BulkData::of(&found.data));
                    item.etag = found.etag;
                }
                Ok(None) => {}
                Err(e) => item.error = Some(e.to_string()),
            }
            out.push(item);
        }
        Ok::<_, StateError>(out)
    };
    let out = state
        .policies
        .state_call(&name, false, gets)
        .await
        .map_err(|f| {
            ApiError::legacy(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERR_STATE_BULK_GET",
                format!(
                    "failed getting state in bulk from state store {name}: {}",
                    state_error(f)
                ),
            )
        })?;
    Ok((StatusCode::OK, axum::Json(out)).into_response())
}

/// One entry of a bulk get answer, in daprd's field order.
#[derive(serde::Serialize)]
struct BulkItem {
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<BulkData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A stored value as daprd puts it in a bulk answer: JSON as JSON, anything else as a string.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum BulkData {
    /// Valid JSON is embedded as stored: checked, not parsed into a tree and printed again.
    Json(Box<serde_json::value::RawValue>),
    Text(String),
}

impl BulkData {
    fn of(stored: &[u8]) -> Self {
        std::str::from_utf8(stored)
            .ok()
            .and_then(|text| serde_json::value::RawValue::from_string(text.to_owned()).ok())
            .map_or_else(
                || Self::Text(String::from_utf8_lossy(stored).into_owned()),
                Self::Json,
            )
    }
}

fn lower_keys(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        _ => serde_json::Map::new(),
    }
}

#[derive(Debug, serde::Deserialize)]
struct TxRequest {
    #[serde(default)]
    operations: Vec<TxOperation>,
}

#[derive(Debug, serde::Deserialize)]
struct TxOperation {
    #[serde(default)]
    operation: String,
    #[serde(default)]
    request: TxFields,
}

fn tx_error(message: impl std::fmt::Display) -> ApiError {
    ApiError::legacy(
        StatusCode::INTERNAL_SERVER_ERROR,
        "ERR_STATE_TRANSACTION",
        format!("error while executing state transaction: {message}"),
    )
}

pub(super) async fn transaction(
    State(state): State<Arc<SidecarState>>,
    Path(name): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let store = store(&state, &name)?;
    let req: TxRequest = serde_json::from_slice(&body).map_err(ApiError::malformed)?;
    let query_meta = query_metadata(&params);
    let mut ops = Vec::with_capacity(req.operations.len());
    for op in req.operations {
        let fields = op.request;
        let key = fields
            .key
            .as_ref()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let etag = fields
            .etag
            .as_ref()
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .map(str::to_string);
        let options = lower_keys(fields.options.unwrap_or_default());
        let concurrency = parse_concurrency(options.get("concurrency").and_then(Value::as_str))
            .map_err(tx_error)?;
        match op.operation.as_str() {
            "upsert" => {
                let mut metadata: BTreeMap<String, String> = fields
                    .metadata
                    .and_then(|m| serde_json::from_value(m).ok())
                    .unwrap_or_default();
                metadata.extend(query_meta.clone());
                let value = fields.value.unwrap_or_default();
                ops.push(TransactionOp::Set(SetRequest {
                    key: full_key(&state, store, &key)?,
                    value: Bytes::from(value.0),
                    etag,
                    concurrency,
                    ttl_seconds: ttl_from(&metadata).map_err(tx_error)?,
                }));
            }
            "delete" => ops.push(TransactionOp::Delete(DeleteRequest {
                key: full_key(&state, store, &key)?,
                etag,
                concurrency,
            })),
            other => {
                return Err(ApiError::legacy(
                    StatusCode::BAD_REQUEST,
                    "ERR_NOT_SUPPORTED_STATE_OPERATION",
                    format!("operation type {other} not supported"),
                ));
            }
        }
    }
    if ops.is_empty() {
        return Ok(no_content());
    }
    let done = if state.policies.state(&name).is_none() {
        store.store.transact(ops).await.map_err(Failure::Op)
    } else {
        state
            .policies
            .state_call(&name, false, || store.store.transact(ops.clone()))
            .await
    };
    done.map_err(|f| tx_error(state_error(f)))?;
    Ok(no_content())
}
