//! The event catalogue: every event type troth understands, with its typed `data`.
//!
//! Each catalogue type's `data` is validated field by field; types outside the
//! catalogue must start with `x.` and carry whatever `data` they like.

use serde_json::{Map, Value};

use crate::field::{FieldError, FromJson, FromText, Path, bounded_int, json_struct, string_enum};
use crate::timestamp::Timestamp;
use crate::values::{Channel, PositionFlag};
pub use crate::values::{Heading, Lat, Lon, NonNegative, Percent};

bounded_int!(
    /// Net Promoter Score answer, 0–10.
    Nps, 0, 10
);
bounded_int!(
    /// Customer satisfaction answer, 1–5.
    Csat, 1, 5
);
bounded_int!(
    /// Customer effort score answer, 1–7 (see [`CesScale`]).
    Ces, 1, 7
);
bounded_int!(
    /// A review's star rating, 1–5.
    Rating, 1, 5
);

string_enum!(Purpose { Marketing = "marketing", Service = "service" });
string_enum!(
    /// How a CES answer reads. `agreement` (CES 2.0, the default): "the company made
    /// it easy for me to handle my issue", 1 strongly disagree … 7 strongly agree, so
    /// 7 is best. `effort`: the older "how much effort did you personally have to put
    /// forth", 1 very low … 5 very high, so 1 is best.
    CesScale { Agreement = "agreement", Effort = "effort" }
);
string_enum!(Claim { InStock = "in_stock", ShipsBy = "ships_by" });
string_enum!(Delivery { Home = "home", Pickup = "pickup", SafePlace = "safe_place" });
string_enum!(ProofKind { Photo = "photo", Signature = "signature", SafePlace = "safe_place", Handed = "handed" });
string_enum!(MessageKind { Marketing = "marketing", Service = "service" });
string_enum!(BreakCause { DuePassed = "due_passed", Event = "event", KeptLate = "kept_late" });
string_enum!(
    /// What an agent gave a customer to make up for something: money back, a voucher
    /// to spend, or loyalty points.
    GoodwillKind { Refund = "refund", Voucher = "voucher", Points = "points" }
);

impl SurveyAnswered {
    /// The CES answer on the CES 2.0 agreement scale (1 worst … 7 best), whichever
    /// scale it was given on: the effort scale's 1–5 is turned around and stretched
    /// (1 → 7, 2 → 6, 3 → 4, 4 → 3, 5 → 1).
    pub fn ces_agreement(&self) -> Option<u8> {
        let ces = self.ces?.0;
        Some(match self.ces_scale {
            Some(CesScale::Effort) => [7, 6, 4, 3, 1][usize::from(ces.clamp(1, 5) - 1)],
            _ => ces,
        })
    }

    /// Whether the answer is negative: NPS 0–6, CSAT 1–2, or CES 1–3 on the
    /// agreement scale (4–5 on the effort scale).
    pub fn is_negative(&self) -> bool {
        self.nps.is_some_and(|n| n.0 <= 6)
            || self.csat.is_some_and(|c| c.0 <= 2)
            || self.ces_agreement().is_some_and(|c| c <= 3)
    }
}

/// An ISO 4217 currency code such as `EUR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Currency(pub String);

impl FromJson for Currency {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        let s = String::from_json(value, path)?;
        if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(s))
        } else {
            Err(path.error(format!("must be a three-letter ISO 4217 code such as EUR, not {s:?}")))
        }
    }
}

impl FromText for Currency {}

/// An amount of money in minor units (cents), never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount(pub i64);

impl FromJson for Amount {
    fn from_json(value: &Value, path: &Path<'_>) -> Result<Self, FieldError> {
        let n = i64::from_json(value, path)?;
        if n < 0 {
            return Err(path.error(format!("must be an amount in minor units, not negative ({n})")));
        }
        Ok(Amount(n))
    }
}

impl FromText for Amount {}

json_struct!(
    /// A line of an order.
    Item { sku: String, qty: u32, price: Amount }
    check(item, path) {
        if item.qty == 0 {
            return Err(path.key("qty").error("must be at least 1"));
        }
    }
);

