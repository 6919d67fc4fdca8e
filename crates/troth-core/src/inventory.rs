//! Inventory truthfulness: per store and SKU, what the site claimed, what visitors
//! found, what counts said and what receiving did, and from that how much phantom
//! stock there is, which receipts look wrong, and which function owns the fix.
//!
//! Phantom stock is stock the books hold and the shelf does not: the site says
//! "in stock", the customer comes, the shelf is empty. Its evidence here:
//! - visitors who came after an in-stock claim and found nothing (`store.visited`
//!   with `found: false`);
//! - counts that found fewer units than the books (`inventory.adjusted` with a
//!   negative `delta` after an `inventory.counted`).
//!
//! A receipt is a **suspected receiving error** when the next count after it finds
//! at least its units missing: received on paper, never on the shelf.
//!
//! Pure: the caller hands in the events of a time range, in log order.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalogue::{Claim, EventData};
use crate::{Timestamp, ValidEvent};

/// The event types this reads.
pub const EVENT_TYPES: &[&str] = &[
    "availability.shown",
    "store.visited",
    "inventory.received",
    "inventory.adjusted",
    "inventory.counted",
];

/// What is known of one SKU at one store over a time range.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Shelf {
    pub store: String,
    pub sku: String,
    /// Times the site said it was in stock at this store.
    pub claimed_in_stock: u64,
    /// Store visits for it, and how many found nothing.
    pub visits: u64,
    pub found_nothing: u64,
    /// Units received, in how many receipts.
    pub units_received: i64,
    pub receipts: u64,
    pub counts: u64,
    /// Units the counts found missing against the books (negative corrections).
    pub units_missing: i64,
    /// Receipts the next count contradicted: their units were not on the shelf.
    pub suspect_receipts: Vec<SuspectReceipt>,
    /// Customers the site likely misled: in-stock claims times the share of visits
    /// that found nothing. The phantom-stock score; 0 without visits.
    pub phantom_score: f64,
    /// Who owns the fix (see [`owner`]); empty when nothing is wrong.
    pub owner: String,
    /// The evidence, in words.
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SuspectReceipt {
    /// The receipt's event id.
    pub event: String,
    /// When it was received (RFC 3339).
    pub at: String,
    pub units: i64,
    /// Units the next count found missing.
    pub missing_at_next_count: i64,
}

/// A store and a SKU.
type Pair = (String, String);
/// A receipt awaiting a count's verdict: its event id, time and units.
type Receipt = (String, Timestamp, i64);

