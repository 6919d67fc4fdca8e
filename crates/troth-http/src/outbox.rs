//! `/api/v1/outbox`: the messages and webhooks plays asked for, their state, the
//! dead letters, and retrying one. Master key only: rows hold customers' addresses.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use troth_core::Timestamp;
use troth_store::{OutboxEntry, OutboxQuery, OutboxState, Store};

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::extract::{Params, Segment, bad_cursor, invalid_param, limit_param, unknown_param};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OutboxList {
    /// Rows oldest first: id, play, event, channel, recipient, state, attempts,
    /// next_attempt_at, last_error, created_at, sent_at, payload.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<OutboxEntry>,
    /// Cursor for the next page, or null.
    pub next: Option<String>,
}

/// List outbox rows, oldest first.
#[utoipa::path(
    get, path = "/api/v1/outbox", tag = "outbox",
    params(
        ("state" = Option<String>, Query, description = "pending, sending, sent, dead or skipped"),
        ("cursor" = Option<String>, Query, description = "The `next` cursor of the previous page"),
        ("limit" = Option<usize>, Query, description = "1–1000, default 100"),
    ),
    responses(
        (status = 200, body = OutboxList),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list<S: Store>(
    State(state): State<AppState<S>>,
    Params(params): Params,
) -> Result<Json<OutboxList>, ApiError> {
    let mut query = parse(&params, true)?;
    if query.limit == 0 {
        query.limit = crate::read::DEFAULT_LIMIT;
    }
    page(&state, query).await
}

/// List the dead letters: rows out of attempts, waiting to be retried by hand.
#[utoipa::path(
    get, path = "/api/v1/outbox/dead-letters", tag = "outbox",
    params(
        ("cursor" = Option<String>, Query, description = "The `next` cursor of the previous page"),
        ("limit" = Option<usize>, Query, description = "1–1000, default 100"),
    ),
    responses(
        (status = 200, body = OutboxList),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn dead_letters<S: Store>(
    State(state): State<AppState<S>>,
    Params(params): Params,
) -> Result<Json<OutboxList>, ApiError> {
    let mut query = parse(&params, false)?;
    query.state = Some(OutboxState::Dead);
    page(&state, query).await
}

/// One outbox row.
#[utoipa::path(
    get, path = "/api/v1/outbox/{id}", tag = "outbox",
    params(("id" = String, Path, description = "The row's id, play:PLAY:EVENT:INDEX")),
    responses(
        (status = 200, description = "The row", body = Object),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_entry<S: Store>(
    State(state): State<AppState<S>>,
    Segment(id): Segment,
) -> Result<Json<OutboxEntry>, ApiError> {
    match state.store.outbox_entry(id.clone()).await? {
        Some(entry) => Ok(Json(entry)),
        None => Err(ApiError::new(Code::NotFound, format!("no outbox row {id:?}"))),
    }
}

/// Retry a dead letter now: it is pending again with its attempts reset.
#[utoipa::path(
    post, path = "/api/v1/outbox/{id}/retry", tag = "outbox",
    params(("id" = String, Path, description = "The row's id, play:PLAY:EVENT:INDEX")),
    responses(
        (status = 200, description = "The row, pending again", body = Object),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The row is not a dead letter", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn retry<S: Store>(
    State(state): State<AppState<S>>,
    Segment(id): Segment,
) -> Result<Json<OutboxEntry>, ApiError> {
    let before = state.store.outbox_entry(id.clone()).await?;
    match before {
        None => Err(ApiError::new(Code::NotFound, format!("no outbox row {id:?}"))),
        Some(entry) if entry.state != OutboxState::Dead => Err(ApiError::new(
            Code::NotDead,
            format!(
                "outbox row {id:?} is {}; only dead letters are retried",
                entry.state.as_str()
            ),
        )),
        Some(_) => match state.store.retry_outbox(id.clone(), Timestamp::now()).await? {
            Some(entry) => Ok(Json(entry)),
            None => Err(ApiError::new(Code::NotFound, format!("no outbox row {id:?}"))),
        },
    }
}

fn parse(params: &[(String, String)], with_state: bool) -> Result<OutboxQuery, ApiError> {
    let mut query = OutboxQuery {
        limit: crate::read::DEFAULT_LIMIT,
        ..Default::default()
    };
    for (name, value) in params {
        match name.as_str() {
            "state" if with_state => {
                query.state = Some(OutboxState::parse(value).ok_or_else(|| {
                    invalid_param(
                        name,
                        format!("state must be pending, sending, sent, dead or skipped, not {value:?}"),
                    )
                })?);
            }
            "cursor" => query.after = Some(value.parse().map_err(|_| bad_cursor(name, value))?),
            "limit" => query.limit = limit_param(name, value)?,
            other if with_state => return Err(unknown_param(other, "state, cursor, limit")),
            other => return Err(unknown_param(other, "cursor, limit")),
        }
    }
    Ok(query)
}

async fn page<S: Store>(state: &AppState<S>, query: OutboxQuery) -> Result<Json<OutboxList>, ApiError> {
    let page = state.store.outbox(query).await?;
    Ok(Json(OutboxList {
        entries: page.entries,
        next: page.next.map(|n| n.to_string()),
    }))
}
