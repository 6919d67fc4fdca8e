//! Segment's HTTP Tracking API at the root — `POST /v1/identify`, `/v1/track`,
//! `/v1/page`, `/v1/screen`, `/v1/group`, `/v1/alias`, `/v1/batch` and
//! `/v1/import` (the same as batch), and the short names analytics.js posts to
//! (`/v1/t`, `/v1/p`, `/v1/i`, `/v1/s`, `/v1/g`, `/v1/a`, `/v1/b`) — so that
//! Segment's and RudderStack's SDKs send to troth as they are (docs/segment.md).
//! This is the thin part: the body
//! (gzip, Segment's limits), the write key, storing. Reading a message as an event
//! is `troth_core::segment`'s.
//!
//! Answers as Segment does: `200 {"success": true}` once the body is read, even
//! when some of its messages were refused, since an SDK would only send them
//! again. Each refused message is recorded with the field at fault for
//! `GET /api/v1/segment/rejected`. What concerns the whole body (not JSON, over a
//! limit, a wrong key) is answered with problem+json, and an SDK sees it.

use std::borrow::Cow;
use std::io::Read;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value};
use troth_core::segment::{Batch, Call};
use troth_core::{FieldError, Timestamp, ValidEvent};
use troth_store::{AppendStatus, Scope, SegmentRejected, SegmentRejection, Store};

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::extract::{Params, limit_param, unknown_param};

/// Segment's limit on one call, and on each message of a batch, decompressed.
pub const MAX_CALL_BYTES: usize = 32 * 1024;
/// Segment's limit on a batch, decompressed.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;

/// Segment's routes and the call each takes; `None` for a batch. analytics.js
/// posts to the first letter of the call (`/v1/t`), and batches to `/v1/b`.
const ROUTES: &[(&str, Option<Call>)] = &[
    ("/v1/identify", Some(Call::Identify)),
    ("/v1/track", Some(Call::Track)),
    ("/v1/page", Some(Call::Page)),
    ("/v1/screen", Some(Call::Screen)),
    ("/v1/group", Some(Call::Group)),
    ("/v1/alias", Some(Call::Alias)),
    ("/v1/batch", None),
    ("/v1/import", None),
    ("/v1/i", Some(Call::Identify)),
    ("/v1/t", Some(Call::Track)),
    ("/v1/p", Some(Call::Page)),
    ("/v1/s", Some(Call::Screen)),
    ("/v1/g", Some(Call::Group)),
    ("/v1/a", Some(Call::Alias)),
    ("/v1/b", None),
];

/// The body limit of a Segment route; `None` for any other path.
pub fn limit(path: &str) -> Option<usize> {
    ROUTES.iter().find(|(route, _)| *route == path).map(|(_, call)| {
        if call.is_some() {
            MAX_CALL_BYTES
        } else {
            MAX_BATCH_BYTES
        }
    })
}

/// Segment's routes, with the preflight browsers send before a cross-site call.
pub fn routes<S: Store + Clone>() -> axum::Router<AppState<S>> {
    use axum::routing::post;
    let mut router = axum::Router::new();
    for (path, call) in ROUTES {
        let handler = match call {
            Some(Call::Identify) => post(identify::<S>),
            Some(Call::Track) => post(track::<S>),
            Some(Call::Page) => post(page::<S>),
            Some(Call::Screen) => post(screen::<S>),
            Some(Call::Group) => post(group::<S>),
            Some(Call::Alias) => post(alias::<S>),
            None if *path == "/v1/import" => post(import::<S>),
            None => post(batch::<S>),
        };
        router = router.route(path, handler.options(preflight));
    }
    router
}

/// A batch as Segment's batch route takes it (described for the API reference).
#[derive(Debug, utoipa::ToSchema)]
#[schema(as = SegmentBatch)]
pub struct BatchBody {
    /// The messages, each with its `type`: identify, track, page, screen, group or alias.
    #[schema(value_type = Vec<Object>)]
    pub batch: Vec<Value>,
    /// When the device sent the batch, by its own clock: see docs/segment.md for the time.
    #[schema(rename = "sentAt")]
    pub sent_at: Option<String>,
    /// Holds for every message whose own `context` lacks a key.
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
    /// The write key, when not sent as Basic authentication.
    #[schema(rename = "writeKey")]
    pub write_key: Option<String>,
}

