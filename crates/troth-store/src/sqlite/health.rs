//! The journey-health projection: per touchpoint and day, the summed tallies
//! (`touchpoint_days`) and a sketch of the distinct customers exposed
//! (`touchpoint_reach`). Every path that counts health — append, catch-up after a
//! stop, a recount under a changed map, and replay — goes through [`HealthDays`],
//! so all of them count alike.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use troth_core::ValidEvent;
use troth_core::health::{HealthIndex, Tally, day_of};
use troth_core::reach::Reach;

/// Health counted but not yet added to the tables.
#[derive(Debug, Default, Clone)]
pub struct HealthDays {
    pub tallies: HashMap<(String, i64), Tally>,
    pub reach: HashMap<(String, i64), Reach>,
}

impl HealthDays {
    /// Counts one event, stored under `seq`; `customer` is the customer it was
    /// resolved to, if any. Reads the log before it to tell repeat contacts.
    pub fn add_event(
        &mut self,
        conn: &Connection,
        health: &HealthIndex,
        event: &ValidEvent,
        seq: i64,
        customer: Option<i64>,
    ) -> rusqlite::Result<()> {
        let day = day_of(event);
        let repeat = match customer {
            Some(customer) if event.event_type == "case.opened" => is_repeat_contact(conn, customer, seq, event)?,
            _ => false,
        };
        for (touchpoint, mut tally) in health.contributions(event) {
            if repeat && tally.exposure > 0 {
                tally.repeat_contacts += 1;
            }
            if let Some(customer) = customer.filter(|_| tally.exposure > 0) {
                self.reach.entry((touchpoint.clone(), day)).or_default().add(customer);
            }
            self.tallies.entry((touchpoint, day)).or_default().add(&tally);
        }
        Ok(())
    }

    pub fn merge(&mut self, other: HealthDays) {
        for (key, tally) in other.tallies {
            self.tallies.entry(key).or_default().add(&tally);
        }
        for (key, reach) in other.reach {
            self.reach.entry(key).or_default().merge(&reach);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tallies.is_empty() && self.reach.is_empty()
    }

    /// Adds these to the tables of `schema` (`main`, or `replay` for a rebuild).
    pub fn write(&self, conn: &Connection, schema: &str) -> rusqlite::Result<()> {
        add_tallies(conn, schema, &self.tallies)?;
        if self.reach.is_empty() {
            return Ok(());
        }
        let mut stored = conn.prepare_cached(&format!(
            "SELECT sketch FROM {schema}.touchpoint_reach WHERE touchpoint = ?1 AND day = ?2"
        ))?;
        let mut upsert = conn.prepare_cached(&format!(
            "INSERT INTO {schema}.touchpoint_reach (touchpoint, day, sketch) VALUES (?1, ?2, ?3)
             ON CONFLICT (touchpoint, day) DO UPDATE SET sketch = excluded.sketch"
        ))?;
        for ((touchpoint, day), reach) in &self.reach {
            let mut merged = reach.clone();
            let before: Option<Vec<u8>> = stored.query_row(params![touchpoint, day], |r| r.get(0)).optional()?;
            if let Some(before) = before.as_deref().and_then(Reach::from_bytes) {
                merged.merge(&before);
            }
            upsert.execute(params![touchpoint, day, merged.to_bytes()])?;
        }
        Ok(())
    }
}

/// Whether the customer opened another case, earlier in the log, within the week
/// before this one. Log order (not arrival of the answer) keeps a live count and a
/// replay in agreement.
fn is_repeat_contact(conn: &Connection, customer: i64, seq: i64, event: &ValidEvent) -> rusqlite::Result<bool> {
    let time = event.time.micros();
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM main.event_customers c JOIN events e USING (seq)
                         WHERE c.cid = ?1 AND c.seq < ?2 AND e.type = 'case.opened'
                           AND e.time_us >= ?3 AND e.time_us <= ?4)",
    )?
    .query_row(
        params![customer, seq, time - troth_core::health::REPEAT_CONTACT_WINDOW_US, time],
        |r| r.get(0),
    )
}

/// The tables of the projection, created under a schema name so replay can
/// rebuild them beside the live ones.
pub fn schema(schema: &str) -> String {
    let columns: Vec<String> = Tally::FIELDS
        .iter()
        .map(|f| format!("{f} INTEGER NOT NULL DEFAULT 0"))
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {schema}.touchpoint_days (touchpoint TEXT NOT NULL, day INTEGER NOT NULL, {}, PRIMARY KEY (touchpoint, day)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS {schema}.touchpoint_reach (touchpoint TEXT NOT NULL, day INTEGER NOT NULL, sketch BLOB NOT NULL, PRIMARY KEY (touchpoint, day)) WITHOUT ROWID;",
        columns.join(", ")
    )
}

fn add_tallies(conn: &Connection, schema: &str, days: &HashMap<(String, i64), Tally>) -> rusqlite::Result<()> {
    if days.is_empty() {
        return Ok(());
    }
    let fields = Tally::FIELDS;
    let marks: Vec<String> = (0..fields.len()).map(|i| format!("?{}", i + 3)).collect();
    let updates: Vec<String> = fields.iter().map(|f| format!("{f} = {f} + excluded.{f}")).collect();
    let mut upsert = conn.prepare_cached(&format!(
        "INSERT INTO {schema}.touchpoint_days (touchpoint, day, {}) VALUES (?1, ?2, {}) ON CONFLICT (touchpoint, day) DO UPDATE SET {}",
        fields.join(", "),
        marks.join(", "),
        updates.join(", ")
    ))?;
    for ((touchpoint, day), tally) in days {
        let mut values: Vec<rusqlite::types::Value> = vec![touchpoint.clone().into(), (*day).into()];
        values.extend(tally.to_array().into_iter().map(rusqlite::types::Value::from));
        upsert.execute(rusqlite::params_from_iter(values))?;
    }
    Ok(())
}
