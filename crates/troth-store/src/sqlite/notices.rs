//! What a customer message about a shipment needs when its outbox row is written:
//! the shipment's facts for templates (its tracking link, window, stops before,
//! proof), and the over-contact rules that keep a customer from being told the
//! same thing twice (docs/notifications.md#over-contact).
//!
//! Both read the shipment projection as it stands after the triggering event was
//! applied, in the same transaction, so the row records what was true then.

use rusqlite::{Connection, params};
use serde_json::{Value, json};
use troth_core::catalogue::EventData;
use troth_core::shipment::Shipment;
use troth_core::{Timestamp, ValidEvent};

use super::shipments;
use crate::StoreError;

/// A customer is told a template about a shipment at most once in this much event time.
pub const QUIET_PERIOD_US: i64 = 30 * 60 * 1_000_000;

/// The shipment an event is about, as the projection holds it.
pub struct ShipmentContext {
    pub id: String,
    shipment: Shipment,
    /// `payload.shipment` of the row.
    pub payload: Value,
}

/// The shipment `event` concerns (its `shipment:` subject, or the one it creates), if known.
pub fn context(conn: &Connection, event: &ValidEvent, now: Timestamp) -> Result<Option<ShipmentContext>, StoreError> {
    let id = match &event.data {
        EventData::ShipmentCreated(created) => created.shipment.clone(),
        _ => match event.subject.as_deref().and_then(|s| s.strip_prefix("shipment:")) {
            Some(id) => id.to_owned(),
            None => return Ok(None),
        },
    };
    let Some((shipment, _)) = shipments::get(conn, &id)? else {
        return Ok(None);
    };
    let mut payload = json!({ "id": id });
    if let Some(stage) = shipment.stage() {
        payload["stage"] = stage.stage.as_str().into();
    }
    // The path only: the public base URL is the composer's (troth-notify's) to add.
    if let Some(link) = shipments::link(conn, &id)?.filter(|l| l.valid_at(now)) {
        payload["tracking_path"] = format!("/t/{}", link.token).into();
    }
    // A window already over by the event's time says nothing about what comes next.
    if let Some((start, end)) = shipment.window().filter(|(_, end)| *end >= event.time) {
        payload["window_start"] = start.to_string().into();
        payload["window_end"] = end.to_string().into();
    }
    if shipment.on_the_road()
        && let Some(stops) = shipment.assignment().and_then(|a| a.stops_before)
    {
        payload["stops_before"] = stops.into();
    }
    if let Some(proof) = shipment.proof() {
        payload["proof"] = json!({ "kind": proof.kind });
        if let Some(photo) = proof.photo {
            payload["proof"]["photo"] = photo.into();
        }
    }
    Ok(Some(ShipmentContext { id, shipment, payload }))
}

/// Why a message about a shipment must not be sent, if it must not: the event is
/// stale by the time it is stored, or the customer was already told.
pub fn over_contact(
    conn: &Connection,
    ctx: &ShipmentContext,
    event: &ValidEvent,
    cid: i64,
    template: &str,
) -> Result<Option<String>, StoreError> {
    if let Some(stale) = stale(ctx, event) {
        return Ok(Some(stale));
    }
    let content = content(event);
    let mut told = conn.prepare_cached(
        "SELECT time_us, content FROM outbox_contacts WHERE shipment = ?1 AND template = ?2 AND cid = ?3
         UNION ALL
         SELECT o.time_us, o.content FROM customers m JOIN outbox_contacts o
           ON o.shipment = ?1 AND o.template = ?2 AND o.cid = m.cid
          WHERE m.merged_into = ?3",
    )?;
    let told: Vec<(i64, Option<String>)> = told
        .query_map(params![ctx.id, template, cid], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let at = event.time.micros();
    for (time_us, told_content) in told {
        if content.is_some() && told_content == content {
            return Ok(Some(format!(
                "the customer was already sent {template} with this content about shipment {}",
                ctx.id
            )));
        }
        // Both ways: an event that arrives late is as close to the message as one that follows it.
        if (time_us - at).abs() < QUIET_PERIOD_US {
            return Ok(Some(format!(
                "the customer was sent {template} about shipment {} less than {} minutes before (event time)",
                ctx.id,
                QUIET_PERIOD_US / 60_000_000
            )));
        }
    }
    Ok(None)
}

/// Notes that the customer will be told: a row for this message was written as pending.
pub fn record(
    conn: &Connection,
    ctx: &ShipmentContext,
    event: &ValidEvent,
    cid: i64,
    template: &str,
    outbox_id: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO outbox_contacts (cid, shipment, template, time_us, content, outbox_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        cid,
        ctx.id,
        template,
        event.time.micros(),
        content(event),
        outbox_id
    ])?;
    Ok(())
}

/// An event whose news the shipment has already left behind: `arriving` or
/// `out_for_delivery` when the driver is no longer on the way to this customer
/// (delivered, failed, or a report that came in late), a window that is not the
/// shipment's latest, or one set for a shipment that is already final.
fn stale(ctx: &ShipmentContext, event: &ValidEvent) -> Option<String> {
    let stage = ctx.shipment.stage().map_or("unknown", |s| s.stage.as_str());
    let id = &ctx.id;
    match &event.data {
        EventData::OutForDelivery(_) | EventData::ShipmentArriving(_) if !ctx.shipment.on_the_road() => Some(format!(
            "shipment {id} is not on its way to the customer any more (stage: {stage})"
        )),
        EventData::WindowSet(_) | EventData::Rescheduled(_) if ctx.shipment.final_at().is_some() => {
            Some(format!("shipment {id} is already {stage}"))
        }
        EventData::WindowSet(w) if ctx.shipment.window() != Some((w.window_start, w.window_end)) => {
            Some(format!("a later window is set for shipment {id}"))
        }
        _ => None,
    }
}

/// What a message says, for templates that could say the same thing twice: the
/// window told, or that the parcel was delivered (once per shipment).
fn content(event: &ValidEvent) -> Option<String> {
    match &event.data {
        EventData::WindowSet(w) => Some(format!("window {}/{}", w.window_start, w.window_end)),
        EventData::Rescheduled(r) => Some(format!("window {}/{}", r.window_start, r.window_end)),
        EventData::ShipmentDelivered(_) => Some("delivered".to_owned()),
        _ => None,
    }
}
