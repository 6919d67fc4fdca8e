//! The HTTP API through its router, without a socket.

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use troth_http::AppState;
use troth_store::sqlite::SqliteStore;

struct Api {
    _dir: tempfile::TempDir,
    router: Router,
}

impl Api {
    fn new(master_key: Option<&str>) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        Api {
            _dir: dir,
            router: common::settled_app(AppState::new(store, master_key.map(str::to_owned))),
        }
    }

    /// An open API following the built-in retail journey map.
    fn retail() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let journey = troth_core::journey::parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
        let store = SqliteStore::open_with_journey(dir.path(), Some(&journey)).unwrap();
        Api {
            _dir: dir,
            router: common::settled_app(AppState::new(store, None).with_journey(journey)),
        }
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        key: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, String, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, content_type, json)
    }

    async fn post(&self, uri: &str, body: Value) -> Value {
        let (status, _, json) = self.call("POST", uri, None, body.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json
    }
}

fn page_view(id: &str) -> Value {
    json!({"id": id, "type": "page.viewed", "time": "2026-11-23T09:00:00Z", "customer": {"id": "ann"}, "data": {"page": "/"}})
}

#[tokio::test]
async fn good_items_are_kept_when_others_fail() {
    let api = Api::new(None);
    let bad_nps = json!({"id": "e2", "type": "survey.answered", "time": "2026-11-23T09:00:00Z", "data": {"survey": "s", "nps": 12}});
    let answer = api
        .post(
            "/api/v1/events",
            json!([page_view("e1"), bad_nps, page_view("e1"), 42, page_view("e3")]),
        )
        .await;
    assert_eq!(
        answer,
        json!({"results": [
            {"id": "e1", "status": "accepted", "position": 1},
            {"id": "e2", "status": "rejected", "error": {"field": "data.nps", "message": "must be between 0 and 10, not 12"}},
            {"id": "e1", "status": "duplicate"},
            {"id": null, "status": "rejected", "error": {"field": "event", "message": "must be a JSON object, not a number"}},
            {"id": "e3", "status": "accepted", "position": 2},
        ]})
    );
    let (_, _, listed) = api.call("GET", "/api/v1/events", None, Body::empty()).await;
    let ids: Vec<&str> = listed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e1", "e3"]);
    // A single object is answered the same way.
    assert_eq!(
        api.post("/api/v1/events", page_view("e1")).await,
        json!({"results": [{"id": "e1", "status": "duplicate"}]})
    );
}

#[tokio::test]
async fn bodies_that_are_not_events_are_problems() {
    let api = Api::new(None);
    for (body, code) in [
        ("{not json", "invalid_json"),
        ("\"hello\"", "invalid_body"),
        ("", "invalid_json"),
    ] {
        let (status, content_type, problem) = api.call("POST", "/api/v1/events", None, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(problem["code"], code, "{problem}");
        assert_eq!(problem["status"], 400);
    }
    let too_many: Vec<Value> = (0..1001).map(|i| page_view(&format!("e{i}"))).collect();
    let (status, _, problem) = api
        .call("POST", "/api/v1/events", None, Value::Array(too_many).to_string())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["code"], "too_many_events");
}

#[tokio::test]
async fn events_are_served_as_sent_with_seq_and_received_at() {
    let api = Api::new(None);
    let sent = json!({"id": "e1", "type": "x.custom", "time": "2026-11-23T09:00:00Z", "data": {"k": [1, 2]}});
    api.post("/api/v1/events", sent.clone()).await;
    let (_, _, listed) = api
        .call("GET", "/api/v1/events?type=x.custom", None, Body::empty())
        .await;
    let mut got = listed["events"][0].clone();
    assert_eq!(got["seq"], 1);
    assert!(got["received_at"].as_str().unwrap().ends_with('Z'));
    let object = got.as_object_mut().unwrap();
    object.remove("seq");
    object.remove("received_at");
    assert_eq!(got, sent);
    assert_eq!(listed["next"], Value::Null);
}

