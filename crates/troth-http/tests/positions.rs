//! Drivers' devices and positions through the router: the positions API, the
//! OsmAnd protocol as Traccar Client speaks it, plausibility flags and the live hub.

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use troth_core::Timestamp;
use troth_http::{AppState, PositionHub};
use troth_store::sqlite::SqliteStore;

const MASTER: &str = "master-secret";

struct Api {
    _dir: tempfile::TempDir,
    router: Router,
    hub: Arc<PositionHub>,
}

impl Api {
    fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let state = AppState::new(store, Some(MASTER.to_owned()));
        let hub = state.positions.clone();
        Api {
            _dir: dir,
            router: common::settled_app(state),
            hub,
        }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, String) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn call(&self, method: &str, uri: &str, key: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let body = if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        };
        let (status, text) = self.send(request.body(body).unwrap()).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn device(&self, driver: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                &format!("/api/v1/drivers/{driver}/devices"),
                Some(MASTER),
                Value::Null,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["device_id"].as_str().unwrap().to_owned()
    }

    async fn osmand_get(&self, query: &str) -> (StatusCode, String) {
        self.send(Request::get(format!("/osmand?{query}")).body(Body::empty()).unwrap())
            .await
    }

    async fn positions(&self, driver: &str) -> Vec<Value> {
        let uri = format!("/api/v1/events?subject=driver:{driver}&type=courier.position");
        let (status, body) = self.call("GET", &uri, Some(MASTER), Value::Null).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["events"].as_array().unwrap().clone()
    }
}

fn iso(offset_secs: i64) -> String {
    Timestamp(Timestamp::now().micros() + offset_secs * 1_000_000).to_string()
}

fn unix(offset_secs: i64) -> i64 {
    Timestamp::now().micros() / 1_000_000 + offset_secs
}

#[tokio::test]
async fn devices_are_issued_listed_and_revoked_by_admins() {
    let api = Api::new();
    let device = api.device("d-1").await;
    assert_eq!(device.len(), 26, "{device}");
    assert_ne!(device, api.device("d-1").await, "each is new");
    let (status, listed) = api
        .call("GET", "/api/v1/drivers/d-1/devices", Some(MASTER), Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["devices"].as_array().unwrap().len(), 2);
    assert_eq!(listed["devices"][0]["driver"], "d-1");

    let (status, problem) = api.call("POST", "/api/v1/drivers/d-1/devices", None, Value::Null).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_authorization"))
    );
    let (_, ingest) = api
        .call("POST", "/api/v1/keys", Some(MASTER), json!({"scopes": ["ingest"]}))
        .await;
    let ingest_key = ingest["key"].as_str().unwrap();
    let (status, _) = api
        .call("POST", "/api/v1/drivers/d-1/devices", Some(ingest_key), Value::Null)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, problem) = api
        .call("POST", "/api/v1/drivers/a%20b/devices", Some(MASTER), Value::Null)
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("id"))
    );

    let uri = format!("/api/v1/drivers/d-1/devices/{device}");
    let (status, _) = api.call("DELETE", &uri, Some(MASTER), Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.call("DELETE", &uri, Some(MASTER), Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.osmand_get(&format!("id={device}&lat=52.5&lon=13.4")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a revoked device is refused");
}

#[tokio::test]
async fn an_unknown_device_is_refused_and_nothing_is_stored() {
    let api = Api::new();
    api.device("d-1").await;
    let (status, body) = api.osmand_get("id=0123456789abcdefghjkmnpqrs&lat=52.5&lon=13.4").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("unknown_device"), "{body}");
    let (status, _) = api.osmand_get("lat=52.5&lon=13.4").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no id at all");
    let json = json!({"device_id": "nope", "location": {"coords": {"latitude": 52.5, "longitude": 13.4}}});
    let request = Request::post("/osmand")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json.to_string()))
        .unwrap();
    assert_eq!(api.send(request).await.0, StatusCode::BAD_REQUEST);
    assert!(api.positions("d-1").await.is_empty());
    let (_, events) = api.call("GET", "/api/v1/events", Some(MASTER), Value::Null).await;
    assert_eq!(events["events"], json!([]));
}

