//! Messages of Segment's API that troth could not read as events (the listing
//! `GET /api/v1/segment/rejected`): the sender was answered `success`, as Segment
//! answers, so this is where the operator finds what was refused and why.
//!
//! In the log's file, written by the log writer: they are not derived from the
//! log, so a rebuild of the projections must not lose them. Bounded: the newest
//! [`KEEP`] are kept, and a message refused again replaces its earlier record.

use rusqlite::{Connection, params};
use troth_core::Timestamp;

use crate::{SegmentRejected, SegmentRejection, StoreError};

/// How many refused messages are kept.
pub const KEEP: i64 = 10_000;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS segment_rejected (
    id       INTEGER PRIMARY KEY,
    key      TEXT NOT NULL UNIQUE,
    at_us    INTEGER NOT NULL,
    route    TEXT NOT NULL,
    field    TEXT NOT NULL,
    reason   TEXT NOT NULL,
    message  TEXT NOT NULL
);
";

/// Records `rejections` at `at`, then forgets all but the newest [`KEEP`].
pub fn insert(conn: &Connection, rejections: &[SegmentRejection], at: Timestamp) -> Result<(), StoreError> {
    // REPLACE takes a new id, so a message refused again lists as the newest.
    let mut insert = conn.prepare_cached(
        "INSERT OR REPLACE INTO segment_rejected (key, at_us, route, field, reason, message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for r in rejections {
        insert.execute(params![r.key, at.micros(), r.route, r.field, r.reason, r.message])?;
    }
    conn.prepare_cached(
        "DELETE FROM segment_rejected
         WHERE id < (SELECT id FROM segment_rejected ORDER BY id DESC LIMIT 1 OFFSET ?1)",
    )?
    .execute([KEEP - 1])?;
    Ok(())
}

/// The newest `limit` refused messages, newest first.
pub fn list(conn: &Connection, limit: usize) -> Result<Vec<SegmentRejected>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT at_us, route, field, reason, message FROM segment_rejected ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
        let message: String = r.get(4)?;
        Ok(SegmentRejected {
            at: Timestamp(r.get(0)?).to_string(),
            route: r.get(1)?,
            field: r.get(2)?,
            reason: r.get(3)?,
            message: serde_json::from_str(&message).unwrap_or(serde_json::Value::String(message)),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(key: &str, reason: &str) -> SegmentRejection {
        SegmentRejection {
            route: "/v1/batch".into(),
            key: key.into(),
            field: "batch[0].event".into(),
            reason: reason.into(),
            message: format!(r#"{{"messageId":"{key}"}}"#),
        }
    }

    #[test]
    fn the_newest_are_kept_and_a_message_refused_again_is_listed_once() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let many: Vec<SegmentRejection> = (0..KEEP + 5).map(|i| rejection(&format!("m{i}"), "first")).collect();
        insert(&conn, &many, Timestamp(1)).unwrap();
        insert(
            &conn,
            &[rejection("m7", "again"), rejection("m3", "again")],
            Timestamp(2),
        )
        .unwrap();
        let count: i64 = conn
            .query_row("SELECT count(*) FROM segment_rejected", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, KEEP);
        let listed = list(&conn, 3).unwrap();
        let keys: Vec<&str> = listed
            .iter()
            .map(|r| r.message["messageId"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["m3", "m7", &format!("m{}", KEEP + 4)]);
        assert_eq!(listed[0].reason, "again");
        // The oldest went; m7, refused again, stayed.
        let oldest: Vec<String> = conn
            .prepare("SELECT key FROM segment_rejected ORDER BY id LIMIT 2")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(oldest, ["m6", "m8"]);
    }
}
