//! The promise engine: which events make, keep and break the promises of a journey
//! map, and what the clock does to them. Pure: the caller supplies the promises it
//! has stored and the time, and stores the changes this returns (as `promise.*`
//! events, so a replay of the log reproduces every transition).
//!
//! Lifecycle: `made → (at_risk) → kept | broken | cancelled`.
//! - An event that makes a promise while one of the same key is open on the same
//!   subject supersedes it: the old one is cancelled (a re-issued window replaces
//!   the old window).
//! - A keeping event counts on the promise's subject or on a subject linked to it
//!   (a shipment is linked to its order), at or after `start` and at or before the due
//!   time. After the due time it breaks the promise: kept late is broken.
//! - When the clock passes the due time of an open promise, it breaks. Should an
//!   event then arrive showing it was kept in time (data that reached troth late),
//!   the promise is corrected to kept: troth reports what happened, not what it knew.

use crate::ValidEvent;
use crate::catalogue::EventData;
use crate::envelope::{Derived, Rejection};
use crate::journey::{Conditions, Due, JourneyMap};
use crate::timestamp::Timestamp;

/// A promise being followed, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// `{promise key}:{id of the event that made it}`.
    pub id: String,
    /// The promise's key in the journey map.
    pub key: String,
    pub touchpoint: String,
    pub subject: String,
    pub made_at: Timestamp,
    pub start: Option<Timestamp>,
    pub due: Timestamp,
    pub at_risk_from: Option<Timestamp>,
    pub state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Made,
    AtRisk,
    Kept,
    /// `due_passed`: broken by the clock rather than by an event.
    Broken {
        due_passed: bool,
    },
    Cancelled,
}

impl State {
    pub fn is_open(self) -> bool {
        matches!(self, State::Made | State::AtRisk)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Made => "made",
            State::AtRisk => "at_risk",
            State::Kept => "kept",
            State::Broken { .. } => "broken",
            State::Cancelled => "cancelled",
        }
    }
}

/// A transition to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Made(Tracked),
    AtRisk {
        id: String,
        at: Timestamp,
    },
    Kept {
        id: String,
        at: Timestamp,
        by_event: String,
        corrects_break: bool,
    },
    Broken {
        id: String,
        at: Timestamp,
        cause: Cause,
    },
    Cancelled {
        id: String,
        at: Timestamp,
        /// The event that superseded it; `None` when it lapsed at its due time.
        by_event: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The due time passed with the promise open.
    DuePassed,
    /// An event that breaks it (a failed attempt, a lost parcel).
    Event { id: String, event_type: String },
    /// The keeping event came after the due time.
    KeptLate { id: String, event_type: String },
}

impl Change {
    pub fn promise_id(&self) -> &str {
        match self {
            Change::Made(t) => &t.id,
            Change::AtRisk { id, .. }
            | Change::Kept { id, .. }
            | Change::Broken { id, .. }
            | Change::Cancelled { id, .. } => id,
        }
    }

    /// The event type that records this change in the log.
    pub fn event_type(&self) -> &'static str {
        match self {
            Change::Made(_) => "promise.made",
            Change::AtRisk { .. } => "promise.at_risk",
            Change::Kept { .. } => "promise.kept",
            Change::Broken { .. } => "promise.broken",
            Change::Cancelled { .. } => "promise.cancelled",
        }
    }

    /// Applies the change to the promise it concerns.
    pub fn apply(&self, promise: &mut Tracked) {
        promise.state = match self {
            Change::Made(t) => t.state,
            Change::AtRisk { .. } => State::AtRisk,
            Change::Kept { .. } => State::Kept,
            Change::Broken { cause, .. } => State::Broken {
                due_passed: *cause == Cause::DuePassed,
            },
            Change::Cancelled { .. } => State::Cancelled,
        };
    }
}