#[tokio::test]
async fn osmand_reports_in_every_form_are_stored_in_troths_units() {
    let api = Api::new();
    let device = api.device("d-7").await;
    // GET with a query, timestamp in seconds, speed in knots; typed in capitals.
    let (status, body) = api
        .osmand_get(&format!(
            "id={}&lat=52.5&lon=13.4&timestamp={}&speed=10&bearing=90&altitude=34&accuracy=5&batt=80&charge=true&extra=1",
            device.to_uppercase(),
            unix(-60)
        ))
        .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, ""),
        "200 with an empty body, as Traccar"
    );
    // Form POST, timestamp in milliseconds, `deviceid`.
    let form = format!(
        "deviceid={device}&lat=52.501&lon=13.4&timestamp={}000&speed=0",
        unix(-50)
    );
    let request = Request::post("/osmand")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    assert_eq!(api.send(request).await.0, StatusCode::OK);
    // POST with the query in the URL and an empty body, ISO timestamp.
    let uri = format!(
        "/osmand?id={device}&lat=52.502&lon=13.4&timestamp={}",
        iso(-40).replace('+', "%2B")
    );
    let request = Request::post(uri).body(Body::empty()).unwrap();
    assert_eq!(api.send(request).await.0, StatusCode::OK);
    // Traccar Client 9's JSON: speed in m/s, battery 0–1.
    let json = json!({"device_id": device, "location": {
        "timestamp": iso(-30), "is_moving": true, "event": "motionchange", "odometer": 300,
        "coords": {"latitude": 52.503, "longitude": 13.4, "speed": 10, "heading": 180, "accuracy": 4, "altitude": 30},
        "battery": {"level": 0.5, "is_charging": false}, "activity": {"type": "in_vehicle"}}});
    let request = Request::post("/osmand")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json.to_string()))
        .unwrap();
    assert_eq!(api.send(request).await.0, StatusCode::OK);

    let stored = api.positions("d-7").await;
    let data: Vec<&Value> = stored.iter().map(|e| &e["data"]).collect();
    assert_eq!(stored.len(), 4, "{stored:?}");
    assert_eq!(
        data[0],
        &json!({"lat": 52.5, "lon": 13.4, "speed_kmh": 18.52, "heading": 90.0, "accuracy_m": 5.0, "altitude_m": 34.0, "battery": 80.0})
    );
    assert_eq!(data[1]["speed_kmh"], 0.0);
    assert_eq!(data[3]["speed_kmh"], 36.0);
    assert_eq!(data[3]["battery"], 50.0);
    assert!(data.iter().all(|d| d.get("flag").is_none()), "{data:?}");
    assert_eq!(stored[0]["subject"], "driver:d-7");
    assert_eq!(stored[0]["source"], "osmand");
    let at = |e: &Value| Timestamp::parse_rfc3339(e["time"].as_str().unwrap()).unwrap().micros() / 1_000_000;
    // Seconds may tick between sending and checking.
    assert!((at(&stored[0]) - unix(-60)).abs() <= 1);
    assert!((at(&stored[1]) - unix(-50)).abs() <= 1);
    assert!((at(&stored[2]) - unix(-40)).abs() <= 1);
    let latest = api.hub.latest("d-7").unwrap();
    assert_eq!((latest.lat, latest.speed_kmh), (52.503, Some(36.0)));

    // Traccar Client resends what it did not see acknowledged: stored once.
    let again = format!("/osmand?id={device}&lat=52.5&lon=13.4&timestamp={}", at(&stored[0]));
    assert_eq!(
        api.osmand_get(again.trim_start_matches("/osmand?")).await.0,
        StatusCode::OK
    );
    assert_eq!(api.positions("d-7").await.len(), 4);
}

