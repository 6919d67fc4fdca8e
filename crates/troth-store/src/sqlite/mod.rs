//! The embedded backend: SQLite files in the data directory.
//!
//! Layout of the data directory: `troth.db` (the log, + its WAL), `projections.db`
//! (everything derived from it, + its WAL), `stories.db` (the customers' copies of
//! their events and the event index, + its WAL) and `troth.lock`, held by the process that has the
//! store open so a second one fails clearly. Three threads write, each its own
//! file: the log writer (`log.rs`, the durable path), the projections
//! (`projections.rs`), which follow the log from their checkpoint, and the
//! customers' copies with the event index (`stories.rs`), which follow the projections.

mod audit;
mod checkpoint;
mod engine;
mod erasure;
mod event_index;
mod export;
mod health;
mod identities;
mod linger;
mod log;
mod notices;
mod outbox;
mod priority;
mod projections;
mod projector;
mod promises;
mod read;
mod read_ahead;
mod replay;
mod schema;
mod scorecards;
mod segment;
mod shipments;
mod stories;
mod story;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};
use troth_core::journey::JourneyMap;
use troth_core::{Timestamp, ValidEvent};

use crate::devices::{Device, normalize_device_id};
use crate::keys::{self, ApiKey, NewKey, Scope};
use crate::{
    AppendStatus, Compose, CustomerProfile, EventPage, EventQuery, OutboxEntry, OutboxPage, OutboxQuery, OutboxState,
    Overview, PromisePage, PromiseQuery, PromiseView, ReplayReport, RetryPolicy, RoadShipment, Store, StoreError,
    TrackedShipment, TrackingLink,
};
pub use log::{MAX_GROUP_EVENTS, MAX_LAG_AGE, MAX_LAG_EVENTS, WAL_LIMIT_BYTES, WalStats};

/// A source of the current time, for [`SqliteStore::set_clock`].
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;
use log::{ClockSlot, DeviceRing, KeyRing, Positions};
pub use projections::Fault;
use projections::{Aggregates, ComposerSlot, FaultSlot, Job, OutboxDone, OutboxOp};

/// The schema's DDL, for tools (the ingest benchmark) that need the same tables.
pub use schema::{PRAGMAS, READER_PRAGMAS};

pub fn events_schema() -> &'static str {
    schema::EVENTS
}

/// The projections the embedded store keeps, as `progress` names them: one thread
/// applies them all, in one transaction per batch, with one checkpoint.
const PROJECTIONS: &str = "projections";

/// Read connections kept open, and reads run at once.
const READERS: usize = 8;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    db_path: PathBuf,
    projections_path: PathBuf,
    /// The log writer's jobs (appends, keys, devices).
    log: mpsc::Sender<log::Job>,
    /// The projections thread's jobs.
    jobs: mpsc::Sender<Job>,
    positions: Arc<Positions>,
    /// The log's head when the store was opened: not ready until projected that far.
    opened_at: i64,
    times: projections::ProjectionTimes,
    readers: Mutex<Vec<Connection>>,
    /// Reads running at once, at most [`READERS`]: more would each open a
    /// connection (with its own page cache) and a blocking thread, and run no faster.
    read_slots: Arc<tokio::sync::Semaphore>,
    keys: KeyRing,
    devices: DeviceRing,
    /// The journey map followed (the latest reloaded), which replay needs to
    /// rebuild journey health.
    journey: Mutex<Option<JourneyMap>>,
    /// Aggregates committed but not yet in their tables (see [`Aggregates`]).
    pending: Arc<Mutex<Aggregates>>,
    /// Woken when a commit enqueued outbox rows.
    outbox_signal: Arc<tokio::sync::Notify>,
    composer: ComposerSlot,
    clock: ClockSlot,
    fault: FaultSlot,
    /// Dropped with the store, which stops the checkpoint thread.
    _checkpoints: std::sync::mpsc::Sender<()>,
    /// The threads that write the files, joined when the store is dropped, after
    /// the channels above have closed and before the lock below is let go: a store
    /// opened again once this one is dropped is the only one writing.
    _threads: Threads,
    _lock: File,
}

/// The store's writing threads. Each ends once the channels that feed it close
/// (the projections having caught up with the log first).
struct Threads(Vec<std::thread::JoinHandle<()>>);

impl Drop for Threads {
    fn drop(&mut self) {
        let current = std::thread::current().id();
        for thread in self.0.drain(..) {
            // Dropped by one of them (a closure it runs holding the store), it cannot wait for itself.
            if thread.thread().id() != current {
                let _ = thread.join();
            }
        }
    }
}

/// An append handed to the log writer, not yet answered
/// ([`SqliteStore::send_append_blocking`]).
pub struct AppendPending(oneshot::Receiver<Result<Vec<AppendStatus>, StoreError>>);

