//! The customer's tracking page and its API (docs/tracking.md).
//!
//! - `POST /api/v1/shipments/{id}/tracking-link` — the shipment's link (ingest scope);
//! - `GET /api/v1/track/{token}` — the JSON twin; the token is the credential;
//! - `GET /api/v1/track/{token}/events` — the live stream (SSE): `tracking` events
//!   with the whole view when it changes, `position` events with the driver's position;
//! - `GET /t/{token}` — the page; its forms POST to `/t/{token}/…`.
//!
//! A wrong token and an expired one get the same 404, byte for byte.

mod arrivals;
mod geo;
mod image;
mod map;
mod page;
mod story;
mod view;
mod zone;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, Multipart, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::hub::{LivePosition, PositionHub};
use troth_core::Timestamp;
use troth_store::{AppendStatus, Store, TrackedShipment};

use crate::extract::Segment;
use crate::{ApiError, AppState, Code, FollowedJourney};

pub use arrivals::{Arrivals, route_events};
pub use image::{ImageError, Kind, strip};
pub use map::{Tiles, tile_origin};
pub use view::{DriverPosition, POSITION_FRESH_US, TrackView};
pub use zone::Zone;

/// The largest photo accepted.
pub const MAX_PHOTO_BYTES: usize = 5 * 1024 * 1024;

/// How often a live stream works its view out again from what it read of the store
/// (the estimate, the stops before and the age of a position change without an event).
const POLL: Duration = Duration::from_secs(2);

/// How often a live stream reads the store again though no event about its shipment
/// or its order has come: what reaches the view under other subjects (the customer's
/// time zone, the case a play opened for a lost parcel) shows within this.
const RESYNC: Duration = Duration::from_secs(30);

/// What the tracking page needs besides the store.
#[derive(Clone)]
pub struct Tracking {
    pub config: Arc<TrackingConfig>,
    /// Arrival estimates, fed by the events this server stores.
    pub arrivals: Arc<Arrivals>,
}

impl Default for Tracking {
    fn default() -> Self {
        Tracking::new(TrackingConfig::default())
    }
}

impl Tracking {
    pub fn new(config: TrackingConfig) -> Tracking {
        Tracking {
            config: Arc::new(config),
            arrivals: Arc::default(),
        }
    }
}

/// The `[tracking]` settings.
#[derive(Debug, Clone, Default)]
pub struct TrackingConfig {
    /// The retailer's name, logo and colour (`#rrggbb`) on the page.
    pub name: Option<String>,
    pub logo_url: Option<String>,
    pub colour: Option<String>,
    /// A slippy-map tile URL with `{z}`, `{x}` and `{y}`; without it the map has no
    /// tiles and the page loads nothing from elsewhere.
    pub tile_url: Option<String>,
    /// What the tile provider requires the map to say (OpenStreetMap's attribution
    /// unless set) and where it links.
    pub tile_attribution: Option<String>,
    pub tile_attribution_url: Option<String>,
    /// Where customers' photos are stored; without it photos are refused.
    pub upload_dir: Option<PathBuf>,
    /// The zone times are shown in for customers whose own (`traits.timezone`) is
    /// not known; UTC unless set.
    pub timezone: Zone,
}

pub fn routes<S: Store + Clone>(state: AppState<S>) -> Router<AppState<S>> {
    let link = Router::new()
        .route("/api/v1/shipments/{id}/tracking-link", post(issue_link::<S>))
        // A link opens the customer's address and the driver's position: issuing one
        // is reading customer data, which an ingest-only key may not.
        .route_layer(axum::middleware::from_fn_with_state(
            (state, troth_store::Scope::Read),
            crate::auth::require::<S>,
        ));
    Router::new()
        .merge(link)
        .route("/api/v1/track/{token}", get(track_json::<S>))
        .route("/api/v1/track/{token}/events", get(track_events::<S>))
        .route("/t/{token}", get(track_page::<S>))
        .route("/t/{token}/reschedule", post(reschedule::<S>))
        .route("/t/{token}/instructions", post(instructions::<S>))
        .route("/t/{token}/problem", post(problem::<S>))
        .route(
            "/t/{token}/safe-place",
            // The photo plus the form's other fields.
            post(safe_place::<S>).layer(DefaultBodyLimit::max(MAX_PHOTO_BYTES + 64 * 1024)),
        )
        .route("/t/{token}/safe-place-photo", get(safe_place_photo::<S>))
        .route("/assets/track.js", get(script))
        .route("/assets/track.css", get(stylesheet))
}

/// The link's JSON: `{"token", "url", "expires_at"}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct LinkBody {
    pub token: String,
    /// `/t/{token}`.
    pub url: String,
    /// 30 days after the shipment's final state; null while it is not final.
    pub expires_at: Option<String>,
}

