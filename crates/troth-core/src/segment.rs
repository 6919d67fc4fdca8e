//! Messages of Segment's HTTP Tracking API read as troth events, so that
//! Segment's and RudderStack's SDKs can send to troth unchanged (docs/segment.md).
//!
//! One message (`identify`, `track`, `page`, `screen`, `group`, `alias`) becomes
//! one event:
//!
//! - **id** — `seg.{messageId}`: a message sent again is a duplicate and stores
//!   nothing. Without a messageId, `seg-hash.{h}` where `h` is the SHA-256 of the
//!   message less its `sentAt` (which SDKs change when they retry); a messageId
//!   too long for an event id gives `seg-long.{SHA-256 of it}`.
//! - **time** — the device's `timestamp` (else `originalTimestamp`) corrected
//!   for the device's clock as Segment does, `receivedAt − (sentAt − timestamp)`
//!   when a `sentAt` is known (the message's, else the batch's): the device's clock
//!   is off by `sentAt − receivedAt` at sending (network time counts as skew), and was
//!   off by as much when the event happened. Without `sentAt`, `timestamp` as
//!   sent; without either, the time troth received it.
//! - **customer** — `userId` → `id`, `anonymousId` → `external.segment_anon`,
//!   `traits.email` (identify) or `context.traits.email` → `email`, and `phone` alike.
//! - **type and data** — `track`: the [`EventMap`]; `identify` →
//!   `customer.identified`; `page`, `screen` → `page.viewed`; `group` →
//!   `x.segment.group`; `alias` → `x.segment.alias`, whose customer names both ids
//!   so identity resolution merges them.
//!
//! Errors name the field as the sender wrote it (`batch[3].properties.products[0].price`),
//! also when it is troth's validation of the event that refused it.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::catalogue::{is_catalogue_type, is_extension_type};
use crate::envelope::{MAX_ID_CHARS, ValidEvent, validate_value};
use crate::field::{FieldError, FromJson, Path, expected, field, string_enum};
use crate::identity::{Identity, IdentityKind};
use crate::timestamp::Timestamp;

/// The external system under which `anonymousId`s are kept: `ext:segment_anon:…`.
pub const ANONYMOUS_SYSTEM: &str = "segment_anon";

/// The prefix of events made from messages with a messageId.
pub const ID_PREFIX: &str = "seg.";

string_enum!(
    /// Segment's calls; a batch's messages say theirs in `type`.
    Call { Identify = "identify", Track = "track", Page = "page", Screen = "screen", Group = "group", Alias = "alias" }
);

/// `track` event names troth maps by default, following Segment's e-commerce spec
/// (v2), each to the catalogue type it means. Only where the spec's data carries
/// what the catalogue type needs.
pub const DEFAULT_EVENTS: &[(&str, &str)] = &[
    ("Order Completed", "order.placed"),
    ("Order Refunded", "refund.issued"),
    ("Products Searched", "search.performed"),
    ("Checkout Started", "checkout.started"),
];

/// Which troth type a `track` call becomes, by its event name: [`DEFAULT_EVENTS`]
/// with the configured ones over them. Names match whatever their case and
/// separators (`Order Completed`, `order_completed`). A name not in the table
/// becomes the extension type `x.segment.{name}` (see [`slug`]), and is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMap {
    /// By the name's slug: (the name as written, the troth type).
    types: BTreeMap<String, (String, String)>,
}

/// Why a configured mapping cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error(
        "{name:?} maps to {event_type:?}, which is neither in the event catalogue nor an extension type (starting with \"x.\")"
    )]
    UnknownType { name: String, event_type: String },
    #[error("{first:?} and {second:?} are the same event name (case and separators do not count)")]
    SameName { first: String, second: String },
    #[error("the event name {name:?} has no letter or digit")]
    NoName { name: String },
}

impl Default for EventMap {
    fn default() -> Self {
        let types = DEFAULT_EVENTS
            .iter()
            .map(|(name, t)| (slug(name), ((*name).to_owned(), (*t).to_owned())))
            .collect();
        EventMap { types }
    }
}

impl EventMap {
    /// This table with `overrides` (event name → troth type) over it.
    pub fn with_overrides<'a>(
        mut self,
        overrides: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<EventMap, MapError> {
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for (name, event_type) in overrides {
            let key = slug(name);
            if key.is_empty() {
                return Err(MapError::NoName { name: name.to_owned() });
            }
            if !(is_catalogue_type(event_type) || is_extension_type(event_type)) {
                return Err(MapError::UnknownType {
                    name: name.to_owned(),
                    event_type: event_type.to_owned(),
                });
            }
            if let Some(first) = seen.insert(key.clone(), name) {
                return Err(MapError::SameName {
                    first: first.to_owned(),
                    second: name.to_owned(),
                });
            }
            self.types.insert(key, (name.to_owned(), event_type.to_owned()));
        }
        Ok(self)
    }

    /// The troth type mapped to a `track` event name, if one is.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.types.get(&slug(name)).map(|(_, t)| t.as_str())
    }

    /// The troth type a `track` call named `name` becomes.
    pub fn event_type(&self, name: &str) -> String {
        match self.get(name) {
            Some(t) => t.to_owned(),
            None => extension_type(name),
        }
    }

    /// Every mapping, as (event name, troth type), by name.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.types.values().map(|(name, t)| (name.as_str(), t.as_str()))
    }
}

/// The extension type of an unmapped `track` name: `x.segment.{slug}`, or
/// `x.segment.track` for a name without letters or digits.
pub fn extension_type(name: &str) -> String {
    match slug(name) {
        s if s.is_empty() => "x.segment.track".to_owned(),
        s => format!("x.segment.{s}"),
    }
}

