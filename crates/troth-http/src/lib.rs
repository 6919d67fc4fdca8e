//! troth's HTTP API. Only this crate knows HTTP: routes, authentication,
//! problem+json errors, OpenAPI and metrics. It talks to storage through
//! [`troth_store::Store`] and to the domain through `troth_core`.

pub mod actions;
pub mod audit;
pub mod auth;
pub mod browsers;
pub mod carriers;
pub mod cases;
pub mod consistency;
pub mod error;
pub mod extract;
pub mod hub;
pub mod ingest;
pub mod inventory;
pub mod journeys;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod positions;
pub mod privacy;
pub mod quarantine;
pub mod read;
pub mod segment;
pub mod server;
pub mod sessions;
pub mod story;
pub mod tracking;
pub mod ui;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use troth_core::journey::JourneyMap;
use troth_store::{Scope, Store};

pub use error::{ApiError, Code};
pub use hub::{LivePosition, PositionHub};
pub use metrics::Metrics;

/// What every handler shares: one `Arc`, so that handing the state to a request
/// (which axum does for every extractor and middleware) is one reference count,
/// not one per field. Fields read through `Deref`; set them before serving (a
/// state still shared is copied by `DerefMut`).
pub struct AppState<S>(Arc<Shared<S>>);

/// The fields of [`AppState`].
#[derive(Clone)]
pub struct Shared<S> {
    pub store: S,
    /// With a master key, every `/api/v1` route needs a key; without one the API is open.
    pub master_key: Option<Arc<str>>,
    pub metrics: Arc<Metrics>,
    /// The journey map whose promises the store follows; swapped when it is reloaded.
    pub journey: FollowedJourney,
    /// Drivers' live positions (trusted only) and their subscribers.
    pub positions: Arc<PositionHub>,
    /// What a driver's position must pass to be trusted.
    pub plausibility: troth_core::position::Plausibility,
    /// The tracking page's settings and its live driver positions.
    pub tracking: tracking::Tracking,
    /// How long a read given `min_position` waits for its projections.
    pub read_wait: std::time::Duration,
    /// Body, time, concurrency and per-client rate limits.
    pub guards: Arc<limits::Guards>,
    /// The pages' sign-in sessions.
    pub sessions: Arc<sessions::Sessions>,
    /// Cases' service levels and the teams' calendars (docs/service.md).
    pub service: Arc<troth_core::case::ServiceLevels>,
    /// Which troth type each Segment `track` event name becomes (`[segment.events]`).
    pub segment: Arc<troth_core::segment::EventMap>,
}

/// The journey map a server follows, shared by every request and replaced as a
/// whole when the map is reloaded (a request keeps the map it started with).
#[derive(Debug, Clone, Default)]
pub struct FollowedJourney(Arc<std::sync::RwLock<Option<Arc<JourneyMap>>>>);

impl FollowedJourney {
    pub fn get(&self) -> Option<Arc<JourneyMap>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, map: JourneyMap) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(map));
    }
}

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState(self.0.clone())
    }
}

impl<S> std::ops::Deref for AppState<S> {
    type Target = Shared<S>;

    fn deref(&self) -> &Shared<S> {
        &self.0
    }
}

impl<S: Clone> std::ops::DerefMut for AppState<S> {
    fn deref_mut(&mut self) -> &mut Shared<S> {
        Arc::make_mut(&mut self.0)
    }
}

impl<S> AppState<S> {
    pub fn new(store: S, master_key: Option<String>) -> AppState<S> {
        AppState(Arc::new(Shared {
            store,
            master_key: master_key.map(Arc::from),
            metrics: Arc::default(),
            journey: FollowedJourney::default(),
            positions: Arc::default(),
            plausibility: Default::default(),
            tracking: tracking::Tracking::default(),
            read_wait: consistency::WAIT_LIMIT,
            guards: Arc::default(),
            sessions: Arc::default(),
            service: Arc::default(),
            segment: Arc::default(),
        }))
    }

    pub fn with_journey(self, journey: JourneyMap) -> AppState<S> {
        self.journey.set(journey);
        self
    }
}

impl<S: Clone> AppState<S> {
    pub fn with_tracking(mut self, config: tracking::TrackingConfig) -> AppState<S> {
        self.tracking = tracking::Tracking::new(config);
        self
    }

    /// Segment `track` event names mapped as `events` says (the defaults with the configured ones over them).
    pub fn with_segment_events(mut self, events: troth_core::segment::EventMap) -> AppState<S> {
        self.segment = Arc::new(events);
        self
    }
}

