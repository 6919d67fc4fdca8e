//! troth's storage: the append-only event log and the projections kept beside it.
//!
//! Everything the rest of troth needs from storage goes through [`Store`], so a
//! PostgreSQL backend can follow without touching domain or HTTP code. The embedded
//! backend is [`sqlite::SqliteStore`]: the log in one file, written by one thread
//! that commits concurrent appends together (group commit), and the projections in
//! another, written by a thread that follows the log from its checkpoint.

use std::collections::BTreeMap;
use std::future::Future;

use serde::Serialize;
use troth_core::{Timestamp, ValidEvent};

pub mod devices;
pub mod keys;
pub mod sqlite;
pub mod subjects;

pub use devices::Device;
pub use keys::{ApiKey, NewKey, Scope};
pub use subjects::SubjectWatchers;

/// What storage can fail with. Callers only distinguish these cases.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store at {path} is in use by another process{holder}; stop it, or send events to it with --url")]
    Locked { path: String, holder: String },
    #[error("the store's writer has stopped")]
    WriterGone,
    #[error("the write failed and nothing of it was stored: {0}")]
    WriteFailed(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("storage error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is a file, not a directory: give the store a directory of its own (it is created if missing)")]
    NotADirectory { path: String },
    #[error("the projections are catching up with the log: {projected} of {head} events")]
    CatchingUp { projected: i64, head: i64 },
}

/// What became of one event handed to [`Store::append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendStatus {
    /// Stored under this position in the log, durably; the projections follow.
    Accepted { seq: i64 },
    /// An event with the same id was already stored; nothing was written.
    Duplicate,
}

/// A position in the log: the `seq` of an event, counted from 1 without gaps in
/// the order events were stored. Every accepted event's answer carries its own.
pub type Position = i64;

/// What the log writer did to keep the log's write-ahead log small since the store
/// opened (for a backend that has one; see `sqlite/log.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Times the WAL was found past its limit and the log writer tried to start it over.
    pub restarts_tried: u64,
    /// Times readers stayed in the WAL longer than the writer waits for them, so it
    /// went on growing.
    pub restarts_busy: u64,
    /// The largest size the WAL file was found at after a commit, in bytes.
    pub largest_bytes: u64,
}

/// How often appends waited for the projections (back-pressure) since the store
/// opened, and for how long in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct AppendWaits {
    /// Appends that found the projections too far behind and waited.
    pub waits: u64,
    /// The time those appends waited, summed, in seconds.
    pub seconds: f64,
}

/// How far the log and each projection that follows it have come.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// The position of the newest event in the log (0 when it is empty).
    pub log: Position,
    pub projectors: Vec<ProjectorProgress>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectorProgress {
    pub name: &'static str,
    /// Every event up to this position is in the projection.
    pub position: Position,
    /// Events in the log not yet projected.
    pub lag_events: i64,
    /// How long ago the oldest event not yet projected was stored; 0 when none is waiting.
    pub lag_seconds: f64,
}

impl Progress {
    /// The position every projection has passed.
    pub fn projected(&self) -> Position {
        self.projectors.iter().map(|p| p.position).min().unwrap_or(self.log)
    }
}

/// An event troth refused because applying it failed inside troth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quarantined {
    /// When it was refused.
    pub at: String,
    /// Where it failed: `append` (the event, refused) or `clock` (a promise
    /// taken off the promise clock; `event_id` is the promise id).
    pub stage: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// What failed, as troth's own message.
    pub reason: String,
    /// The event as it was sent.
    pub body: serde_json::Value,
}

/// A message of Segment's API that troth could not read as an event, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRejection {
    /// The route it came by: `/v1/batch`, `/v1/track`…
    pub route: String,
    /// The event id it would have had (`seg.{messageId}`): a message refused again
    /// replaces its earlier record.
    pub key: String,
    /// The field at fault, as the sender wrote it (`batch[3].properties.total`).
    pub field: String,
    pub reason: String,
    /// The message as sent (its JSON text, the write key taken out).
    pub message: String,
}

/// A recorded [`SegmentRejection`], as `GET /api/v1/segment/rejected` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentRejected {
    /// When it was refused.
    pub at: String,
    pub route: String,
    pub field: String,
    pub reason: String,
    /// The message as sent: JSON, or text when it was not JSON or was cut short.
    pub message: serde_json::Value,
}

