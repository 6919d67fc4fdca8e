//! Culprits: who is accountable when a touchpoint fails.
//!
//! A touchpoint's failures are rarely spread evenly. One carrier loses parcels,
//! one team misses its callbacks, one store's shelf is not what the site claims.
//! At touchpoint level such a fault is diluted by everyone doing well; broken down
//! by the entities the events name (`carrier:…`, `team:…`, `store:…`) it stands out.
//!
//! An entity is a culprit on a signal (promises broken, negative answers, failed
//! outcomes) when:
//! - it and the rest each have at least [`MIN_EXPOSURE`] measured cases;
//! - its own share misses the touchpoint's target;
//! - a one-sided two-proportion z-test says its share is above the rest's, at a
//!   family-wise false-alarm rate of [`FALSE_ALARM_RATE`] per touchpoint
//!   (Bonferroni over every entity and signal tested there).
//!
//! The method is documented for users in docs/journey-map.md#culprits.

use serde::Serialize;

use crate::catalogue::EventData;
use crate::health::Tally;

/// The least number of measured cases (settled promises, answers or outcomes) an
/// entity, and the rest of the touchpoint, must have before one is compared with
/// the other: below it a share says too little.
pub const MIN_EXPOSURE: i64 = 10;

/// The chance, per touchpoint and time range, that an entity doing no worse than
/// the rest is named a culprit anyway.
pub const FALSE_ALARM_RATE: f64 = 0.01;

/// The kinds of entity troth reads from events, in the order a culprit list names
/// them. Kinds that belong to a subject (a shipment's carrier, a case's team) are
/// remembered for it, so later events about the subject are attributed too.
pub const KINDS: &[&str] = &[
    "carrier", "driver", "team", "store", "sku", "method", "channel", "template",
];

/// Whether an entity of this kind stays with the event's subject: later events
/// about the same shipment or case are that carrier's, driver's or team's.
pub fn follows_subject(kind: &str) -> bool {
    matches!(kind, "carrier" | "driver" | "team")
}

/// The entities an event names itself, as `(kind, id)`.
pub fn named_entities(data: &EventData) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut add = |kind: &'static str, id: &str| {
        if !id.is_empty() {
            out.push((kind, id.to_owned()));
        }
    };
    match data {
        EventData::ShipmentCreated(s) => add("carrier", &s.carrier),
        EventData::OutForDelivery(o) => add("driver", &o.driver),
        EventData::WindowSet(w) => {
            if let Some(driver) = &w.driver {
                add("driver", driver);
            }
        }
        EventData::CaseOpened(c) => add("team", &c.team),
        // The case is the new team's from now on.
        EventData::CaseTransferred(c) => add("team", &c.to_team),
        EventData::AvailabilityShown(a) => {
            if let Some(store) = &a.store {
                add("store", store);
            }
            add("sku", &a.sku);
        }
        EventData::StoreVisited(v) => {
            add("store", &v.store);
            if let Some(sku) = &v.sku {
                add("sku", sku);
            }
        }
        EventData::InventoryReceived(i) => {
            add("store", &i.store);
            add("sku", &i.sku);
        }
        EventData::InventoryAdjusted(i) => {
            add("store", &i.store);
            add("sku", &i.sku);
        }
        EventData::InventoryCounted(i) => {
            add("store", &i.store);
            add("sku", &i.sku);
        }
        EventData::PaymentSucceeded(p) => add("method", &p.method),
        EventData::PaymentFailed(p) => add("method", &p.method),
        EventData::MessageSent(m) => {
            add("channel", m.channel.as_str());
            add("template", &m.action);
        }
        _ => {}
    }
    out
}