impl AppendPending {
    /// Blocks until the events are in the log (or refused), and says which were new.
    pub fn wait(self) -> Result<Vec<AppendStatus>, StoreError> {
        self.0.blocking_recv().map_err(|_| StoreError::WriterGone)?
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir` and starts its threads (the log writer and the projections).
    /// No promises are followed: see [`SqliteStore::open_with_journey`].
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with_journey(dir, None)
    }

    /// Opens the store and follows the promises of `journey`.
    pub fn open_with_journey(dir: &Path, journey: Option<&JourneyMap>) -> Result<SqliteStore, StoreError> {
        let io = |source| StoreError::Io {
            path: dir.display().to_string(),
            source,
        };
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::NotADirectory {
                path: dir.display().to_string(),
            });
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = lock_dir(dir)?;
        let db_path = dir.join("troth.db");
        let projections_path = dir.join("projections.db");
        let split_now = !projections_path.exists();
        let log_conn = open_connection(&db_path, false, schema::PRAGMAS)?;
        log_conn.execute_batch(schema::EVENTS)?;
        log_conn.execute_batch(schema::KEYS)?;
        log_conn.execute_batch(schema::DEVICES)?;
        log_conn.execute_batch(segment::SCHEMA)?;
        log_conn.execute_batch(audit::SCHEMA)?;
        log_conn.execute_batch(erasure::SCHEMA)?;
        let unfinished = erasure::unfinished(&log_conn)?;
        let keys = Arc::new(RwLock::new(load_keys(&log_conn)?));
        let devices = Arc::new(RwLock::new(load_devices(&log_conn)?));
        let head: i64 = log_conn.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))?;

        // The customers' copies' file first: the projections' connections attach it.
        let stories_conn = open_connection(&dir.join(stories::FILE), false, stories::PRAGMAS)?;
        stories_conn.execute_batch(stories::SCHEMA)?;
        let conn = open_projections(&projections_path, &db_path, false)?;
        event_index::drop_from_projections(&conn)?;
        let new_tables = schema::missing(&conn, &["order_stages", "promise_changes"])?;
        let rules = journey.map(|map| Arc::new(projections::JourneyRules::new(map)));
        // The projectors create their tables.
        let projectors = projector::registry(&conn, "main", rules.as_ref())?;
        conn.execute_batch(schema::META)?;
        conn.execute_batch(schema::OUTBOX)?;
        conn.execute_batch(schema::TRACKING_LINKS)?;
        conn.execute_batch(schema::QUARANTINE)?;
        conn.execute_batch(schema::DERIVED_OUTBOX)?;
        if split_now {
            schema::carry_over_from_single_file(&conn)?;
        }
        // Tables a store from before them lacks are filled as far as it projected.
        let checkpoint = projections::checkpoint(&conn)?;
        if new_tables.contains(&"order_stages") {
            shipments::fill_order_stages(&conn, checkpoint)?;
        }
        if new_tables.contains(&"promise_changes") {
            promises::fill_changes(&conn, checkpoint)?;
        }
        // A store without copies (from before them) gets them as the stories' thread catches up.
        stories::move_from_projections(&conn, checkpoint)?;
        let stories_checkpoint = stories::checkpoint(&stories_conn, "main")?;
        attach(&stories_conn, &projections_path, "projections")?;
        attach(&stories_conn, &db_path, "log")?;

        let positions = Arc::new(Positions {
            handoff: Default::default(),
            // What a store opened behind its log lacks counts as old as the opening.
            commits: Mutex::new({
                let mut commits = log::CommitTimes::default();
                commits.committed(head, std::time::Instant::now());
                commits
            }),
            derived_in_flight: Default::default(),
            max_lag: std::sync::atomic::AtomicI64::new(MAX_LAG_EVENTS),
            max_lag_age_us: std::sync::atomic::AtomicU64::new(MAX_LAG_AGE.as_micros() as u64),
            head: log::Mark::new(head),
            projected: log::Mark::new(0),
            projections: log::Mark::new(0),
            stories: log::Mark::new(stories_checkpoint),
            projections_stopped: Default::default(),
            wal_limit: std::sync::atomic::AtomicU64::new(log::WAL_LIMIT_BYTES),
            wal: Default::default(),
            subjects: Default::default(),
            append_waits: Default::default(),
            append_waited_us: Default::default(),
        });
        let pending = Arc::new(Mutex::new(Aggregates::default()));
        let outbox_signal = Arc::new(tokio::sync::Notify::new());
        let composer = ComposerSlot::default();
        let clock = ClockSlot::default();
        let fault = FaultSlot::default();
        let times = projections::ProjectionTimes::default();
        let (log_tx, log_rx) = mpsc::channel(1024);
        let (jobs_tx, jobs_rx) = mpsc::channel(1024);
        // Two batches of copies may wait for the stories' thread; a third holds the projections back.
        let (stories_tx, stories_rx) = std::sync::mpsc::sync_channel(2);
        let projections = projections::Projections::new(
            conn,
            projectors,
            rules,
            projections::Shared {
                pending: pending.clone(),
                outbox_signal: outbox_signal.clone(),
                composer: composer.clone(),
                clock: clock.clone(),
                fault: fault.clone(),
                positions: positions.clone(),
                log: log_tx.clone(),
                times: times.clone(),
                stories: stories_tx,
            },
            read_ahead::ReadAhead::start(&db_path)?,
        )?;
        // The wake does not keep the projections thread alive: it ends with the store's handles.
        let wake = jobs_tx.downgrade();
        let writer = log::LogWriter::new(
            log_conn,
            positions.clone(),
            keys.clone(),
            devices.clone(),
            clock.clone(),
            Box::new(move || {
                if let Some(jobs) = wake.upgrade() {
                    // A full queue already holds a wake-up.
                    let _ = jobs.try_send(Job::Wake);
                }
            }),
        );
        let (checkpoints, stop_checkpoints) = std::sync::mpsc::channel();
        let copied = vec![
            checkpoint::Copied {
                name: "projections.db",
                conn: open_connection(&projections_path, false, "")?,
            },
            checkpoint::Copied {
                name: stories::FILE,
                conn: open_connection(&dir.join(stories::FILE), false, "")?,
            },
        ];
        checkpoint::start(copied, stop_checkpoints).map_err(io)?;
        let mut threads = Threads(Vec::new());
        threads.0.push(
            std::thread::Builder::new()
                .name("troth-log".into())
                .spawn(move || writer.run(log_rx))
                .map_err(io)?,
        );
        threads.0.push(
            std::thread::Builder::new()
                .name("troth-projections".into())
                .spawn(move || projections.run(jobs_rx))
                .map_err(io)?,
        );
        let stories = stories::Stories::new(stories_conn, positions.clone(), times.clone())?;
        threads.0.push(
            std::thread::Builder::new()
                .name("troth-stories".into())
                .spawn(move || stories.run(stories_rx, checkpoint))
                .map_err(io)?,
        );
        let store = SqliteStore {
            inner: Arc::new(Inner {
                db_path,
                projections_path,
                log: log_tx,
                jobs: jobs_tx,
                positions,
                opened_at: head,
                times,
                readers: Mutex::new(Vec::new()),
                read_slots: Arc::new(tokio::sync::Semaphore::new(READERS)),
                keys,
                devices,
                journey: Mutex::new(journey.cloned()),
                pending,
                outbox_signal,
                composer,
                clock,
                fault,
                _checkpoints: checkpoints,
                _threads: threads,
                _lock: lock,
            }),
        };
        // Erasures troth stopped in the middle of are finished now.
        for (id, customer, uploads) in unfinished {
            store.continue_erasure(id, customer, uploads);
        }
        Ok(store)
    }

    /// Runs an erasure's steps (see `erasure.rs`) on a thread of its own, each on
    /// the thread that owns the file it writes, and records how it ended.
    fn continue_erasure(&self, id: i64, customer: String, uploads: Option<PathBuf>) {
        let store = self.clone();
        let run = move || {
            let outcome = store.erase_steps(id, &customer, uploads.as_deref());
            if let Err(e) = &outcome {
                tracing::error!(erasure = id, error = %e, "an erasure failed");
            }
            let outcome = outcome.map_err(|e| e.to_string());
            let _ = store.log_step(erasure::LogStep::Finish { erasure: id, outcome });
        };
        if let Err(e) = std::thread::Builder::new().name("troth-erasure".into()).spawn(run) {
            tracing::error!(erasure = id, error = %e, "an erasure could not start; it runs at the next start");
        }
    }

    /// The steps; answers the number of photos deleted.
    fn erase_steps(&self, id: i64, customer: &str, uploads: Option<&Path>) -> Result<u64, StoreError> {
        let plan = self
            .projections_step(projections::ErasureStep::Plan {
                erasure: id,
                customer: customer.to_owned(),
            })?
            .ok_or_else(|| StoreError::Invalid(format!("{customer} is no longer known")))?;
        // The customer's tracking links are gone: their live pages close now.
        self.inner.positions.subjects.all_changed();
        let erasure::LogDone::Rewritten(plan) = self.log_step(erasure::LogStep::Rewrite { erasure: id, plan })? else {
            return Err(StoreError::WriterGone);
        };
        // Every projection again, from the rewritten log.
        self.replay(true, &mut |_| {})?;
        self.inner.positions.subjects.all_changed();
        self.projections_step(projections::ErasureStep::Vacuum)?;
        self.log_step(erasure::LogStep::Vacuum)?;
        Ok(uploads.map_or(0, |dir| erasure::delete_uploads(dir, &plan.uploads)))
    }

    fn log_step(&self, step: erasure::LogStep) -> Result<erasure::LogDone, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .log
            .blocking_send(log::Job::Erasure { step, reply })
            .map_err(|_| StoreError::WriterGone)?;
        answer.blocking_recv().map_err(|_| StoreError::WriterGone)?
    }

    fn projections_step(&self, step: projections::ErasureStep) -> Result<Option<Box<erasure::Plan>>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .jobs
            .blocking_send(Job::Erasure { step, reply })
            .map_err(|_| StoreError::WriterGone)?;
        answer.blocking_recv().map_err(|_| StoreError::WriterGone)?
    }

    pub fn db_path(&self) -> &Path {
        &self.inner.db_path
    }

    /// Appends from a thread that is not async (bulk import). Like every append, it
    /// waits first while the projections are too far behind (back-pressure).
    pub fn append_blocking(&self, events: Vec<ValidEvent>) -> Result<Vec<AppendStatus>, StoreError> {
        self.send_append_blocking(events)?.wait()
    }

    /// Hands events to the log writer and returns at once (after the back-pressure
    /// wait): the caller can send the next batch while this one is written, so the
    /// writer never waits for it. [`AppendPending::wait`] gives the answer.
    pub fn send_append_blocking(&self, events: Vec<ValidEvent>) -> Result<AppendPending, StoreError> {
        let positions = &self.inner.positions;
        if self.too_far_behind() {
            let started = std::time::Instant::now();
            while self.too_far_behind() {
                let from = positions.projected.get();
                positions
                    .projected
                    .wait_blocking(|p| p > from, std::time::Duration::from_millis(200));
            }
            positions.count_wait(started);
        }
        let (reply, rx) = oneshot::channel();
        self.inner
            .log
            .blocking_send(log::Job::Append {
                events,
                derived: false,
                reply,
            })
            .map_err(|_| StoreError::WriterGone)?;
        Ok(AppendPending(rx))
    }

    /// The time each projection has taken since the store opened, by name, in the
    /// order they are applied to each event (one thread applies them all).
    pub fn projection_times(&self) -> Vec<(&'static str, std::time::Duration)> {
        self.inner.times.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Batches of derived events on their way to the log (see `projections::commit`).
    fn derived_in_flight(&self) -> i64 {
        self.inner
            .positions
            .derived_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn projections_stopped(&self) -> bool {
        self.inner
            .positions
            .projections_stopped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How far the projections may fall behind the log before appends wait for
    /// them ([`MAX_LAG_EVENTS`] unless set): it bounds how stale reads get and how
    /// much is left to project after a restart. Memory is bounded whatever the lag
    /// (the in-memory handoff is; the rest is read from the log). A bulk import
    /// lifts it and waits for the projections at its end; tests set a small one.
    pub fn set_max_lag(&self, events: i64) {
        self.inner
            .positions
            .max_lag
            .store(events.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// How old the oldest event the projections lack may grow before appends wait
    /// for them ([`MAX_LAG_AGE`] unless set): under a load the projections cannot
    /// follow, appends slow to their pace rather than reads growing stale.
    pub fn set_max_lag_age(&self, age: std::time::Duration) {
        let micros = u64::try_from(age.as_micros()).unwrap_or(u64::MAX);
        self.inner
            .positions
            .max_lag_age_us
            .store(micros, std::sync::atomic::Ordering::Relaxed);
    }

    /// How large the log's WAL may grow before the log writer starts it over
    /// ([`WAL_LIMIT_BYTES`] unless set; tests set a small one). See `log.rs`.
    pub fn set_wal_limit(&self, bytes: u64) {
        self.inner
            .positions
            .wal_limit
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// What keeping the log's WAL small has done since the store opened.
    pub fn wal_stats(&self) -> WalStats {
        *self.inner.positions.wal.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn max_lag(&self) -> i64 {
        self.inner.positions.max_lag.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether appends wait: the projections are further behind the log than the
    /// limit in events, or the oldest event they lack is older than the limit in time
    /// (and they have not stopped). Either clears only as the projections move.
    fn too_far_behind(&self) -> bool {
        let positions = &self.inner.positions;
        let projected = positions.projected.get();
        let lag = positions.head.get() - projected;
        if lag <= 0 || self.projections_stopped() {
            return false;
        }
        if lag > self.max_lag() {
            return true;
        }
        let max_age =
            std::time::Duration::from_micros(positions.max_lag_age_us.load(std::sync::atomic::Ordering::Relaxed));
        positions.lag_age(projected).is_some_and(|age| age > max_age)
    }

    /// Waits while the projections are too far behind the log (see [`Self::too_far_behind`]).
    async fn wait_for_room(&self) {
        // Most appends find room: only a wait subscribes (a subscriber keeps the
        // projections from lingering, see `projections.rs`).
        if !self.too_far_behind() {
            return;
        }
        let positions = &self.inner.positions;
        let started = std::time::Instant::now();
        let mut projected = positions.projected.subscribe();
        loop {
            // Seen before the check, so a move during it wakes the wait at once.
            projected.mark_unchanged();
            if !self.too_far_behind() {
                positions.count_wait(started);
                return;
            }
            // Checked again when the projections move, and now and then in case they stop.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), projected.changed()).await;
        }
    }

    /// Resolves once the projections hold every event in the log now, and every
    /// event troth derived from those. Needs a Tokio runtime with timers (it checks
    /// now and then that the projections have not stopped).
    pub async fn settle(&self) -> Result<(), StoreError> {
        let positions = &self.inner.positions;
        let mut projected = positions.projected.subscribe();
        loop {
            let head = positions.head.get();
            let caught_up = projected.wait_for(|&p| p >= head);
            match tokio::time::timeout(std::time::Duration::from_millis(200), caught_up).await {
                Ok(Ok(_)) if self.derived_in_flight() == 0 && positions.head.get() == head => return Ok(()),
                Ok(Err(_)) => return Err(StoreError::WriterGone),
                _ if self.projections_stopped() => return Err(StoreError::WriterGone),
                _ => {}
            }
        }
    }

    /// [`SqliteStore::settle`] for a thread that is not async; `progress` hears the
    /// projections' position and the log's head as they move.
    pub fn settle_blocking(&self, progress: &mut dyn FnMut(i64, i64)) -> Result<(), StoreError> {
        let positions = &self.inner.positions;
        loop {
            let head = positions.head.get();
            let projected = positions
                .projected
                .wait_blocking(|p| p >= head, std::time::Duration::from_millis(100));
            progress(projected, positions.head.get());
            if projected >= head && self.derived_in_flight() == 0 && positions.head.get() == head {
                return Ok(());
            }
            if self.projections_stopped() {
                return Err(StoreError::WriterGone);
            }
        }
    }

    /// Follows `journey` from now on instead of the map the store was opened with:
    /// its promises and plays decide what later events do, and health is counted
    /// again from the log if the map counts other events for its touchpoints.
    pub async fn reload_journey(&self, journey: &JourneyMap) -> Result<(), StoreError> {
        let rules = Box::new(projections::JourneyRules::new(journey));
        self.submit(|reply| Job::Reload { rules, reply }).await?;
        *self.inner.journey.lock().unwrap_or_else(|p| p.into_inner()) = Some(journey.clone());
        Ok(())
    }

    /// Runs the promise clock to `now` (the server calls it every second; tests call
    /// it with a fake time), after projecting every event appended before. Returns
    /// how many promises changed.
    pub async fn tick(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.submit(|reply| Job::Tick { now, only: None, reply }).await
    }

    /// Projects every event in the log, then rebuilds every projection from the log
    /// and compares it with what is stored; with `write`, replaces the stored
    /// projections with the rebuilt ones. `progress` is called with the number of
    /// events replayed so far. The projections thread does it, so nothing projects
    /// meanwhile; appends go on.
    pub fn replay(&self, write: bool, progress: &mut dyn FnMut(u64)) -> Result<ReplayReport, StoreError> {
        self.replay_projector(None, write, progress)
    }

    /// [`SqliteStore::replay`] of one projector, by name (every one with `None`).
    /// The others' tables stay as they are; the events' customers are the stored
    /// ones, unless the identities are the projector rebuilt. An unknown name is
    /// refused with the names there are.
    pub fn replay_projector(
        &self,
        only: Option<&str>,
        write: bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<ReplayReport, StoreError> {
        let only = only.map(str::to_owned);
        let journey = self
            .inner
            .journey
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(Box::new);
        let (progress_tx, progress_rx) = std::sync::mpsc::channel();
        let (reply, answer) = oneshot::channel();
        let jobs = self.inner.jobs.clone();
        // A thread of its own may block on the channels even when the caller is async.
        let waiting = std::thread::spawn(move || {
            jobs.blocking_send(Job::Replay {
                journey,
                only,
                write,
                progress: progress_tx,
                reply,
            })
            .map_err(|_| StoreError::WriterGone)?;
            answer.blocking_recv().map_err(|_| StoreError::WriterGone)?
        });
        for n in progress_rx {
            progress(n);
        }
        waiting.join().map_err(|_| StoreError::WriterGone)?
    }

    /// Renders customer messages with `composer` as their outbox rows are written,
    /// from the next commit on (see [`Compose`]). `troth serve` sets it before it
    /// takes events.
    pub fn set_composer(&self, composer: Arc<dyn Compose>) {
        *self.inner.composer.write().unwrap_or_else(|p| p.into_inner()) = Some(composer);
    }

    /// Stores later writes as received at `clock()` instead of the system clock's
    /// time. Plays answer only events stored within a day of their time
    /// ([`troth_core::play::PLAY_HORIZON_US`]), so tests of plays on events at fixed
    /// dates set a clock near them.
    pub fn set_clock(&self, clock: Clock) {
        *self.inner.clock.write().unwrap_or_else(|p| p.into_inner()) = Some(clock);
    }

    /// Calls `fault` with each event about to be projected, from the next commit on.
    /// For tests: a fault that panics stands for a bug in a projection, which must
    /// cost that one event and nothing else.
    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.inner.fault.write().unwrap_or_else(|p| p.into_inner()) = fault;
    }

    /// Notified after a commit that made outbox rows due (a dispatcher waits on it
    /// between its polls).
    pub fn outbox_signal(&self) -> Arc<tokio::sync::Notify> {
        self.inner.outbox_signal.clone()
    }

    async fn outbox_op(&self, op: OutboxOp) -> Result<OutboxDone, StoreError> {
        self.submit(|reply| Job::Outbox { op, reply }).await
    }

    async fn submit_log<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> log::Job,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .log
            .send(job(reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    async fn submit<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .jobs
            .send(job(reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Runs a read on a pooled connection, where a task may block.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        let slot = inner
            .read_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Invalid("the store is closing".into()))?;
        let run = move || {
            let _slot = slot;
            let conn = inner.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match conn {
                Some(conn) => conn,
                None => open_projections(&inner.projections_path, &inner.db_path, true)?,
            };
            let result = in_snapshot(&conn, f);
            let mut pool = inner.readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < READERS && conn.is_autocommit() {
                pool.push(conn);
            }
            result
        };
        // A read is short: on a runtime with several workers it runs on this one, which
        // hands its other tasks to another meanwhile. Sent to the blocking pool, it
        // would wait for a thread there to wake, and the answer for this one to wake
        // again: half of a customer's story on a busy machine. A runtime with one
        // thread cannot lend it, and tests run on those.
        if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            // A read that panics fails alone, as it did on the pool, not the task that asked.
            return tokio::task::block_in_place(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)))
                .unwrap_or_else(|payload| {
                    Err(StoreError::Invalid(format!(
                        "read task failed: {}",
                        panic_message(payload.as_ref())
                    )))
                });
        }
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| StoreError::Invalid(format!("read task failed: {e}")))?
    }
}

/// Runs all of a read's statements in one read transaction. They see one snapshot
/// of the files (a story's parts agree with each other); and SQLite checks once, not
/// per statement, whether a commit came in since this connection's last read, which
/// under a steady stream of commits means dropping its cached pages and its mapping
/// of the files each time. BEGIN and COMMIT are cached statements: parsed again for
/// each read, they cost a few per cent of a customer's story.
fn in_snapshot<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
    conn.prepare_cached("BEGIN")?.execute([])?;
    let result = f(conn);
    // A read changes nothing: ending it only releases its snapshot. (Should both
    // fail, the caller drops the connection rather than pool it mid-transaction.)
    if conn
        .prepare_cached("COMMIT")
        .and_then(|mut end| end.execute([]))
        .is_err()
    {
        conn.execute_batch("ROLLBACK")?;
    }
    result
}

impl Store for SqliteStore {
    async fn append(&self, events: Vec<ValidEvent>) -> Result<Vec<AppendStatus>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.wait_for_room().await;
        self.submit_log(|reply| log::Job::Append {
            events,
            derived: false,
            reply,
        })
        .await
    }

    async fn events(&self, query: EventQuery) -> Result<EventPage, StoreError> {
        self.read(move |conn| read::events(conn, &query)).await
    }

    async fn case_events(
        &self,
        from_us: Option<i64>,
        customer: Option<String>,
    ) -> Result<Vec<crate::CaseEvent>, StoreError> {
        self.read(move |conn| read::case_events(conn, from_us, customer.as_deref()))
            .await
    }

    async fn order_events(&self, orders: Vec<String>) -> Result<Vec<crate::OrderEvent>, StoreError> {
        self.read(move |conn| read::order_events(conn, &orders)).await
    }

    async fn promises(&self, query: PromiseQuery) -> Result<PromisePage, StoreError> {
        self.read(move |conn| read::promises(conn, &query)).await
    }

    async fn promise_counts(&self, query: PromiseQuery) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(move |conn| read::promise_counts(conn, &query)).await
    }

    async fn unresolved_breaches(&self, keys: Vec<String>, limit: usize) -> Result<Vec<PromiseView>, StoreError> {
        self.read(move |conn| read::unresolved_breaches(conn, &keys, limit))
            .await
    }

    async fn on_the_road(&self) -> Result<Vec<RoadShipment>, StoreError> {
        self.read(read::on_the_road).await
    }

    async fn health(
        &self,
        from_day: Option<i64>,
        to_day: Option<i64>,
    ) -> Result<Vec<(String, troth_core::health::Tally)>, StoreError> {
        let pending = self.inner.pending.clone();
        self.read(move |conn| read::health(conn, &pending, from_day, to_day))
            .await
    }

    async fn touchpoint_visits(
        &self,
        from_day: Option<i64>,
        to_day: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<troth_core::flow::Visit>, bool), StoreError> {
        let pending = self.inner.pending.clone();
        self.read(move |conn| read::touchpoint_visits(conn, &pending, from_day, to_day, limit))
            .await
    }

    async fn entity_health(
        &self,
        from_day: Option<i64>,
        to_day: Option<i64>,
    ) -> Result<troth_core::weakest::EntityTallies, StoreError> {
        let pending = self.inner.pending.clone();
        self.read(move |conn| read::entity_health(conn, &pending, from_day, to_day))
            .await
    }

    async fn reach(&self, from_day: Option<i64>, to_day: Option<i64>) -> Result<Vec<(String, u64)>, StoreError> {
        let pending = self.inner.pending.clone();
        self.read(move |conn| read::reach(conn, &pending, from_day, to_day))
            .await
    }

    async fn survey_answers(
        &self,
        from_us: Option<i64>,
        to_us: Option<i64>,
    ) -> Result<Vec<troth_core::chasm::Answer>, StoreError> {
        self.read(move |conn| read::survey_answers(conn, from_us, to_us)).await
    }

    async fn scorecards(
        &self,
        from_day: Option<i64>,
        to_day: Option<i64>,
    ) -> Result<Vec<(String, String, troth_core::scorecard::ScoreTally)>, StoreError> {
        let pending = self.inner.pending.clone();
        self.read(move |conn| {
            // Copied out so the projections are not held up while the table is summed.
            let pending = pending.lock().unwrap_or_else(|p| p.into_inner()).scores.clone();
            scorecards::read(conn, &pending, from_day.unwrap_or(i64::MIN), to_day.unwrap_or(i64::MAX))
        })
        .await
    }

    async fn overview(&self) -> Result<Overview, StoreError> {
        let pending = self.inner.pending.clone();
        self.read(move |conn| read::overview(conn, &pending)).await
    }

    async fn customer(&self, key: String) -> Result<Option<CustomerProfile>, StoreError> {
        self.read(move |conn| read::customer(conn, &key)).await
    }

    async fn story(
        &self,
        key: String,
        events: usize,
        shipments: usize,
    ) -> Result<Option<crate::StoryRecords>, StoreError> {
        self.read(move |conn| story::story(conn, &key, events, shipments)).await
    }

    async fn search_customers(&self, text: String, limit: usize) -> Result<Vec<crate::CustomerMatch>, StoreError> {
        self.read(move |conn| read::search_customers(conn, &text, limit)).await
    }

    async fn create_key(&self, key: NewKey) -> Result<(ApiKey, String), StoreError> {
        if key.scopes.is_empty() {
            return Err(StoreError::Invalid("a key needs at least one scope".into()));
        }
        self.submit_log(|reply| log::Job::CreateKey { key, reply }).await
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let mut keys: Vec<ApiKey> = self
            .inner
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.uid.cmp(&b.uid)));
        Ok(keys)
    }

    async fn delete_key(&self, uid: String) -> Result<bool, StoreError> {
        self.submit_log(|reply| log::Job::DeleteKey { uid, reply }).await
    }

    fn authenticate(&self, secret: &str) -> Option<ApiKey> {
        let hash = keys::hash_secret(secret);
        self.inner
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
            .cloned()
    }

    fn api_key(&self, uid: &str) -> Option<ApiKey> {
        let ring = self.inner.keys.read().unwrap_or_else(|p| p.into_inner());
        ring.values().find(|key| key.uid == uid).cloned()
    }

    async fn create_device(&self, driver: String) -> Result<Device, StoreError> {
        if driver.is_empty() {
            return Err(StoreError::Invalid("a device needs a driver".into()));
        }
        self.submit_log(|reply| log::Job::CreateDevice { driver, reply }).await
    }

    async fn devices(&self, driver: String) -> Result<Vec<Device>, StoreError> {
        let ring = self.inner.devices.read().unwrap_or_else(|p| p.into_inner());
        let mut devices: Vec<Device> = ring.values().filter(|d| d.driver == driver).cloned().collect();
        devices.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.device_id.cmp(&b.device_id))
        });
        Ok(devices)
    }

    async fn delete_device(&self, driver: String, device_id: String) -> Result<bool, StoreError> {
        let device_id = normalize_device_id(&device_id);
        self.submit_log(|reply| log::Job::DeleteDevice {
            driver,
            device_id,
            reply,
        })
        .await
    }

    fn device_driver(&self, device_id: &str) -> Option<String> {
        let ring = self.inner.devices.read().unwrap_or_else(|p| p.into_inner());
        ring.get(&normalize_device_id(device_id)).map(|d| d.driver.clone())
    }

    async fn outbox(&self, query: OutboxQuery) -> Result<OutboxPage, StoreError> {
        self.read(move |conn| outbox::list(conn, &query)).await
    }

    async fn outbox_entry(&self, id: String) -> Result<Option<OutboxEntry>, StoreError> {
        self.read(move |conn| outbox::get(conn, &id)).await
    }

    async fn claim_outbox(&self, now: Timestamp, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        match self.outbox_op(OutboxOp::Claim { now, limit }).await? {
            OutboxDone::Claimed(entries) => Ok(entries),
            _ => Err(mismatched()),
        }
    }

    async fn outbox_sent(&self, id: String, now: Timestamp) -> Result<bool, StoreError> {
        match self.outbox_op(OutboxOp::Sent { id, now }).await? {
            OutboxDone::Marked(found) => Ok(found),
            _ => Err(mismatched()),
        }
    }

    async fn outbox_failed(
        &self,
        id: String,
        now: Timestamp,
        error: String,
        policy: RetryPolicy,
    ) -> Result<Option<OutboxState>, StoreError> {
        match self.outbox_op(OutboxOp::Failed { id, now, error, policy }).await? {
            OutboxDone::Failed(state) => Ok(state),
            _ => Err(mismatched()),
        }
    }

    async fn outbox_defer(
        &self,
        id: String,
        now: Timestamp,
        reason: String,
        delay_us: i64,
    ) -> Result<bool, StoreError> {
        match self
            .outbox_op(OutboxOp::Defer {
                id,
                now,
                reason,
                delay_us,
            })
            .await?
        {
            OutboxDone::Marked(found) => Ok(found),
            _ => Err(mismatched()),
        }
    }

    async fn retry_outbox(&self, id: String, now: Timestamp) -> Result<Option<OutboxEntry>, StoreError> {
        match self.outbox_op(OutboxOp::Retry { id, now }).await? {
            OutboxDone::Retried(entry) => Ok(entry.map(|e| *e)),
            _ => Err(mismatched()),
        }
    }

    async fn tracking_link(&self, shipment: String) -> Result<Option<TrackingLink>, StoreError> {
        if !self
            .submit(|reply| Job::IssueLink {
                shipment: shipment.clone(),
                reply,
            })
            .await?
        {
            return Ok(None);
        }
        self.read(move |conn| shipments::link(conn, &shipment)).await
    }

    async fn issued_link(&self, shipment: String) -> Result<Option<TrackingLink>, StoreError> {
        self.read(move |conn| shipments::link(conn, &shipment)).await
    }

    async fn tracked(&self, token: String) -> Result<Option<TrackedShipment>, StoreError> {
        self.read(move |conn| shipments::tracked(conn, &token)).await
    }

    async fn quarantine(&self, limit: usize) -> Result<Vec<crate::Quarantined>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT at_us, stage, event_id, type, reason, body FROM quarantine ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit as i64], |r| {
                let body: String = r.get(5)?;
                Ok(crate::Quarantined {
                    at: Timestamp(r.get(0)?).to_string(),
                    stage: r.get(1)?,
                    event_id: r.get(2)?,
                    event_type: r.get(3)?,
                    reason: r.get(4)?,
                    body: serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn record_segment_rejections(&self, rejections: Vec<crate::SegmentRejection>) -> Result<(), StoreError> {
        if rejections.is_empty() {
            return Ok(());
        }
        self.submit_log(|reply| log::Job::SegmentRejections { rejections, reply })
            .await
    }

    async fn segment_rejections(&self, limit: usize) -> Result<Vec<crate::SegmentRejected>, StoreError> {
        self.read(move |conn| segment::list(conn, limit)).await
    }

    async fn record_reads(&self, reads: Vec<crate::CustomerRead>) -> Result<(), StoreError> {
        if reads.is_empty() {
            return Ok(());
        }
        self.submit_log(|reply| log::Job::RecordReads { reads, reply }).await
    }

    async fn customer_reads(&self, query: crate::ReadQuery) -> Result<Vec<crate::CustomerRead>, StoreError> {
        self.read(move |conn| audit::list(conn, &query)).await
    }

    async fn export_customer(&self, key: String) -> Result<Option<crate::CustomerExport>, StoreError> {
        self.read(move |conn| export::export(conn, &key)).await
    }

    async fn erase_customer(
        &self,
        key: String,
        by: String,
        uploads: Option<PathBuf>,
    ) -> Result<Option<crate::Erasure>, StoreError> {
        let Some(customer) = self.read(move |conn| read::find_customer(conn, &key)).await? else {
            return Ok(None);
        };
        let customer = customer.to_string();
        let step = erasure::LogStep::Begin {
            customer: customer.clone(),
            by,
            uploads_dir: uploads.clone(),
        };
        let erasure::LogDone::Begun(begun) = self.submit_log(|reply| log::Job::Erasure { step, reply }).await? else {
            return Err(StoreError::WriterGone);
        };
        let id = erasure::parse_id(&begun.id).ok_or(StoreError::WriterGone)?;
        self.continue_erasure(id, customer, uploads);
        Ok(Some(begun))
    }

    async fn erasure(&self, id: String) -> Result<Option<crate::Erasure>, StoreError> {
        let Some(id) = erasure::parse_id(&id) else {
            return Ok(None);
        };
        self.read(move |conn| erasure::get(conn, id)).await
    }

    fn log_wal(&self) -> Option<crate::WalStats> {
        Some(self.wal_stats())
    }

    fn append_waits(&self) -> Option<crate::AppendWaits> {
        let positions = &self.inner.positions;
        Some(crate::AppendWaits {
            waits: positions.append_waits.load(std::sync::atomic::Ordering::Relaxed),
            seconds: positions.append_waited_us.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6,
        })
    }

    fn progress(&self) -> crate::Progress {
        let positions = &self.inner.positions;
        // The projected positions first: read the other way, they could pass the head.
        let at = [
            (PROJECTIONS, positions.projections.get()),
            // The event index is written with the copies, under their checkpoint.
            (story::Copies::NAME, positions.stories.get()),
        ];
        let head = positions.head.get();
        let projectors = at
            .into_iter()
            .map(|(name, position)| {
                let lag_events = (head - position).max(0);
                let lag_seconds = match positions.lag_age(position) {
                    Some(age) if lag_events > 0 => age.as_secs_f64(),
                    _ => 0.0,
                };
                crate::ProjectorProgress {
                    name,
                    position,
                    lag_events,
                    lag_seconds,
                }
            })
            .collect();
        crate::Progress { log: head, projectors }
    }

    async fn wait_projected(&self, position: i64, timeout: std::time::Duration) -> Result<(), crate::Progress> {
        let mut projected = self.inner.positions.projected.subscribe();
        match tokio::time::timeout(timeout, projected.wait_for(|&p| p >= position)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(self.progress()),
        }
    }

    fn watch_subject(&self, subject: &str) -> tokio::sync::watch::Receiver<i64> {
        self.inner.positions.subjects.watch(subject)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        if self.inner.log.is_closed() || self.inner.jobs.is_closed() || self.projections_stopped() {
            return Err(StoreError::WriterGone);
        }
        // After a stop the projections first catch up with the log as it was.
        let projected = self.inner.positions.projected.get();
        if projected < self.inner.opened_at {
            return Err(StoreError::CatchingUp {
                projected,
                head: self.inner.opened_at,
            });
        }
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }
}

fn mismatched() -> StoreError {
    StoreError::WriteFailed("internal error: an outbox job got another job's answer".into())
}

/// A connection to the projections with the log attached as `log`: queries name
/// projection tables and `events` alike (the log's tables resolve by name).
/// A connection to `projections.db`, with the log attached as `log` and the
/// customers' copies (`stories.db`, beside it) as `stories`.
fn open_projections(path: &Path, log_path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let conn = open_connection(path, read_only, schema::PROJECTION_PRAGMAS)?;
    attach(&conn, log_path, "log")?;
    attach(&conn, &path.with_file_name(stories::FILE), "stories")?;
    if read_only {
        conn.execute_batch(schema::READER_STORIES_PRAGMAS)?;
    }
    conn.execute_batch(if read_only {
        schema::READER_PRAGMAS
    } else {
        "PRAGMA log.cache_size = -65536; PRAGMA stories.cache_size = -16384;"
    })?;
    Ok(conn)
}

/// Attaches the file at `path` as `schema`.
fn attach(conn: &Connection, path: &Path, schema: &str) -> Result<(), StoreError> {
    let name = path.to_str().ok_or_else(|| StoreError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other("the path is not valid UTF-8"),
    })?;
    conn.execute(&format!("ATTACH DATABASE ?1 AS {schema}"), [name])?;
    Ok(())
}

/// A connection to one file; a writing one gets `pragmas` (the log's or the projections').
/// Through the VFS that writes WAL frames in large pieces (`troth_sqlite_io::wal`);
/// the files are SQLite's as ever, and any SQLite can open them.
fn open_connection(path: &Path, read_only: bool, pragmas: &str) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = match troth_sqlite_io::wal::register() {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs)?,
        None => Connection::open_with_flags(path, flags)?,
    };
    conn.busy_timeout(log::BUSY_TIMEOUT)?;
    if !read_only {
        conn.execute_batch(pragmas)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Takes the data directory's lock, or says who holds it.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("troth.lock");
    let io = |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            write!(file, "{}", std::process::id()).map_err(io)?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let holder = if pid.trim().is_empty() {
                String::new()
            } else {
                format!(" (pid {})", pid.trim())
            };
            Err(StoreError::Locked {
                path: dir.display().to_string(),
                holder,
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

fn load_keys(conn: &Connection) -> Result<HashMap<String, ApiKey>, StoreError> {
    let mut stmt = conn.prepare("SELECT uid, name, scopes, hash, created_us FROM api_keys")?;
    let rows = stmt.query_map([], |r| {
        let scopes: String = r.get(2)?;
        let key = ApiKey {
            uid: r.get(0)?,
            name: r.get(1)?,
            scopes: scopes.split(',').filter_map(Scope::parse).collect(),
            created_at: troth_core::Timestamp(r.get(4)?).to_string(),
        };
        Ok((r.get::<_, String>(3)?, key))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn load_devices(conn: &Connection) -> Result<HashMap<String, Device>, StoreError> {
    let mut stmt = conn.prepare("SELECT device_id, driver, created_us FROM devices")?;
    let rows = stmt.query_map([], |r| {
        let device = Device {
            device_id: r.get(0)?,
            driver: r.get(1)?,
            created_at: troth_core::Timestamp(r.get(2)?).to_string(),
        };
        Ok((device.device_id.clone(), device))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What a caught panic said, for the log and the quarantine.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    format!("panicked: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All of a read's statements see the files as they were at its first: a commit
    /// that lands between two of them is not half in the answer.
    #[test]
    fn a_read_sees_one_snapshot() {
        fn count(conn: &Connection) -> Result<i64, StoreError> {
            Ok(
                conn.query_row("SELECT count(*) FROM main.meta WHERE key = 'elsewhere'", [], |r| {
                    r.get(0)
                })?,
            )
        }
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let path = dir.path().join("projections.db");
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (before, after) = runtime
            .block_on(store.read(move |conn| {
                let before = count(conn)?;
                let writer = Connection::open(&path)?;
                writer.busy_timeout(std::time::Duration::from_secs(5))?;
                writer.execute("INSERT INTO meta (key, value) VALUES ('elsewhere', 1)", [])?;
                Ok((before, count(conn)?))
            }))
            .unwrap();
        assert_eq!((before, after), (0, 0), "the second statement saw a later commit");
        let now = runtime.block_on(store.read(count)).unwrap();
        assert_eq!(now, 1, "the next read sees it");
    }

    /// A read that panics answers an error to its caller, on a runtime where it runs
    /// in place as on one where it goes to the blocking pool, and the store reads on.
    #[test]
    fn a_read_that_panics_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        for runtime in [
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap(),
            tokio::runtime::Builder::new_current_thread().build().unwrap(),
        ] {
            runtime.block_on(async {
                let failed = store.read(|_| -> Result<(), StoreError> { panic!("a bug") }).await;
                let error = failed.unwrap_err().to_string();
                assert!(error.contains("a bug"), "{error}");
                let one: i64 = store
                    .read(|conn| Ok(conn.query_row("SELECT 1", [], |r| r.get(0))?))
                    .await
                    .unwrap();
                assert_eq!(one, 1);
            });
        }
    }
}
