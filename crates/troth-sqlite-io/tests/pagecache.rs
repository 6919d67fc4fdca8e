//! The layer in place (this test binary installs it before anything opens a
//! connection): commits that split pages no longer reach SQLite's cache walk, and
//! what the database holds is what was written, after commits and a rollback alike.

use rusqlite::{Connection, params};
use troth_sqlite_io::pagecache::{Outcome, counts, install};

/// A random-looking key per number, so inserts land all over the index and split
/// pages in the middle of it (the balancing that borrows a page number).
fn key(n: u64) -> String {
    let mixed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) ^ 0xD6E8_FEB8_6659_FD93;
    format!("{mixed:016x}-{n}")
}

#[test]
fn commits_that_split_pages_skip_the_walk_and_keep_every_row() {
    assert_eq!(install(), Outcome::Installed);
    assert_eq!(install(), Outcome::AlreadyInstalled);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA cache_size = -65536;
         CREATE TABLE t (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL);",
    )
    .unwrap();
    let before = counts();
    let mut written = 0u64;
    for _ in 0..200 {
        let tx = conn.unchecked_transaction().unwrap();
        for _ in 0..50 {
            tx.execute(
                "INSERT INTO t (id, body) VALUES (?1, ?2)",
                params![key(written), "x".repeat(120)],
            )
            .unwrap();
            written += 1;
        }
        tx.commit().unwrap();
    }
    let after = counts();
    // Balancing borrowed the page number past 1 GiB: without the layer, each of
    // these commits would walk SQLite's whole cache. With it, those that held
    // nothing past the end are answered here.
    assert!(after.borrowed - before.borrowed >= 100, "{before:?} → {after:?}");
    assert!(after.answered - before.answered >= 150, "{before:?} → {after:?}");

    // A rolled-back transaction that grew the file: its pages past the old end must
    // go, or a later read would find them.
    let pages_before: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    {
        let tx = conn.unchecked_transaction().unwrap();
        for n in 0..2_000u64 {
            tx.execute(
                "INSERT INTO t (id, body) VALUES (?1, ?2)",
                params![format!("gone-{n}"), "y".repeat(400)],
            )
            .unwrap();
        }
        tx.rollback().unwrap();
    }
    let pages_after: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    assert_eq!(pages_after, pages_before);
    // The same pages, written again with other rows, read back as those rows.
    {
        let tx = conn.unchecked_transaction().unwrap();
        for n in 0..2_000u64 {
            tx.execute(
                "INSERT INTO t (id, body) VALUES (?1, ?2)",
                params![format!("kept-{n}"), "z".repeat(400)],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    for reader in [&conn, &Connection::open(&path).unwrap()] {
        let ok: String = reader.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok");
        let counts: (i64, i64, i64) = reader
            .query_row(
                "SELECT count(*), sum(id LIKE 'kept-%'), sum(id LIKE 'gone-%') FROM t",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(counts, (written as i64 + 2_000, 2_000, 0));
        let found: i64 = reader
            .query_row("SELECT count(*) FROM t WHERE id = ?1", [key(written / 2)], |r| r.get(0))
            .unwrap();
        assert_eq!(found, 1);
    }
}
