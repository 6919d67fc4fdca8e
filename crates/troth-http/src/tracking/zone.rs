//! Times as a customer reads them: in their own time zone, named, with words for
//! today and tomorrow. Zones come from the IANA database through `jiff`: the
//! system's copy when there is one (it gets updates between releases), else the
//! copy bundled into the binary, so a container without tzdata still shows local
//! times rather than failing over to UTC.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp as JiffTime, ZonedDateTime};
use troth_core::Timestamp;

/// A time zone by its IANA name (`Europe/London`).
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Default for Zone {
    fn default() -> Zone {
        Zone::utc()
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name
    }
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        }
    }

    /// The zone an IANA name names (`Europe/London`, `UTC`); `None` for anything
    /// else, including fixed offsets and POSIX strings, which move with no DST
    /// rules and would show a customer the wrong hour half the year.
    pub fn named(name: &str) -> Option<Zone> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || name.starts_with(['+', '-']) || name.contains("..") {
            return None;
        }
        let tz = TimeZone::get(name).ok()?;
        Some(Zone {
            name: tz.iana_name().unwrap_or(name).to_owned(),
            tz,
        })
    }

    /// The customer's zone when it is a real one, else the retailer's.
    pub fn choose(customer: Option<&str>, retailer: &Zone) -> Zone {
        customer.and_then(Zone::named).unwrap_or_else(|| retailer.clone())
    }

    /// The IANA name, as the page names the zone.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    fn at(&self, t: Timestamp) -> Option<ZonedDateTime> {
        JiffTime::from_microsecond(t.micros())
            .ok()
            .map(|ts| ts.to_zoned_datetime(self.tz.clone()))
    }

    /// `09:15 BST`.
    pub fn time(&self, t: Timestamp) -> String {
        match self.at(t) {
            Some(z) => z.strftime("%H:%M %Z").to_string(),
            None => t.to_string(),
        }
    }

    /// `2026-11-23 12:37 CET`: the one format staff pages give an instant in.
    pub fn clock(&self, t: Timestamp) -> String {
        match self.at(t) {
            Some(z) => z.strftime("%Y-%m-%d %H:%M %Z").to_string(),
            None => t.to_string(),
        }
    }

    /// `2026-11-23 11:00–12:00 CET`; both ends whole when the day or the
    /// abbreviation changes between them.
    pub fn clock_span(&self, start: Timestamp, end: Timestamp) -> String {
        match (self.at(start), self.at(end)) {
            (Some(s), Some(e))
                if s.date() == e.date() && s.strftime("%Z").to_string() == e.strftime("%Z").to_string() =>
            {
                format!("{}–{}", s.strftime("%Y-%m-%d %H:%M"), e.strftime("%H:%M %Z"))
            }
            _ => format!("{} – {}", self.clock(start), self.clock(end)),
        }
    }

    /// `today`, `tomorrow`, `yesterday` or `Mon 26 Oct`, the day of `t` seen from `now`.
    pub fn day(&self, t: Timestamp, now: Timestamp) -> String {
        let (Some(z), Some(n)) = (self.at(t), self.at(now)) else {
            return t.to_string();
        };
        let (day, today) = (z.date(), n.date());
        if day == today {
            "today".into()
        } else if today.tomorrow().ok() == Some(day) {
            "tomorrow".into()
        } else if today.yesterday().ok() == Some(day) {
            "yesterday".into()
        } else if day.year() == today.year() {
            z.strftime("%a %-d %b").to_string()
        } else {
            z.strftime("%a %-d %b %Y").to_string()
        }
    }

    /// `today, 09:15 BST`.
    pub fn when(&self, t: Timestamp, now: Timestamp) -> String {
        format!("{}, {}", self.day(t, now), self.time(t))
    }

    /// A window: `today, 10:00–11:00 GMT`; the abbreviation on both ends when a
    /// clock change falls inside it, the day on both ends when it spans midnight.
    pub fn window(&self, start: Timestamp, end: Timestamp, now: Timestamp) -> String {
        let (Some(s), Some(e)) = (self.at(start), self.at(end)) else {
            return format!("{start} – {end}");
        };
        if s.date() != e.date() {
            return format!("{} – {}", self.when(start, now), self.when(end, now));
        }
        let (s_abbr, e_abbr) = (s.strftime("%Z").to_string(), e.strftime("%Z").to_string());
        if s_abbr == e_abbr {
            format!(
                "{}, {}–{} {e_abbr}",
                self.day(start, now),
                s.strftime("%H:%M"),
                e.strftime("%H:%M")
            )
        } else {
            format!("{}, {} – {}", self.day(start, now), self.time(start), self.time(end))
        }
    }

    /// The local date of `t`, `YYYY-MM-DD` (for the reschedule form).
    pub fn date(&self, t: Timestamp) -> String {
        self.at(t).map(|z| z.date().to_string()).unwrap_or_default()
    }

    /// The instant a local date and time (`2026-12-01T14:00`, as a `datetime-local`
    /// input sends it) names here; a time a clock change skips reads as the hour after.
    pub fn local_datetime(&self, text: &str) -> Option<Timestamp> {
        // A date alone would parse as its midnight: a time must be given.
        let (date, time) = text.trim().split_once(['T', 't', ' '])?;
        let civil: jiff::civil::DateTime = format!("{date}T{time}").parse().ok()?;
        let zoned = civil.to_zoned_datetime(self.tz.clone()).ok()?;
        Some(Timestamp(zoned.timestamp().as_microsecond()))
    }

    /// `t` as a `datetime-local` input's value here, to the minute: `2026-12-01T14:00`.
    pub fn local_input(&self, t: Timestamp) -> String {
        self.at(t)
            .map(|z| z.strftime("%Y-%m-%dT%H:%M").to_string())
            .unwrap_or_default()
    }

    /// The instant a local day (`YYYY-MM-DD`) reaches `hour` o'clock here. An hour
    /// a clock change skips is read as the hour after it, as clocks do.
    pub fn local(&self, date: &str, hour: i8) -> Option<Timestamp> {
        let date: Date = date.parse().ok()?;
        let zoned = date.at(hour, 0, 0, 0).to_zoned_datetime(self.tz.clone()).ok()?;
        Some(Timestamp(zoned.timestamp().as_microsecond()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn only_real_zone_names_are_taken() {
        assert_eq!(Zone::named("Europe/London").unwrap().name(), "Europe/London");
        assert_eq!(Zone::named(" UTC ").unwrap().name(), "UTC");
        for bad in [
            "",
            "Mars/Olympus",
            "+01:00",
            "../../etc/passwd",
            "EST5EDT,M3.2.0,M11.1.0",
        ] {
            assert!(Zone::named(bad).is_none(), "{bad}");
        }
        let shop = Zone::named("Europe/Berlin").unwrap();
        assert_eq!(Zone::choose(Some("Nowhere/Town"), &shop).name(), "Europe/Berlin");
        assert_eq!(Zone::choose(Some("Europe/London"), &shop).name(), "Europe/London");
        assert_eq!(Zone::choose(None, &shop).name(), "Europe/Berlin");
    }

    #[test]
    fn a_local_date_and_time_as_forms_send_it() {
        let paris = Zone::named("Europe/Paris").unwrap();
        let t = paris.local_datetime("2026-12-01T14:00").unwrap();
        assert_eq!(t.to_string(), "2026-12-01T13:00:00.000000Z");
        assert_eq!(paris.local_input(t), "2026-12-01T14:00");
        // Summer time: two hours ahead of UTC.
        assert_eq!(
            paris.local_datetime("2026-07-01T14:30").unwrap().to_string(),
            "2026-07-01T12:30:00.000000Z"
        );
        for bad in ["", "tomorrow", "2026-12-01", "2026-13-01T14:00"] {
            assert!(paris.local_datetime(bad).is_none(), "{bad}");
        }
    }

    /// British Summer Time ends on Sunday 25 October 2026 at 01:00 UTC: the same
    /// UTC hour reads an hour earlier after it, and the zone says which.
    #[test]
    fn london_across_the_end_of_summer_time() {
        let london = Zone::named("Europe/London").unwrap();
        let now = t("2026-10-24T12:00:00Z");
        assert_eq!(london.when(t("2026-10-24T08:30:00Z"), now), "today, 09:30 BST");
        assert_eq!(london.when(t("2026-10-26T08:30:00Z"), now), "Mon 26 Oct, 08:30 GMT");
        assert_eq!(london.day(t("2026-10-25T08:30:00Z"), now), "tomorrow");
        // A window the clock change falls into names both sides.
        assert_eq!(
            london.window(t("2026-10-24T23:30:00Z"), t("2026-10-25T01:30:00Z"), now),
            "tomorrow, 00:30 BST – 01:30 GMT"
        );
        assert_eq!(
            london.window(t("2026-10-26T10:00:00Z"), t("2026-10-26T11:00:00Z"), now),
            "Mon 26 Oct, 10:00–11:00 GMT"
        );
        // A customer's 08:00 is 07:00 UTC before the change and 08:00 UTC after it.
        assert_eq!(london.local("2026-10-24", 8), Some(t("2026-10-24T07:00:00Z")));
        assert_eq!(london.local("2026-10-26", 8), Some(t("2026-10-26T08:00:00Z")));
        assert_eq!(london.date(t("2026-10-24T23:30:00Z")), "2026-10-25");
        assert_eq!(Zone::utc().time(t("2026-10-24T23:30:00Z")), "23:30 UTC");
    }

    #[test]
    fn windows_over_midnight_give_both_days() {
        let utc = Zone::utc();
        let now = t("2026-03-02T12:00:00Z");
        assert_eq!(
            utc.window(t("2026-03-02T22:00:00Z"), t("2026-03-03T01:00:00Z"), now),
            "today, 22:00 UTC – tomorrow, 01:00 UTC"
        );
        assert_eq!(utc.day(t("2027-01-05T10:00:00Z"), now), "Tue 5 Jan 2027");
        assert_eq!(utc.day(t("2026-03-01T10:00:00Z"), now), "yesterday");
    }
}
