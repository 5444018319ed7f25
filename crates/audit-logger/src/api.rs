//! The admin query API: trails, verification and dead letters, all behind the admin token.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use serde::{Deserialize, Serialize};

use crate::context::AppState;
use crate::entry::Entry;
use crate::error::Error;
use crate::trail::{Cursor, TrailId};
use crate::{dead_letter_admin, dead_letters, verify};

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
    // Read the head first: it only ever counts entries already in the chunks read after it.
    let head = ctx.trails.head(&trail).await?;
    let result = check_chain(ctx, &trail, head.as_ref()).await?;
    if !result.valid {
        tracing::warn!(trail = %trail.name(), broken = ?result.first_broken, "trail verification failed");
    }
    Ok(Json(result).into_response())
}

/// Feeds the chunks to the check in batches of 16 (one bulk read each).
async fn check_chain(
    ctx: &AppState,
    trail: &TrailId,
    head: Option<&crate::trail::Head>,
) -> Result<verify::Verification, Error> {
    const BATCH: u64 = 16;
    let mut check = verify::ChainCheck::new(&trail.name());
    let mut next = 0;
    loop {
        let chunks = ctx.trails.chunks(trail, next, BATCH).await?;
        let complete = chunks.len() as u64 == BATCH;
        for (n, chunk) in &chunks {
            if let Some(verdict) = check.feed(*n, chunk) {
                return Ok(verdict);
            }
        }
        if !complete {
            return Ok(check.finish(head));
        }
        next += BATCH;
    }
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