/// A shipment's tracking link; the same one while it is valid.
#[utoipa::path(post, path = "/api/v1/shipments/{id}/tracking-link", tag = "tracking",
    params(("id" = String, Path, description = "The shipment id, as in shipment.created")),
    responses((status = 200, body = LinkBody), (status = 404, description = "No event has named this shipment")),
    security(("bearer" = [])))]
pub async fn issue_link<S: Store>(State(state): State<AppState<S>>, Segment(id): Segment) -> Response {
    match state.store.tracking_link(id).await {
        Ok(Some(link)) => axum::Json(LinkBody {
            url: format!("/t/{}", link.token),
            token: link.token,
            expires_at: link.expires_at.map(|t| t.to_string()),
        })
        .into_response(),
        Ok(None) => ApiError::new(Code::NotFound, "no event has named this shipment").into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The view as the store has it now.
async fn live_view<S: Store>(
    store: &S,
    tracking: &Tracking,
    journey: Option<&troth_core::journey::JourneyMap>,
    tracked: &TrackedShipment,
    now: Timestamp,
) -> Result<TrackView, ApiError> {
    let stored = view::stored(store, tracking, journey, tracked).await?;
    Ok(finish(store, tracking, tracked, stored, now).await)
}

/// The view from what was read of the store, with what changes without an event:
/// the estimated arrival, and the stops before this one counted on the driver's
/// route as it is now (stops done or rescheduled off it no longer count) rather than
/// as planned when the van left (the plan's number while the route does not know
/// the stop).
async fn finish<S: Store>(
    store: &S,
    tracking: &Tracking,
    tracked: &TrackedShipment,
    mut extra: view::Extra,
    now: Timestamp,
) -> TrackView {
    let on_the_road = tracked.shipment.on_the_road();
    if on_the_road {
        extra.eta = tracking.arrivals.predict(store, &tracked.link.shipment, now).await;
    }
    let mut view = TrackView::of(&tracked.link.shipment, &tracked.shipment, &extra, now);
    if on_the_road && let Some(stops) = tracking.arrivals.stops_before(store, &tracked.link.shipment).await {
        view.stops_before = Some(stops);
    }
    view
}

/// The shipment a valid token opens; `None` for a wrong or expired token alike.
async fn open<S: Store>(store: &S, token: String, now: Timestamp) -> Result<Option<TrackedShipment>, ApiError> {
    // Only the alphabet tokens are made of reaches the store.
    if token.is_empty() || token.len() > 64 || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
        return Ok(None);
    }
    Ok(store.tracked(token).await?.filter(|t| t.link.valid_at(now)))
}

fn no_such_link() -> ApiError {
    ApiError::new(Code::NotFound, "no such tracking link")
}

/// The tracking page's JSON twin.
#[utoipa::path(get, path = "/api/v1/track/{token}", tag = "tracking",
    params(("token" = String, Path, description = "The tracking link's token; no API key is needed")),
    responses((status = 200, body = TrackView), (status = 404, description = "Wrong or expired token (the same answer)")))]
