//! The journey map against the data: which touchpoints customers really pass
//! through and in what order, where they stop between two touchpoints the map
//! links, which event types arrive without belonging to any touchpoint, and which
//! touchpoints of the map never see a customer. A map is a hypothesis about the
//! journey; this is how it is checked.
//!
//! The input is each customer's first exposure per touchpoint and day (a *visit*,
//! with the log position that gives its order), as the health projection keeps it.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::catalogue::is_catalogue_type;
use crate::journey::JourneyMap;

/// A customer's first exposure to a touchpoint on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    pub customer: i64,
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub touchpoint: String,
    /// The log position of that exposure: what orders visits.
    pub position: i64,
}

/// How many paths are listed per stage, and how many transitions off the map.
pub const PATHS_PER_STAGE: usize = 5;
pub const OFF_MAP_TRANSITIONS: usize = 10;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MapAgainstData {
    /// Customers with at least one visit in the period.
    pub customers: u64,
    pub stages: Vec<StagePaths>,
    /// For every link of the map (`next`), how many customers went on.
    pub links: Vec<LinkFlow>,
    /// The most frequent moves, within a day, between touchpoints the map does not link.
    pub off_map: Vec<Transition>,
    /// Touchpoints of the map no event reached in the period.
    pub silent: Vec<String>,
    /// Event types stored that count at no touchpoint, most frequent first.
    pub unmapped: Vec<UnmappedType>,
}

/// The orders in which customers met a stage's touchpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StagePaths {
    pub stage: String,
    /// Customers who met at least one touchpoint of the stage.
    pub customers: u64,
    /// The most frequent paths, most customers first.
    pub paths: Vec<PathCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PathCount {
    /// Touchpoint keys in the order first met.
    pub touchpoints: Vec<String>,
    pub customers: u64,
    /// Of the stage's customers.
    pub share: f64,
}

/// A link of the map and the customers who took it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkFlow {
    pub from: String,
    pub to: String,
    /// Customers who met `from`.
    pub reached: u64,
    /// Of those, customers who met `to` afterwards.
    pub went_on: u64,
    /// `1 − went_on / reached`; absent when nobody reached `from`.
    pub drop_off: Option<f64>,
}

/// A move from one touchpoint straight to another, the same day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transition {
    pub from: String,
    pub to: String,
    pub customers: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnmappedType {
    pub event_type: String,
    pub events: u64,
    /// An event type of troth's catalogue (else an `x.` extension).
    pub catalogue: bool,
}

/// Event types troth writes itself: they follow from touchpoints, never stand for
/// one. Its derived events (promise changes, merges), and the records of what agents
/// did from its pages (notes, goodwill gestures: [`crate::case::AGENT_RECORDS`]),
/// which the customer lives through the case they belong to, not as a moment of
/// their own. A map may still list them as exposure; unlisted, they are not a moment
/// the map misses.
fn recorded_by_troth(event_type: &str) -> bool {
    event_type.starts_with("promise.")
        || event_type == "customer.merged"
        || crate::case::AGENT_RECORDS.contains(&event_type)
}

