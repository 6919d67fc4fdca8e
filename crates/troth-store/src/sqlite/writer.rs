//! The one thread that writes. Requests queue on a channel; the writer takes
//! everything waiting (up to a limit), applies it in one transaction and commits
//! once, so concurrent requests share the transaction and its fsync. Replies go
//! out only after the commit, so an acknowledged event is on disk.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};
use troth_core::{Timestamp, ValidEvent};

use super::health::HealthDays;
use super::projector::{Projector, merge_event};
use super::scorecards::{self, ScoreDays, StagedFacts};
use super::{outbox, promises, shipments};
use crate::devices::{Device, new_device_id};
use crate::keys::{self, ApiKey, NewKey};
use crate::{AppendStatus, Compose, OutboxEntry, OutboxState, RetryPolicy, StoreError};
use troth_core::health::HealthIndex;
use troth_core::journey::JourneyMap;
use troth_core::play::{PlannedAction, PlayBook};
use troth_core::promise::{Change, PromiseBook, Tracked};

/// How many events one commit takes at most; more wait for the next.
pub const MAX_GROUP_EVENTS: usize = 32_768;

pub enum Job {
    Append {
        events: Vec<ValidEvent>,
        reply: oneshot::Sender<Result<Vec<AppendStatus>, StoreError>>,
    },
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
            (Job::Append { reply, .. }, Ok(Done::Appended(statuses))) => drop(reply.send(Ok(statuses))),
            (Job::CreateKey { reply, .. }, Ok(Done::Created(key, secret))) => drop(reply.send(Ok((key, secret)))),
            (Job::DeleteKey { reply, .. }, Ok(Done::Deleted(found))) => drop(reply.send(Ok(found))),
            (Job::CreateDevice { reply, .. }, Ok(Done::Device(device))) => drop(reply.send(Ok(device))),
            (Job::DeleteDevice { reply, .. }, Ok(Done::Deleted(found))) => drop(reply.send(Ok(found))),
            (Job::CreateDevice { reply, .. }, done) => drop(reply.send(Err(failed(mismatch(done))))),
            (Job::DeleteDevice { reply, .. }, done) => drop(reply.send(Err(failed(mismatch(done))))),
            (Job::Tick { reply, .. }, Ok(Done::Ticked(changed))) => drop(reply.send(Ok(changed))),
            (Job::Flush { reply }, Ok(Done::Flushed)) => drop(reply.send(Ok(()))),
            (Job::Outbox { reply, .. }, Ok(Done::Outbox(done))) => drop(reply.send(Ok(done))),
            (Job::IssueLink { reply, .. }, Ok(Done::Issued(known))) => drop(reply.send(Ok(known))),
            (Job::IssueLink { reply, .. }, done) => drop(reply.send(Err(failed(mismatch(done))))),
            (Job::Outbox { reply, .. }, done) => drop(reply.send(Err(failed(mismatch(done))))),
            (Job::Reload { reply, .. }, Ok(Done::Flushed)) => drop(reply.send(Ok(()))),
            (Job::Reload { reply, .. }, done) => drop(reply.send(Err(failed(mismatch(done))))),
            (Job::Flush { reply }, done) => drop(reply.send(Err(failed(mismatch(done))))),
            (Job::Tick { reply, .. }, done) => drop(reply.send(Err(failed(mismatch(done))))),
            (Job::Append { reply, .. }, done) => drop(reply.send(Err(failed(mismatch(done))))),
            (Job::CreateKey { reply, .. }, done) => drop(reply.send(Err(failed(mismatch(done))))),
            (Job::DeleteKey { reply, .. }, done) => drop(reply.send(Err(failed(mismatch(done))))),
        }
    }

    fn weight(&self) -> usize {
        match self {
            Job::Append { events, .. } => events.len(),
            _ => 1,
        }
    }
}

/// The composer that renders messages as their rows are written, once one is set.
pub type ComposerSlot = Arc<RwLock<Option<Arc<dyn Compose>>>>;

/// The time a write is stored at (`received`): the system clock unless set.
pub type ClockSlot = Arc<RwLock<Option<super::Clock>>>;