pub async fn track_json<S: Store>(State(state): State<AppState<S>>, Segment(token): Segment) -> Response {
    let now = Timestamp::now();
    let result = async {
        let tracked = open(&state.store, token, now).await?.ok_or_else(no_such_link)?;
        live_view(
            &state.store,
            &state.tracking,
            state.journey.get().as_deref(),
            &tracked,
            now,
        )
        .await
    }
    .await;
    match result {
        Ok(view) => ([(header::CACHE_CONTROL, "no-store")], axum::Json(view)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The live stream: a `tracking` event with the whole view whenever it changes
/// (stages, window, proof, the driver appearing or going), and a `position` event
/// (`{"lat", "lon", "at"}`) for each new position of the driver on the way.
#[utoipa::path(get, path = "/api/v1/track/{token}/events", tag = "tracking",
    params(("token" = String, Path, description = "The tracking link's token")),
    responses((status = 200, content_type = "text/event-stream", description = "Server-sent events: `tracking` (the view) and `position` ({lat, lon, at})"),
        (status = 404, description = "Wrong or expired token")))]
pub async fn track_events<S: Store + Clone>(State(state): State<AppState<S>>, Segment(token): Segment) -> Response {
    let now = Timestamp::now();
    let tracked = match open(&state.store, token.clone(), now).await {
        Ok(Some(tracked)) => tracked,
        Ok(None) => return no_such_link().into_response(),
        Err(e) => return e.into_response(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(16);
    tokio::spawn(follow(
        state.store.clone(),
        state.positions.clone(),
        state.tracking.clone(),
        state.journey.clone(),
        token,
        tracked,
        tx,
    ));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok::<_, Infallible>(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// Feeds one stream until its client goes away or the link stops working.
///
/// Two tasks share the stream: one sends the view when it changes (and a position
/// the log holds, which covers a restart before the driver's next report); the
/// other forwards the trusted positions of the driver the shipment is out with from
/// the hub as they arrive. Kept apart, a slow read of the store never holds up a
/// position.
async fn follow<S: Store>(
    store: S,
    hub: Arc<PositionHub>,
    tracking: Tracking,
    journey: FollowedJourney,
    token: String,
    tracked: TrackedShipment,
    tx: tokio::sync::mpsc::Sender<Event>,
) {
    let last_sent: Arc<Mutex<Option<Timestamp>>> = Arc::default();
    let (driver_tx, driver_rx) = tokio::sync::watch::channel(following(&tracked));
    let forwarder = tokio::spawn(forward_positions(hub.clone(), driver_rx, tx.clone(), last_sent.clone()));
    let stream = Stream {
        store,
        hub,
        tracking,
        journey,
        token,
        tx,
        driver_tx,
        last_sent,
    };
    stream.send_views(tracked).await;
    forwarder.abort();
}

/// The driver whose positions a shipment's stream shows, and since when: only while
/// it is on the road with them.
fn following(tracked: &TrackedShipment) -> Option<(String, Timestamp)> {
    if !tracked.shipment.on_the_road() {
        return None;
    }
    tracked.shipment.assignment().map(|a| (a.driver, a.since))
}

/// Sends a `position` event unless one as new was sent already; false when the
/// client has gone.
async fn send_position(
    tx: &tokio::sync::mpsc::Sender<Event>,
    last_sent: &Mutex<Option<Timestamp>>,
    (lat, lon, at): (f64, f64, Timestamp),
) -> bool {
    {
        let mut last = last_sent.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|last| at <= last) {
            return true;
        }
        *last = Some(at);
    }
    let data = json!({"lat": lat, "lon": lon, "at": at.to_string()});
    tx.send(Event::default().event("position").data(data.to_string()))
        .await
        .is_ok()
}

/// What of a view's driver decides whether the view is sent again: whether a fresh
/// position is shown, and which stale one. Positions themselves go out as
/// `position` events, and the age of the last one changes every time it is read.
type DriverShown = (bool, Option<String>);

/// What a stream's views are made from, and where they go.
struct Stream<S> {
    store: S,
    hub: Arc<PositionHub>,
    tracking: Tracking,
    journey: FollowedJourney,
    token: String,
    tx: tokio::sync::mpsc::Sender<Event>,
    driver_tx: tokio::sync::watch::Sender<Option<(String, Timestamp)>>,
    last_sent: Arc<Mutex<Option<Timestamp>>>,
}

/// What a stream last read of the store, and when.
struct Held {
    tracked: TrackedShipment,
    stored: view::Extra,
    read_at: tokio::time::Instant,
    /// Events about the shipment or its order became readable since.
    news: bool,
}

impl Held {
    /// Whether the store is read again now.
    fn stale(&self, now: Timestamp) -> bool {
        let age = self.read_at.elapsed();
        age >= RESYNC || (self.news && age >= NEWS_GAP) || self.watches_too_little(now)
    }

    /// What the stream would miss between its reads on news, so it reads at every
    /// [`POLL`] instead: the shipment's order while no `shipment.created` has named
    /// it (that event may come under the order's subject, which is not watched
    /// yet), and, for a parcel lost within the plays' horizon, the case a play opens
    /// for it (under the case's own subject) until it is read.
    fn watches_too_little(&self, now: Timestamp) -> bool {
        let shipment = &self.tracked.shipment;
        let awaits_a_case = self.stored.lost_case.is_none()
            && shipment.stage().is_some_and(|s| {
                s.stage == troth_core::shipment::Stage::Lost
                    && now.micros() - s.at.micros() < troth_core::play::PLAY_HORIZON_US
            });
        shipment.order.is_none() || awaits_a_case
    }
}

/// The least time between two reads of a stream on news: a shipment much written
/// about (each view of its page is an event about it) is read at most this often.
const NEWS_GAP: Duration = Duration::from_secs(1);

impl<S: Store> Stream<S> {
    /// Reads the store when events about the shipment or its order become readable
    /// (and every [`RESYNC`] for what reaches the view under other subjects), and
    /// works the view out again every [`POLL`] from what it read, for what changes
    /// without an event: the estimate, the stops before, the age of a position.
    async fn send_views(self, opened: TrackedShipment) {
        let shipment = opened.link.shipment.clone();
        let mut shipment_news = self.store.watch_subject(&format!("shipment:{shipment}"));
        // Both watched before the first read, so nothing readable after it is missed.
        let order_watch = |order: &str| self.store.watch_subject(&format!("order:{order}"));
        let mut watched_order = opened.shipment.order.clone();
        let mut order_news = watched_order.as_deref().map(order_watch);
        // The view last sent, without the driver's positions, and what it showed of them.
        let mut shown: Option<(TrackView, DriverShown)> = None;
        let mut held: Option<Held> = None;
        let mut every = tokio::time::interval(POLL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let news = tokio::select! {
                _ = self.tx.closed() => return,
                _ = every.tick() => false,
                Ok(()) = shipment_news.changed() => true,
                Ok(()) = news(&mut order_news) => true,
            };
            if news && let Some(held) = &mut held {
                held.news = true;
            }
            let now = Timestamp::now();
            if held.as_ref().is_none_or(|h| h.stale(now)) {
                match self.read(now).await {
                    Ok(Some(mut read)) => {
                        if read.tracked.shipment.order != watched_order {
                            watched_order.clone_from(&read.tracked.shipment.order);
                            order_news = watched_order.as_deref().map(order_watch);
                            // What came under the order between the read and the watch.
                            read.news = true;
                        }
                        held = Some(read);
                    }
                    Ok(None) => return,
                    Err(_) => continue,
                }
            }
            let Some(Held { tracked, stored, .. }) = &held else {
                continue;
            };
            if !tracked.link.valid_at(now) {
                return;
            }
            let mut stored = stored.clone();
            stored.position = self.newest_position(tracked, stored.position.take());
            let mut view = finish(&self.store, &self.tracking, tracked, stored, now).await;
            let position = view
                .driver
                .as_ref()
                .and_then(|p| Timestamp::parse_rfc3339(&p.at).map(|at| (p.lat, p.lon, at)));
            // Positions go out as `position` events; the view is sent again when the rest
            // of it changes, or when the driver appears or goes.
            let driver = view.driver.take();
            let last = view.last_position.take();
            let stale_at = last.as_ref().filter(|p| p.stale).map(|p| p.at.clone());
            let now_shown = (view, (driver.is_some(), stale_at));
            if shown.as_ref() != Some(&now_shown) {
                let mut whole = now_shown.0.clone();
                whole.driver = driver;
                whole.last_position = last;
                let Ok(event) = Event::default().event("tracking").json_data(&whole) else {
                    continue;
                };
                if self.tx.send(event).await.is_err() {
                    return;
                }
                shown = Some(now_shown);
            }
            if let Some(position) = position
                && !send_position(&self.tx, &self.last_sent, position).await
            {
                return;
            }
        }
    }

    /// The shipment and what else its view needs of the store; `None` once the link
    /// no longer opens it.
    async fn read(&self, now: Timestamp) -> Result<Option<Held>, ApiError> {
        let read_at = tokio::time::Instant::now();
        let Some(tracked) = open(&self.store, self.token.clone(), now).await? else {
            return Ok(None);
        };
        self.driver_tx.send_if_modified(|current| {
            let next = following(&tracked);
            let changed = *current != next;
            *current = next;
            changed
        });
        let map = self.journey.get();
        let stored = view::stored(&self.store, &self.tracking, map.as_deref(), &tracked).await?;
        Ok(Some(Held {
            tracked,
            stored,
            read_at,
            news: false,
        }))
    }

    /// The newer of the position read from the log and the hub's latest for the
    /// driver on the way (the hub has every trusted position reported since this
    /// server started, the log those before too).
    fn newest_position(&self, tracked: &TrackedShipment, logged: Option<DriverPosition>) -> Option<DriverPosition> {
        let Some((driver, since)) = following(tracked) else {
            return logged;
        };
        let live = self
            .hub
            .latest(&driver)
            .filter(|p| p.at >= since)
            .map(|p| DriverPosition {
                driver,
                lat: p.lat,
                lon: p.lon,
                at: p.at,
            });
        match (logged, live) {
            (Some(logged), Some(live)) if logged.at >= live.at => Some(logged),
            (logged, live) => live.or(logged),
        }
    }
}

/// Resolves when a watched subject has news; never while none is watched.
async fn news(
    watch: &mut Option<tokio::sync::watch::Receiver<i64>>,
) -> Result<(), tokio::sync::watch::error::RecvError> {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}

async fn forward_positions(
    hub: Arc<PositionHub>,
    mut driver_rx: tokio::sync::watch::Receiver<Option<(String, Timestamp)>>,
    tx: tokio::sync::mpsc::Sender<Event>,
    last_sent: Arc<Mutex<Option<Timestamp>>>,
) {
    loop {
        let current = driver_rx.borrow_and_update().clone();
        let Some((driver, since)) = current else {
            // Not on the road: wait until it is.
            if driver_rx.changed().await.is_err() {
                return;
            }
            continue;
        };
        let mut receiver = hub.subscribe(&driver);
        let fresh = |p: &LivePosition| p.at >= since && view::fresh(p.at, Timestamp::now());
        if let Some(p) = hub.latest(&driver).filter(fresh)
            && !send_position(&tx, &last_sent, (p.lat, p.lon, p.at)).await
        {
            return;
        }
        loop {
            tokio::select! {
                changed = driver_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                received = receiver.recv() => match received {
                    Ok(p) if fresh(&p) => {
                        if !send_position(&tx, &last_sent, (p.lat, p.lon, p.at)).await {
                            return;
                        }
                    }
                    // A slow reader skips to the newest.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}

/// The tracking page. Each view is recorded as `tracking.viewed`.
pub async fn track_page<S: Store>(
    State(state): State<AppState<S>>,
    Segment(token): Segment,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let now = Timestamp::now();
    let tracked = match open(&state.store, token.clone(), now).await {
        Ok(Some(tracked)) => tracked,
        Ok(None) => return page::not_found(),
        Err(e) => return page::failed(&e),
    };
    let id = tracked.link.shipment.clone();
    if let Err(e) = append(&state, &tracked, "tracking.viewed", json!({"shipment": id}), now).await {
        // The customer still sees the page; the view is missing from the journey's exposure.
        tracing::warn!(error = %e.detail, "a tracking page view was not recorded");
    }
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let (done, case) = (param("done"), param("case"));
    render_page(&state, &token, &tracked, now, done, case, None).await
}

/// The page of a link, with the thanks for a form just sent or a form to correct.
async fn render_page<S: Store>(
    state: &AppState<S>,
    token: &str,
    tracked: &TrackedShipment,
    now: Timestamp,
    done: Option<&str>,
    case: Option<&str>,
    kept: Option<&page::Kept>,
) -> Response {
    let view = match live_view(
        &state.store,
        &state.tracking,
        state.journey.get().as_deref(),
        tracked,
        now,
    )
    .await
    {
        Ok(view) => view,
        Err(e) => return page::failed(&e),
    };
    let trail = match map::trail(&state.store, &tracked.shipment, view.last_position.as_ref()).await {
        Ok(trail) => trail,
        Err(e) => return page::failed(&e),
    };
    let html = page::render(&page::Page {
        token,
        tracked,
        view: &view,
        trail: &trail,
        config: &state.tracking.config,
        done,
        case,
        kept,
        now,
    });
    let status = if kept.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut response = (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response();
    // The proof photo lives on the carrier's server: the page's policy allows images
    // from its one origin too (as from the tiles'), or the customer would see a
    // broken image where the photo should be.
    if let Some(photo) = view
        .proof
        .as_ref()
        .and_then(|p| p.photo.as_deref())
        .and_then(tile_origin)
    {
        let tiles = Tiles::of(&state.tracking.config).map(|t| t.origin);
        let origins: Vec<String> = tiles.into_iter().chain([photo]).collect();
        // The origins are made only of host characters, so this is a valid header value.
        if let Ok(policy) = header::HeaderValue::from_str(&crate::browsers::tracking_policy(&origins.join(" "))) {
            response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, policy);
        }
    }
    response
}

/// Sends the page back with a form to correct: what is wrong, and what was typed.
async fn send_back<S: Store>(
    state: &AppState<S>,
    token: &str,
    tracked: &TrackedShipment,
    now: Timestamp,
    form: &'static str,
    message: &str,
    values: Vec<(&'static str, String)>,
) -> Response {
    let kept = page::Kept {
        form,
        message: message.to_owned(),
        values,
    };
    render_page(state, token, tracked, now, None, None, Some(&kept)).await
}

/// Appends an event about the tracked shipment on the customer's behalf. The route
/// follower sees it too: a reschedule takes the stop off the driver's route and
/// makes the window the customer's, which no estimate replaces.
async fn append<S: Store>(
    state: &AppState<S>,
    tracked: &TrackedShipment,
    event_type: &str,
    data: Value,
    now: Timestamp,
) -> Result<(), ApiError> {
    let mut event = json!({
        "id": format!("troth.track.{}", random_hex::<12>()?),
        "type": event_type,
        "time": now.to_string(),
        "source": "tracking_page",
        "channel": "web",
        "subject": format!("shipment:{}", tracked.link.shipment),
        "data": data,
    });
    if let Some(customer) = &tracked.customer {
        event["customer"] = customer.clone();
    }
    let event = troth_core::validate_value(event, None)
        .map_err(|r| ApiError::field(Code::InvalidBody, r.error.field.clone(), r.error.message.clone()))?;
    let route = route_events(std::slice::from_ref(&event));
    let statuses = state.store.append(vec![event]).await?;
    state
        .tracking
        .arrivals
        .observe_stored(&state.store, route, &statuses)
        .await;
    // The page the customer is sent back to shows what they just did.
    if let Some(AppendStatus::Accepted { seq }) = statuses.first() {
        let _ = state.store.wait_projected(*seq, state.read_wait).await;
    }
    Ok(())
}

pub(crate) fn random_hex<const N: usize>() -> Result<String, ApiError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "no randomness");
        ApiError::new(Code::Internal, "no randomness available")
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A form POST must come from the page itself when the browser says where it
/// came from (`Origin`, else `Referer`); the token in the path is the credential.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let from = [header::ORIGIN, header::REFERER]
        .iter()
        .find_map(|name| headers.get(name))
        .map(|v| v.to_str().unwrap_or("null"));
    let Some(from) = from else { return true };
    let authority = from
        .strip_prefix("https://")
        .or_else(|| from.strip_prefix("http://"))
        .map(|rest| rest.split('/').next().unwrap_or(rest));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// Checks the request and opens the link, for the page's forms.
async fn form_target<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    token: &str,
    now: Timestamp,
) -> Result<TrackedShipment, Response> {
    if !same_origin(headers) {
        return Err(
            ApiError::new(Code::Forbidden, "forms are accepted only from the tracking page itself").into_response(),
        );
    }
    match open(&state.store, token.to_owned(), now).await {
        Ok(Some(tracked)) => Ok(tracked),
        Ok(None) => Err(page::not_found()),
        Err(e) => Err(page::failed(&e)),
    }
}

fn back(token: &str, done: &str) -> Response {
    Redirect::to(&format!("/t/{token}?done={done}")).into_response()
}

#[derive(serde::Deserialize)]
pub struct RescheduleForm {
    /// `YYYY-MM-DD`
    date: String,
    /// morning, afternoon or evening.
    slot: String,
}

/// The slots a customer may choose, in the customer's time zone: (name, label,
/// start hour, end hour).
pub const SLOTS: &[(&str, &str, i8, i8)] = &[
    ("morning", "08:00–12:00", 8, 12),
    ("afternoon", "12:00–17:00", 12, 17),
    ("evening", "17:00–21:00", 17, 21),
];

/// How far ahead a customer may reschedule.
const RESCHEDULE_DAYS: i64 = 14;

async fn reschedule<S: Store>(
    State(state): State<AppState<S>>,
    Segment(token): Segment,
    headers: HeaderMap,
    form: Result<Form<RescheduleForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let now = Timestamp::now();
    let tracked = match form_target(&state, &headers, &token, now).await {
        Ok(t) => t,
        Err(response) => return response,
    };
    let Ok(Form(form)) = form else {
        return page::invalid(&token, "Choose a day and a time of day.");
    };
    if tracked.shipment.final_at().is_some() {
        return page::invalid(&token, "This delivery is finished and cannot be rescheduled.");
    }
    // The slots are hours of the customer's day, in their zone.
    let zone = match view::customer_zone(&state.store, &tracked, &state.tracking.config.timezone).await {
        Ok(zone) => zone,
        Err(e) => return page::failed(&e),
    };
    let slot = SLOTS.iter().find(|s| s.0 == form.slot);
    let local = slot.and_then(|&(_, _, from, to)| Some((zone.local(&form.date, from)?, zone.local(&form.date, to)?)));
    let hour = 3_600_000_000;
    let wrong = match local {
        None => Some("Choose a day and a time of day."),
        Some((start, _)) if start <= now || start.0 > now.0 + RESCHEDULE_DAYS * 24 * hour => {
            Some("Choose a time in the next two weeks.")
        }
        Some(_) => None,
    };
    let (Some((start, end)), None) = (local, wrong) else {
        let typed = vec![("date", form.date.clone()), ("slot", form.slot.clone())];
        let message = wrong.unwrap_or_default();
        return send_back(&state, &token, &tracked, now, "another-time", message, typed).await;
    };
    let data = json!({"window_start": start.to_string(), "window_end": end.to_string(), "by": "customer"});
    match append(&state, &tracked, "shipment.rescheduled", data, now).await {
        Ok(()) => back(&token, "reschedule"),
        Err(e) => page::failed(&e),
    }
}

#[derive(serde::Deserialize)]
pub struct InstructionsForm {
    instructions: String,
}

/// The longest instructions or safe-place description accepted.
const MAX_TEXT: usize = 500;

async fn instructions<S: Store>(
    State(state): State<AppState<S>>,
    Segment(token): Segment,
    headers: HeaderMap,
    form: Result<Form<InstructionsForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let now = Timestamp::now();
    let tracked = match form_target(&state, &headers, &token, now).await {
        Ok(t) => t,
        Err(response) => return response,
    };
    let text = form.map(|Form(f)| f.instructions.trim().to_owned()).unwrap_or_default();
    if text.is_empty() || text.chars().count() > MAX_TEXT {
        let message = format!(
            "Write your instructions in up to {MAX_TEXT} characters (these are {}).",
            text.chars().count()
        );
        return send_back(
            &state,
            &token,
            &tracked,
            now,
            "instructions",
            &message,
            vec![("instructions", text)],
        )
        .await;
    }
    match append(
        &state,
        &tracked,
        "shipment.instructions_set",
        json!({"instructions": text}),
        now,
    )
    .await
    {
        Ok(()) => back(&token, "instructions"),
        Err(e) => page::failed(&e),
    }
}

/// The problems a customer can report: (category, label).
pub const PROBLEMS: &[(&str, &str)] = &[
    ("late", "It is late"),
    ("missed", "I was in, but the driver did not deliver"),
    ("lost", "My parcel is lost"),
    ("damaged", "It arrived damaged"),
    ("not_received", "It says delivered but I do not have it"),
    ("wrong_item", "Something is wrong or missing"),
    ("other", "Something else"),
];

#[derive(serde::Deserialize)]
pub struct ProblemForm {
    category: String,
}

async fn problem<S: Store>(
    State(state): State<AppState<S>>,
    Segment(token): Segment,
    headers: HeaderMap,
    form: Result<Form<ProblemForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let now = Timestamp::now();
    let tracked = match form_target(&state, &headers, &token, now).await {
        Ok(t) => t,
        Err(response) => return response,
    };
    let category = form.ok().map(|Form(f)| f.category);
    let Some(&(category, _)) = PROBLEMS.iter().find(|p| Some(p.0) == category.as_deref()) else {
        return send_back(
            &state,
            &token,
            &tracked,
            now,
            "report",
            "Choose what the problem is.",
            Vec::new(),
        )
        .await;
    };
    // One case a day from the page: a customer who reports again (or a script that
    // posts thirty times) is shown the case already open, and no other is opened.
    match from_page_since(&state.store, &tracked, "case.opened", now.plus_us(-DAY_US)).await {
        Ok(earlier) => {
            if let Some(case) = earlier.iter().rev().find_map(|e| e["data"]["case"].as_str()) {
                return Redirect::to(&format!("/t/{token}?done=problem&case={case}")).into_response();
            }
        }
        Err(e) => return page::failed(&e),
    }
    let case = match random_hex::<8>() {
        Ok(r) => format!("k-t-{r}"),
        Err(e) => return page::failed(&e),
    };
    let mut data = json!({"case": case, "category": category, "team": "support"});
    if let Some(order) = &tracked.shipment.order {
        data["order"] = json!(order);
    }
    match append(&state, &tracked, "case.opened", data, now).await {
        // The page confirms the case by its reference, read back from the log.
        Ok(()) => Redirect::to(&format!("/t/{token}?done=problem&case={case}")).into_response(),
        Err(e) => page::failed(&e),
    }
}

async fn safe_place<S: Store>(
    State(state): State<AppState<S>>,
    Segment(token): Segment,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let now = Timestamp::now();
    let tracked = match form_target(&state, &headers, &token, now).await {
        Ok(t) => t,
        Err(response) => return response,
    };
    let Ok(mut multipart) = multipart else {
        return page::invalid(&token, "Describe your safe place.");
    };
    let (mut place, mut photo) = (String::new(), Vec::new());
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return too_large(&token),
            Err(_) => return page::invalid(&token, "The form did not arrive whole; try again."),
        };
        match field.name() {
            Some("place") => place = field.text().await.unwrap_or_default().trim().to_owned(),
            Some("photo") => {
                let mut field = field;
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            photo.extend_from_slice(&chunk);
                            if photo.len() > MAX_PHOTO_BYTES {
                                return too_large(&token);
                            }
                        }
                        Ok(None) => break,
                        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return too_large(&token),
                        Err(_) => return page::invalid(&token, "The photo did not arrive whole; try again."),
                    }
                }
            }
            _ => {}
        }
    }
    if place.is_empty() || place.chars().count() > MAX_TEXT {
        let message = format!("Describe your safe place in up to {MAX_TEXT} characters.");
        return send_back(
            &state,
            &token,
            &tracked,
            now,
            "safe-place",
            &message,
            vec![("place", place)],
        )
        .await;
    }
    let mut data = json!({"place": place});
    let earlier = match from_page_since(&state.store, &tracked, "shipment.safe_place_set", Timestamp(0)).await {
        Ok(earlier) => earlier,
        Err(e) => return page::failed(&e),
    };
    let photo_of = |e: &Value| e["data"]["photo"].as_str().map(str::to_owned);
    if !photo.is_empty() {
        let today = earlier
            .iter()
            .filter(|e| {
                photo_of(e).is_some()
                    && e["time"].as_str().and_then(Timestamp::parse_rfc3339) >= Some(now.plus_us(-DAY_US))
            })
            .count();
        if today >= PHOTOS_PER_DAY {
            let mut response = page::invalid(
                &token,
                &format!(
                    "You have sent {PHOTOS_PER_DAY} photos today, the most a day; describe the place instead, or try tomorrow."
                ),
            );
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            return response;
        }
        match store_photo(&state.tracking.config, &photo).await {
            Ok(name) => data["photo"] = json!(name),
            Err(response) => return response(&token),
        }
    }
    match append(&state, &tracked, "shipment.safe_place_set", data, now).await {
        Ok(()) => {
            // A new photo replaces the earlier ones: they are deleted, so the disk holds
            // one photo per shipment at most.
            if !photo.is_empty() {
                for name in earlier.iter().filter_map(photo_of) {
                    delete_photo(&state.tracking.config, &name).await;
                }
            }
            back(&token, "safe_place")
        }
        Err(e) => page::failed(&e),
    }
}

/// Photos one tracking link may send in a day.
const PHOTOS_PER_DAY: usize = 5;
const DAY_US: i64 = 86_400_000_000;

/// The events of `event_type` the tracking page appended for this shipment at or
/// after `since`, oldest first, as JSON.
async fn from_page_since<S: Store>(
    store: &S,
    tracked: &TrackedShipment,
    event_type: &str,
    since: Timestamp,
) -> Result<Vec<Value>, ApiError> {
    let page = store
        .events(troth_store::EventQuery {
            subject: Some(format!("shipment:{}", tracked.link.shipment)),
            event_type: Some(event_type.to_owned()),
            from_us: Some(since.micros()),
            limit: 1_000,
            ..Default::default()
        })
        .await?;
    Ok(page
        .events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.raw).ok())
        .filter(|e| e["source"] == "tracking_page")
        .collect())
}

async fn delete_photo(config: &TrackingConfig, name: &str) {
    let Some(dir) = &config.upload_dir else { return };
    if !stored_name(name) {
        return;
    }
    match tokio::fs::remove_file(dir.join(name)).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(error = %e, photo = name, "a replaced photo could not be deleted"),
    }
}

