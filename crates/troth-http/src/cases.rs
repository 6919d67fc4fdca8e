//! Cases and first-contact resolution: `GET /api/v1/cases`, `GET /api/v1/cases/{id}`
//! and `GET /api/v1/service/fcr`, computed by `troth_core::case` from the log's case
//! events with the service levels `troth serve` was configured with (per touchpoint,
//! with the journey map and the events about the cases' orders) (docs/service.md).

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use troth_core::Timestamp;
use troth_core::case::{
    Case, CaseTouchpoints, CaseView, Cases, FcrBy, FcrRow, ServiceLevels, first_contact_resolution, views,
};
use troth_core::catalogue::EventData;
use troth_store::{EventQuery, Store};

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::extract::{Params, bool_param, invalid_param, limit_param, time_param, unknown_param};

/// Cases listed at most, unless `limit` says fewer.
const DEFAULT_LIMIT: usize = 500;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CaseList {
    /// The instant the clocks are read at (RFC 3339).
    pub at: String,
    /// Open cases first, the soonest due (or longest breached) first; then resolved
    /// ones, the latest resolved first.
    pub cases: Vec<CaseView>,
    /// More cases matched than `limit`.
    pub truncated: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CaseDetail {
    pub at: String,
    #[serde(flatten)]
    pub case: CaseView,
    /// The case's events as sent, in log order.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Fcr {
    /// `team`, `agent`, `category` or `touchpoint`.
    pub by: String,
    pub from: Option<String>,
    pub to: Option<String>,
    /// How a case counts as resolved on the first contact.
    pub definition: &'static str,
    /// With `by=touchpoint`: which touchpoint a case counts at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub touchpoint_definition: Option<&'static str>,
    /// Worst rate first.
    pub rows: Vec<FcrRow>,
}

pub const FCR_DEFINITION: &str = "A resolved case counts as resolved on the first contact when it was never \
transferred, never reopened, and the same customer opened no other case about the same order or in the same \
category within 7 days of its resolution. The rate is over the cases resolved.";

/// How `by=touchpoint` attributes a case (`troth_core::case::CaseTouchpoints`).
pub const TOUCHPOINT_DEFINITION: &str = "A case counts at the touchpoint it is about: the one its case.opened \
names, else the one whose case_categories lists its category, else, for a case about an order, the touchpoint of \
the latest event about the order or its shipments before the case was opened, else the touchpoint where \
case.opened counts as exposure (the contact itself), else unattributed.";

/// Cases and their service-level clocks
///
/// Cases as their events tell them, with each clock (first response, resolution)
/// counted in the business hours of the team's calendar, and the effort they cost
/// (transfers, holds, reopens, repeat contacts). Filters: `team` (the team that has
/// the case now), `state` (`open` or `resolved`), `breached` (`true`/`false`),
/// `from`/`to` (when the case was opened), `at` (read the clocks at this instant;
/// now unless set), `limit`.
#[utoipa::path(
    get, path = "/api/v1/cases", tag = "cases",
    params(
        ("team" = Option<String>, Query, description = "The team that has the case now"),
        ("state" = Option<String>, Query, description = "open or resolved"),
        ("breached" = Option<bool>, Query, description = "Only cases with (true) or without (false) a breached clock"),
        ("from" = Option<String>, Query, description = "Opened at or after (RFC 3339)"),
        ("to" = Option<String>, Query, description = "Opened before (RFC 3339)"),
        ("at" = Option<String>, Query, description = "Read the clocks at this instant (RFC 3339); now unless set"),
        ("limit" = Option<usize>, Query, description = "At most this many cases (default 500)"),
    ),
    responses(
        (status = 200, body = CaseList),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list<S: Store>(
    State(state): State<AppState<S>>,
    Params(params): Params,
) -> Result<Json<CaseList>, ApiError> {
    let mut filter = Filter {
        limit: DEFAULT_LIMIT,
        ..Filter::default()
    };
    for (name, value) in &params {
        match name.as_str() {
            "team" => filter.team = Some(value.clone()),
            "state" => match value.as_str() {
                "open" | "resolved" => filter.state = Some(value.clone()),
                _ => {
                    return Err(invalid_param(
                        name,
                        format!("state must be open or resolved, not {value:?}"),
                    ));
                }
            },
            "breached" => filter.breached = Some(bool_param(name, value)?),
            "from" => filter.from_us = Some(time_param(name, value)?),
            "to" => filter.to_us = Some(time_param(name, value)?),
            "at" => filter.at = Some(Timestamp(time_param(name, value)?)),
            "limit" => filter.limit = limit_param(name, value)?,
            other => return Err(unknown_param(other, "team, state, breached, from, to, at, limit")),
        }
    }
    let at = filter.at.unwrap_or_else(Timestamp::now);
    let all = case_views(&state.store, &state.service, filter.from_us, None, at).await?;
    let mut cases: Vec<CaseView> = all
        .into_iter()
        .filter(|c| filter.opened_in(c))
        .filter(|c| filter.team.as_ref().is_none_or(|t| &c.team == t))
        .filter(|c| filter.state.as_ref().is_none_or(|s| &c.state == s))
        .filter(|c| filter.breached.is_none_or(|b| c.breached == b))
        .collect();
    sort_for_agents(&mut cases);
    let truncated = cases.len() > filter.limit;
    cases.truncate(filter.limit);
    Ok(Json(CaseList {
        at: at.to_string(),
        cases,
        truncated,
    }))
}

#[derive(Default)]
struct Filter {
    team: Option<String>,
    state: Option<String>,
    breached: Option<bool>,
    from_us: Option<i64>,
    to_us: Option<i64>,
    at: Option<Timestamp>,
    limit: usize,
}

impl Filter {
    fn opened_in(&self, case: &CaseView) -> bool {
        let opened = Timestamp::parse_rfc3339(&case.opened_at).map_or(0, Timestamp::micros);
        self.from_us.is_none_or(|from| opened >= from) && self.to_us.is_none_or(|to| opened < to)
    }
}

/// Open cases first, the least business time left first; then resolved ones, newest first.
pub fn sort_for_agents(cases: &mut [CaseView]) {
    cases.sort_by(|a, b| {
        let open = |c: &CaseView| c.state == "open";
        open(b)
            .cmp(&open(a))
            .then_with(|| {
                if open(a) {
                    a.resolution_clock
                        .business_minutes_left
                        .cmp(&b.resolution_clock.business_minutes_left)
                } else {
                    b.resolved_at.cmp(&a.resolved_at)
                }
            })
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// One case
#[utoipa::path(
    get, path = "/api/v1/cases/{id}", tag = "cases",
    params(
        ("id" = String, Path, description = "The case's id, as `case.opened` named it"),
        ("at" = Option<String>, Query, description = "Read the clocks at this instant (RFC 3339); now unless set"),
    ),
    responses(
        (status = 200, body = CaseDetail),
        (status = 404, description = "No case opened with this id", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get<S: Store>(
    State(state): State<AppState<S>>,
    reader: Option<axum::Extension<crate::auth::Reader>>,
    Path(id): Path<String>,
    Params(params): Params,
) -> Result<Json<CaseDetail>, ApiError> {
    let mut at = None;
    for (name, value) in &params {
        match name.as_str() {
            "at" => at = Some(Timestamp(time_param(name, value)?)),
            other => return Err(unknown_param(other, "at")),
        }
    }
    let at = at.unwrap_or_else(Timestamp::now);
    let not_found = || ApiError::new(Code::NotFound, format!("no case {id:?} was opened"));
    let subject = format!("case:{id}");
    let page = state
        .store
        .events(EventQuery {
            subject: Some(subject.clone()),
            limit: crate::read::MAX_LIMIT,
            ..Default::default()
        })
        .await?;
    let opened = page
        .events
        .iter()
        .filter_map(|e| troth_core::validate_event(&e.raw).ok())
        .find(|v| matches!(&v.data, EventData::CaseOpened(o) if o.case == id))
        .ok_or_else(not_found)?;
    // The customer's other cases tell whether this one was a first contact.
    let stored = match opened.customer.identities.first() {
        Some(identity) => {
            state
                .store
                .case_events(None, Some(identity.as_key().to_owned()))
                .await?
        }
        None => Vec::new(),
    };
    let mut cases = Cases::default();
    let mut events = Vec::new();
    for stored in &stored {
        if let Ok(event) = troth_core::validate_event(&stored.raw) {
            if event.subject.as_deref() == Some(subject.as_str()) {
                events.push(serde_json::from_str(&stored.raw).unwrap_or(serde_json::Value::Null));
            }
            cases.apply(&event, stored.customer.as_deref());
        }
    }
    if events.is_empty() {
        // A case opened without a customer: its own events are all there is.
        for stored in &page.events {
            if let Ok(event) = troth_core::validate_event(&stored.raw) {
                events.push(serde_json::from_str(&stored.raw).unwrap_or(serde_json::Value::Null));
                cases.apply(&event, None);
            }
        }
    }
    let case = views(&cases.into_vec(), &state.service, at)
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(not_found)?;
    if let Some(customer) = &case.customer {
        crate::audit::record(&state, reader.as_deref(), customer, "case").await?;
    }
    Ok(Json(CaseDetail {
        at: at.to_string(),
        case,
        events,
    }))
}

/// First-contact resolution
///
/// Per team, agent, category or touchpoint (`by`, default `team`), of the cases
/// opened between `from` and `to`: cases, resolved, resolved on the first contact,
/// the rate, and the effort (transfers, holds, reopens, repeat contacts). Worst rate
/// first. A case's team is the one that had it when it was resolved, its agent the
/// one who resolved it (`unassigned` when none was named), its touchpoint the one it
/// is about, by the journey map the server follows: the touchpoint its `case.opened`
/// names, else the one whose `case_categories` lists its category, else where its
/// order stood when it was opened, else the contact itself (docs/service.md).
#[utoipa::path(
    get, path = "/api/v1/service/fcr", tag = "cases",
    params(
        ("by" = Option<String>, Query, description = "team (default), agent, category or touchpoint (needs a journey map)"),
        ("from" = Option<String>, Query, description = "Cases opened at or after (RFC 3339)"),
        ("to" = Option<String>, Query, description = "Cases opened before (RFC 3339)"),
    ),
    responses(
        (status = 200, body = Fcr),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn fcr<S: Store>(State(state): State<AppState<S>>, Params(params): Params) -> Result<Json<Fcr>, ApiError> {
    let mut by_name = "team".to_owned();
    let mut filter = Filter::default();
    let (mut from_text, mut to_text) = (None, None);
    for (name, value) in &params {
        match name.as_str() {
            "by" => match value.as_str() {
                "team" | "agent" | "category" | "touchpoint" => by_name = value.clone(),
                _ => {
                    return Err(invalid_param(
                        name,
                        format!("by must be team, agent, category or touchpoint, not {value:?}"),
                    ));
                }
            },
            "from" => {
                filter.from_us = Some(time_param(name, value)?);
                from_text = Some(value.clone());
            }
            "to" => {
                filter.to_us = Some(time_param(name, value)?);
                to_text = Some(value.clone());
            }
            other => return Err(unknown_param(other, "by, from, to")),
        }
    }
    let map = match by_name.as_str() {
        "touchpoint" => Some(state.journey.get().ok_or_else(|| {
            invalid_param(
                "by",
                "by=touchpoint needs the journey map the touchpoints come from, and this server follows none"
                    .to_owned(),
            )
        })?),
        _ => None,
    };
    let cases = fold_cases(&state.store, filter.from_us, None).await?;
    let in_period: Vec<CaseView> = views(&cases, &state.service, Timestamp::now())
        .into_iter()
        .filter(|c| filter.opened_in(c))
        .collect();
    let touchpoints = match &map {
        Some(map) => {
            let wanted: HashSet<&str> = in_period.iter().map(|v| v.id.as_str()).collect();
            let cases: Vec<&Case> = cases.iter().filter(|c| wanted.contains(c.id.as_str())).collect();
            case_touchpoints(&state.store, &CaseTouchpoints::new(map), &cases).await?
        }
        None => HashMap::new(),
    };
    let by = match by_name.as_str() {
        "agent" => FcrBy::Agent,
        "category" => FcrBy::Category,
        "touchpoint" => FcrBy::Touchpoint(&touchpoints),
        _ => FcrBy::Team,
    };
    Ok(Json(Fcr {
        definition: FCR_DEFINITION,
        touchpoint_definition: map.is_some().then_some(TOUCHPOINT_DEFINITION),
        by: by_name,
        from: from_text,
        to: to_text,
        rows: first_contact_resolution(&in_period, by),
    }))
}

/// The touchpoint each case is about, by case id, with what the store knows of
/// the orders they are about.
async fn case_touchpoints<S: Store>(
    store: &S,
    index: &CaseTouchpoints,
    cases: &[&Case],
) -> Result<HashMap<String, String>, ApiError> {
    let mut orders: Vec<String> = cases.iter().filter_map(|c| c.order.clone()).collect();
    orders.sort_unstable();
    orders.dedup();
    let mut by_order: HashMap<String, Vec<(Timestamp, String)>> = HashMap::new();
    for event in store.order_events(orders).await? {
        by_order
            .entry(event.order)
            .or_default()
            .push((Timestamp(event.time_us), event.event_type));
    }
    Ok(cases
        .iter()
        .map(|case| {
            let events = case.order.as_ref().and_then(|o| by_order.get(o)).into_iter().flatten();
            let touchpoint = index.of(case, events.map(|(time, kind)| (*time, kind.as_str())));
            (case.id.clone(), touchpoint)
        })
        .collect())
}

/// Every case opened at or after `from_us` (of one customer, with `customer`), as
/// its events up to now tell it.
async fn fold_cases<S: Store>(
    store: &S,
    from_us: Option<i64>,
    customer: Option<String>,
) -> Result<Vec<Case>, ApiError> {
    let stored = store.case_events(from_us, customer).await?;
    let mut cases = Cases::default();
    for stored in &stored {
        if let Ok(event) = troth_core::validate_event(&stored.raw) {
            cases.apply(&event, stored.customer.as_deref());
        }
    }
    Ok(cases.into_vec())
}

/// Every case opened at or after `from_us` (of one customer, with `customer`), as
/// its events up to now tell it, with its clocks read at `at`.
pub async fn case_views<S: Store>(
    store: &S,
    levels: &ServiceLevels,
    from_us: Option<i64>,
    customer: Option<String>,
    at: Timestamp,
) -> Result<Vec<CaseView>, ApiError> {
    Ok(views(&fold_cases(store, from_us, customer).await?, levels, at))
}
