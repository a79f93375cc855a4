//! Wall-clock time as Unix milliseconds: what the store, the hub and the API stamp things
//! with, and the one way dates are written (`format_utc`) and read (`parse_time`, for the CLI's
//! and the API's `from`/`to`). Only the shell's edges read the clock; detection and risk get
//! time passed in.

/// Now, in milliseconds since the Unix epoch (0 if the system clock is before 1970).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Parses a time given on the command line, as Unix ms: `YYYY-MM-DD` (midnight UTC, or the
/// next midnight with `end_of_day`, so that `--to 2024-05-01` includes that day),
/// `YYYY-MM-DDTHH:MM[:SS]` (UTC; a space for the `T` and a trailing `Z` are fine), or Unix
/// milliseconds. The error says what was wrong and what is accepted.
pub fn parse_time(s: &str, end_of_day: bool) -> Result<u64, String> {
    const FORMS: &str = "use YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (UTC) or Unix milliseconds";
    let t = s.trim();
    let bad = |why: &str| format!("{s:?}: {why}; {FORMS}");
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<u64>().map_err(|_| bad("too large"));
    }
    let t = t.strip_suffix(['Z', 'z']).unwrap_or(t);
    let (date, time) = match t.find(['T', 't', ' ']) {
        Some(i) => (&t[..i], Some(t[i + 1..].trim())),
        None => (t, None),
    };
    let num = |part: &str, len: usize| -> Option<u32> {
        (part.len() == len && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    let d: Vec<&str> = date.split('-').collect();
    let (Some(y), Some(mo), Some(day)) = (
        d.first().and_then(|p| num(p, 4)),
        d.get(1).and_then(|p| num(p, 2)),
        d.get(2).and_then(|p| num(p, 2)),
    ) else {
        return Err(bad("not a date"));
    };
    if d.len() != 3 {
        return Err(bad("not a date"));
    }
    let y = i64::from(y);
    if y < 1970 {
        return Err(bad("before 1970"));
    }
    if !(1..=12).contains(&mo) || day == 0 || day > days_in_month(y, mo) {
        return Err(bad("no such day"));
    }
    let mut ms = days_from_civil(y, mo, day) as u64 * DAY_MS;
    match time {
        None => {
            if end_of_day {
                ms += DAY_MS;
            }
        }
        Some(time) => {
            let p: Vec<&str> = time.split(':').collect();
            let (Some(h), Some(mi)) = (
                p.first().and_then(|x| num(x, 2)),
                p.get(1).and_then(|x| num(x, 2)),
            ) else {
                return Err(bad("not a time of day"));
            };
            let sec = match p.get(2) {
                Some(x) => num(x, 2).ok_or_else(|| bad("not a time of day"))?,
                None => 0,
            };
            if p.len() > 3 || h > 23 || mi > 59 || sec > 59 {
                return Err(bad("not a time of day"));
            }
            ms += (u64::from(h) * 3600 + u64::from(mi) * 60 + u64::from(sec)) * 1000;
        }
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_in_every_accepted_form() {
        assert_eq!(parse_time("1970-01-01", false), Ok(0));
        assert_eq!(parse_time("1970-01-01", true), Ok(DAY_MS));
        assert_eq!(parse_time("2024-05-01", false), Ok(1_714_521_600_000));
        assert_eq!(
            parse_time("2024-05-01T12:34", false),
            Ok(1_714_521_600_000 + (12 * 3600 + 34 * 60) * 1000)
        );
        assert_eq!(
            parse_time("2024-05-01 12:34:56Z", true),
            Ok(1_714_521_600_000 + (12 * 3600 + 34 * 60 + 56) * 1000)
        );
        assert_eq!(parse_time("2024-02-29", false), Ok(1_709_164_800_000));
        assert_eq!(parse_time("1714521600000", false), Ok(1_714_521_600_000));
        for bad in [
            "",
            "yesterday",
            "2024-5-1",
            "2024-13-01",
            "2023-02-29",
            "2024-04-31",
            "2024-05-01T25:00",
            "2024-05-01T12",
            "2024-05-01T12:00:00:00",
            "1969-12-31",
            "2024-05-01-02",
            "99999999999999999999999",
        ] {
            let e = parse_time(bad, false).unwrap_err();
            assert!(e.contains("YYYY-MM-DD"), "{bad}: {e}");
        }
    }

    #[test]
    fn utc_formatting_round_trips_with_parsing() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        for ms in [0, 951_782_400_000u64, 1_714_567_496_000, 4_102_444_799_000] {
            let s = format_utc(ms);
            let back = parse_time(s.trim_end_matches(" UTC"), false).unwrap();
            assert_eq!(back, ms, "{s}");
        }
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }
}
