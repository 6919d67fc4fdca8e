//! What an agent does for a customer — a note, a callback promised, a case resolved,
//! a goodwill gesture — lands in the log as one event each under the agent's key,
//! and the story follows: the callback is a promise like any other, the case is
//! resolved. Reads wait on the answers' positions (`min_position`), never on time.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{TestApi, retail_map};
use serde_json::{Value, json};
use troth_core::Timestamp;

const ANN: &str = "email:ann@example.org";

/// Ann with a case opened an hour ago, and Bob with one of his own.
async fn customers(api: &TestApi) {
    let opened = in_hours(-1);
    for item in api
        .ingest(json!([
            {"id": "e1", "type": "customer.identified", "time": "2026-11-20T09:00:00Z",
             "customer": {"id": "c-17", "email": "ann@example.org"}, "data": {"traits": {"name": "Ann Lee"}}},
            {"id": "e2", "type": "case.opened", "time": opened, "channel": "phone",
             "customer": {"email": "ann@example.org"}, "subject": "case:k-1",
             "data": {"case": "k-1", "category": "late_delivery", "team": "support"}},
            {"id": "e3", "type": "case.opened", "time": opened,
             "customer": {"email": "bob@example.org"}, "subject": "case:k-2",
             "data": {"case": "k-2", "category": "payment", "team": "billing"}}
        ]))
        .await
    {
        assert_eq!(item["status"], "accepted", "{item}");
    }
}

