//! Drivers' positions: devices (`/api/v1/drivers/{id}/devices`), batches through
//! the API (`/api/v1/drivers/{id}/positions`) and the OsmAnd protocol of GPS apps
//! (`/osmand`, and `/` of the `--osmand-listen` port).
//!
//! Every position is appended as a `courier.position` event with an id made of the
//! driver and the fix's time, so a report sent again is a duplicate. The
//! plausibility rules (troth-core) judge each fix against the driver's track; a fix
//! they do not trust is stored with its `flag` and is not published to the hub.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use troth_core::catalogue::EventData;
use troth_core::field::Path;
use troth_core::position::{
    DeviceReport, Fix, Plausibility, PositionFlag, Track, parse_api_position, parse_osmand_json, parse_osmand_params,
};
use troth_core::{FieldError, Timestamp, ValidEvent, validate_event, validate_value};
use troth_store::{AppendStatus, Device, EventQuery, Store};

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::extract::Segment;
use crate::hub::LivePosition;
use crate::ingest::{ItemStatus, MAX_BATCH_EVENTS, MAX_BODY_BYTES};

/// The longest driver id accepted, so that event ids stay within their limit.
pub const MAX_DRIVER_CHARS: usize = 64;
/// The largest OsmAnd request body (one report, or a few in Traccar Client's JSON).
const MAX_OSMAND_BYTES: usize = 64 * 1024;
/// How many of a driver's latest positions are read to rebuild its track.
const TRACK_HISTORY: usize = 100;

/// A driver's devices.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceList {
    #[schema(value_type = Vec<Object>)]
    pub devices: Vec<Device>,
}

/// The answer for one position of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PositionResult {
    /// The `courier.position` event's id (`pos.{driver}.{µs}`), when the item was readable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub status: ItemStatus,
    /// The event's position in the log; only for accepted items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// Why a stored position is not trusted: stale, out_of_order, implausible_jump, no_fix, future.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<FieldError>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PositionsResponse {
    pub results: Vec<PositionResult>,
}

/// Issue a device identifier for a driver, to type into Traccar Client.
#[utoipa::path(
    post, path = "/api/v1/drivers/{id}/devices", tag = "drivers",
    params(("id" = String, Path, description = "The driver, as in `driver:{id}` subjects")),
    responses(
        (status = 201, description = "`{\"device_id\", \"driver\", \"created_at\"}`", body = Object),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_device<S: Store>(
    State(state): State<AppState<S>>,
    Segment(driver): Segment,
) -> Result<Response, ApiError> {
    check_driver(&driver)?;
    let device = state.store.create_device(driver).await?;
    Ok((StatusCode::CREATED, Json(device)).into_response())
}

/// List a driver's devices.
#[utoipa::path(
    get, path = "/api/v1/drivers/{id}/devices", tag = "drivers",
    params(("id" = String, Path)),
    responses((status = 200, body = DeviceList)),
    security(("bearer" = []))
)]
pub async fn list_devices<S: Store>(
    State(state): State<AppState<S>>,
    Segment(driver): Segment,
) -> Result<Json<DeviceList>, ApiError> {
    check_driver(&driver)?;
    Ok(Json(DeviceList {
        devices: state.store.devices(driver).await?,
    }))
}

/// Revoke a driver's device: its reports are refused from now on.
#[utoipa::path(
    delete, path = "/api/v1/drivers/{id}/devices/{device_id}", tag = "drivers",
    params(("id" = String, Path), ("device_id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn delete_device<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<axum::extract::Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let axum::extract::Path((driver, device_id)) =
        path.map_err(|e| ApiError::new(Code::InvalidQuery, e.body_text()))?;
    if state.store.delete_device(driver.clone(), device_id.clone()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            Code::NotFound,
            format!("driver {driver:?} has no device {device_id:?}"),
        ))
    }
}

