//! Instants as microseconds since the Unix epoch, parsed from and printed as RFC 3339.
//!
//! Every instant troth reads from outside lies in [`Timestamp::EARLIEST`,
//! `Timestamp::LATEST`] (1970 to 2200): far enough either side of any real
//! customer journey, and far inside the years RFC 3339 can write. An instant troth
//! derives (an event's time plus a duration of the journey map, at most
//! [`MAX_DURATION_US`]) is capped at `LATEST` ([`Timestamp::plus_capped`]), so
//! troth's own events validate like everyone's. Arithmetic saturates rather than
//! wraps, and printing never fails, so no instant can stop the code that handles it.

use std::fmt;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An instant, in microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// The longest duration a journey map may state (a promise's due time, a warning
/// ahead of it): 100 years of 365 days.
pub const MAX_DURATION_US: i64 = 100 * 365 * DAY_US;

const DAY_US: i64 = 86_400_000_000;

/// Why text is not an instant troth accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    /// Not an RFC 3339 date-time with an offset.
    Malformed,
    /// A date-time before [`Timestamp::EARLIEST`] or after [`Timestamp::LATEST`].
    OutOfRange,
}

impl Timestamp {
    /// 1970-01-01T00:00:00Z: no event of a customer's journey happened before it.
    pub const EARLIEST: Timestamp = Timestamp(0);
    /// 2199-12-31T23:59:59.999999Z: the latest instant accepted from outside.
    pub const LATEST: Timestamp = Timestamp(7_258_118_400_000_000 - 1);

    /// Reads an RFC 3339 date-time within the accepted range.
    pub fn parse(s: &str) -> Result<Timestamp, TimeError> {
        let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| TimeError::Malformed)?;
        Timestamp::from_micros((t.unix_timestamp_nanos() / 1_000) as i64)
    }

    /// [`Timestamp::parse`], for callers that need not say why.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        Timestamp::parse(s).ok()
    }

    /// An instant within the accepted range.
    pub fn from_micros(us: i64) -> Result<Timestamp, TimeError> {
        let t = Timestamp(us);
        if (Timestamp::EARLIEST..=Timestamp::LATEST).contains(&t) {
            Ok(t)
        } else {
            Err(TimeError::OutOfRange)
        }
    }

    pub fn now() -> Timestamp {
        Timestamp((OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64)
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn from_secs(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(1_000_000))
    }

    /// This instant moved by `us` microseconds (negative: earlier), saturating at
    /// the ends of `i64` rather than wrapping.
    pub fn plus_us(self, us: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(us))
    }

    /// This instant moved by `us`, kept within the accepted range: for instants
    /// troth derives and records in events of its own.
    pub fn plus_capped(self, us: i64) -> Timestamp {
        self.plus_us(us).clamp(Timestamp::EARLIEST, Timestamp::LATEST)
    }

    /// The description of the accepted range, for error messages.
    pub fn range_text() -> String {
        format!(
            "between {} and {}",
            Timestamp::EARLIEST.whole_seconds(),
            Timestamp::LATEST.plus_us(1).whole_seconds()
        )
    }

    /// RFC 3339 without fractions of a second: `2026-11-23T09:15:00Z`.
    fn whole_seconds(self) -> String {
        let text = self.to_string();
        match text.rfind('.') {
            Some(dot) => format!("{}Z", &text[..dot]),
            None => text,
        }
    }
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeError::Malformed => f.write_str("is not an RFC 3339 date-time"),
            TimeError::OutOfRange => write!(f, "must be {}", Timestamp::range_text()),
        }
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with microsecond precision, e.g. `2026-11-23T09:15:00.000000Z`.
    /// Never fails: an instant outside years 0–9999 (which nothing accepted from
    /// outside can be) is written with a signed, expanded year as ISO 8601 allows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(DAY_US);
        let in_day = self.0.rem_euclid(DAY_US);
        let (year, month, day) = civil_date(days);
        let secs = in_day / 1_000_000;
        if (0..=9999).contains(&year) {
            // Written digit by digit: `write!` with padding costs ten times as much,
            // and a customer's story writes a time for every event in it.
            let mut text = *b"0000-00-00T00:00:00.000000Z";
            let mut put = |at: usize, width: usize, mut n: u64| {
                for i in (at..at + width).rev() {
                    text[i] = b'0' + (n % 10) as u8;
                    n /= 10;
                }
            };
            put(0, 4, year as u64);
            put(5, 2, u64::from(month));
            put(8, 2, u64::from(day));
            put(11, 2, (secs / 3600) as u64);
            put(14, 2, (secs / 60 % 60) as u64);
            put(17, 2, (secs % 60) as u64);
            put(20, 6, (in_day % 1_000_000) as u64);
            // Only ASCII digits and separators were written.
            return f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?);
        }
        write!(f, "{year:+05}")?;
        write!(
            f,
            "-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            in_day % 1_000_000
        )
    }
}

