//! The shipment projection: where a parcel really is, from its events.
//!
//! A [`Shipment`] is the set of facts its events have told (each remembered by
//! event id), and every answer — the current stage, the stages with their times,
//! the window, the driver — is derived from that set. Applying the same events in
//! any order therefore gives the same shipment: an event that arrives late slots
//! into its place by event time, and a stage is only ever shown once its event
//! has arrived.

use serde::{Deserialize, Serialize};

use crate::ValidEvent;
use crate::catalogue::EventData;
use crate::timestamp::Timestamp;

/// How long a tracking link stays valid after the shipment's final state.
pub const LINK_VALID_AFTER_FINAL_US: i64 = 30 * 86_400 * 1_000_000;

/// A stage of a delivery, named as in the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Placed,
    Picked,
    Packed,
    HandedOver,
    OutForDelivery,
    Arriving,
    AttemptFailed,
    Rescheduled,
    Delivered,
    Lost,
    Returned,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Placed => "placed",
            Stage::Picked => "picked",
            Stage::Packed => "packed",
            Stage::HandedOver => "handed_over",
            Stage::OutForDelivery => "out_for_delivery",
            Stage::Arriving => "arriving",
            Stage::AttemptFailed => "attempt_failed",
            Stage::Rescheduled => "rescheduled",
            Stage::Delivered => "delivered",
            Stage::Lost => "lost",
            Stage::Returned => "returned",
        }
    }

    /// For people: "Out for delivery".
    pub fn label(self) -> &'static str {
        match self {
            Stage::Placed => "Order placed",
            Stage::Picked => "Picked",
            Stage::Packed => "Packed",
            Stage::HandedOver => "Handed over to the carrier",
            Stage::OutForDelivery => "Out for delivery",
            Stage::Arriving => "Arriving",
            Stage::AttemptFailed => "Delivery attempt failed",
            Stage::Rescheduled => "Rescheduled",
            Stage::Delivered => "Delivered",
            Stage::Lost => "Lost",
            Stage::Returned => "Returned to sender",
        }
    }

    /// Delivered, lost or returned: nothing follows.
    pub fn is_final(self) -> bool {
        matches!(self, Stage::Delivered | Stage::Lost | Stage::Returned)
    }

    /// The stages that happen once per shipment (the first report counts).
    fn once(self) -> bool {
        self <= Stage::HandedOver
    }

    /// Whether the stage belongs to a delivery run (after which a failure restarts the run).
    fn on_the_road(self) -> bool {
        matches!(self, Stage::OutForDelivery | Stage::Arriving)
    }

    /// The stage an event type marks.
    pub fn of_event_type(event_type: &str) -> Option<Stage> {
        Some(match event_type {
            "order.placed" => Stage::Placed,
            "order.picked" => Stage::Picked,
            "order.packed" => Stage::Packed,
            "shipment.handed_over" => Stage::HandedOver,
            "shipment.out_for_delivery" => Stage::OutForDelivery,
            "shipment.arriving" => Stage::Arriving,
            "shipment.attempt_failed" => Stage::AttemptFailed,
            "shipment.rescheduled" => Stage::Rescheduled,
            "shipment.delivered" => Stage::Delivered,
            "shipment.lost" => Stage::Lost,
            "shipment.returned" => Stage::Returned,
            _ => return None,
        })
    }
}

/// One fact an event told about the shipment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    /// The id of the event that told it; a fact is recorded once.
    pub event: String,
    /// Event time, µs.
    pub at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// A delivery window (`window_set`, `rescheduled`), µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<(i64, i64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stops_before: Option<u32>,
    /// The delivery address's position, as given with `out_for_delivery`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<(f64, f64)>,
    /// Proof of delivery: its kind and photo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
    /// The customer's instructions to the driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The customer's safe place (and its photo's stored name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_place: Option<SafePlace>,
}