/// Record a batch of a driver's positions.
///
/// Each accepted position is a `courier.position` event; positions that are stale,
/// out of order or an impossible jump are stored with a `flag` and are not the
/// driver's current position. Sending the same batch again answers `duplicate`.
#[utoipa::path(
    post, path = "/api/v1/drivers/{id}/positions", tag = "drivers",
    params(("id" = String, Path)),
    request_body(content = Object, description = "An array of at most 1,000 `{lat, lon, at, speed_kmh?, heading?, accuracy_m?, altitude_m?, battery?}`."),
    responses(
        (status = 200, description = "One result per item, in input order", body = PositionsResponse),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn ingest_positions<S: Store>(
    State(state): State<AppState<S>>,
    Segment(driver): Segment,
    body: Bytes,
) -> Result<Json<PositionsResponse>, ApiError> {
    check_driver(&driver)?;
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            Code::PayloadTooLarge,
            format!("the body is {} bytes; the limit is {MAX_BODY_BYTES}", body.len()),
        ));
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(Code::InvalidJson, format!("the body is not valid JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => {
            return Err(ApiError::new(
                Code::InvalidBody,
                "send an array of positions {lat, lon, at, …}",
            ));
        }
    };
    if items.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::new(
            Code::TooManyEvents,
            format!(
                "the array has {} positions; send at most {MAX_BATCH_EVENTS}",
                items.len()
            ),
        ));
    }
    let root = Path::Root("");
    let mut results = Vec::with_capacity(items.len());
    let mut fixes = Vec::new();
    let mut indexes = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match parse_api_position(item, &root.index(i)) {
            Ok(fix) => {
                indexes.push(i);
                fixes.push(fix);
                results.push(PositionResult {
                    id: None,
                    status: ItemStatus::Accepted,
                    position: None,
                    flag: None,
                    error: None,
                });
            }
            Err(error) => results.push(PositionResult {
                id: None,
                status: ItemStatus::Rejected,
                position: None,
                flag: None,
                error: Some(error),
            }),
        }
    }
    let recorded = record(&state, &driver, fixes, "troth.positions").await?;
    for (i, outcome) in indexes.into_iter().zip(recorded) {
        let result = &mut results[i];
        result.id = Some(outcome.id);
        match outcome.status {
            AppendStatus::Accepted { seq } => {
                result.position = Some(seq);
                result.flag = outcome.flag.map(PositionFlag::as_str);
            }
            AppendStatus::Duplicate => result.status = ItemStatus::Duplicate,
        }
    }
    let by = |s| results.iter().filter(|r| r.status == s).count() as u64;
    state.metrics.count_events(
        by(ItemStatus::Accepted),
        by(ItemStatus::Duplicate),
        by(ItemStatus::Rejected),
    );
    Ok(Json(PositionsResponse { results }))
}

