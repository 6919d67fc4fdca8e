//! A customer's story as an agent reads it: each event said in words ("Window
//! 14:00–15:00 set by SwiftPost", "Paid €356.00 by card"), with times in the
//! reader's zone and the noise (positions, page views, tracking visits) marked so a
//! page can fold it away; and what the events add up to: orders and spend, survey
//! answers and reviews, the channel the customer uses most.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use serde::Serialize;

use crate::catalogue::EventData;
use crate::money;
use crate::{Timestamp, ValidEvent};

/// How a line reads: good news, bad news, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    Neutral,
    Good,
    Bad,
}

/// One event in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Line {
    pub text: String,
    pub tone: Tone,
    /// Routine events (positions, page views, tracking visits, searches) that a
    /// timeline folds away unless asked.
    pub noise: bool,
}

fn line(text: impl Into<String>, tone: Tone) -> Line {
    Line {
        text: text.into(),
        tone,
        noise: false,
    }
}

fn noise(text: impl Into<String>) -> Line {
    Line {
        text: text.into(),
        tone: Tone::Neutral,
        noise: true,
    }
}

/// `HH:MM` in `zone`, with the date when it is not `on`'s day there.
fn clock(at: Timestamp, zone: &TimeZone, on: Timestamp) -> String {
    let zoned = |t: Timestamp| {
        jiff::Timestamp::from_microsecond(t.micros())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_zoned_datetime(zone.clone())
    };
    let (at, on) = (zoned(at), zoned(on));
    if at.date() == on.date() {
        at.strftime("%H:%M").to_string()
    } else {
        at.strftime("%a %-d %b %H:%M").to_string()
    }
}

fn span(start: Timestamp, end: Timestamp, zone: &TimeZone, on: Timestamp) -> String {
    format!("{}–{}", clock(start, zone, on), clock(end, zone, start))
}

fn words(key: &str) -> String {
    key.replace(['_', '.'], " ")
}

/// What a promise's key says was promised: `ready_by` → "ready", which reads
/// "Promised: ready by 14:00" rather than "ready by by 14:00".
fn promised(key: &str) -> String {
    let said = words(key);
    match said.strip_suffix(" by") {
        Some(what) if !what.is_empty() => what.to_owned(),
        _ => said,
    }
}

/// What the log records by id that a reader knows by name. Either may know
/// nothing: the id is then said as recorded, or the line stays general.
#[derive(Clone, Copy)]
pub struct Names<'a> {
    /// An agent acting through troth is recorded by their key's id, and read by its name ("by ana").
    pub agent: &'a dyn Fn(&str) -> Option<String>,
    /// A promise's changes name it by id; it reads by its key ("Broken: delivery window").
    pub promise: &'a dyn Fn(&str) -> Option<String>,
}

impl Names<'_> {
    /// Knows no names.
    pub const NONE: Names<'static> = Names {
        agent: &|_| None,
        promise: &|_| None,
    };
}

/// The event in words; times in `zone`.
pub fn describe(event: &ValidEvent, zone: &TimeZone) -> Line {
    describe_naming(event, zone, Names::NONE)
}