/// The longest slug kept, in characters.
const MAX_SLUG_CHARS: usize = 64;

/// An event name as a key: lower case, letters and digits kept, every run of
/// anything else one `_`, none at the ends; at most 64 characters.
/// `"Order Completed"` and `"order_completed"` are both `order_completed`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    let mut gap = false;
    for c in name.chars() {
        if c.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.extend(c.to_lowercase());
        } else {
            gap = true;
        }
        if out.chars().count() >= MAX_SLUG_CHARS {
            break;
        }
    }
    out.chars().take(MAX_SLUG_CHARS).collect()
}

/// What the messages of one request share.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// When troth received the request (Segment's `receivedAt`).
    pub received: Timestamp,
    /// The call a single-call route takes (`/v1/track`); `None` for a batch, whose
    /// messages each name theirs in `type`.
    pub call: Option<Call>,
    /// A batch's own `sentAt`, for its messages that have none.
    pub sent_at: Option<&'a Value>,
    /// A batch's own `context`, whose keys hold for its messages that lack them.
    pub context: Option<&'a Map<String, Value>>,
}

impl Batch<'_> {
    /// A single call received at `received`.
    pub fn single(received: Timestamp, call: Call) -> Batch<'static> {
        Batch {
            received,
            call: Some(call),
            sent_at: None,
            context: None,
        }
    }
}

/// A message as a troth event, before troth's validation.
#[derive(Debug, Clone)]
pub struct Mapped {
    pub event: Value,
    /// Where the event's fields came from: (troth path, the sender's path), so
    /// that validation errors can name the sender's field.
    origins: Vec<(String, String)>,
}

/// Reads one message as a validated troth event. `at` is where the message is in
/// the body (`batch[3]`, or empty for a single call); errors name fields under it.
pub fn read(message: &Value, batch: &Batch<'_>, map: &EventMap, at: &str) -> Result<ValidEvent, FieldError> {
    let Mapped { event, origins } = to_event(message, batch, map, at)?;
    validate_value(event, None).map_err(|rejection| locate(&origins, rejection.error, at))
}

/// `error`, about the troth event, as an error about the message at `at`: the
/// longest troth path it falls under is replaced by the sender's path it came from.
fn locate(origins: &[(String, String)], error: FieldError, at: &str) -> FieldError {
    let inside = |prefix: &str| {
        error.field == prefix
            || error
                .field
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with(['.', '[']))
    };
    let origin = origins
        .iter()
        .filter(|(troth, _)| inside(troth))
        .max_by_key(|(troth, _)| troth.len());
    match origin {
        Some((troth, sender)) => FieldError::new(format!("{sender}{}", &error.field[troth.len()..]), error.message),
        // A rule about the event as a whole (its size): the message is at fault.
        None => FieldError::new(
            if at.is_empty() { "message" } else { at },
            format!("as troth's {}: {}", error.field, error.message),
        ),
    }
}

/// The troth event for one message, not yet validated against the catalogue.
pub fn to_event(message: &Value, batch: &Batch<'_>, map: &EventMap, at: &str) -> Result<Mapped, FieldError> {
    let root = Path::Root(at);
    let object = message
        .as_object()
        .ok_or_else(|| expected(&root, "an object", message))?;
    let call = match batch.call {
        Some(call) => call,
        None => field::<Call>(object, &root, "type")?,
    };
    let context = Context::new(object, batch, &root)?;
    let mut origins = Vec::new();
    let customer = customer(object, call, &context, &root)?;
    let (event_type, data, subject) = match call {
        Call::Identify => {
            let traits = traits(object, &root)?
                .or_else(|| context.own_traits())
                .unwrap_or_default();
            origins.push(("data.traits".to_owned(), root.key("traits").to_string()));
            ("customer.identified".to_owned(), json!({ "traits": traits }), None)
        }
        Call::Track => {
            let name: String = field(object, &root, "event")?;
            let props = root.key("properties");
            let properties = properties(object, &root)?;
            let event_type = map.event_type(&name);
            let data = track_data(&event_type, &name, &properties, &props, &mut origins)?;
            if !is_extension_type(&event_type) {
                // What a catalogue type's data is read from, as a whole.
                origins.push(("data".to_owned(), props.to_string()));
            }
            let subject = id_text(&properties, &props, "order_id")?.map(|order| format!("order:{order}"));
            (event_type, data, subject)
        }
        Call::Page | Call::Screen => {
            let (page, from) = viewed(call, object, &context, &root)?;
            origins.push(("data.page".to_owned(), from));
            ("page.viewed".to_owned(), json!({ "page": page }), None)
        }
        Call::Group => {
            let group = required_id(object, &root, "groupId")?;
            let mut data = json!({ "groupId": group });
            if let Some(traits) = traits(object, &root)? {
                data["traits"] = Value::Object(traits);
            }
            ("x.segment.group".to_owned(), data, None)
        }
        Call::Alias => {
            let data = json!({
                "previousId": required_id(object, &root, "previousId")?,
                "userId": required_id(object, &root, "userId")?,
            });
            ("x.segment.alias".to_owned(), data, None)
        }
    };
    let mut event = json!({
        "id": event_id(object, &root)?,
        "type": event_type,
        "time": event_time(object, batch, &root)?.to_string(),
        "source": context.library().unwrap_or("segment"),
        "customer": customer,
        "data": data,
    });
    if let Some(channel) = context.channel(call) {
        event["channel"] = channel.into();
    }
    if let Some(subject) = subject {
        event["subject"] = subject.into();
        origins.push(("subject".to_owned(), root.key("properties").key("order_id").to_string()));
    }
    Ok(Mapped { event, origins })
}