json_struct!(
    /// How a delivery was proven.
    Proof { kind: ProofKind, photo: Option<String> }
);

/// A window's end must come after its start.
fn window_order(start: (&str, Timestamp), end: (&str, Timestamp), path: &Path<'_>) -> Result<(), FieldError> {
    if end.1 <= start.1 {
        return Err(path.key(end.0).error(format!("must be after {}", start.0)));
    }
    Ok(())
}

/// A gesture carries what its kind gives and nothing else: an amount with its
/// currency for a refund or a voucher, points for points; none of them zero.
fn goodwill_fields(g: &GoodwillGiven, path: &Path<'_>) -> Result<(), FieldError> {
    let kind = g.kind.as_str();
    let absent = |name: &str, given: bool, only_for: &str| {
        if given {
            Err(path.key(name).error(format!("is only for kind {only_for}, not {kind}")))
        } else {
            Ok(())
        }
    };
    let required = |name: &str| path.key(name).error(format!("is required when kind is {kind}"));
    let positive = |name: &str| path.key(name).error("must be more than 0");
    match g.kind {
        GoodwillKind::Refund | GoodwillKind::Voucher => {
            match g.amount {
                None => return Err(required("amount")),
                Some(Amount(0)) => return Err(positive("amount")),
                Some(_) => {}
            }
            if g.currency.is_none() {
                return Err(required("currency"));
            }
            absent("points", g.points.is_some(), "points")
        }
        GoodwillKind::Points => {
            match g.points {
                None => return Err(required("points")),
                Some(0) => return Err(positive("points")),
                Some(_) => {}
            }
            absent("amount", g.amount.is_some(), "refund or voucher")?;
            absent("currency", g.currency.is_some(), "refund or voucher")
        }
    }
}

/// Declares the catalogue: for each event type its name, its variant of
/// [`EventData`] and the fields of its `data`.
macro_rules! catalogue {
    ($( $text:literal => $variant:ident { $($field:ident : $ty:ty),* $(,)? } $(check($this:ident, $p:ident) $check:block)? ;)*) => {
        $( json_struct!($variant { $($field: $ty),* } $(check($this, $p) $check)?); )*

        /// The typed `data` of a validated event.
        #[derive(Debug, Clone, PartialEq)]
        pub enum EventData {
            $( $variant($variant), )*
            /// An extension type (`x.…`): its data is kept as sent.
            Extension(Value),
        }

        /// Every event type of the catalogue.
        pub const EVENT_TYPES: &[&str] = &[$($text),*];

        /// The fields of a catalogue type's `data`, with their Rust types
        /// (`"Timestamp"`, `"Option<Timestamp>"`, …); `None` outside the catalogue.
        pub fn data_fields(event_type: &str) -> Option<&'static [(&'static str, &'static str)]> {
            match event_type {
                $( $text => Some($variant::FIELD_TYPES), )*
                _ => None,
            }
        }

        impl EventData {
            /// Reads the `data` of an event of type `event_type`; `None` when the type
            /// is neither in the catalogue nor an extension type.
            pub fn parse(event_type: &str, data: Option<&Value>) -> Option<Result<EventData, FieldError>> {
                static EMPTY: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| Value::Object(Map::new()));
                let root = Path::Root("data");
                let data = match data {
                    None | Some(Value::Null) => &*EMPTY,
                    Some(v) => v,
                };
                let parsed = match event_type {
                    $( $text => $variant::from_json(data, &root).map(EventData::$variant), )*
                    t if is_extension_type(t) => Ok(EventData::Extension(data.clone())),
                    _ => return None,
                };
                Some(parsed)
            }

            /// Reads the `data` of an event of type `event_type` straight from its
            /// text (see [`FromText`]); `None` when that fails for any reason, for
            /// [`EventData::parse`] to read it again and say why.
            pub fn read_text(event_type: &str, data: Option<&serde_json::value::RawValue>) -> Option<EventData> {
                let text = match data {
                    Some(raw) if raw.get() != "null" => raw.get(),
                    _ => "{}",
                };
                match event_type {
                    $( $text => serde_json::from_str::<crate::field::Text<$variant>>(text).ok().map(|t| EventData::$variant(t.0)), )*
                    t if is_extension_type(t) => match serde_json::from_str::<Value>(text).ok()? {
                        object @ Value::Object(_) => Some(EventData::Extension(object)),
                        _ => None,
                    },
                    _ => None,
                }
            }
        }
    };
}

