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
    mut request: Request,
    next: Next,
) -> Response {
    match check(&state, scope, &request) {
        Ok(()) => {
            let reader = reader_of_secret(&state, bearer(&request));
            request.extensions_mut().insert(reader);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// Who made a request that passed the key check, as reads of customers' data are
/// recorded (`crate::audit`): an API key by its uid and name, `master`, or `open`
/// when the API needs no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    pub id: String,
    pub name: Option<String>,
}

impl Reader {
    fn named(id: &str) -> Reader {
        Reader {
            id: id.to_owned(),
            name: None,
        }
    }
}

fn reader_of_secret<S: Store>(state: &AppState<S>, secret: Option<&str>) -> Reader {
    let Some(master) = &state.master_key else {
        return Reader::named("open");
    };
    match secret {
        Some(secret) if constant_time_eq(secret.as_bytes(), master.as_bytes()) => Reader::named("master"),
        Some(secret) => state.store.authenticate(secret).map_or_else(
            || Reader::named("unknown"),
            |key| Reader {
                id: key.uid,
                name: key.name,
            },
        ),
        None => Reader::named("unknown"),
    }
}

fn reader_of_principal<S: Store>(state: &AppState<S>, principal: &crate::sessions::Principal) -> Reader {
    match principal {
        crate::sessions::Principal::Master => Reader::named("master"),
        crate::sessions::Principal::Key(uid) => Reader {
            id: uid.clone(),
            name: state.store.api_key(uid).and_then(|key| key.name),
        },
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

/// For pages: a bearer key, or a sign-in session (see [`crate::sessions`]); without
/// either the browser is sent to the sign-in form.
pub async fn require_page<S: Store>(
    State((state, scope)): State<(AppState<S>, Scope)>,
    mut request: Request,
    next: Next,
) -> Response {
    if state.master_key.is_none() {
        request.extensions_mut().insert(Reader::named("open"));
        return next.run(request).await;
    }
    let session = session_id(&request).and_then(|id| state.sessions.get(&id));
    let checked = match (bearer(&request), session) {
        (Some(secret), _) => {
            check_secret(&state, scope, Some(secret)).map(|()| (false, reader_of_secret(&state, Some(secret))))
        }
        (None, Some(principal)) => {
            check_principal(&state, scope, &principal).map(|()| (true, reader_of_principal(&state, &principal)))
        }
        (None, None) => Err(ApiError::new(Code::MissingAuthorization, "sign in")),
    };
    match checked {
        Ok((in_session, reader)) => {
            request.extensions_mut().insert(reader);
            crate::sessions::SIGNED_IN.scope(in_session, next.run(request)).await
        }
        // Pages say it in words: a person reads it, not a client.
        Err(e) if e.code == Code::Forbidden => {
            let body = format!("<p>{}</p>", crate::ui::esc(&e.detail));
            (
                axum::http::StatusCode::FORBIDDEN,
                axum::response::Html(crate::ui::html::page("Not allowed", None, &body)),
            )
                .into_response()
        }
        Err(_) => axum::response::Redirect::to("/login").into_response(),
    }
}

/// The id in the request's session cookie.
pub fn session_id(request: &Request) -> Option<String> {
    cookie(request.headers(), crate::sessions::COOKIE)
}

/// Checks a key typed into the sign-in form: who it signs in as, if pages may be
/// read with it.
pub fn sign_in<S: Store>(state: &AppState<S>, secret: &str) -> Result<crate::sessions::Principal, ApiError> {
    use crate::sessions::Principal;
    let master = state.master_key.as_deref().unwrap_or("");
    if !master.is_empty() && constant_time_eq(secret.as_bytes(), master.as_bytes()) {
        return Ok(Principal::Master);
    }
    check_secret(state, Scope::Read, Some(secret))?;
    match state.store.authenticate(secret) {
        Some(key) => Ok(Principal::Key(key.uid)),
        None => Err(ApiError::new(Code::InvalidApiKey, "the key is unknown or revoked")),
    }
}

fn check_principal<S: Store>(
    state: &AppState<S>,
    scope: Scope,
    principal: &crate::sessions::Principal,
) -> Result<(), ApiError> {
    match principal {
        crate::sessions::Principal::Master => Ok(()),
        crate::sessions::Principal::Key(uid) => match state.store.api_key(uid) {
            Some(key) if key.allows(scope) => Ok(()),
            Some(_) => Err(ApiError::new(
                Code::Forbidden,
                format!("this key cannot use {}", scope.as_str()),
            )),
            None => Err(ApiError::new(
                Code::InvalidApiKey,
                "the key of this session was revoked",
            )),
        },
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
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
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

/// Whether `secret` may use a route of `scope`: the master key, or a key with the
/// scope; anything goes without a master key.
pub(crate) fn check_secret<S: Store>(state: &AppState<S>, scope: Scope, secret: Option<&str>) -> Result<(), ApiError> {
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
