//! Culprits: who is accountable when a touchpoint fails.
//!
//! A touchpoint's failures are rarely spread evenly. One carrier loses parcels,
//! one team misses its callbacks, one store's shelf is not what the site claims.
//! At touchpoint level such a fault is diluted by everyone doing well; broken down
//! by the entities the events name (`carrier:…`, `team:…`, `store:…`) it stands out.
//!
//! An entity is a culprit on a signal (promises broken, negative answers, failed
//! outcomes) when:
//! - it has at least [`MIN_EXPOSURE`] measured cases (and, to be compared with
//!   it, so has the rest);
//! - its own share misses the touchpoint's target;
//! - its share is above the rest's, credibly: either a one-sided Fisher exact test
//!   says so, or the entity carries the touchpoint's shortfall: the touchpoint and
//!   the entity are each credibly over the target (Wilson lower bounds above it)
//!   while the rest, without it, is within the target. The second finds a team
//!   failing 13 of 30 beside a rest of only 14 cases, too few for Fisher's test;
//!   it can only fire where the touchpoint's own test has. Each test is made at
//!   the per-test level it is given (see [`crate::weakest::Strictness`], which shares one false-alarm rate
//!   among every test a view of the journey makes). The exact test stays honest
//!   where a normal approximation is not: ten cases with three failures against a
//!   rest at 2 % is rare, but not rare enough to name a culprit among hundreds of SKUs.
//!
//! The method is documented for users in docs/journey-map.md#culprits.

use serde::Serialize;

use crate::catalogue::EventData;
use crate::health::Tally;
use crate::stats::{fisher_upper_tail, normal_quantile, wilson_lower_bound};

/// The least number of measured cases (settled promises, answers or outcomes) an
/// entity, and the rest of the touchpoint, must have before one is compared with
/// the other: below it a share says too little.
pub const MIN_EXPOSURE: i64 = 10;

/// The kinds of entity troth reads from events, in the order a culprit list names
/// them. Kinds that belong to a subject (a shipment's carrier, a case's team) are
/// remembered for it, so later events about the subject are attributed too.
pub const KINDS: &[&str] = &[
    "carrier", "driver", "team", "agent", "store", "sku", "supplier", "method", "channel", "template",
];

/// Whether an entity of this kind stays with the event's subject: later events
/// about the same shipment, case or pickup order are that carrier's, driver's,
/// team's, agent's or store's.
pub fn follows_subject(kind: &str) -> bool {
    matches!(kind, "carrier" | "driver" | "team" | "agent" | "store")
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
        EventData::CaseOpened(c) => {
            add("team", &c.team);
            if let Some(agent) = &c.agent {
                add("agent", agent);
            }
        }
        // The case is the new team's (and agent's) from now on.
        EventData::CaseTransferred(c) => {
            add("team", &c.to_team);
            if let Some(agent) = &c.to_agent {
                add("agent", agent);
            }
        }
        EventData::CaseResolved(c) => {
            if let Some(agent) = &c.agent {
                add("agent", agent);
            }
        }
        EventData::CallbackPromised(c) => {
            if let Some(agent) = &c.agent {
                add("agent", agent);
            }
        }
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
        EventData::OrderPlaced(o) => {
            if let Some(store) = &o.store {
                add("store", store);
            }
        }
        EventData::OrderReady(o) => add("store", &o.store),
        EventData::OrderCollected(o) => add("store", &o.store),
        EventData::InventoryReceived(i) => {
            add("store", &i.store);
            add("sku", &i.sku);
            if let Some(supplier) = &i.supplier {
                add("supplier", supplier);
            }
        }
        EventData::InventoryAdjusted(i) => {
            add("store", &i.store);
            add("sku", &i.sku);
        }
        EventData::InventoryCounted(i) => {
            add("store", &i.store);
            add("sku", &i.sku);
        }
        EventData::ReviewPosted(r) => {
            if let Some(product) = &r.product {
                add("sku", product);
            }
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
    /// Everyone else's measured cases on the signal (0: the entity is the only one).
    #[serde(skip)]
    pub others_exposure: i64,
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

/// One entity's cases on one signal, set against the rest of its touchpoint.
struct Comparison<'a> {
    entity: &'a str,
    signal: &'static str,
    failed: i64,
    of: i64,
    all_failed: i64,
    all_of: i64,
}

/// Every comparison of an entity with the rest that has enough cases to be made:
/// each is a test that could raise a false alarm.
fn comparisons<'a>(total: &Tally, entities: &'a [(String, Tally)]) -> Vec<Comparison<'a>> {
    let totals = signal_counts(total);
    let mut tests = Vec::new();
    for (entity, tally) in entities {
        for (i, (signal, failed, of)) in signal_counts(tally).into_iter().enumerate() {
            let (all_failed, all_of) = (totals[i].1, totals[i].2);
            let rest_failed = all_failed - failed;
            // The rest may be too few to compare with (or none: a touchpoint one
            // team serves); the entity may still carry the touchpoint's shortfall.
            if of < MIN_EXPOSURE || failed < 0 || rest_failed < 0 {
                continue;
            }
            tests.push(Comparison {
                entity,
                signal,
                failed,
                of,
                all_failed,
                all_of,
            });
        }
    }
    tests
}

