//! The identity projection: which customer each event belongs to, and who merged
//! into whom. The same code runs when events are appended and when replay
//! rebuilds the projection, so the two cannot drift apart.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};
use troth_core::ValidEvent;
use troth_core::catalogue::EventData;
use troth_core::identity::{CustomerId, Identity, Resolution, resolve};

/// What an event will do to the projection, worked out before it is written so a
/// duplicate changes nothing.
#[derive(Debug)]
pub struct Plan {
    pub customer: Option<CustomerId>,
    resolution: Option<Resolution>,
    /// The event's identities that no customer has yet.
    unknown: Vec<Identity>,
    /// For a merge, one identity of each merged customer, to record why.
    evidence: Vec<(CustomerId, Identity)>,
}

/// A merge performed while applying an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    pub survivor: CustomerId,
    pub merged: CustomerId,
    pub identity: Option<Identity>,
}

/// How many identities the projector remembers; past that it starts afresh.
const IDENTITY_CACHE_ENTRIES: usize = 1 << 20;

/// Works on one connection inside the caller's transaction. After a rolled-back
/// transaction it must be made anew, since its memory may hold rolled-back rows.
pub struct Identities {
    schema: &'static str,
    next_cid: i64,
    /// Identity key → owning customer, for identities known to be stored.
    known: troth_core::FastMap<String, CustomerId>,
    sql: Sql,
}

/// The projector's statements, written out once per schema.
struct Sql {
    find_identity: String,
    insert_customer: String,
    insert_identity: String,
    repoint_identities: String,
    merge_customer: String,
    traits: String,
    set_traits: String,
}

impl Identities {
    pub fn new(conn: &Connection, schema: &'static str) -> rusqlite::Result<Identities> {
        let max: Option<i64> = conn.query_row(&format!("SELECT max(cid) FROM {schema}.customers"), [], |r| r.get(0))?;
        let s = schema;
        let sql = Sql {
            find_identity: format!("SELECT cid FROM {s}.identities WHERE key = ?1"),
            insert_customer: format!("INSERT INTO {s}.customers (cid) VALUES (?1)"),
            insert_identity: format!("INSERT OR IGNORE INTO {s}.identities (key, cid) VALUES (?1, ?2)"),
            repoint_identities: format!("UPDATE {s}.identities SET cid = ?1 WHERE cid = ?2"),
            merge_customer: format!("UPDATE {s}.customers SET merged_into = ?1 WHERE cid = ?2 OR merged_into = ?2"),
            traits: format!("SELECT traits FROM {s}.customers WHERE cid = ?1"),
            set_traits: format!("UPDATE {s}.customers SET traits = ?1 WHERE cid = ?2"),
        };
        Ok(Identities {
            schema,
            next_cid: max.unwrap_or(0) + 1,
            known: Default::default(),
            sql,
        })
    }

    fn owner(&mut self, conn: &Connection, identity: &Identity) -> rusqlite::Result<Option<CustomerId>> {
        if let Some(cid) = self.known.get(identity.as_key()) {
            return Ok(Some(*cid));
        }
        let found = conn
            .prepare_cached(&self.sql.find_identity)?
            .query_row([identity.as_key()], |r| r.get(0).map(CustomerId))
            .optional()?;
        if let Some(cid) = found {
            self.remember(identity, cid);
        }
        Ok(found)
    }

    fn remember(&mut self, identity: &Identity, cid: CustomerId) {
        if self.known.len() >= IDENTITY_CACHE_ENTRIES {
            self.known.clear();
        }
        self.known.insert(identity.as_key().to_owned(), cid);
    }

