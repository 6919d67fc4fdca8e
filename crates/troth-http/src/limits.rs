//! Limits on every route, so that no client can take the server's memory, its
//! connections or its customers' attention:
//!
//! - **bodies** ([`body_limit`]): refused with 413 before reading when the declared
//!   length is over the route's limit, and cut off while reading when a chunked
//!   body goes over it, so memory stays flat whatever is sent;
//! - **time**: a request must be answered (its head) within `request_timeout`
//!   (408); the head itself must arrive within [`crate::server::HEADER_READ_TIMEOUT`];
//! - **concurrency**: at most `concurrency` requests are handled at once, the rest wait;
//! - **rate** per client address on the routes that a person or a phone calls
//!   without an API key: sign-in, the tracking page's forms and OsmAnd reports (429
//!   with `Retry-After`).
//!
//! API routes answer with problem+json, pages with a short HTML page.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use futures_util::StreamExt;
use governor::{DefaultKeyedRateLimiter, Quota};
use troth_store::Store;

use crate::AppState;
use crate::error::{ApiError, Code};

/// What the limits are set to; [`Limits::default`] is what `troth serve` uses.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Sign-in attempts per client address per minute (a guessing attacker's pace).
    pub login_per_minute: u32,
    /// Tracking-page form posts per client address per minute.
    pub forms_per_minute: u32,
    /// OsmAnd reports per client address per second: a depot's phones may share one address.
    pub osmand_per_second: u32,
    pub request_timeout: Duration,
    pub concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            login_per_minute: 10,
            forms_per_minute: 20,
            osmand_per_second: 50,
            request_timeout: Duration::from_secs(30),
            concurrency: 1024,
        }
    }
}

/// The largest body a route takes; `None` for the streamed NDJSON ingest, whose
/// lines are read and stored as they come (each at most an event's 64 KiB).
pub fn body_limit(path: &str) -> Option<usize> {
    const KIB: usize = 1024;
    // Segment's own limits (a compressed body is not longer than it inflates to:
    // JSON compresses), counted again once a gzip body is inflated.
    if let Some(limit) = crate::segment::limit(path) {
        return Some(limit);
    }
    match path {
        "/api/v1/events/ndjson" => None,
        // A batch of at most 1,000 events, or of positions.
        "/api/v1/events" => Some(crate::ingest::MAX_BODY_BYTES),
        p if p.starts_with("/api/v1/drivers/") && p.ends_with("/positions") => Some(crate::ingest::MAX_BODY_BYTES),
        // The photo plus the form's other fields.
        p if p.starts_with("/t/") && p.ends_with("/safe-place") => Some(crate::tracking::MAX_PHOTO_BYTES + 64 * KIB),
        // One report of a GPS app, or Traccar Client's JSON of a few.
        "/osmand" => Some(64 * KIB),
        // A key.
        "/login" => Some(4 * KIB),
        // Forms, key requests and everything else that takes a body: short text.
        _ => Some(16 * KIB),
    }
}

/// The per-client rate limiters, shared by every request.
pub struct Guards {
    limits: Limits,
    login: DefaultKeyedRateLimiter<IpAddr>,
    forms: DefaultKeyedRateLimiter<IpAddr>,
    osmand: DefaultKeyedRateLimiter<IpAddr>,
}