#[tokio::test]
async fn batches_through_the_api_answer_per_item() {
    let api = Api::new();
    let batch = json!([
        {"lat": 52.5, "lon": 13.4, "at": iso(-30), "speed_kmh": 20, "heading": 45, "accuracy_m": 3, "altitude_m": 40, "battery": 90},
        {"lat": 52.5005, "lon": 13.4, "at": iso(-20)},
        {"lat": 52.5, "lon": 13.4, "at": "yesterday"},
        {"lat": 95, "lon": 13.4, "at": iso(-10)},
        {"lon": 13.4, "at": iso(-10)},
    ]);
    let (status, answer) = api
        .call("POST", "/api/v1/drivers/d-2/positions", Some(MASTER), batch.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let results = answer["results"].as_array().unwrap();
    let statuses: Vec<&str> = results.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["accepted", "accepted", "rejected", "rejected", "rejected"]);
    let fields: Vec<&str> = results[2..]
        .iter()
        .map(|r| r["error"]["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["[2].at", "[3].lat", "[4].lat"]);
    assert!(results[0]["id"].as_str().unwrap().starts_with("pos.d-2."));
    assert_eq!(api.positions("d-2").await.len(), 2);

    let (_, again) = api
        .call("POST", "/api/v1/drivers/d-2/positions", Some(MASTER), batch)
        .await;
    assert_eq!(again["results"][0]["status"], "duplicate");
    assert_eq!(again["results"][1]["status"], "duplicate");
    assert_eq!(api.positions("d-2").await.len(), 2);

    let (_, read) = api
        .call("POST", "/api/v1/keys", Some(MASTER), json!({"scopes": ["read"]}))
        .await;
    let (status, _) = api
        .call("POST", "/api/v1/drivers/d-2/positions", read["key"].as_str(), json!([]))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "needs an ingest key");
    let (status, problem) = api
        .call("POST", "/api/v1/drivers/d-2/positions", Some(MASTER), json!("x"))
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_body"))
    );
}

