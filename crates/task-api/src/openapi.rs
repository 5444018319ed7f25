//! The OpenAPI 3.1 document, generated from the handlers' annotations and served as
//! `GET /openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem_schema::{FieldErrorDoc, ProblemDoc};

#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "task-api", description = "Tasks of the todo product. Every error is application/problem+json."),
    paths(
        crate::routes::create_task,
        crate::routes::list_tasks,
        crate::routes::get_task,
        crate::routes::update_task,
        crate::routes::complete_task,
        crate::routes::delete_task,
    ),
    components(schemas(
        crate::model::CreateTask,
        crate::model::UpdateTask,
        crate::model::TaskView,
        crate::model::PriorityDoc,
        crate::model::StatusDoc,
        crate::listing::TaskPage,
        ProblemDoc,
        FieldErrorDoc,
    )),
    modifiers(&BearerAuth),
    tags((name = "tasks", description = "A user's tasks"))
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The document as JSON.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn document_names_every_operation_and_schema() {
        let doc = serde_json::to_value(document()).unwrap();
        let paths = &doc["paths"];
        assert!(paths["/api/tasks"]["post"].is_object());
        assert!(paths["/api/tasks"]["get"].is_object());
        for method in ["get", "patch", "delete"] {
            assert!(paths["/api/tasks/{id}"][method].is_object(), "{method}");
        }
        assert!(paths["/api/tasks/{id}/complete"]["post"].is_object());
        let schemas = &doc["components"]["schemas"];
        for name in [
            "CreateTask",
            "UpdateTask",
            "TaskView",
            "TaskPage",
            "Priority",
            "TaskStatus",
            "ProblemDoc",
        ] {
            assert!(schemas[name].is_object(), "{name} in {schemas}");
        }
        assert_eq!(
            schemas["Priority"]["enum"],
            serde_json::json!(["low", "medium", "high", "urgent"])
        );
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let problem =
            &paths["/api/tasks"]["post"]["responses"]["400"]["content"]["application/problem+json"];
        assert!(
            problem.is_object(),
            "{}",
            paths["/api/tasks"]["post"]["responses"]
        );
    }
}