impl Fact {
    /// The fact an order's stage event (`order.placed`, `order.picked`,
    /// `order.packed`) tells: its stage and time, nothing else. The same as the
    /// event applied to a shipment, so what a projection keeps of an order's stages
    /// can be applied to the shipments created after them.
    pub fn order_stage(event: String, at: Timestamp, stage: Stage) -> Fact {
        Fact::bare(event, at, Some(stage))
    }

    /// A fact of an event's id, time and stage, and nothing else yet.
    fn bare(event: String, at: Timestamp, stage: Option<Stage>) -> Fact {
        Fact {
            event,
            at: at.micros(),
            stage,
            window: None,
            driver: None,
            stops_before: None,
            destination: None,
            proof: None,
            instructions: None,
            safe_place: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafePlace {
    pub place: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo: Option<String>,
}

/// A shipment as its events tell it. See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shipment {
    /// The order it carries (`shipment.created`), without the `order:` prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// Sorted by (time, event id), so the stored form does not depend on arrival order.
    pub facts: Vec<Fact>,
}

/// A stage that happened, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageAt {
    pub stage: Stage,
    pub at: Timestamp,
}

/// The driver assigned by the latest `out_for_delivery`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub driver: String,
    pub since: Timestamp,
    pub stops_before: Option<u32>,
    pub destination: Option<(f64, f64)>,
}

impl Shipment {
    /// Records what `event` says about this shipment. Returns whether anything changed
    /// (false for events it already holds and events that say nothing about it).
    pub fn apply(&mut self, event: &ValidEvent) -> bool {
        if let EventData::ShipmentCreated(created) = &event.data {
            let changed = self.order.as_deref() != Some(&created.order);
            self.order = Some(created.order.clone());
            return changed;
        }
        fact_of(event).is_some_and(|fact| self.record(fact))
    }

    /// Records a fact told by an event, kept apart from the event (an order's stages,
    /// told before the shipment existed). Returns whether it was new.
    pub fn record(&mut self, fact: Fact) -> bool {
        if self.facts.iter().any(|f| f.event == fact.event) {
            return false;
        }
        let at = self
            .facts
            .partition_point(|f| (f.at, f.event.as_str()) < (fact.at, fact.event.as_str()));
        self.facts.insert(at, fact);
        true
    }

    /// Every stage that happened, by event time: stages that happen once appear once
    /// (at their first report); a failed attempt and a new run appear each time.
    pub fn stages(&self) -> Vec<StageAt> {
        let mut seen = Vec::new();
        let mut stages = Vec::new();
        for fact in &self.facts {
            let Some(stage) = fact.stage else { continue };
            if stage.once() {
                if seen.contains(&stage) {
                    continue;
                }
                seen.push(stage);
            }
            stages.push(StageAt {
                stage,
                at: Timestamp(fact.at),
            });
        }
        stages
    }

    /// The furthest stage that really happened. A final stage wins (the latest, if
    /// several were reported); otherwise the furthest stage since the latest failed
    /// attempt or reschedule, or that failure itself while no new run has started.
    pub fn stage(&self) -> Option<StageAt> {
        let stages = self.stages();
        if let Some(last_final) = stages.iter().rev().find(|s| s.stage.is_final()) {
            return Some(*last_final);
        }
        let setback = stages
            .iter()
            .rev()
            .find(|s| matches!(s.stage, Stage::AttemptFailed | Stage::Rescheduled))
            .copied();
        let since = setback.map_or(Timestamp(i64::MIN), |s| s.at);
        let furthest = stages
            .iter()
            .filter(|s| {
                if setback.is_some() {
                    s.stage.on_the_road() && s.at > since
                } else {
                    !matches!(s.stage, Stage::AttemptFailed | Stage::Rescheduled)
                }
            })
            .max_by_key(|s| (s.stage, s.at))
            .copied();
        furthest.or(setback)
    }

    /// The time of the final stage, when there is one.
    pub fn final_at(&self) -> Option<Timestamp> {
        self.stage().filter(|s| s.stage.is_final()).map(|s| s.at)
    }

