//! The arrival estimator's accuracy on a simulated world, against a naive baseline.
//!
//! Every driver's events are fed to a [`Route`] in the order and at the time they
//! reach troth (a `slow_tracking` carrier's events `strength` minutes after their
//! `time`, as the simulator sends them). For every delivered shipment, the
//! prediction made 60, 30 and 10 minutes before its `shipment.delivered` time is
//! compared with that time, as is the baseline's: departure + (`stops_before` + 1)
//! × 12 minutes (a stop's own leg counts too; it is the stronger of the two naive forms). A horizon counts a shipment only once its `shipment.out_for_delivery`
//! had reached troth by then (before that neither can say anything).

use std::collections::HashMap;

use serde::Serialize;
use troth_core::eta::{EtaParams, Route, RouteEvent};
use troth_core::{Timestamp, validate_event};
use troth_sim::World;

/// Minutes before the real arrival at which predictions are scored.
pub const HORIZONS_MIN: [i64; 3] = [60, 30, 10];
/// The baseline's minutes per stop.
pub const BASELINE_STOP_MIN: i64 = 12;
const MINUTE_US: i64 = 60_000_000;
/// An assignment older than this at delivery was another day's attempt.
const SAME_ROUTE_US: i64 = 16 * 60 * MINUTE_US;

