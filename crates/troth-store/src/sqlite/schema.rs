//! The embedded store's tables, in two files: the log (`troth.db`: `events`, and
//! the keys and devices that are not derived from it) and the projections
//! (`projections.db`: everything derived from the log, with its checkpoint, and the
//! outbox and tracking links written with them).

/// The log: one row per event, never updated. Its only indexes are those the
/// append needs: the position, and the id that makes an append idempotent. Events
/// by subject and by type are looked up through the event index, a projection
/// (`event_index.rs`); a log from before it had them as indexes here, dropped as
/// it opens. (A store from before the split has a `customer_id` column here, no
/// longer written: `event_customers` holds it.)
pub const EVENTS: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    type         TEXT NOT NULL,
    time_us      INTEGER NOT NULL,
    received_us  INTEGER NOT NULL,
    subject      TEXT,
    body         TEXT NOT NULL
);
DROP INDEX IF EXISTS events_by_subject;
DROP INDEX IF EXISTS events_by_type;
";

/// Events stored per type, kept with each append so overviews need no scan.
pub fn type_counts(schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {schema}.event_type_counts (type TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;"
    )
}

// The projectors' tables (see `projector.rs`), each created under a schema name so
// replay can rebuild them beside the live ones.

/// The identity projector's: `event_customers` is its answer for each event, the
/// customer it was resolved to. It is read by position only; a customer's events
/// are found in their copies (`read::customers_events`), so it keeps no index by
/// customer (stores from before drop theirs).
pub fn identities(schema: &str) -> String {
    format!(
        "
CREATE TABLE IF NOT EXISTS {schema}.event_customers (
    seq  INTEGER PRIMARY KEY,
    cid  INTEGER NOT NULL
);
DROP INDEX IF EXISTS {schema}.event_customers_by_customer;
CREATE TABLE IF NOT EXISTS {schema}.customers (
    cid          INTEGER PRIMARY KEY,
    merged_into  INTEGER,
    traits       TEXT
);
CREATE INDEX IF NOT EXISTS {schema}.customers_by_survivor ON customers(merged_into) WHERE merged_into IS NOT NULL;
CREATE TABLE IF NOT EXISTS {schema}.identities (
    key  TEXT PRIMARY KEY,
    cid  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {schema}.identities_by_customer ON identities(cid);
"
    )
}

/// The promise projector's: `promise_changes` holds the id of every `promise.*`
/// event the promises hold, so the engine can tell a decision it already made
/// without reading the log.
pub fn promises(schema: &str) -> String {
    format!(
        "
CREATE TABLE IF NOT EXISTS {schema}.promises (
    id               TEXT PRIMARY KEY,
    key              TEXT NOT NULL,
    touchpoint       TEXT NOT NULL,
    subject          TEXT NOT NULL,
    customer_ref     TEXT,
    made_at_us       INTEGER NOT NULL,
    start_us         INTEGER,
    due_us           INTEGER NOT NULL,
    at_risk_from_us  INTEGER,
    state            TEXT NOT NULL,
    due_passed       INTEGER NOT NULL DEFAULT 0,
    settled_us       INTEGER,
    next_check_us    INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {schema}.promises_by_subject ON promises(subject);
CREATE INDEX IF NOT EXISTS {schema}.promises_due ON promises(next_check_us) WHERE next_check_us IS NOT NULL;
CREATE TABLE IF NOT EXISTS {schema}.promise_changes (
    id  TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {schema}.subject_links (
    subject  TEXT NOT NULL,
    linked   TEXT NOT NULL,
    PRIMARY KEY (subject, linked)
) WITHOUT ROWID;
"
    )
}

/// The consent projector's.
pub fn consents(schema: &str) -> String {
    format!(
        "
CREATE TABLE IF NOT EXISTS {schema}.consents (
    cid      INTEGER NOT NULL,
    channel  TEXT NOT NULL,
    purpose  TEXT NOT NULL,
    granted  INTEGER NOT NULL,
    time_us  INTEGER NOT NULL,
    PRIMARY KEY (cid, channel, purpose)
) WITHOUT ROWID;
"
    )
}

/// The shipment projector's: `order_stages` holds an order's stages (placed,
/// picked, packed), for the shipments created after them.
pub fn shipments(schema: &str) -> String {
    format!(
        "
CREATE TABLE IF NOT EXISTS {schema}.shipments (
    id            TEXT PRIMARY KEY,
    order_id      TEXT,
    customer_ref  TEXT,
    stage         TEXT,
    final_us      INTEGER,
    state         TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {schema}.shipments_by_order ON shipments(order_id) WHERE order_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS {schema}.order_stages (
    order_id  TEXT NOT NULL,
    event     TEXT NOT NULL,
    type      TEXT NOT NULL,
    time_us   INTEGER NOT NULL,
    PRIMARY KEY (order_id, event)
) WITHOUT ROWID;
"
    )
}

/// Which of `tables` the projections' file does not have yet.
pub fn missing<'t>(conn: &rusqlite::Connection, tables: &[&'t str]) -> rusqlite::Result<Vec<&'t str>> {
    let mut exists =
        conn.prepare("SELECT EXISTS (SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?1)")?;
    let mut missing = Vec::new();
    for table in tables {
        if !exists.query_row([table], |r| r.get::<_, bool>(0))? {
            missing.push(*table);
        }
    }
    Ok(missing)
}

/// Messages and webhooks that plays asked for (docs/notifications.md). Not a
/// projection: replay neither rebuilds nor re-sends it. `id` is the idempotency key.
pub const OUTBOX: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    id               TEXT NOT NULL UNIQUE,
    play             TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    channel          TEXT NOT NULL,
    recipient        TEXT,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_us  INTEGER,
    last_error       TEXT,
    created_us       INTEGER NOT NULL,
    sent_us          INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt_us) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox(state);
