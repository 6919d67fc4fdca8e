//! Rebuilding the projections from the log, beside the stored ones, and comparing.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};
use troth_core::health::HealthIndex;
use troth_core::journey::JourneyMap;
use troth_core::validate_event;

use super::identities::Identities;
use super::schema;
use crate::{ReplayReport, StoreError};

/// Each projection's table and a query giving comparable rows, per schema: what
/// replay compares and, with `write`, swaps in.
const COMPARED: &[(&str, &str)] = &[
    ("event_customers", "SELECT seq, cid FROM {s}.event_customers"),
    ("customers", "SELECT cid, merged_into, traits FROM {s}.customers"),
    ("identities", "SELECT key, cid FROM {s}.identities"),
    ("event_type_counts", "SELECT type, n FROM {s}.event_type_counts"),
    (
        "promises",
        "SELECT id, key, touchpoint, subject, customer_ref, made_at_us, start_us, due_us, at_risk_from_us, state, due_passed, settled_us, next_check_us FROM {s}.promises",
    ),
    ("promise_changes", "SELECT id FROM {s}.promise_changes"),
    ("subject_links", "SELECT subject, linked FROM {s}.subject_links"),
    (
        "consents",
        "SELECT cid, channel, purpose, granted, time_us FROM {s}.consents",
    ),
    ("touchpoint_days", "SELECT * FROM {s}.touchpoint_days"),
    ("touchpoint_reach", "SELECT * FROM {s}.touchpoint_reach"),
    ("touchpoint_entity_days", "SELECT * FROM {s}.touchpoint_entity_days"),
    ("subject_entities", "SELECT * FROM {s}.subject_entities"),
    ("case_contacts", "SELECT * FROM {s}.case_contacts"),
    ("touchpoint_visits", "SELECT * FROM {s}.touchpoint_visits"),
    (
        "shipments",
        "SELECT id, order_id, customer_ref, stage, final_us, state FROM {s}.shipments",
    ),
    (
        "order_stages",
        "SELECT order_id, event, type, time_us FROM {s}.order_stages",
    ),
    ("shipment_scores", "SELECT shipment, facts FROM {s}.shipment_scores"),
];

