//! `POST /api/v1/customers/{id}/actions`: what an agent does for a customer — writes
//! a note, promises a callback, resolves a case, makes a goodwill gesture — each
//! appended as one catalogue event that names the agent (`source: "agent:{key}"` and
//! `data.agent`), so the log tells who did what, and cases, promises and journey
//! health follow as they do for any event. The customer's page posts its forms
//! through the same [`perform`].
//!
//! The body is read field by field with the catalogue's own validation, so an error
//! names the body's field (`amount`, `due`, `case`) as the rest of the API does.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};
use troth_core::Timestamp;
use troth_core::case::{CaseView, check_resolution_code};
use troth_store::{AppendStatus, CustomerProfile, EventQuery, Store};

use crate::AppState;
use crate::auth::Reader;
use crate::error::{ApiError, Code};
use crate::extract::Segment;

/// The longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 2_000;
/// The longest reason for a goodwill gesture, in characters.
pub const MAX_REASON_CHARS: usize = 200;
/// The longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 64;
/// The header that makes a retry store nothing new.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Each action: its name, the event it records, and the body's fields it takes
/// besides `action` and `case` (each the event's data field of the same name).
const ACTIONS: &[(&str, &str, &[&str])] = &[
    ("note", "note.added", &["text"]),
    ("callback", "callback.promised", &["due"]),
    ("resolve", "case.resolved", &["resolution"]),
    (
        "goodwill",
        "goodwill.given",
        &["kind", "amount", "currency", "points", "reason"],
    ),
];

/// An agent's action, as the body says it; `action` says which. (The schema of the
/// body: the handler reads it field by field, so that an error names the field.)
#[derive(utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionBody {
    /// A note about the customer (`note.added`).
    Note {
        #[schema(min_length = 1, max_length = 2000)]
        text: String,
        /// The customer's case it is about.
        case: Option<String>,
    },
    /// A callback promised on one of the customer's cases (`callback.promised`): a
    /// promise like any other, kept by `callback.made` on the same case.
    Callback {
        /// When the customer will be called back, in the future (RFC 3339).
        #[schema(format = DateTime)]
        due: String,
        case: String,
    },
    /// The customer's open case resolved (`case.resolved`).
    Resolve {
        case: String,
        /// A short code: a lowercase letter, then lowercase letters, digits and `_`
        /// (docs/service.md lists the page's).
        #[schema(pattern = "^[a-z][a-z0-9_]{0,39}$")]
        resolution: String,
    },
    /// A goodwill gesture (`goodwill.given`): a refund or a voucher with `amount` (minor
    /// units) and `currency`, or `points`.
    Goodwill {
        kind: GoodwillKindName,
        #[schema(minimum = 1)]
        amount: Option<i64>,
        #[schema(pattern = "^[A-Z]{3}$")]
        currency: Option<String>,
        #[schema(minimum = 1)]
        points: Option<u64>,
        #[schema(min_length = 1, max_length = 200)]
        reason: String,
        case: Option<String>,
    },
}

/// What a goodwill gesture gives (the schema of `kind`).
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GoodwillKindName {
    Refund,
    Voucher,
    Points,
}

/// The event an action stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ActionAnswer {
    /// The event's id: `agent.{key}.{Idempotency-Key}`, or a fresh one without it.
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// Its position in the log: reads given it as `min_position` include it.
    pub position: i64,
}

/// What [`perform`] did.
#[derive(Debug, Clone)]
pub struct Done {
    pub answer: ActionAnswer,
    /// The `Idempotency-Key` had stored this event before: nothing new was stored.
    pub repeated: bool,
}

/// Record an agent's action
///
/// A note, a callback promised, a case resolved or a goodwill gesture, recorded as
/// one event for the customer with the agent's key in `source` (`agent:{key}`) and
/// `data.agent`. With `Idempotency-Key`, a retry stores nothing new and answers 200
/// with the event the key stored first. Needs the agent or admin scope.
#[utoipa::path(
    post, path = "/api/v1/customers/{id}/actions", tag = "customers",
    request_body = ActionBody,
    params(
        ("id" = String, Path, description = "The sender's customer id, an identity key (email:…, phone:…) or troth's cus_… id"),
        ("Idempotency-Key" = Option<String>, Header, description = "1–64 visible ASCII characters; the same key again stores nothing new"),
    ),
    responses(
        (status = 201, description = "Stored", body = ActionAnswer),
        (status = 200, description = "The Idempotency-Key stored this event before", body = ActionAnswer),
        (status = 400, description = "The action is invalid; `field` names the body's field", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The case is not open, or the Idempotency-Key stored another action", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn act<S: Store>(
    State(state): State<AppState<S>>,
    reader: Option<axum::Extension<Reader>>,
    Segment(customer): Segment,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let reader = reader.map(|r| r.0).ok_or_else(|| {
        tracing::error!("an action reached its handler without a reader");
        ApiError::new(Code::Internal, "no reader")
    })?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(Code::InvalidJson, format!("the body is not valid JSON: {e}")))?;
    let key = match headers.get(IDEMPOTENCY_KEY) {
        Some(value) => Some(value.to_str().map_err(|_| bad_key())?),
        None => None,
    };
    let done = perform(&state, &reader, &customer, &body, key, Timestamp::now()).await?;
    let status = if done.repeated {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, axum::Json(done.answer)).into_response())
}

