//! `POST /api/v1/events` and `POST /api/v1/events/ndjson`: validate each item,
//! append the good ones, answer per item in input order.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use troth_core::envelope::Rejection;
use troth_core::{FieldError, ValidEvent, validate_event};
use troth_store::{AppendStatus, Store};

use crate::AppState;
use crate::error::{ApiError, Code};

/// The most events one JSON request may carry.
pub const MAX_BATCH_EVENTS: usize = 1_000;
/// The largest JSON request body.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// NDJSON lines are appended in groups of this many.
const NDJSON_GROUP: usize = 1_000;

/// The answer for one item of an ingest request.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ItemResult {
    /// The event's id, when it had a readable one.
    pub id: Option<String>,
    pub status: ItemStatus,
    /// The event's position in the log; only for accepted items. Reads given it as
    /// `min_position` answer once their projections include the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// Why the item was rejected; only when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<FieldError>,
    /// The item's line number (from 1); only for NDJSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatus {
    Accepted,
    Duplicate,
    Rejected,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestResponse {
    pub results: Vec<ItemResult>,
}

/// Items of one request, validated, waiting to be appended together.
#[derive(Default)]
struct Pending {
    results: Vec<ItemResult>,
    /// (index into `results`, event) for the items that passed validation.
    valid: Vec<(usize, ValidEvent)>,
}

impl Pending {
    fn push(&mut self, validated: Result<ValidEvent, Rejection>, line: Option<u64>) {
        match validated {
            Ok(event) => {
                self.results.push(ItemResult {
                    id: Some(event.id.clone()),
                    status: ItemStatus::Accepted,
                    position: None,
                    error: None,
                    line,
                });
                self.valid.push((self.results.len() - 1, event));
            }
            Err(rejection) => self.results.push(ItemResult {
                id: rejection.id,
                status: ItemStatus::Rejected,
                position: None,
                error: Some(rejection.error),
                line,
            }),
        }
    }

    /// Appends the valid items and returns every item's result in input order.
    async fn flush<S: Store>(&mut self, state: &AppState<S>) -> Result<Vec<ItemResult>, ApiError> {
        let (indexes, events): (Vec<usize>, Vec<ValidEvent>) = std::mem::take(&mut self.valid).into_iter().unzip();
        let mut results = std::mem::take(&mut self.results);
        let statuses = append(state, events).await?;
        for (index, status) in indexes.into_iter().zip(statuses) {
            match status {
                AppendStatus::Accepted { seq } => results[index].position = Some(seq),
                AppendStatus::Duplicate => results[index].status = ItemStatus::Duplicate,
            }
        }
        count(state, &results);
        Ok(results)
    }
}

/// Appends validated events. Drivers' positions among them are judged and
/// followed live, and route events feed the tracking page's arrival estimates, as
/// through the positions API (see [`crate::positions::append_judged`]).
pub(crate) async fn append<S: Store>(
    state: &AppState<S>,
    events: Vec<ValidEvent>,
) -> Result<Vec<AppendStatus>, ApiError> {
    let now = troth_core::Timestamp::now();
    let fixes = events
        .iter()
        .map(|e| crate::positions::unjudged_fix(e, &state.plausibility, now))
        .collect();
    Ok(crate::positions::append_judged(state, events, fixes).await?.0)
}

fn count<S: Store>(state: &AppState<S>, results: &[ItemResult]) {
    let by = |s| results.iter().filter(|r| r.status == s).count() as u64;
    state.metrics.count_events(
        by(ItemStatus::Accepted),
        by(ItemStatus::Duplicate),
        by(ItemStatus::Rejected),
    );
}

