//! Human-readable times for `explain`: UTC timestamps and "in 2h 5m" / "3d 1h ago".

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`, or `None` outside years 0–9999.
pub fn utc(secs: f64) -> Option<String> {
    if !secs.is_finite() || !(-62_167_219_200.0..253_402_300_800.0).contains(&secs) {
        return None;
    }
    // In range, so the cast cannot saturate.
    let secs = secs.floor() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}

/// `t` relative to `now`, both seconds since the epoch: "in 1h 2m", "5m 3s ago", "now".
pub fn relative(t: f64, now: u64) -> String {
    let delta = t - now as f64;
    if !delta.is_finite() {
        return String::new();
    }
    let abs = delta.abs().round();
    if abs < 1.0 {
        return "now".to_owned();
    }
    // Beyond ~3e10 years the exact figure says nothing more.
    let span = if abs > 1e18 {
        "forever".to_owned()
    } else {
        span(abs as u64)
    };
    if delta > 0.0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// A duration as its two largest units, zero units left out: "2d 3h", "5m 10s", "10m", "42s".
pub fn span(secs: u64) -> String {
    let units = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let Some(first) = units.iter().position(|(size, _)| secs >= *size) else {
        return "0s".to_owned();
    };
    let parts: Vec<String> = units
        .iter()
        .skip(first)
        .take(2)
        .map(|(size, name)| (secs / size % unit_max(*size), *name))
        .enumerate()
        .filter(|(i, (n, _))| *i == 0 || *n > 0)
        .map(|(_, (n, name))| format!("{n}{name}"))
        .collect();
    parts.join(" ")
}

/// How many of a unit fit in the next larger one (days are not wrapped).
fn unit_max(size: u64) -> u64 {
    match size {
        86_400 => u64::MAX,
        3600 => 24,
        _ => 60,
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_known_values() {
        assert_eq!(utc(0.0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            utc(1_800_000_000.0).as_deref(),
            Some("2027-01-15T08:00:00Z")
        );
        assert_eq!(utc(951_782_400.0).as_deref(), Some("2000-02-29T00:00:00Z"));
        assert_eq!(utc(-1.0).as_deref(), Some("1969-12-31T23:59:59Z"));
        assert_eq!(
            utc(253_402_300_799.0).as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
        assert_eq!(utc(1e300), None);
        assert_eq!(utc(f64::NAN), None);
    }

    #[test]
    fn relative_times() {
        assert_eq!(relative(1000.0, 1000), "now");
        assert_eq!(relative(4600.0, 1000), "in 1h");
        assert_eq!(relative(4660.0, 1000), "in 1h 1m");
        assert_eq!(relative(900.0, 1000), "1m 40s ago");
        assert_eq!(relative(1000.0 + 86_400.0 * 3.0 + 7200.0, 1000), "in 3d 2h");
        assert_eq!(span(42), "42s");
        assert_eq!(span(0), "0s");
        assert_eq!(span(600), "10m");
        assert_eq!(span(86_400 * 400 + 5), "400d");
    }
}
