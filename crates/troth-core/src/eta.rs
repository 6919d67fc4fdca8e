//! Arrival prediction for the stops of one driver's route, and when to re-issue a
//! customer's delivery window. Pure: events go in with their times, `now` is a
//! parameter, nothing here reads a clock.
//!
//! # Method
//!
//! A [`Route`] is fed one driver's day as its events arrive: the route's
//! assignments (`shipment.out_for_delivery` with `stops_before`: the stop's place in
//! the plan), the driver's trusted positions, `shipment.arriving` and each stop's
//! outcome (`shipment.delivered` or `shipment.attempt_failed`: both complete a stop).
//! [`Route::predict`] answers for a pending stop with the time its outcome is
//! expected, from:
//!
//! - **Progress through the plan, not a count of stops done.** The anchor is the
//!   completed stop furthest along the plan (the departure before any), its time
//!   averaged with the last few in-order completions projected to it; a stop `k`
//!   plan places further is `k` paces away. A stop passed over (a later one of the
//!   plan was reached first) is *deferred*: drivers visit those at the end, so it is
//!   predicted after the last stop of the plan, and it does not hold back the stops
//!   behind it. Its completion, out of plan order, moves no anchor.
//! - **The driver's pace**: minutes per plan place between completions in plan order
//!   (a jump over a deferred stop is two places), over the last `recent_stops`,
//!   trimmed of the extremes, blended with a prior (`prior_stop_us`, worth
//!   `prior_weight` observations), so one slow stop does not swing the whole route
//!   and the first predictions of the day are the prior's.
//! - **The current leg and the time already spent.** After `shipment.arriving` for
//!   the next stop, it completes a leg's duration after that (the median of this
//!   route's observed arriving-to-outcome times, a prior before any); when the leg
//!   has lasted longer and the positions have stopped, the driver is at the door and
//!   completes shortly. Before the leg starts, the next stop is at least a leg away,
//!   so a driver who stands still pushes every later stop back as time passes.
//!   Delays propagate: every stop is at least its plan distance after the next one.
//!
//! Predictions are never earlier than `now` plus `min_remaining_us`. Accuracy on
//! simulated routes is measured by `troth bench eta` (docs/eta.md).

use crate::timestamp::Timestamp;

const MINUTE_US: i64 = 60 * 1_000_000;

/// What the estimator assumes before it has seen a route, and how it weighs evidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EtaParams {
    /// Time per stop (drive and hand-over) assumed before any stop is done.
    pub prior_stop_us: i64,
    /// How many observed stop intervals the prior is worth.
    pub prior_weight: f64,
    /// How many of the most recent stop intervals make the observed pace.
    pub recent_stops: usize,
    /// How many of the latest in-order completions fix where the driver stands against
    /// the plan (each projected to the furthest by the pace, then averaged): one stop's
    /// early or late hand-over is noise, not a new timetable.
    pub anchor_stops: usize,
    /// A leg's duration (`shipment.arriving` to the outcome) assumed before any is seen.
    pub prior_leg_us: i64,
    /// A driver whose last trusted position is older than this is not moving.
    pub moving_within_us: i64,
    /// Slower than this (km/h) is standing still.
    pub moving_kmh: f64,
    /// The least time left before an arrival that has not been reported.
    pub min_remaining_us: i64,
    /// Events this long after the departure belong to another day's route.
    pub max_route_us: i64,
}

impl Default for EtaParams {
    fn default() -> Self {
        EtaParams {
            prior_stop_us: 10 * MINUTE_US,
            prior_weight: 3.0,
            recent_stops: 8,
            anchor_stops: 3,
            prior_leg_us: 4 * MINUTE_US,
            moving_within_us: 60 * 1_000_000,
            moving_kmh: 3.0,
            min_remaining_us: MINUTE_US,
            max_route_us: 16 * 60 * MINUTE_US,
        }
    }
}

