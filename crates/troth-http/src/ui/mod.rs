//! The web UI served by the binary: server-rendered HTML, assets embedded, no
//! scripts from elsewhere. Pages read through the same [`Store`] as the API.
//!
//! - `/` — the overview: events and customers, events by type, the latest events;
//! - `/ui/customers/{id}` — the agent's view of one customer: profile and timeline;
//! - `/ui/shipments/{id}` — one shipment: its real stages, window, driver and trail;
//! - `/ui/journeys/{key}` — the journey's stages and touchpoints, coloured by health;
//! - `/docs` — the API reference, rendered from the OpenAPI description;
//! - `/login` — with a master key, pages need a key too, kept in a cookie.

mod html;
mod pages;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use troth_store::{Scope, Store};

use crate::AppState;
use crate::extract::Segment;

pub use html::esc;

/// The name of the cookie that carries a key for the pages.
pub const KEY_COOKIE: &str = "troth_key";

pub fn routes<S: Store + Clone>(state: AppState<S>) -> Router<AppState<S>> {
    let pages = Router::new()
        .route("/", get(overview::<S>))
        .route("/ui/customers/{id}", get(customer::<S>))
        .route("/ui/shipments/{id}", get(shipment::<S>))
        .route("/ui/journeys/{key}", get(journey::<S>))
        .route("/ui/journey", get(followed_journey::<S>))
        .route_layer(axum::middleware::from_fn_with_state(
            (state, Scope::Read),
            crate::auth::require_page::<S>,
        ));
    Router::new()
        .merge(pages)
        .route("/docs", get(|| async { Html(pages::api_docs()) }))
        .route("/login", get(login_form).post(login))
        .route("/assets/troth.css", get(stylesheet))
}

async fn overview<S: Store>(State(state): State<AppState<S>>) -> Response {
    render(pages::overview(&state.store).await)
}

async fn customer<S: Store>(State(state): State<AppState<S>>, Segment(id): Segment) -> Response {
    render(pages::customer(&state.store, &id).await)
}

async fn shipment<S: Store>(State(state): State<AppState<S>>, Segment(id): Segment) -> Response {
    render(pages::shipment(&state.store, &id).await)
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

async fn journey<S: Store>(State(state): State<AppState<S>>, Segment(key): Segment) -> Response {
    match &state.journey {
        Some(map) if map.key == key => render(pages::journey(&state.store, map).await),
        _ => render(Ok(None)),
    }
}

/// The journey this server follows.
async fn followed_journey<S: Store>(State(state): State<AppState<S>>) -> Response {
    match &state.journey {
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

async fn login_form() -> Html<String> {
    Html(html::page(
        "Sign in",
        None,
        r#"<form class="login" method="post" action="/login"><label>API key (read scope or the master key)
<input type="password" name="key" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form>"#,
    ))
}

#[derive(serde::Deserialize)]
struct LoginForm {
    key: String,
}

async fn login(Form(form): Form<LoginForm>) -> Response {
    let cookie = format!(
        "{KEY_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        html::url_segment(form.key.trim())
    );
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