/// The whole HTTP application.
pub fn app<S: Store + Clone>(state: AppState<S>) -> Router {
    let scoped = |scope: Scope| middleware::from_fn_with_state((state.clone(), scope), auth::require::<S>);
    let ingest = Router::new()
        .route("/api/v1/events", post(ingest::ingest_json::<S>))
        .route("/api/v1/events/ndjson", post(ingest::ingest_ndjson::<S>))
        .route("/api/v1/drivers/{id}/positions", post(positions::ingest_positions::<S>))
        .route_layer(scoped(Scope::Ingest));
    let read = Router::new()
        .route("/api/v1/events", get(read::list_events::<S>))
        .route("/api/v1/customers/{id}", get(read::get_customer::<S>))
        .route("/api/v1/customers/{id}/story", get(story::story::<S>))
        .route("/api/v1/journeys/{key}/promises", get(journeys::promises::<S>))
        .route("/api/v1/journeys/{key}/health", get(journeys::health::<S>))
        .route("/api/v1/journeys/{key}/functions", get(journeys::functions::<S>))
        .route(
            "/api/v1/journeys/{key}/weakest-links",
            get(journeys::weakest_links::<S>),
        )
        .route("/api/v1/journeys/{key}/chasm", get(journeys::chasm::<S>))
        .route("/api/v1/journeys/{key}/flow", get(journeys::flow::<S>))
        .route("/api/v1/carriers", get(carriers::carriers::<S>))
        .route("/api/v1/inventory", get(inventory::inventory::<S>))
        .route("/api/v1/cases", get(cases::list::<S>))
        .route("/api/v1/cases/{id}", get(cases::get::<S>))
        .route("/api/v1/service/fcr", get(cases::fcr::<S>))
        .route_layer(scoped(Scope::Read));
    let agent = Router::new()
        .route("/api/v1/customers/{id}/actions", post(actions::act::<S>))
        .route_layer(scoped(Scope::Agent));
    let admin = Router::new()
        .route("/api/v1/keys", post(keys::create_key::<S>).get(keys::list_keys::<S>))
        .route("/api/v1/keys/{uid}", delete(keys::delete_key::<S>))
        .route("/api/v1/audit/reads", get(audit::reads::<S>))
        .route("/api/v1/customers/{id}", delete(privacy::erase::<S>))
        .route("/api/v1/customers/{id}/export", get(privacy::export::<S>))
        .route("/api/v1/erasures/{id}", get(privacy::erasure::<S>))
        .route(
            "/api/v1/drivers/{id}/devices",
            post(positions::create_device::<S>).get(positions::list_devices::<S>),
        )
        .route(
            "/api/v1/drivers/{id}/devices/{device_id}",
            delete(positions::delete_device::<S>),
        )
        .route_layer(scoped(Scope::Admin));
    let master = Router::new()
        .route("/api/v1/outbox", get(outbox::list::<S>))
        .route("/api/v1/outbox/dead-letters", get(outbox::dead_letters::<S>))
        .route("/api/v1/outbox/{id}", get(outbox::get_entry::<S>))
        .route("/api/v1/outbox/{id}/retry", post(outbox::retry::<S>))
        .route("/api/v1/quarantine", get(quarantine::list::<S>))
        .route("/api/v1/segment/rejected", get(segment::rejected::<S>))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_master::<S>));
    Router::new()
        .merge(ingest)
        .merge(read)
        .merge(agent)
        .merge(admin)
        .merge(master)
        .merge(ui::routes(state.clone()))
        // Segment's API: the write key is checked by the handlers, as it may be in the body.
        .merge(segment::routes::<S>())
        // No API key: the device identifier is the credential (see positions.rs).
        .route("/osmand", get(positions::osmand::<S>).post(positions::osmand::<S>))
        .merge(tracking::routes(state.clone()))
        .route("/openapi.json", get(openapi::serve))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::<S>))
        .route("/metrics", get(metrics_text::<S>))
        .fallback(|| async { ApiError::new(Code::NotFound, "no such route; see /docs or /openapi.json") })
        // Bodies are limited per route by `limits::guard`, which also cuts off
        // chunked bodies while they are read; NDJSON streams without a limit.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.guards.limits().request_timeout,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), gate::<S>))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            state.guards.limits().concurrency,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests::<S>))
        .with_state(state)
}

/// The OsmAnd port (`troth serve --osmand-listen`), like Traccar's 5055: every
/// path answers as `/osmand` does, so a GPS app needs only `http://HOST:PORT`.
pub fn osmand_app<S: Store + Clone>(state: AppState<S>) -> Router {
    Router::new()
        .fallback(positions::osmand::<S>)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.guards.limits().request_timeout,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), limits::guard_osmand::<S>))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            state.guards.limits().concurrency,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests::<S>))
        .with_state(state)
}

/// 200 with the log's position and each projector's when the store can read and
/// write; a 503 problem otherwise.
async fn readyz<S: Store>(State(state): State<AppState<S>>) -> Response {
    match state.store.ready().await {
        Ok(()) => {
            let progress = state.store.progress();
            axum::Json(serde_json::json!({
                "status": "ready",
                "log": progress.log,
                "projectors": progress.projectors,
            }))
            .into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn metrics_text<S: Store>(State(state): State<AppState<S>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(
            &state.store.progress(),
            state.store.log_wal(),
            state.store.append_waits(),
        ),
    )
        .into_response()
}

/// What every request passes before its route: the browser rules, a wait for
/// `min_position`, the rate and body limits; and the headers every answer carries.
/// One middleware rather than three, as each costs every request.
async fn gate<S: Store>(State(state): State<AppState<S>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if let Some(refusal) = browsers::refused(&state, &request) {
        return browsers::secured(&state, refusal, &path);
    }
    if let Err(answer) = consistency::wait_for_position(&state, &mut request).await {
        return browsers::secured(&state, answer, &path);
    }
    let response = limits::check(&state.guards, &path, request, next).await;
    browsers::secured(&state, response, &path)
}

async fn count_requests<S: Store>(State(state): State<AppState<S>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let matched: Option<MatchedPath> = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let status = response.status();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    state.metrics.record_request(route, status.as_u16(), started.elapsed());
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::warn!(%route, "answered 500");
    }
    response
}