#[tokio::test]
async fn untrusted_positions_are_flagged_stored_and_not_published() {
    let api = Api::new();
    let mut live = api.hub.subscribe("d-3");
    let post = |batch: Value| api.call("POST", "/api/v1/drivers/d-3/positions", Some(MASTER), batch);
    let (_, first) = post(json!([{"lat": 52.5, "lon": 13.4, "at": iso(-60)}])).await;
    assert_eq!(first["results"][0].get("flag"), None);
    let trusted = live.recv().await.unwrap();
    assert_eq!((&*trusted.driver, trusted.lat), ("d-3", 52.5));

    let (_, answer) = post(json!([
        // 60 km north ten seconds later: no vehicle drives that.
        {"lat": 53.04, "lon": 13.4, "at": iso(-50)},
        // Older than the last position recorded.
        {"lat": 52.5, "lon": 13.4, "at": iso(-120)},
        // An hour old when it arrives.
        {"lat": 52.5, "lon": 13.4, "at": iso(-3_600)},
        {"lat": 0, "lon": 0, "at": iso(-45)},
    ]))
    .await;
    let flags: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["flag"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(flags, ["implausible_jump", "out_of_order", "out_of_order", "no_fix"]);
    let stored = api.positions("d-3").await;
    assert_eq!(stored.len(), 5, "flagged positions are stored");
    assert_eq!(stored[1]["data"]["flag"], "implausible_jump");
    assert!(live.try_recv().is_err(), "nothing flagged was published");
    assert_eq!(api.hub.latest("d-3").unwrap().lat, 52.5);

    // A driver whose first position is an hour old: stale, not the current position.
    let (_, stale) = api
        .call(
            "POST",
            "/api/v1/drivers/d-4/positions",
            Some(MASTER),
            json!([{"lat": 52.5, "lon": 13.4, "at": iso(-3_600)}]),
        )
        .await;
    assert_eq!(stale["results"][0]["flag"], "stale");
    assert_eq!(api.hub.latest("d-4"), None);

    let (_, next) = post(json!([{"lat": 52.501, "lon": 13.4, "at": iso(-40)}])).await;
    assert_eq!(next["results"][0].get("flag"), None);
    assert_eq!(live.recv().await.unwrap().lat, 52.501);
}

/// A `courier.position` sent as an event, as a GPS integration without a device may
/// send it, is judged and followed as one through the positions API: a trusted
/// one reaches the hub, an implausible one is stored with its flag and is not
/// published, and one its sender flagged is kept as sent. One taken an hour ago is
/// history (an import through the API, say): stored as sent, judged by nothing.
#[tokio::test]
async fn positions_sent_as_events_are_judged_and_followed_like_the_drivers_own() {
    let api = Api::new();
    let mut live = api.hub.subscribe("d-6");
    // Bounded: a position that never reaches the hub fails the test rather than hanging it.
    let mut next_live = async move || {
        tokio::time::timeout(std::time::Duration::from_secs(10), live.recv())
            .await
            .expect("the position reached the hub")
            .unwrap()
    };
    let position = |id: &str, lat: f64, at: i64, flag: Option<&str>| {
        let mut data = json!({"lat": lat, "lon": 13.4});
        if let Some(flag) = flag {
            data["flag"] = flag.into();
        }
        json!({"id": id, "type": "courier.position", "time": iso(at), "subject": "driver:d-6", "data": data})
    };
    let (status, answer) = api
        .call(
            "POST",
            "/api/v1/events",
            Some(MASTER),
            json!([
                position("p0", 51.0, -3_600, None),
                position("p1", 52.5, -60, None),
                // 60 km north ten seconds later.
                position("p2", 53.04, -50, None),
                position("p3", 52.501, -40, Some("stale")),
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "accepted"),
        "{answer}"
    );
    assert_eq!(next_live().await.lat, 52.5);
    let stored = api.positions("d-6").await;
    let flags: Vec<&str> = stored
        .iter()
        .map(|e| e["data"]["flag"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(flags, ["-", "-", "implausible_jump", "stale"]);

    // The next position through NDJSON is judged against the same track, which
    // the positions API then goes on from.
    let ndjson = format!("{}\n", position("p4", 52.502, -30, None));
    let request = Request::post("/api/v1/events/ndjson")
        .header(header::AUTHORIZATION, format!("Bearer {MASTER}"))
        .body(Body::from(ndjson))
        .unwrap();
    let (status, text) = api.send(request).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        next_live().await.lat,
        52.502,
        "the flagged positions were not published"
    );
    let (_, through_api) = api
        .call(
            "POST",
            "/api/v1/drivers/d-6/positions",
            Some(MASTER),
            json!([{"lat": 52.502, "lon": 13.4, "at": iso(-35)}]),
        )
        .await;
    assert_eq!(through_api["results"][0]["flag"], "out_of_order");
}

#[tokio::test]
async fn a_restarted_server_judges_against_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        let api = common::settled_app(AppState::new(store, None));
        let request = Request::post("/api/v1/drivers/d-5/positions")
            .body(Body::from(
                json!([{"lat": 52.5, "lon": 13.4, "at": iso(-30)}]).to_string(),
            ))
            .unwrap();
        assert_eq!(api.oneshot(request).await.unwrap().status(), StatusCode::OK);
    }
    // The store's writer thread stops when the last handle is gone; wait for the lock.
    let store = loop {
        match SqliteStore::open(dir.path()) {
            Ok(store) => break store,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    let state = AppState::new(store, None);
    let hub = state.positions.clone();
    let api = common::settled_app(state);
    let request = Request::post("/api/v1/drivers/d-5/positions")
        .body(Body::from(
            json!([{"lat": 53.5, "lon": 13.4, "at": iso(-20)}]).to_string(),
        ))
        .unwrap();
    let response = api.oneshot(request).await.unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(answer["results"][0]["flag"], "implausible_jump");
    assert_eq!(
        hub.latest("d-5").unwrap().lat,
        52.5,
        "the last trusted position, from the log"
    );
}

#[tokio::test]
async fn the_api_description_lists_the_drivers_routes() {
    let api = Api::new();
    let (_, doc) = api.call("GET", "/openapi.json", None, Value::Null).await;
    for path in [
        "/api/v1/drivers/{id}/devices",
        "/api/v1/drivers/{id}/devices/{device_id}",
        "/api/v1/drivers/{id}/positions",
        "/osmand",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not described");
    }
    assert!(doc["paths"]["/osmand"].get("post").is_some());
}