fn bad_key() -> ApiError {
    ApiError::field(
        Code::InvalidAction,
        "Idempotency-Key",
        format!("must be 1–{MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters"),
    )
}

/// Checks the action `body` for the customer `customer` names, and appends its
/// event as `reader`'s; `key` is the `Idempotency-Key`.
pub async fn perform<S: Store>(
    state: &AppState<S>,
    reader: &Reader,
    customer: &str,
    body: &Value,
    key: Option<&str>,
    now: Timestamp,
) -> Result<Done, ApiError> {
    let Some(profile) = state.store.customer(customer.to_owned()).await? else {
        return Err(ApiError::new(Code::NotFound, format!("no customer {customer:?}")));
    };
    let action = read(body, now)?;
    let id = match key {
        Some(key) => {
            if key.is_empty()
                || key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS
                || !key.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(bad_key());
            }
            format!("agent.{}.{key}", reader.id)
        }
        None => format!("agent.{}.{}", reader.id, crate::tracking::random_hex::<12>()?),
    };
    let event = troth_core::validate_value(action.event(&id, reader, &profile, now), None).map_err(|r| {
        let field = match r.error.field.strip_prefix("data.") {
            Some(field) => field.to_owned(),
            None if r.error.field == "subject" => "case".to_owned(),
            None => r.error.field,
        };
        ApiError::field(Code::InvalidAction, field, r.error.message)
    })?;
    // A retry of an action stored before answers as the first did, whatever the case
    // has become since (a case resolved cannot be resolved again).
    if key.is_some()
        && let Some(done) = stored(state, &profile.id, action.event_type, &id).await?
    {
        return Ok(done);
    }
    if let Some(case) = &action.case {
        check_case(state, &profile.id, case, action.event_type, now).await?;
    }
    let statuses = crate::ingest::append(state, vec![event]).await?;
    match statuses.first() {
        Some(AppendStatus::Accepted { seq }) => Ok(Done {
            answer: ActionAnswer {
                id,
                event_type: action.event_type.to_owned(),
                position: *seq,
            },
            repeated: false,
        }),
        // The same key at the same moment (a double click): the other request stored
        // it. Once the projections hold it, it can be found under the customer.
        _ => {
            let _ = state
                .store
                .wait_projected(state.store.progress().log, state.read_wait)
                .await;
            stored(state, &profile.id, action.event_type, &id)
                .await?
                .ok_or_else(|| {
                    ApiError::field(
                        Code::IdempotencyKeyReused,
                        "Idempotency-Key",
                        "this key stored another action; use a new key for a new action",
                    )
                })
        }
    }
}

/// An action read from its body: checked, not yet an event.
struct Action {
    event_type: &'static str,
    case: Option<String>,
    /// The event's data, as the body gave it (strings trimmed).
    data: Map<String, Value>,
}

