//! Calendar events, the schedule syntax of Proxmox Backup Server (a subset of
//! systemd.time(7)): `[WEEKDAYS] [[YEARS-]MONTHS-DAYS] [HOURS:MINUTES[:SECONDS]]`
//! or a shortcut such as `daily`. Schedules are typed into the web form, so
//! parsing refuses anything PBS would not accept with a message naming the
//! offending part, and [`CalendarEvent::next_after`] answers in the wall-clock
//! time of the zone it is given. Daylight saving time follows systemd's
//! wall-clock walk: a wall-clock time that does not exist on a spring-forward
//! day is skipped (a `02:30` job does not run that day), and one that occurs
//! twice on a fall-back day matches only at its first occurrence, so no
//! schedule fires twice for the same wall-clock time.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, Zoned};

/// Longer input is refused before looking at it: no real schedule comes near.
const MAX_LEN: usize = 256;

/// systemd's and PBS's last year; it also bounds the search in `next_after`, so
/// a schedule that can never fire again (`2020-01-01`, `*-02-30`) ends there.
const MAX_YEAR: u16 = 2199;

/// Every day of the week, bit 0 being Monday.
const ALL_WEEKDAYS: u8 = 0x7f;

const WEEKDAY_NAMES: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

/// Shortcut names (with aliases) and what they stand for, as in the PBS
/// "Calendar Events" table.
const SHORTCUTS: [(&str, &str, &str); 10] = [
    ("minutely", "minutely", "*-*-* *:*:00"),
    ("hourly", "hourly", "*-*-* *:00:00"),
    ("daily", "daily", "*-*-* 00:00:00"),
    ("weekly", "weekly", "mon *-*-* 00:00:00"),
    ("monthly", "monthly", "*-*-01 00:00:00"),
    ("yearly", "yearly", "*-01-01 00:00:00"),
    ("annually", "yearly", "*-01-01 00:00:00"),
    ("quarterly", "quarterly", "*-01,04,07,10-01 00:00:00"),
    ("semiannually", "semiannually", "*-01,07-01 00:00:00"),
    ("semi-annually", "semiannually", "*-01,07-01 00:00:00"),
];

/// Why a schedule was refused. The quoted text is the part of the input at
/// fault, so the web form can show it next to the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CalendarError {
    #[error("the schedule is empty: give a weekday, a date, a time or a shortcut such as 'daily'")]
    Empty,
    #[error("the schedule is too long ({len} characters, at most {max})")]
    TooLong { len: usize, max: usize },
    #[error("unexpected character {ch:?} at position {position}: use ASCII letters, digits, spaces and * , . - / :")]
    BadChar { ch: char, position: usize },
    #[error("'{text}': {field} must be {min}-{max}")]
    OutOfRange {
        text: String,
        field: &'static str,
        min: u16,
        max: u16,
    },
    #[error("'{text}': {field} '{value}' is not a number")]
    NotANumber {
        text: String,
        field: &'static str,
        value: String,
    },
    #[error("'{text}': a {field} value is missing")]
    MissingValue { text: String, field: &'static str },
    #[error("'{text}': {field} range {start}..{end} runs backwards")]
    Backwards {
        text: String,
        field: &'static str,
        start: u16,
        end: u16,
    },
    #[error("'{text}': the {field} repetition step must be 1-{max}")]
    BadStep {
        text: String,
        field: &'static str,
        max: u16,
    },
    #[error("'{text}': '*' cannot be combined with other {field} values")]
    StarInList { text: String, field: &'static str },
    #[error("'{text}': unknown weekday '{word}' (use mon, tue, wed, thu, fri, sat, sun)")]
    UnknownWeekday { text: String, word: String },
    #[error("'{text}': {what} is not supported by Proxmox Backup Server schedules")]
    Unsupported { text: String, what: &'static str },
    #[error("'{text}': the shortcut '{shortcut}' must be used alone")]
    ShortcutNotAlone { text: String, shortcut: String },
    #[error("'{text}': 'UTC' needs a weekday, a date or a time before it")]
    OnlyZone { text: String },
    #[error("'{text}': expected a weekday (mon..fri), a date (YYYY-MM-DD or MM-DD) or a time (HH:MM or HH:MM:SS)")]
    Unrecognized { text: String },
    #[error("'{text}': the {part} part is given twice (combine values with ',' instead)")]
    Duplicate { text: String, part: &'static str },
    #[error(
        "'{text}': the {part} part must come before the {other} part (order: weekday, date, time)"
    )]
    Order {
        text: String,
        part: &'static str,
        other: &'static str,
    },
    #[error("'{text}': a date is MONTH-DAY or YEAR-MONTH-DAY")]
    DateShape { text: String },
    #[error("'{text}': a time is HOUR:MINUTE or HOUR:MINUTE:SECOND")]
    TimeShape { text: String },
}

/// The bounds and printed width of one numeric field.
struct FieldSpec {
    name: &'static str,
    min: u16,
    max: u16,
    width: usize,
}

const YEAR: FieldSpec = FieldSpec {
    name: "year",
    min: 1970,
    max: MAX_YEAR,
    width: 4,
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    width: 2,
};
const DAY: FieldSpec = FieldSpec {
    name: "day",
    min: 1,
    max: 31,
    width: 2,
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    width: 2,
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    width: 2,
};
const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    width: 2,
};

