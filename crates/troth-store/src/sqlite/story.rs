//! What a customer's story is told from, read on one connection in one read
//! transaction: their newest events (validated once, and reused for the profile's
//! counts, their cases and the promises they made), then their promises and their
//! shipments by primary key. One trip off the async threads instead of one per part.
//!
//! The events come from `customer_events`, a copy of each event's text kept in the
//! order of its customer: a story of 90 events reads a dozen neighbouring pages
//! there, where the log (in the order events arrived) would take a page per event.
//! It is `stories.db`'s, written by a thread of its own (`stories.rs`) with what
//! the projector [`Copies`] hands over, and replay checks it against the log.

use std::collections::BTreeSet;

use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use troth_core::ValidEvent;
use troth_core::catalogue::EventData;
use troth_core::identity::CustomerId;

use super::read::{self, EventCounts};
use super::shipments;
use crate::{PromiseView, ShipmentRecord, StoreError, StoryRecords, TrackingLink};

/// Promises a story lists at most.
const PROMISES: usize = 500;

pub fn story(
    conn: &Connection,
    key: &str,
    limit: usize,
    shipment_limit: usize,
) -> Result<Option<StoryRecords>, StoreError> {
    // Every part is read from the same point of the log (a read is one snapshot, see
    // `SqliteStore::read`), though the projections move on meanwhile.
    let Some(survivor) = read::find_customer(conn, key)? else {
        return Ok(None);
    };
    let merged = read::merged_into(conn, survivor)?;
    let mut cids = vec![survivor];
    cids.extend(merged.iter().copied());

    let (events, truncated) = newest_events(conn, &cids, limit)?;
    let (counts, case_events) = if truncated {
        let counts = read::event_counts(conn, survivor, &merged)?;
        let cases = read::case_events(conn, None, Some(&survivor.to_string()))?
            .into_iter()
            .filter_map(|c| troth_core::validate_event(&c.raw).ok())
            .collect();
        (counts, cases)
    } else {
        // Every event they are in was read: count and pick from those.
        let mut counts = EventCounts::default();
        for (_, event) in &events {
            counts.add(&event.event_type, 1, event.time.micros(), event.time.micros());
        }
        let cases = events
            .iter()
            .filter(|(_, e)| troth_core::case::EVENT_TYPES.contains(&e.event_type.as_str()))
            .map(|(_, e)| e.clone())
            .collect();
        (counts, cases)
    };
    let promises = promises(conn, &cids, &events, truncated)?;
    let shipments = events
        .iter()
        .rev()
        .filter_map(|(_, e)| match &e.data {
            EventData::ShipmentCreated(created) => Some(created.shipment.as_str()),
            _ => None,
        })
        .take(shipment_limit)
        .map(|id| shipment(conn, id))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    let profile = read::profile(conn, survivor, merged, counts)?;
    Ok(Some(StoryRecords {
        profile,
        events,
        truncated,
        case_events,
        promises,
        shipments,
    }))
}

/// Fills `customer_events` (`stories.db`, attached as `stories`) from
/// `event_customers` and the log (attached as `log`), after a replay rewrote them.
/// Events in it already are left as they are.
pub fn fill_customer_events(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT OR IGNORE INTO stories.customer_events (cid, seq, body)
         SELECT c.cid, c.seq, e.body FROM main.event_customers c JOIN log.events e ON e.seq = c.seq ORDER BY c.cid, c.seq",
        [],
    )
}

/// The customers' newest `limit` events, oldest first, and whether there are older ones.
fn newest_events(
    conn: &Connection,
    cids: &[CustomerId],
    limit: usize,
) -> Result<(Vec<(i64, ValidEvent)>, bool), StoreError> {
    let marks = vec!["?"; cids.len()].join(",");
    // The limit is written into the text, as in `promises` below: bound, it would
    // make SQLite plan the statement again at every run.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT seq, body FROM customer_events WHERE cid IN ({marks}) ORDER BY seq DESC LIMIT {}",
        limit + 1
    ))?;
    let mut rows = stmt.query(rusqlite::params_from_iter(cids.iter().map(|c| c.0)))?;
    let mut events = Vec::new();
    let mut truncated = false;
    while let Some(row) = rows.next()? {
        if events.len() == limit {
            truncated = true;
            break;
        }
        let seq: i64 = row.get(0)?;
        // The log holds only valid events; one written by an older version that
        // this one would refuse is left out rather than failing the whole story.
        if let Ok(event) = troth_core::validate_event(row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?) {
            events.push((seq, event));
        }
    }
    events.reverse();
    Ok((events, truncated))
}

