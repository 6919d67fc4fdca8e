//! Cases: what the contact centre's events say of each case (opened, transferred,
//! held, called back, resolved, reopened), its service-level clocks counted in the
//! business hours of its team's calendar, and first-contact resolution.
//!
//! A case's events name it: `case.opened` in `data.case`, the others by their
//! subject `case:{id}`. The fold does not depend on arrival order beyond the
//! events' times: callers pass a case's events in log order, which is time order
//! for one case in practice, and every clock is computed from the events' times.
//!
//! First-contact resolution (docs/service.md): a resolved case counts as resolved
//! on the first contact when it was never transferred, never reopened, and the same
//! customer opened no other case about the same order or in the same category
//! within [`REPEAT_WINDOW_US`] of its resolution. It is grouped by team, agent,
//! category, or the touchpoint the case is about ([`CaseTouchpoints`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::calendar::Calendar;
use crate::catalogue::EventData;
use crate::journey::JourneyMap;
use crate::{Timestamp, ValidEvent};

/// The event types that tell a case's story.
pub const EVENT_TYPES: [&str; 7] = [
    "case.opened",
    "case.transferred",
    "case.held",
    "case.resolved",
    "case.reopened",
    "callback.promised",
    "callback.made",
];

/// Events that record what an agent did or decided for a customer (docs/service.md,
/// "Agent actions"): a note, a goodwill gesture. They are the organisation's records,
/// not moments the customer lives: the customer lives the contact they came from
/// (the case's events, exposure of the contact centre's touchpoint) and what follows
/// (`refund.issued`, `loyalty.earned`, a message), which count already. Counting a
/// note as exposure would add a visit the customer never made (an agent writing up a
/// call the next day), so these count at no touchpoint, and the map against the data
/// knows them as troth's own records, not as moments the map misses (`flow.rs`).
pub const AGENT_RECORDS: [&str; 2] = ["note.added", "goodwill.given"];

/// A repeat contact counts against a resolution within this time after it: 7 days.
pub const REPEAT_WINDOW_US: i64 = 7 * 86_400_000_000;

/// The touchpoint of a case the journey map gives no touchpoint for.
pub const UNATTRIBUTED: &str = "unattributed";

const HOUR_US: i64 = 3_600_000_000;

/// The resolution codes the agent's page offers, each with its label. An agent's
/// action through the API may use any other short code ([`check_resolution_code`]):
/// contact centres have codes of their own, and `case.resolved` takes them as sent.
pub const RESOLUTION_CODES: &[(&str, &str)] = &[
    ("explained", "Explained"),
    ("redelivery_booked", "Redelivery booked"),
    ("replacement_sent", "Replacement sent"),
    ("refund_promised", "Refund promised"),
    ("goodwill_given", "Goodwill given"),
    ("payment_retried", "Payment retried"),
    ("item_reserved", "Item reserved"),
    ("duplicate", "Duplicate case"),
];

/// The longest resolution code an agent may give.
pub const MAX_RESOLUTION_CODE_CHARS: usize = 40;

/// A resolution code is a short slug (`redelivery_booked`): a lowercase letter, then
/// lowercase letters, digits and `_`, so that it groups and reads back as words.
pub fn check_resolution_code(code: &str) -> Result<(), String> {
    let slug = code.starts_with(|c: char| c.is_ascii_lowercase())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !slug {
        return Err(format!(
            "must be a code of lowercase letters, digits and _ starting with a letter, such as redelivery_booked, not {code:?}"
        ));
    }
    if code.len() > MAX_RESOLUTION_CODE_CHARS {
        return Err(format!("must be at most {MAX_RESOLUTION_CODE_CHARS} characters"));
    }
    Ok(())
}

/// Service levels: per category, the business time to a first response and to
/// resolution, counted in the calendar of the case's team.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceLevels {
    /// Teams without a calendar of their own work by this one.
    pub calendar: Calendar,
    pub teams: BTreeMap<String, Calendar>,
    pub first_response_us: i64,
    pub resolution_us: i64,
    /// Per category: its own first-response and resolution targets, where set.
    pub categories: BTreeMap<String, Targets>,
}

/// A category's targets; unset ones are the defaults of [`ServiceLevels`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Targets {
    pub first_response_us: Option<i64>,
    pub resolution_us: Option<i64>,
}

impl Default for ServiceLevels {
    /// Monday to Friday 09:00–17:00 UTC; a first response within 4 business hours,
    /// resolution within 16 (two working days).
    fn default() -> Self {
        ServiceLevels {
            calendar: Calendar::default(),
            teams: BTreeMap::new(),
            first_response_us: 4 * HOUR_US,
            resolution_us: 16 * HOUR_US,
            categories: BTreeMap::new(),
        }
    }
}

