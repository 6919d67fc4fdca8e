//! Queries over the log and the projections.

use std::collections::{BTreeMap, HashMap};

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension};
use troth_core::Timestamp;
use troth_core::identity::{CustomerId, Identity, IdentityKind};

use super::identities::root;
use super::projections::Aggregates;
use super::stories;
use crate::{
    CustomerProfile, EventPage, EventQuery, IdentityView, Overview, PromisePage, PromiseQuery, PromiseView,
    RoadShipment, StoreError, StoredEvent,
};
use std::sync::Mutex;

/// The listing's SQL and arguments; `None` when it names a customer nobody is.
fn events_sql(conn: &Connection, query: &EventQuery) -> Result<Option<(String, Vec<SqlValue>)>, StoreError> {
    // The narrowest index leads: a customer's events (their copies, by customer and
    // position), else a subject's, else a type's (the event index), else the log in
    // order.
    let lead = match (&query.customer, &query.subject, &query.event_type) {
        (Some(key), ..) => {
            let Some(cids) = customer_set(conn, key)? else {
                return Ok(None);
            };
            // Their copies, then the identities' answer for the newer events: the two
            // parts of `customers_events`, each joined to the log on its own, so that
            // a page of a customer's events reads only that page of the log.
            IndexLead {
                table: "stories.customer_events c",
                key: "c.cid",
                pos: "c.seq",
                newer: "event_customers n JOIN events e ON e.seq = n.seq",
                newer_pos: "n.seq",
                column: "n.cid",
                values: cids.iter().map(|c| SqlValue::Integer(c.0)).collect(),
                taken: Taken::Customer,
            }
        }
        (None, Some(subject), _) => IndexLead {
            table: "stories.subject_events s",
            key: "s.subject",
            pos: "s.seq",
            newer: "events e",
            newer_pos: "e.seq",
            column: "e.subject",
            values: vec![SqlValue::Text(subject.clone())],
            taken: Taken::Subject,
        },
        // Positions are not in the index by type: the log in order finds them.
        (None, None, Some(event_type)) if super::event_index::indexed_by_type(event_type) => IndexLead {
            table: "stories.type_events t",
            key: "t.type",
            pos: "t.seq",
            newer: "events e",
            newer_pos: "e.seq",
            column: "e.type",
            values: vec![SqlValue::Text(event_type.clone())],
            taken: Taken::Type,
        },
        (None, None, _) => {
            let (filters, args) = listing_filters(query, "e.seq", Taken::Nothing);
            let sql = format!("SELECT e.seq, e.received_us, e.body FROM events e WHERE 1{filters}");
            return Ok(Some(ordered(sql, args, "e.seq", query)));
        }
    };
    // By the index in `stories.db` (the event index, or the customers' copies),
    // which holds the events as far as its checkpoint, and then the log's few newer
    // events: a listing is as fresh as the log. Both read in one statement, so from
    // one moment of each file; each arm comes in order (for one key), and SQLite
    // merges them rather than sorting.
    let IndexLead {
        table,
        key,
        pos,
        newer,
        newer_pos,
        column,
        values,
        taken,
    } = lead;
    let (indexed_filters, mut args) = listing_filters(query, pos, taken);
    let (newer_filters, newer_args) = listing_filters(query, newer_pos, taken);
    let marks = vec!["?"; values.len()].join(",");
    let mut all = values.clone();
    all.append(&mut args);
    all.extend(values);
    all.extend(newer_args);
    let sql = format!(
        "SELECT {pos}, e.received_us, e.body FROM {table} JOIN events e ON e.seq = {pos}
          WHERE {key} IN ({marks}){indexed_filters}
         UNION ALL
         SELECT {newer_pos}, e.received_us, e.body FROM {newer}
          WHERE {newer_pos} > {through}
            AND {column} IN ({marks}){newer_filters}",
        through = stories::THROUGH,
    );
    Ok(Some(ordered(sql, all, "1", query)))
}

/// A listing led by an index in `stories.db`: its table (with alias), the key and
/// position columns there; for the events past its checkpoint, the tables to read
/// (the log aliased `e`), their position and the same key's column; the values
/// sought.
struct IndexLead {
    table: &'static str,
    key: &'static str,
    pos: &'static str,
    newer: &'static str,
    newer_pos: &'static str,
    column: &'static str,
    values: Vec<SqlValue>,
    taken: Taken,
}

/// Which of the listing's filters its leading index takes.
#[derive(Clone, Copy, PartialEq)]
enum Taken {
    Nothing,
    Customer,
    Subject,
    Type,
}

/// The listing's conditions past its leading index, `pos` being the position the
/// lead is ordered by, each as ` AND …` with its arguments.
fn listing_filters(query: &EventQuery, pos: &str, taken: Taken) -> (String, Vec<SqlValue>) {
    let mut sql = format!(" AND {pos} > ?");
    let mut args = vec![SqlValue::Integer(query.after_seq.unwrap_or(0))];
    if let Some(before) = query.before_seq {
        sql.push_str(&format!(" AND {pos} < ?"));
        args.push(SqlValue::Integer(before));
    }
    if let Some(subject) = &query.subject
        && taken != Taken::Subject
    {
        sql.push_str(" AND e.subject = ?");
        args.push(SqlValue::Text(subject.clone()));
    }
    if let Some(event_type) = &query.event_type
        && taken != Taken::Type
    {
        sql.push_str(" AND e.type = ?");
        args.push(SqlValue::Text(event_type.clone()));
    }
    if let Some(from) = query.from_us {
        sql.push_str(" AND e.time_us >= ?");
        args.push(SqlValue::Integer(from));
    }
    if let Some(to) = query.to_us {
        sql.push_str(" AND e.time_us < ?");
        args.push(SqlValue::Integer(to));
    }
    (sql, args)
}