/// A key with `scopes`: (secret, uid).
async fn key(api: &TestApi, name: &str, scopes: &[&str]) -> (String, String) {
    let (status, key) = api
        .call("POST", "/api/v1/keys", json!({"name": name, "scopes": scopes}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    (
        key["key"].as_str().unwrap().to_owned(),
        key["uid"].as_str().unwrap().to_owned(),
    )
}

/// Posts an action for `customer` with `secret`, and an `Idempotency-Key` if given.
async fn act(api: &TestApi, secret: &str, customer: &str, action: Value, key: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::post(format!("/api/v1/customers/{customer}/actions"))
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let (status, text) = api.send(request.body(Body::from(action.to_string())).unwrap()).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// An RFC 3339 instant `hours` from now.
fn in_hours(hours: i64) -> String {
    Timestamp(Timestamp::now().micros() + hours * 3_600_000_000).to_string()
}

/// The customer's events of `event_type`, once the log holds `position`.
async fn events_of(api: &TestApi, event_type: &str, position: i64) -> Vec<Value> {
    let (status, page) = api
        .call(
            "GET",
            &format!("/api/v1/events?customer={ANN}&type={event_type}&min_position={position}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn each_action_is_one_event_under_the_agents_key() {
    let api = TestApi::new(Some(retail_map()));
    customers(&api).await;
    let (ana, uid) = key(&api, "ana", &["agent"]).await;
    let due = in_hours(26);
    let actions = [
        (
            json!({"action": "note", "text": "  Wants it left with a neighbour ", "case": "k-1"}),
            "note.added",
            json!({"text": "Wants it left with a neighbour", "agent": uid}),
        ),
        (
            json!({"action": "callback", "due": due, "case": "k-1"}),
            "callback.promised",
            json!({"due": due, "agent": uid}),
        ),
        (
            json!({"action": "goodwill", "kind": "voucher", "amount": 2000, "currency": "EUR",
                   "reason": "late delivery", "case": "k-1"}),
            "goodwill.given",
            json!({"kind": "voucher", "amount": 2000, "currency": "EUR", "reason": "late delivery", "agent": uid}),
        ),
        (
            json!({"action": "resolve", "case": "k-1", "resolution": "redelivery_booked"}),
            "case.resolved",
            json!({"resolution": "redelivery_booked", "agent": uid}),
        ),
    ];
    for (action, event_type, data) in actions {
        let (status, answer) = act(&api, &ana, ANN, action.clone(), None).await;
        assert_eq!(status, StatusCode::CREATED, "{action}: {answer}");
        assert_eq!(answer["type"], event_type);
        let id = answer["id"].as_str().unwrap();
        assert!(id.starts_with(&format!("agent.{uid}.")), "{id}");
        let position = answer["position"].as_i64().unwrap();
        let events = events_of(&api, event_type, position).await;
        assert_eq!(events.len(), 1, "{events:?}");
        let event = &events[0];
        assert_eq!(event["id"], id);
        assert_eq!(event["seq"], position);
        assert_eq!(event["source"], format!("agent:{uid}"));
        assert_eq!(event["subject"], "case:k-1");
        assert_eq!(event["customer"], json!({"id": "c-17"}), "one of Ann's own identities");
        assert_eq!(event["data"], data);
    }
}

#[tokio::test]
async fn the_story_follows_what_the_agent_did() {
    let api = TestApi::new(Some(retail_map()));
    customers(&api).await;
    let (ana, uid) = key(&api, "ana", &["agent"]).await;
    let callback_due = in_hours(3);
    let (_, callback) = act(
        &api,
        &ana,
        ANN,
        json!({"action": "callback", "due": callback_due, "case": "k-1"}),
        None,
    )
    .await;
    let (_, goodwill) = act(
        &api,
        &ana,
        ANN,
        json!({"action": "goodwill", "kind": "refund", "amount": 1500, "currency": "EUR",
               "reason": "late delivery"}),
        None,
    )
    .await;
    let (status, resolved) = act(
        &api,
        &ana,
        ANN,
        json!({"action": "resolve", "case": "k-1", "resolution": "redelivery_booked"}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{resolved}");
    let position = resolved["position"].as_i64().unwrap();

    let (status, story) = api
        .call(
            "GET",
            &format!("/api/v1/customers/{ANN}/story?min_position={position}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{story}");
    // The callback is a promise like any other, made by the agent's event.
    let promises = story["promises"].as_array().unwrap();
    let made_by = |key: &str| {
        promises
            .iter()
            .find(|p| p["key"] == key)
            .unwrap_or_else(|| panic!("no {key} promise in {promises:?}"))
    };
    let promise = made_by("callback");
    assert_eq!(promise["subject"], "case:k-1");
    assert_eq!(promise["state"], "made");
    assert_eq!(
        promise["id"],
        format!("callback:{}", callback["id"].as_str().unwrap()),
        "{promise}"
    );
    assert_eq!(promise["due"], callback_due);
    // A goodwill refund is a promise that the refund is paid.
    assert_eq!(
        made_by("goodwill_refund")["id"],
        format!("goodwill_refund:{}", goodwill["id"].as_str().unwrap())
    );
    // Resolved within its service level: the case's promise is kept.
    assert_eq!(made_by("case_resolved")["state"], "kept");
    assert_eq!(story["cases"][0]["state"], "resolved");
    assert_eq!(story["cases"][0]["resolution"], "redelivery_booked");
    assert_eq!(story["cases"][0]["agent"], uid);
    assert_eq!(story["customer"]["open_cases"], 0);
    // The payment provider's refund keeps the goodwill refund, whatever it is about.
    let issued = api
        .ingest(
            json!({"id": "psp-1", "type": "refund.issued", "time": in_hours(0), "source": "psp",
                       "customer": {"email": "ann@example.org"}, "subject": "order:o-9", "data": {"amount": 1500}}),
        )
        .await;
    let (_, story) = api
        .call(
            "GET",
            &format!("/api/v1/customers/{ANN}/story?min_position={}", issued[0]["position"]),
            Value::Null,
        )
        .await;
    let goodwill_refund = story["promises"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == "goodwill_refund")
        .unwrap();
    assert_eq!(goodwill_refund["state"], "kept", "{goodwill_refund}");
    let said: Vec<&str> = story["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["position"].as_i64() >= callback["position"].as_i64())
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert!(said.contains(&"Case resolved: redelivery booked by ana"), "{said:?}");
    assert!(
        said.contains(&"Goodwill by agent ana: refund €15.00 — late delivery"),
        "{said:?}"
    );
}

#[tokio::test]
async fn a_wrong_action_is_refused_naming_the_field() {
    let api = TestApi::new(None);
    customers(&api).await;
    let (ana, _) = key(&api, "ana", &["agent"]).await;
    for (action, status, code, field) in [
        (
            json!({"action": "goodwill", "kind": "voucher", "currency": "EUR", "reason": "late"}),
            400,
            "invalid_action",
            "amount",
        ),
        (
            json!({"action": "goodwill", "kind": "points", "points": -5, "reason": "late"}),
            400,
            "invalid_action",
            "points",
        ),
        (json!({"action": "note", "text": "   "}), 400, "invalid_action", "text"),
        (
            json!({"action": "note", "text": "x".repeat(2001)}),
            400,
            "invalid_action",
            "text",
        ),
        (
            json!({"action": "callback", "due": "2026-01-01T09:00:00Z", "case": "k-1"}),
            400,
            "invalid_action",
            "due",
        ),
        (
            json!({"action": "callback", "due": "tomorrow", "case": "k-1"}),
            400,
            "invalid_action",
            "due",
        ),
        (
            json!({"action": "callback", "due": in_hours(2)}),
            400,
            "invalid_action",
            "case",
        ),
        (
            json!({"action": "resolve", "case": "k-1", "resolution": "Fixed it!"}),
            400,
            "invalid_action",
            "resolution",
        ),
        (
            json!({"action": "resolve", "resolution": "explained"}),
            400,
            "invalid_action",
            "case",
        ),
        // Bob's case is not Ann's to resolve.
        (
            json!({"action": "resolve", "case": "k-2", "resolution": "explained"}),
            400,
            "invalid_action",
            "case",
        ),
        (
            json!({"action": "note", "text": "hello", "colour": "red"}),
            400,
            "invalid_action",
            "colour",
        ),
        (json!({"action": "refund"}), 400, "invalid_action", "action"),
    ] {
        let (got, problem) = act(&api, &ana, ANN, action.clone(), None).await;
        assert_eq!(got.as_u16(), status, "{action}: {problem}");
        assert_eq!(
            (problem["code"].as_str(), problem["field"].as_str()),
            (Some(code), Some(field)),
            "{action}: {problem}"
        );
    }
    let (status, problem) = act(
        &api,
        &ana,
        "email:nobody@example.org",
        json!({"action": "note", "text": "hi"}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");

    // A case resolved already cannot be resolved again.
    let resolve = json!({"action": "resolve", "case": "k-1", "resolution": "explained"});
    let (status, _) = act(&api, &ana, ANN, resolve.clone(), None).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, problem) = act(&api, &ana, ANN, resolve, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "case_not_open");
    let (_, all) = api
        .call("GET", &format!("/api/v1/events?customer={ANN}"), Value::Null)
        .await;
    assert_eq!(
        all["events"].as_array().unwrap().len(),
        3,
        "nothing was stored but the one resolution: {all}"
    );
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_stores_one_event() {
    let api = TestApi::new(None);
    customers(&api).await;
    let (ana, _) = key(&api, "ana", &["agent"]).await;
    let note = json!({"action": "note", "text": "Called about the delay"});
    let (status, first) = act(&api, &ana, ANN, note.clone(), Some("note-7f3a")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = act(&api, &ana, ANN, note.clone(), Some("note-7f3a")).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, first, "the retry answers with the event the first stored");
    let position = first["position"].as_i64().unwrap();
    assert_eq!(events_of(&api, "note.added", position).await.len(), 1);
    // Another key is another note.
    let (status, other) = act(&api, &ana, ANN, note, Some("note-8b01")).await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    assert_eq!(events_of(&api, "note.added", position).await.len(), 2);

    // A retried resolution answers as the first, though the case is resolved now.
    let resolve = json!({"action": "resolve", "case": "k-1", "resolution": "explained"});
    let (status, first) = act(&api, &ana, ANN, resolve.clone(), Some("resolve-k-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = act(&api, &ana, ANN, resolve, Some("resolve-k-1")).await;
    assert_eq!((status, &again), (StatusCode::OK, &first));

    // The key stored a note: it cannot store a callback too.
    let callback = json!({"action": "callback", "due": in_hours(2), "case": "k-1"});
    let (status, problem) = act(&api, &ana, ANN, callback, Some("note-7f3a")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "idempotency_key_reused");
    let (status, problem) = act(
        &api,
        &ana,
        ANN,
        json!({"action": "note", "text": "hi"}),
        Some("two words"),
    )
    .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Idempotency-Key"))
    );
}

#[tokio::test]
async fn only_agent_and_admin_keys_act() {
    let api = TestApi::new(None);
    customers(&api).await;
    let note = json!({"action": "note", "text": "hello"});
    for scopes in [&["read"][..], &["ingest"], &["read", "ingest"]] {
        let (secret, _) = key(&api, "reader", scopes).await;
        let (status, problem) = act(&api, &secret, ANN, note.clone(), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{scopes:?}: {problem}");
        assert_eq!(problem["code"], "forbidden");
    }
    for scopes in [&["agent"][..], &["admin"]] {
        let (secret, _) = key(&api, "acting", scopes).await;
        let (status, answer) = act(&api, &secret, ANN, note.clone(), None).await;
        assert_eq!(status, StatusCode::CREATED, "{scopes:?}: {answer}");
    }
    let (status, answer) = act(&api, common::MASTER, ANN, note.clone(), None).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert!(answer["id"].as_str().unwrap().starts_with("agent.master."));
    let (_, notes) = api
        .call(
            "GET",
            &format!("/api/v1/events?customer={ANN}&type=note.added"),
            Value::Null,
        )
        .await;
    assert_eq!(notes["events"].as_array().unwrap().len(), 3, "{notes}");
}

#[tokio::test]
async fn the_openapi_document_describes_the_actions() {
    let api = TestApi::new(None);
    let (_, doc) = api.call("GET", "/openapi.json", Value::Null).await;
    let operation = &doc["paths"]["/api/v1/customers/{id}/actions"]["post"];
    for status in ["200", "201", "400", "403", "404", "409"] {
        assert!(operation["responses"][status].is_object(), "{status}: {operation}");
    }
    let body = &doc["components"]["schemas"]["ActionBody"];
    let actions: Vec<&str> = body["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .flat_map(|variant| variant["properties"]["action"]["enum"].as_array().unwrap())
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(actions, ["note", "callback", "resolve", "goodwill"]);
    if let Ok(path) = std::env::var("TROTH_DUMP_OPENAPI") {
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    }
}

/// The customer's page, as a browser signed in with `session` sends its forms.
mod page {
    use super::*;

    pub const HOST: &str = "troth.example";

    pub use crate::common::answer as send;

    /// A form post from troth's own page (`Origin` this host), in `session`.
    pub fn form(path: &str, fields: &[(&str, &str)], session: Option<&str>) -> Request<Body> {
        let mut request = Request::post(path)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, format!("http://{HOST}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(session) = session {
            request = request.header(header::COOKIE, session);
        }
        let body = serde_urlencoded::to_string(fields).unwrap();
        request.body(Body::from(body)).unwrap()
    }

    pub fn get(path: &str, session: &str) -> Request<Body> {
        Request::get(path)
            .header(header::HOST, HOST)
            .header(header::COOKIE, session)
            .body(Body::empty())
            .unwrap()
    }

    /// Signs in with `secret`: the session's cookie.
    pub async fn sign_in(api: &TestApi, secret: &str) -> String {
        let signed = send(api, form("/login", &[("key", secret)], None)).await;
        assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
        signed.cookie.unwrap().split(';').next().unwrap().to_owned()
    }
}

#[tokio::test]
async fn an_agent_acts_from_the_customers_page_and_sees_it_done() {
    let api = TestApi::new(Some(retail_map()));
    customers(&api).await;
    let (ana, _) = key(&api, "ana", &["agent"]).await;
    let session = page::sign_in(&api, &ana).await;
    let shown = page::send(&api, page::get("/ui/customers/email:ann@example.org", &session)).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(
        shown
            .body
            .contains(r#"<form class="resolve" method="post" action="/ui/customers/cus_1/actions">"#),
        "{}",
        shown.body
    );
    for form in [r#"id="note""#, r#"id="callback""#, r#"id="goodwill""#] {
        assert!(shown.body.contains(form), "{form}");
    }

    let actions = "/ui/customers/cus_1/actions";
    let due = Timestamp(Timestamp::now().micros() + 3 * 3_600_000_000);
    let due_local = troth_http::tracking::Zone::utc().local_input(due);
    // Each form: its action, its fields, and the sentence the timeline then says.
    type Posted<'a> = (&'a str, Vec<(&'a str, &'a str)>, String);
    let posted: [Posted<'_>; 4] = [
        (
            "note",
            vec![("text", "Prefers a call after five"), ("case", "k-1")],
            "Note by agent ana: Prefers a call after five".to_owned(),
        ),
        (
            "callback",
            vec![("due", &due_local), ("case", "k-1")],
            // "Callback promised for 14:00 by …", the day named when it is not today's.
            format!("{} by ana", &due_local[11..]),
        ),
        (
            "goodwill",
            vec![
                ("kind", "voucher"),
                ("amount", "20"),
                ("currency", "eur"),
                ("points", "9"),
                ("reason", "late delivery"),
                ("case", ""),
            ],
            "Goodwill by agent ana: voucher €20.00 — late delivery".to_owned(),
        ),
        (
            "resolve",
            vec![("case", "k-1"), ("resolution", "redelivery_booked")],
            "Case resolved: redelivery booked by ana".to_owned(),
        ),
    ];
    for (action, fields, sentence) in posted {
        let mut fields = fields;
        fields.extend([("action", action), ("key", action)]);
        let sent = page::send(&api, page::form(actions, &fields, Some(&session))).await;
        assert_eq!(sent.status, StatusCode::SEE_OTHER, "{action}: {}", sent.body);
        let back = sent.location.unwrap();
        assert_eq!(back, format!("/ui/customers/cus_1?done={action}"));
        let shown = page::send(&api, page::get(&back, &session)).await;
        assert!(
            shown.body.contains(&sentence),
            "{action}: no {sentence:?} in {}",
            shown.body
        );
        assert!(shown.body.contains(r#"<p class="done" role="status">"#), "{action}");
    }
    let shown = page::send(&api, page::get("/ui/customers/cus_1", &session)).await;
    assert!(shown.body.contains("resolved: redelivery booked"), "{}", shown.body);
    assert!(
        !shown.body.contains(r#"<form class="resolve""#),
        "no open case left to resolve"
    );

    // The same form sent twice (a double click) stores one note.
    let twice = [("action", "note"), ("text", "Asked twice"), ("key", "dbl-1")];
    for _ in 0..2 {
        let sent = page::send(&api, page::form(actions, &twice, Some(&session))).await;
        assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    }
    let (_, notes) = api
        .call(
            "GET",
            &format!("/api/v1/events?customer={ANN}&type=note.added"),
            Value::Null,
        )
        .await;
    assert_eq!(notes["events"].as_array().unwrap().len(), 2, "{notes}");

    // The journey page's map against the data does not take the agent's notes and
    // gestures for customer moments the map misses: they are troth's records.
    let journey = page::send(&api, page::get("/ui/journeys/retail", &session)).await;
    assert_eq!(journey.status, StatusCode::OK);
    let unmapped = journey
        .body
        .split(r#"<ul id="flow-unmapped">"#)
        .nth(1)
        .and_then(|rest| rest.split("</ul>").next())
        .unwrap_or_else(|| panic!("no unmapped list: {}", journey.body));
    assert!(
        unmapped.contains("<code>customer.identified</code>"),
        "an identity is no touchpoint's: {unmapped}"
    );
    for record in ["note.added", "goodwill.given"] {
        assert!(!unmapped.contains(record), "{record} in {unmapped}");
    }
}

#[tokio::test]
async fn a_refused_form_says_why_in_words_and_keeps_what_was_typed() {
    let api = TestApi::new(None);
    customers(&api).await;
    let (ana, _) = key(&api, "ana", &["agent"]).await;
    let session = page::sign_in(&api, &ana).await;
    let actions = "/ui/customers/cus_1/actions";
    for (fields, status, words) in [
        (
            vec![
                ("action", "goodwill"),
                ("kind", "voucher"),
                ("currency", "EUR"),
                ("reason", "parcel came late"),
            ],
            StatusCode::BAD_REQUEST,
            "The amount is required when kind is voucher.",
        ),
        (
            vec![
                ("action", "goodwill"),
                ("kind", "refund"),
                ("amount", "twenty"),
                ("currency", "EUR"),
                ("reason", "parcel came late"),
            ],
            StatusCode::BAD_REQUEST,
            "The amount must be an amount such as 20.00.",
        ),
        (
            vec![("action", "callback"), ("due", "2026-01-01T09:00"), ("case", "k-1")],
            StatusCode::BAD_REQUEST,
            "The callback&#39;s time must be in the future.",
        ),
        (
            vec![("action", "resolve"), ("case", "k-2"), ("resolution", "explained")],
            StatusCode::BAD_REQUEST,
            "The case is not one of cus_1&#39;s cases: &quot;k-2&quot;.",
        ),
    ] {
        let sent = page::send(&api, page::form(actions, &fields, Some(&session))).await;
        assert_eq!(sent.status, status, "{fields:?}: {}", sent.body);
        assert!(
            sent.body
                .contains(&format!(r##"<p class="error" role="alert">{words} <a href="#"##)),
            "{fields:?}: {}",
            sent.body
        );
        assert!(sent.body.contains("<h2 id=\"act\">"), "the page, with its forms");
        assert!(!sent.body.contains("\"code\""), "not a JSON problem: {}", sent.body);
    }
    // What was typed comes back in its form.
    let sent = page::send(
        &api,
        page::form(
            actions,
            &[
                ("action", "goodwill"),
                ("kind", "refund"),
                ("reason", "parcel came late"),
            ],
            Some(&session),
        ),
    )
    .await;
    assert!(sent.body.contains(r#"value="parcel came late""#), "{}", sent.body);
    assert!(
        sent.body.contains(r#"<option value="refund" selected>"#),
        "{}",
        sent.body
    );
    let (_, all) = api
        .call("GET", &format!("/api/v1/events?customer={ANN}"), Value::Null)
        .await;
    assert_eq!(all["events"].as_array().unwrap().len(), 2, "nothing stored: {all}");
}

#[tokio::test]
async fn a_reader_sees_no_forms_and_cannot_post_them() {
    let api = TestApi::new(None);
    customers(&api).await;
    let (reader, _) = key(&api, "auditor", &["read"]).await;
    let session = page::sign_in(&api, &reader).await;
    let shown = page::send(&api, page::get("/ui/customers/cus_1", &session)).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(!shown.body.contains(r#"<form class="resolve""#));
    assert!(!shown.body.contains(r#"id="act""#));
    assert!(shown.body.contains("sign in with an agent key to act"));
    let note = [("action", "note"), ("text", "hello")];
    let refused = page::send(&api, page::form("/ui/customers/cus_1/actions", &note, Some(&session))).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("<h1>Not allowed</h1>"), "{}", refused.body);

    // Another site's form cannot act with an agent's session.
    let (ana, _) = key(&api, "ana", &["agent"]).await;
    let session = page::sign_in(&api, &ana).await;
    let mut forged = page::form("/ui/customers/cus_1/actions", &note, Some(&session));
    forged
        .headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(page::send(&api, forged).await.status, StatusCode::FORBIDDEN);
    let (_, notes) = api
        .call(
            "GET",
            &format!("/api/v1/events?customer={ANN}&type=note.added"),
            Value::Null,
        )
        .await;
    assert!(notes["events"].as_array().unwrap().is_empty(), "{notes}");
}

/// The story's cases and the tracking page's cases are different shapes: the
/// document names them apart, so neither answer is checked against the other's.
#[tokio::test]
async fn the_staffs_and_the_customers_cases_have_schemas_of_their_own() {
    let api = TestApi::new(None);
    let (_, doc) = api.call("GET", "/openapi.json", Value::Null).await;
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["CaseView"]["properties"]["resolution_clock"].is_object(),
        "{}",
        schemas["CaseView"]
    );
    assert!(
        schemas["TrackedCase"]["properties"]["reference"].is_object(),
        "{}",
        schemas["TrackedCase"]
    );
}