/// Filters of `GET /events`. All are optional and combine with AND.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// A customer key (see [`Store::customer`]); includes customers merged into it.
    pub customer: Option<String>,
    pub subject: Option<String>,
    pub event_type: Option<String>,
    /// Event time, inclusive, in microseconds since the epoch.
    pub from_us: Option<i64>,
    /// Event time, exclusive.
    pub to_us: Option<i64>,
    /// Only events with a greater sequence number.
    pub after_seq: Option<i64>,
    /// Only events with a smaller sequence number.
    pub before_seq: Option<i64>,
    /// Newest first instead of oldest first (for timelines).
    pub newest_first: bool,
    pub limit: usize,
}

/// An event of a case, with the customer it was resolved to (troth's id, `cus_N`).
#[derive(Debug, Clone)]
pub struct CaseEvent {
    pub seq: i64,
    pub raw: String,
    pub customer: Option<String>,
}

/// An event about an order, as far as telling where the order stood needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderEvent {
    /// The order's id, without `order:`.
    pub order: String,
    pub time_us: i64,
    pub event_type: String,
}

/// One stored event: its text as sent, with what the server added.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    pub received_us: i64,
    pub raw: String,
}

#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    /// The sequence number to continue after, when there may be more.
    pub next_after: Option<i64>,
}

/// Filters of a promise listing. All optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct PromiseQuery {
    /// Only promises made at these touchpoints.
    pub touchpoints: Option<Vec<String>>,
    /// made, at_risk, kept, broken or cancelled.
    pub state: Option<String>,
    /// A customer key (as for events); includes customers merged into it.
    pub customer: Option<String>,
    /// With `customer`: also the promises about these subjects (`order:o-1`, the
    /// customer's orders and shipments), whoever the event that made them named.
    pub subjects: Vec<String>,
    /// Due time at or after, µs.
    pub due_from_us: Option<i64>,
    /// Due time before, µs.
    pub due_to_us: Option<i64>,
    /// Continue after this (due µs, id), as returned in `next`.
    pub after: Option<(i64, String)>,
    pub limit: usize,
}

/// A promise as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromiseView {
    pub id: String,
    pub key: String,
    pub touchpoint: String,
    pub subject: String,
    pub state: String,
    pub made_at: String,
    pub start: Option<String>,
    pub due: String,
    pub settled_at: Option<String>,
    /// The customer as the event that made the promise named them.
    pub customer: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct PromisePage {
    pub promises: Vec<PromiseView>,
    pub next: Option<(i64, String)>,
}

/// The store at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Overview {
    pub events: u64,
    /// Customers, not counting those merged into another.
    pub customers: u64,
    pub last_seq: i64,
    /// Events per type, most frequent first.
    pub by_type: Vec<(String, u64)>,
}

/// The customer profile, v1: who they are and what they have done.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerProfile {
    pub id: String,
    pub identities: Vec<IdentityView>,
    pub traits: serde_json::Map<String, serde_json::Value>,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub events: u64,
    pub event_counts: BTreeMap<String, u64>,
    pub merged_from: Vec<String>,
}

/// What a customer's story (`GET /api/v1/customers/{id}/story`) is told from: read
/// in one go, at one point of the log.
#[derive(Debug, Clone)]
pub struct StoryRecords {
    pub profile: CustomerProfile,
    /// Their newest events, oldest first, each with its position.
    pub events: Vec<(i64, ValidEvent)>,
    /// They have more events than were read: the oldest are not in `events`.
    pub truncated: bool,
    /// Every event of their cases (see `troth_core::case::EVENT_TYPES`), in log
    /// order, also those older than `events` reaches.
    pub case_events: Vec<ValidEvent>,
    /// Promises made by their events, and those about the orders and shipments in
    /// `events` (a carrier's window names no customer), by due time.
    pub promises: Vec<PromiseView>,
    /// The shipments created for them in `events`, newest first.
    pub shipments: Vec<ShipmentRecord>,
}

/// A shipment as projected, with the tracking link the customer was sent.
#[derive(Debug, Clone)]
pub struct ShipmentRecord {
    pub id: String,
    pub shipment: troth_core::shipment::Shipment,
    pub link: Option<TrackingLink>,
}

/// A customer's data as one archive (`GET /api/v1/customers/{id}/export`): every
/// event they are in as it was sent (oldest first), every projection row about
/// them by table, every message troth sent or will send them, and every read of
/// their data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerExport {
    pub customer: CustomerProfile,
    pub events: Vec<serde_json::Value>,
    pub projections: serde_json::Map<String, serde_json::Value>,
    pub messages: Vec<serde_json::Value>,
    pub reads: Vec<serde_json::Value>,
}