/// Types outside the catalogue are allowed when they start with `x.` and name something.
pub fn is_extension_type(t: &str) -> bool {
    t.len() > 2 && t.starts_with("x.")
}

pub fn is_catalogue_type(t: &str) -> bool {
    EVENT_TYPES.contains(&t)
}

catalogue! {
    // identity
    "customer.identified" => CustomerIdentified { traits: Option<Map<String, Value>>, emails: Option<Vec<String>>, phones: Option<Vec<String>> };
    "customer.consent_changed" => ConsentChanged { channel: Channel, purpose: Purpose, granted: bool };
    // Recorded by troth when one event names identities of two known customers.
    "customer.merged" => CustomerMerged { into: String, from: String, identity: Option<String> };
    // discover
    "search.performed" => SearchPerformed { query: String };
    "page.viewed" => PageViewed { page: String };
    "store_locator.searched" => StoreLocatorSearched { query: String, results: u32 };
    "review.viewed" => ReviewViewed { product: String };
    "availability.shown" => AvailabilityShown { sku: String, store: Option<String>, claim: Claim, ships_by: Option<Timestamp> }
        check(a, path) {
            if a.claim == Claim::ShipsBy && a.ships_by.is_none() {
                return Err(path.key("ships_by").error("is required when claim is ships_by"));
            }
        };
    // buy
    "checkout.started" => CheckoutStarted {};
    "payment.succeeded" => PaymentSucceeded { method: String, amount: Amount, currency: Currency, reason: Option<String> };
    "payment.failed" => PaymentFailed { method: String, amount: Amount, currency: Currency, reason: Option<String> };
    // A pickup order names its `store`; its `promised_to` is the time it is ready by.
    "order.placed" => OrderPlaced {
        order: String, items: Vec<Item>, total: Amount, currency: Currency, delivery: Delivery,
        promised_from: Option<Timestamp>, promised_to: Option<Timestamp>, store: Option<String>,
    }
        check(o, path) {
            if o.items.is_empty() {
                return Err(path.key("items").error("must list at least one item"));
            }
            if let (Some(from), Some(to)) = (o.promised_from, o.promised_to) {
                window_order(("promised_from", from), ("promised_to", to), path)?;
            }
        };
    "order.cancelled" => OrderCancelled { reason: String };
    "store.visited" => StoreVisited { store: String, sku: Option<String>, found: Option<bool> };
    // fulfil
    "order.picked" => OrderPicked {};
    "order.packed" => OrderPacked {};
    // Click and collect: ready for collection at the store, then collected there.
    "order.ready" => OrderReady { order: String, store: String };
    "order.collected" => OrderCollected { order: String, store: String };
    "shipment.created" => ShipmentCreated { shipment: String, order: String, carrier: String, service: String };
    "shipment.handed_over" => ShipmentHandedOver {};
    // `estimate`: troth moved the window because its arrival estimate left the one
    // given (docs/eta.md#re-issued-windows): news for the customer, not a new promise.
    "shipment.window_set" => WindowSet { window_start: Timestamp, window_end: Timestamp, driver: Option<String>, estimate: Option<bool> }
        check(w, path) { window_order(("window_start", w.window_start), ("window_end", w.window_end), path)?; };
    // `lat`/`lon`: the delivery address's position, shown only to its own customer.
    "shipment.out_for_delivery" => OutForDelivery { driver: String, stops_before: Option<u32>, lat: Option<Lat>, lon: Option<Lon> };
    "courier.position" => CourierPosition {
        lat: Lat, lon: Lon, speed_kmh: Option<NonNegative>, heading: Option<Heading>, accuracy_m: Option<NonNegative>,
        altitude_m: Option<f64>, battery: Option<Percent>, flag: Option<PositionFlag>,
    };
    "shipment.arriving" => ShipmentArriving {};
    "shipment.delivered" => ShipmentDelivered { proof: Proof, lat: Option<Lat>, lon: Option<Lon> };
    "shipment.attempt_failed" => AttemptFailed { reason: String };
    "shipment.rescheduled" => Rescheduled { window_start: Timestamp, window_end: Timestamp, by: String }
        check(w, path) { window_order(("window_start", w.window_start), ("window_end", w.window_end), path)?; };
    "shipment.lost" => ShipmentLost {};
    "shipment.returned" => ShipmentReturned {};
    "tracking.viewed" => TrackingViewed { shipment: String };
    // Set by the customer on the tracking page; `photo` is the stored upload's name.
    "shipment.instructions_set" => InstructionsSet { instructions: String };
    "shipment.safe_place_set" => SafePlaceSet { place: String, photo: Option<String> };
    // inventory
    "inventory.received" => InventoryReceived { store: String, sku: String, delta: i64, reason: Option<String>, supplier: Option<String> };
    "inventory.adjusted" => InventoryAdjusted { store: String, sku: String, delta: i64, reason: String };
    "inventory.counted" => InventoryCounted { store: String, sku: String, on_hand: u64 };
    // use
    "usage.reported" => UsageReported { asset: String, metric: String, value: f64 };
    "return.requested" => ReturnRequested {};
    "return.completed" => ReturnCompleted {};
    "refund.promised" => RefundPromised { due: Timestamp, amount: Amount };
    "refund.issued" => RefundIssued { amount: Amount };
    "warranty.claimed" => WarrantyClaimed {};
    // service
    "case.opened" => CaseOpened { case: String, category: String, team: String, order: Option<String>, agent: Option<String> };
    "case.transferred" => CaseTransferred { from_team: String, to_team: String, to_agent: Option<String> };
    "case.held" => CaseHeld { seconds: u32 };
    "case.resolved" => CaseResolved { resolution: String, agent: Option<String> };
    "case.reopened" => CaseReopened {};
    "callback.promised" => CallbackPromised { due: Timestamp, agent: Option<String> };
    "callback.made" => CallbackMade {};
    // What an agent wrote down, and a gesture made to make up for something; about a
    // case when their subject is `case:{id}`. `agent`: who wrote or gave it.
    "note.added" => NoteAdded { text: String, agent: Option<String> };
    "goodwill.given" => GoodwillGiven {
        kind: GoodwillKind, amount: Option<Amount>, currency: Option<Currency>, points: Option<u64>,
        reason: String, agent: Option<String>,
    }
        check(g, path) { goodwill_fields(g, path)?; };
    // feedback
    "survey.answered" => SurveyAnswered {
        survey: String, touchpoint: Option<String>, nps: Option<Nps>, csat: Option<Csat>, ces: Option<Ces>,
        ces_scale: Option<CesScale>, comment: Option<String>,
    }
        check(s, path) {
            if s.nps.is_none() && s.csat.is_none() && s.ces.is_none() && s.comment.is_none() {
                return Err(path.error("must carry at least one answer: nps, csat, ces or comment"));
            }
            if let (Some(ces), Some(CesScale::Effort)) = (s.ces, s.ces_scale)
                && ces.0 > 5
            {
                return Err(path.key("ces").error(format!("must be between 1 and 5 on the effort scale, not {}", ces.0)));
            }
        };
    "review.posted" => ReviewPosted { rating: Rating, text: String, site: String, product: Option<String> };
    "social.posted" => SocialPosted { text: String, network: String, reach: Option<u64> };
    "referral.made" => ReferralMade {};
    // loyalty & messaging
    "loyalty.earned" => LoyaltyEarned { points: u64, reason: String };
    "loyalty.redeemed" => LoyaltyRedeemed { points: u64, reason: String };
    "message.sent" => MessageSent { channel: Channel, action: String, kind: MessageKind };
    "message.opened" => MessageOpened {};
    "offer.accepted" => OfferAccepted { action: String };
    "offer.declined" => OfferDeclined { action: String };
    // promises: recorded by troth's promise engine as promises are made and settled
    "promise.made" => PromiseMade {
        promise: String, key: String, touchpoint: String, due: Timestamp, start: Option<Timestamp>,
        at_risk_from: Option<Timestamp>, made_by_event: String,
    };
    "promise.at_risk" => PromiseAtRisk { promise: String };
    "promise.kept" => PromiseKept { promise: String, by_event: String, corrects_break: Option<bool> };
    "promise.broken" => PromiseBroken { promise: String, cause: BreakCause, by_event: Option<String> };
    // by_event: the event that superseded it; without one, it lapsed when due.
    "promise.cancelled" => PromiseCancelled { promise: String, by_event: Option<String> };
}

