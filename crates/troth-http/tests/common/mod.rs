//! What troth-http's integration tests share: a store in a temporary directory and
//! the whole router, called without a socket.

#![allow(dead_code)] // each test file uses its own part

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;
use troth_core::journey::{JourneyMap, parse_journey};
use troth_http::{AppState, app};
use troth_store::sqlite::SqliteStore;

pub const MASTER: &str = "master-secret";

/// The whole router, each request first waiting until the projections hold every
/// event appended before it, and every event derived from those: a test reads
/// what it wrote, by positions, without sleeping.
pub fn settled_app(state: AppState<SqliteStore>) -> Router {
    let store = state.store.clone();
    app(state).layer(axum::middleware::from_fn(
        move |request: Request<Body>, next: axum::middleware::Next| {
            let store = store.clone();
            async move {
                store.settle().await.expect("the projections stopped");
                next.run(request).await
            }
        },
    ))
}

pub struct TestApi {
    pub store: SqliteStore,
    pub router: Router,
    state: AppState<SqliteStore>,
    _dir: tempfile::TempDir,
}

/// The built-in retail journey map.
pub fn retail_map() -> JourneyMap {
    parse_journey(include_str!("../../../../journeys/retail.toml")).unwrap()
}

impl TestApi {
    /// A store that follows `journey`, behind the master key [`MASTER`].
    pub fn new(journey: Option<JourneyMap>) -> TestApi {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with_journey(dir.path(), journey.as_ref()).unwrap();
        let mut state = AppState::new(store.clone(), Some(MASTER.to_owned()));
        if let Some(journey) = journey {
            state = state.with_journey(journey);
        }
        TestApi {
            store,
            router: settled_app(state.clone()),
            state,
            _dir: dir,
        }
    }

    /// The store's data directory.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// How long reads given `min_position` wait, from now on.
    pub fn read_wait(&mut self, wait: std::time::Duration) {
        self.state.read_wait = wait;
        self.router = settled_app(self.state.clone());
    }

    /// Photos from the tracking page stored in `dir`, from now on.
    pub fn uploads(&mut self, dir: &std::path::Path) {
        self.state = self.state.clone().with_tracking(troth_http::tracking::TrackingConfig {
            upload_dir: Some(dir.to_owned()),
            ..Default::default()
        });
        self.router = settled_app(self.state.clone());
    }

    /// Without a master key from now on (the API is open, to loopback only);
    /// requests may still send the key, which is then ignored.
    pub fn open_mode(&mut self) {
        self.state.master_key = None;
        self.router = settled_app(self.state.clone());
    }

    /// Cases' service levels other than the defaults, from now on.
    pub fn service(&mut self, levels: troth_core::case::ServiceLevels) {
        self.state.service = std::sync::Arc::new(levels);
        self.router = settled_app(self.state.clone());
    }

    /// Segment `track` names mapped by `events`, from now on.
    pub fn segment_events(&mut self, events: troth_core::segment::EventMap) {
        self.state = self.state.clone().with_segment_events(events);
        self.router = settled_app(self.state.clone());
    }

    /// A new API key with `scopes`; its secret.
    pub async fn key(&self, scopes: &[&str]) -> String {
        let (status, key) = self
            .call(
                "POST",
                "/api/v1/keys",
                serde_json::json!({"name": "test", "scopes": scopes}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        key["key"].as_str().unwrap().to_owned()
    }

    /// Limits other than the defaults, from now on.
    pub fn limits(&mut self, limits: troth_http::limits::Limits) {
        self.state.guards = std::sync::Arc::new(troth_http::limits::Guards::new(limits));
        self.router = settled_app(self.state.clone());
    }

    /// The log's newest position, as `/readyz` tells it.
    pub async fn progress_log(&self) -> i64 {
        let (_, ready) = self.call("GET", "/readyz", Value::Null).await;
        ready["log"].as_i64().unwrap()
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, String) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A request with the master key and, unless `body` is null, a JSON body.
    pub async fn call(&self, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {MASTER}"))
            .header(header::CONTENT_TYPE, "application/json");
        let body = if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        };
        let (status, text) = self.send(request.body(body).unwrap()).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Posts events and returns each item's result.
    pub async fn ingest(&self, events: Value) -> Vec<Value> {
        let (status, answer) = self.call("POST", "/api/v1/events", events).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["results"].as_array().unwrap().clone()
    }
}

/// A response as a browser sees it: status, redirect, cookie set, body.
pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub cookie: Option<String>,
    pub body: String,
}

/// Sends a request through the router and keeps what a browser would look at.
pub async fn answer(api: &TestApi, request: Request<Body>) -> Answer {
    let response = api.router.clone().oneshot(request).await.unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let (location, cookie) = (header(header::LOCATION), header(header::SET_COOKIE));
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    Answer {
        status,
        location,
        cookie,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}