/// Per store and SKU, the evidence of `events` (in log order), worst phantom stock
/// first; only pairs where something was claimed, visited, received or counted.
pub fn truthfulness<'a>(events: impl IntoIterator<Item = &'a ValidEvent>) -> Vec<Shelf> {
    let mut shelves: BTreeMap<Pair, Shelf> = BTreeMap::new();
    // Receipts since each pair's last count; and those the last count judged, which
    // a correction right after it (the books set to the count) may contradict.
    let mut since_count: BTreeMap<Pair, Vec<Receipt>> = BTreeMap::new();
    let mut counted: BTreeMap<Pair, Vec<Receipt>> = BTreeMap::new();
    for event in events {
        match &event.data {
            EventData::AvailabilityShown(a) if a.claim == Claim::InStock => {
                if let Some(store) = &a.store {
                    entry(&mut shelves, store, &a.sku).claimed_in_stock += 1;
                }
            }
            EventData::StoreVisited(v) => {
                if let (Some(sku), Some(found)) = (&v.sku, v.found) {
                    let shelf = entry(&mut shelves, &v.store, sku);
                    shelf.visits += 1;
                    shelf.found_nothing += u64::from(!found);
                }
            }
            EventData::InventoryReceived(r) => {
                let shelf = entry(&mut shelves, &r.store, &r.sku);
                shelf.units_received += r.delta;
                shelf.receipts += 1;
                since_count.entry((r.store.clone(), r.sku.clone())).or_default().push((
                    event.id.clone(),
                    event.time,
                    r.delta,
                ));
            }
            EventData::InventoryCounted(c) => {
                entry(&mut shelves, &c.store, &c.sku).counts += 1;
                let key = (c.store.clone(), c.sku.clone());
                let receipts = since_count.remove(&key).unwrap_or_default();
                counted.insert(key, receipts);
            }
            EventData::InventoryAdjusted(a) if a.delta < 0 => {
                let missing = -a.delta;
                let shelf = entry(&mut shelves, &a.store, &a.sku);
                shelf.units_missing += missing;
                // The receipts since the count before: each whose units are all missing.
                for (id, at, units) in counted.remove(&(a.store.clone(), a.sku.clone())).unwrap_or_default() {
                    if units > 0 && units <= missing {
                        shelf.suspect_receipts.push(SuspectReceipt {
                            event: id,
                            at: at.to_string(),
                            units,
                            missing_at_next_count: missing,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    let mut out: Vec<Shelf> = shelves
        .into_values()
        .map(|mut shelf| {
            shelf.phantom_score = if shelf.visits > 0 {
                let share = shelf.found_nothing as f64 / shelf.visits as f64;
                (shelf.claimed_in_stock as f64 * share * 100.0).round() / 100.0
            } else {
                0.0
            };
            shelf.owner = owner(&shelf).to_owned();
            shelf.evidence = evidence(&shelf);
            shelf
        })
        .collect();
    out.sort_by(|a, b| {
        b.phantom_score
            .total_cmp(&a.phantom_score)
            .then(b.units_missing.cmp(&a.units_missing))
            .then_with(|| (&a.store, &a.sku).cmp(&(&b.store, &b.sku)))
    });
    out
}

fn entry<'m>(shelves: &'m mut BTreeMap<Pair, Shelf>, store: &str, sku: &str) -> &'m mut Shelf {
    shelves
        .entry((store.to_owned(), sku.to_owned()))
        .or_insert_with(|| Shelf {
            store: store.to_owned(),
            sku: sku.to_owned(),
            ..Default::default()
        })
}

/// Which function owns the fix:
/// - `store_operations` when receipts were recorded but their units never reached
///   the shelf (receiving; purchasing too, if the supplier short-shipped);
/// - `inventory` when counts find units missing without a receipt to blame (the
///   books drift: shrinkage, unrecorded sales);
/// - `store_operations` when visitors find nothing while the counts agree with the
///   books (the stock is there, not on the shelf: shelving, replenishment);
/// - empty when nothing is wrong.
pub fn owner(shelf: &Shelf) -> &'static str {
    if !shelf.suspect_receipts.is_empty() {
        "store_operations"
    } else if shelf.units_missing > 0 {
        "inventory"
    } else if shelf.found_nothing > 0 {
        "store_operations"
    } else {
        ""
    }
}

fn evidence(shelf: &Shelf) -> Vec<String> {
    let mut out = Vec::new();
    if shelf.found_nothing > 0 {
        out.push(format!(
            "{} of {} visitors found nothing; the site claimed it in stock {} times",
            shelf.found_nothing, shelf.visits, shelf.claimed_in_stock
        ));
    }
    if shelf.units_missing > 0 {
        out.push(format!(
            "counts found {} units fewer than the books ({} {})",
            shelf.units_missing,
            shelf.counts,
            if shelf.counts == 1 { "count" } else { "counts" }
        ));
    }
    for receipt in &shelf.suspect_receipts {
        out.push(format!(
            "received {} units ({}); the next count found {} missing",
            receipt.units, receipt.event, receipt.missing_at_next_count
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, ty: &str, time: &str, data: serde_json::Value) -> ValidEvent {
        crate::validate_value(
            serde_json::json!({"id": id, "type": ty, "time": format!("2026-11-23T{time}:00Z"), "data": data}),
            None,
        )
        .unwrap()
    }

    #[test]
    fn a_receipt_that_never_reached_the_shelf_is_phantom_stock_with_its_evidence() {
        let events = [
            event(
                "c0",
                "inventory.counted",
                "06:00",
                serde_json::json!({"store": "st-1", "sku": "t", "on_hand": 0}),
            ),
            event(
                "r1",
                "inventory.received",
                "07:00",
                serde_json::json!({"store": "st-1", "sku": "t", "delta": 6}),
            ),
            event(
                "a1",
                "availability.shown",
                "09:00",
                serde_json::json!({"store": "st-1", "sku": "t", "claim": "in_stock"}),
            ),
            event(
                "a2",
                "availability.shown",
                "09:10",
                serde_json::json!({"store": "st-1", "sku": "t", "claim": "in_stock"}),
            ),
            event(
                "v1",
                "store.visited",
                "10:00",
                serde_json::json!({"store": "st-1", "sku": "t", "found": false}),
            ),
            event(
                "c1",
                "inventory.counted",
                "21:00",
                serde_json::json!({"store": "st-1", "sku": "t", "on_hand": 0}),
            ),
            event(
                "j1",
                "inventory.adjusted",
                "21:01",
                serde_json::json!({"store": "st-1", "sku": "t", "delta": -6, "reason": "count_correction"}),
            ),
            // Elsewhere the books are right.
            event(
                "r2",
                "inventory.received",
                "07:00",
                serde_json::json!({"store": "st-2", "sku": "t", "delta": 4}),
            ),
            event(
                "v2",
                "store.visited",
                "10:00",
                serde_json::json!({"store": "st-2", "sku": "t", "found": true}),
            ),
            event(
                "c2",
                "inventory.counted",
                "21:00",
                serde_json::json!({"store": "st-2", "sku": "t", "on_hand": 3}),
            ),
        ];
        let shelves = truthfulness(&events);
        assert_eq!(shelves.len(), 2);
        let bad = &shelves[0];
        assert_eq!((bad.store.as_str(), bad.sku.as_str()), ("st-1", "t"));
        assert_eq!(bad.phantom_score, 2.0);
        assert_eq!(bad.units_missing, 6);
        assert_eq!(bad.suspect_receipts.len(), 1);
        assert_eq!(bad.suspect_receipts[0].event, "r1");
        assert_eq!(bad.owner, "store_operations");
        assert_eq!(
            bad.evidence,
            [
                "1 of 1 visitors found nothing; the site claimed it in stock 2 times",
                "counts found 6 units fewer than the books (2 counts)",
                "received 6 units (r1); the next count found 6 missing",
            ]
        );
        let good = &shelves[1];
        assert_eq!((good.phantom_score, good.owner.as_str()), (0.0, ""));
        assert!(good.suspect_receipts.is_empty() && good.evidence.is_empty());
    }

    #[test]
    fn missing_units_without_a_receipt_to_blame_are_the_books_drifting() {
        let events = [
            event(
                "c1",
                "inventory.counted",
                "21:00",
                serde_json::json!({"store": "st-1", "sku": "t", "on_hand": 2}),
            ),
            event(
                "j1",
                "inventory.adjusted",
                "21:01",
                serde_json::json!({"store": "st-1", "sku": "t", "delta": -3, "reason": "count_correction"}),
            ),
            // A receipt bigger than what went missing is not the culprit.
            event(
                "r1",
                "inventory.received",
                "22:00",
                serde_json::json!({"store": "st-1", "sku": "t", "delta": 8}),
            ),
            event(
                "c2",
                "inventory.counted",
                "23:00",
                serde_json::json!({"store": "st-1", "sku": "t", "on_hand": 9}),
            ),
            event(
                "j2",
                "inventory.adjusted",
                "23:01",
                serde_json::json!({"store": "st-1", "sku": "t", "delta": -1, "reason": "count_correction"}),
            ),
        ];
        let shelves = truthfulness(&events);
        assert_eq!(shelves[0].owner, "inventory");
        assert_eq!(shelves[0].units_missing, 4);
        assert!(shelves[0].suspect_receipts.is_empty());
    }
}
