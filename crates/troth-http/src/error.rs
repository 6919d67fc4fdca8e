//! Every error the API answers with, as RFC 9457 problem details.
//!
//! The table in [`Code`] is the single list of public error codes: each has its
//! HTTP status and title, and the body is built from it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use troth_store::StoreError;

/// Public error codes. Clients may match on `code`; titles are for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidJson,
    InvalidBody,
    InvalidSegmentBody,
    TooManyEvents,
    PayloadTooLarge,
    InvalidQuery,
    MissingAuthorization,
    InvalidApiKey,
    Forbidden,
    NotFound,
    NoMasterKey,
    InvalidKeyRequest,
    InvalidAction,
    CaseNotOpen,
    IdempotencyKeyReused,
    NotDead,
    InvalidDriver,
    InvalidPosition,
    UnknownDevice,
    Unavailable,
    ProjectionLagging,
    TooManyRequests,
    UnsupportedMediaType,
    RequestTimeout,
    Internal,
}

impl Code {
    /// (code, status, title)
    pub fn describe(self) -> (&'static str, StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            Code::InvalidJson => ("invalid_json", S::BAD_REQUEST, "The body is not valid JSON"),
            Code::InvalidBody => (
                "invalid_body",
                S::BAD_REQUEST,
                "The body is not an event or an array of events",
            ),
            Code::InvalidSegmentBody => (
                "invalid_segment_body",
                S::BAD_REQUEST,
                "The body is not a Segment message or batch",
            ),
            Code::TooManyEvents => ("too_many_events", S::BAD_REQUEST, "Too many events in one request"),
            Code::PayloadTooLarge => ("payload_too_large", S::PAYLOAD_TOO_LARGE, "The body is too large"),
            Code::InvalidQuery => ("invalid_query", S::BAD_REQUEST, "A query parameter is invalid"),
            Code::MissingAuthorization => ("missing_authorization", S::UNAUTHORIZED, "An API key is required"),
            Code::InvalidApiKey => ("invalid_api_key", S::UNAUTHORIZED, "The API key is not valid"),
            Code::Forbidden => ("forbidden", S::FORBIDDEN, "The API key does not allow this"),
            Code::NotFound => ("not_found", S::NOT_FOUND, "Not found"),
            Code::NoMasterKey => ("no_master_key", S::CONFLICT, "API keys need a master key"),
            Code::InvalidKeyRequest => ("invalid_key_request", S::BAD_REQUEST, "The key request is invalid"),
            Code::InvalidAction => ("invalid_action", S::BAD_REQUEST, "The agent's action is invalid"),
            Code::CaseNotOpen => ("case_not_open", S::CONFLICT, "The case is not open"),
            Code::IdempotencyKeyReused => (
                "idempotency_key_reused",
                S::CONFLICT,
                "The Idempotency-Key was used for another action",
            ),
            Code::NotDead => ("not_dead", S::CONFLICT, "Only dead letters can be retried"),
            Code::InvalidDriver => ("invalid_driver", S::BAD_REQUEST, "The driver id is invalid"),
            Code::InvalidPosition => ("invalid_position", S::BAD_REQUEST, "The position cannot be read"),
            Code::UnknownDevice => ("unknown_device", S::BAD_REQUEST, "No device has this identifier"),
            Code::Unavailable => ("unavailable", S::SERVICE_UNAVAILABLE, "The store is not available"),
            Code::UnsupportedMediaType => (
                "unsupported_media_type",
                S::UNSUPPORTED_MEDIA_TYPE,
                "The body's content type is not accepted",
            ),
            Code::TooManyRequests => ("too_many_requests", S::TOO_MANY_REQUESTS, "Too many requests"),
            Code::RequestTimeout => ("request_timeout", S::REQUEST_TIMEOUT, "The request took too long"),
            Code::ProjectionLagging => (
                "projection_lagging",
                S::SERVICE_UNAVAILABLE,
                "The projections have not reached the position asked for",
            ),
            Code::Internal => ("internal", S::INTERNAL_SERVER_ERROR, "Internal error"),
        }
    }
}

/// An error on its way to becoming a problem+json response.
#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub detail: String,
    pub field: Option<String>,
    /// The positions reached, for `projection_lagging`.
    pub progress: Option<troth_store::Progress>,
}

impl ApiError {
    pub fn new(code: Code, detail: impl Into<String>) -> ApiError {
        ApiError {
            code,
            detail: detail.into(),
            field: None,
            progress: None,
        }
    }

    pub fn field(code: Code, field: impl Into<String>, detail: impl Into<String>) -> ApiError {
        ApiError {
            code,
            detail: detail.into(),
            field: Some(field.into()),
            progress: None,
        }
    }
}

/// The problem details body (RFC 9457) with troth's `code` and `field` members.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:troth:problem:{code}`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    /// The offending field or parameter, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `projection_lagging`: the log's position and each projector's.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub progress: Option<troth_store::Progress>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, status, title) = self.code.describe();
        let problem = Problem {
            problem_type: format!("urn:troth:problem:{code}"),
            title,
            status: status.as_u16(),
            detail: self.detail,
            code,
            field: self.field,
            progress: self.progress,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Invalid(message) => ApiError::new(Code::InvalidQuery, message),
            StoreError::WriterGone | StoreError::Locked { .. } | StoreError::CatchingUp { .. } => {
                ApiError::new(Code::Unavailable, e.to_string())
            }
            other => {
                // The cause is logged, not sent: it may name files and internals.
                tracing::error!(error = %other, "store error");
                ApiError::new(Code::Internal, "the store failed; see the server log")
            }
        }
    }
}
