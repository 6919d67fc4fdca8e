//! Plays: the planned responses of a journey map, matched against events. Pure: the
//! store asks which actions an event calls for and records them (outbox rows, a
//! `case.opened` event) in the transaction that appends the event.
//!
//! Matching is a hash lookup by event type, so the append path pays nothing for the
//! events no play is about (nearly all of them).

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::catalogue::EventData;
use crate::envelope::Channel;
use crate::journey::{Action, JourneyMap, When};
use crate::{Timestamp, ValidEvent};

/// An NPS answer at or below this is a detractor's.
pub const DETRACTOR_MAX_NPS: u8 = 6;

/// Plays answer the present: an event stored more than this long after its `time`
/// is history (an import, a feed that caught up after days) and triggers none, so
/// nobody is messaged, alerted or given a case about what is long past.
pub const PLAY_HORIZON_US: i64 = 24 * 3600 * 1_000_000;

/// One action an event calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// `play:{play key}:{event id}:{action index}`: the same event always yields the
    /// same key, so storing it under a unique constraint makes enqueueing idempotent.
    pub id: String,
    pub play: String,
    /// The touchpoint whose play this is.
    pub touchpoint: String,
    pub action: PlannedAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedAction {
    NotifyCustomer {
        channel: Channel,
        template: String,
    },
    OpenCase {
        team: String,
        category: String,
    },
    /// `webhook_url` is the function's, when the map gives it one.
    AlertOwner {
        function: String,
        webhook_url: Option<String>,
    },
}

/// The plays of a journey map, indexed by the event type that can trigger them.
#[derive(Debug, Clone, Default)]
pub struct PlayBook {
    by_type: crate::FastMap<String, Vec<Trigger>>,
}

#[derive(Debug, Clone)]
struct Trigger {
    play: String,
    touchpoint: String,
    when: When,
    actions: Vec<PlannedAction>,
}

impl PlayBook {
    pub fn new(map: &JourneyMap) -> PlayBook {
        let webhooks: HashMap<&str, Option<&String>> = map
            .functions
            .iter()
            .map(|f| (f.key.as_str(), f.webhook_url.as_ref()))
            .collect();
        let mut book = PlayBook::default();
        for touchpoint in &map.touchpoints {
            for play in &touchpoint.plays {
                let event_type = match &play.when {
                    When::Event(t) => t.as_str(),
                    When::PromiseBroken(_) => "promise.broken",
                    When::PromiseAtRisk(_) => "promise.at_risk",
                    When::SurveyDetractor(_) => "survey.answered",
                };
                let actions = play
                    .actions
                    .iter()
                    .filter_map(|action| {
                        Some(match action {
                            Action::NotifyCustomer { channel, template } => PlannedAction::NotifyCustomer {
                                // The map checker has refused unknown channels.
                                channel: Channel::parse(channel)?,
                                template: template.clone(),
                            },
                            Action::OpenCase { team, category } => PlannedAction::OpenCase {
                                team: team.clone(),
                                category: category.clone(),
                            },
                            Action::AlertOwner { function } => {
                                let function = function.clone().or_else(|| touchpoint.owners.first().cloned())?;
                                PlannedAction::AlertOwner {
                                    webhook_url: webhooks.get(function.as_str()).copied().flatten().cloned(),
                                    function,
                                }
                            }
                        })
                    })
                    .collect();
                book.by_type.entry(event_type.to_owned()).or_default().push(Trigger {
                    play: play.key.clone(),
                    touchpoint: touchpoint.key.clone(),
                    when: play.when.clone(),
                    actions,
                });
            }
        }
        book
    }

    /// Whether any play may be triggered by this event type (the cheap pre-check).
    pub fn concerns(&self, event_type: &str) -> bool {
        self.by_type.contains_key(event_type)
    }

    /// The actions an event stored at `received` calls for, in map order: none for
    /// an event older than [`PLAY_HORIZON_US`] by then.
    pub fn on_event(&self, event: &ValidEvent, received: Timestamp) -> Vec<Planned> {
        let Some(triggers) = self.by_type.get(&event.event_type) else {
            return Vec::new();
        };
        if received.micros() - event.time.micros() > PLAY_HORIZON_US {
            return Vec::new();
        }
        let mut planned = Vec::new();
        for trigger in triggers.iter().filter(|t| fires(&t.when, event)) {
            for (i, action) in trigger.actions.iter().enumerate() {
                planned.push(Planned {
                    id: format!("play:{}:{}:{i}", trigger.play, event.id),
                    play: trigger.play.clone(),
                    touchpoint: trigger.touchpoint.clone(),
                    action: action.clone(),
                });
            }
        }
        planned
    }
}

