//! Message templates: a subject and a body with `{placeholders}` filled from the
//! outbox row's payload. A placeholder is a dotted path into the payload
//! (`{event.data.reason}`, `{customer.traits.name}`, `{promise.due}`) with an
//! optional fallback after `|` (`{customer.traits.name|there}`); `{amount}` is the
//! event's `data.amount` in major units, with its currency's decimals (¥1999, 19.99 EUR). A missing value without a fallback is empty;
//! `{?path}` instead leaves its whole line out (`Track it: {?tracking_url}`).
//!
//! [`Composer`] renders a row's message with the delivery values added to the
//! payload (`{tracking_url}`, `{window}`, `{stops_before}`, `{photo_url}`…).

use std::collections::HashMap;

use jiff::ZonedDateTime;
use jiff::tz::TimeZone;
use serde::Deserialize;
use serde_json::{Value, json};
use troth_core::Timestamp;
use troth_store::{Compose, Message};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Email subject; SMS use only the body.
    #[serde(default)]
    pub subject: String,
    pub body: String,
}

/// The templates troth ships, for the plays of `journeys/retail.toml`.
pub fn defaults() -> HashMap<String, Template> {
    let template = |subject: &str, body: &str| Template {
        subject: subject.to_owned(),
        body: body.to_owned(),
    };
    HashMap::from([
        (
            "payment-failed".to_owned(),
            template(
                "Your payment did not go through",
                "Hello {customer.traits.name|there},\n\n\
                 your {event.data.method|} payment of {amount} {event.data.currency|} did not go through \
                 (reason: {event.data.reason|not given}).\n\
                 Nothing was charged. You can try again, or pay another way.\n\n\
                 Reference: {event.id}\n",
            ),
        ),
        (
            "window-at-risk".to_owned(),
            template(
                "Your delivery may be late",
                "Your delivery ({promise.subject|}) may miss its window ending {promise.due|}. \
                 We are on it and will tell you as soon as we know more.\n\
                 Track it: {?tracking_url}",
            ),
        ),
        (
            "window-missed".to_owned(),
            template(
                "We missed your delivery window",
                "Hello {customer.traits.name|there},\n\n\
                 we promised your delivery ({promise.subject|}) by {promise.due|} and did not keep that promise. \
                 We are sorry. Our logistics team has been told, and we will send you a new window shortly.\n\
                 Track it: {?tracking_url}\n\n\
                 Reference: {event.id}\n",
            ),
        ),
        (
            "window-set".to_owned(),
            template(
                "Your delivery window",
                "Your delivery is booked for {window|the time shown on your tracking page}.\n\
                 Track it: {?tracking_url}",
            ),
        ),
        (
            "out-for-delivery".to_owned(),
            template(
                "Your parcel is out for delivery",
                "Your parcel is out for delivery today.\n\
                 Expected: {?window_time}\n\
                 Stops before yours: {?stops_before}\n\
                 Track it: {?tracking_url}",
            ),
        ),
        (
            "arriving".to_owned(),
            template(
                "Your driver is on the way",
                "Your driver is on the way to you now and should arrive in about 10 minutes.\n\
                 Track it: {?tracking_url}",
            ),
        ),
        (
            "delivered".to_owned(),
            template(
                "Your parcel has been delivered",
                "Hello {customer.traits.name|there},\n\n\
                 your parcel has been delivered. {proof|}\n\
                 Photo: {?photo_url}\n\
                 Details: {?tracking_url}\n\n\
                 Shipment: {shipment.id|}\n",
            ),
        ),
        (
            "attempt-failed".to_owned(),
            template(
                "We could not deliver your parcel",
                "We could not deliver your parcel today (reason: {event.data.reason|not given}). \
                 We will try again and send you the new time.\n\
                 Choose another time or a safe place: {?tracking_url}",
            ),
        ),
        (
            "callback-missed".to_owned(),
            template(
                "We missed our callback",
                "We promised to call you back by {promise.due|} and did not. Sorry: \
                 we will call you as soon as we can.",
            ),
        ),
    ])
}

/// Fills the placeholders of `text` from `payload`.
pub fn render(text: &str, payload: &Value) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        match render_line(line, payload) {
            Some(line) => out.push_str(&line),
            // A last line left out takes the line break before it along.
            None if !line.ends_with('\n') && out.ends_with('\n') => {
                out.pop();
            }
            None => {}
        }
    }
    out
}

