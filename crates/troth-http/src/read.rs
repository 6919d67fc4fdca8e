//! `GET /api/v1/events` and `GET /api/v1/customers/{id}`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use troth_core::Timestamp;
use troth_store::{CustomerProfile, EventQuery, Store};

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::extract::{Params, Segment, bad_cursor, limit_param, time_param, unknown_param};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1_000;

/// List stored events, oldest first, with filters and cursor pagination.
#[utoipa::path(
    get, path = "/api/v1/events", tag = "events",
    params(
        ("customer" = Option<String>, Query, description = "A customer: the sender's id, an identity key such as email:ann@example.org, or troth's cus_… id. Includes customers merged into it."),
        ("subject" = Option<String>, Query, description = "kind:id, e.g. order:o-17"),
        ("type" = Option<String>, Query, description = "Event type"),
        ("from" = Option<String>, Query, description = "Event time at or after (RFC 3339)"),
        ("to" = Option<String>, Query, description = "Event time before (RFC 3339)"),
        ("after" = Option<String>, Query, description = "The `next` cursor of the previous page"),
        ("limit" = Option<usize>, Query, description = "Page size, 1–1000, default 100"),
    ),
    responses(
        (status = 200, description = "`{\"events\":[…],\"next\":CURSOR|null}`; each event as sent plus `seq` and `received_at`", body = Object),
        (status = 400, description = "A parameter is invalid", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_events<S: Store>(
    State(state): State<AppState<S>>,
    reader: Option<axum::Extension<crate::auth::Reader>>,
    Params(params): Params,
) -> Result<Response, ApiError> {
    let query = parse_query(&params)?;
    // A customer's events are their data: the read is recorded under troth's id.
    if let Some(key) = &query.customer
        && let Some(profile) = state.store.customer(key.clone()).await?
    {
        crate::audit::record(&state, reader.as_deref(), &profile.id, "events").await?;
    }
    let page = state.store.events(query).await?;
    let mut body = String::with_capacity(page.events.iter().map(|e| e.raw.len() + 64).sum::<usize>() + 32);
    body.push_str("{\"events\":[");
    for (i, event) in page.events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        // The event as sent, with the server's fields added before its closing brace.
        let raw = event.raw.trim_end();
        body.push_str(raw.strip_suffix('}').unwrap_or(raw));
        body.push_str(&format!(
            ",\"seq\":{},\"received_at\":\"{}\"}}",
            event.seq,
            Timestamp(event.received_us)
        ));
    }
    body.push_str("],\"next\":");
    match page.next_after {
        Some(seq) => body.push_str(&format!("\"{seq}\"")),
        None => body.push_str("null"),
    }
    body.push('}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn parse_query(params: &[(String, String)]) -> Result<EventQuery, ApiError> {
    let mut query = EventQuery {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (name, value) in params {
        match name.as_str() {
            "customer" => query.customer = Some(value.clone()),
            "subject" => query.subject = Some(value.clone()),
            "type" => query.event_type = Some(value.clone()),
            "from" => query.from_us = Some(time_param(name, value)?),
            "to" => query.to_us = Some(time_param(name, value)?),
            "after" => {
                let seq = value.parse::<i64>().ok().filter(|s| *s >= 0);
                query.after_seq = Some(seq.ok_or_else(|| bad_cursor(name, value))?);
            }
            "limit" => query.limit = limit_param(name, value)?,
            other => return Err(unknown_param(other, "customer, subject, type, from, to, after, limit")),
        }
    }
    Ok(query)
}

/// A customer's profile.
#[utoipa::path(
    get, path = "/api/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "The sender's customer id, an identity key (email:…, phone:…, ext:system:…) or troth's cus_… id")),
    responses(
        (status = 200, description = "The customer's profile; a merged customer answers with the survivor", body = CustomerView),
        (status = 404, description = "No such customer", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_customer<S: Store>(
    State(state): State<AppState<S>>,
    reader: Option<axum::Extension<crate::auth::Reader>>,
    Segment(id): Segment,
) -> Result<Response, ApiError> {
    match state.store.customer(id.clone()).await? {
        Some(profile) => {
            crate::audit::record(&state, reader.as_deref(), &profile.id, "profile").await?;
            Ok(axum::Json(CustomerView::from(profile)).into_response())
        }
        None => Err(ApiError::new(Code::NotFound, format!("no customer is known as {id:?}"))),
    }
}

/// The customer profile as the API shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CustomerView {
    /// troth's id for the customer (`cus_…`).
    pub id: String,
    pub identities: Vec<IdentityItem>,
    #[schema(value_type = Object)]
    pub traits: serde_json::Map<String, serde_json::Value>,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    /// Events of this customer, including the customers merged into it.
    pub events: u64,
    #[schema(value_type = Object)]
    pub event_counts: std::collections::BTreeMap<String, u64>,
    /// troth ids of customers found to be this one and merged into it.
    pub merged_from: Vec<String>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct IdentityItem {
    /// id, email, phone or external
    pub kind: String,
    pub value: String,
}

impl From<CustomerProfile> for CustomerView {
    fn from(p: CustomerProfile) -> CustomerView {
        CustomerView {
            id: p.id,
            identities: p
                .identities
                .into_iter()
                .map(|i| IdentityItem {
                    kind: i.kind,
                    value: i.value,
                })
                .collect(),
            traits: p.traits,
            first_seen: p.first_seen,
            last_seen: p.last_seen,
            events: p.events,
            event_counts: p.event_counts,
            merged_from: p.merged_from,
        }
    }
}
