//! A customer's data as one machine-readable archive (GDPR article 15): every
//! event they are in, as it was sent, every projection row about them, every
//! message troth sent or will send them, and who read their data.

use rusqlite::Connection;
use rusqlite::types::ValueRef;
use serde_json::{Map, Value};

use crate::{CustomerExport, StoreError};

/// Projection rows about the customer: (name, query). `?c` stands for the
/// customers' ids, `?s` for the subjects of their events, `?e` for their events' ids.
const ROWS: &[(&str, &str)] = &[
    (
        "customers",
        "SELECT cid, merged_into, traits FROM customers WHERE cid IN (?c)",
    ),
    ("identities", "SELECT key, cid FROM identities WHERE cid IN (?c)"),
    (
        "consents",
        "SELECT cid, channel, purpose, granted, time_us FROM consents WHERE cid IN (?c)",
    ),
    ("promises", "SELECT * FROM promises WHERE subject IN (?s)"),
    ("shipments", "SELECT * FROM shipments WHERE 'shipment:' || id IN (?s)"),
    (
        "shipment_scores",
        "SELECT * FROM shipment_scores WHERE 'shipment:' || shipment IN (?s)",
    ),
    ("subject_links", "SELECT * FROM subject_links WHERE subject IN (?s)"),
    // The token is a credential: the archive says a link exists, not what it is.
    (
        "tracking_links",
        "SELECT shipment, created_us FROM tracking_links WHERE 'shipment:' || shipment IN (?s)",
    ),
    ("outbox_contacts", "SELECT * FROM outbox_contacts WHERE cid IN (?c)"),
];

pub fn export(conn: &Connection, key: &str) -> Result<Option<CustomerExport>, StoreError> {
    let Some(profile) = super::read::customer(conn, key)? else {
        return Ok(None);
    };
    let customers = super::read::customer_set(conn, key)?.unwrap_or_default();
    let cids: Vec<Value> = customers.iter().map(|c| Value::from(c.0)).collect();
    let mut events = Vec::new();
    let mut subjects = Vec::new();
    let mut ids = Vec::new();
    {
        let (theirs, args) = super::read::customers_events(&customers);
        let mut stmt = conn.prepare(&format!(
            "SELECT e.id, e.subject, e.body FROM {theirs} c JOIN events e ON e.seq = c.seq ORDER BY e.seq"
        ))?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        while let Some(row) = rows.next()? {
            let (id, subject, body): (String, Option<String>, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
            events.push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
            if let Some(subject) = subject
                && !subjects.contains(&Value::String(subject.clone()))
            {
                subjects.push(Value::String(subject));
            }
            ids.push(Value::String(id));
        }
    }
    let mut projections = Map::new();
    for (name, query) in ROWS {
        projections.insert((*name).into(), Value::Array(rows(conn, query, &cids, &subjects, &ids)?));
    }
    let messages = rows(
        conn,
        "SELECT * FROM outbox WHERE event_id IN (?e)",
        &cids,
        &subjects,
        &ids,
    )?;
    let reads = rows(
        conn,
        "SELECT at_us, reader, reader_name, what FROM audit_reads WHERE customer IN (?c)",
        &[Value::String(profile.id.clone())],
        &[],
        &[],
    )?;
    Ok(Some(CustomerExport {
        customer: profile,
        events,
        projections,
        messages,
        reads,
    }))
}

/// Runs one query with its lists spliced in, each row as an object by column name.
fn rows(
    conn: &Connection,
    query: &str,
    cids: &[Value],
    subjects: &[Value],
    ids: &[Value],
) -> Result<Vec<Value>, StoreError> {
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut sql = String::new();
    let mut rest = query;
    while let Some(at) = rest.find('?') {
        sql.push_str(&rest[..at]);
        let list = match rest[at + 1..].chars().next() {
            Some('c') => cids,
            Some('s') => subjects,
            Some('e') => ids,
            _ => unreachable!("the queries above name their lists"),
        };
        if list.is_empty() {
            sql.push_str("NULL");
        } else {
            sql.push_str(&vec!["?"; list.len()].join(","));
            args.extend(list.iter().map(to_sql));
        }
        rest = &rest[at + 2..];
    }
    sql.push_str(rest);
    let mut stmt = conn.prepare(&sql)?;
    let names: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
    let mut out = Vec::new();
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    while let Some(row) = rows.next()? {
        let mut object = Map::new();
        for (i, name) in names.iter().enumerate() {
            let value = match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::from(n),
                ValueRef::Real(x) => Value::from(x),
                ValueRef::Text(t) => {
                    let text = String::from_utf8_lossy(t);
                    // Columns holding JSON (traits, payloads, facts) are shown as JSON.
                    match text
                        .starts_with(['{', '['])
                        .then(|| serde_json::from_str(&text).ok())
                        .flatten()
                    {
                        Some(json) => json,
                        None => Value::String(text.into_owned()),
                    }
                }
                ValueRef::Blob(_) => continue,
            };
            object.insert(name.clone(), value);
        }
        out.push(Value::Object(object));
    }
    Ok(out)
}

fn to_sql(value: &Value) -> rusqlite::types::Value {
    match value {
        Value::Number(n) => n
            .as_i64()
            .map_or(rusqlite::types::Value::Null, rusqlite::types::Value::Integer),
        Value::String(s) => rusqlite::types::Value::Text(s.clone()),
        _ => rusqlite::types::Value::Null,
    }
}
