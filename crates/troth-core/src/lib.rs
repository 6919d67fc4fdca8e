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

pub use envelope::{Channel, CustomerRef, MAX_EVENT_BYTES, ValidEvent, validate_event, validate_value};
pub use field::FieldError;
pub use timestamp::Timestamp;
