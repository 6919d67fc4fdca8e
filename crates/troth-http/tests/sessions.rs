//! Signing in to the pages: the key is checked, the cookie carries only a session
//! id, and a session ends at sign-out or when its key is revoked.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{MASTER, TestApi};
use serde_json::{Value, json};

const HOST: &str = "troth.example";

fn form(path: &str, body: &str, cookie: Option<&str>, https: bool) -> Request<Body> {
    let mut request = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::ORIGIN, format!("https://{HOST}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    if https {
        request = request.header("x-forwarded-proto", "https");
    }
    request.body(Body::from(body.to_owned())).unwrap()
}

fn page(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, HOST)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

/// `troth_session=…` from a Set-Cookie header.
fn session_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_session_starts_with_a_valid_key_and_ends_at_sign_out() {
    let api = TestApi::new(None);
    // A wrong key: no session, the form again with why.
    let wrong = common::answer(&api, form("/login", "key=guess", None, false)).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.cookie.is_none());
    assert!(wrong.body.contains("That key is not valid."), "{}", wrong.body);
    // Without a session, pages send to the sign-in.
    let before = common::answer(&api, page("/ui/carriers", "troth_session=made-up")).await;
    assert_eq!(before.location.as_deref(), Some("/login"));

    let signed = common::answer(&api, form("/login", &format!("key={MASTER}"), None, true)).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    let set_cookie = signed.cookie.unwrap();
    assert!(
        !set_cookie.contains(MASTER),
        "the key never leaves the server: {set_cookie}"
    );
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Max-Age=43200"] {
        assert!(set_cookie.contains(attribute), "{attribute} in {set_cookie}");
    }
    let session = session_of(&set_cookie);
    let inside = common::answer(&api, page("/ui/carriers", &session)).await;
    assert_eq!(inside.status, StatusCode::OK);
    assert!(
        inside.body.contains(r#"action="/logout""#),
        "the page offers to sign out"
    );

    let out = common::answer(&api, form("/logout", "", Some(&session), false)).await;
    assert_eq!(out.location.as_deref(), Some("/login"));
    assert!(out.cookie.unwrap().contains("Max-Age=0"));
    assert_eq!(out_of_http(&api, &session).await, "/login", "signed out");
}

/// The page the session leads to, or "" when it sends to the sign-in.
async fn out_of_http(api: &TestApi, session: &str) -> String {
    let answer = common::answer(api, page("/ui/carriers", session)).await;
    answer.location.unwrap_or_default()
}

#[tokio::test]
async fn a_keys_sessions_end_when_it_is_revoked_and_an_ingest_key_cannot_sign_in() {
    let api = TestApi::new(None);
    let (_, ingest) = new_key(&api, json!(["ingest"])).await;
    let refused = common::answer(&api, form("/login", &format!("key={ingest}"), None, false)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.body.contains("may not read"), "{}", refused.body);

    let (uid, reader) = new_key(&api, json!(["read"])).await;
    let signed = common::answer(&api, form("/login", &format!("key={reader}"), None, false)).await;
    let session = session_of(&signed.cookie.unwrap());
    assert!(!signed.location.unwrap().is_empty());
    assert_eq!(
        common::answer(&api, page("/ui/carriers", &session)).await.status,
        StatusCode::OK
    );
    let (status, _) = api.call("DELETE", &format!("/api/v1/keys/{uid}"), Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(out_of_http(&api, &session).await, "/login", "revoked with its key");
}

async fn new_key(api: &TestApi, scopes: Value) -> (String, String) {
    let (status, key) = api.call("POST", "/api/v1/keys", json!({"scopes": scopes})).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    (
        key["uid"].as_str().unwrap().to_owned(),
        key["key"].as_str().unwrap().to_owned(),
    )
}

/// A key that may only send events learns nothing it did not send: it can neither
/// issue a tracking link (which opens the customer's address and the driver's
/// position) nor read one's data.
#[tokio::test]
async fn an_ingest_key_cannot_read_tracking_data() {
    let api = TestApi::new(None);
    let (_, ingest) = new_key(&api, json!(["ingest"])).await;
    let (_, reader) = new_key(&api, json!(["read"])).await;
    let created = json!({"id": "c1", "type": "shipment.created", "time": "2026-11-23T08:00:00Z", "subject": "shipment:s-1",
        "customer": {"id": "ann"}, "data": {"shipment": "s-1", "order": "o-1", "carrier": "swiftpost", "service": "standard"}});
    let post = |key: &str, path: &str, body: Value| {
        Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    assert_eq!(
        common::answer(&api, post(&ingest, "/api/v1/events", created))
            .await
            .status,
        StatusCode::OK
    );
    let link = "/api/v1/shipments/s-1/tracking-link";
    let refused = common::answer(&api, post(&ingest, link, json!({}))).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let issued = common::answer(&api, post(&reader, link, json!({}))).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    let read_events = Request::get("/api/v1/events?subject=shipment:s-1")
        .header(header::AUTHORIZATION, format!("Bearer {ingest}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(common::answer(&api, read_events).await.status, StatusCode::FORBIDDEN);
}
