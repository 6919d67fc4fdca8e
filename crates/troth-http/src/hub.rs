//! The live positions hub: each driver's last trusted position, and a broadcast
//! channel per driver for those following it live (the tracking page's SSE stream).
//!
//! Only trusted positions are published. A driver's channel exists only while
//! someone listens: it is made by the first `subscribe` and dropped by the first
//! publish that finds no receiver left. The map of drivers is locked only to find
//! or add a driver, never while sending; each driver has its own small lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use tokio::sync::broadcast;
use troth_core::Timestamp;
use troth_core::position::{Fix, Track};

/// How many positions a slow subscriber may fall behind before it skips ahead
/// (it sees `RecvError::Lagged` and continues with the newest).
pub const CHANNEL_CAPACITY: usize = 16;

/// A trusted position as the live views show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LivePosition {
    #[serde(serialize_with = "text")]
    pub driver: Arc<str>,
    #[serde(serialize_with = "rfc3339")]
    pub at: Timestamp,
    pub lat: f64,
    pub lon: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_kmh: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heading: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy_m: Option<f64>,
}

fn text<S: serde::Serializer>(driver: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(driver)
}

fn rfc3339<S: serde::Serializer>(at: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(at)
}

impl LivePosition {
    pub fn new(driver: Arc<str>, fix: &Fix) -> LivePosition {
        LivePosition {
            driver,
            at: fix.at,
            lat: fix.lat,
            lon: fix.lon,
            speed_kmh: fix.speed_kmh,
            heading: fix.heading,
            accuracy_m: fix.accuracy_m,
        }
    }
}

/// Every driver's live position and subscribers. Shared by all requests (in `AppState`).
#[derive(Default)]
pub struct PositionHub {
    drivers: RwLock<HashMap<Arc<str>, Arc<Driver>>>,
}

impl std::fmt::Debug for PositionHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let drivers = self.drivers.read().unwrap_or_else(|p| p.into_inner()).len();
        f.debug_struct("PositionHub").field("drivers", &drivers).finish()
    }
}

/// One driver's slot in the hub.
pub(crate) struct Driver {
    pub(crate) id: Arc<str>,
    live: Mutex<Live>,
    /// What the plausibility rules know of the driver (`None` until read from the
    /// log). Held while a report is judged, so one driver's reports are judged in
    /// order.
    pub(crate) track: tokio::sync::Mutex<Option<Track>>,
    /// Set when fixes judged into `track` were not stored (a failed append, a
    /// dropped request): the track is read again from the log before the next.
    pub(crate) reload: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Live {
    latest: Option<LivePosition>,
    sender: Option<broadcast::Sender<LivePosition>>,
}

impl PositionHub {
    /// Follows a driver's trusted positions from now on. Call [`PositionHub::latest`]
    /// after subscribing for where the driver is now; a position may then arrive
    /// both ways (skip those whose `seq` is not above the last one shown).
    pub fn subscribe(&self, driver: &str) -> broadcast::Receiver<LivePosition> {
        let slot = self.driver(driver);
        let mut live = slot.live.lock().unwrap_or_else(|p| p.into_inner());
        match &live.sender {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = broadcast::channel(CHANNEL_CAPACITY);
                live.sender = Some(sender);
                receiver
            }
        }
    }

    /// The driver's last trusted position received since this server started.
    pub fn latest(&self, driver: &str) -> Option<LivePosition> {
        let slot = self
            .drivers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(driver)
            .cloned()?;
        let live = slot.live.lock().unwrap_or_else(|p| p.into_inner());
        live.latest.clone()
    }

    /// How many drivers have someone listening (for metrics and tests).
    pub fn channels(&self) -> usize {
        let drivers: Vec<Arc<Driver>> = self
            .drivers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        drivers
            .iter()
            .filter(|d| d.live.lock().unwrap_or_else(|p| p.into_inner()).sender.is_some())
            .count()
    }

    /// Records a trusted position as the driver's latest and sends it to its subscribers.
    pub fn publish(&self, position: LivePosition) {
        let slot = self.driver(&position.driver);
        let mut live = slot.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.latest.as_ref().is_some_and(|l| l.at > position.at) {
            return;
        }
        if let Some(sender) = &live.sender {
            // Everyone left: drop the channel rather than keep sending into it.
            if sender.send(position.clone()).is_err() {
                live.sender = None;
            }
        }
        live.latest = Some(position);
    }

    /// The driver's slot, added when it is new.
    pub(crate) fn driver(&self, driver: &str) -> Arc<Driver> {
        if let Some(slot) = self.drivers.read().unwrap_or_else(|p| p.into_inner()).get(driver) {
            return slot.clone();
        }
        let mut drivers = self.drivers.write().unwrap_or_else(|p| p.into_inner());
        drivers
            .entry(Arc::from(driver))
            .or_insert_with_key(|id| {
                Arc::new(Driver {
                    id: id.clone(),
                    live: Mutex::default(),
                    track: tokio::sync::Mutex::new(None),
                    reload: Default::default(),
                })
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A position of `driver` at second `n`.
    fn position(driver: &str, n: i64) -> LivePosition {
        LivePosition::new(Arc::from(driver), &Fix::at(52.0, 13.0, Timestamp::from_secs(n)))
    }

    fn second(p: &LivePosition) -> i64 {
        p.at.micros() / 1_000_000
    }

    #[tokio::test]
    async fn subscribers_get_their_drivers_positions_and_channels_go_with_them() {
        let hub = PositionHub::default();
        let mut d1 = hub.subscribe("d-1");
        let mut d1_again = hub.subscribe("d-1");
        hub.publish(position("d-2", 1));
        hub.publish(position("d-1", 2));
        assert_eq!(d1.recv().await.unwrap().at, Timestamp::from_secs(2));
        assert_eq!(d1_again.recv().await.unwrap().at, Timestamp::from_secs(2));
        assert!(d1.try_recv().is_err(), "nothing of d-2");
        assert_eq!(hub.latest("d-2").as_ref().map(second), Some(1));
        assert_eq!(hub.channels(), 1);
        drop((d1, d1_again));
        hub.publish(position("d-1", 3));
        assert_eq!(hub.channels(), 0, "dropped when no one listens");
        assert_eq!(hub.latest("d-1").as_ref().map(second), Some(3));
        assert_eq!(hub.latest("d-3"), None);
    }

    #[test]
    fn an_older_position_never_replaces_the_latest() {
        let hub = PositionHub::default();
        hub.publish(position("d-1", 5));
        hub.publish(position("d-1", 4));
        assert_eq!(hub.latest("d-1").as_ref().map(second), Some(5));
    }
}
