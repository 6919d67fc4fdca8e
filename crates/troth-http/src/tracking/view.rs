//! What a tracking link shows, as the JSON twin `GET /api/v1/track/{token}` gives
//! it and the page renders it. Only this shipment's facts appear, and the driver
//! only while they are on the way to this customer.

use serde::Serialize;
use troth_core::catalogue::EventData;
use troth_core::field::{FromJson, Path};
use troth_core::journey::{CaseDue, JourneyMap};
use troth_core::play::PlayBook;
use troth_core::shipment::Shipment;
use troth_core::{CustomerRef, Timestamp, ValidEvent};
use troth_store::{EventQuery, Store, TrackedShipment};

use super::Tracking;
use super::story::{self, Action, Case, Known, LateBecause, State, Tone};
use super::zone::Zone;
use crate::ApiError;

/// A position older than this is not shown as where the driver is: `driver` is
/// null and the page draws it as stale, with its age.
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
    /// The estimate in the customer's time zone (`today, 11:40 GMT`).
    pub eta_local: Option<String>,
    /// Stops the driver makes before this one, while out for delivery.
    pub stops_before: Option<u32>,
    /// The driver's position while on the way, only when fresh (at most
    /// [`POSITION_FRESH_US`] old).
    pub driver: Option<PositionView>,
    /// The driver's latest position while on the way, fresh or not, with its age:
    /// a stale one is shown as such, never as where the driver is.
    pub last_position: Option<LastPositionView>,
    /// Where the driver is headed (this customer's stop), while out for delivery, so
    /// the map can show the driver against it.
    pub destination: Option<PlaceView>,
    pub proof: Option<ProofView>,
    /// What the page tells the customer now (docs/tracking.md#states).
    pub status: StatusView,
    /// While running late: why, the window missed, the new estimate.
    pub late: Option<LateView>,
    /// After a failed attempt: when, and why as the carrier said.
    pub attempt: Option<AttemptView>,
    /// The case opened for a lost parcel, when a play opened one.
    pub lost_case: Option<CaseView>,
    /// Cases the customer opened from the page, newest first.
    pub cases: Vec<CaseView>,
    /// The IANA time zone the `*_local` and `status` texts are in.
    pub timezone: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StatusView {
    pub state: State,
    pub tone: Tone,
    pub headline: String,
    /// What happened and what happens next, a sentence each, in the customer's zone.
    pub lines: Vec<String>,
    /// The forms the customer is pointed to.
    pub actions: Vec<Action>,
    /// The problem form's reason that fits the state, if one does.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LateView {
    pub because: LateBecause,
    /// The window missed.
    pub promised: WindowView,
    /// The new estimate, when there is one.
    pub estimate: Option<String>,
    pub estimate_local: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub at: String,
    pub reason: Option<String>,
}

