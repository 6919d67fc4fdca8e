//! Browsers cannot be turned against troth. A web page that an operator or a
//! customer visits can make their browser send requests to troth; these rules keep
//! such requests from doing or reading anything:
//!
//! - **open mode** (no master key) answers only requests addressed to a loopback
//!   host name, so a DNS name rebound to 127.0.0.1 cannot read customers;
//! - **API writes** must say they are JSON (or NDJSON): a cross-site form can send
//!   only form or plain-text bodies, and a foreign `Origin` is refused outright;
//! - **page forms** (the tracking page's, sign-in, sign-out, an agent's actions on a
//!   customer's page) are accepted only with an `Origin` (or, failing that, a
//!   `Referer`) of this same host: a missing one is refused too. The session cookie
//!   is `SameSite=Strict` besides;
//! - **Segment's routes** (`/v1/track`, `/v1/batch`…) may be called from any site,
//!   as analytics.js runs on the shop's own pages: their answers allow any origin
//!   (CORS). They take no cookie and no session, only a write key sent with the call;
//! - **every answer** says `nosniff`, sends a `Referer` only to troth itself (tracking
//!   links carry their token in the URL), may not be framed, and pages run only troth's own
//!   scripts (CSP); uploaded photos are served under a policy that runs nothing. The
//!   tracking page may also load images from the one origin of the configured map
//!   tiles and, once delivered, from the origin of the proof photo it shows, and
//!   nothing else from anywhere else.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{Html, IntoResponse, Response};

use crate::AppState;
use crate::error::{ApiError, Code};

/// The pages' policy: troth's own scripts, styles (and inline style attributes,
/// whose values are escaped), images from here or inline, no framing.
const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The tracking page's policy: the pages' one, with the tile server's origin and,
/// on a page showing a proof photo, the photo's (each a checked
/// `scheme://host[:port]`, see [`crate::tracking::tile_origin`], separated by
/// spaces) allowed for images only. Scripts, connections and everything else stay
/// troth's own.
pub(crate) fn tracking_policy(image_origins: &str) -> String {
    PAGE_POLICY.replacen(
        "img-src 'self' data:;",
        &format!("img-src 'self' data: {image_origins};"),
        1,
    )
}
/// Uploaded files: shown as images, never run.
const UPLOAD_POLICY: &str = "default-src 'none'; img-src 'self'; sandbox; frame-ancestors 'none'";

/// The answer refusing a request that breaks one of the rules above, if it does.
pub fn refused<S>(state: &AppState<S>, request: &Request) -> Option<Response> {
    refusal(
        state.master_key.is_some(),
        request.method(),
        request.uri().path(),
        request.headers(),
    )
}

/// The answer with the headers every answer carries.
pub fn secured<S>(state: &AppState<S>, response: Response, path: &str) -> Response {
    let tiles = path
        .starts_with("/t/")
        .then(|| crate::tracking::Tiles::of(&state.tracking.config).map(|t| t.origin))
        .flatten();
    with_headers(response, path, tiles.as_deref())
}

/// The answer refusing the request, if it breaks a rule.
fn refusal(has_master_key: bool, method: &Method, path: &str, headers: &HeaderMap) -> Option<Response> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if !has_master_key && host.is_some_and(|h| !is_loopback(h)) {
        return Some(
            ApiError::new(
                Code::Forbidden,
                "without a master key troth answers only requests to localhost, 127.0.0.1 or [::1]",
            )
            .into_response(),
        );
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if path.starts_with("/api/") {
        if let Some(origin) = origin
            && !same_host(origin, host)
        {
            return Some(
                ApiError::new(Code::Forbidden, format!("requests from {origin} are not accepted")).into_response(),
            );
        }
        if has_body(headers) && !is_json(headers) {
            return Some(
                ApiError::new(
                    Code::UnsupportedMediaType,
                    "send the body as application/json (application/x-ndjson for /events/ndjson)",
                )
                .into_response(),
            );
        }
        return None;
    }
    if is_page_form(path) {
        let from = origin.or_else(|| headers.get(header::REFERER).and_then(|r| r.to_str().ok()));
        if !from.is_some_and(|from| same_host(from, host)) {
            let page = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
                        <title>Not accepted</title></head><body><h1>Not accepted</h1>\
                        <p>This form is accepted only from troth's own page. Open the page again and send it from there.</p></body></html>";
            return Some((axum::http::StatusCode::FORBIDDEN, Html(page)).into_response());
        }
    }
    None
}

