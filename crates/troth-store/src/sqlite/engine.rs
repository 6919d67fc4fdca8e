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
    let mut known: Vec<Tracked> = Vec::new();
    let mut customers: Vec<Option<String>> = Vec::new();
    for subject in book.subjects(event, customer.as_deref()) {
        for stored in promises::known(cx.conn, &subject)? {
            if !known.iter().any(|k| k.id == stored.promise.id) {
                known.push(stored.promise);
                customers.push(stored.customer_ref);
            }
        }
    }
    let changes = book.on_event(event, &known, customer.as_deref());
    if !changes.is_empty() {
        let making = super::projector::customer_ref(event);
        record(cx, &changes, &known, &customers, making.as_deref())?;
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
        for stored in &due {
            let Some(change) = book.on_clock(&stored.promise, now) else {
                continue;
            };
            // The clock never makes a promise; later changes carry the stored customer.
            record(
                cx,
                std::slice::from_ref(&change),
                std::slice::from_ref(&stored.promise),
                std::slice::from_ref(&stored.customer_ref),
                None,
            )?;
            changed += 1;
        }
        if due.len() < 1_000 || only.is_some() {
            break;
        }
    }
    Ok(changed)
}

/// Records the engine's decisions: each is applied to the promises now, marked,
/// and appended to the log. `making` is the making event's customer (JSON text),
/// used for `Made`; later changes carry the one stored with the promise, in
/// `customers` beside `known`.
fn record(
    cx: &mut Cx<'_>,
    changes: &[Change],
    known: &[Tracked],
    customers: &[Option<String>],
    making: Option<&str>,
) -> Result<(), StoreError> {
    let conn = cx.conn;
    let Some(Live { fault, derived, .. }) = &mut cx.live else {
        return Ok(());
    };
    for change in changes {
        let (promise, customer) = match change {
            Change::Made(made) => (made, making),
            other => match known.iter().position(|p| p.id == other.promise_id()) {
                Some(i) => (&known[i], customers.get(i).and_then(Option::as_deref)),
                None => continue,
            },
        };
        // Built typed, with its text, rather than written and read back.
        let event = change
            .event(promise, customer)
            .map_err(|r| StoreError::Invalid(format!("a promise change does not validate: {}", r.error)))?;
        debug_assert_eq!(
            format!("{:?}", troth_core::validate_event(&event.raw).ok()),
            format!("{:?}", Some(&event)),
            "a promise change is the event its text reads as"
        );
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
        if !promises::apply_decided(conn, &event, held, customer)? {
            continue;
        }
        if let Some(fault) = fault {
            fault(&event);
        }
        derived.push(event);
    }
    Ok(())
}