impl Change {
    /// The event that records this change in the log. `promise` is the promise it
    /// concerns (for `Made`, the new one); `customer` the making event's customer,
    /// as JSON text. Its id is derived from the promise and the change, so a change
    /// decided twice is one event.
    pub fn event(&self, promise: &Tracked, customer: Option<&str>) -> Result<ValidEvent, Rejection> {
        use crate::catalogue::{BreakCause, PromiseAtRisk, PromiseBroken, PromiseCancelled, PromiseKept, PromiseMade};
        // `data` as JSON text, keys in the order a JSON tree writes them.
        #[derive(serde::Serialize)]
        #[serde(untagged)]
        enum Text<'a> {
            Made {
                #[serde(skip_serializing_if = "Option::is_none")]
                at_risk_from: Option<String>,
                due: String,
                key: &'a str,
                made_by_event: &'a str,
                promise: &'a str,
                #[serde(skip_serializing_if = "Option::is_none")]
                start: Option<String>,
                touchpoint: &'a str,
            },
            Kept {
                by_event: &'a str,
                #[serde(skip_serializing_if = "Option::is_none")]
                corrects_break: Option<bool>,
                promise: &'a str,
            },
            Broken {
                #[serde(skip_serializing_if = "Option::is_none")]
                by_event: Option<&'a str>,
                cause: &'static str,
                promise: &'a str,
            },
            /// At risk, and cancelled.
            Other {
                #[serde(skip_serializing_if = "Option::is_none")]
                by_event: Option<&'a str>,
                promise: &'a str,
            },
        }
        let (at, data, written, strings): (Timestamp, EventData, Text<'_>, [Option<&str>; 4]) = match self {
            Change::Made(t) => {
                let made_by_event = t.id.split_once(':').map_or("", |(_, e)| e);
                let data = PromiseMade {
                    promise: t.id.clone(),
                    key: t.key.clone(),
                    touchpoint: t.touchpoint.clone(),
                    due: t.due,
                    start: t.start,
                    at_risk_from: t.at_risk_from,
                    made_by_event: made_by_event.to_owned(),
                };
                let written = Text::Made {
                    at_risk_from: t.at_risk_from.map(|t| t.to_string()),
                    due: t.due.to_string(),
                    key: &t.key,
                    made_by_event,
                    promise: &t.id,
                    start: t.start.map(|t| t.to_string()),
                    touchpoint: &t.touchpoint,
                };
                let strings = [Some(&*t.id), Some(&*t.key), Some(&*t.touchpoint), Some(made_by_event)];
                (t.made_at, EventData::PromiseMade(data), written, strings)
            }
            Change::AtRisk { id, at } => (
                *at,
                EventData::PromiseAtRisk(PromiseAtRisk { promise: id.clone() }),
                Text::Other {
                    by_event: None,
                    promise: id,
                },
                [Some(id), None, None, None],
            ),
            Change::Kept {
                id,
                at,
                by_event,
                corrects_break,
            } => {
                // Written only when it does.
                let corrects_break = corrects_break.then_some(true);
                (
                    *at,
                    EventData::PromiseKept(PromiseKept {
                        promise: id.clone(),
                        by_event: by_event.clone(),
                        corrects_break,
                    }),
                    Text::Kept {
                        by_event,
                        corrects_break,
                        promise: id,
                    },
                    [Some(id), Some(by_event), None, None],
                )
            }
            Change::Broken { id, at, cause } => {
                let (cause, by_event) = match cause {
                    Cause::DuePassed => (BreakCause::DuePassed, None),
                    Cause::Event { id, .. } => (BreakCause::Event, Some(id)),
                    Cause::KeptLate { id, .. } => (BreakCause::KeptLate, Some(id)),
                };
                (
                    *at,
                    EventData::PromiseBroken(PromiseBroken {
                        promise: id.clone(),
                        cause,
                        by_event: by_event.cloned(),
                    }),
                    Text::Broken {
                        by_event: by_event.map(String::as_str),
                        cause: cause.as_str(),
                        promise: id,
                    },
                    [Some(id), by_event.map(String::as_str), None, None],
                )
            }
            Change::Cancelled { id, at, by_event } => (
                *at,
                EventData::PromiseCancelled(PromiseCancelled {
                    promise: id.clone(),
                    by_event: by_event.clone(),
                }),
                Text::Other {
                    by_event: by_event.as_deref(),
                    promise: id,
                },
                [Some(id), by_event.as_deref(), None, None],
            ),
        };
        let event_type = self.event_type();
        let id = format!("troth.{}.{}", promise.id, &event_type["promise.".len()..]);
        let data_text = serde_json::to_string(&written).map_err(|e| Rejection {
            id: Some(id.clone()),
            error: crate::FieldError::new("data", format!("cannot be written as JSON: {e}")),
        })?;
        Derived {
            id,
            event_type,
            time: at,
            subject: &promise.subject,
            touchpoint: &promise.touchpoint,
            customer,
            data,
            data_text,
            data_plain: strings.iter().flatten().all(|s| !s.is_empty()),
        }
        .into_event()
    }
}

