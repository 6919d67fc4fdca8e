//! The durable path: the one thread that writes the log (`troth.db`).
//!
//! An append here is only the append: the idempotency check (the `id` is unique),
//! the next position, the insert, and the group commit's fsync. Requests queue on
//! a channel; the thread takes everything waiting (up to a limit), inserts it in one
//! transaction and commits once, so concurrent requests share the fsync. Replies go
//! out only after the commit, so an acknowledged event is on disk. Everything
//! derived from the log follows it in the projections thread (`projections.rs`),
//! which this thread wakes after each commit.
//!
//! API keys and drivers' devices live in this file too: they are not derived from
//! the log, and their in-memory mirrors change only after their commit.
//!
//! The WAL is kept small. SQLite copies committed pages from the WAL into the file
//! as the WAL grows (its automatic checkpoint), but it starts writing the WAL from
//! its beginning again only when every page in it is copied and no reader still
//! reads from it; otherwise it appends, and under a steady load of readers the WAL
//! grows without end. SQLite's copy runs once per limit rather than every 1,000
//! pages (the index of ids is rewritten by every commit, and each copy writes its
//! pages again). Once the WAL has grown past [`WAL_LIMIT_BYTES`], this thread
//! checkpoints with `RESTART`, waiting a little ([`WAL_WAIT`]) for the readers in
//! the WAL to finish, so the next commit writes from the beginning again, and the
//! file is cut back to the limit (`journal_size_limit`). The readers keep their
//! snapshots short for this: no projection transaction reads the log, and the
//! read-ahead reads it in small pieces.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot, watch};
use troth_core::{Timestamp, ValidEvent};

use crate::devices::{Device, new_device_id};
use crate::keys::{self, ApiKey, NewKey};
use crate::{AppendStatus, SegmentRejection, StoreError};

/// How many events one commit takes at most; more wait for the next.
pub const MAX_GROUP_EVENTS: usize = 32_768;

/// How large the log's WAL may grow before the log writer starts it over, in bytes
/// (unless set otherwise, see [`Positions::wal_limit`]); the file is cut back to it.
pub const WAL_LIMIT_BYTES: u64 = 64 << 20;

/// How long the log writer waits at most for readers to leave the WAL when starting
/// it over; appends wait meanwhile. Readers that take longer are waited for again
/// once the WAL has grown by another limit.
pub const WAL_WAIT: Duration = Duration::from_millis(100);

/// How long a connection waits for a lock before it gives up, outside the above.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How far the projections may fall behind the log before new appends wait for
/// them (back-pressure, in [`super::SqliteStore`]'s append, never in this thread,
/// which the projections need for their own derived events): memory and the work
/// left after a crash stay bounded.
pub const MAX_LAG_EVENTS: i64 = 262_144;

/// How old the oldest event the projections lack may grow before new appends wait
/// for them, as [`MAX_LAG_EVENTS`] does by count: reads (a tracking page, a
/// customer's story) stay this fresh under any load. Under single-event HTTP load
/// on two cores, the projections at their lower priority fell further behind the
/// longer the load lasted (past a second after 200,000 requests); a burst they can
/// absorb within this passes without a wait.
pub const MAX_LAG_AGE: Duration = Duration::from_millis(100);