/// The listing in order (newest first if asked), one page long.
fn ordered(mut sql: String, mut args: Vec<SqlValue>, by: &str, query: &EventQuery) -> (String, Vec<SqlValue>) {
    sql.push_str(&format!(
        " ORDER BY {by}{} LIMIT ?",
        if query.newest_first { " DESC" } else { "" }
    ));
    args.push(SqlValue::Integer(query.limit as i64));
    (sql, args)
}

pub fn events(conn: &Connection, query: &EventQuery) -> Result<EventPage, StoreError> {
    let Some((sql, args)) = events_sql(conn, query)? else {
        return Ok(EventPage {
            events: Vec::new(),
            next_after: None,
        });
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let events = stmt
        .query_map(rusqlite::params_from_iter(args), |r| {
            Ok(StoredEvent {
                seq: r.get(0)?,
                received_us: r.get(1)?,
                raw: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let next_after = (events.len() == query.limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok(EventPage { events, next_after })
}

/// The time and type of the events about each order: those whose subject is the
/// order or one of its shipments (linked by `shipment.created`), in log order.
pub fn order_events(conn: &Connection, orders: &[String]) -> Result<Vec<crate::OrderEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.time_us, e.type FROM stories.subject_events s JOIN events e ON e.seq = s.seq
          WHERE s.subject IN (SELECT ?1 UNION ALL SELECT linked FROM subject_links WHERE subject = ?1)
          ORDER BY s.seq",
    )?;
    let mut out = Vec::new();
    for order in orders {
        let rows = stmt.query_map([format!("order:{order}")], |r| {
            Ok(crate::OrderEvent {
                order: order.clone(),
                time_us: r.get(0)?,
                event_type: r.get(1)?,
            })
        })?;
        for row in rows {
            out.push(row?);
        }
    }
    Ok(out)
}

/// The events of cases at or after `from_us`, in log order, each with the surviving
/// customer it belongs to; with `customer`, only theirs (none for an unknown key).
pub fn case_events(
    conn: &Connection,
    from_us: Option<i64>,
    customer: Option<&str>,
) -> Result<Vec<crate::CaseEvent>, StoreError> {
    let types = troth_core::case::EVENT_TYPES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let from = SqlValue::Integer(from_us.unwrap_or(i64::MIN));
    let (sql, args) = match customer {
        Some(key) => {
            let Some(cids) = customer_set(conn, key)? else {
                return Ok(Vec::new());
            };
            let (theirs, mut args) = customers_events(&cids);
            args.push(from);
            let sql = format!(
                "SELECT e.seq, e.body, coalesce(cu.merged_into, cu.cid)
                   FROM {theirs} c JOIN events e ON e.seq = c.seq LEFT JOIN customers cu ON cu.cid = c.cid
                  WHERE e.type IN ({types}) AND e.time_us >= ? ORDER BY e.seq"
            );
            (sql, args)
        }
        // By the event index as far as its checkpoint, then the log's newer events,
        // as the event listing reads them.
        None => {
            let sql = format!(
                "SELECT t.seq, e.body, coalesce(cu.merged_into, cu.cid)
                   FROM stories.type_events t JOIN events e ON e.seq = t.seq
                   LEFT JOIN event_customers c ON c.seq = e.seq LEFT JOIN customers cu ON cu.cid = c.cid
                  WHERE t.type IN ({types}) AND e.time_us >= ?
                 UNION ALL
                 SELECT e.seq, e.body, coalesce(cu.merged_into, cu.cid)
                   FROM events e
                   LEFT JOIN event_customers c ON c.seq = e.seq LEFT JOIN customers cu ON cu.cid = c.cid
                  WHERE e.seq > {through}
                    AND e.type IN ({types}) AND e.time_us >= ?
                 ORDER BY 1",
                through = stories::THROUGH,
            );
            (sql, vec![from.clone(), from])
        }
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok(crate::CaseEvent {
            seq: r.get(0)?,
            raw: r.get(1)?,
            customer: r.get::<_, Option<i64>>(2)?.map(|c| CustomerId(c).to_string()),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Customers a person typing into a search box may mean: the customer an email,
/// a phone number (written any way), an id or an identity key names; whoever an
/// order's or a shipment's events belong to; customers whose name contains the
/// text (any case). The surviving customers, at most `limit`, exact finds first.
pub fn search_customers(conn: &Connection, text: &str, limit: usize) -> Result<Vec<crate::CustomerMatch>, StoreError> {
    let text = text.trim();
    let mut found: Vec<CustomerId> = Vec::new();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut keys = vec![text.to_owned()];
    if text.contains('@') {
        keys.extend(
            Identity::new(IdentityKind::Email, text)
                .ok()
                .map(|i| i.as_key().to_owned()),
        );
    }
    let digits = text.chars().filter(char::is_ascii_digit).count();
    if digits >= 6 && text.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c)) {
        keys.extend(
            Identity::new(IdentityKind::Phone, text)
                .ok()
                .map(|i| i.as_key().to_owned()),
        );
    }
    for key in keys {
        if let Some(cid) = find_customer(conn, &key)?
            && !found.contains(&cid)
        {
            found.push(cid);
        }
    }
    let mut by_subject = conn.prepare_cached(
        "SELECT DISTINCT coalesce(cu.merged_into, cu.cid) FROM stories.subject_events s
           JOIN event_customers c ON c.seq = s.seq JOIN customers cu ON cu.cid = c.cid
          WHERE s.subject IN (?1, ?2) LIMIT ?3",
    )?;
    let subjects = by_subject.query_map(
        rusqlite::params![format!("order:{text}"), format!("shipment:{text}"), limit as i64],
        |r| r.get(0).map(CustomerId),
    )?;
    for cid in subjects {
        let cid = cid?;
        if !found.contains(&cid) {
            found.push(cid);
        }
    }
    if found.len() < limit && text.chars().count() >= 2 {
        let pattern = format!("%{}%", text.replace(['%', '_'], ""));
        let mut by_name = conn.prepare_cached(
            "SELECT cid FROM customers WHERE merged_into IS NULL AND json_extract(traits, '$.name') LIKE ?1
              ORDER BY cid LIMIT ?2",
        )?;
        let named = by_name.query_map(rusqlite::params![pattern, limit as i64], |r| r.get(0).map(CustomerId))?;
        for cid in named {
            let cid = cid?;
            if !found.contains(&cid) {
                found.push(cid);
            }
        }
    }
    found.truncate(limit);
    let mut matches = Vec::with_capacity(found.len());
    for cid in found {
        let name: Option<String> = conn
            .prepare_cached("SELECT json_extract(traits, '$.name') FROM customers WHERE cid = ?1")?
            .query_row([cid.0], |r| r.get(0))
            .optional()?
            .flatten();
        let identities: Vec<String> = conn
            .prepare_cached("SELECT key FROM identities WHERE cid = ?1 ORDER BY key")?
            .query_map([cid.0], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let first = |kind: &str| identities.iter().find_map(|k| k.strip_prefix(kind).map(str::to_owned));
        matches.push(crate::CustomerMatch {
            id: cid.to_string(),
            name,
            email: first("email:"),
            phone: first("phone:"),
        });
    }
    Ok(matches)
}

/// Finds the surviving customer a key names: the sender's own id first, then an
/// identity key (`email:…`), then troth's id (`cus_…`).
pub fn find_customer(conn: &Connection, key: &str) -> Result<Option<CustomerId>, StoreError> {
    let mut candidates = Vec::new();
    if let Ok(identity) = Identity::new(IdentityKind::Id, key) {
        candidates.push(identity);
    }
    if let Some(identity) = Identity::parse(key) {
        candidates.push(identity);
    }
    let mut by_identity = conn.prepare_cached("SELECT cid FROM identities WHERE key = ?1")?;
    for identity in candidates {
        if let Some(cid) = by_identity.query_row([identity.as_key()], |r| r.get(0)).optional()? {
            return Ok(Some(CustomerId(cid)));
        }
    }
    match CustomerId::parse(key) {
        Some(cid) => Ok(root(conn, "main", cid)?),
        None => Ok(None),
    }
}

/// Every event of the customers `cids` as rows `(cid, seq)`, to join as a table
/// (`FROM {sql} c`), and the arguments of its `?` placeholders, in the order of the
/// text (a statement that also numbers its placeholders must count these).
///
/// The customers' copies (`stories.customer_events`, in customer order) answer as
/// far as the stories' thread has written them; past its checkpoint, the
/// identities' answer for each newer event (`event_customers`, in log order) does.
/// `event_customers` keeps no index by customer: on every event that was an insert
/// at a random place, about a quarter of the projections' time, for what the
/// copies already hold.
pub(super) fn customers_events(cids: &[CustomerId]) -> (String, Vec<SqlValue>) {
    let marks = vec!["?"; cids.len()].join(",");
    let sql = format!(
        "(SELECT cid, seq FROM stories.customer_events WHERE cid IN ({marks})
          UNION ALL
          SELECT cid, seq FROM event_customers
           WHERE seq > {through}
             AND cid IN ({marks}))",
        through = stories::THROUGH,
    );
    let args = cids.iter().chain(cids).map(|c| SqlValue::Integer(c.0)).collect();
    (sql, args)
}

/// The survivor a key names and every customer merged into it.
pub(super) fn customer_set(conn: &Connection, key: &str) -> Result<Option<Vec<CustomerId>>, StoreError> {
    let Some(survivor) = find_customer(conn, key)? else {
        return Ok(None);
    };
    let mut set = vec![survivor];
    set.extend(merged_into(conn, survivor)?);
    Ok(Some(set))
}

pub(super) fn merged_into(conn: &Connection, survivor: CustomerId) -> Result<Vec<CustomerId>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT cid FROM customers WHERE merged_into = ?1 ORDER BY cid")?;
    let merged = stmt
        .query_map([survivor.0], |r| r.get(0).map(CustomerId))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(merged)
}

pub fn customer(conn: &Connection, key: &str) -> Result<Option<CustomerProfile>, StoreError> {
    let Some(survivor) = find_customer(conn, key)? else {
        return Ok(None);
    };
    let merged = merged_into(conn, survivor)?;
    let counts = event_counts(conn, survivor, &merged)?;
    Ok(Some(profile(conn, survivor, merged, counts)?))
}

/// How many events of each type a customer is in, and the first and last one's time (µs).
#[derive(Debug, Default)]
pub(super) struct EventCounts {
    pub by_type: BTreeMap<String, u64>,
    pub first_us: Option<i64>,
    pub last_us: Option<i64>,
}

impl EventCounts {
    pub fn add(&mut self, event_type: &str, n: u64, first_us: i64, last_us: i64) {
        *self.by_type.entry(event_type.to_owned()).or_default() += n;
        self.first_us = Some(self.first_us.map_or(first_us, |f| f.min(first_us)));
        self.last_us = Some(self.last_us.map_or(last_us, |l| l.max(last_us)));
    }
}

/// Counts every event of the customer and of those merged into them.
pub(super) fn event_counts(
    conn: &Connection,
    survivor: CustomerId,
    merged: &[CustomerId],
) -> Result<EventCounts, StoreError> {
    let mut all = vec![survivor];
    all.extend_from_slice(merged);
    let (theirs, args) = customers_events(&all);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT e.type, count(*), min(e.time_us), max(e.time_us) FROM {theirs} c JOIN events e ON e.seq = c.seq
          GROUP BY e.type"
    ))?;
    let mut counts = EventCounts::default();
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    while let Some(row) = rows.next()? {
        counts.add(
            &row.get::<_, String>(0)?,
            row.get::<_, i64>(1)? as u64,
            row.get(2)?,
            row.get(3)?,
        );
    }
    Ok(counts)
}

/// The surviving customer's identities and traits, with their events counted.
pub(super) fn profile(
    conn: &Connection,
    survivor: CustomerId,
    merged: Vec<CustomerId>,
    counts: EventCounts,
) -> Result<CustomerProfile, StoreError> {
    let identities = conn
        .prepare_cached("SELECT key FROM identities WHERE cid = ?1 ORDER BY key")?
        .query_map([survivor.0], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter_map(|key| Identity::from_key(&key))
        .map(|identity| {
            let kind = match identity.kind() {
                IdentityKind::Id => "id",
                IdentityKind::Email => "email",
                IdentityKind::Phone => "phone",
                IdentityKind::External => "external",
            };
            IdentityView {
                kind: kind.into(),
                value: identity.value().into(),
            }
        })
        .collect();
    let traits: Option<String> = conn
        .prepare_cached("SELECT traits FROM customers WHERE cid = ?1")?
        .query_row([survivor.0], |r| r.get(0))
        .optional()?
        .flatten();
    let traits = traits.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let seen = |t: Option<i64>| t.map(|t| Timestamp(t).to_string());
    Ok(CustomerProfile {
        id: survivor.to_string(),
        identities,
        traits,
        first_seen: seen(counts.first_us),
        last_seen: seen(counts.last_us),
        events: counts.by_type.values().sum(),
        event_counts: counts.by_type,
        merged_from: merged.iter().map(|c| c.to_string()).collect(),
    })
}

pub fn overview(conn: &Connection, pending: &Mutex<Aggregates>) -> Result<Overview, StoreError> {
    // Held while reading, so the projections cannot move pending counts into the table meanwhile.
    let pending = pending.lock().unwrap_or_else(|p| p.into_inner());
    let mut by_type = conn
        .prepare_cached("SELECT type, n FROM event_type_counts ORDER BY n DESC, type")?
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect::<Result<Vec<_>, _>>()?;
    for (event_type, n) in &pending.counts {
        match by_type.iter_mut().find(|(t, _)| t == event_type) {
            Some((_, count)) => *count += *n as u64,
            None => by_type.push((event_type.clone(), *n as u64)),
        }
    }
    drop(pending);
    by_type.retain(|(_, n)| *n > 0);
    by_type.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let customers: i64 = conn.query_row("SELECT count(*) FROM customers WHERE merged_into IS NULL", [], |r| {
        r.get(0)
    })?;
    let last_seq: Option<i64> = conn.query_row("SELECT max(seq) FROM events", [], |r| r.get(0))?;
    Ok(Overview {
        events: by_type.iter().map(|(_, n)| n).sum(),
        customers: customers as u64,
        last_seq: last_seq.unwrap_or(0),
        by_type,
    })
}

/// The conditions of a promise listing (all but its cursor and limit), shared by the
/// listing and its counts so a count always agrees with the list it summarises.
/// `None` when the query can match nothing (no touchpoints, or an unknown customer).
fn promise_filter(conn: &Connection, query: &PromiseQuery) -> Result<Option<(String, Vec<SqlValue>)>, StoreError> {
    let mut sql = String::new();
    let mut args: Vec<SqlValue> = Vec::new();
    if let Some(touchpoints) = &query.touchpoints {
        if touchpoints.is_empty() {
            return Ok(None);
        }
        sql.push_str(&format!(
            " AND p.touchpoint IN ({})",
            vec!["?"; touchpoints.len()].join(",")
        ));
        args.extend(touchpoints.iter().map(|t| SqlValue::Text(t.clone())));
    }
    if let Some(state) = &query.state {
        sql.push_str(" AND p.state = ?");
        args.push(SqlValue::Text(state.clone()));
    }
    if let Some(key) = &query.customer {
        let Some(cids) = customer_set(conn, key)? else {
            return Ok(None);
        };
        // A promise belongs to the customer of the event that recorded its making,
        // and, asked for, to whoever's orders and shipments it is about.
        let (theirs, theirs_args) = customers_events(&cids);
        sql.push_str(&format!(
            " AND (p.id IN (SELECT json_extract(e.body, '$.data.promise')
                             FROM {theirs} c JOIN events e ON e.seq = c.seq
                            WHERE +e.type = 'promise.made')"
        ));
        args.extend(theirs_args);
        if !query.subjects.is_empty() {
            sql.push_str(&format!(
                " OR p.subject IN ({})",
                vec!["?"; query.subjects.len()].join(",")
            ));
            args.extend(query.subjects.iter().map(|s| SqlValue::Text(s.clone())));
        }
        sql.push(')');
    }
    if let Some(from) = query.due_from_us {
        sql.push_str(" AND p.due_us >= ?");
        args.push(SqlValue::Integer(from));
    }
    if let Some(to) = query.due_to_us {
        sql.push_str(" AND p.due_us < ?");
        args.push(SqlValue::Integer(to));
    }
    Ok(Some((sql, args)))
}

/// How many promises a listing would hold, by state (its cursor and limit ignored).
pub fn promise_counts(conn: &Connection, query: &PromiseQuery) -> Result<Vec<(String, u64)>, StoreError> {
    let Some((filter, args)) = promise_filter(conn, query)? else {
        return Ok(Vec::new());
    };
    let sql = format!("SELECT p.state, COUNT(*) FROM promises p WHERE 1 = 1{filter} GROUP BY p.state ORDER BY p.state");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Promises of the given keys still against their customer: broken (their due time
/// passed, or something broke them) or at risk, whose subject has seen no
/// `case.resolved` since the promise was made. For case promises (`case_sla`), the
/// open cases breaching or about to breach their SLA; by due time, oldest first.
pub fn unresolved_breaches(conn: &Connection, keys: &[String], limit: usize) -> Result<Vec<PromiseView>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT p.id, p.key, p.touchpoint, p.subject, p.state, p.made_at_us, p.start_us, p.due_us, p.settled_us, p.customer_ref
           FROM promises p
          WHERE p.key IN ({}) AND p.state IN ('broken', 'at_risk')
            AND NOT EXISTS (SELECT 1 FROM stories.subject_events s JOIN events e ON e.seq = s.seq
                             WHERE s.subject = p.subject AND e.type = 'case.resolved' AND e.time_us >= p.made_at_us)
          ORDER BY p.due_us, p.id LIMIT ?",
        vec!["?"; keys.len()].join(",")
    );
    let mut args: Vec<SqlValue> = keys.iter().map(|k| SqlValue::Text(k.clone())).collect();
    args.push(SqlValue::Integer(limit as i64));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| Ok(promise_row(r)?.1))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The shipments on the road now (out for delivery or arriving, per the shipment
/// projection's current stage), with the customer ref of their first event.
pub fn on_the_road(conn: &Connection) -> Result<Vec<RoadShipment>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, state, customer_ref FROM main.shipments
          WHERE final_us IS NULL AND stage IN ('out_for_delivery', 'arriving') ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, state, customer) = row?;
        let shipment = serde_json::from_str(&state)
            .map_err(|e| StoreError::Invalid(format!("a stored shipment does not decode: {e}")))?;
        out.push(RoadShipment {
            id,
            shipment,
            customer: customer.and_then(|c| serde_json::from_str(&c).ok()),
        });
    }
    Ok(out)
}

pub(super) fn promise_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, PromiseView)> {
    let time = |us: Option<i64>| us.map(|us| Timestamp(us).to_string());
    let customer: Option<String> = r.get(9)?;
    Ok((
        r.get::<_, i64>(7)?,
        PromiseView {
            id: r.get(0)?,
            key: r.get(1)?,
            touchpoint: r.get(2)?,
            subject: r.get(3)?,
            state: r.get(4)?,
            made_at: Timestamp(r.get(5)?).to_string(),
            start: time(r.get(6)?),
            due: Timestamp(r.get(7)?).to_string(),
            settled_at: time(r.get(8)?),
            customer: customer.and_then(|c| serde_json::from_str(&c).ok()),
        },
    ))
}

