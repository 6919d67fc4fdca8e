//! `GET /api/v1/carriers`: carrier scorecards (docs/carriers.md).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use troth_core::scorecard::{CarrierCard, ScoreTally};
use troth_store::Store;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Params;
use crate::journeys::DayRange;

/// One carrier's or driver's figures over the range.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Score {
    /// Shipments created in the range.
    pub shipments: i64,
    /// Delivery-window promises kept among those settled; null when none was settled.
    pub window_hit_rate: Option<f64>,
    pub windows_kept: i64,
    pub windows_broken: i64,
    /// Deliveries without an earlier failed attempt, among deliveries.
    pub first_attempt_rate: Option<f64>,
    pub delivered: i64,
    pub lost: i64,
    /// Deliveries after the window's end, and their mean lateness in minutes.
    pub late: i64,
    pub mean_minutes_late: Option<f64>,
    pub tracking_views: i64,
    pub tracking_views_per_shipment: Option<f64>,
}

impl From<&ScoreTally> for Score {
    fn from(t: &ScoreTally) -> Score {
        Score {
            shipments: t.shipments,
            window_hit_rate: t.window_hit_rate(),
            windows_kept: t.windows_kept,
            windows_broken: t.windows_broken,
            first_attempt_rate: t.first_attempt_rate(),
            delivered: t.delivered,
            lost: t.lost,
            late: t.late,
            mean_minutes_late: t.mean_minutes_late(),
            tracking_views: t.tracking_views,
            tracking_views_per_shipment: t.tracking_views_per_shipment(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DriverScore {
    pub driver: String,
    #[serde(flatten)]
    pub score: Score,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CarrierScore {
    pub carrier: String,
    #[serde(flatten)]
    pub score: Score,
    /// Its drivers, worst window hit rate first.
    pub drivers: Vec<DriverScore>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Carriers {
    pub from: Option<String>,
    pub to: Option<String>,
    /// Worst window hit rate first; carriers with no settled window last.
    pub carriers: Vec<CarrierScore>,
}

impl From<&CarrierCard> for CarrierScore {
    fn from(card: &CarrierCard) -> CarrierScore {
        CarrierScore {
            carrier: card.carrier.clone(),
            score: Score::from(&card.total),
            drivers: card
                .drivers
                .iter()
                .map(|(driver, t)| DriverScore {
                    driver: driver.clone(),
                    score: Score::from(t),
                })
                .collect(),
        }
    }
}

/// Carrier scorecards: per carrier and per driver, window hit rate, first-attempt
/// delivery rate, lost parcels, mean lateness of late deliveries and tracking
/// views per shipment.
///
/// Kept per day: `from` and `to` select whole days (UTC). Each figure counts on the
/// day of the event that settled it (see docs/carriers.md).
#[utoipa::path(
    get, path = "/api/v1/carriers", tag = "carriers",
    params(
        ("from" = Option<String>, Query, description = "From this day (RFC 3339; its UTC day)"),
        ("to" = Option<String>, Query, description = "Until this time (RFC 3339; days before it, the day it falls in included)"),
    ),
    responses(
        (status = 200, body = Carriers),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn carriers<S: Store>(
    State(state): State<AppState<S>>,
    Params(params): Params,
) -> Result<Json<Carriers>, ApiError> {
    let range = DayRange::from_params(&params)?;
    let rows = state.store.scorecards(range.from, range.to).await?;
    let cards = troth_core::scorecard::rank(&rows);
    Ok(Json(Carriers {
        from: range.from_text,
        to: range.to_text,
        carriers: cards.iter().map(CarrierScore::from).collect(),
    }))
}
