//! troth's domain model. This crate does no I/O: it turns bytes that claim to be
//! events into typed, validated events, and decides how identities resolve to
//! customers. Storage, HTTP and the CLI are adapters around it.

pub mod calendar;
pub mod case;
pub mod catalogue;
pub mod chasm;
pub mod culprit;
pub mod envelope;
pub mod erasure;
pub mod eta;
pub mod field;
pub mod flow;
pub mod health;
pub mod identity;
pub mod inventory;
pub mod journey;
pub mod money;
pub mod number;
pub mod play;
pub mod position;
pub mod promise;
pub mod reach;
pub mod scorecard;
pub mod segment;
pub mod shipment;
pub mod stats;
pub mod story;
pub mod timestamp;
pub mod trend;
pub mod values;
pub mod weakest;

/// A hash map for what the projections look up on every event (event types,
/// touchpoints, a batch's tallies): foldhash rather than the standard library's
/// SipHash, which was a twentieth of the projections' time. It is seeded at
/// random per process, which is what maps keyed by events need.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The set that goes with [`FastMap`].
pub type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

pub use envelope::{Channel, CustomerRef, MAX_EVENT_BYTES, ValidEvent, validate_event, validate_value};
pub use field::FieldError;
pub use timestamp::Timestamp;
