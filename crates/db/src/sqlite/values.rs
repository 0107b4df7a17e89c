//! Column values in rqlite's JSON form, which depends on the column's declared type.
//!
//! rqlite reads rows through its SQLite driver (go-sqlite3), which converts by the declared
//! type, lower-cased (`sqlite3_column_decltype`); rqlite then writes what it got as JSON.
//! Clients rely on the result (pyrqlite's `PARSE_DECLTYPES` converters, Go's `time.Time`):
//!
//! - **`date`, `datetime`, `timestamp`**: a time, written as RFC 3339 with nanoseconds
//!   (`2004-02-14T07:15:00Z`, fraction without trailing zeros, `Z` for a zero offset). An
//!   INTEGER is unix time in seconds, or in milliseconds when beyond ±10¹² (13 digits), shown
//!   in UTC. A TEXT is read with the driver's formats (`YYYY-MM-DD[( |T)HH:MM[:SS[.f][±HH:MM]]]`,
//!   one trailing `Z` ignored) and keeps its offset; a text that is no such time becomes the
//!   zero time, `0001-01-01T00:00:00Z`. A time whose year is not 0 to 9999 (or whose offset is
//!   24 hours) fails the statement, with the driver's message. REAL, BLOB and NULL unchanged.
//! - **`boolean`**: an INTEGER is `true` when above 0, else `false`; other values unchanged.
//! - Any other type: INTEGER and REAL as numbers, TEXT as a string, NULL as null, BLOB as
//!   base64 (or an array of bytes with `blob_array`) ([`crate::sqlite::sql::sql_to_json`]).
//! - An expression has no declared type: rqlite names its type after the first row's value
//!   (`integer`, `real`, `text`, `blob`; `""` for NULL) ([`type_of_value`]).

use rusqlite::types::ValueRef;
use serde_json::Value;

use crate::sqlite::sql::sql_to_json;

/// Whether values of declared type `decl` (lower-cased) are times.
fn is_time(decl: &str) -> bool {
    matches!(decl, "date" | "datetime" | "timestamp")
}

/// The JSON form of value `v` of a column declared `decl` (lower-cased, `""` for none).
///
/// # Errors
///
/// The driver's message when a time cannot be written as RFC 3339 (year outside 0 to 9999,
/// offset of 24 hours): the statement fails with it, as on rqlite.
pub(crate) fn to_json(v: ValueRef<'_>, decl: &str, blob_array: bool) -> Result<Value, String> {
    match v {
        ValueRef::Integer(i) if is_time(decl) => rfc3339(&from_unix(i)).map(Value::String),
        ValueRef::Integer(i) if decl == "boolean" => Ok(Value::Bool(i > 0)),
        ValueRef::Text(t) if is_time(decl) => {
            let text = String::from_utf8_lossy(t);
            let time = parse(text.strip_suffix('Z').unwrap_or(&text)).unwrap_or(ZERO_TIME);
            rfc3339(&time).map(Value::String)
        }
        other => Ok(sql_to_json(other, blob_array)),
    }
}

/// The type rqlite reports for a column without a declared type: the kind of its value in
/// the first row (`""` for NULL).
pub(crate) fn type_of_value(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Integer(_) => "integer",
        ValueRef::Real(_) => "real",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "blob",
        ValueRef::Null => "",
    }
}

/// A point in time and the offset it is shown at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Time {
    /// Seconds since 1970-01-01T00:00:00Z.
    unix: i64,
    /// Nanoseconds within the second, 0 to 999,999,999.
    nanos: u32,
    /// The offset from UTC it is shown at, in seconds.
    offset: i32,
}

/// Go's zero time, what the driver gives for a text it cannot read as a time.
const ZERO_TIME: Time = Time {
    unix: -62_135_596_800,
    nanos: 0,
    offset: 0,
};