/// Called with each event about to be projected; tests set one that panics to
/// stand for a bug in a projection (see [`super::SqliteStore::set_fault`]).
pub type Fault = Arc<dyn Fn(&ValidEvent) + Send + Sync>;
pub type FaultSlot = Arc<RwLock<Option<Fault>>>;

/// Keys by the hash of their secret, mirrored in memory for authentication.
pub type KeyRing = Arc<RwLock<HashMap<String, ApiKey>>>;
/// Devices by identifier, mirrored in memory for OsmAnd reports.
pub type DeviceRing = Arc<RwLock<HashMap<String, Device>>>;

pub struct Writer {
    conn: Connection,
    projector: Projector,
    /// The journey map's promises and health; without a map neither is kept.
    journey: Option<JourneyRules>,
    last_flush: Instant,
    shared: Shared,
}

/// What the writer shares with the store's handles.
pub struct Shared {
    pub keys: KeyRing,
    pub devices: DeviceRing,
    /// Committed aggregate changes not yet in their tables; readers add them.
    pub pending: Arc<Mutex<Aggregates>>,
    /// Woken after a commit that enqueued outbox rows, so the dispatcher need not poll fast.
    pub outbox_signal: Arc<tokio::sync::Notify>,
    pub composer: ComposerSlot,
    pub clock: ClockSlot,
    pub fault: FaultSlot,
    /// The newest committed position, for readers that wait for their writes.
    pub committed: tokio::sync::watch::Sender<i64>,
}

/// What the writer needs of a journey map.
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

impl Writer {
    pub fn new(conn: Connection, journey: Option<JourneyRules>, shared: Shared) -> Result<Writer, StoreError> {
        catch_up(&conn, journey.as_ref().map(|j| &j.health))?;
        let recovered = outbox::recover(&conn)?;
        if recovered > 0 {
            tracing::info!(recovered, "outbox rows claimed before the last stop are pending again");
        }
        let projector = Projector::new(&conn, "main")?;
        Ok(Writer {
            conn,
            projector,
            journey,
            last_flush: Instant::now(),
            shared,
        })
    }

    pub fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut group = Vec::new();
        let mut next = None;
        while let Some(first) = next.take().or_else(|| jobs.blocking_recv()) {
            if let Job::Reload { rules, reply } = first {
                let _ = reply.send(self.reload(*rules));
                continue;
            }
            let mut weight = first.weight();
            group.push(first);
            while weight < MAX_GROUP_EVENTS {
                match jobs.try_recv() {
                    // A reload waits for the jobs sent before it, under the old rules.
                    Ok(job @ Job::Reload { .. }) => {
                        next = Some(job);
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
        }
    }

    /// Switches to other rules: writes what is pending under the old ones, then
    /// counts the health of the whole log again if the new ones count differently.
    /// Promises already made stay as the log records them; the new rules decide
    /// what events from now on make, keep or break.
    fn reload(&mut self, rules: JourneyRules) -> Result<(), StoreError> {
        let (reply, _) = oneshot::channel();
        let mut flush = vec![Job::Flush { reply }];
        self.apply_group(&flush)?;
        flush.clear();
        let through: i64 = self
            .conn
            .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))?;
        recount_health_if_rules_changed(&self.conn, &rules.health, through)?;
        self.journey = Some(rules);
        Ok(())
    }

    fn commit_group(&mut self, group: &mut Vec<Job>) {
        match self.apply_caught(group) {
            Ok(Ok(done)) => {
                for (job, done) in group.drain(..).zip(done) {
                    job.reply(Ok(done));
                }
            }
            Ok(Err(StoreError::Invalid(reason))) | Err(reason) => {
                tracing::error!(%reason, "applying a write failed inside troth; nothing of it was stored; its jobs are applied again one by one");
                for job in group.drain(..) {
                    self.isolate(job);
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "write transaction failed; nothing of it was stored");
                for job in group.drain(..) {
                    job.reply(Err(e.to_string()));
                }
            }
        }
    }