impl std::fmt::Debug for Guards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guards")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Guards {
    pub fn new(limits: Limits) -> Guards {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        let per_second = |n: u32| Quota::per_second(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Guards {
            login: DefaultKeyedRateLimiter::keyed(per_minute(limits.login_per_minute)),
            forms: DefaultKeyedRateLimiter::keyed(per_minute(limits.forms_per_minute)),
            osmand: DefaultKeyedRateLimiter::keyed(per_second(limits.osmand_per_second)),
            limits,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Forgets clients whose allowance is full again, so the maps stay small.
    pub fn forget_idle(&self) {
        self.login.retain_recent();
        self.forms.retain_recent();
        self.osmand.retain_recent();
    }

    fn limiter(&self, method: &Method, path: &str) -> Option<&DefaultKeyedRateLimiter<IpAddr>> {
        match path {
            "/osmand" => Some(&self.osmand),
            "/login" if method == Method::POST => Some(&self.login),
            p if p.starts_with("/t/") && method == Method::POST => Some(&self.forms),
            _ => None,
        }
    }
}

impl Default for Guards {
    fn default() -> Self {
        Guards::new(Limits::default())
    }
}

/// The same for the OsmAnd port, where every path is an OsmAnd report.
pub async fn guard_osmand<S: Store>(State(state): State<AppState<S>>, request: Request, next: Next) -> Response {
    check(&state.guards, "/osmand", request, next).await
}

/// Runs the request if it is within the rate and body limits of `path`.
pub async fn check(guards: &Arc<Guards>, path: &str, request: Request, next: Next) -> Response {
    if let Some(limiter) = guards.limiter(request.method(), path) {
        let client = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        if let Err(not_until) = limiter.check_key(&client) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            return refuse(path, Refusal::TooMany(wait));
        }
    }
    let Some(limit) = body_limit(path) else {
        return next.run(request).await;
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return refuse(path, Refusal::TooLarge(limit));
    }
    // A declared length is one the body cannot exceed (hyper stops there); only a
    // body without one (chunked) needs counting as it is read.
    let unbounded = declared.is_none()
        && (request.headers().contains_key(header::TRANSFER_ENCODING)
            || !matches!(*request.method(), Method::GET | Method::HEAD));
    // Made only for a body that is counted: most requests declare their length.
    let tripped = unbounded.then(|| Arc::new(AtomicBool::new(false)));
    let request = match &tripped {
        Some(tripped) => {
            let (parts, body) = request.into_parts();
            Request::from_parts(parts, capped(body, limit, tripped.clone()))
        }
        None => request,
    };
    let response = next.run(request).await;
    let bare = !response.headers().contains_key(header::CONTENT_TYPE);
    let cut_off = tripped.is_some_and(|t| t.load(Ordering::Relaxed));
    if cut_off && (bare || response.status() != StatusCode::PAYLOAD_TOO_LARGE) {
        // The body was cut off: whatever the handler made of the rest, the answer is
        // 413 (the handler's own, when it gave one).
        return refuse(path, Refusal::TooLarge(limit));
    }
    // What the timeout answers bare gets the route's own form.
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE if bare => refuse(path, Refusal::TooLarge(limit)),
        StatusCode::REQUEST_TIMEOUT if bare => refuse(path, Refusal::Timeout(guards.limits.request_timeout)),
        _ => response,
    }
}

/// The body, ending in an error (and setting `tripped`) as soon as more than
/// `limit` bytes have come, so nothing reads further.
fn capped(body: Body, limit: usize, tripped: Arc<AtomicBool>) -> Body {
    let mut seen = 0usize;
    Body::from_stream(body.into_data_stream().map(move |chunk| {
        let chunk = chunk?;
        seen = seen.saturating_add(chunk.len());
        if seen > limit {
            tripped.store(true, Ordering::Relaxed);
            return Err(axum::Error::new(std::io::Error::other(format!(
                "the body is over this route's limit of {limit} bytes"
            ))));
        }
        Ok(chunk)
    }))
}

enum Refusal {
    TooLarge(usize),
    TooMany(Duration),
    Timeout(Duration),
}

fn refuse(path: &str, refusal: Refusal) -> Response {
    let (error, retry_after) = match refusal {
        Refusal::TooLarge(limit) => (
            ApiError::new(
                Code::PayloadTooLarge,
                format!("the body is over this route's limit of {} bytes", limit),
            ),
            None,
        ),
        Refusal::TooMany(wait) => {
            let seconds = wait.as_secs() + 1;
            (
                ApiError::new(
                    Code::TooManyRequests,
                    format!("too many requests from this address; try again in {seconds} s"),
                ),
                Some(seconds),
            )
        }
        Refusal::Timeout(limit) => (
            ApiError::new(
                Code::RequestTimeout,
                format!("the request was not answered within {} s", limit.as_secs()),
            ),
            None,
        ),
    };
    let mut response = if is_page(path) {
        let (_, status, title) = error.code.describe();
        let page = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
             <title>{title}</title></head><body><h1>{title}</h1><p>{}</p><p>Go back and try again.</p></body></html>",
            crate::ui::html::esc(&error.detail)
        );
        (status, Html(page)).into_response()
    } else {
        error.into_response()
    };
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Pages people read in a browser, which get an HTML error rather than JSON.
fn is_page(path: &str) -> bool {
    path == "/" || path == "/login" || path.starts_with("/t/") || path.starts_with("/ui/")
}