/// A unix time in seconds, or in milliseconds beyond ±10¹² (the driver's rule; its
/// nanosecond arithmetic wraps like Go's).
fn from_unix(v: i64) -> Time {
    if !(-1_000_000_000_000..=1_000_000_000_000).contains(&v) {
        let nanos = v.wrapping_mul(1_000_000);
        Time {
            unix: nanos.div_euclid(1_000_000_000),
            nanos: u32::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or(0),
            offset: 0,
        }
    } else {
        Time {
            unix: v,
            nanos: 0,
            offset: 0,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01: (year, month, day), proleptic Gregorian (Howard
/// Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `t` as Go's `time.Time.MarshalText` writes it (RFC 3339 with nanoseconds).
fn rfc3339(t: &Time) -> Result<String, String> {
    let local = t.unix + i64::from(t.offset);
    let (year, month, day) = civil_from_days(local.div_euclid(86_400));
    if !(0..=9999).contains(&year) {
        return Err("Time.MarshalText: year outside of range [0,9999]".into());
    }
    let secs = local.rem_euclid(86_400);
    let mut s = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    );
    if t.nanos > 0 {
        let fraction = format!("{:09}", t.nanos);
        s.push('.');
        s.push_str(fraction.trim_end_matches('0'));
    }
    if t.offset == 0 {
        s.push('Z');
    } else {
        let (sign, off) = if t.offset < 0 {
            ('-', -t.offset)
        } else {
            ('+', t.offset)
        };
        if off / 3600 >= 24 {
            return Err("Time.MarshalText: timezone hour outside of range [0,23]".into());
        }
        s.push_str(&format!("{sign}{:02}:{:02}", off / 3600, off % 3600 / 60));
    }
    Ok(s)
}

/// Reads digits: exactly `min` to `max` of them.
fn digits(s: &str, min: usize, max: usize) -> Option<(u32, &str)> {
    let n = s.bytes().take(max).take_while(u8::is_ascii_digit).count();
    if n < min {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

fn literal(s: &str, c: char) -> Option<&str> {
    s.strip_prefix(c)
}

/// Reads `text` with the driver's time formats, tried in its order: a date, then optionally
/// ` ` or `T` and `HH:MM`, then optionally `:SS`, a fraction (`.` or `,`) and a `±HH:MM`
/// offset. The whole text must be read.
fn parse(text: &str) -> Option<Time> {
    let (year, rest) = digits(text, 4, 4)?;
    let (month, rest) = digits(literal(rest, '-')?, 2, 2)?;
    let (day, rest) = digits(literal(rest, '-')?, 2, 2)?;
    let year = i64::from(year);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let date = days_from_civil(year, month, day) * 86_400;
    if rest.is_empty() {
        return Some(Time {
            unix: date,
            nanos: 0,
            offset: 0,
        });
    }
    let rest = literal(rest, ' ').or_else(|| literal(rest, 'T'))?;
    let (hour, rest) = digits(rest, 1, 2)?;
    let (minute, rest) = digits(literal(rest, ':')?, 2, 2)?;
    let (mut second, mut nanos, mut offset, mut rest) = (0, 0, 0, rest);
    if let Some(after) = literal(rest, ':') {
        let (s, after) = digits(after, 2, 2)?;
        second = s;
        rest = after;
        if let Some(after) = literal(rest, '.').or_else(|| literal(rest, ',')) {
            let n = after.bytes().take_while(u8::is_ascii_digit).count();
            if n > 0 {
                let fraction = format!("{:0<9}", &after[..n.min(9)]);
                nanos = fraction.parse().ok()?;
                rest = &after[n..];
            }
        }
        if let Some(sign) = rest.chars().next().filter(|c| *c == '+' || *c == '-') {
            let (h, after) = digits(&rest[1..], 2, 2)?;
            let (m, after) = digits(literal(after, ':')?, 2, 2)?;
            if h > 24 || m > 60 {
                return None;
            }
            let secs = i32::try_from(h * 3600 + m * 60).ok()?;
            offset = if sign == '-' { -secs } else { secs };
            rest = after;
        }
    }
    if !rest.is_empty() || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let wall = date + i64::from(hour * 3600 + minute * 60 + second);
    Some(Time {
        unix: wall - i64::from(offset),
        nanos,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn date(v: ValueRef<'_>) -> Result<Value, String> {
        to_json(v, "datetime", false)
    }

    fn text(s: &str) -> Value {
        date(ValueRef::Text(s.as_bytes())).unwrap()
    }

    #[test]
    fn unix_times_in_seconds_or_milliseconds_become_rfc3339_in_utc() {
        assert_eq!(
            date(ValueRef::Integer(1_076_742_900)).unwrap(),
            json!("2004-02-14T07:15:00Z")
        );
        assert_eq!(
            date(ValueRef::Integer(0)).unwrap(),
            json!("1970-01-01T00:00:00Z")
        );
        assert_eq!(
            date(ValueRef::Integer(-86_400)).unwrap(),
            json!("1969-12-31T00:00:00Z")
        );
        // 13 digits: milliseconds.
        assert_eq!(
            date(ValueRef::Integer(1_076_742_900_123)).unwrap(),
            json!("2004-02-14T07:15:00.123Z")
        );
        assert_eq!(
            date(ValueRef::Integer(1_000_000_000_000)).unwrap_err(),
            "Time.MarshalText: year outside of range [0,9999]",
            "10^12 is still seconds"
        );
        for decl in ["date", "timestamp"] {
            assert_eq!(
                to_json(ValueRef::Integer(951_782_400), decl, false).unwrap(),
                json!("2000-02-29T00:00:00Z")
            );
        }
    }

    #[test]
    fn texts_are_read_with_the_drivers_formats() {
        assert_eq!(text("2004-02-14 07:15:00"), json!("2004-02-14T07:15:00Z"));
        assert_eq!(text("2004-02-14T07:15:00Z"), json!("2004-02-14T07:15:00Z"));
        assert_eq!(text("2004-02-14"), json!("2004-02-14T00:00:00Z"));
        assert_eq!(text("2004-02-14 07:15"), json!("2004-02-14T07:15:00Z"));
        assert_eq!(text("2004-02-14T7:15"), json!("2004-02-14T07:15:00Z"));
        assert_eq!(
            text("2004-02-14 07:15:00.5"),
            json!("2004-02-14T07:15:00.5Z")
        );
        assert_eq!(
            text("2004-02-14 07:15:00.123456789123"),
            json!("2004-02-14T07:15:00.123456789Z")
        );
        assert_eq!(
            text("2004-02-14 07:15:00+01:00"),
            json!("2004-02-14T07:15:00+01:00")
        );
        assert_eq!(
            text("2004-02-14T07:15:00.250-05:30"),
            json!("2004-02-14T07:15:00.25-05:30")
        );
        assert_eq!(
            text("2004-02-14 07:15:00+00:00"),
            json!("2004-02-14T07:15:00Z")
        );
        assert_eq!(text("2000-02-29"), json!("2000-02-29T00:00:00Z"));
        // CURRENT_TIMESTAMP's form.
        assert_eq!(text("2026-12-02 16:05:39"), json!("2026-12-02T16:05:39Z"));
    }

    #[test]
    fn a_text_that_is_no_time_is_the_zero_time() {
        for junk in [
            "yesterday",
            "",
            "2004-02-30",
            "2004-13-01",
            "2004-2-14",
            "2004-02-14 25:00",
            "2004-02-14 07:15+01:00",
            "2004-02-14 07:15:00+0100",
            "2004-02-14 07:15:00 extra",
            "1900-02-29",
        ] {
            assert_eq!(text(junk), json!("0001-01-01T00:00:00Z"), "{junk:?}");
        }
    }

    #[test]
    fn other_values_and_types_are_unchanged() {
        assert_eq!(date(ValueRef::Real(2.5)).unwrap(), json!(2.5));
        assert_eq!(date(ValueRef::Null).unwrap(), Value::Null);
        assert_eq!(date(ValueRef::Blob(&[1, 2])).unwrap(), json!("AQI="));
        assert_eq!(
            to_json(ValueRef::Integer(1_076_742_900), "integer", false).unwrap(),
            json!(1_076_742_900)
        );
        assert_eq!(
            to_json(ValueRef::Text(b"2004-02-14"), "text", false).unwrap(),
            json!("2004-02-14")
        );
        assert_eq!(
            to_json(ValueRef::Integer(5), "", false).unwrap(),
            json!(5),
            "no declared type"
        );
        assert_eq!(
            to_json(ValueRef::Blob(&[1, 2]), "blob", true).unwrap(),
            json!([1, 2])
        );
    }

    #[test]
    fn booleans_are_integers_above_zero() {
        let b = |v| to_json(v, "boolean", false).unwrap();
        assert_eq!(b(ValueRef::Integer(1)), json!(true));
        assert_eq!(b(ValueRef::Integer(7)), json!(true));
        assert_eq!(b(ValueRef::Integer(0)), json!(false));
        assert_eq!(b(ValueRef::Integer(-1)), json!(false));
        assert_eq!(b(ValueRef::Text(b"yes")), json!("yes"));
        assert_eq!(b(ValueRef::Null), Value::Null);
    }

    #[test]
    fn an_expressions_type_is_its_first_values() {
        assert_eq!(type_of_value(ValueRef::Integer(1)), "integer");
        assert_eq!(type_of_value(ValueRef::Real(1.5)), "real");
        assert_eq!(type_of_value(ValueRef::Text(b"x")), "text");
        assert_eq!(type_of_value(ValueRef::Blob(b"x")), "blob");
        assert_eq!(type_of_value(ValueRef::Null), "");
    }

    #[test]
    fn the_calendar_round_trips() {
        for days in [-719_528, -1, 0, 1, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(-719_528), (0, 1, 1));
    }
}