/// What a message is known by, whether or not it can be read: the id its event
/// has or would have, else the hash of all of it.
pub fn message_key(message: &Value) -> String {
    message
        .as_object()
        .and_then(|object| event_id(object, &Path::Root("")).ok())
        .unwrap_or_else(|| format!("seg-hash.{}", digest(message.to_string().as_bytes())))
}

/// The event's id: see the module's documentation.
fn event_id(object: &Map<String, Value>, root: &Path<'_>) -> Result<String, FieldError> {
    match id_text(object, root, "messageId")? {
        Some(id) if ID_PREFIX.len() + id.chars().count() <= MAX_ID_CHARS => Ok(format!("{ID_PREFIX}{id}")),
        Some(id) => Ok(format!("seg-long.{}", digest(id.as_bytes()))),
        None => {
            let mut content = object.clone();
            // What a retry changes, and the key, which is not part of the message.
            content.remove("sentAt");
            content.remove("writeKey");
            Ok(format!(
                "seg-hash.{}",
                digest(Value::Object(content).to_string().as_bytes())
            ))
        }
    }
}

/// The first 128 bits of SHA-256, in hex.
fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The event's time: see the module's documentation.
fn event_time(object: &Map<String, Value>, batch: &Batch<'_>, root: &Path<'_>) -> Result<Timestamp, FieldError> {
    let read = |key| field::<Option<Timestamp>>(object, root, key).map(|t| t.map(|t| (t, key)));
    let device = match read("timestamp")? {
        Some(device) => Some(device),
        None => read("originalTimestamp")?,
    };
    let sent = match read("sentAt")? {
        Some((sent, _)) => Some(sent),
        None => match batch.sent_at {
            Some(v) if !v.is_null() => Some(Timestamp::from_json(v, &Path::Root("sentAt"))?),
            _ => None,
        },
    };
    let Some((device, key)) = device else {
        return Ok(batch.received);
    };
    let Some(sent) = sent else { return Ok(device) };
    let corrected = batch.received.plus_us(device.micros().saturating_sub(sent.micros()));
    Timestamp::from_micros(corrected.micros()).map_err(|_| {
        root.key(key).error(format!(
            "corrected for the device's clock (receivedAt − (sentAt − {key})) it is {corrected}, which is not {}",
            Timestamp::range_text()
        ))
    })
}

/// Who the message is about, as an envelope's `customer`.
fn customer(
    object: &Map<String, Value>,
    call: Call,
    context: &Context<'_>,
    root: &Path<'_>,
) -> Result<Value, FieldError> {
    let mut customer = Map::new();
    let user = id_text(object, root, "userId")?;
    if let Some(user) = &user {
        Identity::new(IdentityKind::Id, user).map_err(|m| root.key("userId").error(m))?;
        customer.insert("id".into(), user.as_str().into());
    }
    // An alias's previousId is the id the user had: most often the anonymous one.
    let anonymous_key = if call == Call::Alias {
        "previousId"
    } else {
        "anonymousId"
    };
    let anonymous = id_text(object, root, anonymous_key)?;
    if let Some(anonymous) = &anonymous {
        Identity::external(ANONYMOUS_SYSTEM, anonymous).map_err(|m| root.key(anonymous_key).error(m))?;
        customer.insert("external".into(), json!({ ANONYMOUS_SYSTEM: anonymous }));
    }
    if user.is_none() && anonymous.is_none() {
        return Err(root.key("userId").error(format!("is required, or {anonymous_key}")));
    }
    for (key, kind) in [("email", IdentityKind::Email), ("phone", IdentityKind::Phone)] {
        // A group's traits are the group's; only identify's are the user's.
        let own = (call == Call::Identify)
            .then(|| object.get("traits").and_then(|t| t.get(key)))
            .flatten()
            .filter(|v| !is_blank(v))
            .map(|v| (v, root.key("traits").key(key).to_string()));
        let Some((value, path)) = own.or_else(|| context.find(&["traits", key])) else {
            continue;
        };
        let text = value
            .as_str()
            .ok_or_else(|| FieldError::new(path.clone(), "must be a string"))?;
        Identity::new(kind, text).map_err(|m| FieldError::new(path, m))?;
        customer.insert(key.into(), text.into());
    }
    Ok(Value::Object(customer))
}

/// The data of a `track` call that becomes `event_type`.
fn track_data(
    event_type: &str,
    name: &str,
    properties: &Map<String, Value>,
    props: &Path<'_>,
    origins: &mut Vec<(String, String)>,
) -> Result<Value, FieldError> {
    let mut from = |troth: String, sender: String| origins.push((troth, sender));
    match event_type {
        "order.placed" => order_placed(properties, props, &mut from),
        "refund.issued" => {
            let currency = currency(properties, props)?;
            let (key, amount) = amount(properties, props, &currency)?;
            from("data.amount".into(), props.key(key).to_string());
            Ok(json!({ "amount": amount }))
        }
        t if is_extension_type(t) => Ok(json!({ "event": name, "properties": properties })),
        // Another catalogue type takes the properties as its data, named as the catalogue names them.
        _ => Ok(Value::Object(properties.clone())),
    }
}

