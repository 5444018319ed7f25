//! The REST handlers of `/api/tasks`.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::header::{ETAG, IF_MATCH, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use uuid::Uuid;

use crate::auth::{AuthUser, Authenticator};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::listing::{ListQuery, TaskPage};
use crate::model::{CreateTask, TaskRecord, TaskView, UpdateTask};
use crate::problem_schema::ProblemDoc;
use crate::tasks::TaskService;

/// Shared state of the router.
#[derive(Debug, Clone)]
pub struct AppState {
    pub tasks: TaskService,
    pub auth: Authenticator,
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

/// The routes of `/api/tasks`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/tasks", post(create_task).get(list_tasks))
        .route(
            "/api/tasks/{id}",
            get(get_task).patch(update_task).delete(delete_task),
        )
        .route("/api/tasks/{id}/complete", post(complete_task))
        .with_state(state)
}

/// The quoted version, as sent in `ETag`.
pub fn etag_of(version: u64) -> String {
    format!("\"{version}\"")
}

fn task_response(status: StatusCode, record: &TaskRecord) -> Response {
    let mut response = (status, Json(TaskView::from(&record.task))).into_response();
    if let Ok(value) = HeaderValue::from_str(&etag_of(record.task.version)) {
        response.headers_mut().insert(ETAG, value);
    }
    response
}

/// Ids that are not UUIDs cannot name a task: answer like any unknown task.
fn task_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound)
}

/// `If-Match`: absent or `*` means no precondition; otherwise one ETag this API issued.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let text = text.strip_prefix("W/").unwrap_or(text);
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
        .parse::<u64>()
        .map(Some)
        .map_err(|_| {
            ApiError::field(
                "if-match",
                "must be an ETag returned by this API, e.g. \"3\"",
            )
        })
}

/// Create a task.
#[utoipa::path(post, path = "/api/tasks", tag = "tasks", request_body = CreateTask,
    security(("bearer" = [])),
    params(("X-Correlation-Id" = Option<String>, Header, description = "Carried into the event")),
    responses(
        (status = 201, description = "Created", body = TaskView,
            headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Malformed JSON or an invalid field (named in `errors`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token (no `errors`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The caller has MAX_OPEN_TASKS_PER_USER open tasks (`open-task-limit`, the limit named in `detail`, no `errors`); completing or deleting one frees a slot", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body over the size limit", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not JSON", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn create_task(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    ApiJson(body): ApiJson<CreateTask>,
) -> Result<Response, ApiError> {
    let new = body.validate()?;
    let record = state.tasks.create(&user, new, &ctx).await?;
    let mut response = task_response(StatusCode::CREATED, &record);
    if let Ok(location) = HeaderValue::from_str(&format!("/api/tasks/{}", record.task.task_id)) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// List the caller's tasks, newest first.
#[utoipa::path(get, path = "/api/tasks", tag = "tasks", security(("bearer" = [])),
    params(
        ("status" = Option<crate::model::StatusDoc>, Query, description = "Only tasks in this status"),
        ("priority" = Option<crate::model::PriorityDoc>, Query, description = "Only tasks of this priority"),
        ("due_before" = Option<String>, Query, format = DateTime, description = "Only tasks due before this RFC 3339 time"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size, 1 to 200, default 50"),
    ),
    responses(
        (status = 200, description = "A page of tasks", body = TaskPage),
        (status = 400, description = "An invalid or unknown query parameter (named in `errors`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token (no `errors`)", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn list_tasks(
    State(state): State<AppState>,
    user: AuthUser,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<TaskPage>, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::field("query", e.body_text()))?;
    let query = ListQuery::parse(&params)?;
    Ok(Json(state.tasks.list(&user, &query).await?))
}

/// Read one task.
#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = TaskView, headers(("ETag" = String))),
        (status = 401, description = "Missing or invalid token (no `errors`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such task, or not yours (no `errors`)", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn get_task(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = state.tasks.get(&user, task_id(&id)?).await?;
    Ok(task_response(StatusCode::OK, &record))
}

/// Change some fields of a task.
#[utoipa::path(patch, path = "/api/tasks/{id}", tag = "tasks", request_body = UpdateTask,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Task id"),
        ("If-Match" = Option<String>, Header, pattern = r#"^(\*|(W/)?("[0-9]{1,19}"|[0-9]{1,19}))$"#,
            description = "The ETag last seen (`\"3\"`, `W/\"3\"` or `3`), or `*`; 412 if stale, 400 if not of that form")),
    responses(
        (status = 200, description = "The updated task", body = TaskView, headers(("ETag" = String))),
        (status = 400, description = "Malformed JSON, an invalid field, no field at all, or a malformed If-Match", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token (no `errors`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such task, or not yours (no `errors`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Reopening a completed task would pass the open-task limit (`open-task-limit`, the limit named in `detail`, no `errors`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body over the size limit", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not JSON", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn update_task(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateTask>,
) -> Result<Response, ApiError> {
    let id = task_id(&id)?;
    let precondition = if_match(&headers)?;
    let changes = body.validate()?;
    let record = state
        .tasks
        .update(&user, id, changes, precondition, &ctx)
        .await?;
    Ok(task_response(StatusCode::OK, &record))
}

/// Mark a task completed.
#[utoipa::path(post, path = "/api/tasks/{id}/complete", tag = "tasks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Task id"),
        ("If-Match" = Option<String>, Header, pattern = r#"^(\*|(W/)?("[0-9]{1,19}"|[0-9]{1,19}))$"#,
            description = "The ETag last seen (`\"3\"`, `W/\"3\"` or `3`), or `*`; 412 if stale, 400 if not of that form")),
    responses(
        (status = 200, description = "The completed task", body = TaskView, headers(("ETag" = String))),
        (status = 400, description = "A malformed If-Match", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token (no `errors`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such task, or not yours (no `errors`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn complete_task(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = task_id(&id)?;
    let record = state
        .tasks
        .complete(&user, id, if_match(&headers)?, &ctx)
        .await?;
    Ok(task_response(StatusCode::OK, &record))
}

/// Delete a task.
#[utoipa::path(delete, path = "/api/tasks/{id}", tag = "tasks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Task id"),
        ("If-Match" = Option<String>, Header, pattern = r#"^(\*|(W/)?("[0-9]{1,19}"|[0-9]{1,19}))$"#,
            description = "The ETag last seen (`\"3\"`, `W/\"3\"` or `3`), or `*`; 412 if stale, 400 if not of that form")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A malformed If-Match", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token (no `errors`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such task, or not yours (no `errors`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn delete_task(
    State(state): State<AppState>,
    user: AuthUser,
    ctx: RequestContext,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let id = task_id(&id)?;
    state
        .tasks
        .delete(&user, id, if_match(&headers)?, &ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn if_match_forms() {
        let mut headers = HeaderMap::new();
        assert_eq!(if_match(&headers).unwrap(), None);
        headers.insert(IF_MATCH, HeaderValue::from_static("\"7\""));
        assert_eq!(if_match(&headers).unwrap(), Some(7));
        headers.insert(IF_MATCH, HeaderValue::from_static("W/\"8\""));
        assert_eq!(if_match(&headers).unwrap(), Some(8));
        headers.insert(IF_MATCH, HeaderValue::from_static("*"));
        assert_eq!(if_match(&headers).unwrap(), None);
        headers.insert(IF_MATCH, HeaderValue::from_static("\"abc\""));
        assert!(if_match(&headers).is_err());
    }
}