pub enum Job {
    Append {
        events: Vec<ValidEvent>,
        /// Events the projections derived: counted in flight until the log has them.
        derived: bool,
        reply: oneshot::Sender<Result<Vec<AppendStatus>, StoreError>>,
    },
    CreateKey {
        key: NewKey,
        reply: oneshot::Sender<Result<(ApiKey, String), StoreError>>,
    },
    DeleteKey {
        uid: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    CreateDevice {
        driver: String,
        reply: oneshot::Sender<Result<Device, StoreError>>,
    },
    DeleteDevice {
        driver: String,
        device_id: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// Segment messages refused (see `segment.rs`).
    SegmentRejections {
        rejections: Vec<SegmentRejection>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Reads of customers' data (see `audit.rs`).
    RecordReads {
        reads: Vec<crate::CustomerRead>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// A step of an erasure (see `erasure.rs`), run alone, outside any group.
    Erasure {
        step: super::erasure::LogStep,
        reply: oneshot::Sender<Result<super::erasure::LogDone, StoreError>>,
    },
}

impl Job {
    fn weight(&self) -> usize {
        match self {
            Job::Append { events, .. } => events.len(),
            _ => 1,
        }
    }

    fn fail(self, error: String, positions: &Positions) {
        let e = || StoreError::WriteFailed(error.clone());
        // A caller that went away no longer needs its answer.
        match self {
            Job::Append { reply, derived, .. } => {
                if derived {
                    // They stay in the projections' `derived_outbox` for the next start.
                    positions
                        .derived_in_flight
                        .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
                drop(reply.send(Err(e())))
            }
            Job::CreateKey { reply, .. } => drop(reply.send(Err(e()))),
            Job::DeleteKey { reply, .. } => drop(reply.send(Err(e()))),
            Job::CreateDevice { reply, .. } => drop(reply.send(Err(e()))),
            Job::DeleteDevice { reply, .. } => drop(reply.send(Err(e()))),
            Job::SegmentRejections { reply, .. } => drop(reply.send(Err(e()))),
            Job::RecordReads { reply, .. } => drop(reply.send(Err(e()))),
            Job::Erasure { reply, .. } => drop(reply.send(Err(e()))),
        }
    }
}

/// A position that only moves forward, readable from async code (a watch) and
/// waitable from a plain thread (a condition variable).
pub struct Mark {
    now: Mutex<i64>,
    moved: Condvar,
    watch: watch::Sender<i64>,
}

impl Mark {
    pub fn new(at: i64) -> Mark {
        Mark {
            now: Mutex::new(at),
            moved: Condvar::new(),
            watch: watch::channel(at).0,
        }
    }

    pub fn get(&self) -> i64 {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn advance(&self, to: i64) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if to > *now {
            *now = to;
            self.moved.notify_all();
            self.watch.send_replace(to);
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.watch.subscribe()
    }

    /// How many async waiters hold a subscription now.
    pub fn waiters(&self) -> usize {
        self.watch.receiver_count()
    }

    /// Blocks until `ready(position)` holds or `timeout` passes; returns the position.
    pub fn wait_blocking(&self, ready: impl Fn(i64) -> bool, timeout: Duration) -> i64 {
        let now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        let (now, _) = self
            .moved
            .wait_timeout_while(now, timeout, |now| !ready(*now))
            .unwrap_or_else(|p| p.into_inner());
        *now
    }
}

/// Events just committed to the log, handed to the projections in memory so they
/// need not read and parse them again. Bounded: when it is full, events are not
/// added, and the projections read those from the log.
#[derive(Default)]
pub struct Handoff {
    queue: Mutex<std::collections::VecDeque<(i64, Timestamp, ValidEvent)>>,
}

/// How many events the handoff holds at most.
const HANDOFF_EVENTS: usize = 65_536;

impl Handoff {
    /// Adds a commit's accepted events, under one lock for all of them (the
    /// projections take from the same queue).
    fn push(&self, events: impl IntoIterator<Item = (i64, Timestamp, ValidEvent)>) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        // Its whole room at once (untouched memory costs nothing until used): grown
        // by doubling, copying and faulting in each larger buffer was a fifth of the
        // log writer's time in an import.
        if queue.capacity() < HANDOFF_EVENTS {
            let missing = HANDOFF_EVENTS - queue.len();
            queue.reserve_exact(missing);
        }
        let room = HANDOFF_EVENTS.saturating_sub(queue.len());
        queue.extend(events.into_iter().take(room));
    }

    /// Moves up to `limit` events from `after + 1` on into `taken`, in order and
    /// without a gap; when the next event is not held, none, and answers the
    /// position of the first held one (the events before it are read from the log).
    /// `taken` is the caller's to keep: a buffer reused batch after batch does not
    /// grow, and fault in fresh memory, for each one.
    pub fn take(&self, after: i64, limit: usize, taken: &mut Vec<(i64, Timestamp, ValidEvent)>) -> Option<i64> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        while queue.front().is_some_and(|(seq, ..)| *seq <= after) {
            queue.pop_front();
        }
        let run = queue
            .iter()
            .take(limit)
            .zip(after + 1..)
            .take_while(|((seq, ..), next)| seq == next)
            .count();
        taken.extend(queue.drain(..run));
        if queue.is_empty() {
            // Starts the ring over at its first slot: while the projections keep
            // up, the queue then only ever touches the memory of its first few
            // slots, not its whole room in turn.
            queue.clear();
        }
        queue.front().map(|(seq, ..)| *seq)
    }
}

/// When each commit the projections have not yet passed was made, oldest first: the
/// age of the oldest event not projected is the age of the commit that wrote it.
/// (Under a steady load the projections are rarely level with the head, so the
/// time since they last were says nothing about how old the events they lack are.)
#[derive(Default)]
pub struct CommitTimes {
    /// (the newest position a commit wrote, when it was made).
    pending: std::collections::VecDeque<(i64, std::time::Instant)>,
}

/// How many commits [`CommitTimes`] tells apart; past them, a commit joins the
/// newest one held and its events count as old as that one's (never younger than
/// they are). Only the oldest commits give the lag.
const COMMIT_TIMES: usize = 4_096;

impl CommitTimes {
    /// A commit that wrote events up to `newest`, at `at`.
    pub fn committed(&mut self, newest: i64, at: std::time::Instant) {
        let full = self.pending.len() >= COMMIT_TIMES;
        match self.pending.back_mut() {
            Some(last) if full => last.0 = last.0.max(newest),
            _ => self.pending.push_back((newest, at)),
        }
    }

    /// The projections hold every event up to `through`.
    pub fn projected(&mut self, through: i64) {
        while self.pending.front().is_some_and(|(newest, _)| *newest <= through) {
            self.pending.pop_front();
        }
    }

    /// When the oldest event after `projected` was committed; `None` when every
    /// commit held is projected. (A commit is recorded just after its events are
    /// handed over, so the projections may pass it before it is: those are skipped.)
    pub fn oldest_after(&self, projected: i64) -> Option<std::time::Instant> {
        self.pending
            .iter()
            .find(|(newest, _)| *newest > projected)
            .map(|(_, at)| *at)
    }
}

/// The log's and the projections' positions, shared by both threads and the readers.
pub struct Positions {
    pub handoff: Handoff,
    /// The newest committed event in the log.
    pub head: Mark,
    /// Every event up to here is projected by every projector: the least of
    /// `projections` and `stories`, moved by [`Positions::passed`].
    pub projected: Mark,
    /// The projections thread's checkpoint.
    pub projections: Mark,
    /// The customers' copies' checkpoint (`stories.rs`).
    pub stories: Mark,
    /// When the commits the projections have not passed yet were made: the lag in
    /// seconds is the age of the oldest of them.
    pub commits: Mutex<CommitTimes>,
    /// Batches of derived events handed to the log writer and not yet written.
    pub derived_in_flight: std::sync::atomic::AtomicI64,
    /// How far the projections may fall behind before appends wait ([`MAX_LAG_EVENTS`] unless set).
    pub max_lag: std::sync::atomic::AtomicI64,
    /// How old, in microseconds, the oldest event they lack may grow before appends
    /// wait ([`MAX_LAG_AGE`] unless set).
    pub max_lag_age_us: std::sync::atomic::AtomicU64,
    /// Set when the projections thread has stopped; appends then stop waiting for it.
    pub projections_stopped: std::sync::atomic::AtomicBool,
    /// How large the log's WAL may grow, in bytes ([`WAL_LIMIT_BYTES`] unless set).
    pub wal_limit: std::sync::atomic::AtomicU64,
    /// What keeping the WAL small has done since the store opened.
    pub wal: Mutex<WalStats>,
    /// Who waits for events about a subject; told as the stories' thread, the last
    /// to write an event's projections, commits them.
    pub subjects: crate::SubjectWatchers,
    /// Appends that waited for the projections, and the microseconds they waited.
    pub append_waits: std::sync::atomic::AtomicU64,
    pub append_waited_us: std::sync::atomic::AtomicU64,
}

impl Positions {
    /// Moves `projected` to the least of the projectors' checkpoints, after one moved.
    pub fn passed(&self) {
        let least = self.projections.get().min(self.stories.get());
        self.projected.advance(least);
        self.commits.lock().unwrap_or_else(|p| p.into_inner()).projected(least);
    }

    /// An append waited for the projections since `started`.
    pub fn count_wait(&self, started: std::time::Instant) {
        let waited = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.append_waits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.append_waited_us
            .fetch_add(waited, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long ago the oldest event after `projected` was committed; `None` when
    /// the projections hold every commit.
    pub fn lag_age(&self, projected: i64) -> Option<Duration> {
        let commits = self.commits.lock().unwrap_or_else(|p| p.into_inner());
        commits.oldest_after(projected).map(|committed| committed.elapsed())
    }
}

pub use crate::WalStats;

/// The time a write is stored at (`received`): the system clock unless set.
pub type ClockSlot = Arc<RwLock<Option<super::Clock>>>;
/// Keys by the hash of their secret, mirrored in memory for authentication.
pub type KeyRing = Arc<RwLock<HashMap<String, ApiKey>>>;
/// Devices by identifier, mirrored in memory for OsmAnd reports.
pub type DeviceRing = Arc<RwLock<HashMap<String, Device>>>;

pub struct LogWriter {
    conn: Connection,
    positions: Arc<Positions>,
    keys: KeyRing,
    devices: DeviceRing,
    clock: ClockSlot,
    /// Wakes the projections thread after a commit that appended events.
    wake: Box<dyn Fn() + Send>,
    wal: WalBound,
}

/// The log writer's side of keeping the WAL small (see the module documentation).
struct WalBound {
    path: std::path::PathBuf,
    /// The limit `journal_size_limit` was last set to.
    limit: u64,
    /// The WAL's size past which the next start over is tried.
    try_past: u64,
}

impl LogWriter {
    pub fn new(
        conn: Connection,
        positions: Arc<Positions>,
        keys: KeyRing,
        devices: DeviceRing,
        clock: ClockSlot,
        wake: Box<dyn Fn() + Send>,
    ) -> LogWriter {
        let mut path = std::path::PathBuf::from(conn.path().unwrap_or_default());
        path.as_mut_os_string().push("-wal");
        LogWriter {
            conn,
            positions,
            keys,
            devices,
            clock,
            wake,
            wal: WalBound {
                path,
                limit: 0,
                try_past: 0,
            },
        }
    }

    pub fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        // Sets the WAL's limits before the first commit.
        self.bound_wal();
        let mut group = Vec::new();
        let mut alone = None;
        while let Some(first) = alone.take().map_or_else(|| jobs.blocking_recv(), Some) {
            if let Job::Erasure { step, reply } = first {
                let _ = reply.send(super::erasure::on_log(&self.conn, step, self.received_now()));
                continue;
            }
            let mut weight = first.weight();
            group.push(first);
            while weight < MAX_GROUP_EVENTS {
                match jobs.try_recv() {
                    // Its own transactions (and a VACUUM) cannot join the group's.
                    Ok(job @ Job::Erasure { .. }) => {
                        alone = Some(job);
                        break;
                    }
                    Ok(job) => {
                        weight += job.weight();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(&mut group);
            self.bound_wal();
        }
    }

    /// Starts the WAL over once it has grown past its limit (see the module
    /// documentation). When readers stay in it longer than [`WAL_WAIT`], it is tried
    /// again once the WAL has grown by another limit, so a reader that holds on costs
    /// appends one short wait per limit written, not one per commit.
    fn bound_wal(&mut self) {
        let limit = self.positions.wal_limit.load(std::sync::atomic::Ordering::Relaxed);
        if limit != self.wal.limit {
            // SQLite's own copy into the file (every 1,000 pages by default) comes
            // once per limit: the id index's pages, rewritten by every commit, are
            // copied once per limit rather than once per 4 MiB of WAL.
            let pages = (limit / 4096).max(1_000);
            let set = self
                .conn
                .query_row(&format!("PRAGMA journal_size_limit = {limit}"), [], |_| Ok(()))
                .and_then(|()| {
                    self.conn
                        .query_row(&format!("PRAGMA wal_autocheckpoint = {pages}"), [], |_| Ok(()))
                });
            if let Err(e) = set {
                tracing::warn!(error = %e, "the log's WAL size limit could not be set");
            }
            self.wal.limit = limit;
            self.wal.try_past = limit;
        }
        let size = std::fs::metadata(&self.wal.path).map_or(0, |m| m.len());
        let mut stats = self.positions.wal.lock().unwrap_or_else(|p| p.into_inner());
        stats.largest_bytes = stats.largest_bytes.max(size);
        if size <= self.wal.try_past {
            return;
        }
        stats.restarts_tried += 1;
        drop(stats);
        let restarted = self.restart_wal();
        let mut stats = self.positions.wal.lock().unwrap_or_else(|p| p.into_inner());
        match restarted {
            Ok(true) => self.wal.try_past = limit,
            Ok(false) => {
                stats.restarts_busy += 1;
                self.wal.try_past = size.saturating_add(limit);
                tracing::debug!(size, "the log's WAL stays in use by readers; it grows for now");
            }
            Err(e) => {
                self.wal.try_past = size.saturating_add(limit);
                tracing::warn!(error = %e, "the log's WAL could not be checkpointed");
            }
        }
    }

    /// Copies every page of the WAL into the log and waits, briefly, for the readers
    /// still in it; true when the next commit writes the WAL from its beginning.
    fn restart_wal(&self) -> rusqlite::Result<bool> {
        self.conn.busy_timeout(WAL_WAIT)?;
        let busy = self
            .conn
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(busy? == 0)
    }

    fn received_now(&self) -> Timestamp {
        match &*self.clock.read().unwrap_or_else(|p| p.into_inner()) {
            Some(clock) => clock(),
            None => Timestamp::now(),
        }
    }

    fn commit_group(&mut self, group: &mut Vec<Job>) {
        let received = self.received_now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.apply(group, received)));
        let error = match outcome {
            Ok(Ok(done)) => {
                self.publish(done, group, received);
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(payload) => super::panic_message(payload.as_ref()),
        };
        tracing::error!(%error, "writing to the log failed; nothing of the group was stored");
        for job in group.drain(..) {
            job.fail(error.clone(), &self.positions);
        }
    }

    /// Inserts every job of the group in one transaction.
    fn apply(&mut self, group: &[Job], received: Timestamp) -> Result<Vec<Done>, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let mut done = Vec::with_capacity(group.len());
        for job in group {
            done.push(match job {
                Job::Append { events, .. } => Done::Appended(insert(&tx, events, received)?),
                Job::CreateKey { key, .. } => {
                    let secret = keys::new_secret().map_err(|e| StoreError::Invalid(e.to_string()))?;
                    let uid = keys::new_uid().map_err(|e| StoreError::Invalid(e.to_string()))?;
                    let hash = keys::hash_secret(&secret);
                    let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
                    tx.execute(
                        "INSERT INTO api_keys (uid, name, scopes, hash, created_us) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![uid, key.name, scopes.join(","), hash, received.micros()],
                    )?;
                    let api_key = ApiKey {
                        uid,
                        name: key.name.clone(),
                        scopes: key.scopes.clone(),
                        created_at: received.to_string(),
                    };
                    Done::Created(hash, api_key, secret)
                }
                Job::DeleteKey { uid, .. } => {
                    let mut delete = tx.prepare_cached("DELETE FROM api_keys WHERE uid = ?1 RETURNING hash")?;
                    let hash: Option<String> = delete.query([uid])?.next()?.map(|r| r.get(0)).transpose()?;
                    Done::KeyDeleted(hash)
                }
                Job::CreateDevice { driver, .. } => {
                    let device_id = new_device_id().map_err(|e| StoreError::Invalid(e.to_string()))?;
                    tx.execute(
                        "INSERT INTO devices (device_id, driver, created_us) VALUES (?1, ?2, ?3)",
                        params![device_id, driver, received.micros()],
                    )?;
                    Done::Device(Device {
                        device_id,
                        driver: driver.clone(),
                        created_at: received.to_string(),
                    })
                }
                Job::DeleteDevice { driver, device_id, .. } => {
                    let deleted = tx.execute(
                        "DELETE FROM devices WHERE device_id = ?1 AND driver = ?2",
                        params![device_id, driver],
                    )?;
                    Done::DeviceDeleted((deleted > 0).then(|| device_id.clone()))
                }
                Job::SegmentRejections { rejections, .. } => {
                    super::segment::insert(&tx, rejections, received)?;
                    Done::Recorded
                }
                Job::RecordReads { reads, .. } => {
                    super::audit::insert(&tx, reads)?;
                    Done::Recorded
                }
                Job::Erasure { .. } => return Err(StoreError::Invalid("an erasure step cannot join a group".into())),
            });
        }
        tx.commit()?;
        Ok(done)
    }

    /// After the commit: mirrors change, the events go to the handoff, the head
    /// moves and the projections wake, and then callers hear (so a caller's next
    /// read of the head includes its events).
    fn publish(&mut self, done: Vec<Done>, group: &mut Vec<Job>, received: Timestamp) {
        let newest = done
            .iter()
            .filter_map(|d| match d {
                Done::Appended(statuses) => statuses.iter().rev().find_map(|s| match s {
                    AppendStatus::Accepted { seq } => Some(*seq),
                    _ => None,
                }),
                _ => None,
            })
            .max();
        let mut replies = Vec::with_capacity(group.len());
        let mut derived_done = 0;
        for (job, done) in group.drain(..).zip(done) {
            match (job, done) {
                (
                    Job::Append {
                        events, reply, derived, ..
                    },
                    Done::Appended(statuses),
                ) => {
                    derived_done += i64::from(derived);
                    self.positions
                        .handoff
                        .push(
                            events
                                .into_iter()
                                .zip(&statuses)
                                .filter_map(|(event, status)| match status {
                                    AppendStatus::Accepted { seq } => Some((*seq, received, event)),
                                    _ => None,
                                }),
                        );
                    replies.push((reply, statuses));
                }
                (Job::CreateKey { reply, .. }, Done::Created(hash, key, secret)) => {
                    self.keys
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(hash, key.clone());
                    let _ = reply.send(Ok((key, secret)));
                }
                (Job::DeleteKey { reply, .. }, Done::KeyDeleted(hash)) => {
                    let found = hash.is_some();
                    if let Some(hash) = hash {
                        self.keys.write().unwrap_or_else(|p| p.into_inner()).remove(&hash);
                    }
                    let _ = reply.send(Ok(found));
                }
                (Job::CreateDevice { reply, .. }, Done::Device(device)) => {
                    self.devices
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(device.device_id.clone(), device.clone());
                    let _ = reply.send(Ok(device));
                }
                (Job::DeleteDevice { reply, .. }, Done::DeviceDeleted(device_id)) => {
                    let found = device_id.is_some();
                    if let Some(device_id) = device_id {
                        self.devices
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&device_id);
                    }
                    let _ = reply.send(Ok(found));
                }
                (Job::SegmentRejections { reply, .. } | Job::RecordReads { reply, .. }, Done::Recorded) => {
                    let _ = reply.send(Ok(()));
                }
                (job, _) => job.fail(
                    "internal error: a log job got another job's answer".into(),
                    &self.positions,
                ),
            }
        }
        if let Some(newest) = newest {
            self.positions
                .commits
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .committed(newest, std::time::Instant::now());
            self.positions.head.advance(newest);
            (self.wake)();
        }
        // After the head moved: whoever waits for the projections to settle sees these.
        self.positions
            .derived_in_flight
            .fetch_sub(derived_done, std::sync::atomic::Ordering::SeqCst);
        for (reply, statuses) in replies {
            let _ = reply.send(Ok(statuses));
        }
    }
}

enum Done {
    Appended(Vec<AppendStatus>),
    Created(String, ApiKey, String),
    KeyDeleted(Option<String>),
    Device(Device),
    DeviceDeleted(Option<String>),
    /// Records kept beside the log (refused Segment messages, reads of customers).
    Recorded,
}

/// Inserts events in order; an id already in the log is a duplicate and changes nothing.
pub fn insert(conn: &Connection, events: &[ValidEvent], received: Timestamp) -> Result<Vec<AppendStatus>, StoreError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO events (id, type, time_us, received_us, subject, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
    )?;
    let mut statuses = Vec::with_capacity(events.len());
    for event in events {
        let inserted = insert.execute(params![
            event.id,
            event.event_type,
            event.time.micros(),
            received.micros(),
            event.subject,
            event.raw
        ])?;
        statuses.push(if inserted == 0 {
            AppendStatus::Duplicate
        } else {
            AppendStatus::Accepted {
                seq: conn.last_insert_rowid(),
            }
        });
    }
    Ok(statuses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(seq: i64) -> (i64, Timestamp, ValidEvent) {
        let event = troth_core::validate_event(&format!(
            r#"{{"id":"e{seq}","type":"page.viewed","time":"2026-11-23T09:00:00Z","customer":{{"id":"ann"}},"data":{{"page":"/"}}}}"#
        ))
        .unwrap();
        (seq, Timestamp::from_micros(0).unwrap(), event)
    }

    fn positions(taken: &[(i64, Timestamp, ValidEvent)]) -> Vec<i64> {
        taken.iter().map(|(seq, ..)| *seq).collect()
    }

    /// The projections take a gap-free run from just after their checkpoint, at most
    /// their batch, into a buffer they keep; what is past a gap stays for later.
    #[test]
    fn the_handoff_gives_the_run_that_follows_the_checkpoint() {
        let handoff = Handoff::default();
        handoff.push([1, 2, 3, 4, 6, 7].map(held));
        let mut taken = Vec::new();

        // Events at or before the checkpoint are dropped; the limit holds.
        assert_eq!(handoff.take(1, 2, &mut taken), Some(4));
        assert_eq!(positions(&taken), [2, 3]);

        // The run ends at the gap; the first held event after it is named.
        taken.clear();
        assert_eq!(handoff.take(3, 100, &mut taken), Some(6));
        assert_eq!(positions(&taken), [4]);

        // Position 5 is not held: nothing is taken until the log supplies it.
        taken.clear();
        assert_eq!(handoff.take(4, 100, &mut taken), Some(6));
        assert!(taken.is_empty());
        assert_eq!(handoff.take(5, 100, &mut taken), None);
        assert_eq!(positions(&taken), [6, 7]);
    }

    /// The lag's age is the age of the oldest commit not projected, however long ago
    /// the projections were last level with the head.
    #[test]
    fn the_lag_is_as_old_as_the_oldest_commit_not_projected() {
        let start = std::time::Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut commits = CommitTimes::default();
        commits.committed(10, at(0));
        commits.committed(20, at(5));
        commits.committed(30, at(9));
        assert_eq!(commits.oldest_after(0), Some(at(0)));
        // Part of a commit projected: its events are still as old as it.
        commits.projected(15);
        assert_eq!(commits.oldest_after(15), Some(at(5)));
        // Never level with the head, yet only the newest commit is waiting.
        commits.projected(20);
        commits.committed(40, at(12));
        assert_eq!(commits.oldest_after(20), Some(at(9)));
        // A commit recorded after the projections passed it counts for nothing.
        commits.projected(40);
        commits.committed(45, at(13));
        assert_eq!(commits.oldest_after(45), None);
        commits.committed(50, at(14));
        assert_eq!(commits.oldest_after(45), Some(at(14)));
    }

    /// Past the commits it tells apart, a commit joins the newest one held: its
    /// events count as older than they are, never younger, and the oldest stay exact.
    #[test]
    fn commit_times_stay_bounded() {
        let start = std::time::Instant::now();
        let mut commits = CommitTimes::default();
        for n in 1..=(COMMIT_TIMES as i64 + 100) {
            commits.committed(n, start + Duration::from_millis(n as u64));
        }
        assert_eq!(commits.pending.len(), COMMIT_TIMES);
        assert_eq!(commits.oldest_after(0), Some(start + Duration::from_millis(1)));
        let last = COMMIT_TIMES as u64;
        commits.projected(last as i64 - 1);
        assert_eq!(
            commits.oldest_after(last as i64 - 1),
            Some(start + Duration::from_millis(last))
        );
        commits.projected(COMMIT_TIMES as i64 + 100);
        assert_eq!(commits.oldest_after(COMMIT_TIMES as i64 + 100), None);
    }

    /// A full handoff keeps what it holds and adds nothing more.
    #[test]
    fn a_full_handoff_adds_nothing() {
        let handoff = Handoff::default();
        handoff.push((1..=HANDOFF_EVENTS as i64 + 3).map(held));
        let mut taken = Vec::new();
        assert_eq!(handoff.take(0, usize::MAX, &mut taken), None);
        assert_eq!(taken.len(), HANDOFF_EVENTS);
        assert_eq!(taken.last().map(|(seq, ..)| *seq), Some(HANDOFF_EVENTS as i64));
    }
}
