//! The projections thread: it follows the log from its checkpoint and keeps every
//! projection (`projections.db`) through the projectors of the registry
//! (`projector.rs`): identities, counts by type, promises and the promise engine,
//! shipments and their links, journey health, carrier scorecards, consents, plays
//! and the outbox, the customers' copies.
//!
//! It wakes when the log writer commits, takes the events past its checkpoint (a
//! batch of up to [`BATCH_EVENTS`]), takes each through every projector in one
//! transaction and moves the checkpoint in that same transaction, so a batch applied
//! twice changes nothing.
//!
//! Events troth derives — the engine's promise changes, cases that plays open,
//! identity merges — get ids derived from their cause and are kept in
//! `derived_outbox` by the transaction that decides them; once it has committed they
//! are handed to the log writer, and they leave `derived_outbox` when the
//! projections meet them in the log. A batch run again after a crash derives the
//! same ids, which the log takes once. The engine must see its own decisions at
//! once (the next event of the batch may keep the promise just made), so a promise
//! change is applied to the promise projection when it is decided; when the log
//! brings the event itself, finding it in `derived_outbox` tells the promise
//! projection it has it, and every other projection applies it then, at its
//! position in the log — as a replay does.
//!
//! Outbox rows are written with the checkpoint, so each message is enqueued once;
//! the dispatcher claims and marks them through this thread's jobs.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};
use troth_core::{Timestamp, ValidEvent};

use super::health::HealthDays;
use super::linger::{self, Linger};
use super::log::{self, Positions};
use super::projector::{Cx, Live, Logged, Projector};
use super::read_ahead::ReadAhead;
use super::scorecards::{self, ScoreDays, StagedFacts};
use super::{outbox, promises, shipments};
use crate::{Compose, OutboxEntry, OutboxState, ReplayReport, RetryPolicy, StoreError};
use troth_core::health::HealthIndex;
use troth_core::journey::JourneyMap;
use troth_core::play::PlayBook;
use troth_core::promise::PromiseBook;

/// How many events one projection transaction takes at most.
pub const BATCH_EVENTS: i64 = 65_536;

/// How long the projections wait for more events before projecting a few
/// ([`Projections::linger`]). The HTTP benchmark's p99 fell from 7.0–8.0 ms to
/// 5.6–6.2 ms with it (fewer projection commits for the log's to share the disk
/// and the cores with), at no cost in throughput; the projections' lag stays far
/// under its bar (200 ms at p99).
const LINGER: Linger = Linger {
    longest: Duration::from_millis(5),
    events: 1_024,
};

