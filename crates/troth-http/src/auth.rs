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

fn check<S: Store>(state: &AppState<S>, scope: Scope, request: &Request) -> Result<(), ApiError> {
    let Some(master) = &state.master_key else {
        return Ok(());
    };
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(secret) = header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim) else {
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
