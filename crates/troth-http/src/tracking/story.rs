//! What the tracking page tells a customer, decided from what troth knows and the
//! time: which state the parcel is in (running late is one, though no event says
//! it), and what to say about it — what happened, what happens next, what the
//! customer can do. No I/O: the view reads the facts, the page only lays out the
//! words chosen here, so every state can be tested without a store or a browser.

use serde::Serialize;
use troth_core::Timestamp;
use troth_core::journey::CaseDue;
use troth_core::shipment::{Shipment, Stage};

use super::zone::Zone;

/// The state a customer reads, as the JSON twin names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// No stage has been reported yet.
    Waiting,
    /// Placed, picked or packed.
    Preparing,
    /// With the carrier.
    InTransit,
    /// Out for delivery or arriving, on time as far as troth knows.
    OnTheWay,
    /// The window has passed, the estimate leaves it, or it was moved later.
    Late,
    AttemptFailed,
    /// A new window after a failed attempt or the customer's choice.
    Rescheduled,
    Delivered,
    Lost,
    Returned,
}

/// How the state should feel, for its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    /// News as planned.
    Info,
    Good,
    /// Something went wrong that will be put right.
    Warning,
    Bad,
}

/// Something the page offers the customer, pointing at its form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    AnotherTime,
    SafePlace,
    Report,
}

/// Why a delivery reads as late.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LateBecause {
    /// The window's end has passed.
    WindowPassed,
    /// The arrival estimate falls after the window's end.
    EstimateAfterWindow,
    /// troth moved the window later because of its estimate (the promise was broken).
    WindowMoved,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Late {
    pub because: LateBecause,
    /// The window the customer was promised and will not get.
    pub promised: (Timestamp, Timestamp),
    /// The best new time: the estimate, else the moved window's start.
    pub estimate: Option<Timestamp>,
}

/// A case about this shipment: one the customer opened from the page, or one a
/// play opened for a lost parcel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub reference: String,
    pub team: String,
    pub opened: Timestamp,
    /// The promise the journey map makes for `case.opened`, when it makes one.
    pub answer_by: Option<Timestamp>,
}

/// What troth knows that the story is told from.
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    pub shipment: &'a Shipment,
    /// Ids of the `shipment.window_set` events that troth re-issued from an
    /// estimate: news, not a promise, so the window promised is the one before.
    pub estimated_windows: &'a [String],
    pub eta: Option<Timestamp>,
    /// Why the latest attempt failed, as the carrier said.
    pub attempt_reason: Option<&'a str>,
    /// The case a play opened for the loss, when there is one.
    pub lost_case: Option<&'a Case>,
    /// When the journey map's case promise falls due (the promise made by `case.opened`).
    pub case_due: Option<&'a CaseDue>,
    pub zone: &'a Zone,
    pub now: Timestamp,
}

/// What the page says, in the customer's words and zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Story {
    pub state: State,
    pub tone: Tone,
    pub headline: String,
    /// What happened and what happens next, a sentence each.
    pub lines: Vec<String>,
    pub actions: Vec<Action>,
    /// The report form's reason that fits the state; none when no single one does
    /// (the customer then chooses, rather than sending a reason we guessed).
    pub problem: Option<&'static str>,
    pub late: Option<Late>,
}

