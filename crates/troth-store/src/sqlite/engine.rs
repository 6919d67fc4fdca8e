//! The promise engine in the live projections: it reads the promises an event may
//! concern, asks the journey map's [`PromiseBook`] what changes, and records each
//! decision as a `promise.*` event — applied to the promise projection at once (the
//! next event of the batch may keep the promise just made) and appended to the log
//! under an id derived from its cause, so a batch decided again appends nothing twice.
//! The clock (promises at risk or past due) decides the same way.

use troth_core::promise::{Change, PromiseBook, Tracked};
use troth_core::{Timestamp, ValidEvent};

use super::projector::{Cx, Live};
use super::promises;
use crate::StoreError;

/// Lets the engine react to a projected event resolved to `customer`.
pub fn on_event(
    cx: &mut Cx<'_>,
    book: &PromiseBook,
    event: &ValidEvent,
    customer: Option<i64>,
) -> Result<(), StoreError> {
    // The engine decides on what happened, not on its own records.
    if event.event_type.starts_with("promise.") || !book.concerns(&event.event_type) {
        return Ok(());
    }
    // The customer the event was resolved to, for promises matched on customer.
    let customer = customer
        .filter(|_| book.needs_customer(&event.event_type))
        .map(|c| troth_core::identity::CustomerId(c).to_string());
    let mut known = Vec::new();
    for subject in book.subjects(event, customer.as_deref()) {
        for promise in promises::known(cx.conn, &subject)? {
            if !known.iter().any(|k: &Tracked| k.id == promise.id) {
                known.push(promise);
            }
        }
    }
    let changes = book.on_event(event, &known, customer.as_deref());
    if !changes.is_empty() {
        let customer = super::projector::event_customer(event);
        record(cx, &changes, &known, customer.as_ref())?;
    }
    Ok(())
}

/// Runs the clock to `now`, for every promise or only one: promises at risk or
/// past due change. Returns how many changed.
pub fn tick(cx: &mut Cx<'_>, book: &PromiseBook, now: Timestamp, only: Option<&str>) -> Result<u64, StoreError> {
    let mut changed = 0;
    loop {
        let due = match only {
            Some(id) => promises::due_one(cx.conn, id, now)?,
            None => promises::due(cx.conn, now, 1_000)?,
        };
        if due.is_empty() {
            break;
        }
        for promise in &due {
            let Some(change) = book.on_clock(promise, now) else {
                continue;
            };
            // The clock never makes a promise; later changes carry the stored customer.
            record(cx, std::slice::from_ref(&change), std::slice::from_ref(promise), None)?;
            changed += 1;
        }
        if due.len() < 1_000 || only.is_some() {
            break;
        }
    }
    Ok(changed)
}

/// Records the engine's decisions: each is applied to the promises now, marked,
/// and appended to the log. `customer` is the making event's customer, used for
/// `Made`; later changes carry the one stored with the promise.
fn record(
    cx: &mut Cx<'_>,
    changes: &[Change],
    known: &[Tracked],
    customer: Option<&serde_json::Value>,
) -> Result<(), StoreError> {
    let conn = cx.conn;
    let Some(Live { fault, derived, .. }) = &mut cx.live else {
        return Ok(());
    };
    for change in changes {
        let promise = match change {
            Change::Made(made) => made,
            other => match known.iter().find(|p| p.id == other.promise_id()) {
                Some(promise) => promise,
                None => continue,
            },
        };
        let stored;
        let customer = match change {
            Change::Made(_) => customer,
            _ => {
                stored = promises::stored_customer_ref(conn, &promise.id)?.and_then(|c| serde_json::from_str(&c).ok());
                stored.as_ref()
            }
        };
        // Written out, then read back as any event is: reading the text straight
        // into the catalogue's types costs less than walking the JSON tree.
        let recorded = serde_json::to_string(&change.record(promise, customer))
            .map_err(|e| StoreError::Invalid(format!("a promise change cannot be written: {e}")))?;
        let event = troth_core::validate_event(&recorded)
            .map_err(|r| StoreError::Invalid(format!("a promise change does not validate: {}", r.error)))?;
        // The promise as stored, unless this decision made it anew (a window issued
        // again): then the projection reads it back.
        let remade = changes
            .iter()
            .any(|c| matches!(c, Change::Made(m) if m.id == promise.id));
        let held = (!remade || matches!(change, Change::Made(_))).then_some(promise);
        // Decided already: in this batch, or before and perhaps not yet in the log,
        // or met in the log at or before this position. The promise projection keeps
        // the id of every change it holds, so the answer reads nothing of the log (a
        // projection batch holds no snapshot of the log, which would keep its WAL
        // from starting over). A change the log holds further on, appended by a run
        // whose commit was lost, is decided again: the log takes the id once.
        if !promises::apply_decided(conn, &event, held)? {
            continue;
        }
        if let Some(fault) = fault {
            fault(&event);
        }
        derived.push(event);
    }
    Ok(())
}
