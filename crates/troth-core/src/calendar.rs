//! Business hours: a team's working calendar (time zone, opening hours per
//! weekday, holidays), and time counted in it. A service level of "4 business
//! hours" for a case opened on Friday at 17:50 in a 09:00–18:00 week is due on
//! Monday at 12:50, in the team's zone, whatever the zone of the server.

use std::collections::BTreeSet;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;

use crate::Timestamp;

/// Opening hours when none are set: Monday to Friday, 09:00–17:00.
pub const DEFAULT_HOURS: &str = "Mon-Fri 09:00-17:00";

/// How far ahead business time is looked for: a calendar open less than this
/// often (or never) says "never" rather than searching on.
const HORIZON_DAYS: usize = 3 * 366;

/// Why a calendar's settings were refused; `field` names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CalendarError {
    pub field: String,
    pub message: String,
}

fn refuse(field: &str, message: impl Into<String>) -> CalendarError {
    CalendarError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// When a team works.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    zone: TimeZone,
    zone_name: String,
    /// Opening and closing, in minutes from midnight, per weekday from Monday; closed when `None`.
    hours: [Option<(u16, u16)>; 7],
    holidays: BTreeSet<Date>,
}

impl Default for Calendar {
    /// Monday to Friday, 09:00–17:00 UTC, no holidays.
    fn default() -> Self {
        Calendar::new("UTC", "Mon-Fri 09:00-17:00", &[])
            .unwrap_or_else(|_| unreachable!("the default calendar is valid"))
    }
}

impl Calendar {
    /// A calendar in the IANA zone `zone` (e.g. `Europe/Paris`), open as `hours`
    /// says (e.g. `Mon-Fri 09:00-18:00, Sat 10:00-13:00`), closed on `holidays`
    /// (`YYYY-MM-DD`, in the zone). Errors name the setting (`timezone`, `hours`,
    /// `holidays[2]`).
    pub fn new(zone: &str, hours: &str, holidays: &[String]) -> Result<Calendar, CalendarError> {
        let tz = TimeZone::get(zone).map_err(|_| {
            refuse(
                "timezone",
                format!("{zone:?} is not a time zone; use an IANA name such as Europe/Paris"),
            )
        })?;
        let hours = parse_hours(hours)?;
        let mut days = BTreeSet::new();
        for (i, day) in holidays.iter().enumerate() {
            let date: Date = day.parse().map_err(|_| {
                refuse(
                    &format!("holidays[{i}]"),
                    format!("{day:?} is not a date; write YYYY-MM-DD"),
                )
            })?;
            days.insert(date);
        }
        Ok(Calendar {
            zone: tz,
            zone_name: zone.to_owned(),
            hours,
            holidays: days,
        })
    }

    /// The IANA name of the calendar's zone.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// The instant when `business_us` of working time has passed since `start`
    /// (`start` itself when it is zero); [`Timestamp::LATEST`] if the calendar is not
    /// open that long within about three years.
    pub fn add(&self, start: Timestamp, business_us: i64) -> Timestamp {
        if business_us <= 0 {
            return start;
        }
        let mut remaining = business_us;
        let mut date = self.date_of(start);
        for _ in 0..HORIZON_DAYS {
            if let Some((open, close)) = self.open_on(date) {
                let from = open.max(start.micros());
                if from < close {
                    let available = close - from;
                    if remaining <= available {
                        return Timestamp(from + remaining);
                    }
                    remaining -= available;
                }
            }
            date = match date.tomorrow() {
                Ok(next) => next,
                Err(_) => break,
            };
        }
        Timestamp::LATEST
    }

    /// Working time, in microseconds, between `from` and `to` (zero if `to` is not later).
    pub fn between(&self, from: Timestamp, to: Timestamp) -> i64 {
        if to <= from {
            return 0;
        }
        let mut total = 0;
        let mut date = self.date_of(from);
        let last = self.date_of(to);
        while date <= last {
            if let Some((open, close)) = self.open_on(date) {
                let (start, end) = (open.max(from.micros()), close.min(to.micros()));
                total += (end - start).max(0);
            }
            date = match date.tomorrow() {
                Ok(next) => next,
                Err(_) => break,
            };
        }
        total
    }