pub fn run(
    conn: &Connection,
    journey: Option<&JourneyMap>,
    write: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<ReplayReport, StoreError> {
    conn.execute_batch("ATTACH DATABASE '' AS replay")?;
    let result = rebuild_and_compare(conn, journey.map(HealthIndex::new).as_ref(), write, progress);
    let _ = conn.execute_batch("DETACH DATABASE replay");
    result
}

fn rebuild_and_compare(
    conn: &Connection,
    health: Option<&HealthIndex>,
    write: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<ReplayReport, StoreError> {
    conn.execute_batch(&schema::projections("replay"))?;
    let tx = conn.unchecked_transaction()?;
    // The projections stand at their checkpoint; the rebuild reads the log that far.
    let through = super::projections::checkpoint(&tx)?;
    let mut projector = Identities::new(&tx, "replay")?;
    let mut report = ReplayReport::default();
    conn.execute_batch(&super::health::schema("replay"))?;
    let mut days = super::health::HealthDays::default();
    conn.execute_batch(&super::scorecards::schema("replay"))?;
    let mut scores = super::scorecards::ScoreDays::default();
    let mut facts = super::scorecards::StagedFacts::default();
    let mut shipments = super::shipments::Staged::default();
    {
        let mut scan = tx.prepare("SELECT seq, body FROM events WHERE seq <= ?1 ORDER BY seq")?;
        let mut record = tx.prepare("INSERT INTO replay.event_customers (seq, cid) VALUES (?1, ?2)")?;
        let mut rows = scan.query([through])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let body: String = row.get(1)?;
            let event = validate_event(&body)
                .map_err(|r| StoreError::Invalid(format!("stored event seq {seq} no longer validates: {}", r.error)))?;
            let plan = projector.plan(&tx, &event)?;
            let customer = plan.customer.map(|c| c.0);
            if let Some(cid) = customer {
                record.execute(params![seq, cid])?;
            }
            // Merges found again here are already in the log as customer.merged events.
            projector.apply(&tx, plan, &event)?;
            // Promises are rebuilt from the promise.* events the log holds, not decided again.
            super::promises::apply(&tx, "replay", &event)?;
            // The outbox is not a projection: nothing is enqueued or sent again here.
            super::outbox::apply_consent(&tx, "replay", &event, customer)?;
            // Tracking links are not rebuilt: their tokens must survive a replay.
            super::shipments::apply(&tx, "replay", &mut shipments, &event)?;
            if let Some(health) = health {
                days.add_event(&tx, "replay", health, &event, seq, customer)?;
            }
            scores.add_event(&tx, "replay", &mut facts, &event, seq)?;
            report.events += 1;
            if report.events.is_multiple_of(super::scorecards::STAGE_EVENTS) {
                shipments.write(&tx, "replay")?;
                facts.write(&tx, "replay")?;
            }
            if report.events % 10_000 == 0 {
                progress(report.events);
            }
        }
    }
    progress(report.events);
    shipments.write(&tx, "replay")?;
    facts.write(&tx, "replay")?;
    days.write(&tx, "replay")?;
    scores.write(&tx, "replay")?;
    tx.execute_batch(&schema::type_counts("replay"))?;
    tx.execute(
        "INSERT INTO replay.event_type_counts SELECT type, count(*) FROM events WHERE seq <= ?1 GROUP BY type",
        [through],
    )?;
    report.customers = tx.query_row("SELECT count(*) FROM replay.customers", [], |r| r.get(0))?;
    report.identities = tx.query_row("SELECT count(*) FROM replay.identities", [], |r| r.get(0))?;
    let mut differences = BTreeMap::new();
    for (name, query) in COMPARED {
        let (stored, rebuilt) = (query.replace("{s}", "main"), query.replace("{s}", "replay"));
        let sql = format!(
            "SELECT (SELECT count(*) FROM ({stored} EXCEPT {rebuilt})) + (SELECT count(*) FROM ({rebuilt} EXCEPT {stored}))"
        );
        differences.insert(name.to_string(), tx.query_row(&sql, [], |r| r.get(0))?);
    }
    let (stored, rebuilt) = (
        super::scorecards::compared_days("main"),
        super::scorecards::compared_days("replay"),
    );
    differences.insert(
        "carrier_days".into(),
        tx.query_row(
            &format!("SELECT (SELECT count(*) FROM ({stored} EXCEPT {rebuilt})) + (SELECT count(*) FROM ({rebuilt} EXCEPT {stored}))"),
            [],
            |r| r.get(0),
        )?,
    );
    // The log's text in the order of the rebuilt `event_customers`, checked row by
    // row against both rather than rebuilt: a copy of every event's text would be
    // as large as the log.
    differences.insert(
        "customer_events".into(),
        tx.query_row(
            "SELECT (SELECT count(*) FROM main.customer_events ce
                      WHERE NOT EXISTS (SELECT 1 FROM replay.event_customers c JOIN events e ON e.seq = c.seq
                                         WHERE c.seq = ce.seq AND c.cid = ce.cid AND e.body = ce.body))
                  + (SELECT count(*) FROM replay.event_customers c
                      WHERE NOT EXISTS (SELECT 1 FROM main.customer_events ce WHERE ce.cid = c.cid AND ce.seq = c.seq))",
            [],
            |r| r.get(0),
        )?,
    );
    report.differences = differences;
    if write && !report.matches() {
        let tables = COMPARED.iter().map(|(table, _)| *table).chain(["carrier_days"]);
        for table in tables {
            tx.execute_batch(&format!(
                "DELETE FROM main.{table}; INSERT INTO main.{table} SELECT * FROM replay.{table};"
            ))?;
        }
        tx.execute_batch("DELETE FROM main.customer_events")?;
        super::story::fill_customer_events(&tx)?;
        report.written = true;
    }
    tx.commit()?;
    Ok(report)
}
