//! The expectation chasm: what the early stages of a journey led customers to
//! expect, against what the later stages delivered.
//!
//! Every survey answer is turned into a satisfaction between 0 and 1 (NPS ÷ 10,
//! (CSAT − 1) ÷ 4, (7 − CES) ÷ 6; the mean when an answer carries several) and
//! placed at the stage of its touchpoint; a review's stars count the same way
//! ((stars − 1) ÷ 4). Per stage, `expected` is the mean
//! satisfaction of the answers given at the stages before it — how the journey felt
//! up to then — and `delivered` the mean at the stage itself; `gap` is expected
//! minus delivered, positive where the stage lets customers down. The cohort is the
//! customers whose mean satisfaction in the first half of the stages was high (at
//! least 0.7) and in the second half low (at most 0.4): those the chasm swallowed.
//! The method is documented for users in docs/journey-map.md.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::catalogue::{EventData, SurveyAnswered};
use crate::health::Tally;
use crate::journey::JourneyMap;

/// Early satisfaction at least this high, and late at most [`LATE_LOW`], puts a
/// customer in the chasm's cohort.
pub const EARLY_HIGH: f64 = 0.7;
pub const LATE_LOW: f64 = 0.4;

/// One survey answer with whom it came from.
#[derive(Debug, Clone)]
pub struct Answer {
    pub customer: String,
    pub touchpoint: Option<String>,
    pub survey: String,
    pub satisfaction: f64,
}

impl Answer {
    /// The answer in a `survey.answered` event that carries a score, or the rating of
    /// a `review.posted` (1–5 stars, as (stars − 1) ÷ 4), whose "survey" is its type.
    pub fn from_event(customer: String, data: &EventData) -> Option<Answer> {
        match data {
            EventData::SurveyAnswered(s) => Some(Answer {
                customer,
                touchpoint: s.touchpoint.clone(),
                survey: s.survey.clone(),
                satisfaction: satisfaction(s)?,
            }),
            EventData::ReviewPosted(r) => Some(Answer {
                customer,
                touchpoint: None,
                survey: "review.posted".into(),
                satisfaction: (f64::from(r.rating.0) - 1.0) / 4.0,
            }),
            _ => None,
        }
    }
}

