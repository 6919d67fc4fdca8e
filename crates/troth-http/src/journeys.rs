//! `/api/v1/journeys/{key}/…`: the journey map's promises (health and weakest links follow).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use troth_core::health::Tally;
use troth_core::journey::{JourneyMap, Touchpoint};
use troth_core::weakest::WeakLink;
use troth_store::{PromiseQuery, PromiseView, Store};

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::extract::{Params, Segment, bad_cursor, invalid_param, limit_param, time_param, unknown_param};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PromiseList {
    #[schema(value_type = Vec<Object>)]
    pub promises: Vec<PromiseView>,
    /// Cursor for the next page, or null.
    pub next: Option<String>,
}

fn journey<S>(state: &AppState<S>, key: &str) -> Result<Arc<JourneyMap>, ApiError> {
    match state.journey.get() {
        Some(map) if map.key == key => Ok(map),
        Some(map) => Err(ApiError::new(
            Code::NotFound,
            format!("no journey {key:?}; this server follows {:?}", map.key),
        )),
        None => Err(ApiError::new(Code::NotFound, "this server follows no journey map")),
    }
}

/// Promises made along a journey, by due time.
#[utoipa::path(
    get, path = "/api/v1/journeys/{key}/promises", tag = "journeys",
    params(
        ("key" = String, Path, description = "The journey map's key"),
        ("state" = Option<String>, Query, description = "made, at_risk, kept, broken or cancelled"),
        ("touchpoint" = Option<String>, Query, description = "A touchpoint key"),
        ("owner" = Option<String>, Query, description = "A function key: promises of the touchpoints it owns"),
        ("customer" = Option<String>, Query, description = "A customer key, as for /events"),
        ("from" = Option<String>, Query, description = "Due at or after (RFC 3339)"),
        ("to" = Option<String>, Query, description = "Due before (RFC 3339)"),
        ("after" = Option<String>, Query, description = "The `next` cursor of the previous page"),
        ("limit" = Option<usize>, Query, description = "1–1000, default 100"),
    ),
    responses(
        (status = 200, body = PromiseList),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn promises<S: Store>(
    State(state): State<AppState<S>>,
    Segment(key): Segment,
    Params(params): Params,
) -> Result<Json<PromiseList>, ApiError> {
    let map = journey(&state, &key)?;
    let mut query = PromiseQuery {
        limit: crate::read::DEFAULT_LIMIT,
        ..Default::default()
    };
    let mut touchpoints: Option<Vec<String>> = None;
    let mut narrow = |keys: Vec<String>| {
        touchpoints = Some(match touchpoints.take() {
            Some(current) => current.into_iter().filter(|t| keys.contains(t)).collect(),
            None => keys,
        });
    };
    for (name, value) in &params {
        match name.as_str() {
            "state" => {
                if !["made", "at_risk", "kept", "broken", "cancelled"].contains(&value.as_str()) {
                    return Err(invalid_param(
                        name,
                        format!("state must be made, at_risk, kept, broken or cancelled, not {value:?}"),
                    ));
                }
                query.state = Some(value.clone());
            }
            "touchpoint" => {
                if map.touchpoint(value).is_none() {
                    return Err(invalid_param(
                        name,
                        format!("journey {key:?} has no touchpoint {value:?}"),
                    ));
                }
                narrow(vec![value.clone()]);
            }
            "owner" => {
                // Function keys are matched as people type them: `Logistics` is `logistics`.
                let Some(function) = map.functions.iter().find(|f| f.key.eq_ignore_ascii_case(value.trim())) else {
                    return Err(invalid_param(
                        name,
                        format!("journey {key:?} has no function {value:?}"),
                    ));
                };
                narrow(
                    map.touchpoints
                        .iter()
                        .filter(|t| t.owners.contains(&function.key))
                        .map(|t| t.key.clone())
                        .collect(),
                );
            }
            "customer" => query.customer = Some(value.clone()),
            "from" => query.due_from_us = Some(time_param(name, value)?),
            "to" => query.due_to_us = Some(time_param(name, value)?),
            "after" => {
                let parsed = value
                    .split_once('_')
                    .and_then(|(due, id)| Some((due.parse::<i64>().ok()?, id.to_owned())));
                query.after = Some(parsed.ok_or_else(|| bad_cursor(name, value))?);
            }
            "limit" => query.limit = limit_param(name, value)?,
            other => {
                return Err(unknown_param(
                    other,
                    "state, touchpoint, owner, customer, from, to, after, limit",
                ));
            }
        }
    }
    query.touchpoints = touchpoints;
    let page = state.store.promises(query).await?;
    Ok(Json(PromiseList {
        promises: page.promises,
        next: page.next.map(|(due, id)| format!("{due}_{id}")),
    }))
}

/// A touchpoint's health over a time range.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TouchpointHealth {
    pub key: String,
    pub name: String,
    pub owners: Vec<String>,
    /// Events that were exposure of the touchpoint.
    pub exposure: i64,
    /// Distinct customers those events came from (estimated within a few percent).
    pub customers: u64,
    pub promises: PromiseHealth,
    pub surveys: SurveyHealth,
    pub effort: EffortHealth,
    pub outcomes: OutcomeHealth,
}