/// Segment's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Success {
    /// Always true: the body was read. Refused messages are listed at `/api/v1/segment/rejected`.
    pub success: bool,
}

macro_rules! call_route {
    ($name:ident, $path:literal, $call:expr, $what:literal) => {
        #[doc = $what]
        #[utoipa::path(
            post, path = $path, tag = "segment",
            request_body(content = Object, description = "A Segment message (at most 32 KiB decompressed; gzip with `Content-Encoding: gzip`). `writeKey` in the body may stand for the Basic user name."),
            responses(
                (status = 200, description = "The body was read; refused messages are listed at `/api/v1/segment/rejected`", body = Success),
                (status = 400, description = "Not JSON, or not an object", body = crate::error::Problem, content_type = "application/problem+json"),
                (status = 413, description = "Over 32 KiB once decompressed", body = crate::error::Problem, content_type = "application/problem+json"),
            ),
            security(("write_key" = []))
        )]
        pub async fn $name<S: Store>(
            State(state): State<AppState<S>>,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            receive(&state, uri.path(), $call, &headers, &body).await
        }
    };
}

call_route!(
    identify,
    "/v1/identify",
    Some(Call::Identify),
    "Segment's identify: who the user is and their traits (`customer.identified`). Also at `/v1/i`, where analytics.js posts it."
);
call_route!(
    track,
    "/v1/track",
    Some(Call::Track),
    "Segment's track: an event the user did; its name picks the troth type (docs/segment.md). Also at `/v1/t`."
);
call_route!(
    page,
    "/v1/page",
    Some(Call::Page),
    "Segment's page: a page viewed (`page.viewed`). Also at `/v1/p`."
);
call_route!(
    screen,
    "/v1/screen",
    Some(Call::Screen),
    "Segment's screen: an app screen viewed (`page.viewed`). Also at `/v1/s`."
);
call_route!(
    group,
    "/v1/group",
    Some(Call::Group),
    "Segment's group: the user's company or account (`x.segment.group`). Also at `/v1/g`."
);
call_route!(
    alias,
    "/v1/alias",
    Some(Call::Alias),
    "Segment's alias: `previousId` and `userId` are one person (`x.segment.alias`; their customers merge). Also at `/v1/a`."
);

macro_rules! batch_route {
    ($name:ident, $path:literal, $what:literal) => {
        #[doc = $what]
        #[utoipa::path(
            post, path = $path, tag = "segment",
            request_body(content = BatchBody, description = "At most 500 KiB decompressed, each message at most 32 KiB; gzip with `Content-Encoding: gzip`."),
            responses(
                (status = 200, description = "The body was read; refused messages are listed at `/api/v1/segment/rejected`", body = Success),
                (status = 400, description = "Not JSON, not an object, or `batch` is not an array", body = crate::error::Problem, content_type = "application/problem+json"),
                (status = 413, description = "Over 500 KiB once decompressed", body = crate::error::Problem, content_type = "application/problem+json"),
            ),
            security(("write_key" = []))
        )]
        pub async fn $name<S: Store>(
            State(state): State<AppState<S>>,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            receive(&state, uri.path(), None, &headers, &body).await
        }
    };
}

batch_route!(
    batch,
    "/v1/batch",
    "Segment's batch: many messages of any call at once. Also at `/v1/b`, where analytics.js posts its batches."
);
batch_route!(
    import,
    "/v1/import",
    "Segment's import: the same as `/v1/batch`, for history."
);

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RejectedList {
    /// Newest first: at, route, field (as the sender wrote it, e.g.
    /// `batch[3].properties.total`), reason, message (as sent, the write key taken out).
    #[schema(value_type = Vec<Object>)]
    pub rejected: Vec<SegmentRejected>,
}