/// Adds the headers every answer carries; `tile_origin` is the map tiles' origin,
/// which only tracking pages (`/t/…`) may load images from.
fn with_headers(mut response: Response, path: &str, tile_origin: Option<&str>) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name, value: &'static str| {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if crate::segment::limit(path).is_some() {
        crate::segment::allow_any_origin(headers);
    }
    // Not `no-referrer`: with it browsers send `Origin: null` on the page's own forms.
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    if path.ends_with("-photo") {
        set(headers, header::CONTENT_SECURITY_POLICY, UPLOAD_POLICY);
    } else if let Some(origin) = tile_origin.filter(|_| path.starts_with("/t/")) {
        // The origin is made only of host characters, so it is a valid header value.
        let policy = HeaderValue::from_str(&tracking_policy(origin)).unwrap_or(HeaderValue::from_static(PAGE_POLICY));
        headers.entry(header::CONTENT_SECURITY_POLICY).or_insert(policy);
    } else {
        set(headers, header::CONTENT_SECURITY_POLICY, PAGE_POLICY);
    }
    response
}

/// The browser forms troth serves: the tracking page's, sign-in and sign-out, and
/// the staff pages' (an agent's actions on a customer's page).
fn is_page_form(path: &str) -> bool {
    path.starts_with("/t/") || path.starts_with("/ui/") || path == "/login" || path == "/logout"
}

fn has_body(headers: &HeaderMap) -> bool {
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
    length.is_some_and(|n| n.trim() != "0") || headers.contains_key(header::TRANSFER_ENCODING)
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || essence == "application/x-ndjson" || essence.ends_with("+json")
}

/// Whether an `Origin` or `Referer` names the host the request was sent to.
fn same_host(from: &str, host: Option<&str>) -> bool {
    let authority = from
        .strip_prefix("https://")
        .or_else(|| from.strip_prefix("http://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(rest));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_host_names() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "127.9.9.9",
            "[::1]:8080",
            "[::1]",
            "LOCALHOST",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:80",
            "localhost.evil.example",
            "10.0.0.1:8080",
            "[::2]",
            "",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn origins_and_referers_against_the_host() {
        assert!(same_host("http://shop.example", Some("shop.example")));
        assert!(same_host("https://shop.example/t/abc?x=1", Some("shop.example")));
        assert!(!same_host("https://shop.example.evil", Some("shop.example")));
        assert!(!same_host("null", Some("shop.example")));
        assert!(!same_host("http://shop.example", None));
    }

    fn policy_of(path: &str, tile_origin: Option<&str>) -> String {
        let response = with_headers(Response::default(), path, tile_origin);
        response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn only_tracking_pages_may_load_the_tiles_origin() {
        let origin = Some("https://tile.openstreetmap.org");
        let page = policy_of("/t/abc", origin);
        assert!(
            page.contains("img-src 'self' data: https://tile.openstreetmap.org;"),
            "{page}"
        );
        // Everything but images stays as strict as every other page's.
        assert_eq!(page.replace(" https://tile.openstreetmap.org", ""), PAGE_POLICY);
        assert_eq!(policy_of("/t/abc", None), PAGE_POLICY);
        assert_eq!(policy_of("/ui/journeys/retail", origin), PAGE_POLICY);
        assert_eq!(policy_of("/t/abc/safe-place-photo", origin), UPLOAD_POLICY);
    }
}
