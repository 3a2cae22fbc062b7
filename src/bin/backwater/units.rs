//! The one parser for every number a flag takes: sizes, rates, durations,
//! times, fractions and counts. Each is validated here, at parse time, so a
//! bad value is a usage error (exit 2) naming the flag, never a panic or a
//! silent clamp later.
//!
//! - Sizes: a number and a unit: `4096`, `64MiB`, `1.5GiB`, `10MB`. `k`, `M`,
//!   `G`, `T` (and `KB`, `MB`, ...) are powers of 1000; `Ki`, `Mi`, `Gi`, `Ti`
//!   (and `KiB`, ...) powers of 1024.
//! - Rates: an amount (a count or a size, same units) per `/s`, `/m` or `/h`:
//!   `2000/s`, `1.5k/s`, `0.5/s`, `10MiB/s`, `120/m`; a bare amount is per second.
//! - Durations: one or more number-unit terms (`ns`, `us`, `ms`, `s`, `m`,
//!   `h`, `d`): `5s`, `100ms`, `1h30m`, `1.5s`; a bare number is seconds.
//! - Times: RFC 3339 (`2026-11-28T10:00:00Z`, `2026-11-28T12:00:00.5+02:00`;
//!   no offset means UTC) or nanoseconds since the Unix epoch.

use std::time::Duration;

use backwater::Flush;

/// A decimal number: finite, not negative.
fn number(text: &str, what: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|_| format!("'{text}' is not a number ({what})"))?;
    if !value.is_finite() || value < 0.0 || text.starts_with('-') {
        return Err(format!("'{text}' must be a finite number of at least 0 ({what})"));
    }
    Ok(value)
}

/// Splits `64MiB` into `("64", "MiB")`: the longest leading decimal number
/// (digits, a fraction, an exponent such as `e3`, `e+3` or `e-9`), then the
/// rest. An `e` not followed by digits is not an exponent (`5e` is 5 and `e`).
fn split_unit(text: &str) -> (&str, &str) {
    let bytes = text.as_bytes();
    let digits_from = |at: usize| at + bytes[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    let mut at = digits_from(0);
    if bytes.get(at) == Some(&b'.') {
        at = digits_from(at + 1);
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(at + 1), Some(b'+' | b'-')));
        let end = digits_from(at + 1 + sign);
        if end > at + 1 + sign {
            at = end;
        }
    }
    (&text[..at], text[at..].trim())
}

fn size_factor(unit: &str) -> Option<f64> {
    let factor = match unit.to_ascii_lowercase().trim_end_matches('b') {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "ki" => 1024.0,
        "mi" => 1024.0 * 1024.0,
        "gi" => 1024.0 * 1024.0 * 1024.0,
        "ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(factor)
}

/// An amount with an optional size unit, as a float (rates may be fractional).
fn amount(text: &str) -> Result<f64, String> {
    let (digits, unit) = split_unit(text.trim());
    let factor = size_factor(unit)
        .ok_or_else(|| format!("unknown unit '{unit}' in '{text}' (use k, M, G, KiB, MiB, GiB, or none)"))?;
    Ok(number(digits, "e.g. 4096, 64MiB or 1.5k")? * factor)
}

/// A size in bytes: `4096`, `64MiB`, `1.5GiB`, `10MB`.
/// One byte: a single ASCII character, or an escape (`\t`, `\n`, `\0`,
/// `\\`, `\xHH`), as `append --key-delimiter` takes it.
pub fn delimiter(text: &str) -> Result<u8, String> {
    let byte = match text.as_bytes() {
        [byte] if byte.is_ascii() => Some(*byte),
        [b'\\', b't'] => Some(b'\t'),
        [b'\\', b'n'] => Some(b'\n'),
        [b'\\', b'0'] => Some(0),
        [b'\\', b'\\'] => Some(b'\\'),
        [b'\\', b'x', hex @ ..] if hex.len() == 2 => {
            std::str::from_utf8(hex).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        }
        _ => None,
    };
    byte.ok_or_else(|| format!("'{text}' is not one byte: give a character, or \\t, \\n, \\0, \\\\ or \\xHH"))
}

pub fn size(text: &str) -> Result<u64, String> {
    let bytes = amount(text)?.round();
    if bytes >= u64::MAX as f64 {
        return Err(format!("'{text}' is too large"));
    }
    Ok(bytes as u64)
}

/// The smallest rate `--rate` and `--bytes-rate` take: one an hour. Below it
/// a rate is effectively zero (a token bucket would wait years for a record).
pub const MIN_RATE_PER_SEC: f64 = 1.0 / 3600.0;

/// Records or bytes per second: `2000/s`, `1.5k/s`, `10MiB/s`, `120/m`, at
/// least one an hour (`1/h`).
pub fn rate(text: &str) -> Result<f64, String> {
    let (value, per) = text.trim().split_once('/').unwrap_or((text, "s"));
    let seconds = match per.trim() {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("'/{other}' in '{text}' is not a period (use /s, /m or /h)")),
    };
    let rate = amount(value)? / seconds;
    if rate <= 0.0 || !rate.is_finite() {
        return Err(format!("rate '{text}' must be above zero"));
    }
    if rate < MIN_RATE_PER_SEC {
        return Err(format!("rate '{text}' is effectively zero: the smallest rate is 1/h (one an hour)"));
    }
    Ok(rate)
}

