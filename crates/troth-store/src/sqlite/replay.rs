//! Rebuilding the projections from the log, beside the stored ones, and comparing:
//! every projector of the registry (or one) applies the log again into tables of
//! its own under the schema `replay`, then each compares its tables with the live
//! ones and, with `write`, swaps the rebuilt ones in.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::Connection;
use troth_core::{Timestamp, validate_event};

use super::projections::JourneyRules;
use super::projector::{Cx, Logged, registry};
use crate::{ReplayReport, StoreError};

/// A rebuild writes what its projectors staged every this many events.
const STAGE_EVENTS: u64 = super::scorecards::STAGE_EVENTS;

pub fn run(
    conn: &Connection,
    rules: Option<&Arc<JourneyRules>>,
    only: Option<&str>,
    write: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<ReplayReport, StoreError> {
    conn.execute_batch("ATTACH DATABASE '' AS replay")?;
    let result = rebuild_and_compare(conn, rules, only, write, progress);
    let _ = conn.execute_batch("DETACH DATABASE replay");
    result
}

fn rebuild_and_compare(
    conn: &Connection,
    rules: Option<&Arc<JourneyRules>>,
    only: Option<&str>,
    write: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<ReplayReport, StoreError> {
    let mut projectors = registry(conn, "replay", rules)?;
    if let Some(name) = only {
        if !projectors.iter().any(|p| p.name() == name) {
            let names: Vec<&str> = projectors.iter().map(|p| p.name()).collect();
            return Err(StoreError::Invalid(format!(
                "no projector is named {name:?}; the projectors are {}",
                names.join(", ")
            )));
        }
        projectors.retain(|p| p.name() == name);
    }
    // Without the identities rebuilt, each event's customer is the stored one, and
    // the rebuild's `event_customers` (which the customers' copies are checked
    // against) is the stored table.
    let resolves = projectors
        .iter()
        .any(|p| p.tables().iter().any(|t| t.name == "event_customers"));
    if !resolves {
        conn.execute_batch("INSERT INTO replay.event_customers SELECT seq, cid FROM main.event_customers")?;
    }
    let customers_from = if resolves { "replay" } else { "main" };
    let tx = conn.unchecked_transaction()?;
    // The projections stand at their checkpoint; the rebuild reads the log that far.
    let through = super::projections::checkpoint(&tx)?;
    let mut report = ReplayReport::default();
    // A rebuild only rebuilds: merges and promise changes found again are in the log
    // already; nothing is enqueued or sent again; tracking links keep their tokens.
    let mut cx = Cx::new(&tx, "replay", None);
    {
        let mut scan = tx.prepare(if resolves {
            "SELECT seq, received_us, body, NULL FROM events WHERE seq <= ?1 ORDER BY seq"
        } else {
            "SELECT e.seq, e.received_us, e.body, c.cid FROM events e LEFT JOIN main.event_customers c USING (seq)
              WHERE e.seq <= ?1 ORDER BY e.seq"
        })?;
        let mut rows = scan.query([through])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let body: String = row.get(2)?;
            let event = validate_event(&body)
                .map_err(|r| StoreError::Invalid(format!("stored event seq {seq} no longer validates: {}", r.error)))?;
            let mut at = Logged {
                seq,
                received: Timestamp(row.get(1)?),
                event,
                // Rebuilt, the identities set it; otherwise it is the stored one.
                customer: row.get(3)?,
                applied_when_decided: false,
            };
            for projector in &mut projectors {
                projector.apply(&mut cx, &mut at)?;
            }
            report.events += 1;
            if report.events.is_multiple_of(STAGE_EVENTS) {
                for projector in &mut projectors {
                    projector.finish(&mut cx)?;
                }
            }
            if report.events % 10_000 == 0 {
                progress(report.events);
            }
        }
    }
    progress(report.events);
    for projector in &mut projectors {
        projector.finish(&mut cx)?;
    }
    cx.aggregates.write_to(&tx, "replay")?;
    report.customers = tx.query_row(&format!("SELECT count(*) FROM {customers_from}.customers"), [], |r| {
        r.get(0)
    })?;
    report.identities = tx.query_row(&format!("SELECT count(*) FROM {customers_from}.identities"), [], |r| {
        r.get(0)
    })?;
    let mut differences = BTreeMap::new();
    for projector in &projectors {
        for (table, rows) in projector.differences(&tx)? {
            differences.insert(table.to_owned(), rows);
        }
    }
    report.differences = differences;
    if write && !report.matches() {
        // In the registry's order: the customers' copies follow the rebuilt identities.
        for projector in &projectors {
            projector.swap(&tx)?;
        }
        report.written = true;
    }
    tx.commit()?;
    Ok(report)
}