/// Time spent in each projector since the store opened, by name, in the order of
/// the registry.
pub type ProjectionTimes = Arc<Mutex<Vec<(&'static str, Duration)>>>;

/// One event in this many is timed through its projections: enough samples for
/// each projection's share, and the clock read rarely (at one in eight it was 3 %
/// of the projections' time).
const TIME_EVERY: i64 = 64;

pub enum Job {
    /// The log moved: project what is new.
    Wake,
    /// Write the pending aggregates now.
    Flush {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Run the promise clock to this time, for every promise or only one.
    Tick {
        now: Timestamp,
        only: Option<String>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Follow another journey map from now on; health is counted again by its rules.
    Reload {
        rules: Box<JourneyRules>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Issue a shipment's tracking link unless it has one; false for an unknown shipment.
    IssueLink {
        shipment: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// Claim, mark or retry outbox rows.
    Outbox {
        op: OutboxOp,
        reply: oneshot::Sender<Result<OutboxDone, StoreError>>,
    },
    /// Catch up with the log, then rebuild every projection beside the live ones and compare.
    Replay {
        journey: Option<Box<JourneyMap>>,
        /// One projector, by name; every one when `None`.
        only: Option<String>,
        write: bool,
        progress: std::sync::mpsc::Sender<u64>,
        reply: oneshot::Sender<Result<ReplayReport, StoreError>>,
    },
    /// A step of an erasure (see `erasure.rs`): catch up and plan it, or vacuum.
    Erasure {
        step: ErasureStep,
        reply: oneshot::Sender<Result<Option<Box<super::erasure::Plan>>, StoreError>>,
    },
}

pub enum ErasureStep {
    Plan { erasure: i64, customer: String },
    Vacuum,
}

pub enum OutboxOp {
    Claim {
        now: Timestamp,
        limit: usize,
    },
    Sent {
        id: String,
        now: Timestamp,
    },
    Failed {
        id: String,
        now: Timestamp,
        error: String,
        policy: RetryPolicy,
    },
    Defer {
        id: String,
        now: Timestamp,
        reason: String,
        delay_us: i64,
    },
    Retry {
        id: String,
        now: Timestamp,
    },
}

pub enum OutboxDone {
    Claimed(Vec<OutboxEntry>),
    Marked(bool),
    Failed(Option<OutboxState>),
    Retried(Option<Box<OutboxEntry>>),
}

impl Job {
    fn reply(self, done: Result<Done, String>) {
        let failed = |message: String| StoreError::WriteFailed(message);
        // A caller that went away no longer needs its answer.
        match (self, done) {
            (Job::Tick { reply, .. }, Ok(Done::Ticked(changed))) => drop(reply.send(Ok(changed))),
            (Job::Flush { reply }, Ok(Done::Flushed)) => drop(reply.send(Ok(()))),
            (Job::Outbox { reply, .. }, Ok(Done::Outbox(done))) => drop(reply.send(Ok(done))),
            (Job::IssueLink { reply, .. }, Ok(Done::Issued(known))) => drop(reply.send(Ok(known))),
            (Job::IssueLink { reply, .. }, done) => drop(reply.send(Err(failed(mismatch(done))))),
            (Job::Outbox { reply, .. }, done) => drop(reply.send(Err(failed(mismatch(done))))),
            (Job::Flush { reply }, done) => drop(reply.send(Err(failed(mismatch(done))))),
            (Job::Tick { reply, .. }, done) => drop(reply.send(Err(failed(mismatch(done))))),
            (Job::Reload { reply, .. }, done) => drop(reply.send(Err(failed(mismatch(done))))),
            (Job::Replay { reply, .. }, done) => drop(reply.send(Err(failed(mismatch(done))))),
            (Job::Erasure { reply, .. }, done) => drop(reply.send(Err(failed(mismatch(done))))),
            (Job::Wake, _) => {}
        }
    }
}

/// The composer that renders messages as their rows are written, once one is set.
pub type ComposerSlot = Arc<RwLock<Option<Arc<dyn Compose>>>>;

/// Called with each event about to be projected; tests set one that panics to
/// stand for a bug in a projection (see [`super::SqliteStore::set_fault`]).
pub type Fault = Arc<dyn Fn(&ValidEvent) + Send + Sync>;
pub type FaultSlot = Arc<RwLock<Option<Fault>>>;

pub struct Projections {
    conn: Connection,
    /// Every projector, in the order each event goes through them (`projector.rs`).
    projectors: Vec<Box<dyn Projector>>,
    /// The journey map's promises, health and plays; without a map none is kept.
    journey: Option<Arc<JourneyRules>>,
    /// Every event up to here is projected (`meta.projected_through`).
    checkpoint: i64,
    last_flush: Instant,
    shared: Shared,
    /// Events the handoff did not hold, read from the log on another thread.
    read_ahead: ReadAhead,
    /// The events taken from the handoff for the batch at hand; empty between
    /// batches, its room kept (at most the handoff's size).
    held: Vec<(i64, Timestamp, ValidEvent)>,
}

/// What the projections thread shares with the store's handles and the log writer.
pub struct Shared {
    /// Committed aggregate changes not yet in their tables; readers add them.
    pub pending: Arc<Mutex<Aggregates>>,
    /// Woken after a commit that enqueued outbox rows, so the dispatcher need not poll fast.
    pub outbox_signal: Arc<tokio::sync::Notify>,
    pub composer: ComposerSlot,
    pub clock: log::ClockSlot,
    pub fault: FaultSlot,
    pub positions: Arc<Positions>,
    /// Where derived events are appended.
    pub log: mpsc::Sender<log::Job>,
    pub times: ProjectionTimes,
    /// Where the customers' copies go once committed (`stories.rs`).
    pub stories: std::sync::mpsc::SyncSender<super::stories::Batch>,
}

/// What the projections need of a journey map.
pub struct JourneyRules {
    pub book: PromiseBook,
    pub health: HealthIndex,
    pub plays: PlayBook,
}

impl JourneyRules {
    pub fn new(map: &JourneyMap) -> JourneyRules {
        JourneyRules {
            book: PromiseBook::new(map),
            health: HealthIndex::new(map),
            plays: PlayBook::new(map),
        }
    }
}

/// The projections' checkpoint as stored.
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = 'projected_through'", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0))
}

impl Projections {
    /// Takes the projectors of [`super::projector::registry`], made with `journey`.
    pub fn new(
        conn: Connection,
        mut projectors: Vec<Box<dyn Projector>>,
        journey: Option<Arc<JourneyRules>>,
        shared: Shared,
        read_ahead: ReadAhead,
    ) -> Result<Projections, StoreError> {
        // Their memory is read from the tables as they are now, filled and carried over.
        for projector in &mut projectors {
            projector.reset(&conn)?;
        }
        *shared.times.lock().unwrap_or_else(|p| p.into_inner()) =
            projectors.iter().map(|p| (p.name(), Duration::ZERO)).collect();
        let checkpoint = checkpoint(&conn)?;
        catch_up(&conn, journey.as_ref().map(|j| &j.health), checkpoint)?;
        if rebuild_changed_projectors(&conn, &projectors, journey.as_ref())? {
            // The rebuilt tables replaced what their memory was read from.
            for projector in &mut projectors {
                projector.reset(&conn)?;
            }
        }
        let recovered = outbox::recover(&conn)?;
        if recovered > 0 {
            tracing::info!(recovered, "outbox rows claimed before the last stop are pending again");
        }
        shared.positions.projections.advance(checkpoint);
        shared.positions.passed();
        Ok(Projections {
            conn,
            projectors,
            journey,
            checkpoint,
            last_flush: Instant::now(),
            shared,
            read_ahead,
            held: Vec::new(),
        })
    }

    pub fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        super::priority::follow_behind_the_log("projections");
        self.resend_derived();
        let mut group = Vec::new();
        let mut open = true;
        while open {
            while let Ok(job) = jobs.try_recv() {
                if !matches!(job, Job::Wake) {
                    group.push(job);
                }
            }
            if !group.is_empty() {
                // A job sees every event appended before it was handled (not those
                // appended while it waits: under a steady load it would wait forever).
                self.catch_up_to(self.shared.positions.head.get());
                self.handle(&mut group);
            } else if self.behind() {
                self.linger();
                self.project_next();
            } else {
                match jobs.blocking_recv() {
                    Some(Job::Wake) => {}
                    Some(job) => group.push(job),
                    None => open = false,
                }
            }
        }
        self.shared
            .positions
            .projections_stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sends the log what a stop left in `derived_outbox` (decided and committed
    /// here, perhaps not yet written there).
    fn resend_derived(&mut self) {
        let left: rusqlite::Result<Vec<String>> = self
            .conn
            .prepare("SELECT body FROM derived_outbox ORDER BY rowid")
            .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect());
        match left {
            Ok(bodies) if !bodies.is_empty() => {
                let events: Vec<ValidEvent> = bodies
                    .iter()
                    .filter_map(|body| troth_core::validate_event(body).ok())
                    .collect();
                tracing::info!(
                    events = events.len(),
                    "derived events left by the last stop are sent to the log again"
                );
                send_derived(&self.shared, events);
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "the derived events left by the last stop could not be read"),
        }
    }

    /// Under a trickle of appends, waits a moment for more before a batch
    /// ([`LINGER`], see `linger.rs`).
    fn linger(&self) {
        let positions = &self.shared.positions;
        let checkpoint = self.checkpoint;
        loop {
            let waiting = positions.head.get() - checkpoint;
            let age = positions.lag_age(checkpoint);
            let Some(left) = LINGER.left(waiting, age, positions.projected.waiters()) else {
                return;
            };
            positions
                .head
                .wait_blocking(|head| head - checkpoint >= LINGER.events, left.min(linger::SLICE));
        }
    }

    fn behind(&self) -> bool {
        self.shared.positions.head.get() > self.checkpoint
    }

    /// Projects until every event in the log is in the projections, derived
    /// events included.
    fn catch_up_with_log(&mut self) {
        while self.behind() {
            if !self.project_next() {
                return;
            }
        }
    }

    /// Projects until every event up to `position` is in the projections.
    fn catch_up_to(&mut self, position: i64) {
        while self.checkpoint < position {
            if !self.project_next() {
                return;
            }
        }
    }

    /// Projects the next batch; false when that failed for a reason outside the
    /// events (the disk, say), after a pause so a lasting fault does not spin.
    fn project_next(&mut self) -> bool {
        match self.batch_caught(BATCH_EVENTS) {
            Ok(Ok(())) => true,
            Ok(Err(StoreError::Invalid(reason))) | Err(reason) => {
                tracing::error!(%reason, "projecting a batch failed inside troth; its events are projected again one by one");
                self.isolate();
                true
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "projecting failed; trying again in a second");
                std::thread::sleep(Duration::from_secs(1));
                false
            }
        }
    }

    /// Projects the events of a failed batch one transaction each, so that one
    /// event whose projection fails inside troth (a panic, or an event troth derives
    /// that does not validate) costs that event's projection and nothing else: it
    /// stays in the log, is kept in the quarantine for the operator, and the
    /// checkpoint moves past it.
    fn isolate(&mut self) {
        let end = (self.checkpoint + BATCH_EVENTS).min(self.shared.positions.head.get());
        while self.checkpoint < end {
            match self.batch_caught(1) {
                Ok(Ok(())) => {}
                Ok(Err(StoreError::Invalid(reason))) | Err(reason) => {
                    let seq = self.checkpoint + 1;
                    tracing::error!(seq, %reason, "an event's projection failed inside troth; the event stays in the log and is in the quarantine");
                    if let Err(e) = self.skip(seq, &reason) {
                        tracing::error!(seq, error = %e, "the event could not be set aside");
                        return;
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "projecting failed");
                    return;
                }
            }
        }
    }

    /// Moves the checkpoint past an event whose projection fails, recording it.
    fn skip(&mut self, seq: i64, reason: &str) -> Result<(), StoreError> {
        // Read before the transaction, which then holds no snapshot of the log.
        let row: Option<(String, String, String)> = self
            .conn
            .query_row("SELECT id, type, body FROM events WHERE seq = ?1", [seq], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let (id, kind, body) = row.unwrap_or_else(|| (format!("seq {seq}"), String::new(), String::new()));
        let tx = self.conn.unchecked_transaction()?;
        record_quarantine(&tx, self.received_now(), "projection", &id, &kind, reason, &body)?;
        set_checkpoint(&tx, seq)?;
        tx.commit()?;
        // Set aside, it is still in the log, and so in the event index.
        let mut rows = super::stories::Rows::default();
        if let Ok(event) = troth_core::validate_event(&body) {
            rows.index(seq, event.subject, event.event_type);
        }
        self.moved_to(seq, rows);
        Ok(())
    }

    /// After a commit that moved the checkpoint: hands the customers' copies and the
    /// event index's entries to their thread (waiting while it has two batches to write).
    fn moved_to(&mut self, checkpoint: i64, rows: super::stories::Rows) {
        self.checkpoint = checkpoint;
        self.shared.positions.projections.advance(checkpoint);
        self.shared.positions.passed();
        let batch = super::stories::Batch {
            through: checkpoint,
            rows,
        };
        if self.shared.stories.send(batch).is_err() {
            tracing::error!("the customers' copies' thread has stopped; stories will lack the events from here");
        }
    }

    /// [`Projections::batch`] with a panic caught and turned into its message. The
    /// transaction rolled back as the panic unwound it; memory that may hold its
    /// effects is reloaded from the tables.
    fn batch_caught(&mut self, limit: i64) -> Result<Result<(), StoreError>, String> {
        match catch_unwind(AssertUnwindSafe(|| self.batch(limit))) {
            Ok(Ok(())) => Ok(Ok(())),
            Ok(Err(e)) => {
                self.reset_projectors();
                Ok(Err(e))
            }
            Err(payload) => {
                self.reset_projectors();
                Err(super::panic_message(payload.as_ref()))
            }
        }
    }

    /// After a rollback: the projectors' memory may hold rows that were not committed.
    fn reset_projectors(&mut self) {
        for projector in &mut self.projectors {
            if let Err(e) = projector.reset(&self.conn) {
                tracing::error!(projector = projector.name(), error = %e, "a projector's memory could not be reloaded");
            }
        }
    }

    fn received_now(&self) -> Timestamp {
        match &*self.shared.clock.read().unwrap_or_else(|p| p.into_inner()) {
            Some(clock) => clock(),
            None => Timestamp::now(),
        }
    }

    /// Projects up to `limit` events past the checkpoint in one transaction.
    fn batch(&mut self, limit: i64) -> Result<(), StoreError> {
        let composer = self.shared.composer.read().unwrap_or_else(|p| p.into_inner()).clone();
        let fault = self.shared.fault.read().unwrap_or_else(|p| p.into_inner()).clone();
        let tx = self.conn.unchecked_transaction()?;
        let mut cx = Cx::new(&tx, "main", Some(Live::new(composer.as_deref(), fault.as_deref())));
        let mut times = vec![0; self.projectors.len()];
        let mut through = self.checkpoint;
        // Just appended, the events are at hand; after a pause or a restart, in the
        // log, read ahead on another thread.
        let mut held = std::mem::take(&mut self.held);
        // Room for a whole batch at once: grown by doubling, each larger buffer was
        // copied and faulted in afresh (4 % of the projections' time in an import).
        if held.capacity() < limit as usize {
            held.reserve_exact(limit as usize);
        }
        let first_held = self
            .shared
            .positions
            .handoff
            .take(self.checkpoint, limit as usize, &mut held);
        if let Some(live) = &mut cx.live {
            live.handed.reserve(held.len());
        }
        if held.is_empty() {
            let before = first_held.unwrap_or(i64::MAX);
            let head = self.shared.positions.head.get();
            for (seq, received, event) in self.read_ahead.take(self.checkpoint, before, limit as usize, head)? {
                match event {
                    Ok(event) => scan(&mut cx, &mut self.projectors, &mut times, seq, received, event)?,
                    // It validated when it was appended; rules since changed. The log keeps it.
                    Err(error) => {
                        tracing::warn!(seq, %error, "a stored event no longer validates; it is not projected")
                    }
                }
                through = seq;
            }
        } else {
            for (seq, received, event) in held.drain(..) {
                scan(&mut cx, &mut self.projectors, &mut times, seq, received, event)?;
                through = seq;
            }
        }
        self.held = held;
        for (projector, nanos) in self.projectors.iter_mut().zip(&mut times) {
            let started = Instant::now();
            projector.finish(&mut cx)?;
            *nanos += started.elapsed().as_nanos() as u64;
        }
        {
            let mut total = self.shared.times.lock().unwrap_or_else(|p| p.into_inner());
            for ((_, spent), nanos) in total.iter_mut().zip(times) {
                *spent += Duration::from_nanos(nanos);
            }
        }
        let (aggregates, live) = (cx.aggregates, cx.live);
        let Live {
            derived,
            enqueued,
            handed,
            ..
        } = live.expect("the live projections react");
        set_checkpoint(&tx, through)?;
        commit(tx, &self.shared, &mut self.last_flush, aggregates, derived, enqueued)?;
        self.moved_to(through, handed);
        Ok(())
    }

    fn handle(&mut self, group: &mut Vec<Job>) {
        // Reloads and replays take the thread to themselves; the rest share a transaction.
        let mut rest = Vec::new();
        for job in group.drain(..) {
            match job {
                Job::Reload { rules, reply } => {
                    self.handle_shared(&mut rest);
                    let _ = reply.send(self.reload(*rules));
                }
                Job::Replay {
                    journey,
                    only,
                    write,
                    progress,
                    reply,
                } => {
                    self.handle_shared(&mut rest);
                    let _ = reply.send(self.replay(journey.as_deref(), only.as_deref(), write, &progress));
                }
                Job::Erasure { step, reply } => {
                    self.handle_shared(&mut rest);
                    let _ = reply.send(self.erasure(step));
                }
                job => rest.push(job),
            }
        }
        self.handle_shared(&mut rest);
    }

    fn handle_shared(&mut self, group: &mut Vec<Job>) {
        if group.is_empty() {
            return;
        }
        match catch_unwind(AssertUnwindSafe(|| self.apply_jobs(group))) {
            Ok(Ok(done)) => {
                for (job, done) in group.drain(..).zip(done) {
                    job.reply(Ok(done));
                }
            }
            Ok(Err(e)) => {
                self.reset_projectors();
                tracing::error!(error = %e, "a projection job failed; its jobs are run again one by one");
                for job in group.drain(..) {
                    self.isolate_job(job);
                }
            }
            Err(payload) => {
                self.reset_projectors();
                let reason = super::panic_message(payload.as_ref());
                tracing::error!(%reason, "a projection job failed inside troth; its jobs are run again one by one");
                for job in group.drain(..) {
                    self.isolate_job(job);
                }
            }
        }
    }

    fn isolate_job(&mut self, job: Job) {
        if let Job::Tick { now, only: None, reply } = job {
            let _ = reply.send(self.tick_isolating(now));
            return;
        }
        let one = [job];
        let done = match catch_unwind(AssertUnwindSafe(|| self.apply_jobs(&one))) {
            Ok(Ok(mut done)) => done.pop().ok_or_else(|| "internal error: no answer".to_owned()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(payload) => Err(format!("internal error: {}", super::panic_message(payload.as_ref()))),
        };
        if done.is_err() {
            self.reset_projectors();
        }
        let [job] = one;
        job.reply(done);
    }

    /// Runs the clock one due promise at a time. A promise whose change fails inside
    /// troth is taken off the clock and recorded in the quarantine, so that it
    /// cannot stop the clock of every other promise, second after second.
    fn tick_isolating(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let due = promises::due(&self.conn, now, usize::MAX >> 1)?;
        let mut changed = 0;
        for stored in due {
            let promise = stored.promise;
            let (reply, _) = oneshot::channel();
            let job = [Job::Tick {
                now,
                only: Some(promise.id.clone()),
                reply,
            }];
            let outcome = match catch_unwind(AssertUnwindSafe(|| self.apply_jobs(&job))) {
                Ok(Ok(done)) => {
                    if let Some(Done::Ticked(n)) = done.first() {
                        changed += n;
                    }
                    continue;
                }
                Ok(Err(StoreError::Invalid(reason))) => reason,
                Ok(Err(e)) => return Err(e),
                Err(payload) => super::panic_message(payload.as_ref()),
            };
            self.reset_projectors();
            tracing::error!(promise = %promise.id, reason = %outcome, "promise taken off the clock: its change failed inside troth; it is in the quarantine");
            let body = serde_json::json!({"promise": promise.id, "key": promise.key, "subject": promise.subject, "due": promise.due.to_string()});
            let recorded = promises::set_aside(&self.conn, &promise.id).and_then(|()| {
                record_quarantine(
                    &self.conn,
                    self.received_now(),
                    "clock",
                    &promise.id,
                    "promise",
                    &outcome,
                    &body.to_string(),
                )
            });
            if let Err(e) = recorded {
                tracing::error!(promise = %promise.id, error = %e, "the promise could not be set aside");
            }
        }
        Ok(changed)
    }

    /// Runs jobs other than reloads and replays in one transaction.
    fn apply_jobs(&mut self, group: &[Job]) -> Result<Vec<Done>, StoreError> {
        let received = self.received_now();
        let tx = self.conn.unchecked_transaction()?;
        let mut done = Vec::with_capacity(group.len());
        let mut aggregates = Aggregates::default();
        let mut enqueued = 0;
        let mut derived = Vec::new();
        let composer = self.shared.composer.read().unwrap_or_else(|p| p.into_inner()).clone();
        let fault = self.shared.fault.read().unwrap_or_else(|p| p.into_inner()).clone();
        for job in group {
            done.push(match job {
                Job::IssueLink { shipment, .. } => Done::Issued(shipments::issue_link(
                    &tx,
                    &mut shipments::Staged::default(),
                    shipment,
                    received,
                )?),
                Job::Outbox { op, .. } => Done::Outbox(match op {
                    OutboxOp::Claim { now, limit } => OutboxDone::Claimed(outbox::claim(&tx, *now, *limit)?),
                    OutboxOp::Sent { id, now } => OutboxDone::Marked(outbox::sent(&tx, id, *now)?),
                    OutboxOp::Failed { id, now, error, policy } => {
                        OutboxDone::Failed(outbox::failed(&tx, id, *now, error, *policy)?)
                    }
                    OutboxOp::Defer {
                        id,
                        now,
                        reason,
                        delay_us,
                    } => OutboxDone::Marked(outbox::defer(&tx, id, *now, reason, *delay_us)?),
                    OutboxOp::Retry { id, now } => {
                        let entry = outbox::retry(&tx, id, *now)?;
                        enqueued += usize::from(entry.as_ref().is_some_and(|e| e.state == OutboxState::Pending));
                        OutboxDone::Retried(entry.map(Box::new))
                    }
                }),
                Job::Flush { .. } => {
                    // Due now: the commit below writes the pending aggregates.
                    self.last_flush = Instant::now().checked_sub(FLUSH_EVERY).unwrap_or(self.last_flush);
                    Done::Flushed
                }
                Job::Tick { now, only, .. } => Done::Ticked(match &self.journey {
                    Some(journey) => {
                        let mut cx = Cx::new(&tx, "main", Some(Live::new(composer.as_deref(), fault.as_deref())));
                        let changed = super::engine::tick(&mut cx, &journey.book, *now, only.as_deref())?;
                        if let Some(live) = cx.live {
                            derived.extend(live.derived);
                            enqueued += live.enqueued;
                        }
                        aggregates.merge(cx.aggregates);
                        changed
                    }
                    None => 0,
                }),
                Job::Wake | Job::Reload { .. } | Job::Replay { .. } | Job::Erasure { .. } => Done::Flushed,
            });
        }
        commit(tx, &self.shared, &mut self.last_flush, aggregates, derived, enqueued)?;
        Ok(done)
    }

    /// Switches to other rules: writes what is pending under the old ones, then
    /// counts the health of the projected log again if the new ones count differently.
    /// Promises already made stay as the log records them; the new rules decide
    /// what events from now on make, keep or break.
    fn reload(&mut self, rules: JourneyRules) -> Result<(), StoreError> {
        self.flush()?;
        recount_health_if_rules_changed(&self.conn, &rules.health, self.checkpoint)?;
        let rules = Arc::new(rules);
        self.projectors = super::projector::registry(&self.conn, "main", Some(&rules))?;
        self.journey = Some(rules);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        let (reply, _) = oneshot::channel();
        self.apply_jobs(&[Job::Flush { reply }])?;
        Ok(())
    }

    fn replay(
        &mut self,
        journey: Option<&JourneyMap>,
        only: Option<&str>,
        write: bool,
        progress: &std::sync::mpsc::Sender<u64>,
    ) -> Result<ReplayReport, StoreError> {
        self.settle();
        self.flush()?;
        let rules = journey.map(|map| Arc::new(JourneyRules::new(map)));
        let report = super::replay::run(&self.conn, rules.as_ref(), only, write, &mut |n| {
            let _ = progress.send(n);
        });
        if write {
            self.reset_projectors();
        }
        report
    }

    fn erasure(&mut self, step: ErasureStep) -> Result<Option<Box<super::erasure::Plan>>, StoreError> {
        match step {
            ErasureStep::Plan { erasure, customer } => {
                // Planned on the log as projected: the customer's every event is known.
                self.settle();
                self.flush()?;
                Ok(super::erasure::plan(&self.conn, erasure, &customer)?.map(Box::new))
            }
            ErasureStep::Vacuum => {
                super::erasure::vacuum(&self.conn, "main")?;
                // The customers' copies held the erased text too.
                super::erasure::vacuum(&self.conn, "stories")?;
                Ok(None)
            }
        }
    }

    /// Projects every event in the log, and every event that derives, so what runs
    /// next (a rebuild, an erasure's plan) stands on the whole log.
    fn settle(&mut self) {
        loop {
            self.catch_up_with_log();
            let in_flight = self
                .shared
                .positions
                .derived_in_flight
                .load(std::sync::atomic::Ordering::SeqCst);
            if in_flight == 0 && !self.behind() {
                // And the customers' copies have what was handed to them.
                let checkpoint = self.checkpoint;
                let positions = &self.shared.positions;
                while positions
                    .stories
                    .wait_blocking(|s| s >= checkpoint, Duration::from_millis(100))
                    < checkpoint
                {
                    if positions.projections_stopped.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                }
                break;
            }
            let head = self.shared.positions.head.get();
            self.shared
                .positions
                .head
                .wait_blocking(|h| h > head, Duration::from_millis(20));
        }
    }
}

/// Commits, with the derived events in `derived_outbox`, then hands those to the
/// log writer without waiting for it: the projections go on while the log writes
/// them. Until the log holds them they stay in `derived_outbox`, which a restart
/// sends again (the log takes each id once), so none is lost between the two files.
fn commit(
    tx: rusqlite::Transaction<'_>,
    shared: &Shared,
    last_flush: &mut Instant,
    aggregates: Aggregates,
    derived: Vec<ValidEvent>,
    enqueued: usize,
) -> Result<(), StoreError> {
    if !derived.is_empty() {
        let mut keep = tx.prepare_cached("INSERT OR IGNORE INTO derived_outbox (id, body) VALUES (?1, ?2)")?;
        for event in &derived {
            keep.execute([&event.id, &event.raw])?;
        }
    }
    if last_flush.elapsed() >= FLUSH_EVERY {
        // Readers must not see the pending changes both in the tables and here.
        let mut pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
        // Each written on its own rather than merged first: every row is added to
        // what the table holds, and `pending` must stay as it is if the commit fails
        // (merging into a copy of it cost more than the second pass of upserts).
        for aggregates in [&*pending, &aggregates] {
            if !aggregates.is_empty() {
                aggregates.write(&tx)?;
            }
        }
        tx.commit()?;
        *pending = Aggregates::default();
        *last_flush = Instant::now();
    } else {
        tx.commit()?;
        shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .merge(aggregates);
    }
    if enqueued > 0 {
        shared.outbox_signal.notify_one();
    }
    if !derived.is_empty() {
        send_derived(shared, derived);
    }
    Ok(())
}

/// Hands derived events to the log writer; counted in flight until it has them,
/// so that waiting for the projections to settle includes them.
fn send_derived(shared: &Shared, events: Vec<ValidEvent>) {
    use std::sync::atomic::Ordering;
    shared.positions.derived_in_flight.fetch_add(1, Ordering::SeqCst);
    let (reply, _) = oneshot::channel();
    let job = log::Job::Append {
        events,
        derived: true,
        reply,
    };
    if shared.log.blocking_send(job).is_err() {
        // The log writer has stopped: the events wait in `derived_outbox` for the next start.
        shared.positions.derived_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn set_checkpoint(conn: &Connection, through: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('projected_through', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([through])?;
    Ok(())
}

/// Records an event or a promise set aside for the operator (`GET /api/v1/quarantine`).
fn record_quarantine(
    conn: &Connection,
    at: Timestamp,
    stage: &str,
    id: &str,
    kind: &str,
    reason: &str,
    body: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO quarantine (at_us, stage, event_id, type, reason, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![at.micros(), stage, id, kind, reason, body],
    )?;
    Ok(())
}

/// Rebuilds from the log, up to the checkpoint, each projector whose tables were
/// written by another version of it (see [`Projector::version`]), or that is new
/// to a store whose projections have events, and records the versions; true when
/// one was rebuilt. A store from before versions were kept is taken to be at the
/// current ones, unless a projector's tables are all empty.
fn rebuild_changed_projectors(
    conn: &Connection,
    projectors: &[Box<dyn Projector>],
    rules: Option<&Arc<JourneyRules>>,
) -> Result<bool, StoreError> {
    let mut rebuilt = false;
    let projected = checkpoint(conn)? > 0;
    for projector in projectors {
        let key = format!("version:{}", projector.name());
        let stored: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| r.get(0))
            .optional()?;
        let version = i64::from(projector.version());
        let new = stored.is_none() && projected && has_no_rows(conn, projector.as_ref())?;
        if new || stored.is_some_and(|stored| stored != version) {
            let started = Instant::now();
            let report = super::replay::run(conn, rules, Some(projector.name()), true, &mut |_| {})?;
            tracing::info!(
                projector = projector.name(),
                from = stored.unwrap_or(0),
                to = version,
                events = report.events,
                seconds = started.elapsed().as_secs_f64(),
                "rebuilt from the log: its tables were new, or written by another version"
            );
            rebuilt = true;
        }
        if stored != Some(version) {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, version],
            )?;
        }
    }
    Ok(rebuilt)
}

/// Whether none of the projector's live tables holds a row.
fn has_no_rows(conn: &Connection, projector: &dyn Projector) -> rusqlite::Result<bool> {
    for table in projector.tables() {
        let rows = table.rows.replace("{s}", "main");
        let any: bool = conn.query_row(&format!("SELECT EXISTS ({rows})"), [], |r| r.get(0))?;
        if any {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Takes one event of the log through every projector, stored at `seq` when
/// `received`. The event is the batch's to give: the last projector keeps its text.
fn scan(
    cx: &mut Cx<'_>,
    projectors: &mut [Box<dyn Projector>],
    times: &mut [u64],
    seq: i64,
    received: Timestamp,
    event: ValidEvent,
) -> Result<(), StoreError> {
    if let Some(Live { fault: Some(fault), .. }) = &cx.live {
        fault(&event);
    }
    // A derived event is in the log now: nothing is left to send. One of this
    // store's promise changes was applied to the promises when it was decided.
    let applied_when_decided = event.id.starts_with("troth.")
        && cx
            .conn
            .prepare_cached("DELETE FROM derived_outbox WHERE id = ?1")?
            .execute([&event.id])?
            > 0
        && event.event_type.starts_with("promise.");
    let mut at = Logged {
        seq,
        received,
        event,
        customer: None,
        applied_when_decided,
    };
    // One event in [`TIME_EVERY`] is timed, for the time each projector takes:
    // reading the clock around every projector for every event costs a tenth of the work.
    let mut mark = (seq % TIME_EVERY == 0).then(Instant::now);
    for (projector, spent) in projectors.iter_mut().zip(times) {
        projector.apply(cx, &mut at)?;
        if let Some(at) = &mut mark {
            let now = Instant::now();
            *spent += now.duration_since(*at).as_nanos() as u64 * TIME_EVERY as u64;
            *at = now;
        }
    }
    Ok(())
}

/// The count of events by type (`event_type_counts`), an aggregate.
pub struct Counts;

impl Counts {
    pub fn open(conn: &Connection, schema: &str) -> Result<Counts, StoreError> {
        conn.execute_batch(&super::schema::type_counts(schema))?;
        Ok(Counts)
    }
}

impl Projector for Counts {
    fn name(&self) -> &'static str {
        "counts"
    }

    fn tables(&self) -> &'static [super::projector::Table] {
        &[super::projector::Table {
            name: "event_type_counts",
            rows: "SELECT type, n FROM {s}.event_type_counts",
        }]
    }

    fn apply(&mut self, cx: &mut Cx<'_>, at: &mut Logged) -> Result<(), StoreError> {
        let counts = &mut cx.aggregates.counts;
        match counts.get_mut(&at.event.event_type) {
            Some(n) => *n += 1,
            None => {
                counts.insert(at.event.event_type.clone(), 1);
            }
        }
        Ok(())
    }
}

fn mismatch(done: Result<Done, String>) -> String {
    done.err()
        .unwrap_or_else(|| "internal error: a projection job got another job's answer".into())
}

enum Done {
    Flushed,
    Ticked(u64),
    Outbox(OutboxDone),
    Issued(bool),
}

/// Aggregate projections (event counts by type, journey health by touchpoint and
/// day) not yet written to their tables. Writing them on every commit would cost a
/// page or two of WAL per commit; instead the projections keep them here, shared with
/// readers (who add them to what the tables hold), and writes them at most about
/// once a second, in a commit that also moves the watermark `aggregated_through`.
/// At open, events past the watermark are tallied again from the log.
#[derive(Debug, Default, Clone)]
pub struct Aggregates {
    pub counts: troth_core::FastMap<String, i64>,
    pub days: HealthDays,
    pub scores: ScoreDays,
}

impl Aggregates {
    fn merge(&mut self, other: Aggregates) {
        for (event_type, n) in other.counts {
            *self.counts.entry(event_type).or_default() += n;
        }
        self.days.merge(other.days);
        self.scores.merge(other.scores);
    }

    fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.days.is_empty() && self.scores.is_empty()
    }

    /// Adds these to the tables and moves the watermark to the newest event.
    fn write(&self, conn: &Connection) -> rusqlite::Result<()> {
        self.write_to(conn, "main")?;
        conn.prepare_cached(
            "INSERT INTO meta (key, value)
             VALUES ('aggregated_through', coalesce((SELECT value FROM meta WHERE key = 'projected_through'), 0))
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute([])?;
        Ok(())
    }
}

impl Aggregates {
    /// Adds these to the tables under `schema` (`main`, or a rebuild's `replay`).
    pub fn write_to(&self, conn: &Connection, schema: &str) -> rusqlite::Result<()> {
        let mut count = conn.prepare_cached(&format!(
            "INSERT INTO {schema}.event_type_counts (type, n) VALUES (?1, ?2) ON CONFLICT (type) DO UPDATE SET n = n + excluded.n"
        ))?;
        for (event_type, n) in &self.counts {
            count.execute(params![event_type, n])?;
        }
        self.days.write(conn, schema)?;
        self.scores.write(conn, schema)?;
        Ok(())
    }
}

/// How often pending aggregates are written at the latest.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Tallies the projected events past the watermark again (after a stop or a crash)
/// and writes them.
pub fn catch_up(conn: &Connection, health: Option<&HealthIndex>, checkpoint: i64) -> Result<u64, StoreError> {
    let watermark: i64 = conn
        .query_row("SELECT value FROM meta WHERE key = 'aggregated_through'", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0);
    if let Some(health) = health {
        recount_health_if_rules_changed(conn, health, watermark)?;
    }
    scorecards::recount_if_rules_changed(conn, watermark)?;
    let mut aggregates = Aggregates::default();
    let mut tallied: u64 = 0;
    // One transaction: the scorecard facts recorded here commit with the tallies.
    let tx = conn.unchecked_transaction()?;
    let mut facts = StagedFacts::default();
    let mut memo = super::health::SubjectMemo::default();
    {
        let conn = &tx;
        let mut scan = conn.prepare(
            "SELECT e.type, e.body, c.cid, e.seq FROM events e LEFT JOIN event_customers c USING (seq)
              WHERE e.seq > ?1 AND e.seq <= ?2 ORDER BY e.seq",
        )?;
        let mut rows = scan.query([watermark, checkpoint])?;
        while let Some(row) = rows.next()? {
            let event_type: String = row.get(0)?;
            *aggregates.counts.entry(event_type).or_default() += 1;
            let body: String = row.get(1)?;
            if let Ok(event) = troth_core::validate_event(&body) {
                if let Some(health) = health {
                    aggregates
                        .days
                        .add_event(conn, "main", &mut memo, health, &event, row.get(3)?, row.get(2)?)?;
                }
                aggregates
                    .scores
                    .add_event(conn, "main", &mut facts, &event, row.get(3)?)?;
            }
            tallied += 1;
            if tallied.is_multiple_of(scorecards::STAGE_EVENTS) {
                facts.write(conn, "main")?;
            }
        }
    }
    facts.write(&tx, "main")?;
    aggregates.write(&tx)?;
    tx.commit()?;
    Ok(tallied)
}

/// Counts the health tallies of events up to `through` again when they were counted
/// by other rules (another journey map, or a version of troth with other fields).
fn recount_health_if_rules_changed(conn: &Connection, health: &HealthIndex, through: i64) -> Result<(), StoreError> {
    let fingerprint = health.fingerprint();
    let stored: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'health_rules'", [], |r| r.get(0))
        .optional()?;
    if stored == Some(fingerprint) {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    for table in super::health::RECOUNTED.split(", ") {
        tx.execute_batch(&format!("DROP TABLE IF EXISTS main.{table};"))?;
    }
    tx.execute_batch(&super::health::schema("main"))?;
    let mut days = HealthDays::default();
    let mut memo = super::health::SubjectMemo::default();
    {
        let mut scan = tx.prepare(
            "SELECT e.body, c.cid, e.seq FROM events e LEFT JOIN event_customers c USING (seq)
              WHERE e.seq <= ?1 ORDER BY e.seq",
        )?;
        let mut rows = scan.query([through])?;
        while let Some(row) = rows.next()? {
            let body: String = row.get(0)?;
            if let Ok(event) = troth_core::validate_event(&body) {
                days.add_event(&tx, "main", &mut memo, health, &event, row.get(2)?, row.get(1)?)?;
            }
        }
    }
    days.write(&tx, "main")?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('health_rules', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [fingerprint],
    )?;
    tx.commit()?;
    Ok(())
}
