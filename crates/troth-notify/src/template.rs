//! Message templates: a subject and a body with `{placeholders}` filled from the
//! outbox row's payload. A placeholder is a dotted path into the payload
//! (`{event.data.reason}`, `{customer.traits.name}`, `{promise.due}`) with an
//! optional fallback after `|` (`{customer.traits.name|there}`); `{amount}` is the
//! event's `data.amount` in major units. A missing value without a fallback is empty.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

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
                 We are on it and will tell you as soon as we know more.",
            ),
        ),
        (
            "window-missed".to_owned(),
            template(
                "We missed your delivery window",
                "Hello {customer.traits.name|there},\n\n\
                 we promised your delivery ({promise.subject|}) by {promise.due|} and did not keep that promise. \
                 We are sorry. Our logistics team has been told, and we will send you a new window shortly.\n\n\
                 Reference: {event.id}\n",
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
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if !after[..close].contains('{') => {
                out.push_str(&placeholder(&after[..close], payload));
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn placeholder(spec: &str, payload: &Value) -> String {
    let (path, fallback) = match spec.split_once('|') {
        Some((path, fallback)) => (path.trim(), Some(fallback)),
        None => (spec.trim(), None),
    };
    let value = if path == "amount" {
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
    };
    value.unwrap_or_else(|| fallback.unwrap_or("").to_owned())
}

/// `data.amount` in minor units as major units with two decimals.
fn amount(payload: &Value) -> Option<String> {
    let minor = payload.get("event")?.get("data")?.get("amount")?.as_i64()?;
    Some(format!("{}.{:02}", minor / 100, minor % 100))
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
