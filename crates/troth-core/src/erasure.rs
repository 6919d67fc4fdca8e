//! Erasing a customer's personal data from their events (GDPR article 17), as a
//! rewrite of each event's JSON that the rest of troth can still read.
//!
//! What goes (docs/privacy.md): every identity (email, phone, the sender's id,
//! external ids), traits, free text the customer or an agent wrote about them,
//! the delivery address's position, photos, and the data of extension events,
//! whose meaning troth does not know. What stays is what the aggregates count:
//! types, times, subjects, touchpoints, amounts, scores, stages.
//!
//! Identities are not dropped but replaced by pseudonyms, one per identity, of
//! the same kind and unique to the erasure, so the events still resolve to one
//! customer exactly as before: the customers, merges and counts a rebuild from the
//! rewritten log finds are the ones the projections held, only anonymous. A
//! pseudonym is numbered in the order identities are met, not computed from the
//! identity, so nothing about the person can be recovered from it.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::identity::{Identity, IdentityKind};

/// What replaces free text.
pub const ERASED: &str = "[erased]";

/// Fields of `data` holding text about the person, per event type; each becomes
/// [`ERASED`]. (Fields that are removed, identities and photos are handled by
/// [`Pseudonyms::redact`] itself.)
pub const ERASED_TEXT: &[(&str, &[&str])] = &[
    ("search.performed", &["query"]),
    ("store_locator.searched", &["query"]),
    ("page.viewed", &["page"]),
    ("shipment.instructions_set", &["instructions"]),
    ("shipment.safe_place_set", &["place"]),
    ("survey.answered", &["comment"]),
    ("review.posted", &["text"]),
    ("social.posted", &["text"]),
    ("note.added", &["text"]),
    ("goodwill.given", &["reason"]),
];

/// Optional fields of `data` removed, per event type: the delivery address's
/// position, the customer's traits.
pub const REMOVED: &[(&str, &[&str])] = &[
    ("customer.identified", &["traits"]),
    ("shipment.out_for_delivery", &["lat", "lon"]),
    ("shipment.delivered", &["lat", "lon"]),
];

/// One erasure's pseudonyms: the same identity always gets the same one.
#[derive(Debug)]
pub struct Pseudonyms {
    /// Unique to the erasure (its number), so two erased customers never share one.
    erasure: u64,
    given: HashMap<Identity, Identity>,
}

/// An event after redaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Redacted {
    pub body: String,
    /// Stored uploads (photos) the event named, to delete.
    pub uploads: Vec<String>,
}

impl Pseudonyms {
    pub fn new(erasure: u64) -> Pseudonyms {
        Pseudonyms {
            erasure,
            given: HashMap::new(),
        }
    }

    /// The pseudonym of an identity, of the same kind.
    pub fn of(&mut self, identity: &Identity) -> Identity {
        let n = self.given.len() as u64 + 1;
        let erasure = self.erasure;
        self.given
            .entry(identity.clone())
            .or_insert_with(|| {
                let made = match identity.kind() {
                    IdentityKind::Id => Identity::new(IdentityKind::Id, &format!("erased-{erasure}-{n}")),
                    IdentityKind::Email => {
                        Identity::new(IdentityKind::Email, &format!("erased-{erasure}-{n}@erased.invalid"))
                    }
                    // 00 is no country's calling code, so this number reaches no one.
                    IdentityKind::Phone => Identity::new(
                        IdentityKind::Phone,
                        &format!("+00{:010}{:04}", erasure % 10_000_000_000, n),
                    ),
                    IdentityKind::External => {
                        let system = identity.value().split_once(':').map_or("erased", |(s, _)| s);
                        Identity::external(system, &format!("erased-{erasure}-{n}"))
                    }
                };
                made.expect("pseudonyms are valid identities")
            })
            .clone()
    }

    /// Identities met so far, each with its pseudonym.
    pub fn len(&self) -> usize {
        self.given.len()
    }

    pub fn is_empty(&self) -> bool {
        self.given.is_empty()
    }

    /// Whether a validated event names one of the identities erased.
    pub fn names(&self, event: &crate::ValidEvent) -> bool {
        event.customer.identities.iter().any(|i| self.given.contains_key(i))
    }

