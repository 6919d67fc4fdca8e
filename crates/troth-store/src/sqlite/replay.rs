//! Rebuilding the projections from the log, beside the stored ones, and comparing.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};
use troth_core::health::HealthIndex;
use troth_core::journey::JourneyMap;
use troth_core::validate_event;

use super::projector::Projector;
use super::schema;
use crate::{ReplayReport, StoreError};

/// Each projection as a query giving comparable rows, per schema.
const COMPARED: &[(&str, &str)] = &[
    ("customers", "SELECT cid, merged_into, traits FROM {s}.customers"),
    ("identities", "SELECT key, cid FROM {s}.identities"),
    ("event_type_counts", "SELECT type, n FROM {s}.event_type_counts"),
    (
        "promises",
        "SELECT id, key, touchpoint, subject, customer_ref, made_at_us, start_us, due_us, at_risk_from_us, state, due_passed, settled_us, next_check_us FROM {s}.promises",
    ),
    ("subject_links", "SELECT subject, linked FROM {s}.subject_links"),
    (
        "consents",
        "SELECT cid, channel, purpose, granted, time_us FROM {s}.consents",
    ),
    ("touchpoint_days", "SELECT * FROM {s}.touchpoint_days"),
    ("touchpoint_reach", "SELECT * FROM {s}.touchpoint_reach"),
    (
        "shipments",
        "SELECT id, order_id, customer_ref, stage, final_us, state FROM {s}.shipments",
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
    conn.execute_batch("CREATE TABLE replay.event_customer (seq INTEGER PRIMARY KEY, cid INTEGER)")?;
    let tx = conn.unchecked_transaction()?;
    let mut projector = Projector::new(&tx, "replay")?;
    let mut report = ReplayReport::default();
    conn.execute_batch(&super::health::schema("replay"))?;
    let mut days = super::health::HealthDays::default();
    conn.execute_batch(&super::scorecards::schema("replay"))?;
    let mut scores = super::scorecards::ScoreDays::default();
    let mut facts = super::scorecards::StagedFacts::default();
    let mut shipments = super::shipments::Staged::default();
    {
        let mut scan = tx.prepare("SELECT seq, body FROM main.events ORDER BY seq")?;
        let mut record = tx.prepare("INSERT INTO replay.event_customer (seq, cid) VALUES (?1, ?2)")?;
        let mut rows = scan.query([])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let body: String = row.get(1)?;
            let event = validate_event(&body)
                .map_err(|r| StoreError::Invalid(format!("stored event seq {seq} no longer validates: {}", r.error)))?;
            let plan = projector.plan(&tx, &event)?;
            let customer = plan.customer.map(|c| c.0);
            record.execute(params![seq, customer])?;
            // Merges found again here are already in the log as customer.merged events.
            projector.apply(&tx, plan, &event)?;
            // Promises are rebuilt from the promise.* events the log holds, not decided again.
            super::promises::apply(&tx, "replay", &event)?;
            // The outbox is not a projection: nothing is enqueued or sent again here.
            super::outbox::apply_consent(&tx, "replay", &event, customer)?;
            // Tracking links are not rebuilt: their tokens must survive a replay.
            super::shipments::apply(&tx, "replay", &mut shipments, &event)?;
            if let Some(health) = health {
                days.add_event(&tx, health, &event, seq, customer)?;
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
    tx.execute_batch("INSERT INTO replay.event_type_counts SELECT type, count(*) FROM main.events GROUP BY type")?;
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
    differences.insert(
        "event_customers".into(),
        tx.query_row(
            "SELECT count(*) FROM main.events e JOIN replay.event_customer r USING (seq) WHERE e.customer_id IS NOT r.cid",
            [],
            |r| r.get(0),
        )?,
    );
    report.differences = differences;
    if write && !report.matches() {
        tx.execute_batch(
            "DELETE FROM main.customers;
             INSERT INTO main.customers SELECT * FROM replay.customers;
             DELETE FROM main.identities;
             INSERT INTO main.identities SELECT * FROM replay.identities;
             DELETE FROM main.promises;
             INSERT INTO main.promises SELECT * FROM replay.promises;
             DELETE FROM main.consents;
             INSERT INTO main.consents SELECT * FROM replay.consents;
             DELETE FROM main.subject_links;
             INSERT INTO main.subject_links SELECT * FROM replay.subject_links;
             DELETE FROM main.shipments;
             INSERT INTO main.shipments SELECT * FROM replay.shipments;
             DELETE FROM main.touchpoint_days;
             INSERT INTO main.touchpoint_days SELECT * FROM replay.touchpoint_days;
             DELETE FROM main.touchpoint_reach;
             INSERT INTO main.touchpoint_reach SELECT * FROM replay.touchpoint_reach;
             DELETE FROM main.shipment_scores;
             INSERT INTO main.shipment_scores SELECT * FROM replay.shipment_scores;
             DELETE FROM main.carrier_days;
             INSERT INTO main.carrier_days SELECT * FROM replay.carrier_days;
             DELETE FROM main.event_type_counts;
             INSERT INTO main.event_type_counts SELECT * FROM replay.event_type_counts;
             UPDATE main.events SET customer_id = (SELECT cid FROM replay.event_customer r WHERE r.seq = events.seq)
              WHERE customer_id IS NOT (SELECT cid FROM replay.event_customer r WHERE r.seq = events.seq);",
        )?;
        report.written = true;
    }
    tx.commit()?;
    Ok(report)
}