/// Where an erasure stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureState {
    Running,
    Done,
    Failed,
}

impl ErasureState {
    pub fn as_str(self) -> &'static str {
        match self {
            ErasureState::Running => "running",
            ErasureState::Done => "done",
            ErasureState::Failed => "failed",
        }
    }
}

/// An erasure of a customer's personal data (docs/privacy.md), recorded without
/// it: troth's id of the customer, who asked, when, and what was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Erasure {
    /// `era_…`.
    pub id: String,
    /// troth's id of the customer (`cus_…`), which names no one once erased.
    pub customer: String,
    pub state: ErasureState,
    /// RFC 3339.
    pub requested_at: String,
    /// The key that asked: its uid, or `master`.
    pub requested_by: String,
    pub completed_at: Option<String>,
    /// Events rewritten in the log.
    pub events: u64,
    /// Identities replaced by pseudonyms.
    pub identities: u64,
    /// Outbox messages emptied (and not sent, when they were waiting).
    pub messages: u64,
    /// Uploaded photos deleted.
    pub uploads: u64,
    /// Refused Segment messages that named the customer, deleted.
    pub rejections: u64,
    pub error: Option<String>,
}

/// One read of a customer's data: who, when, which customer (troth's id), and
/// what was read (`story`, `profile`, `events`, `page`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerRead {
    /// RFC 3339.
    pub at: String,
    /// The reader: an API key's uid, `master`, or `open` when the API needs no key.
    pub reader: String,
    /// The key's name, when it has one.
    pub reader_name: Option<String>,
    pub customer: String,
    pub what: String,
}

/// Which recorded reads to list.
#[derive(Debug, Clone, Default)]
pub struct ReadQuery {
    pub customer: Option<String>,
    pub reader: Option<String>,
    pub limit: usize,
}

/// A customer found by a search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerMatch {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityView {
    pub kind: String,
    pub value: String,
}

/// The result of rebuilding the projections from the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    pub events: u64,
    pub customers: u64,
    pub identities: u64,
    /// Rows of the stored projections that the rebuild does not reproduce, by projection.
    pub differences: BTreeMap<String, u64>,
    /// Whether the rebuilt projections replaced the stored ones.
    pub written: bool,
}

impl ReplayReport {
    pub fn matches(&self) -> bool {
        self.differences.values().all(|&n| n == 0)
    }
}

/// Where an outbox row is in its life. See docs/notifications.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxState {
    /// Waiting for its next attempt.
    Pending,
    /// Claimed by the dispatcher; back to pending if troth stops before it is marked.
    Sending,
    Sent,
    /// Out of attempts; retried only by hand.
    Dead,
    /// Recorded but never to be sent (no consent, no address, no webhook).
    Skipped,
}

impl OutboxState {
    pub const ALL: &[OutboxState] = &[
        OutboxState::Pending,
        OutboxState::Sending,
        OutboxState::Sent,
        OutboxState::Dead,
        OutboxState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sending => "sending",
            OutboxState::Sent => "sent",
            OutboxState::Dead => "dead",
            OutboxState::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<OutboxState> {
        OutboxState::ALL.iter().copied().find(|state| state.as_str() == s)
    }
}

/// One message (or webhook) a play asked for, recorded in the transaction that
/// appended the event that triggered it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxEntry {
    /// The idempotency key, `play:{play}:{event id}:{action index}`.
    pub id: String,
    pub play: String,
    /// The id of the event that triggered the play.
    pub event: String,
    /// `email`, `sms` or `webhook` (other channels are recorded as skipped).
    pub channel: String,
    /// An email address, a phone number or a URL.
    pub recipient: Option<String>,
    pub state: OutboxState,
    /// Failed attempts so far.
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
    /// What to send: the template, the triggering event, the customer, the promise.
    pub payload: serde_json::Value,
}

/// Filters of an outbox listing.
#[derive(Debug, Clone, Default)]
pub struct OutboxQuery {
    pub state: Option<OutboxState>,
    /// Continue after this cursor (as returned in `next`).
    pub after: Option<i64>,
    pub limit: usize,
}

#[derive(Debug, Clone)]
pub struct OutboxPage {
    pub entries: Vec<OutboxEntry>,
    pub next: Option<i64>,
}

