//! `GET /api/v1/inventory`: inventory truthfulness per store and SKU — what the site
//! claimed, what visitors found, what counts and receiving said — computed by
//! `troth_core::inventory` from the log's events of the range.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use troth_core::inventory::{EVENT_TYPES, Shelf, truthfulness};
use troth_store::{EventQuery, Store};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Params;
use crate::journeys::DayRange;

/// Events read per page while collecting a range.
const PAGE: usize = 5_000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Inventory {
    pub from: Option<String>,
    pub to: Option<String>,
    /// Worst phantom stock first.
    pub shelves: Vec<Shelf>,
}

/// Inventory truthfulness per store and SKU
///
/// Phantom stock (the site says in stock, the shelf is empty) with its evidence,
/// receipts the next count contradicted, and which function owns the fix; worst
/// first. `from` and `to` select whole days (UTC). See docs/inventory.md.
#[utoipa::path(
    get, path = "/api/v1/inventory", tag = "inventory",
    params(
        ("from" = Option<String>, Query, description = "From this day (RFC 3339; its UTC day)"),
        ("to" = Option<String>, Query, description = "Until this time (RFC 3339; days before it, the day it falls in included)"),
    ),
    responses(
        (status = 200, body = Inventory),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn inventory<S: Store>(
    State(state): State<AppState<S>>,
    Params(params): Params,
) -> Result<Json<Inventory>, ApiError> {
    let range = DayRange::from_params(&params)?;
    let shelves = shelves(&state.store, range.from, range.to).await?;
    Ok(Json(Inventory {
        from: range.from_text,
        to: range.to_text,
        shelves,
    }))
}

/// The shelves of the UTC days `from_day` (inclusive) to `to_day` (exclusive).
pub async fn shelves<S: Store>(store: &S, from_day: Option<i64>, to_day: Option<i64>) -> Result<Vec<Shelf>, ApiError> {
    const DAY_US: i64 = 86_400_000_000;
    let mut stored = Vec::new();
    for event_type in EVENT_TYPES {
        let mut after = None;
        loop {
            let page = store
                .events(EventQuery {
                    event_type: Some((*event_type).to_owned()),
                    from_us: from_day.map(|d| d.saturating_mul(DAY_US)),
                    to_us: to_day.map(|d| d.saturating_mul(DAY_US)),
                    after_seq: after,
                    limit: PAGE,
                    ..Default::default()
                })
                .await?;
            let full = page.events.len() == PAGE;
            after = page.events.last().map(|e| e.seq);
            stored.extend(page.events);
            if !full {
                break;
            }
        }
    }
    // In log order, as they happened to the books.
    stored.sort_by_key(|e| e.seq);
    let events: Vec<_> = stored
        .iter()
        .filter_map(|e| troth_core::validate_event(&e.raw).ok())
        .collect();
    Ok(truthfulness(&events))
}
