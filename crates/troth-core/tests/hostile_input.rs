//! Property tests over outside input: events with hostile values in every field,
//! Segment messages alike, and OsmAnd reports with hostile parameters. Whatever arrives, validation
//! answers (never panics), an accepted event's instants print, and every change
//! the promise engine derives from it validates like an event from outside, so
//! troth's own events can never stop the store.

use serde_json::{Value, json};
use troth_core::journey::parse_journey;
use troth_core::position::parse_osmand_params;
use troth_core::promise::{PromiseBook, next_check};
use troth_core::{Timestamp, validate_event};

/// SplitMix64: small, seeded, the same sequence on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

const HOSTILE_TEXT: &[&str] = &[
    "9999-12-31T23:59:00Z",
    "2199-12-31T23:59:59.999999Z",
    "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-11-23T09:00:00+23:59",
    "2026-11-23T09:00:00-23:59",
    "2026-11-23T09:00:00.999999999Z",
    "",
    "\u{0}",
    "👩‍👩‍👧",
    "in_stock",
    "ships_by",
    "shipment:s1",
    "9000000000000000",
];

/// Instants at the edges of what is accepted, which must be handled all the way through.
const EDGE_TIMES: &[&str] = &[
    "2199-12-31T23:59:59.999999Z",
    "2199-12-31T23:59:00+00:00",
    "2199-06-30T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "1970-01-01T00:00:00.000001+00:00",
];

fn hostile_value(rng: &mut Rng) -> Value {
    if rng.next().is_multiple_of(2) {
        return json!(rng.pick(EDGE_TIMES));
    }
    match rng.next() % 10 {
        0 => json!(i64::MAX),
        1 => json!(i64::MIN),
        2 => json!(u64::MAX),
        3 => json!(1e308),
        4 => json!(-1e-308),
        5 => json!(null),
        6 => json!([]),
        7 => json!({}),
        _ => json!(rng.pick(HOSTILE_TEXT)),
    }
}

/// Events that make promises in the retail map, and others with instants.
fn base_events() -> Vec<Value> {
    let t = "2026-11-23T09:00:00Z";
    vec![
        json!({"id": "o1", "type": "order.placed", "time": t, "subject": "order:o1", "customer": {"id": "c"},
               "data": {"order": "o1", "items": [{"sku": "a", "qty": 1, "price": 10}], "total": 10, "currency": "EUR",
                        "delivery": "home", "promised_from": t, "promised_to": "2026-11-25T18:00:00Z"}}),
        json!({"id": "w1", "type": "shipment.window_set", "time": t, "subject": "shipment:s1", "customer": {"id": "c"},
               "data": {"window_start": "2026-11-23T11:00:00Z", "window_end": "2026-11-23T12:00:00Z"}}),
        json!({"id": "k1", "type": "case.opened", "time": t, "subject": "case:k1", "customer": {"id": "c"},
               "data": {"case": "k1", "category": "other", "team": "support"}}),
        json!({"id": "cb", "type": "callback.promised", "time": t, "subject": "case:k1", "customer": {"id": "c"},
               "data": {"due": "2026-11-23T10:00:00Z"}}),
        json!({"id": "r1", "type": "refund.promised", "time": t, "subject": "order:o1", "customer": {"id": "c"},
               "data": {"due": "2026-11-27T10:00:00Z", "amount": 10}}),
        json!({"id": "a1", "type": "availability.shown", "time": t, "customer": {"id": "c"},
               "data": {"sku": "a", "store": "s", "claim": "ships_by", "ships_by": "2026-11-24T10:00:00Z"}}),
        json!({"id": "h1", "type": "shipment.handed_over", "time": t, "subject": "shipment:s1", "customer": {"id": "c"}, "data": {}}),
        json!({"id": "x1", "type": "x.anything", "time": t, "data": {"due": t, "nested": {"deep": [t]}}}),
    ]
}

/// Every leaf (and the envelope's fields) replaced by a hostile value, one or a few at a time.
fn mutate(event: &Value, rng: &mut Rng) -> Value {
    let mut event = event.clone();
    let mutations = 1 + rng.next() % 3;
    for _ in 0..mutations {
        // Walk down to a random node, noting its JSON pointer, then replace it.
        let mut pointer = String::new();
        let mut at = &event;
        loop {
            match at {
                Value::Object(map) if !map.is_empty() && !rng.next().is_multiple_of(3) => {
                    let keys: Vec<&String> = map.keys().collect();
                    let key = *rng.pick(&keys);
                    pointer.push('/');
                    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    at = &map[key];
                }
                Value::Array(items) if !items.is_empty() && !rng.next().is_multiple_of(3) => {
                    let i = (rng.next() % items.len() as u64) as usize;
                    pointer.push_str(&format!("/{i}"));
                    at = &items[i];
                }
                _ => break,
            }
        }
        let value = hostile_value(rng);
        *event.pointer_mut(&pointer).unwrap() = value;
    }
    event
}