    /// Applies one job of a group that failed inside troth (a panic, or an event of
    /// troth's own that does not validate) on its own, so that one bad event is all
    /// that fails: an append is split until the events that fail alone are found;
    /// they are refused and recorded in the quarantine for the operator.
    fn isolate(&mut self, job: Job) {
        match job {
            Job::Append { events, reply } => {
                let statuses = self.append_bisecting(&events);
                let _ = reply.send(statuses);
            }
            Job::Tick { now, only: None, reply } => {
                let _ = reply.send(self.tick_isolating(now));
            }
            job => {
                let one = [job];
                let done = match self.apply_caught(&one) {
                    Ok(Ok(mut done)) => done.pop().ok_or_else(|| "internal error: no answer".to_owned()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(reason) => Err(format!("internal error: {reason}")),
                };
                let [job] = one;
                job.reply(done);
            }
        }
    }

    fn append_bisecting(&mut self, events: &[ValidEvent]) -> Result<Vec<AppendStatus>, StoreError> {
        let (reply, _) = oneshot::channel();
        let job = [Job::Append {
            events: events.to_vec(),
            reply,
        }];
        match self.apply_caught(&job) {
            Ok(Ok(mut done)) => match done.pop() {
                Some(Done::Appended(statuses)) => Ok(statuses),
                _ => Err(StoreError::WriteFailed(
                    "internal error: an append got another answer".into(),
                )),
            },
            Ok(Err(StoreError::Invalid(reason))) | Err(reason) => match events {
                [event] => {
                    tracing::error!(event = %event.id, r#type = %event.event_type, %reason, "event refused: applying it failed inside troth; it is in the quarantine");
                    self.quarantine(event, &reason);
                    Ok(vec![AppendStatus::Refused { reason }])
                }
                _ => {
                    let (first, second) = events.split_at(events.len() / 2);
                    let mut statuses = self.append_bisecting(first)?;
                    statuses.extend(self.append_bisecting(second)?);
                    Ok(statuses)
                }
            },
            Ok(Err(e)) => Err(e),
        }
    }

    /// Runs the clock one due promise at a time. A promise whose change fails inside
    /// troth is taken off the clock and recorded in the quarantine, so that it
    /// cannot stop the clock of every other promise, second after second.
    fn tick_isolating(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        let due = promises::due(&self.conn, now, usize::MAX >> 1)?;
        let mut changed = 0;
        for promise in due {
            let (reply, _) = oneshot::channel();
            let job = [Job::Tick {
                now,
                only: Some(promise.id.clone()),
                reply,
            }];
            match self.apply_caught(&job) {
                Ok(Ok(done)) => {
                    if let Some(Done::Ticked(n)) = done.first() {
                        changed += n;
                    }
                }
                Ok(Err(StoreError::Invalid(reason))) | Err(reason) => {
                    tracing::error!(promise = %promise.id, %reason, "promise taken off the clock: its change failed inside troth; it is in the quarantine");
                    let body = serde_json::json!({"promise": promise.id, "key": promise.key, "subject": promise.subject, "due": promise.due.to_string()});
                    let recorded = promises::set_aside(&self.conn, &promise.id).and_then(|()| {
                        self.record_quarantine("clock", &promise.id, "promise", &reason, &body.to_string())
                    });
                    if let Err(e) = recorded {
                        tracing::error!(promise = %promise.id, error = %e, "the promise could not be set aside");
                    }
                }
                Ok(Err(e)) => return Err(e),
            }
        }
        Ok(changed)
    }

    /// Records a refused event for the operator (`GET /api/v1/quarantine`).
    fn quarantine(&mut self, event: &ValidEvent, reason: &str) {
        let recorded = self.record_quarantine("append", &event.id, &event.event_type, reason, &event.raw);
        if let Err(e) = recorded {
            tracing::error!(event = %event.id, error = %e, "the refused event could not be recorded in the quarantine");
        }
    }

    fn record_quarantine(&self, stage: &str, id: &str, kind: &str, reason: &str, body: &str) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO quarantine (at_us, stage, event_id, type, reason, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![self.received_now().micros(), stage, id, kind, reason, body],
        )?;
        Ok(())
    }

    /// [`Writer::apply_group`] with a panic caught and turned into its message. The
    /// transaction rolled back as the panic unwound it; memory that may hold its
    /// effects is reloaded from the tables.
    fn apply_caught(&mut self, group: &[Job]) -> Result<Result<Vec<Done>, StoreError>, String> {
        match catch_unwind(AssertUnwindSafe(|| self.apply_group(group))) {
            Ok(result) => Ok(result),
            Err(payload) => {
                if let Err(e) = self.reset_projector() {
                    tracing::error!(error = %e, "the identity projection could not be reloaded after a panic");
                }
                Err(panic_message(payload.as_ref()))
            }
        }
    }

    /// Applies every job in one transaction. Key changes reach the in-memory key
    /// ring only after the commit.
    fn apply_group(&mut self, group: &[Job]) -> Result<Vec<Done>, StoreError> {
        let result = self.try_apply_group(group);
        if result.is_err() {
            self.reset_projector()?;
        }
        result
    }

    /// After a rollback: the projector's memory may hold rows that were not committed.
    fn reset_projector(&mut self) -> Result<(), StoreError> {
        self.projector = Projector::new(&self.conn, "main")?;
        Ok(())
    }

    fn received_now(&self) -> Timestamp {
        match &*self.shared.clock.read().unwrap_or_else(|p| p.into_inner()) {
            Some(clock) => clock(),
            None => Timestamp::now(),
        }
    }

    fn try_apply_group(&mut self, group: &[Job]) -> Result<Vec<Done>, StoreError> {
        let received = self.received_now();
        let tx = self.conn.unchecked_transaction()?;
        let mut done = Vec::with_capacity(group.len());
        let mut key_changes = Vec::new();
        let mut device_changes: Vec<(String, Option<Device>)> = Vec::new();
        let mut aggregates = Aggregates::default();
        let mut flush = self.last_flush.elapsed() >= FLUSH_EVERY;
        let mut enqueued = 0;
        let wrote_events = group
            .iter()
            .any(|job| matches!(job, Job::Append { .. } | Job::Tick { .. }));
        let composer = self.shared.composer.read().unwrap_or_else(|p| p.into_inner()).clone();
        let fault = self.shared.fault.read().unwrap_or_else(|p| p.into_inner()).clone();
        let context = Context {
            received,
            composer: composer.as_deref(),
            fault: fault.as_deref(),
        };
        for job in group {
            done.push(match job {
                Job::Append { events, .. } => Done::Appended(append(
                    &tx,
                    &mut self.projector,
                    self.journey.as_ref(),
                    events,
                    &context,
                    &mut aggregates,
                    &mut enqueued,
                )?),
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
                // `run` takes reloads out of groups; one here only flushes.
                Job::Flush { .. } | Job::Reload { .. } => {
                    flush = true;
                    Done::Flushed
                }
                Job::Tick { now, only, .. } => Done::Ticked(match &self.journey {
                    Some(journey) => tick(
                        &tx,
                        &mut self.projector,
                        journey,
                        *now,
                        only.as_deref(),
                        &context,
                        &mut aggregates,
                        &mut enqueued,
                    )?,
                    None => 0,
                }),
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
                    key_changes.push((hash, Some(api_key.clone())));
                    Done::Created(api_key, secret)
                }
                Job::DeleteKey { uid, .. } => {
                    let hash: Option<String> = tx
                        .query_row("DELETE FROM api_keys WHERE uid = ?1 RETURNING hash", [uid], |r| {
                            r.get(0)
                        })
                        .map(Some)
                        .or_else(|e| {
                            if e == rusqlite::Error::QueryReturnedNoRows {
                                Ok(None)
                            } else {
                                Err(e)
                            }
                        })?;
                    let found = hash.is_some();
                    if let Some(hash) = hash {
                        key_changes.push((hash, None));
                    }
                    Done::Deleted(found)
                }
                Job::CreateDevice { driver, .. } => {
                    let device_id = new_device_id().map_err(|e| StoreError::Invalid(e.to_string()))?;
                    tx.execute(
                        "INSERT INTO devices (device_id, driver, created_us) VALUES (?1, ?2, ?3)",
                        params![device_id, driver, received.micros()],
                    )?;
                    let device = Device {
                        device_id,
                        driver: driver.clone(),
                        created_at: received.to_string(),
                    };
                    device_changes.push((device.device_id.clone(), Some(device.clone())));
                    Done::Device(device)
                }
                Job::DeleteDevice { driver, device_id, .. } => {
                    let deleted = tx.execute(
                        "DELETE FROM devices WHERE device_id = ?1 AND driver = ?2",
                        params![device_id, driver],
                    )?;
                    if deleted > 0 {
                        device_changes.push((device_id.clone(), None));
                    }
                    Done::Deleted(deleted > 0)
                }
            });
        }
        if flush {
            // Readers must not see the pending changes both in the tables and here.
            let mut pending = self.shared.pending.lock().unwrap_or_else(|p| p.into_inner());
            let mut all = pending.clone();
            all.merge(aggregates);
            if !all.is_empty() {
                all.write(&tx)?;
            }
            tx.commit()?;
            *pending = Aggregates::default();
            self.last_flush = Instant::now();
        } else {
            tx.commit()?;
            self.shared
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .merge(aggregates);
        }
        if enqueued > 0 {
            self.shared.outbox_signal.notify_one();
        }
        // Committed: a failure from here on must not turn into an error for the writes.
        let appended_through = if wrote_events {
            self.conn
                .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get::<_, i64>(0))
                .inspect_err(|e| tracing::warn!(error = %e, "the newest position could not be read"))
                .ok()
        } else {
            None
        };
        if let Some(head) = appended_through {
            self.shared.committed.send_if_modified(|committed| {
                let moved = head > *committed;
                *committed = (*committed).max(head);
                moved
            });
        }
        let mut ring = self.shared.keys.write().unwrap_or_else(|p| p.into_inner());
        for (hash, key) in key_changes {
            match key {
                Some(key) => ring.insert(hash, key),
                None => ring.remove(&hash),
            };
        }
        drop(ring);
        if !device_changes.is_empty() {
            let mut ring = self.shared.devices.write().unwrap_or_else(|p| p.into_inner());
            for (device_id, device) in device_changes {
                match device {
                    Some(device) => ring.insert(device_id, device),
                    None => ring.remove(&device_id),
                };
            }
        }
        Ok(done)
    }
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

