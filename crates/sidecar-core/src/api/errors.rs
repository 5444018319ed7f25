//! daprd's error bodies: legacy `{errorCode,message}` and the rich shape with `details`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

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

    /// Rich shape: adds a google.rpc `ErrorInfo` (reason `DAPR_*`) and, when `resource` is given,
    /// a `ResourceInfo`.
    pub fn rich(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        reason: &str,
        resource: Option<(&str, &str)>,
    ) -> Self {
        let message = message.into();
        let mut details = vec![json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "dapr.io",
            "metadata": {},
        })];
        if let Some((resource_type, resource_name)) = resource {
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.ResourceInfo",
                "resource_type": resource_type,
                "resource_name": resource_name,
                "owner": "",
                "description": message,
            }));
        }
        Self {
            status,
            code,
            message,
            details: Some(details),
        }
    }

    pub fn malformed(message: impl std::fmt::Display) -> Self {
        Self::rich(
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            format!("failed deserializing HTTP body: {message}"),
            "DAPR_MALFORMED_REQUEST",
            None,
        )
    }

    pub fn body(&self) -> Value {
        let mut body = json!({"errorCode": self.code, "message": self.message});
        if let (Some(details), Some(obj)) = (&self.details, body.as_object_mut()) {
            obj.insert("details".into(), Value::Array(details.clone()));
        }
        body
    }
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
