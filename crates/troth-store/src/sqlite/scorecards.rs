//! The carrier-scorecard projection: per shipment the facts scorecards use
//! (`shipment_scores`, written with each append), and per carrier, driver and day
//! the summed tallies (`carrier_days`), an aggregate written with the others at
//! most about once a second (see `projections::Aggregates`). Append, catch-up, a recount
//! under changed rules and replay all count through [`ScoreDays`].

use troth_core::FastMap as HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use troth_core::ValidEvent;
use troth_core::scorecard::{ScoreKey, ScoreTally, ShipmentFacts, fact_of};

use crate::StoreError;

/// Bumped when what scorecards count changes, so stored tallies are counted again.
pub const RULES: i64 = 1;

/// A scan of the log (recount, replay) writes what it staged every this many events.
pub const STAGE_EVENTS: u64 = 32_768;

/// Scorecard tallies counted but not yet added to `carrier_days`.
#[derive(Debug, Default, Clone)]
pub struct ScoreDays {
    pub tallies: HashMap<ScoreKey, ScoreTally>,
}

impl ScoreDays {
    /// Counts one event stored under `seq`: records its fact with its shipment's
    /// (staged in `facts`, written to `{schema}.shipment_scores` by
    /// [`StagedFacts::write`]) and adds what that changes.
    pub fn add_event(
        &mut self,
        conn: &Connection,
        schema: &str,
        facts: &mut StagedFacts,
        event: &ValidEvent,
        seq: i64,
    ) -> Result<(), StoreError> {
        let Some((shipment, what)) = fact_of(event) else {
            return Ok(());
        };
        let staged = facts.load(conn, schema, shipment)?;
        let (new, diff) = staged.facts.change(seq, event.time.micros(), what);
        staged.dirty |= new;
        for (key, tally) in diff {
            self.tallies.entry(key).or_default().add(&tally);
        }
        Ok(())
    }

    pub fn merge(&mut self, other: ScoreDays) {
        for (key, tally) in other.tallies {
            self.tallies.entry(key).or_default().add(&tally);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tallies.is_empty()
    }

    /// Adds these to `{schema}.carrier_days`.
    pub fn write(&self, conn: &Connection, schema: &str) -> rusqlite::Result<()> {
        if self.tallies.is_empty() {
            return Ok(());
        }
        let fields = ScoreTally::FIELDS;
        let marks: Vec<String> = (0..fields.len()).map(|i| format!("?{}", i + 4)).collect();
        let updates: Vec<String> = fields.iter().map(|f| format!("{f} = {f} + excluded.{f}")).collect();
        let mut upsert = conn.prepare_cached(&format!(
            "INSERT INTO {schema}.carrier_days (carrier, driver, day, {}) VALUES (?1, ?2, ?3, {})
             ON CONFLICT (carrier, driver, day) DO UPDATE SET {}",
            fields.join(", "),
            marks.join(", "),
            updates.join(", ")
        ))?;
        for ((carrier, driver, day), tally) in &self.tallies {
            let mut values: Vec<rusqlite::types::Value> =
                vec![carrier.clone().into(), driver.clone().into(), (*day).into()];
            values.extend(tally.to_array().into_iter().map(rusqlite::types::Value::from));
            upsert.execute(rusqlite::params_from_iter(values))?;
        }
        Ok(())
    }
}

/// `shipment_scores` rows read or changed since the last [`StagedFacts::write`]: a
/// shipment's facts (a dozen tracking views, its stages) mostly come in one batch,
/// and decoding and encoding its JSON once per batch instead of once per event is
/// most of what scorecards cost. The projections write them before they commit.
#[derive(Debug, Default)]
pub struct StagedFacts {
    rows: HashMap<String, Staged>,
}

#[derive(Debug)]
struct Staged {
    facts: ShipmentFacts,
    dirty: bool,
}

impl StagedFacts {
    fn load(&mut self, conn: &Connection, schema: &str, shipment: String) -> Result<&mut Staged, StoreError> {
        use std::collections::hash_map::Entry;
        match self.rows.entry(shipment) {
            Entry::Occupied(row) => Ok(row.into_mut()),
            Entry::Vacant(row) => {
                let stored: Option<String> = conn
                    .prepare_cached(&format!(
                        "SELECT facts FROM {schema}.shipment_scores WHERE shipment = ?1"
                    ))?
                    .query_row([row.key()], |r| r.get(0))
                    .optional()?;
                let facts = match stored {
                    Some(json) => serde_json::from_str(&json)
                        .map_err(|e| StoreError::Invalid(format!("stored scorecard facts do not decode: {e}")))?,
                    None => ShipmentFacts::default(),
                };
                Ok(row.insert(Staged { facts, dirty: false }))
            }
        }
    }

    /// Writes the changed rows to `{schema}.shipment_scores` and forgets them all.
    pub fn write(&mut self, conn: &Connection, schema: &str) -> Result<(), StoreError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let mut upsert = conn.prepare_cached(&format!(
            "INSERT INTO {schema}.shipment_scores (shipment, facts) VALUES (?1, ?2)
             ON CONFLICT (shipment) DO UPDATE SET facts = excluded.facts"
        ))?;
        for (shipment, row) in self.rows.drain() {
            if row.dirty {
                let json = serde_json::to_string(&row.facts).map_err(|e| StoreError::Invalid(e.to_string()))?;
                upsert.execute(params![shipment, json])?;
            }
        }
        Ok(())
    }
}

