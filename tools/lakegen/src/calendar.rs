//! Dates and instants, and every way the bronze files spell them.
//!
//! Time is kept as whole seconds since the Unix epoch (UTC) and dates as days
//! since the epoch; the civil conversions are Howard Hinnant's
//! `days_from_civil` / `civil_from_days`. The writers append ASCII straight
//! into a line buffer because formatting timestamps is the generator's hottest
//! path after compression.

use std::fmt;
use std::str::FromStr;

pub const SECONDS_PER_DAY: i64 = 86_400;

/// A calendar date (proleptic Gregorian).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    /// Days since 1970-01-01.
    pub fn to_days(self) -> i64 {
        days_from_civil(self.year, self.month, self.day)
    }

    pub fn from_days(days: i64) -> Date {
        let (year, month, day) = civil_from_days(days);
        Date { year, month, day }
    }

    /// Seconds since the epoch at 00:00:00 UTC of this date.
    pub fn midnight(self) -> i64 {
        self.to_days() * SECONDS_PER_DAY
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl FromStr for Date {
    type Err = String;

    /// Parses `YYYY-MM-DD` and rejects dates that do not exist.
    fn from_str(s: &str) -> Result<Date, String> {
        let bad = || format!("`{s}` is not a date in the form YYYY-MM-DD");
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(bad());
        }
        let year: i32 = s[0..4].parse().map_err(|_| bad())?;
        let month: u32 = s[5..7].parse().map_err(|_| bad())?;
        let day: u32 = s[8..10].parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(format!("`{s}` does not exist"));
        }
        Ok(Date { year, month, day })
    }
}

pub fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

/// 0 = Monday .. 6 = Sunday.
pub fn weekday(days: i64) -> u32 {
    // 1970-01-01 was a Thursday.
    (days + 3).rem_euclid(7) as u32
}

/// Days since the epoch of the UTC date containing instant `t`.
pub fn day_of(t: i64) -> i64 {
    t.div_euclid(SECONDS_PER_DAY)
}

fn push2(buf: &mut Vec<u8>, v: u32) {
    buf.push(b'0' + (v / 10) as u8);
    buf.push(b'0' + (v % 10) as u8);
}

fn push4(buf: &mut Vec<u8>, v: i32) {
    let v = v as u32;
    buf.push(b'0' + (v / 1000 % 10) as u8);
    buf.push(b'0' + (v / 100 % 10) as u8);
    push2(buf, v % 100);
}

/// `2024-01-05`
pub fn push_date(buf: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    push4(buf, y);
    buf.push(b'-');
    push2(buf, m);
    buf.push(b'-');
    push2(buf, d);
}

/// How a date is spelled in a customers file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateStyle {
    /// `2024-01-05`
    Iso,
    /// `05/01/2024`
    DayMonthYear,
    /// `2024/01/05`
    YearSlash,
    /// `20240105`
    Compact,
}

pub fn push_date_styled(buf: &mut Vec<u8>, days: i64, style: DateStyle) {
    let (y, m, d) = civil_from_days(days);
    match style {
        DateStyle::Iso => push_date(buf, days),
        DateStyle::DayMonthYear => {
            push2(buf, d);
            buf.push(b'/');
            push2(buf, m);
            buf.push(b'/');
            push4(buf, y);
        }
        DateStyle::YearSlash => {
            push4(buf, y);
            buf.push(b'/');
            push2(buf, m);
            buf.push(b'/');
            push2(buf, d);
        }
        DateStyle::Compact => {
            push4(buf, y);
            push2(buf, m);
            push2(buf, d);
        }
    }
}

fn push_clock(buf: &mut Vec<u8>, secs_of_day: i64) {
    let s = secs_of_day as u32;
    push2(buf, s / 3600);
    buf.push(b':');
    push2(buf, s / 60 % 60);
    buf.push(b':');
    push2(buf, s % 60);
}

/// `2024-01-05T10:15:00Z`
pub fn push_ts(buf: &mut Vec<u8>, t: i64) {
    push_date(buf, day_of(t));
    buf.push(b'T');
    push_clock(buf, t.rem_euclid(SECONDS_PER_DAY));
    buf.push(b'Z');
}

/// `2024-01-05 10:15:00`, naive but meaning UTC.
pub fn push_ts_naive(buf: &mut Vec<u8>, t: i64) {
    push_date(buf, day_of(t));
    buf.push(b' ');
    push_clock(buf, t.rem_euclid(SECONDS_PER_DAY));
}

/// `2024-01-05T11:15:00+01:00`: the same instant as local time at `offset_minutes` east of UTC.
pub fn push_ts_offset(buf: &mut Vec<u8>, t: i64, offset_minutes: i32) {
    let local = t + i64::from(offset_minutes) * 60;
    push_date(buf, day_of(local));
    buf.push(b'T');
    push_clock(buf, local.rem_euclid(SECONDS_PER_DAY));
    buf.push(if offset_minutes < 0 { b'-' } else { b'+' });
    let off = offset_minutes.unsigned_abs();
    push2(buf, off / 60);
    buf.push(b':');
    push2(buf, off % 60);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut buf = Vec::new();
        f(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn civil_round_trip_over_four_centuries() {
        for days in -200_000..200_000 {
            let d = Date::from_days(days);
            assert_eq!(d.to_days(), days);
        }
        assert_eq!(Date::from_days(0).to_string(), "1970-01-01");
        assert_eq!("2024-02-29".parse::<Date>().unwrap().to_days(), 19_782);
    }

    #[test]
    fn impossible_dates_do_not_parse() {
        assert!("2024-02-30".parse::<Date>().is_err());
        assert!("2023-02-29".parse::<Date>().is_err());
        assert!("2024-13-01".parse::<Date>().is_err());
        assert!("24-01-01".parse::<Date>().is_err());
    }

    #[test]
    fn timestamps_are_spelled_in_every_style() {
        let t = "2024-01-05".parse::<Date>().unwrap().midnight() + 10 * 3600 + 15 * 60;
        assert_eq!(t, 1_704_449_700);
        assert_eq!(text(|b| push_ts(b, t)), "2024-01-05T10:15:00Z");
        assert_eq!(text(|b| push_ts_naive(b, t)), "2024-01-05 10:15:00");
        assert_eq!(text(|b| push_ts_offset(b, t, 60)), "2024-01-05T11:15:00+01:00");
        assert_eq!(text(|b| push_ts_offset(b, t, -630)), "2024-01-04T23:45:00-10:30");
        let day = day_of(t);
        assert_eq!(
            text(|b| push_date_styled(b, day, DateStyle::DayMonthYear)),
            "05/01/2024"
        );
        assert_eq!(text(|b| push_date_styled(b, day, DateStyle::YearSlash)), "2024/01/05");
        assert_eq!(text(|b| push_date_styled(b, day, DateStyle::Compact)), "20240105");
        assert_eq!(weekday(day), 4, "2024-01-05 was a Friday");
    }
}
