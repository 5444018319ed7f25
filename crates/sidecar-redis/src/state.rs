//! `state.redis`: the hash layout, scripts and error classification of daprd's Redis state store.
//!
//! Error classes (what the API turns into 409/400/500):
//! * save: a non-integer etag is `EtagInvalid`; any failure of a save that carried an etag is
//!   `EtagMismatch`, connection errors included (daprd does the same); others are `Store`;
//! * delete: every failure is `EtagMismatch`;
//! * get: a key that is not a hash is read with `GET` and has no ETag; a hash without `data` or
//!   `version` is a `Store` error;
//! * transaction: one `MULTI`/`EXEC`; Redis does not roll back, so operations before and after a
//!   rejected script still apply, and the first error is returned.

use crate::connection::Connector;
use crate::scripts;
use crate::settings::RedisSettings;
use futures::future::BoxFuture;
use redis::Value;
use sidecar_core::components::{
    Concurrency, DeleteRequest, SetRequest, StateError, StateItem, StateStore, TransactionOp,
};
use sidecar_core::resources::{ComponentSpec, ResourceError};
use std::collections::{BTreeMap, HashMap};

/// Redis state store.
#[derive(Debug)]
pub struct RedisStateStore {
    settings: RedisSettings,
    connector: Connector,
}

impl RedisStateStore {
    /// Validates the metadata of `spec` and checks that Redis is reachable.
    pub fn from_spec(spec: &ComponentSpec) -> Result<Self, ResourceError> {
        let settings = RedisSettings::from_spec(spec)?;
        let connector = Connector::for_component(spec, &settings)?;
        Ok(Self {
            settings,
            connector,
        })
    }

