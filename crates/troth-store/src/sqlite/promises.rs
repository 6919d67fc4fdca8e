//! The promise projection: promises as their `promise.*` events in the log say,
//! and the links between subjects (a shipment and its order) that let an event on
//! one keep a promise made on the other.
//!
//! Only recorded events change this projection — the engine's decisions reach it
//! through the log — so replay rebuilds it from the log without re-deciding anything.
//! It keeps the id of every change it holds (`promise_changes`): the engine asks it
//! whether a decision is already made, and the answer never needs the log.

use rusqlite::{Connection, OptionalExtension, params};
use troth_core::catalogue::EventData;
use troth_core::promise::{State, Tracked, next_check};
use troth_core::{Timestamp, ValidEvent};

/// Applies an event to the projection, if it concerns it.
pub fn apply(conn: &Connection, schema: &str, event: &ValidEvent) -> rusqlite::Result<()> {
    if matches!(
        event.data,
        EventData::PromiseMade(_)
            | EventData::PromiseAtRisk(_)
            | EventData::PromiseKept(_)
            | EventData::PromiseBroken(_)
            | EventData::PromiseCancelled(_)
    ) {
        hold_change(conn, schema, &event.id)?;
    }
    change(conn, schema, event, None, None)
}

/// Applies a change the engine decided, if the projection does not hold that change
/// already (by its id); answers whether it was new. `stored` is the promise as the
/// projection holds it, when the engine read it: it need not be read again.
/// `customer_ref` is the customer the event carries, as text: the engine wrote it.
pub fn apply_decided(
    conn: &Connection,
    event: &ValidEvent,
    stored: Option<&Tracked>,
    customer_ref: Option<&str>,
) -> rusqlite::Result<bool> {
    if !hold_change(conn, "main", &event.id)? {
        return Ok(false);
    }
    change(conn, "main", event, stored, Some(customer_ref))?;
    Ok(true)
}

/// Records that the projection holds the change `id`; false when it held it already.
fn hold_change(conn: &Connection, schema: &str, id: &str) -> rusqlite::Result<bool> {
    let inserted = conn
        .prepare_cached(&format!(
            "INSERT OR IGNORE INTO {schema}.promise_changes (id) VALUES (?1)"
        ))?
        .execute([id])?;
    Ok(inserted == 1)
}

/// What the event does to the promises and the links between subjects. `stored` is
/// the promise it changes as the projection holds it, and `customer_ref` the
/// event's customer as text, when the caller has them.
fn change(
    conn: &Connection,
    schema: &str,
    event: &ValidEvent,
    stored: Option<&Tracked>,
    customer_ref: Option<Option<&str>>,
) -> rusqlite::Result<()> {
    let s = schema;
    match &event.data {
        EventData::ShipmentCreated(created) => {
            let (shipment, order) = (
                format!("shipment:{}", created.shipment),
                format!("order:{}", created.order),
            );
            let mut link = conn.prepare_cached(&format!(
                "INSERT OR IGNORE INTO {s}.subject_links (subject, linked) VALUES (?1, ?2)"
            ))?;
            link.execute(params![shipment, order])?;
            link.execute(params![order, shipment])?;
        }
        EventData::PromiseMade(made) => {
            // The making event's customer, to carry onto the promise's later events.
            let read;
            let customer_ref = match customer_ref {
                Some(given) => given,
                None => {
                    read = super::projector::customer_ref(event);
                    read.as_deref()
                }
            };
            let tracked = Tracked {
                id: made.promise.clone(),
                key: made.key.clone(),
                touchpoint: made.touchpoint.clone(),
                subject: event.subject.clone().unwrap_or_default(),
                made_at: event.time,
                start: made.start,
                due: made.due,
                at_risk_from: made.at_risk_from,
                state: State::Made,
            };
            conn.prepare_cached(&format!(
                // An upsert rather than `OR REPLACE`, which keeps a statement journal.
                "INSERT INTO {s}.promises (id, key, touchpoint, subject, customer_ref, made_at_us, start_us, due_us,
                    at_risk_from_us, state, due_passed, settled_us, next_check_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'made', 0, NULL, ?10)
                 ON CONFLICT (id) DO UPDATE SET key = excluded.key, touchpoint = excluded.touchpoint,
                    subject = excluded.subject, customer_ref = excluded.customer_ref, made_at_us = excluded.made_at_us,
                    start_us = excluded.start_us, due_us = excluded.due_us, at_risk_from_us = excluded.at_risk_from_us,
                    state = excluded.state, due_passed = excluded.due_passed, settled_us = excluded.settled_us,
                    next_check_us = excluded.next_check_us"
            ))?
            .execute(params![
                tracked.id,
                tracked.key,
                tracked.touchpoint,
                tracked.subject,
                customer_ref,
                tracked.made_at.micros(),
                tracked.start.map(Timestamp::micros),
                tracked.due.micros(),
                tracked.at_risk_from.map(Timestamp::micros),
                next_check(&tracked).map(Timestamp::micros),
            ])?;
        }
        EventData::PromiseAtRisk(p) => set_state(conn, s, &p.promise, stored, State::AtRisk, None)?,
        EventData::PromiseKept(p) => set_state(conn, s, &p.promise, stored, State::Kept, Some(event.time))?,
        EventData::PromiseBroken(p) => {
            let due_passed = p.cause == troth_core::catalogue::BreakCause::DuePassed;
            set_state(
                conn,
                s,
                &p.promise,
                stored,
                State::Broken { due_passed },
                Some(event.time),
            )?
        }
        EventData::PromiseCancelled(p) => set_state(conn, s, &p.promise, stored, State::Cancelled, Some(event.time))?,
        _ => {}
    }
    Ok(())
}