/// The window a customer was promised (the latest one set by anyone but troth's
/// estimate) and the window in force (the latest of all).
pub fn windows(shipment: &Shipment, estimated: &[String]) -> WindowPair {
    let mut pair = WindowPair::default();
    for fact in &shipment.facts {
        let Some((start, end)) = fact.window else { continue };
        let window = (Timestamp(start), Timestamp(end));
        pair.current = Some(window);
        if !estimated.contains(&fact.event) {
            pair.promised = Some(window);
        }
    }
    pair
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowPair {
    pub promised: Option<(Timestamp, Timestamp)>,
    pub current: Option<(Timestamp, Timestamp)>,
}

/// Whether, and why, a delivery that is still to come reads as late.
pub fn late(windows: WindowPair, eta: Option<Timestamp>, now: Timestamp) -> Option<Late> {
    let current = windows.current?;
    let promised = windows.promised.unwrap_or(current);
    let estimate = eta.or_else(|| (current != promised).then_some(current.0));
    let because = if now > current.1 {
        LateBecause::WindowPassed
    } else if eta.is_some_and(|eta| eta > current.1) {
        LateBecause::EstimateAfterWindow
    } else if current.1 > promised.1 {
        // A window moved earlier or narrowed inside the promise keeps it.
        LateBecause::WindowMoved
    } else {
        return None;
    };
    let promised = if because == LateBecause::WindowMoved {
        promised
    } else {
        current
    };
    Some(Late {
        because,
        promised,
        // An estimate already past says nothing new.
        estimate: estimate.filter(|&e| e > now || because != LateBecause::WindowPassed),
    })
}

/// The story the page tells now.
pub fn tell(k: &Known<'_>) -> Story {
    let stage = k.shipment.stage();
    let z = k.zone;
    let when = |t: Timestamp| z.when(t, k.now);
    let pair = windows(k.shipment, k.estimated_windows);
    let mut story = Story {
        state: State::Waiting,
        tone: Tone::Info,
        headline: "Waiting for news".into(),
        lines: Vec::new(),
        actions: Vec::new(),
        problem: None,
        late: None,
    };
    let Some(stage) = stage else {
        story
            .lines
            .push("We will show each step here as soon as it happens.".into());
        return story;
    };
    story.headline = stage.stage.label().into();
    match stage.stage {
        Stage::Delivered => {
            story.state = State::Delivered;
            story.tone = Tone::Good;
            story.lines.push(format!("Delivered {}.", when(stage.at)));
            if let Some(proof) = k.shipment.proof() {
                story.lines.push(where_left(&proof.kind, k.shipment));
            }
            story
                .lines
                .push("Something wrong with it? Tell us below and we will put it right.".into());
            story.actions.push(Action::Report);
        }
        Stage::Lost => {
            story.state = State::Lost;
            story.tone = Tone::Bad;
            story.headline = "Your parcel is lost".into();
            story.lines.push(format!(
                "We are sorry: the carrier reported your parcel lost {}.",
                when(stage.at)
            ));
            match k.lost_case {
                Some(case) => {
                    let who = format!("Our {}", team(&case.team));
                    story.lines.push(match case.answer_by {
                        Some(by) if by > k.now => format!(
                            "{who} has opened case {} and will contact you by {} to send a replacement or refund you.",
                            case.reference,
                            when(by)
                        ),
                        Some(by) => format!(
                            "{who} opened case {} and promised to contact you by {}. If they have not, tell us below.",
                            case.reference,
                            when(by)
                        ),
                        None => format!(
                            "{who} has opened case {} and will contact you to send a replacement or refund you.",
                            case.reference
                        ),
                    });
                    story.lines.push(format!(
                        "You do not need to do anything; quote {} if you contact us.",
                        case.reference
                    ));
                }
                None => {
                    // The case is not opened yet: its team and category are not known.
                    story.lines.push(match k.case_due.and_then(|d| d.at("", "", k.now)) {
                        Some(by) => format!(
                            "Tell us below and our support team will contact you by {} to send a replacement or refund you.",
                            when(by)
                        ),
                        None => "Tell us below and our support team will contact you to send a replacement or refund you."
                            .into(),
                    });
                    story.actions.push(Action::Report);
                }
            }
            story.problem = Some("lost");
        }
        Stage::Returned => {
            story.state = State::Returned;
            story.tone = Tone::Bad;
            story
                .lines
                .push(format!("Your parcel went back to the sender {}.", when(stage.at)));
            story
                .lines
                .push("If you did not ask for that, tell us below and we will sort it out.".into());
            story.actions.push(Action::Report);
        }
        Stage::AttemptFailed => {
            story.state = State::AttemptFailed;
            story.tone = Tone::Warning;
            story.headline = "We could not deliver".into();
            let reason = k.attempt_reason.map(str::trim).filter(|r| !r.is_empty());
            story.lines.push(match reason {
                Some(reason) => format!("The driver tried {} but could not deliver: {reason}.", when(stage.at)),
                None => format!("The driver tried {} but could not deliver.", when(stage.at)),
            });
            // A window set after the failure is the next attempt.
            match pair
                .current
                .filter(|w| w.1 > stage.at && window_set_after(k.shipment, stage.at))
            {
                Some((start, end)) => story
                    .lines
                    .push(format!("We will try again {}.", z.window(start, end, k.now))),
                None => story.lines.push("We will tell you here when we try again.".into()),
            }
            story.lines.push(
                "If another time suits you better, choose it below; or tell the driver a safe place to leave it."
                    .into(),
            );
            story.actions = vec![Action::AnotherTime, Action::SafePlace, Action::Report];
            story.problem = Some("missed");
        }
        other => {
            story.state = match other {
                Stage::Placed | Stage::Picked | Stage::Packed => State::Preparing,
                Stage::HandedOver => State::InTransit,
                Stage::Rescheduled => State::Rescheduled,
                _ => State::OnTheWay,
            };
            if other == Stage::Rescheduled
                && let Some((start, end)) = pair.current
            {
                story
                    .lines
                    .push(format!("Your new delivery time is {}.", z.window(start, end, k.now)));
            }
            let on_the_road = k.shipment.on_the_road();
            if let Some(late) = late(pair, k.eta.filter(|_| on_the_road), k.now) {
                tell_late(&mut story, &late, k);
            }
        }
    }
    story
}

fn tell_late(story: &mut Story, late: &Late, k: &Known<'_>) {
    let z = k.zone;
    let promised = z.window(late.promised.0, late.promised.1, k.now);
    story.state = State::Late;
    story.tone = Tone::Warning;
    story.headline = "Running late".into();
    story.lines.clear();
    story.lines.push(match late.because {
        LateBecause::WindowPassed => format!("We are sorry: we promised {promised} and did not make it."),
        LateBecause::EstimateAfterWindow => {
            format!("We are sorry: the driver is running behind and will miss your window, {promised}.")
        }
        LateBecause::WindowMoved => format!("We are sorry: we could not keep your window, {promised}."),
    });
    story.lines.push(match late.estimate {
        Some(t) => format!("Your parcel is now expected {}.", z.when(t, k.now)),
        None => "We do not have a new time yet; this page changes as soon as we do.".into(),
    });
    story.lines.push(
        "If the new time suits you, there is nothing to do. If it does not, choose another time below or tell us."
            .into(),
    );
    story.actions = vec![Action::AnotherTime, Action::Report];
    story.problem = Some("late");
    story.late = Some(late.clone());
}

/// Whether a window was set after `at` (by event time): the next attempt's.
fn window_set_after(shipment: &Shipment, at: Timestamp) -> bool {
    shipment.facts.iter().any(|f| f.window.is_some() && f.at > at.0)
}

/// Where the parcel was left, from the proof's kind.
fn where_left(kind: &str, shipment: &Shipment) -> String {
    match kind {
        "safe_place" => match shipment.safe_place() {
            Some(place) => format!("Left in your safe place: {}.", place.place),
            None => "Left in a safe place at your address.".into(),
        },
        "handed" => "Handed over at your door.".into(),
        "signature" => "Signed for at your address.".into(),
        _ => "Left at your address; the driver took a photo.".into(),
    }
}

/// `support` → "support team".
fn team(team: &str) -> String {
    format!("{} team", team.replace(['_', '-'], " "))
}

/// The words that confirm a case: its reference and when the customer hears back.
pub fn case_confirmation(case: &Case, zone: &Zone, now: Timestamp) -> String {
    let who = format!("our {}", team(&case.team));
    match case.answer_by {
        Some(by) if by > now => format!(
            "We have opened case {}. {} will answer you by {}.",
            case.reference,
            capitalise(&who),
            zone.when(by, now)
        ),
        Some(by) => format!(
            "Case {} was opened {}; {who} promised to answer by {}.",
            case.reference,
            zone.when(case.opened, now),
            zone.when(by, now)
        ),
        None => format!(
            "We have opened case {}. {} will contact you about it.",
            case.reference,
            capitalise(&who)
        ),
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: i64 = 1_790_000_000_000_000;
    const MIN: i64 = 60_000_000;

    fn at(minute: i64) -> Timestamp {
        Timestamp(T0 + minute * MIN)
    }

    fn shipment(events: &[(&str, &str, i64, serde_json::Value)]) -> Shipment {
        let mut s = Shipment::default();
        for (id, event_type, minute, data) in events {
            let e = troth_core::validate_value(
                json!({"id": id, "type": event_type, "time": at(*minute).to_string(), "subject": "shipment:s-1", "data": data}),
                None,
            )
            .unwrap();
            s.apply(&e);
        }
        s
    }

    fn window(start: i64, end: i64) -> serde_json::Value {
        json!({"window_start": at(start).to_string(), "window_end": at(end).to_string()})
    }

    fn out() -> serde_json::Value {
        json!({"driver": "d-1", "stops_before": 0})
    }

    fn known<'a>(s: &'a Shipment, zone: &'a Zone, now: i64) -> Known<'a> {
        Known {
            shipment: s,
            estimated_windows: &[],
            eta: None,
            attempt_reason: None,
            lost_case: None,
            case_due: None,
            zone,
            now: at(now),
        }
    }

    #[test]
    fn a_passed_window_reads_late_with_an_apology_and_what_to_do() {
        let s = shipment(&[
            ("w", "shipment.window_set", 0, window(60, 120)),
            ("o", "shipment.out_for_delivery", 50, out()),
        ]);
        let zone = Zone::utc();
        let on_time = tell(&known(&s, &zone, 90));
        assert_eq!((on_time.state, on_time.late.is_none()), (State::OnTheWay, true));
        let story = tell(&known(&s, &zone, 240));
        assert_eq!(story.state, State::Late);
        assert_eq!(story.late.as_ref().unwrap().because, LateBecause::WindowPassed);
        assert!(story.lines[0].contains("We are sorry"), "{:?}", story.lines);
        assert!(story.lines[1].contains("do not have a new time"), "{:?}", story.lines);
        assert_eq!(story.problem, Some("late"));
        assert_eq!(story.actions, [Action::AnotherTime, Action::Report]);
        // With an estimate, the new time is given.
        let mut k = known(&s, &zone, 240);
        k.eta = Some(at(260));
        let story = tell(&k);
        assert!(
            story.lines[1].contains(&zone.when(at(260), at(240))),
            "{:?}",
            story.lines
        );
    }

    #[test]
    fn an_estimate_after_the_window_or_a_window_moved_later_reads_late() {
        let zone = Zone::utc();
        let s = shipment(&[
            ("w", "shipment.window_set", 0, window(60, 120)),
            ("o", "shipment.out_for_delivery", 50, out()),
        ]);
        let mut k = known(&s, &zone, 70);
        k.eta = Some(at(150));
        assert_eq!(tell(&k).late.unwrap().because, LateBecause::EstimateAfterWindow);
        k.eta = Some(at(100));
        assert_eq!(tell(&k).state, State::OnTheWay);

        let moved = shipment(&[
            ("w", "shipment.window_set", 0, window(60, 120)),
            ("o", "shipment.out_for_delivery", 50, out()),
            ("re", "shipment.window_set", 70, window(110, 170)),
        ]);
        let estimated = ["re".to_owned()];
        let mut k = known(&moved, &zone, 75);
        k.estimated_windows = &estimated;
        let story = tell(&k);
        let late = story.late.unwrap();
        assert_eq!(
            (late.because, late.promised),
            (LateBecause::WindowMoved, (at(60), at(120)))
        );
        assert_eq!(late.estimate, Some(at(110)));
        // A window narrowed inside the promise keeps it.
        let narrowed = shipment(&[
            ("w", "shipment.window_set", 0, window(60, 180)),
            ("re", "shipment.window_set", 70, window(90, 150)),
        ]);
        let mut k = known(&narrowed, &zone, 75);
        k.estimated_windows = &estimated;
        assert!(tell(&k).late.is_none());
        // A customer's new time is a promise, not lateness.
        let chosen = shipment(&[
            ("w", "shipment.window_set", 0, window(60, 120)),
            (
                "r",
                "shipment.rescheduled",
                70,
                json!({"window_start": at(1500).to_string(), "window_end": at(1740).to_string(), "by": "customer"}),
            ),
        ]);
        let story = tell(&known(&chosen, &zone, 200));
        assert_eq!(story.state, State::Rescheduled);
        assert!(
            story.lines[0].starts_with("Your new delivery time is"),
            "{:?}",
            story.lines
        );
    }

    #[test]
    fn a_failed_attempt_says_why_and_what_next() {
        let zone = Zone::utc();
        let s = shipment(&[
            ("o", "shipment.out_for_delivery", 0, out()),
            ("f", "shipment.attempt_failed", 30, json!({"reason": "nobody home"})),
        ]);
        let mut k = known(&s, &zone, 40);
        k.attempt_reason = Some("nobody home");
        let story = tell(&k);
        assert_eq!((story.state, story.tone), (State::AttemptFailed, Tone::Warning));
        assert!(
            story.lines[0].ends_with("could not deliver: nobody home."),
            "{:?}",
            story.lines
        );
        assert_eq!(story.lines[1], "We will tell you here when we try again.");
        assert_eq!(story.problem, Some("missed"));
        let next = shipment(&[
            ("o", "shipment.out_for_delivery", 0, out()),
            ("f", "shipment.attempt_failed", 30, json!({"reason": "nobody home"})),
            ("w", "shipment.window_set", 35, window(1500, 1560)),
        ]);
        let story = tell(&known(&next, &zone, 40));
        assert!(
            story.lines[1].starts_with("We will try again tomorrow"),
            "{:?}",
            story.lines
        );
    }

    #[test]
    fn a_lost_parcel_says_who_will_contact_the_customer_and_by_when() {
        let zone = Zone::utc();
        let s = shipment(&[("l", "shipment.lost", 0, json!({}))]);
        let case = Case {
            reference: "play-1".into(),
            team: "delivery".into(),
            opened: at(0),
            answer_by: Some(at(2880)),
        };
        let mut k = known(&s, &zone, 10);
        k.lost_case = Some(&case);
        let story = tell(&k);
        assert_eq!((story.state, story.tone), (State::Lost, Tone::Bad));
        assert!(
            story.lines[1].starts_with("Our delivery team has opened case play-1 and will contact you by"),
            "{:?}",
            story.lines
        );
        assert_eq!(story.problem, Some("lost"));
        // Without a case, the customer is asked to tell us, with the SLA's time.
        let mut k = known(&s, &zone, 10);
        let due = CaseDue::after_seconds(48 * 3600);
        k.case_due = Some(&due);
        let story = tell(&k);
        assert!(
            story.lines[1].contains(&zone.when(at(10 + 2880), at(10))),
            "{:?}",
            story.lines
        );
        assert_eq!(story.actions, [Action::Report]);
    }

    #[test]
    fn a_delivery_says_when_and_where_it_was_left() {
        let zone = Zone::utc();
        let s = shipment(&[
            (
                "p",
                "shipment.safe_place_set",
                0,
                json!({"place": "behind the blue gate"}),
            ),
            ("d", "shipment.delivered", 30, json!({"proof": {"kind": "safe_place"}})),
        ]);
        let story = tell(&known(&s, &zone, 40));
        assert_eq!((story.state, story.tone), (State::Delivered, Tone::Good));
        assert_eq!(story.lines[1], "Left in your safe place: behind the blue gate.");
        assert_eq!(story.problem, None, "no reason guessed after a delivery");
    }

    #[test]
    fn a_case_is_confirmed_with_its_reference_and_answer_time() {
        let zone = Zone::utc();
        let case = Case {
            reference: "k-t-1".into(),
            team: "support".into(),
            opened: at(0),
            answer_by: Some(at(2880)),
        };
        let text = case_confirmation(&case, &zone, at(1));
        assert!(text.contains("case k-t-1"), "{text}");
        assert!(text.contains("Our support team will answer you by"), "{text}");
    }
}
