//! The web UI served by the binary: server-rendered HTML, assets embedded, no
//! scripts from elsewhere. Pages read through the same [`Store`] as the API.
//!
//! - `/` — the morning overview: promises due today and this week against last week,
//!   the weakest touchpoints with their owners, deliveries on the road and late now,
//!   open cases breaching their SLA; each number links to the list behind it:
//! - `/ui/promises`, `/ui/deliveries`, `/ui/cases` — those lists;
//! - `/ui/customers?q=` — find a customer by email, phone, order, shipment or name;
//! - `/ui/customers/{id}` — the agent's one screen for a customer: open cases and
//!   their clocks, promises, orders, shipments with their tracking page, what they
//!   said, and the timeline in words; its forms post to `/ui/customers/{id}/actions`
//!   (a note, a callback, a case resolved, a goodwill gesture), for agent keys;
//! - `/ui/shipments/{id}` — one shipment: its real stages, window, driver and trail;
//! - `/ui/journeys/{key}` — the journey: its weakest links, the heat map of stages ×
//!   touchpoints coloured by the weakest-link judgement with week-over-week changes,
//!   the expectation chasm; `journey.js` keeps the first two current from
//!   `/ui/journeys/{key}/live` without reloading;
//! - `/ui/journeys/{key}/touchpoints/{touchpoint}` — one touchpoint's drill-down: its
//!   trend per day, owners, promises and the promises broken there;
//! - `/ui/carriers` — carrier scorecards: per carrier and driver, windows kept, first
//!   attempts, lost parcels, lateness and tracking views, the worst highlighted;
//! - `/ui/inventory` — inventory truthfulness: phantom stock per store and SKU with
//!   its evidence and the function that owns the fix (linked from stock touchpoints);
//! - `/docs` — the API reference, rendered from the OpenAPI description;
//! - `/login`, `/logout` — with a master key, pages need a sign-in: a server-side
//!   session ([`crate::sessions`]) started by a key that may read.

mod carriers;
mod customer;
pub(crate) mod html;
mod inventory;
mod journey;
mod lists;
mod overview;
mod pages;

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use troth_store::{Scope, Store};

use crate::AppState;
use crate::extract::{Params, Segment};

pub use html::esc;

pub fn routes<S: Store + Clone>(state: AppState<S>) -> Router<AppState<S>> {
    let pages = Router::new()
        .route("/", get(overview::<S>))
        .route("/ui/customers", get(find_customer::<S>))
        .route("/ui/customers/{id}", get(customer::<S>))
        .route("/ui/shipments/{id}", get(shipment::<S>))
        .route("/ui/journeys/{key}", get(journey::<S>))
        .route("/ui/journeys/{key}/touchpoints/{touchpoint}", get(touchpoint::<S>))
        // The journey page's weakest links and heat map alone, behind the pages'
        // sign-in: journey.js polls it with the sign-in cookie.
        .route("/ui/journeys/{key}/live", get(journey_live::<S>))
        .route("/ui/journey", get(followed_journey::<S>))
        .route("/ui/carriers", get(carriers::<S>))
        .route("/ui/inventory", get(inventory::<S>))
        .route("/ui/promises", get(promise_list::<S>))
        .route("/ui/deliveries", get(deliveries::<S>))
        .route("/ui/cases", get(cases::<S>))
        .route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), Scope::Read),
            crate::auth::require_page::<S>,
        ));
    // What an agent does from a customer's page needs what the API's actions need.
    let acting = Router::new()
        .route("/ui/customers/{id}/actions", axum::routing::post(customer_action::<S>))
        .route_layer(axum::middleware::from_fn_with_state(
            (state, Scope::Agent),
            crate::auth::require_page::<S>,
        ));
    Router::new()
        .merge(pages)
        .merge(acting)
        .route("/docs", get(|| async { Html(pages::api_docs()) }))
        .route("/login", get(login_form).post(login::<S>))
        .route("/logout", axum::routing::post(logout::<S>))
        .route("/assets/troth.css", get(stylesheet))
        .route("/assets/journey.js", get(journey_script))
}

async fn overview<S: Store>(State(state): State<AppState<S>>, Params(params): Params) -> Response {
    let map = state.journey.get();
    render(overview::overview(&state.store, map.as_deref(), &params).await)
}

