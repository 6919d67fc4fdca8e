//! Extractors whose rejections are [`ApiError`]s, so malformed input gets the same
//! problem+json as everything else.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;

use crate::error::{ApiError, Code};

/// Query parameters as name/value pairs, in order.
pub struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map(|Query(pairs)| Params(pairs))
            .map_err(|e: QueryRejection| ApiError::new(Code::InvalidQuery, e.body_text()))
    }
}

/// A parameter's error, naming it.
pub fn invalid_param(name: &str, message: String) -> ApiError {
    ApiError::field(Code::InvalidQuery, name, message)
}

/// An RFC 3339 date-time parameter, in µs.
pub fn time_param(name: &str, value: &str) -> Result<i64, ApiError> {
    troth_core::Timestamp::parse_rfc3339(value)
        .map(troth_core::Timestamp::micros)
        .ok_or_else(|| invalid_param(name, format!("{name} must be an RFC 3339 date-time, not {value:?}")))
}

/// `true` or `false`.
pub fn bool_param(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid_param(
            name,
            format!("{name} must be true or false, not {value:?}"),
        )),
    }
}

/// A page size, 1–[`crate::read::MAX_LIMIT`].
pub fn limit_param(name: &str, value: &str) -> Result<usize, ApiError> {
    let max = crate::read::MAX_LIMIT;
    value
        .parse::<usize>()
        .ok()
        .filter(|l| (1..=max).contains(l))
        .ok_or_else(|| invalid_param(name, format!("limit must be between 1 and {max}, not {value:?}")))
}

/// A parameter the route does not take.
pub fn unknown_param(name: &str, allowed: &str) -> ApiError {
    invalid_param(name, format!("unknown parameter {name:?}; use {allowed}"))
}

/// A cursor that is not one the API returned.
pub fn bad_cursor(name: &str, value: &str) -> ApiError {
    invalid_param(name, format!("{name} must be a cursor returned as next, not {value:?}"))
}

/// One path segment, decoded.
pub struct Segment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(segment)| Segment(segment))
            .map_err(|e: PathRejection| ApiError::new(Code::InvalidQuery, e.body_text()))
    }
}
