//! What a tracking link shows, as the JSON twin `GET /api/v1/track/{token}` gives
//! it and the page renders it. Only this shipment's facts appear, and the driver
//! only while they are on the way to this customer.

use serde::Serialize;
use troth_core::Timestamp;
use troth_core::shipment::Shipment;
use troth_store::{EventQuery, Store, TrackedShipment};

use super::Arrivals;
use crate::ApiError;

/// A position older than this hides the vehicle: a stale dot is worse than none.
pub const POSITION_FRESH_US: i64 = 5 * 60 * 1_000_000;

/// The JSON twin's body.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TrackView {
    /// The shipment id.
    pub shipment: String,
    /// The current stage, as the catalogue names it (`out_for_delivery`, `delivered`, …).
    pub stage: Option<String>,
    pub stages: Vec<StageView>,
    pub window: Option<WindowView>,
    /// When the driver is expected at the door, while out for delivery (docs/eta.md).
    #[schema(value_type = Option<String>)]
    pub eta: Option<String>,
    /// Stops the driver makes before this one, while out for delivery.
    pub stops_before: Option<u32>,
    pub driver: Option<PositionView>,
    /// Where the driver is headed (this customer's stop), while out for delivery, so
    /// the map can show the driver against it.
    pub destination: Option<PlaceView>,
    pub proof: Option<ProofView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PlaceView {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StageView {
    pub stage: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WindowView {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PositionView {
    pub lat: f64,
    pub lon: f64,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProofView {
    /// photo, signature, safe_place or handed.
    pub kind: String,
    pub photo: Option<String>,
}

/// A driver's position as the live stream receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverPosition {
    /// The driver's id, as in `shipment.out_for_delivery` (without `driver:`).
    pub driver: String,
    pub lat: f64,
    pub lon: f64,
    pub at: Timestamp,
}

impl TrackView {
    /// The view without the driver's position.
    pub fn of(id: &str, shipment: &Shipment) -> TrackView {
        let on_the_road = shipment.on_the_road();
        TrackView {
            shipment: id.to_owned(),
            stage: shipment.stage().map(|s| s.stage.as_str().to_owned()),
            stages: shipment
                .stages()
                .iter()
                .map(|s| StageView {
                    stage: s.stage.as_str().to_owned(),
                    at: s.at.to_string(),
                })
                .collect(),
            window: shipment.window().map(|(start, end)| WindowView {
                start: start.to_string(),
                end: end.to_string(),
            }),
            eta: None,
            stops_before: if on_the_road {
                shipment.assignment().and_then(|a| a.stops_before)
            } else {
                None
            },
            driver: None,
            destination: shipment
                .assignment()
                .filter(|_| on_the_road)
                .and_then(|a| a.destination)
                .map(|(lat, lon)| PlaceView { lat, lon }),
            proof: shipment.proof().map(|p| ProofView {
                kind: p.kind,
                photo: p.photo,
            }),
        }
    }
}

/// The whole view: the shipment, its estimated arrival while on the way, and its
/// driver's latest fresh position from the log.
pub async fn view<S: Store>(
    store: &S,
    arrivals: &Arrivals,
    tracked: &TrackedShipment,
    now: Timestamp,
) -> Result<TrackView, ApiError> {
    let mut view = TrackView::of(&tracked.link.shipment, &tracked.shipment);
    if tracked.shipment.on_the_road() {
        view.eta = arrivals
            .predict(store, &tracked.link.shipment, now)
            .await
            .map(|eta| eta.to_string());
    }
    view.driver = latest_position(store, &tracked.shipment, now)
        .await?
        .map(|p| PositionView {
            lat: p.lat,
            lon: p.lon,
            at: p.at.to_string(),
        });
    Ok(view)
}

/// The driver's latest position since this run started, if the driver is on the way
/// to this customer and the position is fresh.
pub async fn latest_position<S: Store>(
    store: &S,
    shipment: &Shipment,
    now: Timestamp,
) -> Result<Option<DriverPosition>, ApiError> {
    let Some(assignment) = shipment.assignment().filter(|_| shipment.on_the_road()) else {
        return Ok(None);
    };
    let latest = store
        .events(EventQuery {
            subject: Some(format!("driver:{}", assignment.driver)),
            event_type: Some("courier.position".into()),
            from_us: Some(assignment.since.micros()),
            newest_first: true,
            // The log is in arrival order: a late report must not hide a newer position.
            limit: 20,
            ..Default::default()
        })
        .await?;
    let position = latest.events.iter().filter_map(|e| {
        let event = troth_core::validate_event(&e.raw).ok()?;
        let troth_core::catalogue::EventData::CourierPosition(p) = event.data else {
            return None;
        };
        Some(DriverPosition {
            driver: assignment.driver.clone(),
            lat: p.lat.0,
            lon: p.lon.0,
            at: event.time,
        })
    });
    Ok(position.max_by_key(|p| p.at).filter(|p| fresh(p.at, now)))
}

/// Whether a position taken at `at` may still be shown at `now`.
pub fn fresh(at: Timestamp, now: Timestamp) -> bool {
    now.micros() - at.micros() <= POSITION_FRESH_US
}