/// Errors at one horizon, in minutes.
#[derive(Debug, Clone, Serialize)]
pub struct HorizonFigures {
    pub horizon_min: i64,
    /// Shipments scored at this horizon.
    pub measured: usize,
    /// Of those, how many the estimator had no prediction for (scored as the baseline's error).
    pub unanswered: usize,
    pub mae_min: f64,
    pub p90_min: f64,
    pub baseline_mae_min: f64,
    pub baseline_p90_min: f64,
    /// Estimator error / baseline error: below 1 is better than the baseline.
    pub mae_ratio: f64,
    pub p90_ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Accuracy {
    /// Shipments delivered in the world.
    pub delivered: usize,
    pub horizons: Vec<HorizonFigures>,
}

struct Fed {
    received: i64,
    time: Timestamp,
    /// The driver, when the event names one; otherwise found through the shipment.
    driver: Option<String>,
    kind: Kind,
}

enum Kind {
    Assigned {
        shipment: String,
        stops_before: Option<u32>,
    },
    Position {
        lat: f64,
        lon: f64,
        speed_kmh: Option<f64>,
    },
    Arriving {
        shipment: String,
    },
    Completed {
        shipment: String,
        delivered: bool,
    },
}

struct Query {
    at: i64,
    horizon: usize,
    shipment: String,
    truth: i64,
}

#[derive(Default)]
struct Scores {
    measured: usize,
    unanswered: usize,
    estimator: Vec<f64>,
    baseline: Vec<f64>,
}

/// Simulates `world` in memory and scores the estimator with `params` against the baseline.
pub fn measure(world: &World, params: EtaParams) -> anyhow::Result<Accuracy> {
    let delays = slow_tracking_delays(world);
    let mut fed: Vec<Fed> = Vec::new();
    troth_sim::simulate(world, &mut |line| {
        if let Some(f) = read(line, &delays) {
            fed.push(f);
        }
        Ok(())
    })?;
    // The stream is already in arrival order; a stable sort keeps it so and guards the rest.
    fed.sort_by_key(|f| f.received);

    let mut queries: Vec<Query> = Vec::new();
    for f in &fed {
        if let Kind::Completed {
            shipment,
            delivered: true,
        } = &f.kind
        {
            for (horizon, minutes) in HORIZONS_MIN.iter().enumerate() {
                queries.push(Query {
                    at: f.time.micros() - minutes * MINUTE_US,
                    horizon,
                    shipment: shipment.clone(),
                    truth: f.time.micros(),
                });
            }
        }
    }
    let delivered = queries.len() / HORIZONS_MIN.len();
    queries.sort_by_key(|q| q.at);

    let mut routes: HashMap<String, Route> = HashMap::new();
    // Each shipment's latest assignment as received: driver, departure, stops before.
    let mut assigned: HashMap<String, (String, i64, Option<u32>)> = HashMap::new();
    let mut scores: Vec<Scores> = HORIZONS_MIN.iter().map(|_| Scores::default()).collect();
    let mut next = 0;
    for q in &queries {
        while let Some(f) = fed.get(next).filter(|f| f.received <= q.at) {
            apply(f, &mut routes, &mut assigned, params);
            next += 1;
        }
        let Some((driver, departed, stops_before)) = assigned.get(&q.shipment) else {
            continue;
        };
        if q.truth - departed > SAME_ROUTE_US {
            continue;
        }
        let now = Timestamp(q.at);
        let baseline = departed + (i64::from(stops_before.unwrap_or(0)) + 1) * BASELINE_STOP_MIN * MINUTE_US;
        let predicted = routes.get(driver).and_then(|r| r.predict(&q.shipment, now));
        let s = &mut scores[q.horizon];
        s.measured += 1;
        if predicted.is_none() {
            s.unanswered += 1;
        }
        let minutes = |t: i64| (t - q.truth).abs() as f64 / 60e6;
        s.baseline.push(minutes(baseline));
        s.estimator.push(minutes(predicted.map_or(baseline, |p| p.micros())));
    }
    let horizons = scores
        .into_iter()
        .zip(HORIZONS_MIN)
        .map(|(mut s, horizon_min)| {
            let (mae_min, p90_min) = (mean(&s.estimator), p90(&mut s.estimator));
            let (baseline_mae_min, baseline_p90_min) = (mean(&s.baseline), p90(&mut s.baseline));
            HorizonFigures {
                horizon_min,
                measured: s.measured,
                unanswered: s.unanswered,
                mae_min,
                p90_min,
                baseline_mae_min,
                baseline_p90_min,
                mae_ratio: mae_min / baseline_mae_min,
                p90_ratio: p90_min / baseline_p90_min,
            }
        })
        .collect();
    Ok(Accuracy { delivered, horizons })
}

/// Microseconds between an event happening and it reaching troth, by carrier (`source`).
fn slow_tracking_delays(world: &World) -> HashMap<String, i64> {
    world
        .faults
        .iter()
        .filter(|f| f.kind == "slow_tracking")
        .map(|f| {
            let carrier = f.target.strip_prefix("carrier:").unwrap_or(&f.target);
            (carrier.to_owned(), (f.strength * 60e6) as i64)
        })
        .collect()
}

/// The route event a simulated line is, with when it reaches troth.
fn read(line: &str, delays: &HashMap<String, i64>) -> Option<Fed> {
    const TYPES: [&str; 5] = [
        "\"type\":\"shipment.out_for_delivery\"",
        "\"type\":\"courier.position\"",
        "\"type\":\"shipment.arriving\"",
        "\"type\":\"shipment.delivered\"",
        "\"type\":\"shipment.attempt_failed\"",
    ];
    // Most of the world is not about routes: skip it before parsing.
    if !TYPES.iter().any(|t| line.contains(t)) {
        return None;
    }
    let event = validate_event(line).ok()?;
    #[derive(serde::Deserialize)]
    struct Source {
        source: Option<String>,
    }
    let source = serde_json::from_str::<Source>(line).ok()?.source.unwrap_or_default();
    let delay = delays.get(&source).copied().unwrap_or(0);
    let delivered = event.event_type == "shipment.delivered";
    let (route_event, driver) = RouteEvent::from_event(&event)?;
    let kind = match route_event {
        RouteEvent::OutForDelivery { shipment, stops_before } => Kind::Assigned {
            shipment: shipment.to_owned(),
            stops_before,
        },
        RouteEvent::Position { lat, lon, speed_kmh } => Kind::Position { lat, lon, speed_kmh },
        RouteEvent::Arriving { shipment } => Kind::Arriving {
            shipment: shipment.to_owned(),
        },
        RouteEvent::Completed { shipment } => Kind::Completed {
            shipment: shipment.to_owned(),
            delivered,
        },
        // Not among the types read: the simulator's reschedules come before the
        // route is planned, or after the stop's failed attempt completed it.
        RouteEvent::Left { .. } => return None,
    };
    Some(Fed {
        received: event.time.micros() + delay,
        time: event.time,
        driver: driver.map(str::to_owned),
        kind,
    })
}

fn apply(
    f: &Fed,
    routes: &mut HashMap<String, Route>,
    assigned: &mut HashMap<String, (String, i64, Option<u32>)>,
    params: EtaParams,
) {
    let shipment_driver = |shipment: &str| assigned.get(shipment).map(|a| a.0.clone());
    let (driver, event) = match &f.kind {
        Kind::Assigned { shipment, stops_before } => {
            let driver = f.driver.clone().unwrap_or_default();
            assigned.insert(shipment.clone(), (driver.clone(), f.time.micros(), *stops_before));
            let event = RouteEvent::OutForDelivery {
                shipment,
                stops_before: *stops_before,
            };
            (Some(driver), event)
        }
        Kind::Position { lat, lon, speed_kmh } => (
            f.driver.clone(),
            RouteEvent::Position {
                lat: *lat,
                lon: *lon,
                speed_kmh: *speed_kmh,
            },
        ),
        Kind::Arriving { shipment } => (shipment_driver(shipment), RouteEvent::Arriving { shipment }),
        Kind::Completed { shipment, .. } => (shipment_driver(shipment), RouteEvent::Completed { shipment }),
    };
    if let Some(driver) = driver {
        routes
            .entry(driver)
            .or_insert_with(|| Route::new(params))
            .observe(f.time, event);
    }
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The 90th percentile (nearest rank).
fn p90(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_unstable_by(f64::total_cmp);
    let rank = ((xs.len() as f64 * 0.9).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimator_beats_the_naive_baseline_close_to_arrival() {
        let mut world = World::from_toml(include_str!("../../../worlds/small.toml")).unwrap();
        world.days = 4;
        let accuracy = measure(&world, EtaParams::default()).unwrap();
        assert!(accuracy.delivered > 50, "{accuracy:?}");
        for h in &accuracy.horizons {
            assert!(h.measured > 20, "{h:?}");
            assert_eq!(h.unanswered, 0, "every assigned stop gets a prediction: {h:?}");
        }
        for h in accuracy.horizons.iter().filter(|h| h.horizon_min <= 30) {
            assert!(h.mae_ratio < 1.0 && h.p90_ratio < 1.0, "{h:?}");
        }
    }
}
