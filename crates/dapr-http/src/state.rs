//! State API: get, save, delete, bulk get and transactions on `/v1.0/state/{store}`.
//!
//! Values are any serde type, stored as JSON. Etags are opaque strings: pass back exactly what a
//! read returned. daprd answers 204 (never 404) for a missing key, and names the value of a bulk
//! item `data` (not `value` as one docs example shows).

use reqwest::Method;
use reqwest::header::{ETAG, IF_MATCH};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::error::Target;
use crate::state_write::WireItem;
use crate::{DaprClient, DaprError, SaveItem, TransactionOp};

/// A value read from the store with its etag.
#[derive(Debug, Clone, PartialEq)]
pub struct StateEntry<T> {
    pub value: T,
    /// The `ETag` header; pass it to a save/delete for optimistic concurrency.
    pub etag: Option<String>,
}

/// One result of a bulk get, in request order.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkStateItem<T> {
    pub key: String,
    /// `None` when the key does not exist (or this key failed, see `error`).
    pub value: Option<T>,
    pub etag: Option<String>,
    /// A per-key store error; the other keys are still valid.
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct WireBulkItem {
    key: String,
    /// Kept as text and decoded straight into the caller's type (no `Value` tree in between).
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl DaprClient {
    /// Reads `key`: `None` when it does not exist (daprd answers 204).
    pub async fn get_state<T: DeserializeOwned>(
        &self,
        store: &str,
        key: &str,
    ) -> Result<Option<StateEntry<T>>, DaprError> {
        let url = self.url(&["v1.0", "state", store, key]);
        let response = self
            .send(
                self.request(Method::GET, url),
                Target::Store(store),
                "get state",
            )
            .await?;
        if Self::is_no_content(&response) {
            return Ok(None);
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = self.body(response).await?;
        if body.is_empty() {
            return Ok(None);
        }
        let value = serde_json::from_slice(&body).map_err(|source| DaprError::Decode {
            what: format!("state key `{key}`"),
            source,
        })?;
        Ok(Some(StateEntry { value, etag }))
    }

    /// Saves `items` (one request; several items are written in parallel, each on its own; use
    /// [`DaprClient::transact_state`] to send them as one transaction). An empty slice does nothing.
    pub async fn save_state(&self, store: &str, items: &[SaveItem]) -> Result<(), DaprError> {
        if items.is_empty() {
            return Ok(());
        }
        let body: Vec<WireItem<'_>> = items.iter().map(SaveItem::wire).collect();
        let url = self.url(&["v1.0", "state", store]);
        self.send(
            self.request(Method::POST, url).json(&body),
            Target::Store(store),
            "save state",
        )
        .await?;
        Ok(())
    }

    /// Deletes `key`, only if its etag is still `etag` when given. Deleting a missing key succeeds.
    pub async fn delete_state(
        &self,
        store: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<(), DaprError> {
        let url = self.url(&["v1.0", "state", store, key]);
        let mut request = self.request(Method::DELETE, url);
        if let Some(etag) = etag.filter(|e| !e.is_empty()) {
            request = request.header(IF_MATCH, etag);
        }
        self.send(request, Target::Store(store), "delete state")
            .await?;
        Ok(())
    }

    /// Reads several keys at once; the result is in request order, missing keys have no value.
    pub async fn get_bulk_state<T: DeserializeOwned>(
        &self,
        store: &str,
        keys: &[String],
    ) -> Result<Vec<BulkStateItem<T>>, DaprError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let url = self.url(&["v1.0", "state", store, "bulk"]);
        let request = self
            .request(Method::POST, url)
            .json(&serde_json::json!({ "keys": keys }));
        let response = self
            .send(request, Target::Store(store), "get bulk state")
            .await?;
        let body = self.body(response).await?;
        let items: Vec<WireBulkItem> =
            serde_json::from_slice(&body).map_err(|source| DaprError::Decode {
                what: "a bulk state response".to_owned(),
                source,
            })?;
        items
            .into_iter()
            .map(|item| {
                let value = match item.data {
                    None => None,
                    Some(data) if data.get() == "null" => None,
                    Some(data) => Some(serde_json::from_str(data.get()).map_err(|source| {
                        DaprError::Decode {
                            what: format!("state key `{}`", item.key),
                            source,
                        }
                    })?),
                };
                Ok(BulkStateItem {
                    key: item.key,
                    value,
                    etag: item.etag.filter(|e| !e.is_empty()),
                    error: item.error.filter(|e| !e.is_empty()),
                })
            })
            .collect()
    }

    /// Sends `ops` as one state transaction. Not atomic on every store: `state.redis` (and the
    /// local sidecar, which copies it) runs the operations in a `MULTI` without rollback, so an
    /// operation whose etag does not match fails while the others apply (components-contrib
    /// `state/redis/redis.go`, `StateStore.Multi`); callers re-read before deciding. Any store
    /// failure, an etag conflict included, is [`DaprError::Transaction`]. An empty slice does
    /// nothing.
    pub async fn transact_state(
        &self,
        store: &str,
        ops: &[TransactionOp],
    ) -> Result<(), DaprError> {
        if ops.is_empty() {
            return Ok(());
        }
        #[derive(serde::Serialize)]
        struct Body<'a> {
            operations: Vec<crate::state_write::WireOp<'a>>,
        }
        let body = Body {
            operations: ops.iter().map(TransactionOp::wire).collect(),
        };
        let url = self.url(&["v1.0", "state", store, "transaction"]);
        let request = self.request(Method::POST, url).json(&body);
        self.send(request, Target::Store(store), "transact state")
            .await?;
        Ok(())
    }
}