/// Fills `promise_changes` for a store whose promises were projected before it was
/// kept: every change in the log up to the checkpoint, and those decided and not yet
/// in the log (`derived_outbox`). Read from the log once, when the store opens.
pub fn fill_changes(conn: &Connection, checkpoint: i64) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute(
        &format!(
            "INSERT OR IGNORE INTO main.promise_changes (id)
             SELECT id FROM log.events WHERE type IN {CHANGE_TYPES} AND seq <= ?1"
        ),
        [checkpoint],
    )?;
    tx.execute(
        &format!(
            "INSERT OR IGNORE INTO main.promise_changes (id)
             SELECT id FROM main.derived_outbox WHERE json_extract(body, '$.type') IN {CHANGE_TYPES}"
        ),
        [],
    )?;
    tx.commit()
}

/// The event types that change a promise.
const CHANGE_TYPES: &str = "('promise.made', 'promise.at_risk', 'promise.kept', 'promise.broken', 'promise.cancelled')";

fn set_state(
    conn: &Connection,
    s: &str,
    id: &str,
    stored: Option<&Tracked>,
    state: State,
    settled: Option<Timestamp>,
) -> rusqlite::Result<()> {
    let mut tracked = match stored.filter(|stored| stored.id == id) {
        Some(stored) => stored.clone(),
        None => match by_id(conn, s, id)? {
            Some(tracked) => tracked,
            None => return Ok(()),
        },
    };
    tracked.state = state;
    let due_passed = matches!(state, State::Broken { due_passed: true });
    conn.prepare_cached(&format!(
        "UPDATE {s}.promises SET state = ?2, due_passed = ?3, settled_us = ?4, next_check_us = ?5 WHERE id = ?1"
    ))?
    .execute(params![
        id,
        state.as_str(),
        due_passed,
        settled.map(Timestamp::micros),
        next_check(&tracked).map(Timestamp::micros)
    ])?;
    Ok(())
}

const COLUMNS: &str = "id, key, touchpoint, subject, made_at_us, start_us, due_us, at_risk_from_us, state, due_passed";
/// [`COLUMNS`] and the customer ref, for a [`Stored`].
const STORED: &str =
    "id, key, touchpoint, subject, made_at_us, start_us, due_us, at_risk_from_us, state, due_passed, customer_ref";
/// [`STORED`] of the table aliased `p`.
const PREFIXED: &str = "p.id, p.key, p.touchpoint, p.subject, p.made_at_us, p.start_us, p.due_us, p.at_risk_from_us, p.state, p.due_passed, p.customer_ref";

/// A promise as stored, with the customer its later events carry.
#[derive(Debug, Clone)]
pub struct Stored {
    pub promise: Tracked,
    /// The making event's customer, JSON text.
    pub customer_ref: Option<String>,
}