    /// Whether this text is one of the identities erased, in any of the forms a
    /// sender may have written it (for rows kept as the sender sent them).
    pub fn mentions(&self, text: &str) -> bool {
        let lower = text.to_lowercase();
        self.given.keys().any(|identity| {
            let value = identity.value();
            let value = match identity.kind() {
                IdentityKind::External => value.split_once(':').map_or(value, |(_, id)| id),
                _ => value,
            };
            value.len() >= 3 && lower.contains(&value.to_lowercase())
        })
    }

    /// Rewrites one stored event (JSON text) without the person's data.
    pub fn redact(&mut self, raw: &str) -> Result<Redacted, String> {
        let mut event: Value = serde_json::from_str(raw).map_err(|e| format!("not JSON: {e}"))?;
        let object = event.as_object_mut().ok_or("not a JSON object")?;
        let kind = object
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(customer) = object.get_mut("customer").and_then(Value::as_object_mut) {
            self.redact_customer(customer);
        }
        let mut uploads = Vec::new();
        if let Some(data) = object.get_mut("data").and_then(Value::as_object_mut) {
            if crate::catalogue::is_extension_type(&kind) {
                data.clear();
            } else {
                self.redact_data(&kind, data, &mut uploads);
            }
        }
        let body = serde_json::to_string(&event).map_err(|e| e.to_string())?;
        Ok(Redacted { body, uploads })
    }

    fn redact_customer(&mut self, customer: &mut Map<String, Value>) {
        for (key, kind) in [
            ("id", IdentityKind::Id),
            ("email", IdentityKind::Email),
            ("phone", IdentityKind::Phone),
        ] {
            if let Some(Value::String(value)) = customer.get(key)
                && let Ok(identity) = Identity::new(kind, value)
            {
                let pseudonym = self.of(&identity);
                customer.insert(key.into(), Value::String(pseudonym.value().into()));
            }
        }
        if let Some(Value::Object(systems)) = customer.get_mut("external") {
            for (system, id) in systems.iter_mut() {
                if let Some(identity) = id.as_str().and_then(|id| Identity::external(system, id).ok()) {
                    let pseudonym = self.of(&identity);
                    let value = pseudonym.value().split_once(':').map_or("", |(_, id)| id);
                    *id = Value::String(value.into());
                }
            }
        }
    }