/// List the Segment messages troth refused, newest first (the newest 10,000 are kept).
#[utoipa::path(
    get, path = "/api/v1/segment/rejected", tag = "segment",
    params(("limit" = Option<usize>, Query, description = "1–1000, default 100")),
    responses(
        (status = 200, body = RejectedList),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn rejected<S: Store>(
    State(state): State<AppState<S>>,
    Params(params): Params,
) -> Result<Json<RejectedList>, ApiError> {
    let mut limit = crate::read::DEFAULT_LIMIT;
    for (name, value) in &params {
        match name.as_str() {
            "limit" => limit = limit_param(name, value)?,
            other => return Err(unknown_param(other, "limit")),
        }
    }
    let rejected = state.store.segment_rejections(limit).await?;
    Ok(Json(RejectedList { rejected }))
}

/// `Access-Control-Allow-Origin: *` for the answers of Segment's routes (see [`preflight`]).
pub(crate) fn allow_any_origin(headers: &mut HeaderMap) {
    headers
        .entry(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .or_insert(HeaderValue::from_static("*"));
}

async fn receive<S: Store>(
    state: &AppState<S>,
    route: &str,
    call: Option<Call>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    match store(state, route, call, headers, body).await {
        Ok(()) => Json(Success { success: true }).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A cross-site call's preflight: analytics.js runs on the shop's pages, and
/// RudderStack's SDK sends the key in `Authorization`. No cookie is ever taken
/// here, so any site may call (`Access-Control-Allow-Origin: *` is on every answer
/// of these routes, see `browsers.rs`).
async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "POST, OPTIONS"),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Authorization, Content-Type, Content-Encoding",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
        .into_response()
}

/// Reads the body, stores its events and records its refused messages.
async fn store<S: Store>(
    state: &AppState<S>,
    route: &str,
    call: Option<Call>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let received = Timestamp::now();
    let mut top = read_body(state, call, headers, body)?;
    // A batch's messages, and what else its body holds (`sentAt`, `context`).
    let (messages, rest) = match call {
        Some(_) => (vec![Value::Object(top)], None),
        None => (batch_messages(&mut top)?, Some(top)),
    };
    let shared = match call {
        Some(call) => Batch::single(received, call),
        None => Batch {
            received,
            call: None,
            sent_at: rest.as_ref().and_then(|t| t.get("sentAt")),
            context: rest.as_ref().and_then(|t| t.get("context")).and_then(Value::as_object),
        },
    };
    let (events, refused) = read_messages(state, route, messages, &shared);
    let rejected = refused.len() as u64;
    if rejected > 0 {
        tracing::info!(
            route,
            rejected,
            "Segment messages refused; listed at /api/v1/segment/rejected"
        );
    }
    // Both go to the log writer, and may share its commit.
    let (appended, recorded) = tokio::join!(
        crate::ingest::append(state, events),
        state.store.record_segment_rejections(refused)
    );
    recorded?;
    let statuses = appended?;
    let accepted = statuses
        .iter()
        .filter(|s| matches!(s, AppendStatus::Accepted { .. }))
        .count() as u64;
    state
        .metrics
        .count_events(accepted, statuses.len() as u64 - accepted, rejected);
    Ok(())
}

/// The body's JSON object, once its write key is known to be good: a key in the
/// header is checked before the body is inflated or read, `writeKey` in the body
/// after. The key is taken out: it is not part of any message, and never stored.
fn read_body<S: Store>(
    state: &AppState<S>,
    call: Option<Call>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    let header_key = header_key(headers)?;
    if let Some(key) = &header_key {
        authorize(state, Some(key))?;
    }
    let limit = if call.is_some() {
        MAX_CALL_BYTES
    } else {
        MAX_BATCH_BYTES
    };
    let body = decompressed(headers, body, limit)?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::new(Code::InvalidJson, format!("the body is not UTF-8: {e}")))?;
    let parsed: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::new(Code::InvalidJson, format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut top) = parsed else {
        return Err(ApiError::new(
            Code::InvalidSegmentBody,
            "send a JSON object: one message, or {\"batch\": [messages]} to /v1/batch",
        ));
    };
    let body_key = top.remove("writeKey");
    if header_key.is_none() {
        authorize(state, body_key.as_ref().and_then(Value::as_str))?;
    }
    Ok(top)
}

/// Each message read as an event, or refused with the field at fault.
fn read_messages<S>(
    state: &AppState<S>,
    route: &str,
    messages: Vec<Value>,
    shared: &Batch<'_>,
) -> (Vec<ValidEvent>, Vec<SegmentRejection>) {
    let mut events = Vec::with_capacity(messages.len());
    let mut refused = Vec::new();
    for (i, mut message) in messages.into_iter().enumerate() {
        let at = match shared.call {
            Some(_) => String::new(),
            None => format!("batch[{i}]"),
        };
        if let Some(object) = message.as_object_mut() {
            object.remove("writeKey");
        }
        let size = json_len(&message);
        let read = if size > MAX_CALL_BYTES {
            Err(FieldError::new(
                at.as_str(),
                format!("is {size} bytes; Segment's limit for one message is {MAX_CALL_BYTES} (32 KiB)"),
            ))
        } else {
            troth_core::segment::read(&message, shared, &state.segment, &at)
        };
        match read {
            Ok(event) => events.push(event),
            Err(error) => refused.push(SegmentRejection {
                route: route.to_owned(),
                key: troth_core::segment::message_key(&message),
                field: error.field,
                reason: error.message,
                message: kept_text(&message),
            }),
        }
    }
    (events, refused)
}

/// A batch's messages; what else the body holds (`sentAt`, `context`) stays in `top`.
fn batch_messages(top: &mut Map<String, Value>) -> Result<Vec<Value>, ApiError> {
    if let Some(context) = top.get("context").filter(|c| !(c.is_object() || c.is_null())) {
        return Err(ApiError::field(
            Code::InvalidSegmentBody,
            "context",
            format!("context must be an object, not {}", troth_core::field::kind_of(context)),
        ));
    }
    match top.remove("batch") {
        Some(Value::Array(messages)) => Ok(messages),
        Some(other) => Err(ApiError::field(
            Code::InvalidSegmentBody,
            "batch",
            format!(
                "batch must be an array of messages, not {}",
                troth_core::field::kind_of(&other)
            ),
        )),
        None => Err(ApiError::field(
            Code::InvalidSegmentBody,
            "batch",
            "batch is required: an array of messages",
        )),
    }
}

/// The body as sent, or inflated when it is gzip: refused past `limit` bytes, so a
/// small body that would inflate to gigabytes costs `limit` and no more.
fn decompressed<'a>(headers: &HeaderMap, body: &'a [u8], limit: usize) -> Result<Cow<'a, [u8]>, ApiError> {
    let too_large = || {
        ApiError::new(
            Code::PayloadTooLarge,
            format!(
                "the body is over Segment's limit of {limit} bytes ({} KiB) for this route, counted decompressed",
                limit / 1024
            ),
        )
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") if body.len() > limit => Err(too_large()),
        None | Some("" | "identity") => Ok(Cow::Borrowed(body)),
        Some("gzip" | "x-gzip") => {
            let mut inflated = Vec::new();
            flate2::read::MultiGzDecoder::new(body)
                .take(limit as u64 + 1)
                .read_to_end(&mut inflated)
                .map_err(|e| ApiError::new(Code::InvalidSegmentBody, format!("the body is not valid gzip: {e}")))?;
            if inflated.len() > limit {
                return Err(too_large());
            }
            Ok(Cow::Owned(inflated))
        }
        Some(other) => Err(ApiError::new(
            Code::UnsupportedMediaType,
            format!("Content-Encoding {other:?} is not accepted; send gzip, or no encoding"),
        )),
    }
}

