//! `/api/v1/journeys/{key}/…`: the journey map's promises (health and weakest links follow).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use troth_core::journey::JourneyMap;
use troth_store::{PromiseQuery, PromiseView, Store};

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::extract::{Params, Segment, bad_cursor, invalid_param, limit_param, time_param, unknown_param};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PromiseList {
    #[schema(value_type = Vec<Object>)]
    pub promises: Vec<PromiseView>,
    /// Cursor for the next page, or null.
    pub next: Option<String>,
}

fn journey<'a, S>(state: &'a AppState<S>, key: &str) -> Result<&'a JourneyMap, ApiError> {
    match &state.journey {
        Some(map) if map.key == key => Ok(map),
        Some(map) => Err(ApiError::new(
            Code::NotFound,
            format!("no journey {key:?}; this server follows {:?}", map.key),
        )),
        None => Err(ApiError::new(Code::NotFound, "this server follows no journey map")),
    }
}

/// Promises made along a journey, by due time.
#[utoipa::path(
    get, path = "/api/v1/journeys/{key}/promises", tag = "journeys",
    params(
        ("key" = String, Path, description = "The journey map's key"),
        ("state" = Option<String>, Query, description = "made, at_risk, kept, broken or cancelled"),
        ("touchpoint" = Option<String>, Query, description = "A touchpoint key"),
        ("owner" = Option<String>, Query, description = "A function key: promises of the touchpoints it owns"),
        ("customer" = Option<String>, Query, description = "A customer key, as for /events"),
        ("from" = Option<String>, Query, description = "Due at or after (RFC 3339)"),
        ("to" = Option<String>, Query, description = "Due before (RFC 3339)"),
        ("after" = Option<String>, Query, description = "The `next` cursor of the previous page"),
        ("limit" = Option<usize>, Query, description = "1–1000, default 100"),
    ),
    responses(
        (status = 200, body = PromiseList),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn promises<S: Store>(
    State(state): State<AppState<S>>,
    Segment(key): Segment,
    Params(params): Params,
) -> Result<Json<PromiseList>, ApiError> {
    let map = journey(&state, &key)?;
    let mut query = PromiseQuery {
        limit: crate::read::DEFAULT_LIMIT,
        ..Default::default()
    };
    let mut touchpoints: Option<Vec<String>> = None;
    let mut narrow = |keys: Vec<String>| {
        touchpoints = Some(match touchpoints.take() {
            Some(current) => current.into_iter().filter(|t| keys.contains(t)).collect(),
            None => keys,
        });
    };
    for (name, value) in &params {
        match name.as_str() {
            "state" => {
                if !["made", "at_risk", "kept", "broken", "cancelled"].contains(&value.as_str()) {
                    return Err(invalid_param(
                        name,
                        format!("state must be made, at_risk, kept, broken or cancelled, not {value:?}"),
                    ));
                }
                query.state = Some(value.clone());
            }
            "touchpoint" => {
                if map.touchpoint(value).is_none() {
                    return Err(invalid_param(
                        name,
                        format!("journey {key:?} has no touchpoint {value:?}"),
                    ));
                }
                narrow(vec![value.clone()]);
            }
            "owner" => {
                if !map.functions.iter().any(|f| f.key == *value) {
                    return Err(invalid_param(
                        name,
                        format!("journey {key:?} has no function {value:?}"),
                    ));
                }
                narrow(
                    map.touchpoints
                        .iter()
                        .filter(|t| t.owners.contains(value))
                        .map(|t| t.key.clone())
                        .collect(),
                );
            }
            "customer" => query.customer = Some(value.clone()),
            "from" => query.due_from_us = Some(time_param(name, value)?),
            "to" => query.due_to_us = Some(time_param(name, value)?),
            "after" => {
                let parsed = value
                    .split_once('_')
                    .and_then(|(due, id)| Some((due.parse::<i64>().ok()?, id.to_owned())));
                query.after = Some(parsed.ok_or_else(|| bad_cursor(name, value))?);
            }
            "limit" => query.limit = limit_param(name, value)?,
            other => {
                return Err(unknown_param(
                    other,
                    "state, touchpoint, owner, customer, from, to, after, limit",
                ));
            }
        }
    }
    query.touchpoints = touchpoints;
    let page = state.store.promises(query).await?;
    Ok(Json(PromiseList {
        promises: page.promises,
        next: page.next.map(|(due, id)| format!("{due}_{id}")),
    }))
}