#[tokio::test]
async fn event_filters_and_pages() {
    let api = Api::new(None);
    let mut events = Vec::new();
    for i in 0..25 {
        events.push(json!({
            "id": format!("e{i}"), "type": if i % 2 == 0 { "page.viewed" } else { "search.performed" },
            "time": format!("2026-11-23T09:{i:02}:00Z"),
            "customer": {"id": format!("c{}", i % 3)}, "subject": format!("order:o{}", i % 4),
            "data": {"page": "/", "query": "tyres"},
        }));
    }
    api.post("/api/v1/events", Value::Array(events)).await;
    let ids = |v: &Value| {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let (_, _, by_customer) = api
        .call(
            "GET",
            "/api/v1/events?customer=c1&type=page.viewed",
            None,
            Body::empty(),
        )
        .await;
    assert_eq!(ids(&by_customer), ["e4", "e10", "e16", "e22"]);
    let (_, _, by_time) = api
        .call(
            "GET",
            "/api/v1/events?subject=order:o1&from=2026-11-23T09:05:00Z&to=2026-11-23T09:17:00Z",
            None,
            Body::empty(),
        )
        .await;
    assert_eq!(ids(&by_time), ["e5", "e9", "e13"]);
    let (_, _, first) = api.call("GET", "/api/v1/events?limit=10", None, Body::empty()).await;
    assert_eq!(first["next"], "10");
    let (_, _, second) = api
        .call("GET", "/api/v1/events?limit=10&after=10", None, Body::empty())
        .await;
    assert_eq!(ids(&second)[0], "e10");
    let (status, _, problem) = api.call("GET", "/api/v1/events?limit=0", None, Body::empty()).await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("limit"))
    );
    let (_, _, problem) = api
        .call("GET", "/api/v1/events?from=yesterday", None, Body::empty())
        .await;
    assert_eq!(problem["field"], "from");
    let (_, _, problem) = api.call("GET", "/api/v1/events?custmer=c1", None, Body::empty()).await;
    assert_eq!(problem["field"], "custmer");
}

#[tokio::test]
async fn ndjson_answers_per_line_with_line_numbers() {
    let api = Api::new(None);
    let body = format!(
        "{}\n\n{{broken\n{}\n{}\n",
        page_view("e1"),
        json!({"id": "e2", "type": "page.viewed", "time": "noon", "data": {"page": "/"}}),
        page_view("e3")
    );
    let (status, _, answer) = api.call("POST", "/api/v1/events/ndjson", None, body).await;
    assert_eq!(status, StatusCode::OK);
    let results = answer["results"].as_array().unwrap();
    let summary: Vec<(u64, &str, &str)> = results
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["status"].as_str().unwrap(),
                r["error"]["field"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "accepted", ""),
            (3, "rejected", "event"),
            (4, "rejected", "time"),
            (5, "accepted", "")
        ]
    );
    assert_eq!(results[2]["id"], "e2");
}

#[tokio::test]
async fn customer_profiles() {
    let api = Api::new(None);
    api.post(
        "/api/v1/events",
        json!([
            {"id": "e1", "type": "customer.identified", "time": "2026-11-20T09:00:00Z", "customer": {"id": "ann"},
             "data": {"traits": {"name": "Ann"}, "emails": ["ann@example.org"]}},
            {"id": "e2", "type": "page.viewed", "time": "2026-11-23T09:00:00Z", "customer": {"email": "ANN@example.org"}, "data": {"page": "/"}},
        ]),
    )
    .await;
    let (status, _, profile) = api.call("GET", "/api/v1/customers/ann", None, Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(profile["traits"], json!({"name": "Ann"}));
    assert_eq!(
        profile["identities"],
        json!([{"kind": "email", "value": "ann@example.org"}, {"kind": "id", "value": "ann"}])
    );
    assert_eq!(
        profile["event_counts"],
        json!({"customer.identified": 1, "page.viewed": 1})
    );
    assert_eq!(profile["first_seen"], "2026-11-20T09:00:00.000000Z");
    assert_eq!(profile["last_seen"], "2026-11-23T09:00:00.000000Z");
    let id = profile["id"].as_str().unwrap();
    let (status, _, same) = api
        .call("GET", &format!("/api/v1/customers/{id}"), None, Body::empty())
        .await;
    assert_eq!((status, &same), (StatusCode::OK, &profile));
    let (status, content_type, problem) = api.call("GET", "/api/v1/customers/%FF", None, Body::empty()).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::BAD_REQUEST, "application/problem+json"),
        "{problem}"
    );
    let (status, content_type, _) = api.call("GET", "/api/v1/customers/nobody", None, Body::empty()).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );
}