/// One promise definition of the map, ready to match events.
#[derive(Debug, Clone)]
struct Rule {
    key: String,
    touchpoint: String,
    due: Due,
    start_field: Option<String>,
    kept_by: Vec<String>,
    broken_by: Vec<String>,
    at_risk_before_us: Option<i64>,
    made_when: Conditions,
    kept_when: Conditions,
    broken_when: Conditions,
    match_on: Vec<String>,
    lapses: bool,
}

impl Rule {
    /// The subject a promise of this rule is kept under for `event`: the event's
    /// own, or one built from `match_on` (`promise:in_stock/cus_7/st-3/sku-1`).
    fn subject(&self, event: &ValidEvent, data: &Data, customer: Option<&str>) -> Option<String> {
        if self.match_on.is_empty() {
            return event.subject.clone();
        }
        let mut parts = Vec::with_capacity(self.match_on.len());
        for name in &self.match_on {
            parts.push(match name.as_str() {
                "customer" => customer?.to_owned(),
                field => match data.get(field)? {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => return None,
                    other => other.to_string(),
                },
            });
        }
        Some(format!("promise:{}/{}", self.key, parts.join("/")))
    }
}

/// An event's data object, read from its text only when a condition or a match
/// asks for a field (most promises need neither), and then once.
struct Data<'a> {
    event: &'a ValidEvent,
    parsed: std::cell::OnceCell<Option<serde_json::Map<String, serde_json::Value>>>,
}

impl<'a> Data<'a> {
    fn of(event: &'a ValidEvent) -> Data<'a> {
        Data {
            event,
            parsed: std::cell::OnceCell::new(),
        }
    }

    fn get(&self, field: &str) -> Option<&serde_json::Value> {
        self.parsed
            .get_or_init(|| {
                // Only `data` is built; the rest of the event (its customer, its
                // context) is skipped over without allocating.
                #[derive(serde::Deserialize)]
                struct DataOnly {
                    data: Option<serde_json::Map<String, serde_json::Value>>,
                }
                serde_json::from_str::<DataOnly>(&self.event.raw).ok()?.data
            })
            .as_ref()?
            .get(field)
    }

    /// A date-time field: the journey checker has made sure the field is a
    /// date-time of that event type.
    fn timestamp(&self, field: &str) -> Option<Timestamp> {
        Timestamp::parse_rfc3339(self.get(field)?.as_str()?)
    }

    fn meets(&self, conditions: &Conditions) -> bool {
        conditions.iter().all(|(field, value)| match value {
            serde_json::Value::Null => self.get(field) != Some(&serde_json::Value::Bool(true)),
            serde_json::Value::Array(any_of) => self.get(field).is_some_and(|v| any_of.contains(v)),
            value => self.get(field) == Some(value),
        })
    }
}

/// The promises of a journey map, indexed by the event types that concern them.
#[derive(Debug, Clone, Default)]
pub struct PromiseBook {
    rules: Vec<Rule>,
    by_maker: crate::FastMap<String, Vec<usize>>,
    by_key: crate::FastMap<String, usize>,
    /// Every event type that makes, keeps or breaks some promise.
    concerned: crate::FastSet<String>,
    /// For promises due by a case's service level.
    service: crate::case::ServiceLevels,
}

impl PromiseBook {
    pub fn new(map: &JourneyMap) -> PromiseBook {
        let mut book = PromiseBook {
            service: map.service.clone(),
            ..PromiseBook::default()
        };
        for (touchpoint, p) in map.promises() {
            let index = book.rules.len();
            book.by_maker.entry(p.made_by.clone()).or_default().push(index);
            book.by_key.insert(p.key.clone(), index);
            book.rules.push(Rule {
                key: p.key.clone(),
                touchpoint: touchpoint.key.clone(),
                due: p.due.clone(),
                start_field: p.start_field.clone(),
                kept_by: p.kept_by.clone(),
                broken_by: p.broken_by.clone(),
                at_risk_before_us: p
                    .at_risk_before_seconds
                    .map(|s| i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1_000_000)),
                made_when: p.made_when.clone(),
                kept_when: p.kept_when.clone(),
                broken_when: p.broken_when.clone(),
                match_on: p.match_on.clone(),
                lapses: p.lapses,
            });
            book.concerned.extend(
                std::iter::once(&p.made_by)
                    .chain(&p.kept_by)
                    .chain(&p.broken_by)
                    .cloned(),
            );
        }
        book
    }

    /// Whether this event type makes, keeps or breaks any promise (cheap pre-check).
    pub fn concerns(&self, event_type: &str) -> bool {
        self.by_maker.contains_key(event_type)
            || self
                .rules
                .iter()
                .any(|r| r.kept_by.iter().chain(&r.broken_by).any(|t| t == event_type))
    }