async fn promise_list<S: Store>(State(state): State<AppState<S>>, Params(params): Params) -> Response {
    let map = state.journey.get();
    render(lists::promises(&state.store, &state.tracking.config.timezone, map.as_deref(), &params).await)
}

async fn deliveries<S: Store>(State(state): State<AppState<S>>, Params(params): Params) -> Response {
    render(lists::deliveries(&state.store, &state.tracking.config.timezone, &params).await)
}

async fn cases<S: Store>(State(state): State<AppState<S>>, Params(params): Params) -> Response {
    let map = state.journey.get();
    render(lists::cases(&state.store, &state.tracking.config.timezone, map.as_deref(), &params).await)
}

async fn customer<S: Store>(
    State(state): State<AppState<S>>,
    reader: Option<axum::Extension<crate::auth::Reader>>,
    Segment(id): Segment,
    Params(params): Params,
) -> Response {
    let noise = params.iter().any(|(name, value)| name == "noise" && value == "true");
    let done = params.iter().find(|(name, _)| name == "done").map(|(_, v)| v.as_str());
    let shown = customer::Shown {
        noise,
        done,
        refused: None,
    };
    render(customer::customer(&state, reader.as_deref(), &id, &shown).await)
}

/// A form of the customer's page: the action through [`crate::actions::perform`],
/// then back to the page once it shows it (303); a refusal shows the page again with
/// the reason in words and the form as it was sent.
async fn customer_action<S: Store>(
    State(state): State<AppState<S>>,
    reader: Option<axum::Extension<crate::auth::Reader>>,
    Segment(id): Segment,
    form: Result<Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(axum::Extension(reader)) = reader else {
        return render(Err(crate::ApiError::new(crate::Code::Internal, "no reader")));
    };
    let values = form.map(|Form(values)| values).unwrap_or_default();
    let field = |name: &str| {
        values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    };
    let action = field("action").to_owned();
    let now = troth_core::Timestamp::now();
    let done = match action_body(&state, &values, now) {
        Ok(body) => {
            let key = Some(field("key")).filter(|k| !k.is_empty());
            crate::actions::perform(&state, &reader, &id, &body, key, now).await
        }
        Err(e) => Err(e),
    };
    match done {
        Ok(done) => {
            // The page it goes back to shows what was just done.
            let _ = state.store.wait_projected(done.answer.position, state.read_wait).await;
            Redirect::to(&format!(
                "/ui/customers/{}?done={}",
                html::url_segment(&id),
                html::url_segment(&action)
            ))
            .into_response()
        }
        Err(e) if e.code == crate::Code::NotFound => render(Ok(None)),
        Err(e) => {
            let status = e.code.describe().1;
            let refused = customer::Refused {
                message: refusal_words(&action, &e),
                action,
                values,
            };
            let shown = customer::Shown {
                refused: Some(&refused),
                ..Default::default()
            };
            match customer::customer(&state, Some(&reader), &id, &shown).await {
                Ok(Some(page)) => (status, Html(page)).into_response(),
                other => render(other),
            }
        }
    }
}