#[test]
fn no_event_makes_validation_or_the_promise_engine_fail() {
    let map = parse_journey(include_str!("../../../journeys/retail.toml")).unwrap();
    let book = PromiseBook::new(&map);
    let mut rng = Rng(0x7407_7407);
    let bases = base_events();
    let mut accepted = 0;
    for round in 0..20_000 {
        let event = mutate(rng.pick(&bases), &mut rng);
        let text = event.to_string();
        let Ok(valid) = validate_event(&text) else {
            continue;
        };
        accepted += 1;
        assert!(!valid.time.to_string().is_empty());
        let customer = Some("cus_1");
        for change in book.on_event(&valid, &[], customer) {
            let troth_core::promise::Change::Made(made) = &change else {
                continue;
            };
            let customer = event.get("customer").map(Value::to_string);
            let recorded = change.event(made, customer.as_deref()).unwrap_or_else(|rejection| {
                panic!(
                    "round {round}: {text}\nderives {change:?}\nwhich is refused: {}",
                    rejection.error
                )
            });
            // The event as given is the event its text reads as.
            match validate_event(&recorded.raw) {
                Ok(read) => assert_eq!(format!("{read:?}"), format!("{recorded:?}"), "round {round}: {text}"),
                Err(rejection) => panic!(
                    "round {round}: {text}\nderives {}\nwhich is refused: {}",
                    recorded.raw, rejection.error
                ),
            }
            // The clock, long after, breaks or lapses it with an event that validates too.
            let _ = next_check(made);
            if let Some(later) = book.on_clock(made, Timestamp::LATEST) {
                let recorded = later.event(made, customer.as_deref());
                let read = recorded.as_ref().ok().and_then(|r| validate_event(&r.raw).ok());
                assert_eq!(
                    format!("{read:?}"),
                    format!("{:?}", recorded.ok()),
                    "round {round}: {text}"
                );
            }
        }
    }
    assert!(
        accepted > 1_000,
        "the mutations must leave many events valid, not {accepted}"
    );
}

/// Segment messages as SDKs send them, in a batch with its own `sentAt` and `context`.
fn segment_batch() -> Value {
    let t = "2026-11-23T09:00:00Z";
    json!({
        "sentAt": "2026-11-23T09:05:00Z",
        "context": {"library": {"name": "analytics.js"}, "traits": {"email": "ann@example.org"}},
        "batch": [
            {"type": "track", "messageId": "m1", "userId": "u", "event": "Order Completed", "timestamp": t,
             "properties": {"order_id": "o1", "total": 35.6, "currency": "EUR",
                            "products": [{"sku": "a", "quantity": 2, "price": 17.8}]}},
            {"type": "track", "messageId": "m2", "anonymousId": "a", "event": "Order Refunded", "originalTimestamp": t,
             "properties": {"order_id": "o1", "revenue": "10.00", "currency": "JPY"}},
            {"type": "identify", "userId": 7, "traits": {"email": "b@example.org", "phone": "+44 20 7946 0000"}},
            {"type": "page", "anonymousId": "a", "properties": {"path": "/"}, "context": {"page": {"url": "u"}}},
            {"type": "screen", "userId": "u", "name": "Home", "sentAt": t},
            {"type": "group", "userId": "u", "groupId": "g", "traits": {"name": "Acme"}},
            {"type": "alias", "userId": "u", "previousId": "a"},
        ],
    })
}

#[test]
fn no_segment_message_makes_reading_fail_and_errors_name_the_senders_field() {
    use troth_core::segment::{Batch, EventMap, message_key, read};
    let map = EventMap::default();
    let mut rng = Rng(0x5e6_3e47);
    let base = segment_batch();
    let received = Timestamp::parse("2026-11-23T09:01:00Z").unwrap();
    let mut accepted = 0;
    for round in 0..20_000 {
        let body = mutate(&base, &mut rng);
        let Some(messages) = body["batch"].as_array() else {
            continue;
        };
        let batch = Batch {
            received,
            call: None,
            sent_at: body.get("sentAt"),
            context: body.get("context").and_then(Value::as_object),
        };
        for (i, message) in messages.iter().enumerate() {
            let _ = message_key(message);
            let at = format!("batch[{i}]");
            match read(message, &batch, &map, &at) {
                Ok(event) => {
                    accepted += 1;
                    assert!(validate_event(&event.raw).is_ok(), "round {round}: {}", event.raw);
                }
                Err(error) => assert!(
                    error.field.starts_with(&at) || ["sentAt", "context"].iter().any(|f| error.field.starts_with(f)),
                    "round {round}: {message}: {error}"
                ),
            }
        }
    }
    assert!(
        accepted > 10_000,
        "the mutations must leave many messages readable, not {accepted}"
    );
}

#[test]
fn no_osmand_report_makes_the_parser_fail() {
    let mut rng = Rng(5055);
    let keys = [
        "id",
        "deviceid",
        "lat",
        "lon",
        "location",
        "timestamp",
        "speed",
        "bearing",
        "heading",
        "altitude",
        "accuracy",
        "batt",
        "charge",
        "valid",
    ];
    let values = [
        "9000000000000000",
        "9223372036854775807",
        "-9223372036854775808",
        "1e308",
        "-1e308",
        "NaN",
        "inf",
        "-0",
        "52.5",
        "13.4",
        "52.5,13.4",
        ",",
        "",
        "2026-11-23 09:00:00",
        "2026-11-23T09:00:00+0100",
        "9999-12-31T23:59:59Z",
        "true",
        "1",
        "abc",
    ];
    let now = Timestamp::parse("2026-11-23T09:00:00Z").unwrap();
    for _ in 0..20_000 {
        let n = 1 + rng.next() % 8;
        let params: Vec<(&str, &str)> = (0..n).map(|_| (*rng.pick(&keys), *rng.pick(&values))).collect();
        if let Ok(report) = parse_osmand_params(params.iter().copied(), now) {
            for fix in &report.fixes {
                assert!(fix.lat.is_finite() && fix.lon.is_finite(), "{params:?}");
                assert!(
                    fix.at >= Timestamp::EARLIEST && fix.at <= Timestamp::LATEST,
                    "{params:?}"
                );
                let _ = fix.event_data(None).to_string();
                let _ = fix.at.to_string();
            }
        }
    }
}