fn fires(when: &When, event: &ValidEvent) -> bool {
    match (when, &event.data) {
        (When::Event(t), _) => *t == event.event_type,
        (When::PromiseBroken(key), EventData::PromiseBroken(p)) => promise_key(&p.promise) == key,
        (When::PromiseAtRisk(key), EventData::PromiseAtRisk(p)) => promise_key(&p.promise) == key,
        (When::SurveyDetractor(survey), EventData::SurveyAnswered(answer)) => {
            answer.survey == *survey && answer.nps.is_some_and(|nps| nps.0 <= DETRACTOR_MAX_NPS)
        }
        _ => false,
    }
}

/// A promise id is `{promise key}:{id of the making event}`.
pub fn promise_key(promise_id: &str) -> &str {
    promise_id.split_once(':').map_or(promise_id, |(key, _)| key)
}

/// The `case.opened` event an `open_case` action records: a deterministic id (so a
/// duplicate of the triggering event cannot open a second case), the triggering
/// event's time and customer, its order when the event is about one, and the play's
/// touchpoint, which the case is about (first-contact resolution per touchpoint,
/// [`crate::case::CaseTouchpoints`]).
pub fn case_event(planned: &Planned, event: &ValidEvent, customer: Option<&Value>) -> Option<Value> {
    let PlannedAction::OpenCase { team, category } = &planned.action else {
        return None;
    };
    // Event ids may be 128 characters; a hash keeps the case's id short and stable.
    let case = format!("play-{:016x}", fnv1a(planned.id.as_bytes()));
    let mut data = json!({"case": case, "category": category, "team": team});
    if let Some(order) = event.subject.as_deref().and_then(|s| s.strip_prefix("order:")) {
        data["order"] = order.into();
    }
    let mut case_event = json!({
        "id": format!("troth.case.{case}"),
        "type": "case.opened",
        "time": event.time.to_string(),
        "source": "troth",
        "subject": format!("case:{case}"),
        "touchpoint": planned.touchpoint,
        "data": data,
    });
    if let Some(customer) = customer {
        case_event["customer"] = customer.clone();
    }
    Some(case_event)
}