/// Attempts that succeeded or failed (payments, deliveries, shelf visits, cases, reviews).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OutcomeHealth {
    pub count: i64,
    pub failed: i64,
    pub failure_rate: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PromiseHealth {
    pub made: i64,
    pub kept: i64,
    pub broken: i64,
    pub at_risk: i64,
    /// Kept among those settled; null when none was.
    pub kept_rate: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SurveyHealth {
    pub answers: i64,
    /// Share of answers that were negative (NPS 0–6, CSAT 1–2, CES 5–7).
    pub negative_rate: Option<f64>,
    /// −100…100.
    pub nps: Option<f64>,
    /// 1–5.
    pub csat: Option<f64>,
    /// 1–7 on the CES 2.0 agreement scale: higher is easier (effort-scale answers turned around).
    pub ces: Option<f64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EffortHealth {
    pub transfers: i64,
    pub holds: i64,
    pub hold_seconds: i64,
    /// Cases opened by customers who had opened another in the week before.
    pub repeat_contacts: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StageHealth {
    pub key: String,
    pub name: String,
    pub touchpoints: Vec<TouchpointHealth>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JourneyHealth {
    pub journey: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub stages: Vec<StageHealth>,
}

/// Days since the epoch from a time parameter: `from` rounds down to its day, `to` up.
fn day_param(name: &str, value: &str, round_up: bool) -> Result<i64, ApiError> {
    const DAY_US: i64 = 86_400_000_000;
    let us = time_param(name, value)?;
    Ok(if round_up {
        (us + DAY_US - 1).div_euclid(DAY_US)
    } else {
        us.div_euclid(DAY_US)
    })
}

/// The stage → touchpoint tree with each touchpoint's metrics and owners.
///
/// Health is kept per day: `from` and `to` select whole days (UTC).
#[utoipa::path(
    get, path = "/api/v1/journeys/{key}/health", tag = "journeys",
    params(
        ("key" = String, Path, description = "The journey map's key"),
        ("from" = Option<String>, Query, description = "From this day (RFC 3339; its UTC day)"),
        ("to" = Option<String>, Query, description = "Until this time (RFC 3339; days before it, the day it falls in included)"),
    ),
    responses(
        (status = 200, body = JourneyHealth),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn health<S: Store>(
    State(state): State<AppState<S>>,
    Segment(key): Segment,
    Params(params): Params,
) -> Result<Json<JourneyHealth>, ApiError> {
    let map = journey(&state, &key)?;
    let range = DayRange::from_params(&params)?;
    let tallies = state.store.health(range.from, range.to).await?;
    let reach: HashMap<String, u64> = state.store.reach(range.from, range.to).await?.into_iter().collect();
    let stages = map
        .stages
        .iter()
        .map(|stage| StageHealth {
            key: stage.key.clone(),
            name: stage.name.clone(),
            touchpoints: map
                .touchpoints
                .iter()
                .filter(|t| t.stage == stage.key)
                .map(|t| touchpoint_health(t, &tallies, &reach))
                .collect(),
        })
        .collect();
    Ok(Json(JourneyHealth {
        journey: map.key.clone(),
        from: range.from_text,
        to: range.to_text,
        stages,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FunctionHealth {
    pub key: String,
    pub name: String,
    pub touchpoints: Vec<TouchpointHealth>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JourneyFunctions {
    pub journey: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub functions: Vec<FunctionHealth>,
}

/// Each function of the organisation with the touchpoints it owns and their health.
#[utoipa::path(
    get, path = "/api/v1/journeys/{key}/functions", tag = "journeys",
    params(
        ("key" = String, Path, description = "The journey map's key"),
        ("from" = Option<String>, Query, description = "From this day (RFC 3339; its UTC day)"),
        ("to" = Option<String>, Query, description = "Until this time (RFC 3339; the day it falls in included)"),
    ),
    responses(
        (status = 200, body = JourneyFunctions),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn functions<S: Store>(
    State(state): State<AppState<S>>,
    Segment(key): Segment,
    Params(params): Params,
) -> Result<Json<JourneyFunctions>, ApiError> {
    let map = journey(&state, &key)?;
    let range = DayRange::from_params(&params)?;
    let tallies = state.store.health(range.from, range.to).await?;
    let reach: HashMap<String, u64> = state.store.reach(range.from, range.to).await?.into_iter().collect();
    let functions = map
        .functions
        .iter()
        .map(|f| FunctionHealth {
            key: f.key.clone(),
            name: f.name.clone(),
            touchpoints: map
                .touchpoints
                .iter()
                .filter(|t| t.owners.contains(&f.key))
                .map(|t| touchpoint_health(t, &tallies, &reach))
                .collect(),
        })
        .collect();
    Ok(Json(JourneyFunctions {
        journey: map.key.clone(),
        from: range.from_text,
        to: range.to_text,
        functions,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WeakestLinks {
    #[schema(value_type = Vec<Object>)]
    pub links: Vec<WeakLink>,
}

/// Touchpoints ranked worst first by how far they fall short of their targets,
/// weighed by exposure (the method: docs/journey-map.md, "Weakest links").
#[utoipa::path(
    get, path = "/api/v1/journeys/{key}/weakest-links", tag = "journeys",
    params(
        ("key" = String, Path, description = "The journey map's key"),
        ("stage" = Option<String>, Query, description = "Only touchpoints of this stage"),
        ("from" = Option<String>, Query, description = "From this day (RFC 3339; its UTC day)"),
        ("to" = Option<String>, Query, description = "Until this time (RFC 3339; the day it falls in included)"),
        ("limit" = Option<usize>, Query, description = "1–1000, default 10"),
    ),
    responses(
        (status = 200, body = WeakestLinks),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn weakest_links<S: Store>(
    State(state): State<AppState<S>>,
    Segment(key): Segment,
    Params(params): Params,
) -> Result<Json<WeakestLinks>, ApiError> {
    let map = journey(&state, &key)?;
    let mut range = DayRange::empty();
    let mut stage = None;
    let mut limit = 10;
    for (name, value) in &params {
        match name.as_str() {
            "stage" => {
                if !map.stages.iter().any(|s| s.key == *value) {
                    let known: Vec<&str> = map.stages.iter().map(|s| s.key.as_str()).collect();
                    return Err(invalid_param(
                        name,
                        format!(
                            "no stage {value:?} in this journey; its stages are {}",
                            known.join(", ")
                        ),
                    ));
                }
                stage = Some(value.clone());
            }
            "limit" => limit = limit_param(name, value)?,
            other => {
                if !range.take(other, &params)? {
                    return Err(unknown_param(other, "stage, from, to, limit"));
                }
            }
        }
    }
    let tallies: HashMap<String, Tally> = state.store.health(range.from, range.to).await?.into_iter().collect();
    let entities = state.store.entity_health(range.from, range.to).await?;
    let mut links = troth_core::weakest::weakest_links(&map, &tallies, &entities, stage.as_deref());
    links.truncate(limit);
    Ok(Json(WeakestLinks { links }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JourneyChasm {
    pub journey: String,
    pub from: Option<String>,
    pub to: Option<String>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub chasm: troth_core::chasm::Chasm,
}

/// Per stage, what the earlier stages led customers to expect against what this one
/// delivered, and the cohort of customers whose early scores were high and late
/// scores low (the method: docs/journey-map.md, "The expectation chasm").
#[utoipa::path(
    get, path = "/api/v1/journeys/{key}/chasm", tag = "journeys",
    params(
        ("key" = String, Path, description = "The journey map's key"),
        ("from" = Option<String>, Query, description = "From this day (RFC 3339; its UTC day)"),
        ("to" = Option<String>, Query, description = "Until this time (RFC 3339; the day it falls in included)"),
        ("limit" = Option<usize>, Query, description = "How many of the cohort's customers to list: 1–1000, default 20"),
    ),
    responses(
        (status = 200, body = JourneyChasm),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn chasm<S: Store>(
    State(state): State<AppState<S>>,
    Segment(key): Segment,
    Params(params): Params,
) -> Result<Json<JourneyChasm>, ApiError> {
    const DAY_US: i64 = 86_400_000_000;
    let map = journey(&state, &key)?;
    let mut range = DayRange::empty();
    let mut limit = 20;
    for (name, value) in &params {
        match name.as_str() {
            "limit" => limit = limit_param(name, value)?,
            other => {
                if !range.take(other, &params)? {
                    return Err(unknown_param(other, "from, to, limit"));
                }
            }
        }
    }
    let tallies: HashMap<String, Tally> = state.store.health(range.from, range.to).await?.into_iter().collect();
    let answers = state
        .store
        .survey_answers(
            range.from.map(|d| d.saturating_mul(DAY_US)),
            range.to.map(|d| d.saturating_mul(DAY_US)),
        )
        .await?;
    Ok(Json(JourneyChasm {
        journey: map.key.clone(),
        from: range.from_text,
        to: range.to_text,
        chasm: troth_core::chasm::chasm(&map, &answers, &tallies, limit),
    }))
}

/// How many visits (a customer's first exposure per touchpoint and day) one answer
/// reads at most: about 100 MB of memory. Past it, whole customers are left out and
/// the answer says `truncated`.
const FLOW_VISITS: usize = 1_000_000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JourneyFlow {
    pub journey: String,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Some customers were left out (too many visits for one answer): narrow the days.
    pub truncated: bool,
    #[serde(flatten)]
    pub flow: troth_core::flow::MapAgainstData,
}

/// The map against the data: the paths customers really take through each stage,
/// the drop-off along each link of the map, moves the map does not link, touchpoints
/// that see no event, and event types that count at no touchpoint (the method:
/// docs/journey-map.md, "The map against the data").
#[utoipa::path(
    get, path = "/api/v1/journeys/{key}/flow", tag = "journeys",
    params(
        ("key" = String, Path, description = "The journey map's key"),
        ("from" = Option<String>, Query, description = "From this day (RFC 3339; its UTC day)"),
        ("to" = Option<String>, Query, description = "Until this time (RFC 3339; the day it falls in included)"),
    ),
    responses(
        (status = 200, body = JourneyFlow),
        (status = 400, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn flow<S: Store>(
    State(state): State<AppState<S>>,
    Segment(key): Segment,
    Params(params): Params,
) -> Result<Json<JourneyFlow>, ApiError> {
    let map = journey(&state, &key)?;
    let range = DayRange::from_params(&params)?;
    let (flow, truncated) = map_against_data(&state.store, &map, range.from, range.to).await?;
    Ok(Json(JourneyFlow {
        journey: map.key.clone(),
        from: range.from_text,
        to: range.to_text,
        truncated,
        flow,
    }))
}

/// The map against the data over the days from `from` (inclusive) to `to`
/// (exclusive), and whether customers were left out; the API's and the journey page's.
pub(crate) async fn map_against_data<S: Store>(
    store: &S,
    map: &JourneyMap,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<(troth_core::flow::MapAgainstData, bool), ApiError> {
    let (visits, truncated) = store.touchpoint_visits(from, to, FLOW_VISITS).await?;
    let exposures: HashMap<String, u64> = store
        .health(from, to)
        .await?
        .into_iter()
        .map(|(t, tally)| (t, tally.exposure.max(0) as u64))
        .collect();
    let types = store.overview().await?.by_type;
    Ok((
        troth_core::flow::map_against_data(map, &visits, &exposures, &types),
        truncated,
    ))
}

/// A range of whole UTC days from `from` and `to` parameters.
pub(crate) struct DayRange {
    pub(crate) from: Option<i64>,
    pub(crate) to: Option<i64>,
    pub(crate) from_text: Option<String>,
    pub(crate) to_text: Option<String>,
}

impl DayRange {
    pub(crate) fn from_params(params: &[(String, String)]) -> Result<DayRange, ApiError> {
        let mut range = DayRange::empty();
        for (name, _) in params {
            if !range.take(name, params)? {
                return Err(unknown_param(name, "from, to"));
            }
        }
        Ok(range)
    }

    /// Takes `from` or `to` (answering true), leaving other parameters to the caller.
    fn take(&mut self, name: &str, params: &[(String, String)]) -> Result<bool, ApiError> {
        let value = match params.iter().find(|(n, _)| n == name) {
            Some((_, value)) => value,
            None => return Ok(false),
        };
        match name {
            "from" => {
                self.from = Some(day_param(name, value, false)?);
                self.from_text = Some(value.clone());
            }
            "to" => {
                self.to = Some(day_param(name, value, true)?);
                self.to_text = Some(value.clone());
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn empty() -> DayRange {
        DayRange {
            from: None,
            to: None,
            from_text: None,
            to_text: None,
        }
    }
}

fn touchpoint_health(t: &Touchpoint, tallies: &[(String, Tally)], reach: &HashMap<String, u64>) -> TouchpointHealth {
    let tally = tallies
        .iter()
        .find(|(k, _)| *k == t.key)
        .map(|(_, tally)| *tally)
        .unwrap_or_default();
    let rate = |part: i64, whole: i64| (whole > 0).then(|| part as f64 / whole as f64);
    TouchpointHealth {
        key: t.key.clone(),
        name: t.name.clone(),
        owners: t.owners.clone(),
        exposure: tally.exposure,
        customers: reach.get(&t.key).copied().unwrap_or(0),
        promises: PromiseHealth {
            made: tally.promises_made,
            kept: tally.promises_kept,
            broken: tally.promises_broken,
            at_risk: tally.promises_at_risk,
            kept_rate: tally.promise_kept_rate(),
        },
        surveys: SurveyHealth {
            answers: tally.answers,
            negative_rate: rate(tally.negative_answers, tally.answers),
            nps: tally.nps(),
            csat: tally.csat(),
            ces: tally.ces(),
        },
        effort: EffortHealth {
            transfers: tally.transfers,
            holds: tally.holds,
            hold_seconds: tally.hold_seconds,
            repeat_contacts: tally.repeat_contacts,
        },
        outcomes: OutcomeHealth {
            count: tally.outcomes,
            failed: tally.failures,
            failure_rate: tally.failure_rate(),
        },
    }
}
