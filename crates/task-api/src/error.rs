//! The one error type of the service, and how each case is answered: always an RFC 9457
//! `application/problem+json` document with a stable `type` URN and, when a client input is at
//! fault, the offending field named in `errors`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dapr_http::DaprError;
use service_kit::{FieldError, Problem};

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("task not found")]
    NotFound,
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    #[error("malformed JSON: {detail}")]
    MalformedJson {
        detail: String,
        field: Option<String>,
    },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("If-Match does not match the current version {current}")]
    PreconditionFailed { current: u64 },
    /// The change would open one task more than `MAX_OPEN_TASKS_PER_USER` allows (every slot
    /// is taken, see [`crate::repository::limit`]).
    #[error("the limit of {limit} open tasks per user is reached")]
    OpenTaskLimit { limit: u32 },
    #[error("too many concurrent changes to the same data")]
    Contention,
    #[error("state store or sidecar failure: {0}")]
    Dapr(#[from] DaprError),
    /// The service cannot take the change now, for the reason given (no store failure).
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// One invalid field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    /// The problem document for this error.
    pub fn to_problem(&self) -> Problem {
        match self {
            ApiError::Unauthorized(detail) => Problem::unauthorized(detail.clone()),
            ApiError::NotFound => Problem::not_found("no such task"),
            ApiError::Validation(errors) => Problem::validation(errors.clone()),
            ApiError::MalformedJson { detail, field } => {
                let problem = Problem::new(
                    StatusCode::BAD_REQUEST,
                    "malformed-json",
                    "The request body is not valid JSON",
                )
                .detail(detail.clone());
                match field {
                    Some(field) => problem.field(field.clone(), detail.clone()),
                    None => problem,
                }
            }
            ApiError::UnsupportedMediaType => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            )
            .detail("the request body must be `application/json`")
            .field("content-type", "expected application/json"),
            ApiError::PayloadTooLarge(limit) => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            )
            .detail(format!("the request body exceeds {limit} bytes")),
            ApiError::PreconditionFailed { current } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "The task has changed",
            )
            .detail(format!(
                "If-Match does not match the task's current ETag \"{current}\""
            ))
            .field("if-match", "stale ETag"),
            // 409, not 422: the request itself is valid, it conflicts with the state of the
            // user's tasks, and the same request succeeds once a task is completed or deleted.
            ApiError::OpenTaskLimit { limit, .. } => Problem::new(
                StatusCode::CONFLICT,
                "open-task-limit",
                "Too many open tasks",
            )
            .detail(format!(
                "the limit of {limit} open tasks per user is reached; complete or delete a task first"
            )),
            ApiError::Contention => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "contention",
                "Too many concurrent changes",
            )
            .detail("the change could not be applied after several attempts; retry"),
            ApiError::Dapr(error) if error.is_transient() => {
                Problem::unavailable("the state store or the Dapr sidecar is not available")
            }
            ApiError::Unavailable(detail) => Problem::unavailable(detail.clone()),
            ApiError::Dapr(_) | ApiError::Internal(_) => Problem::internal(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.to_problem();
        if problem.status >= 500 {
            tracing::error!(error = %self, status = problem.status, "request failed");
        } else {
            tracing::debug!(error = %self, status = problem.status, "request rejected");
        }
        metrics::counter!("task_api_problems_total", "type" => problem.problem_type.clone())
            .increment(1);
        problem.into_response()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_types_are_stable() {
        let cases = [
            (ApiError::Unauthorized("x".into()), 401, "unauthorized"),
            (ApiError::NotFound, 404, "not-found"),
            (
                ApiError::field("title", "too long"),
                400,
                "validation-error",
            ),
            (
                ApiError::UnsupportedMediaType,
                415,
                "unsupported-media-type",
            ),
            (ApiError::PayloadTooLarge(10), 413, "payload-too-large"),
            (
                ApiError::PreconditionFailed { current: 3 },
                412,
                "precondition-failed",
            ),
            (
                ApiError::OpenTaskLimit { limit: 10 },
                409,
                "open-task-limit",
            ),
            (ApiError::Contention, 503, "contention"),
            (ApiError::Unavailable("x".into()), 503, "unavailable"),
            (ApiError::Internal("x".into()), 500, "internal-error"),
        ];
        for (error, status, slug) in cases {
            let problem = error.to_problem();
            assert_eq!(problem.status, status, "{error}");
            assert_eq!(problem.problem_type, format!("urn:todo:problem:{slug}"));
        }
    }

    #[test]
    fn field_errors_name_the_field() {
        let problem = ApiError::field("due_date", "not RFC 3339").to_problem();
        assert_eq!(problem.errors[0].field, "due_date");
    }
}