fn stored_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
    Ok(Stored {
        promise: row(r)?,
        customer_ref: r.get(10)?,
    })
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Tracked> {
    let state = match (r.get::<_, String>(8)?.as_str(), r.get::<_, bool>(9)?) {
        ("made", _) => State::Made,
        ("at_risk", _) => State::AtRisk,
        ("kept", _) => State::Kept,
        ("broken", due_passed) => State::Broken { due_passed },
        _ => State::Cancelled,
    };
    Ok(Tracked {
        id: r.get(0)?,
        key: r.get(1)?,
        touchpoint: r.get(2)?,
        subject: r.get(3)?,
        made_at: Timestamp(r.get(4)?),
        start: r.get::<_, Option<i64>>(5)?.map(Timestamp),
        due: Timestamp(r.get(6)?),
        at_risk_from: r.get::<_, Option<i64>>(7)?.map(Timestamp),
        state,
    })
}

fn by_id(conn: &Connection, s: &str, id: &str) -> rusqlite::Result<Option<Tracked>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM {s}.promises WHERE id = ?1"))?
        .query_row([id], row)
        .optional()
}

/// Promises an event on `subject` may concern: on the subject or a subject linked
/// to it, open or broken by the clock (late news may correct those).
pub fn known(conn: &Connection, subject: &str) -> rusqlite::Result<Vec<Stored>> {
    // Two index lookups joined by UNION ALL: an IN (… UNION …) list would build a
    // temporary b-tree on every call, which cost more than the lookups themselves.
    let open = "(p.state IN ('made', 'at_risk') OR (p.state = 'broken' AND p.due_passed))";
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PREFIXED} FROM main.promises p WHERE p.subject = ?1 AND {open}
         UNION ALL
         SELECT {PREFIXED} FROM main.subject_links l JOIN main.promises p ON p.subject = l.linked
          WHERE l.subject = ?1 AND {open}"
    ))?;
    let rows = stmt.query_map([subject], stored_row)?;
    rows.collect()
}

/// Promises whose next check has come by `now`.
pub fn due(conn: &Connection, now: Timestamp, limit: usize) -> rusqlite::Result<Vec<Stored>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {STORED} FROM main.promises WHERE next_check_us <= ?1 ORDER BY next_check_us LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![now.micros(), limit as i64], stored_row)?;
    rows.collect()
}

/// The promise `id` if its next check has come by `now`.
pub fn due_one(conn: &Connection, id: &str, now: Timestamp) -> rusqlite::Result<Vec<Stored>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {STORED} FROM main.promises WHERE id = ?1 AND next_check_us <= ?2"
    ))?;
    let rows = stmt.query_map(params![id, now.micros()], stored_row)?;
    rows.collect()
}

/// Takes a promise off the clock: one whose change cannot be applied (see the
/// quarantine). It stays as the log last recorded it.
pub fn set_aside(conn: &Connection, id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE main.promises SET next_check_us = NULL WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// The promise projector. Live, with a journey map, the promise engine follows each
/// event it applies (see `engine.rs`).
pub struct Projection {
    rules: Option<std::sync::Arc<super::projections::JourneyRules>>,
}

impl Projection {
    pub fn open(
        conn: &Connection,
        schema: &str,
        rules: Option<std::sync::Arc<super::projections::JourneyRules>>,
    ) -> Result<Projection, crate::StoreError> {
        conn.execute_batch(&super::schema::promises(schema))?;
        Ok(Projection { rules })
    }
}

impl super::projector::Projector for Projection {
    fn name(&self) -> &'static str {
        "promises"
    }

    fn tables(&self) -> &'static [super::projector::Table] {
        use super::projector::Table;
        &[
            Table {
                name: "promises",
                rows: "SELECT id, key, touchpoint, subject, customer_ref, made_at_us, start_us, due_us, at_risk_from_us, state, due_passed, settled_us, next_check_us FROM {s}.promises",
            },
            Table {
                name: "promise_changes",
                rows: "SELECT id FROM {s}.promise_changes",
            },
            Table {
                name: "subject_links",
                rows: "SELECT subject, linked FROM {s}.subject_links",
            },
        ]
    }

    fn apply(
        &mut self,
        cx: &mut super::projector::Cx<'_>,
        at: &mut super::projector::Logged,
    ) -> Result<(), crate::StoreError> {
        if !at.applied_when_decided {
            apply(cx.conn, cx.schema, &at.event)?;
        }
        if cx.live.is_some()
            && let Some(rules) = &self.rules
        {
            super::engine::on_event(cx, &rules.book, &at.event, at.customer)?;
        }
        Ok(())
    }
}
