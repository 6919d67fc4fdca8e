//! Reading figures over time: the periods a morning overview compares (today, this
//! week, last week), how a figure changed from one period to the one before, and
//! when a figure rests on too few answers to be read on its own.
//!
//! Pure arithmetic on whole UTC days (counted since 1970-01-01) and on the figures
//! the store sums, so the pages and their tests agree on every comparison.

/// Fewer answers than this and a share or a score is flagged as a small sample: with
/// 30 answers a share's 95 % interval is still about ±18 points wide, so a figure
/// from fewer is a hint, not a finding.
pub const SMALL_SAMPLE: i64 = 30;

/// Whether `n` answers (or settled promises) are too few to read a share from.
/// None at all is not a small sample: there is no figure to flag.
pub fn small_sample(n: i64) -> bool {
    n > 0 && n < SMALL_SAMPLE
}

/// A run of whole UTC days, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub first: i64,
    pub last: i64,
}

impl DayRange {
    pub fn days(&self) -> i64 {
        self.last - self.first + 1
    }

    /// The range of the same length that ends the day before this one starts, so a
    /// week is compared with a week, not with the days so far of a calendar week.
    pub fn previous(&self) -> DayRange {
        DayRange {
            first: self.first - self.days(),
            last: self.first - 1,
        }
    }
}

/// The periods of the morning overview, around `today`: today itself, this week
/// (the seven days ending today) and last week (the seven days before those).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    pub today: DayRange,
    pub this_week: DayRange,
    pub last_week: DayRange,
}

impl Periods {
    pub fn around(today: i64) -> Periods {
        let this_week = DayRange {
            first: today - 6,
            last: today,
        };
        Periods {
            today: DayRange {
                first: today,
                last: today,
            },
            this_week,
            last_week: this_week.previous(),
        }
    }
}

/// Which way a figure should move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Good {
    Higher,
    Lower,
}

/// How a change reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Better,
    Worse,
    /// Within the noise floor: not worth an arrow.
    Same,
}

/// A figure now against the same figure over the period before.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    /// For shares, percentage points; for counts, percent of the earlier count.
    pub delta: f64,
    pub verdict: Verdict,
}

impl Change {
    fn of(delta: f64, floor: f64, good: Good) -> Change {
        let verdict = if delta.abs() < floor {
            Verdict::Same
        } else if (delta > 0.0) == (good == Good::Higher) {
            Verdict::Better
        } else {
            Verdict::Worse
        };
        Change { delta, verdict }
    }

    /// `▲`, `▼` or `=`: the direction the figure moved, whatever that means for it.
    pub fn arrow(&self) -> &'static str {
        match self.verdict {
            Verdict::Same => "=",
            _ if self.delta > 0.0 => "▲",
            _ => "▼",
        }
    }
}

/// Moves of less than one point in a share are noise at the volumes a day or a week holds.
const SHARE_FLOOR_POINTS: f64 = 1.0;
/// Counts that move by less than 5 % are steady.
const COUNT_FLOOR_PERCENT: f64 = 5.0;

/// A share (0–1) now against before, in percentage points; `None` when either
/// period has no figure.
pub fn share_change(now: Option<f64>, before: Option<f64>, good: Good) -> Option<Change> {
    let delta = (now? - before?) * 100.0;
    Some(Change::of(delta, SHARE_FLOOR_POINTS, good))
}

/// A count now against before, in percent of before; `None` when there was nothing
/// before to compare with (any rise from zero is infinite and says nothing).
pub fn count_change(now: i64, before: i64, good: Good) -> Option<Change> {
    if before <= 0 {
        return None;
    }
    let delta = (now - before) as f64 * 100.0 / before as f64;
    Some(Change::of(delta, COUNT_FLOOR_PERCENT, good))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_week_is_the_seven_days_ending_today_and_last_week_the_seven_before() {
        let p = Periods::around(100);
        assert_eq!(p.today, DayRange { first: 100, last: 100 });
        assert_eq!(p.this_week, DayRange { first: 94, last: 100 });
        assert_eq!(p.last_week, DayRange { first: 87, last: 93 });
        assert_eq!(p.last_week.days(), 7);
        assert_eq!(
            DayRange { first: 10, last: 12 }.previous(),
            DayRange { first: 7, last: 9 }
        );
    }

    #[test]
    fn a_share_change_is_in_points_and_reads_by_which_way_is_good() {
        let kept = share_change(Some(0.90), Some(0.95), Good::Higher).unwrap();
        assert!((kept.delta + 5.0).abs() < 1e-9);
        assert_eq!((kept.verdict, kept.arrow()), (Verdict::Worse, "▼"));
        let broken = share_change(Some(0.10), Some(0.05), Good::Lower).unwrap();
        assert_eq!((broken.verdict, broken.arrow()), (Verdict::Worse, "▲"));
        let better = share_change(Some(0.02), Some(0.05), Good::Lower).unwrap();
        assert_eq!(better.verdict, Verdict::Better);
        let noise = share_change(Some(0.905), Some(0.90), Good::Higher).unwrap();
        assert_eq!((noise.verdict, noise.arrow()), (Verdict::Same, "="));
        assert_eq!(share_change(None, Some(0.5), Good::Higher), None);
        assert_eq!(share_change(Some(0.5), None, Good::Higher), None);
    }

    #[test]
    fn a_count_change_is_relative_and_needs_something_before() {
        let c = count_change(120, 100, Good::Lower).unwrap();
        assert!((c.delta - 20.0).abs() < 1e-9);
        assert_eq!(c.verdict, Verdict::Worse);
        assert_eq!(count_change(103, 100, Good::Lower).unwrap().verdict, Verdict::Same);
        assert_eq!(count_change(50, 100, Good::Higher).unwrap().verdict, Verdict::Worse);
        assert_eq!(count_change(5, 0, Good::Lower), None);
    }

    #[test]
    fn small_samples_are_flagged_but_no_sample_is_not() {
        assert!(small_sample(5));
        assert!(small_sample(SMALL_SAMPLE - 1));
        assert!(!small_sample(SMALL_SAMPLE));
        assert!(!small_sample(0));
    }
}