    pub fn plan(&mut self, conn: &Connection, event: &ValidEvent) -> rusqlite::Result<Plan> {
        if let EventData::CustomerMerged(m) = &event.data {
            // A recorded merge belongs to its survivor.
            let customer = match CustomerId::parse(&m.into) {
                Some(cid) => self.root(conn, cid)?,
                None => None,
            };
            return Ok(Plan {
                customer,
                resolution: None,
                unknown: Vec::new(),
                evidence: Vec::new(),
            });
        }
        let identities = &event.customer.identities;
        if identities.is_empty() {
            return Ok(Plan {
                customer: None,
                resolution: None,
                unknown: Vec::new(),
                evidence: Vec::new(),
            });
        }
        let mut owners = Vec::with_capacity(identities.len());
        let mut unknown = Vec::new();
        let mut evidence: Vec<(CustomerId, Identity)> = Vec::new();
        for identity in identities {
            match self.owner(conn, identity)? {
                Some(cid) => {
                    if !evidence.iter().any(|(c, _)| *c == cid) {
                        evidence.push((cid, identity.clone()));
                    }
                    owners.push(cid);
                }
                None => unknown.push(identity.clone()),
            }
        }
        let resolution = resolve(&owners);
        let customer = match &resolution {
            Resolution::New => CustomerId(self.next_cid),
            Resolution::Existing(cid) => *cid,
            Resolution::Merge { survivor, .. } => *survivor,
        };
        Ok(Plan {
            customer: Some(customer),
            resolution: Some(resolution),
            unknown,
            evidence,
        })
    }

    /// Applies a plan for an event that was just stored; returns the merges it made.
    pub fn apply(&mut self, conn: &Connection, plan: Plan, event: &ValidEvent) -> rusqlite::Result<Vec<Merge>> {
        let mut merges = Vec::new();
        if let EventData::CustomerMerged(m) = &event.data {
            if let (Some(survivor), Some(merged)) = (plan.customer, CustomerId::parse(&m.from))
                && let Some(merged) = self.root(conn, merged)?
                && merged != survivor
            {
                self.merge(conn, survivor, merged)?;
            }
            return Ok(merges);
        }
        let (Some(customer), Some(resolution)) = (plan.customer, plan.resolution) else {
            return Ok(merges);
        };
        match resolution {
            Resolution::New => {
                conn.prepare_cached(&self.sql.insert_customer)?.execute([customer.0])?;
                self.next_cid = customer.0 + 1;
            }
            Resolution::Existing(_) => {}
            Resolution::Merge { survivor, merged } => {
                for cid in merged {
                    self.merge(conn, survivor, cid)?;
                    let identity = plan.evidence.iter().find(|(c, _)| *c == cid).map(|(_, i)| i.clone());
                    merges.push(Merge {
                        survivor,
                        merged: cid,
                        identity,
                    });
                }
            }
        }
        if !plan.unknown.is_empty() {
            let mut insert = conn.prepare_cached(&self.sql.insert_identity)?;
            for identity in &plan.unknown {
                insert.execute(params![identity.as_key(), customer.0])?;
            }
            drop(insert);
            for identity in &plan.unknown {
                self.remember(identity, customer);
            }
        }
        if let EventData::CustomerIdentified(identified) = &event.data
            && let Some(traits) = &identified.traits
            && !traits.is_empty()
        {
            let mut stored = self.traits(conn, customer)?;
            stored.extend(traits.iter().map(|(k, v)| (k.clone(), v.clone())));
            self.set_traits(conn, customer, &stored)?;
        }
        Ok(merges)
    }

    /// The customer a (possibly merged) customer now lives on, if it exists.
    pub fn root(&self, conn: &Connection, cid: CustomerId) -> rusqlite::Result<Option<CustomerId>> {
        root(conn, self.schema, cid)
    }

    fn merge(&mut self, conn: &Connection, survivor: CustomerId, merged: CustomerId) -> rusqlite::Result<()> {
        conn.prepare_cached(&self.sql.repoint_identities)?
            .execute([survivor.0, merged.0])?;
        conn.prepare_cached(&self.sql.merge_customer)?
            .execute([survivor.0, merged.0])?;
        // Merges are rare: forgetting is simpler than finding the merged customer's entries.
        self.known.clear();
        // Traits known only to the merged customer carry over; the survivor's win.
        let mut traits = self.traits(conn, merged)?;
        let survivor_traits = self.traits(conn, survivor)?;
        if !traits.is_empty() {
            traits.extend(survivor_traits);
            self.set_traits(conn, survivor, &traits)?;
        }
        Ok(())
    }

