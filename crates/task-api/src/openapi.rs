//! The OpenAPI 3.1 document, generated from the handlers' annotations and served as
//! `GET /openapi.json`.
//!
//! The document is a contract: every constraint a handler enforces is in a schema (title and
//! description lengths, `limit`'s range, the `If-Match` form, a PATCH naming at least one field)
//! and every status an operation can answer is listed with its body. What the annotations
//! cannot say is added by the modifiers below; `tests/it/conformance.rs` holds the served
//! document against the running service with schemathesis.

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
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

/// `UpdateTask` must name at least one field (an empty PATCH is a 400); utoipa has no
/// struct-level attribute for `minProperties`.
#[derive(Debug)]
struct PatchNeedsAField;

impl Modify for PatchNeedsAField {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut()
            && let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut("UpdateTask")
        {
            object.min_properties = Some(1);
        }
    }
}

/// Every operation can meet a sidecar or store that is down or contended (503) and, in the
/// worst case, an internal error (500): both are problem documents.
#[derive(Debug)]
struct ServerErrors;

impl Modify for ServerErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ProblemDoc")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations: [&mut Option<Operation>; 4] = [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses.insert(
                    "500".into(),
                    RefOr::T(problem("Internal error (no `errors`)")),
                );
                responses.insert(
                    "503".into(),
                    RefOr::T(problem(
                        "The sidecar or state store is unavailable, or the task is busy; try again",
                    )),
                );
            }
        }
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
        crate::model::UpdatableStatusDoc,
        crate::listing::TaskPage,
        ProblemDoc,
        FieldErrorDoc,
    )),
    modifiers(&BearerAuth, &PatchNeedsAField, &ServerErrors),
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

    #[test]
    fn the_constraints_the_handlers_enforce_are_in_the_schema() {
        let doc = serde_json::to_value(document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for body in ["CreateTask", "UpdateTask"] {
            let title = &schemas[body]["properties"]["title"];
            assert_eq!(title["minLength"], 1, "{body}: {title}");
            assert_eq!(title["maxLength"], 200, "{body}: {title}");
            assert_eq!(title["pattern"], "\\S", "{body}: {title}");
            let description = &schemas[body]["properties"]["description"];
            assert_eq!(description["maxLength"], 10_000, "{body}: {description}");
        }
        assert_eq!(schemas["UpdateTask"]["minProperties"], 1);
        assert_eq!(
            schemas["UpdatableStatus"]["enum"],
            serde_json::json!(["open", "in_progress"])
        );
        // 401 and 404 bodies carry no `errors`: the problem schema must not require it.
        let required = schemas["ProblemDoc"]["required"].as_array().unwrap();
        assert!(
            !required.contains(&serde_json::json!("errors")),
            "{required:?}"
        );

        let list = &doc["paths"]["/api/tasks"]["get"]["parameters"];
        let limit = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap();
        assert_eq!(
            (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
            (&serde_json::json!(1), &serde_json::json!(200))
        );
        let patch = &doc["paths"]["/api/tasks/{id}"]["patch"];
        let if_match = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "If-Match")
            .unwrap();
        assert!(if_match["schema"]["pattern"].is_string(), "{if_match}");
    }

    #[test]
    fn every_status_an_operation_can_answer_is_documented() {
        let doc = serde_json::to_value(document()).unwrap();
        let expected: [(&str, &str, &[&str]); 6] = [
            (
                "/api/tasks",
                "post",
                &["201", "400", "401", "409", "413", "415", "500", "503"],
            ),
            ("/api/tasks", "get", &["200", "400", "401", "500", "503"]),
            (
                "/api/tasks/{id}",
                "get",
                &["200", "401", "404", "500", "503"],
            ),
            (
                "/api/tasks/{id}",
                "patch",
                &[
                    "200", "400", "401", "404", "409", "412", "413", "415", "500", "503",
                ],
            ),
            (
                "/api/tasks/{id}/complete",
                "post",
                &["200", "400", "401", "404", "412", "500", "503"],
            ),
            (
                "/api/tasks/{id}",
                "delete",
                &["204", "400", "401", "404", "412", "500", "503"],
            ),
        ];
        for (path, method, statuses) in expected {
            let responses = doc["paths"][path][method]["responses"].as_object().unwrap();
            let documented: Vec<&str> = responses.keys().map(String::as_str).collect();
            assert_eq!(documented, statuses, "{method} {path}");
        }
    }
}
