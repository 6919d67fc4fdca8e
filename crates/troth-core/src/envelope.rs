//! The event envelope (DESIGN.md §4) and the validation of one event.

use serde_json::{Map, Value};

use crate::catalogue::EventData;
use crate::field::{FieldError, FromJson, Path, expected, field};
use crate::identity::{Identity, IdentityKind};
use crate::timestamp::Timestamp;
pub use crate::values::Channel;

/// The largest event accepted, in bytes of its JSON text.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// The longest event id accepted, in characters.
pub const MAX_ID_CHARS: usize = 128;

/// Who an event is about, as the sender knows them: any subset of these.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CustomerRef {
    pub identities: Vec<Identity>,
}

/// A validated event, ready to be appended.
#[derive(Debug, Clone)]
pub struct ValidEvent {
    pub id: String,
    pub event_type: String,
    pub time: Timestamp,
    pub subject: Option<String>,
    /// The journey touchpoint, when the sender named it.
    pub touchpoint: Option<String>,
    /// The channel it happened on, when the sender named it.
    pub channel: Option<Channel>,
    pub customer: CustomerRef,
    pub data: EventData,
    /// The event's JSON text as it will be stored and served back.
    pub raw: String,
}

/// Validates one event given as JSON text.
pub fn validate_event(raw: &str) -> Result<ValidEvent, Rejection> {
    if raw.len() > MAX_EVENT_BYTES {
        return Err(Rejection::whole(format!(
            "is {} bytes; the limit is {MAX_EVENT_BYTES}",
            raw.len()
        )));
    }
    if let Some(valid) = read_plain(raw) {
        return Ok(valid);
    }
    let value: Value = serde_json::from_str(raw).map_err(|e| Rejection::whole(format!("is not valid JSON: {e}")))?;
    validate_value(value, Some(raw))
}

/// The envelope of an event as most are written: its fields borrowed from the text,
/// without building a JSON tree of the whole event first (which costs more than
/// every check together). Anything else (escapes in the envelope, an unknown or
/// repeated field, a wrong type) fails here and is read by the general path.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainEnvelope<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    time: &'a str,
    #[serde(default)]
    source: Option<&'a str>,
    #[serde(default)]
    channel: Option<&'a str>,
    #[serde(default)]
    touchpoint: Option<&'a str>,
    #[serde(default)]
    subject: Option<&'a str>,
    #[serde(default, borrow)]
    customer: Option<PlainCustomer<'a>>,
    #[serde(default, borrow)]
    data: Option<&'a serde_json::value::RawValue>,
}

/// The customer of a plain envelope.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainCustomer<'a> {
    #[serde(default)]
    id: Option<&'a str>,
    #[serde(default)]
    email: Option<&'a str>,
    #[serde(default)]
    phone: Option<&'a str>,
    #[serde(default)]
    external: Option<Value>,
}

impl PlainCustomer<'_> {
    /// The identities, as [`CustomerRef::from_json`] reads them; `None` where it would refuse.
    fn identities(self) -> Option<CustomerRef> {
        let mut identities = Vec::new();
        for (value, kind) in [
            (self.id, IdentityKind::Id),
            (self.email, IdentityKind::Email),
            (self.phone, IdentityKind::Phone),
        ] {
            if let Some(value) = value {
                identities.push(Identity::new(kind, value).ok().filter(|_| !value.is_empty())?);
            }
        }
        if let Some(external) = self.external.filter(|v| !v.is_null()) {
            for (system, id) in external.as_object()? {
                let id = id.as_str().filter(|id| !id.is_empty())?;
                identities.push(Identity::external(system, id).ok()?);
            }
        }
        (!identities.is_empty()).then_some(CustomerRef { identities })
    }
}

