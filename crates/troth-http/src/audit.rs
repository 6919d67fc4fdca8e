//! Who read what: every read of a customer's data — their story, profile, events,
//! page or one of their cases — is recorded under the reader (an agent's own key,
//! the master key, or `open` when the API needs no key) before it is answered, and
//! `GET /api/v1/audit/reads?customer=&agent=` lists them (admin scope).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use troth_core::Timestamp;
use troth_store::{CustomerRead, ReadQuery, Store};

use crate::AppState;
use crate::auth::Reader;
use crate::error::{ApiError, Code};
use crate::extract::{Params, limit_param, unknown_param};

/// Records that `reader` read `what` of `customer` (troth's id). A request that did
/// not pass a key check (a route without one) is recorded as `unknown`.
pub async fn record<S: Store>(
    state: &AppState<S>,
    reader: Option<&Reader>,
    customer: &str,
    what: &str,
) -> Result<(), ApiError> {
    let (id, name) = reader.map_or(("unknown".to_owned(), None), |r| (r.id.clone(), r.name.clone()));
    state
        .store
        .record_reads(vec![CustomerRead {
            at: Timestamp::now().to_string(),
            reader: id,
            reader_name: name,
            customer: customer.to_owned(),
            what: what.to_owned(),
        }])
        .await?;
    Ok(())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Reads {
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    pub reads: Vec<CustomerRead>,
}

/// Who read which customer's data
///
/// Every read of a customer's story, profile, events, page or cases, newest first:
/// when, by whom (an API key's uid and name, `master`, or `open`), which customer
/// (troth's id) and what. `customer` takes any customer key; `agent` a key's uid.
#[utoipa::path(
    get, path = "/api/v1/audit/reads", tag = "customers",
    params(
        ("customer" = Option<String>, Query, description = "Reads of this customer (any customer key)"),
        ("agent" = Option<String>, Query, description = "Reads by this key (its uid), or master"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 100, at most 1,000)"),
    ),
    responses(
        (status = 200, body = Reads),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn reads<S: Store>(
    State(state): State<AppState<S>>,
    Params(params): Params,
) -> Result<Json<Reads>, ApiError> {
    let mut query = ReadQuery {
        limit: 100,
        ..Default::default()
    };
    for (name, value) in &params {
        match name.as_str() {
            "customer" => {
                // Recorded under troth's id: a merged customer's reads are the survivor's.
                let id = match state.store.customer(value.clone()).await? {
                    Some(profile) => profile.id,
                    None => value.clone(),
                };
                query.customer = Some(id);
            }
            "agent" => query.reader = Some(value.clone()),
            "limit" => query.limit = limit_param(name, value)?,
            other => return Err(unknown_param(other, "customer, agent, limit")),
        }
    }
    if query.customer.as_deref() == Some("") || query.reader.as_deref() == Some("") {
        return Err(ApiError::new(
            Code::InvalidQuery,
            "customer and agent must not be empty",
        ));
    }
    Ok(Json(Reads {
        reads: state.store.customer_reads(query).await?,
    }))
}
