//! The shipment projection (`shipments`: each shipment's facts as
//! [`troth_core::shipment::Shipment`] keeps them) and the tracking links.
//!
//! An order's stages (placed, picked, packed) are stages of every shipment that
//! carries it, and usually happen before the shipment exists: the projection keeps
//! them per order (`order_stages`) and gives them to each shipment as it is created,
//! so projecting a shipment never reads the log.
//!
//! The projection is rebuilt by replay like the others. Tracking links are not:
//! their tokens are random, so rebuilding them would change every link customers
//! hold. Like API keys they live in a table of their own (`tracking_links`) that
//! replay neither reads nor writes.

use troth_core::FastMap as HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use troth_core::catalogue::EventData;
use troth_core::shipment::{Fact, Shipment, Stage};
use troth_core::{Timestamp, ValidEvent};

use crate::{StoreError, TrackedShipment, TrackingLink};

/// Order events that are stages of the shipments carrying the order.
const ORDER_STAGES: &str = "('order.placed', 'order.picked', 'order.packed')";

/// Shipment rows read and changed since the last [`Staged::write`]: a shipment's
/// events often come in the same batch (its stages, a dozen tracking views), and
/// decoding, encoding and upserting its JSON state once per batch instead of once
/// per event is most of what the projection costs. The projections write them before
/// anything else reads the table in the same transaction, and before it commits.
#[derive(Debug, Default)]
pub struct Staged {
    rows: HashMap<String, StagedRow>,
    /// Staged shipments by order, for order events that arrive after the shipment
    /// was staged but before it was written.
    by_order: HashMap<String, Vec<String>>,
}

#[derive(Debug)]
struct StagedRow {
    shipment: Shipment,
    customer: Option<String>,
    dirty: bool,
}

impl Staged {
    /// The row of shipment `id`, staged from the table if needed; `None` if unknown.
    fn load(&mut self, conn: &Connection, s: &str, id: &str) -> Result<Option<&mut StagedRow>, StoreError> {
        if !self.rows.contains_key(id) {
            let stored: Option<(String, Option<String>)> = conn
                .prepare_cached(&format!("SELECT state, customer_ref FROM {s}.shipments WHERE id = ?1"))?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((state, customer)) = stored else {
                return Ok(None);
            };
            self.rows.insert(
                id.to_owned(),
                StagedRow {
                    shipment: decode(&state)?,
                    customer,
                    dirty: false,
                },
            );
        }
        Ok(self.rows.get_mut(id))
    }

    /// Loads a shipment (or starts one), lets `change` update it and marks it for
    /// writing if it changed.
    fn update(
        &mut self,
        conn: &Connection,
        s: &str,
        id: &str,
        event: &ValidEvent,
        change: impl FnOnce(&mut Shipment) -> bool,
    ) -> Result<(), StoreError> {
        let row = match self.load(conn, s, id)? {
            Some(row) => row,
            None => self.rows.entry(id.to_owned()).or_insert(StagedRow {
                shipment: Shipment::default(),
                customer: None,
                dirty: true,
            }),
        };
        let order_before = row.shipment.order.clone();
        if change(&mut row.shipment) {
            row.dirty = true;
        }
        // The first event that names a customer names the shipment's customer.
        if row.customer.is_none()
            && let Some(customer) = super::projector::customer_ref(event)
        {
            row.customer = Some(customer);
            row.dirty = true;
        }
        if row.shipment.order != order_before
            && let Some(order) = row.shipment.order.clone()
        {
            self.by_order.entry(order).or_default().push(id.to_owned());
        }
        Ok(())
    }

    /// Writes the changed rows to `{s}.shipments` and forgets them all.
    pub fn write(&mut self, conn: &Connection, s: &str) -> Result<(), StoreError> {
        self.by_order.clear();
        if self.rows.is_empty() {
            return Ok(());
        }
        let mut upsert = conn.prepare_cached(&format!(
            "INSERT INTO {s}.shipments (id, order_id, customer_ref, stage, final_us, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET order_id = excluded.order_id, customer_ref = excluded.customer_ref,
               stage = excluded.stage, final_us = excluded.final_us, state = excluded.state"
        ))?;
        for (id, row) in self.rows.drain() {
            if !row.dirty {
                continue;
            }
            let shipment = &row.shipment;
            let state = serde_json::to_string(shipment).map_err(|e| StoreError::Invalid(e.to_string()))?;
            upsert.execute(params![
                id,
                shipment.order,
                row.customer,
                shipment.stage().map(|s| s.stage.as_str()),
                shipment.final_at().map(Timestamp::micros),
                state
            ])?;
        }
        Ok(())
    }