/// `Order Completed` as `order.placed`: amounts from currency units to minor
/// units, products to items. A delivery (`home`, `pickup`, `safe_place`) is not in
/// Segment's spec: `properties.delivery` when sent, else `home`.
fn order_placed(
    p: &Map<String, Value>,
    props: &Path<'_>,
    from: &mut dyn FnMut(String, String),
) -> Result<Value, FieldError> {
    let mut data = Map::new();
    data.insert("order".into(), required_id(p, props, "order_id")?.into());
    from("data.order".into(), props.key("order_id").to_string());
    let currency = currency(p, props)?;
    let (total_key, total) = amount(p, props, &currency)?;
    data.insert("total".into(), total.into());
    from("data.total".into(), props.key(total_key).to_string());
    data.insert("currency".into(), currency.as_str().into());
    from("data.currency".into(), props.key("currency").to_string());
    let products_path = props.key("products");
    let products = match p.get("products") {
        None | Some(Value::Null) => &Vec::new(),
        Some(Value::Array(products)) => products,
        Some(other) => return Err(expected(&products_path, "an array of products", other)),
    };
    from("data.items".into(), products_path.to_string());
    let mut items = Vec::with_capacity(products.len());
    for (i, product) in products.iter().enumerate() {
        let at = products_path.index(i);
        let product = product.as_object().ok_or_else(|| expected(&at, "an object", product))?;
        let item = format!("data.items[{i}]");
        let (sku_key, sku) = match (id_text(product, &at, "sku")?, id_text(product, &at, "product_id")?) {
            (Some(sku), _) => ("sku", sku),
            (None, Some(id)) => ("product_id", id),
            (None, None) => return Err(at.key("sku").error("is required, or product_id")),
        };
        from(format!("{item}.sku"), at.key(sku_key).to_string());
        // Segment's quantity is optional: one of it.
        let qty = product
            .get("quantity")
            .filter(|q| !q.is_null())
            .cloned()
            .unwrap_or(1.into());
        from(format!("{item}.qty"), at.key("quantity").to_string());
        let price_at = at.key("price");
        let price = match product.get("price") {
            None | Some(Value::Null) => return Err(price_at.error("is required: the unit price, e.g. 89.00")),
            Some(price) => minor_units(price, &currency, &price_at)?,
        };
        from(format!("{item}.price"), price_at.to_string());
        items.push(json!({ "sku": sku, "qty": qty, "price": price }));
    }
    data.insert("items".into(), items.into());
    data.insert(
        "delivery".into(),
        p.get("delivery")
            .filter(|d| !d.is_null())
            .cloned()
            .unwrap_or("home".into()),
    );
    from("data.delivery".into(), props.key("delivery").to_string());
    // Fields troth's order.placed has and the spec does not, when the sender adds them.
    for key in ["promised_from", "promised_to", "store"] {
        if let Some(value) = p.get(key).filter(|v| !v.is_null()) {
            data.insert(key.into(), value.clone());
        }
        from(format!("data.{key}"), props.key(key).to_string());
    }
    Ok(Value::Object(data))
}

/// The currency amounts are in, upper-cased (`usd` → `USD`); required, as troth
/// keeps amounts in minor units and needs the currency's decimals.
fn currency(p: &Map<String, Value>, props: &Path<'_>) -> Result<String, FieldError> {
    let at = props.key("currency");
    match p.get("currency") {
        None | Some(Value::Null) => Err(at.error("is required to read the amounts (an ISO 4217 code such as EUR)")),
        Some(v) => Ok(String::from_json(v, &at)?.trim().to_ascii_uppercase()),
    }
}

/// The amount of an order or a refund in minor units: `total`, else `revenue`, else `value`.
fn amount(p: &Map<String, Value>, props: &Path<'_>, currency: &str) -> Result<(&'static str, i64), FieldError> {
    for key in ["total", "revenue", "value"] {
        if let Some(v) = p.get(key).filter(|v| !v.is_null()) {
            return Ok((key, minor_units(v, currency, &props.key(key))?));
        }
    }
    Err(props
        .key("total")
        .error("is required (or revenue, or value): the amount in currency units, e.g. 35.60"))
}

/// An amount in currency units (`35.6`, or `"35.60"`) in minor units of
/// `currency` (`3560` for EUR, `36` for JPY).
fn minor_units(value: &Value, currency: &str, at: &Path<'_>) -> Result<i64, FieldError> {
    let units = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let Some(units) = units.filter(|u| u.is_finite()) else {
        return Err(at.error(format!("must be an amount such as 35.60, not {value}")));
    };
    if units < 0.0 {
        return Err(at.error(format!("must not be negative, not {value}")));
    }
    let scale = 10f64.powi(crate::money::minor_unit_digits(currency) as i32);
    let minor = (units * scale).round();
    // Beyond 2^53 an f64 no longer holds every whole number.
    if minor > 9_007_199_254_740_992.0 {
        return Err(at.error(format!("is too large, {value}")));
    }
    Ok(minor as i64)
}

/// What a page or screen call viewed, and the field it was read from.
fn viewed(
    call: Call,
    object: &Map<String, Value>,
    context: &Context<'_>,
    root: &Path<'_>,
) -> Result<(String, String), FieldError> {
    let props = root.key("properties");
    let properties = properties(object, root)?;
    let text = |v: &Value| v.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let own = |object: &Map<String, Value>, at: &Path<'_>, key: &str| {
        object
            .get(key)
            .and_then(text)
            .map(|page| (page, at.key(key).to_string()))
    };
    let in_context = |key| context.find(&["page", key]).and_then(|(v, at)| Some((text(v)?, at)));
    let found = match call {
        Call::Screen => own(object, root, "name").or_else(|| own(&properties, &props, "name")),
        _ => own(&properties, &props, "path")
            .or_else(|| in_context("path"))
            .or_else(|| own(&properties, &props, "url"))
            .or_else(|| in_context("url"))
            .or_else(|| own(object, root, "name")),
    };
    found.ok_or_else(|| match call {
        Call::Screen => root.key("name").error("is required: the screen viewed"),
        _ => props
            .key("path")
            .error("is required (or properties.url, or name): the page viewed"),
    })
}