    fn traits(&self, conn: &Connection, cid: CustomerId) -> rusqlite::Result<Map<String, Value>> {
        let text: Option<String> = conn
            .prepare_cached(&self.sql.traits)?
            .query_row([cid.0], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
    }

    fn set_traits(&self, conn: &Connection, cid: CustomerId, traits: &Map<String, Value>) -> rusqlite::Result<()> {
        let text = Value::Object(traits.clone()).to_string();
        conn.prepare_cached(&self.sql.set_traits)?
            .execute(params![text, cid.0])?;
        Ok(())
    }
}

pub fn root(conn: &Connection, schema: &str, cid: CustomerId) -> rusqlite::Result<Option<CustomerId>> {
    conn.prepare_cached(&format!(
        "SELECT coalesce(merged_into, cid) FROM {schema}.customers WHERE cid = ?1"
    ))?
    .query_row([cid.0], |r| r.get(0))
    .optional()
    .map(|c| c.map(CustomerId))
}

/// The `customer.merged` event recorded for a merge, so the log tells the story.
pub fn merge_event(merge: &Merge, caused_by_seq: i64, time: &str) -> String {
    let mut data = Map::new();
    data.insert("into".into(), Value::String(merge.survivor.to_string()));
    data.insert("from".into(), Value::String(merge.merged.to_string()));
    if let Some(identity) = &merge.identity {
        data.insert("identity".into(), Value::String(identity.to_string()));
    }
    serde_json::json!({
        "id": format!("troth.merge.{caused_by_seq}.{}", merge.merged),
        "type": "customer.merged",
        "time": time,
        "source": "troth",
        "subject": format!("customer:{}", merge.survivor),
        "data": data,
    })
    .to_string()
}

/// The identity projector: each event's customer (`event_customers`), for every
/// projector after it, and the customers and their identities. Live, a merge it
/// makes is appended to the log as a `customer.merged` event.
pub struct Projection {
    identities: Identities,
    record_customer: String,
    /// The batch's `(seq, cid)` for `event_customers`, written at its end: nothing
    /// in the batch reads them back, and one statement for all of them costs less
    /// than taking it from the cache for each event.
    resolved: Vec<(i64, i64)>,
}

impl Projection {
    pub fn open(conn: &Connection, schema: &'static str) -> Result<Projection, crate::StoreError> {
        conn.execute_batch(&super::schema::identities(schema))?;
        Ok(Projection {
            identities: Identities::new(conn, schema)?,
            // An upsert, not `OR REPLACE`: a replace may write several rows, so SQLite
            // keeps a statement journal of every page it touches.
            record_customer: format!(
                "INSERT INTO {schema}.event_customers (seq, cid) VALUES (?1, ?2)
                 ON CONFLICT (seq) DO UPDATE SET cid = excluded.cid"
            ),
            resolved: Vec::new(),
        })
    }
}

impl super::projector::Projector for Projection {
    fn name(&self) -> &'static str {
        "identities"
    }

    fn tables(&self) -> &'static [super::projector::Table] {
        use super::projector::Table;
        &[
            Table {
                name: "event_customers",
                rows: "SELECT seq, cid FROM {s}.event_customers",
            },
            Table {
                name: "customers",
                rows: "SELECT cid, merged_into, traits FROM {s}.customers",
            },
            Table {
                name: "identities",
                rows: "SELECT key, cid FROM {s}.identities",
            },
        ]
    }

    fn apply(
        &mut self,
        cx: &mut super::projector::Cx<'_>,
        at: &mut super::projector::Logged,
    ) -> Result<(), crate::StoreError> {
        let plan = self.identities.plan(cx.conn, &at.event)?;
        at.customer = plan.customer.map(|c| c.0);
        if let Some(cid) = at.customer {
            self.resolved.push((at.seq, cid));
        }
        let merges = self.identities.apply(cx.conn, plan, &at.event)?;
        // A rebuild finds again the merges the log already holds as `customer.merged`.
        if let Some(live) = &mut cx.live {
            for merge in merges {
                let body = merge_event(&merge, at.seq, &at.event.time.to_string());
                let merged = troth_core::validate_event(&body)
                    .map_err(|r| crate::StoreError::Invalid(format!("a merge does not validate: {}", r.error)))?;
                live.derived.push(merged);
            }
        }
        Ok(())
    }

    fn finish(&mut self, cx: &mut super::projector::Cx<'_>) -> Result<(), crate::StoreError> {
        if !self.resolved.is_empty() {
            let mut record = cx.conn.prepare_cached(&self.record_customer)?;
            for (seq, cid) in self.resolved.drain(..) {
                record.execute([seq, cid])?;
            }
        }
        Ok(())
    }

    fn reset(&mut self, conn: &Connection) -> Result<(), crate::StoreError> {
        self.resolved.clear();
        self.identities = Identities::new(conn, self.identities.schema)?;
        Ok(())
    }
}