    /// Whether the projection knows shipment `id`, staged or stored.
    pub fn knows(&mut self, conn: &Connection, s: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self.load(conn, s, id)?.is_some())
    }
}

/// Applies an event to the projection (staged in `staged`), if it concerns a
/// shipment or an order that has one.
pub fn apply(conn: &Connection, s: &str, staged: &mut Staged, event: &ValidEvent) -> Result<(), StoreError> {
    if Stage::of_event_type(&event.event_type).is_some_and(|stage| stage <= Stage::Packed) {
        let Some(order) = event.subject.as_deref().and_then(|s| s.strip_prefix("order:")) else {
            return Ok(());
        };
        conn.prepare_cached(&format!(
            "INSERT OR IGNORE INTO {s}.order_stages (order_id, event, type, time_us) VALUES (?1, ?2, ?3, ?4)"
        ))?
        .execute(params![order, event.id, event.event_type, event.time.micros()])?;
        let mut ids: Vec<String> = conn
            .prepare_cached(&format!("SELECT id FROM {s}.shipments WHERE order_id = ?1"))?
            .query_map([order], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for id in staged.by_order.get(order).into_iter().flatten() {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        for id in ids {
            staged.update(conn, s, &id, event, |shipment| shipment.apply(event))?;
        }
        return Ok(());
    }
    if let EventData::ShipmentCreated(created) = &event.data {
        let id = created.shipment.as_str();
        // The order's stages usually come before its shipment exists.
        let earlier = order_stages(conn, s, &created.order)?;
        staged.update(conn, s, id, event, |shipment| {
            let mut changed = shipment.apply(event);
            for fact in earlier {
                changed |= shipment.record(fact);
            }
            changed
        })?;
        return Ok(());
    }
    let Some(id) = event.subject.as_deref().and_then(|s| s.strip_prefix("shipment:")) else {
        return Ok(());
    };
    if Stage::of_event_type(&event.event_type).is_some()
        || matches!(
            event.data,
            EventData::WindowSet(_) | EventData::InstructionsSet(_) | EventData::SafePlaceSet(_)
        )
    {
        staged.update(conn, s, id, event, |shipment| shipment.apply(event))?;
    }
    Ok(())
}

/// The stages of `order` projected so far, as the facts their events told.
fn order_stages(conn: &Connection, s: &str, order: &str) -> Result<Vec<Fact>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT event, type, time_us FROM {s}.order_stages WHERE order_id = ?1"
    ))?;
    let rows = stmt.query_map([order], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
    })?;
    let mut facts = Vec::new();
    for row in rows {
        let (event, event_type, time) = row?;
        if let Some(stage) = Stage::of_event_type(&event_type) {
            facts.push(Fact::order_stage(event, Timestamp(time), stage));
        }
    }
    Ok(facts)
}

/// Fills `order_stages` for a store whose shipments were projected before it was
/// kept: the order stages in the log up to the checkpoint, read once, when the store
/// opens.
pub fn fill_order_stages(conn: &Connection, checkpoint: i64) -> rusqlite::Result<()> {
    conn.execute(
        &format!(
            "INSERT OR IGNORE INTO main.order_stages (order_id, event, type, time_us)
             SELECT substr(subject, 7), id, type, time_us FROM log.events
              WHERE type IN {ORDER_STAGES} AND substr(subject, 1, 6) = 'order:' AND seq <= ?1"
        ),
        [checkpoint],
    )?;
    Ok(())
}

fn decode(state: &str) -> Result<Shipment, StoreError> {
    serde_json::from_str(state).map_err(|e| StoreError::Invalid(format!("a stored shipment does not decode: {e}")))
}

