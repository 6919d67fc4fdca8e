//! `GET /api/v1/carriers` and `/ui/carriers`, through the router, on a real store.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use troth_http::AppState;
use troth_store::sqlite::SqliteStore;

const WORST: &str = r#"<b>swift&"post"</b>"#;

fn e(id: &str, event_type: &str, time: &str, shipment: &str, data: Value) -> Value {
    json!({"id": id, "type": event_type, "time": format!("2026-11-23T{time}:00Z"), "subject": format!("shipment:{shipment}"),
           "customer": {"id": "ann"}, "data": data})
}

/// Two carriers: one keeps its window at the first attempt; the other (named with
/// markup) misses one window after a failed attempt and loses a parcel.
fn events() -> Value {
    let created = |s: &str, carrier: &str| {
        e(
            &format!("{s}-c"),
            "shipment.created",
            "07:00",
            s,
            json!({"shipment": s, "order": format!("o-{s}"), "carrier": carrier, "service": "home"}),
        )
    };
    let window = |s: &str, start: &str, end: &str| {
        e(
            &format!("{s}-w"),
            "shipment.window_set",
            "08:00",
            s,
            json!({"window_start": format!("2026-11-23T{start}:00Z"), "window_end": format!("2026-11-23T{end}:00Z")}),
        )
    };
    let out = |s: &str, driver: &str| {
        e(
            &format!("{s}-o"),
            "shipment.out_for_delivery",
            "09:00",
            s,
            json!({"driver": driver}),
        )
    };
    let delivered = |s: &str, time: &str| {
        e(
            &format!("{s}-d"),
            "shipment.delivered",
            time,
            s,
            json!({"proof": {"kind": "handed"}}),
        )
    };
    json!([
        created("s1", "parcelpro"),
        window("s1", "10:00", "11:00"),
        out("s1", "p-1"),
        e("s1-v", "tracking.viewed", "09:10", "s1", json!({"shipment": "s1"})),
        delivered("s1", "10:15"),
        created("s2", WORST),
        window("s2", "10:00", "11:00"),
        out("s2", "w-1"),
        e(
            "s2-f",
            "shipment.attempt_failed",
            "10:30",
            "s2",
            json!({"reason": "nobody home"})
        ),
        delivered("s2", "11:30"),
        created("s3", WORST),
        out("s3", "w-2"),
        e("s3-l", "shipment.lost", "12:00", "s3", json!({})),
    ])
}

async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    key: Option<&str>,
    body: Body,
) -> (StatusCode, String, String) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let response = router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, content_type, String::from_utf8(body.to_vec()).unwrap())
}

