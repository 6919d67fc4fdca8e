//! Carrier scorecards: how each carrier and each of its drivers keeps delivery
//! promises, day by day.
//!
//! A shipment's figures depend on facts that arrive in any order: its carrier
//! (`shipment.created`), its driver (`shipment.out_for_delivery`), its window, its
//! attempts and delivery, the promise engine's verdicts and its tracking views. So
//! the store keeps, per shipment, the facts it has seen with their sequence numbers
//! ([`ShipmentFacts`]), and the day tallies are sums of each shipment's
//! [`contributions`]. An event adds the difference between the shipment's
//! contributions with and without it ([`ShipmentFacts::change`]): a fact that
//! arrives late moves everything counted so far to the right carrier and driver.
//! The facts up to a sequence number decide a shipment's contributions, so a
//! catch-up after a crash and a replay of the log count exactly as the live path.
//!
//! Rules: a shipment counts for the carrier of its `shipment.created` (nothing
//! counts while that is unknown) and for the driver of its latest delivery run by
//! event time (all its figures, the failed attempts of an earlier driver
//! included); each figure counts on the UTC day of the event that settled it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ValidEvent;
use crate::catalogue::EventData;

/// The promise key whose verdicts are the window hit rate.
pub const WINDOW_PROMISE: &str = "delivery_window";

const DAY_US: i64 = 86_400_000_000;

/// What a carrier or driver did on one day. Every field adds up across days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreTally {
    /// Shipments created (on the day of `shipment.created`).
    pub shipments: i64,
    /// Delivery-window promises kept and broken (on the day of the verdict).
    pub windows_kept: i64,
    pub windows_broken: i64,
    /// Shipments delivered, and how many without an earlier failed attempt.
    pub delivered: i64,
    pub first_attempt: i64,
    pub lost: i64,
    /// Deliveries after the window's end, and by how many seconds in all.
    pub late: i64,
    pub late_seconds: i64,
    pub tracking_views: i64,
}

impl ScoreTally {
    /// Column names, in the order of [`ScoreTally::to_array`].
    pub const FIELDS: &'static [&'static str] = &[
        "shipments",
        "windows_kept",
        "windows_broken",
        "delivered",
        "first_attempt",
        "lost",
        "late",
        "late_seconds",
        "tracking_views",
    ];

    pub fn to_array(&self) -> [i64; 9] {
        [
            self.shipments,
            self.windows_kept,
            self.windows_broken,
            self.delivered,
            self.first_attempt,
            self.lost,
            self.late,
            self.late_seconds,
            self.tracking_views,
        ]
    }

    /// From values in the order of [`ScoreTally::FIELDS`]; missing ones are zero.
    pub fn from_values(values: &[i64]) -> ScoreTally {
        let v = |i: usize| values.get(i).copied().unwrap_or(0);
        ScoreTally {
            shipments: v(0),
            windows_kept: v(1),
            windows_broken: v(2),
            delivered: v(3),
            first_attempt: v(4),
            lost: v(5),
            late: v(6),
            late_seconds: v(7),
            tracking_views: v(8),
        }
    }

    fn zip(&self, other: &ScoreTally, f: impl Fn(i64, i64) -> i64) -> ScoreTally {
        let (a, b) = (self.to_array(), other.to_array());
        ScoreTally::from_values(&std::array::from_fn::<i64, 9, _>(|i| f(a[i], b[i])))
    }

    pub fn add(&mut self, other: &ScoreTally) {
        *self = self.zip(other, |a, b| a + b);
    }

    pub fn is_zero(&self) -> bool {
        self.to_array().iter().all(|&v| v == 0)
    }

    /// Windows kept among those settled (kept or broken), when any were.
    pub fn window_hit_rate(&self) -> Option<f64> {
        ratio(self.windows_kept, self.windows_kept + self.windows_broken)
    }

    /// Deliveries at the first attempt among deliveries, when there were any.
    pub fn first_attempt_rate(&self) -> Option<f64> {
        ratio(self.first_attempt, self.delivered)
    }

    /// Mean lateness of the late deliveries, in minutes.
    pub fn mean_minutes_late(&self) -> Option<f64> {
        (self.late > 0).then(|| self.late_seconds as f64 / 60.0 / self.late as f64)
    }

    pub fn tracking_views_per_shipment(&self) -> Option<f64> {
        ratio(self.tracking_views, self.shipments)
    }
}

