//! The weakest links: touchpoints ranked by how far they fall short of their
//! targets, weighed by how many customers meet them.
//!
//! Each touchpoint is measured on up to three signals over a time range:
//! promises broken among those settled, negative survey answers among answers, and
//! failed outcomes among outcomes (see [`crate::health::outcome`]). For each signal
//! the shortfall is how far the failure share exceeds what the touchpoint's targets
//! allow, taking the lower bound of the share's 95 % Wilson interval so that one bad
//! answer out of three does not outrank three hundred out of a thousand. The score
//! is the sum of the shortfalls times the natural logarithm of one plus the
//! touchpoint's exposure: a failure met by many customers weighs more than the
//! same failure met by few, without traffic alone making a touchpoint weak.
//!
//! A journey map makes many tests at once (every signal of every touchpoint, every
//! entity against the rest), and each could raise a false alarm by chance. So one
//! view of a map shares [`FALSE_ALARM_RATE`] among all of them (Bonferroni): where
//! every touchpoint meets its targets and no entity does worse than the rest, the
//! chance that any link scores above zero is at most that rate (see [`Strictness`]).
//!
//! A fault concentrated in one entity (a carrier, a team, a store: see
//! [`crate::culprit`]) is diluted at touchpoint level by everyone doing well. So
//! each signal's shortfall is at least what its culprits' own shortfalls add up
//! to, each weighed by the culprit's share of the signal's cases: the harm one
//! team does ranks the touchpoint as high as it deserves, and the culprits are
//! named.
//! The method is documented for users in docs/journey-map.md.

use std::collections::HashMap;

use serde::Serialize;

use crate::culprit::{Culprit, culprits, test_count};
use crate::health::Tally;
use crate::stats::{normal_quantile, wilson_lower_bound};

/// The chance, for one view of a journey map (one time range), that any weak link
/// scores above zero or any culprit is named where nothing is wrong.
pub const FALSE_ALARM_RATE: f64 = 0.05;

/// How strict each test of one view of a map is: [`FALSE_ALARM_RATE`] shared
/// equally among every test the view makes, so that together they stay within it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Strictness {
    /// The false-alarm chance each test may take.
    pub level: f64,
    /// The one-sided normal quantile of that chance: the Wilson bounds' width.
    z: f64,
}

impl Strictness {
    /// The strictness of a view of `map` with these tallies: one test per measured
    /// signal of each touchpoint, one per comparison of an entity with the rest.
    pub fn of_view(map: &JourneyMap, tallies: &HashMap<String, Tally>, entities: &EntityTallies) -> Strictness {
        let tests: usize = map
            .touchpoints
            .iter()
            .filter_map(|t| {
                let tally = tallies.get(&t.key)?;
                let of = entities.get(&t.key).map_or(&[][..], Vec::as_slice);
                let measured = signals(t, tally, &[], 1.96).len();
                Some(measured + test_count(tally, of))
            })
            .sum();
        Strictness::shared_by(tests)
    }

    /// [`FALSE_ALARM_RATE`] shared by `tests` tests.
    pub fn shared_by(tests: usize) -> Strictness {
        let level = FALSE_ALARM_RATE / tests.max(1) as f64;
        Strictness {
            level,
            z: normal_quantile(1.0 - level),
        }
    }
}

/// Per touchpoint, the tallies of the entities accountable there (`kind:id`).
pub type EntityTallies = HashMap<String, Vec<(String, Tally)>>;
use crate::journey::{JourneyMap, Touchpoint};

/// One ranked touchpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeakLink {
    pub touchpoint: String,
    pub stage: String,
    pub owners: Vec<String>,
    /// Higher is weaker; 0 when every target is met.
    pub score: f64,
    pub exposure: i64,
    /// The failure share of the signal that falls furthest short of its target.
    pub failure_rate: f64,
    /// What failed, in words; the worst culprit named when there is one.
    pub why: String,
    /// The entities that fail credibly more than the rest, worst first.
    pub culprits: Vec<Culprit>,
}

/// One way a touchpoint can fail, measured.
struct Signal {
    key: &'static str,
    failed: i64,
    of: i64,
    allowed: f64,
    /// "promises broken", phrased to follow "N% of M …".
    noun: &'static str,
    verb: &'static str,
    /// What the signal's culprits miss their target by, weighed by their share of its cases.
    culprit_shortfall: f64,
    /// The width of the Wilson bounds (see [`Strictness`]).
    z: f64,
}

impl Signal {
    fn rate(&self) -> f64 {
        self.failed as f64 / self.of as f64
    }

    fn shortfall(&self) -> f64 {
        (wilson_lower_bound(self.failed, self.of, self.z) - self.allowed)
            .max(0.0)
            .max(self.culprit_shortfall)
    }