#[cfg(test)]
mod tests {
    /// The catalogue's documentation lists every type the code knows.
    #[test]
    fn every_type_is_documented() {
        let doc = include_str!("../../../docs/events.md");
        let missing: Vec<&&str> = super::EVENT_TYPES
            .iter()
            .filter(|t| !doc.contains(&format!("`{t}`")))
            .collect();
        assert!(missing.is_empty(), "docs/events.md does not describe {missing:?}");
    }

    #[test]
    fn an_effort_scale_answer_above_five_is_refused_naming_the_field() {
        let answer = |data: serde_json::Value| {
            crate::validate_value(
                serde_json::json!({"id": "a", "type": "survey.answered", "time": "2026-11-23T09:00:00Z", "data": data}),
                None,
            )
        };
        let refused = answer(serde_json::json!({"survey": "service", "ces": 6, "ces_scale": "effort"})).unwrap_err();
        assert_eq!(refused.error.field, "data.ces");
        assert!(
            refused.error.message.contains("effort scale"),
            "{}",
            refused.error.message
        );
        // 6 is a fine answer on the default CES 2.0 scale.
        assert!(answer(serde_json::json!({"survey": "service", "ces": 6})).is_ok());
        let unknown = answer(serde_json::json!({"survey": "service", "ces": 6, "ces_scale": "stars"})).unwrap_err();
        assert_eq!(unknown.error.field, "data.ces_scale");
    }