fn ratio(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Where a figure counts: carrier, driver (empty before any delivery run), UTC day.
pub type ScoreKey = (String, String, i64);

/// One fact about a shipment that scorecards use, with the sequence number of the
/// event that told it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreFact {
    pub seq: i64,
    /// Event time, µs.
    pub at: i64,
    pub what: What,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "k")]
pub enum What {
    Created {
        carrier: String,
    },
    Driver {
        driver: String,
    },
    /// A delivery window was set or moved; its end, µs.
    Window {
        end: i64,
    },
    AttemptFailed,
    Delivered,
    Lost,
    Viewed,
    /// The promise engine's verdict on a delivery-window promise.
    Verdict {
        promise: String,
        kept: bool,
    },
}

/// The shipment an event is about and the fact it tells, if scorecards use it.
pub fn fact_of(event: &ValidEvent) -> Option<(String, What)> {
    let subject = || event.subject.as_deref()?.strip_prefix("shipment:").map(str::to_owned);
    let window_verdict = |promise: &str, kept: bool| {
        let (key, _) = promise.split_once(':')?;
        Some((
            subject()?,
            What::Verdict {
                promise: promise.to_owned(),
                kept,
            },
        ))
        .filter(|_| key == WINDOW_PROMISE)
    };
    match &event.data {
        EventData::ShipmentCreated(c) => Some((
            c.shipment.clone(),
            What::Created {
                carrier: c.carrier.clone(),
            },
        )),
        EventData::TrackingViewed(v) => Some((v.shipment.clone(), What::Viewed)),
        EventData::OutForDelivery(o) => Some((
            subject()?,
            What::Driver {
                driver: o.driver.clone(),
            },
        )),
        // A window troth re-issued from its estimate is not the carrier's to keep.
        EventData::WindowSet(w) if w.estimate == Some(true) => None,
        EventData::WindowSet(w) => Some((
            subject()?,
            What::Window {
                end: w.window_end.micros(),
            },
        )),
        EventData::Rescheduled(r) => Some((
            subject()?,
            What::Window {
                end: r.window_end.micros(),
            },
        )),
        EventData::AttemptFailed(_) => Some((subject()?, What::AttemptFailed)),
        EventData::ShipmentDelivered(_) => Some((subject()?, What::Delivered)),
        EventData::ShipmentLost(_) => Some((subject()?, What::Lost)),
        EventData::PromiseKept(p) => window_verdict(&p.promise, true),
        EventData::PromiseBroken(p) => window_verdict(&p.promise, false),
        _ => None,
    }
}

/// The facts of one shipment, in log order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentFacts {
    pub facts: Vec<ScoreFact>,
}

impl ShipmentFacts {
    /// Records `what`, told by the event at `seq` and `at`, unless it is already
    /// recorded (a catch-up meets events it has seen), and returns what the event
    /// changes in the tallies: its contributions with the fact minus without it.
    pub fn change(&mut self, seq: i64, at: i64, what: What) -> (bool, BTreeMap<ScoreKey, ScoreTally>) {
        let known = self.facts.iter().any(|f| f.seq == seq);
        if !known {
            let i = self.facts.partition_point(|f| f.seq < seq);
            self.facts.insert(i, ScoreFact { seq, at, what });
        }
        let mut diff = contributions(self.facts.iter().filter(|f| f.seq <= seq));
        for (key, before) in contributions(self.facts.iter().filter(|f| f.seq < seq)) {
            let entry = diff.entry(key).or_default();
            *entry = entry.zip(&before, |a, b| a - b);
        }
        diff.retain(|_, t| !t.is_zero());
        (!known, diff)
    }
}