/// One comma-separated value of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    Single(u16),
    Range(u16, u16),
    /// `start/step` or `start..end/step`; `*/step` is stored with the field's
    /// minimum as start, so `0/15` and `*/15` normalize alike.
    Step {
        start: u16,
        end: Option<u16>,
        step: u16,
    },
}

impl Item {
    fn start(self) -> u16 {
        match self {
            Item::Single(v) | Item::Range(v, _) | Item::Step { start: v, .. } => v,
        }
    }

    fn contains(self, value: u16) -> bool {
        match self {
            Item::Single(v) => v == value,
            Item::Range(a, b) => (a..=b).contains(&value),
            Item::Step { start, end, step } => {
                value >= start
                    && end.is_none_or(|end| value <= end)
                    && (value - start) % step.max(1) == 0
            }
        }
    }
}

/// A numeric field; no items means `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    items: Vec<Item>,
}

impl Field {
    fn any() -> Field {
        Field { items: Vec::new() }
    }

    fn single(value: u16) -> Field {
        Field {
            items: vec![Item::Single(value)],
        }
    }

    fn is_any(&self) -> bool {
        self.items.is_empty()
    }

    fn contains(&self, value: u16) -> bool {
        self.is_any() || self.items.iter().any(|item| item.contains(value))
    }

    /// Bit `v` set when the field matches `v`; fields up to 63 only.
    fn mask(&self, spec: &FieldSpec) -> u64 {
        (spec.min..=spec.max.min(63))
            .filter(|v| self.contains(*v))
            .fold(0, |mask, v| mask | 1 << v)
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, spec: &FieldSpec) -> fmt::Result {
        if self.is_any() {
            return f.write_str("*");
        }
        let width = spec.width;
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match *item {
                Item::Single(v) => write!(f, "{v:0width$}")?,
                Item::Range(a, b) => write!(f, "{a:0width$}..{b:0width$}")?,
                Item::Step {
                    start,
                    end: None,
                    step,
                } if start == spec.min => write!(f, "*/{step}")?,
                Item::Step {
                    start,
                    end: None,
                    step,
                } => write!(f, "{start:0width$}/{step}")?,
                Item::Step {
                    start,
                    end: Some(end),
                    step,
                } => write!(f, "{start:0width$}..{end:0width$}/{step}")?,
            }
        }
        Ok(())
    }
}

/// A parsed schedule. Compare and store it by its normalized text
/// ([`fmt::Display`]), which parses back to the same event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CalendarEvent {
    /// Canonical shortcut name when the event was written as one, kept so the
    /// normalized text stays as short as what the user typed.
    shortcut: Option<&'static str>,
    /// PBS accepts a trailing `UTC`: the event is then matched in UTC whatever
    /// zone `next_after` is given.
    utc: bool,
    weekdays: u8,
    year: Field,
    month: Field,
    day: Field,
    hour: Field,
    minute: Field,
    second: Field,
}

/// Which parts were seen, to refuse repeats and a wrong order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Weekday,
    Date,
    Time,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Weekday => "weekday",
            Part::Date => "date",
            Part::Time => "time",
        }
    }
}