    #[test]
    fn a_goodwill_gesture_carries_what_its_kind_gives() {
        let given = |data: serde_json::Value| {
            crate::validate_value(
                serde_json::json!({"id": "g", "type": "goodwill.given", "time": "2026-11-23T09:00:00Z", "data": data}),
                None,
            )
            .map(|_| ())
            .map_err(|r| (r.error.field, r.error.message))
        };
        let late = "late delivery";
        assert_eq!(
            given(serde_json::json!({"kind": "voucher", "amount": 2000, "currency": "EUR", "reason": late})),
            Ok(())
        );
        assert_eq!(
            given(serde_json::json!({"kind": "points", "points": 500, "reason": late})),
            Ok(())
        );
        for (data, field, message) in [
            (
                serde_json::json!({"kind": "voucher", "reason": late}),
                "data.amount",
                "is required when kind is voucher",
            ),
            (
                serde_json::json!({"kind": "refund", "amount": 2000, "reason": late}),
                "data.currency",
                "is required when kind is refund",
            ),
            (
                serde_json::json!({"kind": "refund", "amount": 0, "currency": "EUR", "reason": late}),
                "data.amount",
                "must be more than 0",
            ),
            (
                serde_json::json!({"kind": "points", "reason": late}),
                "data.points",
                "is required when kind is points",
            ),
            (
                serde_json::json!({"kind": "points", "points": 5, "amount": 100, "reason": late}),
                "data.amount",
                "is only for kind refund or voucher, not points",
            ),
            (
                serde_json::json!({"kind": "voucher", "amount": 100, "currency": "EUR", "points": 5, "reason": late}),
                "data.points",
                "is only for kind points, not voucher",
            ),
            (
                serde_json::json!({"kind": "cash", "amount": 100, "reason": late}),
                "data.kind",
                "must be one of refund|voucher|points, not \"cash\"",
            ),
        ] {
            assert_eq!(
                given(data.clone()),
                Err((field.to_owned(), message.to_owned())),
                "{data}"
            );
        }
    }
}