/// What every append and tick of one transaction shares.
pub struct Context<'a> {
    /// The time the transaction began, stored as each event's `received_us`.
    pub received: Timestamp,
    pub composer: Option<&'a dyn Compose>,
    pub fault: Option<&'a (dyn Fn(&ValidEvent) + Send + Sync)>,
}

fn mismatch(done: Result<Done, String>) -> String {
    done.err()
        .unwrap_or_else(|| "internal error: a write job got another job's answer".into())
}

enum Done {
    Appended(Vec<AppendStatus>),
    Flushed,
    Ticked(u64),
    Created(ApiKey, String),
    Deleted(bool),
    Device(Device),
    Outbox(OutboxDone),
    Issued(bool),
}

/// Appends events inside an open transaction: dedupe by id, store, project, and
/// let the promise engine react (its decisions are appended as events too).
#[allow(clippy::too_many_arguments)]
pub fn append(
    conn: &Connection,
    projector: &mut Projector,
    journey: Option<&JourneyRules>,
    events: &[ValidEvent],
    context: &Context<'_>,
    aggregates: &mut Aggregates,
    enqueued: &mut usize,
) -> Result<Vec<AppendStatus>, StoreError> {
    let book = journey.map(|j| &j.book);
    let mut appender = Appender::new(conn, projector, journey, context);
    let mut statuses = Vec::with_capacity(events.len());
    for event in events {
        let status = appender.one(event)?;
        if let AppendStatus::Accepted { .. } = status {
            appender.promise_engine(book, event)?;
        }
        appender.settle(book)?;
        statuses.push(status);
    }
    *enqueued += appender.finish(aggregates)?;
    Ok(statuses)
}