/// A duration: `5s`, `100ms`, `1h30m`, `1.5s`; a bare number is seconds.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.parse::<f64>().is_ok() {
        return seconds_to_duration(number(text, "a duration such as 5s, 100ms or 1h30m")?, text);
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let (digits, after) = split_unit(rest);
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit.trim() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hours" => 3600.0,
            "d" | "days" => 86400.0,
            other => {
                return Err(format!("unknown unit '{other}' in duration '{text}' (use ns, us, ms, s, m, h or d)"));
            }
        };
        total += number(digits, "a duration such as 5s, 100ms or 1h30m")? * scale;
        rest = next.trim_start();
    }
    seconds_to_duration(total, text)
}

/// The smallest `--ack-timeout`: a shorter one fails any real sink at once.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// A duration of at least 1 ms (a timeout that must be able to pass).
pub fn timeout(text: &str) -> Result<Duration, String> {
    let value = duration(text)?;
    if value < MIN_TIMEOUT {
        return Err(format!("'{text}' is too short: a timeout must be at least 1ms"));
    }
    Ok(value)
}

fn seconds_to_duration(seconds: f64, text: &str) -> Result<Duration, String> {
    const MAX_SECONDS: f64 = 100.0 * 365.0 * 86400.0;
    if !(0.0..=MAX_SECONDS).contains(&seconds) {
        return Err(format!("duration '{text}' must be between 0 and 100 years"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A fraction from 0 to 1 (a watermark).
/// `none`, `zstd` or `zstd:LEVEL`, with the level checked.
pub fn compression(text: &str) -> Result<backwater::Compression, String> {
    let compression: backwater::Compression = text.parse()?;
    compression.validate().map_err(|error| error.to_string())?;
    Ok(compression)
}

pub fn fraction(text: &str) -> Result<f64, String> {
    let value = number(text, "a fill fraction such as 0.8")?;
    if value > 1.0 {
        return Err(format!("'{text}' is a fill fraction: it must be between 0 and 1"));
    }
    Ok(value)
}

/// How many times faster than recorded: from 0.001 to 1,000,000.
pub fn speed(text: &str) -> Result<f64, String> {
    let value = number(text, "a speed factor such as 2 or 0.5")?;
    if !(1e-3..=1e6).contains(&value) {
        return Err(format!("speed '{text}' must be between 0.001 and 1000000"));
    }
    Ok(value)
}

/// A count of at least one.
pub fn positive_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(count) => Ok(count),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

/// `never`, `always`, `interval:100ms`.
pub fn flush(text: &str) -> Result<Flush, String> {
    match text {
        "never" => Ok(Flush::Never),
        "always" => Ok(Flush::Always),
        _ => {
            let every = text
                .strip_prefix("interval:")
                .ok_or_else(|| format!("'{text}' is not a flush policy (never, always, interval:100ms)"))?;
            Ok(Flush::Interval(duration(every)?))
        }
    }
}

/// An RFC 3339 time or nanoseconds since the Unix epoch, as ns since the epoch.
pub fn time(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(ns) = text.parse::<u64>() {
        return Ok(ns);
    }
    rfc3339(text).ok_or_else(|| {
        format!("'{text}' is not a time (use RFC 3339 such as 2026-11-28T10:00:00Z or +02:00, or ns since the epoch)")
    })
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.fraction][Z|±HH:MM]` (no offset: UTC).
fn rfc3339(text: &str) -> Option<u64> {
    let field = |at: usize, len: usize| -> Option<i64> {
        let digits = text.get(at..at + len)?;
        digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok())?
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if text.len() < 19 || separators.iter().any(|&(at, sep)| text.as_bytes()[at] != sep) {
        return None;
    }
    if !matches!(text.as_bytes()[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (field(0, 4)?, field(5, 2)?, field(8, 2)?);
    let (hour, minute, second) = (field(11, 2)?, field(14, 2)?, field(17, 2)?.min(59));
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || hour > 23 || minute > 59 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        let digits = &fraction[..len.min(9)];
        nanos = digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32);
        rest = &fraction[len..];
    }
    let offset_seconds = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let bytes = rest.as_bytes();
            if rest.len() != 6 || bytes[3] != b':' {
                return None;
            }
            let (hours, minutes): (i64, i64) = (rest[1..3].parse().ok()?, rest[4..6].parse().ok()?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset_seconds;
    let ns = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    u64::try_from(ns).ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The servers of `replay --to`, each as `nats://HOST:PORT`.
#[derive(Clone, Debug)]
pub struct NatsServers(pub Vec<String>);

/// `nats://HOST:PORT[,HOST:PORT...]` (each server may repeat `nats://`).
pub fn nats_servers(text: &str) -> Result<NatsServers, String> {
    let Some(list) = text.trim().strip_prefix("nats://") else {
        return Err(format!("'{text}' is not a NATS address: expected nats://HOST:PORT[,HOST:PORT...]"));
    };
    list.split(',').map(|server| nats_server(server.trim())).collect::<Result<_, _>>().map(NatsServers)
}

fn nats_server(server: &str) -> Result<String, String> {
    let server = server.strip_prefix("nats://").unwrap_or(server);
    let (host, port) = server
        .rsplit_once(':')
        .ok_or_else(|| format!("'{server}' has no port: expected HOST:PORT, e.g. 127.0.0.1:4222"))?;
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(format!("'{server}' is not HOST:PORT (no user, path or spaces)"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(format!("nats://{host}:{port}")),
        _ => Err(format!("'{port}' in '{server}' is not a port (1 to 65535)")),
    }
}

/// A subject to publish on: dot-separated tokens, no wildcards or spaces.
pub fn nats_subject(text: &str) -> Result<String, String> {
    if text.split('.').all(is_subject_token) {
        Ok(text.to_string())
    } else {
        Err(format!("'{text}' is not a subject to publish on: dot-separated tokens, no wildcards (* >) or spaces"))
    }
}

/// Whether `token` may stand between two dots of a subject one publishes
/// on: not empty, no wildcard (`*`, `>`), no dot, no whitespace or control
/// character.
pub fn is_subject_token(token: &str) -> bool {
    !token.is_empty() && !token.contains(|c: char| matches!(c, '*' | '>' | '.') || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_si_and_binary_units() {
        assert_eq!(size("64MiB"), Ok(64 << 20));
        assert_eq!(size("8GiB"), Ok(8 << 30));
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("1.5KiB"), Ok(1536));
        assert_eq!(size("1.5k"), Ok(1500));
        assert_eq!(size("10MB"), Ok(10_000_000));
        for bad in ["lots", "3 parsecs", "-1", "NaN", "inf", "1e300GiB", ""] {
            assert!(size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates_are_fractional_and_k_is_a_thousand() {
        assert_eq!(rate("2000/s"), Ok(2000.0));
        assert_eq!(rate("2000"), Ok(2000.0));
        assert_eq!(rate("1.5/s"), Ok(1.5));
        assert_eq!(rate("1k/s"), Ok(1000.0));
        assert_eq!(rate("120/m"), Ok(2.0));
        assert_eq!(rate("10MiB/s"), Ok((10 << 20) as f64));
        for bad in ["0/s", "-5/s", "NaN/s", "inf/s", "5/fortnight", "fast"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exponents_may_be_negative_and_rates_have_a_floor() {
        assert_eq!(rate("2.5e+3/s"), Ok(2500.0));
        assert_eq!(rate("1e-3k/s"), Ok(1.0));
        assert_eq!(rate("1/h"), Ok(MIN_RATE_PER_SEC));
        assert_eq!(size("1e-3KiB"), Ok(1));
        assert_eq!(size("2E3"), Ok(2000));
        assert_eq!(duration("5e-1s"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1e-3"), Ok(Duration::from_millis(1)));
        for tiny in ["1e-300", "1e-9/s", "0.5/h", "1e-4/s"] {
            let error = rate(tiny).unwrap_err();
            assert!(error.contains("effectively zero") && error.contains("1/h"), "{tiny}: {error}");
        }
        assert!(size("5e").is_err() && size("1e-").is_err() && rate("1e/s").is_err());
        assert_eq!(timeout("1ms"), Ok(Duration::from_millis(1)));
        for short in ["0", "0s", "1us", "1e-9"] {
            assert!(timeout(short).is_err(), "{short}");
        }
    }

    #[test]
    fn durations_take_units_fractions_and_bare_seconds() {
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        for bad in ["-3", "NaN", "inf", "1e300", "5 parsecs", "s", "-1s"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        assert_eq!(flush("interval:1.5s"), Ok(Flush::Interval(Duration::from_millis(1500))));
        assert!(flush("sometimes").is_err());
    }

    #[test]
    fn times_take_rfc3339_offsets_and_nanoseconds() {
        let ten_utc = 1_795_860_000_000_000_000;
        assert_eq!(time("2026-11-28T10:00:00Z"), Ok(ten_utc));
        assert_eq!(time("2026-11-28T12:00:00+02:00"), Ok(ten_utc));
        assert_eq!(time("2026-11-28 05:30:00-04:30"), Ok(ten_utc));
        assert_eq!(time("2026-11-28T10:00:00"), Ok(ten_utc));
        assert_eq!(time("2026-11-28T10:00:00.25Z"), Ok(ten_utc + 250_000_000));
        assert_eq!(time("1795860000000000000"), Ok(ten_utc));
        assert_eq!(time("2000-02-29T00:00:00Z"), Ok(951_782_400_000_000_000));
        for bad in ["yesterday", "2026-02-30T00:00:00Z", "2026-11-28T25:00:00Z", "1960-01-01T00:00:00Z", "2026-11-28"] {
            assert!(time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fractions_speeds_and_counts_are_range_checked() {
        assert_eq!(fraction("0.8"), Ok(0.8));
        assert!(fraction("1.5").is_err() && fraction("NaN").is_err() && fraction("-0.1").is_err());
        assert_eq!(speed("2"), Ok(2.0));
        assert!(speed("1e-20").is_err() && speed("NaN").is_err() && speed("inf").is_err() && speed("0").is_err());
        assert_eq!(positive_count("5"), Ok(5));
        assert!(positive_count("0").is_err() && positive_count("-1").is_err());
    }
}
