//! The write side of the state API: save items (etag, concurrency, TTL, metadata) and
//! transaction operations, and the JSON daprd expects for them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::DaprError;

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
///
/// The value is kept as the JSON text it was encoded to: a write is encoded once, straight from
/// the caller's type, instead of through a `serde_json::Value` tree (which, for the large values
/// services keep, such as indexes, cost more than the HTTP call).
#[derive(Debug, Clone, Serialize)]
pub struct SaveItem {
    pub key: String,
    pub value: Box<RawValue>,
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
pub(crate) struct WireItem<'a> {
    key: &'a str,
    value: &'a RawValue,
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
        let value = serde_json::value::to_raw_value(value).map_err(|source| DaprError::Encode {
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

    /// The value's JSON text, as it will be sent.
    pub fn value_json(&self) -> &str {
        self.value.get()
    }

    pub(crate) fn wire(&self) -> WireItem<'_> {
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

impl PartialEq for SaveItem {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
            && self.value.get() == other.value.get()
            && self.etag == other.etag
            && self.concurrency == other.concurrency
            && self.ttl == other.ttl
            && self.metadata == other.metadata
    }
}

/// One operation of a state transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum TransactionOp {
    Upsert(SaveItem),
    Delete { key: String, etag: Option<String> },
}

/// A transaction operation as daprd reads it: `{"operation": …, "request": …}`.
#[derive(Serialize)]
pub(crate) struct WireOp<'a> {
    operation: &'static str,
    request: WireRequest<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum WireRequest<'a> {
    Upsert(WireItem<'a>),
    Delete {
        key: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        etag: Option<&'a str>,
    },
}

impl TransactionOp {
    pub(crate) fn wire(&self) -> WireOp<'_> {
        match self {
            Self::Upsert(item) => WireOp {
                operation: "upsert",
                request: WireRequest::Upsert(item.wire()),
            },
            Self::Delete { key, etag } => WireOp {
                operation: "delete",
                request: WireRequest::Delete {
                    key,
                    etag: etag.as_deref(),
                },
            },
        }
    }
}