/// The key in `Authorization`: the user name of Basic authentication (Segment's
/// write key; the password is not used), or a bearer key as the rest of the API takes.
fn header_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let unreadable = || {
        ApiError::new(
            Code::InvalidApiKey,
            "send the write key as the user name of Basic authentication (Authorization: Basic base64(KEY:))",
        )
    };
    let value = value.to_str().map_err(|_| unreadable())?.trim();
    let (scheme, credentials) = value.split_once(' ').ok_or_else(unreadable)?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Some(credentials.trim().to_owned()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(unreadable());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(unreadable)?;
    let user = decoded.split_once(':').map_or(decoded.as_str(), |(user, _)| user);
    Ok(Some(user.to_owned()))
}

/// A write key may send when it is the master key or a key with the `ingest`
/// scope; without a master key the API is open, as everywhere.
fn authorize<S: Store>(state: &AppState<S>, key: Option<&str>) -> Result<(), ApiError> {
    if state.master_key.is_some() && key.is_none_or(str::is_empty) {
        return Err(ApiError::new(
            Code::MissingAuthorization,
            "send the write key (a troth API key with the ingest scope) as the user name of Basic authentication, or as writeKey in the body",
        ));
    }
    crate::auth::check_secret(state, Scope::Ingest, key)
}

/// The length of a value's compact JSON text, without making it.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// A refused message as recorded: its JSON, cut at Segment's limit for one
/// message (the record is for finding what went wrong, not a copy of everything).
fn kept_text(message: &Value) -> String {
    let mut text = message.to_string();
    if text.len() > MAX_CALL_BYTES {
        let mut end = MAX_CALL_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    #[test]
    fn the_write_key_is_basics_user_name() {
        let basic = |credentials: &str| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
            header_key(&headers(&[(header::AUTHORIZATION, &format!("Basic {encoded}"))]))
        };
        assert_eq!(basic("troth_abc:").unwrap().as_deref(), Some("troth_abc"));
        assert_eq!(basic("troth_abc:ignored").unwrap().as_deref(), Some("troth_abc"));
        assert_eq!(basic("troth_abc").unwrap().as_deref(), Some("troth_abc"));
        let bearer = header_key(&headers(&[(header::AUTHORIZATION, "Bearer troth_abc")])).unwrap();
        assert_eq!(bearer.as_deref(), Some("troth_abc"));
        assert_eq!(header_key(&HeaderMap::new()).unwrap(), None);
        for bad in ["Basic !!!", "Digest x", "troth_abc"] {
            let error = header_key(&headers(&[(header::AUTHORIZATION, bad)])).unwrap_err();
            assert_eq!(error.code, Code::InvalidApiKey, "{bad}");
        }
    }

    #[test]
    fn a_gzip_body_is_read_only_up_to_the_limit() {
        use std::io::Write;
        let gzip = |bytes: &[u8]| {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(bytes).unwrap();
            encoder.finish().unwrap()
        };
        let gzipped = headers(&[(header::CONTENT_ENCODING, "gzip")]);
        let small = gzip(b"{\"a\":1}");
        assert_eq!(&*decompressed(&gzipped, &small, 100).unwrap(), b"{\"a\":1}");
        // 10 MB of zeros inflate from a few KiB: refused after the limit.
        let bomb = gzip(&vec![b'0'; 10_000_000]);
        assert!(bomb.len() < 20_000);
        let error = decompressed(&gzipped, &bomb, MAX_BATCH_BYTES).unwrap_err();
        assert_eq!(error.code, Code::PayloadTooLarge);
        assert!(error.detail.contains("512000"), "{}", error.detail);
        let error = decompressed(&gzipped, b"not gzip", 100).unwrap_err();
        assert_eq!(error.code, Code::InvalidSegmentBody);
        let error = decompressed(&headers(&[(header::CONTENT_ENCODING, "br")]), b"x", 100).unwrap_err();
        assert_eq!(error.code, Code::UnsupportedMediaType);
        let error = decompressed(&HeaderMap::new(), &[b' '; 101], 100).unwrap_err();
        assert_eq!(error.code, Code::PayloadTooLarge);
    }

    #[test]
    fn a_refused_message_is_kept_up_to_the_limit_of_one() {
        let big = serde_json::json!({"event": "é".repeat(MAX_CALL_BYTES)});
        let kept = kept_text(&big);
        assert!(kept.len() <= MAX_CALL_BYTES + '…'.len_utf8() && kept.ends_with('…'));
        assert_eq!(json_len(&big), big.to_string().len());
    }
}