/// Ingest one event or an array of events.
#[utoipa::path(
    post, path = "/api/v1/events", tag = "events",
    request_body(content = Object, description = "One event, or an array of at most 1,000 events (body at most 4 MiB)."),
    responses(
        (status = 200, description = "One result per item, in input order", body = IngestResponse),
        (status = 400, description = "Not JSON, or neither an object nor an array", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn ingest_json<S: Store>(State(state): State<AppState<S>>, body: Bytes) -> Result<Response, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            Code::PayloadTooLarge,
            format!("the body is {} bytes; the limit is {MAX_BODY_BYTES}", body.len()),
        ));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::new(Code::InvalidJson, format!("the body is not UTF-8: {e}")))?;
    let items: Vec<&RawValue> = match text.trim_start().as_bytes().first() {
        Some(b'{') => vec![parse_json::<&RawValue>(text)?],
        Some(b'[') => parse_json(text)?,
        _ => {
            // Say "not JSON" when it is not, and "not an event" when it is other JSON.
            parse_json::<&RawValue>(text)?;
            return Err(ApiError::new(
                Code::InvalidBody,
                "send one event as a JSON object, or an array of events",
            ));
        }
    };
    if items.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::new(
            Code::TooManyEvents,
            format!(
                "the array has {} events; send at most {MAX_BATCH_EVENTS} per request, or use /api/v1/events/ndjson",
                items.len()
            ),
        ));
    }
    let mut pending = Pending::default();
    for item in items {
        pending.push(validate_event(item.get()), None);
    }
    let results = pending.flush(&state).await?;
    Ok(axum::Json(IngestResponse { results }).into_response())
}

fn parse_json<'a, T: serde::Deserialize<'a>>(text: &'a str) -> Result<T, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError::new(Code::InvalidJson, format!("the body is not valid JSON: {e}")))
}

