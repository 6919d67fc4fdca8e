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

pub struct Projector {
    schema: &'static str,
    next_cid: i64,
}

impl Projector {
    pub fn new(conn: &Connection, schema: &'static str) -> rusqlite::Result<Projector> {
        let max: Option<i64> = conn.query_row(&format!("SELECT max(cid) FROM {schema}.customers"), [], |r| r.get(0))?;
        Ok(Projector { schema, next_cid: max.unwrap_or(0) + 1 })
    }

    pub fn plan(&self, conn: &Connection, event: &ValidEvent) -> rusqlite::Result<Plan> {
        if let EventData::CustomerMerged(m) = &event.data {
            // A recorded merge belongs to its survivor.
            let customer = match CustomerId::parse(&m.into) {
                Some(cid) => self.root(conn, cid)?,
                None => None,
            };
            return Ok(Plan { customer, resolution: None, unknown: Vec::new(), evidence: Vec::new() });
        }
        let identities = &event.customer.identities;
        if identities.is_empty() {
            return Ok(Plan { customer: None, resolution: None, unknown: Vec::new(), evidence: Vec::new() });
        }
        let mut owners = Vec::with_capacity(identities.len());
        let mut unknown = Vec::new();
        let mut evidence: Vec<(CustomerId, Identity)> = Vec::new();
        let mut stmt = conn.prepare_cached(&format!("SELECT cid FROM {}.identities WHERE key = ?1", self.schema))?;
        for identity in identities {
            match stmt.query_row([identity.as_key()], |r| r.get::<_, i64>(0)).optional()? {
                Some(cid) => {
                    let cid = CustomerId(cid);
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
        Ok(Plan { customer: Some(customer), resolution: Some(resolution), unknown, evidence })
    }

    /// Applies a plan for an event that was just stored; returns the merges it made.
    pub fn apply(&mut self, conn: &Connection, plan: Plan, event: &ValidEvent) -> rusqlite::Result<Vec<Merge>> {
        let s = self.schema;
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
                conn.prepare_cached(&format!("INSERT INTO {s}.customers (cid) VALUES (?1)"))?.execute([customer.0])?;
                self.next_cid = customer.0 + 1;
            }
            Resolution::Existing(_) => {}
            Resolution::Merge { survivor, merged } => {
                for cid in merged {
                    self.merge(conn, survivor, cid)?;
                    let identity = plan.evidence.iter().find(|(c, _)| *c == cid).map(|(_, i)| i.clone());
                    merges.push(Merge { survivor, merged: cid, identity });
                }
            }
        }
        if !plan.unknown.is_empty() {
            let mut insert = conn.prepare_cached(&format!("INSERT OR IGNORE INTO {s}.identities (key, cid) VALUES (?1, ?2)"))?;
            for identity in &plan.unknown {
                insert.execute(params![identity.as_key(), customer.0])?;
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

    fn merge(&self, conn: &Connection, survivor: CustomerId, merged: CustomerId) -> rusqlite::Result<()> {
        let s = self.schema;
        conn.prepare_cached(&format!("UPDATE {s}.identities SET cid = ?1 WHERE cid = ?2"))?.execute([survivor.0, merged.0])?;
        conn.prepare_cached(&format!("UPDATE {s}.customers SET merged_into = ?1 WHERE cid = ?2 OR merged_into = ?2"))?
            .execute([survivor.0, merged.0])?;
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
            .prepare_cached(&format!("SELECT traits FROM {}.customers WHERE cid = ?1", self.schema))?
            .query_row([cid.0], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
    }

    fn set_traits(&self, conn: &Connection, cid: CustomerId, traits: &Map<String, Value>) -> rusqlite::Result<()> {
        let text = Value::Object(traits.clone()).to_string();
        conn.prepare_cached(&format!("UPDATE {}.customers SET traits = ?1 WHERE cid = ?2", self.schema))?
            .execute(params![text, cid.0])?;
        Ok(())
    }
}

pub fn root(conn: &Connection, schema: &str, cid: CustomerId) -> rusqlite::Result<Option<CustomerId>> {
    conn.prepare_cached(&format!("SELECT coalesce(merged_into, cid) FROM {schema}.customers WHERE cid = ?1"))?
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
