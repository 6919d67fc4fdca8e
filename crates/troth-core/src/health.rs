//! Journey health: what each event adds to the touchpoints it concerns, day by day.
//! The store sums these contributions per touchpoint and day; the API sums the days
//! of a range. Pure: the same events give the same numbers, so a replay of the log
//! gives identical health.

use crate::ValidEvent;
use crate::catalogue::EventData;
use crate::journey::JourneyMap;

/// What one touchpoint saw on one day. Every field adds up across events and days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Events that are exposure of the touchpoint.
    pub exposure: i64,
    pub promises_made: i64,
    pub promises_kept: i64,
    pub promises_broken: i64,
    pub promises_at_risk: i64,
    /// Survey answers about the touchpoint, and how many were negative
    /// (NPS 0–6, CSAT 1–2 or CES 1–3 on the CES 2.0 agreement scale).
    pub answers: i64,
    pub negative_answers: i64,
    pub nps_answers: i64,
    pub promoters: i64,
    pub detractors: i64,
    pub csat_answers: i64,
    pub csat_sum: i64,
    pub ces_answers: i64,
    pub ces_sum: i64,
    /// Effort: cases moved between teams, and customers put on hold.
    pub transfers: i64,
    pub holds: i64,
    pub hold_seconds: i64,
    /// Cases opened by a customer who had opened another in the week before.
    pub repeat_contacts: i64,
    /// Outcomes among the exposure events (see [`outcome`]), and how many failed.
    pub outcomes: i64,
    pub failures: i64,
}

/// Declares [`Tally`]'s fields once, for storing them as columns.
macro_rules! tally_columns {
    ($($field:ident),* $(,)?) => {
        impl Tally {
            /// The fields, in the order of [`Tally::to_array`].
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            pub fn to_array(&self) -> Vec<i64> {
                vec![$(self.$field),*]
            }

            /// From values in the order of [`Tally::FIELDS`]; missing ones are zero.
            pub fn from_values(values: &[i64]) -> Tally {
                let mut values = values.iter().copied();
                Tally { $($field: values.next().unwrap_or(0)),* }
            }
        }
    };
}

tally_columns!(
    exposure,
    promises_made,
    promises_kept,
    promises_broken,
    promises_at_risk,
    answers,
    negative_answers,
    nps_answers,
    promoters,
    detractors,
    csat_answers,
    csat_sum,
    ces_answers,
    ces_sum,
    transfers,
    holds,
    hold_seconds,
    repeat_contacts,
    outcomes,
    failures,
);

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.exposure += other.exposure;
        self.promises_made += other.promises_made;
        self.promises_kept += other.promises_kept;
        self.promises_broken += other.promises_broken;
        self.promises_at_risk += other.promises_at_risk;
        self.answers += other.answers;
        self.negative_answers += other.negative_answers;
        self.nps_answers += other.nps_answers;
        self.promoters += other.promoters;
        self.detractors += other.detractors;
        self.csat_answers += other.csat_answers;
        self.csat_sum += other.csat_sum;
        self.ces_answers += other.ces_answers;
        self.ces_sum += other.ces_sum;
        self.transfers += other.transfers;
        self.holds += other.holds;
        self.hold_seconds += other.hold_seconds;
        self.repeat_contacts += other.repeat_contacts;
        self.outcomes += other.outcomes;
        self.failures += other.failures;
    }

    /// Kept among the promises settled (kept or broken), when any were.
    pub fn promise_kept_rate(&self) -> Option<f64> {
        let settled = self.promises_kept + self.promises_broken;
        (settled > 0).then(|| self.promises_kept as f64 / settled as f64)
    }

    /// Net Promoter Score, −100…100.
    pub fn nps(&self) -> Option<f64> {
        (self.nps_answers > 0).then(|| (self.promoters - self.detractors) as f64 * 100.0 / self.nps_answers as f64)
    }

    pub fn csat(&self) -> Option<f64> {
        (self.csat_answers > 0).then(|| self.csat_sum as f64 / self.csat_answers as f64)
    }

    pub fn ces(&self) -> Option<f64> {
        (self.ces_answers > 0).then(|| self.ces_sum as f64 / self.ces_answers as f64)
    }

    /// Share of outcomes that failed, when there were any.
    pub fn failure_rate(&self) -> Option<f64> {
        (self.outcomes > 0).then(|| self.failures as f64 / self.outcomes as f64)
    }

    /// Share of survey answers that were negative, when there were any.
    pub fn negative_rate(&self) -> Option<f64> {
        (self.answers > 0).then(|| self.negative_answers as f64 / self.answers as f64)
    }
}