/// Validates an event written plainly, by the same rules as [`validate_value`];
/// `None` when it is not plain or not valid, for the general path to read again
/// and, if it must, reject with the field named.
fn read_plain(raw: &str) -> Option<ValidEvent> {
    let plain: PlainEnvelope<'_> = serde_json::from_str(raw).ok()?;
    let text = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
    if plain.id.is_empty() || plain.id.chars().count() > MAX_ID_CHARS || plain.event_type.is_empty() {
        return None;
    }
    if [plain.source, plain.touchpoint, plain.subject]
        .iter()
        .any(|s| s.is_some_and(str::is_empty))
    {
        return None;
    }
    let channel = match plain.channel {
        Some(c) => Some(Channel::parse(c)?),
        None => None,
    };
    if plain.subject.is_some_and(|s| !Subject::is_valid(s)) {
        return None;
    }
    let customer = match plain.customer {
        Some(c) => Some(c.identities()?),
        None => None,
    };
    let fields = Envelope {
        id: plain.id.to_owned(),
        event_type: plain.event_type.to_owned(),
        time: Timestamp::parse(plain.time).ok()?,
        channel,
        touchpoint: text(plain.touchpoint),
        subject: plain.subject.map(|s| Subject(s.to_owned())),
        customer,
    };
    let data = EventData::read_text(plain.event_type, plain.data)?;
    let event = finish(fields, data).ok()?;
    Some(ValidEvent {
        raw: raw.to_owned(),
        ..event
    })
}

/// An event troth writes itself (a promise's change), given typed. Its text is
/// written here, keys in order as a JSON tree would write them, and the event is
/// what reading that text gives, without reading it: where a field is not plain
/// (an empty string, an overlong id, a subject that is not `kind:id`, a customer not
/// written plainly) the text is read back and validated as any event is.
pub struct Derived<'a> {
    pub id: String,
    pub event_type: &'static str,
    pub time: Timestamp,
    pub subject: &'a str,
    pub touchpoint: &'a str,
    /// The customer as the making event sent it, JSON text.
    pub customer: Option<&'a str>,
    /// `data` typed, and as JSON text.
    pub data: EventData,
    pub data_text: String,
    /// Whether every string of `data` is non-empty, as the catalogue asks.
    pub data_plain: bool,
}

impl Derived<'_> {
    pub fn into_event(self) -> Result<ValidEvent, Rejection> {
        use serde_json::value::RawValue;
        #[derive(serde::Serialize)]
        struct Text<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            customer: Option<&'a RawValue>,
            data: &'a RawValue,
            id: &'a str,
            source: &'static str,
            subject: &'a str,
            time: String,
            touchpoint: &'a str,
            #[serde(rename = "type")]
            event_type: &'a str,
        }
        let unwritable = |e: serde_json::Error| Rejection {
            id: Some(self.id.clone()),
            error: FieldError::new(EVENT_FIELD, format!("cannot be written as JSON: {e}")),
        };
        // A customer that is not JSON text is left out, as a JSON tree would leave it.
        let customer = self
            .customer
            .and_then(|text| serde_json::from_str::<&RawValue>(text).ok());
        let data = serde_json::from_str::<&RawValue>(&self.data_text).map_err(unwritable)?;
        let raw = serde_json::to_string(&Text {
            customer,
            data,
            id: &self.id,
            source: "troth",
            subject: self.subject,
            time: self.time.to_string(),
            touchpoint: self.touchpoint,
            event_type: self.event_type,
        })
        .map_err(unwritable)?;
        let identities = match customer {
            None => Some(CustomerRef::default()),
            Some(text) => serde_json::from_str::<PlainCustomer<'_>>(text.get())
                .ok()
                .and_then(PlainCustomer::identities),
        };
        let plain = self.data_plain
            && !self.id.is_empty()
            && self.id.chars().count() <= MAX_ID_CHARS
            && Subject::is_valid(self.subject)
            && !self.touchpoint.is_empty()
            && raw.len() <= MAX_EVENT_BYTES;
        match identities {
            Some(customer) if plain => Ok(ValidEvent {
                id: self.id,
                event_type: self.event_type.to_owned(),
                time: self.time,
                subject: Some(self.subject.to_owned()),
                touchpoint: Some(self.touchpoint.to_owned()),
                channel: None,
                customer,
                data: self.data,
                raw,
            }),
            _ => validate_event(&raw),
        }
    }
}