/// As [`describe`], with the agents and promises an event names said by `names`
/// where it knows them.
pub fn describe_naming(event: &ValidEvent, zone: &TimeZone, names: Names<'_>) -> Line {
    use EventData as E;
    let agent = |a: &str| (names.agent)(a).unwrap_or_else(|| a.to_owned());
    // "Broken: delivery window" when the promise is known (as "Promised: delivery
    // window by 13:00" made it), else `general`.
    let promise = |id: &str, what: &str, general: &str| {
        (names.promise)(id).map_or_else(|| general.to_owned(), |key| format!("{what}: {}", promised(&key)))
    };
    let by = |a: Option<&str>| a.map(|a| format!(" by {}", agent(a))).unwrap_or_default();
    use Tone::{Bad, Good, Neutral};
    let on = event.time;
    let subject_id = || {
        event
            .subject
            .as_deref()
            .and_then(|s| s.split_once(':'))
            .map_or_else(String::new, |(_, id)| format!(" {id}"))
    };
    match &event.data {
        E::CustomerIdentified(_) => line("Details updated", Neutral),
        E::ConsentChanged(c) => line(
            format!(
                "{} {} by {}",
                if c.granted { "Agreed to" } else { "Withdrew consent to" },
                words(c.purpose.as_str()),
                words(c.channel.as_str())
            ),
            Neutral,
        ),
        E::CustomerMerged(m) => line(format!("Recognised as the same person as {}", m.from), Neutral),
        E::SearchPerformed(s) => noise(format!("Searched for “{}”", s.query)),
        E::PageViewed(p) => noise(format!("Viewed {}", p.page)),
        E::StoreLocatorSearched(s) => noise(format!("Looked for a store near “{}”", s.query)),
        E::ReviewViewed(r) => noise(format!("Read reviews of {}", r.product)),
        E::AvailabilityShown(a) => noise(format!("Saw {} shown as {}", a.sku, words(a.claim.as_str()))),
        E::CheckoutStarted(_) => line("Started checkout", Neutral),
        E::PaymentSucceeded(p) => line(
            format!(
                "Paid {} by {}",
                money::display(p.amount.0, &p.currency.0),
                words(&p.method)
            ),
            Good,
        ),
        E::PaymentFailed(p) => line(
            format!(
                "Payment of {} by {} failed{}",
                money::display(p.amount.0, &p.currency.0),
                words(&p.method),
                p.reason
                    .as_deref()
                    .map(|r| format!(": {}", words(r)))
                    .unwrap_or_default()
            ),
            Bad,
        ),
        E::OrderPlaced(o) => {
            let items: u64 = o.items.iter().map(|i| u64::from(i.qty)).sum();
            let by = match (o.promised_from, o.promised_to) {
                (Some(from), Some(to)) => format!(", promised {}", span(from, to, zone, on)),
                (None, Some(to)) => format!(", promised by {}", clock(to, zone, on)),
                _ => String::new(),
            };
            line(
                format!(
                    "Ordered {} ({items} {}, {}){by}",
                    o.order,
                    if items == 1 { "item" } else { "items" },
                    money::display(o.total.0, &o.currency.0)
                ),
                Neutral,
            )
        }
        E::OrderCancelled(c) => line(format!("Order{} cancelled: {}", subject_id(), words(&c.reason)), Bad),
        E::StoreVisited(v) => match v.found {
            Some(false) => line(
                format!(
                    "Visited store {} and did not find {}",
                    v.store,
                    v.sku.as_deref().unwrap_or("the item")
                ),
                Bad,
            ),
            _ => line(format!("Visited store {}", v.store), Neutral),
        },
        E::OrderPicked(_) => line(format!("Order{} picked", subject_id()), Neutral),
        E::OrderPacked(_) => line(format!("Order{} packed", subject_id()), Neutral),
        E::OrderReady(r) => line(format!("Order {} ready to collect at {}", r.order, r.store), Good),
        E::OrderCollected(c) => line(format!("Collected order {} at {}", c.order, c.store), Good),
        E::ShipmentCreated(s) => line(
            format!(
                "Shipment {} of order {} booked with {} ({})",
                s.shipment,
                s.order,
                s.carrier,
                words(&s.service)
            ),
            Neutral,
        ),
        E::ShipmentHandedOver(_) => line(format!("Shipment{} handed to the carrier", subject_id()), Neutral),
        E::WindowSet(w) => {
            let by = if w.estimate == Some(true) {
                "troth, from the driver's progress".to_owned()
            } else {
                w.driver.clone().unwrap_or_else(|| "the carrier".into())
            };
            line(
                format!("Window {} set by {by}", span(w.window_start, w.window_end, zone, on)),
                Neutral,
            )
        }
        E::OutForDelivery(o) => line(
            format!(
                "Out for delivery with {}{}",
                o.driver,
                o.stops_before
                    .map(|n| format!(", {n} {} before", if n == 1 { "stop" } else { "stops" }))
                    .unwrap_or_default()
            ),
            Neutral,
        ),
        E::CourierPosition(_) => noise("Driver's position"),
        E::ShipmentArriving(_) => line("Driver arriving", Neutral),
        E::ShipmentDelivered(d) => line(format!("Delivered ({})", words(d.proof.kind.as_str())), Good),
        E::AttemptFailed(a) => line(format!("Delivery attempt failed: {}", words(&a.reason)), Bad),
        E::Rescheduled(r) => line(
            format!(
                "Rescheduled to {} by {}",
                span(r.window_start, r.window_end, zone, on),
                words(&r.by)
            ),
            Neutral,
        ),
        E::ShipmentLost(_) => line(format!("Shipment{} lost", subject_id()), Bad),
        E::ShipmentReturned(_) => line(format!("Shipment{} returned to sender", subject_id()), Bad),
        E::TrackingViewed(t) => noise(format!("Looked at the tracking page of {}", t.shipment)),
        E::InstructionsSet(i) => line(format!("Left instructions: “{}”", i.instructions), Neutral),
        E::SafePlaceSet(s) => line(
            format!(
                "Chose a safe place: {}{}",
                s.place,
                if s.photo.is_some() { " (with a photo)" } else { "" }
            ),
            Neutral,
        ),
        E::InventoryReceived(_) | E::InventoryAdjusted(_) | E::InventoryCounted(_) => noise(words(&event.event_type)),
        E::UsageReported(u) => noise(format!("{} {}: {}", u.asset, words(&u.metric), u.value)),
        E::ReturnRequested(_) => line("Asked to return", Neutral),
        E::ReturnCompleted(_) => line("Return received", Neutral),
        E::RefundPromised(r) => line(
            format!(
                "Refund of {} promised by {}",
                money::display(r.amount.0, ""),
                clock(r.due, zone, on)
            ),
            Neutral,
        ),
        E::RefundIssued(r) => line(format!("Refunded {}", money::display(r.amount.0, "")), Good),
        E::WarrantyClaimed(_) => line("Claimed under warranty", Neutral),
        E::CaseOpened(c) => line(
            format!(
                "Contacted {} about {}{}: case {}",
                c.team,
                words(&c.category),
                c.order.as_deref().map(|o| format!(" (order {o})")).unwrap_or_default(),
                c.case
            ),
            Neutral,
        ),
        E::CaseTransferred(t) => line(
            format!(
                "Passed from {} to {}{}",
                t.from_team,
                t.to_team,
                t.to_agent
                    .as_deref()
                    .map(|a| format!(" ({})", agent(a)))
                    .unwrap_or_default()
            ),
            Bad,
        ),
        E::CaseHeld(h) => line(format!("Put on hold for {}", duration(u64::from(h.seconds))), Neutral),
        E::CaseResolved(r) => line(
            format!("Case resolved: {}{}", words(&r.resolution), by(r.agent.as_deref())),
            Good,
        ),
        E::CaseReopened(_) => line("Case reopened", Bad),
        E::CallbackPromised(c) => line(
            format!(
                "Callback promised for {}{}",
                clock(c.due, zone, on),
                by(c.agent.as_deref())
            ),
            Neutral,
        ),
        E::CallbackMade(_) => line("Called back", Good),
        E::NoteAdded(n) => line(
            match &n.agent {
                Some(a) => format!("Note by agent {}: {}", agent(a), n.text),
                None => format!("Note: {}", n.text),
            },
            Neutral,
        ),
        E::GoodwillGiven(g) => {
            let what = match (g.amount, g.points) {
                (Some(amount), _) => format!(
                    "{} {}",
                    g.kind.as_str(),
                    money::display(amount.0, g.currency.as_ref().map_or("", |c| c.0.as_str()))
                ),
                (None, Some(points)) => format!("{points} points"),
                (None, None) => g.kind.as_str().to_owned(),
            };
            line(
                format!(
                    "Goodwill{}: {what} — {}",
                    g.agent
                        .as_deref()
                        .map(|a| format!(" by agent {}", agent(a)))
                        .unwrap_or_default(),
                    g.reason
                ),
                Good,
            )
        }
        E::SurveyAnswered(s) => {
            let mut parts = Vec::new();
            if let Some(nps) = s.nps {
                parts.push(format!("NPS {}", nps.0));
            }
            if let Some(csat) = s.csat {
                parts.push(format!("CSAT {}", csat.0));
            }
            if let Some(ces) = s.ces {
                parts.push(format!("effort {}", ces.0));
            }
            let comment = s.comment.as_deref().map(|c| format!(": “{c}”")).unwrap_or_default();
            let tone = match s.nps.map(|n| n.0) {
                Some(0..=6) => Bad,
                Some(9..=10) => Good,
                _ => Neutral,
            };
            line(
                format!(
                    "Answered the {} survey ({}){comment}",
                    words(&s.survey),
                    parts.join(", ")
                ),
                tone,
            )
        }
        E::ReviewPosted(r) => line(
            format!("Reviewed on {}: {} of 5, “{}”", r.site, r.rating.0, r.text),
            match r.rating.0 {
                1 | 2 => Bad,
                4 | 5 => Good,
                _ => Neutral,
            },
        ),
        E::SocialPosted(s) => line(format!("Posted on {}: “{}”", s.network, s.text), Neutral),
        E::ReferralMade(_) => line("Referred someone", Good),
        E::LoyaltyEarned(l) => line(format!("Earned {} points ({})", l.points, words(&l.reason)), Good),
        E::LoyaltyRedeemed(l) => line(format!("Redeemed {} points ({})", l.points, words(&l.reason)), Neutral),
        E::MessageSent(m) => line(
            format!("Sent a {} message: {}", words(m.channel.as_str()), words(&m.action)),
            Neutral,
        ),
        E::MessageOpened(_) => noise("Opened a message"),
        E::OfferAccepted(o) => line(format!("Accepted the offer: {}", words(&o.action)), Good),
        E::OfferDeclined(o) => line(format!("Declined the offer: {}", words(&o.action)), Neutral),
        E::PromiseMade(p) => line(
            format!("Promised: {} by {}", promised(&p.key), clock(p.due, zone, on)),
            Neutral,
        ),
        E::PromiseAtRisk(p) => line(promise(&p.promise, "At risk", "A promise is at risk"), Bad),
        E::PromiseKept(p) => line(promise(&p.promise, "Kept", "Promise kept"), Good),
        E::PromiseBroken(p) => line(promise(&p.promise, "Broken", "Promise broken"), Bad),
        E::PromiseCancelled(p) => line(promise(&p.promise, "Replaced", "Promise replaced"), Neutral),
        E::Extension(_) => noise(words(event.event_type.trim_start_matches("x."))),
    }
}