/// A message's `properties`; none is empty.
fn properties(object: &Map<String, Value>, root: &Path<'_>) -> Result<Map<String, Value>, FieldError> {
    Ok(field::<Option<Map<String, Value>>>(object, root, "properties")?.unwrap_or_default())
}

/// A message's own `traits`, if it has them.
fn traits(object: &Map<String, Value>, root: &Path<'_>) -> Result<Option<Map<String, Value>>, FieldError> {
    field(object, root, "traits")
}

/// An id as Segment's SDKs send them: a string, or a number. Blank is none.
fn id_text(object: &Map<String, Value>, root: &Path<'_>, key: &str) -> Result<Option<String>, FieldError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(expected(&root.key(key), "a string", other)),
    }
}

fn required_id(object: &Map<String, Value>, root: &Path<'_>, key: &str) -> Result<String, FieldError> {
    id_text(object, root, key)?.ok_or_else(|| root.key(key).error("is required"))
}

fn is_blank(value: &Value) -> bool {
    value.is_null() || value.as_str().is_some_and(|s| s.trim().is_empty())
}

/// A message's `context`, with the batch's for the keys it lacks.
struct Context<'a> {
    own: Option<&'a Map<String, Value>>,
    /// Where the message's own context is (`batch[3].context`, `context`).
    own_path: String,
    batch: Option<&'a Map<String, Value>>,
}

impl<'a> Context<'a> {
    fn new(object: &'a Map<String, Value>, batch: &Batch<'a>, root: &Path<'_>) -> Result<Context<'a>, FieldError> {
        let at = root.key("context");
        let own = match object.get("context") {
            None | Some(Value::Null) => None,
            Some(Value::Object(context)) => Some(context),
            Some(other) => return Err(expected(&at, "an object", other)),
        };
        Ok(Context {
            own,
            own_path: at.to_string(),
            batch: batch.context,
        })
    }

    /// The value at `keys` (`["traits", "email"]`) and its path, from the
    /// message's context, else the batch's; blank values are none.
    fn find(&self, keys: &[&str]) -> Option<(&'a Value, String)> {
        let lookup = |context: Option<&'a Map<String, Value>>| {
            let (first, rest) = keys.split_first()?;
            let mut value = context?.get(*first)?;
            for key in rest {
                value = value.get(key)?;
            }
            (!is_blank(value)).then_some(value)
        };
        let path = |base: &str| format!("{base}.{}", keys.join("."));
        lookup(self.own)
            .map(|v| (v, path(&self.own_path)))
            .or_else(|| lookup(self.batch).map(|v| (v, path("context"))))
    }

    fn own_traits(&self) -> Option<Map<String, Value>> {
        self.own?.get("traits")?.as_object().cloned()
    }