/// Ingest newline-delimited events, streamed, of any length.
///
/// The answer is streamed too, one result per non-empty line, as lines are stored.
#[utoipa::path(
    post, path = "/api/v1/events/ndjson", tag = "events",
    request_body(content = String, content_type = "application/x-ndjson", description = "One event per line; blank lines are skipped."),
    responses((status = 200, description = "One result per non-empty line, with its line number", body = IngestResponse)),
    security(("bearer" = []))
)]
pub async fn ingest_ndjson<S: Store>(State(state): State<AppState<S>>, body: Body) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(ndjson_worker(state, body, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    ([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response()
}

async fn ndjson_worker<S: Store>(state: AppState<S>, body: Body, out: mpsc::Sender<Bytes>) {
    let mut writer = ResultWriter { out, first: true };
    if !writer.send(Bytes::from_static(b"{\"results\":[")).await {
        return;
    }
    let mut lines = LineSplitter::default();
    let mut pending = Pending::default();
    let mut stream = body.into_data_stream();
    let mut failure: Option<String> = None;
    'read: loop {
        let chunk = match stream.next().await {
            Some(Ok(chunk)) => Some(chunk),
            Some(Err(e)) => {
                failure = Some(format!("the request body could not be read: {e}"));
                None
            }
            None => None,
        };
        let end = chunk.is_none();
        for line in lines.feed(chunk.as_deref().unwrap_or_default(), end) {
            pending.push(line.validated, Some(line.number));
            if pending.results.len() >= NDJSON_GROUP && !writer.flush(&state, &mut pending).await {
                break 'read;
            }
        }
        if end {
            break;
        }
    }
    if !writer.flush(&state, &mut pending).await {
        return;
    }
    if let Some(message) = failure {
        tracing::warn!(%message, "NDJSON ingest ended early");
        let _ = writer
            .item(&ItemResult {
                id: None,
                status: ItemStatus::Rejected,
                position: None,
                error: Some(FieldError::new("body", message)),
                line: Some(lines.number + 1),
            })
            .await;
    }
    let _ = writer.send(Bytes::from_static(b"]}")).await;
}

struct ResultWriter {
    out: mpsc::Sender<Bytes>,
    first: bool,
}

impl ResultWriter {
    async fn send(&mut self, bytes: Bytes) -> bool {
        self.out.send(bytes).await.is_ok()
    }

    async fn item(&mut self, result: &ItemResult) -> bool {
        let mut text = if self.first { String::new() } else { ",".to_owned() };
        self.first = false;
        text.push_str(&serde_json::to_string(result).unwrap_or_default());
        self.send(Bytes::from(text)).await
    }

    /// Appends what is pending and streams its results. When the store fails,
    /// those items are answered as rejected, with the reason, and nothing more is read.
    async fn flush<S: Store>(&mut self, state: &AppState<S>, pending: &mut Pending) -> bool {
        let mut ok = true;
        let results = match pending.flush(state).await {
            Ok(results) => results,
            Err(e) => {
                ok = false;
                let message = format!("not stored: {}", e.detail);
                let mut results = std::mem::take(&mut pending.results);
                for r in &mut results {
                    if r.status != ItemStatus::Rejected {
                        r.status = ItemStatus::Rejected;
                        r.error = Some(FieldError::new("event", message.clone()));
                    }
                }
                results
            }
        };
        let mut text = String::new();
        for result in &results {
            if !self.first {
                text.push(',');
            }
            self.first = false;
            text.push_str(&serde_json::to_string(result).unwrap_or_default());
        }
        if !text.is_empty() && !self.send(Bytes::from(text)).await {
            return false;
        }
        ok
    }
}

struct Line {
    number: u64,
    validated: Result<ValidEvent, Rejection>,
}

/// Splits a byte stream into lines, validating each; a line longer than an event
/// may be is rejected without being held in memory.
#[derive(Default)]
struct LineSplitter {
    buffer: Vec<u8>,
    /// Lines seen so far.
    number: u64,
    /// Bytes of the current over-long line that were dropped.
    dropped: usize,
}

impl LineSplitter {
    fn feed(&mut self, mut chunk: &[u8], end: bool) -> Vec<Line> {
        let mut lines = Vec::new();
        while let Some(newline) = chunk.iter().position(|&b| b == b'\n') {
            self.take(&chunk[..newline], &mut lines);
            chunk = &chunk[newline + 1..];
        }
        if self.dropped > 0 {
            self.dropped += chunk.len();
        } else {
            self.buffer.extend_from_slice(chunk);
            if self.buffer.len() > troth_core::MAX_EVENT_BYTES + 2 {
                self.dropped = self.buffer.len();
                self.buffer.clear();
            }
        }
        if end && (!self.buffer.is_empty() || self.dropped > 0) {
            self.take(&[], &mut lines);
        }
        lines
    }

    fn take(&mut self, tail: &[u8], lines: &mut Vec<Line>) {
        self.number += 1;
        let number = self.number;
        if self.dropped > 0 {
            let size = self.dropped + tail.len();
            self.dropped = 0;
            lines.push(Line {
                number,
                validated: Err(too_long(size)),
            });
            return;
        }
        let line = if self.buffer.is_empty() {
            tail
        } else {
            self.buffer.extend_from_slice(tail);
            &self.buffer[..]
        };
        let text = match std::str::from_utf8(line) {
            Ok(text) => text.trim(),
            Err(e) => {
                lines.push(Line {
                    number,
                    validated: Err(whole(format!("is not UTF-8: {e}"))),
                });
                self.buffer.clear();
                return;
            }
        };
        if !text.is_empty() {
            lines.push(Line {
                number,
                validated: validate_event(text),
            });
        }
        self.buffer.clear();
    }
}

fn too_long(size: usize) -> Rejection {
    whole(format!("is {size} bytes; the limit is {}", troth_core::MAX_EVENT_BYTES))
}

fn whole(message: String) -> Rejection {
    Rejection {
        id: None,
        error: FieldError::new(troth_core::envelope::EVENT_FIELD, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&str]) -> Vec<(u64, String)> {
        let mut splitter = LineSplitter::default();
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            for line in splitter.feed(chunk.as_bytes(), i == chunks.len() - 1) {
                let outcome = match line.validated {
                    Ok(e) => e.id,
                    Err(r) => r.error.to_string(),
                };
                out.push((line.number, outcome));
            }
        }
        out
    }

    #[test]
    fn lines_are_numbered_across_chunks_and_blank_lines_are_skipped() {
        let e = |id: &str| format!(r#"{{"id":"{id}","type":"x.t","time":"2026-11-23T09:00:00Z"}}"#);
        let text = format!("{}\n\n{}\r\n{}", e("a"), e("b"), e("c"));
        let (left, right) = text.split_at(30);
        assert_eq!(
            split(&[left, right, ""]),
            [(1, "a".into()), (3, "b".into()), (4, "c".into())]
        );
    }

    #[test]
    fn an_over_long_line_is_rejected_and_the_next_line_survives() {
        let long = "x".repeat(troth_core::MAX_EVENT_BYTES + 10);
        let good = r#"{"id":"g","type":"x.t","time":"2026-11-23T09:00:00Z"}"#;
        let got = split(&[&long[..40_000], &long[40_000..], "\n", good, ""]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 1);
        assert!(got[0].1.starts_with("event: is 65546 bytes"), "{}", got[0].1);
        assert_eq!(got[1], (2, "g".into()));
    }
}
