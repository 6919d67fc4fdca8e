//! Read your writes: a read that names a log position (`min_position=N`, or the
//! header `Troth-Min-Position: N`) is answered once every projection has passed
//! it, so a client sees the events it was told are accepted. Without one, reads
//! answer at once from what is projected. Past the wait limit (`AppState::read_wait`,
//! [`WAIT_LIMIT`] by default) the answer is 503 `projection_lagging` with the
//! positions reached.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use troth_store::Store;

use crate::AppState;
use crate::error::{ApiError, Code};

/// The query parameter and header that name the position a read must include.
pub const PARAM: &str = "min_position";
pub const HEADER: &str = "troth-min-position";

/// How long a read waits for its projections before answering 503, by default.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// Waits, for a read that names a position, until the projections have passed
/// it; takes the position out of the query. The answer to give instead when the
/// position is not one or the wait ran out.
pub async fn wait_for_position<S: Store>(state: &AppState<S>, request: &mut Request) -> Result<(), Response> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return Ok(());
    }
    let position = match take_position(request) {
        Ok(Some(position)) => position,
        Ok(None) => return Ok(()),
        Err(error) => return Err(error.into_response()),
    };
    match state.store.wait_projected(position, state.read_wait).await {
        Ok(()) => Ok(()),
        Err(progress) => {
            let behind: Vec<String> = progress
                .projectors
                .iter()
                .filter(|p| p.position < position)
                .map(|p| format!("{} at {}", p.name, p.position))
                .collect();
            let mut error = ApiError::new(
                Code::ProjectionLagging,
                format!(
                    "position {position} is not projected yet after {:.1} s (the log is at {}; {}); try again",
                    state.read_wait.as_secs_f64(),
                    progress.log,
                    behind.join(", ")
                ),
            );
            error.progress = Some(progress);
            Err(error.into_response())
        }
    }
}

/// Reads the position from the header or the query, and takes the parameter out
/// of the query so the route's own parameters are checked as before.
fn take_position(request: &mut Request) -> Result<Option<i64>, ApiError> {
    let parse = |value: &str, name: &str| {
        value
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|p| *p >= 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::field(
                    Code::InvalidQuery,
                    name,
                    format!("{name} must be a log position (a whole number from 0), not {value:?}"),
                )
            })
    };
    let mut position = None;
    if let Some(value) = request.headers().get(HEADER) {
        let text = value.to_str().unwrap_or("");
        position = parse(text, "Troth-Min-Position")?;
    }
    let Some(query) = request.uri().query() else {
        return Ok(position);
    };
    let mut kept = Vec::new();
    let mut found = false;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == PARAM {
            found = true;
            let from_query = parse(value, PARAM)?;
            position = position.max(from_query);
        } else {
            kept.push(pair);
        }
    }
    if found {
        let path = request.uri().path();
        let rebuilt = if kept.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", kept.join("&"))
        };
        let mut parts = request.uri().clone().into_parts();
        parts.path_and_query = Some(
            rebuilt
                .parse()
                .map_err(|_| ApiError::new(Code::InvalidQuery, "the query cannot be read"))?,
        );
        *request.uri_mut() =
            Uri::from_parts(parts).map_err(|_| ApiError::new(Code::InvalidQuery, "the query cannot be read"))?;
    }
    Ok(position)
}