    fn describe(&self) -> String {
        format!(
            "{} of {} {} {} (target: at most {})",
            percent(self.rate()),
            crate::number::thousands(self.of),
            self.noun,
            self.verb,
            percent(self.allowed)
        )
    }
}

fn signals(t: &Touchpoint, tally: &Tally, found: &[Culprit], z: f64) -> Vec<Signal> {
    let settled = tally.promises_kept + tally.promises_broken;
    let candidates = [
        Signal {
            key: "promises_broken",
            failed: tally.promises_broken,
            of: settled,
            allowed: allowed(t, "promises_broken"),
            noun: "promises",
            verb: "broken",
            culprit_shortfall: 0.0,
            z,
        },
        Signal {
            key: "negative_answers",
            failed: tally.negative_answers,
            of: tally.answers,
            allowed: allowed(t, "negative_answers"),
            noun: "survey answers",
            verb: "negative",
            culprit_shortfall: 0.0,
            z,
        },
        Signal {
            key: "failures",
            failed: tally.failures,
            of: tally.outcomes,
            allowed: allowed(t, "failures"),
            noun: "outcomes",
            verb: "failed",
            culprit_shortfall: 0.0,
            z,
        },
    ];
    candidates
        .into_iter()
        .filter(|s| s.of > 0)
        .map(|mut s| {
            s.culprit_shortfall = found
                .iter()
                .filter(|c| c.signal == s.key)
                .map(|c| (wilson_lower_bound(c.failed, c.exposure, z) - s.allowed).max(0.0) * c.weight)
                .sum();
            s
        })
        .collect()
}

/// The failure share a touchpoint's targets allow on a signal (`promises_broken`,
/// `negative_answers` or `failures`).
pub fn allowed(t: &Touchpoint, signal: &str) -> f64 {
    match signal {
        "promises_broken" => 1.0 - t.targets.promises_kept,
        "negative_answers" => t.targets.negative_answers,
        _ => t.targets.failures,
    }
}

/// How a touchpoint stands against its targets: the one judgement behind both the
/// weakest-link ranking and the colour of its card, so a card can never look fine
/// while the ranking calls it weak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    /// No promise settled, no answer, no outcome: nothing to judge.
    Unmeasured,
    /// Every measured share is within its target.
    Meets,
    /// A measured share is over its target, but the evidence is not yet conclusive
    /// (the share's lower bound, at the view's [`Strictness`], is within it) or no
    /// customer met it (no exposure).
    Watch,
    /// Falls short for certain: a positive weakest-link score.
    Short,
}

/// The judgement of one touchpoint's tally, its entities' tallies beside it, at
/// the strictness of the view it is part of.
pub fn judge(t: &Touchpoint, tally: &Tally, entities: &[(String, Tally)], strictness: Strictness) -> Judgement {
    match assess(t, tally, entities, strictness) {
        None => Judgement::Unmeasured,
        Some(link) if link.score > 0.0 => Judgement::Short,
        Some(_)
            if signals(t, tally, &[], strictness.z)
                .iter()
                .any(|s| s.rate() > s.allowed) =>
        {
            Judgement::Watch
        }
        Some(_) => Judgement::Meets,
    }
}

