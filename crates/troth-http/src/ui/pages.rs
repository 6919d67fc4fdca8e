//! The pages' content, from store reads to HTML.

use std::fmt::Write;

use serde_json::Value;
use troth_core::Timestamp;
use troth_store::{EventQuery, Store, StoredEvent};

use super::html::{esc, page, url_segment};
use crate::ApiError;
use crate::tracking::Zone;

type PageResult = Result<Option<String>, ApiError>;

/// A shipment's stages as its events tell them, and its driver's trail.
pub async fn shipment<S: Store>(store: &S, zone: &Zone, id: &str) -> PageResult {
    let subject = format!("shipment:{id}");
    let page_of_events = store
        .events(EventQuery {
            subject: Some(subject),
            limit: 1000,
            ..Default::default()
        })
        .await?;
    if page_of_events.events.is_empty() {
        return Ok(None);
    }
    let events: Vec<Value> = page_of_events
        .events
        .iter()
        .filter_map(|e| serde_json::from_str(&e.raw).ok())
        .collect();
    let mut body = String::new();
    let mut window: Option<(String, String)> = None;
    let mut driver: Option<(String, Timestamp)> = None;
    let mut customer: Option<String> = None;
    body.push_str(r#"<div class="grid2"><section><h2>Stages</h2><ol class="stages">"#);
    let mut sorted: Vec<&Value> = events.iter().collect();
    sorted.sort_by_key(|e| e["time"].as_str().and_then(Timestamp::parse_rfc3339));
    for event in sorted {
        let event_type = event["type"].as_str().unwrap_or_default();
        let time = event["time"].as_str().unwrap_or_default();
        let data = &event["data"];
        if customer.is_none() {
            customer = event["customer"]["id"].as_str().map(str::to_owned);
        }
        let (label, bad) = match event_type {
            "shipment.created" => (
                format!("Created with {}", data["carrier"].as_str().unwrap_or("a carrier")),
                false,
            ),
            "shipment.handed_over" => ("Handed over to the carrier".to_owned(), false),
            "shipment.window_set" | "shipment.rescheduled" => {
                let (start, end) = (str_of(&data["window_start"]), str_of(&data["window_end"]));
                window = Some((start.clone(), end.clone()));
                let verb = if event_type == "shipment.rescheduled" {
                    "Rescheduled to"
                } else {
                    "Window"
                };
                (format!("{verb} {}", clock_span(zone, &start, &end)), false)
            }
            "shipment.out_for_delivery" => {
                if let (Some(d), Some(at)) = (data["driver"].as_str(), Timestamp::parse_rfc3339(time)) {
                    driver = Some((d.to_owned(), at));
                }
                // The count when the van left; the customer's page follows it live.
                let stops = data["stops_before"]
                    .as_u64()
                    .map(|n| format!(", {n} {} before it on leaving", if n == 1 { "stop" } else { "stops" }))
                    .unwrap_or_default();
                (format!("Out for delivery{stops}"), false)
            }
            "shipment.arriving" => ("Arriving".to_owned(), false),
            "shipment.delivered" => {
                let proof = data["proof"]["kind"].as_str().unwrap_or("delivered");
                (format!("Delivered ({})", proof.replace('_', " ")), false)
            }
            "shipment.attempt_failed" => (format!("Delivery attempt failed: {}", str_of(&data["reason"])), true),
            "shipment.lost" => ("Lost".to_owned(), true),
            "shipment.returned" => ("Returned to sender".to_owned(), true),
            "promise.made" => {
                let what = data["key"].as_str().unwrap_or("promise").replace('_', " ");
                (
                    format!("Promised: {what} by {}", clock(zone, &str_of(&data["due"]))),
                    false,
                )
            }
            "promise.at_risk" => (format!("At risk: {}", promise_name(data)), true),
            "promise.kept" => (format!("Promise kept: {}", promise_name(data)), false),
            "promise.broken" => (format!("Promise broken: {}", promise_name(data)), true),
            "promise.cancelled" => (format!("Promise replaced: {}", promise_name(data)), false),
            "tracking.viewed" => continue,
            other => (other.to_owned(), false),
        };
        let _ = write!(
            body,
            r#"<li{}><strong>{}</strong><br><span class="muted">{}</span></li>"#,
            if bad { r#" class="bad""# } else { "" },
            esc(&label),
            esc(&clock(zone, time))
        );
    }
    body.push_str("</ol>");
    if let Some((start, end)) = &window {
        let _ = write!(
            body,
            "<p>Window: <strong>{}</strong></p>",
            esc(&clock_span(zone, start, end))
        );
    }
    if let Some(customer) = &customer {
        let _ = write!(
            body,
            r#"<p>Customer: <a href="/ui/customers/{}">{}</a></p>"#,
            url_segment(customer),
            esc(customer)
        );
    }
    let views = events.iter().filter(|e| e["type"] == "tracking.viewed").count();
    let _ = write!(
        body,
        "<p class=\"muted\">Tracking page viewed {views} times.</p></section><section><h2>Driver</h2>"
    );
    match &driver {
        Some((driver, since)) => {
            let positions = store
                .events(EventQuery {
                    subject: Some(format!("driver:{driver}")),
                    event_type: Some("courier.position".into()),
                    from_us: Some(since.micros()),
                    newest_first: true,
                    limit: 400,
                    ..Default::default()
                })
                .await?;
            body.push_str(&trail(zone, driver, &positions.events));
        }
        None => body.push_str("<p class=\"muted\">Not out for delivery yet.</p>"),
    }
    body.push_str("</section></div><h2>Events</h2>");
    body.push_str(&event_table(zone, &page_of_events.events));
    Ok(Some(page(&format!("Shipment {id}"), Some(10), &body)))
}

/// The driver's recent positions as an SVG trail, the latest as a marker.
fn trail(zone: &Zone, driver: &str, positions: &[StoredEvent]) -> String {
    let points: Vec<(f64, f64, String)> = positions
        .iter()
        .rev()
        .filter_map(|e| serde_json::from_str::<Value>(&e.raw).ok())
        .filter_map(|v| {
            Some((
                v["data"]["lat"].as_f64()?,
                v["data"]["lon"].as_f64()?,
                str_of(&v["time"]),
            ))
        })
        .collect();
    let Some((last_lat, last_lon, last_time)) = points.last().cloned() else {
        return format!("<p>Driver <code>{}</code>: no position received yet.</p>", esc(driver));
    };
    let (min_lat, max_lat) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (min_lon, max_lon) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let span = (max_lat - min_lat).max(max_lon - min_lon).max(0.002);
    let project = |lat: f64, lon: f64| {
        (
            20.0 + (lon - min_lon) / span * 360.0,
            380.0 - (lat - min_lat) / span * 360.0,
        )
    };
    let path: Vec<String> = points
        .iter()
        .map(|(lat, lon, _)| project(*lat, *lon))
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let (x, y) = project(last_lat, last_lon);
    format!(
        r##"<svg class="map" viewBox="0 0 400 400" role="img" aria-label="driver trail"><polyline points="{}" fill="none" stroke="#2456d6" stroke-width="2" stroke-opacity=".5"/><circle cx="{x:.1}" cy="{y:.1}" r="7" fill="#2456d6"/></svg>
<p>Driver <code>{}</code> at {last_lat:.5}, {last_lon:.5} <span class="muted">({})</span></p>"##,
        path.join(" "),
        esc(driver),
        esc(&clock(zone, &last_time))
    )
}

pub(super) fn subject_link(subject: &str) -> String {
    match subject.split_once(':') {
        Some(("shipment", id)) => format!(r#"<a href="/ui/shipments/{}">{}</a>"#, url_segment(id), esc(subject)),
        _ => esc(subject),
    }
}

fn event_table(zone: &Zone, events: &[StoredEvent]) -> String {
    let mut out = String::from("<table><tr><th>time</th><th>type</th><th>about</th><th>details</th></tr>");
    for event in events {
        let Ok(v) = serde_json::from_str::<Value>(&event.raw) else {
            continue;
        };
        let subject = v["subject"].as_str().unwrap_or_default();
        let about = match subject.split_once(':') {
            Some(("shipment", id)) => format!(r#"<a href="/ui/shipments/{}">{}</a>"#, url_segment(id), esc(subject)),
            _ => match v["customer"]["id"].as_str() {
                Some(c) => format!(r#"<a href="/ui/customers/{}">{}</a>"#, url_segment(c), esc(c)),
                None => esc(subject),
            },
        };
        let _ = write!(
            out,
            "<tr><td class=\"muted\">{}</td><td><code>{}</code></td><td>{about}</td><td>{}</td></tr>",
            esc(&clock(zone, &str_of(&v["time"]))),
            esc(v["type"].as_str().unwrap_or_default()),
            esc(&summary(&v["data"]))
        );
    }
    out.push_str("</table>");
    out
}

/// A short line from an event's data: its fields, values abbreviated.
fn summary(data: &Value) -> String {
    let Some(object) = data.as_object() else {
        return String::new();
    };
    let mut line = String::new();
    for (key, value) in object {
        if !line.is_empty() {
            line.push_str(", ");
        }
        let _ = write!(line, "{key}: {}", plain(value));
        if line.len() > 160 {
            line.truncate(line.char_indices().nth(157).map_or(line.len(), |(i, _)| i));
            line.push('…');
            break;
        }
    }
    line
}

/// `delivery_window:evt-1` → `delivery window`.
fn promise_name(data: &Value) -> String {
    let id = data["promise"].as_str().unwrap_or("promise");
    id.split_once(':').map_or(id, |(key, _)| key).replace('_', " ")
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn str_of(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// `2026-11-23T11:37:00Z` → `2026-11-23 12:37 CET` in the retailer's zone.
pub(super) fn clock(zone: &Zone, time: &str) -> String {
    match Timestamp::parse_rfc3339(time) {
        Some(t) => zone.clock(t),
        None => time.to_owned(),
    }
}

/// A window of two RFC 3339 instants, as [`Zone::clock_span`] writes it.
fn clock_span(zone: &Zone, start: &str, end: &str) -> String {
    match (Timestamp::parse_rfc3339(start), Timestamp::parse_rfc3339(end)) {
        (Some(s), Some(e)) => zone.clock_span(s, e),
        _ => format!("{start} – {end}"),
    }
}

/// The API's areas in the order a user meets them: send events, look people up,
/// read the journey, the carriers and deliveries, then drivers' devices, messages
/// and keys. Each with what it is for.
const AREAS: &[(&str, &str, &str)] = &[
    (
        "events",
        "Send and read events",
        "Everything troth knows arrives as an event. Send them one, a thousand or a stream at a time; read them back in the order they were stored.",
    ),
    (
        "segment",
        "Segment's API",
        "Segment's and RudderStack's SDKs send here as they would to Segment; the write key is an API key with the ingest scope. Messages troth refuses are listed for the operator (master key only).",
    ),
    (
        "customers",
        "Customers",
        "A customer by any of their identities, with what they did; and what an agent does for them (a note, a callback, a case resolved, a goodwill gesture).",
    ),
    (
        "journeys",
        "The journey",
        "Promises made and kept, each touchpoint's health, the weakest links and the expectation chasm, over the days you choose.",
    ),
    (
        "carriers",
        "Carriers",
        "Windows kept, first attempts, lost parcels, lateness and tracking views per carrier and driver.",
    ),
    (
        "tracking",
        "Tracking links",
        "The customer's tracking page as JSON and a live stream; the token is the credential.",
    ),
    (
        "drivers",
        "Drivers' phones",
        "Devices and positions, and the OsmAnd protocol GPS apps such as Traccar Client speak.",
    ),
    (
        "outbox",
        "Messages and webhooks",
        "What plays asked to send, and dead letters to retry (master key only).",
    ),
    (
        "keys",
        "API keys",
        "Scoped keys for senders, readers and admins (master key only).",
    ),
];

/// A request and its answer, for the routes a user starts with.
const EXAMPLES: &[(&str, &str, &str, &str)] = &[
    (
        "post",
        "/api/v1/events",
        r#"curl -X POST http://localhost:7878/api/v1/events \
  -H 'Authorization: Bearer KEY' -H 'Content-Type: application/json' \
  -d '[{"id":"evt-1","type":"order.placed","time":"2026-11-23T09:12:00Z",
        "customer":{"email":"ann@example.org"},"subject":"order:o-1",
        "data":{"order":"o-1","items":[{"sku":"a","qty":1,"price":1999}],
                "total":1999,"currency":"EUR","delivery":"home"}}]'"#,
        r#"{"results":[{"id":"evt-1","status":"accepted","position":1}]}"#,
    ),
    (
        "get",
        "/api/v1/events",
        "curl 'http://localhost:7878/api/v1/events?type=order.placed&limit=2' -H 'Authorization: Bearer KEY'",
        r#"{"events":[{"id":"evt-1","type":"order.placed",…,"seq":1,"received_at":"2026-11-23T09:12:01Z"}],"next":null}"#,
    ),
    (
        "get",
        "/api/v1/customers/{id}",
        "curl http://localhost:7878/api/v1/customers/email:ann@example.org -H 'Authorization: Bearer KEY'",
        r#"{"id":"cus_1","identities":[{"kind":"email","value":"ann@example.org"}],"events":1,"event_counts":{"order.placed":1},…}"#,
    ),
    (
        "get",
        "/api/v1/journeys/{key}/promises",
        "curl 'http://localhost:7878/api/v1/journeys/retail/promises?state=broken&from=2026-11-23T00:00:00Z&to=2026-11-24T00:00:00Z'",
        r#"{"promises":[{"id":"delivery_window:evt-3","key":"delivery_window","touchpoint":"delivery_window","subject":"shipment:s1","state":"broken","due":"2026-11-23T12:37:00Z",…}],"next":null}"#,
    ),
    (
        "get",
        "/api/v1/journeys/{key}/weakest-links",
        "curl 'http://localhost:7878/api/v1/journeys/retail/weakest-links?from=2026-11-17T00:00:00Z&to=2026-11-24T00:00:00Z'",
        r#"{"links":[{"touchpoint":"delivery_window","owners":["logistics"],"score":0.51,"why":"15% of 569 promises broken (target: at most 5%)",…}]}"#,
    ),
    (
        "get",
        "/api/v1/carriers",
        "curl 'http://localhost:7878/api/v1/carriers?from=2026-11-17T00:00:00Z'",
        r#"{"from":"2026-11-17T00:00:00Z","to":null,"carriers":[{"carrier":"swiftpost","shipments":190,"window_hit_rate":0.70,"windows_kept":155,"windows_broken":67,"first_attempt_rate":0.89,"lost":2,…,"drivers":[…]}]}"#,
    ),
    (
        "post",
        "/api/v1/keys",
        r#"curl -X POST http://localhost:7878/api/v1/keys -H 'Authorization: Bearer MASTER' \
  -H 'Content-Type: application/json' -d '{"name":"shop","scopes":["ingest"]}'"#,
        r#"{"uid":"…","name":"shop","scopes":["ingest"],"created_at":"2026-11-23T09:00:00Z","key":"…(shown once)"}"#,
    ),
];

/// Text from the OpenAPI description, escaped, with its `code` spans as code.
fn prose(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", esc(part));
        } else {
            out.push_str(&esc(part));
        }
    }
    out
}

/// What an HTTP status means when the description says nothing more.
fn status_text(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "204" => "Done, nothing to return",
        "400" => "A parameter or the body is invalid (problem+json naming the field)",
        "401" => "No key, or not a valid one",
        "403" => "The key may not do this",
        "404" => "Not found",
        "409" => "Conflict",
        _ => "",
    }
}

/// The API reference, rendered from the OpenAPI description: grouped by area in the
/// order a user needs them, with a request and its answer for the routes one starts with.
pub fn api_docs() -> String {
    use utoipa::OpenApi;
    let spec = serde_json::to_value(crate::openapi::ApiDoc::openapi()).unwrap_or_default();
    let mut body = String::from(
        r#"<p>Every <code>/api/v1</code> route takes and returns JSON; errors are <code>application/problem+json</code> naming the field at fault. With a master key, send <code>Authorization: Bearer KEY</code>. Times are RFC 3339 (<code>2026-11-23T09:12:00Z</code>). The machine-readable description is at <a href="/openapi.json">/openapi.json</a>.</p><nav class="toc"><strong>Areas:</strong> "#,
    );
    let mut operations: Vec<(String, String, String, &Value)> = Vec::new();
    if let Some(paths) = spec["paths"].as_object() {
        for (path, methods) in paths {
            for (method, operation) in methods.as_object().into_iter().flatten() {
                let tag = operation["tags"][0].as_str().unwrap_or("other").to_owned();
                operations.push((tag, path.clone(), method.clone(), operation));
            }
        }
    }
    let mut areas: Vec<(&str, &str, &str)> = AREAS.to_vec();
    if operations.iter().any(|(tag, ..)| !AREAS.iter().any(|(t, ..)| t == tag)) {
        areas.push(("other", "Other", ""));
    }
    let toc: Vec<String> = areas
        .iter()
        .map(|(tag, title, _)| format!(r##"<a href="#{tag}">{}</a>"##, esc(title)))
        .collect();
    body.push_str(&toc.join(" · "));
    body.push_str("</nav>");
    for (tag, title, about) in &areas {
        let mine: Vec<_> = operations
            .iter()
            .filter(|(t, ..)| t == tag || (*tag == "other" && !AREAS.iter().any(|(a, ..)| a == t)))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let _ = write!(
            body,
            r#"<h2 id="{tag}">{}</h2><p class="muted">{}</p>"#,
            esc(title),
            esc(about)
        );
        // What one does first comes first: sending and creating, then reading, then removing.
        let mut mine = mine;
        let rank = |m: &str| {
            ["post", "put", "patch", "get", "delete"]
                .iter()
                .position(|x| *x == m)
                .unwrap_or(9)
        };
        mine.sort_by(|a, b| (rank(&a.2), &a.1).cmp(&(rank(&b.2), &b.1)));
        for (_, path, method, operation) in mine {
            let _ = write!(
                body,
                r#"<div class="endpoint"><p><span class="method">{}</span><code>{}</code></p><p>{}</p>"#,
                esc(&method.to_uppercase()),
                esc(path),
                prose(
                    operation["description"]
                        .as_str()
                        .or(operation["summary"].as_str())
                        .unwrap_or_default()
                )
            );
            if let Some(params) = operation["parameters"].as_array().filter(|p| !p.is_empty()) {
                body.push_str(r#"<div class="scroll"><table><tr><th>parameter</th><th>in</th><th>meaning</th></tr>"#);
                for p in params {
                    let _ = write!(
                        body,
                        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                        esc(p["name"].as_str().unwrap_or_default()),
                        esc(p["in"].as_str().unwrap_or_default()),
                        prose(p["description"].as_str().unwrap_or_default())
                    );
                }
                body.push_str("</table></div>");
            }
            if let Some((_, _, request, answer)) = EXAMPLES.iter().find(|(m, p, ..)| m == method && p == path) {
                let _ = write!(
                    body,
                    r#"<p class="example-label">Request</p><pre class="example">{}</pre><p class="example-label">Answer</p><pre class="example">{}</pre>"#,
                    esc(request),
                    esc(answer)
                );
            }
            if let Some(responses) = operation["responses"].as_object() {
                body.push_str(r#"<ul class="responses">"#);
                for (status, response) in responses {
                    let description = response["description"].as_str().unwrap_or_default();
                    let _ = write!(
                        body,
                        "<li><code>{}</code> {}</li>",
                        esc(status),
                        if description.is_empty() {
                            esc(status_text(status))
                        } else {
                            prose(description)
                        }
                    );
                }
                body.push_str("</ul>");
            }
            body.push_str("</div>");
        }
    }
    page("API reference", None, &body)
}