    /// Whether some promise this event type makes, keeps or breaks is matched on
    /// the customer (so the caller must say who the event was resolved to).
    pub fn needs_customer(&self, event_type: &str) -> bool {
        let makers = self.by_maker.get(event_type);
        self.rules.iter().enumerate().any(|(index, rule)| {
            rule.match_on.iter().any(|m| m == "customer")
                && (rule.kept_by.iter().any(|t| t == event_type)
                    || rule.broken_by.iter().any(|t| t == event_type)
                    || makers.is_some_and(|m| m.contains(&index)))
        })
    }

    /// The subjects under which promises this event may keep or break are kept:
    /// its own, and those built for promises matched on customer and data fields.
    /// `customer` is the customer the event was resolved to (`cus_7`).
    pub fn subjects(&self, event: &ValidEvent, customer: Option<&str>) -> Vec<String> {
        let mut subjects: Vec<String> = event.subject.iter().cloned().collect();
        let mut data = None;
        let makers = self.by_maker.get(&event.event_type);
        for (index, rule) in self.rules.iter().enumerate().filter(|(_, r)| !r.match_on.is_empty()) {
            if rule.kept_by.contains(&event.event_type)
                || rule.broken_by.contains(&event.event_type)
                || makers.is_some_and(|m| m.contains(&index))
            {
                let data = data.get_or_insert_with(|| Data::of(event));
                if let Some(subject) = rule.subject(event, data, customer)
                    && !subjects.contains(&subject)
                {
                    subjects.push(subject);
                }
            }
        }
        subjects
    }

    /// The changes an event causes. `known` holds the stored promises under the
    /// event's [`subjects`](PromiseBook::subjects) and the subjects linked to them,
    /// open ones and those broken by the clock (which a late-arriving keeping event
    /// may correct). `customer` is the customer the event was resolved to.
    pub fn on_event(&self, event: &ValidEvent, known: &[Tracked], customer: Option<&str>) -> Vec<Change> {
        let mut changes = Vec::new();
        let data = Data::of(event);
        for tracked in known {
            let Some(rule) = self.by_key.get(&tracked.key).map(|&i| &self.rules[i]) else {
                continue;
            };
            // A promise matched on customer and fields concerns only events that match it.
            if !rule.match_on.is_empty() && rule.subject(event, &data, customer).as_ref() != Some(&tracked.subject) {
                continue;
            }
            if rule.kept_by.contains(&event.event_type) && data.meets(&rule.kept_when) {
                if let Some(change) = keep(tracked, event) {
                    changes.push(change);
                }
            } else if rule.broken_by.contains(&event.event_type)
                && data.meets(&rule.broken_when)
                && tracked.state.is_open()
            {
                changes.push(Change::Broken {
                    id: tracked.id.clone(),
                    at: event.time,
                    cause: Cause::Event {
                        id: event.id.clone(),
                        event_type: event.event_type.clone(),
                    },
                });
            }
        }
        for &index in self.by_maker.get(&event.event_type).into_iter().flatten() {
            let rule = &self.rules[index];
            if !data.meets(&rule.made_when) {
                continue;
            }
            let Some(subject) = rule.subject(event, &data, customer) else {
                continue;
            };
            let Some(made) = make(rule, event, &data, &subject, &self.service) else {
                continue;
            };
            for old in known
                .iter()
                .filter(|t| t.key == rule.key && t.subject == subject && t.state.is_open())
            {
                changes.push(Change::Cancelled {
                    id: old.id.clone(),
                    at: event.time,
                    by_event: Some(event.id.clone()),
                });
            }
            changes.push(Change::Made(made));
        }
        changes
    }

    /// What the clock does to a promise at `now`: at risk, or broken when due.
    pub fn on_clock(&self, promise: &Tracked, now: Timestamp) -> Option<Change> {
        if !promise.state.is_open() {
            return None;
        }
        if now > promise.due {
            let lapses = self.by_key.get(&promise.key).is_some_and(|&i| self.rules[i].lapses);
            if lapses {
                return Some(Change::Cancelled {
                    id: promise.id.clone(),
                    at: promise.due,
                    by_event: None,
                });
            }
            return Some(Change::Broken {
                id: promise.id.clone(),
                at: promise.due,
                cause: Cause::DuePassed,
            });
        }
        match promise.at_risk_from {
            Some(from) if promise.state == State::Made && now >= from => Some(Change::AtRisk {
                id: promise.id.clone(),
                at: from,
            }),
            _ => None,
        }
    }
}

