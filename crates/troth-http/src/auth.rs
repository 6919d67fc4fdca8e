//! Bearer authentication: the master key, or a key with the route's scope.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use troth_store::{Scope, Store};

use crate::AppState;
use crate::error::{ApiError, Code};

pub async fn require<S: Store>(
    State((state, scope)): State<(AppState<S>, Scope)>,
    request: Request,
    next: Next,
) -> Response {
    match check(&state, scope, &request) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Routes only the master key may use (the outbox: customers' addresses, resending).
/// Without a master key the API is open, as everywhere.
pub async fn require_master<S: Store>(State(state): State<AppState<S>>, request: Request, next: Next) -> Response {
    let Some(master) = &state.master_key else {
        return next.run(request).await;
    };
    match bearer(&request) {
        Some(secret) if constant_time_eq(secret.as_bytes(), master.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::new(Code::Forbidden, "only the master key may use this route").into_response(),
        None => ApiError::new(
            Code::MissingAuthorization,
            "send Authorization: Bearer KEY with the master key",
        )
        .into_response(),
    }
}

/// For pages: the key may also come from the sign-in cookie; without a valid one
/// the browser is sent to the sign-in form.
pub async fn require_page<S: Store>(
    State((state, scope)): State<(AppState<S>, Scope)>,
    request: Request,
    next: Next,
) -> Response {
    let from_cookie = cookie(&request, crate::ui::KEY_COOKIE);
    match check_secret(&state, scope, bearer(&request).or(from_cookie.as_deref())) {
        Ok(()) => next.run(request).await,
        Err(e) if e.code == Code::Forbidden => e.into_response(),
        Err(_) => axum::response::Redirect::to("/login").into_response(),
    }
}

fn bearer(request: &Request) -> Option<&str> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim)
}

/// A cookie's value, percent-decoded.
fn cookie(request: &Request, name: &str) -> Option<String> {
    let cookies = request.headers().get(header::COOKIE)?.to_str().ok()?;
    let value = cookies
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)?
        .1;
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        let escaped = (first == b'%')
            .then(|| std::str::from_utf8(tail.get(..2)?).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                rest = &tail[2..];
            }
            None => {
                out.push(first);
                rest = tail;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn check<S: Store>(state: &AppState<S>, scope: Scope, request: &Request) -> Result<(), ApiError> {
    check_secret(state, scope, bearer(request))
}

fn check_secret<S: Store>(state: &AppState<S>, scope: Scope, secret: Option<&str>) -> Result<(), ApiError> {
    let Some(master) = &state.master_key else { return Ok(()) };
    let Some(secret) = secret else {
        return Err(ApiError::new(
            Code::MissingAuthorization,
            "send Authorization: Bearer KEY with the master key or an API key",
        ));
    };
    if constant_time_eq(secret.as_bytes(), master.as_bytes()) {
        return Ok(());
    }
    match state.store.authenticate(secret) {
        Some(key) if key.allows(scope) => Ok(()),
        Some(key) => Err(ApiError::new(
            Code::Forbidden,
            format!(
                "key {} has scopes [{}]; this route needs {}",
                key.uid,
                scopes(&key.scopes),
                scope.as_str()
            ),
        )),
        None => Err(ApiError::new(Code::InvalidApiKey, "the key is unknown or revoked")),
    }
}

fn scopes(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// Compares secrets without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