/// One touchpoint's link, when anything about it was measured.
fn assess(t: &Touchpoint, tally: &Tally, entities: &[(String, Tally)], strictness: Strictness) -> Option<WeakLink> {
    let found = culprits(tally, entities, |signal| allowed(t, signal), strictness.level);
    let mut signals = signals(t, tally, &found, strictness.z);
    if signals.is_empty() {
        return None;
    }
    signals.sort_by(|a, b| {
        (b.shortfall(), b.rate() - b.allowed)
            .partial_cmp(&(a.shortfall(), a.rate() - a.allowed))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let shortfall: f64 = signals.iter().map(Signal::shortfall).sum();
    let score = shortfall * (1.0 + tally.exposure.max(0) as f64).ln();
    let failing: Vec<String> = signals
        .iter()
        .filter(|s| s.shortfall() > 0.0)
        .map(Signal::describe)
        .collect();
    let mut why = if failing.is_empty() {
        format!("meets its targets: {}", signals[0].describe())
    } else {
        failing.join("; ")
    };
    if let Some(worst) = found.first() {
        let noun = signals
            .iter()
            .find(|s| s.key == worst.signal)
            .map_or("cases failed".to_owned(), |s| format!("{} {}", s.noun, s.verb));
        let elsewhere = if worst.others_exposure == 0 {
            "the only one measured here".to_owned()
        } else {
            format!("against {} elsewhere", percent(worst.others_rate))
        };
        why.push_str(&format!(
            "; worst: {} with {} of {} {noun}, {elsewhere}",
            worst.entity,
            percent(worst.failure_rate),
            crate::number::thousands(worst.exposure),
        ));
    }
    Some(WeakLink {
        touchpoint: t.key.clone(),
        stage: t.stage.clone(),
        owners: t.owners.clone(),
        score: round(score, 4),
        exposure: tally.exposure,
        failure_rate: round(signals[0].rate(), 4),
        why,
        culprits: found,
    })
}

/// Ranks the touchpoints of `map` (of one stage, if given) that have anything
/// measured in `tallies`, worst first, with their culprits among `entities`. Ties
/// keep the map's order. The tests are as strict as the whole map's view demands,
/// whichever stage is shown, so a link scores the same on every page.
pub fn weakest_links(
    map: &JourneyMap,
    tallies: &HashMap<String, Tally>,
    entities: &EntityTallies,
    stage: Option<&str>,
) -> Vec<WeakLink> {
    let strictness = Strictness::of_view(map, tallies, entities);
    let mut links: Vec<WeakLink> = map
        .touchpoints
        .iter()
        .filter(|t| stage.is_none_or(|s| t.stage == s))
        .filter_map(|t| {
            let of = entities.get(&t.key).map_or(&[][..], Vec::as_slice);
            assess(t, tallies.get(&t.key)?, of, strictness)
        })
        .collect();
    links.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap_or(std::cmp::Ordering::Equal));
    links
}

fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p != 0.0 && p < 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

fn round(value: f64, places: i32) -> f64 {
    let factor = 10f64.powi(places);
    (value * factor).round() / factor
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
key = "logistics"
name = "Logistics"
[[functions]]
key = "service"
name = "Service"
[[touchpoints]]
key = "window"
name = "Delivery window"
stage = "smot"
owners = ["logistics"]
exposure = ["shipment.window_set"]
[[touchpoints.promises]]
key = "window"
kind = "delivery_window"
[[touchpoints]]
key = "callback"
name = "Callback"
stage = "smot"
owners = ["service"]
exposure = ["callback.promised"]
[touchpoints.targets]
negative_answers = 0.3
[[touchpoints]]
key = "pay"
name = "Paying"
stage = "fmot"
owners = ["service"]
exposure = ["payment.failed"]
"#,
        )
        .unwrap()
    }

    fn tally(f: impl FnOnce(&mut Tally)) -> Tally {
        let mut t = Tally::default();
        f(&mut t);
        t
    }

    #[test]
    fn the_touchpoint_furthest_below_target_ranks_first_and_says_why() {
        let tallies = HashMap::from([
            (
                "window".to_owned(),
                tally(|t| {
                    t.exposure = 1000;
                    t.promises_kept = 700;
                    t.promises_broken = 300;
                }),
            ),
            (
                "callback".to_owned(),
                tally(|t| {
                    t.exposure = 200;
                    t.answers = 100;
                    t.negative_answers = 25;
                }),
            ),
        ]);
        let links = weakest_links(&map(), &tallies, &EntityTallies::new(), None);
        assert_eq!(
            links.iter().map(|l| l.touchpoint.as_str()).collect::<Vec<_>>(),
            ["window", "callback"]
        );
        assert!(links[0].score > 0.0);
        assert_eq!(links[0].failure_rate, 0.3);
        assert_eq!(links[0].why, "30% of 1,000 promises broken (target: at most 5%)");
        // 25 % negative answers is within the callback's own target of 30 %.
        assert_eq!(links[1].score, 0.0);
        assert!(
            links[1]
                .why
                .starts_with("meets its targets: 25% of 100 survey answers negative")
        );
    }

    #[test]
    fn few_bad_answers_do_not_outrank_many() {
        let tallies = HashMap::from([
            (
                "window".to_owned(),
                tally(|t| {
                    t.exposure = 40;
                    t.promises_kept = 1;
                    t.promises_broken = 2;
                }),
            ),
            (
                "callback".to_owned(),
                tally(|t| {
                    t.exposure = 40;
                    t.answers = 1000;
                    t.negative_answers = 500;
                }),
            ),
        ]);
        let links = weakest_links(&map(), &tallies, &EntityTallies::new(), None);
        assert_eq!(links[0].touchpoint, "callback");
    }

    #[test]
    fn the_same_shortfall_weighs_more_where_more_customers_meet_it() {
        let broken = |exposure| {
            tally(|t| {
                t.exposure = exposure;
                t.promises_kept = 80;
                t.promises_broken = 20;
            })
        };
        let small = weakest_links(
            &map(),
            &HashMap::from([("window".to_owned(), broken(100))]),
            &EntityTallies::new(),
            None,
        );
        let large = weakest_links(
            &map(),
            &HashMap::from([("window".to_owned(), broken(10_000))]),
            &EntityTallies::new(),
            None,
        );
        assert!(large[0].score > small[0].score);
    }

    #[test]
    fn a_stage_filter_keeps_that_stage_and_nothing_measured_is_left_out() {
        let tallies = HashMap::from([
            (
                "pay".to_owned(),
                tally(|t| {
                    t.exposure = 50;
                    t.outcomes = 50;
                    t.failures = 25;
                }),
            ),
            ("window".to_owned(), tally(|t| t.exposure = 10)),
        ]);
        let links = weakest_links(&map(), &tallies, &EntityTallies::new(), Some("fmot"));
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].touchpoint, "pay");
        assert!(links[0].why.contains("50% of 50 outcomes failed"));
        assert!(weakest_links(&map(), &tallies, &EntityTallies::new(), Some("smot")).is_empty());
    }

    #[test]
    fn the_judgement_agrees_with_the_ranking() {
        let map = map();
        let window = map.touchpoint("window").unwrap();
        let with = |kept, broken, exposure| {
            tally(|t| {
                t.exposure = exposure;
                t.promises_kept = kept;
                t.promises_broken = broken;
            })
        };
        // A view of one touchpoint measured on one signal makes one test.
        let one = Strictness::shared_by(1);
        assert_eq!(judge(window, &Tally::default(), &[], one), Judgement::Unmeasured);
        assert_eq!(judge(window, &with(99, 1, 100), &[], one), Judgement::Meets);
        // 1 of 5 broken is far over 5 %, but 5 settled cannot prove it: watch.
        assert_eq!(judge(window, &with(4, 1, 5), &[], one), Judgement::Watch);
        // Short for certain, with no customer exposed: no score, so only watched.
        assert_eq!(judge(window, &with(700, 300, 0), &[], one), Judgement::Watch);
        let short = with(700, 300, 1000);
        assert_eq!(judge(window, &short, &[], one), Judgement::Short);
        // Whatever the ranking scores above zero is judged short, and only that.
        for (tally, expected) in [(with(4, 1, 5), false), (short, true), (with(99, 1, 100), false)] {
            let links = weakest_links(
                &map,
                &HashMap::from([("window".to_owned(), tally)]),
                &EntityTallies::new(),
                None,
            );
            assert_eq!(links[0].score > 0.0, expected);
            assert_eq!(judge(window, &tally, &[], one) == Judgement::Short, expected);
        }
    }

    #[test]
    fn a_fault_in_one_entity_ranks_the_touchpoint_and_names_the_culprit() {
        let map = map();
        let window = map.touchpoint("window").unwrap();
        let promises = |kept: i64, broken: i64| Tally {
            exposure: kept + broken,
            promises_kept: kept,
            promises_broken: broken,
            ..Default::default()
        };
        // One carrier breaks 40 of 100 windows; four others break 1 in 100 each.
        let mut entities = vec![("carrier:slow".to_owned(), promises(60, 40))];
        entities.extend((0..4).map(|i| (format!("carrier:ok-{i}"), promises(99, 1))));
        let mut total = Tally::default();
        entities.iter().for_each(|(_, t)| total.add(t));
        let tallies = HashMap::from([("window".to_owned(), total)]);
        let without = weakest_links(&map, &tallies, &EntityTallies::new(), None);
        let by_entity = EntityTallies::from([("window".to_owned(), entities.clone())]);
        let with = weakest_links(&map, &tallies, &by_entity, None);
        assert!(without[0].culprits.is_empty());
        assert_eq!(with[0].culprits.len(), 1, "{:?}", with[0]);
        assert_eq!(with[0].culprits[0].entity, "carrier:slow");
        assert!(
            with[0].score > without[0].score,
            "the concentrated harm counts: {} against {}",
            with[0].score,
            without[0].score
        );
        assert!(
            with[0]
                .why
                .contains("worst: carrier:slow with 40% of 100 promises broken, against 1% elsewhere"),
            "{}",
            with[0].why
        );
        let strictness = Strictness::of_view(&map, &tallies, &by_entity);
        // One signal of the touchpoint, then five carriers against the rest.
        assert_eq!(strictness, Strictness::shared_by(6));
        assert_eq!(judge(window, &total, &entities, strictness), Judgement::Short);
    }

    #[test]
    fn the_more_a_view_tests_the_more_evidence_each_alarm_needs() {
        let map = map();
        let window = map.touchpoint("window").unwrap();
        // 9 % of 400 broken against a target of 5 %: clear alone, not among a thousand tests.
        let tally = tally(|t| {
            t.exposure = 400;
            t.promises_kept = 364;
            t.promises_broken = 36;
        });
        assert_eq!(judge(window, &tally, &[], Strictness::shared_by(1)), Judgement::Short);
        assert_eq!(
            judge(window, &tally, &[], Strictness::shared_by(1_000)),
            Judgement::Watch
        );
        let strict = Strictness::shared_by(1_000);
        assert!((strict.level - FALSE_ALARM_RATE / 1_000.0).abs() < 1e-12);
    }
}
