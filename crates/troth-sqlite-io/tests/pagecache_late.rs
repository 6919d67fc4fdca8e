//! Installing after SQLite is in use changes nothing and says so.

#[test]
fn a_connection_opened_first_leaves_sqlites_cache_as_it_is() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    assert_eq!(
        troth_sqlite_io::pagecache::install(),
        troth_sqlite_io::pagecache::Outcome::TooLate
    );
    assert_eq!(
        troth_sqlite_io::pagecache::install(),
        troth_sqlite_io::pagecache::Outcome::TooLate
    );
    let one: i64 = conn.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
    assert_eq!(one, 1);
}