/// Runs the promise clock to `now`: promises at risk or past due change.
#[allow(clippy::too_many_arguments)]
pub fn tick(
    conn: &Connection,
    projector: &mut Projector,
    journey: &JourneyRules,
    now: Timestamp,
    only: Option<&str>,
    context: &Context<'_>,
    aggregates: &mut Aggregates,
    enqueued: &mut usize,
) -> Result<u64, StoreError> {
    let book = &journey.book;
    let mut appender = Appender::new(conn, projector, Some(journey), context);
    let mut changed = 0;
    loop {
        let due = match only {
            Some(id) => promises::due_one(conn, id, now)?,
            None => promises::due(conn, now, 1_000)?,
        };
        if due.is_empty() {
            break;
        }
        for promise in &due {
            let Some(change) = book.on_clock(promise, now) else {
                continue;
            };
            appender.record(
                std::slice::from_ref(&change),
                std::slice::from_ref(promise),
                // The clock never makes a promise; later changes carry the stored customer.
                None,
            )?;
            appender.settle(Some(book))?;
            changed += 1;
        }
        if due.len() < 1_000 {
            break;
        }
    }
    *enqueued += appender.finish(aggregates)?;
    Ok(changed)
}

fn event_customer(event: &ValidEvent) -> Option<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_str(&event.raw).ok()?;
    value.get("customer").cloned()
}

