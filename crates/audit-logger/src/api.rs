//! The admin query API: trails, verification (of the chain, and of the store against signed
//! checkpoints) and dead letters, all behind the admin token.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::context::AppState;
use crate::entry::Entry;
use crate::error::Error;
use crate::trail::{Cursor, TrailId};
use crate::{checkpoint_check, dead_letter_admin, dead_letters};

/// `cursor` and `limit` query parameters.
#[derive(Debug, Default, Deserialize)]
pub struct Paging {
    pub cursor: Option<String>,
    pub limit: Option<String>,
}

#[derive(Debug, Serialize)]
struct TrailPage {
    trail: String,
    entries: Vec<Entry>,
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
struct DeadLetterPage {
    dead_letters: Vec<dead_letters::DeadLetterView>,
    next_cursor: Option<String>,
}

/// `/audit/...` routes, with the admin-token check.
pub fn routes(ctx: AppState) -> Router {
    Router::new()
        .route("/audit/tasks/{id}", get(task_trail))
        .route("/audit/tasks/{id}/verify", get(verify_task))
        .route("/audit/users/{id}", get(user_trail))
        .route("/audit/users/{id}/verify", get(verify_user))
        .route("/audit/checkpoints/verify", post(verify_checkpoints))
        .route("/audit/dead-letters", get(list_dead_letters))
        .route("/audit/dead-letters/{event_id}/replay", post(replay))
        .route_layer(middleware::from_fn_with_state(
            ctx.clone(),
            crate::auth::require_admin,
        ))
        .with_state(ctx)
}

fn paging(ctx: &AppState, q: &Paging) -> Result<(Cursor, usize), Error> {
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => Cursor::default(),
        Some(text) => Cursor::parse(text).ok_or_else(|| Error::BadRequest {
            field: "cursor",
            message: "not a cursor returned by this API".into(),
        })?,
    };
    let limit = match q.limit.as_deref().filter(|l| !l.is_empty()) {
        None => ctx.page_limit_default,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=ctx.page_limit_max).contains(&n) => n,
            _ => {
                return Err(Error::BadRequest {
                    field: "limit",
                    message: format!("must be an integer from 1 to {}", ctx.page_limit_max),
                });
            }
        },
    };
    Ok((cursor, limit))
}

fn checked_id(id: String) -> Result<String, Error> {
    if id.is_empty() || id.len() > 200 || id.contains("||") || id.contains(char::is_control) {
        return Err(Error::BadRequest {
            field: "id",
            message: "not a valid id".into(),
        });
    }
    Ok(id)
}

async fn trail_page(ctx: &AppState, trail: TrailId, q: &Paging) -> Result<Response, Error> {
    let (cursor, limit) = paging(ctx, q)?;
    let page = ctx.trails.page(&trail, cursor, limit).await?;
    Ok(Json(TrailPage {
        trail: trail.name(),
        entries: page.entries,
        next_cursor: page.next.map(|c| c.to_string()),
    })
    .into_response())
}

async fn task_trail(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Paging>,
) -> Result<Response, Error> {
    trail_page(&ctx, TrailId::Task(checked_id(id)?), &q).await
}

async fn user_trail(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Paging>,
) -> Result<Response, Error> {
    trail_page(&ctx, TrailId::User(checked_id(id)?), &q).await
}

async fn verify_trail(ctx: &AppState, trail: TrailId) -> Result<Response, Error> {
    let (result, _) = checkpoint_check::walk(ctx, &trail, &[]).await?;
    if !result.valid {
        tracing::warn!(trail = %trail.name(), broken = ?result.first_broken, "trail verification failed");
    }
    Ok(Json(result).into_response())
}

/// The body of `POST /audit/checkpoints/verify`: checkpoints as the log stream carries them
/// (extra fields such as `log` are ignored).
#[derive(Debug, Deserialize)]
struct CheckpointsBody {
    checkpoints: Vec<Checkpoint>,
}

async fn verify_checkpoints(
    State(ctx): State<AppState>,
    body: Result<Json<CheckpointsBody>, JsonRejection>,
) -> Result<Response, Error> {
    let Json(body) = body.map_err(|rejection| Error::BadRequest {
        field: "checkpoints",
        message: format!(
            "expected {{\"checkpoints\": [{{trail, length, last_hash, at, mac}}, ...]}}: {}",
            rejection.body_text()
        ),
    })?;
    if body.checkpoints.is_empty() || body.checkpoints.len() > checkpoint_check::MAX_CHECKPOINTS {
        return Err(Error::BadRequest {
            field: "checkpoints",
            message: format!(
                "give from 1 to {} checkpoints, got {}",
                checkpoint_check::MAX_CHECKPOINTS,
                body.checkpoints.len()
            ),
        });
    }
    let report = checkpoint_check::check(&ctx, body.checkpoints).await?;
    if !report.valid {
        tracing::warn!(
            failed = report
                .results
                .iter()
                .filter(|r| r.status != checkpoint_check::Status::Ok)
                .count(),
            "the store does not match the audit checkpoints"
        );
    }
    Ok(Json(report).into_response())
}

async fn verify_task(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    verify_trail(&ctx, TrailId::Task(checked_id(id)?)).await
}

async fn verify_user(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    verify_trail(&ctx, TrailId::User(checked_id(id)?)).await
}

async fn list_dead_letters(
    State(ctx): State<AppState>,
    Query(q): Query<Paging>,
) -> Result<Response, Error> {
    let (cursor, limit) = paging(&ctx, &q)?;
    let (items, next) = dead_letter_admin::list(&ctx, cursor, limit).await?;
    Ok(Json(DeadLetterPage {
        dead_letters: items,
        next_cursor: next.map(|c| c.to_string()),
    })
    .into_response())
}

async fn replay(
    State(ctx): State<AppState>,
    Path(event_id): Path<String>,
) -> Result<Response, Error> {
    let view = dead_letter_admin::replay(&ctx, &checked_id(event_id)?).await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}