/// When the clock should next look at a promise, if ever.
pub fn next_check(promise: &Tracked) -> Option<Timestamp> {
    match promise.state {
        State::Made => Some(
            promise
                .at_risk_from
                .filter(|&t| t < promise.due)
                .unwrap_or(promise.due.plus_us(1)),
        ),
        State::AtRisk => Some(promise.due.plus_us(1)),
        _ => None,
    }
}

fn make(
    rule: &Rule,
    event: &ValidEvent,
    data: &Data,
    subject: &str,
    service: &crate::case::ServiceLevels,
) -> Option<Tracked> {
    let due = match &rule.due {
        Due::AfterSeconds(seconds) => event
            .time
            .plus_capped(i64::try_from(*seconds).unwrap_or(i64::MAX).saturating_mul(1_000_000)),
        Due::Field(field) => data.timestamp(field)?,
        Due::ServiceLevel(target) => match &event.data {
            EventData::CaseOpened(case) => service.due(*target, &case.team, &case.category, event.time),
            _ => return None,
        },
    };
    let start = rule.start_field.as_deref().and_then(|f| data.timestamp(f));
    Some(Tracked {
        id: format!("{}:{}", rule.key, event.id),
        key: rule.key.clone(),
        touchpoint: rule.touchpoint.clone(),
        subject: subject.to_owned(),
        made_at: event.time,
        start,
        due,
        at_risk_from: rule
            .at_risk_before_us
            .map(|before| due.plus_capped(before.saturating_neg())),
        state: State::Made,
    })
}