    async fn connection(&self) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
        self.connector.shared().await
    }

    async fn get_item(&self, key: &str) -> Result<Option<StateItem>, StateError> {
        let mut con = self.connection().await.map_err(store_error)?;
        let fields: Result<HashMap<String, Vec<u8>>, _> =
            redis::cmd("HGETALL").arg(key).query_async(&mut con).await;
        let mut fields = match fields {
            Ok(f) => f,
            // Not a hash (or unreadable as one): daprd falls back to a plain GET without ETag.
            Err(_) => {
                let raw: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut con)
                    .await
                    .map_err(store_error)?;
                return Ok(raw.map(|data| StateItem {
                    data: data.into(),
                    etag: None,
                    metadata: BTreeMap::new(),
                }));
            }
        };
        if fields.is_empty() {
            return Ok(None);
        }
        match (fields.remove("data"), fields.remove("version")) {
            (Some(data), Some(version)) => Ok(Some(StateItem {
                data: data.into(),
                etag: Some(String::from_utf8_lossy(&version).into_owned()),
                metadata: BTreeMap::new(),
            })),
            _ => Err(StateError::Store(
                "required hash field 'data' or 'version' was not found".into(),
            )),
        }
    }

    async fn set_item(&self, req: SetRequest) -> Result<(), StateError> {
        let expected = expected_version(&req)?;
        let first_write = if req.concurrency == Concurrency::FirstWrite {
            "0"
        } else {
            "1"
        };
        let failed = |e: redis::RedisError| {
            if req.etag.is_some() {
                StateError::EtagMismatch(e.to_string())
            } else {
                StateError::Store(format!("failed to set key {}: {e}", req.key))
            }
        };
        let mut con = self.connection().await.map_err(failed)?;
        let _: Value = redis::cmd("EVAL")
            .arg(scripts::SET)
            .arg(1)
            .arg(&req.key)
            .arg(&expected)
            .arg(req.value.as_ref())
            .arg(first_write)
            .query_async(&mut con)
            .await
            .map_err(failed)?;
        if let Some(cmd) = ttl_command(&req.key, req.ttl_seconds.or(self.settings.ttl_seconds)) {
            let _: Value = cmd.query_async(&mut con).await.map_err(|e| {
                StateError::Store(format!("failed to set key {} ttl: {e}", req.key))
            })?;
        }
        Ok(())
    }

    async fn delete_item(&self, req: DeleteRequest) -> Result<(), StateError> {
        let etag = req.etag.clone().unwrap_or_else(|| "0".into());
        let mut con = self
            .connection()
            .await
            .map_err(|e| StateError::EtagMismatch(e.to_string()))?;
        let _: Value = redis::cmd("EVAL")
            .arg(scripts::DELETE)
            .arg(1)
            .arg(&req.key)
            .arg(etag)
            .query_async(&mut con)
            .await
            .map_err(|e| StateError::EtagMismatch(e.to_string()))?;
        Ok(())
    }

    async fn transact_items(&self, ops: Vec<TransactionOp>) -> Result<(), StateError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for op in &ops {
            match op {
                TransactionOp::Set(req) => {
                    let expected = expected_version(req)?;
                    pipe.cmd("EVAL")
                        .arg(scripts::SET)
                        .arg(1)
                        .arg(&req.key)
                        .arg(expected)
                        .arg(req.value.as_ref());
                    if let Some(cmd) =
                        ttl_command(&req.key, req.ttl_seconds.or(self.settings.ttl_seconds))
                    {
                        pipe.add_command(cmd);
                    }
                }
                TransactionOp::Delete(req) => {
                    pipe.cmd("EVAL")
                        .arg(scripts::DELETE)
                        .arg(1)
                        .arg(&req.key)
                        .arg(req.etag.as_deref().unwrap_or("0"));
                }
            }
        }
        let mut con = self.connection().await.map_err(store_error)?;
        let results: Vec<Value> = pipe
            .ignore_errors()
            .query_async(&mut con)
            .await
            .map_err(store_error)?;
        match results.into_iter().find_map(|v| match v {
            Value::ServerError(e) => Some(e),
            _ => None,
        }) {
            None => Ok(()),
            Some(e) => {
                let text = e.to_string();
                Err(
                    if text.contains("failed to set key") || text.contains("failed to delete") {
                        StateError::EtagMismatch(text)
                    } else {
                        StateError::Store(text)
                    },
                )
            }
        }
    }

    async fn scan_keys(&self) -> Result<Vec<String>, StateError> {
        let mut con = self.connection().await.map_err(store_error)?;
        let mut keys = Vec::new();
        // Only hashes (the state layout) and strings (legacy values daprd can still read);
        // streams of a pub/sub sharing the database are not state.
        for kind in ["hash", "string"] {
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(1000)
                    .arg("TYPE")
                    .arg(kind)
                    .query_async(&mut con)
                    .await
                    .map_err(store_error)?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

fn store_error(e: redis::RedisError) -> StateError {
    StateError::Store(e.to_string())
}

/// ARGV[1] of the set script: `"0"` without etag or with last-write, else the etag as an integer.
fn expected_version(req: &SetRequest) -> Result<String, StateError> {
    match (&req.etag, req.concurrency) {
        (None, _) | (_, Concurrency::LastWrite) => Ok("0".into()),
        (Some(etag), _) => etag
            .trim()
            .parse::<i64>()
            .map(|v| v.to_string())
            .map_err(|e| StateError::EtagInvalid(format!("{etag}: {e}"))),
    }
}

/// `EXPIRE` for a positive TTL, `PERSIST` for zero or negative, nothing without a TTL.
fn ttl_command(key: &str, ttl: Option<i64>) -> Option<redis::Cmd> {
    match ttl {
        Some(n) if n > 0 => {
            let mut cmd = redis::cmd("EXPIRE");
            cmd.arg(key).arg(n);
            Some(cmd)
        }
        Some(_) => {
            let mut cmd = redis::cmd("PERSIST");
            cmd.arg(key);
            Some(cmd)
        }
        None => None,
    }
}

impl StateStore for RedisStateStore {
    fn features(&self) -> Vec<String> {
        ["ETAG", "TRANSACTIONAL", "TTL"].map(String::from).to_vec()
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<StateItem>, StateError>> {
        let key = key.to_string();
        Box::pin(async move { self.get_item(&key).await })
    }

    fn set(&self, req: SetRequest) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.set_item(req))
    }

    fn delete(&self, req: DeleteRequest) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.delete_item(req))
    }

    fn transact(&self, ops: Vec<TransactionOp>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.transact_items(ops))
    }

    fn keys(&self) -> BoxFuture<'_, Result<Vec<String>, StateError>> {
        Box::pin(self.scan_keys())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn req(etag: Option<&str>, concurrency: Concurrency) -> SetRequest {
        SetRequest {
            key: "k".into(),
            value: Bytes::from_static(b"1"),
            etag: etag.map(String::from),
            concurrency,
            ttl_seconds: None,
        }
    }

    #[test]
    fn expected_version_rules() {
        assert_eq!(
            expected_version(&req(None, Concurrency::FirstWrite)).unwrap(),
            "0"
        );
        assert_eq!(
            expected_version(&req(Some("x"), Concurrency::LastWrite)).unwrap(),
            "0"
        );
        assert_eq!(
            expected_version(&req(Some("07"), Concurrency::Unspecified)).unwrap(),
            "7"
        );
        assert!(matches!(
            expected_version(&req(Some("abc"), Concurrency::Unspecified)),
            Err(StateError::EtagInvalid(_))
        ));
    }

    #[test]
    fn ttl_commands() {
        assert!(ttl_command("k", None).is_none());
        let expire = ttl_command("k", Some(5)).unwrap().get_packed_command();
        assert!(String::from_utf8_lossy(&expire).contains("EXPIRE"));
        let persist = ttl_command("k", Some(-1)).unwrap().get_packed_command();
        assert!(String::from_utf8_lossy(&persist).contains("PERSIST"));
    }
}
