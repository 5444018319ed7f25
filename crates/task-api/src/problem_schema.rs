//! The OpenAPI schema of the problem documents every error is answered with (the documents
//! themselves are built by `service_kit::Problem`); the handlers' annotations name it for their
//! error responses.

use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem document (`application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ProblemDoc {
    /// Stable URN per kind of problem, e.g. `urn:todo:problem:validation-error`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    #[schema(nullable = false)]
    pub detail: Option<String>,
    #[schema(nullable = false)]
    pub instance: Option<String>,
    /// The offending fields: only on validation problems (400), absent otherwise.
    #[schema(nullable = false)]
    pub errors: Option<Vec<FieldErrorDoc>>,
}

/// One invalid input.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct FieldErrorDoc {
    pub field: String,
    pub message: String,
}