/// The action's body as the API takes it, from the form: the callback's time read
/// in the retailer's zone, an amount typed in major units, the fields of the
/// gesture's kind only.
fn action_body<S>(
    state: &AppState<S>,
    values: &[(String, String)],
    now: troth_core::Timestamp,
) -> Result<serde_json::Value, crate::ApiError> {
    use serde_json::{Value, json};
    let field = |name: &str| {
        values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let invalid = |name: &str, message: &str| crate::ApiError::field(crate::Code::InvalidAction, name, message);
    let action = field("action").unwrap_or("");
    let mut body = json!({"action": action});
    if let Some(case) = field("case") {
        body["case"] = json!(case);
    }
    let mut copy = |name: &str| {
        if let Some(value) = field(name) {
            body[name] = json!(value);
        }
    };
    match action {
        "note" => copy("text"),
        "resolve" => copy("resolution"),
        "callback" => {
            if let Some(typed) = field("due") {
                let zone = &state.tracking.config.timezone;
                let due = zone
                    .local_datetime(typed)
                    .ok_or_else(|| invalid("due", "must be a date and a time"))?;
                if due <= now {
                    return Err(invalid("due", "must be in the future"));
                }
                body["due"] = json!(due.to_string());
            }
        }
        "goodwill" => {
            copy("kind");
            copy("reason");
            match field("kind") {
                Some("points") => {
                    if let Some(points) = field("points") {
                        let points: u64 = points
                            .parse()
                            .map_err(|_| invalid("points", "must be a whole number of points"))?;
                        body["points"] = json!(points);
                    }
                }
                _ => {
                    let currency = field("currency").map(str::to_ascii_uppercase);
                    if let Some(currency) = &currency {
                        body["currency"] = json!(currency);
                    }
                    if let Some(amount) = field("amount") {
                        let minor = troth_core::money::parse_major(amount, currency.as_deref().unwrap_or(""))
                            .ok_or_else(|| invalid("amount", "must be an amount such as 20.00"))?;
                        body["amount"] = Value::from(minor);
                    }
                }
            }
        }
        _ => {}
    }
    Ok(body)
}

/// A refusal as the agent reads it: the form's field by its label, then why
/// ("The amount is required when kind is voucher.").
fn refusal_words(action: &str, e: &crate::ApiError) -> String {
    let detail = e.detail.trim_end_matches('.');
    let label = match (action, e.field.as_deref()) {
        ("note", Some("text")) => "The note",
        (_, Some("due")) => "The callback's time",
        (_, Some("case")) => "The case",
        (_, Some("resolution")) => "The resolution",
        (_, Some("kind")) => "The gesture",
        (_, Some("amount")) => "The amount",
        (_, Some("currency")) => "The currency",
        (_, Some("points")) => "The points",
        (_, Some("reason")) => "The reason",
        _ => "",
    };
    if !label.is_empty() && (detail.starts_with("is ") || detail.starts_with("must ")) {
        return format!("{label} {detail}.");
    }
    let mut chars = detail.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => "The action was refused.".to_owned(),
    }
}

/// Customers found by what an agent typed; straight to the customer when only one is.
async fn find_customer<S: Store>(State(state): State<AppState<S>>, Params(params): Params) -> Response {
    let query = params
        .iter()
        .find(|(name, _)| name == "q")
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default();
    const SHOWN: usize = 50;
    let found = match state.store.search_customers(query.clone(), SHOWN).await {
        Ok(found) => found,
        Err(e) => return render(Err(e.into())),
    };
    if let [one] = found.as_slice() {
        return Redirect::to(&format!("/ui/customers/{}", html::url_segment(&one.id))).into_response();
    }
    let mut body = customer::search_form(&query);
    if query.is_empty() {
        body.push_str(r#"<p class="muted">Type an email, a phone number (any format), an order or shipment id, or part of a name.</p>"#);
    } else if found.is_empty() {
        body.push_str(&format!("<p>No customer matches “{}”.</p>", esc(&query)));
    } else {
        body.push_str("<table><tr><th>customer</th><th>email</th><th>phone</th></tr>");
        for m in &found {
            body.push_str(&format!(
                r#"<tr><td><a href="/ui/customers/{}">{}</a></td><td>{}</td><td>{}</td></tr>"#,
                html::url_segment(&m.id),
                esc(m.name.as_deref().unwrap_or(&m.id)),
                esc(m.email.as_deref().unwrap_or("–")),
                esc(m.phone.as_deref().unwrap_or("–")),
            ));
        }
        body.push_str("</table>");
        if found.len() == SHOWN {
            body.push_str(&format!(
                r#"<p class="muted">The first {SHOWN} matches; type more of the name, or an email, to narrow them.</p>"#
            ));
        }
    }
    Html(html::page("Find a customer", None, &body)).into_response()
}

async fn carriers<S: Store>(State(state): State<AppState<S>>, Params(params): Params) -> Response {
    render(carriers::carriers(&state.store, &params).await)
}

async fn inventory<S: Store>(State(state): State<AppState<S>>, Params(params): Params) -> Response {
    render(inventory::inventory(&state.store, &params).await)
}

async fn shipment<S: Store>(State(state): State<AppState<S>>, Segment(id): Segment) -> Response {
    render(pages::shipment(&state.store, &state.tracking.config.timezone, &id).await)
}

/// A page, or the reason there is none as a page too.
fn render(page: Result<Option<String>, crate::ApiError>) -> Response {
    match page {
        Ok(Some(html)) => Html(html).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Html(html::page("Not found", None, "<p>Nothing is known by that name.</p>")),
        )
            .into_response(),
        Err(e) => {
            let body = format!("<p>{}</p>", esc(&e.detail));
            (
                e.code.describe().1,
                Html(html::page("Something went wrong", None, &body)),
            )
                .into_response()
        }
    }
}