impl ServiceLevels {
    pub fn calendar(&self, team: &str) -> &Calendar {
        self.teams.get(team).unwrap_or(&self.calendar)
    }

    /// When a case of `category` opened by `team` at `opened` is due for `target`,
    /// counted in the business hours of the team's calendar.
    pub fn due(
        &self,
        target: crate::journey::ServiceTarget,
        team: &str,
        category: &str,
        opened: Timestamp,
    ) -> Timestamp {
        let business_us = match target {
            crate::journey::ServiceTarget::FirstResponse => self.first_response_us(category),
            crate::journey::ServiceTarget::Resolution => self.resolution_us(category),
        };
        // Capped like every computed instant: a due time must be one an event may carry.
        self.calendar(team).add(opened, business_us).min(Timestamp::LATEST)
    }

    fn first_response_us(&self, category: &str) -> i64 {
        self.categories
            .get(category)
            .and_then(|t| t.first_response_us)
            .unwrap_or(self.first_response_us)
    }

    fn resolution_us(&self, category: &str) -> i64 {
        self.categories
            .get(category)
            .and_then(|t| t.resolution_us)
            .unwrap_or(self.resolution_us)
    }
}

/// One case as its events tell it.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub id: String,
    /// The customer it was opened for (troth's id), when known.
    pub customer: Option<String>,
    pub category: String,
    /// The team that opened it, and the team that has it now (after transfers).
    pub opened_by_team: String,
    pub team: String,
    /// The agent who has it now, or resolved it.
    pub agent: Option<String>,
    pub order: Option<String>,
    /// The touchpoint `case.opened` named in its envelope, if any (plays name theirs).
    pub touchpoint: Option<String>,
    pub opened_at: Timestamp,
    /// The first thing done for the customer after opening: a hold on the call, a
    /// callback promised or made, or the resolution. A transfer passes the case on
    /// and is not a response.
    pub first_response_at: Option<Timestamp>,
    /// The latest resolution, unless reopened since.
    pub resolved_at: Option<Timestamp>,
    pub resolution: Option<String>,
    pub transfers: u32,
    pub holds: u32,
    pub held_seconds: u64,
    pub reopens: u32,
    pub callbacks_promised: u32,
    pub callbacks_made: u32,
}

impl Case {
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }
}

/// Cases folded from their events; events of a case opened before them are ignored.
#[derive(Debug, Default)]
pub struct Cases {
    cases: Vec<Case>,
    by_id: HashMap<String, usize>,
}

impl Cases {
    /// Applies one event, with the customer it was resolved to (`cus_N`), if it concerns a case.
    pub fn apply(&mut self, event: &ValidEvent, customer: Option<&str>) {
        if let EventData::CaseOpened(opened) = &event.data {
            if self.by_id.contains_key(&opened.case) {
                return;
            }
            self.by_id.insert(opened.case.clone(), self.cases.len());
            self.cases.push(Case {
                id: opened.case.clone(),
                customer: customer.map(str::to_owned),
                category: opened.category.clone(),
                opened_by_team: opened.team.clone(),
                team: opened.team.clone(),
                agent: opened.agent.clone(),
                order: opened.order.clone(),
                touchpoint: event.touchpoint.clone(),
                opened_at: event.time,
                first_response_at: None,
                resolved_at: None,
                resolution: None,
                transfers: 0,
                holds: 0,
                held_seconds: 0,
                reopens: 0,
                callbacks_promised: 0,
                callbacks_made: 0,
            });
            return;
        }
        let Some(id) = event.subject.as_deref().and_then(|s| s.strip_prefix("case:")) else {
            return;
        };
        let Some(&index) = self.by_id.get(id) else {
            return;
        };
        let case = &mut self.cases[index];
        let responded = match &event.data {
            EventData::CaseTransferred(t) => {
                case.transfers += 1;
                case.team = t.to_team.clone();
                case.agent = t.to_agent.clone();
                false
            }
            EventData::CaseHeld(h) => {
                case.holds += 1;
                case.held_seconds += u64::from(h.seconds);
                true
            }
            EventData::CallbackPromised(c) => {
                case.callbacks_promised += 1;
                if c.agent.is_some() {
                    case.agent = c.agent.clone();
                }
                true
            }
            EventData::CallbackMade(_) => {
                case.callbacks_made += 1;
                true
            }
            EventData::CaseResolved(r) => {
                case.resolved_at = Some(event.time);
                case.resolution = Some(r.resolution.clone());
                if r.agent.is_some() {
                    case.agent = r.agent.clone();
                }
                true
            }
            EventData::CaseReopened(_) => {
                case.reopens += 1;
                case.resolved_at = None;
                case.resolution = None;
                false
            }
            _ => false,
        };
        if responded && case.first_response_at.is_none() {
            case.first_response_at = Some(event.time);
        }
    }