    /// When a tracking link to this shipment stops working: 30 days after its final state.
    pub fn link_expires_at(&self) -> Option<Timestamp> {
        self.final_at().map(|t| Timestamp(t.0 + LINK_VALID_AFTER_FINAL_US))
    }

    /// The delivery window most recently set (by event time).
    pub fn window(&self) -> Option<(Timestamp, Timestamp)> {
        self.latest(|f| f.window).map(|(s, e)| (Timestamp(s), Timestamp(e)))
    }

    /// The latest delivery run's driver.
    pub fn assignment(&self) -> Option<Assignment> {
        let fact = self
            .facts
            .iter()
            .rev()
            .find(|f| f.stage == Some(Stage::OutForDelivery) && f.driver.is_some())?;
        Some(Assignment {
            driver: fact.driver.clone()?,
            since: Timestamp(fact.at),
            stops_before: fact.stops_before,
            destination: fact.destination,
        })
    }

    pub fn proof(&self) -> Option<Proof> {
        self.latest(|f| f.proof.clone())
    }

    pub fn instructions(&self) -> Option<String> {
        self.latest(|f| f.instructions.clone())
    }

    pub fn safe_place(&self) -> Option<SafePlace> {
        self.latest(|f| f.safe_place.clone())
    }

    /// Whether a driver is on the way to this customer now (out for delivery or arriving).
    pub fn on_the_road(&self) -> bool {
        self.stage().is_some_and(|s| s.stage.on_the_road())
    }

    /// How long ago, in µs, the window in force ended, for a parcel on the road at
    /// `now` that has not arrived: the overview's "late now". A parcel not yet out,
    /// or already delivered, lost or returned, is not late on the road.
    pub fn late_by(&self, now: Timestamp) -> Option<i64> {
        if !self.on_the_road() {
            return None;
        }
        let (_, end) = self.window()?;
        (now > end).then(|| now.0 - end.0)
    }

    fn latest<T>(&self, pick: impl Fn(&Fact) -> Option<T>) -> Option<T> {
        self.facts.iter().rev().find_map(pick)
    }
}