/// How many tests [`culprits`] makes at a touchpoint that could raise an alarm of
/// their own: one per comparison of an entity with the rest. (Carrying the
/// touchpoint's shortfall needs the touchpoint's own test to have fired, which is
/// counted with the touchpoint's signals.)
pub fn test_count(total: &Tally, entities: &[(String, Tally)]) -> usize {
    comparisons(total, entities)
        .iter()
        .filter(|c| c.all_of - c.of >= MIN_EXPOSURE)
        .count()
}

/// The culprits among `entities` (each `kind:id` with its tally at the touchpoint)
/// of a touchpoint whose whole tally is `total` and whose targets allow these
/// failure shares per signal, worst (most excess failures) first. `level` is the
/// chance each comparison may name an entity doing no worse than the rest.
pub fn culprits(
    total: &Tally,
    entities: &[(String, Tally)],
    allowed: impl Fn(&str) -> f64,
    level: f64,
) -> Vec<Culprit> {
    let z = normal_quantile(1.0 - level);
    let mut found: Vec<Culprit> = comparisons(total, entities)
        .into_iter()
        .filter_map(|c| {
            let (rest_failed, rest_of) = (c.all_failed - c.failed, c.all_of - c.of);
            let p = c.failed as f64 / c.of as f64;
            let q = if rest_of > 0 {
                rest_failed as f64 / rest_of as f64
            } else {
                0.0
            };
            let target = allowed(c.signal);
            if p <= target || p <= q {
                return None;
            }
            let above_the_rest =
                rest_of >= MIN_EXPOSURE && fisher_upper_tail(c.failed, c.of, c.all_failed, c.all_of) <= level;
            let carries_the_shortfall = q <= target
                && wilson_lower_bound(c.failed, c.of, z) > target
                && wilson_lower_bound(c.all_failed, c.all_of, z) > target;
            if !above_the_rest && !carries_the_shortfall {
                return None;
            }
            let Comparison {
                entity,
                signal,
                failed,
                of,
                all_of,
                ..
            } = c;
            Some(Culprit {
                entity: entity.to_owned(),
                signal: signal.to_owned(),
                failure_rate: round4(p),
                others_rate: round4(q),
                exposure: of,
                failed,
                others_exposure: all_of - of,
                excess: failed as f64 - q * of as f64,
                weight: of as f64 / all_of as f64,
            })
        })
        .collect();
    found.sort_by(|a, b| b.excess.total_cmp(&a.excess).then_with(|| a.entity.cmp(&b.entity)));
    found
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

    /// A touchpoint's share of a 5 % false-alarm budget among a hundred tests.
    const LEVEL: f64 = 0.0005;

    #[test]
    fn an_entity_carrying_the_touchpoints_shortfall_is_the_culprit() {
        // Too few others for Fisher's test to be sure at this level, but the
        // touchpoint and the team are far over the target and the rest is within it.
        let entities = vec![
            ("team:returns".to_owned(), broken(17, 13)),
            ("team:delivery".to_owned(), broken(14, 0)),
        ];
        let total = sum(&entities);
        assert!(crate::stats::fisher_upper_tail(13, 30, 13, 44) > LEVEL);
        let found = culprits(&total, &entities, |_| 0.02, LEVEL);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].entity, "team:returns");
        // The only team measured there carries the shortfall alone.
        let entities = vec![("team:returns".to_owned(), broken(10, 17))];
        assert_eq!(culprits(&sum(&entities), &entities, |_| 0.02, LEVEL).len(), 1);
        let entities = vec![
            ("team:returns".to_owned(), broken(10, 17)),
            ("team:delivery".to_owned(), broken(9, 0)),
        ];
        assert_eq!(culprits(&sum(&entities), &entities, |_| 0.02, LEVEL).len(), 1);
        // One failure among the others is over a 2 % target: the shortfall is shared.
        let entities = vec![
            ("team:returns".to_owned(), broken(17, 13)),
            ("team:delivery".to_owned(), broken(13, 1)),
        ];
        assert!(culprits(&sum(&entities), &entities, |_| 0.02, LEVEL).is_empty());
        // Where everyone fails alike, nobody in particular is the culprit.
        let entities = vec![
            ("team:returns".to_owned(), broken(17, 13)),
            ("team:delivery".to_owned(), broken(16, 12)),
        ];
        assert!(culprits(&sum(&entities), &entities, |_| 0.02, LEVEL).is_empty());
    }

    #[test]
    fn ten_cases_are_not_enough_to_blame_one_sku_among_many() {
        // Three of ten against a rest at 2 %: p ≈ 0.001, far from a hundredth of 5 %.
        let entities = vec![
            ("sku:t-1".to_owned(), broken(7, 3)),
            ("sku:others".to_owned(), broken(4_900, 100)),
        ];
        assert!(culprits(&sum(&entities), &entities, |_| 0.05, LEVEL).is_empty());
        // Eight of ten is.
        let entities = vec![
            ("sku:t-1".to_owned(), broken(2, 8)),
            ("sku:others".to_owned(), broken(4_900, 100)),
        ];
        assert_eq!(culprits(&sum(&entities), &entities, |_| 0.05, LEVEL).len(), 1);
    }

    #[test]
    fn a_team_missing_two_thirds_of_its_callbacks_is_the_culprit() {
        let entities = vec![
            ("team:delivery".to_owned(), broken(10, 20)),
            ("team:support".to_owned(), broken(95, 5)),
            ("team:billing".to_owned(), broken(96, 4)),
        ];
        let found = culprits(&sum(&entities), &entities, |_| 0.1, LEVEL);
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
        assert!(culprits(&sum(&entities), &entities, |_| 0.05, LEVEL).is_empty());
        // Far above the rest, but within the touchpoint's target: not accountable.
        let entities = vec![
            ("carrier:a".to_owned(), broken(960, 40)),
            ("carrier:b".to_owned(), broken(999, 1)),
        ];
        assert!(culprits(&sum(&entities), &entities, |_| 0.05, LEVEL).is_empty());
        // Too few cases to say.
        let entities = vec![
            ("carrier:a".to_owned(), broken(3, 6)),
            ("carrier:b".to_owned(), broken(500, 10)),
        ];
        assert!(culprits(&sum(&entities), &entities, |_| 0.05, LEVEL).is_empty());
    }

    #[test]
    fn healthy_entities_raise_few_false_alarms() {
        // Eight entities with the same true failure share, tested at 1 % per
        // touchpoint: over many draws, the share of touchpoints with any culprit
        // stays within that rate.
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
            alarms += usize::from(!culprits(&sum(&entities), &entities, |_| 0.05, LEVEL).is_empty());
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
        let named = |event: serde_json::Value| {
            named_entities(&crate::validate_value(event, None).unwrap().data)
                .into_iter()
                .map(|(kind, id)| format!("{kind}:{id}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            named(
                serde_json::json!({"id": "e", "type": "case.transferred", "time": "2026-11-23T09:00:00Z",
                "subject": "case:k1", "data": {"from_team": "support", "to_team": "returns", "to_agent": "ana"}})
            ),
            ["team:returns", "agent:ana"]
        );
        assert_eq!(
            named(
                serde_json::json!({"id": "e", "type": "callback.promised", "time": "2026-11-23T09:00:00Z",
                "subject": "case:k1", "data": {"due": "2026-11-23T12:00:00Z", "agent": "ben"}})
            ),
            ["agent:ben"]
        );
        assert_eq!(
            named(
                serde_json::json!({"id": "e", "type": "review.posted", "time": "2026-11-23T09:00:00Z",
                "data": {"rating": 1, "text": "broke", "site": "shop", "product": "drill-18v"}})
            ),
            ["sku:drill-18v"]
        );
        assert_eq!(
            named(
                serde_json::json!({"id": "e", "type": "inventory.received", "time": "2026-11-23T09:00:00Z",
                "data": {"store": "st-1", "sku": "drill-18v", "delta": 12, "supplier": "acme-tools"}})
            ),
            ["store:st-1", "sku:drill-18v", "supplier:acme-tools"]
        );
        // An agent stays with the case, as its team does.
        assert!(follows_subject("agent") && !follows_subject("supplier"));
    }
}
