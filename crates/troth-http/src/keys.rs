//! `/api/v1/keys`: scoped API keys, managed with the master key or an admin key.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use troth_store::{ApiKey, NewKey, Scope, Store};

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::extract::Segment;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateKey {
    pub name: Option<String>,
    /// Any of ingest, read, agent, admin (agent includes read; admin includes the others).
    pub scopes: Vec<String>,
}

/// A key as listed; `key` (the secret) appears only in the answer to its creation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub uid: String,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl KeyView {
    fn new(key: ApiKey, secret: Option<String>) -> KeyView {
        KeyView {
            uid: key.uid,
            name: key.name,
            scopes: key.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_at: key.created_at,
            key: secret,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

fn needs_master<S: Store>(state: &AppState<S>) -> Result<(), ApiError> {
    if state.master_key.is_none() {
        return Err(ApiError::new(
            Code::NoMasterKey,
            "the server runs open (no master key), so keys would not be checked; start it with --master-key",
        ));
    }
    Ok(())
}

/// Create a scoped key. The secret is shown once, in this answer.
#[utoipa::path(
    post, path = "/api/v1/keys", tag = "keys", request_body = CreateKey,
    responses(
        (status = 201, body = KeyView),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_key<S: Store>(
    State(state): State<AppState<S>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    needs_master(&state)?;
    let request: CreateKey = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            Code::InvalidKeyRequest,
            format!("expected {{\"name\":…,\"scopes\":[…]}}: {e}"),
        )
    })?;
    let mut scopes = Vec::new();
    for (i, scope) in request.scopes.iter().enumerate() {
        let parsed = Scope::parse(scope).ok_or_else(|| {
            ApiError::field(
                Code::InvalidKeyRequest,
                format!("scopes[{i}]"),
                format!("{scope:?} is not a scope; use ingest, read, agent or admin"),
            )
        })?;
        scopes.push(parsed);
    }
    if scopes.is_empty() {
        return Err(ApiError::field(
            Code::InvalidKeyRequest,
            "scopes",
            "list at least one scope: ingest, read, agent or admin",
        ));
    }
    let (key, secret) = state
        .store
        .create_key(NewKey {
            name: request.name,
            scopes,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(KeyView::new(key, Some(secret)))).into_response())
}

/// List keys (never their secrets).
#[utoipa::path(get, path = "/api/v1/keys", tag = "keys", responses((status = 200, body = KeyList)), security(("bearer" = [])))]
pub async fn list_keys<S: Store>(State(state): State<AppState<S>>) -> Result<Json<KeyList>, ApiError> {
    let keys = state.store.list_keys().await?;
    Ok(Json(KeyList {
        keys: keys.into_iter().map(|k| KeyView::new(k, None)).collect(),
    }))
}

/// Revoke a key.
#[utoipa::path(
    delete, path = "/api/v1/keys/{uid}", tag = "keys",
    params(("uid" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")),
    security(("bearer" = []))
)]
pub async fn delete_key<S: Store>(
    State(state): State<AppState<S>>,
    Segment(uid): Segment,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_key(uid.clone()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(Code::NotFound, format!("no key {uid:?}")))
    }
}