fn too_large(token: &str) -> Response {
    let mut response = page::invalid(token, "The photo is too large: at most 5 MiB.");
    *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    response
}

/// How a photo that could not be taken is answered, given the page's token.
type FormFailure = fn(&str) -> Response;

fn unsupported(token: &str) -> Response {
    let mut response = page::invalid(token, "The photo must be a JPEG or PNG image.");
    *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    response
}

/// Checks the photo, strips its metadata and stores it; returns its stored name.
async fn store_photo(config: &TrackingConfig, photo: &[u8]) -> Result<String, FormFailure> {
    let Some(dir) = &config.upload_dir else {
        return Err(|token| page::invalid(token, "Photos cannot be uploaded here; describe the place instead."));
    };
    let (kind, clean) = match image::strip(photo) {
        Ok(stripped) => stripped,
        Err(ImageError::NotAnImage) => return Err(unsupported),
        Err(ImageError::Malformed) => return Err(|token| page::invalid(token, "The photo is damaged; try another.")),
    };
    let Ok(name) = random_hex::<16>().map(|r| format!("{r}.{}", kind.extension())) else {
        return Err(|_| page::failed(&ApiError::new(Code::Internal, "no randomness")));
    };
    let written = async {
        tokio::fs::create_dir_all(dir).await?;
        tokio::fs::write(dir.join(&name), &clean).await
    }
    .await;
    match written {
        Ok(()) => Ok(name),
        Err(e) => {
            tracing::error!(error = %e, dir = %dir.display(), "a photo could not be stored");
            Err(|_| page::failed(&ApiError::new(Code::Internal, "the photo could not be stored")))
        }
    }
}