pub fn promises(conn: &Connection, query: &PromiseQuery) -> Result<PromisePage, StoreError> {
    let Some((filter, mut args)) = promise_filter(conn, query)? else {
        return Ok(PromisePage {
            promises: Vec::new(),
            next: None,
        });
    };
    let mut sql = format!(
        "SELECT p.id, p.key, p.touchpoint, p.subject, p.state, p.made_at_us, p.start_us, p.due_us, p.settled_us, p.customer_ref
           FROM promises p WHERE 1 = 1{filter}"
    );
    if let Some((due, id)) = &query.after {
        sql.push_str(" AND (p.due_us > ? OR (p.due_us = ? AND p.id > ?))");
        args.extend([
            SqlValue::Integer(*due),
            SqlValue::Integer(*due),
            SqlValue::Text(id.clone()),
        ]);
    }
    // A bound limit on a sorted statement makes SQLite plan it again at every run.
    sql.push_str(&format!(" ORDER BY p.due_us, p.id LIMIT {}", query.limit));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), promise_row)?;
    let rows: Vec<(i64, PromiseView)> = rows.collect::<Result<_, _>>()?;
    let next = (rows.len() == query.limit)
        .then(|| rows.last().map(|(due, p)| (*due, p.id.clone())))
        .flatten();
    Ok(PromisePage {
        promises: rows.into_iter().map(|(_, p)| p).collect(),
        next,
    })
}