/// Compares `map` with what happened: `visits` in any order; `exposures`, the
/// touchpoints' exposure counts over the period (from the health tallies, which
/// also count events without a known customer); `type_counts`, events stored per type.
pub fn map_against_data(
    map: &JourneyMap,
    visits: &[Visit],
    exposures: &HashMap<String, u64>,
    type_counts: &[(String, u64)],
) -> MapAgainstData {
    let stage_of: HashMap<&str, &str> = map
        .touchpoints
        .iter()
        .map(|t| (t.key.as_str(), t.stage.as_str()))
        .collect();
    let mut by_customer: BTreeMap<i64, Vec<(i64, i64, &str)>> = BTreeMap::new();
    for v in visits.iter().filter(|v| stage_of.contains_key(v.touchpoint.as_str())) {
        by_customer
            .entry(v.customer)
            .or_default()
            .push((v.position, v.day, v.touchpoint.as_str()));
    }

    let mut paths: HashMap<&str, HashMap<Vec<&str>, u64>> = HashMap::new();
    let mut stage_customers: HashMap<&str, u64> = HashMap::new();
    let mut reached: HashMap<(&str, &str), (u64, u64)> = HashMap::new();
    let mut transitions: HashMap<(&str, &str), u64> = HashMap::new();
    let linked: HashSet<(&str, &str)> = map
        .touchpoints
        .iter()
        .flat_map(|t| t.next.iter().map(move |n| (t.key.as_str(), n.as_str())))
        .collect();
    for seen in by_customer.values_mut() {
        seen.sort_unstable();
        // First and last meeting of each touchpoint, and the order first met.
        let mut first: HashMap<&str, i64> = HashMap::new();
        let mut last: HashMap<&str, i64> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        for (position, _, touchpoint) in seen.iter() {
            if !first.contains_key(touchpoint) {
                first.insert(touchpoint, *position);
                order.push(touchpoint);
            }
            last.insert(touchpoint, *position);
        }
        for stage in &map.stages {
            let path: Vec<&str> = order
                .iter()
                .copied()
                .filter(|t| stage_of.get(t) == Some(&stage.key.as_str()))
                .collect();
            if !path.is_empty() {
                *stage_customers.entry(stage.key.as_str()).or_default() += 1;
                *paths.entry(stage.key.as_str()).or_default().entry(path).or_default() += 1;
            }
        }
        for &(from, to) in &linked {
            if let Some(at) = first.get(from) {
                let flow = reached.entry((from, to)).or_default();
                flow.0 += 1;
                if last.get(to).is_some_and(|later| later > at) {
                    flow.1 += 1;
                }
            }
        }
        // Moves from one touchpoint straight to another on the same day (a visit on a
        // later day starts a new round), each counted once per customer.
        let mut moved: HashSet<(&str, &str)> = HashSet::new();
        for pair in seen.windows(2) {
            let ((_, day, from), (_, next_day, to)) = (pair[0], pair[1]);
            if day == next_day && from != to && !linked.contains(&(from, to)) {
                moved.insert((from, to));
            }
        }
        for pair in moved {
            *transitions.entry(pair).or_default() += 1;
        }
    }

    let stages = map
        .stages
        .iter()
        .map(|stage| {
            let customers = stage_customers.get(stage.key.as_str()).copied().unwrap_or(0);
            let mut counted: Vec<(Vec<&str>, u64)> = paths
                .remove(stage.key.as_str())
                .map(|p| p.into_iter().collect())
                .unwrap_or_default();
            counted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            StagePaths {
                stage: stage.key.clone(),
                customers,
                paths: counted
                    .into_iter()
                    .take(PATHS_PER_STAGE)
                    .map(|(path, n)| PathCount {
                        touchpoints: path.into_iter().map(str::to_owned).collect(),
                        customers: n,
                        share: n as f64 / customers.max(1) as f64,
                    })
                    .collect(),
            }
        })
        .collect();

    // Links in the map's order.
    let links = map
        .touchpoints
        .iter()
        .flat_map(|t| t.next.iter().map(move |n| (t.key.as_str(), n.as_str())))
        .map(|(from, to)| {
            let (reached, went_on) = reached.get(&(from, to)).copied().unwrap_or((0, 0));
            LinkFlow {
                from: from.to_owned(),
                to: to.to_owned(),
                reached,
                went_on,
                drop_off: (reached > 0).then(|| 1.0 - went_on as f64 / reached as f64),
            }
        })
        .collect();

    let mut off_map: Vec<Transition> = transitions
        .into_iter()
        .map(|((from, to), customers)| Transition {
            from: from.to_owned(),
            to: to.to_owned(),
            customers,
        })
        .collect();
    off_map.sort_by(|a, b| {
        b.customers
            .cmp(&a.customers)
            .then_with(|| (&a.from, &a.to).cmp(&(&b.from, &b.to)))
    });
    off_map.truncate(OFF_MAP_TRANSITIONS);

    let silent = map
        .touchpoints
        .iter()
        .filter(|t| exposures.get(&t.key).copied().unwrap_or(0) == 0)
        .map(|t| t.key.clone())
        .collect();

    let exposed_by: HashSet<&str> = map
        .touchpoints
        .iter()
        .flat_map(|t| t.exposure.iter().map(String::as_str))
        .collect();
    let surveyed = map.touchpoints.iter().any(|t| !t.surveys.is_empty());
    let mut unmapped: Vec<UnmappedType> = type_counts
        .iter()
        .filter(|(t, n)| {
            let counted = exposed_by.contains(t.as_str()) || (surveyed && t == "survey.answered");
            *n > 0 && !counted && !recorded_by_troth(t)
        })
        .map(|(t, n)| UnmappedType {
            event_type: t.clone(),
            events: *n,
            catalogue: is_catalogue_type(t),
        })
        .collect();
    unmapped.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.event_type.cmp(&b.event_type)));

    MapAgainstData {
        customers: by_customer.len() as u64,
        stages,
        links,
        off_map,
        silent,
        unmapped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journey::parse_journey;

    const MAP: &str = r#"
key = "shop"
name = "Shop"
version = 1

[[stages]]
key = "buy"
name = "Buy"

[[stages]]
key = "get"
name = "Get"

[[functions]]
key = "ops"
name = "Ops"

[[touchpoints]]
key = "checkout"
name = "Checkout"
stage = "buy"
owners = ["ops"]
exposure = ["checkout.started"]
next = ["pay"]

[[touchpoints]]
key = "pay"
name = "Pay"
stage = "buy"
owners = ["ops"]
exposure = ["payment.succeeded"]
next = ["deliver"]

[[touchpoints]]
key = "deliver"
name = "Deliver"
stage = "get"
owners = ["ops"]
exposure = ["shipment.delivered"]

[[touchpoints]]
key = "returns"
name = "Returns"
stage = "get"
owners = ["ops"]
exposure = ["return.requested"]
"#;

    fn visit(customer: i64, touchpoint: &str, position: i64) -> Visit {
        Visit {
            customer,
            // Positions 1–20 on one day, later ones on the next.
            day: 20_000 + position / 20,
            touchpoint: touchpoint.into(),
            position,
        }
    }

    #[test]
    fn paths_drop_off_silent_touchpoints_and_unmapped_types() {
        let map = parse_journey(MAP).expect("a valid map");
        let visits = vec![
            // Two customers check out, pay and get their parcel.
            visit(1, "checkout", 1),
            visit(1, "pay", 2),
            visit(1, "deliver", 9),
            visit(2, "checkout", 3),
            visit(2, "pay", 4),
            visit(2, "deliver", 10),
            // One stops after checkout.
            visit(3, "checkout", 5),
            // One pays first (an old checkout outside the period), then checks out again:
            // pay came before checkout, so checkout → pay was not taken after checkout.
            visit(4, "pay", 6),
            visit(4, "checkout", 7),
            // One goes from checkout straight to delivery (a move the map does not link).
            visit(5, "checkout", 8),
            visit(5, "deliver", 11),
            // Touchpoints not on the map are ignored.
            visit(6, "elsewhere", 12),
            // Back to checkout on a later day: a new round, not a move off the map.
            visit(1, "checkout", 25),
        ];
        let exposures = HashMap::from([
            ("checkout".to_owned(), 5),
            ("pay".to_owned(), 3),
            ("deliver".to_owned(), 3),
        ]);
        let types = vec![
            ("checkout.started".to_owned(), 5),
            ("courier.position".to_owned(), 900),
            ("promise.made".to_owned(), 40),
            ("note.added".to_owned(), 12),
            ("goodwill.given".to_owned(), 3),
            ("x.loyalty.scanned".to_owned(), 7),
            ("survey.answered".to_owned(), 2),
        ];
        let report = map_against_data(&map, &visits, &exposures, &types);

        assert_eq!(report.customers, 5);
        let buy = &report.stages[0];
        assert_eq!((buy.stage.as_str(), buy.customers), ("buy", 5));
        // Most customers first; equal counts in the order of their touchpoints' keys.
        assert_eq!(buy.paths[0].touchpoints, ["checkout"]);
        assert_eq!(buy.paths[0].customers, 2);
        assert_eq!(buy.paths[1].touchpoints, ["checkout", "pay"]);
        assert_eq!(buy.paths[1].customers, 2);
        assert!((buy.paths[1].share - 0.4).abs() < 1e-9);
        assert_eq!(buy.paths[2].touchpoints, ["pay", "checkout"]);

        let link = |from: &str, to: &str| report.links.iter().find(|l| l.from == from && l.to == to).unwrap();
        let checkout_pay = link("checkout", "pay");
        assert_eq!((checkout_pay.reached, checkout_pay.went_on), (5, 2));
        assert!((checkout_pay.drop_off.unwrap() - 0.6).abs() < 1e-9);
        let pay_deliver = link("pay", "deliver");
        assert_eq!((pay_deliver.reached, pay_deliver.went_on), (3, 2));

        assert_eq!(
            report.off_map,
            vec![
                Transition {
                    from: "checkout".into(),
                    to: "deliver".into(),
                    customers: 1
                },
                Transition {
                    from: "pay".into(),
                    to: "checkout".into(),
                    customers: 1
                },
            ]
        );
        assert_eq!(report.silent, ["returns"]);
        // Positions are not customer moments, and are listed; troth's own records
        // (promises, agents' notes and goodwill gestures) are not listed; with no
        // survey on the map, survey answers belong nowhere either.
        let unmapped: Vec<(&str, u64, bool)> = report
            .unmapped
            .iter()
            .map(|u| (u.event_type.as_str(), u.events, u.catalogue))
            .collect();
        assert_eq!(
            unmapped,
            [
                ("courier.position", 900, true),
                ("x.loyalty.scanned", 7, false),
                ("survey.answered", 2, true)
            ]
        );
    }

    #[test]
    fn an_empty_period_reads_as_silence_not_as_drop_off() {
        let map = parse_journey(MAP).expect("a valid map");
        let report = map_against_data(&map, &[], &HashMap::new(), &[]);
        assert_eq!(report.customers, 0);
        assert!(report.stages.iter().all(|s| s.customers == 0 && s.paths.is_empty()));
        assert!(report.links.iter().all(|l| l.reached == 0 && l.drop_off.is_none()));
        assert_eq!(report.silent.len(), 4);
        assert!(report.unmapped.is_empty() && report.off_map.is_empty());
    }
}