    fn redact_data(&mut self, kind: &str, data: &mut Map<String, Value>, uploads: &mut Vec<String>) {
        for (list, identity_kind) in [("emails", IdentityKind::Email), ("phones", IdentityKind::Phone)] {
            if kind == "customer.identified"
                && let Some(Value::Array(values)) = data.get_mut(list)
            {
                for value in values.iter_mut() {
                    if let Some(identity) = value.as_str().and_then(|v| Identity::new(identity_kind, v).ok()) {
                        *value = Value::String(self.of(&identity).value().into());
                    }
                }
            }
        }
        if kind == "customer.merged"
            && let Some(identity) = data
                .get("identity")
                .and_then(Value::as_str)
                .and_then(Identity::from_key)
        {
            let pseudonym = self.of(&identity);
            data.insert("identity".into(), Value::String(pseudonym.to_string()));
        }
        for (_, fields) in ERASED_TEXT.iter().filter(|(t, _)| *t == kind) {
            for field in *fields {
                if let Some(value) = data.get_mut(*field).filter(|v| v.is_string()) {
                    *value = Value::String(ERASED.into());
                }
            }
        }
        for (_, fields) in REMOVED.iter().filter(|(t, _)| *t == kind) {
            for field in *fields {
                data.remove(*field);
            }
        }
        let photo = match kind {
            "shipment.safe_place_set" => data.remove("photo"),
            "shipment.delivered" => data
                .get_mut("proof")
                .and_then(Value::as_object_mut)
                .and_then(|proof| proof.remove("photo")),
            _ => None,
        };
        if let Some(Value::String(name)) = photo {
            uploads.push(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::validate_event;

    fn redact(p: &mut Pseudonyms, event: Value) -> (Value, Vec<String>) {
        let out = p.redact(&event.to_string()).unwrap();
        let value: Value = serde_json::from_str(&out.body).unwrap();
        // What is written back must still be an event troth accepts.
        validate_event(&out.body).unwrap_or_else(|r| panic!("{}: {}", out.body, r.error));
        (value, out.uploads)
    }

    #[test]
    fn every_identity_gets_one_pseudonym_of_its_kind_wherever_it_appears() {
        let mut p = Pseudonyms::new(7);
        let (a, _) = redact(
            &mut p,
            json!({"id": "e1", "type": "customer.identified", "time": "2026-11-20T10:00:00Z",
                   "customer": {"email": "Ann@Example.org", "phone": "+44 20 7946 0000", "external": {"shop": "42"}},
                   "data": {"traits": {"name": "Ann Lee"}, "emails": ["ann.lee@work.example"], "phones": ["07700 900123"]}}),
        );
        let (b, _) = redact(
            &mut p,
            json!({"id": "e2", "type": "checkout.started", "time": "2026-11-20T10:01:00Z",
                   "customer": {"email": "ann@example.org", "id": "c-17"}}),
        );
        assert_eq!(a["customer"]["email"], "erased-7-1@erased.invalid");
        assert_eq!(a["customer"]["phone"], "+0000000000070002");
        assert_eq!(a["customer"]["external"]["shop"], "erased-7-3");
        assert_eq!(a["data"]["emails"][0], "erased-7-4@erased.invalid");
        assert!(a["data"].get("traits").is_none(), "{a}");
        // The same email, written differently, is the same pseudonym.
        assert_eq!(b["customer"]["email"], a["customer"]["email"]);
        assert_eq!(b["customer"]["id"], "erased-7-6");
        let text = format!("{a}{b}");
        for personal in ["Ann", "ann", "7946", "900123", "42\"", "c-17", "Lee"] {
            assert!(!text.contains(personal), "{personal} left in {text}");
        }
        assert!(p.mentions("{\"userId\":\"c-17\",\"email\":\"ANN@EXAMPLE.ORG\"}"));
        assert!(!p.mentions("{\"userId\":\"c-18\"}"));
    }

    #[test]
    fn free_text_positions_photos_and_extension_data_go_and_counted_facts_stay() {
        let mut p = Pseudonyms::new(1);
        let customer = json!({"email": "ann@example.org"});
        let (review, _) = redact(
            &mut p,
            json!({"id": "r", "type": "review.posted", "time": "2026-11-20T10:00:00Z", "customer": customer,
                   "data": {"rating": 2, "text": "Ann here, the van hit my gate at 12 Elm Road", "site": "trustpilot"}}),
        );
        assert_eq!(review["data"]["text"], ERASED);
        assert_eq!(review["data"]["rating"], 2);
        let (delivered, uploads) = redact(
            &mut p,
            json!({"id": "d", "type": "shipment.delivered", "time": "2026-11-20T10:00:00Z", "customer": customer,
                   "subject": "shipment:s-1", "data": {"proof": {"kind": "photo", "photo": "ab.jpg"}, "lat": 51.5, "lon": -0.1}}),
        );
        assert_eq!(uploads, ["ab.jpg"]);
        assert_eq!(delivered["data"], json!({"proof": {"kind": "photo"}}));
        assert_eq!(delivered["subject"], "shipment:s-1");
        let (x, _) = redact(
            &mut p,
            json!({"id": "x", "type": "x.wishlist_added", "time": "2026-11-20T10:00:00Z", "customer": customer,
                   "data": {"note": "for Ann's birthday"}}),
        );
        assert_eq!(x["data"], json!({}));
        let (survey, _) = redact(
            &mut p,
            json!({"id": "s", "type": "survey.answered", "time": "2026-11-20T10:00:00Z", "customer": customer,
                   "touchpoint": "delivery", "data": {"survey": "post-delivery", "nps": 3, "comment": "late again"}}),
        );
        assert_eq!(survey["data"]["nps"], 3);
        assert_eq!(survey["data"]["comment"], ERASED);
        assert_eq!(survey["touchpoint"], "delivery");
    }

    #[test]
    fn a_merge_names_the_pseudonym_of_the_identity_that_merged() {
        let mut p = Pseudonyms::new(3);
        let email = Identity::new(IdentityKind::Email, "ann@example.org").unwrap();
        let (merged, _) = redact(
            &mut p,
            json!({"id": "m", "type": "customer.merged", "time": "2026-11-20T10:00:00Z",
                   "customer": {"email": "ann@example.org"},
                   "data": {"into": "cus_1", "from": "cus_2", "identity": email.to_string()}}),
        );
        assert_eq!(merged["data"]["identity"], "email:erased-3-1@erased.invalid");
        assert_eq!(p.of(&email).to_string(), "email:erased-3-1@erased.invalid");
    }
}