/// Validates one event already parsed; `raw` is its text when the caller has it.
pub fn validate_value(value: Value, raw: Option<&str>) -> Result<ValidEvent, Rejection> {
    let Value::Object(mut object) = value else {
        return Err(Rejection::whole(format!(
            "must be a JSON object, not {}",
            crate::field::kind_of(&value)
        )));
    };
    // Events exported by `GET /events` carry the server's own fields; a new store assigns its own.
    let had_server_fields = object.remove("seq").is_some() | object.remove("received_at").is_some();
    let id = object.get("id").and_then(Value::as_str).map(str::to_owned);
    let reject = |error: FieldError| Rejection { id: id.clone(), error };
    let valid = read_envelope(&object).map_err(reject)?;
    let raw = match raw {
        Some(raw) if !had_server_fields => raw.to_owned(),
        // Written straight into a buffer: `Display` goes through a formatter, byte
        // run by byte run, and was most of the engine's cost of each decision.
        _ => serde_json::to_string(&Value::Object(object))
            .map_err(|e| reject(FieldError::new(EVENT_FIELD, format!("cannot be written as JSON: {e}"))))?,
    };
    if raw.len() > MAX_EVENT_BYTES {
        return Err(reject(FieldError::new(
            EVENT_FIELD,
            format!("is {} bytes; the limit is {MAX_EVENT_BYTES}", raw.len()),
        )));
    }
    Ok(ValidEvent { raw, ..valid })
}

/// The field name used when a rejection concerns the event as a whole.
pub const EVENT_FIELD: &str = "event";

/// An event that failed validation: its id when it had one, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub id: Option<String>,
    pub error: FieldError,
}

impl Rejection {
    fn whole(message: String) -> Rejection {
        Rejection {
            id: None,
            error: FieldError::new(EVENT_FIELD, message),
        }
    }
}

const ENVELOPE_FIELDS: &[&str] = &[
    "id",
    "type",
    "time",
    "source",
    "channel",
    "customer",
    "subject",
    "touchpoint",
    "data",
];

fn read_envelope(object: &Map<String, Value>) -> Result<ValidEvent, FieldError> {
    let root = Path::Root("");
    let id: String = field(object, &root, "id")?;
    if id.chars().count() > MAX_ID_CHARS {
        return Err(FieldError::new(
            "id",
            format!("must be at most {MAX_ID_CHARS} characters"),
        ));
    }
    let event_type: String = field(object, &root, "type")?;
    let time: Timestamp = field(object, &root, "time")?;
    let _source: Option<String> = field(object, &root, "source")?;
    let channel: Option<Channel> = field(object, &root, "channel")?;
    let touchpoint: Option<String> = field(object, &root, "touchpoint")?;
    let subject: Option<Subject> = field(object, &root, "subject")?;
    let customer: Option<CustomerRef> = field(object, &root, "customer")?;
    if let Some(unknown) = object.keys().find(|k| !ENVELOPE_FIELDS.contains(&k.as_str())) {
        return Err(FieldError::new(
            unknown.as_str(),
            format!(
                "is not an envelope field (put event-specific fields in data); allowed: {}",
                ENVELOPE_FIELDS.join(", ")
            ),
        ));
    }
    complete(
        Envelope {
            id,
            event_type,
            time,
            channel,
            touchpoint,
            subject,
            customer,
        },
        object.get("data"),
    )
}

/// The envelope's fields, each valid on its own.
struct Envelope {
    id: String,
    event_type: String,
    time: Timestamp,
    channel: Option<Channel>,
    touchpoint: Option<String>,
    subject: Option<Subject>,
    customer: Option<CustomerRef>,
}

/// Reads the event's data by its type and checks what spans the envelope and the
/// data; the event's text is left for the caller to fill in.
fn complete(envelope: Envelope, data: Option<&Value>) -> Result<ValidEvent, FieldError> {
    if let Some(data) = data
        && !(data.is_object() || data.is_null())
    {
        return Err(expected(&Path::Root("").key("data"), "an object", data));
    }
    let data = match EventData::parse(&envelope.event_type, data) {
        Some(parsed) => parsed?,
        None => {
            return Err(FieldError::new(
                "type",
                format!(
                    "{:?} is not in the event catalogue; extension types must start with \"x.\"",
                    envelope.event_type
                ),
            ));
        }
    };
    finish(envelope, data)
}

