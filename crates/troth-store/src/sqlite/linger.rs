//! How a thread that follows the log waits for more under a trickle of appends:
//! each of its transactions writes every page it touched, so one of many events
//! costs far less than many of a few. It waits until enough events are held or
//! the oldest of them is old enough, and not at all while a reader waits for a
//! position (`min_position`, `settle`).

use std::time::Duration;

/// How often a linger looks for readers waiting: a reader that starts waiting
/// meanwhile is kept no longer than this.
pub const SLICE: Duration = Duration::from_millis(1);

/// One follower's linger.
pub struct Linger {
    /// The age of the oldest event held that ends it.
    pub longest: Duration,
    /// The events held that end it at once.
    pub events: i64,
}

impl Linger {
    /// How much longer to wait for more with `held` events, the oldest committed
    /// `oldest` ago (`None`: no commit on record for them), while `readers` wait
    /// for a position; `None`: go on now.
    pub fn left(&self, held: i64, oldest: Option<Duration>, readers: usize) -> Option<Duration> {
        if held <= 0 || held >= self.events || readers > 0 {
            return None;
        }
        self.longest.checked_sub(oldest?).filter(|left| !left.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_fresh_events_wait_for_more_unless_someone_waits_for_them() {
        let ms = Duration::from_millis;
        let linger = Linger {
            longest: ms(5),
            events: 1_024,
        };
        // A few events, just committed: wait out the rest of the linger.
        assert_eq!(linger.left(3, Some(ms(1)), 0), Some(ms(4)));
        // Old enough, many enough, none at all, or a reader waiting: now.
        assert_eq!(linger.left(3, Some(ms(5)), 0), None);
        assert_eq!(linger.left(3, Some(ms(60)), 0), None);
        assert_eq!(linger.left(1_024, Some(ms(1)), 0), None);
        assert_eq!(linger.left(0, None, 0), None);
        assert_eq!(linger.left(3, Some(ms(1)), 1), None);
        // No commit on record for them: now.
        assert_eq!(linger.left(3, None, 0), None);
    }
}
