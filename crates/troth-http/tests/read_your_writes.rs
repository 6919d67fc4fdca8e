//! Ingest answers carry each accepted event's log position; a read given one waits
//! until every projection has passed it, and says so when they have not in time.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{MASTER, TestApi, retail_map};
use serde_json::{Value, json};

fn window(id: &str) -> Value {
    json!({"id": id, "type": "shipment.window_set", "time": "2026-11-23T08:00:00Z", "subject": "shipment:s1",
           "customer": {"id": "ann"}, "data": {"window_start": "2026-11-23T11:00:00Z", "window_end": "2026-11-23T12:00:00Z"}})
}

#[tokio::test]
async fn accepted_items_carry_their_position_and_reads_wait_for_it() {
    let mut api = TestApi::new(Some(retail_map()));
    api.read_wait(Duration::from_millis(200));
    let results = api
        .ingest(json!([window("w1"), window("w1"), {"id": "bad"}, window("w2")]))
        .await;
    let positions: Vec<Option<i64>> = results.iter().map(|r| r["position"].as_i64()).collect();
    // w1 is 1; the promise it made is recorded right after it; w2 comes next.
    assert_eq!(positions[1..3], [None, None], "{results:?}");
    let (first, last) = (positions[0].unwrap(), positions[3].unwrap());
    assert!(first >= 1 && last > first, "{results:?}");

    // By parameter, stripped before the route reads its own parameters.
    let uri = format!("/api/v1/journeys/retail/promises?state=made&min_position={last}");
    let (status, promises) = api.call("GET", &uri, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{promises}");
    // The second window replaced the first: its promise is the one open.
    assert_eq!(promises["promises"].as_array().unwrap().len(), 1, "{promises}");
    assert_eq!(promises["promises"][0]["id"], "delivery_window:w2", "{promises}");
    // By header.
    let request = Request::get("/api/v1/events?subject=shipment:s1")
        .header(header::AUTHORIZATION, format!("Bearer {MASTER}"))
        .header("Troth-Min-Position", last.to_string())
        .body(Body::empty())
        .unwrap();
    let (status, body) = api.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A position nothing has reached: 503 with the positions reached, after the wait.
    let head = api.progress_log().await;
    let uri = format!("/api/v1/events?min_position={}", head + 5);
    let (status, problem) = api.call("GET", &uri, Value::Null).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(problem["code"], "projection_lagging");
    assert_eq!(problem["progress"]["log"], head);
    assert_eq!(problem["progress"]["projectors"][0]["position"], head);

    // A read that waits answers once the log and its projections get there.
    api.read_wait(Duration::from_secs(10));
    let waiting = {
        let uri = format!("/api/v1/events?min_position={}", head + 1);
        let api = &api;
        async move { api.call("GET", &uri, Value::Null).await }
    };
    let (answer, _) = tokio::join!(waiting, api.ingest(json!([window("w3")])));
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);

    for bad in ["-1", "x", "1.5"] {
        let (status, problem) = api
            .call("GET", &format!("/api/v1/events?min_position={bad}"), Value::Null)
            .await;
        assert_eq!(
            (status, problem["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("min_position")),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn readiness_and_metrics_show_each_projectors_position() {
    let api = TestApi::new(None);
    api.ingest(json!([window("w1"), window("w2")])).await;
    let (status, ready) = api.call("GET", "/readyz", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["log"], 2);
    assert_eq!(ready["projectors"][0]["position"], 2);
    assert_eq!(ready["projectors"][0]["lag_events"], 0);
    let (_, metrics) = api.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(metrics.contains("troth_log_position 2\n"), "{metrics}");
    assert!(
        metrics.contains("troth_projector_lag_events{projector=\"projections\"} 0\n"),
        "{metrics}"
    );
    // Two events never put the projections behind enough to hold an append.
    assert!(metrics.contains("troth_append_waits_total 0\n"), "{metrics}");
    // The log's WAL: written to by the commit, and far from its limit.
    assert!(
        metrics.contains("troth_log_wal_restarts_total{outcome=\"done\"} 0\n"),
        "{metrics}"
    );
    let largest: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("troth_log_wal_largest_bytes "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no WAL size in {metrics}"));
    assert!(largest > 0, "{metrics}");
}