fn keep(tracked: &Tracked, event: &ValidEvent) -> Option<Change> {
    if tracked.start.is_some_and(|start| event.time < start) || event.time < tracked.made_at {
        return None; // before the promise could be kept: not evidence either way
    }
    let in_time = event.time <= tracked.due;
    match tracked.state {
        State::Made | State::AtRisk if in_time => Some(Change::Kept {
            id: tracked.id.clone(),
            at: event.time,
            by_event: event.id.clone(),
            corrects_break: false,
        }),
        State::Made | State::AtRisk => Some(Change::Broken {
            id: tracked.id.clone(),
            at: tracked.due,
            cause: Cause::KeptLate {
                id: event.id.clone(),
                event_type: event.event_type.clone(),
            },
        }),
        State::Broken { due_passed: true } if in_time => Some(Change::Kept {
            id: tracked.id.clone(),
            at: event.time,
            by_event: event.id.clone(),
            corrects_break: true,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::journey::parse_journey;
    use crate::validate_value;

    /// A step of a scenario: an event arriving, or the clock moving to a time.
    enum Step {
        Event(serde_json::Value),
        Clock(&'static str),
        /// The clock, this many days later.
        ClockDaysLater(i64, &'static str),
    }

    fn at(time: &str) -> Timestamp {
        Timestamp::parse_rfc3339(&format!("2026-11-23T{time}:00Z")).unwrap()
    }

    fn event(id: &str, event_type: &str, time: &str, subject: &str, data: serde_json::Value) -> Step {
        Step::Event(
            json!({"id": id, "type": event_type, "time": format!("2026-11-23T{time}:00Z"), "subject": subject, "data": data}),
        )
    }

    fn window(id: &str, time: &str, start: &str, end: &str) -> Step {
        let data =
            json!({"window_start": format!("2026-11-23T{start}:00Z"), "window_end": format!("2026-11-23T{end}:00Z")});
        event(id, "shipment.window_set", time, "shipment:s1", data)
    }

    fn delivered(id: &str, time: &str) -> Step {
        event(
            id,
            "shipment.delivered",
            time,
            "shipment:s1",
            json!({"proof": {"kind": "handed"}}),
        )
    }

    /// Plays the steps against the retail map, applying every change as a store
    /// would (with a fake clock), and compares the changes, one line each.
    fn check(steps: Vec<Step>, expect: &[&str]) {
        let map = parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
        let book = PromiseBook::new(&map);
        let mut promises: Vec<Tracked> = Vec::new();
        let mut log = Vec::new();
        for step in steps {
            let changes = match step {
                Step::Event(value) => {
                    // The customer stands in for the one the store resolves.
                    let customer = value["customer"]["id"].as_str().map(|c| format!("cus_{c}"));
                    let event = validate_value(value, None).unwrap();
                    // Keeping events count on the subject and on linked subjects: here
                    // the shipment s1 belongs to the order o1.
                    let linked = ["shipment:s1", "order:o1"];
                    let subjects = book.subjects(&event, customer.as_deref());
                    let known: Vec<Tracked> = promises
                        .iter()
                        .filter(|p| {
                            subjects.iter().any(|s| {
                                *s == p.subject
                                    || (linked.contains(&s.as_str()) && linked.contains(&p.subject.as_str()))
                            })
                        })
                        .cloned()
                        .collect();
                    book.on_event(&event, &known, customer.as_deref())
                }
                Step::Clock(_) | Step::ClockDaysLater(..) => {
                    let now = match step {
                        Step::ClockDaysLater(days, time) => Timestamp(at(time).0 + days * 86_400_000_000),
                        Step::Clock(time) => at(time),
                        Step::Event(_) => unreachable!(),
                    };
                    // Only promises whose next check has come are looked at, as the store's due index would.
                    promises
                        .iter()
                        .filter(|p| next_check(p).is_some_and(|t| t <= now))
                        .filter_map(|p| book.on_clock(p, now))
                        .collect()
                }
            };
            for change in changes {
                log.push(describe(&change));
                // Every change is recorded as a valid catalogue event.
                let subject_promise = match &change {
                    Change::Made(t) => t.clone(),
                    other => promises.iter().find(|p| p.id == other.promise_id()).unwrap().clone(),
                };
                let recorded = change
                    .event(&subject_promise, Some(r#"{"id":"ann"}"#))
                    .unwrap_or_else(|r| panic!("{change:?}: {}", r.error));
                let read =
                    crate::validate_event(&recorded.raw).unwrap_or_else(|r| panic!("{}: {}", recorded.raw, r.error));
                assert_eq!(format!("{read:?}"), format!("{recorded:?}"), "as its text reads");
                match &change {
                    Change::Made(t) => promises.push(t.clone()),
                    other => {
                        let promise = promises.iter_mut().find(|p| p.id == other.promise_id()).unwrap();
                        other.apply(promise);
                    }
                }
            }
        }
        assert_eq!(log, expect);
    }

    fn describe(change: &Change) -> String {
        let clock = |t: &Timestamp| t.to_string()[11..16].to_owned();
        match change {
            Change::Made(t) => format!("made {} due {}", t.id, clock(&t.due)),
            Change::AtRisk { id, at } => format!("at_risk {id} at {}", clock(at)),
            Change::Kept {
                id,
                at,
                by_event,
                corrects_break,
            } => {
                format!(
                    "kept {id} at {} by {by_event}{}",
                    clock(at),
                    if *corrects_break { " (correcting the break)" } else { "" }
                )
            }
            Change::Broken { id, at, cause } => format!("broken {id} at {} ({cause:?})", clock(at)),
            Change::Cancelled { id, by_event, .. } => match by_event {
                Some(by_event) => format!("cancelled {id} by {by_event}"),
                None => format!("lapsed {id}"),
            },
        }
    }

    fn stock(id: &str, who: &str, time: &str, store: &str, claim: &str) -> Step {
        let mut data = json!({"sku": "tyre-1", "store": store, "claim": claim});
        if claim == "ships_by" {
            data["ships_by"] = json!("2026-11-25T12:00:00Z");
        }
        Step::Event(
            json!({"id": id, "type": "availability.shown", "time": format!("2026-11-23T{time}:00Z"),
                           "customer": {"id": who}, "data": data}),
        )
    }

    fn visit(id: &str, who: &str, time: &str, store: &str, found: bool) -> Step {
        Step::Event(
            json!({"id": id, "type": "store.visited", "time": format!("2026-11-23T{time}:00Z"),
                           "subject": format!("store:{store}"), "customer": {"id": who},
                           "data": {"store": store, "sku": "tyre-1", "found": found}}),
        )
    }

    #[test]
    fn a_stock_claim_is_kept_or_broken_by_that_customers_visit_to_that_store() {
        check(
            vec![
                stock("a1", "ann", "08:00", "st-3", "in_stock"),
                // Another customer's visit, another store, a claim that was not in stock: none concern it.
                visit("v0", "bob", "09:00", "st-3", false),
                stock("b1", "bob", "08:30", "st-3", "ships_by"),
                visit("v1", "ann", "09:30", "st-1", false),
                visit("v2", "ann", "10:00", "st-3", false),
                stock("a2", "ann", "11:00", "st-1", "in_stock"),
                visit("v3", "ann", "12:00", "st-1", true),
                // A claim nobody came to check lapses when due: neither kept nor broken.
                stock("c1", "cat", "13:00", "st-3", "in_stock"),
                Step::ClockDaysLater(2, "14:00"),
            ],
            &[
                "made in_stock:a1 due 08:00",
                "broken in_stock:a1 at 10:00 (Event { id: \"v2\", event_type: \"store.visited\" })",
                "made in_stock:a2 due 11:00",
                "kept in_stock:a2 at 12:00 by v3",
                "made in_stock:c1 due 13:00",
                "lapsed in_stock:c1",
            ],
        );
    }

    #[test]
    fn a_window_kept_in_time() {
        check(
            vec![
                window("w1", "08:00", "11:37", "12:37"),
                Step::Clock("12:00"),
                delivered("d1", "12:10"),
                Step::Clock("13:00"),
            ],
            &[
                "made delivery_window:w1 due 12:37",
                "kept delivery_window:w1 at 12:10 by d1",
            ],
        );
    }

    #[test]
    fn the_clock_puts_it_at_risk_then_breaks_it_and_late_news_corrects_it() {
        check(
            vec![
                window("w1", "08:00", "11:37", "12:37"),
                Step::Clock("12:21"),
                Step::Clock("12:22"),
                Step::Clock("12:37"),
                Step::Clock("12:38"),
                // The courier's scan from 12:30 reaches troth only now.
                delivered("d1", "12:30"),
            ],
            &[
                "made delivery_window:w1 due 12:37",
                "at_risk delivery_window:w1 at 12:22",
                "broken delivery_window:w1 at 12:37 (DuePassed)",
                "kept delivery_window:w1 at 12:30 by d1 (correcting the break)",
            ],
        );
    }

    #[test]
    fn delivered_after_the_window_is_broken_even_before_the_clock_notices() {
        check(
            vec![
                window("w1", "08:00", "11:37", "12:37"),
                delivered("d1", "13:05"),
                Step::Clock("14:00"),
            ],
            &[
                "made delivery_window:w1 due 12:37",
                "broken delivery_window:w1 at 12:37 (KeptLate { id: \"d1\", event_type: \"shipment.delivered\" })",
            ],
        );
    }

    #[test]
    fn a_failed_attempt_breaks_it_and_a_later_delivery_does_not_mend_it() {
        check(
            vec![
                window("w1", "08:00", "11:37", "12:37"),
                event(
                    "f1",
                    "shipment.attempt_failed",
                    "12:00",
                    "shipment:s1",
                    json!({"reason": "no one home"}),
                ),
                delivered("d1", "12:20"),
                Step::Clock("13:00"),
            ],
            &[
                "made delivery_window:w1 due 12:37",
                "broken delivery_window:w1 at 12:00 (Event { id: \"f1\", event_type: \"shipment.attempt_failed\" })",
            ],
        );
    }

    #[test]
    fn a_delivery_before_the_window_opens_is_not_evidence() {
        check(
            vec![
                window("w1", "08:00", "11:37", "12:37"),
                delivered("d1", "11:00"),
                Step::Clock("12:40"),
            ],
            // The clock jumped past the due time: broken, with no at-risk step in between.
            &[
                "made delivery_window:w1 due 12:37",
                "broken delivery_window:w1 at 12:37 (DuePassed)",
            ],
        );
    }

    #[test]
    fn a_new_window_replaces_the_open_one() {
        check(
            vec![
                window("w1", "07:00", "11:37", "12:37"),
                window("w2", "09:00", "13:00", "14:00"),
                delivered("d1", "13:30"),
            ],
            &[
                "made delivery_window:w1 due 12:37",
                "cancelled delivery_window:w1 by w2",
                "made delivery_window:w2 due 14:00",
                "kept delivery_window:w2 at 13:30 by d1",
            ],
        );
    }

    #[test]
    fn a_window_re_issued_from_the_estimate_leaves_the_carriers_promise_to_be_judged() {
        let estimate = json!({"window_start": "2026-11-23T13:00:00Z", "window_end": "2026-11-23T14:00:00Z",
                              "estimate": true});
        let carrier = json!({"window_start": "2026-11-23T13:05:00Z", "window_end": "2026-11-23T14:05:00Z",
                             "estimate": false});
        check(
            vec![
                window("w1", "07:00", "11:37", "12:37"),
                event("w2", "shipment.window_set", "12:00", "shipment:s1", estimate),
                delivered("d1", "13:30"),
                event("w3", "shipment.window_set", "14:00", "shipment:s1", carrier),
            ],
            &[
                "made delivery_window:w1 due 12:37",
                // The driver came late for the window given: broken, whatever troth told since.
                "broken delivery_window:w1 at 12:37 (KeptLate { id: \"d1\", event_type: \"shipment.delivered\" })",
                // A carrier's window (estimate false) is a promise again.
                "made delivery_window:w3 due 14:05",
            ],
        );
    }

    #[test]
    fn callbacks_and_promises_kept_on_a_linked_subject() {
        let order = json!({"order": "o1", "items": [{"sku": "t", "qty": 1, "price": 100}], "total": 100, "currency": "EUR",
                           "delivery": "home", "promised_from": "2026-11-23T09:00:00Z", "promised_to": "2026-11-23T18:00:00Z"});
        check(
            vec![
                event(
                    "c1",
                    "callback.promised",
                    "10:00",
                    "case:k1",
                    json!({"due": "2026-11-23T11:00:00Z"}),
                ),
                event("c2", "callback.made", "10:50", "case:k1", json!({})),
                event("o1", "order.placed", "08:00", "order:o1", order),
                delivered("d1", "12:00"),
            ],
            &[
                "made callback:c1 due 11:00",
                "kept callback:c1 at 10:50 by c2",
                "made delivery_date:o1 due 18:00",
                "kept delivery_date:o1 at 12:00 by d1",
            ],
        );
    }

    #[test]
    fn a_pickup_order_is_promised_ready_by_its_time_and_never_a_delivery() {
        let order = |id: &str| {
            json!({"order": id, "items": [{"sku": "t", "qty": 1, "price": 100}], "total": 100, "currency": "EUR",
                   "delivery": "pickup", "promised_to": "2026-11-23T12:00:00Z", "store": "st-1"})
        };
        let ready = json!({"order": "o1", "store": "st-1"});
        check(
            vec![
                event("o1", "order.placed", "08:00", "order:o1", order("o1")),
                event("o2", "order.placed", "08:10", "order:o2", order("o2")),
                event("r1", "order.ready", "11:30", "order:o1", ready.clone()),
                event("c1", "order.collected", "17:00", "order:o1", ready),
                Step::Clock("23:59"),
            ],
            &[
                "made ready_by:o1 due 12:00",
                "made ready_by:o2 due 12:00",
                "kept ready_by:o1 at 11:30 by r1",
                "broken ready_by:o2 at 12:00 (DuePassed)",
            ],
        );
    }

    #[test]
    fn case_promises_fall_due_by_the_service_level_in_business_hours() {
        // Monday 10:00, the default levels (Mon–Fri 09:00–17:00 UTC): a first response
        // within 4 business hours (14:00), resolution within 16 (Wednesday 10:00).
        check(
            vec![
                event(
                    "k1",
                    "case.opened",
                    "10:00",
                    "case:k1",
                    json!({"case": "k1", "category": "late_delivery", "team": "delivery"}),
                ),
                Step::Clock("23:59"),
            ],
            &[
                "made case_first_response:k1 due 14:00",
                "made case_resolved:k1 due 10:00",
                "broken case_first_response:k1 at 14:00 (DuePassed)",
            ],
        );
        // Friday 17:50 in a Mon–Fri 09:00–18:00 week, 4 hours to respond: Monday 12:50;
        // refunds resolve within 8 business hours: Monday 16:50.
        let mut map = parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
        map.service = crate::case::ServiceLevels {
            calendar: crate::calendar::Calendar::new("UTC", "Mon-Fri 09:00-18:00", &[]).unwrap(),
            categories: [(
                "refund".to_owned(),
                crate::case::Targets {
                    first_response_us: None,
                    resolution_us: Some(8 * 3_600_000_000),
                },
            )]
            .into(),
            ..Default::default()
        };
        let opened = validate_value(
            json!({"id": "k2", "type": "case.opened", "time": "2026-11-27T17:50:00Z", "subject": "case:k2",
                   "data": {"case": "k2", "category": "refund", "team": "billing"}}),
            None,
        )
        .unwrap();
        let dues: Vec<(String, String)> = PromiseBook::new(&map)
            .on_event(&opened, &[], None)
            .iter()
            .filter_map(|c| match c {
                Change::Made(t) => Some((t.key.clone(), t.due.to_string())),
                _ => None,
            })
            .collect();
        assert_eq!(
            dues,
            [
                (
                    "case_first_response".to_owned(),
                    "2026-11-30T12:50:00.000000Z".to_owned()
                ),
                ("case_resolved".to_owned(), "2026-11-30T16:50:00.000000Z".to_owned()),
            ]
        );
        let map = parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
        let book = PromiseBook::new(&map);
        assert!(book.concerns("shipment.delivered") && book.concerns("case.opened") && !book.concerns("page.viewed"));
    }
}