/// A report from a GPS app speaking the OsmAnd protocol, as Traccar's server takes it.
///
/// Parameters in the query string (GET or POST), else in a form body, else Traccar
/// Client 9's JSON body. No API key: the device identifier, issued by
/// `POST /api/v1/drivers/{id}/devices`, is the credential. An unknown device is
/// refused with 400 and nothing is stored; success is 200 with an empty body.
#[utoipa::path(
    method(get, post), path = "/osmand", tag = "drivers",
    params(
        ("id" = String, Query, description = "The device identifier (or `deviceid`)"),
        ("lat" = f64, Query), ("lon" = f64, Query),
        ("timestamp" = Option<String>, Query, description = "Unix seconds or milliseconds, or ISO 8601; absent means now"),
        ("speed" = Option<f64>, Query, description = "Knots"),
        ("bearing" = Option<f64>, Query), ("altitude" = Option<f64>, Query), ("accuracy" = Option<f64>, Query),
        ("batt" = Option<f64>, Query, description = "Battery, percent"),
    ),
    responses(
        (status = 200, description = "Stored (empty body)"),
        (status = 400, description = "Unknown device, or a parameter that cannot be read", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn osmand<S: Store>(State(state): State<AppState<S>>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    match osmand_report(&state, &uri, &headers, body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn osmand_report<S: Store>(
    state: &AppState<S>,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), ApiError> {
    let now = Timestamp::now();
    let invalid = |e: FieldError| ApiError::field(Code::InvalidPosition, e.field.clone(), e.to_string());
    let form = |text: &[u8]| {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(text)
            .map_err(|e| ApiError::new(Code::InvalidPosition, format!("the parameters cannot be read: {e}")))
    };
    let pairs_report = |pairs: Vec<(String, String)>| {
        parse_osmand_params(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), now).map_err(invalid)
    };
    // As Traccar: the query string when it has parameters, else the body.
    let report: DeviceReport = match uri.query().filter(|q| !q.is_empty()) {
        Some(query) => pairs_report(form(query.as_bytes())?)?,
        None => {
            let body = axum::body::to_bytes(body, MAX_OSMAND_BYTES).await.map_err(|_| {
                ApiError::new(
                    Code::PayloadTooLarge,
                    format!("an OsmAnd report is at most {MAX_OSMAND_BYTES} bytes"),
                )
            })?;
            let is_json = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("application/json"))
                || body.trim_ascii_start().starts_with(b"{");
            if is_json {
                let value: Value = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::new(Code::InvalidJson, format!("the body is not valid JSON: {e}")))?;
                parse_osmand_json(&value, now).map_err(invalid)?
            } else {
                pairs_report(form(&body)?)?
            }
        }
    };
    let Some(driver) = state.store.device_driver(&report.device_id) else {
        return Err(ApiError::field(
            Code::UnknownDevice,
            "id",
            "no device has this identifier; issue one with POST /api/v1/drivers/{id}/devices",
        ));
    };
    let recorded = record(state, &driver, report.fixes, "osmand").await?;
    let accepted = recorded
        .iter()
        .filter(|o| matches!(o.status, AppendStatus::Accepted { .. }))
        .count() as u64;
    state
        .metrics
        .count_events(accepted, recorded.len() as u64 - accepted, 0);
    Ok(())
}

/// What became of one fix.
struct Outcome {
    id: String,
    status: AppendStatus,
    flag: Option<PositionFlag>,
}

/// Judges a driver's fixes in order, appends them, and publishes the trusted ones.
async fn record<S: Store>(
    state: &AppState<S>,
    driver: &str,
    fixes: Vec<Fix>,
    source: &str,
) -> Result<Vec<Outcome>, ApiError> {
    let events = fixes
        .iter()
        .map(|fix| position_event(driver, fix, None, source))
        .collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let (statuses, flags) = append_judged(state, events, fixes.into_iter().map(Some).collect()).await?;
    let outcomes = flags
        .into_iter()
        .zip(statuses)
        .zip(ids)
        .map(|((flag, status), id)| Outcome { id, status, flag })
        .collect();
    Ok(outcomes)
}

/// The fix a `courier.position` event about `driver:{id}` reports, when it is news
/// of the driver for the plausibility rules to judge, as a report through the
/// positions API is. Not one its sender flagged (not trusted, as it is), nor one
/// taken longer ago than a report may be late (`now` less the rules' stale age):
/// that is history, stored as sent, as `troth import` stores it, whichever way it
/// is imported.
pub(crate) fn unjudged_fix(event: &ValidEvent, rules: &Plausibility, now: Timestamp) -> Option<Fix> {
    let EventData::CourierPosition(p) = &event.data else {
        return None;
    };
    let driver = event.subject.as_deref()?.strip_prefix("driver:")?;
    let news = event.time.micros() >= now.micros().saturating_sub(rules.stale_after_us);
    (p.flag.is_none() && !driver.is_empty() && news).then(|| fix_of(p, event.time))
}

fn fix_of(p: &troth_core::catalogue::CourierPosition, at: Timestamp) -> Fix {
    Fix {
        speed_kmh: p.speed_kmh.map(|s| s.0),
        heading: p.heading.map(|h| h.0),
        accuracy_m: p.accuracy_m.map(|a| a.0),
        altitude_m: p.altitude_m,
        battery: p.battery.map(|b| b.0),
        ..Fix::at(p.lat.0, p.lon.0, at)
    }
}

/// Appends events, the drivers' positions among them judged first. Each event
/// with a fix in `fixes` (one entry per event; a `courier.position` about
/// `driver:{id}`) is judged against its driver's track, in order, and stored with
/// the flag it earns; a trusted one is published to the hub. However a position
/// comes in (the positions API, OsmAnd, the events API, NDJSON, Segment), it is
/// judged and followed the same way. Answers each event's status and flag.
pub(crate) async fn append_judged<S: Store>(
    state: &AppState<S>,
    mut events: Vec<ValidEvent>,
    fixes: Vec<Option<Fix>>,
) -> Result<(Vec<AppendStatus>, Vec<Option<PositionFlag>>), ApiError> {
    let (flags, judged) = judge(state, &mut events, &fixes).await?;
    // Trusted positions also feed the arrival estimates (flagged ones are no route events).
    let route = crate::tracking::route_events(&events);
    let statuses = state.store.append(events).await?;
    judged.stored();
    state
        .tracking
        .arrivals
        .observe_stored(&state.store, route, &statuses)
        .await;
    Ok((statuses, flags))
}

/// Judges the fixes among `events` and flags the events of those not trusted;
/// publishes the trusted ones. Answers each event's flag, and the drivers judged.
///
/// Each driver's track is locked while its fixes are judged (the drivers in the
/// order of their ids, so no two requests wait for each other in a circle), not while they
/// are appended: one driver's reports are judged in order, each against the track
/// the last one left, and the appends of a busy driver's reports still share the
/// log's commits.
async fn judge<S: Store>(
    state: &AppState<S>,
    events: &mut [ValidEvent],
    fixes: &[Option<Fix>],
) -> Result<(Vec<Option<PositionFlag>>, Judged), ApiError> {
    let mut flags = vec![None; events.len()];
    let mut drivers: Vec<String> = events
        .iter()
        .zip(fixes)
        .filter(|(_, fix)| fix.is_some())
        .filter_map(|(event, _)| event.subject.as_deref()?.strip_prefix("driver:").map(str::to_owned))
        .collect();
    if drivers.is_empty() {
        return Ok((flags, Judged(Vec::new())));
    }
    drivers.sort_unstable();
    drivers.dedup();
    let slots: Vec<_> = drivers.iter().map(|driver| state.positions.driver(driver)).collect();
    let mut tracks = Vec::with_capacity(slots.len());
    for slot in &slots {
        let mut track = slot.track.lock().await;
        if slot.reload.swap(false, Ordering::AcqRel) {
            *track = None;
        }
        if track.is_none() {
            let (loaded, latest) = load_track(&state.store, &slot.id).await?;
            if let Some(latest) = latest {
                state.positions.publish(latest);
            }
            *track = Some(loaded);
        }
        tracks.push(track);
    }
    let arrived = Timestamp::now();
    for (i, fix) in fixes.iter().enumerate() {
        let Some(fix) = fix else { continue };
        let Some(d) = events[i]
            .subject
            .as_deref()
            .and_then(|s| s.strip_prefix("driver:"))
            .and_then(|driver| drivers.binary_search_by(|d| d.as_str().cmp(driver)).ok())
        else {
            continue;
        };
        let track = tracks[d].get_or_insert_default();
        let flag = state.plausibility.judge(track, fix, arrived);
        flags[i] = flag;
        match flag {
            // Followers see a trusted position at once; the log has it when this
            // request is answered. Waiting for the commit would put the write's
            // queue in every follower's latency, and a position is news only for
            // seconds.
            None => state.positions.publish(LivePosition::new(slots[d].id.clone(), fix)),
            Some(flag) => match with_flag(&events[i], flag) {
                Ok(flagged) => events[i] = flagged,
                Err(e) => {
                    // Nothing is appended: the tracks are read again from the log.
                    for track in &mut tracks {
                        **track = None;
                    }
                    return Err(e);
                }
            },
        }
    }
    drop(tracks);
    Ok((flags, Judged(slots)))
}

/// The drivers whose tracks took in fixes of a batch not yet stored. Unless told
/// [`Judged::stored`] — the append failed, or the request was dropped while it
/// waited (a timeout, a client gone) — each driver's track is read again from the
/// log before it judges the next fix, rather than judging against fixes the log
/// never got. (Those of other requests judged meanwhile are read back once stored.)
pub(crate) struct Judged(Vec<Arc<crate::hub::Driver>>);

impl Judged {
    fn stored(mut self) {
        self.0.clear();
    }
}

impl Drop for Judged {
    fn drop(&mut self) {
        for slot in &self.0 {
            slot.reload.store(true, Ordering::Release);
        }
    }
}

/// The event as sent, with the flag the plausibility rules gave its position.
fn with_flag(event: &ValidEvent, flag: PositionFlag) -> Result<ValidEvent, ApiError> {
    let mut value: Value = serde_json::from_str(&event.raw)
        .map_err(|e| ApiError::new(Code::Internal, format!("a stored event's text does not parse: {e}")))?;
    if let Some(data) = value.get_mut("data").and_then(Value::as_object_mut) {
        data.insert("flag".into(), flag.as_str().into());
    }
    validate_value(value, None).map_err(|r| {
        ApiError::field(
            Code::InvalidPosition,
            r.error.field.clone(),
            format!("the flagged position does not make a valid event: {}", r.error),
        )
    })
}

fn position_event(driver: &str, fix: &Fix, flag: Option<PositionFlag>, source: &str) -> Result<ValidEvent, ApiError> {
    let event = json!({
        "id": format!("pos.{driver}.{}", fix.at.micros()),
        "type": "courier.position",
        "time": fix.at.to_string(),
        "source": source,
        "channel": "courier",
        "subject": format!("driver:{driver}"),
        "data": fix.event_data(flag),
    });
    validate_value(event, None).map_err(|r| {
        ApiError::field(
            Code::InvalidPosition,
            r.error.field.clone(),
            format!("the position does not make a valid event: {}", r.error),
        )
    })
}

/// A driver's track as the log records it: its newest trusted fix and the time of
/// its newest fix in order; and the newest trusted one for the hub.
async fn load_track<S: Store>(store: &S, driver: &Arc<str>) -> Result<(Track, Option<LivePosition>), ApiError> {
    let page = store
        .events(EventQuery {
            subject: Some(format!("driver:{driver}")),
            event_type: Some("courier.position".into()),
            newest_first: true,
            limit: TRACK_HISTORY,
            ..EventQuery::default()
        })
        .await?;
    let mut track = Track::default();
    let mut latest = None;
    for stored in page.events.iter().rev() {
        let Ok(event) = validate_event(&stored.raw) else {
            continue;
        };
        let EventData::CourierPosition(p) = &event.data else {
            continue;
        };
        let fix = fix_of(p, event.time);
        let in_order = !matches!(p.flag, Some(PositionFlag::OutOfOrder | PositionFlag::Future));
        if in_order {
            track.latest_at = Some(track.latest_at.map_or(fix.at, |t| t.max(fix.at)));
        }
        if p.flag.is_none() && track.trusted.as_ref().is_none_or(|t| t.at <= fix.at) {
            latest = Some(LivePosition::new(driver.clone(), &fix));
            track.trusted = Some(fix);
        }
    }
    Ok((track, latest))
}

/// Driver ids become subjects (`driver:{id}`) and event ids: short, and plain.
fn check_driver(driver: &str) -> Result<(), ApiError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if driver.is_empty() || driver.chars().count() > MAX_DRIVER_CHARS || !driver.chars().all(plain) {
        return Err(ApiError::field(
            Code::InvalidDriver,
            "id",
            format!("a driver id is 1–{MAX_DRIVER_CHARS} letters, digits, '-', '_' or '.', not {driver:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ago(seconds: i64) -> Timestamp {
        Timestamp(Timestamp::now().micros() - seconds * 1_000_000)
    }

    /// Fixes judged into a driver's track and then not stored (the request was
    /// dropped while its append waited) are not judged against: the track is read
    /// again from the log.
    #[tokio::test]
    async fn fixes_judged_but_never_stored_leave_nothing_in_the_track() {
        let dir = tempfile::tempdir().unwrap();
        let store = troth_store::sqlite::SqliteStore::open(dir.path()).unwrap();
        let state = AppState::new(store, None);
        let near = Fix::at(52.5, 13.4, ago(30));
        let mut events = vec![position_event("d-1", &near, None, "test").unwrap()];
        let (flags, judged) = judge(&state, &mut events, &[Some(near)]).await.unwrap();
        assert_eq!(flags, [None]);
        drop(judged);

        // 60 km north ten seconds later: a jump from the fix never stored, the first
        // position of a driver the log knows nothing of.
        let far = Fix::at(53.04, 13.4, ago(20));
        let events = vec![position_event("d-1", &far, None, "test").unwrap()];
        let (statuses, flags) = append_judged(&state, events, vec![Some(far)]).await.unwrap();
        assert!(matches!(statuses[..], [AppendStatus::Accepted { .. }]));
        assert_eq!(flags, [None], "judged against the log, not the dropped fix");
    }
}
