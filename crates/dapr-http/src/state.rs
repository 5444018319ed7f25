//! State API: get, save, delete, bulk get and transactions on `/v1.0/state/{store}`.
//!
//! Values are any serde type, stored as JSON. Etags are opaque strings: pass back exactly what a
//! read returned. daprd answers 204 (never 404) for a missing key, and names the value of a bulk
//! item `data` (not `value` as one docs example shows).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{ETAG, IF_MATCH};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Target;
use crate::{DaprClient, DaprError};

/// A value read from the store with its etag.
#[derive(Debug, Clone, PartialEq)]
pub struct StateEntry<T> {
    pub value: T,
    /// The `ETag` header; pass it to a save/delete for optimistic concurrency.
    pub etag: Option<String>,
}

/// Concurrency mode of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Concurrency {
    /// The write fails (409) unless the etag matches (or, without an etag, the key is new).
    #[serde(rename = "first-write")]
    FirstWrite,
    /// The write wins regardless of the etag.
    #[serde(rename = "last-write")]
    LastWrite,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct ItemOptions {
    concurrency: Concurrency,
}

/// One item of a save (or the request of a transaction upsert).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SaveItem {
    pub key: String,
    pub value: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip)]
    pub concurrency: Option<Concurrency>,
    #[serde(skip)]
    pub ttl: Option<Duration>,
    /// Item metadata (e.g. `contentType`); `ttl` is added as `ttlInSeconds`.
    #[serde(skip)]
    pub metadata: BTreeMap<String, String>,
}

/// The JSON form daprd expects, with `options` and `metadata` derived from the typed fields.
#[derive(Serialize)]
struct WireItem<'a> {
    key: &'a str,
    value: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<ItemOptions>,
}

impl SaveItem {
    /// An item for `key` holding `value` encoded as JSON.
    pub fn new(key: impl Into<String>, value: &impl Serialize) -> Result<Self, DaprError> {
        let key = key.into();
        let value = serde_json::to_value(value).map_err(|source| DaprError::Encode {
            what: format!("the value of state key `{key}`"),
            source,
        })?;
        Ok(Self {
            key,
            value,
            etag: None,
            concurrency: None,
            ttl: None,
            metadata: BTreeMap::new(),
        })
    }

    /// Writes only if the stored etag is still `etag` (an empty string counts as none).
    pub fn etag(mut self, etag: Option<impl Into<String>>) -> Self {
        self.etag = etag.map(Into::into).filter(|e: &String| !e.is_empty());
        self
    }

    /// `options.concurrency = first-write`.
    pub fn first_write(mut self) -> Self {
        self.concurrency = Some(Concurrency::FirstWrite);
        self
    }

    /// `options.concurrency = last-write`.
    pub fn last_write(mut self) -> Self {
        self.concurrency = Some(Concurrency::LastWrite);
        self
    }

    /// Expires the key after `ttl` (whole seconds, at least 1): `metadata.ttlInSeconds`. Without a
    /// TTL, Redis keeps any expiry set by an earlier write.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Adds an item metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    fn wire(&self) -> WireItem<'_> {
        let mut metadata = self.metadata.clone();
        if let Some(ttl) = self.ttl {
            metadata.insert("ttlInSeconds".to_owned(), ttl.as_secs().max(1).to_string());
        }
        WireItem {
            key: &self.key,
            value: &self.value,
            etag: self.etag.as_deref(),
            metadata,
            options: self
                .concurrency
                .map(|concurrency| ItemOptions { concurrency }),
        }
    }
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
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// One operation of a state transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum TransactionOp {
    Upsert(SaveItem),
    Delete { key: String, etag: Option<String> },
}

impl TransactionOp {
    fn wire(&self) -> Value {
        match self {
            Self::Upsert(item) => {
                serde_json::json!({ "operation": "upsert", "request": item.wire() })
            }
            Self::Delete { key, etag } => {
                let mut request = serde_json::json!({ "key": key });
                if let (Some(etag), Some(object)) = (etag, request.as_object_mut()) {
                    object.insert("etag".to_owned(), Value::String(etag.clone()));
                }
                serde_json::json!({ "operation": "delete", "request": request })
            }
        }
    }
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
            .send(self.request(Method::GET, url), Target::Store(store))
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

    /// Saves `items` (one request; several items are written in parallel and not atomically,
    /// use [`DaprClient::transact_state`] for atomicity). An empty slice does nothing.
    pub async fn save_state(&self, store: &str, items: &[SaveItem]) -> Result<(), DaprError> {
        if items.is_empty() {
            return Ok(());
        }
        let body: Vec<WireItem<'_>> = items.iter().map(SaveItem::wire).collect();
        let url = self.url(&["v1.0", "state", store]);
        self.send(
            self.request(Method::POST, url).json(&body),
            Target::Store(store),
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
        self.send(request, Target::Store(store)).await?;
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
        let response = self.send(request, Target::Store(store)).await?;
        let body = self.body(response).await?;
        let items: Vec<WireBulkItem> =
            serde_json::from_slice(&body).map_err(|source| DaprError::Decode {
                what: "a bulk state response".to_owned(),
                source,
            })?;
        items
            .into_iter()
            .map(|item| {
                let value =
                    match item.data {
                        None | Some(Value::Null) => None,
                        Some(data) => Some(serde_json::from_value(data).map_err(|source| {
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

    /// Applies `ops` atomically. Any store failure, an etag conflict included, is
    /// [`DaprError::Transaction`]. An empty slice does nothing.
    pub async fn transact_state(
        &self,
        store: &str,
        ops: &[TransactionOp],
    ) -> Result<(), DaprError> {
        if ops.is_empty() {
            return Ok(());
        }
        let operations: Vec<Value> = ops.iter().map(TransactionOp::wire).collect();
        let url = self.url(&["v1.0", "state", store, "transaction"]);
        let request = self
            .request(Method::POST, url)
            .json(&serde_json::json!({ "operations": operations }));
        self.send(request, Target::Store(store)).await?;
        Ok(())
    }
}