pub fn health(
    conn: &Connection,
    pending: &Mutex<Aggregates>,
    from_day: Option<i64>,
    to_day: Option<i64>,
) -> Result<Vec<(String, troth_core::health::Tally)>, StoreError> {
    use troth_core::health::Tally;
    let pending = pending.lock().unwrap_or_else(|p| p.into_inner());
    let sums: Vec<String> = Tally::FIELDS.iter().map(|f| format!("sum({f})")).collect();
    let sql = format!(
        "SELECT touchpoint, {} FROM touchpoint_days WHERE day >= ?1 AND day < ?2 GROUP BY touchpoint ORDER BY touchpoint",
        sums.join(", ")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([from_day.unwrap_or(i64::MIN), to_day.unwrap_or(i64::MAX)], |r| {
        let values: Vec<i64> = (1..=Tally::FIELDS.len()).map(|i| r.get(i)).collect::<Result<_, _>>()?;
        Ok((r.get::<_, String>(0)?, Tally::from_values(&values)))
    })?;
    let mut tallies: Vec<(String, Tally)> = rows.collect::<Result<_, _>>()?;
    let (from, to) = (from_day.unwrap_or(i64::MIN), to_day.unwrap_or(i64::MAX));
    for ((touchpoint, _), tally) in pending
        .days
        .tallies
        .iter()
        .filter(|((_, day), _)| (from..to).contains(day))
    {
        match tallies.iter_mut().find(|(t, _)| t == touchpoint) {
            Some((_, sum)) => sum.add(tally),
            None => tallies.push((touchpoint.clone(), *tally)),
        }
    }
    Ok(tallies)
}

pub fn touchpoint_visits(
    conn: &Connection,
    pending: &Mutex<Aggregates>,
    from_day: Option<i64>,
    to_day: Option<i64>,
    limit: usize,
) -> Result<(Vec<troth_core::flow::Visit>, bool), StoreError> {
    let (from, to) = (from_day.unwrap_or(i64::MIN), to_day.unwrap_or(i64::MAX));
    let pending = pending.lock().unwrap_or_else(|p| p.into_inner());
    // The first position per (customer, day, touchpoint), table and pending alike.
    let mut first: HashMap<(i64, i64, String), i64> = HashMap::new();
    for ((cid, day, touchpoint), seq) in pending
        .days
        .visits
        .iter()
        .filter(|((_, day, _), _)| (from..to).contains(day))
    {
        first.insert((*cid, *day, touchpoint.clone()), *seq);
    }
    drop(pending);
    let mut stmt = conn
        .prepare_cached("SELECT cid, day, touchpoint, first_seq FROM touchpoint_visits WHERE day >= ?1 AND day < ?2")?;
    let mut rows = stmt.query([from, to])?;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(3)?;
        let at = first.entry((row.get(0)?, row.get(1)?, row.get(2)?)).or_insert(seq);
        *at = (*at).min(seq);
    }
    // A customer merged since is read under the survivor, as everywhere else.
    let survivors: HashMap<i64, i64> = conn
        .prepare_cached("SELECT cid, merged_into FROM customers WHERE merged_into IS NOT NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut visits: Vec<troth_core::flow::Visit> = first
        .into_iter()
        .map(|((customer, day, touchpoint), position)| troth_core::flow::Visit {
            customer: survivors.get(&customer).copied().unwrap_or(customer),
            day,
            touchpoint,
            position,
        })
        .collect();
    visits.sort_unstable_by_key(|v| (v.customer, v.position));
    let mut cut = false;
    if visits.len() > limit {
        // Whole customers only: a customer's path is never cut short.
        let last = visits[limit].customer;
        let keep = visits.partition_point(|v| v.customer < last);
        visits.truncate(keep);
        cut = true;
    }
    Ok((visits, cut))
}

pub fn entity_health(
    conn: &Connection,
    pending: &Mutex<Aggregates>,
    from_day: Option<i64>,
    to_day: Option<i64>,
) -> Result<troth_core::weakest::EntityTallies, StoreError> {
    use troth_core::health::Tally;
    let pending = pending.lock().unwrap_or_else(|p| p.into_inner());
    let (from, to) = (from_day.unwrap_or(i64::MIN), to_day.unwrap_or(i64::MAX));
    let sums: Vec<String> = Tally::FIELDS.iter().map(|f| format!("sum({f})")).collect();
    let sql = format!(
        "SELECT touchpoint, entity, {} FROM touchpoint_entity_days WHERE day >= ?1 AND day < ?2
          GROUP BY touchpoint, entity",
        sums.join(", ")
    );
    let mut sums: HashMap<(String, String), Tally> = HashMap::new();
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([from, to])?;
    while let Some(r) = rows.next()? {
        let values: Vec<i64> = (2..2 + Tally::FIELDS.len())
            .map(|i| r.get(i))
            .collect::<Result<_, _>>()?;
        sums.insert((r.get(0)?, r.get(1)?), Tally::from_values(&values));
    }
    for ((touchpoint, day, entity), tally) in &pending.days.entities {
        if (from..to).contains(day) {
            sums.entry((touchpoint.clone(), entity.clone())).or_default().add(tally);
        }
    }
    let mut out = troth_core::weakest::EntityTallies::new();
    for ((touchpoint, entity), tally) in sums {
        out.entry(touchpoint).or_default().push((entity, tally));
    }
    // A stable order, so equal culprits always list alike.
    out.values_mut().for_each(|list| list.sort_by(|a, b| a.0.cmp(&b.0)));
    Ok(out)
}

pub fn survey_answers(
    conn: &Connection,
    from_us: Option<i64>,
    to_us: Option<i64>,
) -> Result<Vec<troth_core::chasm::Answer>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT coalesce(c.merged_into, ec.cid), e.body FROM stories.type_events t JOIN events e ON e.seq = t.seq
         JOIN event_customers ec ON ec.seq = e.seq
         LEFT JOIN customers c ON c.cid = ec.cid
         WHERE t.type IN ('survey.answered', 'review.posted') AND e.time_us >= ?1 AND e.time_us < ?2",
    )?;
    let mut rows = stmt.query([from_us.unwrap_or(i64::MIN), to_us.unwrap_or(i64::MAX)])?;
    let mut answers = Vec::new();
    while let Some(row) = rows.next()? {
        let customer = troth_core::identity::CustomerId(row.get(0)?);
        let body: String = row.get(1)?;
        // Stored events validated when they arrived; one that no longer does is skipped.
        if let Ok(event) = troth_core::validate_event(&body)
            && let Some(answer) = troth_core::chasm::Answer::from_event(customer.to_string(), &event.data)
        {
            answers.push(answer);
        }
    }
    Ok(answers)
}