-- Customer messages about a shipment that will be sent, for the over-contact rules
-- (docs/notifications.md): who was told which template about which shipment, when
-- (event time) and, for templates whose content can repeat, what (`content`).
CREATE TABLE IF NOT EXISTS outbox_contacts (
    cid        INTEGER NOT NULL,
    shipment   TEXT NOT NULL,
    template   TEXT NOT NULL,
    time_us    INTEGER NOT NULL,
    content    TEXT,
    outbox_id  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_contacts_by ON outbox_contacts(shipment, template, cid);
";

/// Tracking links (docs/tracking.md). Not a projection: tokens are random, and a
/// rebuild must not change the links customers hold, so replay leaves this alone.
/// Looked up by `hash` (SHA-256 of the token); `token` is kept to hand the same link out again.
pub const TRACKING_LINKS: &str = "
CREATE TABLE IF NOT EXISTS tracking_links (
    shipment    TEXT PRIMARY KEY,
    token       TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE,
    created_us  INTEGER NOT NULL
);
";

/// Events the projections derived and committed (promise changes, cases, merges),
/// kept until the projections meet them in the log: a stop between the two commits
/// loses none, and a promise change found here was applied to the promises when it
/// was decided (see `projections.rs`). Stores from before kept the latter in a
/// table of their own, `derived_pending`, which always held the same promise changes.
pub const DERIVED_OUTBOX: &str = "
CREATE TABLE IF NOT EXISTS derived_outbox (id TEXT PRIMARY KEY, body TEXT NOT NULL);
DROP TABLE IF EXISTS derived_pending;
";

/// Events refused because applying them failed inside troth, kept for the operator.
pub const QUARANTINE: &str = "
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    at_us INTEGER NOT NULL,
    stage TEXT NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    reason TEXT NOT NULL,
    body TEXT NOT NULL
);";

/// Small facts about the projections: their checkpoint (`projected_through`), how
/// far the aggregates reach, the rules they were counted by.
pub const META: &str = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;";

pub const KEYS: &str = "
CREATE TABLE IF NOT EXISTS api_keys (
    uid         TEXT PRIMARY KEY,
    name        TEXT,
    scopes      TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE,
    created_us  INTEGER NOT NULL
);
";