async fn journey<S: Store>(
    State(state): State<AppState<S>>,
    Segment(key): Segment,
    Params(params): Params,
) -> Response {
    match state.journey.get() {
        Some(map) if map.key == key => {
            render(journey::journey(&state.store, &state.tracking.config.timezone, &map, &params).await)
        }
        _ => render(Ok(None)),
    }
}

async fn journey_live<S: Store>(
    State(state): State<AppState<S>>,
    Segment(key): Segment,
    Params(params): Params,
) -> Response {
    match state.journey.get() {
        Some(map) if map.key == key => render(journey::live(&state.store, &map, &params).await),
        _ => render(Ok(None)),
    }
}

async fn touchpoint<S: Store>(
    State(state): State<AppState<S>>,
    Path((key, touchpoint)): Path<(String, String)>,
    Params(params): Params,
) -> Response {
    match state.journey.get() {
        Some(map) if map.key == key => render(
            journey::touchpoint(
                &state.store,
                &state.tracking.config.timezone,
                &map,
                &touchpoint,
                &params,
            )
            .await,
        ),
        _ => render(Ok(None)),
    }
}

/// The journey this server follows.
async fn followed_journey<S: Store>(State(state): State<AppState<S>>) -> Response {
    match state.journey.get() {
        Some(map) => Redirect::to(&format!("/ui/journeys/{}", html::url_segment(&map.key))).into_response(),
        None => render(Ok(None)),
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("troth.css"),
    )
        .into_response()
}

async fn journey_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("journey.js"),
    )
        .into_response()
}

async fn login_form() -> Html<String> {
    Html(sign_in_page(None))
}

fn sign_in_page(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, esc(e)))
        .unwrap_or_default();
    html::page(
        "Sign in",
        None,
        &format!(
            r#"{error}<form class="login" method="post" action="/login"><label>API key (read scope or the master key)
<input type="password" name="key" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form>"#
        ),
    )
}

#[derive(serde::Deserialize)]
struct LoginForm {
    key: String,
}

/// Checks the key and starts a session; the cookie carries only the session's id.
async fn login<S: Store>(
    State(state): State<AppState<S>>,
    headers: axum::http::HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if state.master_key.is_none() {
        // Open mode: the pages need no sign-in.
        return Redirect::to("/").into_response();
    }
    let key = form.map(|Form(f)| f.key).unwrap_or_default();
    let principal = match crate::auth::sign_in(&state, key.trim()) {
        Ok(principal) => principal,
        Err(e) => {
            let message = if e.code == crate::Code::Forbidden {
                "That key may not read; sign in with a key that has the read scope."
            } else {
                "That key is not valid."
            };
            return (StatusCode::UNAUTHORIZED, Html(sign_in_page(Some(message)))).into_response();
        }
    };
    let Ok(id) = state.sessions.start(principal) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Html(sign_in_page(Some("Signing in failed; try again."))),
        )
            .into_response();
    };
    let secure = if over_https(&headers) { "; Secure" } else { "" };
    let cookie = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        crate::sessions::COOKIE,
        crate::sessions::SESSION_LIFETIME.as_secs()
    );
    with_cookie(Redirect::to("/").into_response(), &cookie)
}

/// Ends the session and forgets its cookie.
async fn logout<S: Store>(State(state): State<AppState<S>>, headers: axum::http::HeaderMap) -> Response {
    if let Some(id) = crate::auth::cookie(&headers, crate::sessions::COOKIE) {
        state.sessions.end(&id);
    }
    let secure = if over_https(&headers) { "; Secure" } else { "" };
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
        crate::sessions::COOKIE
    );
    with_cookie(Redirect::to("/login").into_response(), &cookie)
}

/// Whether the browser reached troth over HTTPS: a proxy in front says so.
fn over_https(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