/// 64-bit FNV-1a: stable across versions and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journey::parse_journey;
    use crate::validate_value;

    fn retail() -> PlayBook {
        PlayBook::new(&parse_journey(include_str!("../../../journeys/retail.toml")).unwrap())
    }

    fn event(value: Value) -> ValidEvent {
        validate_value(value, None).unwrap()
    }

    /// The planned actions for `value`, one `id → action` line each.
    fn check(book: &PlayBook, value: Value, expect: &[&str]) {
        let got: Vec<String> = book
            .on_event(&event(value), received())
            .iter()
            .map(|p| {
                let action = match &p.action {
                    PlannedAction::NotifyCustomer { channel, template } => {
                        format!("notify {} {template}", channel.as_str())
                    }
                    PlannedAction::OpenCase { team, category } => format!("case {team}/{category}"),
                    PlannedAction::AlertOwner { function, webhook_url } => {
                        format!("alert {function} {}", webhook_url.as_deref().unwrap_or("-"))
                    }
                };
                format!("{} @{} → {action}", p.id, p.touchpoint)
            })
            .collect();
        assert_eq!(got, expect);
    }

    const T: &str = "2026-11-23T10:00:00Z";

    /// When the events of these tests are stored: a minute after `T`.
    fn received() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-23T10:01:00Z").unwrap()
    }

    #[test]
    fn history_triggers_no_play() {
        let book = retail();
        let failed = event(
            json!({"id": "p1", "type": "payment.failed", "time": T, "customer": {"id": "c-1"},
                                  "data": {"method": "card", "amount": 1999, "currency": "EUR"}}),
        );
        assert!(!book.on_event(&failed, received()).is_empty());
        let day_later = Timestamp(failed.time.micros() + PLAY_HORIZON_US);
        assert!(
            !book.on_event(&failed, day_later).is_empty(),
            "a day late is still news"
        );
        let imported = Timestamp(day_later.micros() + 1);
        assert!(book.on_event(&failed, imported).is_empty());
    }

    #[test]
    fn an_event_play_fires_on_its_type() {
        let book = retail();
        check(
            &book,
            json!({"id": "e1", "type": "payment.failed", "time": T, "customer": {"email": "ann@example.org"},
                   "data": {"method": "card", "amount": 1999, "currency": "EUR"}}),
            &["play:payment_failed_help:e1:0 @pay → notify email payment-failed"],
        );
        check(
            &book,
            json!({"id": "e2", "type": "payment.succeeded", "time": T,
                   "data": {"method": "card", "amount": 1999, "currency": "EUR"}}),
            &[],
        );
        assert!(book.concerns("payment.failed") && !book.concerns("page.viewed"));
    }

    #[test]
    fn promise_plays_fire_on_their_promise_only() {
        let book = retail();
        let broken = |id: &str, promise: &str| {
            json!({"id": id, "type": "promise.broken", "time": T, "source": "troth", "subject": "shipment:s1",
                   "data": {"promise": promise, "cause": "due_passed"}})
        };
        check(
            &book,
            broken("b1", "delivery_window:w1"),
            &[
                "play:window_missed:b1:0 @delivery_window → notify email window-missed",
                "play:window_missed:b1:1 @delivery_window → alert logistics -",
            ],
        );
        check(&book, broken("b2", "delivery_date:o1"), &[]);
        check(
            &book,
            json!({"id": "r1", "type": "promise.at_risk", "time": T, "data": {"promise": "delivery_window:w1"}}),
            &["play:window_at_risk:r1:0 @delivery_window → notify sms window-at-risk"],
        );
    }

    #[test]
    fn survey_detractors_are_nps_six_or_less_on_that_survey() {
        let book = retail();
        let answer = |id: &str, survey: &str, nps: u8| json!({"id": id, "type": "survey.answered", "time": T, "data": {"survey": survey, "nps": nps}});
        check(
            &book,
            answer("s1", "post-delivery", 6),
            &["play:unhappy_after_delivery:s1:0 @delivery → case delivery/late_delivery"],
        );
        check(&book, answer("s2", "post-delivery", 7), &[]);
        check(&book, answer("s3", "checkout", 0), &[]);
        check(
            &book,
            json!({"id": "s4", "type": "survey.answered", "time": T, "data": {"survey": "post-delivery", "csat": 1}}),
            &[],
        );
    }

    #[test]
    fn alerts_default_to_the_first_owner_and_carry_its_webhook() {
        let map = parse_journey(
            r#"key = "t"
name = "T"
[[functions]]
key = "logistics"
name = "Logistics"
webhook_url = "http://127.0.0.1:9/hook"
[[functions]]
key = "it"
name = "IT"
[[touchpoints]]
key = "delivery"
name = "Delivery"
stage = "smot"
owners = ["logistics", "it"]
[[touchpoints.plays]]
key = "lost"
when = { event = "shipment.lost" }
do = [{ type = "alert_owner" }, { type = "alert_owner", function = "it" }, { type = "open_case", team = "delivery", category = "lost" }]
"#,
        )
        .unwrap();
        let book = PlayBook::new(&map);
        let lost = json!({"id": "l1", "type": "shipment.lost", "time": T, "subject": "order:o-9",
                          "customer": {"id": "c-1"}});
        check(
            &book,
            lost.clone(),
            &[
                "play:lost:l1:0 @delivery → alert logistics http://127.0.0.1:9/hook",
                "play:lost:l1:1 @delivery → alert it -",
                "play:lost:l1:2 @delivery → case delivery/lost",
            ],
        );
        let lost = event(lost);
        let planned = book.on_event(&lost, received());
        let case = case_event(&planned[2], &lost, Some(&json!({"id": "c-1"}))).unwrap();
        assert_eq!(
            case,
            case_event(&planned[2], &lost, Some(&json!({"id": "c-1"}))).unwrap()
        );
        let case = event(case);
        let EventData::CaseOpened(opened) = &case.data else {
            panic!("{case:?}")
        };
        assert_eq!(
            (opened.team.as_str(), opened.category.as_str(), opened.order.as_deref()),
            ("delivery", "lost", Some("o-9"))
        );
        assert_eq!(case.touchpoint.as_deref(), Some("delivery"), "the play's touchpoint");
        assert!(case.id.starts_with("troth.case.play-") && case.id.len() <= 40);
        assert!(case_event(&planned[0], &lost, None).is_none());
    }
}