/// Checks what spans the envelope and the event's data, read already.
fn finish(envelope: Envelope, data: EventData) -> Result<ValidEvent, FieldError> {
    let event_type = envelope.event_type;
    let subject = envelope.subject;
    if event_type == "courier.position" && subject.as_ref().is_none_or(|s| s.kind() != "driver") {
        return Err(FieldError::new(
            "subject",
            "must name the driver (driver:ID) for courier.position",
        ));
    }
    let mut customer = envelope.customer.unwrap_or_default();
    if let EventData::CustomerIdentified(identified) = &data {
        add_listed(
            &mut customer,
            identified.emails.iter().flatten(),
            IdentityKind::Email,
            "data.emails",
        )?;
        add_listed(
            &mut customer,
            identified.phones.iter().flatten(),
            IdentityKind::Phone,
            "data.phones",
        )?;
    }
    Ok(ValidEvent {
        id: envelope.id,
        event_type,
        time: envelope.time,
        subject: subject.map(|s| s.0),
        touchpoint: envelope.touchpoint,
        channel: envelope.channel,
        customer,
        data,
        raw: String::new(),
    })
}

fn add_listed<'a>(
    customer: &mut CustomerRef,
    values: impl Iterator<Item = &'a String>,
    kind: IdentityKind,
    field_name: &str,
) -> Result<(), FieldError> {
    for (i, value) in values.enumerate() {
        let identity = Identity::new(kind, value).map_err(|m| FieldError::new(format!("{field_name}[{i}]"), m))?;
        if !customer.identities.contains(&identity) {
            customer.identities.push(identity);
        }
    }
    Ok(())
}

/// What an event is about, `kind:id` (`order:o-17`).
struct Subject(String);

impl Subject {
    fn kind(&self) -> &str {
        self.0.split_once(':').map_or("", |(k, _)| k)
    }
}

impl Subject {
    fn is_valid(s: &str) -> bool {
        s.split_once(':').is_some_and(|(kind, id)| {
            !kind.is_empty() && !id.is_empty() && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
    }
}

impl FromJson for Subject {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        let s = String::from_json(value, path)?;
        if Subject::is_valid(&s) {
            Ok(Subject(s))
        } else {
            Err(path.error(format!(
                "must be kind:id with a lowercase kind, such as order:o-17, not {s:?}"
            )))
        }
    }
}

impl FromJson for CustomerRef {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        let object = value.as_object().ok_or_else(|| expected(path, "an object", value))?;
        let mut identities = Vec::new();
        for (key, kind) in [
            ("id", IdentityKind::Id),
            ("email", IdentityKind::Email),
            ("phone", IdentityKind::Phone),
        ] {
            if let Some(v) = field::<Option<String>>(object, path, key)? {
                identities.push(Identity::new(kind, &v).map_err(|m| path.key(key).error(m))?);
            }
        }
        if let Some(external) = object.get("external").filter(|v| !v.is_null()) {
            let ext_path = path.key("external");
            let systems = external
                .as_object()
                .ok_or_else(|| expected(&ext_path, "an object of system: id", external))?;
            for (system, id) in systems {
                let id_path = ext_path.key(system);
                let id = String::from_json(id, &id_path)?;
                identities.push(Identity::external(system, &id).map_err(|m| id_path.error(m))?);
            }
        }
        if let Some(unknown) = object
            .keys()
            .find(|k| !["id", "email", "phone", "external"].contains(&k.as_str()))
        {
            return Err(path
                .key(unknown)
                .error("is not a customer identity; use id, email, phone or external"));
        }
        if identities.is_empty() {
            return Err(path.error("must name the customer by at least one of id, email, phone, external"));
        }
        Ok(CustomerRef { identities })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Validates `event` and compares the outcome with `expect`: "ok" or "field: message".
    fn check(event: Value, expect: &str) {
        let got = match validate_value(event.clone(), None) {
            Ok(_) => "ok".to_owned(),
            Err(rejection) => rejection.error.to_string(),
        };
        assert_eq!(got, expect, "for {event}");
    }

    fn base(event_type: &str, data: Value) -> Value {
        serde_json::json!({"id": "e1", "type": event_type, "time": "2026-11-23T09:00:00Z", "data": data})
    }

    /// Both readings of `raw`, to compare: straight from the text, and as a tree.
    fn both_ways(raw: &str) -> (Option<String>, Option<String>) {
        let tree = validate_value(serde_json::from_str(raw).unwrap(), Some(raw));
        (
            read_plain(raw).map(|e| format!("{e:?}")),
            tree.ok().map(|e| format!("{e:?}")),
        )
    }

