//! The world description: who the customers are, which carriers, stores and teams
//! serve them, how often things happen, and which faults are planted.

use serde::{Deserialize, Serialize};
use troth_core::Timestamp;

/// Event categories a service case can have; each is owned by one team.
pub const CASE_CATEGORIES: &[&str] = &[
    "late_delivery",
    "failed_delivery",
    "lost_parcel",
    "damaged",
    "return",
    "payment",
    "invoice",
    "out_of_stock",
    "question",
];

/// The fault kinds a world can plant.
pub const FAULT_KINDS: &[&str] = &[
    "missed_windows",
    "phantom_stock",
    "broken_callbacks",
    "slow_tracking",
    "lost_parcels",
    "slow_refunds",
    "late_pickups",
    "failing_payments",
    "defective_sku",
];

/// A simulated retailer's world, read from TOML. Every field has a default, so
/// `World::default()` is a complete small world.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct World {
    /// The world's name, echoed in the manifest.
    pub name: String,
    /// The seed: the same world and seed give the same events, byte for byte.
    pub seed: u64,
    /// How many customers the retailer has.
    pub customers: u64,
    /// How many days are simulated.
    pub days: u32,
    /// When the first simulated day starts (RFC 3339); hours of the day are counted from it.
    pub start: String,
    /// ISO 4217 currency of prices and payments.
    pub currency: String,
    /// The city the customers live in and the couriers drive around.
    pub city: City,
    pub carriers: Vec<Carrier>,
    pub stores: Vec<Store>,
    pub teams: Vec<Team>,
    pub faults: Vec<Fault>,
    pub rates: Rates,
    /// How often, in seconds, a driver's phone reports while the van stands (at the
    /// depot, at a door, waiting for the next stop's time); 0: only while driving.
    /// Off by default, so existing worlds keep their bytes; `troth demo` turns it on
    /// so that a driver on the way always has a current position.
    pub parked_report_s: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct City {
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    /// How far from the centre customers live, in kilometres.
    pub radius_km: f64,
    /// The retailer's time zone (IANA): the demo's staff pages read in it, and
    /// customers without a zone of their own.
    pub timezone: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Carrier {
    pub name: String,
    /// Relative share of home deliveries this carrier gets.
    #[serde(default = "one")]
    pub share: f64,
    /// Share of delivery windows missed when healthy.
    #[serde(default = "default_miss_rate")]
    pub miss_rate: f64,
    /// Share of parcels lost when healthy.
    #[serde(default = "default_lost_rate")]
    pub lost_rate: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// The store's id, `st-…` (it is the subject `store:st-…`).
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Share of SKUs whose site stock is wrong when healthy.
    #[serde(default = "default_stock_error_rate")]
    pub stock_error_rate: f64,
    /// Share of click-and-collect orders ready after the time promised, when healthy.
    #[serde(default = "default_late_pickup_rate")]
    pub late_pickup_rate: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    pub name: String,
    /// Case categories this team owns (see docs/worlds.md).
    #[serde(default)]
    pub categories: Vec<String>,
    /// Share of callback promises broken when healthy.
    #[serde(default = "default_callback_miss_rate")]
    pub callback_miss_rate: f64,
    /// Share of refunds issued after their due date when healthy.
    #[serde(default = "default_refund_late_rate")]
    pub refund_late_rate: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// One of [`FAULT_KINDS`].
    pub kind: String,
    /// The carrier's name, the store's id, the team's name, the payment method or the
    /// SKU (optionally prefixed `carrier:`, `store:`, `team:`, `method:`, `sku:`).
    pub target: String,
    /// How strong the fault is: a share (0–1), or minutes of delay for slow_tracking.
    pub strength: f64,
}

/// How often things happen; all are probabilities unless named otherwise.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rates {
    /// Share of customers already known on the first day; the rest join evenly over the period.
    pub known_at_start: f64,
    /// Chance a customer starts a shopping session on a given day.
    pub sessions_per_day: f64,
    /// Share of sessions that look for an item in a store rather than for home delivery.
    pub store_intent: f64,
    /// Share of home-delivery sessions that end in an order.
    pub conversion: f64,
    /// Share of store-intent sessions (shown in stock) after which the customer visits the store.
    pub store_visit: f64,
    /// Chance a payment attempt fails first.
    pub payment_failure: f64,
    /// Share of customers with a phone number (phone-only contacts later merge with their email).
    pub phone: f64,
    /// Share of customers with a second email they sometimes shop with.
    pub second_email: f64,
    /// Chance of a survey after a moment that has one.
    pub survey: f64,
    /// Chance of a product review after a delivery.
    pub review: f64,
    /// Chance of a social post after a good experience (bad ones are four times likelier).
    pub social: f64,
    /// Chance a delivered order is returned.
    pub returns: f64,
    /// Chance of a case after a late or failed delivery.
    pub complaint: f64,
    /// Chance a customer reschedules a delivery themselves.
    pub customer_reschedule: f64,
    /// Chance a case is opened for a question with no incident behind it, per order.
    pub question: f64,
    /// Share of online orders collected at a store (click and collect) rather than shipped.
    pub pickup: f64,
}