    pub fn into_vec(self) -> Vec<Case> {
        self.cases
    }
}

/// Where a service-level clock stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClockState {
    /// Done by the due time.
    Met,
    /// Done after the due time.
    MissedThenDone,
    /// Not done, and not due yet.
    Running,
    /// Not done, and past due.
    Breached,
}

/// One service-level clock of a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SlaClock {
    /// When it is due (RFC 3339).
    pub due: String,
    pub state: ClockState,
    /// Business minutes left until due while running; negative once breached;
    /// for a clock that stopped, how early (positive) or late (negative) it was met.
    pub business_minutes_left: i64,
}

impl SlaClock {
    fn new(calendar: &Calendar, due: Timestamp, done: Option<Timestamp>, now: Timestamp) -> SlaClock {
        let (state, minutes) = match done {
            Some(at) if at <= due => (ClockState::Met, calendar.between(at, due) / 60_000_000),
            Some(at) => (ClockState::MissedThenDone, -calendar.between(due, at) / 60_000_000),
            None if now <= due => (ClockState::Running, calendar.between(now, due) / 60_000_000),
            None => (ClockState::Breached, -calendar.between(due, now) / 60_000_000),
        };
        SlaClock {
            due: due.to_string(),
            state,
            business_minutes_left: minutes,
        }
    }

    pub fn is_breached(&self) -> bool {
        matches!(self.state, ClockState::Breached | ClockState::MissedThenDone)
    }
}

/// A case as the API and the pages show it: its facts, its clocks at `now`, and its effort.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaseView {
    pub id: String,
    pub customer: Option<String>,
    pub category: String,
    pub team: String,
    pub opened_by_team: String,
    pub agent: Option<String>,
    pub order: Option<String>,
    /// `open` or `resolved`.
    pub state: String,
    pub opened_at: String,
    pub first_response_at: Option<String>,
    pub resolved_at: Option<String>,
    pub resolution: Option<String>,
    pub first_response: SlaClock,
    pub resolution_clock: SlaClock,
    /// Either clock breached (or met late).
    pub breached: bool,
    pub effort: Effort,
    /// Resolved on the first contact (see the module's definition); `null` while open.
    pub first_contact_resolution: Option<bool>,
}

/// What the case cost the customer in effort.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Effort {
    pub transfers: u32,
    pub holds: u32,
    pub held_seconds: u64,
    pub reopens: u32,
    /// Other cases the same customer opened about the same order or in the same
    /// category within 7 days of this one's resolution (or since it opened, while open).
    pub repeat_contacts: u32,
}

/// Each case's clocks, effort and first-contact verdict at `now`. `cases` must hold
/// every case of the customers concerned that could be a repeat contact (the
/// period asked for and the 7 days after it).
pub fn views(cases: &[Case], levels: &ServiceLevels, now: Timestamp) -> Vec<CaseView> {
    let mut by_customer: HashMap<&str, Vec<&Case>> = HashMap::new();
    for case in cases {
        if let Some(customer) = &case.customer {
            by_customer.entry(customer).or_default().push(case);
        }
    }
    cases
        .iter()
        .map(|case| {
            let calendar = levels.calendar(&case.team);
            let opened_calendar = levels.calendar(&case.opened_by_team);
            let first_due = opened_calendar.add(case.opened_at, levels.first_response_us(&case.category));
            let resolution_due = opened_calendar.add(case.opened_at, levels.resolution_us(&case.category));
            let first_response = SlaClock::new(opened_calendar, first_due, case.first_response_at, now);
            let resolution_clock = SlaClock::new(calendar, resolution_due, case.resolved_at, now);
            let repeats = repeat_contacts(case, by_customer.get(case.customer.as_deref().unwrap_or("")));
            let effort = Effort {
                transfers: case.transfers,
                holds: case.holds,
                held_seconds: case.held_seconds,
                reopens: case.reopens,
                repeat_contacts: repeats,
            };
            CaseView {
                id: case.id.clone(),
                customer: case.customer.clone(),
                category: case.category.clone(),
                team: case.team.clone(),
                opened_by_team: case.opened_by_team.clone(),
                agent: case.agent.clone(),
                order: case.order.clone(),
                state: if case.is_open() { "open" } else { "resolved" }.into(),
                opened_at: case.opened_at.to_string(),
                first_response_at: case.first_response_at.map(|t| t.to_string()),
                resolved_at: case.resolved_at.map(|t| t.to_string()),
                resolution: case.resolution.clone(),
                breached: first_response.is_breached() || resolution_clock.is_breached(),
                first_response,
                resolution_clock,
                effort,
                first_contact_resolution: (!case.is_open())
                    .then_some(case.transfers == 0 && case.reopens == 0 && repeats == 0),
            }
        })
        .collect()
}