    #[test]
    fn plain_events_read_straight_from_the_text_as_the_general_path_reads_them() {
        for raw in [
            r#"{"id":"e1","type":"page.viewed","time":"2026-11-23T09:00:00Z","source":"web","channel":"web","customer":{"email":"Ann@Example.ORG"},"data":{"page":"/"}}"#,
            r#"{"id":"e2","type":"order.placed","time":"2026-11-23T09:00:00.5+01:00","subject":"order:o-1","touchpoint":"checkout","customer":{"id":"c-1","phone":"+44 20 7946 0000","external":{"shop":"42"}},"data":{"order":"o-1","items":[{"sku":"a","qty":2,"price":1250}],"total":2500,"currency":"EUR","delivery":"home"}}"#,
            r#"{"id":"e3","type":"customer.identified","time":"2026-11-23T09:00:00Z","customer":{"id":"c-1"},"data":{"emails":["b@example.org"],"traits":{"name":"Bo"}}}"#,
            r#"{"id":"e4","type":"x.coupon.scanned","time":"2026-11-23T09:00:00Z","channel":null,"customer":null,"data":{"anything":[1,2]}}"#,
            r#"{"id":"e5","type":"page.viewed","time":"2026-11-23T09:00:00Z","customer":{"email":"ÅSA@EXAMPLE.ORG"},"data":{"page":"/ä"}}"#,
        ] {
            let (plain, tree) = both_ways(raw);
            assert!(plain.is_some(), "read by the general path only: {raw}");
            assert_eq!(plain, tree, "{raw}");
        }
    }

    #[test]
    fn events_not_written_plainly_go_to_the_general_path() {
        for (raw, ok) in [
            // An escape in the envelope, the server's own fields, a repeated field.
            (
                r#"{"id":"e\"1","type":"page.viewed","time":"2026-11-23T09:00:00Z","data":{"page":"/"}}"#,
                true,
            ),
            (
                r#"{"id":"e1","seq":4,"type":"page.viewed","time":"2026-11-23T09:00:00Z","data":{"page":"/"}}"#,
                true,
            ),
            (
                r#"{"id":"e1","id":"e2","type":"page.viewed","time":"2026-11-23T09:00:00Z","data":{"page":"/"}}"#,
                true,
            ),
            // Invalid: for the general path to say why.
            (
                r#"{"id":"e1","source":"","type":"page.viewed","time":"2026-11-23T09:00:00Z","data":{"page":"/"}}"#,
                false,
            ),
            (
                r#"{"id":"e1","type":"page.viewed","time":"2026-11-23T09:00:00Z","subject":"Order:1","data":{"page":"/"}}"#,
                false,
            ),
            (
                r#"{"id":"e1","type":"page.viewed","time":"2026-11-23T09:00:00Z","channel":"fax","data":{"page":"/"}}"#,
                false,
            ),
            (
                r#"{"id":"e1","type":"page.viewed","time":"2026-11-23T09:00:00Z","customer":{},"data":{"page":"/"}}"#,
                false,
            ),
            (
                r#"{"id":"e1","type":"page.viewed","time":"2026-11-23T09:00:00Z","data":{"page":7}}"#,
                false,
            ),
        ] {
            assert!(read_plain(raw).is_none(), "{raw}");
            assert_eq!(validate_event(raw).is_ok(), ok, "{raw}");
        }
        let e = validate_event(
            r#"{"id":"e1","seq":4,"type":"page.viewed","time":"2026-11-23T09:00:00Z","data":{"page":"/"}}"#,
        )
        .unwrap();
        assert!(
            !e.raw.contains("seq"),
            "the server's fields are left out of the text kept: {}",
            e.raw
        );
    }