/// One event of a driver's route, as the estimator needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RouteEvent<'a> {
    /// `shipment.out_for_delivery`; without `stops_before`, the stop goes after those known.
    OutForDelivery {
        shipment: &'a str,
        stops_before: Option<u32>,
    },
    /// A trusted `courier.position` (one without a `flag`).
    Position { lat: f64, lon: f64, speed_kmh: Option<f64> },
    /// `shipment.arriving`: the driver is on the leg to this stop.
    Arriving { shipment: &'a str },
    /// `shipment.delivered` or `shipment.attempt_failed`: the stop is done.
    Completed { shipment: &'a str },
    /// `shipment.rescheduled` (by anyone): the stop leaves today's route unvisited, so
    /// the stops after it move up a place. A new assignment brings it back.
    Left { shipment: &'a str },
}

impl<'a> RouteEvent<'a> {
    /// Reads a validated event: the route event it is, with the driver it concerns when
    /// the event says (`out_for_delivery`'s `driver`, a position's subject). `None` for
    /// other types and for flagged positions, which are not the driver's position.
    pub fn from_event(event: &'a crate::ValidEvent) -> Option<(RouteEvent<'a>, Option<&'a str>)> {
        use crate::catalogue::EventData;
        let subject = |kind: &str| {
            event
                .subject
                .as_deref()
                .and_then(|s| s.split_once(':'))
                .filter(|(k, _)| *k == kind)
                .map(|(_, id)| id)
        };
        match &event.data {
            EventData::OutForDelivery(d) => Some((
                RouteEvent::OutForDelivery {
                    shipment: subject("shipment")?,
                    stops_before: d.stops_before,
                },
                Some(d.driver.as_str()),
            )),
            EventData::CourierPosition(p) if p.flag.is_none() => Some((
                RouteEvent::Position {
                    lat: p.lat.0,
                    lon: p.lon.0,
                    speed_kmh: p.speed_kmh.map(|s| s.0),
                },
                Some(subject("driver")?),
            )),
            EventData::ShipmentArriving(_) => Some((
                RouteEvent::Arriving {
                    shipment: subject("shipment")?,
                },
                None,
            )),
            EventData::ShipmentDelivered(_) | EventData::AttemptFailed(_) => Some((
                RouteEvent::Completed {
                    shipment: subject("shipment")?,
                },
                None,
            )),
            EventData::Rescheduled(_) => Some((
                RouteEvent::Left {
                    shipment: subject("shipment")?,
                },
                None,
            )),
            _ => None,
        }
    }
}

/// One driver's route for the day: what has been observed of it.
#[derive(Debug, Clone)]
pub struct Route {
    params: EtaParams,
    departed: Option<Timestamp>,
    stops: Vec<Stop>,
    /// Completions in the order they happened: (time, plan place, deferred).
    completions: Vec<(Timestamp, u32, bool)>,
    /// Observed leg durations (arriving to outcome), µs.
    legs: Vec<i64>,
    /// The last trusted position's time and speed (km/h, when known or derivable).
    last_fix: Option<(Timestamp, f64, f64, Option<f64>)>,
    moving: bool,
}

#[derive(Debug, Clone)]
struct Stop {
    shipment: String,
    place: u32,
    arriving: Option<Timestamp>,
    done: Option<Timestamp>,
    /// Rescheduled off the route before the driver got there.
    left: bool,
}

impl Stop {
    /// Still to be visited on this route.
    fn pending(&self) -> bool {
        self.done.is_none() && !self.left
    }
}

impl Route {
    pub fn new(params: EtaParams) -> Route {
        Route {
            params,
            departed: None,
            stops: Vec::new(),
            completions: Vec::new(),
            legs: Vec::new(),
            last_fix: None,
            moving: false,
        }
    }

    /// Records one event of the driver's route, at its `time`. An assignment after the
    /// route has begun completing stops (or a day later) starts the driver's next route.
    pub fn observe(&mut self, at: Timestamp, event: RouteEvent<'_>) {
        match event {
            RouteEvent::OutForDelivery { shipment, stops_before } => {
                let next_day = self
                    .departed
                    .is_some_and(|d| at.micros() - d.micros() > self.params.max_route_us);
                if next_day || !self.completions.is_empty() {
                    *self = Route::new(self.params);
                }
                self.departed = Some(self.departed.map_or(at, |d| d.min(at)));
                let place = stops_before.unwrap_or_else(|| self.stops.iter().map(|s| s.place + 1).max().unwrap_or(0));
                match self.stops.iter_mut().find(|s| s.shipment == shipment) {
                    Some(stop) => {
                        stop.place = place;
                        stop.left = false;
                    }
                    None => self.stops.push(Stop {
                        shipment: shipment.to_owned(),
                        place,
                        arriving: None,
                        done: None,
                        left: false,
                    }),
                }
            }
            // A fix older than the last one (appends of one driver's reports may be
            // stored out of order) says nothing about where the driver is now.
            RouteEvent::Position { .. } if self.last_fix.is_some_and(|(t0, ..)| at < t0) => {}
            RouteEvent::Position { lat, lon, speed_kmh } => {
                let speed = speed_kmh.or_else(|| {
                    let (t0, lat0, lon0, _) = self.last_fix?;
                    let hours = (at.micros() - t0.micros()) as f64 / 3_600e6;
                    (hours > 0.0).then(|| approx_distance_m(lat0, lon0, lat, lon) / 1_000.0 / hours)
                });
                self.moving = speed.is_some_and(|s| s >= self.params.moving_kmh);
                self.last_fix = Some((at, lat, lon, speed));
            }
            RouteEvent::Arriving { shipment } => {
                if let Some(stop) = self.stop_mut(shipment) {
                    stop.arriving.get_or_insert(at);
                }
            }
            RouteEvent::Completed { shipment } => {
                let Some(i) = self
                    .stops
                    .iter()
                    .position(|s| s.shipment == shipment && s.done.is_none())
                else {
                    return;
                };
                let place = self.stops[i].place;
                // Completed out of plan order: it had been passed over.
                let deferred = self.completions.iter().any(|&(_, p, _)| p > place);
                let stop = &mut self.stops[i];
                stop.done = Some(at);
                // Delivered after all (the driver kept it): it was on the route.
                stop.left = false;
                if let Some(a) = stop.arriving {
                    self.legs.push(at.micros() - a.micros());
                }
                self.completions.push((at, place, deferred));
            }
            RouteEvent::Left { shipment } => {
                if let Some(stop) = self.stops.iter_mut().find(|s| s.shipment == shipment && s.pending()) {
                    stop.left = true;
                }
            }
        }
    }

    /// The expected time of the stop's outcome (delivered or failed), as seen at
    /// `now`; `None` when the shipment is not a pending stop of this route.
    pub fn predict(&self, shipment: &str, now: Timestamp) -> Option<Timestamp> {
        let target = self.stops.iter().find(|s| s.shipment == shipment && s.pending())?;
        let departed = self.departed?;
        let pace = self.pace();
        let floor = now.micros() + self.params.min_remaining_us;
        if let Some(arriving) = target.arriving {
            return Some(Timestamp(self.leg_end(arriving, now).max(floor)));
        }
        let (anchor_t, anchor_rank) = self.anchor(departed, pace);
        let is_deferred = |s: &Stop| self.is_deferred(s);
        let in_plan = |s: &Stop| s.pending() && !is_deferred(s);
        // Distances along the plan count the stops still on it (`rank`), so a stop
        // that left the route brings every stop after it a place closer.
        let plan_time = |place: u32| anchor_t + pace * (self.rank(place) - anchor_rank).max(1);

        // The next stop in the plan, and when it can be done given what the driver is doing now.
        let next = self.stops.iter().filter(|s| in_plan(s)).min_by_key(|s| s.place);
        let next_done = next.map(|n| match n.arriving {
            Some(a) => self.leg_end(a, now),
            None => plan_time(n.place).max(now.micros() + self.leg_us() / if self.moving { 2 } else { 1 }),
        });
        let last_in_plan = |from: (i64, u32)| {
            let last = self.stops.iter().filter(|s| in_plan(s)).map(|s| s.place).max();
            last.map_or(from.0, |p| {
                plan_time(p).max(from.0 + pace * (self.rank(p) - self.rank(from.1)))
            })
        };
        let predicted = if is_deferred(target) {
            // After the rest of the plan, then the passed-over stops in plan order.
            let end = match (next, next_done) {
                (Some(n), Some(t)) => last_in_plan((t, n.place)),
                _ => anchor_t.max(now.micros()),
            };
            let ahead = self
                .stops
                .iter()
                .filter(|s| is_deferred(s) && s.place < target.place)
                .count();
            let in_progress = self
                .stops
                .iter()
                .find(|s| s.pending() && s.arriving.is_some() && is_deferred(s));
            let start = in_progress.map_or(end, |s| self.leg_end(s.arriving.unwrap_or(now), now).max(end));
            start + pace * (ahead as i64 + 1)
        } else {
            match (next, next_done) {
                (Some(n), Some(t)) => {
                    plan_time(target.place).max(t + pace * (self.rank(target.place) - self.rank(n.place)))
                }
                _ => plan_time(target.place),
            }
        };
        Some(Timestamp(predicted.max(floor)))
    }

    /// Whether the driver's last trusted position says they are moving, as of `now`.
    pub fn is_moving(&self, now: Timestamp) -> bool {
        self.moving
            && self
                .last_fix
                .is_some_and(|(t, ..)| now.micros() - t.micros() <= self.params.moving_within_us)
    }

    /// The shipments of the route, in plan order, with whether each is done.
    pub fn stops(&self) -> impl Iterator<Item = (&str, bool)> {
        let mut order: Vec<&Stop> = self.stops.iter().filter(|s| !s.left).collect();
        order.sort_by_key(|s| s.place);
        order.into_iter().map(|s| (s.shipment.as_str(), s.done.is_some()))
    }

    /// How many stops the driver makes before this one, as seen now. The plan's places
    /// count every stop, also those of other senders this route never hears of, so
    /// the count is the plan's places still ahead of the driver before this one: those
    /// after the furthest place reached (the stop there too while its leg is under
    /// way), less the stops that left the route. A passed-over stop is visited last:
    /// it waits for the rest of the plan and the passed-over stops before it. `None`
    /// when the shipment is not a pending stop of this route.
    pub fn stops_before(&self, shipment: &str) -> Option<u32> {
        let target = self.stops.iter().find(|s| s.shipment == shipment && s.pending())?;
        if target.arriving.is_some() {
            return Some(0);
        }
        let reached = self.reached_place();
        let (from, on_leg) = match reached {
            Some(r) => {
                let on_leg = self
                    .stops
                    .iter()
                    .any(|s| s.place == r && s.pending() && s.arriving.is_some());
                (self.rank(r), i64::from(on_leg))
            }
            None => (-1, 0),
        };
        let count = if self.is_deferred(target) {
            let last = self
                .stops
                .iter()
                .filter(|s| s.pending() && !self.is_deferred(s))
                .map(|s| self.rank(s.place))
                .max()
                .unwrap_or(from);
            let deferred_before = self
                .stops
                .iter()
                .filter(|s| self.is_deferred(s) && s.place < target.place)
                .count();
            (last - from).max(0) + on_leg + deferred_before as i64
        } else {
            (self.rank(target.place) - from - 1).max(0) + on_leg
        };
        Some(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// A pending stop the driver has passed over: one further along the plan has
    /// been reached first.
    fn is_deferred(&self, s: &Stop) -> bool {
        s.pending() && s.arriving.is_none() && self.reached_place().is_some_and(|r| s.place < r)
    }

    /// A plan place counted without the stops that left the route before it: how far
    /// along the route as it is now (the departure is −1).
    fn rank(&self, place: u32) -> i64 {
        let gone = self.stops.iter().filter(|s| s.left && s.place < place).count();
        i64::from(place) - gone as i64
    }

    fn stop_mut(&mut self, shipment: &str) -> Option<&mut Stop> {
        self.stops.iter_mut().find(|s| s.shipment == shipment)
    }

    /// Where the driver stands against the plan: the furthest plan place completed in
    /// order (the departure, rank −1, before any) as a [`rank`](Self::rank) and when,
    /// averaged with the recent in-order completions projected forward to it by the pace.
    fn anchor(&self, departed: Timestamp, pace: i64) -> (i64, i64) {
        let in_order: Vec<(i64, i64)> = self
            .completions
            .iter()
            .filter(|c| !c.2)
            .map(|c| (c.0.micros(), self.rank(c.1)))
            .collect();
        let Some(&(_, furthest)) = in_order.iter().max_by_key(|c| c.1) else {
            return (departed.micros(), -1);
        };
        let recent = &in_order[in_order.len().saturating_sub(self.params.anchor_stops.max(1))..];
        let projected: i64 = recent.iter().map(|&(t, place)| t + pace * (furthest - place)).sum();
        (projected / recent.len() as i64, furthest)
    }

    /// The furthest plan place the driver has reached (arrived at or completed).
    fn reached_place(&self) -> Option<u32> {
        self.stops
            .iter()
            .filter(|s| s.done.is_some() || s.arriving.is_some())
            .map(|s| s.place)
            .max()
    }

    /// Time per place along the route: the trimmed mean of recent in-order intervals blended with the prior.
    fn pace(&self) -> i64 {
        let mut samples: Vec<f64> = Vec::new();
        let mut previous: Option<(i64, i64)> = self.departed.map(|d| (d.micros(), -1));
        for &(t, place, deferred) in &self.completions {
            if deferred {
                continue;
            }
            // Between two stops the driver made, a stop that left the route was not driven to.
            let rank = self.rank(place);
            if let Some((t0, r0)) = previous
                && rank > r0
            {
                samples.push((t.micros() - t0) as f64 / (rank - r0) as f64);
            }
            previous = Some((t.micros(), rank));
        }
        // The mean follows the recent stops; the weight against the prior is all of them.
        let n = samples.len() as f64;
        let from = samples.len().saturating_sub(self.params.recent_stops);
        let observed = trimmed_mean(&mut samples[from..]);
        let prior = self.params.prior_stop_us as f64;
        ((prior * self.params.prior_weight + observed * n) / (self.params.prior_weight + n)) as i64
    }

    /// A typical leg: the median of those observed, the prior before any.
    fn leg_us(&self) -> i64 {
        if self.legs.is_empty() {
            return self.params.prior_leg_us;
        }
        let mut legs = self.legs.clone();
        legs.sort_unstable();
        legs[legs.len() / 2]
    }

    /// When a leg begun at `arriving` ends, as seen at `now`: a typical leg after its
    /// start; once it has lasted longer, soon if the driver has stopped (at the door),
    /// half a leg on if still driving.
    fn leg_end(&self, arriving: Timestamp, now: Timestamp) -> i64 {
        let typical = arriving.micros() + self.leg_us();
        if typical > now.micros() {
            typical
        } else if self.is_moving(now) {
            now.micros() + self.leg_us() / 2
        } else {
            now.micros() + self.params.min_remaining_us
        }
    }
}

/// The mean without the lowest and highest fifth (0 for none).
fn trimmed_mean(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable_by(f64::total_cmp);
    let cut = samples.len() / 5;
    let kept = &samples[cut..samples.len() - cut];
    kept.iter().sum::<f64>() / kept.len() as f64
}

/// Distance in metres on a local flat approximation: fine for fixes seconds apart.
fn approx_distance_m(lat0: f64, lon0: f64, lat1: f64, lon1: f64) -> f64 {
    let m_per_deg = 111_195.0;
    let dy = (lat1 - lat0) * m_per_deg;
    let dx = (lon1 - lon0) * m_per_deg * lat0.to_radians().cos();
    (dx * dx + dy * dy).sqrt()
}

/// A delivery window given to a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// Who set a shipment's current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowBy {
    /// The carrier or the retailer (`shipment.window_set`, or `shipment.rescheduled`
    /// by anyone but the customer).
    Carrier,
    /// The customer chose it (`shipment.rescheduled` with `by = "customer"`).
    Customer,
    /// troth re-issued it from an arrival estimate (`shipment.window_set` with `estimate`).
    Estimate,
}

/// The shipment, window and setter of a `shipment.window_set` or `shipment.rescheduled`.
pub fn window_of(event: &crate::ValidEvent) -> Option<(&str, Window, WindowBy)> {
    use crate::catalogue::EventData;
    let shipment = event.subject.as_deref()?.strip_prefix("shipment:")?;
    let (start, end, by) = match &event.data {
        EventData::WindowSet(w) if w.estimate == Some(true) => (w.window_start, w.window_end, WindowBy::Estimate),
        EventData::WindowSet(w) => (w.window_start, w.window_end, WindowBy::Carrier),
        EventData::Rescheduled(r) if r.by == "customer" => (r.window_start, r.window_end, WindowBy::Customer),
        EventData::Rescheduled(r) => (r.window_start, r.window_end, WindowBy::Carrier),
        _ => return None,
    };
    Some((shipment, Window { start, end }, by))
}

/// When a prediction calls for a new window, and what window to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReissuePolicy {
    /// How far outside the current window the prediction may fall before a new one is due.
    pub tolerance_us: i64,
    /// The new window starts this long before the prediction…
    pub lead_us: i64,
    /// …rounded to the nearest multiple of this…
    pub round_us: i64,
    /// …and lasts this long.
    pub length_us: i64,
}

impl Default for ReissuePolicy {
    fn default() -> Self {
        ReissuePolicy {
            tolerance_us: 10 * MINUTE_US,
            lead_us: 15 * MINUTE_US,
            round_us: 5 * MINUTE_US,
            length_us: 60 * MINUTE_US,
        }
    }
}

/// The window to re-issue for a stop on the way: when `predicted` falls outside
/// `current` by more than the policy's tolerance, or when `current` is longer than
/// the policy's windows (the driver is on the way: the customer gets an hour, not
/// a day part). `None` while the current window holds. The new window contains the
/// prediction and has the policy's length, so the same prediction never asks for a
/// second one.
///
/// A window the customer chose is never replaced: the estimate is theirs to see,
/// but the time they asked for stands until they, the carrier or the retailer
/// change it.
pub fn reissue_window(predicted: Timestamp, current: Window, by: WindowBy, policy: &ReissuePolicy) -> Option<Window> {
    if by == WindowBy::Customer {
        return None;
    }
    let p = predicted.micros();
    let outside = p < current.start.micros() - policy.tolerance_us || p > current.end.micros() + policy.tolerance_us;
    let too_long = current.end.micros() - current.start.micros() > policy.length_us;
    if !outside && !too_long {
        return None;
    }
    let start = round_to(p - policy.lead_us, policy.round_us.max(1));
    Some(Window {
        start: Timestamp(start),
        end: Timestamp(start + policy.length_us),
    })
}

fn round_to(x: i64, step: i64) -> i64 {
    (x + step / 2).div_euclid(step) * step
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_000_200; // 2026-11-18, seconds, on a five-minute boundary

    fn at(minutes: f64) -> Timestamp {
        Timestamp(T0 * 1_000_000 + (minutes * 60e6) as i64)
    }

    fn minutes(t: Timestamp) -> f64 {
        (t.micros() - T0 * 1_000_000) as f64 / 60e6
    }

    /// A route of `n` stops `s0…`, departed at minute 0.
    fn route(n: u32) -> Route {
        let mut r = Route::new(EtaParams::default());
        for i in 0..n {
            let shipment = format!("s{i}");
            r.observe(
                at(0.0),
                RouteEvent::OutForDelivery {
                    shipment: &shipment,
                    stops_before: Some(i),
                },
            );
        }
        r
    }

    /// Drives a leg: arriving at `from`, positions every 10 s, done at `to`.
    fn visit(r: &mut Route, shipment: &str, from: f64, to: f64) {
        r.observe(at(from), RouteEvent::Arriving { shipment });
        let mut m = from;
        while m < to - 0.5 {
            r.observe(
                at(m),
                RouteEvent::Position {
                    lat: 48.85 + m * 1e-3,
                    lon: 2.35,
                    speed_kmh: Some(25.0),
                },
            );
            m += 1.0 / 6.0;
        }
        r.observe(at(to), RouteEvent::Completed { shipment });
    }

    fn predict(r: &Route, shipment: &str, now: f64) -> Option<f64> {
        r.predict(shipment, at(now)).map(minutes)
    }

    #[test]
    fn a_steady_driver_converges_to_the_truth() {
        // A stop every 8 minutes: s_i done at 8(i+1), each leg 3 minutes.
        let mut r = route(20);
        let truth = |i: u32| 8.0 * f64::from(i + 1);
        let first = predict(&r, "s19", 0.0).unwrap();
        let mut errors = vec![(first - truth(19)).abs()];
        for i in 0..12 {
            visit(&mut r, &format!("s{i}"), truth(i) - 3.0, truth(i));
            let now = truth(i) + 0.5;
            errors.push((predict(&r, "s19", now).unwrap() - truth(19)).abs());
        }
        assert!(errors[0] > 30.0, "the prior alone is off: {errors:?}");
        assert!(errors.last().unwrap() < &6.0, "converged: {errors:?}");
        assert!(
            errors.windows(4).all(|w| w[3] <= w[0] + 0.01),
            "the error shrinks: {errors:?}"
        );
        // The next stop, within a minute or two.
        let next = predict(&r, "s12", truth(11) + 0.5).unwrap();
        assert!((next - truth(12)).abs() < 2.0, "{next}");
        assert_eq!(predict(&r, "s3", 200.0), None, "done stops have no prediction");
        assert_eq!(predict(&r, "s-unknown", 200.0), None);
    }

    #[test]
    fn a_late_stop_visited_out_of_order() {
        // s2 is passed over and visited after s5, the last of the plan.
        let mut r = route(6);
        for (i, s) in ["s0", "s1", "s3"].iter().enumerate() {
            let done = [10.0, 20.0, 40.0][i];
            visit(&mut r, s, done - 3.0, done);
        }
        // s2 is deferred: after s4 and s5, not next.
        let s2 = predict(&r, "s2", 40.5).unwrap();
        let s4 = predict(&r, "s4", 40.5).unwrap();
        let s5 = predict(&r, "s5", 40.5).unwrap();
        assert!(s4 < s5 && s5 < s2, "s4 {s4}, s5 {s5}, s2 {s2}");
        // The skipped place does not hold back s4: the plan says one pace after s3.
        assert!((s4 - 50.0).abs() < 2.5, "{s4}");
        visit(&mut r, "s4", 47.0, 50.0);
        visit(&mut r, "s5", 57.0, 60.0);
        // Completing s2 at last leaves the anchor (s5) where it was.
        let before = predict(&r, "s2", 60.5).unwrap();
        assert!((before - 70.0).abs() < 3.0, "{before}");
        visit(&mut r, "s2", 72.0, 75.0);
        assert_eq!(predict(&r, "s2", 76.0), None);
        assert_eq!(r.completions.iter().filter(|c| c.2).count(), 1, "s2 was deferred");
    }

    /// A position stored after a newer one (two reports of one driver appended out
    /// of order) does not move the driver back, nor set its speed.
    #[test]
    fn a_position_stored_late_does_not_replace_a_newer_one() {
        let mut r = route(2);
        let fix = |lat: f64| RouteEvent::Position {
            lat,
            lon: 2.35,
            speed_kmh: None,
        };
        r.observe(at(1.0), fix(48.85));
        r.observe(at(2.0), fix(48.86));
        r.observe(at(1.5), fix(48.80));
        assert_eq!(r.last_fix.map(|(t, lat, ..)| (t, lat)), Some((at(2.0), 48.86)));
        assert!(r.is_moving(at(2.0)), "1.1 km in a minute, from the fixes in time order");
    }

    #[test]
    fn no_positions_yet_uses_the_prior() {
        let r = route(5);
        let p = EtaParams::default().prior_stop_us as f64 / 60e6;
        for i in 0..5u32 {
            let got = predict(&r, &format!("s{i}"), 0.0).unwrap();
            assert!((got - p * f64::from(i + 1)).abs() < 0.01, "s{i}: {got}");
        }
        assert!(!r.is_moving(at(0.0)));
        assert_eq!(Route::new(EtaParams::default()).predict("s0", at(0.0)), None);
    }

    #[test]
    fn a_driver_who_stopped_moving_pushes_the_route_back() {
        let mut r = route(10);
        visit(&mut r, "s0", 7.0, 10.0);
        visit(&mut r, "s1", 17.0, 20.0);
        // Then stands still at minute 20 (speed 0) for half an hour, s2 not begun.
        let mut m = 20.0;
        while m < 50.0 {
            r.observe(
                at(m),
                RouteEvent::Position {
                    lat: 48.9,
                    lon: 2.35,
                    speed_kmh: Some(0.0),
                },
            );
            m += 1.0 / 6.0;
        }
        assert!(!r.is_moving(at(50.0)));
        let early = predict(&r, "s5", 21.0).unwrap();
        let late = predict(&r, "s5", 50.0).unwrap();
        assert!(late >= early + 20.0, "early {early}, late {late}");
        let s2 = predict(&r, "s2", 50.0).unwrap();
        assert!(s2 >= 50.0 + 3.0, "still a leg to drive: {s2}");
        // On the leg to s2, long past a typical leg, positions stopped: at the door.
        r.observe(at(52.0), RouteEvent::Arriving { shipment: "s2" });
        let door = predict(&r, "s2", 60.0).unwrap();
        assert!((60.0..=61.5).contains(&door), "{door}");
    }

    #[test]
    fn predictions_are_never_before_now() {
        let mut r = route(8);
        visit(&mut r, "s0", 2.0, 5.0);
        for now in [5.0, 30.0, 90.0, 240.0, 600.0] {
            for i in 1..8 {
                let got = predict(&r, &format!("s{i}"), now).unwrap();
                assert!(got >= now, "s{i} at {now}: {got}");
            }
        }
        // Later stops never before earlier ones of the plan.
        let all: Vec<f64> = (1..8).map(|i| predict(&r, &format!("s{i}"), 30.0).unwrap()).collect();
        assert!(all.windows(2).all(|w| w[0] <= w[1]), "{all:?}");
    }

    #[test]
    fn a_new_assignment_after_completions_starts_the_next_route() {
        let mut r = route(3);
        visit(&mut r, "s0", 5.0, 8.0);
        r.observe(
            at(24.0 * 60.0),
            RouteEvent::OutForDelivery {
                shipment: "s1",
                stops_before: Some(0),
            },
        );
        assert_eq!(predict(&r, "s2", 24.0 * 60.0), None, "yesterday's stops are gone");
        let p = predict(&r, "s1", 24.0 * 60.0).unwrap();
        assert!((p - 24.0 * 60.0 - 10.0).abs() < 0.01, "{p}");
    }

    #[test]
    fn a_rescheduled_stop_leaves_the_route_and_the_stops_after_it_move_up() {
        let mut r = route(6);
        visit(&mut r, "s0", 7.0, 10.0);
        let before: Vec<f64> = (1..6).map(|i| predict(&r, &format!("s{i}"), 10.5).unwrap()).collect();
        assert_eq!(r.stops_before("s4"), Some(3));
        // The customer of s2 chooses another day: the driver will not go there.
        r.observe(at(10.6), RouteEvent::Left { shipment: "s2" });
        assert_eq!(predict(&r, "s2", 10.6), None, "no estimate for a stop off the route");
        assert_eq!(r.stops_before("s2"), None);
        assert_eq!(r.stops_before("s4"), Some(2), "one stop fewer before s4");
        assert_eq!(r.stops_before("s1"), Some(0));
        let pace = r.pace() as f64 / 60e6;
        for i in 3..6 {
            let after = predict(&r, &format!("s{i}"), 10.6).unwrap();
            let moved = before[i - 1] - after;
            assert!(
                (moved - pace).abs() < 0.01,
                "s{i} moves up one place ({pace:.1} min): {} -> {after}",
                before[i - 1]
            );
        }
        // Stops before the one that left are where they were.
        assert_eq!(predict(&r, "s1", 10.6).unwrap(), before[0]);
        assert!(!r.stops().any(|(s, _)| s == "s2"));
        // The driver goes on to s1 and s3: s3's interval is one place, not two.
        visit(&mut r, "s1", 17.0, 20.0);
        visit(&mut r, "s3", 27.0, 30.0);
        assert_eq!(r.stops_before("s5"), Some(1));
        let s4 = predict(&r, "s4", 30.5).unwrap();
        assert!((s4 - 40.0).abs() < 1.0, "one ten-minute place after s3: {s4}");
    }

    #[test]
    fn a_failed_stop_leaves_the_route_and_the_stops_after_it_move_up() {
        let mut r = route(5);
        visit(&mut r, "s0", 7.0, 10.0);
        let s3 = predict(&r, "s3", 12.0).unwrap();
        assert_eq!(r.stops_before("s3"), Some(2));
        // Nobody home at s1: the attempt fails at once, earlier than a hand-over.
        r.observe(at(11.0), RouteEvent::Arriving { shipment: "s1" });
        r.observe(at(12.0), RouteEvent::Completed { shipment: "s1" });
        assert_eq!(predict(&r, "s1", 12.5), None);
        assert_eq!(r.stops_before("s3"), Some(1));
        let after = predict(&r, "s3", 12.5).unwrap();
        assert!(after < s3, "s3 moves up: {s3} -> {after}");
    }

    #[test]
    fn the_stop_count_falls_as_the_driver_goes() {
        let mut r = route(6);
        let mut counts = vec![r.stops_before("s5").unwrap()];
        for i in 0..5 {
            let done = 10.0 * f64::from(i + 1);
            visit(&mut r, &format!("s{i}"), done - 3.0, done);
            counts.push(r.stops_before("s5").unwrap());
        }
        assert_eq!(counts, [5, 4, 3, 2, 1, 0]);
        // A stop on its leg goes first; a passed-over one goes last.
        let mut r = route(4);
        visit(&mut r, "s0", 7.0, 10.0);
        r.observe(at(11.0), RouteEvent::Arriving { shipment: "s2" });
        assert_eq!(r.stops_before("s2"), Some(0));
        assert_eq!(r.stops_before("s3"), Some(1), "s1 was passed over: after s3");
        assert_eq!(r.stops_before("s1"), Some(2));
        // Stops of other senders hold places this route never hears of.
        let mut r = Route::new(EtaParams::default());
        for (shipment, place) in [("a", 2), ("b", 5)] {
            r.observe(
                at(0.0),
                RouteEvent::OutForDelivery {
                    shipment,
                    stops_before: Some(place),
                },
            );
        }
        assert_eq!(r.stops_before("b"), Some(5));
        visit(&mut r, "a", 27.0, 30.0);
        assert_eq!(r.stops_before("b"), Some(2));
    }

    #[test]
    fn a_window_the_customer_chose_is_never_reissued() {
        let policy = ReissuePolicy::default();
        let chosen = Window {
            start: at(480.0),
            end: at(720.0),
        };
        // Far outside, and longer than an hour: either would re-issue a carrier's window.
        for predicted in [100.0, 600.0, 900.0] {
            assert!(reissue_window(at(predicted), chosen, WindowBy::Carrier, &policy).is_some());
            assert_eq!(reissue_window(at(predicted), chosen, WindowBy::Customer, &policy), None);
        }
    }

    #[test]
    fn windows_are_reissued_only_when_the_prediction_leaves_them() {
        let policy = ReissuePolicy::default();
        let window = Window {
            start: at(60.0),
            end: at(120.0),
        };
        let check = |predicted: f64, expect: Option<(f64, f64)>| {
            let got = reissue_window(at(predicted), window, WindowBy::Carrier, &policy)
                .map(|w| (minutes(w.start), minutes(w.end)));
            assert_eq!(got, expect, "prediction at minute {predicted}");
        };
        check(90.0, None);
        check(55.0, None);
        check(129.0, None);
        // 131 − 15 = 116, rounded to 115.
        check(131.0, Some((115.0, 175.0)));
        check(43.0, Some((30.0, 90.0)));
        // 148 − 15 = 133: nearest five minutes is 135.
        check(148.0, Some((135.0, 195.0)));
        let new = reissue_window(at(148.0), window, WindowBy::Carrier, &policy).unwrap();
        assert_eq!(
            reissue_window(at(148.0), new, WindowBy::Estimate, &policy),
            None,
            "stable"
        );

        // A morning-long window narrows to an hour around the prediction, once.
        let morning = Window {
            start: at(0.0),
            end: at(240.0),
        };
        let narrowed = reissue_window(at(100.0), morning, WindowBy::Carrier, &policy).unwrap();
        assert_eq!((minutes(narrowed.start), minutes(narrowed.end)), (85.0, 145.0));
        assert_eq!(
            reissue_window(at(100.0), narrowed, WindowBy::Estimate, &policy),
            None,
            "stable"
        );
    }
}