/// The proleptic Gregorian date of a day counted from 1970-01-01, for any `i64`
/// day count a `Timestamp` can hold. Counts in 400-year cycles from 0000-03-01, so
/// that the leap day is the last day of each counted year.
fn civil_date(days: i64) -> (i64, u32, u32) {
    const CYCLE_DAYS: i64 = 146_097; // days in 400 Gregorian years
    let from_march_0000 = days + 719_468;
    let cycle = from_march_0000.div_euclid(CYCLE_DAYS);
    let day_of_cycle = from_march_0000.rem_euclid(CYCLE_DAYS);
    let year_of_cycle =
        (day_of_cycle - day_of_cycle / 1_460 + day_of_cycle / 36_524 - day_of_cycle / (CYCLE_DAYS - 1)) / 365;
    let day_of_year = day_of_cycle - (365 * year_of_cycle + year_of_cycle / 4 - year_of_cycle / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_cycle + cycle * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_rfc3339() {
        let t = Timestamp::parse_rfc3339("2026-11-23T10:15:30.5+01:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-23T09:15:30.500000Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Some(t));
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for s in ["2026-11-23", "2026-11-23T10:00:00", "yesterday", "2026-13-01T00:00:00Z"] {
            assert_eq!(Timestamp::parse(s), Err(TimeError::Malformed), "{s}");
        }
    }

    #[test]
    fn accepts_only_the_documented_range() {
        let check = |s: &str, expect: Result<&str, TimeError>| {
            assert_eq!(
                Timestamp::parse(s).map(|t| t.to_string()),
                expect.map(str::to_owned),
                "{s}"
            );
        };
        check("1970-01-01T00:00:00Z", Ok("1970-01-01T00:00:00.000000Z"));
        check("2199-12-31T23:59:59.999999Z", Ok("2199-12-31T23:59:59.999999Z"));
        check("1969-12-31T23:59:59Z", Err(TimeError::OutOfRange));
        check("2200-01-01T00:00:00Z", Err(TimeError::OutOfRange));
        check("9999-12-31T23:59:00Z", Err(TimeError::OutOfRange));
        assert_eq!(Timestamp::LATEST.plus_capped(MAX_DURATION_US), Timestamp::LATEST);
        assert_eq!(Timestamp::EARLIEST.plus_capped(-1), Timestamp::EARLIEST);
        assert_eq!(
            TimeError::OutOfRange.to_string(),
            "must be between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z"
        );
    }

    /// The calendar arithmetic agrees with the `time` crate wherever both can write
    /// the date, including leap days and the turn of centuries.
    #[test]
    fn prints_what_the_time_crate_prints() {
        let mut us: i64 = -62_135_596_800_000_000; // 0001-01-01
        let step = 86_399_999_999 * 7 + 12_345; // a week less a microsecond, and a bit
        while us < 253_402_300_799_000_000 {
            let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).unwrap();
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.microsecond()
            );
            assert_eq!(Timestamp(us).to_string(), expected);
            us += step;
        }
        assert_eq!(
            Timestamp(951_782_400_000_000).to_string(),
            "2000-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn printing_and_arithmetic_never_fail() {
        for t in [i64::MIN, -1, i64::MAX, 253_402_300_800_000_000] {
            assert!(!Timestamp(t).to_string().is_empty());
        }
        assert_eq!(
            Timestamp(253_402_300_800_000_000).to_string(),
            "+10000-01-01T00:00:00.000000Z"
        );
        assert_eq!(Timestamp(i64::MAX).plus_us(1), Timestamp(i64::MAX));
        assert_eq!(Timestamp(i64::MIN).plus_us(-1), Timestamp(i64::MIN));
        assert_eq!(Timestamp::from_secs(i64::MAX), Timestamp(i64::MAX));
    }
}