/// Other cases of the same customer about the same order or in the same category,
/// opened after this one and within [`REPEAT_WINDOW_US`] of its resolution (or at
/// any time since, while it is open).
fn repeat_contacts(case: &Case, same_customer: Option<&Vec<&Case>>) -> u32 {
    let until = case.resolved_at.map(|t| t.plus_capped(REPEAT_WINDOW_US));
    same_customer
        .into_iter()
        .flatten()
        .filter(|other| other.id != case.id && other.opened_at > case.opened_at)
        .filter(|other| until.is_none_or(|until| other.opened_at <= until))
        .filter(|other| {
            let same_order = case.order.is_some() && other.order == case.order;
            same_order || other.category == case.category
        })
        .count() as u32
}

/// Which touchpoint of a journey map each case is about: the moment of the journey
/// that brought the customer to the contact centre, which is what a contact-centre
/// lead asks of first-contact resolution per touchpoint ("are delivery complaints
/// settled in one call?"). Grouping by the touchpoint where `case.opened` counts as
/// exposure would put every case at the contact centre's own touchpoint.
///
/// A case's touchpoint is, the first that applies:
/// 1. the touchpoint its `case.opened` names (the envelope's `touchpoint`), if the map
///    has it: the sender knows best, and troth's plays name the touchpoint whose play
///    opened the case (a lost parcel's case: `delivery`);
/// 2. the touchpoint whose `case_categories` lists the case's category: the contact
///    centre's own reason for the contact, which the map ties to a touchpoint;
/// 3. for a case about an order, where the order stood when the case was opened: the
///    touchpoint of the latest event about the order or one of its shipments, at or
///    before the opening, that counts as exposure somewhere (of its touchpoints, the
///    first in the map). The contact centre's own events ([`EVENT_TYPES`],
///    [`AGENT_RECORDS`]) are left aside: an earlier case about the order is not where
///    the order stood;
/// 4. the contact itself: the first touchpoint that counts `case.opened` as exposure
///    (the retail map's `complaint`);
/// 5. else [`UNATTRIBUTED`].
#[derive(Debug, Clone, Default)]
pub struct CaseTouchpoints {
    touchpoints: HashSet<String>,
    by_category: HashMap<String, String>,
    by_exposure: HashMap<String, String>,
    contact: Option<String>,
}

impl CaseTouchpoints {
    pub fn new(map: &JourneyMap) -> CaseTouchpoints {
        let mut index = CaseTouchpoints::default();
        for t in &map.touchpoints {
            index.touchpoints.insert(t.key.clone());
            for category in &t.case_categories {
                index
                    .by_category
                    .entry(category.clone())
                    .or_insert_with(|| t.key.clone());
            }
            for event_type in &t.exposure {
                let contact_centre =
                    EVENT_TYPES.contains(&event_type.as_str()) || AGENT_RECORDS.contains(&event_type.as_str());
                if !contact_centre {
                    index
                        .by_exposure
                        .entry(event_type.clone())
                        .or_insert_with(|| t.key.clone());
                }
            }
            if index.contact.is_none() && t.exposure.iter().any(|e| e == "case.opened") {
                index.contact = Some(t.key.clone());
            }
        }
        index
    }

    /// The touchpoint `case` is about. `order_events`: the time and type of each event
    /// about the case's order (its own, `order:{id}`, and its shipments'), in log
    /// order; those after the case was opened do not count. Ignored without an order.
    pub fn of<'e>(&self, case: &Case, order_events: impl IntoIterator<Item = (Timestamp, &'e str)>) -> String {
        if let Some(named) = case.touchpoint.as_ref().filter(|t| self.touchpoints.contains(*t)) {
            return named.clone();
        }
        if let Some(touchpoint) = self.by_category.get(&case.category) {
            return touchpoint.clone();
        }
        if case.order.is_some() {
            let mut latest: Option<(Timestamp, &String)> = None;
            for (time, event_type) in order_events {
                let Some(touchpoint) = self.by_exposure.get(event_type) else {
                    continue;
                };
                // Of events at the same instant, the later in the log.
                if time <= case.opened_at && latest.is_none_or(|(at, _)| time >= at) {
                    latest = Some((time, touchpoint));
                }
            }
            if let Some((_, touchpoint)) = latest {
                return touchpoint.clone();
            }
        }
        self.contact.clone().unwrap_or_else(|| UNATTRIBUTED.to_owned())
    }
}