fn one() -> f64 {
    1.0
}
// Healthy rates run a little inside the retail map's targets (windows 95 % kept,
// stock 98 %, pickups ready on time 95 %, callbacks 95 %, refunds 98 %): a healthy
// world meets them.
fn default_miss_rate() -> f64 {
    0.03
}
fn default_lost_rate() -> f64 {
    0.003
}
fn default_stock_error_rate() -> f64 {
    0.0
}
fn default_late_pickup_rate() -> f64 {
    0.02
}
fn default_callback_miss_rate() -> f64 {
    0.02
}
fn default_refund_late_rate() -> f64 {
    0.01
}

impl Default for World {
    fn default() -> World {
        let carrier = |name: &str, share: f64, miss_rate: f64| Carrier {
            name: name.into(),
            share,
            miss_rate,
            lost_rate: default_lost_rate(),
        };
        let store = |id: &str, name: &str| Store {
            id: id.into(),
            name: name.into(),
            stock_error_rate: default_stock_error_rate(),
            late_pickup_rate: default_late_pickup_rate(),
        };
        let team = |name: &str, categories: &[&str]| Team {
            name: name.into(),
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
            callback_miss_rate: default_callback_miss_rate(),
            refund_late_rate: default_refund_late_rate(),
        };
        World {
            name: "small".into(),
            seed: 1,
            customers: 200,
            days: 14,
            start: "2026-11-02T00:00:00Z".into(),
            currency: "EUR".into(),
            city: City::default(),
            carriers: vec![
                carrier("swiftpost", 0.4, 0.05),
                carrier("parcelpro", 0.35, 0.06),
                carrier("greenvan", 0.25, 0.04),
            ],
            stores: vec![
                store("st-1", "Bastille"),
                store("st-2", "Montparnasse"),
                store("st-3", "La Defense"),
                store("st-4", "Nation"),
            ],
            teams: vec![
                team("support", &["question"]),
                team("delivery", &["late_delivery", "failed_delivery", "lost_parcel"]),
                team("billing", &["payment", "invoice"]),
                team("stores", &["out_of_stock"]),
                team("returns", &["return", "damaged"]),
            ],
            faults: Vec::new(),
            rates: Rates::default(),
            parked_report_s: 0,
        }
    }
}

impl Default for City {
    fn default() -> City {
        City {
            name: "Paris".into(),
            lat: 48.8566,
            lon: 2.3522,
            radius_km: 7.0,
            timezone: "Europe/Paris".into(),
        }
    }
}

impl Default for Rates {
    fn default() -> Rates {
        Rates {
            known_at_start: 0.6,
            sessions_per_day: 0.08,
            store_intent: 0.25,
            conversion: 0.4,
            store_visit: 0.6,
            payment_failure: 0.07,
            phone: 0.3,
            second_email: 0.1,
            survey: 0.3,
            review: 0.1,
            social: 0.02,
            returns: 0.06,
            complaint: 0.3,
            customer_reschedule: 0.02,
            question: 0.03,
            pickup: 0.15,
        }
    }
}