struct Appender<'a> {
    conn: &'a Connection,
    projector: &'a mut Projector,
    health: Option<&'a HealthIndex>,
    plays: Option<&'a PlayBook>,
    composer: Option<&'a dyn Compose>,
    fault: Option<&'a (dyn Fn(&ValidEvent) + Send + Sync)>,
    /// Events the plays asked for (`case.opened`), appended after the event that caused them.
    derived: Vec<ValidEvent>,
    /// Outbox rows enqueued as pending.
    enqueued: usize,
    received: Timestamp,
    counts: HashMap<String, i64>,
    /// Health counted per (touchpoint, day), handed to the group's aggregates.
    days: HealthDays,
    /// Carrier scorecards counted per (carrier, driver, day), likewise.
    scores: ScoreDays,
    /// Shipment and scorecard rows changed by this append, written by `finish`.
    shipments: shipments::Staged,
    facts: StagedFacts,
}

impl<'a> Appender<'a> {
    fn new(
        conn: &'a Connection,
        projector: &'a mut Projector,
        journey: Option<&'a JourneyRules>,
        context: &Context<'a>,
    ) -> Self {
        Appender {
            conn,
            projector,
            health: journey.map(|j| &j.health),
            plays: journey.map(|j| &j.plays),
            composer: context.composer,
            fault: context.fault,
            derived: Vec::new(),
            enqueued: 0,
            received: context.received,
            counts: HashMap::new(),
            days: HealthDays::default(),
            scores: ScoreDays::default(),
            shipments: shipments::Staged::default(),
            facts: StagedFacts::default(),
        }
    }

    /// Stores one event with its projections.
    fn one(&mut self, event: &ValidEvent) -> Result<AppendStatus, StoreError> {
        let conn = self.conn;
        let mut insert = conn.prepare_cached(
            "INSERT INTO events (id, type, time_us, received_us, customer_id, subject, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
        )?;
        let plan = self.projector.plan(conn, event)?;
        let customer = plan.customer.map(|c| c.0);
        let inserted = insert.execute(params![
            event.id,
            event.event_type,
            event.time.micros(),
            self.received.micros(),
            customer,
            event.subject,
            event.raw
        ])?;
        if inserted == 0 {
            return Ok(AppendStatus::Duplicate);
        }
        let seq = conn.last_insert_rowid();
        if let Some(fault) = self.fault {
            fault(event);
        }
        self.count(&event.event_type);
        promises::apply(conn, "main", event)?;
        shipments::apply(conn, "main", &mut self.shipments, event)?;
        if let troth_core::catalogue::EventData::ShipmentCreated(created) = &event.data {
            // Every shipment gets its link as it is created, so notifications can carry it.
            shipments::issue_link(conn, &mut self.shipments, &created.shipment, self.received)?;
        }
        if let Some(health) = self.health {
            self.days.add_event(conn, health, event, seq, customer)?;
        }
        self.scores.add_event(conn, "main", &mut self.facts, event, seq)?;
        for merge in self.projector.apply(conn, plan, event)? {
            let body = merge_event(&merge, seq, &event.time.to_string());
            let id = format!("troth.merge.{seq}.{}", merge.merged);
            insert.execute(params![
                id,
                "customer.merged",
                event.time.micros(),
                self.received.micros(),
                merge.survivor.0,
                format!("customer:{}", merge.survivor),
                body
            ])?;
            self.count("customer.merged");
        }
        outbox::apply_consent(conn, "main", event, customer)?;
        if let Some(plays) = self.plays
            && plays.concerns(&event.event_type)
        {
            self.run_plays(plays, event, customer)?;
        }
        Ok(AppendStatus::Accepted { seq })
    }