/// When a failed send is tried again: `base · 2^(attempts − 1)`, capped at `max`,
/// and dead after `max_attempts` failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base_seconds: u64,
    pub max_seconds: u64,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_seconds: 30,
            max_seconds: 3600,
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// The wait after the `attempts`-th failure (1-based), in µs.
    pub fn delay_us(&self, attempts: u32) -> i64 {
        let doublings = attempts.saturating_sub(1).min(32);
        let seconds = self
            .base_seconds
            .saturating_mul(1u64 << doublings)
            .min(self.max_seconds);
        (seconds as i64).saturating_mul(1_000_000)
    }
}

/// A shipment's tracking link: `/t/{token}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingLink {
    pub token: String,
    pub shipment: String,
    /// 30 days after the shipment's final state; `None` while it is not final.
    pub expires_at: Option<Timestamp>,
}

impl TrackingLink {
    pub fn valid_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|t| now < t)
    }
}

/// What a tracking token opens: the link, the shipment as its events tell it, and
/// the customer ref of the first event that named one (for events the page appends).
#[derive(Debug, Clone)]
pub struct TrackedShipment {
    pub link: TrackingLink,
    pub shipment: troth_core::shipment::Shipment,
    pub customer: Option<serde_json::Value>,
}

/// A shipment on the road now, as the shipment projection holds it.
#[derive(Debug, Clone)]
pub struct RoadShipment {
    pub id: String,
    pub shipment: troth_core::shipment::Shipment,
    /// The customer ref of the first event that named one.
    pub customer: Option<serde_json::Value>,
}