#[tokio::test]
async fn with_a_master_key_every_api_route_needs_a_scoped_key() {
    let api = Api::new(Some("master-secret"));
    let (status, _, problem) = api.call("GET", "/api/v1/events", None, Body::empty()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_authorization"))
    );
    let (status, _, _) = api.call("GET", "/api/v1/events", Some("guess"), Body::empty()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, created) = api
        .call(
            "POST",
            "/api/v1/keys",
            Some("master-secret"),
            json!({"name": "pos", "scopes": ["ingest"]}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let ingest_key = created["key"].as_str().unwrap().to_owned();
    let (status, _, answer) = api
        .call("POST", "/api/v1/events", Some(&ingest_key), page_view("e1").to_string())
        .await;
    assert_eq!(
        (status, answer["results"][0]["status"].as_str()),
        (StatusCode::OK, Some("accepted"))
    );
    let (status, _, problem) = api
        .call("GET", "/api/v1/events", Some(&ingest_key), Body::empty())
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, _, problem) = api
        .call(
            "POST",
            "/api/v1/keys",
            Some(&ingest_key),
            json!({"scopes": ["admin"]}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    let (_, _, problem) = api
        .call(
            "POST",
            "/api/v1/keys",
            Some("master-secret"),
            json!({"scopes": ["root"]}).to_string(),
        )
        .await;
    assert_eq!(problem["field"], "scopes[0]");
    let (_, _, listed) = api
        .call("GET", "/api/v1/keys", Some("master-secret"), Body::empty())
        .await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
    assert!(listed["keys"][0].get("key").is_none(), "secrets are never listed");
    let uid = created["uid"].as_str().unwrap();
    let (status, _, _) = api
        .call(
            "DELETE",
            &format!("/api/v1/keys/{uid}"),
            Some("master-secret"),
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = api
        .call("POST", "/api/v1/events", Some(&ingest_key), page_view("e2").to_string())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Operations endpoints stay open.
    let (status, _, _) = api.call("GET", "/healthz", None, Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn openapi_and_metrics() {
    let api = Api::new(None);
    let (status, _, spec) = api.call("GET", "/openapi.json", None, Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/v1/events",
        "/api/v1/events/ndjson",
        "/api/v1/customers/{id}",
        "/api/v1/keys",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} missing from the spec");
    }
    // Every API read lists the position it can wait for, as query and header.
    for (path, item) in spec["paths"].as_object().unwrap() {
        let Some(get) = item.get("get").filter(|_| path.starts_with("/api/")) else {
            continue;
        };
        let named: Vec<(&str, &str)> = get["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()))
            .collect();
        assert!(named.contains(&("min_position", "query")), "{path}: {named:?}");
        assert!(named.contains(&("Troth-Min-Position", "header")), "{path}: {named:?}");
    }
    api.post("/api/v1/events", json!([page_view("e1"), page_view("e1"), {"id": "x"}]))
        .await;
    let response = api
        .router
        .clone()
        .oneshot(Request::builder().uri("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    for line in [
        "troth_events_total{status=\"accepted\"} 1",
        "troth_events_total{status=\"duplicate\"} 1",
        "troth_events_total{status=\"rejected\"} 1",
        "troth_http_requests_total{route=\"/api/v1/events\",status=\"200\"} 1",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
}

#[tokio::test]
async fn promises_along_the_journey() {
    let api = Api::retail();
    let window = |id: &str, shipment: &str| {
        json!({"id": id, "type": "shipment.window_set", "time": "2026-11-23T08:00:00Z", "subject": format!("shipment:{shipment}"),
               "customer": {"id": "ann"}, "data": {"window_start": "2026-11-23T11:00:00Z", "window_end": "2026-11-23T12:00:00Z"}})
    };
    let callback = json!({"id": "cb", "type": "callback.promised", "time": "2026-11-23T09:00:00Z", "subject": "case:k1",
                          "customer": {"id": "bob"}, "data": {"due": "2026-11-23T10:00:00Z"}});
    let delivered = json!({"id": "d1", "type": "shipment.delivered", "time": "2026-11-23T11:30:00Z", "subject": "shipment:s1",
                           "data": {"proof": {"kind": "photo", "photo": "pod/s1.jpg"}}});
    api.post(
        "/api/v1/events",
        json!([window("w1", "s1"), window("w2", "s2"), callback, delivered]),
    )
    .await;

    let ids = |v: &Value| {
        v["promises"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let (status, _, all) = api
        .call("GET", "/api/v1/journeys/retail/promises", None, Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(
        ids(&all),
        ["callback:cb", "delivery_window:w1", "delivery_window:w2"],
        "by due time"
    );
    let (_, _, kept) = api
        .call(
            "GET",
            "/api/v1/journeys/retail/promises?state=kept",
            None,
            Body::empty(),
        )
        .await;
    assert_eq!(ids(&kept), ["delivery_window:w1"]);
    assert_eq!(kept["promises"][0]["settled_at"], "2026-11-23T11:30:00.000000Z");
    assert_eq!(kept["promises"][0]["customer"], json!({"id": "ann"}));
    let (_, _, logistics) = api
        .call(
            "GET",
            "/api/v1/journeys/retail/promises?owner=logistics",
            None,
            Body::empty(),
        )
        .await;
    assert_eq!(ids(&logistics), ["delivery_window:w1", "delivery_window:w2"]);
    let (_, _, service) = api
        .call(
            "GET",
            "/api/v1/journeys/retail/promises?touchpoint=callback",
            None,
            Body::empty(),
        )
        .await;
    assert_eq!(ids(&service), ["callback:cb"]);
    let (_, _, bobs) = api
        .call(
            "GET",
            "/api/v1/journeys/retail/promises?customer=bob",
            None,
            Body::empty(),
        )
        .await;
    assert_eq!(ids(&bobs), ["callback:cb"]);
    let (_, _, first) = api
        .call("GET", "/api/v1/journeys/retail/promises?limit=2", None, Body::empty())
        .await;
    let next = first["next"].as_str().unwrap();
    let (_, _, rest) = api
        .call(
            "GET",
            &format!("/api/v1/journeys/retail/promises?limit=2&after={next}"),
            None,
            Body::empty(),
        )
        .await;
    assert_eq!(ids(&rest), ["delivery_window:w2"]);
    let (status, _, problem) = api
        .call(
            "GET",
            "/api/v1/journeys/retail/promises?state=late",
            None,
            Body::empty(),
        )
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("state"))
    );
    let (status, _, _) = api
        .call("GET", "/api/v1/journeys/other/promises", None, Body::empty())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn weakest_links_rank_touchpoints_below_their_targets() {
    let api = Api::retail();
    // Ten payments, six of them failed; ten store visits, all found.
    let mut events = Vec::new();
    for i in 0..10 {
        let kind = if i < 6 { "payment.failed" } else { "payment.succeeded" };
        events.push(
            json!({"id": format!("p{i}"), "type": kind, "time": "2026-11-20T10:00:00Z",
                           "data": {"method": "card", "amount": 1000, "currency": "EUR"}}),
        );
        events.push(
            json!({"id": format!("v{i}"), "type": "store.visited", "time": "2026-11-20T11:00:00Z",
                           "data": {"store": "st-1", "sku": "tyre", "found": true}}),
        );
    }
    api.post("/api/v1/events", Value::Array(events)).await;

    let (status, _, all) = api
        .call("GET", "/api/v1/journeys/retail/weakest-links", None, Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let links = all["links"].as_array().unwrap();
    assert_eq!(links.len(), 2, "only touchpoints with something measured: {all}");
    let pay = &links[0];
    assert_eq!(pay["touchpoint"], "pay");
    assert_eq!(pay["stage"], "fmot");
    assert_eq!(pay["owners"], json!(["payments", "it"]));
    assert_eq!(pay["exposure"], 10);
    assert_eq!(pay["failure_rate"], 0.6);
    assert!(pay["score"].as_f64().unwrap() > 0.0);
    // The only method measured carries the shortfall, and is named for it.
    assert_eq!(
        pay["why"],
        "60% of 10 outcomes failed (target: at most 10%); worst: method:card with 60% of 10 outcomes failed, the only one measured here"
    );
    assert_eq!(links[1]["touchpoint"], "stock");
    assert_eq!(links[1]["score"], 0.0);

    let (_, _, zmot) = api
        .call(
            "GET",
            "/api/v1/journeys/retail/weakest-links?stage=zmot&limit=1",
            None,
            Body::empty(),
        )
        .await;
    assert_eq!(zmot["links"].as_array().unwrap().len(), 1);
    assert_eq!(zmot["links"][0]["touchpoint"], "stock");
    let (_, _, before) = api
        .call(
            "GET",
            "/api/v1/journeys/retail/weakest-links?to=2026-11-19T00:00:00Z",
            None,
            Body::empty(),
        )
        .await;
    assert_eq!(before["links"], json!([]));

    for (query, field) in [
        ("stage=nowhere", "stage"),
        ("limit=0", "limit"),
        ("colour=red", "colour"),
    ] {
        let (status, content_type, problem) = api
            .call(
                "GET",
                &format!("/api/v1/journeys/retail/weakest-links?{query}"),
                None,
                Body::empty(),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(problem["field"], field, "{problem}");
    }
}

#[tokio::test]
async fn the_chasm_compares_what_was_expected_with_what_was_delivered() {
    let api = Api::retail();
    let answer = |id: &str, who: &str, survey: &str, nps: u8| {
        json!({"id": id, "type": "survey.answered", "time": "2026-11-20T10:00:00Z", "customer": {"id": who},
               "data": {"survey": survey, "nps": nps}})
    };
    api.post(
        "/api/v1/events",
        json!([
            answer("a1", "ann", "checkout", 10),
            answer("a2", "ann", "post-delivery", 1),
            answer("b1", "bob", "checkout", 8),
            answer("b2", "bob", "post-delivery", 7),
        ]),
    )
    .await;
    let (status, _, chasm) = api
        .call("GET", "/api/v1/journeys/retail/chasm", None, Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK, "{chasm}");
    let stages = chasm["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 4);
    let smot = &stages[2];
    assert_eq!(smot["stage"], "smot");
    assert_eq!(smot["expected"], 0.9);
    assert_eq!(smot["delivered"], 0.4);
    assert_eq!(smot["gap"], 0.5);
    assert_eq!(chasm["cohort"]["answered_both"], 2);
    assert_eq!(chasm["cohort"]["count"], 1);
    let (_, _, ann) = api.call("GET", "/api/v1/customers/ann", None, Body::empty()).await;
    assert_eq!(chasm["cohort"]["customers"], json!([ann["id"]]));

    let (_, _, later) = api
        .call(
            "GET",
            "/api/v1/journeys/retail/chasm?from=2026-11-21T00:00:00Z",
            None,
            Body::empty(),
        )
        .await;
    assert_eq!(later["stages"][2]["answers"], 0);
    assert_eq!(later["cohort"]["count"], 0);
}

#[tokio::test]
async fn the_map_against_the_data_shows_paths_drop_off_silence_and_unmapped_types() {
    let api = Api::retail();
    let search = |id: &str, email: &str, minute: u32| {
        json!({"id": id, "type": "search.performed", "time": format!("2026-11-20T10:{minute:02}:00Z"),
               "customer": {"email": email}, "data": {"query": "tyres"}})
    };
    let shown = |id: &str, email: &str, minute: u32| {
        json!({"id": id, "type": "availability.shown", "time": format!("2026-11-20T10:{minute:02}:00Z"),
               "customer": {"email": email}, "data": {"sku": "tyre", "claim": "in_stock"}})
    };
    api.post(
        "/api/v1/events",
        json!([
            // Ann searches, sees the stock, and checks out: the map's path.
            search("a1", "ann@example.com", 1),
            shown("a2", "ann@example.com", 2),
            {"id": "a3", "type": "checkout.started", "time": "2026-11-20T10:03:00Z",
             "customer": {"email": "ann@example.com"}, "subject": "order:o-1", "data": {}},
            // Bob searches and goes no further.
            search("b1", "bob@example.com", 4),
            // Cy sees the stock first, then searches: a move the map does not link.
            shown("c1", "cy@example.com", 5),
            search("c2", "cy@example.com", 6),
            // A driver's position belongs to no touchpoint; nor does an extension event.
            {"id": "d1", "type": "courier.position", "time": "2026-11-20T10:07:00Z",
             "subject": "driver:d-1", "data": {"lat": 48.8, "lon": 2.3}},
            {"id": "x1", "type": "x.loyalty.scanned", "time": "2026-11-20T10:08:00Z",
             "customer": {"email": "ann@example.com"}, "data": {}},
            // An agent's note and goodwill gesture are troth's records of the agent's
            // work, lived by the customer through their case: no moment the map misses.
            {"id": "n1", "type": "note.added", "time": "2026-11-20T10:09:00Z", "source": "agent:key_1",
             "customer": {"email": "ann@example.com"}, "data": {"text": "Called back", "agent": "key_1"}},
            {"id": "g1", "type": "goodwill.given", "time": "2026-11-20T10:10:00Z", "source": "agent:key_1",
             "customer": {"email": "ann@example.com"},
             "data": {"kind": "voucher", "amount": 2000, "currency": "EUR", "reason": "late", "agent": "key_1"}},
        ]),
    )
    .await;

    let (status, _, flow) = api
        .call("GET", "/api/v1/journeys/retail/flow", None, Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK, "{flow}");
    assert_eq!(flow["customers"], 3, "{flow}");
    assert_eq!(flow["truncated"], false);
    let discover = flow["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "zmot")
        .unwrap();
    assert_eq!(discover["customers"], 3);
    let paths: Vec<(Value, u64)> = discover["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["touchpoints"].clone(), p["customers"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        paths,
        [
            (json!(["find"]), 1),
            (json!(["find", "stock"]), 1),
            (json!(["stock", "find"]), 1)
        ]
    );
    let link = |from: &str, to: &str| {
        flow["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["from"] == from && l["to"] == to)
            .unwrap_or_else(|| panic!("the map links {from} to {to}: {flow}"))
            .clone()
    };
    let find_stock = link("find", "stock");
    assert_eq!(
        (find_stock["reached"].as_u64(), find_stock["went_on"].as_u64()),
        (Some(3), Some(1))
    );
    let stock_pay = link("stock", "pay");
    assert_eq!(
        (stock_pay["reached"].as_u64(), stock_pay["went_on"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(stock_pay["drop_off"], 0.5);
    assert_eq!(link("delivery", "use")["drop_off"], Value::Null);
    assert_eq!(
        flow["off_map"],
        json!([{"from": "stock", "to": "find", "customers": 1}])
    );
    let silent = flow["silent"].as_array().unwrap();
    assert!(
        silent.contains(&json!("delivery")) && !silent.contains(&json!("find")),
        "{flow}"
    );
    assert_eq!(
        flow["unmapped"],
        json!([
            {"event_type": "courier.position", "events": 1, "catalogue": true},
            {"event_type": "x.loyalty.scanned", "events": 1, "catalogue": false}
        ])
    );

    let (_, _, later) = api
        .call(
            "GET",
            "/api/v1/journeys/retail/flow?from=2026-11-21T00:00:00Z",
            None,
            Body::empty(),
        )
        .await;
    assert_eq!(later["customers"], 0, "{later}");
    let (status, content_type, problem) = api
        .call("GET", "/api/v1/journeys/retail/flow?stage=zmot", None, Body::empty())
        .await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::BAD_REQUEST, "application/problem+json")
    );
    assert_eq!(problem["field"], "stage");
}