    /// Records what the plays ask of a stored event: outbox rows, and cases as
    /// `case.opened` events appended next (see [`Appender::settle`]).
    fn run_plays(&mut self, plays: &PlayBook, event: &ValidEvent, customer: Option<i64>) -> Result<(), StoreError> {
        let planned = plays.on_event(event, self.received);
        if !planned.is_empty() {
            // Messages read the shipment as the table holds it.
            self.shipments.write(self.conn, "main")?;
        }
        for planned in planned {
            if let PlannedAction::OpenCase { .. } = planned.action {
                // A case opened by a play opens no further cases: plays cannot loop.
                if event.id.starts_with("troth.case.") {
                    continue;
                }
                let Some(case) = troth_core::play::case_event(&planned, event, event_customer(event).as_ref()) else {
                    continue;
                };
                let case = troth_core::validate_value(case, None)
                    .map_err(|r| StoreError::Invalid(format!("a play's case does not validate: {}", r.error)))?;
                self.derived.push(case);
            } else if outbox::enqueue(self.conn, &planned, event, customer, self.received, self.composer)? {
                self.enqueued += 1;
            }
        }
        Ok(())
    }

    /// Lets the promise engine react to a stored event: its decisions are appended as events.
    fn promise_engine(&mut self, book: Option<&PromiseBook>, event: &ValidEvent) -> Result<(), StoreError> {
        let Some(book) = book.filter(|b| b.concerns(&event.event_type)) else {
            return Ok(());
        };
        // The customer the event was stored under, for promises matched on customer.
        let customer: Option<i64> = if book.needs_customer(&event.event_type) {
            self.conn
                .prepare_cached("SELECT customer_id FROM events WHERE id = ?1")?
                .query_row([&event.id], |r| r.get(0))
                .optional()?
                .flatten()
        } else {
            None
        };
        let customer = customer.map(|c| troth_core::identity::CustomerId(c).to_string());
        let mut known = Vec::new();
        for subject in book.subjects(event, customer.as_deref()) {
            for promise in promises::known(self.conn, &subject)? {
                if !known.iter().any(|k: &Tracked| k.id == promise.id) {
                    known.push(promise);
                }
            }
        }
        let changes = book.on_event(event, &known, customer.as_deref());
        if !changes.is_empty() {
            let customer = event_customer(event);
            self.record(&changes, &known, customer.as_ref())?;
        }
        Ok(())
    }

    /// Appends the events plays asked for, with what they cause in turn.
    fn settle(&mut self, book: Option<&PromiseBook>) -> Result<(), StoreError> {
        while !self.derived.is_empty() {
            for event in std::mem::take(&mut self.derived) {
                if let AppendStatus::Accepted { .. } = self.one(&event)? {
                    self.promise_engine(book, &event)?;
                }
            }
        }
        Ok(())
    }

    /// Appends the events that record promise changes. `customer` is the making
    /// event's customer, used for `Made`; later changes carry the one stored with the promise.
    fn record(
        &mut self,
        changes: &[Change],
        known: &[Tracked],
        customer: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        for change in changes {
            let promise = match change {
                Change::Made(made) => made,
                other => match known.iter().find(|p| p.id == other.promise_id()) {
                    Some(promise) => promise,
                    None => continue,
                },
            };
            // Later changes carry the customer of the event that made the promise.
            let stored;
            let customer = match change {
                Change::Made(_) => customer,
                _ => {
                    stored = promises::stored_customer_ref(self.conn, &promise.id)?
                        .and_then(|c| serde_json::from_str(&c).ok());
                    stored.as_ref()
                }
            };
            let recorded = change.record(promise, customer);
            let event = troth_core::validate_value(recorded, None)
                .map_err(|r| StoreError::Invalid(format!("a promise change does not validate: {}", r.error)))?;
            self.one(&event)?;
        }
        Ok(())
    }