/// Promises their events made, and those about the orders and shipments they name.
fn promises(
    conn: &Connection,
    cids: &[CustomerId],
    events: &[(i64, ValidEvent)],
    truncated: bool,
) -> Result<Vec<PromiseView>, StoreError> {
    let subjects: BTreeSet<&str> = events
        .iter()
        .filter_map(|(_, e)| e.subject.as_deref())
        .filter(|s| s.starts_with("order:") || s.starts_with("shipment:"))
        .collect();
    // Each part is its own query, only when it has something to match (SQLite scans
    // every promise for an empty `IN ()`): one query with `OR` costs as much as both
    // parts and again as much to merge them.
    let mut parts = Vec::new();
    if truncated {
        // Some of the promises they were made are older than the events read.
        let (theirs, args) = read::customers_events(cids);
        parts.push((
            format!(
                "id IN (SELECT json_extract(e.body, '$.data.promise') FROM {theirs} c JOIN events e ON e.seq = c.seq
                         WHERE +e.type = 'promise.made')"
            ),
            args,
        ));
    } else {
        let ids: BTreeSet<&str> = events
            .iter()
            .filter_map(|(_, e)| match &e.data {
                EventData::PromiseMade(made) => Some(made.promise.as_str()),
                _ => None,
            })
            .collect();
        parts.extend(in_list("id", &ids));
    }
    parts.extend(in_list("subject", &subjects));
    let mut found: Vec<(i64, PromiseView)> = Vec::new();
    for (filter, args) in parts {
        // The limit is written into the text: bound, SQLite would plan the statement
        // again at every run.
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id, key, touchpoint, subject, state, made_at_us, start_us, due_us, settled_us, customer_ref
               FROM promises WHERE {filter} LIMIT {PROMISES}"
        ))?;
        for row in stmt.query_map(rusqlite::params_from_iter(args), read::promise_row)? {
            found.push(row?);
        }
    }
    // A promise both made by their events and about their orders is found twice.
    found.sort_by(|(_, a), (_, b)| a.id.cmp(&b.id));
    found.dedup_by(|(_, a), (_, b)| a.id == b.id);
    found.sort_by(|(a_due, a), (b_due, b)| (a_due, &a.id).cmp(&(b_due, &b.id)));
    found.truncate(PROMISES);
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// `column IN (…)` for `keys` with its arguments, unless there are none. The list is
/// padded with its last key to a power of two, so that a few statement texts serve
/// every count of keys and stay prepared (each distinct text is prepared anew).
fn in_list(column: &str, keys: &BTreeSet<&str>) -> Option<(String, Vec<SqlValue>)> {
    let last = keys.last()?;
    let slots = keys.len().next_power_of_two();
    let mut args: Vec<SqlValue> = keys.iter().map(|k| SqlValue::Text((*k).to_owned())).collect();
    args.extend((keys.len()..slots).map(|_| SqlValue::Text((*last).to_owned())));
    Some((format!("{column} IN ({})", vec!["?"; slots].join(",")), args))
}

/// The shipment as projected and its tracking link, if troth knows it.
fn shipment(conn: &Connection, id: &str) -> Result<Option<ShipmentRecord>, StoreError> {
    let Some((shipment, _)) = shipments::get(conn, id)? else {
        return Ok(None);
    };
    let link = shipments::token(conn, id)?.map(|token| TrackingLink {
        token,
        shipment: id.to_owned(),
        expires_at: shipment.link_expires_at(),
    });
    Ok(Some(ShipmentRecord {
        id: id.to_owned(),
        shipment,
        link,
    }))
}

/// The customers' copies of their events (`customer_events`, in `stories.db`,
/// attached to the projections' connections as `stories`). Live, each event's text
/// is handed to the stories' thread (`stories.rs`), which writes it after the
/// projections commit. A rebuild checks the copies against the log and the rebuilt
/// `event_customers` instead of copying every event's text again.
pub struct Copies;

impl Copies {
    pub const NAME: &'static str = "stories";
}

impl super::projector::Projector for Copies {
    fn name(&self) -> &'static str {
        Copies::NAME
    }

    fn tables(&self) -> &'static [super::projector::Table] {
        &[super::projector::Table {
            name: "customer_events",
            rows: "SELECT cid, seq, body FROM stories.customer_events",
        }]
    }

    fn apply(
        &mut self,
        cx: &mut super::projector::Cx<'_>,
        at: &mut super::projector::Logged,
    ) -> Result<(), StoreError> {
        if let (Some(cid), Some(live)) = (at.customer, &mut cx.live) {
            // The last projector: the event's text moves into the copy.
            live.handed
                .copies
                .push((cid, at.seq, std::mem::take(&mut at.event.raw)));
        }
        Ok(())
    }

    fn differences(&self, conn: &Connection) -> Result<Vec<(&'static str, u64)>, StoreError> {
        // The log's text in the order of the rebuilt `event_customers`, checked row
        // by row against both rather than rebuilt: a copy of every event's text would
        // be as large as the log.
        let differing = conn.query_row(
            "SELECT (SELECT count(*) FROM stories.customer_events ce
                      WHERE NOT EXISTS (SELECT 1 FROM replay.event_customers c JOIN events e ON e.seq = c.seq
                                         WHERE c.seq = ce.seq AND c.cid = ce.cid AND e.body = ce.body))
                  + (SELECT count(*) FROM replay.event_customers c
                      WHERE NOT EXISTS (SELECT 1 FROM stories.customer_events ce WHERE ce.cid = c.cid AND ce.seq = c.seq))",
            [],
            |r| r.get(0),
        )?;
        Ok(vec![("customer_events", differing)])
    }

    fn swap(&self, conn: &Connection) -> Result<(), StoreError> {
        // After the identities' swap: `main.event_customers` is the rebuilt one. The
        // stories' thread is idle: a replay settles it first, and the projections,
        // which feed it, are busy here.
        conn.execute_batch("DELETE FROM stories.customer_events")?;
        fill_customer_events(conn)?;
        Ok(())
    }
}
