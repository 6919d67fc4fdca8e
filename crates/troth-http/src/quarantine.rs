//! `/api/v1/quarantine`: events troth refused because applying them failed inside
//! troth. The sender was told (`rejected`, field ""), the store went on; this is
//! where the operator finds what to report. Master key only: bodies hold customers'
//! details.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use troth_store::{Quarantined, Store};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Params, limit_param, unknown_param};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QuarantineList {
    /// Newest first: at, stage, event_id, type, reason, body (the event as sent).
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Quarantined>,
}

/// List the events refused because applying them failed inside troth, newest first.
#[utoipa::path(
    get, path = "/api/v1/quarantine", tag = "events",
    params(("limit" = Option<usize>, Query, description = "1–1000, default 100")),
    responses(
        (status = 200, body = QuarantineList),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list<S: Store>(
    State(state): State<AppState<S>>,
    Params(params): Params,
) -> Result<Json<QuarantineList>, ApiError> {
    let mut limit = crate::read::DEFAULT_LIMIT;
    for (name, value) in &params {
        match name.as_str() {
            "limit" => limit = limit_param(name, value)?,
            other => return Err(unknown_param(other, "limit")),
        }
    }
    let events = state.store.quarantine(limit).await?;
    Ok(Json(QuarantineList { events }))
}
