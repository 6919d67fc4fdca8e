//! The journey-health projection: per touchpoint and day, the summed tallies
//! (`touchpoint_days`), a sketch of the distinct customers exposed
//! (`touchpoint_reach`), and the tallies of each entity accountable there
//! (`touchpoint_entity_days`: a carrier, a team, a store; see
//! `troth_core::culprit`). Every path that counts health — append, catch-up after
//! a stop, a recount under a changed map, and replay — goes through
//! [`HealthDays`], so all of them count alike.
//!
//! Entities that belong to a subject (a shipment's carrier and driver, a case's
//! team) are remembered in `subject_entities` with the position of the event that
//! named them, so a later event about the subject is attributed to the entity that
//! was accountable *then*, however late its tallies are written. Each customer's
//! cases are kept in `case_contacts` (customer, time, position) to tell a repeat
//! contact without reading the customer's whole history. `touchpoint_visits` holds
//! each customer's first exposure per touchpoint and day (its position), from
//! which the paths customers really take are read (`troth_core::flow`).

use rusqlite::{Connection, OptionalExtension, params};
use troth_core::FastMap as HashMap;
use troth_core::ValidEvent;
use troth_core::health::{HealthIndex, Tally, day_of};
use troth_core::reach::Reach;

/// Health counted but not yet added to the tables.
#[derive(Debug, Default, Clone)]
pub struct HealthDays {
    pub tallies: HashMap<(String, i64), Tally>,
    pub reach: HashMap<(String, i64), Reach>,
    /// Per (touchpoint, day, entity `kind:id`).
    pub entities: HashMap<(String, i64, String), Tally>,
    /// Per (customer, day, touchpoint): the position of the customer's first
    /// exposure there that day, for the paths customers take (`touchpoint_visits`).
    pub visits: HashMap<(i64, i64, String), i64>,
}