/// How far back an earlier case makes a new one a repeat contact.
pub const REPEAT_CONTACT_WINDOW_US: i64 = 7 * 86_400_000_000;

/// Whether an event is the outcome of an attempt: `Some(true)` when it succeeded,
/// `Some(false)` when it failed, `None` when it is not an outcome. A touchpoint's
/// failure share counts the outcomes among its exposure events.
pub fn outcome(data: &EventData) -> Option<bool> {
    match data {
        EventData::PaymentSucceeded(_) | EventData::ShipmentDelivered(_) | EventData::CaseResolved(_) => Some(true),
        EventData::PaymentFailed(_)
        | EventData::AttemptFailed(_)
        | EventData::ShipmentLost(_)
        | EventData::ShipmentReturned(_)
        | EventData::CaseReopened(_) => Some(false),
        EventData::StoreVisited(v) => v.found,
        EventData::ReviewPosted(r) => Some(r.rating.0 >= 3),
        _ => None,
    }
}

/// The day an event belongs to: days since 1970-01-01, UTC.
pub fn day_of(event: &ValidEvent) -> i64 {
    event.time.micros().div_euclid(86_400_000_000)
}

/// Which touchpoints each event type and survey concerns.
#[derive(Debug, Clone, Default)]
pub struct HealthIndex {
    by_exposure: crate::FastMap<String, Vec<String>>,
    by_survey: crate::FastMap<String, Vec<String>>,
    /// The kinds of entity each touchpoint holds accountable, where its map limits them.
    accountable: crate::FastMap<String, Vec<String>>,
}

impl HealthIndex {
    pub fn new(map: &JourneyMap) -> HealthIndex {
        let mut index = HealthIndex::default();
        for t in &map.touchpoints {
            for event_type in &t.exposure {
                index
                    .by_exposure
                    .entry(event_type.clone())
                    .or_default()
                    .push(t.key.clone());
            }
            for survey in &t.surveys {
                index.by_survey.entry(survey.clone()).or_default().push(t.key.clone());
            }
            if !t.accountable.is_empty() {
                index.accountable.insert(t.key.clone(), t.accountable.clone());
            }
        }
        index
    }

    /// Whether an entity of this kind answers for the touchpoint's failures.
    pub fn accountable(&self, touchpoint: &str, kind: &str) -> bool {
        self.accountable
            .get(touchpoint)
            .is_none_or(|kinds| kinds.iter().any(|k| k == kind))
    }