/// What is wrong with a world file.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// The file is not TOML, or a value has the wrong type; `field` is the key the
    /// error points at when it could be found.
    #[error("{}{message}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Syntax { field: Option<String>, message: String },
    /// A value is well-formed but makes no sense.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> WorldError {
    WorldError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl World {
    /// Reads a world from TOML. Errors name the field and say why.
    pub fn from_toml(text: &str) -> Result<World, WorldError> {
        let world: World = toml::from_str(text).map_err(|e| WorldError::Syntax {
            field: e.span().and_then(|span| key_at(text, span.start)),
            message: e.to_string().trim_end().to_owned(),
        })?;
        world.validate()?;
        Ok(world)
    }

    /// The first instant of the world.
    pub fn start_time(&self) -> Result<Timestamp, WorldError> {
        Timestamp::parse_rfc3339(&self.start).ok_or_else(|| {
            invalid(
                "start",
                format!(
                    "must be an RFC 3339 date-time such as 2026-11-02T00:00:00Z, not {:?}",
                    self.start
                ),
            )
        })
    }

    /// Checks what types alone cannot: ranges, names, and that faults name real targets.
    pub fn validate(&self) -> Result<(), WorldError> {
        self.start_time()?;
        if self.days == 0 {
            return Err(invalid("days", "must be at least 1"));
        }
        if self.days > 3_660 {
            return Err(invalid("days", "must be at most 3660"));
        }
        if self.customers > 100_000_000 {
            return Err(invalid("customers", "must be at most 100000000"));
        }
        if self.parked_report_s > 3_600 {
            return Err(invalid("parked_report_s", "must be at most 3600 (seconds)"));
        }
        if !(self.currency.len() == 3 && self.currency.bytes().all(|b| b.is_ascii_uppercase())) {
            return Err(invalid(
                "currency",
                format!(
                    "must be a three-letter ISO 4217 code such as EUR, not {:?}",
                    self.currency
                ),
            ));
        }
        if !(-85.0..=85.0).contains(&self.city.lat) {
            return Err(invalid("city.lat", "must be between -85 and 85"));
        }
        if !(-179.0..=179.0).contains(&self.city.lon) {
            return Err(invalid("city.lon", "must be between -179 and 179"));
        }
        if !(0.5..=100.0).contains(&self.city.radius_km) {
            return Err(invalid("city.radius_km", "must be between 0.5 and 100"));
        }
        if self.carriers.is_empty() {
            return Err(invalid("carriers", "must list at least one carrier"));
        }
        for (i, c) in self.carriers.iter().enumerate() {
            let f = |name: &str| format!("carriers[{i}].{name}");
            check_name(&c.name, &f("name"))?;
            if self.carriers[..i].iter().any(|o| o.name == c.name) {
                return Err(invalid(f("name"), format!("{:?} is listed twice", c.name)));
            }
            if !(c.share > 0.0 && c.share.is_finite()) {
                return Err(invalid(f("share"), "must be more than 0"));
            }
            share(c.miss_rate, &f("miss_rate"))?;
            share(c.lost_rate, &f("lost_rate"))?;
        }
        if self.stores.is_empty() {
            return Err(invalid("stores", "must list at least one store"));
        }
        for (i, s) in self.stores.iter().enumerate() {
            let f = |name: &str| format!("stores[{i}].{name}");
            check_name(&s.id, &f("id"))?;
            if !s.id.starts_with("st-") || s.id.len() < 4 {
                return Err(invalid(
                    f("id"),
                    format!("must start with st- (like st-7), not {:?}", s.id),
                ));
            }
            if self.stores[..i].iter().any(|o| o.id == s.id) {
                return Err(invalid(f("id"), format!("{:?} is listed twice", s.id)));
            }
            check_text(&s.name, &f("name"))?;
            share(s.stock_error_rate, &f("stock_error_rate"))?;
            share(s.late_pickup_rate, &f("late_pickup_rate"))?;
        }
        if self.teams.is_empty() {
            return Err(invalid(
                "teams",
                "must list at least one team (the first answers first contacts)",
            ));
        }
        for (i, t) in self.teams.iter().enumerate() {
            let f = |name: &str| format!("teams[{i}].{name}");
            check_name(&t.name, &f("name"))?;
            if self.teams[..i].iter().any(|o| o.name == t.name) {
                return Err(invalid(f("name"), format!("{:?} is listed twice", t.name)));
            }
            for (j, c) in t.categories.iter().enumerate() {
                if !CASE_CATEGORIES.contains(&c.as_str()) {
                    return Err(invalid(
                        format!("teams[{i}].categories[{j}]"),
                        format!(
                            "{c:?} is not a case category; use one of {}",
                            CASE_CATEGORIES.join(", ")
                        ),
                    ));
                }
            }
            share(t.callback_miss_rate, &f("callback_miss_rate"))?;
            share(t.refund_late_rate, &f("refund_late_rate"))?;
        }
        check_text(&self.name, "name")?;
        check_text(&self.city.name, "city.name")?;
        let skus: Vec<String> = crate::text::sku_names().collect();
        for (i, fault) in self.faults.iter().enumerate() {
            let f = |name: &str| format!("faults[{i}].{name}");
            let (kind, names): (&str, Vec<&str>) = match fault.kind.as_str() {
                "missed_windows" | "slow_tracking" | "lost_parcels" => {
                    ("carrier", self.carriers.iter().map(|c| c.name.as_str()).collect())
                }
                "phantom_stock" | "late_pickups" => ("store", self.stores.iter().map(|s| s.id.as_str()).collect()),
                "broken_callbacks" | "slow_refunds" => ("team", self.teams.iter().map(|t| t.name.as_str()).collect()),
                "failing_payments" => {
                    let mut methods = crate::text::PAYMENT_METHODS.to_vec();
                    methods.dedup();
                    ("method", methods)
                }
                "defective_sku" => ("sku", skus.iter().map(String::as_str).collect()),
                other => {
                    return Err(invalid(
                        f("kind"),
                        format!("{other:?} is not a fault kind; use one of {}", FAULT_KINDS.join(", ")),
                    ));
                }
            };
            let target = strip_target(&fault.target, kind);
            if !names.contains(&target) {
                return Err(invalid(
                    f("target"),
                    format!(
                        "a {} fault needs a {kind}, and there is no {kind} named {target:?}; the {kind}s are {}",
                        fault.kind,
                        names.join(", ")
                    ),
                ));
            }
            if fault.kind == "slow_tracking" {
                if !(fault.strength > 0.0 && fault.strength <= 720.0) {
                    return Err(invalid(
                        f("strength"),
                        "for slow_tracking is minutes of delay: more than 0, at most 720",
                    ));
                }
            } else {
                share(fault.strength, &f("strength"))?;
            }
            if self.faults[..i]
                .iter()
                .any(|o| o.kind == fault.kind && strip_target(&o.target, kind) == target)
            {
                return Err(invalid(
                    f("target"),
                    format!("{target:?} already has a {} fault", fault.kind),
                ));
            }
        }
        let r = &self.rates;
        for (name, value) in [
            ("known_at_start", r.known_at_start),
            ("sessions_per_day", r.sessions_per_day),
            ("store_intent", r.store_intent),
            ("conversion", r.conversion),
            ("store_visit", r.store_visit),
            ("payment_failure", r.payment_failure),
            ("phone", r.phone),
            ("second_email", r.second_email),
            ("survey", r.survey),
            ("review", r.review),
            ("social", r.social),
            ("returns", r.returns),
            ("complaint", r.complaint),
            ("customer_reschedule", r.customer_reschedule),
            ("question", r.question),
            ("pickup", r.pickup),
        ] {
            share(value, &format!("rates.{name}"))?;
        }
        if r.payment_failure > 0.9 {
            return Err(invalid("rates.payment_failure", "must be at most 0.9"));
        }
        Ok(())
    }
}