/// The fact an event tells, if it concerns a shipment's tracking.
fn fact_of(event: &ValidEvent) -> Option<Fact> {
    let mut fact = Fact::bare(event.id.clone(), event.time, Stage::of_event_type(&event.event_type));
    match &event.data {
        EventData::WindowSet(w) => {
            fact.window = Some((w.window_start.micros(), w.window_end.micros()));
            fact.driver = w.driver.clone();
        }
        EventData::Rescheduled(r) => fact.window = Some((r.window_start.micros(), r.window_end.micros())),
        EventData::OutForDelivery(o) => {
            fact.driver = Some(o.driver.clone());
            fact.stops_before = o.stops_before;
            fact.destination = o.lat.zip(o.lon).map(|(lat, lon)| (lat.0, lon.0));
        }
        EventData::ShipmentDelivered(d) => {
            fact.proof = Some(Proof {
                kind: d.proof.kind.as_str().to_owned(),
                photo: d.proof.photo.clone(),
            })
        }
        EventData::InstructionsSet(i) => fact.instructions = Some(i.instructions.clone()),
        EventData::SafePlaceSet(s) => {
            fact.safe_place = Some(SafePlace {
                place: s.place.clone(),
                photo: s.photo.clone(),
            })
        }
        _ if fact.stage.is_some() => {}
        _ => return None,
    }
    Some(fact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: &str, event_type: &str, minute: i64, data: serde_json::Value) -> ValidEvent {
        let time = Timestamp(1_790_000_000_000_000 + minute * 60_000_000).to_string();
        let subject = if event_type.starts_with("order.") {
            "order:o-1"
        } else {
            "shipment:s-1"
        };
        crate::validate_value(
            json!({"id": id, "type": event_type, "time": time, "subject": subject, "data": data}),
            None,
        )
        .unwrap()
    }

    fn placed(minute: i64) -> ValidEvent {
        event(
            "placed",
            "order.placed",
            minute,
            json!({"order": "o-1", "items": [{"sku": "a", "qty": 1, "price": 100}], "total": 100, "currency": "EUR", "delivery": "home"}),
        )
    }

    fn out(id: &str, minute: i64, driver: &str) -> ValidEvent {
        event(
            id,
            "shipment.out_for_delivery",
            minute,
            json!({"driver": driver, "stops_before": 3}),
        )
    }

    fn simple(id: &str, event_type: &str, minute: i64) -> ValidEvent {
        let data = match event_type {
            "shipment.delivered" => json!({"proof": {"kind": "photo", "photo": "p.jpg"}}),
            "shipment.attempt_failed" => json!({"reason": "nobody home"}),
            _ => json!({}),
        };
        event(id, event_type, minute, data)
    }

    fn window(id: &str, event_type: &str, minute: i64, start: i64, end: i64) -> ValidEvent {
        let at = |m: i64| Timestamp(1_790_000_000_000_000 + m * 60_000_000).to_string();
        let mut data = json!({"window_start": at(start), "window_end": at(end)});
        if event_type == "shipment.rescheduled" {
            data["by"] = json!("customer");
        }
        event(id, event_type, minute, data)
    }

    fn names(s: &Shipment) -> Vec<&'static str> {
        s.stages().iter().map(|s| s.stage.as_str()).collect()
    }

    /// Applies `events` in the given order and in reverse; both must agree.
    fn check(events: &[ValidEvent], stage: Option<&str>, stages: &[&str]) -> Shipment {
        let mut forward = Shipment::default();
        for e in events {
            forward.apply(e);
        }
        let mut backward = Shipment::default();
        for e in events.iter().rev() {
            backward.apply(e);
        }
        assert_eq!(forward, backward, "the order of arrival changed the projection");
        assert_eq!(forward.stage().map(|s| s.stage.as_str()), stage);
        assert_eq!(names(&forward), stages);
        forward
    }

    #[test]
    fn the_happy_path_in_order() {
        let s = check(
            &[
                placed(0),
                simple("p", "order.picked", 60),
                simple("k", "order.packed", 70),
                simple("h", "shipment.handed_over", 120),
                out("o", 600, "d-1"),
                simple("a", "shipment.arriving", 640),
                simple("d", "shipment.delivered", 650),
            ],
            Some("delivered"),
            &[
                "placed",
                "picked",
                "packed",
                "handed_over",
                "out_for_delivery",
                "arriving",
                "delivered",
            ],
        );
        assert_eq!(s.proof().unwrap().photo.as_deref(), Some("p.jpg"));
        assert_eq!(
            s.link_expires_at(),
            Some(Timestamp(
                1_790_000_000_000_000 + 650 * 60_000_000 + LINK_VALID_AFTER_FINAL_US
            ))
        );
    }

    #[test]
    fn a_late_event_slots_into_its_place_and_never_moves_the_stage_back() {
        // `packed` reported after `out_for_delivery`: shown in its place, stage stays.
        let s = check(
            &[placed(0), out("o", 600, "d-1"), simple("k", "order.packed", 70)],
            Some("out_for_delivery"),
            &["placed", "packed", "out_for_delivery"],
        );
        assert_eq!(
            s.stage().unwrap().at,
            Timestamp(1_790_000_000_000_000 + 600 * 60_000_000)
        );
        // A stage not yet reported is not shown, even when a later one was.
        check(
            &[placed(0), simple("d", "shipment.delivered", 650)],
            Some("delivered"),
            &["placed", "delivered"],
        );
    }

    #[test]
    fn a_stage_reported_twice_counts_once_at_its_first_report() {
        check(
            &[
                simple("h1", "shipment.handed_over", 120),
                simple("h2", "shipment.handed_over", 130),
            ],
            Some("handed_over"),
            &["handed_over"],
        );
    }

    #[test]
    fn a_failed_attempt_then_a_new_run() {
        let failed = [
            out("o1", 600, "d-1"),
            simple("f", "shipment.attempt_failed", 620),
            window("r", "shipment.rescheduled", 622, 2000, 2060),
        ];
        let s = check(
            &failed,
            Some("rescheduled"),
            &["out_for_delivery", "attempt_failed", "rescheduled"],
        );
        assert_eq!(
            s.window().unwrap().0,
            Timestamp(1_790_000_000_000_000 + 2000 * 60_000_000)
        );
        assert!(!s.on_the_road());
        let mut again = failed.to_vec();
        again.push(out("o2", 1990, "d-2"));
        let s = check(
            &again,
            Some("out_for_delivery"),
            &["out_for_delivery", "attempt_failed", "rescheduled", "out_for_delivery"],
        );
        assert_eq!(s.assignment().unwrap().driver, "d-2");
        // A failure without a reschedule is the stage until a new run starts.
        check(
            &failed[..2],
            Some("attempt_failed"),
            &["out_for_delivery", "attempt_failed"],
        );
    }

    #[test]
    fn final_states_win_over_late_news() {
        check(
            &[simple("l", "shipment.lost", 900), simple("a", "shipment.arriving", 640)],
            Some("lost"),
            &["arriving", "lost"],
        );
        check(
            &[
                simple("l", "shipment.lost", 900),
                simple("r", "shipment.returned", 2000),
            ],
            Some("returned"),
            &["lost", "returned"],
        );
    }

    #[test]
    fn the_window_is_the_latest_by_event_time_not_by_arrival() {
        let s = check(
            &[
                window("w", "shipment.window_set", 100, 600, 660),
                window("r", "shipment.rescheduled", 500, 700, 760),
            ],
            Some("rescheduled"),
            &["rescheduled"],
        );
        assert_eq!(
            s.window().unwrap().0,
            Timestamp(1_790_000_000_000_000 + 700 * 60_000_000)
        );
    }

    #[test]
    fn a_parcel_on_the_road_past_its_window_is_late_by_the_time_since_its_end() {
        let at = |m: i64| Timestamp(1_790_000_000_000_000 + m * 60_000_000);
        let mut s = Shipment::default();
        s.apply(&window("w", "shipment.window_set", 0, 600, 660));
        assert_eq!(s.late_by(at(700)), None, "not out for delivery yet");
        s.apply(&out("o", 500, "d1"));
        assert_eq!(s.late_by(at(650)), None, "inside the window");
        assert_eq!(s.late_by(at(690)), Some(30 * 60_000_000));
        s.apply(&window("r", "shipment.rescheduled", 680, 700, 760));
        assert_eq!(
            s.late_by(at(690)),
            None,
            "a new window, and off the road until the next run"
        );
        s.apply(&out("o2", 695, "d1"));
        assert_eq!(s.late_by(at(770)), Some(10 * 60_000_000));
        s.apply(&simple("d", "shipment.delivered", 771));
        assert_eq!(s.late_by(at(800)), None, "delivered is not late on the road");
    }

    #[test]
    fn an_event_applied_twice_changes_nothing() {
        let mut s = Shipment::default();
        assert!(s.apply(&placed(0)));
        assert!(!s.apply(&placed(0)));
        assert!(s.stage().is_some_and(|s| s.stage == Stage::Placed));
        assert_eq!(s.link_expires_at(), None);
    }

    #[test]
    fn an_order_stage_kept_apart_is_the_fact_its_event_tells() {
        for event in [
            placed(0),
            simple("p", "order.picked", 60),
            simple("k", "order.packed", 70),
        ] {
            let mut applied = Shipment::default();
            applied.apply(&event);
            let stage = Stage::of_event_type(&event.event_type).unwrap();
            let mut recorded = Shipment::default();
            assert!(recorded.record(Fact::order_stage(event.id.clone(), event.time, stage)));
            assert_eq!(recorded, applied);
            assert!(!recorded.apply(&event), "the event adds nothing to its own fact");
        }
    }
}
