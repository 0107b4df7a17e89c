//! UTC timestamps for `created_at`, without a date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, UTC, RFC 3339 with second precision: `2025-01-31T12:00:05Z`.
pub(crate) fn now_rfc3339() -> String {
    // Before 1970 only with a broken clock; the epoch is then as good as anything.
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic Gregorian calendar.
/// Howard Hinnant's `civil_from_days`, for non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn agrees_with_http_dates() {
        // httpdate formats the same instant independently (IMF-fixdate).
        for secs in [86_399u64, 1_000_000_000, 1_234_567_890, 1_767_225_600] {
            let t = UNIX_EPOCH + std::time::Duration::from_secs(secs);
            let http = httpdate::fmt_http_date(t);
            let ours = rfc3339(secs);
            let (date, time) = ours.trim_end_matches('Z').split_once('T').unwrap();
            assert!(http.contains(time), "{http} vs {ours}");
            let day: u32 = date[8..].parse().unwrap();
            assert!(http.contains(&format!(" {day:02} ")), "{http} vs {ours}");
            assert!(http.contains(&date[..4]), "{http} vs {ours}");
        }
        assert!(now_rfc3339().starts_with("20"));
    }
}