    fn count(&mut self, event_type: &str) {
        match self.counts.get_mut(event_type) {
            Some(n) => *n += 1,
            None => {
                self.counts.insert(event_type.to_owned(), 1);
            }
        }
    }

    /// Hands this job's aggregate changes to the group's; returns the outbox rows enqueued.
    /// Writes the staged projection rows and hands the counts to the group's aggregates.
    fn finish(mut self, into: &mut Aggregates) -> Result<usize, StoreError> {
        self.shipments.write(self.conn, "main")?;
        self.facts.write(self.conn, "main")?;
        into.merge(Aggregates {
            counts: self.counts,
            days: self.days,
            scores: self.scores,
        });
        Ok(self.enqueued)
    }
}

/// Aggregate projections (event counts by type, journey health by touchpoint and
/// day) not yet written to their tables. Writing them on every commit would cost a
/// page or two of WAL per commit; instead the writer keeps them here, shared with
/// readers (who add them to what the tables hold), and writes them at most about
/// once a second, in a commit that also moves the watermark `aggregated_through`.
/// At open, events past the watermark are tallied again from the log.
#[derive(Debug, Default, Clone)]
pub struct Aggregates {
    pub counts: HashMap<String, i64>,
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
        let mut count = conn.prepare_cached(
            "INSERT INTO event_type_counts (type, n) VALUES (?1, ?2) ON CONFLICT (type) DO UPDATE SET n = n + excluded.n",
        )?;
        for (event_type, n) in &self.counts {
            count.execute(params![event_type, n])?;
        }
        self.days.write(conn, "main")?;
        self.scores.write(conn, "main")?;
        conn.prepare_cached(
            "INSERT INTO meta (key, value) VALUES ('aggregated_through', (SELECT coalesce(max(seq), 0) FROM events))
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute([])?;
        Ok(())
    }
}

/// How often pending aggregates are written at the latest.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Tallies the events past the watermark again (after a stop or a crash) and writes them.
pub fn catch_up(conn: &Connection, health: Option<&HealthIndex>) -> Result<u64, StoreError> {
    let watermark: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'aggregated_through'", [], |r| {
            r.get(0)
        })
        .optional()?;
    let watermark = match watermark {
        Some(w) => w,
        // A store whose aggregates were written with every commit is up to date.
        None if conn.query_row("SELECT count(*) FROM event_type_counts", [], |r| r.get::<_, i64>(0))? > 0 => {
            conn.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))?
        }
        None => 0,
    };
    if let Some(health) = health {
        recount_health_if_rules_changed(conn, health, watermark)?;
    }
    scorecards::recount_if_rules_changed(conn, watermark)?;
    let mut aggregates = Aggregates::default();
    let mut tallied: u64 = 0;
    // One transaction: the scorecard facts recorded here commit with the tallies.
    let tx = conn.unchecked_transaction()?;
    let mut facts = StagedFacts::default();
    {
        let conn = &tx;
        let mut scan = conn.prepare("SELECT type, body, customer_id, seq FROM events WHERE seq > ?1 ORDER BY seq")?;
        let mut rows = scan.query([watermark])?;
        while let Some(row) = rows.next()? {
            let event_type: String = row.get(0)?;
            *aggregates.counts.entry(event_type).or_default() += 1;
            let body: String = row.get(1)?;
            if let Ok(event) = troth_core::validate_event(&body) {
                if let Some(health) = health {
                    aggregates
                        .days
                        .add_event(conn, health, &event, row.get(3)?, row.get(2)?)?;
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
    tx.execute_batch("DROP TABLE IF EXISTS main.touchpoint_days; DROP TABLE IF EXISTS main.touchpoint_reach;")?;
    tx.execute_batch(&super::health::schema("main"))?;
    let mut days = HealthDays::default();
    {
        let mut scan = tx.prepare("SELECT body, customer_id, seq FROM events WHERE seq <= ?1 ORDER BY seq")?;
        let mut rows = scan.query([through])?;
        while let Some(row) = rows.next()? {
            let body: String = row.get(0)?;
            if let Ok(event) = troth_core::validate_event(&body) {
                days.add_event(&tx, health, &event, row.get(2)?, row.get(1)?)?;
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