/// One entity that fails a touchpoint's signal credibly more than the rest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Culprit {
    /// `kind:id`, e.g. `team:returns-desk`.
    pub entity: String,
    /// `promises_broken`, `negative_answers` or `failures`.
    pub signal: String,
    /// The entity's own failure share on the signal.
    pub failure_rate: f64,
    /// The failure share of everyone else at the touchpoint.
    pub others_rate: f64,
    /// The entity's measured cases on the signal (settled promises, answers or outcomes).
    pub exposure: i64,
    /// The entity's failures on the signal.
    #[serde(skip)]
    pub failed: i64,
    /// Failures beyond what the rest's share would have given (for ranking).
    #[serde(skip)]
    pub excess: f64,
    /// The entity's share of the touchpoint's cases on the signal.
    #[serde(skip)]
    pub weight: f64,
}

/// A signal's failures and cases in a tally: `(name, failed, of)`.
pub fn signal_counts(tally: &Tally) -> [(&'static str, i64, i64); 3] {
    [
        (
            "promises_broken",
            tally.promises_broken,
            tally.promises_kept + tally.promises_broken,
        ),
        ("negative_answers", tally.negative_answers, tally.answers),
        ("failures", tally.failures, tally.outcomes),
    ]
}

/// The culprits among `entities` (each `kind:id` with its tally at the touchpoint)
/// of a touchpoint whose whole tally is `total` and whose targets allow these
/// failure shares per signal, worst (most excess failures) first.
pub fn culprits(total: &Tally, entities: &[(String, Tally)], allowed: impl Fn(&str) -> f64) -> Vec<Culprit> {
    // Every comparison that could raise an alarm counts towards the correction.
    let mut tests = Vec::new();
    let totals = signal_counts(total);
    for (entity, tally) in entities {
        for (i, (signal, failed, of)) in signal_counts(tally).into_iter().enumerate() {
            let (all_failed, all_of) = (totals[i].1, totals[i].2);
            let (rest_failed, rest_of) = (all_failed - failed, all_of - of);
            if of < MIN_EXPOSURE || rest_of < MIN_EXPOSURE || failed < 0 || rest_failed < 0 {
                continue;
            }
            tests.push((entity, signal, failed, of, rest_failed, rest_of, all_of));
        }
    }
    if tests.is_empty() {
        return Vec::new();
    }
    let critical = normal_quantile(1.0 - FALSE_ALARM_RATE / tests.len() as f64);
    let mut found: Vec<Culprit> = tests
        .into_iter()
        .filter_map(|(entity, signal, failed, of, rest_failed, rest_of, all_of)| {
            let (p, q) = (failed as f64 / of as f64, rest_failed as f64 / rest_of as f64);
            if p <= allowed(signal) || z_score(failed, of, rest_failed, rest_of) <= critical {
                return None;
            }
            Some(Culprit {
                entity: entity.clone(),
                signal: signal.to_owned(),
                failure_rate: round4(p),
                others_rate: round4(q),
                exposure: of,
                failed,
                excess: failed as f64 - q * of as f64,
                weight: of as f64 / all_of as f64,
            })
        })
        .collect();
    found.sort_by(|a, b| b.excess.total_cmp(&a.excess).then_with(|| a.entity.cmp(&b.entity)));
    found
}

/// The pooled two-proportion z statistic of `a` failures out of `n` against `b` out of `m`.
fn z_score(a: i64, n: i64, b: i64, m: i64) -> f64 {
    let (n, m) = (n as f64, m as f64);
    let (p, q) = (a as f64 / n, b as f64 / m);
    let pooled = (a as f64 + b as f64) / (n + m);
    let spread = (pooled * (1.0 - pooled) * (1.0 / n + 1.0 / m)).sqrt();
    if spread == 0.0 {
        return 0.0;
    }
    (p - q) / spread
}

/// The standard normal quantile of `p` (0 < p < 1), by bisection on the CDF.
fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0f64, 10.0f64);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if normal_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// The standard normal CDF, through the complementary error function (Numerical
/// Recipes' Chebyshev fit, relative error below 1.2e-7).
fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broken(kept: i64, broken: i64) -> Tally {
        Tally {
            promises_kept: kept,
            promises_broken: broken,
            ..Default::default()
        }
    }

    fn sum(parts: &[(String, Tally)]) -> Tally {
        let mut total = Tally::default();
        parts.iter().for_each(|(_, t)| total.add(t));
        total
    }

    #[test]
    fn the_normal_quantile_matches_the_tables() {
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-4);
        assert!((normal_quantile(0.99) - 2.326_348).abs() < 1e-4);
        assert!((normal_quantile(0.5)).abs() < 1e-6);
    }

    #[test]
    fn a_team_missing_two_thirds_of_its_callbacks_is_the_culprit() {
        let entities = vec![
            ("team:delivery".to_owned(), broken(10, 20)),
            ("team:support".to_owned(), broken(95, 5)),
            ("team:billing".to_owned(), broken(96, 4)),
        ];
        let found = culprits(&sum(&entities), &entities, |_| 0.1);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].entity, "team:delivery");
        assert_eq!(found[0].signal, "promises_broken");
        assert_eq!(found[0].failure_rate, 0.6667);
        assert_eq!(found[0].others_rate, 0.045);
        assert_eq!(found[0].exposure, 30);
    }

    #[test]
    fn merely_highest_is_not_a_culprit() {
        // 9 % against 6 %, on a hundred each: within what chance gives.
        let entities = vec![
            ("carrier:a".to_owned(), broken(91, 9)),
            ("carrier:b".to_owned(), broken(94, 6)),
            ("carrier:c".to_owned(), broken(94, 6)),
        ];
        assert!(culprits(&sum(&entities), &entities, |_| 0.05).is_empty());
        // Far above the rest, but within the touchpoint's target: not accountable.
        let entities = vec![
            ("carrier:a".to_owned(), broken(960, 40)),
            ("carrier:b".to_owned(), broken(999, 1)),
        ];
        assert!(culprits(&sum(&entities), &entities, |_| 0.05).is_empty());
        // Too few cases to say.
        let entities = vec![
            ("carrier:a".to_owned(), broken(3, 6)),
            ("carrier:b".to_owned(), broken(500, 10)),
        ];
        assert!(culprits(&sum(&entities), &entities, |_| 0.05).is_empty());
    }

    #[test]
    fn healthy_entities_raise_few_false_alarms() {
        // Eight entities with the same true failure share: over many draws, the
        // share of touchpoints with any culprit stays near the documented rate.
        let mut state = 7u64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (trials, mut alarms) = (400, 0);
        for _ in 0..trials {
            let entities: Vec<(String, Tally)> = (0..8)
                .map(|e| {
                    let broken_n = (0..200).filter(|_| uniform() < 0.08).count() as i64;
                    (format!("store:{e}"), broken(200 - broken_n, broken_n))
                })
                .collect();
            alarms += usize::from(!culprits(&sum(&entities), &entities, |_| 0.05).is_empty());
        }
        assert!(alarms <= trials * 3 / 100, "{alarms} false alarms in {trials}");
    }

    #[test]
    fn events_name_their_entities() {
        let event = crate::validate_value(
            serde_json::json!({"id": "e", "type": "case.transferred", "time": "2026-11-23T09:00:00Z",
                "subject": "case:k1", "data": {"from_team": "support", "to_team": "returns"}}),
            None,
        )
        .unwrap();
        assert_eq!(named_entities(&event.data), [("team", "returns".to_owned())]);
        let event = crate::validate_value(
            serde_json::json!({"id": "e", "type": "store.visited", "time": "2026-11-23T09:00:00Z",
                "data": {"store": "st-3", "sku": "tyre-1", "found": false}}),
            None,
        )
        .unwrap();
        assert_eq!(
            named_entities(&event.data),
            [("store", "st-3".to_owned()), ("sku", "tyre-1".to_owned())]
        );
    }
}