    /// Identifies what the tallies mean: the tally's fields and which event types and
    /// surveys concern which touchpoints. Tallies stored under another fingerprint
    /// were counted by other rules and must be counted again from the log.
    pub fn fingerprint(&self) -> i64 {
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |text: &str| {
            for byte in text.bytes().chain([0]) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        // Bumped when what is counted per touchpoint and day changes in other ways.
        feed("tally+reach+entities+ces2+one-touchpoint+case-contacts+visits");
        Tally::FIELDS.iter().for_each(|f| feed(f));
        for (label, index) in [
            ("exposure", &self.by_exposure),
            ("survey", &self.by_survey),
            ("accountable", &self.accountable),
        ] {
            feed(label);
            let mut entries: Vec<_> = index.iter().collect();
            entries.sort();
            for (key, touchpoints) in entries {
                feed(key);
                touchpoints.iter().for_each(|t| feed(t));
            }
        }
        // Fits SQLite's signed integers.
        (hash >> 1) as i64
    }

    /// What `event` adds, per touchpoint.
    pub fn contributions(&self, event: &ValidEvent) -> Vec<(String, Tally)> {
        let mut out: Vec<(String, Tally)> = Vec::new();
        let mut add = |touchpoint: &str, f: &dyn Fn(&mut Tally)| match out.iter_mut().find(|(t, _)| t == touchpoint) {
            Some((_, tally)) => f(tally),
            None => {
                let mut tally = Tally::default();
                f(&mut tally);
                out.push((touchpoint.to_owned(), tally));
            }
        };
        for touchpoint in self.by_exposure.get(&event.event_type).into_iter().flatten() {
            let outcome = outcome(&event.data);
            add(touchpoint, &|t| {
                t.exposure += 1;
                if let Some(succeeded) = outcome {
                    t.outcomes += 1;
                    t.failures += i64::from(!succeeded);
                }
                match &event.data {
                    EventData::CaseTransferred(_) => t.transfers += 1,
                    EventData::CaseHeld(h) => {
                        t.holds += 1;
                        t.hold_seconds += i64::from(h.seconds);
                    }
                    _ => {}
                }
            });
        }
        match &event.data {
            EventData::PromiseMade(p) => add(&p.touchpoint, &|t| t.promises_made += 1),
            // Promise events other than `made` name their touchpoint in the envelope.
            EventData::PromiseKept(p) => {
                let correction = p.corrects_break == Some(true);
                if let Some(touchpoint) = promise_touchpoint(event) {
                    add(&touchpoint, &|t| {
                        t.promises_kept += 1;
                        if correction {
                            t.promises_broken -= 1;
                        }
                    });
                }
            }
            EventData::PromiseBroken(_) => {
                if let Some(touchpoint) = promise_touchpoint(event) {
                    add(&touchpoint, &|t| t.promises_broken += 1);
                }
            }
            EventData::PromiseAtRisk(_) => {
                if let Some(touchpoint) = promise_touchpoint(event) {
                    add(&touchpoint, &|t| t.promises_at_risk += 1);
                }
            }
            EventData::SurveyAnswered(s) => {
                // One answer counts at one touchpoint: the one it names, else the
                // first the map lists the survey at.
                let touchpoints: Vec<String> = match &s.touchpoint {
                    Some(touchpoint) => vec![touchpoint.clone()],
                    None => self
                        .by_survey
                        .get(&s.survey)
                        .and_then(|list| list.first())
                        .cloned()
                        .into_iter()
                        .collect(),
                };
                let negative = s.is_negative();
                for touchpoint in touchpoints {
                    add(&touchpoint, &|t| {
                        t.answers += 1;
                        t.negative_answers += i64::from(negative);
                        if let Some(nps) = s.nps {
                            t.nps_answers += 1;
                            t.promoters += i64::from(nps.0 >= 9);
                            t.detractors += i64::from(nps.0 <= 6);
                        }
                        if let Some(csat) = s.csat {
                            t.csat_answers += 1;
                            t.csat_sum += i64::from(csat.0);
                        }
                        if let Some(ces) = s.ces_agreement() {
                            t.ces_answers += 1;
                            t.ces_sum += i64::from(ces);
                        }
                    });
                }
            }
            _ => {}
        }
        out
    }
}

fn promise_touchpoint(event: &ValidEvent) -> Option<String> {
    event.touchpoint.clone()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::journey::parse_journey;
    use crate::validate_value;

    /// The contributions of one event, as `touchpoint: field=value …` lines.
    fn check(event: serde_json::Value, expect: &[&str]) {
        let map = parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
        let index = HealthIndex::new(&map);
        let event = validate_value(event, None).unwrap();
        let got: Vec<String> = index
            .contributions(&event)
            .into_iter()
            .map(|(touchpoint, t)| {
                let fields = format!("{t:?}");
                let nonzero: Vec<&str> = fields
                    .trim_start_matches("Tally { ")
                    .trim_end_matches(" }")
                    .split(", ")
                    .filter(|f| !f.ends_with(": 0"))
                    .collect();
                format!("{touchpoint}: {}", nonzero.join(" "))
            })
            .collect();
        assert_eq!(got, expect);
    }

    fn event(event_type: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut e = json!({"id": "e1", "type": event_type, "time": "2026-11-23T09:00:00Z"});
        e.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        e
    }

    #[test]
    fn tallies_round_trip_through_columns() {
        let t = Tally {
            exposure: 3,
            hold_seconds: 90,
            promises_broken: -1,
            ..Default::default()
        };
        assert_eq!(Tally::from_values(&t.to_array()), t);
        assert_eq!(Tally::FIELDS.len(), t.to_array().len());
    }

    #[test]
    fn events_add_to_the_touchpoints_they_concern() {
        check(
            event("tracking.viewed", json!({"data": {"shipment": "s1"}})),
            &["tracking_page: exposure: 1"],
        );
        check(
            event("case.held", json!({"data": {"seconds": 90}})),
            &["complaint: exposure: 1 holds: 1 hold_seconds: 90"],
        );
        check(
            event(
                "courier.position",
                json!({"subject": "driver:d1", "data": {"lat": 1.0, "lon": 1.0}}),
            ),
            &[],
        );
        check(
            event(
                "survey.answered",
                json!({"data": {"survey": "post-delivery", "touchpoint": "delivery_window", "nps": 3, "csat": 2}}),
            ),
            &[
                "delivery_window: answers: 1 negative_answers: 1 nps_answers: 1 detractors: 1 csat_answers: 1 csat_sum: 2",
            ],
        );
        // Without an explicit touchpoint the answer counts once, at the first
        // touchpoint the map lists its survey at.
        check(
            event(
                "survey.answered",
                json!({"data": {"survey": "post-delivery", "nps": 10}}),
            ),
            &["delivery_window: answers: 1 nps_answers: 1 promoters: 1"],
        );
        // CES 2.0 by default: 7 ("it was easy") is good, 2 is negative.
        check(
            event(
                "survey.answered",
                json!({"data": {"survey": "service", "touchpoint": "complaint", "ces": 7}}),
            ),
            &["complaint: answers: 1 ces_answers: 1 ces_sum: 7"],
        );
        check(
            event(
                "survey.answered",
                json!({"data": {"survey": "service", "touchpoint": "complaint", "ces": 2}}),
            ),
            &["complaint: answers: 1 negative_answers: 1 ces_answers: 1 ces_sum: 2"],
        );
        // The older effort scale when stated: 5 (very high effort) is negative and
        // counts as 1 on the agreement scale; 1 (very low effort) as 7.
        check(
            event(
                "survey.answered",
                json!({"data": {"survey": "service", "touchpoint": "complaint", "ces": 5, "ces_scale": "effort"}}),
            ),
            &["complaint: answers: 1 negative_answers: 1 ces_answers: 1 ces_sum: 1"],
        );
        check(
            event(
                "survey.answered",
                json!({"data": {"survey": "service", "touchpoint": "complaint", "ces": 1, "ces_scale": "effort"}}),
            ),
            &["complaint: answers: 1 ces_answers: 1 ces_sum: 7"],
        );
        check(
            event(
                "promise.kept",
                json!({"touchpoint": "delivery_window", "subject": "shipment:s1",
                                         "data": {"promise": "delivery_window:w1", "by_event": "d1", "corrects_break": true}}),
            ),
            &["delivery_window: promises_kept: 1 promises_broken: -1"],
        );
    }
}