/// Device identifiers issued to drivers (see `devices.rs`). Not a projection of the
/// log, like `api_keys`: replay leaves it alone.
pub const DEVICES: &str = "
CREATE TABLE IF NOT EXISTS devices (
    device_id   TEXT PRIMARY KEY,
    driver      TEXT NOT NULL,
    created_us  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS devices_by_driver ON devices(driver);
";

/// Settings the log's connections get. `synchronous = FULL` makes each commit fsync
/// the WAL, so an acknowledged event survives power loss, not only a crash.
///
/// The cache is 64 MiB, not more, because a commit can cost time in proportion to
/// it. When a B-tree rebalance swaps two pages, SQLite parks one at the lock
/// page's number (page 262,145 with 4 KiB pages) for a moment; at the end of that
/// transaction it then walks every cached page to drop those past the end of a
/// file smaller than 1 GiB. With a full 256 MiB cache (63,000 pages) that walk
/// took a commit of 50 events from about 1.3 ms to 2.5 ms at the median: a cost on
/// every acknowledgement of a small group, which is the HTTP path. The writer's hot
/// pages (the right edge of the log, the upper levels of its indexes) fit in far
/// less.
pub const PRAGMAS: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
PRAGMA foreign_keys = OFF;
PRAGMA temp_store = MEMORY;
PRAGMA cache_size = -65536;
";

/// Settings the read connections get, for both files (`main` and the attached
/// `log`; the customers' copies, attached as `stories`, get the same): the files are mapped into memory (their first 2 GiB, SQLite's limit; not
/// their WALs), so a read of a page the OS has cached is a memory access rather
/// than a system call and a copy; and each connection keeps 64 MiB of pages.
pub const READER_PRAGMAS: &str = "
PRAGMA main.mmap_size = 2147418112;
PRAGMA log.mmap_size = 2147418112;
PRAGMA main.cache_size = -65536;
PRAGMA log.cache_size = -65536;
";

/// [`READER_PRAGMAS`] for the customers' copies, attached as `stories`.
pub const READER_STORIES_PRAGMAS: &str = "
PRAGMA stories.mmap_size = 2147418112;
PRAGMA stories.cache_size = -65536;
";

/// Settings the projections' connections get. A power cut may undo their last
/// commits (never corrupt them): they and their checkpoint go back together, and
/// the events past it are projected again from the log. The WAL is copied into the
/// file by a thread of its own (`checkpoint.rs`), not by the commit that fills it:
/// that copy stalled a batch, and the projections' lag, for a few hundred
/// milliseconds each time; only a WAL that thread cannot keep up with (an
/// import's) is copied by the writer, at 64 MiB (see
/// [`super::checkpoint::writer_copies_at_pages!`]). A batch bigger than usual (a long
/// catch-up, a table filled at open) grows the WAL; once copied, the file is cut
/// back to 64 MiB (`journal_size_limit`) rather than keeping its largest size on
/// disk for good.
pub const PROJECTION_PRAGMAS: &str = concat!(
    "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = OFF;
PRAGMA temp_store = MEMORY;
PRAGMA cache_size = -262144;
PRAGMA wal_autocheckpoint = ",
    super::checkpoint::writer_copies_at_pages!(),
    ";
PRAGMA journal_size_limit = 67108864;
"
);

/// Opening a store from before the log and the projections had files of their own:
/// what is not derived from the log — messages already enqueued or sent, the
/// over-contact record, tracking links customers hold, the quarantine — is copied
/// into the new projections file (attached log as `log`); everything else is
/// projected again from the start of the log.
pub fn carry_over_from_single_file(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let old: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM log.sqlite_master WHERE type = 'table' AND name = 'outbox')",
        [],
        |r| r.get(0),
    )?;
    if !old {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    for (table, columns) in [
        (
            "outbox",
            "id, play, event_id, channel, recipient, payload, state, attempts, next_attempt_us, last_error, created_us, sent_us",
        ),
        (
            "outbox_contacts",
            "cid, shipment, template, time_us, content, outbox_id",
        ),
        ("tracking_links", "shipment, token, hash, created_us"),
        ("quarantine", "at_us, stage, event_id, type, reason, body"),
    ] {
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM log.sqlite_master WHERE type = 'table' AND name = ?1)",
            [table],
            |r| r.get(0),
        )?;
        if exists {
            tx.execute_batch(&format!(
                "INSERT OR IGNORE INTO main.{table} ({columns}) SELECT {columns} FROM log.{table};"
            ))?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::PROJECTION_PRAGMAS;

    #[test]
    fn the_projections_wal_is_cut_back_after_a_batch_that_outgrew_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("projections.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(PROJECTION_PRAGMAS).unwrap();
        conn.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        // One transaction of 80 MiB: more than the WAL's limit, as a long catch-up writes.
        let tx = conn.unchecked_transaction().unwrap();
        for _ in 0..80 {
            tx.execute("INSERT INTO t VALUES (zeroblob(1048576))", []).unwrap();
        }
        tx.commit().unwrap();
        let wal = dir.path().join("projections.db-wal");
        let grown = std::fs::metadata(&wal).unwrap().len();
        assert!(grown > 80 << 20, "the WAL held the batch: {grown} bytes");
        // Copied into the file (as the checkpoint thread does), the next commit
        // starts the WAL over and cuts it back.
        let copier = rusqlite::Connection::open(&path).unwrap();
        assert!(crate::sqlite::checkpoint::copy(&copier).unwrap() > 20_000);
        conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let after = std::fs::metadata(&wal).unwrap().len();
        assert!(after <= 64 << 20, "the WAL is cut back to its limit: {after} bytes");
    }
}
