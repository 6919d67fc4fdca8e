//! The tracking links, the JSON twin, the page's forms and the live stream,
//! through the router over a real store.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use troth_core::Timestamp;
use troth_core::journey::{JourneyMap, parse_journey};
use troth_http::AppState;
use troth_http::tracking::{TrackingConfig, Zone};
use troth_store::Store;
use troth_store::sqlite::SqliteStore;

struct Api {
    dir: tempfile::TempDir,
    router: Router,
    state: AppState<SqliteStore>,
}

struct Reply {
    status: StatusCode,
    content_type: String,
    location: Option<String>,
    /// The Content-Security-Policy the answer carries.
    policy: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;

fn at(offset_us: i64) -> String {
    Timestamp(Timestamp::now().0 + offset_us).to_string()
}

/// How the page names an instant's day in UTC (the test pages' zone), seen from now:
/// a test near midnight meets "tomorrow" or "yesterday" where it means "today".
fn day_word(instant: &str) -> &'static str {
    let day = |t: &str| Timestamp::parse_rfc3339(t).unwrap().0.div_euclid(86_400_000_000);
    match day(instant) - day(&at(0)) {
        -1 => "yesterday",
        0 => "today",
        1 => "tomorrow",
        other => panic!("{instant} is {other} days away"),
    }
}

impl Api {
    fn new() -> Api {
        Api::with(Zone::utc(), None)
    }

    /// With the retailer's time zone and, when given, a journey map the store and
    /// the pages follow (its plays open cases, its promises give their times).
    fn with(timezone: Zone, journey: Option<JourneyMap>) -> Api {
        Api::configured(
            TrackingConfig {
                timezone,
                ..Default::default()
            },
            journey,
        )
    }