    fn date_of(&self, at: Timestamp) -> Date {
        let instant = jiff::Timestamp::from_microsecond(at.micros()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        instant.to_zoned_datetime(self.zone.clone()).date()
    }

    /// Opening and closing on `date`, as instants in µs, unless closed all day.
    fn open_on(&self, date: Date) -> Option<(i64, i64)> {
        if self.holidays.contains(&date) {
            return None;
        }
        let (open, close) = self.hours[date.weekday().to_monday_zero_offset() as usize]?;
        let at = |minutes: u16| -> Option<i64> {
            let time = jiff::civil::Time::new((minutes / 60) as i8, (minutes % 60) as i8, 0, 0).ok()?;
            let zoned = date.to_datetime(time).to_zoned_datetime(self.zone.clone()).ok()?;
            Some(zoned.timestamp().as_microsecond())
        };
        // 24:00 is the start of the next day.
        let close = if close == 24 * 60 {
            let next = date.tomorrow().ok()?;
            next.to_datetime(jiff::civil::Time::midnight())
                .to_zoned_datetime(self.zone.clone())
                .ok()?
                .timestamp()
                .as_microsecond()
        } else {
            at(close)?
        };
        Some((at(open)?, close))
    }
}

/// Reads opening hours such as `Mon-Fri 09:00-18:00, Sat 10:00-13:00`.
fn parse_hours(text: &str) -> Result<[Option<(u16, u16)>; 7], CalendarError> {
    let bad = |message: String| refuse("hours", message);
    let mut hours = [None; 7];
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (days, span) = part.split_once(' ').ok_or_else(|| {
            bad(format!(
                "{part:?} needs days and a time span, e.g. \"Mon-Fri 09:00-18:00\""
            ))
        })?;
        let (first, last) = match days.split_once('-') {
            Some((a, b)) => (weekday(a), weekday(b)),
            None => (weekday(days), weekday(days)),
        };
        let (Some(first), Some(last)) = (first, last) else {
            return Err(bad(format!(
                "{days:?} is not a day or a range of days (Mon, Tue, … Sun)"
            )));
        };
        let (open, close) = span
            .trim()
            .split_once('-')
            .and_then(|(a, b)| Some((clock(a)?, clock(b)?)))
            .ok_or_else(|| bad(format!("{span:?} is not a time span such as 09:00-18:00")))?;
        if open >= close {
            return Err(bad(format!("{span:?} closes before it opens")));
        }
        let mut day = first;
        loop {
            let slot = &mut hours[day.to_monday_zero_offset() as usize];
            if slot.is_some() {
                return Err(bad(format!("{:?} is given twice", weekday_name(day))));
            }
            *slot = Some((open, close));
            if day == last {
                break;
            }
            day = day.next();
        }
    }
    if hours.iter().all(Option::is_none) {
        return Err(bad("no opening hours; e.g. \"Mon-Fri 09:00-18:00\"".into()));
    }
    Ok(hours)
}

fn weekday(name: &str) -> Option<Weekday> {
    Some(match name.trim().to_ascii_lowercase().get(..3)? {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

fn weekday_name(day: Weekday) -> &'static str {
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][day.to_monday_zero_offset() as usize]
}

/// `HH:MM` as minutes from midnight, 00:00 to 24:00.
fn clock(text: &str) -> Option<u16> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn four_business_hours_from_friday_evening_end_on_monday() {
        let paris = Calendar::new("Europe/Paris", "Mon-Fri 09:00-18:00", &[]).unwrap();
        // Friday 2026-11-27 17:50 in Paris (UTC+1): 10 minutes on Friday, 3 h 50 on Monday.
        let due = paris.add(at("2026-11-27T16:50:00Z"), 4 * HOUR);
        assert_eq!(due, at("2026-11-30T11:50:00Z"), "Monday 12:50 in Paris");
        // Opened after closing: the clock starts on Monday morning.
        let week = Calendar::new("UTC", "Mon-Fri 09:00-17:00", &[]).unwrap();
        assert_eq!(
            week.add(at("2026-11-27T17:50:00Z"), 4 * HOUR),
            at("2026-11-30T13:00:00Z")
        );
    }

    #[test]
    fn holidays_and_weekends_are_skipped_and_between_counts_only_open_time() {
        let week = Calendar::new("UTC", "Mon-Fri 09:00-17:00", &["2026-12-25".into()]).unwrap();
        // Thursday 24 December 16:00 + 2 h: 1 h on Thursday, Friday is Christmas, 1 h on Monday.
        let due = week.add(at("2026-12-24T16:00:00Z"), 2 * HOUR);
        assert_eq!(due, at("2026-12-28T10:00:00Z"));
        assert_eq!(week.between(at("2026-12-24T16:00:00Z"), due), 2 * HOUR);
        assert_eq!(
            week.between(at("2026-12-26T10:00:00Z"), at("2026-12-27T23:00:00Z")),
            0,
            "a weekend"
        );
        assert_eq!(week.between(due, at("2026-12-24T16:00:00Z")), 0, "backwards");
    }

    #[test]
    fn daylight_saving_moves_the_hours_with_the_zone() {
        let paris = Calendar::new("Europe/Paris", "Mon-Sun 09:00-10:00", &[]).unwrap();
        // Summer time ends on 25 October 2026: 09:00 is 07:00Z on the Saturday, 08:00Z on the Sunday.
        assert_eq!(paris.add(at("2026-10-24T07:30:00Z"), HOUR), at("2026-10-25T08:30:00Z"));
    }

    #[test]
    fn settings_are_refused_with_the_field_named() {
        assert_eq!(
            Calendar::new("Mars/Olympus", "Mon 09:00-10:00", &[]).unwrap_err().field,
            "timezone"
        );
        for hours in [
            "",
            "Mon",
            "Mon 18:00-09:00",
            "Moon 09:00-10:00",
            "Mon 9-10",
            "Mon-Fri 09:00-17:00, Fri 10:00-11:00",
        ] {
            assert_eq!(
                Calendar::new("UTC", hours, &[]).unwrap_err().field,
                "hours",
                "{hours:?}"
            );
        }
        let err = Calendar::new("UTC", "Mon 09:00-10:00", &["2026-12-25".into(), "25/12".into()]).unwrap_err();
        assert_eq!(err.field, "holidays[1]");
    }

    #[test]
    fn a_calendar_open_all_day_every_day_counts_wall_time() {
        let always = Calendar::new("UTC", "Mon-Sun 00:00-24:00", &[]).unwrap();
        let start = at("2026-11-27T16:50:00Z");
        assert_eq!(always.add(start, 30 * HOUR), start.plus_us(30 * HOUR));
        assert_eq!(always.between(start, start.plus_us(30 * HOUR)), 30 * HOUR);
    }
}