impl Action {
    fn event(&self, id: &str, reader: &Reader, profile: &CustomerProfile, now: Timestamp) -> Value {
        let mut data = self.data.clone();
        data.insert("agent".into(), json!(reader.id));
        let mut event = json!({
            "id": id,
            "type": self.event_type,
            "time": now.to_string(),
            "source": format!("agent:{}", reader.id),
            "customer": customer_ref(profile),
            "data": data,
        });
        if let Some(case) = &self.case {
            // Case events name their case as their subject (docs/service.md).
            event["subject"] = json!(format!("case:{case}"));
        }
        event
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::field(Code::InvalidAction, field, message)
}

/// Reads the body: which action, its case, and the fields it takes; the rules the
/// catalogue does not know (a callback in the future, a resolution code, lengths).
fn read(body: &Value, now: Timestamp) -> Result<Action, ApiError> {
    let Some(object) = body.as_object() else {
        return Err(ApiError::new(
            Code::InvalidAction,
            "send the action as a JSON object, such as {\"action\": \"note\", \"text\": \"…\"}",
        ));
    };
    let names = || ACTIONS.iter().map(|a| a.0).collect::<Vec<_>>().join(", ");
    let action = match object.get("action") {
        None | Some(Value::Null) => return Err(invalid("action", format!("is required: one of {}", names()))),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(invalid("action", format!("must be one of {}", names()))),
    };
    let Some(&(name, event_type, fields)) = ACTIONS.iter().find(|a| a.0 == action) else {
        return Err(invalid("action", format!("must be one of {}, not {action:?}", names())));
    };
    let trimmed = |v: &Value| match v {
        Value::String(s) => Value::String(s.trim().to_owned()),
        other => other.clone(),
    };
    let mut data = Map::new();
    let mut case = None;
    for (field, value) in object {
        match field.as_str() {
            "action" => {}
            "case" => match value {
                Value::Null => {}
                Value::String(s) if !s.trim().is_empty() => case = Some(s.trim().to_owned()),
                Value::String(_) => return Err(invalid("case", "must not be empty")),
                _ => return Err(invalid("case", "must be the id of one of the customer's cases")),
            },
            f if fields.contains(&f) => {
                if !value.is_null() {
                    data.insert(field.clone(), trimmed(value));
                }
            }
            other => {
                return Err(invalid(
                    other,
                    format!(
                        "is not a field of the {name} action; it takes {}",
                        ["action", "case"]
                            .iter()
                            .chain(fields.iter())
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    }
    let text = |field: &str| data.get(field).and_then(Value::as_str).unwrap_or("");
    let length = |field: &str, max: usize| {
        let n = text(field).chars().count();
        if n > max {
            return Err(invalid(field, format!("must be at most {max} characters, not {n}")));
        }
        Ok(())
    };
    match name {
        "note" => length("text", MAX_NOTE_CHARS)?,
        "goodwill" => length("reason", MAX_REASON_CHARS)?,
        "resolve" => {
            if case.is_none() {
                return Err(invalid("case", "is required: the open case to resolve"));
            }
            if data.get("resolution").is_some_and(Value::is_string) {
                check_resolution_code(text("resolution")).map_err(|m| invalid("resolution", m))?;
            }
        }
        "callback" => {
            // The promise is followed on its subject, which `callback.made` names too.
            if case.is_none() {
                return Err(invalid(
                    "case",
                    "is required: a callback is promised on a case, and callback.made on that case keeps it",
                ));
            }
            if let Some(due) = Timestamp::parse_rfc3339(text("due"))
                && due <= now
            {
                return Err(invalid("due", "must be in the future"));
            }
        }
        _ => {}
    }
    Ok(Action { event_type, case, data })
}

/// The case must be the customer's, and open to be resolved.
async fn check_case<S: Store>(
    state: &AppState<S>,
    customer: &str,
    case: &str,
    event_type: &str,
    now: Timestamp,
) -> Result<(), ApiError> {
    let cases: Vec<CaseView> =
        crate::cases::case_views(&state.store, &state.service, None, Some(customer.to_owned()), now).await?;
    let Some(found) = cases.iter().find(|c| c.id == case) else {
        return Err(invalid("case", format!("is not one of {customer}'s cases: {case:?}")));
    };
    if event_type == "case.resolved" && found.state != "open" {
        return Err(ApiError::field(
            Code::CaseNotOpen,
            "case",
            format!(
                "case {case} was resolved already ({})",
                found.resolution.as_deref().unwrap_or("no resolution given")
            ),
        ));
    }
    Ok(())
}

/// The event an `Idempotency-Key` stored for this customer, if it did.
async fn stored<S: Store>(
    state: &AppState<S>,
    customer: &str,
    event_type: &str,
    id: &str,
) -> Result<Option<Done>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
    }
    let page = state
        .store
        .events(EventQuery {
            customer: Some(customer.to_owned()),
            event_type: Some(event_type.to_owned()),
            newest_first: true,
            limit: crate::read::MAX_LIMIT,
            ..Default::default()
        })
        .await?;
    Ok(page
        .events
        .iter()
        .find(|e| serde_json::from_str::<Id<'_>>(&e.raw).is_ok_and(|e| e.id == id))
        .map(|e| Done {
            answer: ActionAnswer {
                id: id.to_owned(),
                event_type: event_type.to_owned(),
                position: e.seq,
            },
            repeated: true,
        }))
}

/// One of the customer's own identities, so the event resolves to them: their id in
/// the sender's system first, as it never changes.
fn customer_ref(profile: &CustomerProfile) -> Value {
    let of = |kind: &str| profile.identities.iter().find(|i| i.kind == kind);
    if let Some(id) = of("id") {
        json!({"id": id.value})
    } else if let Some(email) = of("email") {
        json!({"email": email.value})
    } else if let Some(phone) = of("phone") {
        json!({"phone": phone.value})
    } else if let Some((system, id)) = of("external").and_then(|e| e.value.split_once(':')) {
        json!({"external": {system: id}})
    } else {
        Value::Null
    }
}