/// The storage a troth node runs on.
pub trait Store: Send + Sync + 'static {
    /// Appends validated events to the log in order; resolves once they are on disk.
    /// The projections follow (see [`Store::progress`] and [`Store::wait_projected`]).
    fn append(&self, events: Vec<ValidEvent>) -> impl Future<Output = Result<Vec<AppendStatus>, StoreError>> + Send;

    fn events(&self, query: EventQuery) -> impl Future<Output = Result<EventPage, StoreError>> + Send;

    fn overview(&self) -> impl Future<Output = Result<Overview, StoreError>> + Send;

    /// The events of cases (`troth_core::case::EVENT_TYPES`) at or after `from_us`, in
    /// log order, each with its customer; only one customer's with `customer` (a
    /// customer key, as for [`Store::customer`]).
    fn case_events(
        &self,
        from_us: Option<i64>,
        customer: Option<String>,
    ) -> impl Future<Output = Result<Vec<CaseEvent>, StoreError>> + Send;

    /// The events about each of `orders` (order ids, as `case.opened` names them):
    /// those whose subject is `order:{id}` or one of its shipments (`shipment:{id}`,
    /// linked by `shipment.created`), each with its time and type, in log order per
    /// order. Where an order stood when a case was opened about it
    /// (`troth_core::case::CaseTouchpoints`).
    fn order_events(&self, orders: Vec<String>) -> impl Future<Output = Result<Vec<OrderEvent>, StoreError>> + Send;

    fn promises(&self, query: PromiseQuery) -> impl Future<Output = Result<PromisePage, StoreError>> + Send;

    /// How many promises [`Store::promises`] would list for `query`, by state (its
    /// cursor and limit ignored): the same filters, so the two always agree.
    fn promise_counts(
        &self,
        query: PromiseQuery,
    ) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send;

    /// Promises of these keys broken or at risk whose subject has seen no
    /// `case.resolved` since they were made (for case promises: open cases
    /// breaching their SLA), oldest due first, at most `limit`.
    fn unresolved_breaches(
        &self,
        keys: Vec<String>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PromiseView>, StoreError>> + Send;

    /// The shipments out for delivery or arriving now, by id.
    fn on_the_road(&self) -> impl Future<Output = Result<Vec<RoadShipment>, StoreError>> + Send;

    /// Journey health per touchpoint, summed over the days from `from_day`
    /// (inclusive) to `to_day` (exclusive), days counted since 1970-01-01 UTC.
    fn health(
        &self,
        from_day: Option<i64>,
        to_day: Option<i64>,
    ) -> impl Future<Output = Result<Vec<(String, troth_core::health::Tally)>, StoreError>> + Send;

    /// Journey health per touchpoint and accountable entity (`kind:id`), summed over
    /// the days from `from_day` (inclusive) to `to_day` (exclusive).
    fn entity_health(
        &self,
        from_day: Option<i64>,
        to_day: Option<i64>,
    ) -> impl Future<Output = Result<troth_core::weakest::EntityTallies, StoreError>> + Send;

    /// Each customer's first exposure per touchpoint and day over the days from
    /// `from_day` (inclusive) to `to_day` (exclusive), at most `limit` of them
    /// (whole customers, lowest customer first); `true` when some were left out.
    fn touchpoint_visits(
        &self,
        from_day: Option<i64>,
        to_day: Option<i64>,
        limit: usize,
    ) -> impl Future<Output = Result<(Vec<troth_core::flow::Visit>, bool), StoreError>> + Send;

    /// Distinct customers exposed to each touchpoint over the days from `from_day`
    /// (inclusive) to `to_day` (exclusive), estimated within a few percent.
    fn reach(
        &self,
        from_day: Option<i64>,
        to_day: Option<i64>,
    ) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send;

    /// Carrier scorecard tallies per (carrier, driver) summed over the days from
    /// `from_day` (inclusive) to `to_day` (exclusive); the driver is empty for
    /// shipments not yet out for delivery. See `troth_core::scorecard`.
    fn scorecards(
        &self,
        from_day: Option<i64>,
        to_day: Option<i64>,
    ) -> impl Future<Output = Result<Vec<(String, String, troth_core::scorecard::ScoreTally)>, StoreError>> + Send;

    /// The scored survey answers and review ratings of known customers given from `from_us` (inclusive)
    /// to `to_us` (exclusive), event time in µs, each under its surviving customer.
    fn survey_answers(
        &self,
        from_us: Option<i64>,
        to_us: Option<i64>,
    ) -> impl Future<Output = Result<Vec<troth_core::chasm::Answer>, StoreError>> + Send;

    /// Looks a customer up by the sender's id, by an identity key (`email:…`), or by
    /// troth's own id (`cus_…`). A merged customer answers with the survivor.
    fn customer(&self, key: String) -> impl Future<Output = Result<Option<CustomerProfile>, StoreError>> + Send;

    /// What the story of the customer `key` names is told from: their newest
    /// `events` events and at most `shipments` shipments. `None` for an unknown key.
    fn story(
        &self,
        key: String,
        events: usize,
        shipments: usize,
    ) -> impl Future<Output = Result<Option<StoryRecords>, StoreError>> + Send;

    /// Customers a search box's text may mean (email, phone, id, order, shipment, name).
    fn search_customers(
        &self,
        text: String,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<CustomerMatch>, StoreError>> + Send;

    fn create_key(&self, key: NewKey) -> impl Future<Output = Result<(ApiKey, String), StoreError>> + Send;
    fn list_keys(&self) -> impl Future<Output = Result<Vec<ApiKey>, StoreError>> + Send;
    fn delete_key(&self, uid: String) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The key a secret belongs to, answered from memory (called on every request).
    fn authenticate(&self, secret: &str) -> Option<ApiKey>;
    /// A key by its uid, answered from memory; `None` once it is revoked.
    fn api_key(&self, uid: &str) -> Option<ApiKey>;

    /// Issues a new device identifier for a driver (see [`devices`]).
    fn create_device(&self, driver: String) -> impl Future<Output = Result<Device, StoreError>> + Send;
    /// A driver's devices, oldest first.
    fn devices(&self, driver: String) -> impl Future<Output = Result<Vec<Device>, StoreError>> + Send;
    /// Revokes a driver's device. False when the driver has no such device.
    fn delete_device(&self, driver: String, device_id: String)
    -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The driver a device identifier (as typed) belongs to, answered from memory
    /// (called on every OsmAnd report).
    fn device_driver(&self, device_id: &str) -> Option<String>;

    /// Outbox rows, oldest first.
    fn outbox(&self, query: OutboxQuery) -> impl Future<Output = Result<OutboxPage, StoreError>> + Send;

    fn outbox_entry(&self, id: String) -> impl Future<Output = Result<Option<OutboxEntry>, StoreError>> + Send;

    /// Takes up to `limit` pending rows due at `now` and marks them sending.
    fn claim_outbox(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, StoreError>> + Send;

    /// Marks a claimed row sent. False when there is no such row.
    fn outbox_sent(&self, id: String, now: Timestamp) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records a failed attempt: pending again after the policy's backoff, or dead.
    /// Returns the row's new state.
    fn outbox_failed(
        &self,
        id: String,
        now: Timestamp,
        error: String,
        policy: RetryPolicy,
    ) -> impl Future<Output = Result<Option<OutboxState>, StoreError>> + Send;

    /// Puts a claimed row back to pending without counting an attempt (its channel
    /// is not configured): tried again after `delay_us`, with `reason` as its last error.
    fn outbox_defer(
        &self,
        id: String,
        now: Timestamp,
        reason: String,
        delay_us: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Makes a dead row pending again, due now, with its attempts reset. `None` when
    /// there is no such row; a row that is not dead is returned unchanged.
    fn retry_outbox(
        &self,
        id: String,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<OutboxEntry>, StoreError>> + Send;

    /// The shipment's tracking link (docs/tracking.md), issued now if it has none;
    /// `None` for a shipment no event has named.
    fn tracking_link(&self, shipment: String) -> impl Future<Output = Result<Option<TrackingLink>, StoreError>> + Send;

    /// The shipment's tracking link if it has one, read as projected (every shipment
    /// gets one as `shipment.created` is projected); issues none.
    fn issued_link(&self, shipment: String) -> impl Future<Output = Result<Option<TrackingLink>, StoreError>> + Send;

    /// The shipment a tracking token opens, whether or not its link has expired
    /// (the caller compares `expires_at` with its clock); `None` for an unknown token.
    fn tracked(&self, token: String) -> impl Future<Output = Result<Option<TrackedShipment>, StoreError>> + Send;

    /// What troth set aside because handling it failed inside troth, newest first:
    /// events whose projection failed (they stay in the log) and promises taken off
    /// the clock.
    fn quarantine(&self, limit: usize) -> impl Future<Output = Result<Vec<Quarantined>, StoreError>> + Send;

    /// Records messages of Segment's API that could not be read as events, for the
    /// operator; only the newest 10,000 are kept.
    fn record_segment_rejections(
        &self,
        rejections: Vec<SegmentRejection>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The recorded Segment messages that were refused, newest first.
    fn segment_rejections(&self, limit: usize)
    -> impl Future<Output = Result<Vec<SegmentRejected>, StoreError>> + Send;

    /// Records who read which customer's data; resolves once it is on disk.
    fn record_reads(&self, reads: Vec<CustomerRead>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Recorded reads of one customer, by one reader, or all; newest first.
    fn customer_reads(&self, query: ReadQuery) -> impl Future<Output = Result<Vec<CustomerRead>, StoreError>> + Send;

    /// A customer's data as one archive; `None` for an unknown customer.
    fn export_customer(&self, key: String) -> impl Future<Output = Result<Option<CustomerExport>, StoreError>> + Send;

    /// Starts erasing a customer's personal data and answers at once with the
    /// erasure, which goes on in the background; `None` for an unknown customer.
    /// `uploads` is where their photos are kept.
    fn erase_customer(
        &self,
        key: String,
        by: String,
        uploads: Option<std::path::PathBuf>,
    ) -> impl Future<Output = Result<Option<Erasure>, StoreError>> + Send;

    /// An erasure by its id (`era_…`).
    fn erasure(&self, id: String) -> impl Future<Output = Result<Option<Erasure>, StoreError>> + Send;

    /// How far the log and its projections have come, answered from memory.
    fn progress(&self) -> Progress;

    /// What keeping the log's write-ahead log small has done, for a backend with one.
    fn log_wal(&self) -> Option<WalStats> {
        None
    }

    /// How often appends waited for the projections, for a backend that makes them.
    fn append_waits(&self) -> Option<AppendWaits> {
        None
    }

    /// Resolves once every projection has passed `position`, or with the progress
    /// reached when `timeout` runs out first.
    fn wait_projected(
        &self,
        position: Position,
        timeout: std::time::Duration,
    ) -> impl Future<Output = Result<(), Progress>> + Send;

    /// A receiver marked changed each time events about `subject` become readable
    /// through every projection (its value: the position they are readable to), so a
    /// live view reads again when what it shows may have changed rather than on a
    /// timer. Dropping it stops the watch.
    fn watch_subject(&self, subject: &str) -> tokio::sync::watch::Receiver<Position>;

    /// Whether the store can read and write now.
    fn ready(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A customer message's text, fixed when its outbox row is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Message {
    /// Email only; SMS send the body.
    pub subject: String,
    pub body: String,
}

/// Renders a `notify_customer` row's message in the transaction that writes the row
/// (troth-notify's templates implement it), so what is sent is what the row says:
/// neither a later template change nor a replay alters it. A store without one
/// leaves rows unrendered and the dispatcher renders them when it sends.
pub trait Compose: Send + Sync + 'static {
    /// The message for a row's payload (`template`, `event`, `customer`, `shipment`…);
    /// `None` when there is no template of that name.
    fn compose(&self, payload: &serde_json::Value) -> Option<Message>;
}