async fn seeded(master_key: Option<&str>) -> (tempfile::TempDir, axum::Router) {
    let dir = tempfile::tempdir().unwrap();
    let journey = troth_core::journey::parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
    let store = SqliteStore::open_with_journey(dir.path(), Some(&journey)).unwrap();
    let router = common::settled_app(AppState::new(store, master_key.map(str::to_owned)).with_journey(journey));
    let (status, _, body) = call(
        &router,
        "POST",
        "/api/v1/events",
        master_key,
        Body::from(events().to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (dir, router)
}

#[tokio::test]
async fn the_api_gives_each_carrier_and_driver_exact_figures_worst_first() {
    let (_dir, router) = seeded(None).await;
    let (status, _, body) = call(
        &router,
        "GET",
        "/api/v1/carriers?from=2026-11-23T00:00:00Z&to=2026-11-24T00:00:00Z",
        None,
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let score = |shipments,
                 hit: Value,
                 kept,
                 broken,
                 first: Value,
                 delivered,
                 lost,
                 late,
                 minutes: Value,
                 views,
                 per: Value| {
        json!({"shipments": shipments, "window_hit_rate": hit, "windows_kept": kept, "windows_broken": broken,
               "first_attempt_rate": first, "delivered": delivered, "lost": lost, "late": late,
               "mean_minutes_late": minutes, "tracking_views": views, "tracking_views_per_shipment": per})
    };
    let with = |mut base: Value, key: &str, name: &str, drivers: Option<Value>| {
        base[key] = name.into();
        if let Some(drivers) = drivers {
            base["drivers"] = drivers;
        }
        base
    };
    let w1 = score(1, json!(0.0), 0, 1, json!(0.0), 1, 0, 1, json!(30.0), 0, json!(0.0));
    let w2 = score(1, Value::Null, 0, 0, Value::Null, 0, 1, 0, Value::Null, 0, json!(0.0));
    let p1 = score(1, json!(1.0), 1, 0, json!(1.0), 1, 0, 0, Value::Null, 1, json!(1.0));
    assert_eq!(
        answer,
        json!({
            "from": "2026-11-23T00:00:00Z", "to": "2026-11-24T00:00:00Z",
            "carriers": [
                with(
                    score(2, json!(0.0), 0, 1, json!(0.0), 1, 1, 1, json!(30.0), 0, json!(0.0)),
                    "carrier", WORST,
                    Some(json!([with(w1, "driver", "w-1", None), with(w2, "driver", "w-2", None)])),
                ),
                with(p1.clone(), "carrier", "parcelpro", Some(json!([with(p1, "driver", "p-1", None)]))),
            ]
        })
    );

    // Another day holds nothing.
    let (_, _, body) = call(
        &router,
        "GET",
        "/api/v1/carriers?from=2026-11-24T00:00:00Z",
        None,
        Body::empty(),
    )
    .await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["carriers"], json!([]));
}

#[tokio::test]
async fn bad_parameters_are_named_and_keys_need_the_read_scope() {
    let (_dir, router) = seeded(Some("master")).await;
    for (uri, field) in [
        ("/api/v1/carriers?from=yesterday", "from"),
        ("/api/v1/carriers?to=2026-13-01T00:00:00Z", "to"),
        ("/api/v1/carriers?carrier=x", "carrier"),
    ] {
        let (status, content_type, body) = call(&router, "GET", uri, Some("master"), Body::empty()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["field"],
            field,
            "{uri}: {body}"
        );
    }
    let (status, _, _) = call(&router, "GET", "/api/v1/carriers", None, Body::empty()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let key = |scope: &str| json!({"name": scope, "scopes": [scope]}).to_string();
    for (scope, expect) in [("ingest", StatusCode::FORBIDDEN), ("read", StatusCode::OK)] {
        let (_, _, created) = call(&router, "POST", "/api/v1/keys", Some("master"), Body::from(key(scope))).await;
        let secret = serde_json::from_str::<Value>(&created).unwrap()["key"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, _, body) = call(&router, "GET", "/api/v1/carriers", Some(&secret), Body::empty()).await;
        assert_eq!(status, expect, "{scope}: {body}");
    }
    let (_, _, openapi) = call(&router, "GET", "/openapi.json", None, Body::empty()).await;
    assert!(openapi.contains("/api/v1/carriers"));
}

#[tokio::test]
async fn the_page_shows_each_carrier_worst_first_with_names_escaped() {
    let (_dir, router) = seeded(None).await;
    let (_, _, overview) = call(&router, "GET", "/", None, Body::empty()).await;
    assert!(overview.contains(r#"href="/ui/carriers""#));
    let (status, _, page) = call(
        &router,
        "GET",
        "/ui/carriers?from=2026-11-23&to=2026-11-23",
        None,
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(!page.contains(WORST), "a carrier's name went into the page unescaped");
    let escaped = "&lt;b&gt;swift&amp;&quot;post&quot;&lt;/b&gt;";
    let worst = page.find(&format!(r#"<section class="carrier worst" data-carrier="{escaped}">"#));
    let parcelpro = page.find(r#"<section class="carrier" data-carrier="parcelpro">"#);
    assert!(worst.is_some() && parcelpro.is_some() && worst < parcelpro, "{page}");
    // w-1 holds the carrier's only window verdict: they are the carrier's figure,
    // not behind it, so no row is highlighted.
    assert!(
        page.contains(r#"<tr class="driver"><th scope="row">Driver w-1</th>"#) && !page.contains("driver worst"),
        "{page}"
    );
    assert!(page.contains("<dt>Late deliveries</dt>"), "the figures are explained");
    assert!(page.contains("Driver p-1"));
    // The lost parcel links to the staff view of its shipment, under its carrier.
    let lost = page.find(r#"<p class="lost">Lost: <a href="/ui/shipments/s3">s3</a></p>"#);
    assert!(lost.is_some() && worst < lost && lost < parcelpro, "{page}");
    let (status, _, _) = call(&router, "GET", "/ui/carriers?from=soon", None, Body::empty()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
