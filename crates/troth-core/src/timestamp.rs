//! Instants as microseconds since the Unix epoch, parsed from and printed as RFC 3339.

use std::fmt;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An instant, in microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
        Some(Timestamp((t.unix_timestamp_nanos() / 1_000) as i64))
    }

    pub fn now() -> Timestamp {
        Timestamp((OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64)
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn from_secs(secs: i64) -> Timestamp {
        Timestamp(secs * 1_000_000)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with microsecond precision, e.g. `2026-11-23T09:15:00.000000Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000).map_err(|_| fmt::Error)?;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )
    }
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
            assert_eq!(Timestamp::parse_rfc3339(s), None, "{s}");
        }
    }
}