    /// The data read straight from the text accepts what the tree accepts, and reads
    /// it the same; everything else it leaves to the tree, which names the field.
    #[test]
    fn data_read_from_the_text_accepts_exactly_what_the_tree_accepts() {
        let event = |event_type: &str, data: &str| {
            format!(r#"{{"id":"e1","type":"{event_type}","time":"2026-11-23T09:00:00Z","data":{data}}}"#)
        };
        let order = |items: &str, rest: &str| {
            event(
                "order.placed",
                &format!(r#"{{"order":"o-1","items":{items},"total":2500,"currency":"EUR","delivery":"home"{rest}}}"#),
            )
        };
        let item = r#"[{"sku":"a","qty":2,"price":1250}]"#;
        // (event, read straight from the text, valid)
        let cases = [
            (order(item, ""), true, true),
            (order(item, r#","promised_from":null,"note":{"any":[1]}"#), true, true),
            (
                order(
                    item,
                    r#","promised_from":"2026-11-24T09:00:00Z","promised_to":"2026-11-24T08:00:00Z""#,
                ),
                false,
                false,
            ),
            (order(r#"[{"sku":"a","qty":0,"price":1250}]"#, ""), false, false),
            (order("[]", ""), false, false),
            (order(r#"[{"sku":"a","qty":2,"price":-1}]"#, ""), false, false),
            (order(r#"[{"sku":"a","qty":2}]"#, ""), false, false),
            (order(r#"[{"sku":"a","qty":2.5,"price":1}]"#, ""), false, false),
            (order(r#"{"sku":"a"}"#, ""), false, false),
            (order(item, r#","currency":"EUR""#), false, true),
            (event("page.viewed", r#"{"page":"/a\"b"}"#), true, true),
            (event("page.viewed", r#"{"pag\u0065":"/"}"#), false, true),
            (event("page.viewed", r#"{"page":""}"#), false, false),
            (event("page.viewed", r#"{"page":null}"#), false, false),
            (event("page.viewed", "{}"), false, false),
            (event("page.viewed", "[]"), false, false),
            (event("checkout.started", "null"), true, true),
            (event("loyalty.earned", r#"{"points":5,"reason":"order"}"#), true, true),
            (
                event("loyalty.earned", r#"{"points":9223372036854775808,"reason":"order"}"#),
                false,
                false,
            ),
            (
                event("loyalty.earned", r#"{"points":-5,"reason":"order"}"#),
                false,
                false,
            ),
            (
                event("loyalty.earned", r#"{"points":5.0,"reason":"order"}"#),
                false,
                false,
            ),
            (event("courier.position", r#"{"lat":91,"lon":0}"#), false, false),
            (
                event("survey.answered", r#"{"survey":"s","ces":6,"ces_scale":"effort"}"#),
                false,
                false,
            ),
            (
                event("survey.answered", r#"{"survey":"s","nps":10,"ces_scale":"effort"}"#),
                true,
                true,
            ),
            (event("survey.answered", r#"{"survey":"s"}"#), false, false),
            (
                event("goodwill.given", r#"{"kind":"points","points":5,"reason":"late"}"#),
                true,
                true,
            ),
            (
                event("goodwill.given", r#"{"kind":"cash","points":5,"reason":"late"}"#),
                false,
                false,
            ),
            (event("x.scanned", r#"{"any":[1,{"b":null}]}"#), true, true),
            (event("x.scanned", "[1]"), false, false),
            (event("no.such", "{}"), false, false),
        ];
        for (raw, plain, valid) in cases {
            let (fast, tree) = both_ways(&raw);
            assert_eq!(fast.is_some(), plain, "read straight from the text: {raw}");
            assert_eq!(tree.is_some(), valid, "valid: {raw}");
            if fast.is_some() {
                assert_eq!(fast, tree, "{raw}");
            }
        }
    }

    #[test]
    fn envelope_errors_name_the_field() {
        use serde_json::json;
        check(
            json!({"type": "page.viewed", "time": "2026-11-23T09:00:00Z", "data": {"page": "/"}}),
            "id: is required",
        );
        check(
            json!({"id": 7, "type": "page.viewed", "time": "2026-11-23T09:00:00Z"}),
            "id: must be a string, not a number",
        );
        check(json!({"id": "e1", "time": "2026-11-23T09:00:00Z"}), "type: is required");
        check(json!({"id": "e1", "type": "page.viewed"}), "time: is required");
        check(
            json!({"id": "e1", "type": "page.viewed", "time": "23/11/2026", "data": {"page": "/"}}),
            "time: must be an RFC 3339 date-time such as 2026-11-23T09:30:00Z, not \"23/11/2026\"",
        );
        check(
            base("page.seen", json!({})),
            "type: \"page.seen\" is not in the event catalogue; extension types must start with \"x.\"",
        );
        check(base("x.coupon.scanned", json!({"anything": [1, 2]})), "ok");
        let mut e = base("page.viewed", json!({"page": "/"}));
        e["subject"] = json!("order");
        check(
            e.clone(),
            "subject: must be kind:id with a lowercase kind, such as order:o-17, not \"order\"",
        );
        e["subject"] = json!("order:o-17");
        check(e.clone(), "ok");
        e["customer"] = json!({});
        check(
            e.clone(),
            "customer: must name the customer by at least one of id, email, phone, external",
        );
        e["customer"] = json!({"email": "not-an-email"});
        check(e.clone(), "customer.email: must contain @");
        e["customer"] = json!({"external": {"shopify": 42}});
        check(e.clone(), "customer.external.shopify: must be a string, not a number");
        e["customer"] = json!({"id": "c-1"});
        e["custommer"] = json!({"id": "c-1"});
        check(
            e,
            "custommer: is not an envelope field (put event-specific fields in data); allowed: id, type, time, source, channel, customer, subject, touchpoint, data",
        );
        let long = "x".repeat(129);
        check(
            json!({"id": long, "type": "page.viewed", "time": "2026-11-23T09:00:00Z"}),
            "id: must be at most 128 characters",
        );
        check(json!([1]), "event: must be a JSON object, not an array");
    }

    #[test]
    fn catalogue_data_is_typed_and_ranged() {
        use serde_json::json;
        check(
            base("survey.answered", json!({"survey": "post-delivery", "nps": 11})),
            "data.nps: must be between 0 and 10, not 11",
        );
        check(
            base("survey.answered", json!({"survey": "post-delivery", "nps": "9"})),
            "data.nps: must be a whole number, not a string",
        );
        check(
            base("survey.answered", json!({"survey": "post-delivery", "nps": 9})),
            "ok",
        );
        check(
            base("survey.answered", json!({"survey": "s"})),
            "data: must carry at least one answer: nps, csat, ces or comment",
        );
        check(
            base("review.posted", json!({"rating": 0, "text": "meh", "site": "x"})),
            "data.rating: must be between 1 and 5, not 0",
        );
        check(base("page.viewed", json!({})), "data.page: is required");
        check(
            base("page.viewed", json!("home")),
            "data: must be an object, not a string",
        );
        let order = json!({
            "order": "o-1", "total": 1000, "currency": "EUR", "delivery": "home",
            "items": [{"sku": "a", "qty": 1, "price": 500}, {"sku": "b", "qty": 0, "price": 500}]
        });
        check(
            base("order.placed", order.clone()),
            "data.items[1].qty: must be at least 1",
        );
        let mut order = order;
        order["items"][1]["qty"] = json!(1);
        order["delivery"] = json!("drone");
        check(
            base("order.placed", order.clone()),
            "data.delivery: must be one of home|pickup|safe_place, not \"drone\"",
        );
        order["delivery"] = json!("pickup");
        order["currency"] = json!("euro");
        check(
            base("order.placed", order.clone()),
            "data.currency: must be a three-letter ISO 4217 code such as EUR, not \"euro\"",
        );
        order["currency"] = json!("EUR");
        order["promised_from"] = json!("2026-11-25T12:00:00Z");
        order["promised_to"] = json!("2026-11-25T11:00:00Z");
        check(
            base("order.placed", order.clone()),
            "data.promised_to: must be after promised_from",
        );
        order["promised_to"] = json!("2026-11-25T13:00:00Z");
        check(base("order.placed", order), "ok");
        check(
            base("availability.shown", json!({"sku": "t-1", "claim": "ships_by"})),
            "data.ships_by: is required when claim is ships_by",
        );
        let mut position = base("courier.position", json!({"lat": 91.0, "lon": 2.0}));
        position["subject"] = json!("driver:d-1");
        check(position.clone(), "data.lat: must be between -90 and 90, not 91");
        position["data"]["lat"] = json!(48.85);
        check(position.clone(), "ok");
        position["subject"] = json!("shipment:s-1");
        check(
            position,
            "subject: must name the driver (driver:ID) for courier.position",
        );
        check(
            base("customer.identified", json!({"emails": ["a@x.org", "nope"]})),
            "data.emails[1]: must contain @",
        );
    }

    #[test]
    fn every_catalogue_type_is_known() {
        for t in crate::catalogue::EVENT_TYPES {
            assert!(EventData::parse(t, None).is_some(), "{t}");
        }
    }

    #[test]
    fn oversized_events_are_rejected_whole() {
        let big = format!(
            r#"{{"id":"e1","type":"x.big","time":"2026-11-23T09:00:00Z","data":{{"blob":"{}"}}}}"#,
            "a".repeat(MAX_EVENT_BYTES)
        );
        let rejection = validate_event(&big).unwrap_err();
        assert_eq!(rejection.error.field, "event");
        assert!(
            rejection.error.message.contains("the limit is 65536"),
            "{}",
            rejection.error.message
        );
    }

    #[test]
    fn identified_events_add_listed_emails_and_phones() {
        let e = validate_value(
            base(
                "customer.identified",
                serde_json::json!({"emails": ["Ann@Example.org"], "phones": ["+44 20 7946 0000"]}),
            ),
            None,
        )
        .unwrap();
        let ids: Vec<String> = e.customer.identities.iter().map(|i| i.to_string()).collect();
        assert_eq!(ids, ["email:ann@example.org", "phone:+442079460000"]);
    }

    #[test]
    fn server_fields_are_dropped_on_reimport() {
        let mut e = base("page.viewed", serde_json::json!({"page": "/"}));
        e["seq"] = serde_json::json!(17);
        e["received_at"] = serde_json::json!("2026-11-23T09:00:01Z");
        let valid = validate_value(e, None).unwrap();
        assert!(
            !valid.raw.contains("seq") && !valid.raw.contains("received_at"),
            "{}",
            valid.raw
        );
    }

    /// A derived event given typed is the event its text reads as, and where a field
    /// is not plain it is read from the text: refused where the text would be.
    #[test]
    fn a_derived_event_is_what_its_text_reads_as() {
        use crate::catalogue::PromiseAtRisk;
        let derived = |subject: &'static str, customer: Option<&'static str>, id: String| Derived {
            id,
            event_type: "promise.at_risk",
            time: Timestamp::parse("2026-11-23T09:00:00.5Z").unwrap(),
            subject,
            touchpoint: "delivery",
            customer,
            data: EventData::PromiseAtRisk(PromiseAtRisk { promise: "p\"1".into() }),
            data_text: r#"{"promise":"p\"1"}"#.into(),
            data_plain: true,
        };
        let id = || "troth.p1.at_risk".to_owned();
        for customer in [
            None,
            Some(r#"{"email":"Ann@Example.org","id":"c1"}"#),
            // Not plain: read from the text, to the same event.
            Some(r#"{"\u0069d":"c2"}"#),
            Some(r#"{"external":{"shop":"42"}}"#),
            // Not JSON: left out, as a tree leaves it.
            Some("{"),
        ] {
            let event = derived("order:o-1", customer, id()).into_event().unwrap();
            let read = validate_event(&event.raw).unwrap();
            assert_eq!(format!("{event:?}"), format!("{read:?}"), "{customer:?}");
        }
        let event = derived("order:o-1", Some(r#"{"id":"c1"}"#), id()).into_event().unwrap();
        assert_eq!(
            event.raw,
            r#"{"customer":{"id":"c1"},"data":{"promise":"p\"1"},"id":"troth.p1.at_risk","source":"troth","subject":"order:o-1","time":"2026-11-23T09:00:00.500000Z","touchpoint":"delivery","type":"promise.at_risk"}"#,
            "keys in order"
        );
        // What the text would be refused for, the event is refused for.
        let refused = derived("order", None, id()).into_event().unwrap_err();
        assert_eq!(refused.error.field, "subject");
        let refused = derived("order:o-1", Some(r#"{"id":""}"#), id())
            .into_event()
            .unwrap_err();
        assert!(refused.error.field.starts_with("customer"), "{refused:?}");
        let refused = derived("order:o-1", None, "x".repeat(MAX_ID_CHARS + 1))
            .into_event()
            .unwrap_err();
        assert_eq!(refused.error.field, "id");
    }
}
