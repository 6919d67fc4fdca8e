//! A customer's rights over their data (docs/privacy.md): `GET
//! /api/v1/customers/{id}/export` hands over everything troth holds about them
//! as one archive (GDPR article 15); `DELETE /api/v1/customers/{id}` erases their
//! personal data (article 17) in the background and answers 202 with the
//! erasure, which `GET /api/v1/erasures/{id}` follows. All three need the admin
//! scope: they are a privacy officer's acts, not an agent's.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use troth_store::{Erasure, Store};

use crate::AppState;
use crate::auth::Reader;
use crate::error::{ApiError, Code};
use crate::extract::Segment;

/// An erasure as the API shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErasureView {
    /// `era_…`.
    pub id: String,
    /// troth's id of the customer (`cus_…`), which names no one once erased.
    pub customer: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub requested_at: String,
    /// The key that asked: its uid, or `master`.
    pub requested_by: String,
    pub completed_at: Option<String>,
    /// Events rewritten in the log without the customer's personal data.
    pub events: u64,
    /// Identities replaced by pseudonyms.
    pub identities: u64,
    /// Outbox messages emptied (and not sent, when they were waiting).
    pub messages: u64,
    /// Uploaded photos deleted.
    pub uploads: u64,
    /// Refused Segment messages that named the customer, deleted.
    pub rejections: u64,
    pub error: Option<String>,
}

impl From<Erasure> for ErasureView {
    fn from(e: Erasure) -> ErasureView {
        ErasureView {
            id: e.id,
            customer: e.customer,
            state: e.state.as_str().to_owned(),
            requested_at: e.requested_at,
            requested_by: e.requested_by,
            completed_at: e.completed_at,
            events: e.events,
            identities: e.identities,
            messages: e.messages,
            uploads: e.uploads,
            rejections: e.rejections,
            error: e.error,
        }
    }
}

/// A customer's data, as one archive
///
/// Every event they are in as it was sent (oldest first), every projection row
/// about them by table, every message troth sent or will send them, and every
/// recorded read of their data, as one JSON document to download. The export is
/// itself recorded as a read.
#[utoipa::path(
    get, path = "/api/v1/customers/{id}/export", tag = "customers",
    params(("id" = String, Path, description = "The sender's customer id, an identity key (email:…, phone:…, ext:system:…) or troth's cus_… id")),
    responses(
        (status = 200, description = "The archive: customer, events, projections, messages, reads", body = Object),
        (status = 404, description = "No such customer", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn export<S: Store>(
    State(state): State<AppState<S>>,
    reader: Option<Extension<Reader>>,
    Segment(id): Segment,
) -> Result<Response, ApiError> {
    let Some(archive) = state.store.export_customer(id.clone()).await? else {
        return Err(unknown(&id));
    };
    crate::audit::record(&state, reader.as_deref(), &archive.customer.id, "export").await?;
    let disposition = format!("attachment; filename=\"troth-{}.json\"", archive.customer.id);
    Ok(([(header::CONTENT_DISPOSITION, disposition)], Json(archive)).into_response())
}

/// Erase a customer's personal data
///
/// Starts the erasure and answers at once: 202 with the erasure, whose `Location`
/// is followed with `GET /api/v1/erasures/{id}`. Their events stay in the log,
/// rewritten without personal data, so counts and journey health stay as they
/// were; see docs/privacy.md for what goes and what is kept.
#[utoipa::path(
    delete, path = "/api/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "The sender's customer id, an identity key (email:…, phone:…, ext:system:…) or troth's cus_… id")),
    responses(
        (status = 202, description = "The erasure, started", body = ErasureView),
        (status = 404, description = "No such customer", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn erase<S: Store>(
    State(state): State<AppState<S>>,
    reader: Option<Extension<Reader>>,
    Segment(id): Segment,
) -> Result<Response, ApiError> {
    let by = reader.map_or_else(|| "unknown".to_owned(), |r| r.id.clone());
    let uploads = state.tracking.config.upload_dir.clone();
    let Some(erasure) = state.store.erase_customer(id.clone(), by, uploads).await? else {
        return Err(unknown(&id));
    };
    let location = format!("/api/v1/erasures/{}", erasure.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(ErasureView::from(erasure)),
    )
        .into_response())
}

/// An erasure: where it stands and what it changed
#[utoipa::path(
    get, path = "/api/v1/erasures/{id}", tag = "customers",
    params(("id" = String, Path, description = "The erasure's id (era_…)")),
    responses(
        (status = 200, body = ErasureView),
        (status = 404, description = "No such erasure", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn erasure<S: Store>(
    State(state): State<AppState<S>>,
    Segment(id): Segment,
) -> Result<Json<ErasureView>, ApiError> {
    match state.store.erasure(id.clone()).await? {
        Some(erasure) => Ok(Json(erasure.into())),
        None => Err(ApiError::new(Code::NotFound, format!("no erasure is known as {id:?}"))),
    }
}

fn unknown(id: &str) -> ApiError {
    ApiError::new(Code::NotFound, format!("no customer is known as {id:?}"))
}