    /// With these tracking settings (the name and the upload directory are the test's).
    fn configured(config: TrackingConfig, journey: Option<JourneyMap>) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with_journey(&dir.path().join("store"), journey.as_ref()).unwrap();
        let mut state = AppState::new(store, None).with_tracking(TrackingConfig {
            name: Some("Shop & Co".into()),
            upload_dir: Some(dir.path().join("uploads")),
            ..config
        });
        if let Some(map) = journey {
            state = state.with_journey(map);
        }
        Api {
            router: common::settled_app(state.clone()),
            state,
            dir,
        }
    }

    async fn call(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let header_of = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
        };
        let content_type = header_of(header::CONTENT_TYPE).unwrap_or_default();
        let location = header_of(header::LOCATION);
        let policy = header_of(header::CONTENT_SECURITY_POLICY);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Reply {
            status,
            content_type,
            location,
            policy,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call(Request::get(uri).body(Body::empty()).unwrap()).await
    }

    async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    async fn form(&self, uri: &str, body: &str, origin: Option<&str>) -> Reply {
        let mut request = Request::post(uri)
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        self.call(request.body(Body::from(body.to_owned())).unwrap()).await
    }

    async fn events(&self, events: Vec<Value>) {
        let reply = self.post("/api/v1/events", Value::Array(events)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let results = reply.json();
        let refused: Vec<&Value> = results["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "rejected")
            .collect();
        assert!(refused.is_empty(), "{refused:?}");
    }

    async fn link(&self, shipment: &str) -> Value {
        let reply = self
            .post(&format!("/api/v1/shipments/{shipment}/tracking-link"), json!({}))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.json()
    }

    /// Events of type `event_type` on a subject, oldest first.
    async fn logged(&self, subject: &str, event_type: &str) -> Vec<Value> {
        let reply = self
            .get(&format!("/api/v1/events?subject={subject}&type={event_type}"))
            .await;
        reply.json()["events"].as_array().unwrap().clone()
    }
}

fn event(id: &str, event_type: &str, time: &str, subject: &str, data: Value) -> Value {
    json!({"id": id, "type": event_type, "time": time, "subject": subject,
           "customer": {"email": "ann@example.org"}, "data": data})
}

/// An order placed a day ago, its shipment, handed over.
fn shipped(ship: &str, order: &str) -> Vec<Value> {
    vec![
        event(
            &format!("{order}-placed"),
            "order.placed",
            &at(-DAY),
            &format!("order:{order}"),
            json!({"order": order, "items": [{"sku": "a", "qty": 1, "price": 100}], "total": 100, "currency": "EUR", "delivery": "home"}),
        ),
        event(
            &format!("{ship}-created"),
            "shipment.created",
            &at(-20 * HOUR),
            &format!("shipment:{ship}"),
            json!({"shipment": ship, "order": order, "carrier": "fast", "service": "standard"}),
        ),
        event(
            &format!("{ship}-handed"),
            "shipment.handed_over",
            &at(-10 * HOUR),
            &format!("shipment:{ship}"),
            json!({}),
        ),
    ]
}

fn stages(view: &Value) -> Vec<&str> {
    view["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_link_is_issued_with_the_shipment_and_the_same_one_is_returned_while_valid() {
    let api = Api::new();
    api.events(shipped("s-1", "o-1")).await;
    let first = api.link("s-1").await;
    let token = first["token"].as_str().unwrap();
    assert!(token.len() >= 22, "at least 128 bits: {token}");
    assert_eq!(first["url"], format!("/t/{token}"));
    assert_eq!(first["expires_at"], Value::Null);
    assert_eq!(api.link("s-1").await, first);
    let other = api.link_for_new("s-2", "o-2").await;
    assert_ne!(other["token"], first["token"]);
    assert_eq!(
        api.post("/api/v1/shipments/s-404/tracking-link", json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

impl Api {
    async fn link_for_new(&self, ship: &str, order: &str) -> Value {
        self.events(shipped(ship, order)).await;
        self.link(ship).await
    }
}

#[tokio::test]
async fn wrong_and_expired_tokens_get_the_same_404_and_links_expire_30_days_after_the_final_state() {
    let api = Api::new();
    // Delivered 31 days ago: expired. Delivered 29 days ago: valid for one more day.
    for (ship, days_ago) in [("s-old", 31), ("s-new", 29)] {
        let mut events = shipped(ship, &format!("o-{ship}"));
        events.push(event(
            &format!("{ship}-delivered"),
            "shipment.delivered",
            &at(-days_ago * DAY),
            &format!("shipment:{ship}"),
            json!({"proof": {"kind": "handed"}}),
        ));
        api.events(events).await;
    }
    let old = api.link("s-old").await;
    let new = api.link("s-new").await;
    let delivered = api.logged("shipment:s-new", "shipment.delivered").await[0]["time"]
        .as_str()
        .unwrap()
        .to_owned();
    let expected = Timestamp(Timestamp::parse_rfc3339(&delivered).unwrap().0 + 30 * DAY).to_string();
    assert_eq!(new["expires_at"], expected.as_str());
    assert_eq!(
        api.get(&format!("/api/v1/track/{}", new["token"].as_str().unwrap()))
            .await
            .status,
        StatusCode::OK
    );

    let expired = old["token"].as_str().unwrap();
    let guessed = "AAAAAAAAAAAAAAAAAAAAAAAA";
    for prefix in ["/api/v1/track/", "/t/", "/api/v1/track/"] {
        let (a, b) = (
            api.get(&format!("{prefix}{expired}")).await,
            api.get(&format!("{prefix}{guessed}")).await,
        );
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert_eq!(
            (a.status, &a.content_type, &a.body),
            (b.status, &b.content_type, &b.body)
        );
    }
    let (a, b) = (
        api.get(&format!("/api/v1/track/{expired}/events")).await,
        api.get(&format!("/api/v1/track/{guessed}/events")).await,
    );
    assert_eq!((a.status, a.body), (StatusCode::NOT_FOUND, b.body));
}

#[tokio::test]
async fn the_json_twin_puts_late_events_in_their_place() {
    let api = Api::new();
    let mut events = shipped("s-1", "o-1");
    events.push(event(
        "w",
        "shipment.window_set",
        &at(-3 * HOUR),
        "shipment:s-1",
        json!({"window_start": at(HOUR), "window_end": at(2 * HOUR)}),
    ));
    events.push(event(
        "out",
        "shipment.out_for_delivery",
        &at(-HOUR),
        "shipment:s-1",
        json!({"driver": "d-1", "stops_before": 4}),
    ));
    api.events(events).await;
    let token = api.link("s-1").await["token"].as_str().unwrap().to_owned();
    let view = api.get(&format!("/api/v1/track/{token}")).await.json();
    assert_eq!(view["stage"], "out_for_delivery");
    assert_eq!(stages(&view), ["placed", "handed_over", "out_for_delivery"]);
    assert_eq!(view["stops_before"], 4);
    assert!(view["eta"].is_string(), "an estimate while out for delivery");
    assert!(view["window"]["start"].is_string());

    // `picked` and `packed` arrive late, after out_for_delivery: they slot in; the stage stays.
    api.events(vec![
        event("pk", "order.packed", &at(-22 * HOUR), "order:o-1", json!({})),
        event("pi", "order.picked", &at(-23 * HOUR), "order:o-1", json!({})),
    ])
    .await;
    let view = api.get(&format!("/api/v1/track/{token}")).await.json();
    assert_eq!(view["stage"], "out_for_delivery");
    assert_eq!(
        stages(&view),
        ["placed", "picked", "packed", "handed_over", "out_for_delivery"]
    );
    let times: Vec<&str> = view["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["at"].as_str().unwrap())
        .collect();
    assert!(times.is_sorted(), "{times:?}");

    // Replay rebuilds the same projection, and the link survives it.
    let report = api.state.store.replay(false, &mut |_| {}).unwrap();
    assert!(report.matches(), "{report:?}");
    assert_eq!(api.link("s-1").await["token"], token.as_str());
}

#[tokio::test]
async fn the_driver_is_shown_only_while_on_the_way_to_this_customer_and_only_when_fresh() {
    let api = Api::new();
    api.events(shipped("s-1", "o-1")).await;
    // Another customer's shipment with the same driver, and their address.
    let mut theirs = shipped("s-2", "o-2");
    for e in &mut theirs {
        e["customer"] = json!({"email": "bob@example.org"});
    }
    theirs.push(event(
        "out-2",
        "shipment.out_for_delivery",
        &at(-HOUR),
        "shipment:s-2",
        // Digits no map coordinate on the page is likely to contain by chance.
        json!({"driver": "d-1", "lat": 48.1357, "lon": 11.5791}),
    ));
    api.events(theirs).await;
    let position = |id: &str, ago: i64, lat: f64| {
        json!({"id": id, "type": "courier.position", "time": at(-ago), "subject": "driver:d-1",
               "data": {"lat": lat, "lon": 11.6}})
    };
    api.events(vec![position("p1", 60_000_000, 48.2)]).await;
    let token = api.link("s-1").await["token"].as_str().unwrap().to_owned();
    let uri = format!("/api/v1/track/{token}");
    assert_eq!(
        api.get(&uri).await.json()["driver"],
        Value::Null,
        "not out for delivery yet"
    );

    api.events(vec![event(
        "out-1",
        "shipment.out_for_delivery",
        &at(-30 * 60_000_000),
        "shipment:s-1",
        json!({"driver": "d-1", "stops_before": 2, "lat": 48.3, "lon": 11.7}),
    )])
    .await;
    let view = api.get(&uri).await.json();
    assert_eq!(view["driver"]["lat"], 48.2);
    let page = api.get(&format!("/t/{token}")).await.text();
    for secret in ["bob@example.org", "48.1357", "11.5791", "s-2"] {
        assert!(!api.get(&uri).await.text().contains(secret), "{secret} leaked");
        assert!(!page.contains(secret), "{secret} leaked into the page");
    }

    // A position older than five minutes hides the vehicle.
    api.events(vec![position("p0", 10 * 60_000_000, 48.0)]).await;
    assert_eq!(
        api.get(&uri).await.json()["driver"]["lat"],
        48.2,
        "the latest position wins"
    );
    let stale = Api::new();
    stale.events(shipped("s-1", "o-1")).await;
    stale
        .events(vec![
            event(
                "out",
                "shipment.out_for_delivery",
                &at(-HOUR),
                "shipment:s-1",
                json!({"driver": "d-1"}),
            ),
            position("old", 6 * 60_000_000, 48.2),
        ])
        .await;
    let token = stale.link("s-1").await["token"].as_str().unwrap().to_owned();
    assert_eq!(
        stale.get(&format!("/api/v1/track/{token}")).await.json()["driver"],
        Value::Null
    );

    // Delivered: the driver goes.
    api.events(vec![event(
        "done",
        "shipment.delivered",
        &at(-1_000_000),
        "shipment:s-1",
        json!({"proof": {"kind": "photo", "photo": "https://carrier.example/p/1.jpg"}}),
    )])
    .await;
    let view = api.get(&uri).await.json();
    assert_eq!(
        (view["stage"].as_str(), &view["driver"]),
        (Some("delivered"), &Value::Null)
    );
    assert_eq!(view["proof"]["kind"], "photo");
    assert!(view["expires_at"].is_null(), "the twin does not carry the link");
}

fn eta(view: &Value) -> Option<Timestamp> {
    view["eta"].as_str().map(|t| Timestamp::parse_rfc3339(t).unwrap())
}

#[tokio::test]
async fn the_estimate_follows_the_route_and_survives_a_restart() {
    let api = Api::new();
    api.events(shipped("s-1", "o-1")).await;
    api.events(shipped("s-0", "o-0")).await;
    let token = api.link("s-1").await["token"].as_str().unwrap().to_owned();
    let uri = format!("/api/v1/track/{token}");
    assert_eq!(api.get(&uri).await.json()["eta"], Value::Null, "not on the road yet");

    // Out with the driver, two stops before this one (another customer's is the first).
    let out = |id: &str, ship: &str, stops: u32| {
        event(
            id,
            "shipment.out_for_delivery",
            &at(-20 * 60_000_000),
            &format!("shipment:{ship}"),
            json!({"driver": "d-1", "stops_before": stops}),
        )
    };
    api.events(vec![out("out-0", "s-0", 0), out("out-1", "s-1", 2)]).await;
    let planned = eta(&api.get(&uri).await.json()).expect("an estimate while out for delivery");
    let now = Timestamp::now();
    assert!(planned > now, "{planned:?} is still to come");

    // A restarted server rebuilds the route from the log and says the same.
    let restarted = AppState::new(api.state.store.clone(), None);
    let again = common::settled_app(restarted)
        .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let again: Value =
        serde_json::from_slice(&axum::body::to_bytes(again.into_body(), usize::MAX).await.unwrap()).unwrap();
    let rebuilt = eta(&again).expect("an estimate after a restart");
    assert!(
        (rebuilt.micros() - planned.micros()).abs() < 60_000_000,
        "{planned:?} vs {rebuilt:?}"
    );

    // On the last leg: the estimate comes forward. Delivered: no estimate.
    api.events(vec![event(
        "arriving-1",
        "shipment.arriving",
        &at(0),
        "shipment:s-1",
        json!({}),
    )])
    .await;
    let close = eta(&api.get(&uri).await.json()).unwrap();
    assert!(close < planned, "{planned:?} → {close:?}");
    api.events(vec![event(
        "done-1",
        "shipment.delivered",
        &at(0),
        "shipment:s-1",
        json!({"proof": {"kind": "handed"}}),
    )])
    .await;
    assert_eq!(api.get(&uri).await.json()["eta"], Value::Null);
}

#[tokio::test]
async fn a_window_the_estimate_leaves_is_re_issued_once_for_the_customer() {
    let api = Api::new();
    api.events(shipped("s-1", "o-1")).await;
    // The carrier promised the whole day; the driver left 20 minutes ago.
    let mut day = event(
        "w-1",
        "shipment.window_set",
        &at(-10 * HOUR),
        "shipment:s-1",
        json!({"window_start": at(-2 * HOUR), "window_end": at(6 * HOUR)}),
    );
    day["source"] = json!("carrier");
    api.events(vec![day]).await;
    let policy = troth_core::eta::ReissuePolicy::default();
    let arrivals = &api.state.tracking.arrivals;
    let store = &api.state.store;
    assert_eq!(
        arrivals.reissue(store, Timestamp::now(), &policy).await.unwrap(),
        0,
        "not on the way yet"
    );

    api.events(vec![event(
        "out-1",
        "shipment.out_for_delivery",
        &at(-20 * 60_000_000),
        "shipment:s-1",
        json!({"driver": "d-1", "stops_before": 2}),
    )])
    .await;
    assert_eq!(
        arrivals.reissue(store, Timestamp::now(), &policy).await.unwrap(),
        1,
        "narrowed to an hour"
    );
    assert_eq!(
        arrivals.reissue(store, Timestamp::now(), &policy).await.unwrap(),
        0,
        "once"
    );
    let issued = api.logged("shipment:s-1", "shipment.window_set").await;
    let last = issued.last().unwrap();
    assert_eq!(
        (last["source"].as_str(), &last["data"]["estimate"]),
        (Some("troth"), &json!(true))
    );
    assert_eq!(
        last["customer"],
        json!({"email": "ann@example.org"}),
        "the customer is told"
    );

    let token = api.link("s-1").await["token"].as_str().unwrap().to_owned();
    let view = api.get(&format!("/api/v1/track/{token}")).await.json();
    let (start, end) = (
        Timestamp::parse_rfc3339(view["window"]["start"].as_str().unwrap()).unwrap(),
        Timestamp::parse_rfc3339(view["window"]["end"].as_str().unwrap()).unwrap(),
    );
    let eta = eta(&view).unwrap();
    assert_eq!(end.micros() - start.micros(), HOUR, "{view}");
    assert!(start <= eta && eta <= end, "the new window holds the estimate: {view}");

    // The first stop takes an hour and a half: the estimate leaves the hour, a new one follows.
    api.events(vec![event(
        "out-0",
        "shipment.out_for_delivery",
        &at(-20 * 60_000_000),
        "shipment:s-0",
        json!({"driver": "d-1", "stops_before": 0}),
    )])
    .await;
    let later = Timestamp(Timestamp::now().micros() + 90 * 60_000_000);
    assert_eq!(arrivals.reissue(store, later, &policy).await.unwrap(), 1, "moved");
}

#[tokio::test]
async fn a_customers_reschedule_survives_re_issue_and_the_stop_leaves_the_route() {
    let api = Api::new();
    let mut tokens = Vec::new();
    for i in 0..4 {
        let ship = format!("s-{i}");
        api.events(shipped(&ship, &format!("o-{i}"))).await;
        // The carrier promised the whole day, which an estimate would narrow to an hour.
        let mut day = event(
            &format!("w-{i}"),
            "shipment.window_set",
            &at(-10 * HOUR),
            &format!("shipment:{ship}"),
            json!({"window_start": at(-2 * HOUR), "window_end": at(6 * HOUR)}),
        );
        day["source"] = json!("carrier");
        api.events(vec![day]).await;
        tokens.push(api.link(&ship).await["token"].as_str().unwrap().to_owned());
    }
    let out = (0..4)
        .map(|i| {
            event(
                &format!("out-{i}"),
                "shipment.out_for_delivery",
                &at(-20 * 60_000_000),
                &format!("shipment:s-{i}"),
                json!({"driver": "d-1", "stops_before": i}),
            )
        })
        .collect();
    api.events(out).await;
    let api = &api;
    let view = |i: usize| {
        let uri = format!("/api/v1/track/{}", tokens[i]);
        async move { api.get(&uri).await.json() }
    };
    let planned = view(3).await;
    assert_eq!(planned["stops_before"], 3);
    let planned_eta = eta(&planned).unwrap();

    // s-1's customer leaves a safe place and instructions; s-2's chooses another time.
    let origin = Some("http://127.0.0.1:8080");
    let reply = api
        .form(
            &format!("/t/{}/instructions", tokens[1]),
            "instructions=Ring+twice",
            origin,
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let reply = api
        .call(
            Request::post(format!("/t/{}/safe-place", tokens[1]))
                .header(header::HOST, "127.0.0.1:8080")
                .header(header::ORIGIN, "http://127.0.0.1:8080")
                .header(header::CONTENT_TYPE, "multipart/form-data; boundary=XyZ")
                .body(Body::from(
                    "--XyZ\r\nContent-Disposition: form-data; name=\"place\"\r\n\r\nBehind the gate\r\n--XyZ--\r\n",
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let tomorrow = &at(DAY)[..10];
    let reply = api
        .form(
            &format!("/t/{}/reschedule", tokens[2]),
            &format!("date={tomorrow}&slot=afternoon"),
            origin,
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let chosen = (
        json!(format!("{tomorrow}T12:00:00.000000Z")),
        json!(format!("{tomorrow}T17:00:00.000000Z")),
    );
    let window = |v: &Value| (v["window"]["start"].clone(), v["window"]["end"].clone());

    // The rescheduled stop left the route: no estimate, one stop fewer before s-3,
    // whose estimate moves up.
    let rescheduled = view(2).await;
    assert_eq!(window(&rescheduled), chosen, "{rescheduled}");
    assert_eq!(rescheduled["eta"], Value::Null);
    let moved = view(3).await;
    assert_eq!(moved["stops_before"], 2, "{moved}");
    assert!(eta(&moved).unwrap() < planned_eta, "{planned} → {moved}");
    // A failed attempt ends its stop too.
    api.events(vec![event(
        "failed-0",
        "shipment.attempt_failed",
        &at(0),
        "shipment:s-0",
        json!({"reason": "not_home"}),
    )])
    .await;
    assert_eq!(view(3).await["stops_before"], 1);

    // Estimates narrow the carrier's day windows of s-1 and s-3, never the customer's choice,
    // now or when the route runs hours late.
    let policy = troth_core::eta::ReissuePolicy::default();
    let arrivals = &api.state.tracking.arrivals;
    let store = &api.state.store;
    assert_eq!(arrivals.reissue(store, Timestamp::now(), &policy).await.unwrap(), 2);
    let later = Timestamp(Timestamp::now().micros() + 5 * HOUR);
    arrivals.reissue(store, later, &policy).await.unwrap();
    let estimates = |events: Vec<Value>| events.iter().filter(|e| e["data"]["estimate"] == json!(true)).count();
    assert_eq!(estimates(api.logged("shipment:s-2", "shipment.window_set").await), 0);
    assert!(estimates(api.logged("shipment:s-1", "shipment.window_set").await) >= 1);
    assert_eq!(window(&view(2).await), chosen, "the customer's choice stands");
    // The safe place and the instructions stand beside the re-issued window.
    let tracked = store.tracked(tokens[1].clone()).await.unwrap().unwrap();
    assert_eq!(tracked.shipment.safe_place().unwrap().place, "Behind the gate");
    assert_eq!(tracked.shipment.instructions().as_deref(), Some("Ring twice"));
    let (start, end) = window(&view(1).await);
    let t = |v: &Value| Timestamp::parse_rfc3339(v.as_str().unwrap()).unwrap().micros();
    assert_eq!(t(&end) - t(&start), HOUR, "s-1's window was narrowed: {start}–{end}");
}

#[tokio::test]
async fn the_page_records_each_view_and_its_forms_append_the_right_events() {
    let api = Api::new();
    api.events(shipped("s-1", "o-1")).await;
    let token = api.link("s-1").await["token"].as_str().unwrap().to_owned();
    let page = api.get(&format!("/t/{token}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("Shop &amp; Co") && page.text().contains("Handed over"));
    api.get(&format!("/t/{token}")).await;
    let viewed = api.logged("shipment:s-1", "tracking.viewed").await;
    assert_eq!(viewed.len(), 2);
    assert_eq!(viewed[0]["data"]["shipment"], "s-1");
    assert_eq!(viewed[0]["customer"]["email"], "ann@example.org");

    let origin = Some("http://127.0.0.1:8080");
    let tomorrow = &at(DAY)[..10];
    let reply = api
        .form(
            &format!("/t/{token}/reschedule"),
            &format!("date={tomorrow}&slot=afternoon"),
            origin,
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert_eq!(
        reply.location.as_deref(),
        Some(format!("/t/{token}?done=reschedule").as_str())
    );
    let rescheduled = api.logged("shipment:s-1", "shipment.rescheduled").await;
    assert_eq!(rescheduled[0]["data"]["by"], "customer");
    assert_eq!(
        rescheduled[0]["data"]["window_start"],
        format!("{tomorrow}T12:00:00.000000Z")
    );

    // Without an Origin (or Referer) saying it came from the page itself: refused.
    let reply = api
        .form(&format!("/t/{token}/instructions"), "instructions=Ring+twice", None)
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = api
        .form(&format!("/t/{token}/instructions"), "instructions=Ring+twice", origin)
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(
        api.logged("shipment:s-1", "shipment.instructions_set").await[0]["data"]["instructions"],
        "Ring twice"
    );

    let reply = api
        .form(&format!("/t/{token}/problem"), "category=damaged", origin)
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let case = &api.logged("shipment:s-1", "case.opened").await[0];
    assert_eq!(
        (case["data"]["category"].as_str(), case["data"]["order"].as_str()),
        (Some("damaged"), Some("o-1"))
    );

    // From another site: refused, nothing appended.
    let reply = api
        .form(
            &format!("/t/{token}/problem"),
            "category=late",
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(api.logged("shipment:s-1", "case.opened").await.len(), 1);
    // A bad category and a day in the past are refused.
    assert_eq!(
        api.form(&format!("/t/{token}/problem"), "category=nope", origin)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.form(
            &format!("/t/{token}/reschedule"),
            "date=2001-01-01&slot=morning",
            origin
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
}

fn multipart(place: &str, photo: Option<&[u8]>) -> (String, Vec<u8>) {
    let boundary = "XtrothX";
    let mut body =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"place\"\r\n\r\n{place}\r\n").into_bytes();
    if let Some(photo) = photo {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n")
                .bytes(),
        );
        body.extend_from_slice(photo);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A minimal JPEG with an EXIF segment that gives a location away.
fn jpeg_with_exif(padding: usize) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8];
    let exif = b"Exif\0\0GPS 51.5074N 0.1278W";
    j.extend([0xFF, 0xE1]);
    j.extend(((exif.len() + 2) as u16).to_be_bytes());
    j.extend(exif);
    j.extend([0xFF, 0xDB, 0x00, 0x43]);
    j.extend([0u8; 65]);
    j.extend([0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 63, 0]);
    j.extend(vec![0x11; padding]);
    j.extend([0xFF, 0xD9]);
    j
}

#[tokio::test]
async fn a_safe_place_photo_is_checked_stripped_and_stored() {
    let api = Api::new();
    api.events(shipped("s-1", "o-1")).await;
    let token = api.link("s-1").await["token"].as_str().unwrap().to_owned();
    let upload = |place: &str, photo: Option<Vec<u8>>| {
        let (content_type, body) = multipart(place, photo.as_deref());
        Request::post(format!("/t/{token}/safe-place"))
            .header(header::CONTENT_TYPE, content_type)
            .header(header::ORIGIN, "http://127.0.0.1:8080")
            .header(header::HOST, "127.0.0.1:8080")
            .body(Body::from(body))
            .unwrap()
    };

    let reply = api
        .call(upload("Behind the blue bin", Some(b"GIF89a not a photo".to_vec())))
        .await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let reply = api
        .call(upload("Behind the blue bin", Some(jpeg_with_exif(6 * 1024 * 1024))))
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(api.logged("shipment:s-1", "shipment.safe_place_set").await.is_empty());

    let photo = jpeg_with_exif(100);
    let reply = api.call(upload("Behind the blue bin", Some(photo.clone()))).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let set = &api.logged("shipment:s-1", "shipment.safe_place_set").await[0];
    assert_eq!(set["data"]["place"], "Behind the blue bin");
    let name = set["data"]["photo"].as_str().unwrap();
    let stored = std::fs::read(api.dir.path().join("uploads").join(name)).unwrap();
    assert!(stored.starts_with(&[0xFF, 0xD8]) && stored.ends_with(&[0xFF, 0xD9]));
    assert!(!stored.windows(3).any(|w| w == b"GPS"), "the EXIF segment is gone");
    assert_eq!(stored.len(), photo.len() - 30, "exactly the APP1 segment was removed");
    let served = api.get(&format!("/t/{token}/safe-place-photo")).await;
    assert_eq!(
        (served.status, served.content_type.as_str()),
        (StatusCode::OK, "image/jpeg")
    );
    assert_eq!(served.body, stored);
}

/// A shipment's live stream (`/api/v1/track/{token}/events`), read as it comes.
struct Live(axum::body::BodyDataStream);

impl Live {
    async fn open(api: &Api, ship: &str) -> Live {
        let token = api.link(ship).await["token"].as_str().unwrap().to_owned();
        let response = api
            .router
            .clone()
            .oneshot(
                Request::get(format!("/api/v1/track/{token}/events"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
        Live(response.into_body().into_data_stream())
    }

    /// What the stream sends until `needle` is among it; fails once it stays quiet
    /// for 10 s.
    async fn until(&mut self, needle: &str) -> String {
        use futures_util::StreamExt;
        let mut seen = String::new();
        while !seen.contains(needle) {
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), self.0.next())
                .await
                .unwrap_or_else(|_| panic!("the stream went quiet before {needle}: {seen}"))
                .unwrap()
                .unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        seen
    }
}

#[tokio::test]
async fn the_live_stream_sends_the_view_and_positions_from_the_position_source() {
    let api = Api::new();
    api.events(shipped("s-1", "o-1")).await;
    api.events(vec![event(
        "out",
        "shipment.out_for_delivery",
        &at(-HOUR),
        "shipment:s-1",
        json!({"driver": "d-7"}),
    )])
    .await;
    let mut live = Live::open(&api, "s-1").await;
    let seen = live.until("event: tracking").await;
    assert!(seen.contains("\"stage\":\"out_for_delivery\""), "{seen}");
    // Another driver's position is not passed on; this driver's are, each as it
    // comes (the view, worked out every 2 s, would show only the newer). All arrive
    // as drivers' apps send them, through the positions API and its live hub.
    let now = Timestamp::now().micros();
    let fix = |lon: f64, seconds_ago: i64| json!({"lat": 52.5, "lon": lon, "at": Timestamp::from_micros(now - seconds_ago * 1_000_000).unwrap().to_string()});
    for (driver, fixes) in [
        ("d-8", json!([fix(1.0, 1)])),
        ("d-7", json!([fix(13.4, 2), fix(13.4001, 1)])),
    ] {
        let response = api
            .router
            .clone()
            .oneshot(
                Request::post(format!("/api/v1/drivers/{driver}/positions"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(fixes.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{driver}");
    }
    let mut seen = String::new();
    let both = async {
        while seen.matches("event: position").count() < 2 {
            seen.push_str(&live.until("event: position").await);
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(10), both)
        .await
        .is_err()
    {
        panic!("the stream did not send both positions: {seen}");
    }
    let lons: Vec<Option<f64>> = seen
        .lines()
        .skip_while(|l| *l != "event: position")
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter(|data| data.get("lat").is_some())
        .map(|position| position["lon"].as_f64())
        .collect();
    assert_eq!(lons, [Some(13.4), Some(13.4001)], "{seen}");
}

/// A stream reads the store again when an event about its shipment is stored, not
/// on a timer: the delivery reaches it within the test's wait, well inside the time
/// after which a quiet stream reads the store again anyway (30 s).
#[tokio::test]
async fn the_live_stream_sends_the_new_view_when_its_shipment_changes() {
    let api = Api::new();
    api.events(shipped("s-1", "o-1")).await;
    let mut live = Live::open(&api, "s-1").await;
    let seen = live.until("event: tracking").await;
    assert!(!seen.contains("\"stage\":\"delivered\""), "{seen}");
    api.events(vec![event(
        "done-1",
        "shipment.delivered",
        &at(0),
        "shipment:s-1",
        json!({"proof": {"kind": "handed"}}),
    )])
    .await;
    live.until("\"stage\":\"delivered\"").await;
}

/// An order's stages reach its shipment's stream too: they come under the order's
/// subject, which the stream watches beside the shipment's.
#[tokio::test]
async fn the_live_stream_sends_the_new_view_when_its_order_changes() {
    let api = Api::new();
    api.events(shipped("s-1", "o-1")).await;
    let mut live = Live::open(&api, "s-1").await;
    let seen = live.until("event: tracking").await;
    assert!(!seen.contains("\"stage\":\"packed\""), "{seen}");
    api.events(vec![event(
        "pk",
        "order.packed",
        &at(-21 * HOUR),
        "order:o-1",
        json!({}),
    )])
    .await;
    live.until("\"stage\":\"packed\"").await;
}

/// The case a play opens for a lost parcel is stored under the case's own subject;
/// an open stream still shows it without waiting for its next full read. (The map's
/// promise that the parcel arrives is left out: its breaking, an event about the
/// shipment, would bring the case along.)
#[tokio::test]
async fn the_live_stream_shows_the_case_opened_for_a_lost_parcel() {
    let retail = include_str!("../../../journeys/retail.toml");
    let unpromised = retail.replace(
        r#"broken_by = ["shipment.lost", "shipment.returned"]"#,
        r#"broken_by = ["shipment.returned"]"#,
    );
    assert_ne!(
        unpromised, retail,
        "the retail map no longer has the promise this test takes out"
    );
    let api = Api::with(Zone::utc(), Some(parse_journey(&unpromised).unwrap()));
    api.events(shipped("s-1", "o-1")).await;
    let mut live = Live::open(&api, "s-1").await;
    live.until("event: tracking").await;
    api.events(vec![event(
        "lost",
        "shipment.lost",
        &at(-60_000_000),
        "shipment:s-1",
        json!({}),
    )])
    .await;
    live.until("\"reference\":\"play-").await;
}

// ---- what each state reads (docs/tracking.md#states) ----

fn retail() -> JourneyMap {
    parse_journey(include_str!("../../../journeys/retail.toml")).unwrap()
}

impl Api {
    /// The page and its JSON twin for a shipment's link.
    async fn page_and_view(&self, ship: &str) -> (String, Value) {
        let token = self.link(ship).await["token"].as_str().unwrap().to_owned();
        let page = self.get(&format!("/t/{token}")).await;
        assert_eq!(page.status, StatusCode::OK);
        let view = self.get(&format!("/api/v1/track/{token}")).await.json();
        (page.text(), view)
    }
}

fn lines(view: &Value) -> String {
    view["status"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

fn window_event(id: &str, time: &str, start: i64, end: i64, estimate: bool) -> Value {
    let mut data = json!({"window_start": at(start), "window_end": at(end)});
    if estimate {
        data["estimate"] = json!(true);
    }
    event(id, "shipment.window_set", time, "shipment:s-1", data)
}

#[tokio::test]
async fn a_window_that_passed_reads_late_with_an_apology_and_what_the_customer_can_do() {
    let api = Api::new();
    api.events(shipped("s-1", "o-1")).await;
    api.events(vec![
        window_event("w", &at(-5 * HOUR), -3 * HOUR, -2 * HOUR, false),
        event(
            "out",
            "shipment.out_for_delivery",
            &at(-4 * HOUR),
            "shipment:s-1",
            json!({"driver": "d-1", "stops_before": 0}),
        ),
    ])
    .await;
    let (page, view) = api.page_and_view("s-1").await;
    assert_eq!(
        view["stage"], "out_for_delivery",
        "the stage is still what the events say"
    );
    assert_eq!(view["status"]["state"], "late");
    assert_eq!(view["status"]["headline"], "Running late");
    assert_eq!(view["late"]["because"], "window_passed");
    assert_eq!(view["late"]["promised"]["end"], view["window"]["end"]);
    let said = lines(&view);
    let promised = format!(
        "We are sorry: we promised {}",
        day_word(view["late"]["promised"]["start"].as_str().unwrap())
    );
    assert!(said.contains(&promised), "{said}");
    assert!(
        said.contains("expected") || said.contains("do not have a new time yet"),
        "a new estimate or that there is none: {said}"
    );
    assert!(said.contains("choose another time below or tell us"), "{said}");
    assert_eq!(view["status"]["problem"], "late");
    assert_eq!(view["status"]["actions"], json!(["another_time", "report"]));
    assert!(page.contains(r#"<h1 id="stage">Running late</h1>"#), "{page}");
    assert!(page.contains(r#"data-tone="warning""#));
    assert!(page.contains(r##"<a href="#another-time" data-action="another_time">"##));
    assert!(page.contains(r#"<option value="late" selected>"#));
    assert!(
        page.contains("<title>Running late · Shop &amp; Co</title>"),
        "no repeated title"
    );

    // A window troth moved later from its estimate broke the promise: late too,
    // naming the window promised and the new time.
    let moved = Api::new();
    moved.events(shipped("s-1", "o-1")).await;
    moved
        .events(vec![
            window_event("w", &at(-3 * HOUR), HOUR, 2 * HOUR, false),
            window_event("re", &at(-60_000_000), 2 * HOUR, 3 * HOUR, true),
        ])
        .await;
    let (_, view) = moved.page_and_view("s-1").await;
    assert_eq!(view["status"]["state"], "late");
    assert_eq!(view["late"]["because"], "window_moved");
    let windows = moved.logged("shipment:s-1", "shipment.window_set").await;
    let promised = windows.iter().find(|w| w["id"] == "w").unwrap();
    assert_eq!(view["late"]["promised"]["start"], promised["data"]["window_start"]);
    assert_eq!(view["late"]["estimate"], view["window"]["start"]);
    let expected = format!(
        "Your parcel is now expected {}",
        day_word(view["late"]["estimate"].as_str().unwrap())
    );
    assert!(lines(&view).contains(&expected), "{}", lines(&view));
}

#[tokio::test]
async fn a_failed_attempt_says_why_and_what_happens_next() {
    let api = Api::new();
    api.events(shipped("s-1", "o-1")).await;
    api.events(vec![
        event(
            "out",
            "shipment.out_for_delivery",
            &at(-2 * HOUR),
            "shipment:s-1",
            json!({"driver": "d-1"}),
        ),
        event(
            "failed",
            "shipment.attempt_failed",
            &at(-HOUR),
            "shipment:s-1",
            json!({"reason": "nobody home <b>"}),
        ),
    ])
    .await;
    let (page, view) = api.page_and_view("s-1").await;
    assert_eq!(view["status"]["state"], "attempt_failed");
    assert_eq!(view["attempt"]["reason"], "nobody home <b>");
    let said = lines(&view);
    assert!(said.contains("could not deliver: nobody home <b>."), "{said}");
    assert!(said.contains("We will tell you here when we try again."), "{said}");
    assert!(page.contains("could not deliver: nobody home &lt;b&gt;."), "escaped");
    assert!(page.contains(r#"<option value="missed" selected>"#));
    assert!(page.contains(r##"<a href="#safe-place" data-action="safe_place">"##));
    assert!(!page.contains(r#"value="late" selected"#));

    // A new window after the failure is the next attempt.
    api.events(vec![window_event(
        "next",
        &at(-30 * 60_000_000),
        DAY,
        DAY + HOUR,
        false,
    )])
    .await;
    let (_, view) = api.page_and_view("s-1").await;
    assert!(lines(&view).contains("We will try again tomorrow"), "{}", lines(&view));
}

#[tokio::test]
async fn a_lost_parcel_says_what_happens_now_who_will_contact_the_customer_and_by_when() {
    let api = Api::with(Zone::utc(), Some(retail()));
    api.events(shipped("s-1", "o-1")).await;
    let lost_at = at(-60_000_000);
    api.events(vec![event(
        "lost",
        "shipment.lost",
        &lost_at,
        "shipment:s-1",
        json!({}),
    )])
    .await;
    let (page, view) = api.page_and_view("s-1").await;
    assert_eq!(
        (&view["status"]["state"], &view["status"]["tone"]),
        (&json!("lost"), &json!("bad"))
    );
    let case = view["lost_case"]["reference"].as_str().unwrap();
    assert!(case.starts_with("play-"), "the case the play opened: {case}");
    let opened = api.logged(&format!("case:{case}"), "case.opened").await;
    assert_eq!(opened.len(), 1);
    // The retail map answers a case by its resolution service level, in business hours.
    let lost = Timestamp::parse_rfc3339(&lost_at).unwrap();
    let data = &opened[0]["data"];
    let answer_by = retail()
        .case_due()
        .unwrap()
        .at(data["team"].as_str().unwrap(), data["category"].as_str().unwrap(), lost)
        .unwrap();
    assert_eq!(view["lost_case"]["answer_by"], answer_by.to_string());
    let said = lines(&view);
    assert!(
        said.contains(&format!(
            "Our delivery team has opened case {case} and will contact you by "
        )),
        "{said}"
    );
    assert!(page.contains(r#"data-tone="bad""#));
    assert!(
        page.contains(r#"<option value="lost" selected>"#),
        "the form fits the state"
    );
    assert!(!page.contains(r#"<option value="late" selected>"#));
    assert!(!page.contains(r#"id="another-time""#), "no forms once final");
}

#[tokio::test]
async fn a_delivery_shows_the_photo_itself_where_it_was_left_and_when() {
    let api = Api::new();
    api.events(shipped("s-1", "o-1")).await;
    api.events(vec![
        event(
            "place",
            "shipment.safe_place_set",
            &at(-3 * HOUR),
            "shipment:s-1",
            json!({"place": "behind the blue gate"}),
        ),
        event(
            "done",
            "shipment.delivered",
            &at(-HOUR),
            "shipment:s-1",
            json!({"proof": {"kind": "safe_place", "photo": "https://carrier.example/p/1.jpg"}}),
        ),
    ])
    .await;
    let (page, view) = api.page_and_view("s-1").await;
    assert_eq!(
        (&view["status"]["state"], &view["status"]["tone"]),
        (&json!("delivered"), &json!("good"))
    );
    assert_eq!(
        view["proof"]["at"],
        view["stages"].as_array().unwrap().last().unwrap()["at"]
    );
    let said = lines(&view);
    let delivered = format!("Delivered {}, ", day_word(view["proof"]["at"].as_str().unwrap()));
    assert!(said.starts_with(&delivered), "{said}");
    assert!(
        said.contains("Left in your safe place: behind the blue gate."),
        "{said}"
    );
    assert!(page.contains(r#"<img class="photo" src="https://carrier.example/p/1.jpg""#));
    assert!(
        page.contains(r#"<option value="" selected>Choose…</option>"#),
        "no reason guessed"
    );
    assert_eq!(view["status"]["problem"], Value::Null);
}

#[tokio::test]
async fn a_case_opened_from_the_page_is_confirmed_with_its_reference_and_answer_time() {
    let api = Api::with(Zone::utc(), Some(retail()));
    api.events(shipped("s-1", "o-1")).await;
    let token = api.link("s-1").await["token"].as_str().unwrap().to_owned();
    let reply = api
        .form(
            &format!("/t/{token}/problem"),
            "category=damaged",
            Some("http://127.0.0.1:8080"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let location = reply.location.unwrap();
    let case = api.logged("shipment:s-1", "case.opened").await[0].clone();
    let reference = case["data"]["case"].as_str().unwrap();
    assert_eq!(location, format!("/t/{token}?done=problem&case={reference}"));
    let opened = Timestamp::parse_rfc3339(case["time"].as_str().unwrap()).unwrap();
    // The journey map's case promise: its resolution service level, in business hours.
    let answer_by = retail()
        .case_due()
        .unwrap()
        .at(
            case["data"]["team"].as_str().unwrap(),
            case["data"]["category"].as_str().unwrap(),
            opened,
        )
        .unwrap();

    let view = api.get(&format!("/api/v1/track/{token}")).await.json();
    assert_eq!(view["cases"][0]["reference"], reference);
    assert_eq!(view["cases"][0]["answer_by"], answer_by.to_string());
    let page = api.get(&location).await.text();
    let confirmed = format!(
        r#"Thank you. We have opened case <strong class="ref">{reference}</strong>. Our support team will answer you by {}."#,
        Zone::utc().when(answer_by, Timestamp::now())
    );
    assert!(page.contains(&confirmed), "{confirmed} in {page}");
    // A reference the log does not hold is not echoed back as a case.
    let forged = api
        .get(&format!("/t/{token}?done=problem&case=k-t-forged"))
        .await
        .text();
    assert!(!forged.contains("k-t-forged"));
    assert!(forged.contains("Thank you; our team will contact you about it."));
}

#[tokio::test]
async fn the_drivers_position_shows_its_age_and_a_stale_one_is_drawn_as_stale() {
    let api = Api::new();
    api.events(shipped("s-1", "o-1")).await;
    let position = |id: &str, ago: i64| {
        json!({"id": id, "type": "courier.position", "time": at(-ago), "subject": "driver:d-1",
               "data": {"lat": 48.2, "lon": 11.6}})
    };
    api.events(vec![
        event(
            "out",
            "shipment.out_for_delivery",
            &at(-HOUR),
            "shipment:s-1",
            json!({"driver": "d-1", "lat": 48.3, "lon": 11.7}),
        ),
        position("old", 25 * 60_000_000),
    ])
    .await;
    let (page, view) = api.page_and_view("s-1").await;
    assert_eq!(view["driver"], Value::Null, "never shown as where the driver is");
    assert_eq!(view["last_position"]["stale"], true);
    let age = view["last_position"]["age_seconds"].as_i64().unwrap();
    assert!((25 * 60..25 * 60 + 30).contains(&age), "{age}");
    assert!(page.contains(r#"class="driver stale""#), "{page}");
    assert!(page.contains("Last known position, 25 min ago"), "{page}");
    assert!(
        page.contains(r#"class="age">25 min ago</text>"#),
        "the marker carries its age"
    );

    api.events(vec![position("new", 2 * 60_000_000)]).await;
    let (page, view) = api.page_and_view("s-1").await;
    assert_eq!(view["driver"]["lat"], 48.2);
    assert_eq!(view["last_position"]["stale"], false);
    assert!(page.contains(r#"class="driver""#) && !page.contains("driver stale"));
    assert!(page.contains("Position 2 min ago"), "{page}");
    assert!(
        page.contains(r#"class="age" visibility="hidden">"#),
        "no age label on a fresh marker"
    );
}

#[tokio::test]
async fn times_read_in_the_customers_zone_across_a_clock_change() {
    let api = Api::with(Zone::named("America/New_York").unwrap(), None);
    let identified = |email: &str, zone: Value| {
        json!({"id": format!("id-{email}-{zone}"), "type": "customer.identified", "time": at(-2 * DAY),
               "customer": {"email": email}, "data": {"traits": {"timezone": zone}}})
    };
    api.events(vec![identified("ann@example.org", json!("Europe/London"))])
        .await;
    // British Summer Time ended on 25 October 2026 at 01:00 UTC.
    let mut events = shipped("s-1", "o-1");
    events[0]["time"] = json!("2026-10-24T08:30:00Z");
    events[1]["time"] = json!("2026-10-24T09:00:00Z");
    events[2]["time"] = json!("2026-10-26T08:30:00Z");
    api.events(events).await;
    let (page, view) = api.page_and_view("s-1").await;
    assert_eq!(view["timezone"], "Europe/London");
    let local: Vec<&str> = view["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["local"].as_str().unwrap())
        .collect();
    assert_eq!(local, ["Sat 24 Oct, 09:30 BST", "Mon 26 Oct, 08:30 GMT"]);
    assert!(page.contains("Sat 24 Oct, 09:30 BST") && page.contains("Mon 26 Oct, 08:30 GMT"));
    assert!(page.contains("Times are in Europe/London time."));
    assert!(
        page.contains("Time (Europe/London)"),
        "the reschedule slots say their zone"
    );

    // No zone of their own (or not a real one): the retailer's.
    let mut theirs = shipped("s-2", "o-2");
    for e in &mut theirs {
        e["customer"] = json!({"email": "bob@example.org"});
    }
    api.events(vec![identified("bob@example.org", json!("Mars/Olympus"))])
        .await;
    api.events(theirs).await;
    let (_, view) = api.page_and_view("s-2").await;
    assert_eq!(view["timezone"], "America/New_York");

    // A slot is hours of the customer's own day: 12:00 in Tokyo is 03:00 UTC.
    api.events(vec![identified("ann@example.org", json!("Asia/Tokyo"))])
        .await;
    let token = api.link("s-1").await["token"].as_str().unwrap().to_owned();
    let day = &at(3 * DAY)[..10];
    let reply = api
        .form(
            &format!("/t/{token}/reschedule"),
            &format!("date={day}&slot=afternoon"),
            Some("http://127.0.0.1:8080"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let rescheduled = api.logged("shipment:s-1", "shipment.rescheduled").await;
    assert_eq!(
        rescheduled[0]["data"]["window_start"],
        format!("{day}T03:00:00.000000Z")
    );
}

/// A driver out with `s-1` to 52.52, 13.405 with two stops first, who reported from
/// further south: twenty minutes ago, then on the way in the last six minutes,
/// waiting three times at one door at −3 min.
async fn driving_towards_the_customer(api: &Api) {
    api.events(shipped("s-1", "o-1")).await;
    let position = |id: &str, minutes_ago: i64, lat: f64| {
        json!({"id": id, "type": "courier.position", "time": at(-minutes_ago * 60_000_000),
               "subject": "driver:d-1", "data": {"lat": lat, "lon": 13.40}})
    };
    api.events(vec![
        event(
            "out",
            "shipment.out_for_delivery",
            &at(-HOUR),
            "shipment:s-1",
            json!({"driver": "d-1", "stops_before": 2, "lat": 52.52, "lon": 13.405}),
        ),
        position("p-20", 20, 52.40),
        position("p-6", 6, 52.50),
        position("p-4", 4, 52.505),
        position("p-3a", 3, 52.51),
        json!({"id": "p-3b", "type": "courier.position", "time": at(-3 * 60_000_000 + 1_000_000),
               "subject": "driver:d-1", "data": {"lat": 52.51001, "lon": 13.40}}),
        json!({"id": "p-3c", "type": "courier.position", "time": at(-3 * 60_000_000 + 2_000_000),
               "subject": "driver:d-1", "data": {"lat": 52.51002, "lon": 13.40}}),
        position("p-2", 2, 52.515),
    ])
    .await;
}

/// The map section of a page.
fn map_section(page: &str) -> &str {
    let start = page.find(r#"<section id="map""#).expect("a map section");
    let end = start + page[start..].find("</section>").unwrap();
    &page[start..end]
}

#[tokio::test]
async fn the_map_shows_the_address_the_driver_and_the_last_minutes_of_the_way_without_script() {
    let api = Api::new();
    driving_towards_the_customer(&api).await;
    let (page, view) = api.page_and_view("s-1").await;
    let map = map_section(&page);
    assert!(!map.starts_with(r#"<section id="map" hidden"#), "{map}");
    assert!(map.contains(r#"<g id="home" class="home""#), "{map}");
    assert!(map.contains(r#"<circle id="driver""#), "{map}");
    assert!(
        map.contains(r#"<p class="map-stops" id="map-stops">2 stops before yours</p>"#),
        "{map}"
    );
    // The last ten minutes before the position shown, oldest first, the wait at the
    // door one point: not the report from twenty minutes ago.
    let trail = map
        .split(r#"data-trail="["#)
        .nth(1)
        .unwrap()
        .split("]\"")
        .next()
        .unwrap();
    let lats: Vec<&str> = trail
        .split("],[")
        .map(|p| p.trim_matches(['[', ']']).split(',').next().unwrap())
        .collect();
    assert_eq!(lats, ["52.5", "52.505", "52.51", "52.515"], "{trail}");
    let line = map
        .split(r#"<polyline id="trail" class="trail" points=""#)
        .nth(1)
        .unwrap();
    assert_eq!(line.split('"').next().unwrap().split(' ').count(), 4);
    // The map's furniture: a north arrow and a round scale.
    assert!(map.contains(r#"<text y="20">N</text>"#));
    let scale = map.split(r#"id="map-scale""#).nth(1).unwrap();
    let label = scale
        .split("<text")
        .nth(1)
        .unwrap()
        .split('>')
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    assert!(["m", "km"].contains(&label.split(' ').nth(1).unwrap()), "{label}");
    // No tiles configured: nothing is loaded from elsewhere, and nothing claims to be OpenStreetMap.
    assert!(!map.contains("<img") && !map.contains("data-tiles") && !map.contains("OpenStreetMap"));
    let token = api.link("s-1").await["token"].as_str().unwrap().to_owned();
    let policy = api.get(&format!("/t/{token}")).await.policy.unwrap();
    assert!(policy.contains("img-src 'self' data:;"), "{policy}");
    // The JSON twin is the same as before: the page alone draws the trail.
    assert_eq!(view["destination"], json!({"lat": 52.52, "lon": 13.405}));
}

#[tokio::test]
async fn the_map_shows_the_address_before_the_first_position_and_nothing_once_delivered() {
    let api = Api::new();
    api.events(shipped("s-1", "o-1")).await;
    api.events(vec![event(
        "out",
        "shipment.out_for_delivery",
        &at(-HOUR),
        "shipment:s-1",
        json!({"driver": "d-1", "stops_before": 0, "lat": 52.52, "lon": 13.405}),
    )])
    .await;
    let (page, _) = api.page_and_view("s-1").await;
    let map = map_section(&page);
    assert!(!map.starts_with(r#"<section id="map" hidden"#), "{map}");
    assert!(map.contains(r#"id="home""#) && !map.contains(r#"id="driver""#), "{map}");
    assert!(map.contains("Your stop is next"));
    assert!(map.contains("The driver appears here once their phone reports where they are."));

    api.events(vec![event(
        "done",
        "shipment.delivered",
        &at(-60_000_000),
        "shipment:s-1",
        json!({"proof": {"kind": "handed"}}),
    )])
    .await;
    let (page, _) = api.page_and_view("s-1").await;
    let map = map_section(&page);
    assert!(map.starts_with(r#"<section id="map" hidden"#), "{map}");
    assert!(!map.contains(r#"id="home""#), "no address once delivered: {map}");
}

#[tokio::test]
async fn tiles_come_from_the_configured_server_attributed_and_the_policy_allows_only_its_origin() {
    let api = Api::configured(
        TrackingConfig {
            tile_url: Some("https://tile.openstreetmap.org/{z}/{x}/{y}.png".into()),
            ..Default::default()
        },
        None,
    );
    driving_towards_the_customer(&api).await;
    let (page, _) = api.page_and_view("s-1").await;
    let map = map_section(&page);
    let tiles: Vec<&str> = map.split("<img ").skip(1).collect();
    assert!((2..=9).contains(&tiles.len()), "{map}");
    for tile in &tiles {
        // Only the page's origin as referrer: the token stays on this server.
        assert!(tile.starts_with(r#"src="https://tile.openstreetmap.org/"#), "{tile}");
        assert!(tile.contains(r#"referrerpolicy="strict-origin""#), "{tile}");
    }
    assert!(
        map.contains(
            r#"<a href="https://www.openstreetmap.org/copyright" rel="noopener">© OpenStreetMap contributors</a>"#
        ),
        "{map}"
    );
    let token = api.link("s-1").await["token"].as_str().unwrap().to_owned();
    let policy = api.get(&format!("/t/{token}")).await.policy.unwrap();
    assert!(
        policy.contains("img-src 'self' data: https://tile.openstreetmap.org;"),
        "{policy}"
    );
    assert!(
        policy.contains("script-src 'self';") && policy.contains("connect-src 'self';"),
        "{policy}"
    );
    // Other pages and the API do not load tiles and do not allow them.
    let api_policy = api.get(&format!("/api/v1/track/{token}")).await.policy.unwrap();
    assert!(!api_policy.contains("openstreetmap"), "{api_policy}");

    // Another provider, with the words it requires.
    let api = Api::configured(
        TrackingConfig {
            tile_url: Some("https://maps.shop.example:8443/tiles/{z}/{x}/{y}.png".into()),
            tile_attribution: Some("© Shop maps, data © OpenStreetMap contributors".into()),
            tile_attribution_url: Some("https://maps.shop.example/credits".into()),
            ..Default::default()
        },
        None,
    );
    driving_towards_the_customer(&api).await;
    let (page, _) = api.page_and_view("s-1").await;
    assert!(map_section(&page).contains(
        r#"<a href="https://maps.shop.example/credits" rel="noopener">© Shop maps, data © OpenStreetMap contributors</a>"#
    ));
    let token = api.link("s-1").await["token"].as_str().unwrap().to_owned();
    let policy = api.get(&format!("/t/{token}")).await.policy.unwrap();
    assert!(
        policy.contains("img-src 'self' data: https://maps.shop.example:8443;"),
        "{policy}"
    );
}

/// A form with something to correct comes back inside the page, with the reason
/// next to it and what the customer typed still in it.
#[tokio::test]
async fn a_form_to_correct_keeps_what_the_customer_typed() {
    let api = Api::new();
    api.events(shipped("s-1", "o-1")).await;
    let token = api.link("s-1").await["token"].as_str().unwrap().to_owned();
    let origin = Some("http://127.0.0.1:8080");

    let long = "Ring twice & wait ".repeat(40);
    let reply = api
        .form(
            &format!("/t/{token}/instructions"),
            &format!("instructions={}", long.replace(' ', "+").replace('&', "%26")),
            origin,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let page = reply.text();
    assert!(page.contains("up to 500 characters (these are 719)"), "{page}");
    assert!(
        page.contains("Ring twice &amp; wait Ring twice"),
        "the text is still in the form: {page}"
    );
    assert!(
        page.contains(r##"<a href="#instructions">Please check the form below"##),
        "{page}"
    );

    let reply = api
        .form(
            &format!("/t/{token}/reschedule"),
            "date=2001-01-01&slot=evening",
            origin,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let page = reply.text();
    assert!(page.contains(r#"value="2001-01-01""#), "the day typed: {page}");
    assert!(
        page.contains(r#"<option value="evening" selected>"#),
        "the slot chosen: {page}"
    );
    assert!(api.logged("shipment:s-1", "shipment.rescheduled").await.is_empty());
}

/// Without the customer's address (a carrier that sends none) the map shows the
/// driver and promises no address pin; the status says the stops in words.
#[tokio::test]
async fn without_the_address_the_map_promises_no_pin() {
    let api = Api::new();
    api.events(shipped("s-1", "o-1")).await;
    api.events(vec![
        event(
            "out",
            "shipment.out_for_delivery",
            &at(-HOUR),
            "shipment:s-1",
            json!({"driver": "d-1", "stops_before": 1}),
        ),
        json!({"id": "p-1", "type": "courier.position", "time": at(-60_000_000),
               "subject": "driver:d-1", "data": {"lat": 52.51, "lon": 13.40}}),
    ])
    .await;
    let (page, _) = api.page_and_view("s-1").await;
    let map = map_section(&page);
    assert!(map.contains(r#"<circle id="driver""#), "{map}");
    assert!(!map.contains(r#"<g id="home""#), "{map}");
    assert!(
        map.contains(r#"<span hidden><span class="key home-key"></span>Your address</span>"#),
        "{map}"
    );
    assert!(
        page.contains(r#"<strong id="stops-text">1 stop before yours</strong>"#),
        "{page}"
    );
}