/// One line, or `None` when a `{?placeholder}` in it has no value.
fn render_line(line: &str, payload: &Value) -> Option<String> {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if !after[..close].contains('{') => {
                let spec = &after[..close];
                match spec.strip_prefix('?') {
                    Some(path) => out.push_str(&value(path.trim(), payload)?),
                    None => out.push_str(&placeholder(spec, payload)),
                }
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Some(out)
}

fn placeholder(spec: &str, payload: &Value) -> String {
    let (path, fallback) = match spec.split_once('|') {
        Some((path, fallback)) => (path.trim(), Some(fallback)),
        None => (spec.trim(), None),
    };
    value(path, payload).unwrap_or_else(|| fallback.unwrap_or("").to_owned())
}

fn value(path: &str, payload: &Value) -> Option<String> {
    if path == "amount" {
        amount(payload)
    } else {
        path.split('.')
            .try_fold(payload, |v, key| v.get(key))
            .and_then(|v| match v {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            })
    }
}

/// `data.amount` (minor units) in major units, with as many decimals as
/// `data.currency` has (two when it names none).
fn amount(payload: &Value) -> Option<String> {
    let data = payload.get("event")?.get("data")?;
    let minor = data.get("amount")?.as_i64()?;
    let currency = data.get("currency").and_then(Value::as_str).unwrap_or("");
    Some(troth_core::money::major_units(minor, currency))
}

/// Renders messages: the templates by name, and the public base URL that makes a
/// shipment's tracking path a link (without it, messages carry no link).
#[derive(Debug, Clone)]
pub struct Composer {
    templates: HashMap<String, Template>,
    public_url: Option<String>,
    /// The retailer's zone, for customers without one of their own.
    zone: TimeZone,
}

impl Composer {
    pub fn new(templates: HashMap<String, Template>, public_url: Option<String>) -> Composer {
        let public_url = public_url.map(|u| u.trim_end_matches('/').to_owned());
        Composer {
            templates,
            public_url,
            zone: TimeZone::UTC,
        }
    }

    /// Times in messages in this zone (an IANA name) when the customer has none of
    /// their own; UTC for no name or a name that is not a zone.
    pub fn in_zone(mut self, name: Option<&str>) -> Composer {
        self.zone = name.and_then(zone_named).unwrap_or(TimeZone::UTC);
        self
    }

    /// The customer's zone (`customer.traits.timezone`) when it is one, else the retailer's.
    fn zone_of(&self, payload: &Value) -> TimeZone {
        payload
            .pointer("/customer/traits/timezone")
            .and_then(Value::as_str)
            .and_then(zone_named)
            .unwrap_or_else(|| self.zone.clone())
    }

    /// The payload with the values templates can use besides its own fields.
    pub fn values(&self, payload: &Value) -> Value {
        let mut values = payload.clone();
        let Some(shipment) = payload.get("shipment") else {
            return values;
        };
        let text = |key: &str| shipment.get(key).and_then(Value::as_str);
        if let (Some(base), Some(path)) = (&self.public_url, text("tracking_path")) {
            values["tracking_url"] = format!("{base}{path}").into();
        }
        let zone = self.zone_of(payload);
        let at = |key: &str| {
            text(key)
                .and_then(Timestamp::parse_rfc3339)
                .and_then(|t| local(t, &zone))
        };
        if let (Some(start), Some(end)) = (at("window_start"), at("window_end")) {
            let date = start.strftime("%A %-d %B").to_string();
            let (from, to) = (clock(&start), clock(&end));
            // The zone's abbreviation (GMT, BST, CET), or its name where it has none.
            let named = match start.strftime("%Z").to_string() {
                abbreviation if abbreviation.starts_with(['+', '-']) => zone.iana_name().unwrap_or("UTC").to_owned(),
                abbreviation => abbreviation,
            };
            values["window"] = format!("{date}, {from}–{to} {named}").into();
            values["window_date"] = date.into();
            values["window_start"] = from.clone().into();
            values["window_end"] = to.clone().into();
            values["window_time"] = format!("{from}–{to} {named}").into();
        }
        if let Some(stops) = shipment.get("stops_before") {
            values["stops_before"] = stops.clone();
        }
        if let Some(proof) = shipment.get("proof") {
            let kind = proof.get("kind").and_then(Value::as_str).unwrap_or("");
            values["proof"] = json!(match kind {
                "photo" => "The driver took a photo of where it was left.",
                "signature" => "It was signed for.",
                "safe_place" => "It was left in your safe place.",
                "handed" => "It was handed over in person.",
                _ => "",
            });
            // Only a web address is a photo the customer can open (as on the tracking page).
            if let Some(photo) = proof.get("photo").and_then(Value::as_str)
                && (photo.starts_with("https://") || photo.starts_with("http://"))
            {
                values["photo_url"] = photo.into();
            }
        }
        values
    }

    /// The message of a row's payload, or `None` when its template does not exist.
    pub fn message(&self, payload: &Value) -> Option<Message> {
        let name = payload.get("template").and_then(Value::as_str)?;
        let template = self.templates.get(name)?;
        let values = self.values(payload);
        Some(Message {
            subject: render(&template.subject, &values),
            body: render(&template.body, &values),
        })
    }
}

/// A zone by its IANA name; fixed offsets are refused, as they know no daylight saving.
fn zone_named(name: &str) -> Option<TimeZone> {
    let name = name.trim();
    if name.is_empty() || name.starts_with(['+', '-']) {
        return None;
    }
    TimeZone::get(name).ok()
}

impl Compose for Composer {
    fn compose(&self, payload: &Value) -> Option<Message> {
        self.message(payload)
    }
}

fn local(t: Timestamp, zone: &TimeZone) -> Option<ZonedDateTime> {
    Some(
        jiff::Timestamp::from_microsecond(t.micros())
            .ok()?
            .to_zoned_datetime(zone.clone()),
    )
}

fn clock(t: &ZonedDateTime) -> String {
    t.strftime("%H:%M").to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn placeholders_are_filled_from_the_payload() {
        let payload = json!({"event": {"id": "e1", "data": {"amount": 1999, "currency": "EUR", "reason": ": card declined"}},
                             "customer": {"traits": {"name": "Ann"}}});
        let check = |text: &str, expect: &str| assert_eq!(render(text, &payload), expect, "{text}");
        check("Hello {customer.traits.name|there}", "Hello Ann");
        check("Hello {customer.traits.nickname|there}", "Hello there");
        check(
            "{amount} {event.data.currency}{event.data.reason}",
            "19.99 EUR: card declined",
        );
        check("{missing} {not closed", " {not closed");
        check("{{event.id}}", "{e1}");
        let yen = json!({"event": {"data": {"amount": 1999, "currency": "JPY"}}});
        assert_eq!(render("{amount} {event.data.currency}", &yen), "1999 JPY");
        let dinar = json!({"event": {"data": {"amount": 1999, "currency": "KWD"}}});
        assert_eq!(render("{amount} {event.data.currency}", &dinar), "1.999 KWD");
    }

    #[test]
    fn an_optional_placeholder_without_a_value_leaves_its_line_out() {
        let payload = json!({"url": "https://x.example/t/a"});
        assert_eq!(
            render("Hi.\nTrack: {?url}\nBye", &payload),
            "Hi.\nTrack: https://x.example/t/a\nBye"
        );
        assert_eq!(render("Hi.\nTrack: {?nope}\nBye", &payload), "Hi.\nBye");
        assert_eq!(render("Hi.\nTrack: {?nope}", &payload), "Hi.");
    }

    #[test]
    fn the_composer_adds_the_link_the_window_and_the_photo() {
        let payload = json!({"template": "delivered", "shipment": {
            "id": "s-1", "tracking_path": "/t/abc", "window_start": "2026-11-23T11:00:00Z",
            "window_end": "2026-11-23T12:00:00.000000Z", "stops_before": 2,
            "proof": {"kind": "photo", "photo": "uploads/x.jpg"}}});
        let values = Composer::new(defaults(), Some("https://track.example/".into())).values(&payload);
        assert_eq!(values["tracking_url"], "https://track.example/t/abc");
        assert_eq!(values["window"], "Monday 23 November, 11:00–12:00 UTC");
        assert_eq!(values["stops_before"], 2);
        // In the retailer's zone, on either side of its clock change, and in the
        // customer's own when they have one.
        let london = Composer::new(defaults(), None).in_zone(Some("Europe/London"));
        assert_eq!(london.values(&payload)["window"], "Monday 23 November, 11:00–12:00 GMT");
        let mut summer = payload.clone();
        summer["shipment"]["window_start"] = json!("2026-10-24T11:00:00Z");
        summer["shipment"]["window_end"] = json!("2026-10-24T12:00:00Z");
        assert_eq!(london.values(&summer)["window"], "Saturday 24 October, 12:00–13:00 BST");
        let mut in_tokyo = payload.clone();
        in_tokyo["customer"] = json!({"traits": {"timezone": "Asia/Tokyo"}});
        assert_eq!(
            london.values(&in_tokyo)["window"],
            "Monday 23 November, 20:00–21:00 JST"
        );
        in_tokyo["customer"]["traits"]["timezone"] = json!("+09:00");
        assert_eq!(
            london.values(&in_tokyo)["window_time"],
            "11:00–12:00 GMT",
            "an offset is not a zone"
        );
        // Not a web address: no photo link.
        assert!(values.get("photo_url").is_none());
        let values = Composer::new(defaults(), None).values(&payload);
        assert!(values.get("tracking_url").is_none());
        assert!(
            Composer::new(defaults(), None)
                .message(&json!({"template": "nope"}))
                .is_none()
        );
    }

    #[test]
    fn every_template_the_retail_map_names_has_a_default() {
        let map = troth_core::journey::parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
        let defaults = defaults();
        for touchpoint in &map.touchpoints {
            for play in &touchpoint.plays {
                for action in &play.actions {
                    if let troth_core::journey::Action::NotifyCustomer { template, .. } = action {
                        assert!(defaults.contains_key(template), "{template}");
                    }
                }
            }
        }
    }
}