/// The projection's tables, under a schema name so replay can rebuild them beside the live ones.
pub fn schema(schema: &str) -> String {
    let columns: Vec<String> = ScoreTally::FIELDS
        .iter()
        .map(|f| format!("{f} INTEGER NOT NULL DEFAULT 0"))
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {schema}.shipment_scores (shipment TEXT PRIMARY KEY, facts TEXT NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS {schema}.carrier_days (carrier TEXT NOT NULL, driver TEXT NOT NULL, day INTEGER NOT NULL, {},
           PRIMARY KEY (carrier, driver, day)) WITHOUT ROWID;",
        columns.join(", ")
    )
}

/// `carrier_days` rows for comparison: a key whose changes cancelled out may be
/// stored as zeros by one count and absent from another.
pub fn compared_days(schema: &str) -> String {
    let nonzero: Vec<String> = ScoreTally::FIELDS.iter().map(|f| format!("{f} <> 0")).collect();
    format!("SELECT * FROM {schema}.carrier_days WHERE {}", nonzero.join(" OR "))
}

/// Counts the scorecards of events up to `through` again when they were counted by
/// other rules, or not at all (a store from before scorecards).
pub fn recount_if_rules_changed(conn: &Connection, through: i64) -> Result<(), StoreError> {
    let stored: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'scorecard_rules'", [], |r| r.get(0))
        .optional()?;
    if stored == Some(RULES) {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch("DROP TABLE IF EXISTS main.shipment_scores; DROP TABLE IF EXISTS main.carrier_days;")?;
    tx.execute_batch(&schema("main"))?;
    let mut days = ScoreDays::default();
    let mut facts = StagedFacts::default();
    {
        let mut scan = tx.prepare("SELECT body, seq FROM events WHERE seq <= ?1 ORDER BY seq")?;
        let mut rows = scan.query([through])?;
        let mut counted = 0u64;
        while let Some(row) = rows.next()? {
            let body: String = row.get(0)?;
            if let Ok(event) = troth_core::validate_event(&body) {
                days.add_event(&tx, "main", &mut facts, &event, row.get(1)?)?;
            }
            counted += 1;
            if counted.is_multiple_of(STAGE_EVENTS) {
                facts.write(&tx, "main")?;
            }
        }
    }
    facts.write(&tx, "main")?;
    days.write(&tx, "main")?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('scorecard_rules', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [RULES],
    )?;
    tx.commit()?;
    Ok(())
}

/// Tallies per (carrier, driver) over the days from `from` (inclusive) to `to`
/// (exclusive): the table's sums plus what is pending.
pub fn read(
    conn: &Connection,
    pending: &ScoreDays,
    from: i64,
    to: i64,
) -> Result<Vec<(String, String, ScoreTally)>, StoreError> {
    let sums: Vec<String> = ScoreTally::FIELDS.iter().map(|f| format!("sum({f})")).collect();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT carrier, driver, {} FROM carrier_days WHERE day >= ?1 AND day < ?2 GROUP BY carrier, driver",
        sums.join(", ")
    ))?;
    let rows = stmt.query_map([from, to], |r| {
        let values: Vec<i64> = (2..2 + ScoreTally::FIELDS.len())
            .map(|i| r.get(i))
            .collect::<Result<_, _>>()?;
        Ok((
            (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
            ScoreTally::from_values(&values),
        ))
    })?;
    let mut sums: HashMap<(String, String), ScoreTally> = rows.collect::<Result<_, _>>()?;
    for ((carrier, driver, day), tally) in &pending.tallies {
        if (from..to).contains(day) {
            sums.entry((carrier.clone(), driver.clone())).or_default().add(tally);
        }
    }
    let mut out: Vec<(String, String, ScoreTally)> = sums
        .into_iter()
        .filter(|(_, t)| !t.is_zero())
        .map(|((c, d), t)| (c, d, t))
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Ok(out)
}

/// The carrier-scorecard projector: facts staged per shipment, tallies counted into
/// the transaction's aggregates.
pub struct Projection {
    facts: StagedFacts,
}

impl Projection {
    pub fn open(conn: &Connection, schema_name: &str) -> Result<Projection, StoreError> {
        conn.execute_batch(&schema(schema_name))?;
        Ok(Projection {
            facts: StagedFacts::default(),
        })
    }
}

impl super::projector::Projector for Projection {
    fn name(&self) -> &'static str {
        "scorecards"
    }

    fn tables(&self) -> &'static [super::projector::Table] {
        use super::projector::Table;
        &[
            Table {
                name: "shipment_scores",
                rows: "SELECT shipment, facts FROM {s}.shipment_scores",
            },
            Table {
                name: "carrier_days",
                rows: "SELECT * FROM {s}.carrier_days",
            },
        ]
    }

    fn apply(
        &mut self,
        cx: &mut super::projector::Cx<'_>,
        at: &mut super::projector::Logged,
    ) -> Result<(), StoreError> {
        cx.aggregates
            .scores
            .add_event(cx.conn, cx.schema, &mut self.facts, &at.event, at.seq)
    }

    fn finish(&mut self, cx: &mut super::projector::Cx<'_>) -> Result<(), StoreError> {
        self.facts.write(cx.conn, cx.schema)
    }

    fn reset(&mut self, _conn: &Connection) -> Result<(), StoreError> {
        self.facts = StagedFacts::default();
        Ok(())
    }

    fn differences(&self, conn: &Connection) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let scores = "SELECT shipment, facts FROM {s}.shipment_scores";
        Ok(vec![
            (
                "shipment_scores",
                super::projector::differing_rows(
                    conn,
                    &scores.replace("{s}", "main"),
                    &scores.replace("{s}", "replay"),
                )?,
            ),
            // Rows whose tallies all netted out to zero count as absent.
            (
                "carrier_days",
                super::projector::differing_rows(conn, &compared_days("main"), &compared_days("replay"))?,
            ),
        ])
    }
}