/// A shipment's projection and its customer ref, if the shipment is known.
pub fn get(conn: &Connection, id: &str) -> Result<Option<(Shipment, Option<serde_json::Value>)>, StoreError> {
    let row: Option<(String, Option<String>)> = conn
        .prepare_cached("SELECT state, customer_ref FROM main.shipments WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(state, customer)| Ok((decode(&state)?, customer.and_then(|c| serde_json::from_str(&c).ok()))))
        .transpose()
}

/// Issues the shipment's tracking link unless it has one; the token is 144 random bits.
/// Returns false for a shipment the projection does not know.
pub fn issue_link(conn: &Connection, staged: &mut Staged, shipment: &str, now: Timestamp) -> Result<bool, StoreError> {
    if !staged.knows(conn, "main", shipment)? {
        return Ok(false);
    }
    let has: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM main.tracking_links WHERE shipment = ?1)")?
        .query_row([shipment], |r| r.get(0))?;
    if !has {
        let token = new_token().map_err(|e| StoreError::Invalid(format!("no randomness for a token: {e}")))?;
        conn.prepare_cached(
            "INSERT INTO main.tracking_links (shipment, token, hash, created_us) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![shipment, token, hash_token(&token), now.micros()])?;
    }
    Ok(true)
}

/// The link of a shipment, with its expiry as the projection says.
pub fn link(conn: &Connection, shipment: &str) -> Result<Option<TrackingLink>, StoreError> {
    let Some(token) = token(conn, shipment)? else {
        return Ok(None);
    };
    let expires_at = get(conn, shipment)?.and_then(|(s, _)| s.link_expires_at());
    Ok(Some(TrackingLink {
        token,
        shipment: shipment.to_owned(),
        expires_at,
    }))
}

/// The token of the shipment's link, if one was issued.
pub fn token(conn: &Connection, shipment: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT token FROM main.tracking_links WHERE shipment = ?1")?
        .query_row([shipment], |r| r.get(0))
        .optional()?)
}

/// What a token opens. Looked up by the token's hash, so the lookup's timing
/// depends on nothing an attacker can steer towards a real token.
pub fn tracked(conn: &Connection, token: &str) -> Result<Option<TrackedShipment>, StoreError> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT shipment, token FROM main.tracking_links WHERE hash = ?1")?
        .query_row([hash_token(token)], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((id, token)) = row else { return Ok(None) };
    let Some((shipment, customer)) = get(conn, &id)? else {
        return Ok(None);
    };
    Ok(Some(TrackedShipment {
        link: TrackingLink {
            token,
            shipment: id,
            expires_at: shipment.link_expires_at(),
        },
        shipment,
        customer,
    }))
}

fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 18 random bytes as URL-safe base64 (24 characters, no padding).
fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes)?;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(24);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]);
        for shift in [18, 12, 6, 0] {
            out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
        }
    }
    Ok(out)
}

/// The shipment projector. Its rows are staged in the transaction's
/// [`super::projector::Cx::shipments`], which plays also read. Live, every shipment
/// gets its tracking link as it is created, so notifications can carry it (links
/// are not rebuilt: their tokens must survive a replay).
pub struct Projection;

impl Projection {
    pub fn open(conn: &Connection, schema: &str) -> Result<Projection, StoreError> {
        conn.execute_batch(&super::schema::shipments(schema))?;
        Ok(Projection)
    }
}

impl super::projector::Projector for Projection {
    fn name(&self) -> &'static str {
        "shipments"
    }

    fn tables(&self) -> &'static [super::projector::Table] {
        use super::projector::Table;
        &[
            Table {
                name: "shipments",
                rows: "SELECT id, order_id, customer_ref, stage, final_us, state FROM {s}.shipments",
            },
            Table {
                name: "order_stages",
                rows: "SELECT order_id, event, type, time_us FROM {s}.order_stages",
            },
        ]
    }

    fn apply(
        &mut self,
        cx: &mut super::projector::Cx<'_>,
        at: &mut super::projector::Logged,
    ) -> Result<(), StoreError> {
        apply(cx.conn, cx.schema, &mut cx.shipments, &at.event)?;
        if cx.live.is_some()
            && let troth_core::catalogue::EventData::ShipmentCreated(created) = &at.event.data
        {
            issue_link(cx.conn, &mut cx.shipments, &created.shipment, at.received)?;
        }
        Ok(())
    }

    fn finish(&mut self, cx: &mut super::projector::Cx<'_>) -> Result<(), StoreError> {
        cx.shipments.write(cx.conn, cx.schema)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_url_safe_and_differ() {
        let (a, b) = (super::new_token().unwrap(), super::new_token().unwrap());
        assert_eq!(a.len(), 24);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
    }
}