/// A case as its customer sees it. Named `TrackedCase` in the OpenAPI document, as
/// the staff's `CaseView` (troth_core::case) has that name there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = TrackedCase)]
pub struct CaseView {
    /// The case's reference, as the customer quotes it.
    pub reference: String,
    pub team: String,
    pub opened_at: String,
    /// When the journey map promises an answer (its promise for `case.opened`).
    pub answer_by: Option<String>,
    pub answer_by_local: Option<String>,
    /// What the page says to confirm it: the reference and when the answer comes.
    pub message: String,
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
    /// `at` in the customer's time zone.
    pub local: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WindowView {
    pub start: String,
    pub end: String,
    /// The window in the customer's time zone (`today, 10:00–11:00 BST`).
    pub local: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PositionView {
    pub lat: f64,
    pub lon: f64,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LastPositionView {
    pub lat: f64,
    pub lon: f64,
    pub at: String,
    /// How old the position was when the view was made.
    pub age_seconds: i64,
    /// Older than the page's limit: not where the driver is now.
    pub stale: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProofView {
    /// photo, signature, safe_place or handed.
    pub kind: String,
    pub photo: Option<String>,
    /// When it was delivered.
    pub at: Option<String>,
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

/// What the view is made from besides the shipment: read from the log and the
/// journey map by [`view`], passed in whole so that making the view is pure.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub eta: Option<Timestamp>,
    pub position: Option<DriverPosition>,
    pub estimated_windows: Vec<String>,
    pub attempt_reason: Option<String>,
    pub lost_case: Option<Case>,
    pub cases: Vec<Case>,
    pub case_due: Option<CaseDue>,
    pub zone: Zone,
}

impl TrackView {
    /// The view of a shipment at `now`, from its projection and what else is known.
    pub fn of(id: &str, shipment: &Shipment, extra: &Extra, now: Timestamp) -> TrackView {
        let on_the_road = shipment.on_the_road();
        let zone = &extra.zone;
        let window_view = |(start, end): (Timestamp, Timestamp)| WindowView {
            start: start.to_string(),
            end: end.to_string(),
            local: zone.window(start, end, now),
        };
        let eta = extra.eta.filter(|_| on_the_road);
        let story = story::tell(&Known {
            shipment,
            estimated_windows: &extra.estimated_windows,
            eta,
            attempt_reason: extra.attempt_reason.as_deref(),
            lost_case: extra.lost_case.as_ref(),
            case_due: extra.case_due.as_ref(),
            zone,
            now,
        });
        let case_view = |c: &Case| CaseView {
            reference: c.reference.clone(),
            team: c.team.clone(),
            opened_at: c.opened.to_string(),
            answer_by: c.answer_by.map(|t| t.to_string()),
            answer_by_local: c.answer_by.map(|t| zone.when(t, now)),
            message: story::case_confirmation(c, zone, now),
        };
        let stage = shipment.stage();
        let position = extra.position.as_ref().filter(|_| on_the_road);
        TrackView {
            shipment: id.to_owned(),
            stage: stage.map(|s| s.stage.as_str().to_owned()),
            stages: shipment
                .stages()
                .iter()
                .map(|s| StageView {
                    stage: s.stage.as_str().to_owned(),
                    at: s.at.to_string(),
                    local: zone.when(s.at, now),
                })
                .collect(),
            window: shipment.window().map(window_view),
            eta: eta.map(|t| t.to_string()),
            eta_local: eta.map(|t| zone.when(t, now)),
            stops_before: if on_the_road {
                shipment.assignment().and_then(|a| a.stops_before)
            } else {
                None
            },
            driver: position.filter(|p| fresh(p.at, now)).map(|p| PositionView {
                lat: p.lat,
                lon: p.lon,
                at: p.at.to_string(),
            }),
            last_position: position.map(|p| LastPositionView {
                lat: p.lat,
                lon: p.lon,
                at: p.at.to_string(),
                age_seconds: (now.micros().saturating_sub(p.at.micros()) / 1_000_000).max(0),
                stale: !fresh(p.at, now),
            }),
            destination: shipment
                .assignment()
                .filter(|_| on_the_road)
                .and_then(|a| a.destination)
                .map(|(lat, lon)| PlaceView { lat, lon }),
            proof: shipment.proof().map(|p| ProofView {
                kind: p.kind,
                photo: p.photo,
                at: stage
                    .filter(|s| s.stage == troth_core::shipment::Stage::Delivered)
                    .map(|s| s.at.to_string()),
            }),
            late: story.late.as_ref().map(|l| LateView {
                because: l.because,
                promised: window_view(l.promised),
                estimate: l.estimate.map(|t| t.to_string()),
                estimate_local: l.estimate.map(|t| zone.when(t, now)),
            }),
            attempt: stage
                .filter(|s| s.stage == troth_core::shipment::Stage::AttemptFailed)
                .map(|s| AttemptView {
                    at: s.at.to_string(),
                    reason: extra.attempt_reason.clone(),
                }),
            lost_case: extra.lost_case.as_ref().map(case_view),
            cases: extra.cases.iter().map(case_view).collect(),
            status: StatusView {
                state: story.state,
                tone: story.tone,
                headline: story.headline,
                lines: story.lines,
                actions: story.actions,
                problem: story.problem.map(str::to_owned),
            },
            timezone: zone.name().to_owned(),
        }
    }
}

/// What the view needs of the store besides the shipment: its driver's latest
/// position while on the way, what the log says that the projection does not keep
/// (why an attempt failed, which windows were estimates, cases), and the customer's
/// time zone. The estimated arrival is not read here: it changes without an event
/// (see [`super::finish`]).
pub async fn stored<S: Store>(
    store: &S,
    tracking: &Tracking,
    journey: Option<&JourneyMap>,
    tracked: &TrackedShipment,
) -> Result<Extra, ApiError> {
    let shipment = &tracked.shipment;
    let subject = format!("shipment:{}", tracked.link.shipment);
    let mut extra = Extra {
        zone: customer_zone(store, tracked, &tracking.config.timezone).await?,
        case_due: journey.and_then(JourneyMap::case_due),
        ..Extra::default()
    };
    if shipment.on_the_road() {
        extra.position = latest_position(store, shipment).await?;
    }
    if shipment.facts.iter().any(|f| f.window.is_some()) {
        for event in logged(store, &subject, "shipment.window_set", 50).await? {
            if let EventData::WindowSet(w) = &event.data
                && w.estimate == Some(true)
            {
                extra.estimated_windows.push(event.id.clone());
            }
        }
    }
    match shipment.stage().map(|s| s.stage) {
        Some(troth_core::shipment::Stage::AttemptFailed) => {
            extra.attempt_reason = logged(store, &subject, "shipment.attempt_failed", 20)
                .await?
                .into_iter()
                .filter_map(|e| match e.data {
                    EventData::AttemptFailed(a) => Some((e.time, a.reason)),
                    _ => None,
                })
                .max_by_key(|(at, _)| *at)
                .map(|(_, reason)| reason);
        }
        Some(troth_core::shipment::Stage::Lost) => {
            extra.lost_case = match journey {
                Some(map) => lost_case(store, map, &subject, extra.case_due.as_ref()).await?,
                None => None,
            };
        }
        _ => {}
    }
    let mut cases: Vec<Case> = logged(store, &subject, "case.opened", 20)
        .await?
        .into_iter()
        .filter_map(|e| match e.data {
            EventData::CaseOpened(c) => Some(Case {
                answer_by: extra.case_due.as_ref().and_then(|d| d.at(&c.team, &c.category, e.time)),
                reference: c.case,
                team: c.team,
                opened: e.time,
            }),
            _ => None,
        })
        .collect();
    cases.sort_by_key(|c| std::cmp::Reverse(c.opened));
    extra.cases = cases;
    Ok(extra)
}

/// A subject's events of one type, newest first.
async fn logged<S: Store>(
    store: &S,
    subject: &str,
    event_type: &str,
    limit: usize,
) -> Result<Vec<ValidEvent>, ApiError> {
    let page = store
        .events(EventQuery {
            subject: Some(subject.to_owned()),
            event_type: Some(event_type.to_owned()),
            newest_first: true,
            limit,
            ..Default::default()
        })
        .await?;
    Ok(page
        .events
        .iter()
        .filter_map(|e| troth_core::validate_event(&e.raw).ok())
        .collect())
}

/// The case a play opened for this shipment's loss: the map's plays are asked
/// which case the `shipment.lost` event called for, and the log whether it was
/// opened (a loss reported long after the fact triggers no play).
async fn lost_case<S: Store>(
    store: &S,
    map: &JourneyMap,
    subject: &str,
    due: Option<&CaseDue>,
) -> Result<Option<Case>, ApiError> {
    let book = PlayBook::new(map);
    for lost in logged(store, subject, "shipment.lost", 5).await? {
        for planned in book.on_event(&lost, lost.time) {
            let Some(case) = troth_core::play::case_event(&planned, &lost, None) else {
                continue;
            };
            let Some(reference) = case["data"]["case"].as_str() else {
                continue;
            };
            let opened = logged(store, &format!("case:{reference}"), "case.opened", 1).await?;
            if let Some(EventData::CaseOpened(c)) = opened.into_iter().next().map(|e| e.data) {
                return Ok(Some(Case {
                    answer_by: due.and_then(|d| d.at(&c.team, &c.category, lost.time)),
                    reference: c.case,
                    team: c.team,
                    opened: lost.time,
                }));
            }
        }
    }
    Ok(None)
}

/// The customer's time zone (`traits.timezone`, from `customer.identified`), else
/// the retailer's.
pub async fn customer_zone<S: Store>(store: &S, tracked: &TrackedShipment, retailer: &Zone) -> Result<Zone, ApiError> {
    let Some(customer) = &tracked.customer else {
        return Ok(retailer.clone());
    };
    let Ok(reference) = CustomerRef::from_json(customer, &Path::Root("customer")) else {
        return Ok(retailer.clone());
    };
    let Some(identity) = reference.identities.first() else {
        return Ok(retailer.clone());
    };
    let profile = store.customer(identity.as_key().to_owned()).await?;
    let named = profile
        .as_ref()
        .and_then(|p| p.traits.get("timezone"))
        .and_then(|v| v.as_str());
    Ok(Zone::choose(named, retailer))
}

/// The driver's latest trusted position since this run started, if the driver is on
/// the way to this customer, however old: the caller decides what its age allows.
pub async fn latest_position<S: Store>(store: &S, shipment: &Shipment) -> Result<Option<DriverPosition>, ApiError> {
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
        // A flagged fix (stale, out of order, an impossible jump…) was not trusted.
        if p.flag.is_some() {
            return None;
        }
        Some(DriverPosition {
            driver: assignment.driver.clone(),
            lat: p.lat.0,
            lon: p.lon.0,
            at: event.time,
        })
    });
    Ok(position.max_by_key(|p| p.at))
}

/// Whether a position taken at `at` may still be shown at `now`.
pub fn fresh(at: Timestamp, now: Timestamp) -> bool {
    now.micros() - at.micros() <= POSITION_FRESH_US
}