/// Whether a name is one [`store_photo`] makes (no path can hide in it).
fn stored_name(name: &str) -> bool {
    let Some((stem, ext)) = name.split_once('.') else {
        return false;
    };
    stem.len() == 32 && stem.bytes().all(|b| b.is_ascii_hexdigit()) && matches!(ext, "jpg" | "png")
}

/// The safe-place photo this customer uploaded last.
async fn safe_place_photo<S: Store>(State(state): State<AppState<S>>, Segment(token): Segment) -> Response {
    let now = Timestamp::now();
    let tracked = match open(&state.store, token, now).await {
        Ok(Some(tracked)) => tracked,
        Ok(None) => return page::not_found(),
        Err(e) => return page::failed(&e),
    };
    let name = tracked
        .shipment
        .safe_place()
        .and_then(|s| s.photo)
        .filter(|n| stored_name(n));
    let (Some(name), Some(dir)) = (name, &state.tracking.config.upload_dir) else {
        return page::not_found();
    };
    match tokio::fs::read(dir.join(&name)).await {
        Ok(bytes) => match Kind::of(&bytes) {
            Some(kind) => (
                [
                    (header::CONTENT_TYPE, kind.content_type()),
                    (header::CACHE_CONTROL, "private, max-age=3600"),
                ],
                bytes,
            )
                .into_response(),
            None => page::not_found(),
        },
        Err(_) => page::not_found(),
    }
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("track.js"),
    )
        .into_response()
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("track.css"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_from_elsewhere_are_refused() {
        let headers = |pairs: &[(header::HeaderName, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(k.clone(), v.parse().unwrap());
            }
            h
        };
        let host = (header::HOST, "shop.example:7878");
        assert!(same_origin(&headers(std::slice::from_ref(&host))));
        assert!(same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "https://shop.example:7878")
        ])));
        assert!(same_origin(&headers(&[
            host.clone(),
            (header::REFERER, "http://shop.example:7878/t/x")
        ])));
        assert!(!same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "https://evil.example")
        ])));
        assert!(!same_origin(&headers(&[host.clone(), (header::ORIGIN, "null")])));
        assert!(!same_origin(&headers(&[(header::ORIGIN, "https://shop.example:7878")])));
    }

    #[test]
    fn only_names_troth_made_are_read_back() {
        assert!(stored_name("0123456789abcdef0123456789abcdef.jpg"));
        assert!(!stored_name("../../etc/passwd"));
        assert!(!stored_name("0123456789abcdef0123456789abcdef.svg"));
    }
}