    /// The SDK that sent it (`analytics.js`), troth's `source`.
    fn library(&self) -> Option<&'a str> {
        self.find(&["library", "name"]).and_then(|(v, _)| v.as_str())
    }

    /// troth's channel: from `context.channel` (`browser`, `mobile`; a server is
    /// no channel of the customer's), else from the SDK's name, else `web` for a
    /// page and `app` for a screen.
    fn channel(&self, call: Call) -> Option<&'static str> {
        let said = self
            .find(&["channel"])
            .and_then(|(v, _)| v.as_str())
            .map(str::to_ascii_lowercase);
        let by_channel = match said.as_deref() {
            Some("browser") => Some("web"),
            Some("mobile") => Some("app"),
            _ => None,
        };
        let library = self.library().unwrap_or("").to_ascii_lowercase();
        let by_library = if ["analytics.js", "analytics-next", "javascript"]
            .iter()
            .any(|s| library.contains(s))
        {
            Some("web")
        } else if ["ios", "android", "react-native", "flutter", "swift", "kotlin"]
            .iter()
            .any(|s| library.contains(s))
        {
            Some("app")
        } else {
            None
        };
        let by_call = match call {
            Call::Page => Some("web"),
            Call::Screen => Some("app"),
            _ => None,
        };
        by_channel.or(by_library).or(by_call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECEIVED: &str = "2026-11-23T10:00:00Z";

    fn received() -> Timestamp {
        Timestamp::parse(RECEIVED).unwrap()
    }

    /// Reads `message` as one sent to `/v1/{call}` and compares the outcome with
    /// `expect`: the event (its `type`, `time`, `customer`, `data`, and `subject`
    /// and `channel` when set) or `"field: message"`.
    fn check(call: &str, message: Value, expect: Value) {
        let batch = Batch::single(received(), Call::parse(call).unwrap());
        let got = match read(&message, &batch, &EventMap::default(), "") {
            Ok(event) => {
                let raw: Value = serde_json::from_str(&event.raw).unwrap();
                let mut got = json!({});
                for key in ["type", "time", "customer", "subject", "channel", "data"] {
                    if let Some(v) = raw.get(key) {
                        got[key] = v.clone();
                    }
                }
                got
            }
            Err(error) => Value::String(error.to_string()),
        };
        assert_eq!(got, expect, "for {message}");
    }

    fn id_of(message: Value) -> String {
        let batch = Batch::single(received(), Call::Track);
        read(&message, &batch, &EventMap::default(), "").unwrap().id
    }

    fn time_of(message: Value, batch_sent_at: Option<Value>) -> String {
        let batch = Batch {
            received: received(),
            call: None,
            sent_at: batch_sent_at.as_ref(),
            context: None,
        };
        let mut message = message;
        message["type"] = "track".into();
        message["event"] = "Tapped".into();
        message["userId"] = "u-1".into();
        read(&message, &batch, &EventMap::default(), "batch[0]")
            .unwrap()
            .time
            .to_string()
    }

    #[test]
    fn the_time_is_corrected_for_the_devices_clock() {
        // The device's clock is an hour fast: it sent at 11:00 by its clock, troth
        // received at 10:00; the event happened 5 minutes before sending.
        let skewed = json!({"timestamp": "2026-11-23T10:55:00Z", "sentAt": "2026-11-23T11:00:00Z"});
        assert_eq!(time_of(skewed.clone(), None), "2026-11-23T09:55:00.000000Z");
        // The batch's sentAt holds for messages without their own.
        let mut batched = skewed.clone();
        batched.as_object_mut().unwrap().remove("sentAt");
        assert_eq!(
            time_of(batched.clone(), Some(json!("2026-11-23T11:00:00Z"))),
            "2026-11-23T09:55:00.000000Z"
        );
        // The message's own sentAt wins over the batch's.
        assert_eq!(
            time_of(skewed, Some(json!("2026-11-23T12:00:00Z"))),
            "2026-11-23T09:55:00.000000Z"
        );
        // Without sentAt, the timestamp as sent; without it, originalTimestamp.
        assert_eq!(time_of(batched, None), "2026-11-23T10:55:00.000000Z");
        assert_eq!(
            time_of(json!({"originalTimestamp": "2026-11-23T08:00:00+01:00"}), None),
            "2026-11-23T07:00:00.000000Z"
        );
        // Without either, when troth received it.
        assert_eq!(
            time_of(json!({}), Some(json!("2026-11-23T11:00:00Z"))),
            "2026-11-23T10:00:00.000000Z"
        );
    }

    #[test]
    fn bad_times_name_their_field() {
        let yesterday = json!("yesterday");
        let batch = Batch {
            received: received(),
            call: None,
            sent_at: Some(&yesterday),
            context: None,
        };
        let message = json!({"type": "track", "event": "E", "userId": "u", "timestamp": "2026-11-23T09:00:00Z"});
        let error = read(&message, &batch, &EventMap::default(), "batch[2]").unwrap_err();
        assert_eq!(error.field, "sentAt");
        let mut late = message.clone();
        late["timestamp"] = "noon".into();
        let error = read(&late, &batch, &EventMap::default(), "batch[2]").unwrap_err();
        assert_eq!(error.field, "batch[2].timestamp");
        // A clock so far off that the corrected time is before 1970.
        let mut off = message;
        off["timestamp"] = "1970-01-01T00:00:00Z".into();
        off["sentAt"] = "2026-11-23T11:00:00Z".into();
        let error = read(&off, &Batch::single(received(), Call::Track), &EventMap::default(), "").unwrap_err();
        assert_eq!(error.field, "timestamp");
        assert!(error.message.contains("corrected for the device's clock"), "{error}");
    }

    #[test]
    fn the_message_id_is_the_events_id() {
        let message = json!({"messageId": "ajs-1", "event": "E", "anonymousId": "a-1"});
        assert_eq!(id_of(message.clone()), "seg.ajs-1");
        // Without one: the same content gives the same id, whatever its sentAt.
        let mut bare = message.clone();
        bare.as_object_mut().unwrap().remove("messageId");
        let hashed = id_of(bare.clone());
        assert!(
            hashed.starts_with("seg-hash.") && hashed.len() == "seg-hash.".len() + 32,
            "{hashed}"
        );
        let mut resent = bare.clone();
        resent["sentAt"] = "2026-11-23T10:00:00Z".into();
        assert_eq!(id_of(resent), hashed);
        bare["event"] = "F".into();
        assert_ne!(id_of(bare), hashed);
        // Too long for an event id: its hash, still the same for the same messageId.
        let mut long = message;
        long["messageId"] = "m".repeat(200).into();
        let id = id_of(long.clone());
        assert!(id.starts_with("seg-long.") && id.len() <= MAX_ID_CHARS, "{id}");
        assert_eq!(id_of(long), id);
    }

    #[test]
    fn identities_come_from_ids_and_traits() {
        check(
            "identify",
            json!({"userId": 42, "anonymousId": "a-1", "traits": {"email": "Ann@Example.org", "phone": "+44 20 7946 0000", "name": "Ann"}}),
            json!({"type": "customer.identified", "time": "2026-11-23T10:00:00.000000Z",
                   "customer": {"id": "42", "external": {"segment_anon": "a-1"}, "email": "Ann@Example.org", "phone": "+44 20 7946 0000"},
                   "data": {"traits": {"email": "Ann@Example.org", "phone": "+44 20 7946 0000", "name": "Ann"}}}),
        );
        // Other calls take the email the SDK keeps in context.traits.
        check(
            "track",
            json!({"anonymousId": "a-1", "event": "Tapped", "context": {"traits": {"email": "ann@example.org"}}}),
            json!({"type": "x.segment.tapped", "time": "2026-11-23T10:00:00.000000Z",
                   "customer": {"external": {"segment_anon": "a-1"}, "email": "ann@example.org"},
                   "data": {"event": "Tapped", "properties": {}}}),
        );
        check(
            "track",
            json!({"event": "Tapped"}),
            json!("userId: is required, or anonymousId"),
        );
        check(
            "identify",
            json!({"userId": "u-1", "traits": {"email": "nobody"}}),
            json!("traits.email: must contain @"),
        );
        check(
            "track",
            json!({"userId": ["u-1"], "event": "Tapped"}),
            json!("userId: must be a string, not an array"),
        );
        // A group's traits are the group's, not the user's.
        check(
            "group",
            json!({"userId": "u-1", "groupId": 7, "traits": {"email": "info@acme.example"}}),
            json!({"type": "x.segment.group", "time": "2026-11-23T10:00:00.000000Z", "customer": {"id": "u-1"},
                   "data": {"groupId": "7", "traits": {"email": "info@acme.example"}}}),
        );
    }

    #[test]
    fn a_batchs_context_holds_for_its_messages() {
        let context = json!({"traits": {"email": "bad"}, "library": {"name": "analytics.js"}});
        let batch = Batch {
            received: received(),
            call: None,
            sent_at: None,
            context: context.as_object(),
        };
        let message = json!({"type": "page", "anonymousId": "a", "properties": {"path": "/"}});
        let error = read(&message, &batch, &EventMap::default(), "batch[1]").unwrap_err();
        assert_eq!(error.to_string(), "context.traits.email: must contain @");
        let mut own = message;
        own["context"] = json!({"traits": {"email": "ann@example.org"}});
        let event = read(&own, &batch, &EventMap::default(), "batch[1]").unwrap();
        let raw: Value = serde_json::from_str(&event.raw).unwrap();
        assert_eq!(raw["customer"]["email"], "ann@example.org");
        assert_eq!(
            (raw["source"].as_str(), raw["channel"].as_str()),
            (Some("analytics.js"), Some("web"))
        );
    }

    #[test]
    fn an_alias_names_both_ids() {
        check(
            "alias",
            json!({"userId": "u-1", "previousId": "a-1"}),
            json!({"type": "x.segment.alias", "time": "2026-11-23T10:00:00.000000Z",
                   "customer": {"id": "u-1", "external": {"segment_anon": "a-1"}},
                   "data": {"previousId": "a-1", "userId": "u-1"}}),
        );
        check("alias", json!({"previousId": "a-1"}), json!("userId: is required"));
    }

    #[test]
    fn pages_and_screens_are_page_views() {
        check(
            "page",
            json!({"anonymousId": "a", "name": "Home", "properties": {"path": "/", "url": "https://shop.example/"}}),
            json!({"type": "page.viewed", "time": "2026-11-23T10:00:00.000000Z", "customer": {"external": {"segment_anon": "a"}},
                   "channel": "web", "data": {"page": "/"}}),
        );
        check(
            "screen",
            json!({"userId": "u", "name": "Basket", "context": {"library": {"name": "analytics-ios"}}}),
            json!({"type": "page.viewed", "time": "2026-11-23T10:00:00.000000Z", "customer": {"id": "u"},
                   "channel": "app", "data": {"page": "Basket"}}),
        );
        check(
            "page",
            json!({"userId": "u", "context": {"channel": "server"}}),
            json!("properties.path: is required (or properties.url, or name): the page viewed"),
        );
    }

    fn order(products: Value) -> Value {
        json!({"userId": "u-1", "event": "Order Completed", "messageId": "m-1", "properties": {
            "order_id": "o-17", "total": 356.0, "currency": "eur", "coupon": "X", "products": products}})
    }

    #[test]
    fn an_order_completed_is_an_order_placed() {
        check(
            "track",
            order(
                json!([{"product_id": "p-1", "sku": "tyre-205", "quantity": 4, "price": 89}, {"product_id": 7, "price": "0.05"}]),
            ),
            json!({"type": "order.placed", "time": "2026-11-23T10:00:00.000000Z", "customer": {"id": "u-1"},
                   "subject": "order:o-17",
                   "data": {"order": "o-17", "total": 35600, "currency": "EUR", "delivery": "home",
                            "items": [{"sku": "tyre-205", "qty": 4, "price": 8900}, {"sku": "7", "qty": 1, "price": 5}]}}),
        );
        // Amounts in the currency's own decimals.
        let mut yen = order(json!([{"sku": "a", "price": 1999}]));
        yen["properties"]["currency"] = "JPY".into();
        yen["properties"]["total"] = 1999.into();
        yen["properties"]["delivery"] = "pickup".into();
        yen["properties"]["store"] = "st-1".into();
        let batch = Batch::single(received(), Call::Track);
        let event = read(&yen, &batch, &EventMap::default(), "").unwrap();
        let raw: Value = serde_json::from_str(&event.raw).unwrap();
        assert_eq!(raw["data"]["total"], 1999);
        assert_eq!(
            (raw["data"]["delivery"].as_str(), raw["data"]["store"].as_str()),
            (Some("pickup"), Some("st-1"))
        );
    }

    #[test]
    fn an_order_that_does_not_fit_names_the_senders_field() {
        check(
            "track",
            order(json!([{"sku": "a", "quantity": 0, "price": 1}])),
            json!("properties.products[0].quantity: must be at least 1"),
        );
        check(
            "track",
            order(json!([{"sku": "a", "quantity": 1}])),
            json!("properties.products[0].price: is required: the unit price, e.g. 89.00"),
        );
        check(
            "track",
            order(json!([{"quantity": 1, "price": 2}])),
            json!("properties.products[0].sku: is required, or product_id"),
        );
        check(
            "track",
            order(json!([])),
            json!("properties.products: must list at least one item"),
        );
        let mut no_currency = order(json!([{"sku": "a", "price": 1}]));
        no_currency["properties"].as_object_mut().unwrap().remove("currency");
        check(
            "track",
            no_currency,
            json!("properties.currency: is required to read the amounts (an ISO 4217 code such as EUR)"),
        );
        let mut negative = order(json!([{"sku": "a", "price": -1}]));
        negative["properties"]["delivery"] = "drone".into();
        check(
            "track",
            negative.clone(),
            json!("properties.products[0].price: must not be negative, not -1"),
        );
        negative["properties"]["products"][0]["price"] = 1.into();
        check(
            "track",
            negative,
            json!("properties.delivery: must be one of home|pickup|safe_place, not \"drone\""),
        );
        // In a batch, under the message's place.
        let batch = Batch {
            received: received(),
            call: None,
            sent_at: None,
            context: None,
        };
        let mut message = order(json!([{"sku": "a", "quantity": 0, "price": 1}]));
        message["type"] = "track".into();
        let error = read(&message, &batch, &EventMap::default(), "batch[3]").unwrap_err();
        assert_eq!(error.field, "batch[3].properties.products[0].quantity");
    }

    #[test]
    fn refunds_and_searches_take_their_catalogue_types() {
        check(
            "track",
            json!({"userId": "u", "event": "Order Refunded", "properties": {"order_id": "o-1", "revenue": 12.5, "currency": "GBP"}}),
            json!({"type": "refund.issued", "time": "2026-11-23T10:00:00.000000Z", "customer": {"id": "u"},
                   "subject": "order:o-1", "data": {"amount": 1250}}),
        );
        check(
            "track",
            json!({"userId": "u", "event": "Order Refunded", "properties": {"order_id": "o-1", "currency": "GBP"}}),
            json!("properties.total: is required (or revenue, or value): the amount in currency units, e.g. 35.60"),
        );
        check(
            "track",
            json!({"userId": "u", "event": "products_searched", "properties": {"query": "winter tyres"}}),
            json!({"type": "search.performed", "time": "2026-11-23T10:00:00.000000Z", "customer": {"id": "u"},
                   "data": {"query": "winter tyres"}}),
        );
        check(
            "track",
            json!({"userId": "u", "event": "Products Searched", "properties": {}}),
            json!("properties.query: is required"),
        );
    }

    #[test]
    fn an_unmapped_track_is_an_extension_event() {
        check(
            "track",
            json!({"userId": "u", "event": "Wishlist Shared!", "properties": {"order_id": 5, "to": ["a"]}}),
            json!({"type": "x.segment.wishlist_shared", "time": "2026-11-23T10:00:00.000000Z", "customer": {"id": "u"},
                   "subject": "order:5", "data": {"event": "Wishlist Shared!", "properties": {"order_id": 5, "to": ["a"]}}}),
        );
        check(
            "track",
            json!({"userId": "u", "event": "!!!"}),
            json!({"type": "x.segment.track", "time": "2026-11-23T10:00:00.000000Z", "customer": {"id": "u"},
                   "data": {"event": "!!!", "properties": {}}}),
        );
        check("track", json!({"userId": "u"}), json!("event: is required"));
    }

    #[test]
    fn names_match_whatever_their_case_and_separators() {
        for (name, expect) in [
            ("Order Completed", "order_completed"),
            ("  order--completed ", "order_completed"),
            ("ORDER_COMPLETED", "order_completed"),
            ("Commande passée", "commande_passée"),
            ("!!", ""),
        ] {
            assert_eq!(slug(name), expect, "{name}");
        }
        assert_eq!(slug(&"a".repeat(100)).len(), 64);
    }

    #[test]
    fn configured_names_go_over_the_defaults() {
        let map = EventMap::default()
            .with_overrides([("Purchase", "order.placed"), ("order completed", "x.shop.order")])
            .unwrap();
        assert_eq!(map.event_type("purchase"), "order.placed");
        assert_eq!(map.event_type("Order Completed"), "x.shop.order");
        assert_eq!(map.event_type("Order Refunded"), "refund.issued");
        assert_eq!(map.event_type("Product Viewed"), "x.segment.product_viewed");
        let refused = |overrides: &[(&str, &str)]| {
            EventMap::default()
                .with_overrides(overrides.iter().copied())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused(&[("Signed Up", "signup")]),
            "\"Signed Up\" maps to \"signup\", which is neither in the event catalogue nor an extension type (starting with \"x.\")"
        );
        assert_eq!(
            refused(&[("Signed Up", "x.a"), ("signed_up", "x.b")]),
            "\"Signed Up\" and \"signed_up\" are the same event name (case and separators do not count)"
        );
        assert_eq!(
            refused(&[("--", "x.a")]),
            "the event name \"--\" has no letter or digit"
        );
    }

    #[test]
    fn a_mapped_catalogue_type_takes_the_properties_as_its_data() {
        let map = EventMap::default()
            .with_overrides([("Order Cancelled", "order.cancelled")])
            .unwrap();
        let batch = Batch::single(received(), Call::Track);
        let message = json!({"userId": "u", "event": "Order Cancelled", "properties": {"order_id": "o-1"}});
        let error = read(&message, &batch, &map, "").unwrap_err();
        assert_eq!(error.to_string(), "properties.reason: is required");
        let mut with_reason = message;
        with_reason["properties"]["reason"] = "changed mind".into();
        let event = read(&with_reason, &batch, &map, "").unwrap();
        assert_eq!(
            (event.event_type.as_str(), event.subject.as_deref()),
            ("order.cancelled", Some("order:o-1"))
        );
    }

    #[test]
    fn a_batchs_messages_name_their_call() {
        let batch = Batch {
            received: received(),
            call: None,
            sent_at: None,
            context: None,
        };
        let read_at = |message: Value| read(&message, &batch, &EventMap::default(), "batch[0]").map(|e| e.event_type);
        assert_eq!(
            read_at(json!({"type": "screen", "userId": "u", "name": "Home"})).unwrap(),
            "page.viewed"
        );
        assert_eq!(
            read_at(json!({"type": "boom", "userId": "u"})).unwrap_err().to_string(),
            "batch[0].type: must be one of identify|track|page|screen|group|alias, not \"boom\""
        );
        assert_eq!(
            read_at(json!(7)).unwrap_err().to_string(),
            "batch[0]: must be an object, not a number"
        );
    }
}
