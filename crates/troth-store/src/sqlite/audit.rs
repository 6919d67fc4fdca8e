//! Who read which customer's data, and when (`GET /api/v1/audit/reads`): every
//! read of a customer's profile, story or events, by an agent's key, the master key
//! or, on an open API, whoever could reach it.
//!
//! In the log's file, written by the log writer: not derived from the log, so a
//! rebuild of the projections keeps it. It names customers by troth's id, never by
//! their personal data, so an erasure leaves it as it is.

use rusqlite::{Connection, params};
use troth_core::Timestamp;

use crate::{CustomerRead, ReadQuery, StoreError};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_reads (
    id           INTEGER PRIMARY KEY,
    at_us        INTEGER NOT NULL,
    reader       TEXT NOT NULL,
    reader_name  TEXT,
    customer     TEXT NOT NULL,
    what         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_reads_by_customer ON audit_reads(customer, id);
CREATE INDEX IF NOT EXISTS audit_reads_by_reader ON audit_reads(reader, id);
";

/// Records reads, each at the time it was made.
pub fn insert(conn: &Connection, reads: &[CustomerRead]) -> Result<(), StoreError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO audit_reads (at_us, reader, reader_name, customer, what) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for read in reads {
        let at = Timestamp::parse_rfc3339(&read.at).map_or(0, Timestamp::micros);
        insert.execute(params![at, read.reader, read.reader_name, read.customer, read.what])?;
    }
    Ok(())
}

/// Reads of one customer, by one reader, or all; newest first.
pub fn list(conn: &Connection, query: &ReadQuery) -> Result<Vec<CustomerRead>, StoreError> {
    // One statement per filter, so each walks its own index.
    let mut filter = Vec::new();
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(customer) = &query.customer {
        filter.push("customer = ?");
        args.push(customer.clone().into());
    }
    if let Some(reader) = &query.reader {
        filter.push("reader = ?");
        args.push(reader.clone().into());
    }
    args.push(i64::try_from(query.limit).unwrap_or(i64::MAX).into());
    let filter = if filter.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filter.join(" AND "))
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT at_us, reader, reader_name, customer, what FROM audit_reads {filter} ORDER BY id DESC LIMIT ?"
    ))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok(CustomerRead {
            at: Timestamp(r.get(0)?).to_string(),
            reader: r.get(1)?,
            reader_name: r.get(2)?,
            customer: r.get(3)?,
            what: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