fn satisfaction(s: &SurveyAnswered) -> Option<f64> {
    let scores = [
        s.nps.map(|n| f64::from(n.0) / 10.0),
        s.csat.map(|c| (f64::from(c.0) - 1.0) / 4.0),
        // On the CES 2.0 agreement scale, 7 ("it was easy") is best.
        s.ces_agreement().map(|c| (f64::from(c) - 1.0) / 6.0),
    ];
    let given: Vec<f64> = scores.into_iter().flatten().collect();
    (!given.is_empty()).then(|| given.iter().sum::<f64>() / given.len() as f64)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageChasm {
    pub stage: String,
    pub name: String,
    /// Mean satisfaction (0–1) of the answers at the stages before this one.
    pub expected: Option<f64>,
    /// Mean satisfaction (0–1) of the answers at this stage.
    pub delivered: Option<f64>,
    /// `expected − delivered`: positive where this stage falls short.
    pub gap: Option<f64>,
    pub answers: i64,
    pub promises_made: i64,
    /// Kept among the promises made at this stage that are settled.
    pub promises_kept_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohort {
    pub early_stages: Vec<String>,
    pub late_stages: Vec<String>,
    /// Customers who answered in both halves.
    pub answered_both: usize,
    /// Of them, those whose early satisfaction was high and late low.
    pub count: usize,
    /// Up to `sample` of them, by customer id.
    pub customers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chasm {
    pub stages: Vec<StageChasm>,
    pub cohort: Cohort,
}

impl Chasm {
    /// The stage that let customers down most: the largest positive gap between
    /// what the stages before it led them to expect and what it delivered. `None`
    /// when every stage delivered at least what was expected (or nothing was answered).
    pub fn deepest(&self) -> Option<&StageChasm> {
        self.stages
            .iter()
            .filter(|s| s.gap.is_some_and(|g| g > 0.0))
            .max_by(|a, b| a.gap.partial_cmp(&b.gap).unwrap_or(std::cmp::Ordering::Equal))
    }
}

/// Computes the chasm from the answers and health tallies of a time range.
pub fn chasm(map: &JourneyMap, answers: &[Answer], tallies: &HashMap<String, Tally>, sample: usize) -> Chasm {
    let stage_index: HashMap<&str, usize> = map
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.key.as_str(), i))
        .collect();
    let touchpoint_stage: HashMap<&str, usize> = map
        .touchpoints
        .iter()
        .filter_map(|t| Some((t.key.as_str(), *stage_index.get(t.stage.as_str())?)))
        .collect();
    // A survey without a named touchpoint counts at the earliest stage that asks it;
    // a review, at the earliest stage whose exposure it is.
    let mut survey_stage: HashMap<&str, usize> = HashMap::new();
    for t in &map.touchpoints {
        if let Some(&stage) = touchpoint_stage.get(t.key.as_str()) {
            for survey in t.surveys.iter().chain(&t.exposure) {
                let entry = survey_stage.entry(survey.as_str()).or_insert(stage);
                *entry = (*entry).min(stage);
            }
        }
    }
    let stage_of = |a: &Answer| match &a.touchpoint {
        Some(t) => touchpoint_stage.get(t.as_str()).copied(),
        None => survey_stage.get(a.survey.as_str()).copied(),
    };

    let stages = map.stages.len();
    let mut sums = vec![(0.0f64, 0i64); stages];
    // Per customer, (sum, count) of satisfaction in the early and late halves.
    let half = stages.div_ceil(2);
    let mut by_customer: BTreeMap<&str, [(f64, u32); 2]> = BTreeMap::new();
    for answer in answers {
        let Some(stage) = stage_of(answer) else { continue };
        sums[stage].0 += answer.satisfaction;
        sums[stage].1 += 1;
        let part = &mut by_customer.entry(answer.customer.as_str()).or_default()[usize::from(stage >= half)];
        part.0 += answer.satisfaction;
        part.1 += 1;
    }

    let mut promises = vec![Tally::default(); stages];
    for t in &map.touchpoints {
        if let (Some(&stage), Some(tally)) = (touchpoint_stage.get(t.key.as_str()), tallies.get(&t.key)) {
            promises[stage].add(tally);
        }
    }

    let mean = |(sum, n): (f64, i64)| (n > 0).then(|| round(sum / n as f64));
    let mut before = (0.0, 0);
    let stage_chasms = map
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let expected = mean(before);
            let delivered = mean(sums[i]);
            before = (before.0 + sums[i].0, before.1 + sums[i].1);
            StageChasm {
                stage: s.key.clone(),
                name: s.name.clone(),
                expected,
                delivered,
                gap: expected.zip(delivered).map(|(e, d)| round(e - d)),
                answers: sums[i].1,
                promises_made: promises[i].promises_made,
                promises_kept_rate: promises[i].promise_kept_rate().map(round),
            }
        })
        .collect();

    let mut answered_both = 0;
    let mut swallowed = Vec::new();
    for (customer, [early, late]) in &by_customer {
        if early.1 == 0 || late.1 == 0 {
            continue;
        }
        answered_both += 1;
        if early.0 / f64::from(early.1) >= EARLY_HIGH && late.0 / f64::from(late.1) <= LATE_LOW {
            swallowed.push((*customer).to_owned());
        }
    }
    let count = swallowed.len();
    swallowed.truncate(sample);
    Chasm {
        stages: stage_chasms,
        cohort: Cohort {
            early_stages: map.stages[..half].iter().map(|s| s.key.clone()).collect(),
            late_stages: map.stages[half..].iter().map(|s| s.key.clone()).collect(),
            answered_both,
            count,
            customers: swallowed,
        },
    }
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journey::parse_journey;

    fn map() -> JourneyMap {
        parse_journey(
            r#"
key = "shop"
name = "Shop"
[[functions]]
key = "ops"
name = "Ops"
[[touchpoints]]
key = "find"
name = "Find"
stage = "zmot"
owners = ["ops"]
surveys = ["site"]
[[touchpoints]]
key = "pay"
name = "Pay"
stage = "fmot"
owners = ["ops"]
[[touchpoints]]
key = "delivery"
name = "Delivery"
stage = "smot"
owners = ["ops"]
surveys = ["post-delivery"]
"#,
        )
        .unwrap()
    }

    fn answer(customer: &str, touchpoint: Option<&str>, survey: &str, satisfaction: f64) -> Answer {
        Answer {
            customer: customer.into(),
            touchpoint: touchpoint.map(Into::into),
            survey: survey.into(),
            satisfaction,
        }
    }

    #[test]
    fn a_stage_that_delivers_less_than_was_expected_shows_a_gap() {
        let answers = [
            answer("ann", None, "site", 0.9),
            answer("bob", Some("pay"), "checkout", 0.9),
            answer("ann", None, "post-delivery", 0.2),
            answer("bob", Some("delivery"), "post-delivery", 0.6),
            answer("cat", Some("delivery"), "x", 0.1),
        ];
        let tallies = HashMap::from([(
            "delivery".to_owned(),
            Tally {
                promises_made: 4,
                promises_kept: 1,
                promises_broken: 3,
                ..Tally::default()
            },
        )]);
        let chasm = chasm(&map(), &answers, &tallies, 10);
        let zmot = &chasm.stages[0];
        assert_eq!((zmot.expected, zmot.delivered, zmot.gap), (None, Some(0.9), None));
        let smot = &chasm.stages[2];
        assert_eq!(smot.expected, Some(0.9));
        assert_eq!(smot.delivered, Some(0.3));
        assert_eq!(smot.gap, Some(0.6));
        assert_eq!(smot.answers, 3);
        assert_eq!(smot.promises_kept_rate, Some(0.25));
        assert_eq!(chasm.stages[3].delivered, None);
        // ann was delighted early and let down late; bob stayed middling late; cat answered late only.
        assert_eq!(chasm.cohort.early_stages, ["zmot", "fmot"]);
        assert_eq!(chasm.cohort.answered_both, 2);
        assert_eq!(chasm.cohort.count, 1);
        assert_eq!(chasm.cohort.customers, ["ann"]);
        assert_eq!(chasm.deepest().map(|s| s.stage.as_str()), Some("smot"));
    }

    #[test]
    fn no_stage_is_deepest_when_none_falls_short() {
        let answers = [
            answer("ann", None, "site", 0.5),
            answer("ann", Some("delivery"), "x", 0.9),
        ];
        let chasm = chasm(&map(), &answers, &HashMap::new(), 10);
        assert_eq!(chasm.stages[2].gap.map(|g| g < 0.0), Some(true));
        assert_eq!(chasm.deepest(), None);
    }

    #[test]
    fn scores_become_satisfaction_between_zero_and_one() {
        let data = |v: serde_json::Value| {
            crate::validate_value(
                serde_json::json!({"id": "s", "type": "survey.answered", "time": "2026-11-23T10:00:00Z", "data": v}),
                None,
            )
            .unwrap()
            .data
        };
        let of = |v| Answer::from_event("c".into(), &data(v)).map(|a| a.satisfaction);
        assert_eq!(of(serde_json::json!({"survey": "s", "nps": 10})), Some(1.0));
        assert_eq!(of(serde_json::json!({"survey": "s", "csat": 1, "ces": 1})), Some(0.0));
        assert_eq!(
            of(serde_json::json!({"survey": "s", "ces": 5, "ces_scale": "effort"})),
            Some(0.0),
            "very high effort on the older scale is the worst"
        );
        assert_eq!(of(serde_json::json!({"survey": "s", "nps": 5, "csat": 3})), Some(0.5));
        assert_eq!(of(serde_json::json!({"survey": "s", "comment": "fine"})), None);
    }
}
