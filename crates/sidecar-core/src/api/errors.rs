//! daprd's error bodies: legacy `{errorCode,message}` and the rich shape with `details`.
//!
//! Which shape an error takes follows daprd's type for it: a `messages.APIError`
//! (`pkg/messages/predefined.go`) renders as `{errorCode,message}`, a dapr/kit `errors.Error`
//! (built in `pkg/api/errors/*.go`) adds `details` (`respondWithError` in
//! `pkg/api/http/responses.go`, `Error.JSONErrorValue` in dapr/kit `errors/errors.go`). The
//! details come in the order daprd's builders add them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// An API error as daprd renders it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    details: Option<Vec<Value>>,
}

impl ApiError {
    /// Legacy shape: `{"errorCode","message"}`.
    pub fn legacy(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    /// Rich shape: `{"errorCode","message","details"}`; add the details with the builder methods.
    pub fn rich(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Some(Vec::new()),
        }
    }

    fn push(mut self, detail: Value) -> Self {
        self.details.get_or_insert_with(Vec::new).push(detail);
        self
    }

    /// A google.rpc `BadRequest` with one field violation (`WithFieldViolation`).
    pub fn field_violation(self, field: &str, description: &str) -> Self {
        self.push(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "field_violations": [{"field": field, "description": description}],
        }))
    }

    /// A google.rpc `ResourceInfo` (`WithResourceInfo`); `owner` is always empty in daprd.
    pub fn resource(self, resource_type: &str, name: &str, description: &str) -> Self {
        self.push(json!({
            "@type": "type.googleapis.com/google.rpc.ResourceInfo",
            "resource_type": resource_type,
            "resource_name": name,
            "owner": "",
            "description": description,
        }))
    }

    /// A google.rpc `ErrorInfo` (`WithErrorInfo`). Its `metadata` is a Go map: `None` (a nil
    /// map) is written as `null`, an empty one as `{}`.
    pub fn info(self, reason: &str, metadata: Option<BTreeMap<String, String>>) -> Self {
        self.push(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "dapr.io",
            "metadata": metadata,
        }))
    }

    /// A body that does not decode: `messages.ErrMalformedRequest`, a legacy-shape error.
    pub fn malformed(message: impl std::fmt::Display) -> Self {
        Self::legacy(
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            format!("failed deserializing HTTP body: {message}"),
        )
    }

    pub fn body(&self) -> Value {
        let mut body = json!({"errorCode": self.code, "message": self.message});
        if let (Some(details), Some(obj)) = (&self.details, body.as_object_mut())
            && !details.is_empty()
        {
            obj.insert("details".into(), Value::Array(details.clone()));
        }
        body
    }
}

/// String pairs as an `ErrorInfo` metadata map.
pub fn info_metadata<const N: usize>(pairs: [(&str, &str); N]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// 204 with an empty body.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}