/// Each subject's entities as `subject_entities` holds them, `(kind, seq, id)`, for
/// the subjects met lately: most events are about a subject met shortly before (a
/// shipment's, a case's), often in an earlier batch, whose rows need not be read
/// again. It holds what the table holds once the transaction commits; its owner
/// clears it when one rolls back.
#[derive(Debug, Default)]
pub struct SubjectMemo(HashMap<String, Vec<(&'static str, i64, String)>>);

/// How many subjects the memo remembers; past that it starts afresh.
const MEMO_SUBJECTS: usize = 65_536;

impl SubjectMemo {
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl HealthDays {
    /// Counts one event, stored under `seq`; `customer` is the customer it was
    /// resolved to, if any. Reads the log before it to tell repeat contacts.
    /// `schema` is where the subjects' entities are kept (`main`, or `replay`), and
    /// `memo` what was read or written of them there.
    #[allow(clippy::too_many_arguments)] // where, with what memory, by which rules, and the event
    pub fn add_event(
        &mut self,
        conn: &Connection,
        schema: &str,
        memo: &mut SubjectMemo,
        health: &HealthIndex,
        event: &ValidEvent,
        seq: i64,
        customer: Option<i64>,
    ) -> rusqlite::Result<()> {
        let day = day_of(event);
        let repeat = match customer {
            Some(customer) if event.event_type == "case.opened" => {
                is_repeat_contact(conn, schema, customer, seq, event)?
            }
            _ => false,
        };
        let contributions = health.contributions(event);
        let entities = entities_of(conn, schema, memo, event, seq, !contributions.is_empty())?;
        for (touchpoint, mut tally) in contributions {
            if repeat && tally.exposure > 0 {
                tally.repeat_contacts += 1;
            }
            if let Some(customer) = customer.filter(|_| tally.exposure > 0) {
                self.reach.entry((touchpoint.clone(), day)).or_default().add(customer);
                self.visits.entry((customer, day, touchpoint.clone())).or_insert(seq);
            }
            for (kind, entity) in &entities {
                if health.accountable(&touchpoint, kind) {
                    self.entities
                        .entry((touchpoint.clone(), day, entity.clone()))
                        .or_default()
                        .add(&tally);
                }
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
        for (key, tally) in other.entities {
            self.entities.entry(key).or_default().add(&tally);
        }
        for (key, seq) in other.visits {
            let first = self.visits.entry(key).or_insert(seq);
            *first = (*first).min(seq);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tallies.is_empty() && self.reach.is_empty() && self.entities.is_empty() && self.visits.is_empty()
    }

    /// Adds these to the tables of `schema` (`main`, or `replay` for a rebuild).
    pub fn write(&self, conn: &Connection, schema: &str) -> rusqlite::Result<()> {
        add_tallies(conn, schema, &self.tallies)?;
        add_entity_tallies(conn, schema, &self.entities)?;
        if !self.visits.is_empty() {
            let mut visit = conn.prepare_cached(&format!(
                "INSERT INTO {schema}.touchpoint_visits (cid, day, touchpoint, first_seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (day, cid, touchpoint) DO UPDATE SET first_seq = min(first_seq, excluded.first_seq)"
            ))?;
            // In the table's order, each upsert finds its page where the last one left it.
            let mut visits: Vec<_> = self.visits.iter().collect();
            visits.sort_unstable_by_key(|((cid, day, touchpoint), _)| (*day, *cid, touchpoint));
            for ((cid, day, touchpoint), seq) in visits {
                visit.execute(params![cid, day, touchpoint, seq])?;
            }
        }
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

/// The entities accountable for `event`, `(kind, "kind:id")`: those it names, and
/// those its subject had at its position (a shipment's carrier, a case's team).
/// Remembers the ones that stay with its subject. `needed`: whether the event
/// counts anywhere (if not, nothing is looked up).
fn entities_of(
    conn: &Connection,
    schema: &str,
    memo: &mut SubjectMemo,
    event: &ValidEvent,
    seq: i64,
    needed: bool,
) -> rusqlite::Result<Vec<(&'static str, String)>> {
    use troth_core::culprit::{KINDS, follows_subject, named_entities};
    let named = named_entities(&event.data);
    let remembered = named.iter().any(|(kind, _)| follows_subject(kind));
    let Some(subject) = event.subject.as_deref().filter(|_| needed || remembered) else {
        return Ok(named.iter().map(|(kind, id)| (*kind, format!("{kind}:{id}"))).collect());
    };
    if !memo.0.contains_key(subject) {
        if memo.0.len() >= MEMO_SUBJECTS {
            memo.clear();
        }
        let mut read = conn.prepare_cached(&format!(
            "SELECT kind, seq, entity FROM {schema}.subject_entities WHERE subject = ?1 ORDER BY kind, seq"
        ))?;
        let mut rows = read.query([subject])?;
        let mut known = Vec::new();
        while let Some(row) = rows.next()? {
            let kind: String = row.get(0)?;
            if let Some(kind) = KINDS.iter().find(|k| **k == kind) {
                known.push((*kind, row.get(1)?, row.get(2)?));
            }
        }
        memo.0.insert(subject.to_owned(), known);
    }
    let known = memo.0.get_mut(subject).expect("just read");
    // The subject's entities as they stood before this event: the latest of each kind.
    let mut out: Vec<(&'static str, String)> = named.iter().map(|(kind, id)| (*kind, format!("{kind}:{id}"))).collect();
    if needed {
        for kind in KINDS.iter().filter(|k| follows_subject(k)) {
            if out.iter().any(|(k, _)| k == kind) {
                continue;
            }
            if let Some((_, _, id)) = known
                .iter()
                .filter(|(k, s, _)| k == kind && *s < seq)
                .max_by_key(|(_, s, _)| *s)
            {
                out.push((kind, format!("{kind}:{id}")));
            }
        }
    }
    if remembered {
        let mut remember = conn.prepare_cached(&format!(
            "INSERT OR IGNORE INTO {schema}.subject_entities (subject, kind, seq, entity) VALUES (?1, ?2, ?3, ?4)"
        ))?;
        for (kind, id) in named.iter().filter(|(kind, _)| follows_subject(kind)) {
            remember.execute(params![subject, kind, seq, id])?;
            if !known.iter().any(|(k, s, _)| k == kind && *s == seq) {
                known.push((kind, seq, id.clone()));
            }
        }
    }
    Ok(out)
}

/// Whether the customer opened another case, earlier in the log, within the week
/// before this one; remembers this one in `case_contacts`. Log order (not arrival
/// of the answer) keeps a live count and a replay in agreement.
fn is_repeat_contact(
    conn: &Connection,
    schema: &str,
    customer: i64,
    seq: i64,
    event: &ValidEvent,
) -> rusqlite::Result<bool> {
    let time = event.time.micros();
    let earlier: bool = conn
        .prepare_cached(&format!(
            "SELECT EXISTS (SELECT 1 FROM {schema}.case_contacts
                             WHERE cid = ?1 AND time_us >= ?2 AND time_us <= ?3 AND seq < ?4)"
        ))?
        .query_row(
            params![customer, time - troth_core::health::REPEAT_CONTACT_WINDOW_US, time, seq],
            |r| r.get(0),
        )?;
    conn.prepare_cached(&format!(
        "INSERT OR IGNORE INTO {schema}.case_contacts (cid, time_us, seq) VALUES (?1, ?2, ?3)"
    ))?
    .execute(params![customer, time, seq])?;
    Ok(earlier)
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
         CREATE TABLE IF NOT EXISTS {schema}.touchpoint_reach (touchpoint TEXT NOT NULL, day INTEGER NOT NULL, sketch BLOB NOT NULL, PRIMARY KEY (touchpoint, day)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS {schema}.touchpoint_entity_days (touchpoint TEXT NOT NULL, day INTEGER NOT NULL, entity TEXT NOT NULL, {}, PRIMARY KEY (touchpoint, day, entity)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS {schema}.subject_entities (subject TEXT NOT NULL, kind TEXT NOT NULL, seq INTEGER NOT NULL, entity TEXT NOT NULL, PRIMARY KEY (subject, kind, seq)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS {schema}.case_contacts (cid INTEGER NOT NULL, time_us INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (cid, time_us, seq)) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS {schema}.touchpoint_visits (cid INTEGER NOT NULL, day INTEGER NOT NULL, touchpoint TEXT NOT NULL, first_seq INTEGER NOT NULL, PRIMARY KEY (day, cid, touchpoint)) WITHOUT ROWID;",
        columns.join(", "),
        columns.join(", ")
    )
}

/// Stores from before kept `touchpoint_visits` by customer first, with an index by
/// day for the one read; by day first, a batch's visits land together at the
/// table's end instead of one random page each, and the index goes. The rows stay.
fn rekey_visits(conn: &Connection, schema: &str) -> rusqlite::Result<()> {
    let old: bool = conn.query_row(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM {schema}.sqlite_master WHERE type = 'index' AND name = 'touchpoint_visits_by_day')"
        ),
        [],
        |r| r.get(0),
    )?;
    if !old {
        return Ok(());
    }
    // A savepoint: the registry may be opened inside a transaction.
    conn.execute_batch(&format!(
        "SAVEPOINT rekey_visits;
         CREATE TABLE {schema}.touchpoint_visits_rekeyed (cid INTEGER NOT NULL, day INTEGER NOT NULL, touchpoint TEXT NOT NULL, first_seq INTEGER NOT NULL, PRIMARY KEY (day, cid, touchpoint)) WITHOUT ROWID;
         INSERT INTO {schema}.touchpoint_visits_rekeyed SELECT cid, day, touchpoint, first_seq FROM {schema}.touchpoint_visits ORDER BY day, cid, touchpoint;
         DROP TABLE {schema}.touchpoint_visits;
         ALTER TABLE {schema}.touchpoint_visits_rekeyed RENAME TO touchpoint_visits;
         RELEASE rekey_visits;"
    ))
}

/// The tables [`schema`] creates that a recount under new rules starts afresh.
pub const RECOUNTED: &str =
    "touchpoint_days, touchpoint_reach, touchpoint_entity_days, subject_entities, case_contacts, touchpoint_visits";

/// Adds tallies to `table`, each row keyed by the values of `keys` (its primary key).
fn add_keyed_tallies<'a>(
    conn: &Connection,
    schema: &str,
    table: &str,
    keys: &[&str],
    rows: impl ExactSizeIterator<Item = (Vec<rusqlite::types::Value>, &'a Tally)>,
) -> rusqlite::Result<()> {
    if rows.len() == 0 {
        return Ok(());
    }
    let fields = Tally::FIELDS;
    let marks: Vec<String> = (1..=keys.len() + fields.len()).map(|i| format!("?{i}")).collect();
    let updates: Vec<String> = fields.iter().map(|f| format!("{f} = {f} + excluded.{f}")).collect();
    let mut upsert = conn.prepare_cached(&format!(
        "INSERT INTO {schema}.{table} ({}, {}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}",
        keys.join(", "),
        fields.join(", "),
        marks.join(", "),
        keys.join(", "),
        updates.join(", ")
    ))?;
    for (mut values, tally) in rows {
        values.extend(tally.to_array().into_iter().map(rusqlite::types::Value::from));
        upsert.execute(rusqlite::params_from_iter(values))?;
    }
    Ok(())
}

fn add_tallies(conn: &Connection, schema: &str, days: &HashMap<(String, i64), Tally>) -> rusqlite::Result<()> {
    let rows = days
        .iter()
        .map(|((touchpoint, day), tally)| (vec![touchpoint.clone().into(), (*day).into()], tally));
    add_keyed_tallies(conn, schema, "touchpoint_days", &["touchpoint", "day"], rows)
}

fn add_entity_tallies(
    conn: &Connection,
    schema: &str,
    days: &HashMap<(String, i64, String), Tally>,
) -> rusqlite::Result<()> {
    let rows = days.iter().map(|((touchpoint, day, entity), tally)| {
        (
            vec![touchpoint.clone().into(), (*day).into(), entity.clone().into()],
            tally,
        )
    });
    add_keyed_tallies(
        conn,
        schema,
        "touchpoint_entity_days",
        &["touchpoint", "day", "entity"],
        rows,
    )
}

/// The journey-health projector: counted into the transaction's aggregates (see
/// `projections::Aggregates`). Without a journey map, no health is kept.
pub struct Projection {
    rules: Option<std::sync::Arc<super::projections::JourneyRules>>,
    memo: SubjectMemo,
}

impl Projection {
    pub fn open(
        conn: &Connection,
        schema_name: &str,
        rules: Option<std::sync::Arc<super::projections::JourneyRules>>,
    ) -> Result<Projection, crate::StoreError> {
        rekey_visits(conn, schema_name)?;
        conn.execute_batch(&schema(schema_name))?;
        Ok(Projection {
            rules,
            memo: SubjectMemo::default(),
        })
    }
}

impl super::projector::Projector for Projection {
    fn name(&self) -> &'static str {
        "health"
    }

    fn tables(&self) -> &'static [super::projector::Table] {
        use super::projector::Table;
        &[
            Table {
                name: "touchpoint_days",
                rows: "SELECT * FROM {s}.touchpoint_days",
            },
            Table {
                name: "touchpoint_reach",
                rows: "SELECT * FROM {s}.touchpoint_reach",
            },
            Table {
                name: "touchpoint_entity_days",
                rows: "SELECT * FROM {s}.touchpoint_entity_days",
            },
            Table {
                name: "subject_entities",
                rows: "SELECT * FROM {s}.subject_entities",
            },
            Table {
                name: "case_contacts",
                rows: "SELECT * FROM {s}.case_contacts",
            },
            Table {
                name: "touchpoint_visits",
                rows: "SELECT * FROM {s}.touchpoint_visits",
            },
        ]
    }

    fn apply(
        &mut self,
        cx: &mut super::projector::Cx<'_>,
        at: &mut super::projector::Logged,
    ) -> Result<(), crate::StoreError> {
        if let Some(rules) = &self.rules {
            cx.aggregates.days.add_event(
                cx.conn,
                cx.schema,
                &mut self.memo,
                &rules.health,
                &at.event,
                at.seq,
                at.customer,
            )?;
        }
        Ok(())
    }

    fn reset(&mut self, _conn: &Connection) -> Result<(), crate::StoreError> {
        // It may hold rows of the transaction that rolled back.
        self.memo.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visits_kept_by_customer_first_are_rekeyed_by_day_and_keep_their_rows() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE touchpoint_visits (cid INTEGER NOT NULL, day INTEGER NOT NULL, touchpoint TEXT NOT NULL,
                first_seq INTEGER NOT NULL, PRIMARY KEY (cid, day, touchpoint)) WITHOUT ROWID;
             CREATE INDEX touchpoint_visits_by_day ON touchpoint_visits (day);
             INSERT INTO touchpoint_visits VALUES (2, 10, 'checkout', 7), (1, 11, 'delivery', 9), (1, 10, 'checkout', 3);",
        )
        .unwrap();
        Projection::open(&conn, "main", None).unwrap();
        let rows: Vec<(i64, i64, String, i64)> = conn
            .prepare("SELECT * FROM touchpoint_visits")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // Read in the new key's order: day, then customer.
        assert_eq!(
            rows,
            [
                (1, 10, "checkout".to_owned(), 3),
                (2, 10, "checkout".to_owned(), 7),
                (1, 11, "delivery".to_owned(), 9)
            ]
        );
        let index: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'touchpoint_visits_by_day')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!index, "the index by day is gone: the key serves the read");
        // Opening again leaves the table as it is.
        Projection::open(&conn, "main", None).unwrap();
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT cid, day, touchpoint, first_seq FROM touchpoint_visits WHERE day >= 10 AND day < 11",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("USING PRIMARY KEY (day>? AND day<?)"), "{plan}");
    }
}