/// Distinct customers exposed per touchpoint over the days, estimated (see
/// [`troth_core::reach`]), committed and pending alike.
pub fn reach(
    conn: &Connection,
    pending: &Mutex<Aggregates>,
    from_day: Option<i64>,
    to_day: Option<i64>,
) -> Result<Vec<(String, u64)>, StoreError> {
    use troth_core::reach::Reach;
    let (from, to) = (from_day.unwrap_or(i64::MIN), to_day.unwrap_or(i64::MAX));
    let mut merged: BTreeMap<String, Reach> = BTreeMap::new();
    {
        let pending = pending.lock().unwrap_or_else(|p| p.into_inner());
        for ((touchpoint, _), reach) in pending
            .days
            .reach
            .iter()
            .filter(|((_, day), _)| (from..to).contains(day))
        {
            merged.entry(touchpoint.clone()).or_default().merge(reach);
        }
    }
    let mut stmt =
        conn.prepare_cached("SELECT touchpoint, sketch FROM touchpoint_reach WHERE day >= ?1 AND day < ?2")?;
    let mut rows = stmt.query([from, to])?;
    while let Some(row) = rows.next()? {
        let sketch: Vec<u8> = row.get(1)?;
        if let Some(reach) = Reach::from_bytes(&sketch) {
            merged.entry(row.get(0)?).or_default().merge(&reach);
        }
    }
    Ok(merged.into_iter().map(|(t, r)| (t, r.estimate())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read connection's tables, on the real schema: the log's, the identities'
    /// and, attached, the stories'. The directory holds the stories' file.
    fn tables() -> (Connection, tempfile::TempDir) {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(super::super::schema::EVENTS).unwrap();
        conn.execute_batch(super::super::schema::META).unwrap();
        conn.execute_batch(&super::super::schema::identities("main")).unwrap();
        // The stories' schema names its tables bare: made in a file of its own, as they are.
        let stories = tempfile::tempdir().unwrap();
        let path = stories.path().join(super::super::stories::FILE);
        Connection::open(&path)
            .unwrap()
            .execute_batch(super::super::stories::SCHEMA)
            .unwrap();
        conn.execute_batch(&format!("ATTACH DATABASE '{}' AS stories", path.display()))
            .unwrap();
        (conn, stories)
    }

    /// The plan SQLite picks for a listing, on the real schema.
    fn plan(query: &EventQuery) -> String {
        let (conn, _stories) = tables();
        let (sql, args) = events_sql(&conn, query).unwrap().unwrap();
        explain(&conn, &sql, args)
    }

    /// The plan SQLite picks for `sql`, its steps joined by `; `.
    fn explain(conn: &Connection, sql: &str, args: Vec<SqlValue>) -> String {
        let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = explain
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap();
        rows.collect::<Result<Vec<_>, _>>().unwrap().join("; ")
    }

    #[test]
    fn a_listing_by_subject_or_type_walks_the_event_index_in_order() {
        let query = EventQuery {
            subject: Some("driver:d-1".into()),
            event_type: Some("courier.position".into()),
            newest_first: true,
            limit: 20,
            ..EventQuery::default()
        };
        // By type, the newest positions of every driver would be walked to find this one's.
        let by_subject = plan(&query);
        assert!(
            by_subject.contains("SEARCH s USING PRIMARY KEY (subject=? AND seq>?)"),
            "{by_subject}"
        );
        let by_type = plan(&EventQuery {
            event_type: Some("case.opened".into()),
            after_seq: Some(10),
            limit: 20,
            ..EventQuery::default()
        });
        assert!(
            by_type.contains("SEARCH t USING PRIMARY KEY (type=? AND seq>?)"),
            "{by_type}"
        );
        // Positions, not in the index by type, are found in the log in its order.
        let positions = plan(&EventQuery {
            event_type: Some("courier.position".into()),
            after_seq: Some(10),
            limit: 20,
            ..EventQuery::default()
        });
        assert_eq!(positions, "SEARCH e USING INTEGER PRIMARY KEY (rowid>?)");
        // Each read in the index's order, a page at a time, and the log's newer
        // events from the checkpoint on: merged, nothing sorted.
        for plan in [by_subject, by_type] {
            assert!(!plan.contains("TEMP B-TREE"), "{plan}");
            assert!(plan.contains("SEARCH e USING INTEGER PRIMARY KEY (rowid=?)"), "{plan}");
            assert!(plan.contains("SEARCH e USING INTEGER PRIMARY KEY (rowid>?)"), "{plan}");
        }
    }

    #[test]
    fn a_listing_by_customer_walks_their_copies_in_order() {
        let query = EventQuery {
            customer: Some("cus_1".into()),
            newest_first: true,
            limit: 20,
            ..EventQuery::default()
        };
        let (conn, _stories) = tables();
        conn.execute_batch("INSERT INTO customers (cid) VALUES (1)").unwrap();
        let (sql, args) = events_sql(&conn, &query).unwrap().unwrap();
        let plan = explain(&conn, &sql, args);
        // A page of their events reads that page of the log, not all of theirs, sorted.
        assert!(plan.contains("SEARCH c USING PRIMARY KEY (cid=? AND seq>?)"), "{plan}");
        assert!(plan.contains("SEARCH n USING INTEGER PRIMARY KEY (rowid>?)"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[test]
    fn a_customers_events_are_their_copies_then_the_newer_events_each_once() {
        let (conn, _stories) = tables();
        // Customer 1 is in events 1, 3, 5 and 6, customer 2 in 2 and 4; the stories'
        // thread has copied them through 4.
        for (seq, cid) in [(1, 1), (2, 2), (3, 1), (4, 2), (5, 1), (6, 1)] {
            conn.execute("INSERT INTO event_customers (seq, cid) VALUES (?1, ?2)", [seq, cid])
                .unwrap();
            if seq <= 4 {
                conn.execute(
                    "INSERT INTO stories.customer_events (cid, seq, body) VALUES (?1, ?2, '{}')",
                    [cid, seq],
                )
                .unwrap();
            }
        }
        conn.execute_batch("INSERT INTO stories.meta (key, value) VALUES ('stories_through', 4)")
            .unwrap();
        let seqs = |cids: &[i64]| -> Vec<i64> {
            let cids: Vec<CustomerId> = cids.iter().map(|&c| CustomerId(c)).collect();
            let (theirs, args) = customers_events(&cids);
            let mut stmt = conn
                .prepare(&format!("SELECT seq FROM {theirs} c ORDER BY seq"))
                .unwrap();
            let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| r.get(0)).unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        assert_eq!(seqs(&[1]), [1, 3, 5, 6]);
        assert_eq!(seqs(&[2]), [2, 4]);
        assert_eq!(seqs(&[1, 2]), [1, 2, 3, 4, 5, 6]);
        assert_eq!(seqs(&[3]), Vec::<i64>::new());

        // Each part by its key: the copies by customer, the identities' answer from
        // the checkpoint on.
        let (theirs, args) = customers_events(&[CustomerId(1)]);
        let plan = explain(&conn, &format!("SELECT seq FROM {theirs} c"), args);
        assert!(
            plan.contains("SEARCH stories.customer_events USING PRIMARY KEY (cid=?)"),
            "{plan}"
        );
        assert!(
            plan.contains("SEARCH event_customers USING INTEGER PRIMARY KEY (rowid>?)"),
            "{plan}"
        );

        // Nothing copied yet: every event from the identities' answer.
        conn.execute_batch("DELETE FROM stories.customer_events; DELETE FROM stories.meta")
            .unwrap();
        assert_eq!(seqs(&[1]), [1, 3, 5, 6]);
    }

    #[test]
    fn cases_events_past_the_event_index_come_from_the_log() {
        let (conn, _stories) = tables();
        let event = |seq: i64, event_type: &str, cid: i64| {
            conn.execute(
                "INSERT INTO events (seq, id, type, time_us, received_us, body) VALUES (?1, ?2, ?3, 0, 0, '{}')",
                rusqlite::params![seq, format!("e-{seq}"), event_type],
            )
            .unwrap();
            conn.execute("INSERT INTO event_customers (seq, cid) VALUES (?1, ?2)", [seq, cid])
                .unwrap();
        };
        conn.execute_batch("INSERT INTO customers (cid) VALUES (1), (2)")
            .unwrap();
        event(1, "case.opened", 1);
        event(2, "page.viewed", 1);
        event(3, "case.opened", 2);
        event(4, "case.resolved", 1);
        // The index holds the first two events; the rest wait for the stories' thread.
        conn.execute_batch(
            "INSERT INTO stories.type_events (type, seq) VALUES ('case.opened', 1), ('page.viewed', 2);
             INSERT INTO stories.meta (key, value) VALUES ('stories_through', 2);",
        )
        .unwrap();
        let found: Vec<(i64, Option<String>)> = case_events(&conn, None, None)
            .unwrap()
            .into_iter()
            .map(|c| (c.seq, c.customer))
            .collect();
        assert_eq!(
            found,
            [
                (1, Some("cus_1".into())),
                (3, Some("cus_2".into())),
                (4, Some("cus_1".into()))
            ]
        );
    }
}
