//! `GET /api/v1/customers/{id}/story`: one customer as an agent needs them on one
//! screen — who they are and what they are worth, their cases with the clocks
//! running, every promise, their shipments with the link to the page they see,
//! what they said, and a timeline in words across channels.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use std::collections::HashMap;

use troth_core::case::{CaseView, Cases, views};
use troth_core::catalogue::{EventData, ShipmentCreated};
use troth_core::story::{Feedback, Line, Names, Value, describe_naming, summarise};
use troth_core::{Timestamp, ValidEvent};
use troth_store::{IdentityView, PromiseView, ShipmentRecord, Store, StoryRecords};

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::extract::{Params, bool_param, unknown_param};

/// The newest events a story reads; older ones are left out (`timeline_truncated`).
pub const STORY_EVENTS: usize = 1_000;
/// Shipments shown, newest first.
const STORY_SHIPMENTS: usize = 20;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Story {
    pub customer: StoryCustomer,
    /// Open cases first, the least business time left first.
    pub cases: Vec<CaseView>,
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    pub promises: Vec<PromiseView>,
    /// Newest first.
    pub shipments: Vec<StoryShipment>,
    /// Survey answers and reviews, newest first.
    pub feedback: Vec<Feedback>,
    /// Newest first; noise (positions, page views, tracking visits) only with `noise=true`.
    pub timeline: Vec<TimelineEntry>,
    /// More events than the story reads: the oldest are left out.
    pub timeline_truncated: bool,
    /// The next best action and its reason; `null` until troth suggests one.
    #[schema(value_type = Option<Object>)]
    pub next_best_action: Option<serde_json::Value>,
    /// The currency most of their spend is in: the page's goodwill form starts with it.
    #[serde(skip)]
    pub currency: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StoryCustomer {
    pub id: String,
    /// `traits.name`, when known.
    pub name: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pub identities: Vec<IdentityView>,
    #[schema(value_type = Object)]
    pub traits: serde_json::Map<String, serde_json::Value>,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub merged_from: Vec<String>,
    pub value: Value,
    /// The channel most of their events came through.
    pub preferred_channel: Option<String>,
    /// Their latest NPS answer (0–10).
    pub latest_nps: Option<u8>,
    /// Promises at risk now, and broken ones.
    pub promises_at_risk: u64,
    pub promises_broken: u64,
    pub open_cases: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StoryShipment {
    pub id: String,
    pub order: String,
    pub carrier: String,
    /// The current stage (`out_for_delivery`, `delivered`…) and its label.
    pub stage: Option<String>,
    pub stage_label: Option<String>,
    pub stage_at: Option<String>,
    pub window_start: Option<String>,
    pub window_end: Option<String>,
    /// The customer's own tracking page (`/t/{token}`), the same view they see.
    pub tracking_url: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub time: String,
    pub position: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub channel: Option<String>,
    pub subject: Option<String>,
    #[serde(flatten)]
    pub line: Line,
}

/// A customer's whole story
///
/// Who they are and what they are worth, their cases with the service-level clocks,
/// every promise, their shipments with a link to the tracking page they see, their
/// survey answers and reviews, and the timeline in words (newest first; positions,
/// page views and tracking visits only with `noise=true`; `channel` keeps one
/// channel's events). Times in words are in the retailer's zone.
#[utoipa::path(
    get, path = "/api/v1/customers/{id}/story", tag = "customers",
    params(
        ("id" = String, Path, description = "The sender's customer id, an identity key (email:…, phone:…) or troth's cus_… id"),
        ("noise" = Option<bool>, Query, description = "Include routine events in the timeline"),
        ("channel" = Option<String>, Query, description = "Only events that came through this channel"),
    ),
    responses(
        (status = 200, body = Story),
        (status = 404, description = "No such customer", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn story<S: Store>(
    State(state): State<AppState<S>>,
    reader: Option<axum::Extension<crate::auth::Reader>>,
    Path(id): Path<String>,
    Params(params): Params,
) -> Result<Json<Story>, ApiError> {
    let mut options = StoryOptions::default();
    for (name, value) in &params {
        match name.as_str() {
            "noise" => options.noise = bool_param(name, value)?,
            "channel" => options.channel = Some(value.clone()),
            other => return Err(unknown_param(other, "noise, channel")),
        }
    }
    match read(&state, &id, &options, Timestamp::now()).await? {
        Some(story) => {
            crate::audit::record(&state, reader.as_deref(), &story.customer.id, "story").await?;
            Ok(Json(story))
        }
        None => Err(ApiError::new(Code::NotFound, format!("no customer {id:?}"))),
    }
}

#[derive(Debug, Default)]
pub struct StoryOptions {
    pub noise: bool,
    pub channel: Option<String>,
}

/// The story of the customer `key` names, `None` when none does; clocks read at `now`.
pub async fn read<S: Store>(
    state: &AppState<S>,
    key: &str,
    options: &StoryOptions,
    now: Timestamp,
) -> Result<Option<Story>, ApiError> {
    let Some(records) = state.store.story(key.to_owned(), STORY_EVENTS, STORY_SHIPMENTS).await? else {
        return Ok(None);
    };
    let StoryRecords {
        profile,
        events,
        truncated,
        case_events,
        mut promises,
        shipments,
    } = records;
    let zone = state.tracking.config.timezone.tz();
    let summary = summarise(events.iter().map(|(_, e)| (e, e.channel.map(|c| c.as_str()))), zone);

    let mut cases = Cases::default();
    for event in &case_events {
        cases.apply(event, Some(&profile.id));
    }
    let mut cases = views(&cases.into_vec(), &state.service, now);
    crate::cases::sort_for_agents(&mut cases);
    promises.reverse();
    let shipments = shipment_views(&events, shipments);

    // Agents acting through troth are recorded by their key's id; they read by its name.
    let agent_name = |uid: &str| state.store.api_key(uid).and_then(|key| key.name);
    // Their promises' changes read by what was promised.
    let promise_keys: HashMap<&str, &str> = promises.iter().map(|p| (p.id.as_str(), p.key.as_str())).collect();
    let promise_key = |id: &str| promise_keys.get(id).map(|key| (*key).to_owned());
    let names = Names {
        agent: &agent_name,
        promise: &promise_key,
    };
    // By when it happened: troth's own records (promise changes) reach the log after
    // the events that caused them, carrying their cause's time.
    let mut by_time: Vec<&(i64, ValidEvent)> = events.iter().collect();
    by_time.sort_by_key(|(seq, e)| std::cmp::Reverse((e.time, *seq)));
    let timeline = by_time
        .into_iter()
        .filter(|(_, event)| {
            options.channel.is_none() || event.channel.map(|c| c.as_str()) == options.channel.as_deref()
        })
        .filter_map(|(seq, event)| {
            let line = describe_naming(event, zone, names);
            (options.noise || !line.noise).then(|| TimelineEntry {
                time: event.time.to_string(),
                position: *seq,
                event_type: event.event_type.clone(),
                channel: event.channel.map(|c| c.as_str().to_owned()),
                subject: event.subject.clone(),
                line,
            })
        })
        .collect();
    let mut feedback = summary.feedback;
    feedback.reverse();
    Ok(Some(Story {
        customer: StoryCustomer {
            name: profile.traits.get("name").and_then(|n| n.as_str()).map(str::to_owned),
            promises_at_risk: promises.iter().filter(|p| p.state == "at_risk").count() as u64,
            promises_broken: promises.iter().filter(|p| p.state == "broken").count() as u64,
            open_cases: cases.iter().filter(|c| c.state == "open").count() as u64,
            id: profile.id,
            identities: profile.identities,
            traits: profile.traits,
            first_seen: profile.first_seen,
            last_seen: profile.last_seen,
            merged_from: profile.merged_from,
            value: summary.value,
            preferred_channel: summary.preferred_channel,
            latest_nps: summary.latest_nps,
        },
        cases,
        promises,
        shipments,
        feedback,
        timeline,
        timeline_truncated: truncated,
        next_best_action: None,
        currency: summary.currency,
    }))
}

/// The customer's shipments (those `shipment.created` named for them), newest first,
/// each with its stage as projected and the customer's tracking link.
fn shipment_views(events: &[(i64, ValidEvent)], records: Vec<ShipmentRecord>) -> Vec<StoryShipment> {
    let created: HashMap<&str, &ShipmentCreated> = events
        .iter()
        .filter_map(|(_, e)| match &e.data {
            EventData::ShipmentCreated(s) => Some((s.shipment.as_str(), s)),
            _ => None,
        })
        .collect();
    records
        .into_iter()
        .filter_map(|record| {
            let created = created.get(record.id.as_str())?;
            let stage = record.shipment.stage();
            let window = record.shipment.window();
            Some(StoryShipment {
                stage: stage.as_ref().map(|s| s.stage.as_str().to_owned()),
                stage_label: stage.as_ref().map(|s| s.stage.label().to_owned()),
                stage_at: stage.as_ref().map(|s| s.at.to_string()),
                window_start: window.map(|(start, _)| start.to_string()),
                window_end: window.map(|(_, end)| end.to_string()),
                tracking_url: record.link.map(|l| format!("/t/{}", l.token)),
                order: created.order.clone(),
                carrier: created.carrier.clone(),
                id: record.id,
            })
        })
        .collect()
}
