//! The WAL VFS: SQLite's frames reach the file in few writes, and every connection
//! — through this VFS or SQLite's own — reads each commit as soon as it is made,
//! through spills, frames rewritten in place, rollbacks and the WAL started over.

use rusqlite::{Connection, OpenFlags, params};
use troth_sqlite_io::wal;

fn open(path: &std::path::Path) -> Connection {
    let vfs = wal::register().expect("the unix VFS is there to build on");
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags_and_vfs(path, flags, vfs).unwrap()
}

fn count(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap()
}

#[test]
fn other_connections_read_every_commit_at_once_and_writes_are_gathered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let writer = open(&path);
    writer
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE t (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL);",
        )
        .unwrap();
    let through_vfs = open(&path);
    let through_sqlite = Connection::open(&path).unwrap();

    let (asked_before, made_before) = wal::counts();
    let mut written = 0i64;
    for round in 0..60 {
        let tx = writer.unchecked_transaction().unwrap();
        for _ in 0..(1 + round * 7) {
            tx.execute(
                "INSERT INTO t (id, body) VALUES (?1, ?2)",
                params![
                    format!("{:x}", (written as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                    "b".repeat(300)
                ],
            )
            .unwrap();
            written += 1;
        }
        tx.commit().unwrap();
        // No sync in NORMAL: the frames are in the file because the commit's
        // publication wrote them first.
        assert_eq!(count(&through_vfs), written);
        assert_eq!(count(&through_sqlite), written);
    }
    let (asked, made) = wal::counts();
    assert!(
        (asked - asked_before) > 8 * (made - made_before),
        "{} writes asked for, {} made",
        asked - asked_before,
        made - made_before
    );
}

#[test]
fn spills_rewrites_rollbacks_and_restarts_keep_every_reader_right() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let writer = open(&path);
    // A tiny cache spills pages into the WAL in the middle of a transaction, and
    // changing them again rewrites their frames in place.
    writer
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA cache_size = 10;
             PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE t (seq INTEGER PRIMARY KEY, n INTEGER NOT NULL, body TEXT NOT NULL);",
        )
        .unwrap();
    let reader = Connection::open(&path).unwrap();
    let sum = |conn: &Connection| -> i64 {
        conn.query_row("SELECT coalesce(sum(n), 0) FROM t", [], |r| r.get(0))
            .unwrap()
    };

    let tx = writer.unchecked_transaction().unwrap();
    for n in 0..3_000 {
        tx.execute("INSERT INTO t (n, body) VALUES (?1, ?2)", params![n, "s".repeat(200)])
            .unwrap();
    }
    tx.execute("UPDATE t SET n = n + 1", []).unwrap();
    tx.commit().unwrap();
    let expected: i64 = (1..=3_000).sum();
    assert_eq!(sum(&reader), expected);

    // Rolled back after spilling: nothing of it is read.
    let tx = writer.unchecked_transaction().unwrap();
    for n in 0..3_000 {
        tx.execute("INSERT INTO t (n, body) VALUES (?1, ?2)", params![n, "r".repeat(200)])
            .unwrap();
    }
    tx.rollback().unwrap();
    assert_eq!(sum(&reader), expected);
    assert_eq!(sum(&writer), expected);

    // The WAL copied into the database and started over from its beginning.
    let busy: i64 = writer
        .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(busy, 0);
    writer.execute("UPDATE t SET n = n * 2 WHERE seq % 2 = 0", []).unwrap();
    // Each row's n is its seq (0..3,000 inserted, then one added), even ones doubled.
    let after: i64 = (1..=3_000i64).map(|seq| if seq % 2 == 0 { 2 * seq } else { seq }).sum();
    assert_eq!(sum(&reader), after);
    drop(writer);
    let again = open(&path);
    let ok: String = again.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    assert_eq!(sum(&again), after);
}

/// The WAL file's last frame, when it ends a commit (its header's size after the
/// commit is not zero): what a crash leaves on disk for recovery to find.
fn last_commit_frame(wal: &std::path::Path) -> bool {
    let bytes = std::fs::read(wal).unwrap();
    let frame = 24 + 4096;
    if bytes.len() < 32 + frame || !(bytes.len() - 32).is_multiple_of(frame) {
        return false;
    }
    let header = &bytes[bytes.len() - frame..];
    header[4..8] != [0; 4]
}

#[test]
fn a_commit_is_in_the_file_when_it_returns_with_or_without_shared_memory() {
    for exclusive in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = open(&path);
        // In exclusive locking mode the WAL index is in the process's memory: no
        // barrier or lock on shared memory comes with a commit.
        if exclusive {
            conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE;").unwrap();
        }
        conn.execute_batch(
            "PRAGMA page_size = 4096;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE t (n INTEGER);",
        )
        .unwrap();
        for n in 0..5 {
            conn.execute("INSERT INTO t (n) VALUES (?1)", [n]).unwrap();
            assert!(
                last_commit_frame(&dir.path().join("t.db-wal")),
                "exclusive {exclusive}: commit {n} is not in the WAL file"
            );
        }
    }
}