impl CalendarEvent {
    /// Parses a schedule as PBS writes it; see the module documentation.
    pub(crate) fn parse(text: &str) -> Result<CalendarEvent, CalendarError> {
        let len = text.chars().count();
        if len > MAX_LEN {
            return Err(CalendarError::TooLong { len, max: MAX_LEN });
        }
        if let Some((position, ch)) = text
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || " \t*,.-/:~@".contains(*c)))
        {
            return Err(CalendarError::BadChar {
                ch,
                position: position + 1,
            });
        }
        let whole = text.trim();
        let mut tokens: Vec<&str> = whole.split_ascii_whitespace().collect();
        if tokens.is_empty() {
            return Err(CalendarError::Empty);
        }
        if whole.starts_with('@') {
            return Err(CalendarError::Unsupported {
                text: whole.into(),
                what: "a Unix timestamp ('@…')",
            });
        }
        let utc = tokens.last().is_some_and(|t| t.eq_ignore_ascii_case("utc"));
        if utc {
            tokens.pop();
            if tokens.is_empty() {
                return Err(CalendarError::OnlyZone { text: whole.into() });
            }
        }
        for token in &tokens {
            let lower = token.to_ascii_lowercase();
            if let Some((_, canonical, expansion)) =
                SHORTCUTS.iter().find(|(name, _, _)| *name == lower)
            {
                if tokens.len() > 1 {
                    return Err(CalendarError::ShortcutNotAlone {
                        text: whole.into(),
                        shortcut: lower,
                    });
                }
                let mut event = Self::parse_parts(&expansion.split(' ').collect::<Vec<_>>())?;
                event.shortcut = Some(canonical);
                event.utc = utc;
                return Ok(event);
            }
        }
        let mut event = Self::parse_parts(&tokens)?;
        event.utc = utc;
        Ok(event)
    }

    fn parse_parts(tokens: &[&str]) -> Result<CalendarEvent, CalendarError> {
        let mut event = CalendarEvent {
            shortcut: None,
            utc: false,
            weekdays: ALL_WEEKDAYS,
            year: Field::any(),
            month: Field::any(),
            day: Field::any(),
            // A missing time part means midnight (PBS docs, "Introduction and Format").
            hour: Field::single(0),
            minute: Field::single(0),
            second: Field::single(0),
        };
        let mut last: Option<Part> = None;
        for &token in tokens {
            let part = classify(token)?;
            if let Some(last) = last {
                if part == last {
                    return Err(CalendarError::Duplicate {
                        text: token.into(),
                        part: part.name(),
                    });
                }
                if part < last {
                    return Err(CalendarError::Order {
                        text: token.into(),
                        part: part.name(),
                        other: last.name(),
                    });
                }
            }
            last = Some(part);
            match part {
                Part::Weekday => event.weekdays = parse_weekdays(token)?,
                Part::Date => {
                    let fields: Vec<&str> = token.split('-').collect();
                    match fields.as_slice() {
                        [month, day] => {
                            event.month = parse_field(token, month, &MONTH)?;
                            event.day = parse_field(token, day, &DAY)?;
                        }
                        [year, month, day] => {
                            event.year = parse_field(token, year, &YEAR)?;
                            event.month = parse_field(token, month, &MONTH)?;
                            event.day = parse_field(token, day, &DAY)?;
                        }
                        _ => return Err(CalendarError::DateShape { text: token.into() }),
                    }
                }
                Part::Time => {
                    let fields: Vec<&str> = token.split(':').collect();
                    let (hour, minute, second) = match fields.as_slice() {
                        [hour, minute] => (hour, minute, None),
                        [hour, minute, second] => (hour, minute, Some(second)),
                        _ => return Err(CalendarError::TimeShape { text: token.into() }),
                    };
                    event.hour = parse_field(token, hour, &HOUR)?;
                    event.minute = parse_field(token, minute, &MINUTE)?;
                    // PBS and systemd: seconds left out mean :00, not every second.
                    event.second = match second {
                        Some(s) if s.contains('.') && !s.contains("..") => {
                            return Err(CalendarError::Unsupported {
                                text: token.into(),
                                what: "sub-second precision",
                            })
                        }
                        Some(s) => parse_field(token, s, &SECOND)?,
                        None => Field::single(0),
                    };
                }
            }
        }
        Ok(event)
    }

    /// The first whole second strictly after `after` that matches, in
    /// `after`'s time zone (in UTC for a `… UTC` event), returned in `after`'s
    /// zone. Wall-clock times missing on a spring-forward day are skipped and
    /// repeated ones on a fall-back day match only their first occurrence.
    /// None when nothing matches up to the end of year 2199.
    pub(crate) fn next_after(&self, after: &Zoned) -> Option<Zoned> {
        let tz = self.zone(after);
        let after_ts = after.timestamp();
        let start = tz.to_datetime(after_ts);
        let found = self.search(&tz, start, after_ts)?;
        Some(found.to_zoned(after.time_zone().clone()))
    }

    /// Whether `when` is one of the event's instants (whole second, fields
    /// matching, and for a repeated wall-clock time the first occurrence).
    /// The tests hold `next_after` to it.
    #[cfg(test)]
    pub(crate) fn matches(&self, when: &Zoned) -> bool {
        let tz = self.zone(when);
        let ts = when.timestamp();
        if ts.subsec_nanosecond() != 0 {
            return false;
        }
        let dt = tz.to_datetime(ts);
        self.matches_date(dt.date())
            && self.hour.contains(dt.hour().unsigned_abs().into())
            && self.minute.contains(dt.minute().unsigned_abs().into())
            && self.second.contains(dt.second().unsigned_abs().into())
            && first_instant(&tz, dt) == Some(ts)
    }

    fn zone(&self, when: &Zoned) -> TimeZone {
        if self.utc {
            TimeZone::UTC
        } else {
            when.time_zone().clone()
        }
    }

    #[cfg(test)]
    fn matches_date(&self, date: Date) -> bool {
        let Ok(year) = u16::try_from(date.year()) else {
            return false;
        };
        let weekday = date.weekday().to_monday_zero_offset();
        self.year.contains(year)
            && self.month.contains(date.month().unsigned_abs().into())
            && self.day.contains(date.day().unsigned_abs().into())
            && self.weekdays & (1 << weekday) != 0
    }

    /// Walks the wall clock field by field from `start`, skipping whole years,
    /// months and days that cannot match, so even a schedule that never fires
    /// again costs a few thousand steps.
    fn search(&self, tz: &TimeZone, start: DateTime, after: Timestamp) -> Option<Timestamp> {
        let months = self.month.mask(&MONTH);
        let days = self.day.mask(&DAY);
        let hours = self.hour.mask(&HOUR);
        let minutes = self.minute.mask(&MINUTE);
        let seconds = self.second.mask(&SECOND);
        let first_year = i16::try_from(YEAR.min).ok()?.max(start.year());
        let last_year = i16::try_from(MAX_YEAR).ok()?;
        for year in first_year..=last_year {
            if !self.year.contains(year.unsigned_abs()) {
                continue;
            }
            for month in 1..=12i8 {
                if months & (1 << month) == 0 || (year, month) < (start.year(), start.month()) {
                    continue;
                }
                let Ok(first) = Date::new(year, month, 1) else {
                    continue;
                };
                for day in 1..=first.days_in_month() {
                    let Ok(date) = Date::new(year, month, day) else {
                        continue;
                    };
                    if days & (1 << day) == 0
                        || date < start.date()
                        || self.weekdays & (1 << date.weekday().to_monday_zero_offset()) == 0
                    {
                        continue;
                    }
                    // Only on the start day do the hours (and so on down) have a
                    // lower bound; later days start at midnight.
                    let on_start_day = date == start.date();
                    for hour in 0..24i8 {
                        if hours & (1 << hour) == 0 || (on_start_day && hour < start.hour()) {
                            continue;
                        }
                        let on_start_hour = on_start_day && hour == start.hour();
                        for minute in 0..60i8 {
                            if minutes & (1 << minute) == 0
                                || (on_start_hour && minute < start.minute())
                            {
                                continue;
                            }
                            let on_start_minute = on_start_hour && minute == start.minute();
                            for second in 0..60i8 {
                                if seconds & (1 << second) == 0
                                    || (on_start_minute && second < start.second())
                                {
                                    continue;
                                }
                                let dt = date.at(hour, minute, second, 0);
                                // The wall-clock second holding `after` and, in a
                                // fall-back hour, first occurrences already past
                                // resolve to instants not after `after`.
                                if let Some(ts) = first_instant(tz, dt) {
                                    if ts > after {
                                        return Some(ts);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        None
    }
}

/// The instant a wall-clock time denotes in `tz`: None inside a spring-forward
/// gap, the earlier of the two in a fall-back fold.
fn first_instant(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    let offset = match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset,
        AmbiguousOffset::Gap { .. } => return None,
        AmbiguousOffset::Fold { before, .. } => before,
    };
    offset.to_timestamp(dt).ok()
}

fn classify(token: &str) -> Result<Part, CalendarError> {
    if token.contains('~') {
        return Err(CalendarError::Unsupported {
            text: token.into(),
            what: "the last-day-of-month syntax '~'",
        });
    }
    if token.starts_with(|c: char| c.is_ascii_alphabetic()) {
        if token.contains('/') {
            return Err(CalendarError::Unsupported {
                text: token.into(),
                what: "a time zone other than UTC (schedules use the appliance's time zone)",
            });
        }
        return Ok(Part::Weekday);
    }
    match (token.contains('-'), token.contains(':')) {
        (true, false) => Ok(Part::Date),
        (false, true) => Ok(Part::Time),
        _ => Err(CalendarError::Unrecognized { text: token.into() }),
    }
}

fn parse_weekdays(token: &str) -> Result<u8, CalendarError> {
    let day = |word: &str| -> Result<u8, CalendarError> {
        if word.is_empty() {
            return Err(CalendarError::MissingValue {
                text: token.into(),
                field: "weekday",
            });
        }
        let lower = word.to_ascii_lowercase();
        WEEKDAY_NAMES
            .iter()
            .zip(0u8..)
            .find(|((short, long), _)| lower == *short || lower == *long)
            .map(|(_, index)| index)
            .ok_or_else(|| CalendarError::UnknownWeekday {
                text: token.into(),
                word: word.into(),
            })
    };
    let mut bits = 0u8;
    for item in token.split(',') {
        match item.split_once("..") {
            Some((first, last)) => {
                let (first, last) = (day(first)?, day(last)?);
                // As in PBS, `sat..mon` wraps over the weekend.
                let mut d = first;
                loop {
                    bits |= 1 << d;
                    if d == last {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => bits |= 1 << day(item)?,
        }
    }
    Ok(bits)
}

fn parse_field(token: &str, text: &str, spec: &FieldSpec) -> Result<Field, CalendarError> {
    if text == "*" {
        return Ok(Field::any());
    }
    let mut items = Vec::new();
    for item in text.split(',') {
        items.push(parse_item(token, item, spec)?);
    }
    // Normalized text lists values in order, once each.
    items.sort_by_key(|item| (item.start(), *item));
    items.dedup();
    Ok(Field { items })
}

fn parse_item(token: &str, item: &str, spec: &FieldSpec) -> Result<Item, CalendarError> {
    if item.is_empty() {
        return Err(CalendarError::MissingValue {
            text: token.into(),
            field: spec.name,
        });
    }
    let (values, step) = match item.split_once('/') {
        Some((values, step)) => (values, Some(parse_step(token, step, spec)?)),
        None => (item, None),
    };
    if values == "*" {
        return match step {
            Some(step) => Ok(Item::Step {
                start: spec.min,
                end: None,
                step,
            }),
            None => Err(CalendarError::StarInList {
                text: token.into(),
                field: spec.name,
            }),
        };
    }
    if values.contains('*') {
        return Err(CalendarError::StarInList {
            text: token.into(),
            field: spec.name,
        });
    }
    let (start, end) = match values.split_once("..") {
        Some((start, end)) => (
            parse_number(token, start, spec)?,
            Some(parse_number(token, end, spec)?),
        ),
        None => (parse_number(token, values, spec)?, None),
    };
    if let Some(end) = end {
        if end < start {
            return Err(CalendarError::Backwards {
                text: token.into(),
                field: spec.name,
                start,
                end,
            });
        }
    }
    Ok(match (end, step) {
        (None, None) => Item::Single(start),
        (Some(end), None) if end == start => Item::Single(start),
        (Some(end), None) => Item::Range(start, end),
        (end, Some(step)) => Item::Step { start, end, step },
    })
}

fn parse_step(token: &str, text: &str, spec: &FieldSpec) -> Result<u16, CalendarError> {
    let bad = || CalendarError::BadStep {
        text: token.into(),
        field: spec.name,
        max: spec.max,
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u16>() {
        Ok(step) if (1..=spec.max).contains(&step) => Ok(step),
        _ => Err(bad()),
    }
}

fn parse_number(token: &str, text: &str, spec: &FieldSpec) -> Result<u16, CalendarError> {
    if text.is_empty() {
        return Err(CalendarError::MissingValue {
            text: token.into(),
            field: spec.name,
        });
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CalendarError::NotANumber {
            text: token.into(),
            field: spec.name,
            value: text.into(),
        });
    }
    match text.parse::<u16>() {
        Ok(v) if (spec.min..=spec.max).contains(&v) => Ok(v),
        _ => Err(CalendarError::OutOfRange {
            text: token.into(),
            field: spec.name,
            min: spec.min,
            max: spec.max,
        }),
    }
}

impl fmt::Display for CalendarEvent {
    /// Lower-case weekdays (runs of three or more as ranges), zero-padded
    /// numbers, `*-*-*` and a midnight time left out when implied, seconds
    /// left out when `:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(shortcut) = self.shortcut {
            f.write_str(shortcut)?;
        } else {
            let mut sep = "";
            if self.weekdays != ALL_WEEKDAYS {
                write_weekdays(f, self.weekdays)?;
                sep = " ";
            }
            if !(self.year.is_any() && self.month.is_any() && self.day.is_any()) {
                f.write_str(sep)?;
                self.year.write(f, &YEAR)?;
                f.write_str("-")?;
                self.month.write(f, &MONTH)?;
                f.write_str("-")?;
                self.day.write(f, &DAY)?;
                sep = " ";
            }
            let midnight = [&self.hour, &self.minute, &self.second]
                .iter()
                .all(|field| **field == Field::single(0));
            if !midnight || sep.is_empty() {
                f.write_str(sep)?;
                self.hour.write(f, &HOUR)?;
                f.write_str(":")?;
                self.minute.write(f, &MINUTE)?;
                if self.second != Field::single(0) {
                    f.write_str(":")?;
                    self.second.write(f, &SECOND)?;
                }
            }
        }
        if self.utc {
            f.write_str(" UTC")?;
        }
        Ok(())
    }
}

fn write_weekdays(f: &mut fmt::Formatter<'_>, bits: u8) -> fmt::Result {
    let mut first = true;
    let mut d = 0;
    while d < 7 {
        if bits & (1 << d) == 0 {
            d += 1;
            continue;
        }
        let mut end = d;
        while end + 1 < 7 && bits & (1 << (end + 1)) != 0 {
            end += 1;
        }
        if !first {
            f.write_str(",")?;
        }
        first = false;
        let name = |i: usize| WEEKDAY_NAMES.get(i).map_or("?", |(short, _)| *short);
        match end - d {
            0 => f.write_str(name(d))?,
            1 => write!(f, "{},{}", name(d), name(end))?,
            _ => write!(f, "{}..{}", name(d), name(end))?,
        }
        d = end + 1;
    }
    Ok(())
}

impl FromStr for CalendarEvent {
    type Err = CalendarError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        CalendarEvent::parse(text)
    }
}

impl serde::Serialize for CalendarEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CalendarEvent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        CalendarEvent::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").expect("the test host has the Europe/Berlin zone")
    }

    fn zoned(text: &str, tz: &TimeZone) -> Zoned {
        let ts: Timestamp = text.parse().expect("test timestamp");
        ts.to_zoned(tz.clone())
    }

    #[test]
    fn parses_and_normalizes() {
        let cases = [
            ("minutely", "minutely"),
            ("hourly", "hourly"),
            ("daily", "daily"),
            ("weekly", "weekly"),
            ("monthly", "monthly"),
            ("yearly", "yearly"),
            ("annually", "yearly"),
            ("quarterly", "quarterly"),
            ("semiannually", "semiannually"),
            ("semi-annually", "semiannually"),
            ("Daily", "daily"),
            ("daily UTC", "daily UTC"),
            ("mon..fri", "mon..fri"),
            ("mon,tue,wed,thu,fri", "mon..fri"),
            ("sat,sun", "sat,sun"),
            ("sat..sun", "sat,sun"),
            ("mon,wed,fri", "mon,wed,fri"),
            ("Monday..Friday", "mon..fri"),
            ("sat..mon", "mon,sat,sun"),
            ("mon..sun", "00:00"),
            ("*-*-01 03:30", "*-*-01 03:30"),
            ("mon..fri 02:00", "mon..fri 02:00"),
            ("mon..fri  2:0", "mon..fri 02:00"),
            ("*:0/15", "*:*/15"),
            ("*:*/15", "*:*/15"),
            ("*:00/5", "*:*/5"),
            ("0/2:00", "*/2:00"),
            ("12:00:30", "12:00:30"),
            ("12:00:00", "12:00"),
            ("12:05", "12:05"),
            ("2026-12-24 18:00", "2026-12-24 18:00"),
            ("2015-10-21", "2015-10-21"),
            ("12-24", "*-12-24"),
            ("*-05", "*-*-05"),
            ("Sat *-1..7 15:00", "sat *-*-01..07 15:00"),
            ("mon..wed *:30/10", "mon..wed *:30/10"),
            ("mon..fri 8..17,22:0/15", "mon..fri 08..17,22:*/15"),
            ("fri 12..13:5/20", "fri 12..13:05/20"),
            ("12,14,16,18,20,22:5", "12,14,16,18,20,22:05"),
            ("12/2:5", "12/2:05"),
            ("*:*", "*:*"),
            ("0/1:0/1", "*/1:*/1"),
            ("15,1,15:00", "01,15:00"),
            ("1..10/2:00", "01..10/2:00"),
            ("*-02-30", "*-02-30"),
            ("2026,2027-*-* 01:00", "2026,2027-*-* 01:00"),
            ("*-*-* *:*:*", "*:*:*"),
            ("thu 2026-12-31 23:59:59 utc", "thu 2026-12-31 23:59:59 UTC"),
        ];
        for (input, normalized) in cases {
            let event = CalendarEvent::parse(input)
                .unwrap_or_else(|e| panic!("{input:?} should parse: {e}"));
            assert_eq!(
                event.to_string(),
                normalized,
                "normalized form of {input:?}"
            );
            let again = CalendarEvent::parse(normalized)
                .unwrap_or_else(|e| panic!("normalized {normalized:?} should parse: {e}"));
            assert_eq!(again, event, "{normalized:?} parses back to {input:?}");
        }
    }

    #[test]
    fn shortcuts_mean_what_the_pbs_table_says() {
        for (name, _, expansion) in SHORTCUTS {
            let short = CalendarEvent::parse(name).expect("shortcut");
            let long = CalendarEvent::parse(expansion).expect("expansion");
            assert!(short.shortcut.is_some());
            assert_eq!(
                CalendarEvent {
                    shortcut: None,
                    ..short
                },
                long,
                "{name}"
            );
        }
    }

    #[test]
    fn refuses_bad_input_with_a_clear_message() {
        let long_garbage = "x".repeat(10_000);
        let long_list = format!("{}:00", vec!["1"; 200].join(","));
        let cases: &[(&str, &str)] = &[
            ("", "the schedule is empty"),
            ("   ", "the schedule is empty"),
            ("25:00", "'25:00': hour must be 0-23"),
            ("12:60", "'12:60': minute must be 0-59"),
            ("12:00:60", "'12:00:60': second must be 0-59"),
            ("*-13-01", "'*-13-01': month must be 1-12"),
            ("*-00-01", "'*-00-01': month must be 1-12"),
            ("*-*-32", "'*-*-32': day must be 1-31"),
            ("1969-01-01", "'1969-01-01': year must be 1970-2199"),
            ("2200-01-01", "'2200-01-01': year must be 1970-2199"),
            ("99999999999999999999:00", "hour must be 0-23"),
            ("mon..", "'mon..': a weekday value is missing"),
            ("..fri", "'..fri': expected a weekday"),
            ("mon,,fri", "'mon,,fri': a weekday value is missing"),
            ("mo", "'mo': unknown weekday 'mo'"),
            (
                "daily daily",
                "'daily daily': the shortcut 'daily' must be used alone",
            ),
            ("daily 02:00", "the shortcut 'daily' must be used alone"),
            ("UTC", "'UTC': 'UTC' needs a weekday"),
            (
                "02:00 mon",
                "'mon': the weekday part must come before the time part",
            ),
            (
                "02:00 2026-01-01",
                "the date part must come before the time part",
            ),
            ("02:00 03:00", "'03:00': the time part is given twice"),
            ("mon fri", "'fri': the weekday part is given twice"),
            ("*-*-~1", "'~' is not supported"),
            ("2020-03~01", "'~' is not supported"),
            ("@1234567", "Unix timestamp"),
            ("12:00:30.5", "sub-second precision is not supported"),
            ("02:00 Europe/Berlin", "time zone other than UTC"),
            ("17..8:00", "'17..8:00': hour range 17..8 runs backwards"),
            ("*:0/0", "'*:0/0': the minute repetition step must be 1-59"),
            ("*:0/", "the minute repetition step must be 1-59"),
            ("1,*:00", "'*' cannot be combined"),
            ("12", "'12': expected a weekday"),
            ("12:00:00:00", "a time is HOUR:MINUTE or HOUR:MINUTE:SECOND"),
            ("1-2-3-4", "a date is MONTH-DAY or YEAR-MONTH-DAY"),
            ("a:b", "unknown weekday 'a:b'"),
            ("1a:00", "'1a:00': hour '1a' is not a number"),
        ];
        for &(input, expected) in cases {
            let err = CalendarEvent::parse(input).expect_err(input).to_string();
            assert!(
                err.contains(expected),
                "{input:?}: got {err:?}, want {expected:?}"
            );
        }
        let more = [
            (
                long_garbage.as_str(),
                "too long (10000 characters, at most 256)",
            ),
            (long_list.as_str(), "too long"),
            ("mön", "unexpected character 'ö' at position 2"),
            (
                "02:00\u{a0}",
                "unexpected character '\\u{a0}' at position 6",
            ),
            ("日曜日", "unexpected character '日' at position 1"),
            ("\0", "unexpected character '\\0'"),
            ("2026-12-24T18:00", "expected a weekday"),
        ];
        for (input, expected) in more {
            let err = CalendarEvent::parse(input).expect_err(input).to_string();
            assert!(
                err.contains(expected),
                "{input:?}: got {err:?}, want {expected:?}"
            );
        }
    }

    #[test]
    fn next_after_in_utc_and_berlin() {
        let utc = TimeZone::UTC;
        let berlin = berlin();
        // (event, after, zone, expected next) with instants in RFC 3339.
        let cases: &[(&str, &str, &TimeZone, Option<&str>)] = &[
            (
                "daily",
                "2026-05-10T12:00:00Z",
                &utc,
                Some("2026-05-11T00:00:00Z"),
            ),
            (
                "daily",
                "2026-05-10T23:59:59.999Z",
                &utc,
                Some("2026-05-11T00:00:00Z"),
            ),
            // Strictly after: an exact match is not returned again.
            (
                "daily",
                "2026-05-11T00:00:00Z",
                &utc,
                Some("2026-05-12T00:00:00Z"),
            ),
            (
                "minutely",
                "2026-05-10T12:00:30Z",
                &utc,
                Some("2026-05-10T12:01:00Z"),
            ),
            (
                "hourly",
                "2026-12-31T23:10:00Z",
                &utc,
                Some("2027-01-01T00:00:00Z"),
            ),
            // 2026-05-10 is a Sunday.
            (
                "weekly",
                "2026-05-10T12:00:00Z",
                &utc,
                Some("2026-05-11T00:00:00Z"),
            ),
            (
                "monthly",
                "2026-01-31T00:00:00Z",
                &utc,
                Some("2026-02-01T00:00:00Z"),
            ),
            (
                "yearly",
                "2026-01-01T00:00:00Z",
                &utc,
                Some("2027-01-01T00:00:00Z"),
            ),
            (
                "quarterly",
                "2026-04-01T00:00:01Z",
                &utc,
                Some("2026-07-01T00:00:00Z"),
            ),
            (
                "semiannually",
                "2026-02-01T00:00:00Z",
                &utc,
                Some("2026-07-01T00:00:00Z"),
            ),
            (
                "mon..fri 02:00",
                "2026-05-08T02:00:00Z",
                &utc,
                Some("2026-05-11T02:00:00Z"),
            ),
            (
                "*-*-01 03:30",
                "2026-02-01T03:30:00Z",
                &utc,
                Some("2026-03-01T03:30:00Z"),
            ),
            (
                "*:0/15",
                "2026-05-10T12:07:00Z",
                &utc,
                Some("2026-05-10T12:15:00Z"),
            ),
            (
                "*:0/15",
                "2026-05-10T23:45:00Z",
                &utc,
                Some("2026-05-11T00:00:00Z"),
            ),
            (
                "12:00:30",
                "2026-05-10T12:00:30Z",
                &utc,
                Some("2026-05-11T12:00:30Z"),
            ),
            (
                "2026-12-24 18:00",
                "2026-05-10T00:00:00Z",
                &utc,
                Some("2026-12-24T18:00:00Z"),
            ),
            ("2026-12-24 18:00", "2026-12-24T18:00:00Z", &utc, None),
            ("2020-01-01", "2026-05-10T00:00:00Z", &utc, None),
            ("*-02-30", "2026-05-10T00:00:00Z", &utc, None),
            (
                "*-02-29",
                "2026-05-10T00:00:00Z",
                &utc,
                Some("2028-02-29T00:00:00Z"),
            ),
            // Feb 29 on a Monday: next in 2044.
            (
                "mon *-02-29",
                "2026-05-10T00:00:00Z",
                &utc,
                Some("2044-02-29T00:00:00Z"),
            ),
            (
                "Sat *-1..7 15:00",
                "2026-05-10T00:00:00Z",
                &utc,
                Some("2026-06-06T15:00:00Z"),
            ),
            // Matched in Berlin wall-clock time, answered in Berlin.
            (
                "02:00",
                "2026-05-10T00:30:00Z",
                &berlin,
                Some("2026-05-11T00:00:00Z"),
            ),
            // A `UTC` event ignores the zone it is given.
            (
                "02:00 UTC",
                "2026-05-10T00:30:00Z",
                &berlin,
                Some("2026-05-10T02:00:00Z"),
            ),
            // Spring forward 2026-03-29: 02:30 does not exist that day, skipped.
            (
                "02:30",
                "2026-03-28T12:00:00Z",
                &berlin,
                Some("2026-03-30T00:30:00Z"),
            ),
            (
                "*:30",
                "2026-03-29T00:45:00Z",
                &berlin,
                Some("2026-03-29T01:30:00Z"),
            ),
            // Fall back 2026-10-25: 02:30 happens twice, fires at the first only.
            (
                "02:30",
                "2026-10-24T12:00:00Z",
                &berlin,
                Some("2026-10-25T00:30:00Z"),
            ),
            (
                "02:30",
                "2026-10-25T00:30:00Z",
                &berlin,
                Some("2026-10-26T01:30:00Z"),
            ),
        ];
        for &(event, after, tz, expected) in cases {
            let parsed = CalendarEvent::parse(event).expect(event);
            let after = zoned(after, tz);
            let next = parsed.next_after(&after);
            assert_eq!(
                next.as_ref().map(|z| z.timestamp().to_string()),
                expected.map(String::from),
                "{event} after {after}"
            );
            if let Some(next) = next {
                assert_eq!(
                    next.time_zone(),
                    after.time_zone(),
                    "{event}: answered in the given zone"
                );
                assert!(parsed.matches(&next), "{event}: {next} matches");
            }
        }
    }

    #[test]
    fn fall_back_hour_fires_once_per_wall_clock_time() {
        let berlin = berlin();
        let event = CalendarEvent::parse("*:00/30").expect("event");
        let mut t = zoned("2026-10-24T23:00:00Z", &berlin);
        let mut seen = Vec::new();
        while t.timestamp() < "2026-10-25T03:00:00Z".parse::<Timestamp>().expect("end") {
            t = event.next_after(&t).expect("next");
            seen.push(t.strftime("%H:%M%z").to_string());
        }
        // 02:00 and 02:30 come once (CEST); the repeated CET hour is skipped.
        assert_eq!(
            seen,
            [
                "01:30+0200",
                "02:00+0200",
                "02:30+0200",
                "03:00+0100",
                "03:30+0100",
                "04:00+0100"
            ]
        );
        // Started inside the repeated hour, the next slot is the next new wall-clock time.
        let inside = zoned("2026-10-25T01:10:00Z", &berlin);
        assert_eq!(inside.strftime("%H:%M%z").to_string(), "02:10+0100");
        let next = event.next_after(&inside).expect("next");
        assert_eq!(next.strftime("%H:%M%z").to_string(), "03:00+0100");
        assert!(
            !event.matches(&zoned("2026-10-25T01:30:00Z", &berlin)),
            "second 02:30 is not a slot"
        );
    }

    #[test]
    fn serde_uses_the_normalized_string() {
        let event: CalendarEvent = serde_json::from_str("\"Mon..Fri 2:00\"").expect("deserialize");
        assert_eq!(
            serde_json::to_string(&event).expect("serialize"),
            "\"mon..fri 02:00\""
        );
        let err = serde_json::from_str::<CalendarEvent>("\"25:00\"").expect_err("bad");
        assert!(
            err.to_string().contains("'25:00': hour must be 0-23"),
            "{err}"
        );
        assert!(serde_json::from_str::<CalendarEvent>("42").is_err());
    }

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items.get(self.below(items.len())).copied().unwrap_or("")
        }
    }

    /// Mostly valid schedules built from plausible pieces.
    fn plausible(rng: &mut Rng) -> String {
        let weekdays = [
            "", "", "mon", "mon..fri", "sat,sun", "fri..mon", "tue,thu", "Sunday",
        ];
        let dates = [
            "",
            "",
            "",
            "*-*-01",
            "*-*-1..7",
            "*-02-29",
            "2026-*-*",
            "*-01,07-01",
            "*-*-*/10",
            "2027-03-28",
            "*-10-25",
            "*-3,10-*",
            "2029-*-31",
        ];
        let times = [
            "",
            "02:00",
            "02:30",
            "*:0/15",
            "*:*",
            "0/2:00",
            "8..17:30",
            "12:00:30",
            "*:*:*/20",
            "23:59:59",
            "1..3:0/20",
            "*:30",
            "2:05,35",
        ];
        let shortcuts = [
            "daily",
            "hourly",
            "weekly",
            "monthly",
            "minutely",
            "quarterly",
        ];
        if rng.below(8) == 0 {
            return rng.pick(&shortcuts).into();
        }
        let parts = [rng.pick(&weekdays), rng.pick(&dates), rng.pick(&times)];
        let mut text = parts
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        if text.is_empty() {
            text = "03:15".into();
        }
        if rng.below(10) == 0 {
            text.push_str(" UTC");
        }
        text
    }

    /// Random strings from the grammar's alphabet plus some noise.
    fn garbage(rng: &mut Rng) -> String {
        let pieces = [
            "mon", "fri", "..", ",", "*", "/", ":", "-", " ", "0", "1", "7", "12", "23", "24",
            "59", "60", "2026", "~", "@", ".", "daily", "UTC", "é", "\t", "99999", "sun", "x",
            "/0",
        ];
        let n = rng.below(12);
        (0..n).map(|_| rng.pick(&pieces)).collect()
    }

    #[test]
    fn property_parse_never_panics_and_next_after_is_a_later_match() {
        let zones = [
            TimeZone::UTC,
            berlin(),
            TimeZone::get("America/New_York").expect("zone"),
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut checked = 0;
        for round in 0..3000 {
            let text = if round % 2 == 0 {
                plausible(&mut rng)
            } else {
                garbage(&mut rng)
            };
            let Ok(event) = CalendarEvent::parse(&text) else {
                continue;
            };
            let normalized = event.to_string();
            assert_eq!(
                CalendarEvent::parse(&normalized).as_ref(),
                Ok(&event),
                "{text:?} -> {normalized:?}"
            );
            for _ in 0..3 {
                let tz = zones
                    .get(rng.below(zones.len()))
                    .cloned()
                    .unwrap_or(TimeZone::UTC);
                // Within a day or so of a 2026 DST change in Berlin or New York
                // half of the time, anywhere in 2023-2033 otherwise.
                let dst_changes = [1_774_742_400, 1_792_886_400, 1_772_928_000, 1_793_491_200];
                let base = match dst_changes.get(rng.below(8)) {
                    Some(change) => *change,
                    None => 1_700_000_000 + i64::try_from(rng.below(300_000_000)).unwrap_or(0),
                };
                let jitter = i64::try_from(rng.below(200_000)).unwrap_or(0) - 100_000;
                let nanos = i32::try_from(rng.below(1_000_000_000)).unwrap_or(0)
                    * i32::from(rng.below(2) == 0);
                let after = Timestamp::new(base + jitter, nanos)
                    .expect("timestamp")
                    .to_zoned(tz);
                let Some(next) = event.next_after(&after) else {
                    continue;
                };
                checked += 1;
                assert!(
                    next.timestamp() > after.timestamp(),
                    "{text:?}: {next} after {after}"
                );
                assert!(event.matches(&next), "{text:?}: {next} matches");
                // Nothing earlier matches: check every second when the gap is short.
                let gap = next.timestamp().as_second() - after.timestamp().as_second();
                if gap <= 4 * 3600 {
                    for s in after.timestamp().as_second() + 1..next.timestamp().as_second() {
                        let t = Timestamp::from_second(s)
                            .expect("ts")
                            .to_zoned(after.time_zone().clone());
                        assert!(
                            !event.matches(&t),
                            "{text:?}: {t} matches before {next} (after {after})"
                        );
                    }
                }
            }
        }
        assert!(checked > 1000, "only {checked} cases reached next_after");
    }
}
