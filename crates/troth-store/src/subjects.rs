//! Who waits for news of a subject. A tracking page's live stream reads the store
//! again when events about its shipment become readable, instead of reading it on
//! a timer: a thousand open pages then cost the store little while their shipments
//! are quiet.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::Position;

/// The subjects someone watches, each with the position up to which its events are
/// readable (as of the last news; 0 before any).
#[derive(Default)]
pub struct SubjectWatchers {
    watched: Mutex<Watched>,
}

#[derive(Default)]
struct Watched {
    by_subject: HashMap<String, watch::Sender<Position>>,
    /// How many subjects may be held before those nobody watches any more are let go.
    sweep_past: usize,
}

/// The fewest subjects held before a sweep is worth its time.
const SWEEP_AT_LEAST: usize = 1_024;

impl SubjectWatchers {
    /// A receiver marked changed each time events about `subject` become readable.
    /// Dropping it is how a watcher leaves.
    pub fn watch(&self, subject: &str) -> watch::Receiver<Position> {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        if watched.by_subject.len() >= watched.sweep_past {
            watched.by_subject.retain(|_, sender| sender.receiver_count() > 0);
            watched.sweep_past = (watched.by_subject.len() * 2).max(SWEEP_AT_LEAST);
        }
        match watched.by_subject.get(subject) {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = watch::channel(0);
                watched.by_subject.insert(subject.to_owned(), sender);
                receiver
            }
        }
    }

    /// Events about `subjects` are readable up to `through`: their watchers hear.
    pub fn readable<'a>(&self, subjects: impl IntoIterator<Item = &'a str>, through: Position) {
        let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        if watched.by_subject.is_empty() {
            return;
        }
        let mut last = None;
        for subject in subjects {
            // A batch's subjects come sorted: each is looked up once.
            if last == Some(subject) {
                continue;
            }
            last = Some(subject);
            if let Some(sender) = watched.by_subject.get(subject) {
                sender.send_if_modified(|at| {
                    let moved = through > *at;
                    *at = (*at).max(through);
                    moved
                });
            }
        }
    }

    /// What was read of any subject may have changed without an event about it (an
    /// erasure rewrote the log and dropped tracking links): every watcher hears.
    pub fn all_changed(&self) {
        let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        for sender in watched.by_subject.values() {
            sender.send_modify(|_| {});
        }
    }

    /// How many subjects are held (watched, or not yet let go).
    pub fn len(&self) -> usize {
        self.watched.lock().unwrap_or_else(|p| p.into_inner()).by_subject.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A watcher hears of its subject only, once per position, and leaves by dropping.
    #[test]
    fn watchers_hear_of_their_subject_only() {
        let watchers = SubjectWatchers::default();
        let mut shipment = watchers.watch("shipment:s1");
        let mut again = watchers.watch("shipment:s1");
        let other = watchers.watch("shipment:s2");

        watchers.readable(["order:o1", "shipment:s1", "shipment:s1"], 7);
        assert!(shipment.has_changed().unwrap());
        assert_eq!(*shipment.borrow_and_update(), 7);
        assert_eq!(*again.borrow_and_update(), 7);
        assert!(!other.has_changed().unwrap());

        // News no newer than what was heard is no news.
        watchers.readable(["shipment:s1"], 7);
        assert!(!shipment.has_changed().unwrap());
        watchers.readable(["shipment:s1"], 9);
        assert!(shipment.has_changed().unwrap());

        // An erasure is news to everyone, without a position.
        shipment.borrow_and_update();
        watchers.all_changed();
        assert!(shipment.has_changed().unwrap() && other.has_changed().unwrap());
        assert_eq!(*shipment.borrow_and_update(), 9);

        // Subjects nobody watches any more are let go once enough are held; those
        // still watched stay.
        drop((shipment, again, other));
        let mut kept = watchers.watch("shipment:kept");
        for n in 0..10 * SWEEP_AT_LEAST {
            drop(watchers.watch(&format!("shipment:x{n}")));
        }
        assert!(watchers.len() <= SWEEP_AT_LEAST, "{} held", watchers.len());
        watchers.readable(["shipment:kept"], 3);
        assert_eq!(*kept.borrow_and_update(), 3);
    }
}