/// What a shipment with these facts adds to the tallies. See the module documentation.
pub fn contributions<'a>(facts: impl Iterator<Item = &'a ScoreFact> + Clone) -> BTreeMap<ScoreKey, ScoreTally> {
    let mut out: BTreeMap<ScoreKey, ScoreTally> = BTreeMap::new();
    let Some((carrier, created_at)) = facts.clone().find_map(|f| match &f.what {
        What::Created { carrier } => Some((carrier.clone(), f.at)),
        _ => None,
    }) else {
        return out;
    };
    let driver = facts
        .clone()
        .filter_map(|f| match &f.what {
            What::Driver { driver } => Some((f.at, f.seq, driver)),
            _ => None,
        })
        .max()
        .map_or_else(String::new, |(_, _, d)| d.clone());
    let mut add = |at: i64, f: &dyn Fn(&mut ScoreTally)| {
        f(out
            .entry((carrier.clone(), driver.clone(), at.div_euclid(DAY_US)))
            .or_default())
    };
    add(created_at, &|t| t.shipments += 1);

    // Each promise's latest verdict in the log stands (a break corrected to kept is kept).
    let mut verdicts: BTreeMap<&str, (i64, bool)> = BTreeMap::new();
    let earliest = |want: fn(&What) -> bool| facts.clone().filter(|f| want(&f.what)).map(|f| (f.at, f.seq)).min();
    for f in facts.clone() {
        match &f.what {
            What::Verdict { promise, kept } => {
                verdicts.insert(promise, (f.at, *kept));
            }
            What::Viewed => add(f.at, &|t| t.tracking_views += 1),
            _ => {}
        }
    }
    for (at, kept) in verdicts.into_values() {
        add(at, &|t| match kept {
            true => t.windows_kept += 1,
            false => t.windows_broken += 1,
        });
    }
    if let Some((delivered, _)) = earliest(|w| matches!(w, What::Delivered)) {
        let failed_before = facts
            .clone()
            .any(|f| matches!(f.what, What::AttemptFailed) && f.at < delivered);
        let window_end = facts
            .clone()
            .filter_map(|f| match f.what {
                What::Window { end } => Some((f.at, f.seq, end)),
                _ => None,
            })
            .max()
            .map(|(_, _, end)| end);
        let late_seconds = window_end
            .filter(|&end| delivered > end)
            .map(|end| (delivered - end) / 1_000_000);
        add(delivered, &|t| {
            t.delivered += 1;
            t.first_attempt += i64::from(!failed_before);
            if let Some(seconds) = late_seconds {
                t.late += 1;
                t.late_seconds += seconds;
            }
        });
    }
    if let Some((lost, _)) = earliest(|w| matches!(w, What::Lost)) {
        add(lost, &|t| t.lost += 1);
    }
    out
}

/// One carrier's scorecard: its totals and its drivers', worst first.
#[derive(Debug, Clone, PartialEq)]
pub struct CarrierCard {
    pub carrier: String,
    pub total: ScoreTally,
    /// Drivers who made at least one delivery run; shipments not yet out for
    /// delivery count only in the carrier's total.
    pub drivers: Vec<(String, ScoreTally)>,
}

/// Sums (carrier, driver) tallies into scorecards, worst window hit rate first
/// (carriers with no verdicts last), then by name.
pub fn rank(rows: &[(String, String, ScoreTally)]) -> Vec<CarrierCard> {
    let mut cards: BTreeMap<&str, (ScoreTally, BTreeMap<&str, ScoreTally>)> = BTreeMap::new();
    for (carrier, driver, tally) in rows {
        let (total, drivers) = cards.entry(carrier).or_default();
        total.add(tally);
        if !driver.is_empty() {
            drivers.entry(driver).or_default().add(tally);
        }
    }
    let mut cards: Vec<CarrierCard> = cards
        .into_iter()
        .map(|(carrier, (total, drivers))| {
            let mut drivers: Vec<(String, ScoreTally)> = drivers.into_iter().map(|(d, t)| (d.to_owned(), t)).collect();
            drivers.sort_by(|a, b| worst_first(&a.1, &b.1).then_with(|| a.0.cmp(&b.0)));
            CarrierCard {
                carrier: carrier.to_owned(),
                total,
                drivers,
            }
        })
        .collect();
    cards.sort_by(|a, b| worst_first(&a.total, &b.total).then_with(|| a.carrier.cmp(&b.carrier)));
    cards
}