/// A fault's target without its optional `kind:` prefix.
pub(crate) fn strip_target<'a>(target: &'a str, kind: &str) -> &'a str {
    target
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(':'))
        .unwrap_or(target)
}

fn share(value: f64, field: &str) -> Result<(), WorldError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(invalid(field, format!("must be a share between 0 and 1, not {value}")))
    }
}

/// Names appear in ids and subjects: lowercase letters, digits, `-` and `_`.
fn check_name(name: &str, field: &str) -> Result<(), WorldError> {
    if name.is_empty() || name.len() > 40 {
        return Err(invalid(field, "must be 1 to 40 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(invalid(field, format!("must use only a-z, 0-9, - and _, not {name:?}")));
    }
    Ok(())
}

/// Free text that is written into events must stay short.
fn check_text(text: &str, field: &str) -> Result<(), WorldError> {
    if text.chars().count() > 80 {
        return Err(invalid(field, "must be at most 80 characters"));
    }
    Ok(())
}

/// The dotted key a byte offset of a TOML text points at: the key on that line,
/// inside the most recent `[table]` or `[[array]]` header above it.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[line_start..line_end].trim();
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    match (line.starts_with('['), table, key) {
        (true, _, _) => Some(line.trim_matches(|c| c == '[' || c == ']').trim().to_owned()),
        (false, Some(table), Some(key)) => Some(format!("{table}.{key}")),
        (false, None, Some(key)) => Some(key),
        (false, Some(table), None) => Some(table),
        (false, None, None) => None,
    }
}
