//! Input meant to hurt: far-future instants, and a bug that panics while one event
//! is applied. Neither may stop the store: the event is refused with its reason and
//! everything else goes on.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{TestApi, retail_map};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn case_opened(id: &str, time: &str) -> Value {
    json!({"id": id, "type": "case.opened", "time": time, "customer": {"id": "c"}, "subject": format!("case:{id}"),
           "data": {"case": id, "category": "other", "team": "support"}})
}

fn page_view(id: &str) -> Value {
    json!({"id": id, "type": "page.viewed", "time": "2026-11-23T09:00:00Z", "customer": {"id": "ann"}, "data": {"page": "/"}})
}

async fn stored_ids(api: &TestApi) -> Vec<String> {
    let (status, page) = api.call("GET", "/api/v1/events?limit=1000", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn far_future_instants_are_refused_by_field_and_the_store_keeps_writing() {
    let api = TestApi::new(Some(retail_map()));
    let handed_over = json!({"id": "h", "type": "shipment.handed_over", "time": "9999-12-31T23:59:00Z",
        "subject": "shipment:s1", "customer": {"id": "c"}, "data": {"shipment": "s1", "carrier": "swiftpost"}});
    let window = json!({"id": "w", "type": "shipment.window_set", "time": "2026-11-23T08:00:00Z",
        "subject": "shipment:s1", "customer": {"id": "c"},
        "data": {"window_start": "2026-11-23T11:00:00Z", "window_end": "9999-12-31T23:59:00Z"}});
    // Each more than once: a client that retries must not bring the store down either.
    for _ in 0..2 {
        let results = api
            .ingest(json!([case_opened("k1", "9999-12-31T23:59:00Z"), handed_over, window]))
            .await;
        let errors: Vec<(&str, &str, &str)> = results
            .iter()
            .map(|r| {
                (
                    r["status"].as_str().unwrap(),
                    r["error"]["field"].as_str().unwrap(),
                    r["error"]["message"].as_str().unwrap(),
                )
            })
            .collect();
        let range = "must be between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z, not \"9999-12-31T23:59:00Z\"";
        assert_eq!(
            errors,
            [
                ("rejected", "time", range),
                ("rejected", "time", range),
                ("rejected", "data.window_end", range)
            ]
        );
    }
    // The last instant accepted makes a promise whose due time would fall past the
    // range: it is capped there, stored, listed and printed.
    let results = api
        .ingest(json!([case_opened("k2", "2199-12-31T23:59:00Z"), page_view("p1")]))
        .await;
    assert!(results.iter().all(|r| r["status"] == "accepted"), "{results:?}");
    let (status, promises) = api.call("GET", "/api/v1/journeys/retail/promises", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{promises}");
    let due = promises["promises"][0]["due"].as_str().unwrap();
    assert_eq!(due, "2199-12-31T23:59:59.999999Z", "{promises}");
    // The clock runs past it without stopping anything.
    api.store
        .tick(troth_core::Timestamp::LATEST.plus_us(10 * 86_400_000_000))
        .await
        .unwrap();
    assert_eq!(api.ingest(json!([page_view("p2")])).await[0]["status"], "accepted");
    assert_eq!(
        stored_ids(&api).await.iter().filter(|id| id.starts_with('p')).count(),
        2
    );
}

#[tokio::test]
async fn an_osmand_report_from_the_far_future_is_refused_by_name() {
    let api = TestApi::new(None);
    let (status, device) = api.call("POST", "/api/v1/drivers/d-1/devices", Value::Null).await;
    assert_eq!(status, StatusCode::CREATED, "{device}");
    let device = device["device_id"].as_str().unwrap().to_owned();
    for timestamp in ["9000000000000000", "9223372036854775807", "-62135596800"] {
        let uri = format!("/osmand?id={device}&lat=52.5&lon=13.4&timestamp={timestamp}");
        let (status, body) = api.send(Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{timestamp}: {body}");
        assert!(body.contains("\"field\":\"timestamp\""), "{body}");
    }
    let uri = format!("/osmand?id={device}&lat=52.5&lon=13.4");
    let (status, body) = api.send(Request::get(uri).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "the handler goes on: {body}");
}

/// A bug that panics while one event is projected costs that event alone: it is
/// refused with the reason, the operator finds it in the quarantine, and the
/// events before and after it, in the same request and in later ones, are stored.
#[tokio::test]
async fn a_panic_while_projecting_one_event_costs_that_projection_alone() {
    let api = TestApi::new(Some(retail_map()));
    api.store.set_fault(Some(Arc::new(|event: &troth_core::ValidEvent| {
        if event.id.starts_with("boom") {
            panic!("a projection bug, injected");
        }
    })));
    let results = api
        .ingest(json!([
            page_view("a"),
            page_view("boom"),
            page_view("b"),
            case_opened("k3", "2026-11-23T09:00:00Z")
        ]))
        .await;
    // The log takes every valid event: projecting follows the acknowledgement.
    let statuses: Vec<&str> = results.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["accepted"; 4]);

    // Many requests at once share a projection batch; one bad event still costs only itself.
    let many = (0..20).map(|i| {
        let id = if i == 7 {
            "boom-again".to_owned()
        } else {
            format!("m{i}")
        };
        let api = &api;
        async move { api.ingest(json!([page_view(&id)])).await }
    });
    let answers = futures_util::future::join_all(many).await;
    assert!(answers.iter().all(|r| r[0]["status"] == "accepted"), "{answers:?}");

    let (status, quarantine) = api.call("GET", "/api/v1/quarantine", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{quarantine}");
    let listed = quarantine["events"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{quarantine}");
    assert_eq!(listed[1]["event_id"], "boom");
    assert_eq!(listed[1]["stage"], "projection");
    assert_eq!(listed[1]["type"], "page.viewed");
    assert_eq!(listed[1]["body"]["customer"]["id"], "ann");
    assert!(listed[1]["reason"].as_str().unwrap().contains("injected"));
    assert_eq!(listed[0]["event_id"], "boom-again");

    // The log keeps them; every other event is projected (the case made its two
    // promises: a first response and a resolution).
    let ids = stored_ids(&api).await;
    for id in ["a", "boom", "b", "k3", "m0", "m19", "boom-again"] {
        assert!(ids.contains(&id.to_owned()), "{id} missing from {ids:?}");
    }
    let (_, promises) = api.call("GET", "/api/v1/journeys/retail/promises", Value::Null).await;
    assert_eq!(promises["promises"].as_array().unwrap().len(), 2, "{promises}");
    let (_, ready) = api.call("GET", "/readyz", Value::Null).await;
    assert_eq!(ready["projectors"][0]["lag_events"], 0, "{ready}");

    // Once the bug is gone, a replay projects what was skipped.
    api.store.set_fault(None);
    let report = api.store.replay(true, &mut |_| {}).unwrap();
    assert_eq!(report.differences["event_type_counts"], 2, "{report:?}");
    assert!(report.written);
    assert!(api.store.replay(false, &mut |_| {}).unwrap().matches());
}

/// The promise clock looks at every due promise each second: one whose change
/// fails would stop it for all. It is taken off the clock instead, in the quarantine.
#[tokio::test]
async fn a_promise_whose_change_panics_leaves_the_clock_running() {
    let api = TestApi::new(Some(retail_map()));
    let results = api
        .ingest(json!([
            case_opened("k8", "2026-11-23T09:00:00Z"),
            case_opened("k9", "2026-11-23T09:00:00Z")
        ]))
        .await;
    assert!(results.iter().all(|r| r["status"] == "accepted"), "{results:?}");
    api.store.set_fault(Some(Arc::new(|event: &troth_core::ValidEvent| {
        if event.event_type == "promise.broken" && event.raw.contains("k9") {
            panic!("a clock bug, injected");
        }
    })));
    let later = troth_core::Timestamp::parse("2026-12-31T00:00:00Z").unwrap();
    assert_eq!(api.store.tick(later).await.unwrap(), 2, "k8's two promises broke");
    assert_eq!(api.store.tick(later).await.unwrap(), 0, "k9's is off the clock");
    let (_, quarantine) = api.call("GET", "/api/v1/quarantine", Value::Null).await;
    assert_eq!(quarantine["events"][0]["stage"], "clock", "{quarantine}");
    assert!(
        quarantine["events"][0]["event_id"].as_str().unwrap().contains("k9"),
        "{quarantine}"
    );
    let (_, promises) = api
        .call("GET", "/api/v1/journeys/retail/promises?state=broken", Value::Null)
        .await;
    assert_eq!(promises["promises"].as_array().unwrap().len(), 2, "{promises}");
    assert_eq!(api.ingest(json!([page_view("after")])).await[0]["status"], "accepted");
}

/// A body that counts the bytes the server pulled from it: `total` bytes in
/// 64 KiB chunks, produced only as they are read.
fn counted_body(total: usize, pulled: Arc<std::sync::atomic::AtomicUsize>) -> Body {
    let chunk = bytes::Bytes::from(vec![b'a'; 64 * 1024]);
    let chunks = total / chunk.len();
    let stream = futures_util::stream::iter(0..chunks).map(move |_| {
        pulled.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
        Ok::<_, std::io::Error>(chunk.clone())
    });
    Body::from_stream(stream)
}

#[tokio::test]
async fn fifty_megabytes_are_refused_while_reading() {
    let api = TestApi::new(None);
    const FIFTY_MB: usize = 50 * 1024 * 1024;
    for (path, content_type, page) in [
        ("/login", "application/x-www-form-urlencoded", true),
        ("/t/sometoken/instructions", "application/x-www-form-urlencoded", true),
        ("/osmand", "application/x-www-form-urlencoded", false),
        ("/api/v1/events", "application/json", false),
    ] {
        // Declared up front: refused before a byte of the body is read.
        let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let request = Request::post(path)
            .header("content-type", content_type)
            .header("host", "127.0.0.1:8080")
            .header("origin", "http://127.0.0.1:8080")
            .header("content-length", FIFTY_MB.to_string())
            .header("authorization", format!("Bearer {}", common::MASTER))
            .body(counted_body(FIFTY_MB, pulled.clone()))
            .unwrap();
        let (status, body) = api.send(request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {body}");
        assert!(
            pulled.load(std::sync::atomic::Ordering::SeqCst) <= 64 * 1024,
            "{path} read the body"
        );
        if page {
            assert!(body.starts_with("<!doctype html>"), "{path}: {body}");
        } else {
            assert!(body.contains("\"code\":\"payload_too_large\""), "{path}: {body}");
        }
        // Sent without a length: cut off once over the limit, not read to the end.
        let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let request = Request::post(path)
            .header("content-type", content_type)
            .header("host", "127.0.0.1:8080")
            .header("origin", "http://127.0.0.1:8080")
            .header("authorization", format!("Bearer {}", common::MASTER))
            .body(counted_body(FIFTY_MB, pulled.clone()))
            .unwrap();
        let (status, _) = api.send(request).await;
        assert!(status.is_client_error(), "{path}: {status}");
        let read = pulled.load(std::sync::atomic::Ordering::SeqCst);
        assert!(read <= 5 * 1024 * 1024, "{path} read {read} bytes of a chunked body");
    }
}

#[tokio::test]
async fn rate_limits_answer_429_and_recover() {
    let mut api = TestApi::new(None);
    api.limits(troth_http::limits::Limits {
        login_per_minute: 2,
        osmand_per_second: 2,
        ..Default::default()
    });
    let login = || {
        Request::post("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("host", "127.0.0.1:8080")
            .header("origin", "http://127.0.0.1:8080")
            .body(Body::from("key=nope"))
            .unwrap()
    };
    for _ in 0..2 {
        let (status, _) = api.send(login()).await;
        assert_ne!(status, StatusCode::TOO_MANY_REQUESTS);
    }
    let (status, body) = api.send(login()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body.contains("try again in"), "{body}");

    let osmand = || {
        Request::get("/osmand?id=unknown&lat=1&lon=2")
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..2 {
        assert_ne!(api.send(osmand()).await.0, StatusCode::TOO_MANY_REQUESTS);
    }
    let response = api.router.clone().oneshot(osmand()).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    // Two a second: after half a second one more is allowed.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_ne!(api.send(osmand()).await.0, StatusCode::TOO_MANY_REQUESTS);
}

/// A web page the operator or a customer visits must not be able to use their
/// browser against troth.
#[tokio::test]
async fn browsers_cannot_be_turned_against_troth() {
    let keyed = TestApi::new(None);
    let post = |path: &str, content_type: &str, headers: &[(&str, &str)], body: &str| {
        let mut request = Request::post(path)
            .header("authorization", format!("Bearer {}", common::MASTER))
            .header("content-type", content_type)
            .header("content-length", body.len().to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(Body::from(body.to_owned())).unwrap()
    };
    let event = page_view("x1").to_string();
    // An API write from another site's page, or as a form: refused, nothing stored.
    let (status, body) = keyed
        .send(post(
            "/api/v1/events",
            "application/json",
            &[("origin", "https://evil.example"), ("host", "troth.example")],
            &event,
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = keyed.send(post("/api/v1/events", "text/plain", &[], &event)).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(body.contains("unsupported_media_type"), "{body}");
    assert!(stored_ids(&keyed).await.is_empty());
    // The same from troth's own origin, as JSON: stored.
    let (status, body) = keyed
        .send(post(
            "/api/v1/events",
            "application/json; charset=utf-8",
            &[("origin", "https://troth.example"), ("host", "troth.example")],
            &event,
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A page form without an Origin or Referer of this host: refused.
    for headers in [
        &[("host", "troth.example")][..],
        &[("host", "troth.example"), ("origin", "null")][..],
        &[("host", "troth.example"), ("origin", "https://evil.example")][..],
        &[
            ("host", "troth.example"),
            ("referer", "https://evil.example/troth.example/"),
        ][..],
    ] {
        let (status, _) = keyed
            .send(post(
                "/t/sometoken/problem",
                "application/x-www-form-urlencoded",
                headers,
                "category=late",
            ))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    let (status, _) = keyed
        .send(post(
            "/t/sometoken/problem",
            "application/x-www-form-urlencoded",
            &[
                ("host", "troth.example"),
                ("referer", "https://troth.example/t/sometoken"),
            ],
            "category=late",
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "past the check, to the unknown token");

    // Without a master key only loopback host names are answered (DNS rebinding).
    let mut open = TestApi::new(None);
    open.open_mode();
    let get = |host: &str| {
        Request::get("/api/v1/events")
            .header("host", host)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(open.send(get("rebound.evil.example")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        open.send(get("rebound.evil.example:8080")).await.0,
        StatusCode::FORBIDDEN
    );
    for host in ["127.0.0.1:8080", "localhost:3000", "[::1]:8080"] {
        assert_eq!(open.send(get(host)).await.0, StatusCode::OK, "{host}");
    }

    // Every answer: no sniffing, no framing, troth's own scripts only.
    let response = keyed
        .router
        .clone()
        .oneshot(Request::get("/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let headers = response.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "same-origin");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains("frame-ancestors 'none'") && policy.contains("script-src 'self'"),
        "{policy}"
    );
}

/// A tracking link's forms cannot be used to flood support or the disk: a problem
/// reported again shows the case already open, and a new photo deletes the one it
/// replaces, within a daily quota.
#[tokio::test]
async fn tracking_forms_are_deduplicated_and_photos_replaced_within_a_quota() {
    let mut api = TestApi::new(None);
    let uploads = tempfile::tempdir().unwrap();
    api.uploads(uploads.path());
    // Past the per-address rate limit, which is not what this test is about.
    api.limits(troth_http::limits::Limits {
        forms_per_minute: 1_000,
        ..Default::default()
    });
    let created = json!({"id": "c1", "type": "shipment.created", "time": "2026-11-23T08:00:00Z", "subject": "shipment:s-1",
        "customer": {"id": "ann"}, "data": {"shipment": "s-1", "order": "o-1", "carrier": "swiftpost", "service": "standard"}});
    api.ingest(json!([created])).await;
    let (status, link) = api.call("POST", "/api/v1/shipments/s-1/tracking-link", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{link}");
    let token = link["token"].as_str().unwrap().to_owned();
    let form = |path: String, content_type: &str, body: Vec<u8>| {
        Request::post(path)
            .header("host", "127.0.0.1:8080")
            .header("origin", "http://127.0.0.1:8080")
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap()
    };

    let mut references = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let response = api
            .router
            .clone()
            .oneshot(form(
                format!("/t/{token}/problem"),
                "application/x-www-form-urlencoded",
                b"category=late".to_vec(),
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        references.insert(response.headers()["location"].to_str().unwrap().to_owned());
    }
    assert_eq!(references.len(), 1, "{references:?}");
    let (_, cases) = api
        .call(
            "GET",
            "/api/v1/events?subject=shipment:s-1&type=case.opened",
            Value::Null,
        )
        .await;
    assert_eq!(cases["events"].as_array().unwrap().len(), 1, "{cases}");

    let boundary = "XyZ";
    let upload = |n: u8| {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x43];
        jpeg.extend_from_slice(&[n; 65]);
        jpeg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 63, 0, 0x12, 0x34, 0xFF, 0xD9]);
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"place\"\r\n\r\nBehind the bin\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&jpeg);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        form(
            format!("/t/{token}/safe-place"),
            &format!("multipart/form-data; boundary={boundary}"),
            body,
        )
    };
    let files = || std::fs::read_dir(uploads.path()).map(|d| d.count()).unwrap_or(0);
    for n in 0..5 {
        let (status, body) = api.send(upload(n)).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        assert_eq!(files(), 1, "the replaced photos are deleted");
    }
    let (status, body) = api.send(upload(9)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(files(), 1);
}

/// A client that sends half a request and then nothing no longer holds its
/// connection: past the header-read timeout the server closes it.
#[tokio::test]
async fn a_half_sent_request_is_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = TestApi::new(None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(troth_http::server::serve_with(
        listener,
        api.router.clone(),
        std::time::Duration::from_millis(300),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buffer = [0u8; 256];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match slow.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the half-sent request still holds its connection");
    // A whole request on a new connection is answered as usual.
    let mut whole = tokio::net::TcpStream::connect(addr).await.unwrap();
    whole
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    whole.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