/// How far, in points of window hit rate, a driver must trail their carrier to be
/// called out: a driver at 94 % beside a carrier at 95 % is not a story.
pub const LAGGING_POINTS: f64 = 5.0;

impl CarrierCard {
    /// The driver who trails the carrier's own window hit rate by at least
    /// [`LAGGING_POINTS`], the furthest behind; `None` when nobody does (or the
    /// carrier has one driver, who is the carrier).
    pub fn lagging_driver(&self) -> Option<&(String, ScoreTally)> {
        let carrier = self.total.window_hit_rate()?;
        if self.drivers.len() < 2 {
            return None;
        }
        self.drivers
            .iter()
            .filter_map(|d| Some((d, d.1.window_hit_rate()?)))
            .filter(|(_, rate)| (carrier - rate) * 100.0 >= LAGGING_POINTS)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(d, _)| d)
    }
}

fn worst_first(a: &ScoreTally, b: &ScoreTally) -> std::cmp::Ordering {
    let rate = |t: &ScoreTally| t.window_hit_rate().unwrap_or(f64::INFINITY);
    rate(a).total_cmp(&rate(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_790_000_000_000_000;
    const MIN: i64 = 60_000_000;

    fn fact(seq: i64, minute: i64, what: What) -> (i64, i64, What) {
        (seq, T0 + minute * MIN, what)
    }

    fn created(carrier: &str) -> What {
        What::Created {
            carrier: carrier.into(),
        }
    }

    fn driver(d: &str) -> What {
        What::Driver { driver: d.into() }
    }

    #[test]
    fn only_the_carriers_windows_are_facts() {
        let window = |estimate: Option<bool>| {
            let mut data =
                serde_json::json!({"window_start": "2026-11-23T10:00:00Z", "window_end": "2026-11-23T11:00:00Z"});
            if let Some(e) = estimate {
                data["estimate"] = e.into();
            }
            crate::validate_value(
                serde_json::json!({"id": "w", "type": "shipment.window_set", "time": "2026-11-23T08:00:00Z",
                                   "subject": "shipment:s-1", "data": data}),
                None,
            )
            .unwrap()
        };
        assert!(fact_of(&window(None)).is_some());
        assert!(fact_of(&window(Some(false))).is_some());
        assert_eq!(
            fact_of(&window(Some(true))),
            None,
            "troth's estimate is not the carrier's window"
        );
    }

    /// Applies facts in the given order, summing the changes; the sum must equal
    /// the contributions of all the facts, whatever the order.
    fn check(facts: &[(i64, i64, What)], expect: &[(&str, &str, ScoreTally)]) {
        let mut shipment = ShipmentFacts::default();
        let mut sums: BTreeMap<ScoreKey, ScoreTally> = BTreeMap::new();
        for (seq, at, what) in facts {
            let (_, diff) = shipment.change(*seq, *at, what.clone());
            for (key, t) in diff {
                sums.entry(key).or_default().add(&t);
            }
        }
        sums.retain(|_, t| !t.is_zero());
        assert_eq!(sums, contributions(shipment.facts.iter()));
        let mut got: BTreeMap<(String, String), ScoreTally> = BTreeMap::new();
        for ((c, d, _), t) in sums {
            got.entry((c, d)).or_default().add(&t);
        }
        let expect: BTreeMap<(String, String), ScoreTally> = expect
            .iter()
            .map(|(c, d, t)| ((c.to_string(), d.to_string()), *t))
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn a_late_delivery_after_a_failed_attempt() {
        check(
            &[
                fact(1, 0, created("swiftpost")),
                fact(2, 10, What::Window { end: T0 + 600 * MIN }),
                fact(3, 500, driver("d-1")),
                fact(4, 520, What::AttemptFailed),
                fact(5, 530, What::Window { end: T0 + 2000 * MIN }),
                fact(6, 1990, driver("d-2")),
                fact(7, 2030, What::Delivered),
                fact(8, 2030, What::Viewed),
                fact(
                    9,
                    2001,
                    What::Verdict {
                        promise: "delivery_window:w2".into(),
                        kept: false,
                    },
                ),
            ],
            &[(
                "swiftpost",
                "d-2",
                ScoreTally {
                    shipments: 1,
                    windows_broken: 1,
                    delivered: 1,
                    late: 1,
                    late_seconds: 30 * 60,
                    tracking_views: 1,
                    ..Default::default()
                },
            )],
        );
    }

    #[test]
    fn facts_before_the_carrier_is_known_count_once_it_is() {
        let view = fact(1, 5, What::Viewed);
        let lost = fact(2, 900, What::Lost);
        check(&[view.clone(), lost.clone()], &[]);
        check(
            &[view, lost, fact(3, 0, created("parcelpro"))],
            &[(
                "parcelpro",
                "",
                ScoreTally {
                    shipments: 1,
                    lost: 1,
                    tracking_views: 1,
                    ..Default::default()
                },
            )],
        );
    }

    #[test]
    fn a_corrected_break_is_kept_and_a_fact_seen_twice_counts_once() {
        let mut shipment = ShipmentFacts::default();
        shipment.change(1, T0, created("greenvan"));
        shipment.change(
            2,
            T0 + MIN,
            What::Verdict {
                promise: "delivery_window:w".into(),
                kept: false,
            },
        );
        let (new, diff) = shipment.change(
            3,
            T0 + 2 * MIN,
            What::Verdict {
                promise: "delivery_window:w".into(),
                kept: true,
            },
        );
        assert!(new);
        let t = diff.values().next().unwrap();
        assert_eq!((t.windows_kept, t.windows_broken), (1, -1));
        // A catch-up meets an event it already holds: the same change again, nothing stored twice.
        let (new, again) = shipment.change(
            3,
            T0 + 2 * MIN,
            What::Verdict {
                promise: "delivery_window:w".into(),
                kept: true,
            },
        );
        assert!(!new);
        assert_eq!(again, diff);
        assert_eq!(shipment.facts.len(), 3);
    }

    #[test]
    fn carriers_rank_worst_window_hit_rate_first() {
        let t = |kept, broken| ScoreTally {
            windows_kept: kept,
            windows_broken: broken,
            ..Default::default()
        };
        let rows = vec![
            ("a".to_string(), "a1".to_string(), t(9, 1)),
            ("b".to_string(), "b1".to_string(), t(5, 5)),
            ("b".to_string(), "".to_string(), t(1, 0)),
            ("c".to_string(), "".to_string(), t(0, 0)),
        ];
        let cards = rank(&rows);
        let order: Vec<&str> = cards.iter().map(|c| c.carrier.as_str()).collect();
        assert_eq!(order, ["b", "a", "c"]);
        assert_eq!(cards[0].total.windows_kept, 6);
        assert_eq!(cards[0].drivers.len(), 1);
    }

    #[test]
    fn a_driver_is_called_out_only_well_behind_their_carrier() {
        let windows = |kept, broken| ScoreTally {
            windows_kept: kept,
            windows_broken: broken,
            ..ScoreTally::default()
        };
        let card = |drivers: Vec<(&str, ScoreTally)>| {
            let rows: Vec<(String, String, ScoreTally)> = drivers
                .into_iter()
                .map(|(d, t)| ("c".to_owned(), d.to_owned(), t))
                .collect();
            rank(&rows).remove(0)
        };
        let close = card(vec![("a", windows(94, 6)), ("b", windows(96, 4))]);
        assert_eq!(close.lagging_driver(), None, "one point behind is noise");
        let behind = card(vec![
            ("a", windows(60, 40)),
            ("b", windows(95, 5)),
            ("c", windows(95, 5)),
        ]);
        assert_eq!(behind.lagging_driver().map(|d| d.0.as_str()), Some("a"));
        assert_eq!(
            card(vec![("a", windows(10, 90))]).lagging_driver(),
            None,
            "alone, the driver is the carrier"
        );
    }
}