/// How first-contact resolution is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FcrBy<'a> {
    /// The team that had the case when it was resolved.
    Team,
    /// The agent who resolved it (`unassigned` when none was named).
    Agent,
    Category,
    /// The touchpoint the case is about, by case id (from [`CaseTouchpoints::of`]);
    /// a case missing from it counts as [`UNATTRIBUTED`].
    Touchpoint(&'a HashMap<String, String>),
}

/// First-contact resolution of one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FcrRow {
    pub key: String,
    /// Cases opened in the period.
    pub cases: u64,
    pub resolved: u64,
    /// Resolved on the first contact.
    pub first_contact: u64,
    /// `first_contact / resolved`; `null` when none was resolved.
    pub rate: Option<f64>,
    /// Effort summed over the group's cases.
    pub transfers: u64,
    pub holds: u64,
    pub reopens: u64,
    pub repeat_contacts: u64,
}

/// First-contact resolution per group, worst rate first (groups without a resolved case last).
pub fn first_contact_resolution(views: &[CaseView], by: FcrBy<'_>) -> Vec<FcrRow> {
    let mut rows: BTreeMap<String, FcrRow> = BTreeMap::new();
    for view in views {
        let key = match by {
            FcrBy::Team => view.team.clone(),
            FcrBy::Agent => view.agent.clone().unwrap_or_else(|| "unassigned".into()),
            FcrBy::Category => view.category.clone(),
            FcrBy::Touchpoint(of) => of.get(&view.id).cloned().unwrap_or_else(|| UNATTRIBUTED.into()),
        };
        let row = rows.entry(key.clone()).or_insert_with(|| FcrRow {
            key,
            cases: 0,
            resolved: 0,
            first_contact: 0,
            rate: None,
            transfers: 0,
            holds: 0,
            reopens: 0,
            repeat_contacts: 0,
        });
        row.cases += 1;
        row.resolved += u64::from(view.first_contact_resolution.is_some());
        row.first_contact += u64::from(view.first_contact_resolution == Some(true));
        row.transfers += u64::from(view.effort.transfers);
        row.holds += u64::from(view.effort.holds);
        row.reopens += u64::from(view.effort.reopens);
        row.repeat_contacts += u64::from(view.effort.repeat_contacts);
    }
    let mut rows: Vec<FcrRow> = rows
        .into_values()
        .map(|mut row| {
            row.rate = (row.resolved > 0).then(|| row.first_contact as f64 / row.resolved as f64);
            row
        })
        .collect();
    rows.sort_by(|a, b| match (a.rate, b.rate) {
        (Some(x), Some(y)) => x.total_cmp(&y).then_with(|| a.key.cmp(&b.key)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.key.cmp(&b.key),
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: &str, kind: &str, time: &str, subject: &str, data: serde_json::Value) -> ValidEvent {
        let value = json!({"id": id, "type": kind, "time": time, "subject": subject, "data": data});
        crate::validate_value(value, None).unwrap()
    }

    fn opened(id: &str, time: &str, category: &str, team: &str, order: Option<&str>) -> ValidEvent {
        let mut data = json!({"case": id, "category": category, "team": team});
        if let Some(order) = order {
            data["order"] = json!(order);
        }
        event(&format!("{id}-open"), "case.opened", time, &format!("case:{id}"), data)
    }

    fn paris_week() -> ServiceLevels {
        ServiceLevels {
            calendar: Calendar::new("Europe/Paris", "Mon-Fri 09:00-18:00", &[]).unwrap(),
            ..ServiceLevels::default()
        }
    }

    fn fold(events: &[(ValidEvent, &str)]) -> Vec<Case> {
        let mut cases = Cases::default();
        for (event, customer) in events {
            cases.apply(event, Some(customer));
        }
        cases.into_vec()
    }

    #[test]
    fn a_case_opened_friday_evening_with_four_business_hours_is_due_monday() {
        // Friday 27 November 2026, 17:50 in Paris.
        let cases = fold(&[(
            opened("k-1", "2026-11-27T16:50:00Z", "delivery", "support", None),
            "cus_1",
        )]);
        let levels = paris_week();
        let saturday = Timestamp::parse("2026-11-28T12:00:00Z").unwrap();
        let view = &views(&cases, &levels, saturday)[0];
        assert_eq!(
            view.first_response.due, "2026-11-30T11:50:00.000000Z",
            "Monday 12:50 in Paris"
        );
        assert_eq!(view.first_response.state, ClockState::Running);
        assert_eq!(view.first_response.business_minutes_left, 230, "3 h 50 of Monday left");
        // Monday 13:00 in Paris, nothing done: breached by 10 business minutes.
        let monday = Timestamp::parse("2026-11-30T12:00:00Z").unwrap();
        let view = &views(&cases, &levels, monday)[0];
        assert_eq!(view.first_response.state, ClockState::Breached);
        assert_eq!(view.first_response.business_minutes_left, -10);
        assert!(view.breached);
    }

    #[test]
    fn holds_callbacks_and_resolution_stop_the_clocks_and_transfers_do_not() {
        let t = |s: &str| format!("2026-11-30T{s}:00Z");
        let cases = fold(&[
            (opened("k-1", &t("09:00"), "invoice", "support", Some("o-1")), "cus_1"),
            (
                event(
                    "a",
                    "case.transferred",
                    &t("09:10"),
                    "case:k-1",
                    json!({"from_team": "support", "to_team": "billing", "to_agent": "ann"}),
                ),
                "cus_1",
            ),
            (
                event("b", "case.held", &t("09:20"), "case:k-1", json!({"seconds": 300})),
                "cus_1",
            ),
            (
                event(
                    "c",
                    "case.resolved",
                    &t("10:00"),
                    "case:k-1",
                    json!({"resolution": "explained"}),
                ),
                "cus_1",
            ),
        ]);
        let view = &views(
            &cases,
            &ServiceLevels::default(),
            Timestamp::parse(&t("12:00")).unwrap(),
        )[0];
        assert_eq!(
            view.first_response_at.as_deref(),
            Some("2026-11-30T09:20:00.000000Z"),
            "the hold, not the transfer"
        );
        assert_eq!(view.first_response.state, ClockState::Met);
        assert_eq!(view.resolution_clock.state, ClockState::Met);
        assert_eq!((view.team.as_str(), view.agent.as_deref()), ("billing", Some("ann")));
        assert_eq!(view.effort.transfers, 1);
        assert_eq!((view.effort.holds, view.effort.held_seconds), (1, 300));
        assert_eq!(view.first_contact_resolution, Some(false), "transferred");
    }

    #[test]
    fn first_contact_resolution_by_hand() {
        let t = |day: u32, hm: &str| format!("2026-11-{day:02}T{hm}:00Z");
        let resolved = |id: &str, case: &str, at: String, agent: &str| {
            event(
                id,
                "case.resolved",
                &at,
                &format!("case:{case}"),
                json!({"resolution": "refunded", "agent": agent}),
            )
        };
        let cases = fold(&[
            // k-1: resolved at once, no repeat: first contact.
            (
                opened("k-1", &t(2, "09:00"), "delivery", "support", Some("o-1")),
                "cus_1",
            ),
            (resolved("r1", "k-1", t(2, "09:30"), "ann"), "cus_1"),
            // k-2: resolved, but the customer called again about the same order 3 days later (k-3).
            (
                opened("k-2", &t(2, "10:00"), "delivery", "support", Some("o-2")),
                "cus_2",
            ),
            (resolved("r2", "k-2", t(2, "10:30"), "ann"), "cus_2"),
            (opened("k-3", &t(5, "10:00"), "refund", "support", Some("o-2")), "cus_2"),
            (resolved("r3", "k-3", t(5, "10:30"), "bob"), "cus_2"),
            // k-4: reopened, then resolved again.
            (opened("k-4", &t(2, "11:00"), "refund", "billing", None), "cus_3"),
            (resolved("r4", "k-4", t(2, "11:30"), "bob"), "cus_3"),
            (
                event("x4", "case.reopened", &t(3, "09:00"), "case:k-4", json!({})),
                "cus_3",
            ),
            (resolved("r4b", "k-4", t(3, "09:30"), "bob"), "cus_3"),
            // k-5: another customer's case in the same category 8 days later is no repeat;
            // cus_1's second delivery case 8 days after k-1's resolution is none either.
            (
                opened("k-5", &t(10, "09:00"), "delivery", "support", Some("o-9")),
                "cus_1",
            ),
            // k-6: still open.
            (opened("k-6", &t(20, "09:00"), "refund", "billing", None), "cus_4"),
        ]);
        let now = Timestamp::parse(&t(20, "12:00")).unwrap();
        let views = views(&cases, &ServiceLevels::default(), now);
        let fcr: HashMap<&str, Option<bool>> = views
            .iter()
            .map(|v| (v.id.as_str(), v.first_contact_resolution))
            .collect();
        assert_eq!(fcr["k-1"], Some(true));
        assert_eq!(fcr["k-2"], Some(false), "a repeat contact about o-2");
        assert_eq!(fcr["k-3"], Some(true));
        assert_eq!(fcr["k-4"], Some(false), "reopened");
        assert_eq!(fcr["k-5"], None, "open");
        assert_eq!(fcr["k-6"], None, "open");

        let by_agent = first_contact_resolution(&views, FcrBy::Agent);
        let row = |key: &str| by_agent.iter().find(|r| r.key == key).unwrap();
        assert_eq!((row("ann").resolved, row("ann").first_contact), (2, 1));
        assert_eq!((row("bob").resolved, row("bob").first_contact), (2, 1));
        assert_eq!(row("ann").repeat_contacts, 1);
        assert_eq!(row("unassigned").rate, None);
        let by_team = first_contact_resolution(&views, FcrBy::Team);
        assert_eq!(by_team[0].key, "billing", "worst first: billing 0 of 1");
        assert_eq!(by_team[0].rate, Some(0.0));
        let support = by_team.iter().find(|r| r.key == "support").unwrap();
        assert_eq!((support.cases, support.resolved, support.first_contact), (4, 3, 2));
    }

    fn retail() -> JourneyMap {
        crate::journey::parse_journey(include_str!("../../../journeys/retail.toml")).unwrap()
    }

    /// A `case.opened` naming `touchpoint` in its envelope.
    fn opened_naming(id: &str, time: &str, category: &str, touchpoint: &str) -> ValidEvent {
        let value = json!({"id": format!("{id}-open"), "type": "case.opened", "time": time,
                           "subject": format!("case:{id}"), "touchpoint": touchpoint,
                           "data": {"case": id, "category": category, "team": "support"}});
        crate::validate_value(value, None).unwrap()
    }

    #[test]
    fn a_case_belongs_to_the_touchpoint_it_is_about_by_hand() {
        let t = |day: u32, hm: &str| format!("2026-11-{day:02}T{hm}:00Z");
        let at = |day: u32, hm: &str| Timestamp::parse(&t(day, hm)).unwrap();
        let resolved = |id: &str, case: &str, at: String| {
            event(
                id,
                "case.resolved",
                &at,
                &format!("case:{case}"),
                json!({"resolution": "explained"}),
            )
        };
        let cases = fold(&[
            // k-1 names its touchpoint: that wins over its category's (delivery).
            (
                opened_naming("k-1", &t(3, "07:00"), "late_delivery", "tracking_page"),
                "cus_1",
            ),
            (resolved("r1", "k-1", t(3, "07:10")), "cus_1"),
            // k-2 names a touchpoint the map does not have: its category's, delivery.
            (opened_naming("k-2", &t(3, "08:00"), "lost_parcel", "nowhere"), "cus_2"),
            (
                event(
                    "x2",
                    "case.transferred",
                    &t(3, "08:05"),
                    "case:k-2",
                    json!({"from_team": "support", "to_team": "delivery"}),
                ),
                "cus_2",
            ),
            (resolved("r2", "k-2", t(3, "08:30")), "cus_2"),
            // k-3: a question (no category touchpoint) about o-3, where the order stood.
            (
                opened("k-3", &t(3, "07:00"), "question", "support", Some("o-3")),
                "cus_3",
            ),
            (resolved("r3", "k-3", t(3, "07:20")), "cus_3"),
            // k-4: a question about an order nothing else is known of: the contact itself.
            (
                opened("k-4", &t(3, "09:00"), "question", "support", Some("o-4")),
                "cus_4",
            ),
            (resolved("r4", "k-4", t(3, "09:20")), "cus_4"),
            // k-5: a question about no order, still open.
            (opened("k-5", &t(3, "10:00"), "question", "support", None), "cus_5"),
        ]);
        // o-3's events in log order: placed, its shipment created, an earlier case about
        // it (the contact centre's own: left aside), a position (no touchpoint's), then
        // out for delivery after k-3 was opened (too late to count).
        let o3 = [
            (at(2, "09:00"), "order.placed"),
            (at(2, "10:00"), "shipment.created"),
            (at(2, "11:00"), "case.opened"),
            (at(2, "12:00"), "courier.position"),
            (at(3, "08:00"), "shipment.out_for_delivery"),
        ];
        let index = CaseTouchpoints::new(&retail());
        let of: HashMap<String, String> = cases
            .iter()
            .map(|case| {
                let events = if case.order.as_deref() == Some("o-3") {
                    &o3[..]
                } else {
                    &[]
                };
                (case.id.clone(), index.of(case, events.iter().copied()))
            })
            .collect();
        let expect = [
            ("k-1", "tracking_page"),
            ("k-2", "delivery"),
            ("k-3", "delivery_window"),
            ("k-4", "complaint"),
            ("k-5", "complaint"),
        ];
        for (case, touchpoint) in expect {
            assert_eq!(of[case], touchpoint, "{case}");
        }
        // Out for delivery before the opening: the delivery.
        let k3 = cases.iter().find(|c| c.id == "k-3").unwrap();
        let earlier = [
            (at(2, "10:00"), "shipment.created"),
            (at(3, "06:30"), "shipment.out_for_delivery"),
        ];
        assert_eq!(index.of(k3, earlier), "delivery");
        // Two at the same instant: the later in the log.
        let tied = [
            (at(2, "10:00"), "shipment.created"),
            (at(2, "10:00"), "tracking.viewed"),
        ];
        assert_eq!(index.of(k3, tied), "tracking_page");

        let now = Timestamp::parse(&t(20, "12:00")).unwrap();
        let views = views(&cases, &ServiceLevels::default(), now);
        let rows: Vec<(String, u64, u64, u64, Option<f64>)> = first_contact_resolution(&views, FcrBy::Touchpoint(&of))
            .into_iter()
            .map(|r| (r.key, r.cases, r.resolved, r.first_contact, r.rate))
            .collect();
        assert_eq!(
            rows,
            [
                // k-2 was transferred.
                ("delivery".to_owned(), 1, 1, 0, Some(0.0)),
                // k-4 resolved at once; k-5 open.
                ("complaint".to_owned(), 2, 1, 1, Some(1.0)),
                ("delivery_window".to_owned(), 1, 1, 1, Some(1.0)),
                ("tracking_page".to_owned(), 1, 1, 1, Some(1.0)),
            ]
        );
        // A case missing from the attribution is unattributed.
        let rows = first_contact_resolution(&views, FcrBy::Touchpoint(&HashMap::new()));
        assert_eq!((rows[0].key.as_str(), rows[0].cases), (UNATTRIBUTED, 5));
    }

    #[test]
    fn a_map_where_no_touchpoint_is_the_contact_leaves_a_case_unattributed() {
        // One touchpoint, "deliver", owned by ops; `rest` ends its definition.
        let map_with = |rest: &str| {
            crate::journey::parse_journey(&format!(
                "key = \"m\"\nname = \"M\"\n[[functions]]\nkey = \"ops\"\nname = \"Ops\"\n\
                 [[touchpoints]]\nkey = \"deliver\"\nname = \"Deliver\"\nstage = \"smot\"\nowners = [\"ops\"]\n{rest}"
            ))
            .unwrap()
        };
        let map = map_with("exposure = [\"shipment.delivered\", \"case.opened\"]\ncase_categories = [\"damaged\"]\n");
        let cases = fold(&[
            (
                opened("k-1", "2026-11-03T09:00:00Z", "damaged", "support", None),
                "cus_1",
            ),
            (
                opened("k-2", "2026-11-03T09:00:00Z", "question", "support", Some("o-2")),
                "cus_1",
            ),
        ]);
        let index = CaseTouchpoints::new(&map);
        assert_eq!(index.of(&cases[0], []), "deliver", "by its category");
        assert_eq!(
            index.of(&cases[1], []),
            "deliver",
            "the touchpoint counting case.opened"
        );
        let map = map_with("exposure = [\"shipment.delivered\"]\n");
        let index = CaseTouchpoints::new(&map);
        assert_eq!(index.of(&cases[1], []), UNATTRIBUTED);
        let delivered = Timestamp::parse("2026-11-02T09:00:00Z").unwrap();
        assert_eq!(index.of(&cases[1], [(delivered, "shipment.delivered")]), "deliver");
    }

    #[test]
    fn events_of_unknown_cases_and_a_second_opening_change_nothing() {
        let cases = fold(&[
            (
                event(
                    "a",
                    "case.resolved",
                    "2026-11-30T09:00:00Z",
                    "case:k-9",
                    json!({"resolution": "x"}),
                ),
                "cus_1",
            ),
            (
                opened("k-1", "2026-11-30T09:00:00Z", "delivery", "support", None),
                "cus_1",
            ),
            (
                opened("k-1", "2026-11-30T10:00:00Z", "refund", "billing", None),
                "cus_1",
            ),
        ]);
        assert_eq!(cases.len(), 1);
        assert_eq!(
            (cases[0].category.as_str(), cases[0].team.as_str()),
            ("delivery", "support")
        );
    }

    #[test]
    fn resolution_codes_are_short_slugs() {
        for (code, _) in super::RESOLUTION_CODES {
            assert_eq!(super::check_resolution_code(code), Ok(()), "{code}");
        }
        assert_eq!(super::check_resolution_code("store_credit_2"), Ok(()));
        for bad in [
            "",
            "Refunded",
            "2nd_try",
            "refund promised",
            "refund-promised",
            &"a".repeat(41),
        ] {
            assert!(super::check_resolution_code(bad).is_err(), "{bad}");
        }
    }
}