fn duration(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min", seconds / 60),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

/// What the customer's orders add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Value {
    pub orders: u64,
    pub items: u64,
    /// Spend per currency, in words (`€356.00`), largest first.
    pub spend: Vec<String>,
    /// Orders cancelled.
    pub cancelled: u64,
}

/// A survey answer or a review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Feedback {
    pub time: String,
    /// `survey` or `review`.
    pub kind: String,
    pub text: String,
    pub tone: Tone,
    pub nps: Option<u8>,
    pub csat: Option<u8>,
    pub rating: Option<u8>,
}

/// What a customer's events add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub value: Value,
    pub feedback: Vec<Feedback>,
    /// The channel most of the customer's own events came through, if any named one.
    pub preferred_channel: Option<String>,
    /// The latest NPS answer, if any.
    pub latest_nps: Option<u8>,
    /// The currency most of their spend is in, if they ordered.
    pub currency: Option<String>,
}

/// Sums up events (each with the channel it came through), in log order.
pub fn summarise<'a>(events: impl IntoIterator<Item = (&'a ValidEvent, Option<&'a str>)>, zone: &TimeZone) -> Summary {
    let mut summary = Summary::default();
    let mut spend: BTreeMap<String, i64> = BTreeMap::new();
    let mut channels: BTreeMap<&str, u64> = BTreeMap::new();
    for (event, channel) in events {
        if let Some(channel) = channel {
            *channels.entry(channel).or_default() += 1;
        }
        match &event.data {
            EventData::OrderPlaced(o) => {
                summary.value.orders += 1;
                summary.value.items += o.items.iter().map(|i| u64::from(i.qty)).sum::<u64>();
                *spend.entry(o.currency.0.clone()).or_default() += o.total.0;
            }
            EventData::OrderCancelled(_) => summary.value.cancelled += 1,
            EventData::SurveyAnswered(s) => {
                let said = describe(event, zone);
                if let Some(nps) = s.nps {
                    summary.latest_nps = Some(nps.0);
                }
                summary.feedback.push(Feedback {
                    time: event.time.to_string(),
                    kind: "survey".into(),
                    text: said.text,
                    tone: said.tone,
                    nps: s.nps.map(|n| n.0),
                    csat: s.csat.map(|c| c.0),
                    rating: None,
                });
            }
            EventData::ReviewPosted(r) => {
                let said = describe(event, zone);
                summary.feedback.push(Feedback {
                    time: event.time.to_string(),
                    kind: "review".into(),
                    text: said.text,
                    tone: said.tone,
                    nps: None,
                    csat: None,
                    rating: Some(r.rating.0),
                });
            }
            _ => {}
        }
    }
    let mut spend: Vec<(String, i64)> = spend.into_iter().collect();
    spend.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    summary.currency = spend.first().map(|(currency, _)| currency.clone());
    summary.value.spend = spend
        .into_iter()
        .map(|(currency, minor)| money::display(minor, &currency))
        .collect();
    summary.preferred_channel = channels
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(c, _)| c.to_owned());
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, time: &str, subject: Option<&str>, data: serde_json::Value) -> ValidEvent {
        let mut value = json!({"id": "e", "type": kind, "time": time, "data": data});
        if let Some(subject) = subject {
            value["subject"] = json!(subject);
        }
        crate::validate_value(value, None).unwrap()
    }

    fn paris() -> TimeZone {
        TimeZone::get("Europe/Paris").unwrap()
    }

    #[test]
    fn events_read_as_sentences_in_the_readers_zone() {
        let window = event(
            "shipment.window_set",
            "2026-11-30T08:00:00Z",
            Some("shipment:s-1"),
            json!({"window_start": "2026-11-30T13:00:00Z", "window_end": "2026-11-30T14:00:00Z", "driver": "SwiftPost"}),
        );
        assert_eq!(describe(&window, &paris()).text, "Window 14:00–15:00 set by SwiftPost");
        let paid = event(
            "payment.succeeded",
            "2026-11-30T08:00:00Z",
            Some("order:o-1"),
            json!({"method": "card", "amount": 35600, "currency": "EUR"}),
        );
        let said = describe(&paid, &paris());
        assert_eq!((said.text.as_str(), said.tone), ("Paid €356.00 by card", Tone::Good));
        let failed = event(
            "shipment.attempt_failed",
            "2026-11-30T08:00:00Z",
            Some("shipment:s-1"),
            json!({"reason": "no_one_home"}),
        );
        assert_eq!(describe(&failed, &paris()).tone, Tone::Bad);
        assert_eq!(describe(&failed, &paris()).text, "Delivery attempt failed: no one home");
        let tomorrow = event(
            "callback.promised",
            "2026-11-30T16:00:00Z",
            Some("case:k-1"),
            json!({"due": "2026-12-01T09:00:00Z"}),
        );
        assert_eq!(
            describe(&tomorrow, &paris()).text,
            "Callback promised for Tue 1 Dec 10:00"
        );
    }

    #[test]
    fn an_agent_recorded_by_their_keys_id_reads_by_its_name() {
        let note = event(
            "note.added",
            "2026-12-01T09:00:00Z",
            Some("case:k-1"),
            json!({"text": "Called the depot", "agent": "key_7"}),
        );
        let agent = |uid: &str| (uid == "key_7").then(|| "ana".to_owned());
        let names = Names {
            agent: &agent,
            ..Names::NONE
        };
        assert_eq!(
            describe_naming(&note, &paris(), names).text,
            "Note by agent ana: Called the depot"
        );
        // An agent the names do not know reads as recorded.
        assert_eq!(
            describe_naming(&note, &paris(), Names::NONE).text,
            "Note by agent key_7: Called the depot"
        );
    }

    #[test]
    fn a_promise_changing_reads_by_what_was_promised() {
        let broken = event(
            "promise.broken",
            "2026-12-01T15:00:00Z",
            Some("order:o-1"),
            json!({"promise": "p-9", "cause": "due_passed"}),
        );
        let promise = |id: &str| (id == "p-9").then(|| "delivery_window".to_owned());
        let names = Names {
            promise: &promise,
            ..Names::NONE
        };
        let said = describe_naming(&broken, &paris(), names);
        assert_eq!(said.text, "Broken: delivery window");
        assert_eq!(said.tone, Tone::Bad);
        let kept = event(
            "promise.kept",
            "2026-12-01T14:40:00Z",
            Some("order:o-1"),
            json!({"promise": "p-9", "by_event": "e-5"}),
        );
        assert_eq!(describe_naming(&kept, &paris(), names).text, "Kept: delivery window");
        // A promise the story does not hold reads in general.
        assert_eq!(describe(&broken, &paris()).text, "Promise broken");
        // A key that ends in "by" is not said twice.
        let made = event(
            "promise.made",
            "2026-12-01T09:00:00Z",
            Some("order:o-2"),
            json!({"promise": "p-10", "key": "ready_by", "touchpoint": "collect", "due": "2026-12-01T16:00:00Z", "made_by_event": "e-8"}),
        );
        assert_eq!(describe(&made, &paris()).text, "Promised: ready by 17:00");
        let ready = |_: &str| Some("ready_by".to_owned());
        let kept = event(
            "promise.kept",
            "2026-12-01T15:00:00Z",
            Some("order:o-2"),
            json!({"promise": "p-10", "by_event": "e-9"}),
        );
        let names = Names {
            promise: &ready,
            ..Names::NONE
        };
        assert_eq!(describe_naming(&kept, &paris(), names).text, "Kept: ready");
    }

    #[test]
    fn what_an_agent_did_reads_with_their_name() {
        let at = "2026-12-01T09:00:00Z";
        let said = |kind: &str, data: serde_json::Value| describe(&event(kind, at, Some("case:k-1"), data), &paris());
        let callback = said(
            "callback.promised",
            json!({"due": "2026-12-01T13:00:00Z", "agent": "ana"}),
        );
        assert_eq!(callback.text, "Callback promised for 14:00 by ana");
        let note = said(
            "note.added",
            json!({"text": "Wants the parcel left with a neighbour", "agent": "ana"}),
        );
        assert_eq!(
            (note.text.as_str(), note.tone),
            (
                "Note by agent ana: Wants the parcel left with a neighbour",
                Tone::Neutral
            )
        );
        let voucher = said(
            "goodwill.given",
            json!({"kind": "voucher", "amount": 2000, "currency": "EUR", "reason": "late delivery"}),
        );
        assert_eq!(
            (voucher.text.as_str(), voucher.tone),
            ("Goodwill: voucher €20.00 — late delivery", Tone::Good)
        );
        let points = said(
            "goodwill.given",
            json!({"kind": "points", "points": 500, "reason": "late delivery", "agent": "ana"}),
        );
        assert_eq!(points.text, "Goodwill by agent ana: 500 points — late delivery");
        let resolved = said(
            "case.resolved",
            json!({"resolution": "redelivery_booked", "agent": "ana"}),
        );
        assert_eq!(resolved.text, "Case resolved: redelivery booked by ana");
    }

    #[test]
    fn routine_events_are_noise() {
        let position = event(
            "courier.position",
            "2026-11-30T08:00:00Z",
            Some("driver:d-1"),
            json!({"lat": 48.85, "lon": 2.35}),
        );
        assert!(describe(&position, &paris()).noise);
        let page = event("page.viewed", "2026-11-30T08:00:00Z", None, json!({"page": "/tyres"}));
        assert!(describe(&page, &paris()).noise);
        let order = event(
            "order.placed",
            "2026-11-30T08:00:00Z",
            Some("order:o-1"),
            json!({"order": "o-1", "items": [{"sku": "a", "qty": 2, "price": 1000}], "total": 2000,
                   "currency": "GBP", "delivery": "home"}),
        );
        let said = describe(&order, &paris());
        assert!(!said.noise);
        assert_eq!(said.text, "Ordered o-1 (2 items, £20.00)");
    }

    #[test]
    fn a_summary_adds_up_orders_feedback_and_the_usual_channel() {
        let order = |total: i64, currency: &str| {
            event(
                "order.placed",
                "2026-11-30T08:00:00Z",
                Some("order:o-1"),
                json!({"order": "o-1", "items": [{"sku": "a", "qty": 1, "price": total}], "total": total,
                       "currency": currency, "delivery": "home"}),
            )
        };
        let survey = event(
            "survey.answered",
            "2026-11-30T09:00:00Z",
            None,
            json!({"survey": "post_delivery", "nps": 3, "comment": "late again"}),
        );
        let events = [order(35600, "EUR"), order(1000, "EUR"), order(500, "USD"), survey];
        let channels = [Some("web"), Some("app"), Some("web"), None];
        let summary = summarise(events.iter().zip(channels), &paris());
        assert_eq!(summary.value.orders, 3);
        assert_eq!(summary.value.spend, vec!["€366.00".to_owned(), "$5.00".to_owned()]);
        assert_eq!(summary.preferred_channel.as_deref(), Some("web"));
        assert_eq!(summary.currency.as_deref(), Some("EUR"));
        assert_eq!(summary.latest_nps, Some(3));
        assert_eq!(summary.feedback.len(), 1);
        assert_eq!(summary.feedback[0].tone, Tone::Bad);
        assert!(summary.feedback[0].text.contains("late again"));
    }
}
